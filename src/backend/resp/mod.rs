//! The RESP backend (feature `redis`): a module's keys on a
//! Redis-protocol server or cluster. Being written.
