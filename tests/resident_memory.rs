//! Sealed segments are mapped; the hint writer reads each one whole when
//! it is sealed. Those pages must not stay in the process's resident
//! memory: they are page cache, and `ps`, monitoring and an operator
//! comparing cairn with Redis read RSS.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

/// The resident kilobytes of the maps of files under `dir`
/// (`/proc/self/smaps`).
fn resident_kib_of_files_in(dir: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let dir = dir.to_string_lossy();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.contains(dir.as_ref());
        } else if inside && first == "Rss:" {
            kib += line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kib
}

#[test]
fn scanned_sealed_segments_do_not_stay_resident() -> Result<(), cairn::Error> {
    let dir = tempfile::tempdir()?;
    let db = cairn::Options::new()
        .sync_policy(cairn::SyncPolicy::Never)
        .max_segment_bytes(1 << 20)
        .auto_compact(false)
        .open(dir.path())?;
    let value = vec![7u8; 1000];
    for i in 0..12_000u32 {
        db.put(format!("session:{i:08}"), &value)?;
    }
    // About 11 sealed segments; wait for their hint files.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hints = std::fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".hint"))
            .count();
        if hints >= 10 || Instant::now() > deadline {
            assert!(hints >= 10, "only {hints} hint files after 20 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let kib = resident_kib_of_files_in(dir.path());
    // 11 MiB were scanned; without the release they all stay resident.
    assert!(kib < 2048, "{kib} KiB of mapped segments still resident");
    // And the data reads back through the maps.
    assert_eq!(db.get("session:00000042")?, Some(value.clone()));
    assert_eq!(db.get("session:00011999")?, Some(value));
    Ok(())
}
