//! Errors say what they are about: I/O errors name their file (and keep
//! their kind), and a TTL too long to count is refused, not saturated.

use std::path::Path;
use std::time::Duration;

use cairn::{Error, Options, Ttl};

/// A closed store in `dir` with several sealed 4 KiB segments.
fn sealed_store(dir: &Path) {
    let db = Options::new()
        .max_segment_bytes(4096)
        .auto_compact(false)
        .open(dir)
        .expect("open");
    for i in 0..100 {
        db.put(format!("key{i:03}"), vec![b'x'; 100]).expect("put");
    }
    db.close().expect("close");
}

/// The path of the oldest segment in `dir`.
fn first_segment(dir: &Path) -> std::path::PathBuf {
    let id = cairn::segment_ids(dir).expect("ids")[0];
    dir.join(format!("{id:010}.seg"))
}

#[test]
fn a_directory_in_place_of_a_segment_is_named() {
    let t = tempfile::tempdir().expect("tempdir");
    sealed_store(t.path());
    let seg = first_segment(t.path());
    std::fs::remove_file(&seg).expect("rm");
    let _ = std::fs::remove_file(seg.with_extension("hint"));
    std::fs::create_dir(&seg).expect("mkdir");
    let e = Options::new()
        .open(t.path())
        .expect_err("a directory is no segment");
    let text = e.to_string();
    assert!(text.contains(&*seg.to_string_lossy()), "{text}");
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::IsADirectory),
        "{e:?}"
    );
}

/// The store directory a child run of [`an_unreadable_segment_is_named`]
/// checks (set when root runs the check as another user).
const UNREADABLE_DIR: &str = "CAIRN_TEST_UNREADABLE_DIR";

/// A snapshot open of `dir`, whose first segment this user cannot read,
/// fails with `PermissionDenied` naming that segment.
fn assert_unreadable_segment_named(dir: &Path) {
    let seg = first_segment(dir);
    assert!(
        std::fs::File::open(&seg).is_err(),
        "{} is readable",
        seg.display()
    );
    let e = Options::new()
        .snapshot(true)
        .open(dir)
        .expect_err("an unreadable segment");
    let text = e.to_string();
    assert!(text.contains(&*seg.to_string_lossy()), "{text}");
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied),
        "{e:?}"
    );
}

#[cfg(unix)]
#[test]
fn an_unreadable_segment_is_named() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    if let Some(dir) = std::env::var_os(UNREADABLE_DIR) {
        // The child run, as an unprivileged user.
        return assert_unreadable_segment_named(Path::new(&dir));
    }
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("store");
    sealed_store(&dir);
    let seg = first_segment(&dir);
    std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::metadata(&seg).expect("stat").uid() != 0 {
        return assert_unreadable_segment_named(&dir);
    }
    // Root reads any file: run the check again in a child as `nobody`
    // (65534), from a copy of this test binary that user can reach, with
    // every file but the first segment readable to it.
    for d in [t.path(), &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
    for e in std::fs::read_dir(&dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p != seg {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    let exe = t.path().join("error_messages-test");
    std::fs::copy(std::env::current_exe().expect("test binary"), &exe).expect("copy");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod exe");
    let out = std::process::Command::new(&exe)
        .args(["an_unreadable_segment_is_named", "--exact", "--nocapture"])
        .env(UNREADABLE_DIR, &dir)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the check as nobody");
    assert!(
        out.status.success(),
        "the check as nobody failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_ttl_too_long_to_count_is_refused_and_writes_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = cairn::Db::open(t.path()).expect("open");
    for ttl in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_secs(u64::MAX / 1000),
    ] {
        assert!(
            matches!(db.put_with_ttl("k", "v", ttl), Err(Error::InvalidTtl)),
            "{ttl:?}"
        );
        assert_eq!(db.get("k").expect("get"), None);
        assert!(matches!(
            db.put_if_absent("k", "v", Some(ttl)),
            Err(Error::InvalidTtl)
        ));
        assert!(matches!(
            db.write_batch(cairn::Batch::new().put_with_ttl("k", "v", ttl)),
            Err(Error::InvalidTtl)
        ));
        assert_eq!(db.get("k").expect("get"), None);
    }
    db.put("k", "v").expect("put");
    assert!(matches!(
        db.expire("k", Duration::MAX),
        Err(Error::InvalidTtl)
    ));
    assert_eq!(db.ttl("k").expect("ttl"), Ttl::Persistent);
    // The index keeps 6 bytes of expiry: an expiry at 2^48 unix ms (the
    // year 10889) or later is refused, such as the longest TTL Redis takes
    // (about 292 million years), by every way of writing one.
    let limit = 1u64 << 48;
    for ttl in [
        Duration::from_millis(i64::MAX as u64 / 2),
        Duration::from_millis(limit),
    ] {
        assert!(
            matches!(db.put_with_ttl("k", "v", ttl), Err(Error::InvalidTtl)),
            "{ttl:?}"
        );
        assert!(matches!(db.expire("k", ttl), Err(Error::InvalidTtl)));
    }
    let at_limit = db.transaction(|tx| tx.put_expiring_at("k", "v", Some(limit)));
    assert!(matches!(at_limit, Err(Error::InvalidTtl)), "{at_limit:?}");
    assert_eq!(db.ttl("k").expect("ttl"), Ttl::Persistent);
    // The last millisecond before it is kept, and reported as given,
    // before and after a reopen (which reads it from the hint file).
    db.transaction(|tx| tx.put_expiring_at("k", "v", Some(limit - 1)))
        .expect("the last expiry");
    let check = |db: &cairn::Db| match db.ttl("k").expect("ttl") {
        Ttl::Expires(d) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as u64;
            let want = Duration::from_millis(limit - 1 - now);
            assert!(
                d >= want && d < want + Duration::from_secs(60),
                "{d:?} {want:?}"
            );
        }
        other => panic!("{other:?}"),
    };
    check(&db);
    db.seal_active_segment().expect("seal");
    drop(db);
    let db = cairn::Db::open(t.path()).expect("reopen");
    check(&db);
    let e = db
        .put_with_ttl("k", "v", Duration::MAX)
        .expect_err("too long");
    assert!(e.to_string().contains("2^48"), "{e}");
}
