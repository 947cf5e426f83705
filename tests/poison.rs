//! A failed write poisons the handle: later writes are refused until the
//! store is reopened, reads keep working, and nothing acknowledged is lost.
//!
//! The failure is real: the store lives on a tiny tmpfs that runs out of
//! space (ENOSPC). Mounting needs root; without it the test says so and
//! returns. Issue 4's simulated file layer will inject EIO and short writes
//! everywhere else.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn::{Error, Options, SyncPolicy};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?.keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Some(Tmpfs(dir))
        } else {
            eprintln!("skipping: cannot mount a tmpfs here (needs root)");
            None
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn run(policy: SyncPolicy) {
    let Some(fs) = Tmpfs::mount("1m") else { return };
    let dir = fs.path().join("db");
    let db = Options::new()
        .sync_policy(policy)
        .max_segment_bytes(64 * 1024)
        .open(&dir)
        .expect("open");
    let value = vec![7u8; 1000];
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..10_000u32 {
        match db.put(i.to_be_bytes(), &value) {
            Ok(()) => acked.push(i),
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let (failed_at, err) = failure.expect("a 1 MiB file system fills up");
    assert!(matches!(err, Error::Io(_)), "{failed_at}: {err}");
    // Poisoned: every write is refused, with a clear error.
    for attempt in [
        db.put("x", "y").err(),
        db.delete(0u32.to_be_bytes()).err(),
        db.incr("n", 1).err(),
        db.sync().err(),
    ] {
        match attempt {
            Some(Error::Poisoned { cause }) => assert!(!cause.is_empty()),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    // Reads still work.
    for &i in acked.iter().rev().take(5) {
        assert_eq!(db.get(i.to_be_bytes()).expect("get"), Some(value.clone()));
    }
    drop(db);
    // Grow the file system and reopen: everything acknowledged is there,
    // and the store works again.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(fs.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(grown, "remount to grow the tmpfs failed");
    let db = Options::new()
        .sync_policy(policy)
        .open(&dir)
        .expect("reopen");
    for &i in &acked {
        assert_eq!(
            db.get(i.to_be_bytes()).expect("get"),
            Some(value.clone()),
            "acknowledged key {i} lost"
        );
    }
    db.put("after", "reopen").expect("writes work again");
    assert_eq!(
        db.get("after").expect("get").as_deref(),
        Some(&b"reopen"[..])
    );
}

#[test]
fn enospc_poisons_always() {
    run(SyncPolicy::Always);
}

#[test]
fn enospc_poisons_never() {
    run(SyncPolicy::Never);
}
