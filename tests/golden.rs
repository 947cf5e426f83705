//! Golden format fixtures: the bytes cairn writes for a fixed sequence of
//! operations are pinned in `tests/fixtures/v3/`, and that directory must
//! keep opening with the same contents. A change that breaks either is a
//! format change: bump the version in docs/format.md and keep reading the
//! older versions.
//!
//! `tests/fixtures/v1-close-marks/` holds the same operations as format
//! version 1 wrote them: the version-2 fixture must be exactly it with the
//! version field changed (version 2 only added record flags, which these
//! operations do not use). `tests/fixtures/v1/` holds them as written
//! before a clean close ended the active segment with two close marks
//! (sync marks that vouch for every byte before them). Both must keep
//! opening.
//!
//! `tests/fixtures/v2-expiry/` pins the records version 2 added: puts
//! flagged expiry-only (`expire`, `persist`) and a tombstone flagged
//! expired (the expiry sweep). `tests/fixtures/v2/` and
//! `tests/fixtures/v2-expiry/` are the same operations as version 2
//! wrote them; `v3/` and `v3-expiry/` as version 3 writes them, which
//! differ only in the version field and the *replaces* flag (`0x08`) on
//! the records whose key had an entry. All must keep opening.
//!
//! `tests/fixtures/v3-checkpoint/` is the `v3` store with the index
//! checkpoint (`index.ckpt`, checkpoint format 2) a clean close wrote: it
//! must open through the checkpoint with the same contents. Its hash seed
//! is random, so its slots are not byte-reproducible; `CAIRN_BLESS=1`
//! writes it anew (the segment must stay the `v3` one).
//! `tests/fixtures/v2-checkpoint/` holds a checkpoint of format 1, which
//! this build ignores: the store opens from its segment.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::{Batch, ManualClock, Options, SyncPolicy, Ttl};
use common::copy_dir;
use common::format::{crc32c_bitwise, kind, le_u32, le_u64};

const NOW_MS: u64 = 1_700_000_000_000;

/// The store as written before clean closes added close marks.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// The store as format version 1 wrote it, closed with close marks.
fn closed_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-close-marks")
}

/// The store as the writer writes it now (format version 2).
fn v2_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
}

/// The expiry records of format version 2, as the writer writes them now.
fn v2_expiry_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-expiry")
}

/// The v2 store with the index checkpoint a clean close wrote.
fn checkpoint_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3-checkpoint")
}

/// The store with a checkpoint of format 1 (the build before).
fn v1_checkpoint_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-checkpoint")
}

/// The fixture of [`write_fixture`] at version 3.
fn v3_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3")
}

/// The fixture of [`write_expiry_fixture`] at version 3.
fn v3_expiry_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3-expiry")
}

/// `seg` (a normalized segment of version 3) as version 2 wrote it: the
/// version field 2 and no *replaces* flag.
fn as_version_2(seg: &[u8]) -> Vec<u8> {
    let mut out = seg.to_vec();
    out[8..10].copy_from_slice(&2u16.to_le_bytes());
    let mut at = 32usize;
    while at < out.len() {
        out[at + 5] &= !0x08;
        at += 32 + le_u32(&out, at + 24) as usize + le_u32(&out, at + 28) as usize;
    }
    out
}

/// The fixed operations behind the fixture.
fn write_fixture(dir: &Path) {
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .clock(ManualClock::new(NOW_MS))
        .expiry_sweep_interval_ms(0)
        .open(dir)
        .expect("open");
    db.put("alpha", "1").expect("put");
    db.put("beta", "two").expect("put");
    db.put("", "empty key").expect("put");
    db.put("empty-value", "").expect("put");
    db.put_with_ttl("ttl", "expires at NOW+60s", Duration::from_secs(60))
        .expect("put");
    assert_eq!(db.incr("counter", 41).expect("incr"), 41);
    assert_eq!(db.incr("counter", 1).expect("incr"), 42);
    assert!(db.delete("beta").expect("delete"));
    db.write_batch(
        Batch::new()
            .put("b1", "x")
            .delete("alpha")
            .put("b2", [0u8, 255, 7]),
    )
    .expect("batch");
    db.close().expect("close");
}

/// The expiry operations behind the version-2 expiry fixture.
fn write_expiry_fixture(dir: &Path) {
    let clock = ManualClock::new(NOW_MS);
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .clock(clock.clone())
        .expiry_sweep_interval_ms(0)
        .open(dir)
        .expect("open");
    db.put_with_ttl("session", "s", Duration::from_secs(10))
        .expect("put");
    assert!(db
        .expire("session", Duration::from_secs(60))
        .expect("expire"));
    db.put_with_ttl("kept", "k", Duration::from_secs(10))
        .expect("put");
    assert!(db.persist("kept").expect("persist"));
    clock.advance(Duration::from_secs(61));
    assert_eq!(db.sweep_expired(), 1);
    db.close().expect("close");
}

/// Checks every checksum the way docs/format.md specifies it, then zeroes
/// the salt and the checksums, which differ from run to run.
fn verify_and_normalize(seg: &[u8]) -> Vec<u8> {
    verify_and_normalize_version(seg, 1)
}

/// [`verify_and_normalize`] of a segment of format `version`.
fn verify_and_normalize_version(seg: &[u8], version: u16) -> Vec<u8> {
    let mut out = seg.to_vec();
    assert_eq!(&seg[0..8], b"CAIRNSEG");
    assert_eq!(u16::from_le_bytes([seg[8], seg[9]]), version, "version");
    assert_eq!(seg[10], 1, "checksum algorithm id 1 = CRC-32C");
    assert_eq!(seg[11], 0, "flags");
    assert_eq!(
        le_u32(seg, 28),
        crc32c_bitwise(&seg[0..28]),
        "header checksum"
    );
    let salt = le_u32(seg, 12);
    out[12..16].fill(0);
    out[28..32].fill(0);
    let mut at = 32usize;
    while at < seg.len() {
        let key_len = le_u32(seg, at + 24) as usize;
        let value_len = le_u32(seg, at + 28) as usize;
        let end = at + 32 + key_len + value_len;
        let mut covered = Vec::new();
        covered.extend_from_slice(&salt.to_le_bytes());
        covered.extend_from_slice(&(at as u64).to_le_bytes());
        covered.extend_from_slice(&seg[at + 4..end]);
        assert_eq!(
            le_u32(seg, at),
            crc32c_bitwise(&covered),
            "record checksum at {at}"
        );
        out[at..at + 4].fill(0);
        at = end;
    }
    assert_eq!(at, seg.len(), "records end exactly at the end of the file");
    out
}

/// Reads segment 1 of `dir` after `write` made it there, blessing the
/// fixture in `fixture` first when `CAIRN_BLESS` is set; returns what was
/// written and the fixture.
fn written_and_golden(write: fn(&Path), fixture: &Path) -> (Vec<u8>, Vec<u8>) {
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path());
    let written = std::fs::read(t.path().join("0000000001.seg")).expect("read");
    let golden_path = fixture.join("0000000001.seg");
    if std::env::var_os("CAIRN_BLESS").is_some() {
        std::fs::create_dir_all(fixture).expect("mkdir");
        std::fs::write(&golden_path, &written).expect("bless");
    }
    let golden = std::fs::read(&golden_path).expect("golden fixture (CAIRN_BLESS=1 writes it)");
    (written, golden)
}

#[test]
fn writer_produces_the_golden_bytes() {
    let (written, golden) = written_and_golden(write_fixture, &v3_fixture_dir());
    assert_eq!(
        verify_and_normalize_version(&written, 3),
        verify_and_normalize_version(&golden, 3),
        "the segment bytes changed: that is a format change"
    );
    // The first record: put("alpha", "1") with sequence 1, no expiry.
    let r = &golden[32..];
    assert_eq!(r[4], kind::PUT, "kind put");
    assert_eq!(le_u64(r, 8), 1, "sequence");
    assert_eq!(le_u64(r, 16), 0, "expiry");
    assert_eq!(le_u32(r, 24), 5, "key length");
    assert_eq!(le_u32(r, 28), 1, "value length");
    assert_eq!(&r[32..38], b"alpha1");
}

/// The header of a new segment, byte for byte (salt and checksum aside):
/// version 3, CRC-32C, no flags.
#[test]
fn version_3_header_bytes() {
    let seg = std::fs::read(v3_fixture_dir().join("0000000001.seg")).expect("fixture");
    assert_eq!(&seg[0..8], b"CAIRNSEG", "magic");
    assert_eq!(&seg[8..12], &[3, 0, 1, 0], "version 3 (LE), CRC-32C, flags");
    assert_eq!(le_u64(&seg, 16), 1, "segment id");
    assert_eq!(le_u32(&seg, 24), 0, "reserved");
    assert_eq!(
        le_u32(&seg, 28),
        crc32c_bitwise(&seg[0..28]),
        "header checksum"
    );
}

/// Version 2 changed nothing the version-1 operations write but the
/// version field: the same operations give the version-1 bytes with 2 in
/// bytes 8..10.
#[test]
fn version_2_is_version_1_plus_flags() {
    let v1 = std::fs::read(closed_fixture_dir().join("0000000001.seg")).expect("v1 fixture");
    let v2 = std::fs::read(v2_fixture_dir().join("0000000001.seg")).expect("v2 fixture");
    let mut v2_as_v1 = verify_and_normalize_version(&v2, 2);
    v2_as_v1[8..10].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(v2_as_v1, verify_and_normalize(&v1));
}

/// Version 3 changed nothing but the version field and the *replaces*
/// flag, on exactly the records whose key had an entry: an incr of an
/// existing counter, a delete, a batch's delete.
#[test]
fn version_3_is_version_2_plus_replaces() {
    for (v2, v3, replacing) in [
        (v2_fixture_dir(), v3_fixture_dir(), 3),
        (v2_expiry_fixture_dir(), v3_expiry_fixture_dir(), 3),
    ] {
        let v2 = std::fs::read(v2.join("0000000001.seg")).expect("v2 fixture");
        let v3 = std::fs::read(v3.join("0000000001.seg")).expect("v3 fixture");
        let v3 = verify_and_normalize_version(&v3, 3);
        assert_eq!(as_version_2(&v3), verify_and_normalize_version(&v2, 2));
        let mut flagged = 0;
        let mut at = 32usize;
        while at < v3.len() {
            flagged += usize::from(v3[at + 5] & 0x08 != 0);
            at += 32 + le_u32(&v3, at + 24) as usize + le_u32(&v3, at + 28) as usize;
        }
        assert_eq!(flagged, replacing);
    }
}

/// The records version 2 added, pinned: the flags byte (5) of each.
#[test]
fn writer_produces_the_golden_expiry_bytes() {
    let (written, golden) = written_and_golden(write_expiry_fixture, &v3_expiry_fixture_dir());
    assert_eq!(
        verify_and_normalize_version(&written, 3),
        verify_and_normalize_version(&golden, 3),
        "the segment bytes changed: that is a format change"
    );
    // kind, flags, key of each record after the header, in order.
    let mut got = Vec::new();
    let mut at = 32usize;
    while at < golden.len() {
        let (k, v) = (
            le_u32(&golden, at + 24) as usize,
            le_u32(&golden, at + 28) as usize,
        );
        let key = golden[at + 32..at + 32 + k].to_vec();
        got.push((
            golden[at + 4],
            golden[at + 5],
            key,
            le_u64(&golden, at + 16),
        ));
        at += 32 + k + v;
    }
    let s = |x: &str| x.as_bytes().to_vec();
    assert_eq!(
        got,
        vec![
            (kind::PUT, 0, s("session"), NOW_MS + 10_000),
            (kind::PUT, 0x0a, s("session"), NOW_MS + 60_000),
            (kind::PUT, 0, s("kept"), NOW_MS + 10_000),
            (kind::PUT, 0x0a, s("kept"), 0),
            (kind::TOMBSTONE, 0x0c, s("session"), 0),
            (kind::SYNC_MARK, 0, Vec::new(), 0),
            (kind::SYNC_MARK, 0, Vec::new(), 0),
        ]
    );
}

/// The current fixture is the older one plus the two marks of the clean
/// close, both naming the older one's length.
#[test]
fn a_clean_close_adds_two_close_marks() {
    let old = std::fs::read(fixture_dir().join("0000000001.seg")).expect("v1 fixture");
    let new = std::fs::read(closed_fixture_dir().join("0000000001.seg")).expect("fixture");
    assert_eq!(new.len(), old.len() + 80);
    assert_eq!(
        verify_and_normalize(&new)[..old.len()],
        verify_and_normalize(&old)[..],
        "the same records before the marks"
    );
    for at in [old.len(), old.len() + 40] {
        let m = &new[at..at + 40];
        assert_eq!(m[4], kind::SYNC_MARK, "kind sync mark at {at}");
        assert_eq!(&m[5..8], &[0, 0, 0], "flags and reserved");
        assert_eq!(le_u64(m, 8), 0, "sequence");
        assert_eq!(le_u64(m, 16), 0, "expiry");
        assert_eq!((le_u32(m, 24), le_u32(m, 28)), (0, 8), "lengths");
        assert_eq!(le_u64(m, 32), old.len() as u64, "durable length");
    }
}

#[test]
fn golden_directory_opens_with_the_same_contents() {
    check_contents(&fixture_dir());
    check_contents(&closed_fixture_dir());
    check_contents(&v2_fixture_dir());
    check_contents(&v3_fixture_dir());
}

#[test]
fn golden_expiry_directory_opens_with_the_same_contents() {
    for fixture in [v2_expiry_fixture_dir(), v3_expiry_fixture_dir()] {
        check_expiry_contents(&fixture);
    }
}

fn check_expiry_contents(fixture: &Path) {
    let t = tempfile::tempdir().expect("tempdir");
    copy_dir(fixture, t.path());
    // The clock as it was before anything expired: the tombstone, not the
    // clock, keeps "session" gone; "kept" lost its expiry.
    let db = Options::new()
        .clock(ManualClock::new(NOW_MS))
        .read_only(true)
        .open(t.path())
        .expect("open golden");
    assert_eq!(db.get("session").expect("get"), None, "expired, logged");
    assert_eq!(db.get("kept").expect("get").as_deref(), Some(&b"k"[..]));
    assert_eq!(db.ttl("kept").expect("ttl"), Ttl::Persistent);
    assert_eq!(db.len().expect("len"), 1);
}

fn check_contents(fixture: &Path) -> cairn::CheckpointUse {
    let t = tempfile::tempdir().expect("tempdir");
    copy_dir(fixture, t.path());
    let clock = ManualClock::new(NOW_MS + 1_000);
    let db = Options::new()
        .clock(clock.clone())
        .read_only(true)
        .open(t.path())
        .expect("open golden");
    assert_eq!(db.get("alpha").expect("get"), None, "deleted in the batch");
    assert_eq!(db.get("beta").expect("get"), None, "deleted");
    assert_eq!(db.get("").expect("get").as_deref(), Some(&b"empty key"[..]));
    assert_eq!(db.get("empty-value").expect("get"), Some(Vec::new()));
    assert_eq!(db.get("counter").expect("get").as_deref(), Some(&b"42"[..]));
    assert_eq!(db.get("b1").expect("get").as_deref(), Some(&b"x"[..]));
    assert_eq!(db.get("b2").expect("get"), Some(vec![0u8, 255, 7]));
    assert_eq!(
        db.ttl("ttl").expect("ttl"),
        Ttl::Expires(Duration::from_secs(59))
    );
    assert_eq!(db.len().expect("len"), 6);
    clock.advance(Duration::from_secs(59));
    assert_eq!(db.get("ttl").expect("get"), None, "expired at NOW+60s");
    assert_eq!(db.len().expect("len"), 5);
    db.recovery_report().checkpoint
}

#[test]
fn golden_checkpoint_opens_through_it_with_the_same_contents() {
    let fixture = checkpoint_fixture_dir();
    if std::env::var_os("CAIRN_BLESS").is_some() {
        let t = tempfile::tempdir().expect("tempdir");
        copy_dir(&v3_fixture_dir(), t.path());
        let db = Options::new()
            .clock(ManualClock::new(NOW_MS))
            .expiry_sweep_interval_ms(0)
            .open(t.path())
            .expect("open");
        db.close().expect("close");
        std::fs::create_dir_all(&fixture).expect("mkdir");
        for name in ["0000000001.seg", "index.ckpt"] {
            std::fs::copy(t.path().join(name), fixture.join(name)).expect("bless");
        }
    }
    // The segment is the v3 fixture's: the checkpoint covers it as it is.
    assert_eq!(
        std::fs::read(fixture.join("0000000001.seg")).expect("fixture"),
        std::fs::read(v3_fixture_dir().join("0000000001.seg")).expect("v3 fixture")
    );
    let ckpt = std::fs::read(fixture.join("index.ckpt")).expect("checkpoint fixture");
    assert_eq!(&ckpt[0..8], b"CAIRNIDX", "magic");
    assert_eq!(u16::from_le_bytes([ckpt[8], ckpt[9]]), 2, "format version");
    assert_eq!(le_u32(&ckpt, 12), 1, "one segment");
    assert_eq!(
        le_u32(&ckpt, 48),
        0,
        "the active segment is the first listed"
    );
    let slots: u64 = (0..64).map(|i| le_u64(&ckpt, 52 + 8 * i)).sum();
    assert_eq!(slots, 6, "six keys");
    assert_eq!(le_u64(&ckpt, ckpt.len() - 16), 6, "footer count");
    assert_eq!(&ckpt[ckpt.len() - 8..ckpt.len() - 4], b"IEND");
    // Every shard's cut is the segment's data length (a clean close).
    let seg_len = std::fs::metadata(fixture.join("0000000001.seg"))
        .expect("segment")
        .len();
    for i in 0..64 {
        assert_eq!(le_u64(&ckpt, 564 + 8 * i), seg_len, "cut of shard {i}");
    }
    assert_eq!(
        le_u32(&ckpt, 1076 + 56),
        crc32c_bitwise(&ckpt[..1076 + 56]),
        "header checksum"
    );
    assert_eq!(check_contents(&fixture), cairn::CheckpointUse::Used);
    // The fixtures without a checkpoint open from their segments; one of
    // checkpoint format 1 is not read.
    assert_eq!(
        check_contents(&v3_fixture_dir()),
        cairn::CheckpointUse::Missing
    );
    assert_eq!(
        check_contents(&v1_checkpoint_fixture_dir()),
        cairn::CheckpointUse::Incompatible
    );
}
