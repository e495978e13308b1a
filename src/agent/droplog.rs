//! Drop logging in the agent: the NFLOG reader thread ([`DropLogFeed`]
//! starts it and hands it each applied ruleset's index) and deduplication
//! (one log line per dropped flow per window).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::metrics::{DropLabel, Metrics};
use crate::core::compile::droplog::{DroppedFlow, FlowKey, Index};

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

/// The drop-log index of the ruleset in the kernel, shared with the NFLOG
/// reader thread, which starts the first time a ruleset logs (so an agent
/// whose table never logs never binds the NFLOG group).
pub struct DropLogFeed {
    group: u16,
    index: Arc<RwLock<Arc<Index>>>,
    metrics: Arc<Metrics>,
    started: bool,
}

impl DropLogFeed {
    /// A feed for NFLOG group `group`; no thread yet.
    pub fn new(group: u16, metrics: Arc<Metrics>) -> DropLogFeed {
        DropLogFeed {
            group,
            index: Arc::new(RwLock::new(Arc::new(Index::default()))),
            metrics,
            started: false,
        }
    }

    /// Hands the applied ruleset's index to the reader, starting the reader
    /// the first time a ruleset logs.
    pub fn publish(&mut self, index: Index) {
        let logs = index.logs_any();
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
        if logs && !self.started {
            self.started = true;
            spawn_reader(self.group, self.index.clone(), self.metrics.clone());
        }
    }
}

/// Reads the NFLOG group on a thread of its own (blocking netlink reads, in
/// the agent's network namespace): counts every logged packet and logs each
/// dropped flow once per [`DEDUPE_WINDOW`].
fn spawn_reader(group: u16, index: Arc<RwLock<Arc<Index>>>, metrics: Arc<Metrics>) {
    let run = move || {
        let mut reader = match crate::kernel::nflog::Reader::bind(group) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "drop logging unavailable: cannot read the NFLOG group");
                return;
            }
        };
        tracing::info!(group, "reading dropped packets from NFLOG group");
        let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
        let mut overruns = 0;
        loop {
            let batch = match reader.recv() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, group, "reading the NFLOG group failed; drop logging stops");
                    return;
                }
            };
            if reader.overruns > overruns {
                overruns = reader.overruns;
                tracing::warn!(
                    group,
                    "NFLOG socket buffer overrun: some dropped packets were not logged"
                );
            }
            let ix = index.read().unwrap_or_else(PoisonError::into_inner).clone();
            for pkt in &batch.packets {
                let Some(flow) = ix.describe(pkt) else {
                    continue;
                };
                metrics
                    .dropped_packets
                    .get_or_create(&DropLabel {
                        namespace: flow.namespace.clone(),
                        pod: flow.pod.clone().unwrap_or_default(),
                        direction: flow.direction.as_str().into(),
                    })
                    .inc();
                if dedupe.first(flow.key(), Instant::now()) {
                    log_dropped_flow(&flow);
                }
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("nftpol-droplog".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "drop logging unavailable: cannot start its thread");
    }
}

/// The log line of one dropped flow (docs/drop-logging.md lists the fields).
fn log_dropped_flow(flow: &DroppedFlow) {
    tracing::info!(
        target: "nftpol::drop",
        direction = flow.direction.as_str(),
        namespace = %flow.namespace,
        pod = flow.pod.as_deref().unwrap_or(""),
        src = %flow.src_name(),
        src_ip = %flow.src,
        dst = %flow.dst_name(),
        dst_ip = %flow.dst,
        proto = %flow.protocol_name(),
        sport = flow.sport,
        dport = flow.dport,
        policies = %flow.policy_list(),
        "{flow}"
    );
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
