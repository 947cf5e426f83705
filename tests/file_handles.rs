//! File descriptors stay bounded across many compactions and rolls, and are
//! all released when the store is closed (Riak's bitcask leaked them).
//! One test per binary, so that no other test opens files meanwhile.

#[cfg(target_os = "linux")]
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[test]
fn descriptors_do_not_leak_across_compactions() {
    use cairn::Options;
    let t = tempfile::tempdir().expect("tempdir");
    let baseline = open_fds();
    let db = Options::new()
        .max_segment_bytes(4096)
        .auto_compact(false)
        .open(t.path())
        .expect("open");
    let mut after_first = 0;
    let mut most = 0;
    for round in 0..100u32 {
        for i in 0..100u32 {
            db.put(format!("k{}", i % 40), format!("{round}:{i}:{:100}", ""))
                .expect("put");
        }
        if round % 3 == 0 {
            db.delete(format!("k{}", round % 40)).expect("delete");
        }
        let s = db.compact().expect("compact");
        assert!(s.segments_in > 0, "round {round}: {s:?}");
        let now = open_fds();
        if round == 0 {
            after_first = now;
        }
        most = most.max(now);
    }
    assert!(
        most <= after_first + 2,
        "descriptors grew from {after_first} to {most} over 100 compactions"
    );
    for i in 0..40u32 {
        let v = db.get(format!("k{i}")).expect("get");
        if let Some(v) = v {
            assert!(
                v.starts_with(b"99:"),
                "k{i} = {:?}",
                String::from_utf8_lossy(&v)
            );
        }
    }
    db.close().expect("close");
    drop(db);
    assert_eq!(open_fds(), baseline, "descriptors left open after close");
}
