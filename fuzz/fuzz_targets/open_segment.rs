//! Arbitrary bytes as the active segment (and, split, as a sealed segment
//! plus its hint): open must never panic or hang, and whatever it returns
//! must read back without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A valid segment header (see docs/format.md).
fn header(id: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(b"CAIRNSEG");
    h.extend_from_slice(&1u16.to_le_bytes());
    h.push(1);
    h.extend_from_slice(&[0u8; 5]);
    h.extend_from_slice(&u64::from(id).to_le_bytes());
    h.extend_from_slice(&[0u8; 4]);
    let crc = crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mode_byte, rest) = data.split_first().unwrap_or((&0, &[]));
    let salvage = mode_byte & 1 == 1;
    let with_header = mode_byte & 2 == 2;
    let two_segments = mode_byte & 4 == 4;
    let mut seg = if with_header { header(1) } else { Vec::new() };
    if two_segments && rest.len() > 2 {
        let split = rest.len() / 2;
        seg.extend_from_slice(&rest[..split]);
        std::fs::write(dir.path().join("0000000001.seg"), &seg).expect("write");
        std::fs::write(dir.path().join("0000000001.hint"), &rest[split..]).expect("write");
        std::fs::write(dir.path().join("0000000002.seg"), header(2)).expect("write");
    } else {
        seg.extend_from_slice(rest);
        std::fs::write(dir.path().join("0000000001.seg"), &seg).expect("write");
    }
    let mode = if salvage { cairn::RecoveryMode::Salvage } else { cairn::RecoveryMode::Strict };
    if let Ok(db) = cairn::Options::new().recovery_mode(mode).open(dir.path()) {
        for item in db.scan_prefix("") {
            let _ = item;
        }
        let _ = db.put("after", "open");
        assert_eq!(db.get("after").ok().flatten().as_deref(), Some(&b"open"[..]));
    }
});
