//! Deadline-bounded polling: every wait in the tests ends, with a message naming what it
//! waited for.

use std::time::{Duration, Instant};

/// Polls `f` every `every` until it is true; panics naming `what` after
/// `timeout`. Returns the time it took.
pub fn wait_every(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
    start.elapsed()
}

/// [`wait_every`] polling every 50 ms.
pub fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool) -> Duration {
    wait_every(what, timeout, Duration::from_millis(50), f)
}
