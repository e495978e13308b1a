//! The incremental path runs for the common pod events and falls back for
//! structural ones; `tests/incremental.rs` checks equality on random sequences.

use std::collections::BTreeSet;

use super::*;
use crate::core::compile::compile_cluster;
use crate::core::model::{
    Namespace, NamespaceScope, Node, Peer, Policy, Port, PortMatch, Requirement, Rule,
};
use crate::core::nft::render::script;

fn sel(k: &str, v: &str) -> Selector {
    Selector::new(vec![Requirement::In(k.into(), BTreeSet::from([v.into()]))])
}

fn pod(name: &str, app: &str, ip: &str) -> Pod {
    Pod {
        id: ObjectRef::new("a", name),
        labels: [("app".to_string(), app.to_string())].into(),
        node: Some("n1".into()),
        ips: vec![ip.parse().unwrap()],
        named_ports: [("http".to_string(), (Protocol::Tcp, 8080))].into(),
    }
}

fn policy(
    name: &str,
    select: Selector,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
) -> Policy {
    Policy {
        id: ObjectRef::new("a", name),
        pod_selector: select,
        ingress,
        egress,
        valid: true,
        audit: false,
    }
}

fn from_app(app: &str) -> Vec<Rule> {
    vec![Rule {
        peers: Some(vec![Peer::Pods(PodMatch {
            namespaces: NamespaceScope::Named("a".into()),
            pods: sel("app", app),
        })]),
        ports: Some(vec![Port {
            protocol: Protocol::Tcp,
            port: PortMatch::Named("http".into()),
        }]),
    }]
}

/// Namespace `a`: `web` pods take ingress from `api` pods on `http`; `db`
/// pods may only reach `web` pods on `http`; `tier=x` pods are isolated by a
/// policy no pod has yet.
fn cluster() -> Cluster {
    let mut c = Cluster::default();
    c.namespaces.insert(
        "a".into(),
        Namespace {
            name: "a".into(),
            labels: [("kubernetes.io/metadata.name".to_string(), "a".to_string())].into(),
            log_drops: Some(true),
        },
    );
    c.nodes.insert(
        "n1".into(),
        Node {
            name: "n1".into(),
            labels: Default::default(),
            addresses: vec![],
            pod_cidrs: vec![crate::core::model::Cidr::parse("10.0.1.0/24").unwrap()],
        },
    );
    for p in [
        pod("w1", "web", "10.0.1.2"),
        pod("c1", "api", "10.0.1.3"),
        pod("d1", "db", "10.0.1.4"),
    ] {
        c.pods.insert(p.id.clone(), p.into());
    }
    for p in [
        policy("web-in", sel("app", "web"), Some(from_app("api")), None),
        policy("db-out", sel("app", "db"), None, Some(from_app("web"))),
        policy("x-in", sel("tier", "x"), Some(vec![]), None),
    ] {
        c.policies.insert(p.id.clone(), p);
    }
    c
}

fn opts() -> Options {
    Options {
        node: Some("n1".into()),
        ..Options::default()
    }
}

/// Compiles `c` after `changed`, checks it against the full compile, returns the path.
fn step(state: &mut State, c: &Cluster, changed: &[&str], other: bool) -> Path {
    let changes = Changes {
        pods: changed.iter().map(|n| ObjectRef::new("a", *n)).collect(),
        other,
        ..Changes::default()
    };
    let (got, path) = state.compile(c, vec![], &changes, &opts());
    let want = compile_cluster(c, vec![], &opts());
    assert_eq!(script(&got.ruleset), script(&want.ruleset), "{path:?}");
    assert_eq!(got.drop_log, want.drop_log);
    assert_eq!(got.enforced_pods, want.enforced_pods);
    path
}

#[test]
fn pod_add_relabel_readdress_and_delete_are_incremental() {
    let mut c = cluster();
    let mut state = State::default();
    assert!(matches!(step(&mut state, &c, &[], false), Path::Full(_)));
    let p = pod("w2", "web", "10.0.1.5");
    c.pods.insert(p.id.clone(), p.into());
    assert_eq!(
        step(&mut state, &c, &["w2"], false),
        Path::Incremental,
        "add"
    );
    std::sync::Arc::make_mut(c.pods.get_mut(&ObjectRef::new("a", "c1")).unwrap()).labels =
        [("app".into(), "web".into())].into();
    assert_eq!(
        step(&mut state, &c, &["c1"], false),
        Path::Incremental,
        "relabel"
    );
    std::sync::Arc::make_mut(c.pods.get_mut(&ObjectRef::new("a", "w1")).unwrap()).ips =
        vec!["10.0.1.9".parse().unwrap()];
    assert_eq!(
        step(&mut state, &c, &["w1"], false),
        Path::Incremental,
        "new IP"
    );
    std::sync::Arc::make_mut(c.pods.get_mut(&ObjectRef::new("a", "w1")).unwrap()).named_ports =
        Default::default();
    assert_eq!(
        step(&mut state, &c, &["w1"], false),
        Path::Incremental,
        "named ports"
    );
    c.pods.remove(&ObjectRef::new("a", "w2"));
    assert_eq!(
        step(&mut state, &c, &["w2"], false),
        Path::Incremental,
        "delete"
    );
    assert_eq!(
        step(&mut state, &c, &[], false),
        Path::Incremental,
        "nothing"
    );
}

fn chain_count(state: &State) -> usize {
    state.current().expect("indexed").chains.len()
}

#[test]
fn groups_coming_and_going_are_partial_the_rest_falls_back() {
    let mut c = cluster();
    let mut state = State::default();
    step(&mut state, &c, &[], false);
    let chains = chain_count(&state);
    // The last db pod leaves its group: the group chain goes (step checks
    // the result against a full compile).
    std::sync::Arc::make_mut(c.pods.get_mut(&ObjectRef::new("a", "d1")).unwrap()).labels =
        Default::default();
    assert_eq!(step(&mut state, &c, &["d1"], false), Path::Partial);
    assert!(chain_count(&state) < chains, "a chain went");
    // The first tier=x pod: a group with no chain yet (and its policy's chain).
    let chains = chain_count(&state);
    let mut p = pod("x1", "none", "10.0.1.7");
    p.labels.insert("tier".into(), "x".into());
    c.pods.insert(p.id.clone(), p.into());
    assert_eq!(step(&mut state, &c, &["x1"], false), Path::Partial);
    assert!(chain_count(&state) > chains, "chains came");
    // Two pods with one address.
    let p = pod("dup", "api", "10.0.1.7");
    c.pods.insert(p.id.clone(), p.into());
    assert_eq!(
        step(&mut state, &c, &["dup"], false),
        Path::Full("an address is shared by pods")
    );
    // Anything but pods.
    c.policies.remove(&ObjectRef::new("a", "x-in"));
    assert!(matches!(step(&mut state, &c, &[], true), Path::Full(_)));
    // A change list that misses a pod.
    c.pods.remove(&ObjectRef::new("a", "dup"));
    assert_eq!(
        step(&mut state, &c, &[], false),
        Path::Full("the change list does not account for the pods")
    );
}
