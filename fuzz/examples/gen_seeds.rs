//! Writes the checked-in seed corpus, `fuzz/seeds/<target>/`, and runs the
//! `open_dir` and `ops` seeds through their targets' bodies.
//!
//! `cd fuzz && cargo run --example gen_seeds`
//!
//! Store files made by cairn itself carry random salts, so a rerun writes
//! different bytes with the same structure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn::vfs::Vfs;
use cairn::{Batch, CompactionStop, ManualClock, Options, SyncPolicy};
use cairn_fuzz::dir::DirInput;
use cairn_fuzz::format::{self, kind, HintEntry, Record};
use cairn_fuzz::ops::{tag, Enc};
use cairn_sim::SimFs;

fn out_dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(out_dir(target).join(name), bytes).expect("write seed");
}

/// A segment body (after the header) with one of each record kind.
fn sample_segment(id: u32, salt: u32) -> Vec<u8> {
    let mut s = format::segment_header(id, salt, 0).to_vec();
    for r in [
        Record::put(1, b"a", b"b"),
        Record::put(2, b"ttl", b"x").expiring(1_700_000_100_000),
        Record::tombstone(3, b"gone"),
        Record::batch_begin(4, 2),
        Record::put(5, b"b1", b"1").in_batch(),
        Record::tombstone(6, b"a").in_batch(),
        Record::batch_commit(7, 4, 2),
    ] {
        format::push_record(&mut s, salt, &r);
    }
    let synced = s.len() as u64;
    format::push_record(&mut s, salt, &Record::sync_mark(synced));
    format::push_record(&mut s, salt, &Record::put(8, b"c", b"42"));
    s
}

fn record_decoder_seeds() {
    let salt = 0x1234_5678u32;
    let seg = sample_segment(1, salt);
    let prefix = |flags: u8, offset: u64| {
        let mut v = vec![flags];
        v.extend_from_slice(&salt.to_le_bytes());
        v.extend_from_slice(&offset.to_le_bytes());
        v
    };
    // One record at offset 32.
    let mut a = prefix(0, 32);
    a.extend_from_slice(&seg[32..66]);
    write("record_decoder", "put_record", &a);
    // A whole segment body behind a generated header (sealed, then active
    // with a torn tail and zeros).
    let mut b = prefix(1, 32);
    b.extend_from_slice(&seg[32..]);
    write("record_decoder", "segment_sealed", &b);
    let mut c = prefix(1 | 4, 32);
    c.extend_from_slice(&seg[32..seg.len() - 5]);
    c.extend_from_slice(&[0u8; 64]);
    write("record_decoder", "segment_active_torn", &c);
    // Damage in the middle, with checksums recomputed.
    let mut d = prefix(1 | 2, 32);
    let mut body = seg[32..].to_vec();
    body[70] ^= 0x40;
    d.extend_from_slice(&body);
    write("record_decoder", "segment_damaged_fixed", &d);
}

fn hint_parser_seeds(real: &[(String, Vec<u8>)]) {
    // A hint cairn wrote, with the segment it describes.
    for (name, bytes) in real {
        if let Some(stem) = name.strip_suffix(".hint") {
            let id: u32 = stem.parse().expect("id");
            let seg = real
                .iter()
                .find(|(n, _)| *n == format!("{stem}.seg"))
                .map(|(_, b)| b)
                .expect("segment of a hint");
            let mut v = vec![0u8];
            v.extend_from_slice(&id.to_le_bytes());
            v.extend_from_slice(&(seg.len() as u64).to_le_bytes());
            v.extend_from_slice(&seg[12..16]);
            v.extend_from_slice(bytes);
            write("hint_parser", &format!("real_{stem}"), &v);
            let mut w = v.clone();
            w[0] = 2; // fix-up mode
            write("hint_parser", &format!("real_fixup_{stem}"), &w);
            break;
        }
    }
    // An encoded hint, and the structured mode.
    let e = |k: &[u8], off: u64| HintEntry {
        seq: off,
        expires: 0,
        offset: off,
        key: k.to_vec(),
        value_len: 3,
        kind: kind::PUT,
    };
    let hint = format::encode_hint(3, 99, 4096, 9, &[e(b"a", 32), e(b"bb", 100)]);
    let mut v = vec![0u8];
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&4096u64.to_le_bytes());
    v.extend_from_slice(&99u32.to_le_bytes());
    v.extend_from_slice(&hint);
    write("hint_parser", "encoded", &v);
    let mut s = vec![1u8 | 4];
    s.extend_from_slice(&3u32.to_le_bytes());
    s.extend_from_slice(&4096u64.to_le_bytes());
    s.extend_from_slice(&99u32.to_le_bytes());
    s.extend_from_slice(&[
        1, 0, 32, 0, 3, 0, b'a', 2, 1, 100, 0, 0, 7, b'b', b'c', 9, 200,
    ]);
    write("hint_parser", "structured", &s);
}

/// A small store made by cairn: several sealed segments with hints, an
/// active segment, and (when `stop`) a compaction stopped after its
/// manifest. Returns its files.
fn real_store(stop: Option<CompactionStop>) -> Vec<(String, Vec<u8>)> {
    let sim = SimFs::new();
    let clock = ManualClock::new(1_700_000_000_000);
    let dir = Path::new("/seed/db");
    let db = Options::new()
        .vfs(Arc::new(sim.clone()))
        .deterministic(true)
        .auto_compact(false)
        .expiry_sweep_interval_ms(0)
        .clock(clock.clone())
        .sync_policy(SyncPolicy::Never)
        .max_segment_bytes(4096)
        .compaction_stop(stop)
        .open(dir)
        .expect("open");
    for i in 0..60u32 {
        db.put(
            format!("key{}", i % 12),
            format!("value {i} {}", "x".repeat(40)),
        )
        .expect("put");
        if i % 7 == 0 {
            db.delete(format!("key{}", (i + 3) % 12)).expect("delete");
        }
        if i % 11 == 0 {
            db.put_with_ttl(format!("ttl{i}"), "t", Duration::from_secs(60))
                .expect("ttl");
            db.incr("counter", 5).expect("incr");
        }
        if i % 13 == 0 {
            db.write_batch(Batch::new().put("b1", format!("{i}")).delete("key1"))
                .expect("batch");
        }
    }
    if stop.is_some() {
        assert!(db.compact().is_err(), "the compaction should stop");
    }
    db.put("last", "unsynced tail").expect("put");
    drop(db);
    let mut files: Vec<(String, Vec<u8>)> = sim
        .list(dir)
        .expect("list")
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| {
            let b = sim.file_bytes(&dir.join(&n)).expect("bytes");
            (n, b)
        })
        .collect();
    files.sort();
    files
}

/// Encodes store files in the `open_dir` format.
fn as_dir_input(flags: u8, files: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut parts = Vec::new();
    for (name, bytes) in files {
        let d = if name == "COMPACTION" {
            3
        } else {
            let (stem, t) = match name.split_once('.') {
                Some((s, "seg")) => (s, 1u8),
                Some((s, "hint")) => (s, 2u8),
                _ => continue,
            };
            let id: u32 = stem.parse().ok()?;
            if !(1..=8).contains(&id) {
                return None;
            }
            t | ((id - 1) as u8) << 2
        };
        parts.push((d, bytes.clone()));
    }
    Some(DirInput::encode(flags, &parts))
}

fn open_dir_seeds(real: &[(String, Vec<u8>)], stopped: &[(String, Vec<u8>)]) {
    let mut seeds = Vec::new();
    seeds.push((
        "real_store",
        as_dir_input(1 | 0x20, real).expect("ids 1..=8"),
    ));
    seeds.push((
        "real_store_compaction_manifest",
        as_dir_input(0, stopped).expect("ids 1..=8"),
    ));
    // Generated: a sealed segment with its hint (fixed up), and an active
    // one with preallocated zeros; checksums recomputed.
    let s1 = sample_segment(1, format::salt_for(1));
    let mut hint = vec![0u8; 56];
    let entries = [HintEntry {
        seq: 8,
        expires: 0,
        offset: (s1.len() - 34) as u64,
        key: b"c".to_vec(),
        value_len: 2,
        kind: kind::PUT,
    }];
    let h = format::encode_hint(1, format::salt_for(1), s1.len() as u64, 8, &entries);
    hint.clear();
    hint.extend_from_slice(&h);
    let mut s2 = sample_segment(2, format::salt_for(2));
    for b in &mut s2[..32] {
        *b = 0;
    }
    seeds.push((
        "generated",
        DirInput::encode(
            2 | 4 | 0x30,
            &[
                (0, s1[32..].to_vec()),
                (2, hint),
                (0x80 | 4, s2[32..].to_vec()),
                (3 | 0x20, vec![7]),
            ],
        ),
    ));
    for (name, bytes) in seeds {
        cairn_fuzz::open_dir::run(&bytes);
        write("open_dir", name, &bytes);
    }
}

fn ops_seeds() {
    let k = |i: u8| i;
    let v = Enc::lit;
    let seeds: Vec<(&str, Enc)> = vec![
        (
            "basic_always",
            Enc::new(0)
                .op(tag::PUT, &[&[k(1)][..], &v(b"one")].concat())
                .op(tag::GET, &[k(1)])
                .op(tag::PUT, &[k(0), 200])
                .op(tag::INCR, &[k(2), 105])
                .op(tag::INCR, &[k(2), 200])
                .op(tag::CAS, &[k(1), 1, 1, 201])
                .op(tag::CAS, &[k(3), 0, 0])
                .op(tag::DELETE, &[k(1)])
                .op(tag::DELETE, &[k(1)])
                .op(tag::SCAN, &[1])
                .op(tag::OVERSIZED_KEY, &[]),
        ),
        (
            "ttl_never",
            Enc::new(1)
                .op(tag::PUT_TTL, &[k(4), 202, 50])
                .op(tag::PUT_IF_ABSENT, &[k(4), 203, 0])
                .op(tag::TTL, &[k(4)])
                .op(tag::ADVANCE, &[30])
                .op(tag::PERSIST, &[k(4)])
                .op(tag::EXPIRE, &[k(4), 10])
                .op(tag::ADVANCE, &[20])
                .op(tag::GET, &[k(4)])
                .op(tag::SWEEP, &[])
                .op(tag::SYNC, &[])
                .op(tag::PUT, &[k(5), 204])
                .op(tag::CRASH, &[2, 7, 0]),
        ),
        (
            "batch_compact_reopen",
            Enc::new(0)
                .op(tag::PUT, &[k(8), 133])
                .op(tag::PUT, &[k(9), 134])
                .op(tag::BATCH, &[3, 1, k(1), 205, 0, k(8), 2, k(2), 206, 40])
                .op(tag::PUT, &[k(8), 133])
                .op(tag::COMPACT, &[])
                .op(tag::REOPEN, &[])
                .op(tag::COMPACT_SOME, &[0xff])
                .op(tag::REOPEN_READ_ONLY, &[]),
        ),
        (
            "transactions",
            Enc::new(0)
                .op(tag::PUT, &[k(1), 205])
                // Bit 7 of the count: a Db::transaction that reads first.
                .op(
                    tag::BATCH,
                    &[0x80 | 3, 1, k(1), 206, 0, k(2), 2, k(1), 207, 30],
                )
                .op(tag::GET, &[k(1)])
                .op(tag::BATCH, &[0x80 | 1, 0, k(1)])
                .op(tag::BATCH, &[0x80 | 2, 1, k(3), 208, 2, k(4), 209, 0])
                .op(tag::PUT, &[k(5), 210])
                .op(tag::CRASH, &[2, 3, 0]),
        ),
        (
            "crash_points",
            Enc::new(1 | 4)
                .op(tag::PUT, &[k(1), 210])
                .op(tag::SYNC, &[])
                .op(tag::CRASH_AT, &[3, 3, 9])
                .op(tag::PUT, &[k(2), 211])
                .op(tag::PUT, &[k(3), 133])
                .op(tag::PUT, &[k(4), 134])
                .op(tag::PUT, &[k(5), 212])
                .op(tag::FAULT, &[1, 2])
                .op(tag::PUT, &[k(6), 213])
                .op(tag::SYNC, &[])
                .op(tag::CRASH, &[4, 1, 0x80 | 0x20 | 3]),
        ),
    ];
    for (name, e) in seeds {
        cairn_fuzz::ops::run(&e.0);
        write("ops", name, &e.0);
    }
    // Long pseudo-random sequences (every byte string decodes), so that
    // the fuzzer starts with long inputs too.
    for (name, config, seed) in [("random_always", 0u8, 1u64), ("random_never", 1, 2)] {
        let mut rng = cairn_sim::Rng::new(seed);
        let mut bytes = vec![config];
        bytes.extend((0..600).map(|_| rng.next_u64() as u8));
        cairn_fuzz::ops::run(&bytes);
        write("ops", name, &bytes);
    }
}

/// Multibulk encoding of one command.
fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Request streams as clients send them: pipelines as redis-benchmark's
/// `-P 16`, inline commands with quoting, and the error cases. Each is
/// prefixed by the target's flags byte and split point.
fn resp_parser_seeds() {
    let seed = |name: &str, flags: u8, split: u16, stream: &[u8]| {
        let mut bytes = vec![flags];
        bytes.extend_from_slice(&split.to_le_bytes());
        bytes.extend_from_slice(stream);
        write("resp_parser", name, &bytes);
    };
    let mut pipeline = Vec::new();
    for command in [
        &[&b"SET"[..], b"key:000001", b"xxx"][..],
        &[b"GET", b"key:000001"],
        &[b"INCR", b"counter"],
        &[b"PING"],
    ] {
        pipeline.extend(multibulk(command).repeat(4));
    }
    seed("pipeline_benchmark", 1, 37, &pipeline);
    let pairs: Vec<Vec<u8>> = (0..6usize)
        .flat_map(|i| [format!("k{i}").into_bytes(), vec![b'v'; i]])
        .collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    mset.extend(pairs.iter().map(Vec::as_slice));
    seed("pipeline_mset", 1, 100, &multibulk(&mset));
    let empty = [
        &b"*0\r\n*-1\r\n"[..],
        &multibulk(&[b"SET", b"", b"a\r\n\0b"]),
        b"\r\n",
    ]
    .concat();
    seed("empty_and_binary", 1, 9, &empty);
    seed(
        "inline",
        1,
        5,
        b"PING\r\nSET k v\r\n\r\nECHO \"a\\x41\\n\\\"\" 'b\\'c'\nGET k\r\n",
    );
    seed("inline_unbalanced", 1, 3, b"ECHO \"abc\r\n");
    let auth = vec![b'p'; 17000];
    let unauthenticated = [multibulk(&[&b"x"[..]; 11]), multibulk(&[b"AUTH", &auth])].concat();
    seed("unauthenticated", 0, 4, &unauthenticated);
    let too_long = [&b"*1\r\n$40\r\n"[..], &[b'x'; 40], b"\r\n*1\r\nfoo\r\n"].concat();
    seed("errors_small_limits", 3, 6, &too_long);
    seed("lenient", 1, 2, b"*1\rX$4\r\nPINGXY*1\r\n$4\r\nPING\r\n");
    let set = multibulk(&[b"SET", b"k", &[b'v'; 100]]);
    seed("partial", 1, 20, &set[..set.len() - 30]);
}

fn main() {
    let real = real_store(None);
    let stopped = real_store(Some(CompactionStop::AfterManifest));
    record_decoder_seeds();
    hint_parser_seeds(&real);
    open_dir_seeds(&real, &stopped);
    ops_seeds();
    resp_parser_seeds();
    eprintln!("seeds written to {}", out_dir("").display());
}
