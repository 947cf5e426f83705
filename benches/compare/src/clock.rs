//! A cheap per-operation clock.
//!
//! `Instant::now()` costs about 60 ns on the VMs this runs on, as much as a
//! whole in-memory read, so timing every operation with it would hide the
//! differences being measured. On x86_64 the time-stamp counter costs about
//! 13 ns; it is converted to nanoseconds with a rate calibrated against
//! `Instant` at start-up (the TSC of current x86_64 CPUs runs at a constant
//! rate). Elsewhere `Instant` is used.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time, in clock ticks.
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a counter; it touches no memory and is
        // present on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Nanoseconds per tick.
pub fn ns_per_tick() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let (t0, c0) = (Instant::now(), ticks());
        std::thread::sleep(Duration::from_millis(100));
        let (t1, c1) = (Instant::now(), ticks());
        (t1 - t0).as_nanos() as f64 / (c1.saturating_sub(c0)).max(1) as f64
    })
}

/// Ticks between two readings, as nanoseconds (saturating at u32::MAX).
#[inline]
pub fn ns(from: u64, to: u64, rate: f64) -> u32 {
    let n = to.saturating_sub(from) as f64 * rate;
    if n >= u32::MAX as f64 {
        u32::MAX
    } else {
        n as u32
    }
}
