//! Helpers shared by the CLI's integration tests (`mod common;` in each):
//! running the real `cairn` binary and reading what it printed, and the
//! stores the tests start from. Each test binary uses a subset of them.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `cairn` with `args` and waits for it.
pub fn cairn(args: &[&str]) -> Output {
    cairn_in(Path::new("."), args)
}

/// Runs `cairn` with `args` in the working directory `cwd`.
pub fn cairn_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run cairn")
}

/// Runs `cairn` with `args`, writing `input` to its standard input.
pub fn cairn_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// What the command printed on standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What the command printed on standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, and both outputs, for an assertion's message.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// The exit code (the command was not killed by a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// `dir` as a command-line argument.
pub fn p(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

/// A closed store in `dir` with 100 records of 100 bytes over several
/// 4 KiB segments, keys `key000`..`key099`.
pub fn sealed_store(dir: &Path) {
    sealed_store_keyed(dir, |i| format!("key{i:03}"));
}

/// [`sealed_store`] with the keys `key(0)`..`key(99)`.
pub fn sealed_store_keyed(dir: &Path, key: impl Fn(u32) -> String) {
    let db = cairn::Options::new()
        .max_segment_bytes(4096)
        .auto_compact(false)
        .open(dir)
        .expect("open");
    for i in 0..100 {
        db.put(key(i), vec![b'x'; 100]).expect("put");
    }
    db.close().expect("close");
}
