//! Unit tests of the tiered layout (a small hand-built cluster).

use std::collections::BTreeMap;

use super::super::{Options, compile_cluster};
use crate::core::model::{
    Action, Cidr, Cluster, ClusterPolicy, ClusterRule, Direction, NamespaceScope, Node, ObjectRef,
    Peer, Pod, PodMatch, Port, PortMatch, Protocol, Selector, Tier,
};
use crate::core::nft::names;
use crate::core::nft::render::script as render;

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Pod {
    Pod {
        id: ObjectRef::new(ns, name),
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        node: Some("node-1".to_string()),
        ips: vec![ip.parse().unwrap()],
        named_ports: BTreeMap::new(),
    }
}

fn ns_sel(name: &str) -> PodMatch {
    PodMatch {
        namespaces: NamespaceScope::Selector(Selector::from_labels([(
            "kubernetes.io/metadata.name",
            name,
        )])),
        pods: Selector::everything(),
    }
}

/// A small cluster: Admin denies egress to 10.0.0.0/8 except a Pass for
/// pods of `db`, Baseline denies ingress from `other`.
pub(crate) fn cluster() -> Cluster {
    let mut c = Cluster::default();
    for p in [
        pod("app", "web", "web", "10.244.1.10"),
        pod("db", "pg", "pg", "10.244.1.20"),
        pod("other", "x", "x", "10.244.1.30"),
    ] {
        c.pods.insert(p.id.clone(), p.into());
    }
    let admin = ClusterPolicy {
        name: "guard".to_string(),
        tier: Tier::Admin,
        priority: 10,
        subject: ns_sel("app"),
        ingress: vec![],
        egress: vec![
            ClusterRule {
                name: Some("to-db".to_string()),
                action: Action::Pass,
                peers: Some(vec![Peer::Pods(ns_sel("db"))]),
                ports: Some(vec![Port {
                    protocol: Protocol::Tcp,
                    port: PortMatch::Range(5432, 5432),
                }]),
            },
            ClusterRule {
                name: None,
                action: Action::Deny,
                peers: Some(vec![Peer::Networks(vec![
                    Cidr::parse("10.0.0.0/8").unwrap(),
                ])]),
                ports: None,
            },
        ],
        valid: true,
        audit: false,
    };
    let baseline = ClusterPolicy {
        name: "default-deny-other".to_string(),
        tier: Tier::Baseline,
        priority: 0,
        subject: PodMatch {
            namespaces: NamespaceScope::Selector(Selector::everything()),
            pods: Selector::everything(),
        },
        ingress: vec![ClusterRule {
            name: None,
            action: Action::Deny,
            peers: Some(vec![Peer::Pods(ns_sel("other"))]),
            ports: None,
        }],
        egress: vec![ClusterRule {
            name: None,
            action: Action::Deny,
            peers: Some(vec![Peer::Nodes(Selector::everything())]),
            ports: None,
        }],
        valid: true,
        audit: false,
    };
    let np = crate::core::model::Policy {
        id: ObjectRef::new("db", "egress-nothing"),
        pod_selector: Selector::everything(),
        ingress: None,
        egress: Some(vec![]),
        valid: true,
        audit: false,
    };
    c.policies.insert(np.id.clone(), np);
    c.cluster_policies.insert(admin.name.clone(), admin);
    c.cluster_policies.insert(baseline.name.clone(), baseline);
    c.nodes.insert(
        "node-1".to_string(),
        Node {
            name: "node-1".to_string(),
            labels: BTreeMap::new(),
            addresses: vec!["192.168.0.1".parse().unwrap()],
            pod_cidrs: vec![],
        },
    );
    c
}

#[test]
fn tiered_layout_dispatches_each_tier_by_address() {
    let out = compile_cluster(&cluster(), Vec::new(), &Options::default());
    let rs = &out.ruleset;
    let admin_egress = &rs.maps[&names::tier_dispatch_map(
        Tier::Admin,
        Direction::Egress,
        crate::core::model::Family::V4,
    )];
    // Only the subject (app/web) is in the Admin egress map.
    assert_eq!(admin_egress.elements.len(), 1);
    assert!(
        admin_egress
            .elements
            .contains_key(&"10.244.1.10".parse().unwrap())
    );
    let baseline_ingress = &rs.maps[&names::tier_dispatch_map(
        Tier::Baseline,
        Direction::Ingress,
        crate::core::model::Family::V4,
    )];
    assert_eq!(baseline_ingress.elements.len(), 3);
    let text = render(rs);
    assert!(text.contains("hook input"), "{text}");
    assert!(
        text.contains("goto pod-egress comment \"egress[0] to-db: Pass\""),
        "{text}"
    );
    assert!(
        text.contains("fib daddr type local goto ct-stamp-accept"),
        "{text}"
    );
    // Deterministic.
    let again = compile_cluster(&cluster(), Vec::new(), &Options::default());
    assert_eq!(text, render(&again.ruleset));
}

#[test]
fn logged_deny_rules_name_their_policy_and_rule() {
    use crate::core::compile::droplog::{Packet, Transport};
    let opts = Options {
        drop_log: super::super::DropLog {
            all_namespaces: true,
            ..Default::default()
        },
        ..Options::default()
    };
    let out = compile_cluster(&cluster(), Vec::new(), &opts);
    let text = render(&out.ruleset);
    let key = names::cluster_rule_log_key(Tier::Admin, Direction::Egress, "guard", 1);
    let log_line = text
        .lines()
        .position(|l| l.contains(&format!("log prefix \"nftpol drop {key}\"")))
        .unwrap_or_else(|| panic!("no log rule for {key}: {text}"));
    // Right before its Deny (with revocation, the rule marking the flow
    // revoked sits between them).
    assert!(
        text.lines()
            .nth(log_line + 1)
            .unwrap()
            .contains("ct mark set ct mark or"),
        "the revocation mark follows the log rule: {text}"
    );
    assert!(
        text.lines()
            .nth(log_line + 2)
            .unwrap()
            .contains("counter drop"),
        "then its Deny: {text}"
    );
    // Pass rules are not logged.
    assert!(!text.contains(&names::cluster_rule_log_key(
        Tier::Admin,
        Direction::Egress,
        "guard",
        0
    )));
    let flow = out
        .drop_log
        .describe(&Packet {
            prefix: names::log_prefix(&key),
            src: "10.244.1.10".parse().unwrap(),
            dst: "10.1.2.3".parse().unwrap(),
            protocol: 6,
            transport: Transport::Ports {
                sport: 40000,
                dport: 443,
            },
        })
        .expect("an nftpol prefix");
    assert_eq!(flow.pod.as_deref(), Some("web"));
    assert_eq!(
        flow.to_string(),
        "egress drop app/web (10.244.1.10) -> 10.1.2.3 (10.1.2.3) tcp/443 by Admin ClusterNetworkPolicy guard egress[1]"
    );
}
