//! The agent's Prometheus metrics (OpenMetrics text via prometheus-client).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
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

/// `object` label of ruleset size gauges: sets, maps, chains, rules, elements.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabel {
    /// Object kind.
    pub object: String,
}

/// Labels of dropped-packet counts: the isolated pod whose policies dropped
/// the packet (the destination for ingress, the source for egress).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    /// Namespace of the isolated pod.
    pub namespace: String,
    /// Name of the isolated pod (empty if its address is no longer known).
    pub pod: String,
    /// `ingress` or `egress`.
    pub direction: String,
}

/// Every metric the agent exports. Names are listed in [`Metrics::NAMES`].
pub struct Metrics {
    /// The registry the server encodes.
    pub registry: Registry,
    /// Seconds spent compiling (convert + graph + compile).
    pub compile_seconds: Histogram,
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
    /// sample of all drops), by isolated pod and direction.
    pub dropped_packets: Family<DropLabel, Counter>,
    /// Failed list/watch calls by resource.
    pub watch_errors: Family<ResourceLabel, Counter>,
}

/// A counter family whose `# TYPE`/`# HELP` lines are exported even before
/// its first sample (the registry skips empty families).
#[derive(Debug)]
struct AlwaysListed<L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug> {
    name: &'static str,
    help: &'static str,
    family: Family<L, Counter>,
}

impl<L> Collector for AlwaysListed<L>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        self.family.encode(metric)
    }
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    /// The `resource` label values of watch errors.
    pub const WATCHED: [&'static str; 3] = ["pods", "namespaces", "networkpolicies"];

    /// Metric names as exported (with the `nftpol_` prefix), for docs and tests.
    pub const NAMES: [&'static str; 11] = [
        "nftpol_compile_duration_seconds",
        "nftpol_apply_duration_seconds",
        "nftpol_applies_total",
        "nftpol_apply_failures_total",
        "nftpol_ruleset_objects",
        "nftpol_last_successful_apply_timestamp_seconds",
        "nftpol_enforced_pods",
        "nftpol_resyncs_total",
        "nftpol_invalid_policies",
        "nftpol_dropped_packets_total",
        "nftpol_watch_errors_total",
    ];

    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nftpol");
        let compile_seconds = seconds_histogram();
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
        let dropped_packets = Family::<DropLabel, Counter>::default();
        let watch_errors = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "compile_duration_seconds",
            "Time to compile the cluster state into a ruleset",
            compile_seconds.clone(),
        );
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
        // Its label values (pods) are not known up front, and the registry
        // leaves out families without samples: a collector keeps it listed.
        registry.register_collector(Box::new(AlwaysListed {
            name: "dropped_packets",
            help: "Dropped packets logged by drop logging (rate-limited sample), by isolated pod and direction",
            family: dropped_packets.clone(),
        }));
        // Every label value exists from the start, so a counter reads 0 rather
        // than being absent until its first increment.
        for kind in ["full", "delta", "unchanged"] {
            drop(applies.get_or_create(&Metrics::kind(kind)));
            drop(apply_seconds.get_or_create(&Metrics::kind(kind)));
        }
        for reason in ["spawn", "rejected"] {
            drop(failures.get_or_create(&ReasonLabel {
                reason: reason.into(),
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
        Metrics {
            registry,
            compile_seconds,
            apply_seconds,
            applies,
            failures,
            ruleset_objects,
            last_success,
            enforced_pods,
            resyncs,
            invalid_policies,
            dropped_packets,
            watch_errors,
        }
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
mod tests {
    use super::*;

    #[test]
    fn dropped_packets_is_listed_before_and_after_its_first_sample() {
        let m = Metrics::new();
        assert!(m.encode().contains("# TYPE nftpol_dropped_packets counter"));
        m.dropped_packets
            .get_or_create(&DropLabel {
                namespace: "shop".into(),
                pod: "db".into(),
                direction: "ingress".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains(
                "nftpol_dropped_packets_total{namespace=\"shop\",pod=\"db\",direction=\"ingress\"} 1"
            ),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE nftpol_dropped_packets ").count(), 1);
    }
}
