//! `egress-without-dns`: a pod whose egress is denied DNS — UDP 53 to
//! kube-dns — by the NetworkPolicies isolating it for egress (default-deny
//! egress with no DNS rule, the most common reason a rollout breaks) or by
//! a ClusterNetworkPolicy Deny.
//!
//! Decided exactly, by `explain`'s evaluator (the compiled ruleset's
//! semantics, tiers included): the egress end of a UDP/53 flow from one pod
//! of every group of alike pods (namespace and labels) to kube-dns. kube-dns
//! is the input's pods labelled `k8s-app=kube-dns` (CoreDNS and kube-dns
//! both carry it); when the input has none, a stand-in pod so labelled in
//! `kube-system` (named ports `dns`/UDP and `dns-tcp`/TCP 53) at an unused
//! address inside the pod range. A rule naming the kube-dns *ClusterIP*
//! does not count: after DNAT the packet goes to a kube-dns pod.
//!
//! Only UDP is checked (lookups use UDP; TCP 53 is the fallback for large
//! answers, and requiring it would flag many working policies). Not known
//! here: NodeLocal DNSCache, whose address is on the node (always allowed);
//! its users may see this warning for pods that in fact resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{LintInput, some_pods, warning};
use crate::core::diag::Diagnostic;
use crate::core::explain::{Endpoint, PortArg, PortSpec, Query};
use crate::core::graph::SelectorGraph;
use crate::core::model::ipblock::{ip_to_u128, u128_to_ip};
use crate::core::model::{Cidr, Cluster, Family, Labels, ObjectRef, Pod, Protocol};

const CODE: &str = "egress-without-dns";
/// The label CoreDNS and kube-dns pods carry.
const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The stand-in's name, when the input has no kube-dns pod.
const STAND_IN: &str = "kube-dns (stand-in)";

pub(super) fn egress_without_dns(
    cluster: &Cluster,
    graph: &SelectorGraph,
    input: &LintInput,
    out: &mut Vec<Diagnostic>,
) {
    let egress_policies = cluster.policies.values().any(|p| p.egress.is_some())
        || cluster
            .cluster_policies
            .values()
            .any(|p| !p.egress.is_empty());
    if !egress_policies {
        return;
    }
    let is_dns = |p: &Pod| p.labels.get(DNS_LABEL.0).is_some_and(|v| v == DNS_LABEL.1);
    let real: Vec<&Pod> = cluster
        .pods
        .values()
        .map(|p| &**p)
        .filter(|p| is_dns(p))
        .collect();
    // With no kube-dns pod in the input, answer over a copy holding a stand-in.
    let owned;
    let (cluster, graph, targets, target_text) = if real.is_empty() {
        let mut c = cluster.clone();
        let pod = stand_in(cluster, input);
        let text = format!(
            "kube-dns (the input has no pod labelled {}={}: checked against one in kube-system, as CoreDNS and kube-dns are deployed)",
            DNS_LABEL.0, DNS_LABEL.1
        );
        let id = pod.id.clone();
        c.pods.insert(id.clone(), pod.into());
        let g = SelectorGraph::build(&c);
        owned = (c, g);
        (&owned.0, &owned.1, vec![id], text)
    } else {
        let ids: Vec<ObjectRef> = real.iter().map(|p| p.id.clone()).collect();
        let text = format!("kube-dns ({})", some_pods(&ids, 2));
        (cluster, graph, ids, text)
    };
    // One pod per group of alike pods: the egress end depends only on the
    // namespace, the labels and the family.
    let mut groups: BTreeMap<(&str, &Labels), Vec<&Pod>> = BTreeMap::new();
    for p in cluster.pods.values().filter(|p| !is_dns(p)) {
        groups
            .entry((p.id.namespace.as_str(), &p.labels))
            .or_default()
            .push(p);
    }
    // (object, field) → (message with `{pods}` and `{also}`, other policies, pods denied).
    type Found = BTreeMap<(String, String), (String, BTreeSet<String>, BTreeSet<ObjectRef>)>;
    let mut found: Found = BTreeMap::new();
    let mut width: BTreeMap<String, usize> = BTreeMap::new();
    for pods in groups.values() {
        let rep = pods[0];
        let Some((family, target)) = Family::ALL.into_iter().find_map(|f| {
            rep.ips.iter().any(|ip| Family::of(ip) == f).then_some(())?;
            let t = targets
                .iter()
                .find(|t| cluster.pods[*t].ips.iter().any(|ip| Family::of(ip) == f))?;
            Some((f, t))
        }) else {
            continue;
        };
        let q = Query {
            from: Endpoint::Pod(rep.id.clone()),
            to: Endpoint::Pod(target.clone()),
            port: PortArg {
                port: PortSpec::Number(53),
                protocol: Some(Protocol::Udp),
            },
            family: Some(family),
        };
        let Ok(ex) = crate::core::explain::explain(cluster, graph, &q) else {
            continue;
        };
        let side = &ex.egress;
        // An invalid policy fails closed and is already reported as an error.
        if side.allowed || side.policies.iter().any(|p| !p.valid) {
            continue;
        }
        let (key, message, others) = match &side.decision {
            Some(d) if d.tier == "Admin" || d.tier == "Baseline" => {
                let Some(name) = &d.policy else { continue };
                (
                    (
                        format!("ClusterNetworkPolicy {name}"),
                        format!("spec.egress[{}]", d.rule.unwrap_or(0)),
                    ),
                    format!(
                        "denies DNS (UDP 53 to {target_text}) for pods {{pods}}: this rule ({}) decides it in the {} tier, so their name lookups will time out. Accept DNS in an earlier rule (or a policy of lower priority), or Pass it to the namespaces' policies.",
                        d.action.unwrap_or("Deny"),
                        d.tier
                    ),
                    Vec::new(),
                )
            }
            _ => {
                // Blame the isolating policy that selects the most pods (the
                // namespace's default-deny, typically), then by name.
                let names: Vec<&str> = side.policies.iter().map(|p| p.policy.as_str()).collect();
                let Some(&blamed) = names.iter().max_by_key(|n| {
                    let w = *width
                        .entry(n.to_string())
                        .or_insert_with(|| selected_count(cluster, n));
                    (w, std::cmp::Reverse(**n))
                }) else {
                    continue;
                };
                let others: Vec<String> = names
                    .iter()
                    .filter(|n| **n != blamed)
                    .map(|n| n.to_string())
                    .collect();
                let field = match blamed
                    .split_once('/')
                    .and_then(|(ns, n)| cluster.policies.get(&ObjectRef::new(ns, n)))
                {
                    Some(p) if p.egress.as_ref().is_some_and(|r| !r.is_empty()) => "spec.egress",
                    _ => "spec.policyTypes",
                };
                (
                    (format!("NetworkPolicy {blamed}"), field.to_string()),
                    format!(
                        "isolates pods {{pods}} for egress, and no egress rule of it{{also}} allows DNS (UDP 53) to {target_text}: their name lookups will time out. Add an egress rule such as `to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}]` with `ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]` (a rule to the kube-dns ClusterIP does not work: nftpol sees the packet after DNAT)."
                    ),
                    others,
                )
            }
        };
        let e = found
            .entry(key)
            .or_insert_with(|| (message, BTreeSet::new(), BTreeSet::new()));
        e.1.extend(others);
        e.2.extend(pods.iter().map(|p| p.id.clone()));
    }
    for ((object, field), (message, others, pods)) in found {
        let also = if others.is_empty() {
            String::new()
        } else {
            format!(
                " (nor of {}, which isolate some of them too)",
                others.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let message = message
            .replace("{pods}", &some_pods(&pods, 3))
            .replace("{also}", &also);
        out.push(warning(input, CODE, object, &field, &message));
    }
}

/// How many pods the NetworkPolicy `ns/name` selects.
fn selected_count(cluster: &Cluster, policy: &str) -> usize {
    let Some(p) = policy
        .split_once('/')
        .and_then(|(ns, n)| cluster.policies.get(&ObjectRef::new(ns, n)))
    else {
        return 0;
    };
    cluster
        .pods
        .values()
        .filter(|q| q.id.namespace == p.id.namespace && p.pod_selector.matches(&q.labels))
        .count()
}

/// The kube-dns stand-in: in kube-system, labelled like CoreDNS, with an
/// unused address in the pod range of each family the cluster's pods use.
fn stand_in(cluster: &Cluster, input: &LintInput) -> Pod {
    let used: BTreeSet<IpAddr> = cluster.pods.values().flat_map(|p| p.ips.clone()).collect();
    let mut ips = Vec::new();
    for f in Family::ALL {
        let pod_cidr = input
            .pod_cidrs
            .values()
            .flatten()
            .find(|c| c.family == f)
            .copied();
        let Some(base) =
            pod_cidr.or_else(|| covering(used.iter().filter(|ip| Family::of(ip) == f)))
        else {
            continue;
        };
        let range = base.range();
        let mut n = range.start.saturating_add(53).min(range.end);
        while used.contains(&u128_to_ip(f, n)) && n < range.end {
            n += 1;
        }
        ips.push(u128_to_ip(f, n));
    }
    let mut named_ports = BTreeMap::new();
    named_ports.insert("dns".to_string(), (Protocol::Udp, 53));
    named_ports.insert("dns-tcp".to_string(), (Protocol::Tcp, 53));
    Pod {
        id: ObjectRef::new("kube-system", STAND_IN),
        labels: Labels::from([(DNS_LABEL.0.to_string(), DNS_LABEL.1.to_string())]),
        node: None,
        ips,
        named_ports,
    }
}

/// The smallest CIDR holding every address (`None` when there is none).
fn covering<'a>(ips: impl Iterator<Item = &'a IpAddr>) -> Option<Cidr> {
    let mut it = ips.peekable();
    let first = **it.peek()?;
    let f = Family::of(&first);
    let (mut lo, mut hi) = (u128::MAX, 0u128);
    for ip in it {
        let n = ip_to_u128(ip);
        lo = lo.min(n);
        hi = hi.max(n);
    }
    let bits = f.bits();
    let host_bits = (128 - (lo ^ hi).leading_zeros()).max(8);
    let len = bits.saturating_sub(host_bits) as u8;
    let mask = if host_bits >= 128 {
        0
    } else {
        !((1u128 << host_bits) - 1)
    };
    Some(Cidr {
        family: f,
        addr: lo & mask,
        len,
    })
}
