//! What a child process reports for one (peer, workload, repetition).

use serde::{Deserialize, Serialize};

/// One measurement.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Peer name, as in `peers::ALL` or a `limit-*` name.
    pub peer: String,
    /// Workload name.
    pub workload: String,
    /// Repetition number, from 0.
    pub rep: u32,
    /// Keys in the loaded store (or the key space of the workload).
    pub keys: u64,
    /// Operations timed.
    pub ops: u64,
    /// Seconds the timed part took.
    pub secs: f64,
    /// `ops / secs`.
    pub ops_per_sec: f64,
    /// Latency percentiles of single operations, microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile, microseconds.
    pub p99_us: Option<f64>,
    /// 99.9th percentile, microseconds.
    pub p999_us: Option<f64>,
    /// Peak resident set of the process holding the data (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    /// Resident memory added by the store, per key (after open and warm-up).
    pub mem_per_key: Option<f64>,
    /// Disk blocks used by the store's directory after close, bytes.
    pub disk_bytes: Option<u64>,
    /// Settings the store ran with.
    pub settings: String,
    /// Where the store's mode is weaker than the workload asks.
    pub caveat: Option<String>,
    /// Anything extra (for example sessions per second), as text.
    pub note: Option<String>,
    /// `scale` only: bytes the store handed to `write(2)` and friends
    /// (`wchar` of `/proc/<pid>/io`) in the write phase before a kill -9;
    /// on an open after the kill, those of the write phase before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_bytes: Option<u64>,
    /// `scale` only: whether the page cache was dropped before the open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dropped: Option<bool>,
    /// Set when the run failed; the other fields are then meaningless.
    pub error: Option<String>,
}

/// Latency percentiles (µs) of a set of nanosecond samples.
pub fn percentiles(lat: &mut [u32]) -> (Option<f64>, Option<f64>, Option<f64>) {
    if lat.is_empty() {
        return (None, None, None);
    }
    lat.sort_unstable();
    let at = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len() - 1);
        Some(f64::from(lat[i]) / 1000.0)
    };
    (at(0.50), at(0.99), at(0.999))
}

/// A field of `/proc/<pid>/status`, in bytes (for the kB fields).
pub fn proc_status_kb(pid: &str, field: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Disk blocks used under `dir`, in bytes.
pub fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}
