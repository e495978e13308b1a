//! Longer than 600 lines: the random tree generator and its changes, the check, and the
//! binary's tests, which share the fixtures.
//!
//! `nftpol diff` is exact: over random before/after pairs (a random small cluster with
//! NetworkPolicies, ClusterNetworkPolicies and Nodes, then 1–3 random changes to it), every
//! claim of the connectivity delta is checked against the packet tracer
//! (`nftpol_testkit::trace`) over the compiled before and after rulesets: for sampled concrete
//! flows — a random member flow of every reported class, and random flows through pods,
//! node addresses, addresses in and around every address atom and ports around every port
//! atom — the tracer's verdicts before and after differ iff the diff reports the flow's class,
//! and when it does, they are the verdicts the diff reports.
//!
//! `NFTPOL_DIFF_PAIRS` sets the number of pairs (default 1,000; the seed is fixed, so a
//! failure names a pair that reproduces).
//!
//! Plus the binary: the CI gate (`--fail-on`) on the example trees of `testdata/diff/`,
//! exit codes, and the reports (insta snapshots `snapshots/diff-*.snap`, which
//! docs/review.md quotes).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Command, Output};

use nftpol::core::compile::Options;
use nftpol::core::diff::{Claim, DiffOptions, End, diff};
use nftpol::core::explain::Endpoint;
use nftpol::core::graph::SelectorGraph;
use nftpol::core::model::ipblock::{ip_to_u128, u128_to_ip};
use nftpol::core::model::{Cluster, Family, Protocol};
use nftpol::core::nft::ruleset::Ruleset;
use nftpol_testkit::cases;
use nftpol_testkit::synth::Rng;
use nftpol_testkit::trace::{L4, Outcome, Packet, trace};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

// ---------------------------------------------------------------------------------------------
// Random clusters and changes
// ---------------------------------------------------------------------------------------------

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PORTS: [u16; 7] = [53, 80, 81, 1000, 5432, 8080, 9090];
/// Named container ports; most numbers are in no numeric rule, so only the named port's own
/// port atom can get them right.
const NAMED: [(&str, &str, u16); 6] = [
    ("http", "TCP", 8080),
    ("http", "TCP", 8443),
    ("http", "UDP", 8443),
    ("dns", "UDP", 5353),
    ("dns", "TCP", 53),
    ("db", "TCP", 15432),
];
const IP_BLOCKS: [(&str, &[&str]); 8] = [
    ("10.244.0.0/16", &["10.244.1.0/24"]),
    ("10.244.1.0/24", &[]),
    ("10.244.2.2/31", &[]),
    ("0.0.0.0/0", &["10.244.0.0/16", "192.168.0.0/16"]),
    ("203.0.113.0/24", &["203.0.113.128/25"]),
    ("fd00:10:244::/48", &["fd00:10:244:2::/64"]),
    ("::/0", &[]),
    ("10.0.0.0/8", &["11.0.0.0/8"]), // invalid: except outside the cidr
];
const NETWORKS: [&str; 8] = [
    "10.244.1.0/24",
    "10.244.0.0/16",
    "10.244.2.4/31",
    "0.0.0.0/0",
    "::/0",
    "192.168.0.0/24",
    "198.51.100.0/24",
    "fd00:10:244:1::/64",
];
const NODE_ADDRESSES: [(&str, &str); 5] = [
    ("node-1", "192.168.0.1"),
    ("node-1", "fd00:192::1"),
    ("node-1", "203.0.113.1"),
    ("node-2", "192.168.0.2"),
    ("node-2", "fd00:192::2"),
];

fn pick<'a, T>(r: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[r.below(xs.len())]
}

fn chance(r: &mut Rng, percent: usize) -> bool {
    r.below(100) < percent
}

fn selector(r: &mut Rng) -> Value {
    let key = |r: &mut Rng| *pick(r, &["app", "tier"]);
    let val = |r: &mut Rng| *pick(r, &["a", "b"]);
    match r.below(10) {
        0..=2 => json!({}),
        3..=6 => json!({"matchLabels": {key(r): val(r)}}),
        _ => {
            let op = *pick(r, &["In", "NotIn", "Exists", "DoesNotExist"]);
            let k = key(r);
            match op {
                "Exists" | "DoesNotExist" => {
                    json!({"matchExpressions": [{"key": k, "operator": op}]})
                }
                _ => json!({"matchExpressions": [{"key": k, "operator": op, "values": [val(r)]}]}),
            }
        }
    }
}

fn ns_selector(r: &mut Rng) -> Value {
    match r.below(6) {
        0 | 1 => json!({}),
        2 | 3 => json!({"matchLabels": {"ns": *pick(r, &NAMESPACES)}}),
        4 => json!({"matchLabels": {"team": *pick(r, &["a", "b"])}}),
        _ => json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                     "operator": "NotIn", "values": [*pick(r, &NAMESPACES)]}]}),
    }
}

fn np_peer(r: &mut Rng) -> Value {
    match r.below(9) {
        0..=2 => json!({"podSelector": selector(r)}),
        3 | 4 => json!({"namespaceSelector": ns_selector(r)}),
        5 | 6 => json!({"namespaceSelector": ns_selector(r), "podSelector": selector(r)}),
        _ => {
            let (cidr, except) = *pick(r, &IP_BLOCKS);
            if except.is_empty() {
                json!({"ipBlock": {"cidr": cidr}})
            } else {
                json!({"ipBlock": {"cidr": cidr, "except": except}})
            }
        }
    }
}

fn np_port(r: &mut Rng) -> Value {
    let mut p = serde_json::Map::new();
    if chance(r, 60) {
        p.insert("protocol".into(), json!(*pick(r, &["TCP", "UDP", "SCTP"])));
    }
    match r.below(10) {
        0 => {}
        1..=4 => {
            p.insert("port".into(), json!(*pick(r, &PORTS)));
        }
        5..=7 => {
            p.insert(
                "port".into(),
                json!(*pick(r, &["http", "dns", "db", "absent"])),
            );
        }
        _ => {
            let a = *pick(r, &PORTS);
            p.insert("port".into(), json!(a));
            p.insert(
                "endPort".into(),
                json!(a.saturating_add(r.below(5000) as u16)),
            );
        }
    }
    Value::Object(p)
}

/// `None` (absent), `Some([])` or 1–2 items.
fn opt_list(r: &mut Rng, item: fn(&mut Rng) -> Value) -> Option<Vec<Value>> {
    match r.below(7) {
        0 | 1 => None,
        2 => Some(vec![]),
        _ => Some((0..1 + r.below(2)).map(|_| item(r)).collect()),
    }
}

fn np_rule(r: &mut Rng, field: &str) -> Value {
    let mut rule = serde_json::Map::new();
    if let Some(p) = opt_list(r, np_peer) {
        rule.insert(field.into(), json!(p));
    }
    if let Some(p) = opt_list(r, np_port) {
        rule.insert("ports".into(), json!(p));
    }
    Value::Object(rule)
}

fn policy(r: &mut Rng, name: &str) -> Value {
    let mut spec = serde_json::Map::new();
    spec.insert("podSelector".into(), selector(r));
    match r.below(5) {
        0 => {}
        1 => {
            spec.insert("policyTypes".into(), json!(["Ingress"]));
        }
        2 => {
            spec.insert("policyTypes".into(), json!(["Egress"]));
        }
        _ => {
            spec.insert("policyTypes".into(), json!(["Ingress", "Egress"]));
        }
    }
    for (key, field) in [("ingress", "from"), ("egress", "to")] {
        match r.below(6) {
            0 | 1 => {}
            2 => {
                spec.insert(key.into(), json!([]));
            }
            _ => {
                let rules: Vec<Value> = (0..1 + r.below(2)).map(|_| np_rule(r, field)).collect();
                spec.insert(key.into(), json!(rules));
            }
        }
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": *pick(r, &NAMESPACES)}, "spec": spec})
}

fn cnp_peer(r: &mut Rng, egress: bool) -> Value {
    match r.below(if egress { 8 } else { 4 }) {
        0 | 1 => json!({"namespaces": ns_selector(r)}),
        2 | 3 => json!({"pods": {"namespaceSelector": ns_selector(r), "podSelector": selector(r)}}),
        4 | 5 => {
            let n: BTreeSet<&str> = (0..1 + r.below(2)).map(|_| *pick(r, &NETWORKS)).collect();
            json!({"networks": n})
        }
        _ => json!({"nodes": *pick(r, &[json!({}), json!({"matchLabels": {"zone": "a"}})])}),
    }
}

fn cnp_protocol(r: &mut Rng) -> Value {
    let a = *pick(r, &PORTS);
    match r.below(6) {
        0..=2 => json!({*pick(r, &["tcp", "udp", "sctp"]): {"destinationPort": {"number": a}}}),
        3 | 4 => json!({*pick(r, &["tcp", "udp"]): {"destinationPort":
                    {"range": {"start": a, "end": a.saturating_add(1 + r.below(3000) as u16)}}}}),
        _ => json!({"destinationNamedPort": *pick(r, &["http", "dns", "db", "absent"])}),
    }
}

fn cnp_rule(r: &mut Rng, egress: bool) -> Value {
    let peers: Vec<Value> = (0..1 + r.below(2)).map(|_| cnp_peer(r, egress)).collect();
    let mut rule = json!({"action": *pick(r, &["Accept", "Deny", "Pass"]),
                          (if egress { "to" } else { "from" }): peers});
    if chance(r, 60) {
        let p: Vec<Value> = (0..1 + r.below(2)).map(|_| cnp_protocol(r)).collect();
        rule["protocols"] = json!(p);
    }
    rule
}

fn cluster_policy(r: &mut Rng, name: &str) -> Value {
    let subject = if chance(r, 50) {
        json!({"namespaces": ns_selector(r)})
    } else {
        json!({"pods": {"namespaceSelector": ns_selector(r), "podSelector": selector(r)}})
    };
    let mut spec = json!({"tier": *pick(r, &["Admin", "Admin", "Baseline"]),
                          "priority": *pick(r, &[0, 1, 2, 10]), "subject": subject});
    for (key, egress) in [("ingress", false), ("egress", true)] {
        if chance(r, 70) {
            let rules: Vec<Value> = (0..1 + r.below(3)).map(|_| cnp_rule(r, egress)).collect();
            spec[key] = json!(rules);
        }
    }
    if chance(r, 5) {
        spec["priority"] = json!(1001); // invalid: fails closed
    }
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
           "metadata": {"name": name}, "spec": spec})
}

fn pod(r: &mut Rng, i: usize) -> Value {
    let mut labels = serde_json::Map::new();
    for key in ["app", "tier"] {
        if chance(r, 60) {
            labels.insert(key.into(), json!(*pick(r, &["a", "b"])));
        }
    }
    let mut seen = BTreeSet::new();
    let ports: Vec<Value> = (0..r.below(3))
        .map(|_| *pick(r, &NAMED))
        .filter(|(n, _, _)| seen.insert(*n))
        .map(|(n, p, num)| json!({"name": n, "protocol": p, "containerPort": num}))
        .collect();
    let node = 1 + r.below(2);
    let mut ips = vec![json!({"ip": format!("10.244.{node}.{}", i + 2)})];
    if chance(r, 50) {
        ips.push(json!({"ip": format!("fd00:10:244:{node}::{:x}", i + 2)}));
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod{i}"), "namespace": *pick(r, &NAMESPACES), "labels": labels},
           "spec": {"nodeName": format!("node-{node}"),
                    "containers": [{"name": "c", "image": "i", "ports": ports}]},
           "status": {"phase": "Running", "podIPs": ips}})
}

fn namespace(r: &mut Rng, name: &str) -> Value {
    let mut labels = json!({"ns": name});
    if chance(r, 50) {
        labels["team"] = json!(*pick(r, &["a", "b"]));
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn node(r: &mut Rng, name: &str) -> Value {
    let addresses: Vec<Value> = NODE_ADDRESSES
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, a)| json!({"type": "InternalIP", "address": a}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"zone": *pick(r, &["a", "b"])}},
           "status": {"addresses": addresses}})
}

/// A tree: every object, as the loader reads it.
#[derive(Debug, Clone)]
struct Tree {
    namespaces: Vec<Value>,
    nodes: Vec<Value>,
    pods: Vec<Value>,
    policies: Vec<Value>,
    cluster_policies: Vec<Value>,
    /// The next pod index (pod names and addresses are never reused).
    next_pod: usize,
}

fn tree(r: &mut Rng) -> Tree {
    let pods = 2 + r.below(4);
    Tree {
        namespaces: NAMESPACES.iter().map(|n| namespace(r, n)).collect(),
        nodes: ["node-1", "node-2"].iter().map(|n| node(r, n)).collect(),
        pods: (0..pods).map(|i| pod(r, i)).collect(),
        policies: (0..r.below(4))
            .map(|i| policy(r, &format!("p{i}")))
            .collect(),
        cluster_policies: (0..r.below(3))
            .map(|i| cluster_policy(r, &format!("c{i}")))
            .collect(),
        next_pod: pods,
    }
}

/// One random change, and what it was (for failure messages).
fn change(r: &mut Rng, t: &mut Tree) -> String {
    let which = r.below(10);
    match which {
        0 if !t.pods.is_empty() => {
            let i = r.below(t.pods.len());
            let labels = match r.below(3) {
                0 => json!({}),
                1 => json!({"app": *pick(r, &["a", "b"])}),
                _ => json!({"app": *pick(r, &["a", "b"]), "tier": *pick(r, &["a", "b"])}),
            };
            t.pods[i]["metadata"]["labels"] = labels;
            format!("relabel pod {i}")
        }
        1 => {
            let p = pod(r, t.next_pod);
            t.next_pod += 1;
            t.pods.push(p);
            "add a pod".into()
        }
        2 if t.pods.len() > 1 => {
            let i = r.below(t.pods.len());
            t.pods.remove(i);
            format!("remove pod {i}")
        }
        3 => {
            let i = r.below(t.namespaces.len());
            t.namespaces[i] = namespace(r, NAMESPACES[i]);
            format!("relabel namespace {i}")
        }
        4 | 5 => {
            let i = r.below(t.policies.len() + 1);
            let p = policy(r, &format!("p{}", t.policies.len() + i));
            if i < t.policies.len() && chance(r, 70) {
                // Same name and namespace, new spec.
                let mut p = p;
                p["metadata"] = t.policies[i]["metadata"].clone();
                t.policies[i] = p;
                format!("rewrite policy {i}")
            } else {
                t.policies.push(p);
                "add a policy".into()
            }
        }
        6 if !t.policies.is_empty() => {
            let i = r.below(t.policies.len());
            t.policies.remove(i);
            format!("delete policy {i}")
        }
        7 => {
            let i = r.below(t.cluster_policies.len() + 1);
            if i < t.cluster_policies.len() {
                let rules = if chance(r, 50) { "ingress" } else { "egress" };
                match t.cluster_policies[i]["spec"][rules].as_array_mut() {
                    Some(list) if !list.is_empty() => {
                        let j = r.below(list.len());
                        list[j]["action"] = json!(*pick(r, &["Accept", "Deny", "Pass"]));
                        format!("change an action of cluster policy {i}")
                    }
                    _ => {
                        t.cluster_policies.remove(i);
                        format!("delete cluster policy {i}")
                    }
                }
            } else {
                let name = format!("c{}", 10 + t.cluster_policies.len());
                t.cluster_policies.push(cluster_policy(r, &name));
                "add a cluster policy".into()
            }
        }
        8 if !t.pods.is_empty() => {
            let i = r.below(t.pods.len());
            let (n, p, num) = *pick(r, &NAMED);
            t.pods[i]["spec"]["containers"][0]["ports"] =
                json!([{"name": n, "protocol": p, "containerPort": num}]);
            format!("named ports of pod {i}")
        }
        _ => {
            let i = r.below(2);
            t.nodes[i] = node(r, ["node-1", "node-2"][i]);
            format!("relabel node {i}")
        }
    }
}

/// The tree as a model; `None` when the loader refuses it (the CLI would compare nothing).
fn load(t: &Tree) -> Option<Cluster> {
    let docs: Vec<&Value> = t
        .namespaces
        .iter()
        .chain(&t.nodes)
        .chain(&t.pods)
        .chain(&t.policies)
        .chain(&t.cluster_policies)
        .collect();
    let text = serde_json::to_string(&docs).expect("JSON");
    let mut objs = nftpol::core::k8s::Objects::default();
    let mut diags = Vec::new();
    nftpol::core::k8s::load::parse_into(&text, "generated", &mut objs, &mut diags);
    if diags.iter().any(|d| d.is_error()) {
        return None;
    }
    Some(nftpol::core::k8s::to_cluster(&objs).0)
}

// ---------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------

fn ruleset(c: &Cluster) -> Ruleset {
    let g = SelectorGraph::build(c);
    nftpol::core::compile::compile(c, &g, &Options::default()).ruleset
}

/// The address an endpoint has in a tree, if any.
fn address(c: &Cluster, e: &Endpoint, f: Family) -> Option<IpAddr> {
    match e {
        Endpoint::Ip(ip) => Some(*ip),
        Endpoint::Pod(id) => c
            .pods
            .get(id)?
            .ips
            .iter()
            .find(|ip| Family::of(ip) == f)
            .copied(),
    }
}

fn allowed(rs: &Ruleset, src: IpAddr, dst: IpAddr, proto: Protocol, port: u16) -> bool {
    let pkt = Packet {
        src,
        dst,
        l4: L4::Port(proto, port),
        established: false,
    };
    trace(rs, &pkt).expect("the ruleset traces").outcome == Outcome::Accept
}

#[derive(Default)]
struct Counts {
    pairs: usize,
    refused: usize,
    changed_classes: usize,
    widened_rows: usize,
    narrowed_rows: usize,
    flows: usize,
    changed_flows: usize,
}

/// Checks one pair; the number of flows checked, or the first disagreement.
fn check(r: &mut Rng, before: &Cluster, after: &Cluster, n: &mut Counts) -> Result<(), String> {
    let d = diff(
        before,
        after,
        &DiffOptions {
            nodes: vec!["node-1".into()],
            ..Default::default()
        },
    );
    if !d.notes.is_empty() {
        return Err(format!("classes not evaluated: {:?}", d.notes));
    }
    let (rb, ra) = (ruleset(before), ruleset(after));
    let p = &d.partition;
    n.changed_classes += d.changed.len();
    n.widened_rows += d.widened();
    n.narrowed_rows += d.narrowed();
    // An address of an atom that is no pod's: random, else the first.
    let atom_addr = |r: &mut Rng, f: Family, i: usize| -> Option<IpAddr> {
        let a = &p.atoms[&f][i];
        let span = a.range.end - a.range.start;
        let off = (r.below(usize::MAX) as u128) % span.saturating_add(1).max(1);
        let ip = u128_to_ip(f, a.range.start + off);
        if p.pod_ips.contains(&ip) {
            a.representative
        } else {
            Some(ip)
        }
    };
    let mut flows: Vec<(Endpoint, Endpoint, Family, Protocol, u16)> = Vec::new();
    // A random member flow of every changed class (a few tries to avoid self and own-node flows).
    for c in d.changed.keys() {
        let port_atom = p.ports[c.port];
        let port =
            port_atom.first + (r.below(1 + (port_atom.last - port_atom.first) as usize) as u16);
        for _ in 0..4 {
            let end = |r: &mut Rng, e: End| match e {
                End::Group(g) => Some(Endpoint::Pod(pick(r, &p.groups[g].pods).clone())),
                End::Atom(f, i) => atom_addr(r, f, i).map(Endpoint::Ip),
            };
            let (Some(from), Some(to)) = (end(r, c.src), end(r, c.dst)) else {
                continue;
            };
            flows.push((from, to, c.family, port_atom.protocol, port));
        }
    }
    // Random flows over every endpoint of either tree and addresses around every atom.
    let pods: Vec<Endpoint> = before
        .pods
        .keys()
        .chain(after.pods.keys())
        .map(|id| Endpoint::Pod(id.clone()))
        .collect();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (f, atoms) in &p.atoms {
        for a in atoms {
            for n in [a.range.start, a.range.end, a.range.start.wrapping_sub(1)] {
                endpoints.push(Endpoint::Ip(u128_to_ip(*f, n)));
            }
        }
    }
    for ip in before
        .pods
        .values()
        .chain(after.pods.values())
        .flat_map(|p| &p.ips)
    {
        endpoints.push(Endpoint::Ip(*ip));
        endpoints.push(Endpoint::Ip(u128_to_ip(Family::of(ip), ip_to_u128(ip) + 1)));
    }
    let mut ports: Vec<u16> = PORTS.to_vec();
    ports.extend([1, 65535]);
    // Every named port's number, twice: a named port is a port atom of its own.
    for pod in before.pods.values().chain(after.pods.values()) {
        for (_, n) in pod.named_ports.values() {
            ports.extend([*n, *n]);
        }
    }
    for a in &p.ports {
        ports.extend([a.first, a.last, a.first.saturating_sub(1).max(1)]);
    }
    // Each end a pod (of either tree) or an address, half and half.
    for _ in 0..500 {
        let end = |r: &mut Rng| {
            if chance(r, 50) {
                pick(r, &pods).clone()
            } else {
                pick(r, &endpoints).clone()
            }
        };
        let (from, to) = (end(r), end(r));
        let family = *pick(r, &Family::ALL);
        // Half the time a named port of the destination pod (in either tree), if it has one.
        let named: Vec<(Protocol, u16)> = match &to {
            Endpoint::Pod(id) => [before, after]
                .iter()
                .filter_map(|c| c.pods.get(id))
                .flat_map(|p| p.named_ports.values().copied())
                .collect(),
            Endpoint::Ip(_) => Vec::new(),
        };
        let (proto, port) = if !named.is_empty() && chance(r, 50) {
            *pick(r, &named)
        } else {
            (*pick(r, &Protocol::ALL), *pick(r, &ports))
        };
        flows.push((from, to, family, proto, port));
    }
    for (from, to, family, proto, port) in flows {
        let claim = d.claim(before, after, (&from, &to, family, proto, port));
        if claim == Claim::NotCompared {
            continue;
        }
        let (Some(sb), Some(db), Some(sa), Some(da)) = (
            address(before, &from, family),
            address(before, &to, family),
            address(after, &from, family),
            address(after, &to, family),
        ) else {
            return Err(format!(
                "{from:?} -> {to:?} {family:?}: compared, but an end has no address"
            ));
        };
        let (vb, va) = (
            allowed(&rb, sb, db, proto, port),
            allowed(&ra, sa, da, proto, port),
        );
        let flow = format!(
            "{from:?} -> {to:?} {}/{port} ({sb} -> {db} before, {sa} -> {da} after)",
            proto.nft()
        );
        match claim {
            Claim::Unchanged if vb != va => {
                return Err(format!(
                    "{flow}: the tracer says allowed {vb} before, {va} after; the diff reports no change"
                ));
            }
            Claim::Changed(c) if (c.before.allowed, c.after.allowed) != (vb, va) => {
                return Err(format!(
                    "{flow}: the tracer says allowed {vb} before, {va} after; the diff reports {} -> {}",
                    c.before.allowed, c.after.allowed
                ));
            }
            Claim::Changed(_) => n.changed_flows += 1,
            _ => {}
        }
        n.flows += 1;
    }
    Ok(())
}

#[test]
fn the_connectivity_delta_agrees_with_the_tracer_on_random_pairs() {
    let pairs: usize = std::env::var("NFTPOL_DIFF_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let started = std::time::Instant::now();
    let mut n = Counts::default();
    for seed in 0..pairs as u64 {
        let mut r = Rng::new(seed.wrapping_mul(0x0005_DEEC_E66D) ^ 2026);
        let base = tree(&mut r);
        let mut head = base.clone();
        let changes: Vec<String> = (0..1 + r.below(3))
            .map(|_| change(&mut r, &mut head))
            .collect();
        let (Some(before), Some(after)) = (load(&base), load(&head)) else {
            n.refused += 1;
            continue;
        };
        n.pairs += 1;
        if let Err(e) = check(&mut r, &before, &after, &mut n) {
            panic!("pair {seed} (changes: {changes:?}): {e}");
        }
    }
    println!(
        "diff exactness: {} pairs ({} refused by the loader), {} changed classes in {} widened and {} narrowed rows; {} flows traced ({} changed), 0 disagreements, {:.1}s",
        n.pairs,
        n.refused,
        n.changed_classes,
        n.widened_rows,
        n.narrowed_rows,
        n.flows,
        n.changed_flows,
        started.elapsed().as_secs_f64()
    );
    assert!(n.pairs >= pairs * 9 / 10, "too many pairs refused");
    assert!(
        n.widened_rows > 0 && n.narrowed_rows > 0,
        "changes both ways"
    );
    assert!(
        n.changed_flows > n.pairs / 2,
        "too few changed flows traced"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cases::root())
        .output()
        .expect("nftpol runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BASE: &str = "testdata/diff/base";
const WIDEN: &str = "testdata/diff/head-widen";
const NARROW: &str = "testdata/diff/head-narrow";

/// A CI gate: a widening change fails `--fail-on widen` and lists the flows; a narrowing one
/// passes it but fails `--fail-on any`; no change passes both; `never` (the default) only reports.
#[test]
fn the_ci_gate_trips_on_widening_and_on_any_change() {
    // (head, --fail-on, exit code, stdout must contain, why)
    let table: &[(&str, Option<&str>, i32, &str, &str)] = &[
        (
            WIDEN,
            Some("widen"),
            1,
            "WIDENED  shop: app=web [web-1, web-2] -> shop: app=db [db-0]  tcp/5432  ipv4",
            "web may now reach db: the gate trips and names the flow",
        ),
        (
            WIDEN,
            Some("any"),
            1,
            "1 widened, 0 narrowed",
            "any change trips `any`",
        ),
        (
            WIDEN,
            None,
            0,
            "1 widened",
            "the default gate is never: a report only",
        ),
        (WIDEN, Some("never"), 0, "1 widened", "never"),
        (
            NARROW,
            Some("widen"),
            0,
            "NARROWED 203.0.113.0/24 -> shop: app=web [web-1, web-2]  tcp/8080  ipv4",
            "a narrowing change passes `widen`",
        ),
        (
            NARROW,
            Some("any"),
            1,
            "0 widened, 1 narrowed",
            "but fails `any`",
        ),
        (
            BASE,
            Some("any"),
            0,
            "Rulesets: no change",
            "no change passes every gate",
        ),
    ];
    for (head, gate, code, want, why) in table {
        let mut args = vec!["diff", "-f", BASE, "--against", head];
        if let Some(g) = gate {
            args.extend(["--fail-on", g]);
        }
        let out = run(&args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{why}: {args:?}\n{stdout}{stderr}"
        );
        assert!(
            stdout.contains(want),
            "{why}: {args:?}: want {want:?} in\n{stdout}"
        );
        if *code == 1 {
            assert!(
                stderr.contains("--fail-on"),
                "{why}: the gate says why: {stderr}"
            );
        }
    }
}

#[test]
fn invalid_input_exits_1() {
    // Unreadable input: nothing is compared.
    let out = run(&["diff", "-f", BASE, "--against", "testdata/diff/no-such-dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no report from unreadable input");
    assert!(
        text(&out.stderr).contains("no-such-dir"),
        "{}",
        text(&out.stderr)
    );
    // Invalid policies fail closed: the report is printed, the exit code says the input is invalid.
    let out = run(&[
        "diff",
        "-f",
        "testdata/invalid-cidr",
        "--against",
        "testdata/invalid-cidr",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("0 widened, 0 narrowed"));
    assert!(
        text(&out.stderr).contains("fail closed"),
        "{}",
        text(&out.stderr)
    );
    // Usage: --against is required; a bad gate is a usage error.
    for args in [
        &["diff", "-f", BASE][..],
        &[
            "diff",
            "-f",
            BASE,
            "--against",
            WIDEN,
            "--fail-on",
            "sometimes",
        ][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn reports_match_their_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(cases::root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (name, head, extra) in [
            ("widen", WIDEN, &["--fail-on", "widen"][..]),
            ("narrow", NARROW, &["--fail-on", "widen"][..]),
            ("widen-node-2", WIDEN, &["--node", "node-2"][..]),
        ] {
            let mut args = vec!["diff", "-f", BASE, "--against", head];
            args.extend_from_slice(extra);
            let out = run(&args);
            let shown = format!(
                "$ nftpol {}\n# exit {}\n{}",
                args.join(" "),
                out.status.code().unwrap(),
                text(&out.stdout)
            );
            insta::assert_snapshot!(format!("diff-{name}"), shown);
        }
        let out = run(&["diff", "-f", BASE, "--against", WIDEN, "-o", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        assert_eq!(v["connectivity"]["widened"], 1);
        assert_eq!(v["connectivity"]["rows"][0]["change"], "widened");
        insta::assert_snapshot!("diff-json", text(&out.stdout));
    });
}

#[test]
fn same_input_same_output_and_output_file() {
    let args = ["diff", "-f", BASE, "--against", NARROW, "-o", "json"];
    let (a, b) = (run(&args), run(&args));
    assert_eq!(a.stdout, b.stdout);
    let dir = std::env::temp_dir().join(format!("nftpol-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report.json");
    let mut with_file = args.to_vec();
    let path = file.to_string_lossy().into_owned();
    with_file.extend(["--output-file", &path]);
    let out = run(&with_file);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&file).unwrap(), a.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}
