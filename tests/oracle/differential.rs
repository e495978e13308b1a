//! Differential property test: random small clusters and random flows; the
//! verdict of the compiled ruleset (run through the packet tracer, on every
//! node the packet crosses, each node with its own `--node` ruleset) must equal
//! the verdict of the naive reference evaluator in `nftpol_testkit::oracle`, which
//! shares no code with the compiler.
//!
//! `PROPTEST_CASES` sets the number of clusters (default 10,000 here).
//!
//! Every cluster has two Nodes (node-1, node-2; their InternalIP and ExternalIP addresses are
//! no pod's) and the flows include their addresses, except between a pod and an address of the
//! node it runs on (the kernel sees those in the input and output hooks, which the oracle
//! leaves out of scope). With [`GENERATE_CNPS`] (or `NFTPOL_DIFFERENTIAL_CNPS=1`) each cluster
//! also gets 0–4 random ClusterNetworkPolicies, fed to the compiler as JSON text through
//! `nftpol::core::k8s::load::parse_into` together with the Nodes; a cluster whose objects the
//! loader refuses (an error diagnostic: the CLI would print no ruleset) is counted and skipped.

use nftpol_testkit::oracle;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol::core::compile::Options;
use nftpol::core::diag::Source;
use nftpol::core::model::Protocol;
use nftpol_testkit::trace::{L4, Outcome, Packet, trace};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::{Value, json};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PORTS: [u16; 8] = [53, 80, 81, 1000, 1500, 8080, 9090, 9100];
const EXTERNAL: [&str; 4] = ["192.168.7.7", "10.0.0.5", "172.17.1.9", "fd00:99::5"];

/// Generate ClusterNetworkPolicies (and feed the compiler the Nodes): on; `false` here plus
/// `NFTPOL_DIFFERENTIAL_CNPS=1` would make it opt-in again.
const GENERATE_CNPS: bool = true;

/// [`GENERATE_CNPS`], or the environment asking for it.
fn cnps_on() -> bool {
    GENERATE_CNPS || std::env::var("NFTPOL_DIFFERENTIAL_CNPS").is_ok_and(|v| v == "1")
}

/// The nodes' addresses: (node, address type, address). None is a pod's address; a
/// host-network pod on node N has 192.168.0.N.
const NODE_ADDRESSES: [(&str, &str, &str); 5] = [
    ("node-1", "InternalIP", "192.168.0.1"),
    ("node-1", "InternalIP", "fd00:192::1"),
    ("node-1", "ExternalIP", "203.0.113.1"),
    ("node-2", "InternalIP", "192.168.0.2"),
    ("node-2", "InternalIP", "fd00:192::2"),
];

/// CIDRs for `networks` peers: pod subnets and single pods, node addresses, everything.
const NETWORKS: [&str; 14] = [
    "10.244.1.0/24",
    "10.244.2.0/24",
    "10.244.0.0/16",
    "10.244.1.3/32",
    "10.244.2.4/31",
    "0.0.0.0/0",
    "::/0",
    "fd00:10:244:1::/64",
    "fd00:10:244::/48",
    "192.168.0.0/24",
    "192.168.0.2/32",
    "fd00:192::/64",
    "203.0.113.0/24",
    "172.16.0.0/12",
];

/// CNP names, not in index order, so that equal priorities are ordered by name, not input.
const CNP_NAMES: [&str; 4] = ["m", "c", "x", "a"];

/// A label selector drawn from a small vocabulary so selectors often match.
fn selector() -> impl Strategy<Value = Value> {
    selector_with(vec!["In", "NotIn", "Exists", "DoesNotExist", "Bogus"])
}

/// [`selector`] with the given operators.
fn selector_with(operators: Vec<&'static str>) -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec!["app", "tier", "team"]);
    let val = prop::sample::select(vec!["a", "b", "c"]);
    let expr = (
        key.clone(),
        prop::sample::select(operators),
        prop::collection::vec(val.clone(), 1..3),
    )
        .prop_map(|(k, op, vs)| match op {
            "Exists" | "DoesNotExist" => json!({"key": k, "operator": op}),
            _ => json!({"key": k, "operator": op, "values": vs}),
        });
    prop_oneof![
        3 => Just(json!({})),
        4 => prop::collection::btree_map(key, val, 1..3).prop_map(|m| json!({"matchLabels": m})),
        3 => prop::collection::vec(expr, 1..3).prop_map(|e| json!({"matchExpressions": e})),
    ]
}

fn ns_selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(json!({})),
        3 => prop::sample::select(NAMESPACES.to_vec())
            .prop_map(|n| json!({"matchLabels": {"ns": n}})),
        1 => prop::sample::select(NAMESPACES.to_vec()).prop_map(|n| json!({
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [n]}]
        })),
        1 => Just(json!({"matchLabels": {"env": "prod"}})),
    ]
}

fn ip_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]})),
        Just(json!({"cidr": "10.244.1.0/24"})),
        Just(json!({"cidr": "10.244.2.2/31"})),
        Just(json!({"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16", "192.168.0.0/16"]})),
        Just(json!({"cidr": "fd00:10:244::/48", "except": ["fd00:10:244:2::/64"]})),
        Just(json!({"cidr": "::/0"})),
        Just(json!({"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]})), // invalid: except outside
    ]
}

fn peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => selector().prop_map(|s| json!({"podSelector": s})),
        2 => ns_selector().prop_map(|s| json!({"namespaceSelector": s})),
        2 => (ns_selector(), selector())
            .prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p})),
        2 => ip_block().prop_map(|b| json!({"ipBlock": b})),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    let proto = prop::sample::select(vec![None, Some("TCP"), Some("UDP"), Some("SCTP")]);
    let num = prop::sample::select(PORTS.to_vec());
    let which = prop_oneof![
        1 => Just(Value::Null),
        4 => num.clone().prop_map(|n| json!(n)),
        3 => prop::sample::select(vec!["http", "dns", "metrics", "absent"]).prop_map(|n| json!(n)),
        2 => (num, 0u16..9000).prop_map(|(a, d)| json!([a, a.saturating_add(d)])),
    ];
    (proto, which).prop_map(|(proto, which)| {
        let mut p = serde_json::Map::new();
        if let Some(pr) = proto {
            p.insert("protocol".into(), json!(pr));
        }
        match which {
            Value::Array(r) => {
                p.insert("port".into(), r[0].clone());
                p.insert("endPort".into(), r[1].clone());
            }
            Value::Null => {}
            v => {
                p.insert("port".into(), v);
            }
        }
        Value::Object(p)
    })
}

/// `None` = field absent; `Some(vec![])` = empty list.
fn opt_list<S: Strategy<Value = Value>>(s: S) -> impl Strategy<Value = Option<Vec<Value>>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(vec![])),
        4 => prop::collection::vec(s, 1..3).prop_map(Some),
    ]
}

fn rule(peer_field: &'static str) -> impl Strategy<Value = Value> {
    (opt_list(peer()), opt_list(port())).prop_map(move |(peers, ports)| {
        let mut r = serde_json::Map::new();
        if let Some(p) = peers {
            r.insert(peer_field.into(), json!(p));
        }
        if let Some(p) = ports {
            r.insert("ports".into(), json!(p));
        }
        Value::Object(r)
    })
}

fn policy(i: usize) -> impl Strategy<Value = Value> {
    let types = prop::sample::select(vec![
        None,
        Some(vec![]),
        Some(vec!["Ingress"]),
        Some(vec!["Egress"]),
        Some(vec!["Ingress", "Egress"]),
    ]);
    (
        prop::sample::select(NAMESPACES.to_vec()),
        selector(),
        types,
        opt_list(rule("from")),
        opt_list(rule("to")),
    )
        .prop_map(move |(ns, sel, types, ingress, egress)| {
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), sel);
            if let Some(t) = types {
                spec.insert("policyTypes".into(), json!(t));
            }
            if let Some(r) = ingress {
                spec.insert("ingress".into(), json!(r));
            }
            if let Some(r) = egress {
                spec.insert("egress".into(), json!(r));
            }
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("p{i}"), "namespace": ns},
                "spec": spec,
            })
        })
}

/// Pod i: namespace, labels, node, dual-stack or not, named ports, and state.
fn pod(i: usize) -> impl Strategy<Value = Value> {
    let labels = prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier", "team"]),
        prop::sample::select(vec!["a", "b", "c"]),
        0..3,
    );
    let named = prop::collection::vec(
        prop::sample::select(vec![
            ("http", "TCP", 8080),
            ("http", "TCP", 9090),
            ("http", "UDP", 8080),
            ("dns", "UDP", 53),
            ("dns", "TCP", 53),
            ("metrics", "TCP", 9100),
        ]),
        0..3,
    );
    let state = prop::sample::select(vec![
        "Running",
        "Running",
        "Running",
        "Running",
        "Pending",
        "Succeeded",
        "host",
    ]);
    (
        prop::sample::select(NAMESPACES.to_vec()),
        labels,
        1u8..=2,
        any::<bool>(),
        named,
        state,
    )
        .prop_map(move |(ns, labels, node, v6, named, state)| {
            let mut seen = std::collections::BTreeSet::new();
            let ports: Vec<Value> = named
                .into_iter()
                .filter(|(n, _, _)| seen.insert(*n))
                .map(|(n, p, num)| json!({"name": n, "protocol": p, "containerPort": num}))
                .collect();
            let v4 = format!("10.244.{node}.{}", i + 2);
            let mut ips = vec![json!({"ip": v4})];
            if v6 {
                ips.push(json!({"ip": format!("fd00:10:244:{node}::{:x}", i + 2)}));
            }
            let (phase, status_ips, host) = match state {
                "Pending" => ("Pending", vec![], false),
                "host" => (
                    "Running",
                    vec![json!({"ip": format!("192.168.0.{node}")})],
                    true,
                ),
                p => (p, ips, false),
            };
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod{i}"), "namespace": ns, "labels": labels},
                "spec": {"nodeName": format!("node-{node}"), "hostNetwork": host,
                         "containers": [{"name": "c", "image": "i", "ports": ports}]},
                "status": {"phase": phase, "podIPs": status_ips},
            })
        })
}

fn namespaces() -> impl Strategy<Value = Vec<Value>> {
    let team = prop::sample::select(vec![None, Some("a"), Some("b")]);
    prop::collection::vec((any::<bool>(), team), 3).prop_map(|v| {
        v.into_iter()
            .zip(NAMESPACES)
            .filter(|((present, _), _)| *present)
            .map(|((_, team), n)| {
                let mut labels = BTreeMap::from([("ns", n)]);
                if let Some(t) = team {
                    labels.insert("team", t);
                }
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}})
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// ClusterNetworkPolicies and Nodes
// ---------------------------------------------------------------------------------------------

/// A CNP label selector: only usable operators (invalid CNPs are made on purpose, below).
fn cnp_selector() -> impl Strategy<Value = Value> {
    selector_with(vec!["In", "NotIn", "Exists", "DoesNotExist"])
}

/// A NamespacedPod: namespaceSelector (sometimes absent: every namespace) and podSelector.
fn namespaced_pod() -> impl Strategy<Value = Value> {
    (prop::option::weighted(0.7, ns_selector()), cnp_selector()).prop_map(|(n, p)| match n {
        Some(n) => json!({"namespaceSelector": n, "podSelector": p}),
        None => json!({"podSelector": p}),
    })
}

fn node_selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"matchLabels": {"zone": "a"}})),
        Just(json!({"matchLabels": {"zone": "b"}})),
        Just(json!({"matchLabels": {"kubernetes.io/hostname": "node-2"}})),
        Just(json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]})),
    ]
}

fn cnp_peer(egress: bool) -> BoxedStrategy<Value> {
    let pods = prop_oneof![
        3 => ns_selector().prop_map(|s| json!({"namespaces": s})),
        3 => namespaced_pod().prop_map(|p| json!({"pods": p})),
    ];
    if !egress {
        return pods.boxed();
    }
    let networks = prop::collection::btree_set(prop::sample::select(NETWORKS.to_vec()), 1..3)
        .prop_map(|n| json!({"networks": n}));
    prop_oneof![
        6 => pods,
        2 => node_selector().prop_map(|s| json!({"nodes": s})),
        3 => networks,
        1 => Just(json!({"domainNames": ["example.com", "*.kubernetes.io"]})),
    ]
    .boxed()
}

fn cnp_protocol() -> impl Strategy<Value = Value> {
    let number = prop::sample::select(PORTS.to_vec()).prop_map(|n| json!({"number": n}));
    let range = (prop::sample::select(PORTS.to_vec()), 1u16..2000)
        .prop_map(|(a, d)| json!({"range": {"start": a, "end": a.saturating_add(d)}}));
    let port = prop_oneof![3 => number, 2 => range];
    prop_oneof![
        5 => (prop::sample::select(vec!["tcp", "udp", "sctp"]), port)
            .prop_map(|(p, port)| json!({p: {"destinationPort": port}})),
        2 => prop::sample::select(vec!["http", "dns", "metrics", "absent"])
            .prop_map(|n| json!({"destinationNamedPort": n})),
    ]
}

fn cnp_rule(egress: bool) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["Accept", "Deny", "Pass"]),
        prop::collection::vec(cnp_peer(egress), 1..3),
        prop::option::weighted(0.6, prop::collection::vec(cnp_protocol(), 1..3)),
    )
        .prop_map(move |(action, peers, protocols)| {
            let mut rule = json!({"action": action, (if egress { "to" } else { "from" }): peers});
            if let Some(p) = protocols {
                rule["protocols"] = json!(p);
            }
            rule
        })
}

/// `None` = field absent; `Some(vec![])` = empty list (valid for CNP rule lists).
fn cnp_rules(egress: bool) -> impl Strategy<Value = Option<Vec<Value>>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(vec![])),
        5 => prop::collection::vec(cnp_rule(egress), 1..4).prop_map(Some),
    ]
}

/// Ways to make a CNP invalid (what the API server would reject); `None` leaves it valid.
fn cnp_breakage() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![9 => Just(None), 1 => (0usize..10).prop_map(Some)]
}

/// Apply breakage `which` to a CNP spec.
fn break_cnp(spec: &mut Value, which: usize) {
    let any_ns = json!([{"namespaces": {}}]);
    match which {
        0 => spec["tier"] = json!("admin"),
        1 => spec["priority"] = json!(1001),
        2 => {
            spec.as_object_mut().map(|s| s.remove("priority"));
        }
        3 => spec["subject"] = json!({}),
        4 => {
            spec["subject"] = json!({"namespaces": {"matchExpressions": [
                {"key": "app", "operator": "Bogus", "values": ["a"]}]}})
        }
        5 => push_rule(
            spec,
            "egress",
            json!({"action": "Accept", "to": any_ns,
                   "protocols": [{"tcp": {"destinationPort": {"range": {"start": 80, "end": 80}}}}]}),
        ),
        6 => push_rule(
            spec,
            "ingress",
            json!({"action": "Deny", "from": any_ns,
                   "protocols": [{"udp": {"destinationPort": {"number": 0}}}]}),
        ),
        7 => push_rule(
            spec,
            "egress",
            json!({"action": "Accept", "to": [{"networks": ["10.0.0.0/33"]}]}),
        ),
        8 => push_rule(spec, "egress", json!({"action": "Accept", "to": []})),
        _ => push_rule(
            spec,
            "ingress",
            json!({"action": "Accept", "from": any_ns, "protocols": [{"tcp": {}}]}),
        ),
    }
}

/// Append a rule to `spec[key]`, creating the list.
fn push_rule(spec: &mut Value, key: &str, rule: Value) {
    if !spec[key].is_array() {
        spec[key] = json!([]);
    }
    if let Some(rules) = spec[key].as_array_mut() {
        rules.push(rule);
    }
}

/// ClusterNetworkPolicy i: both tiers, priorities often equal or close, subject namespaces or
/// pods, Accept/Deny/Pass rules, sometimes invalid.
fn cluster_policy(i: usize) -> impl Strategy<Value = Value> {
    let subject = prop_oneof![
        ns_selector().prop_map(|s| json!({"namespaces": s})),
        namespaced_pod().prop_map(|p| json!({"pods": p})),
    ];
    (
        prop::sample::select(vec!["Admin", "Admin", "Admin", "Baseline", "Baseline"]),
        prop::sample::select(vec![0, 1, 1, 2, 2, 3, 10, 1000]),
        subject,
        cnp_rules(false),
        cnp_rules(true),
        cnp_breakage(),
    )
        .prop_map(move |(tier, priority, subject, ingress, egress, breakage)| {
            let mut spec = json!({"tier": tier, "priority": priority, "subject": subject});
            if let Some(r) = ingress {
                spec["ingress"] = json!(r);
            }
            if let Some(r) = egress {
                spec["egress"] = json!(r);
            }
            if let Some(which) = breakage {
                break_cnp(&mut spec, which);
            }
            json!({
                "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                "metadata": {"name": CNP_NAMES[i]},
                "spec": spec,
            })
        })
}

/// node-1 and node-2 with the [`NODE_ADDRESSES`], labels from a small vocabulary.
fn nodes() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec((prop::sample::select(vec!["a", "b"]), any::<bool>()), 2).prop_map(|v| {
        v.into_iter()
            .zip(["node-1", "node-2"])
            .map(|((zone, gpu), name)| {
                let mut labels = json!({
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "zone": zone,
                });
                if gpu {
                    labels["gpu"] = json!("yes");
                }
                let addresses: Vec<Value> = NODE_ADDRESSES
                    .iter()
                    .filter(|(node, _, _)| *node == name)
                    .map(|(_, kind, address)| json!({"type": kind, "address": address}))
                    .collect();
                json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": labels},
                    "status": {"addresses": addresses},
                })
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
struct Case {
    namespaces: Vec<Value>,
    pods: Vec<Value>,
    policies: Vec<Value>,
    /// ClusterNetworkPolicies (none unless [`cnps_on`]).
    cluster_policies: Vec<Value>,
    nodes: Vec<Value>,
}

fn case() -> impl Strategy<Value = Case> {
    case_with(if cnps_on() { 5 } else { 1 })
}

/// A case with fewer than `max_cnps` ClusterNetworkPolicies.
fn case_with(max_cnps: usize) -> impl Strategy<Value = Case> {
    (2usize..7, 0usize..5, 0usize..max_cnps)
        .prop_flat_map(|(np, npol, ncnp)| {
            (
                namespaces(),
                (0..np).map(pod).collect::<Vec<_>>(),
                (0..npol).map(policy).collect::<Vec<_>>(),
                (0..ncnp).map(cluster_policy).collect::<Vec<_>>(),
                nodes(),
            )
        })
        .prop_map(
            |(namespaces, pods, policies, cluster_policies, nodes)| Case {
                namespaces,
                pods,
                policies,
                cluster_policies,
                nodes,
            },
        )
}

fn decode<T: serde::de::DeserializeOwned>(v: &[Value]) -> Vec<T> {
    v.iter()
        .map(|x| serde_json::from_value(x.clone()).expect("generated objects decode"))
        .collect()
}

/// Runs one case: every flow between pod addresses, node addresses and a few external
/// ones, for every protocol and a few ports, compared with the oracle. `None` when the loader
/// refuses the case's ClusterNetworkPolicies or Nodes; otherwise the number of flows checked
/// and of those whose verdict the ClusterNetworkPolicies change.
fn check(case: &Case) -> Result<Option<(usize, usize)>, TestCaseError> {
    let ns: Vec<Namespace> = decode(&case.namespaces);
    let pods: Vec<Pod> = decode(&case.pods);
    let pols: Vec<NetworkPolicy> = decode(&case.policies);
    let nodes: Vec<Node> = decode(&case.nodes);
    let src = Source::default();
    // Filled field by field: the compiler's Objects grows fields for the new kinds.
    let mut objs = nftpol::core::k8s::Objects::default();
    objs.namespaces
        .extend(ns.iter().cloned().map(|o| (src.clone(), o)));
    objs.pods
        .extend(pods.iter().cloned().map(|o| (src.clone(), o)));
    objs.policies
        .extend(pols.iter().cloned().map(|o| (src.clone(), o)));
    if cnps_on() {
        // As JSON text: the test does not depend on the compiler's types for these kinds.
        let docs: Vec<Value> = case
            .nodes
            .iter()
            .chain(&case.cluster_policies)
            .cloned()
            .collect();
        let text = serde_json::to_string(&docs).expect("JSON");
        let mut diags = Vec::new();
        nftpol::core::k8s::load::parse_into(&text, "generated", &mut objs, &mut diags);
        if diags.iter().any(|d| d.is_error()) {
            return Ok(None);
        }
    }
    let mut per_node = BTreeMap::new();
    for node in ["node-1", "node-2"] {
        let out = nftpol::core::compile::compile_objects(
            &objs,
            &Options {
                node: Some(node.to_string()),
                ..Default::default()
            },
        );
        per_node.insert(node, out.ruleset);
    }
    let cluster = oracle::Cluster {
        namespaces: ns,
        pods: pods.clone(),
        policies: pols,
        cluster_policies: case.cluster_policies.clone(),
        nodes,
    };

    // Which node an active pod address lives on.
    let mut home: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (p, raw) in pods.iter().zip(&case.pods) {
        let active = raw["status"]["phase"] == "Running" && raw["spec"]["hostNetwork"] == false;
        if !active {
            continue;
        }
        let node = if raw["spec"]["nodeName"] == "node-1" {
            "node-1"
        } else {
            "node-2"
        };
        for ip in p.status.iter().flat_map(|s| s.pod_ips.iter().flatten()) {
            home.insert(ip.ip.parse().unwrap(), node);
        }
    }
    let mut addrs: Vec<IpAddr> = home.keys().copied().collect();
    addrs.extend(EXTERNAL.iter().map(|s| s.parse::<IpAddr>().unwrap()));
    // The nodes' addresses (a host-network pod's too).
    let node_of_address: BTreeMap<IpAddr, &str> = NODE_ADDRESSES
        .iter()
        .map(|(node, _, address)| (address.parse().unwrap(), *node))
        .collect();
    for ip in node_of_address.keys() {
        if !addrs.contains(ip) {
            addrs.push(*ip);
        }
    }
    // Inactive pods' addresses too: they must behave as external addresses.
    for p in &pods {
        for ip in p.status.iter().flat_map(|s| s.pod_ips.iter().flatten()) {
            let ip: IpAddr = ip.ip.parse().unwrap();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }

    let mut flows = 0;
    // Flows whose verdict the ClusterNetworkPolicies change (the generator's usefulness).
    let mut cnp_decided = 0;
    let without_cnps = oracle::Cluster {
        cluster_policies: Vec::new(),
        ..cluster.clone()
    };
    for &s in &addrs {
        for &d in &addrs {
            if s.is_ipv4() != d.is_ipv4() || (!home.contains_key(&s) && !home.contains_key(&d)) {
                continue;
            }
            // A pod and its own node: the input or output hook, out of the oracle's scope.
            let own_node = |pod: &IpAddr, address: &IpAddr| {
                home.get(pod)
                    .is_some_and(|n| node_of_address.get(address) == Some(n))
            };
            if own_node(&s, &d) || own_node(&d, &s) {
                continue;
            }
            // A pod reaching its own address never leaves its network
            // namespace. The forward hook sees it only as a hairpin through a
            // Service, which ClusterNetworkPolicy filters and the oracle (a
            // direct flow, always allowed) does not model; without CNPs the
            // table's own self exemption is checked here too.
            if s == d && !cluster.cluster_policies.is_empty() {
                continue;
            }
            for (proto, oproto) in [
                (Protocol::Tcp, oracle::Proto::Tcp),
                (Protocol::Udp, oracle::Proto::Udp),
                (Protocol::Sctp, oracle::Proto::Sctp),
            ] {
                for port in PORTS {
                    let flow = oracle::Flow {
                        src: s,
                        dst: d,
                        proto: oproto,
                        port,
                    };
                    let want = oracle::allowed(&cluster, &flow);
                    if !cluster.cluster_policies.is_empty()
                        && want != oracle::allowed(&without_cnps, &flow)
                    {
                        cnp_decided += 1;
                    }
                    // The packet crosses the forward hook of the source's node and
                    // of the destination's node (once if they are the same).
                    let mut nodes: Vec<&str> = [home.get(&s), home.get(&d)]
                        .into_iter()
                        .flatten()
                        .copied()
                        .collect();
                    nodes.dedup();
                    let pkt = Packet {
                        src: s,
                        dst: d,
                        l4: L4::Port(proto, port),
                        established: false,
                    };
                    let mut got = true;
                    for n in &nodes {
                        let t = trace(&per_node[n], &pkt)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        got &= t.outcome == Outcome::Accept;
                    }
                    prop_assert_eq!(
                        got,
                        want,
                        "flow {} -> {} {:?}/{} (nodes {:?})",
                        s,
                        d,
                        proto,
                        port,
                        nodes
                    );
                    flows += 1;
                }
            }
        }
    }
    Ok(Some((flows, cnp_decided)))
}

#[test]
fn compiled_ruleset_agrees_with_the_naive_spec_reading() {
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let flows = std::sync::atomic::AtomicUsize::new(0);
    let cnps = std::sync::atomic::AtomicUsize::new(0);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let cnp_decided = std::sync::atomic::AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |c| {
        match check(&c)? {
            Some((n, decided)) => {
                flows.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                cnp_decided.fetch_add(decided, std::sync::atomic::Ordering::Relaxed);
                cnps.fetch_add(
                    c.cluster_policies.len(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            None => {
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (flows, cnps, refused) = (flows.into_inner(), cnps.into_inner(), refused.into_inner());
    let cnp_decided = cnp_decided.into_inner();
    println!(
        "differential: {cases} clusters ({} ClusterNetworkPolicies: {cnps}, changing {cnp_decided} verdicts; refused by the loader: {refused}), {flows} flows, 0 disagreements, {:.1}s",
        if cnps_on() { "with" } else { "without" },
        started.elapsed().as_secs_f64()
    );
    assert!(flows > 0, "no flow was checked");
    if cnps_on() {
        assert!(cnps > 0, "no ClusterNetworkPolicy was checked");
        assert!(
            cnp_decided > 0,
            "the ClusterNetworkPolicies never changed a verdict"
        );
    }
}

/// The ClusterNetworkPolicy generator and the oracle, without the compiler (so whatever
/// [`GENERATE_CNPS`] says): over random clusters with 0–4 CNPs, the CNPs must change verdicts
/// both ways (a denial where NetworkPolicies alone allow, an allowance where they deny), and
/// some generated CNPs must be invalid, most not.
#[test]
fn generated_cluster_policies_change_the_oracles_verdicts() {
    // A fixed seed: the counts asserted below are the same on every run.
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(2026),
        ..Config::default()
    });
    let counts = std::sync::Mutex::new([0usize; 4]); // [cnps, invalid, denied, allowed]
    let result = runner.run(&case_with(5), |c| {
        let cluster = oracle::Cluster {
            namespaces: decode(&c.namespaces),
            pods: decode(&c.pods),
            policies: decode(&c.policies),
            cluster_policies: c.cluster_policies.clone(),
            nodes: decode(&c.nodes),
        };
        let without_cnps = oracle::Cluster {
            cluster_policies: Vec::new(),
            ..cluster.clone()
        };
        let mut addrs: Vec<IpAddr> = Vec::new();
        for p in &cluster.pods {
            for ip in p.status.iter().flat_map(|s| s.pod_ips.iter().flatten()) {
                addrs.push(ip.ip.parse().unwrap());
            }
        }
        addrs.extend(EXTERNAL.iter().map(|s| s.parse::<IpAddr>().unwrap()));
        addrs.extend(
            NODE_ADDRESSES
                .iter()
                .map(|(_, _, a)| a.parse::<IpAddr>().unwrap()),
        );
        let mut n = counts.lock().unwrap();
        n[0] += c.cluster_policies.len();
        n[1] += c
            .cluster_policies
            .iter()
            .filter(|p| !oracle::cnp_is_valid(p))
            .count();
        for &src in &addrs {
            for &dst in &addrs {
                if src.is_ipv4() != dst.is_ipv4() {
                    continue;
                }
                for proto in [oracle::Proto::Tcp, oracle::Proto::Udp] {
                    for port in PORTS {
                        let flow = oracle::Flow {
                            src,
                            dst,
                            proto,
                            port,
                        };
                        match (
                            oracle::allowed(&without_cnps, &flow),
                            oracle::allowed(&cluster, &flow),
                        ) {
                            (true, false) => n[2] += 1,
                            (false, true) => n[3] += 1,
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let [cnps, invalid, denied, allowed] = counts.into_inner().unwrap();
    println!(
        "generated: {cnps} ClusterNetworkPolicies ({invalid} invalid); they deny {denied} flows NetworkPolicies allow, allow {allowed} they deny"
    );
    assert!(
        invalid > 0 && invalid * 2 < cnps,
        "{invalid} of {cnps} invalid"
    );
    assert!(denied > 0, "the ClusterNetworkPolicies never denied");
    assert!(
        allowed > 0,
        "the ClusterNetworkPolicies never overrode a NetworkPolicy"
    );
}

/// The tracer follows established flows and neighbour discovery the way the
/// kernel does, whatever the policies.
#[test]
fn tracer_always_allows_replies_and_neighbour_discovery() {
    let dir = nftpol_testkit::cases::case("k8s-docs-default-deny-all");
    let (objs, _) = nftpol::core::k8s::load_paths(&[dir]);
    // Without revocation: an established packet here has no stamp, and with
    // revocation on a flow the policies deny is cut (testkit's trace.rs
    // tests that model: stamped flows pass, revoked ones do not).
    let opts = Options {
        revoke_established: false,
        ..Options::default()
    };
    let rs = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
    let pods: Vec<IpAddr> = rs.maps["ingress-pods-v6"]
        .elements
        .keys()
        .copied()
        .collect();
    assert!(pods.len() >= 2, "the case isolates at least two IPv6 pods");
    let (a, b) = (pods[0], pods[1]);
    let t = |l4, established| {
        trace(
            &rs,
            &Packet {
                src: a,
                dst: b,
                l4,
                established,
            },
        )
        .unwrap()
        .outcome
    };
    assert_eq!(
        t(L4::Port(Protocol::Tcp, 80), false),
        Outcome::Drop,
        "default deny drops new flows"
    );
    assert_eq!(
        t(L4::Port(Protocol::Tcp, 80), true),
        Outcome::Accept,
        "replies pass"
    );
    assert_eq!(
        t(L4::Icmpv6(135), false),
        Outcome::Accept,
        "neighbour solicitation passes"
    );
    assert_eq!(
        t(L4::Icmpv6(128), false),
        Outcome::Drop,
        "echo request does not"
    );
}
