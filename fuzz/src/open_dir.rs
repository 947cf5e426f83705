//! The `open_dir` target: open a store directory built from arbitrary bytes
//! (see [`crate::dir`]) in strict mode, salvage mode or both and, when the
//! input asks, read-only. Whatever open returns, nothing may panic; and when it
//! opens:
//!
//! * every key a full scan returns reads back with `get` as the same value,
//!   and `len` counts the keys the scan returned;
//! * a writable store takes a put and a delete, reads them back, compacts
//!   (failing only with `Corruption`), closes, and reopens in the same mode
//!   with exactly the expected contents;
//! * if strict mode opens, salvage mode opens too;
//! * without a compaction manifest, a read-only open sees the same contents
//!   as a writable one.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn::{Db, Error, ManualClock, Options, RecoveryMode, SyncPolicy};
use cairn_sim::SimFs;

use crate::dir::{dir, DirInput};

/// The fixed time the stores are opened at (expiries in the input are
/// judged against it, deterministically).
pub const NOW_MS: u64 = 1_700_000_000_000;

/// What a store holds, and whether every read succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contents {
    /// Key → value.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// No read failed (so `map` is everything).
    pub complete: bool,
}

fn options(sim: &SimFs, input: &DirInput, mode: RecoveryMode, read_only: bool) -> Options {
    let mut o = Options::new()
        .vfs(Arc::new(sim.clone()))
        .deterministic(true)
        .auto_compact(false)
        .expiry_sweep_interval_ms(0)
        .clock(ManualClock::new(NOW_MS))
        .sync_policy(SyncPolicy::Always)
        .max_segment_bytes(4096)
        .recovery_mode(mode)
        .read_only(read_only);
    if input.flags.no_tail_cache {
        o = o.tail_cache_bytes(0);
    }
    o
}

/// Reads everything: a full scan, `get` of every key it returned, `len`.
fn contents(db: &Db) -> Contents {
    let mut out = BTreeMap::new();
    let mut scan_failed = false;
    for item in db.scan_prefix("") {
        match item {
            Ok((k, v)) => {
                let again = db.get(&k);
                match again {
                    Ok(Some(ref w)) if *w == v => {}
                    other => panic!("scan returned {k:?} = {v:?} but get returned {other:?}"),
                }
                out.insert(k, v);
            }
            // A scan stops at nothing; the key is not named in the error,
            // so it cannot be recorded.
            Err(Error::Corruption { .. }) => scan_failed = true,
            Err(e) => panic!("scan failed with an unexpected error: {e}"),
        }
    }
    if !scan_failed {
        let len = db.len().expect("len");
        assert_eq!(len, out.len(), "len() disagrees with a full scan");
    }
    Contents {
        map: out,
        complete: !scan_failed,
    }
}

const AFTER_KEY: &[u8] = b"fuzz:after-open";

/// Opens the directory; returns what it held, or `None` when open refused.
fn open_and_exercise(input: &DirInput, mode: RecoveryMode, read_only: bool) -> Option<Contents> {
    let sim = input.build();
    sim.set_trace(trace());
    let db = options(&sim, input, mode, read_only).open(dir()).ok()?;
    let before = contents(&db);
    if trace() {
        eprintln!("opened {mode:?} read_only={read_only}: {before:?}");
    }
    read_feed(&db);
    if read_only {
        assert!(matches!(db.put(AFTER_KEY, "x"), Err(Error::ReadOnly)));
        return Some(before);
    }
    db.put(AFTER_KEY, "open")
        .unwrap_or_else(|e| panic!("put after a successful open failed: {e}"));
    assert_eq!(
        db.get(AFTER_KEY).expect("get").as_deref(),
        Some(&b"open"[..])
    );
    let mut expected = before.map.clone();
    expected.insert(AFTER_KEY.to_vec(), b"open".to_vec());
    if let Some(k) = before.map.keys().next().cloned() {
        assert!(
            db.delete(&k)
                .unwrap_or_else(|e| panic!("delete of a live key failed: {e}")),
            "delete of a live key returned false"
        );
        assert_eq!(db.get(&k).expect("get after delete"), None);
        expected.remove(&k);
    }
    match db.compact() {
        Ok(_) | Err(Error::Corruption { .. }) => {}
        Err(e) => panic!("compaction failed with an unexpected error: {e}"),
    }
    db.close()
        .unwrap_or_else(|e| panic!("close after a successful open failed: {e}"));
    drop(db);
    if trace() {
        for line in sim.trace() {
            eprintln!("  fs: {line}");
        }
    }
    let db = options(&sim, input, mode, false)
        .open(dir())
        .unwrap_or_else(|e| panic!("reopen ({mode:?}) after a successful open failed: {e}"));
    let after = contents(&db);
    if before.complete {
        assert!(after.complete, "a read failed after a clean reopen");
        assert_eq!(
            after.map, expected,
            "contents changed across a clean reopen"
        );
    }
    Some(before)
}

/// Reads the change feed of what opened, from its oldest change and from
/// the start of history, to its end: it may fail with a typed error, never
/// panic or loop, and what it returns is in order.
fn read_feed(db: &cairn::Db) {
    use cairn::feed::{FeedStart, Position};
    for from in [FeedStart::Oldest, FeedStart::After(Position::START)] {
        let Ok(mut feed) = db.changes(from) else {
            continue;
        };
        let mut last = 0;
        for _ in 0..100_000 {
            match feed.try_next() {
                Ok(Some(c)) => {
                    assert!(c.seq > last, "feed out of order: {} after {last}", c.seq);
                    last = c.seq;
                }
                Ok(None) => break,
                Err(Error::ChangesLost { .. } | Error::Corruption { .. } | Error::Io(_)) => break,
                Err(e) => panic!("the feed failed with an unexpected error: {e}"),
            }
        }
        // A position read back resumes (or is refused with a typed error).
        let pos = feed.resume_position();
        let text = pos.to_string();
        assert_eq!(text.parse::<Position>().ok(), Some(pos));
        match db.changes(FeedStart::After(pos)) {
            Ok(_) | Err(Error::ChangesLost { .. } | Error::Corruption { .. } | Error::Io(_)) => {}
            Err(e) => panic!("resuming the feed failed with an unexpected error: {e}"),
        }
    }
}

/// `CAIRN_FUZZ_TRACE` is set: print the directory and what each open saw.
fn trace() -> bool {
    std::env::var_os("CAIRN_FUZZ_TRACE").is_some()
}

/// The target's body.
pub fn run(data: &[u8]) {
    let input = DirInput::decode(data);
    if trace() {
        eprintln!("flags {:?}", input.flags);
        for f in &input.files {
            eprintln!("file {} ({} bytes)", f.name, f.bytes.len());
        }
    }
    let strict = input
        .flags
        .strict
        .then(|| open_and_exercise(&input, RecoveryMode::Strict, false))
        .flatten();
    if input.flags.salvage {
        let salvage = open_and_exercise(&input, RecoveryMode::Salvage, false);
        if input.flags.strict && strict.is_some() {
            assert!(salvage.is_some(), "strict mode opened but salvage refused");
        }
    }
    if input.flags.read_only {
        let ro = open_and_exercise(&input, RecoveryMode::Strict, true);
        if let (Some(rw), Some(ro)) = (&strict, &ro) {
            if !input.has_manifest() && rw.complete && ro.complete {
                assert_eq!(rw, ro, "read-only open sees other contents");
            }
        }
    }
}
