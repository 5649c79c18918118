//! The process clock. By default the wall clock; `fix` makes it start at a
//! given instant and run on from there at real speed, so that a demo or a
//! browser test shows the same dates on every run (every timestamp the hub,
//! the live scenarios and the cockpits write comes from here).

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};

static FIXED: OnceLock<(DateTime<Utc>, Instant)> = OnceLock::new();

/// Starts the clock at `start` (once per process; false if it was fixed already).
pub fn fix(start: DateTime<Utc>) -> bool {
    FIXED.set((start, Instant::now())).is_ok()
}

/// Whether the clock was fixed.
pub fn is_fixed() -> bool {
    FIXED.get().is_some()
}

/// Now, to the millisecond (the precision of every output).
pub fn now() -> DateTime<Utc> {
    let t = match FIXED.get() {
        Some((start, since)) => *start + chrono::Duration::from_std(since.elapsed()).unwrap_or_default(),
        None => Utc::now(),
    };
    t.trunc_subsecs(3)
}

/// Now in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now().timestamp_millis().max(0) as u64
}
