//! `nftpol graph --format dot`: the exported graph as Graphviz DOT.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{Edge, Export, Node};
use crate::core::model::Labels;

/// A DOT string literal.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Labels a controller gives each pod or each revision: noise in a picture
/// (the JSON keeps them).
const CONTROLLER_LABELS: [&str; 8] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/controller-uid",
];

fn shown_labels(l: &Labels) -> Labels {
    l.iter()
        .filter(|(k, _)| !CONTROLLER_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A pod group's labels: `k=v` for those all members share, `k=v1|v2` for
/// those all have with different values (at most four values shown); the
/// controllers' labels left out.
fn group_labels(n: &Node) -> String {
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &n.members {
        for (k, v) in &m.labels {
            values.entry(k).or_default().insert(v);
            *count.entry(k).or_default() += 1;
        }
    }
    let mut shown: Vec<String> = shown_labels(&n.labels)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (k, vs) in values {
        if CONTROLLER_LABELS.contains(&k) || count[k] < n.members.len() {
            continue;
        }
        let mut vs: Vec<&str> = vs.into_iter().collect();
        if vs.len() > 4 {
            vs.truncate(3);
            vs.push("…");
        }
        shown.push(format!("{k}={}", vs.join("|")));
    }
    shown.sort();
    shown.join(",")
}

/// A pod group's members, short: their common name prefix up to a `-`
/// (`frontend-*`), else up to three names.
fn member_names(n: &Node) -> String {
    let names: Vec<&str> = n.members.iter().map(|m| m.name.as_str()).collect();
    let Some(first) = names.first() else {
        return String::new();
    };
    let common = names.iter().fold(first.len(), |len, name| {
        first
            .bytes()
            .zip(name.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count()
    });
    match first[..common].rfind('-') {
        Some(i) => format!("{}*", &first[..=i]),
        None if names.len() <= 3 => names.join(", "),
        None => String::new(),
    }
}

fn labels_line(l: &Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn node_stmt(n: &Node) -> String {
    let (label, attrs) = match n.kind {
        "pod" => {
            let mut l = n.label.clone();
            let shown = shown_labels(&n.labels);
            if !shown.is_empty() {
                l = format!("{l}\n{}", labels_line(&shown));
            }
            (
                l,
                "shape=box, style=\"rounded,filled\", fillcolor=\"#dbe9f6\"",
            )
        }
        "pods" => {
            let mut l = match member_names(n) {
                names if names.is_empty() => n.label.clone(),
                names => format!("{} {names}", n.label),
            };
            let shown = group_labels(n);
            if !shown.is_empty() {
                l = format!("{l}\n{shown}");
            }
            (l, "shape=box3d, style=filled, fillcolor=\"#dbe9f6\"")
        }
        "policy" => {
            let mut l = format!("{}\n[{}]", n.label, n.directions.join(", "));
            if n.valid == Some(false) {
                l.push_str("\nINVALID: fails closed");
                (l, "shape=note, style=filled, fillcolor=\"#f4c7c3\"")
            } else {
                (l, "shape=note, style=filled, fillcolor=\"#fff2cc\"")
            }
        }
        "selector" => (
            n.label.clone(),
            "shape=hexagon, style=filled, fillcolor=\"#e6e6e6\"",
        ),
        "ipblock" => (
            format!("ipBlock\n{}", n.label),
            "shape=parallelogram, style=filled, fillcolor=\"#d9ead3\"",
        ),
        "clusternetworkpolicy" => {
            let mut l = format!(
                "ClusterNetworkPolicy {}\n[{}]",
                n.label,
                n.directions.join(", ")
            );
            if n.valid == Some(false) {
                l.push_str("\nINVALID: fails closed");
                (l, "shape=tab, style=filled, fillcolor=\"#f4c7c3\"")
            } else if n.tier == Some("Admin") {
                (l, "shape=tab, style=filled, fillcolor=\"#f9cb9c\"")
            } else {
                (l, "shape=tab, style=filled, fillcolor=\"#cfe2f3\"")
            }
        }
        "nodes" | "networks" => (
            n.label.clone(),
            "shape=parallelogram, style=filled, fillcolor=\"#d0e0e3\"",
        ),
        _ => (
            n.label.clone(),
            "shape=doubleoctagon, style=filled, fillcolor=\"#d9ead3\"",
        ),
    };
    format!("{} [{attrs}, label={}];", q(&n.id), q(&label))
}

/// A rule edge's label: what it does, then its ports, three to a line.
fn with_ports(what: &str, ports: &[String]) -> String {
    let mut l = what.to_string();
    for line in ports.chunks(3) {
        l.push('\n');
        l.push_str(&line.join(", "));
    }
    l
}

/// An edge from a policy or selector to every pod of a box, drawn to the box.
fn box_edge_stmt(e: &Edge, pods_box: &str) -> String {
    let attrs = selects_attrs(e, true);
    format!(
        "{} -> {} [{attrs}, lhead={}];",
        q(&e.from),
        q(&e.to),
        q(pods_box)
    )
}

/// The attributes of a `selects` edge: a policy's or a ClusterNetworkPolicy's
/// (labelled with the directions), or a selector's (dashed); `whole_box`
/// when it is drawn once to a box of every pod of a namespace.
fn selects_attrs(e: &Edge, whole_box: bool) -> String {
    let all = if whole_box { " all pods" } else { "" };
    let dirs = e.directions.join(", ");
    if e.from.starts_with("policy:") {
        format!(
            "label={}, color=\"#b45f06\", fontcolor=\"#b45f06\"",
            q(&format!("selects{all} ({dirs})"))
        )
    } else if e.from.starts_with("cnp:") {
        let all = if whole_box { ": all pods" } else { "" };
        format!(
            "label={}, color=\"#741b47\", fontcolor=\"#741b47\"",
            q(&format!("subject{all} ({dirs})"))
        )
    } else {
        "style=dashed, color=\"#666666\", arrowhead=empty".to_string()
    }
}

fn edge_stmt(e: &Edge) -> String {
    let attrs = match e.kind {
        "selects" => selects_attrs(e, false),
        "accept-from" | "accept-to" | "pass-from" | "pass-to" | "deny-from" | "deny-to" => {
            let color = match &e.kind[..4] {
                "acce" => "#38761d",
                "pass" => "#7f6000",
                _ => "#cc0000",
            };
            format!(
                "label={}, color=\"{color}\", fontcolor=\"{color}\"",
                q(&with_ports(&e.kind.replace('-', " "), &e.ports))
            )
        }
        "allows-from" => format!(
            "label={}, color=\"#38761d\", fontcolor=\"#38761d\"",
            q(&with_ports("allows from", &e.ports))
        ),
        "allows-to" => format!(
            "label={}, color=\"#1155cc\", fontcolor=\"#1155cc\"",
            q(&with_ports("allows to", &e.ports))
        ),
        _ => "style=invis".to_string(),
    };
    format!("{} -> {} [{attrs}];", q(&e.from), q(&e.to))
}

/// Where a policy's or selector's `selects` edges cover every pod drawn in
/// a namespace box (two or more), the picture has one edge to the box's
/// inner pod box instead: (source, directions, namespace).
type WholeBox<'e> = (&'e str, &'e [&'static str], &'e str);

fn whole_boxes(e: &Export) -> BTreeSet<WholeBox<'_>> {
    let ns_of: BTreeMap<&str, &str> = e
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, "pod" | "pods"))
        .filter_map(|n| Some((n.id.as_str(), n.namespace.as_deref()?)))
        .collect();
    let mut in_box: BTreeMap<&str, usize> = BTreeMap::new();
    for ns in ns_of.values() {
        *in_box.entry(ns).or_default() += 1;
    }
    let mut fan: BTreeMap<WholeBox, usize> = BTreeMap::new();
    for x in e.edges.iter().filter(|x| x.kind == "selects") {
        if let Some(ns) = ns_of.get(x.to.as_str()) {
            *fan.entry((&x.from, &x.directions, ns)).or_default() += 1;
        }
    }
    fan.into_iter()
        .filter(|((_, _, ns), n)| *n >= 2 && in_box.get(ns) == Some(n))
        .map(|(k, _)| k)
        .collect()
}

/// The inner box of a namespace's pods.
fn pods_box(ns: &str) -> String {
    format!("cluster_{ns}/pods")
}

/// The graph as Graphviz DOT: one cluster box per namespace (its pods,
/// policies and single-namespace selectors), cluster-wide selectors,
/// ipBlocks and `any` outside. A policy or selector that selects every pod
/// of a box (two or more) gets one edge to the box's inner pod box. Render
/// with `dot -Tpng`.
pub fn dot(e: &Export) -> String {
    let mut s = String::new();
    s.push_str("digraph nftpol {\n");
    s.push_str(
        "  graph [rankdir=LR, newrank=true, compound=true, fontname=\"Helvetica\", fontsize=11, nodesep=0.3, ranksep=0.9];\n",
    );
    s.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n");
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    let whole = whole_boxes(e);
    let boxed: BTreeSet<&str> = whole.iter().map(|(_, _, ns)| *ns).collect();
    let mut by_ns: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for n in e.nodes.iter().filter(|n| n.kind != "namespace") {
        if let Some(ns) = &n.namespace {
            by_ns.entry(ns).or_default().push(n);
        }
    }
    for ns in e.nodes.iter().filter(|n| n.kind == "namespace") {
        let mut label = format!("namespace {}", ns.label);
        if !ns.labels.is_empty() {
            label = format!("{label}\n{}", labels_line(&ns.labels));
        }
        let _ = writeln!(s, "  subgraph {} {{", q(&format!("cluster_{}", ns.label)));
        let _ = writeln!(
            s,
            "    label={}; style=rounded; color=\"#999999\";",
            q(&label)
        );
        let nodes = by_ns.remove(ns.label.as_str()).unwrap_or_default();
        let is_pod = |n: &&&Node| matches!(n.kind, "pod" | "pods");
        if boxed.contains(ns.label.as_str()) {
            let _ = writeln!(s, "    subgraph {} {{", q(&pods_box(&ns.label)));
            s.push_str("      label=\"\"; style=dashed; color=\"#bbbbbb\";\n");
            for n in nodes.iter().filter(is_pod) {
                let _ = writeln!(s, "      {}", node_stmt(n));
            }
            s.push_str("    }\n");
        } else {
            for n in nodes.iter().filter(is_pod) {
                let _ = writeln!(s, "    {}", node_stmt(n));
            }
        }
        for n in nodes.iter().filter(|n| !is_pod(n)) {
            let _ = writeln!(s, "    {}", node_stmt(n));
        }
        s.push_str("  }\n");
    }
    // Namespaced vertices whose namespace has no vertex (cannot happen for
    // pods; a selector may name a namespace with no pods and no object).
    for n in by_ns.into_values().flatten() {
        let _ = writeln!(s, "  {}", node_stmt(n));
    }
    for n in e
        .nodes
        .iter()
        .filter(|n| n.kind != "namespace" && n.namespace.is_none())
    {
        let _ = writeln!(s, "  {}", node_stmt(n));
    }
    let ns_of: BTreeMap<&str, &str> = e
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.as_str(), n.namespace.as_deref()?)))
        .collect();
    let mut drawn: BTreeSet<WholeBox> = BTreeSet::new();
    for edge in e.edges.iter().filter(|e| e.kind != "contains") {
        let key = ns_of
            .get(edge.to.as_str())
            .filter(|_| edge.kind == "selects")
            .map(|ns| (edge.from.as_str(), &edge.directions[..], *ns));
        match key {
            // The first edge into the box stands for them all.
            Some(k) if whole.contains(&k) => {
                if drawn.insert(k) {
                    let _ = writeln!(s, "  {}", box_edge_stmt(edge, &pods_box(k.2)));
                }
            }
            _ => {
                let _ = writeln!(s, "  {}", edge_stmt(edge));
            }
        }
    }
    s.push_str("}\n");
    s
}
