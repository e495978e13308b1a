//! `host-network-only`: a NetworkPolicy whose podSelector, or a
//! ClusterNetworkPolicy whose subject, selects host-network pods and no
//! other pod. Pods with `hostNetwork: true` are never selected (SPEC 1), so
//! such a policy has no effect at all.
//!
//! Not flagged: a policy that selects nothing. Policies routinely exist
//! before their pods (GitOps trees applied before the Deployments, a
//! Deployment scaled to zero, a manifest tree holding only policies), so
//! that lint would fire on most correct inputs.

use std::collections::BTreeMap;

use super::{LintInput, some_pods, warning};
use crate::core::diag::Diagnostic;
use crate::core::model::lint_input::LintPod;
use crate::core::model::{Cluster, NamespaceScope, PodMatch};

const CODE: &str = "host-network-only";

pub(super) fn host_network_only(cluster: &Cluster, input: &LintInput, out: &mut Vec<Diagnostic>) {
    if !input.pods.iter().any(|p| p.host_network) {
        return;
    }
    let mut by_ns: BTreeMap<&str, Vec<&LintPod>> = BTreeMap::new();
    for p in &input.pods {
        by_ns.entry(p.id.namespace.as_str()).or_default().push(p);
    }
    for pol in cluster.policies.values().filter(|p| p.valid) {
        let pods = by_ns
            .get(pol.id.namespace.as_str())
            .map_or(&[][..], Vec::as_slice);
        let selected: Vec<&LintPod> = pods
            .iter()
            .copied()
            .filter(|p| pol.pod_selector.matches(&p.labels))
            .collect();
        if let Some(hosts) = only_hosts(&selected) {
            out.push(warning(
                input,
                CODE,
                format!("NetworkPolicy {}", pol.id),
                "spec.podSelector",
                &format!(
                    "selects only host-network pods ({hosts}): NetworkPolicy never applies to pods with hostNetwork: true (they use their node's network namespace and address), so this policy has no effect. Traffic to such a pod is traffic to its node; protect it on the node (a host firewall), not with NetworkPolicy."
                ),
            ));
        }
    }
    for cnp in cluster.cluster_policies.values().filter(|p| p.valid) {
        let selected: Vec<&LintPod> = input
            .pods
            .iter()
            .filter(|p| subject_matches(cluster, &cnp.subject, p))
            .collect();
        if let Some(hosts) = only_hosts(&selected) {
            out.push(warning(
                input,
                CODE,
                format!("ClusterNetworkPolicy {}", cnp.name),
                "spec.subject",
                &format!(
                    "selects only host-network pods ({hosts}): host-networked pods are never subjects of a ClusterNetworkPolicy, so this policy has no effect. Traffic to them is traffic to their node (egress `nodes` peers of other policies match it)."
                ),
            ));
        }
    }
}

/// The host-network pods, when `selected` holds some and nothing else.
fn only_hosts(selected: &[&LintPod]) -> Option<String> {
    (!selected.is_empty() && selected.iter().all(|p| p.host_network))
        .then(|| some_pods(selected.iter().map(|p| &p.id), 3))
}

fn subject_matches(cluster: &Cluster, m: &PodMatch, p: &LintPod) -> bool {
    let ns_ok = match &m.namespaces {
        NamespaceScope::Named(n) => *n == p.id.namespace,
        NamespaceScope::Selector(s) => s.matches(&cluster.namespace_labels(&p.id.namespace)),
    };
    ns_ok && m.pods.matches(&p.labels)
}
