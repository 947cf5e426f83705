//! `verify`, `repair` and open agree on what a crash can leave: a newest segment
//! whose creation a crash interrupted (0 bytes, or part of its header) is
//! accepted by open and reported by verify as a torn creation, not as
//! corruption.

use std::fs;
use std::path::Path;

use cairn::{Db, Options, ProblemKind};

/// A closed store whose newest segment holds only its last record, as
/// just after a roll; returns how many records the older segments hold.
fn store(dir: &Path) -> u64 {
    let db = Options::new()
        .max_segment_bytes(4096)
        .auto_compact(false)
        .open(dir)
        .expect("open");
    let mut n = 0u64;
    while cairn::segment_ids(dir).expect("ids").len() < 3 {
        db.put(format!("k{n}"), vec![b'v'; 100]).expect("put");
        n += 1;
    }
    db.close().expect("close");
    n - 1
}

#[test]
fn a_torn_newest_segment_is_a_torn_creation_for_verify_and_open() {
    let mut real_header = Vec::new();
    {
        let t = tempfile::tempdir().expect("tempdir");
        store(t.path());
        let first = cairn::segment_path(t.path(), 1);
        real_header.extend_from_slice(&fs::read(first).expect("read")[..32]);
    }
    let mut torn_then_zeros = real_header[..20].to_vec();
    torn_then_zeros.resize(4096, 0);
    let cases: [(&str, Vec<u8>); 4] = [
        ("0 bytes", Vec::new()),
        ("1 byte", real_header[..1].to_vec()),
        ("31 header bytes", real_header[..31].to_vec()),
        ("a torn header, then zeros", torn_then_zeros),
    ];
    for (what, bytes) in cases {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path();
        // A crash between creating the newest segment and writing its
        // header: the roll had sealed the one before it.
        let kept = store(d);
        let ids = cairn::segment_ids(d).expect("ids");
        let path = cairn::segment_path(d, *ids.last().expect("segments"));
        fs::write(&path, &bytes).expect("write");

        let r = cairn::verify(d, false).expect("verify");
        assert!(!r.has_corruption(), "{what}: {:?}", r.problems);
        let torn: Vec<_> = r.problems.iter().filter(|p| p.path == path).collect();
        assert_eq!(torn.len(), 1, "{what}: {:?}", r.problems);
        assert_eq!(torn[0].kind, ProblemKind::TornTail, "{what}");
        assert!(
            torn[0].detail.contains("torn creation"),
            "{what}: {}",
            torn[0].detail
        );
        assert_eq!(r.records, kept, "{what}: every record is still checked");

        // So does repair: there is nothing to repair.
        let plan = cairn::repair(d, true).expect("repair dry run");
        assert!(plan.segments.is_empty(), "{what}: {plan:?}");
        assert!(plan.unrepairable.is_empty(), "{what}: {plan:?}");

        // Open agrees: read-only leaves the file, read-write rewrites it.
        let ro = Options::new().read_only(true).open(d).expect("read-only");
        assert_eq!(ro.len().expect("len") as u64, kept, "{what}");
        drop(ro);
        let db = Db::open(d).expect("open");
        assert_eq!(db.len().expect("len") as u64, kept, "{what}");
        db.put("after", "x").expect("put");
        db.close().expect("close");
        let r = cairn::verify(d, false).expect("verify again");
        assert!(r.problems.is_empty(), "{what}: {:?}", r.problems);
    }
}

#[test]
fn a_short_sealed_segment_is_still_corruption() {
    // Only the newest writer segment can be torn by its creation: a short
    // segment below a newer one is damage.
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    store(d);
    let path = cairn::segment_path(d, 1);
    fs::write(&path, b"").expect("truncate");
    let r = cairn::verify(d, false).expect("verify");
    assert!(r.has_corruption(), "{:?}", r.problems);
    assert!(Db::open(d).is_err());
    assert!(matches!(
        Db::open(d),
        Err(cairn::Error::Corruption { path: p, .. }) if p == path
    ));
}
