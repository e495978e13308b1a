//! Filters and pod groups over a small two-namespace cluster.

use super::*;
use crate::core::graph::SelectorGraph;
use crate::core::graph::export::{ALL_PORTS, export};

/// Namespaces a and b. In a: three web pods (one from a newer ReplicaSet, so
/// its pod-template-hash differs) and db-0. In b: two clients and other.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: a, labels: {app: web, pod-template-hash: h1}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: a, labels: {app: web, pod-template-hash: h1}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-3, namespace: a, labels: {app: web, pod-template-hash: h2}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: a, labels: {app: db}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.4}
---
apiVersion: v1
kind: Pod
metadata: {name: client-1, namespace: b, labels: {app: client}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: b, labels: {app: client}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: b, labels: {app: other}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.1.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-allow, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
  - from: [{ipBlock: {cidr: 10.9.0.0/16}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-b, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 443}, {port: 80}]
  - from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 9000}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: b}
spec:
  podSelector: {}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns, namespace: b}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 53, protocol: UDP}]
"#;

fn full() -> Export {
    let mut objs = crate::core::k8s::Objects::default();
    let mut diags = Vec::new();
    crate::core::k8s::parse_into(CLUSTER, "t.yaml", &mut objs, &mut diags);
    let (cluster, more) = crate::core::k8s::to_cluster(&objs);
    diags.extend(more);
    assert!(diags.is_empty(), "{diags:?}");
    export(&cluster, &SelectorGraph::build(&cluster))
}

fn ids(e: &Export) -> Vec<&str> {
    e.nodes.iter().map(|n| n.id.as_str()).collect()
}

fn seen(focus: Vec<Focus>) -> Export {
    view(
        &full(),
        &View {
            focus,
            expand_pods: false,
        },
    )
    .expect("every filter matches")
}

fn edge<'e>(e: &'e Export, from: &str, to: &str, kind: &str) -> Option<&'e Edge> {
    e.edges
        .iter()
        .find(|x| x.from == from && x.to == to && x.kind == kind)
}

fn pod(ns: &str, name: &str) -> Focus {
    Focus::Pod(ObjectRef::new(ns, name))
}

#[test]
fn rule_edges_carry_the_ports_of_every_rule_naming_the_peer() {
    let e = full();
    let sel = e
        .nodes
        .iter()
        .find(|n| n.kind == "selector" && n.label.contains("team=b"))
        .expect("the client selector")
        .id
        .clone();
    let pol = "policy:a/web-from-b";
    let ports = |from: &str, to: &str, kind: &str| {
        edge(&e, from, to, kind)
            .unwrap_or_else(|| panic!("{from} -{kind}-> {to}"))
            .ports
            .clone()
    };
    // Two ingress rules name the peer: their ports together, sorted.
    assert_eq!(
        ports(pol, &sel, "allows-from"),
        ["tcp/80", "tcp/443", "tcp/http"]
    );
    // The same peer in the other direction is its own edge (the graph used
    // to keep only the egress one).
    assert_eq!(ports(pol, &sel, "allows-to"), ["tcp/9000"]);
    assert_eq!(
        ports("policy:a/db-allow", "ipblock:10.9.0.0/16", "allows-from"),
        [ALL_PORTS],
        "a rule without ports"
    );
    assert_eq!(ports("policy:b/dns", "any", "allows-to"), ["udp/53"]);
    assert!(
        e.edges
            .iter()
            .all(|x| x.ports.is_empty() == matches!(x.kind, "contains" | "selects")),
        "rule edges and only they have ports: {:?}",
        e.edges
    );
}

#[test]
fn pods_treated_alike_are_one_vertex_and_a_group_of_one_stays_a_pod() {
    let e = seen(Vec::new());
    assert_eq!(
        ids(&e),
        [
            "ns:a",
            "ns:b",
            "pod:a/db-0",
            "pod:b/other",
            "pods:a/web-1",
            "pods:b/client-1",
            "policy:a/db-allow",
            "policy:a/web-from-b",
            "policy:b/deny-egress",
            "policy:b/dns",
            "selector:0",
            "selector:1",
            "ipblock:10.9.0.0/16",
            "any",
        ]
    );
    let web = e.nodes.iter().find(|n| n.id == "pods:a/web-1").unwrap();
    assert_eq!(web.label, "3 pods");
    assert_eq!(web.namespace.as_deref(), Some("a"));
    assert_eq!(
        web.labels,
        Labels::from([("app".to_string(), "web".to_string())]),
        "only the labels every member has"
    );
    let members: Vec<(&str, Option<&String>, &[String])> = web
        .members
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.labels.get("pod-template-hash"),
                &m.ips[..],
            )
        })
        .collect();
    let (h1, h2) = ("h1".to_string(), "h2".to_string());
    assert_eq!(
        members,
        [
            ("web-1", Some(&h1), &["10.0.0.1".to_string()][..]),
            ("web-2", Some(&h1), &["10.0.0.2".to_string()][..]),
            ("web-3", Some(&h2), &["10.0.0.3".to_string()][..]),
        ],
        "labels that differ and IPs stay with each member"
    );
    // The members' edges became the group's, once each.
    assert!(edge(&e, "policy:a/web-from-b", "pods:a/web-1", "selects").is_some());
    assert!(edge(&e, "ns:a", "pods:a/web-1", "contains").is_some());
    assert!(!e.edges.iter().any(|x| x.to.starts_with("pod:a/web")));
    let edges: BTreeSet<&Edge> = e.edges.iter().collect();
    assert_eq!(edges.len(), e.edges.len(), "no duplicate edges");
}

#[test]
fn expand_pods_shows_every_pod() {
    let all = full();
    let v = view(
        &all,
        &View {
            focus: Vec::new(),
            expand_pods: true,
        },
    )
    .unwrap();
    assert_eq!(v, all);
    assert_eq!(v.nodes.iter().filter(|n| n.kind == "pod").count(), 7);
}

#[test]
fn each_filter_keeps_its_seed_and_one_hop() {
    // (filters, vertices kept, why)
    let table: Vec<(Vec<Focus>, Vec<&str>, &str)> = vec![
        (
            vec![pod("a", "db-0")],
            vec![
                "ns:a",
                "pod:a/db-0",
                "policy:a/db-allow",
                "selector:0",
                "ipblock:10.9.0.0/16",
            ],
            "a pod: the policy selecting it and its peers, not the pods behind them",
        ),
        (
            vec![pod("b", "other")],
            vec!["ns:b", "pod:b/other", "policy:b/deny-egress"],
            "an egress-isolated pod with no peers",
        ),
        (
            vec![pod("b", "client-2")],
            vec![
                "ns:b",
                "pod:b/client-2",
                "policy:a/web-from-b",
                "policy:b/deny-egress",
                "policy:b/dns",
                "selector:1",
                "any",
                "ns:a",
            ],
            "a pod named as a peer: the selector matching it and the policy naming it",
        ),
        (
            vec![Focus::Policy(ObjectRef::new("a", "web-from-b"))],
            vec![
                "ns:a",
                "ns:b",
                "pods:a/web-1",
                "pods:b/client-1",
                "policy:a/web-from-b",
                "selector:1",
            ],
            "a policy: the pods it selects, its peer and the pods behind it",
        ),
        (
            vec![Focus::Namespace("b".to_string())],
            vec![
                "ns:a",
                "ns:b",
                "pod:b/other",
                "pods:b/client-1",
                "policy:a/web-from-b",
                "policy:b/deny-egress",
                "policy:b/dns",
                "selector:1",
                "any",
            ],
            "a namespace: its pods and policies, and the foreign policy naming its pods",
        ),
        (
            vec![pod("a", "db-0"), pod("b", "other")],
            vec![
                "ns:a",
                "ns:b",
                "pod:a/db-0",
                "pod:b/other",
                "policy:a/db-allow",
                "policy:b/deny-egress",
                "selector:0",
                "ipblock:10.9.0.0/16",
            ],
            "filters add up",
        ),
    ];
    for (focus, want, why) in table {
        let e = seen(focus);
        let mut want: Vec<&str> = want;
        let mut got = ids(&e);
        want.sort();
        got.sort();
        assert_eq!(got, want, "{why}");
        let kept: BTreeSet<&str> = got.into_iter().collect();
        for x in &e.edges {
            assert!(
                kept.contains(x.from.as_str()) && kept.contains(x.to.as_str()),
                "{why}: edge {x:?} to a vertex not kept"
            );
        }
    }
}

#[test]
fn a_filter_that_names_nothing_fails_with_every_such_filter_and_a_near_miss() {
    let focus = vec![
        pod("a", "db-0"),
        pod("b", "web-1"),
        Focus::ClusterPolicy("db-allow".to_string()),
        Focus::Policy(ObjectRef::new("b", "db-allow")),
        Focus::Namespace("c".to_string()),
    ];
    let err = view(
        &full(),
        &View {
            focus,
            expand_pods: false,
        },
    )
    .unwrap_err();
    let got: Vec<(&Focus, &str)> = err.iter().map(|u| (&u.focus, u.reason.as_str())).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got[0].1.starts_with("no such pod") && got[0].1.ends_with("pods of that name: a/web-1"),
        "{got:?}"
    );
    assert!(
        got[1]
            .1
            .contains("NetworkPolicies are given as NAMESPACE/NAME: a/db-allow"),
        "{got:?}"
    );
    assert!(
        got[2]
            .1
            .contains("NetworkPolicies of that name: a/db-allow"),
        "{got:?}"
    );
    assert!(got[3].1.starts_with("no such namespace"), "{got:?}");
}

#[test]
fn filter_values_parse() {
    type Parser = fn(&str) -> Result<Focus, String>;
    // (parser, value, Ok(result) or Err(text the message contains), why)
    let table: Vec<(Parser, &str, Result<Focus, &str>, &str)> = vec![
        (Focus::pod, "a/db-0", Ok(pod("a", "db-0")), "NS/NAME"),
        (
            Focus::pod,
            "db-0",
            Err("expected NAMESPACE/POD"),
            "no namespace",
        ),
        (Focus::pod, "a/b/c", Err("one '/'"), "two slashes"),
        (
            Focus::pod,
            "/x",
            Err("namespace name is empty"),
            "empty namespace",
        ),
        (Focus::pod, "a/", Err("pod name is empty"), "empty name"),
        (
            Focus::pod,
            "a/Web*",
            Err("is not a pod name"),
            "not a Kubernetes name",
        ),
        (
            Focus::policy,
            "a/p",
            Ok(Focus::Policy(ObjectRef::new("a", "p"))),
            "a NetworkPolicy",
        ),
        (
            Focus::policy,
            "guard",
            Ok(Focus::ClusterPolicy("guard".to_string())),
            "a bare name is a ClusterNetworkPolicy",
        ),
        (Focus::policy, "", Err("policy name is empty"), "empty"),
        (Focus::policy, "a/b/c", Err("one '/'"), "two slashes"),
        (
            Focus::namespace,
            "kube-system",
            Ok(Focus::Namespace("kube-system".to_string())),
            "a namespace",
        ),
        (
            Focus::namespace,
            "a/b",
            Err("expected a namespace name"),
            "a slash",
        ),
        (
            Focus::namespace,
            "A",
            Err("is not a namespace name"),
            "upper case",
        ),
    ];
    for (parse, value, want, why) in table {
        match (parse(value), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{why}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{why}: {got:?} lacks {want:?}"),
            (got, want) => panic!("{why}: {value:?} gave {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_view_is_deterministic() {
    let v = View {
        focus: vec![Focus::Namespace("b".to_string()), pod("a", "db-0")],
        expand_pods: false,
    };
    let reversed = View {
        focus: v.focus.iter().rev().cloned().collect(),
        ..v.clone()
    };
    assert_eq!(view(&full(), &v), view(&full(), &reversed));
}
