//! The generated cluster against the study's figures, computed from the
//! generated objects (selectors evaluated here, matchLabels only).

use super::*;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};

type Labels = BTreeMap<String, String>;

/// Whether a matchLabels-only selector selects `labels`.
fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    assert!(
        sel.match_expressions.as_ref().is_none_or(|e| e.is_empty()),
        "the generator writes matchLabels only"
    );
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn median(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Per policy with rules: (local pods, ipBlocks, ports, pod-selector peers,
/// peer pods).
struct Stats {
    local: Vec<usize>,
    cidrs: Vec<usize>,
    ports: Vec<usize>,
    pod_peers: Vec<usize>,
    peer_pods: Vec<usize>,
    empty: usize,
}

fn stats(objs: &Objects) -> Stats {
    let ns_labels: BTreeMap<String, Labels> = objs
        .namespaces
        .iter()
        .map(|(_, n)| {
            let name = n.metadata.name.clone().unwrap();
            let mut l = n.metadata.labels.clone().unwrap_or_default();
            l.insert("kubernetes.io/metadata.name".into(), name.clone());
            (name, l)
        })
        .collect();
    // (namespace, name, labels)
    let pods: Vec<(String, String, Labels)> = objs
        .pods
        .iter()
        .map(|(_, p)| {
            (
                p.metadata.namespace.clone().unwrap(),
                p.metadata.name.clone().unwrap(),
                p.metadata.labels.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut s = Stats {
        local: vec![],
        cidrs: vec![],
        ports: vec![],
        pod_peers: vec![],
        peer_pods: vec![],
        empty: 0,
    };
    for (_, pol) in &objs.policies {
        let ns = pol.metadata.namespace.clone().unwrap();
        let spec: &NetworkPolicySpec = pol.spec.as_ref().unwrap();
        let ingress = spec.ingress.clone().unwrap_or_default();
        let egress = spec.egress.clone().unwrap_or_default();
        if ingress.is_empty() && egress.is_empty() {
            s.empty += 1;
            continue;
        }
        let sel = spec.pod_selector.clone().unwrap_or_default();
        s.local.push(
            pods.iter()
                .filter(|(n, _, l)| *n == ns && matches(&sel, l))
                .count(),
        );
        let peers: Vec<NetworkPolicyPeer> = ingress
            .iter()
            .flat_map(|r| r.from.clone().unwrap_or_default())
            .chain(egress.iter().flat_map(|r| r.to.clone().unwrap_or_default()))
            .collect();
        let ports = ingress
            .iter()
            .map(|r| r.ports.as_ref().map_or(0, Vec::len))
            .chain(egress.iter().map(|r| r.ports.as_ref().map_or(0, Vec::len)))
            .sum();
        s.ports.push(ports);
        s.cidrs
            .push(peers.iter().filter(|p| p.ip_block.is_some()).count());
        s.pod_peers
            .push(peers.iter().filter(|p| p.pod_selector.is_some()).count());
        let mut selected = BTreeSet::new();
        for p in &peers {
            if p.ip_block.is_some() {
                continue;
            }
            let all = LabelSelector::default();
            let pod_sel = p.pod_selector.as_ref().unwrap_or(&all);
            for (pn, name, labels) in &pods {
                let in_ns = match &p.namespace_selector {
                    None => *pn == ns,
                    Some(nsel) => matches(nsel, &ns_labels[pn]),
                };
                if in_ns && matches(pod_sel, labels) {
                    selected.insert((pn, name));
                }
            }
        }
        s.peer_pods.push(selected.len());
    }
    s
}

#[test]
fn reproduces_the_studys_figures() {
    let objs = generate(42);
    assert_eq!(objs.namespaces.len(), 604);
    assert_eq!(objs.pods.len(), 5_413);
    assert_eq!(objs.policies.len(), 13_678);
    let s = stats(&objs);
    assert_eq!(s.empty, 3_559);
    let got = [
        median(s.local.clone()),
        median(s.cidrs.clone()),
        median(s.ports.clone()),
        median(s.pod_peers.clone()),
        median(s.peer_pods.clone()),
    ];
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    eprintln!(
        "medians local/cidrs/ports/pod peers/peer pods {got:?}; means {:.1} {:.2} {:.2} {:.2} {:.1}; max local {} peer pods {}",
        mean(&s.local),
        mean(&s.cidrs),
        mean(&s.ports),
        mean(&s.pod_peers),
        mean(&s.peer_pods),
        s.local.iter().max().unwrap(),
        s.peer_pods.iter().max().unwrap(),
    );
    // Tolerance: the one-valued medians exactly; local pods 6 ± 1, peer pods 2 ± 1.
    assert_eq!(
        &got[1..4],
        &[1, 1, 1],
        "ipBlocks, ports, pod-selector peers"
    );
    assert!((5..=7).contains(&got[0]), "local pods median {}", got[0]);
    assert!((1..=3).contains(&got[4]), "peer pods median {}", got[4]);
}

#[test]
fn is_deterministic_and_every_pod_has_an_address_on_a_node() {
    let a = generate(7);
    let b = generate(7);
    let names = |o: &Objects| -> Vec<String> {
        o.pods
            .iter()
            .map(|(_, p)| serde_json::to_string(p).unwrap())
            .collect()
    };
    assert_eq!(names(&a), names(&b));
    let mut ips = BTreeSet::new();
    for (_, p) in &a.pods {
        let node = p.spec.as_ref().unwrap().node_name.clone().unwrap();
        assert!(node.starts_with("node-"), "{node}");
        for ip in p.status.as_ref().unwrap().pod_ips.iter().flatten() {
            assert!(ips.insert(ip.ip.clone()), "duplicate address {}", ip.ip);
        }
    }
    assert_eq!(ips.len(), 2 * 5_413);
}
