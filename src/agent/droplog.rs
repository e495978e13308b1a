//! Drop-log deduplication: one log line per dropped flow per window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::compile::droplog::FlowKey;

/// How long packets of one flow (same direction, addresses, protocol and
/// ports) are folded into the flow's first log line: TCP's SYN retransmits
/// (1, 2, 4, 8 s ...) stay one line for half a minute.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(30);

/// Remembers recently logged flows so retransmissions of one flow give one
/// log line per window. Bounded: at [`Dedupe::MAX_FLOWS`] remembered flows,
/// expired ones are swept, and if none expired everything is forgotten
/// (a flood then logs again rather than growing memory).
#[derive(Debug)]
pub struct Dedupe {
    window: Duration,
    seen: HashMap<FlowKey, Instant>,
}

impl Dedupe {
    /// Most flows remembered at once.
    pub const MAX_FLOWS: usize = 65_536;

    /// Folds packets of a flow seen within `window`.
    pub fn new(window: Duration) -> Dedupe {
        Dedupe {
            window,
            seen: HashMap::new(),
        }
    }

    /// True when `key` was not seen within the window before `now` (log it).
    pub fn first(&mut self, key: FlowKey, now: Instant) -> bool {
        if let Some(t) = self.seen.get(&key)
            && now.saturating_duration_since(*t) < self.window
        {
            return false;
        }
        if self.seen.len() >= Self::MAX_FLOWS {
            let window = self.window;
            self.seen
                .retain(|_, t| now.saturating_duration_since(*t) < window);
            if self.seen.len() >= Self::MAX_FLOWS {
                self.seen.clear();
            }
        }
        self.seen.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::compile::droplog::fixtures::{index, pkt};

    #[test]
    fn dedupe_folds_a_flow_within_the_window() {
        let ix = index();
        let a = ix
            .describe(&pkt(
                "nftpol drop ingress-group-AAAA",
                "10.0.0.1",
                "10.0.0.2",
                4000,
            ))
            .unwrap()
            .key();
        let b = ix
            .describe(&pkt(
                "nftpol drop ingress-group-AAAA",
                "10.0.0.1",
                "10.0.0.2",
                4001,
            ))
            .unwrap()
            .key();
        let mut d = Dedupe::new(Duration::from_secs(30));
        let t = Instant::now();
        assert!(d.first(a, t), "first packet of a flow is logged");
        assert!(
            !d.first(a, t + Duration::from_secs(1)),
            "its retransmit is not"
        );
        assert!(
            d.first(b, t + Duration::from_secs(1)),
            "another source port is another flow"
        );
        assert!(
            d.first(a, t + Duration::from_secs(31)),
            "after the window it logs again"
        );
    }
}
