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

#[cfg(unix)]
#[test]
fn an_unreadable_segment_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().expect("tempdir");
    sealed_store(t.path());
    let seg = first_segment(t.path());
    std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::File::open(&seg).is_ok() {
        // Running as root: permissions do not deny. The test above covers
        // naming through another error.
        return;
    }
    let e = Options::new()
        .open(t.path())
        .expect_err("an unreadable segment");
    let text = e.to_string();
    assert!(text.contains(&*seg.to_string_lossy()), "{text}");
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied),
        "{e:?}"
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
    // The longest TTL Redis would take (about 292 million years from now)
    // is kept and reported as it was given, not as 2^64 - 1 ms.
    let long = Duration::from_millis(i64::MAX as u64 / 2);
    db.put_with_ttl("k", "v", long).expect("a long TTL");
    match db.ttl("k").expect("ttl") {
        Ttl::Expires(d) => assert!(d <= long && d > long - Duration::from_secs(60), "{d:?}"),
        other => panic!("{other:?}"),
    }
    let e = db
        .put_with_ttl("k", "v", Duration::MAX)
        .expect_err("too long");
    assert!(e.to_string().contains("64-bit"), "{e}");
}
