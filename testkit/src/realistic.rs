//! A deterministic cluster shaped like a real one: the published statistics
//! of the k8s-netpol-scale study's production cluster (5,413 pods, 604
//! namespaces, 13,678 NetworkPolicies of which 3,559 have no rules; the
//! median policy with rules selects 6 local pods and has 1 ipBlock, 1 port,
//! 1 pod-selector peer and 2 peer pods), beside [`crate::synth`]'s regular
//! one.
//!
//! The totals are exact; the medians come from skewed distributions drawn
//! with [`Rng`]. Seed 42 gives medians of exactly 6 local pods, 1 ipBlock,
//! 1 port, 1 pod-selector peer and 2 peer pods (means 9.7, 0.91, 1.38, 1.01
//! and 3.4; the largest policy selects 120 pods); the unit test computes
//! them from the generated objects (selectors evaluated) and holds them to
//! the targets: the one-valued ones exactly, local pods 6 ± 1, peer pods
//! 2 ± 1. The distributions:
//!
//! - pods per namespace: log-normal weights (σ = 1.2), scaled to 5,413 with
//!   at least one pod each;
//! - within a namespace, workloads (`app` label) of log-normal size
//!   (median 5, σ = 0.9), the last one taking what is left;
//! - policies per namespace proportional to its pods (largest remainder);
//!   exactly 3,559 of them, drawn without replacement, have no rules
//!   (default deny: `podSelector: {}` with Ingress, Ingress+Egress or
//!   Egress, one in six selecting a workload instead);
//! - a policy with rules selects one workload (one in ten: `{}`), chosen
//!   with weight proportional to its size, as big workloads attract more
//!   policies; ingress only 70 %, egress only 15 %, both 15 %;
//! - ipBlocks per policy: none 45 %, else 1 + geometric(0.6); ports: none
//!   25 %, else 1 + geometric(0.55); pod-selector peers: none 40 %, else
//!   1 + geometric(0.6), each one a workload of the same namespace (70 %) or
//!   of another (namespaceSelector by name), chosen by a target size drawn
//!   log-normal (median 1.5, σ = 1), 15 % of them matching no pod at all (a
//!   component that is not deployed); namespace-only peers (every pod of one
//!   namespace) in 8 % of policies.
//!
//! Pods are placed like the synthetic ones: a namespace's pods on
//! consecutive nodes from an offset, each node numbering its own addresses
//! (dual stack, `10.(100+node).x.y`), so node-01's table sees local pods of
//! many namespaces and peers on other nodes.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol::core::diag::Source;
use nftpol::core::k8s::Objects;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::synth::{Rng, Scale, pod_ips};

/// The real cluster's size (nodes are not in the study: 40 gives ~135 pods
/// per node).
pub const SCALE: Scale = Scale {
    name: "realistic",
    namespaces: 604,
    pods: 5_413,
    policies: 13_678,
    nodes: 40,
};

/// Policies without rules in the real cluster.
pub const EMPTY_POLICIES: usize = 3_559;

/// A uniform draw in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    rng.below(1 << 53) as f64 / (1u64 << 53) as f64
}

/// An approximately standard normal draw (Irwin–Hall: 12 uniforms − 6).
fn normal(rng: &mut Rng) -> f64 {
    (0..12).map(|_| unit(rng)).sum::<f64>() - 6.0
}

/// Log-normal with the given median and σ.
pub fn lognormal(rng: &mut Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Failures before the first success, success probability `p`.
pub fn geometric(rng: &mut Rng, p: f64) -> usize {
    let mut k = 0;
    while unit(rng) >= p {
        k += 1;
    }
    k
}

/// 0 with probability `p_zero`, else 1 + geometric(`p`).
fn count(rng: &mut Rng, p_zero: f64, p: f64) -> usize {
    if unit(rng) < p_zero {
        0
    } else {
        1 + geometric(rng, p)
    }
}

/// Splits `total` over `weights` proportionally (largest remainder), each
/// part at least `min`.
fn apportion(total: usize, weights: &[f64], min: usize) -> Vec<usize> {
    let spare = total - min * weights.len();
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * spare as f64).collect();
    let mut parts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a].fract(), exact[b].fract());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let short = spare - parts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        parts[i] += 1;
    }
    parts.iter().map(|p| p + min).collect()
}

/// A namespace of the generated cluster: its workloads (`app` values) and
/// their sizes.
struct Ns {
    name: String,
    apps: Vec<usize>,
}

const TIERS: [&str; 4] = ["web", "api", "db", "worker"];
const CIDRS: [&str; 8] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "169.254.169.254/32",
    "203.0.113.0/24",
    "198.51.100.17/32",
    "100.64.0.0/10",
];
const PORTS: [u16; 9] = [80, 443, 8080, 5432, 6379, 3306, 9090, 8443, 27017];

/// Picks an index with probability proportional to `weights[i]`.
fn weighted(rng: &mut Rng, weights: &[usize]) -> usize {
    let total: usize = weights.iter().sum();
    let mut x = rng.below(total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// The workload of `ns` whose size is closest to `target` (ties: random).
fn closest(rng: &mut Rng, ns: &Ns, target: usize) -> usize {
    let best = ns.apps.iter().map(|s| s.abs_diff(target)).min().unwrap();
    let ties: Vec<usize> = (0..ns.apps.len())
        .filter(|&i| ns.apps[i].abs_diff(target) == best)
        .collect();
    ties[rng.below(ties.len())]
}

fn app_name(i: usize) -> String {
    format!("app-{i}")
}

/// A pod-selector peer: a workload of `own` or (30 %) of another namespace.
fn pod_peer(rng: &mut Rng, nss: &[Ns], own: usize) -> Value {
    let other = rng.below(10) < 3;
    let n = if other { rng.below(nss.len()) } else { own };
    let sel = if rng.below(100) < 15 {
        // A component that is not deployed (yet, or here).
        json!({"matchLabels": {"app": "not-deployed"}})
    } else {
        let target = lognormal(rng, 1.5, 1.0).round() as usize;
        let a = closest(rng, &nss[n], target.max(1));
        json!({"matchLabels": {"app": app_name(a)}})
    };
    if other {
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": nss[n].name}},
            "podSelector": sel})
    } else {
        json!({"podSelector": sel})
    }
}

fn cidr_peer(rng: &mut Rng) -> Value {
    let cidr = CIDRS[rng.below(CIDRS.len())];
    if cidr == "0.0.0.0/0" {
        json!({"ipBlock": {"cidr": cidr, "except": ["10.0.0.0/8", "169.254.169.254/32"]}})
    } else {
        json!({"ipBlock": {"cidr": cidr}})
    }
}

fn port(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => json!({"port": "http"}),
        1 => json!({"port": 53, "protocol": "UDP"}),
        2 => json!({"port": 30000, "endPort": 30100}),
        _ => json!({"port": PORTS[rng.below(PORTS.len())]}),
    }
}

/// A policy without rules: default deny, mostly of the whole namespace.
fn empty_spec(rng: &mut Rng, ns: &Ns) -> Value {
    let sel = if rng.below(6) == 0 {
        json!({"matchLabels": {"app": app_name(rng.below(ns.apps.len()))}})
    } else {
        json!({})
    };
    let types = match rng.below(10) {
        0..=5 => json!(["Ingress"]),
        6..=8 => json!(["Ingress", "Egress"]),
        _ => json!(["Egress"]),
    };
    json!({"podSelector": sel, "policyTypes": types})
}

/// A policy with rules (see the module doc for the distributions).
fn rules_spec(rng: &mut Rng, nss: &[Ns], n: usize) -> Value {
    let ns = &nss[n];
    let sel = if rng.below(10) == 0 {
        json!({})
    } else {
        json!({"matchLabels": {"app": app_name(weighted(rng, &ns.apps))}})
    };
    let (ingress, egress) = match rng.below(20) {
        0..=13 => (true, false),
        14..=16 => (false, true),
        _ => (true, true),
    };
    let cidrs = count(rng, 0.45, 0.6);
    let pods = count(rng, 0.40, 0.6);
    let ports = count(rng, 0.25, 0.55);
    let ns_only = rng.below(100) < 8;
    // Peers and ports go to the one or two rules; CIDRs prefer egress.
    let mut rules = [Vec::new(), Vec::new()];
    let mut rule_ports = [Vec::new(), Vec::new()];
    let dirs: Vec<usize> = match (ingress, egress) {
        (true, true) => vec![0, 1],
        (true, false) => vec![0],
        _ => vec![1],
    };
    let pick = |rng: &mut Rng, prefer: usize| {
        if dirs.contains(&prefer) && rng.below(4) != 0 {
            prefer
        } else {
            dirs[rng.below(dirs.len())]
        }
    };
    for _ in 0..cidrs {
        let d = pick(rng, 1);
        rules[d].push(cidr_peer(rng));
    }
    for _ in 0..pods {
        let d = pick(rng, 0);
        rules[d].push(pod_peer(rng, nss, n));
    }
    if ns_only {
        let d = pick(rng, 0);
        let other = &nss[rng.below(nss.len())].name;
        rules[d].push(
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other}}}),
        );
    }
    for _ in 0..ports {
        let d = dirs[rng.below(dirs.len())];
        rule_ports[d].push(port(rng));
    }
    let mut spec = json!({"podSelector": sel});
    let mut types = Vec::new();
    for (d, (key, peers_key, ty)) in [("ingress", "from", "Ingress"), ("egress", "to", "Egress")]
        .into_iter()
        .enumerate()
    {
        if !dirs.contains(&d) {
            continue;
        }
        let mut rule = json!({});
        if !rules[d].is_empty() {
            rule[peers_key] = Value::Array(std::mem::take(&mut rules[d]));
        }
        if !rule_ports[d].is_empty() {
            rule["ports"] = Value::Array(std::mem::take(&mut rule_ports[d]));
        }
        spec[key] = json!([rule]);
        types.push(ty);
    }
    spec["policyTypes"] = json!(types);
    spec
}

fn typed<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a generated object")
}

/// Generates the realistic cluster, deterministically from `seed`.
pub fn generate(seed: u64) -> Objects {
    let scale = SCALE;
    let mut rng = Rng::new(seed);
    let weights: Vec<f64> = (0..scale.namespaces)
        .map(|_| lognormal(&mut rng, 1.0, 1.2))
        .collect();
    let sizes = apportion(scale.pods, &weights, 1);
    let mut nss = Vec::new();
    for (n, &size) in sizes.iter().enumerate() {
        let mut apps = Vec::new();
        let mut left = size;
        while left > 0 {
            let s = (lognormal(&mut rng, 5.0, 0.9).round() as usize).clamp(1, left);
            apps.push(s);
            left -= s;
        }
        nss.push(Ns {
            name: format!("ns-{n:03}"),
            apps,
        });
    }
    let (mut docs_ns, mut docs_pods, mut docs_pol) = (Vec::new(), Vec::new(), Vec::new());
    let mut on_node = vec![0usize; scale.nodes];
    for (n, ns) in nss.iter().enumerate() {
        docs_ns.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns.name, "labels": {"kubernetes.io/metadata.name": ns.name,
                "team": format!("team-{}", n % 60)}}}));
        let mut k = 0;
        for (a, &replicas) in ns.apps.iter().enumerate() {
            let tier = TIERS[rng.below(TIERS.len())];
            for r in 0..replicas {
                let node = (n + k) % scale.nodes;
                k += 1;
                let (v4, v6) = pod_ips(on_node[node], node);
                on_node[node] += 1;
                docs_pods.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{}-{r}", app_name(a)), "namespace": ns.name,
                        "labels": {"app": app_name(a), "tier": tier, "version": "v1"}},
                    "spec": {"nodeName": format!("node-{node:02}"), "containers": [{"name": "c",
                        "image": "i", "ports": [{"name": "http", "containerPort": 8080},
                                                {"name": "metrics", "containerPort": 9090}]}]},
                    "status": {"phase": "Running", "podIPs": [{"ip": v4}, {"ip": v6}]}}));
            }
        }
    }
    let per_ns = apportion(
        scale.policies,
        &sizes.iter().map(|&s| s as f64).collect::<Vec<_>>(),
        0,
    );
    // Exactly EMPTY_POLICIES of them without rules, drawn without replacement.
    let (mut left, mut empty_left) = (scale.policies, EMPTY_POLICIES);
    for (n, &count) in per_ns.iter().enumerate() {
        for k in 0..count {
            let empty = rng.below(left) < empty_left;
            left -= 1;
            let spec = if empty {
                empty_left -= 1;
                empty_spec(&mut rng, &nss[n])
            } else {
                rules_spec(&mut rng, &nss, n)
            };
            docs_pol.push(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("pol-{k:03}"), "namespace": nss[n].name},
                "spec": spec}),
            );
        }
    }
    let src = Source {
        file: "realistic".into(),
        document: 0,
        item: None,
    };
    Objects {
        namespaces: docs_ns
            .into_iter()
            .map(|v| (src.clone(), typed(v)))
            .collect::<Vec<(Source, Namespace)>>(),
        pods: docs_pods
            .into_iter()
            .map(|v| (src.clone(), typed(v)))
            .collect::<Vec<(Source, Pod)>>(),
        policies: docs_pol
            .into_iter()
            .map(|v| (src.clone(), typed(v)))
            .collect::<Vec<(Source, NetworkPolicy)>>(),
        ..Objects::default()
    }
}

#[cfg(test)]
mod tests;
