//! The agent's Prometheus metrics (OpenMetrics text via prometheus-client).
//!
//! Every label's values are bounded: by fixed lists, by the ruleset (chain
//! names) or by the pods that exist now (the dropped-packet series of a pod
//! are deleted once the pod is gone: [`DropCounts::retain`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `kind` label: full, delta, unchanged.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// What kind of apply.
    pub kind: String,
}

/// `path` label of compiles: incremental, full.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// Which compile path ran.
    pub path: String,
}

/// `reason` label of failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why it failed.
    pub reason: String,
}

/// `resource` label of watch errors: pods, namespaces, networkpolicies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    /// The watched resource.
    pub resource: String,
}

/// `outcome` label of kernel batches: netlink, netlink_refused, nft.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// How the change reached the kernel.
    pub outcome: String,
}

/// `result` label of status writes: ok, error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// How the write went.
    pub result: String,
}

/// `object` label of ruleset size gauges: sets, maps, chains, rules, elements.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabel {
    /// Object kind.
    pub object: String,
}

/// Labels of dropped-packet counts: the isolated pod whose policies dropped
/// the packet (the destination for ingress, the source for egress).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct DropLabel {
    /// Namespace of the isolated pod.
    pub namespace: String,
    /// Name of the isolated pod (empty if its address is no longer known).
    pub pod: String,
    /// `ingress` or `egress`.
    pub direction: String,
}

/// Labels of would-drop counts (audit mode): the audited policy that would
/// have dropped the packet.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct WouldDropLabel {
    /// Namespace of the NetworkPolicy; empty for a ClusterNetworkPolicy.
    pub namespace: String,
    /// Name of the policy.
    pub policy: String,
}

/// `state` label of the drop-log reader gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `off`, `running` or `failed`.
    pub state: String,
}

/// `chain` label of the kernel's drop counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChainLabel {
    chain: String,
}

/// Labels of `nftpol_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
    commit: String,
}

/// The state of the NFLOG reader thread (`nftpol_drop_log_reader_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderState {
    /// No ruleset logged yet: no socket, no thread.
    Off,
    /// Bound to the group and reading.
    Running,
    /// Binding or reading failed; drop logging stopped (the log says why).
    Failed,
}

impl ReaderState {
    const ALL: [ReaderState; 3] = [ReaderState::Off, ReaderState::Running, ReaderState::Failed];

    fn as_str(self) -> &'static str {
        match self {
            ReaderState::Off => "off",
            ReaderState::Running => "running",
            ReaderState::Failed => "failed",
        }
    }
}

/// Packet counts by a label set `L`: a counter family whose series can be
/// deleted ([`Counts::retain`]) so that pods or policies that are gone do
/// not keep theirs forever. Clones share the counts.
#[derive(Clone, Debug)]
pub struct Counts<L> {
    counts: Arc<Mutex<HashMap<L, u64>>>,
}

/// Dropped-packet counts by [`DropLabel`].
pub type DropCounts = Counts<DropLabel>;

/// Would-drop counts (audit mode) by [`WouldDropLabel`].
pub type WouldDropCounts = Counts<WouldDropLabel>;

impl<L> Default for Counts<L> {
    fn default() -> Self {
        Counts {
            counts: Arc::default(),
        }
    }
}

impl<L: std::hash::Hash + Eq> Counts<L> {
    fn lock(&self) -> MutexGuard<'_, HashMap<L, u64>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one packet.
    pub fn inc(&self, label: L) {
        *self.lock().entry(label).or_default() += 1;
    }

    /// The count of one series (0 when it does not exist).
    pub fn get(&self, label: &L) -> u64 {
        self.lock().get(label).copied().unwrap_or(0)
    }

    /// Number of series.
    pub fn series(&self) -> usize {
        self.lock().len()
    }

    /// Keeps only the series `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&L) -> bool) {
        self.lock().retain(|l, _| keep(l));
    }
}

/// Every metric the agent exports. Names are listed in [`Metrics::NAMES`].
pub struct Metrics {
    /// The registry the server encodes.
    pub registry: Registry,
    /// Seconds spent compiling (convert + graph + compile).
    pub compile_seconds: Histogram,
    /// Compiles by path (incremental, full).
    pub compile_paths: Family<PathLabel, Counter>,
    /// Seconds spent applying, by kind.
    pub apply_seconds: Family<KindLabel, Histogram>,
    /// Applies by kind.
    pub applies: Family<KindLabel, Counter>,
    /// Failed applies by reason.
    pub failures: Family<ReasonLabel, Counter>,
    /// Size of the table in the kernel, by object kind.
    pub ruleset_objects: Family<ObjectLabel, Gauge>,
    /// Unix time of the last successful apply.
    pub last_success: Gauge,
    /// Pods enforced on this node.
    pub enforced_pods: Gauge,
    /// Periodic verifications by result (ok, drift).
    pub resyncs: Family<KindLabel, Counter>,
    /// Invalid policies (failing closed) in the last compile.
    pub invalid_policies: Gauge,
    /// Dropped packets the log rules sent to the agent (rate-limited: a
    /// sample of all drops), by isolated pod and direction; series of pods
    /// that are gone are deleted.
    pub dropped_packets: DropCounts,
    /// Packets audited policies would have dropped (audit mode; a
    /// rate-limited sample), by policy; series of policies no longer
    /// audited are deleted.
    pub would_drop_packets: WouldDropCounts,
    /// Failed list/watch calls by resource.
    pub watch_errors: Family<ResourceLabel, Counter>,
    /// Element changes and stages by how they reached the kernel.
    pub kernel_batches: Family<OutcomeLabel, Counter>,
    /// Times the kernel dropped NFLOG messages because the reader's socket
    /// buffer was full.
    pub drop_log_overruns: Counter,
    /// NFLOG messages the reader could not use, by reason.
    pub drop_log_skipped: Family<ReasonLabel, Counter>,
    /// The reader's state: one of its series is 1.
    drop_log_reader: Family<StateLabel, Gauge>,
    /// Writes of this node's NodeProgramStatus by result (ok, error).
    status_writes: Family<ResultLabel, Counter>,
    /// The kernel's `counter drop` counts per chain, as last read at a resync.
    chain_drops: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// A counter family encoded from a snapshot of values the kernel keeps
/// (exported as read: a table replacement resets them, like a restart).
#[derive(Debug)]
struct ChainDrops {
    values: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Collector for ChainDrops {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let values = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut metric = encoder.encode_descriptor(
            "chain_dropped_packets",
            "Packets dropped by the counter drop rules of each chain of table inet nftpol, as the kernel counts them (every drop, not a sample); read at every resync, reset when the table is replaced",
            None,
            MetricType::Counter,
        )?;
        for (chain, n) in values {
            let label = ChainLabel { chain };
            ConstCounter::new(n).encode(metric.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Packet counts encoded as a counter family (listed even before its first
/// sample), series sorted by label.
#[derive(Debug)]
struct CountsCollector<L> {
    counts: Counts<L>,
    name: &'static str,
    help: &'static str,
}

impl<L> Collector for CountsCollector<L>
where
    L: Clone + Ord + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static + EncodeLabelSet,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut values: Vec<(L, u64)> = self
            .counts
            .lock()
            .iter()
            .map(|(l, n)| (l.clone(), *n))
            .collect();
        values.sort();
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        for (label, n) in values {
            ConstCounter::new(n).encode(metric.encode_family(&label)?)?;
        }
        Ok(())
    }
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    /// The `resource` label values of watch errors.
    pub const WATCHED: [&'static str; 3] = ["pods", "namespaces", "networkpolicies"];

    /// Metric names as exported (with the `nftpol_` prefix), for docs and tests.
    pub const NAMES: [&'static str; 20] = [
        "nftpol_compile_duration_seconds",
        "nftpol_compile_path_total",
        "nftpol_apply_duration_seconds",
        "nftpol_applies_total",
        "nftpol_apply_failures_total",
        "nftpol_ruleset_objects",
        "nftpol_last_successful_apply_timestamp_seconds",
        "nftpol_enforced_pods",
        "nftpol_resyncs_total",
        "nftpol_invalid_policies",
        "nftpol_dropped_packets_total",
        "nftpol_would_drop_packets_total",
        "nftpol_watch_errors_total",
        "nftpol_kernel_batches_total",
        "nftpol_drop_log_overruns_total",
        "nftpol_drop_log_skipped_messages_total",
        "nftpol_drop_log_reader_state",
        "nftpol_chain_dropped_packets_total",
        "nftpol_build_info",
        "nftpol_status_writes_total",
    ];

    /// `reason` values of `nftpol_drop_log_skipped_messages_total`: a
    /// netlink message that is not a packet the parser could read, and a
    /// packet whose log prefix is not nftpol's.
    pub const SKIP_REASONS: [&'static str; 2] = ["unparsable", "foreign_prefix"];

    /// `commit` label of `nftpol_build_info`: `NFTPOL_GIT_COMMIT` at build time.
    pub const COMMIT: &'static str = match option_env!("NFTPOL_GIT_COMMIT") {
        Some(c) => c,
        None => "unknown",
    };

    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nftpol");
        let compile_seconds = seconds_histogram();
        let compile_paths = Family::<PathLabel, Counter>::default();
        let apply_seconds = Family::<KindLabel, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        let applies = Family::<KindLabel, Counter>::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let ruleset_objects = Family::<ObjectLabel, Gauge>::default();
        let last_success = Gauge::default();
        let enforced_pods = Gauge::default();
        let resyncs = Family::<KindLabel, Counter>::default();
        let invalid_policies = Gauge::default();
        let dropped_packets = DropCounts::default();
        let would_drop_packets = WouldDropCounts::default();
        let watch_errors = Family::<ResourceLabel, Counter>::default();
        let drop_log_overruns = Counter::default();
        let kernel_batches = Family::<OutcomeLabel, Counter>::default();
        // Every outcome from the start (0 until counted), so rates and
        // alerts see the series before the first change.
        for outcome in ["netlink", "netlink_refused", "nft"] {
            let _ = kernel_batches.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        let drop_log_skipped = Family::<ReasonLabel, Counter>::default();
        let drop_log_reader = Family::<StateLabel, Gauge>::default();
        let chain_drops = Arc::new(Mutex::new(BTreeMap::new()));
        let build_info = Family::<BuildLabel, Gauge>::default();
        let status_writes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "compile_duration_seconds",
            "Time to compile the cluster state into a ruleset",
            compile_seconds.clone(),
        );
        registry.register(
            "compile_path",
            "Compiles by path: incremental (pod changes edited into the previous ruleset), partial (also group chains that came or went) or full",
            compile_paths.clone(),
        );
        for path in ["incremental", "partial", "full"] {
            drop(compile_paths.get_or_create(&PathLabel { path: path.into() }));
        }
        registry.register(
            "apply_duration_seconds",
            "Time to apply a ruleset to the kernel, by kind",
            apply_seconds.clone(),
        );
        registry.register(
            "applies",
            "Applies to the kernel by kind (full, delta, unchanged)",
            applies.clone(),
        );
        registry.register(
            "apply_failures",
            "Failed applies by reason; the previous ruleset stays in force",
            failures.clone(),
        );
        registry.register(
            "ruleset_objects",
            "Objects in table inet nftpol (sets, maps, chains, rules, elements)",
            ruleset_objects.clone(),
        );
        registry.register(
            "last_successful_apply_timestamp_seconds",
            "Unix time of the last successful apply",
            last_success.clone(),
        );
        registry.register(
            "enforced_pods",
            "Pods enforced on this node",
            enforced_pods.clone(),
        );
        registry.register(
            "resyncs",
            "Periodic kernel verifications by result (ok, drift)",
            resyncs.clone(),
        );
        registry.register(
            "invalid_policies",
            "NetworkPolicies the API server would reject, failing closed",
            invalid_policies.clone(),
        );
        registry.register(
            "watch_errors",
            "Failed list/watch calls to the API server by resource; the agent keeps its last state and retries",
            watch_errors.clone(),
        );
        registry.register(
            "kernel_batches",
            "Element changes and stages of structural changes by how they reached the kernel: netlink (a batch the kernel acknowledged), netlink_refused (refused: the table is then replaced through nft), nft (as an nft script: intervals, batches too large, stages that create chains)",
            kernel_batches.clone(),
        );
        registry.register(
            "drop_log_overruns",
            "Times the kernel dropped NFLOG messages because the drop-log reader's socket buffer was full (drops went unlogged)",
            drop_log_overruns.clone(),
        );
        registry.register(
            "drop_log_skipped_messages",
            "NFLOG messages the drop-log reader skipped, by reason (unparsable, foreign_prefix)",
            drop_log_skipped.clone(),
        );
        registry.register(
            "drop_log_reader_state",
            "State of the drop-log reader: the series of the current state (off, running, failed) is 1",
            drop_log_reader.clone(),
        );
        registry.register(
            "status_writes",
            "Writes of this node's NodeProgramStatus by result (ok, error); a failed write never affects enforcement",
            status_writes.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the labels say which nftpol runs",
            build_info.clone(),
        );
        // Their label values are not known up front, and the registry leaves
        // out families without samples: collectors keep them listed.
        registry.register_collector(Box::new(CountsCollector {
            counts: dropped_packets.clone(),
            name: "dropped_packets",
            help: "Dropped packets logged by drop logging (rate-limited sample), by isolated pod and direction; series of deleted pods are removed",
        }));
        registry.register_collector(Box::new(CountsCollector {
            counts: would_drop_packets.clone(),
            name: "would_drop_packets",
            help: "Packets an audited policy (nftpol.io/mode: audit) would have dropped and let through (rate-limited sample), by policy (namespace empty for a ClusterNetworkPolicy); series of policies no longer audited are removed",
        }));
        registry.register_collector(Box::new(ChainDrops {
            values: chain_drops.clone(),
        }));
        build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: Self::COMMIT.into(),
            })
            .set(1);
        for reason in Self::SKIP_REASONS {
            drop(drop_log_skipped.get_or_create(&ReasonLabel {
                reason: reason.into(),
            }));
        }
        // Every label value exists from the start, so a counter reads 0 rather
        // than being absent until its first increment.
        for kind in ["full", "delta", "unchanged"] {
            drop(applies.get_or_create(&Metrics::kind(kind)));
            drop(apply_seconds.get_or_create(&Metrics::kind(kind)));
        }
        for reason in ["spawn", "rejected", "timeout"] {
            drop(failures.get_or_create(&ReasonLabel {
                reason: reason.into(),
            }));
        }
        for result in ["ok", "error"] {
            drop(status_writes.get_or_create(&ResultLabel {
                result: result.into(),
            }));
        }
        for kind in ["ok", "drift"] {
            drop(resyncs.get_or_create(&Metrics::kind(kind)));
        }
        for resource in Metrics::WATCHED {
            drop(watch_errors.get_or_create(&ResourceLabel {
                resource: resource.into(),
            }));
        }
        let m = Metrics {
            registry,
            compile_seconds,
            compile_paths,
            apply_seconds,
            applies,
            failures,
            ruleset_objects,
            last_success,
            enforced_pods,
            resyncs,
            invalid_policies,
            dropped_packets,
            would_drop_packets,
            watch_errors,
            kernel_batches,
            drop_log_overruns,
            drop_log_skipped,
            drop_log_reader,
            status_writes,
            chain_drops,
        };
        m.set_reader_state(ReaderState::Off);
        m
    }

    /// Counts one write of the NodeProgramStatus (`ok` or `error`).
    pub fn status_write(&self, result: &str) {
        self.status_writes
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Sets `nftpol_drop_log_reader_state`.
    pub fn set_reader_state(&self, now: ReaderState) {
        for s in ReaderState::ALL {
            self.drop_log_reader
                .get_or_create(&StateLabel {
                    state: s.as_str().into(),
                })
                .set(i64::from(s == now));
        }
    }

    /// Counts NFLOG messages skipped for `reason` (one of [`Metrics::SKIP_REASONS`]).
    pub fn skipped(&self, reason: &'static str, n: usize) {
        self.drop_log_skipped
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc_by(n as u64);
    }

    /// Replaces the kernel's drop counts per chain (`nftpol_chain_dropped_packets_total`).
    pub fn set_chain_drops(&self, counts: BTreeMap<String, u64>) {
        *self
            .chain_drops
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = counts;
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Label helper.
    pub fn kind(kind: &str) -> KindLabel {
        KindLabel {
            kind: kind.to_string(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests;
