//! Every read-only `cairn` command beside a writer in another process.
//!
//! A writer process (this test binary, run again as the ignored test
//! `live_writer_process`) puts, deletes and batches over a few thousand
//! keys with `SyncPolicy::EveryMillis(50)`, with automatic and explicit
//! compactions, while the test runs the `cairn` binary's read commands
//! against the same directory, one after the other: `get`, `ttl`, `scan`,
//! `export`, `stats`, `dump`, `verify`. Every run must succeed, and every
//! value seen must be one the writer wrote for its key (values are derived
//! from the key and a version number, so any value can be checked).
//!
//! Once at 1 MiB segments (many rolls and compactions) and once at the
//! default segment size. `CAIRN_LIVE_READS` sets the number of command
//! runs per size: the defaults (100 and 20) keep the test under a minute on
//! two cores; the long run is `CAIRN_LIVE_READS=1000` (about 2 minutes at
//! 1 MiB segments and 20 at the default size, in a debug build).

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::cairn;

/// Keys the writer uses: `k0000` ..
const KEYS: u64 = 3000;

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value the writer stores under `key` at version `ver`: the key, the
/// version, then letters that depend on both, `max_len` bytes at most.
fn value_for(key: &str, ver: u64, max_len: u64) -> String {
    let mut x = (fnv(key) ^ ver.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let len = 40 + (x % max_len.saturating_sub(40).max(1)) as usize;
    let mut s = format!("{key}:{ver}:");
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(b'a' + (x % 26) as u8));
    }
    s
}

/// Whether `value` is one the writer wrote for `key`.
fn check_value(key: &str, value: &str, max_len: u64) -> Result<(), String> {
    let mut parts = value.splitn(3, ':');
    let ok = parts.next() == Some(key)
        && parts
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|ver| value_for(key, ver, max_len) == value);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key {key:?} read as {:?}, which the writer never wrote for it",
            &value[..value.len().min(80)]
        ))
    }
}

/// The writer process's settings, passed in its environment.
struct WriterSetup {
    dir: PathBuf,
    segment_bytes: Option<u64>,
    max_value: u64,
}

/// The writer: runs only as the child process the tests start (the
/// environment names its store); on its own it does nothing.
#[test]
#[ignore = "the writer process of the live-read tests, started by them"]
fn live_writer_process() {
    let Ok(dir) = std::env::var("CAIRN_LIVE_WRITER_DIR") else {
        return;
    };
    let env_u64 = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let setup = WriterSetup {
        dir: PathBuf::from(dir),
        segment_bytes: env_u64("CAIRN_LIVE_SEGMENT_BYTES"),
        max_value: env_u64("CAIRN_LIVE_MAX_VALUE").unwrap_or(600),
    };
    run_writer(&setup);
}

fn run_writer(setup: &WriterSetup) {
    let mut opts = cairn::Options::new()
        .sync_policy(cairn::SyncPolicy::EveryMillis(50))
        .auto_compact(true);
    if let Some(n) = setup.segment_bytes {
        opts = opts.max_segment_bytes(n);
    }
    let db = opts.open(&setup.dir).expect("writer: open");
    let stop = setup.dir.with_extension("stop");
    let ready = setup.dir.with_extension("ready");
    // Stops on its own if the test that started it is gone.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let parent = std::os::unix::process::parent_id();
    let orphaned = || std::os::unix::process::parent_id() != parent;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut ver = 0u64;
    let mut ops = 0u64;
    for op in 0u64.. {
        ops = op;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("k{:04}", x % KEYS);
        ver += 1;
        match x % 100 {
            0..=14 => {
                db.delete(&key).expect("writer: delete");
            }
            15..=19 => {
                let other = format!("k{:04}", (x >> 20) % KEYS);
                let batch = cairn::Batch::new()
                    .put(&key, value_for(&key, ver, setup.max_value))
                    .put(&other, value_for(&other, ver, setup.max_value));
                db.write_batch(batch).expect("writer: batch");
            }
            _ => db
                .put(&key, value_for(&key, ver, setup.max_value))
                .expect("writer: put"),
        }
        if op % 5_000 == 4_999 {
            db.compact().expect("writer: compact");
        }
        if op == 5_000 {
            std::fs::write(&ready, b"").expect("writer: ready file");
        }
        if op % 256 == 0 && (stop.exists() || Instant::now() > deadline || orphaned()) {
            break;
        }
    }
    let segments = db.stats().segments;
    db.close().expect("writer: close");
    let said = format!("{ops} operations, {segments} segments at the end");
    std::fs::write(setup.dir.with_extension("done"), said).expect("writer: done file");
}

/// The writer child, stopped (and waited for) when dropped.
struct Writer {
    child: Child,
    stop: PathBuf,
}

impl Writer {
    fn start(dir: &Path, segment_bytes: Option<u64>, max_value: u64) -> Writer {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "--exact",
            "live_writer_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CAIRN_LIVE_WRITER_DIR", dir)
        .env("CAIRN_LIVE_MAX_VALUE", max_value.to_string());
        if let Some(n) = segment_bytes {
            cmd.env("CAIRN_LIVE_SEGMENT_BYTES", n.to_string());
        }
        // The test harness's lines stay out of this run's output.
        cmd.stdout(std::process::Stdio::null());
        let child = cmd.spawn().expect("start the writer process");
        let w = Writer {
            child,
            stop: dir.with_extension("stop"),
        };
        let ready = dir.with_extension("ready");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the writer never got going");
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    /// Stops the writer, checks it exited cleanly, and returns what it
    /// says it did.
    fn finish(mut self) -> String {
        std::fs::write(&self.stop, b"").expect("stop file");
        let status = self.child.wait().expect("wait for the writer");
        assert!(status.success(), "the writer failed: {status}");
        std::fs::read_to_string(self.stop.with_extension("done")).unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, b"");
        if matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Checks every `{"key", "value"}` line of JSON output.
fn check_json_lines(out: &str, max_value: u64) -> Result<usize, String> {
    let mut n = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let (Some(k), Some(val)) = (v["key"].as_str(), v["value"].as_str()) else {
            return Err(format!("no key or value in {line}"));
        };
        check_value(k, val, max_value)?;
        n += 1;
    }
    Ok(n)
}

/// Runs read command number `i` (they take turns) and checks its output.
fn one_read(dir: &str, i: usize, max_value: u64) -> Result<(), String> {
    let key = format!("k{:04}", (i as u64 * 7919) % KEYS);
    let prefix = format!("k{}", i % 10);
    let (args, expect_found): (Vec<&str>, bool) = match i % 10 {
        0 => (vec!["get", dir, &key], false),
        1 => (vec!["scan", dir, &prefix, "--json"], true),
        2 => (vec!["stats", dir, "--json"], true),
        3 => (vec!["export", dir, "--prefix", &prefix], true),
        4 => (vec!["verify", dir], true),
        5 => (vec!["ttl", dir, &key], false),
        6 => (vec!["dump", dir, "--json", "--values"], true),
        7 => (vec!["get", dir, &key, "--json"], false),
        8 => (vec!["verify", dir, "--quick", "--json"], true),
        _ => (vec!["stats", dir], true),
    };
    let o = cairn(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let code = o.status.code().unwrap_or(-1);
    let not_found = code == 4 && !expect_found;
    if code != 0 && !not_found {
        return Err(format!("`cairn {}` exited {code}: {err}", args.join(" ")));
    }
    if not_found {
        return Ok(());
    }
    let checked = match (args[0], i % 10) {
        ("get", 0) => check_value(&key, &out, max_value),
        ("get", _) | ("scan", _) | ("export", _) => check_json_lines(&out, max_value).map(|_| ()),
        ("dump", _) => check_dump(&out, max_value),
        ("verify", _) if out.contains("CORRUPT") || out.contains("\"healthy\":false") => {
            Err(format!("verify found corruption:\n{out}"))
        }
        ("stats", 2) => serde_json::from_str::<serde_json::Value>(&out)
            .map_err(|e| e.to_string())
            .and_then(|v| match v["live_keys"].as_u64() {
                Some(n) if n <= KEYS => Ok(()),
                _ => Err(format!("stats --json: {out}")),
            }),
        _ => Ok(()),
    };
    checked.map_err(|e| format!("`cairn {}`: {e}", args.join(" ")))
}

/// Every put record `dump --json --values` prints holds a value the writer
/// wrote for its key.
fn check_dump(out: &str, max_value: u64) -> Result<(), String> {
    let mut puts = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if v["kind"] == "put" {
            let (Some(k), Some(val)) = (v["key"].as_str(), v["value"].as_str()) else {
                return Err(format!("no key or value in {line}"));
            };
            check_value(k, val, max_value)?;
            puts += 1;
        }
    }
    if puts == 0 {
        return Err("dump printed no put record".into());
    }
    Ok(())
}

/// Starts a writer with `segment_bytes` segments and runs the read commands
/// beside it; every one must succeed.
fn reads_beside_a_writer(segment_bytes: Option<u64>, max_value: u64, default_reads: usize) {
    // One writer at a time: the machine may have two cores.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reads = std::env::var("CAIRN_LIVE_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_reads);
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("store");
    let writer = Writer::start(&dir, segment_bytes, max_value);
    let d = dir.to_str().expect("utf-8 path");
    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 0..reads {
        if let Err(e) = one_read(d, i, max_value) {
            failures.push(e);
        }
    }
    let newest = cairn::segment_ids(&dir)
        .ok()
        .and_then(|s| s.last().copied())
        .unwrap_or(0);
    let elapsed = started.elapsed();
    let did = writer.finish();
    eprintln!(
        "{reads} reads beside a writer ({} segments): {} failures in {elapsed:?}; \
         the writer did {did}, and made {newest} segment files in all (seals and compaction outputs)",
        segment_bytes.map_or("default".to_string(), |n| format!("{n}-byte")),
        failures.len(),
    );
    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed; the first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    let report = cairn::verify(&dir, false).expect("verify after the writer closed");
    assert!(!report.has_corruption(), "{:?}", report.problems);
}

#[test]
fn every_read_command_succeeds_beside_a_writer_with_1_mib_segments() {
    reads_beside_a_writer(Some(1 << 20), 600, 100);
}

#[test]
fn every_read_command_succeeds_beside_a_writer_with_default_segments() {
    // Larger values, so that the writer seals 64 MiB segments and compacts
    // them while the commands run.
    reads_beside_a_writer(None, 8_000, 20);
}
