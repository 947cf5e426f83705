//! The library's change feed, as `follow` uses it.

pub use cairn::feed::{Change, ChangeKind, Changes, FeedStart, Position};

/// Whether `e` says the feed cannot go on from the asked position (the
/// log no longer holds the changes after it, or it is not in the store's
/// history): the follower must copy a new snapshot.
pub fn is_changes_lost(e: &cairn::Error) -> bool {
    matches!(e, cairn::Error::ChangesLost { .. })
}
