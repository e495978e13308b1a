//! Drop logging in the agent: the NFLOG reader thread ([`DropLogFeed`]
//! starts it and hands it each applied ruleset's index), deduplication
//! (one log line per dropped flow per window), and keeping the dropped-packet
//! counter bounded (series of pods that are gone are deleted).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::metrics::{DropLabel, Metrics, ReaderState, WouldDropLabel};
use crate::core::compile::droplog::{DroppedFlow, FlowKey, Index, Packet};

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
    /// the first time a ruleset logs, and deletes the dropped-packet series
    /// of pods the index no longer knows ([`forget_gone_pods`]).
    pub fn publish(&mut self, index: Arc<Index>) {
        let logs = index.logs_any();
        forget_gone_pods(&self.metrics, &index);
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
        if logs && !self.started {
            self.started = true;
            spawn_reader(self.group, self.index.clone(), self.metrics.clone());
        }
    }
}

/// Deletes the `nftpol_dropped_packets_total` series of pods that are gone:
/// a series is kept while its pod is in `index` (which holds every pod of
/// the cluster while any group logs), and a series without a pod name (an
/// address no longer known) while some group chain of its namespace exists.
/// Without this, every rollout would add series forever.
pub fn forget_gone_pods(metrics: &Metrics, index: &Index) {
    let pods: BTreeSet<(&str, &str)> = index
        .pods
        .values()
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    let namespaces: BTreeSet<&str> = index
        .groups
        .values()
        .map(|g| g.namespace.as_str())
        .collect();
    metrics.dropped_packets.retain(|l| {
        if l.pod.is_empty() {
            namespaces.contains(l.namespace.as_str())
        } else {
            pods.contains(&(l.namespace.as_str(), l.pod.as_str()))
        }
    });
    // Audit mode: a would-drop series lives while its policy is audited.
    let audited = index.audited_policies();
    metrics
        .would_drop_packets
        .retain(|l| audited.contains(&(l.namespace.clone(), l.policy.clone())));
}

/// Counts one logged packet and logs its flow if the flow is new; false
/// when its prefix is not nftpol's (the packet is skipped).
pub fn record(ix: &Index, metrics: &Metrics, dedupe: &mut Dedupe, pkt: &Packet) -> bool {
    let Some(flow) = ix.describe(pkt) else {
        return false;
    };
    if flow.audit {
        // Each audited policy named would have dropped it alone.
        for (namespace, policy) in would_drop_policies(&flow) {
            metrics
                .would_drop_packets
                .inc(WouldDropLabel { namespace, policy });
        }
        if dedupe.first(flow.key(), Instant::now()) {
            log_would_drop(&flow);
        }
        return true;
    }
    metrics.dropped_packets.inc(DropLabel {
        namespace: flow.namespace.clone(),
        pod: flow.pod.clone().unwrap_or_default(),
        direction: flow.direction.as_str().into(),
    });
    if dedupe.first(flow.key(), Instant::now()) {
        log_dropped_flow(&flow);
    }
    true
}

/// Reads the NFLOG group on a thread of its own (blocking netlink reads, in
/// the agent's network namespace): counts every logged packet and logs each
/// dropped flow once per [`DEDUPE_WINDOW`].
fn spawn_reader(group: u16, index: Arc<RwLock<Arc<Index>>>, metrics: Arc<Metrics>) {
    let metrics_on_failure = metrics.clone();
    let run = move || {
        let mut reader = match crate::kernel::nflog::Reader::bind(group) {
            Ok(r) => r,
            Err(e) => {
                metrics.set_reader_state(ReaderState::Failed);
                tracing::error!(error = %e, "drop logging unavailable: cannot read the NFLOG group");
                return;
            }
        };
        metrics.set_reader_state(ReaderState::Running);
        tracing::info!(group, "reading dropped packets from NFLOG group");
        let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
        let mut overruns = 0;
        loop {
            let batch = match reader.recv() {
                Ok(b) => b,
                Err(e) => {
                    metrics.set_reader_state(ReaderState::Failed);
                    tracing::error!(error = %e, group, "reading the NFLOG group failed; drop logging stops");
                    return;
                }
            };
            if reader.overruns > overruns {
                metrics.drop_log_overruns.inc_by(reader.overruns - overruns);
                overruns = reader.overruns;
                tracing::warn!(
                    group,
                    "NFLOG socket buffer overrun: some dropped packets were not logged"
                );
            }
            if batch.skipped > 0 {
                metrics.skipped("unparsable", batch.skipped);
            }
            let ix = index.read().unwrap_or_else(PoisonError::into_inner).clone();
            let foreign = batch
                .packets
                .iter()
                .filter(|pkt| !record(&ix, &metrics, &mut dedupe, pkt))
                .count();
            if foreign > 0 {
                metrics.skipped("foreign_prefix", foreign);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("nftpol-droplog".into())
        .spawn(run)
    {
        metrics_on_failure.set_reader_state(ReaderState::Failed);
        tracing::error!(error = %e, "drop logging unavailable: cannot start its thread");
    }
}

/// The audited policies a would-drop names, as `(namespace, name)`
/// (namespace empty for a ClusterNetworkPolicy).
fn would_drop_policies(flow: &DroppedFlow) -> Vec<(String, String)> {
    match &flow.cluster_rule {
        Some(r) => vec![(String::new(), r.policy.clone())],
        None => flow
            .policies
            .iter()
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect(),
    }
}

/// One flow's log line: the same fields under the drop and the audit targets
/// (a tracing target must be a constant, hence a macro).
macro_rules! log_flow {
    ($target:literal, $flow:expr) => {{
        let flow: &DroppedFlow = $flow;
        tracing::info!(
            target: $target,
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
    }};
}

/// The log line of one flow an audited policy would drop (docs/review.md,
/// "Audit mode"): the drop line's fields, target `nftpol::audit`.
fn log_would_drop(flow: &DroppedFlow) {
    log_flow!("nftpol::audit", flow);
}

/// The log line of one dropped flow (docs/drop-logging.md lists the fields).
fn log_dropped_flow(flow: &DroppedFlow) {
    log_flow!("nftpol::drop", flow);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::compile::droplog::fixtures::{index, pkt};
    use crate::core::compile::{DropLog, Options, compile_objects};
    use crate::core::model::Direction;

    /// Rollouts replace shop/db by a pod of a new name (and address) twenty
    /// times, as a Deployment does. Each generation drops packets; after
    /// each apply the series of the gone pods are deleted, so the counter
    /// holds the pods that exist, not every name that ever dropped.
    #[test]
    fn dropped_packet_series_of_deleted_pods_are_removed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/drop-logging");
        let (mut objs, diags) = crate::core::k8s::load_paths(&[root]);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let opts = Options {
            node: Some("node-1".into()),
            drop_log: DropLog::default(),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
        let db = objs
            .pods
            .iter()
            .position(|(_, p)| p.metadata.name.as_deref() == Some("db"))
            .expect("pod shop/db");
        let web = "10.244.1.12".parse().expect("an address");
        let batch = "10.244.1.11".parse().expect("an address");
        let mut batch_count = 0;
        for generation in 0..20u8 {
            let pod = &mut objs.pods[db].1;
            let name = format!("db-{generation}");
            pod.metadata.name = Some(name.clone());
            let ip = format!("10.244.1.{}", 100 + generation);
            let status = pod.status.as_mut().expect("status");
            status.pod_ip = Some(ip.clone());
            status.pod_ips.as_mut().expect("podIPs").truncate(1);
            status.pod_ips.as_mut().expect("podIPs")[0].ip = ip.clone();

            // The apply of this generation (what DropLogFeed::publish runs).
            let ix = compile_objects(&objs, &opts).drop_log;
            forget_gone_pods(&metrics, &ix);
            let group = |dir: Direction, policy: &str| {
                let (chain, _) = ix
                    .groups
                    .iter()
                    .find(|(_, g)| {
                        g.direction == dir && g.policies.iter().any(|p| p.name == policy)
                    })
                    .unwrap_or_else(|| panic!("{policy}'s group"));
                crate::core::compile::droplog::prefix(chain)
            };
            // web → db on a port db does not allow; batch → web (egress).
            let to_db = Packet {
                dst: ip.parse().expect("an address"),
                ..pkt(
                    &group(Direction::Ingress, "db-allow-web"),
                    "10.244.1.12",
                    "10.244.1.1",
                    4000,
                )
            };
            let from_batch = Packet {
                src: batch,
                dst: web,
                ..pkt(
                    &group(Direction::Egress, "batch-egress"),
                    "10.244.1.11",
                    "10.244.1.12",
                    4001,
                )
            };
            for p in [&to_db, &to_db, &from_batch] {
                assert!(record(&ix, &metrics, &mut dedupe, p), "{p:?}");
            }
            batch_count += 1;
            let label = |pod: &str, direction: &str| DropLabel {
                namespace: "shop".into(),
                pod: pod.into(),
                direction: direction.into(),
            };
            assert_eq!(metrics.dropped_packets.get(&label(&name, "ingress")), 2);
            assert_eq!(
                metrics.dropped_packets.get(&label("batch", "egress")),
                batch_count,
                "a pod that stays keeps its count"
            );
            assert_eq!(
                metrics.dropped_packets.series(),
                2,
                "generation {generation}: the current db and batch only"
            );
        }
        let text = metrics.encode();
        assert!(!text.contains("pod=\"db-18\""), "{text}");
        assert!(text.contains("pod=\"db-19\""), "{text}");
    }

    /// Audit mode: a would-drop packet counts once for each audited policy
    /// it names, never as a drop; the series of a policy switched to
    /// enforce is deleted at the next apply.
    #[test]
    fn would_drop_series_follow_the_audited_policies() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/audit-mode");
        let (mut objs, diags) = crate::core::k8s::load_paths(&[root]);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let opts = Options {
            node: Some("node-1".into()),
            ..Options::default()
        };
        let metrics = Metrics::new();
        let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
        let ix = compile_objects(&objs, &opts).drop_log;
        forget_gone_pods(&metrics, &ix);
        let audit_prefix = |dir: Direction| {
            let (chain, _) = ix
                .groups
                .iter()
                .find(|(_, g)| g.audit && g.direction == dir)
                .expect("an audit group");
            crate::core::nft::names::audit_log_prefix(chain)
        };
        // lab/web -> shop/db (ingress), shop/batch -> lab/db (egress).
        let to_db = pkt(
            &audit_prefix(Direction::Ingress),
            "10.244.2.11",
            "10.244.1.10",
            4000,
        );
        let from_batch = pkt(
            &audit_prefix(Direction::Egress),
            "10.244.1.11",
            "10.244.1.12",
            4001,
        );
        for p in [&to_db, &to_db, &from_batch] {
            assert!(record(&ix, &metrics, &mut dedupe, p), "{p:?}");
        }
        let label = |policy: &str| WouldDropLabel {
            namespace: "shop".into(),
            policy: policy.into(),
        };
        assert_eq!(metrics.would_drop_packets.get(&label("db-allow-web")), 2);
        assert_eq!(metrics.would_drop_packets.get(&label("batch-egress")), 1);
        assert_eq!(metrics.dropped_packets.series(), 0, "nothing was dropped");
        let flow = ix.describe(&to_db).expect("ours");
        assert_eq!(
            flow.to_string(),
            "ingress would drop lab/web (10.244.2.11) -> shop/db (10.244.1.10) tcp/5432 by shop/db-allow-web (audit)"
        );
        let text = metrics.encode();
        println!("{text}");
        assert!(
            text.contains(
                "nftpol_would_drop_packets_total{namespace=\"shop\",policy=\"db-allow-web\"} 2"
            ),
            "{text}"
        );

        // shop/db-allow-web switched to enforce: its series goes, batch-egress's stays.
        for (_, p) in &mut objs.policies {
            if p.metadata.name.as_deref() == Some("db-allow-web") {
                p.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert("nftpol.io/mode".into(), "enforce".into());
            }
        }
        let ix = compile_objects(&objs, &opts).drop_log;
        forget_gone_pods(&metrics, &ix);
        assert_eq!(metrics.would_drop_packets.get(&label("db-allow-web")), 0);
        assert_eq!(metrics.would_drop_packets.get(&label("batch-egress")), 1);
        assert_eq!(metrics.would_drop_packets.series(), 1);
    }

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
