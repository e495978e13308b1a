//! A deterministic synthetic cluster generator for benchmarks.
//!
//! Namespaces carry `team` and `env` labels; pods carry `app`, `tier`, `team`
//! and `version` and declare named ports; every namespace gets a realistic mix
//! of policies: default-deny ingress, same-namespace allows (numeric and named
//! ports), cross-namespace allows by namespaceSelector, egress to an ipBlock
//! with except over a port range, and a monitoring allow.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol::core::diag::Source;
use nftpol::core::k8s::Objects;
use serde_json::{Value, json};

/// Cluster size.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Name in reports.
    pub name: &'static str,
    /// Namespaces.
    pub namespaces: usize,
    /// Pods, spread evenly over namespaces and nodes.
    pub pods: usize,
    /// Policies, spread evenly over namespaces.
    pub policies: usize,
    /// Nodes.
    pub nodes: usize,
}

/// The scales of the performance issue.
pub const SCALES: [Scale; 3] = [
    Scale {
        name: "small",
        namespaces: 10,
        pods: 100,
        policies: 50,
        nodes: 20,
    },
    Scale {
        name: "medium",
        namespaces: 100,
        pods: 1_000,
        policies: 500,
        nodes: 20,
    },
    Scale {
        name: "large",
        namespaces: 1_000,
        pods: 10_000,
        policies: 5_000,
        nodes: 20,
    },
];

/// SplitMix64: tiny, deterministic, good enough to spread labels.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next value below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

const TIERS: [&str; 3] = ["web", "api", "db"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

fn ns_name(i: usize) -> String {
    format!("ns-{i:04}")
}

/// Pod `i` of node `node`'s addresses (IPv4, IPv6).
pub fn pod_ips(i: usize, node: usize) -> (String, String) {
    // Node d owns 10.(100+d).0.0/16 and fd00:10:(100+d)::/48, in blocks of 250 pods.
    let block = i / 250;
    let host = i % 250 + 2;
    (
        format!("10.{}.{}.{}", 100 + node, block, host),
        format!("fd00:10:{:x}:{:x}::{:x}", 100 + node, block, host),
    )
}

/// Generates the cluster for a scale, deterministically from `seed`.
pub fn generate(scale: Scale, seed: u64) -> Objects {
    let mut rng = Rng::new(seed);
    let mut docs_ns = Vec::new();
    let mut docs_pods = Vec::new();
    let mut docs_pol = Vec::new();
    let teams = (scale.namespaces / 5).max(2);
    for n in 0..scale.namespaces {
        let team = format!("team-{}", n % teams);
        let env = ENVS[rng.below(3)];
        let name = if n == 0 {
            "monitoring".to_string()
        } else {
            ns_name(n)
        };
        docs_ns.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"team": team, "env": env}}}));
    }
    let ns_of = |n: usize| {
        if n == 0 {
            "monitoring".to_string()
        } else {
            ns_name(n)
        }
    };
    // Pods of one namespace spread over consecutive nodes (pod i of namespace
    // n, i = n + k * namespaces, runs on node (n + k) % nodes), so a node's
    // table sees peers on other nodes; each node numbers its own pods.
    let mut on_node = vec![0usize; scale.nodes];
    for i in 0..scale.pods {
        let n = i % scale.namespaces;
        let node = (n + i / scale.namespaces) % scale.nodes;
        let index = on_node[node];
        on_node[node] += 1;
        let app = format!("app-{}", rng.below(5));
        let tier = TIERS[rng.below(3)];
        let (v4, v6) = pod_ips(index, node);
        let http = if rng.below(2) == 0 { 8080 } else { 9090 };
        docs_pods.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i:05}"), "namespace": ns_of(n),
                "labels": {"app": app, "tier": tier, "team": format!("team-{}", n % teams),
                           "version": format!("v{}", rng.below(3))}},
            "spec": {"nodeName": format!("node-{node:02}"), "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": http},
                          {"name": "metrics", "containerPort": 9100},
                          {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIPs": [{"ip": v4}, {"ip": v6}]}}));
    }
    let per_ns = scale.policies.div_ceil(scale.namespaces).max(1);
    let mut made = 0;
    'outer: for n in 0..scale.namespaces {
        for k in 0..per_ns {
            if made == scale.policies {
                break 'outer;
            }
            made += 1;
            let ns = ns_of(n);
            let spec = policy_spec(k, &mut rng, teams);
            docs_pol.push(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("pol-{k}"), "namespace": ns}, "spec": spec}),
            );
        }
    }
    let src = Source {
        file: "synthetic".into(),
        document: 0,
        item: None,
    };
    let conv = |v: Vec<Value>| -> Vec<Value> { v };
    Objects {
        namespaces: conv(docs_ns)
            .into_iter()
            .map(|v| (src.clone(), serde_json::from_value::<Namespace>(v).unwrap()))
            .collect(),
        pods: conv(docs_pods)
            .into_iter()
            .map(|v| (src.clone(), serde_json::from_value::<Pod>(v).unwrap()))
            .collect(),
        policies: conv(docs_pol)
            .into_iter()
            .map(|v| {
                (
                    src.clone(),
                    serde_json::from_value::<NetworkPolicy>(v).unwrap(),
                )
            })
            .collect(),
        ..Objects::default()
    }
}

fn policy_spec(k: usize, rng: &mut Rng, teams: usize) -> Value {
    let app = |rng: &mut Rng| format!("app-{}", rng.below(5));
    match k % 5 {
        0 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        1 => json!({"podSelector": {"matchLabels": {"app": app(rng)}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app(rng)}}}],
                         "ports": [{"port": "http"}, {"port": 8443}]}]}),
        2 => json!({"podSelector": {"matchLabels": {"tier": "api"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("team-{}", rng.below(teams))}},
                                   "podSelector": {"matchLabels": {"tier": "web"}}}],
                         "ports": [{"port": 443}, {"port": 8000, "endPort": 8100}]}]}),
        3 => json!({"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}],
                        "ports": [{"port": 5432, "endPort": 5440}]},
                       {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": [{"port": "dns", "protocol": "UDP"}]}]}),
        _ => {
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                         "ports": [{"port": "metrics"}]}]})
        }
    }
}

/// ClusterNetworkPolicies the benchmarks add at a scale: 25 / 100 / 500 at
/// the small / medium / large scale.
pub fn cluster_policy_count(scale: &Scale) -> usize {
    match scale.name {
        "small" => 25,
        "medium" => 100,
        _ => 500,
    }
}

/// Adds `n` ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2) to a
/// generated cluster, deterministically from `seed`: about 60% Admin and 40%
/// Baseline, priorities spread over 0..1000 with some collisions, subjects
/// mostly namespace selectors on the namespaces' `team`/`env` labels and some
/// pod selectors on the pods' `app`/`tier` labels, 1 to 5 rules each (Accept,
/// Deny, Pass) with namespaces, pods and networks peers over TCP/UDP port
/// numbers and ranges. The objects go through the real loader
/// ([`nftpol::core::k8s::load::parse_into`]) as JSON; panics on an error
/// diagnostic.
pub fn add_cluster_policies(objs: &mut Objects, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    // The vocabulary of the generated namespaces.
    let mut teams: Vec<String> = objs
        .namespaces
        .iter()
        .filter_map(|(_, ns)| ns.metadata.labels.as_ref()?.get("team").cloned())
        .collect();
    teams.sort();
    teams.dedup();
    if teams.is_empty() {
        teams.push("team-0".into());
    }
    let names: Vec<String> = objs
        .namespaces
        .iter()
        .filter_map(|(_, ns)| ns.metadata.name.clone())
        .collect();
    let team = |rng: &mut Rng| teams[rng.below(teams.len())].clone();
    let ns_sel = |rng: &mut Rng| -> Value {
        match rng.below(6) {
            0 => json!({}),
            1 | 2 => json!({"matchLabels": {"team": team(rng)}}),
            3 => json!({"matchLabels": {"env": ENVS[rng.below(3)]}}),
            4 if !names.is_empty() => {
                json!({"matchLabels": {"kubernetes.io/metadata.name": names[rng.below(names.len())]}})
            }
            _ => json!({"matchExpressions": [{"key": "team", "operator": "In",
                "values": [team(rng), team(rng)]}]}),
        }
    };
    let pod_sel = |rng: &mut Rng| -> Value {
        match rng.below(3) {
            0 => json!({"matchLabels": {"app": format!("app-{}", rng.below(5))}}),
            1 => json!({"matchLabels": {"tier": TIERS[rng.below(3)]}}),
            _ => json!({"matchLabels": {"tier": TIERS[rng.below(3)],
                "version": format!("v{}", rng.below(3))}}),
        }
    };
    let protocols = |rng: &mut Rng| -> Option<Value> {
        let k = rng.below(4);
        if k == 0 {
            return None;
        }
        let ports: Vec<Value> = (0..k)
            .map(|_| {
                let proto = if rng.below(4) == 0 { "udp" } else { "tcp" };
                let port = match rng.below(3) {
                    0 => {
                        let start = 1000 + rng.below(50) * 100;
                        json!({"range": {"start": start, "end": start + 10 + rng.below(90)}})
                    }
                    _ => {
                        const PORTS: [u16; 8] = [53, 80, 443, 5432, 6379, 8080, 9090, 9100];
                        json!({"number": PORTS[rng.below(PORTS.len())]})
                    }
                };
                json!({proto: {"destinationPort": port}})
            })
            .collect();
        Some(Value::Array(ports))
    };
    let mut docs = Vec::with_capacity(n);
    for i in 0..n {
        let admin = rng.below(10) < 6;
        // Collisions: one in five priorities is a multiple of 50.
        let priority = if rng.below(5) == 0 {
            rng.below(20) * 50
        } else {
            rng.below(1000)
        };
        let subject = if rng.below(4) == 0 {
            json!({"pods": {"namespaceSelector": ns_sel(&mut rng), "podSelector": pod_sel(&mut rng)}})
        } else {
            json!({"namespaces": ns_sel(&mut rng)})
        };
        let (mut ingress, mut egress) = (Vec::new(), Vec::new());
        for r in 0..1 + rng.below(5) {
            let action = match rng.below(10) {
                0..=3 => "Accept",
                4..=6 => "Deny",
                _ => "Pass",
            };
            let mut rule = json!({"name": format!("r{r}"), "action": action});
            if let Some(p) = protocols(&mut rng) {
                rule["protocols"] = p;
            }
            if rng.below(2) == 0 {
                let peer = match rng.below(2) {
                    0 => json!({"namespaces": ns_sel(&mut rng)}),
                    _ => json!({"pods": {"namespaceSelector": ns_sel(&mut rng),
                        "podSelector": pod_sel(&mut rng)}}),
                };
                rule["from"] = json!([peer]);
                ingress.push(rule);
            } else {
                let peer = match rng.below(4) {
                    0 => json!({"namespaces": ns_sel(&mut rng)}),
                    1 => json!({"pods": {"namespaceSelector": ns_sel(&mut rng),
                        "podSelector": pod_sel(&mut rng)}}),
                    2 => json!({"networks": ["169.254.169.254/32", "fd00:ec2::254/128"]}),
                    _ => {
                        const NETS: [&str; 4] = [
                            "10.0.0.0/8",
                            "172.16.0.0/12",
                            "192.168.0.0/16",
                            "100.64.0.0/10",
                        ];
                        json!({"networks": [NETS[rng.below(NETS.len())]]})
                    }
                };
                rule["to"] = json!([peer]);
                egress.push(rule);
            }
        }
        let mut spec = json!({
            "tier": if admin { "Admin" } else { "Baseline" },
            "priority": priority,
            "subject": subject,
        });
        if !ingress.is_empty() {
            spec["ingress"] = Value::Array(ingress);
        }
        if !egress.is_empty() {
            spec["egress"] = Value::Array(egress);
        }
        docs.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": format!("cnp-{i:04}")}, "spec": spec}));
    }
    let text = Value::Array(docs).to_string();
    let mut diags = Vec::new();
    nftpol::core::k8s::load::parse_into(&text, "synthetic-cnp", objs, &mut diags);
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        panic!("synthetic ClusterNetworkPolicy does not load: {d:?}");
    }
}
