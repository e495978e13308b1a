//! ClusterNetworkPolicy conversion: one test per validation rule (the field
//! path the API server names), the model mapping and the fail-closed forms.
//! Longer than 600 lines: one test per rule of the CRD.

use super::cluster_policy::{cluster_policy, is_cidr, is_domain_name, node};
use crate::core::diag::Diagnostic;
use crate::core::k8s::load::{Objects, parse_into};
use crate::core::model::{
    Action, Cidr, ClusterPolicy, ClusterRule, NamespaceScope, Peer, PodMatch, Port, PortMatch,
    Protocol, Selector, Tier,
};

/// Loads one CNP from YAML and converts it; panics on load errors.
fn cnp(yaml: &str) -> (ClusterPolicy, Vec<Diagnostic>) {
    let mut o = Objects::default();
    let mut d = Vec::new();
    parse_into(yaml, "t.yaml", &mut o, &mut d);
    assert!(d.is_empty(), "load: {d:?}");
    assert_eq!(o.cluster_policies.len(), 1);
    let (src, c) = &o.cluster_policies[0];
    let p = cluster_policy(c, Some(src), &mut d).expect("named");
    (p, d)
}

fn head(spec: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: p}}\nspec:\n{spec}"
    )
}

const BASE: &str = "  tier: Admin\n  priority: 10\n  subject: {namespaces: {}}\n";

/// The error fields of a spec (BASE plus `rest`), sorted.
fn fields(spec: &str) -> Vec<String> {
    let (p, d) = cnp(&head(spec));
    // The server's "some rules were not checked" error without a field,
    // which comes with every blocking error, is left out here (checked in
    // a_blocking_schema_error_hides_the_cel_rules).
    let mut f: Vec<String> = d
        .iter()
        .filter(|d| d.is_error())
        .filter_map(|d| d.field.clone())
        .collect();
    f.sort();
    assert_eq!(p.valid, f.is_empty(), "{d:?}");
    f
}

fn egress(rule: &str) -> Vec<String> {
    fields(&format!("{BASE}  egress:\n  - {rule}\n"))
}

fn everyone() -> PodMatch {
    PodMatch {
        namespaces: NamespaceScope::Selector(Selector::everything()),
        pods: Selector::everything(),
    }
}

fn deny_all() -> Vec<ClusterRule> {
    vec![ClusterRule {
        name: None,
        action: Action::Deny,
        peers: None,
        ports: None,
    }]
}

#[test]
fn a_valid_policy_maps_to_the_model() {
    let (p, d) = cnp(&head(
        r#"  tier: Baseline
  priority: 7
  subject: {pods: {podSelector: {matchLabels: {app: web}}}}
  ingress:
  - name: from-mon
    action: Accept
    from: [{namespaces: {matchLabels: {team: mon}}}, {pods: {namespaceSelector: {}, podSelector: {}}}]
  egress:
  - action: Deny
    to: [{nodes: {}}, {networks: [10.0.0.1/8, 10.0.0.0/8, "::/0"]}]
    protocols: [{tcp: {destinationPort: {number: 80}}}, {udp: {destinationPort: {range: {start: 1, end: 1024}}}}]
  - action: Pass
    to: [{pods: {podSelector: {}}}]
    protocols: [{destinationNamedPort: web}]
"#,
    ));
    assert!(d.is_empty(), "{d:?}");
    assert!(p.valid);
    assert_eq!((p.tier, p.priority), (Tier::Baseline, 7));
    assert_eq!(
        p.subject,
        PodMatch {
            namespaces: NamespaceScope::Selector(Selector::everything()),
            pods: Selector::from_labels([("app", "web")]),
        }
    );
    assert_eq!(p.ingress.len(), 1);
    assert_eq!(p.ingress[0].name.as_deref(), Some("from-mon"));
    assert_eq!(
        p.ingress[0].peers,
        Some(vec![
            Peer::Pods(PodMatch {
                namespaces: NamespaceScope::Selector(Selector::from_labels([("team", "mon")])),
                pods: Selector::everything(),
            }),
            Peer::Pods(everyone()),
        ])
    );
    assert_eq!(p.ingress[0].ports, None);
    let e = &p.egress[0];
    assert_eq!(e.action, Action::Deny);
    assert_eq!(
        e.peers,
        Some(vec![
            Peer::Nodes(Selector::everything()),
            Peer::Networks(vec![
                Cidr::parse("10.0.0.0/8").unwrap(),
                Cidr::parse("::/0").unwrap()
            ]),
        ]),
        "host bits masked, sorted, deduplicated"
    );
    assert_eq!(
        e.ports,
        Some(vec![
            Port {
                protocol: Protocol::Tcp,
                port: PortMatch::Range(80, 80)
            },
            Port {
                protocol: Protocol::Udp,
                port: PortMatch::Range(1, 1024)
            },
        ])
    );
    let named: Vec<Port> = Protocol::ALL
        .map(|protocol| Port {
            protocol,
            port: PortMatch::Named("web".into()),
        })
        .to_vec();
    assert_eq!(p.egress[1].ports, Some(named), "one entry per protocol");
}

#[test]
fn spec_fields_required_enums_and_bounds() {
    assert_eq!(
        fields("  subject: {namespaces: {}}\n"),
        ["spec.priority", "spec.tier"]
    );
    assert_eq!(
        fields("  tier: admin\n  priority: 1\n  subject: {namespaces: {}}\n"),
        ["spec.tier"]
    );
    assert_eq!(fields("  tier: Admin\n  priority: 1\n"), ["spec.subject"]);
    for p in ["-1", "1001"] {
        assert_eq!(
            fields(&format!(
                "  tier: Admin\n  priority: {p}\n  subject: {{namespaces: {{}}}}\n"
            )),
            ["spec.priority"]
        );
    }
    assert!(fields("  tier: Admin\n  priority: 1000\n  subject: {namespaces: {}}\n").is_empty());
    assert!(fields(&format!("{BASE}  ingress: []\n  egress: []\n")).is_empty());
    let many = "  - {action: Deny, from: [{namespaces: {}}]}\n".repeat(26);
    assert_eq!(
        fields(&format!("{BASE}  ingress:\n{many}")),
        ["spec.ingress"]
    );
}

#[test]
fn subject_is_exactly_one_of() {
    let t = "  tier: Admin\n  priority: 1\n";
    assert_eq!(fields(&format!("{t}  subject: {{}}\n")), ["spec.subject"]);
    assert_eq!(
        fields(&format!(
            "{t}  subject: {{namespaces: {{}}, pods: {{podSelector: {{}}}}}}\n"
        )),
        ["spec.subject"]
    );
    assert_eq!(
        fields(&format!(
            "{t}  subject: {{pods: {{namespaceSelector: {{}}}}}}\n"
        )),
        ["spec.subject.pods.podSelector"]
    );
}

#[test]
fn rules_action_peers_name_and_protocol_lists() {
    assert_eq!(
        egress("{to: [{namespaces: {}}]}"),
        ["spec.egress[0].action"]
    );
    assert_eq!(
        egress("{action: Allow, to: [{namespaces: {}}]}"),
        ["spec.egress[0].action"]
    );
    assert_eq!(egress("{action: Deny}"), ["spec.egress[0].to"]);
    assert_eq!(egress("{action: Deny, to: []}"), ["spec.egress[0].to"]);
    let long = "x".repeat(101);
    assert_eq!(
        egress(&format!(
            "{{name: {long}, action: Deny, to: [{{namespaces: {{}}}}]}}"
        )),
        ["spec.egress[0].name"]
    );
    assert!(
        egress(&format!(
            "{{name: {}, action: Deny, to: [{{namespaces: {{}}}}]}}",
            &long[1..]
        ))
        .is_empty()
    );
    assert_eq!(
        egress("{action: Deny, to: [{namespaces: {}}], protocols: []}"),
        ["spec.egress[0].protocols"]
    );
    let ingress = fields(&format!("{BASE}  ingress:\n  - {{action: Pass}}\n"));
    assert_eq!(ingress, ["spec.ingress[0].from"]);
}

#[test]
fn peers_are_exactly_one_of() {
    assert_eq!(egress("{action: Deny, to: [{}]}"), ["spec.egress[0].to[0]"]);
    assert_eq!(
        egress("{action: Deny, to: [{namespaces: {}, nodes: {}}]}"),
        ["spec.egress[0].to[0]"]
    );
    assert_eq!(
        egress("{action: Deny, to: [{pods: {}}]}"),
        ["spec.egress[0].to[0].pods.podSelector"]
    );
}

#[test]
fn networks_is_cidr_set_and_bounds() {
    assert_eq!(
        egress("{action: Deny, to: [{networks: [10.0.0.0/8, 10.0.0.0/8]}]}"),
        ["spec.egress[0].to[0].networks[1]"]
    );
    assert_eq!(
        egress("{action: Deny, to: [{networks: [10.0.0.0/33]}]}"),
        ["spec.egress[0].to[0].networks[0]"]
    );
    assert_eq!(
        egress("{action: Deny, to: [{networks: []}]}"),
        ["spec.egress[0].to[0].networks"]
    );
    let many: Vec<String> = (0..26).map(|i| format!("10.0.{i}.0/24")).collect();
    assert_eq!(
        egress(&format!(
            "{{action: Deny, to: [{{networks: [{}]}}]}}",
            many.join(", ")
        )),
        ["spec.egress[0].to[0].networks"]
    );
    for ok in [
        "10.0.0.0/8",
        "10.0.0.1/8",
        "::/0",
        "2001:db8::1/32",
        "1.2.3.4/0",
    ] {
        assert!(is_cidr(ok), "{ok}");
    }
    for bad in [
        "10.0.0.0",
        "010.0.0.0/8",
        "10.0.0.0/08",
        "10.0.0.0/33",
        "fe80::1%eth0/64",
        "10.0.0.0/+8",
        "",
        "x/8",
        "::/129",
        "::ffff:10.0.0.0/104",
    ] {
        assert!(!is_cidr(bad), "{bad}");
    }
}

#[test]
fn a_blocking_schema_error_hides_the_cel_rules() {
    // An enum error (NotSupported) blocks the CEL rules: the server reports
    // that some rules were not checked, without a field.
    assert_eq!(
        egress("{action: Allow, to: [{networks: [bad]}]}"),
        ["spec.egress[0].action"]
    );
    let (_, d) = cnp(&head("  tier: Admin\n  priority: 1\n"));
    let nil: Vec<&Diagnostic> = d.iter().filter(|d| d.field.is_none()).collect();
    assert_eq!(nil.len(), 1, "{d:?}");
    assert!(
        nil[0]
            .message
            .starts_with("some validation rules were not checked")
    );
    // A minItems error (Invalid) does not.
    assert_eq!(
        egress("{action: Deny, to: [{networks: [bad]}], protocols: []}"),
        [
            "spec.egress[0].protocols",
            "spec.egress[0].to[0].networks[0]"
        ]
    );
}

#[test]
fn protocols_and_ports() {
    let rule = |p: &str| {
        egress(&format!(
            "{{action: Deny, to: [{{namespaces: {{}}}}], protocols: [{p}]}}"
        ))
    };
    let at = "spec.egress[0].protocols[0]";
    assert_eq!(rule("{}"), [at]);
    assert_eq!(
        rule("{tcp: {destinationPort: {number: 1}}, destinationNamedPort: x}"),
        [at]
    );
    assert_eq!(rule("{tcp: {}}"), [format!("{at}.tcp")]);
    let dp = format!("{at}.udp.destinationPort");
    assert_eq!(
        rule("{udp: {destinationPort: {}}}"),
        std::slice::from_ref(&dp)
    );
    assert_eq!(
        rule("{udp: {destinationPort: {number: 1, range: {start: 1, end: 2}}}}"),
        std::slice::from_ref(&dp)
    );
    assert_eq!(
        rule("{udp: {destinationPort: {number: 0}}}"),
        [format!("{dp}.number")]
    );
    assert_eq!(
        rule("{udp: {destinationPort: {number: 65536}}}"),
        [format!("{dp}.number")]
    );
    assert!(rule("{sctp: {destinationPort: {number: 65535}}}").is_empty());
    assert_eq!(
        rule("{udp: {destinationPort: {range: {start: 5, end: 5}}}}"),
        [format!("{dp}.range")]
    );
    assert_eq!(
        rule("{udp: {destinationPort: {range: {start: 0, end: 5}}}}"),
        [format!("{dp}.range.start")]
    );
    assert_eq!(
        rule("{udp: {destinationPort: {range: {start: 5}}}}"),
        [format!("{dp}.range.end")]
    );
    assert!(
        rule("{destinationNamedPort: \"Any thing\"}").is_empty(),
        "no pattern on the name"
    );
}

#[test]
fn named_port_with_a_non_pod_peer_is_the_experimental_cel_rule() {
    assert_eq!(
        egress(
            "{action: Accept, to: [{namespaces: {}}, {networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: web}]}"
        ),
        ["spec.egress[0]"]
    );
    assert_eq!(
        egress(
            "{action: Accept, to: [{nodes: {}}], protocols: [{tcp: {destinationPort: {number: 1}}}, {destinationNamedPort: web}]}"
        ),
        ["spec.egress[0]"]
    );
    assert!(egress("{action: Accept, to: [{pods: {podSelector: {}}}], protocols: [{destinationNamedPort: web}]}").is_empty());
}

#[test]
fn domain_names_pattern_and_set() {
    for ok in [
        "kubernetes.io",
        "*.kubernetes.io",
        "a.b.c.",
        "_x.y",
        "[.io",
        "a-b_c.d1",
    ] {
        assert!(is_domain_name(ok), "{ok}");
    }
    for bad in [
        "localhost",
        "*.io.",
        "*",
        "a..b",
        "-a.b",
        "a-.b",
        "a.b-",
        "*a.b",
        "a.*.b",
        "é.io",
        "a.b..",
        ".a.b",
        "a_.b",
    ] {
        assert!(!is_domain_name(bad), "{bad}");
    }
    assert_eq!(
        egress("{action: Accept, to: [{domainNames: [localhost]}]}"),
        ["spec.egress[0].to[0].domainNames[0]"]
    );
    assert_eq!(
        egress("{action: Accept, to: [{domainNames: [a.io, a.io]}]}"),
        ["spec.egress[0].to[0].domainNames[1]"]
    );
}

#[test]
fn domain_names_are_refused_and_fail_closed() {
    // Accept: the peer matches nothing, the other peers keep working.
    let (p, d) = cnp(&head(&format!(
        "{BASE}  egress:\n  - {{action: Accept, to: [{{domainNames: [example.com]}}, {{nodes: {{}}}}]}}\n  - {{action: Accept, to: [{{domainNames: [example.com]}}]}}\n"
    )));
    assert!(p.valid, "the API server accepts it");
    assert_eq!(
        p.egress[0].peers,
        Some(vec![Peer::Nodes(Selector::everything())])
    );
    assert_eq!(p.egress[1].peers, Some(vec![]), "matches nothing");
    assert_eq!(d.len(), 2);
    assert!(d[0].is_error());
    assert_eq!(
        d[0].to_string(),
        "error: t.yaml (document 1): ClusterNetworkPolicy p: spec.egress[0].to[0].domainNames: domainNames is not supported yet; this peer matches nothing (fail closed)"
    );
    // Deny and Pass: the rule denies everything.
    for action in ["Deny", "Pass"] {
        let (p, d) = cnp(&head(&format!(
            "{BASE}  egress:\n  - {{action: {action}, to: [{{domainNames: [example.com]}}], protocols: [{{tcp: {{destinationPort: {{number: 1}}}}}}]}}\n"
        )));
        assert!(p.valid);
        assert_eq!(p.egress, deny_all());
        assert!(d[0].message.contains("denies all traffic"), "{d:?}");
    }
}

#[test]
fn an_unrecognised_peer_fails_closed_like_domain_names() {
    let mut o = Objects::default();
    let mut d = Vec::new();
    crate::core::k8s::load::parse_into_with(
        &head(&format!(
            "{BASE}  egress:\n  - {{action: Pass, to: [{{services: [x]}}]}}\n"
        )),
        "t.yaml",
        crate::core::k8s::load::UnknownFields::Warn,
        &mut o,
        &mut d,
    );
    assert_eq!(d.len(), 1, "a warning for the unknown field: {d:?}");
    assert_eq!(d[0].field.as_deref(), Some("spec.egress[0].to[0].services"));
    let (src, c) = &o.cluster_policies[0];
    let p = cluster_policy(c, Some(src), &mut d).unwrap();
    assert_eq!(p.egress, deny_all());
    assert!(
        d[1].message.contains("\"services\" is not supported yet"),
        "{d:?}"
    );
}

#[test]
fn an_invalid_policy_denies_everything_for_its_subject() {
    let (p, d) = cnp(&head(
        "  tier: Baseline\n  priority: 5000\n  subject: {namespaces: {matchLabels: {a: b}}}\n  ingress: [{action: Accept, from: [{namespaces: {}}]}]\n",
    ));
    assert!(!p.valid);
    // Out of range keeps its place: after every valid priority of its tier.
    assert_eq!((p.tier, p.priority), (Tier::Baseline, 5000));
    assert_eq!(
        p.subject.namespaces,
        NamespaceScope::Selector(Selector::from_labels([("a", "b")]))
    );
    assert_eq!(
        (p.ingress.clone(), p.egress.clone()),
        (deny_all(), deny_all())
    );
    assert_eq!(
        d[0].to_string(),
        "error: t.yaml (document 1): ClusterNetworkPolicy p: spec.priority: 5000 is out of range (0 to 1000); the policy is invalid and fails closed (all traffic of its subjects is denied at its place)"
    );
    // An invalid subject: every pod; an unparsable tier: Admin.
    let (p, _) = cnp(&head(
        "  tier: Middle\n  priority: 3\n  subject: {namespaces: {matchExpressions: [{key: a, operator: Equals}]}}\n",
    ));
    assert_eq!((p.valid, p.tier, p.priority), (false, Tier::Admin, 3));
    assert_eq!(p.subject, everyone());
}

#[test]
fn selectors_nftpol_cannot_evaluate_fail_closed_with_a_marked_error() {
    let (p, d) = cnp(&head(
        "  tier: Admin\n  priority: 1\n  subject: {namespaces: {matchExpressions: [{key: a, operator: In}]}}\n",
    ));
    assert!(!p.valid);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].field.as_deref(),
        Some("spec.subject.namespaces.matchExpressions[0].values")
    );
    assert!(d[0].message.contains(super::SELECTOR_MARK), "{}", d[0]);
    // The CRD's own rule: key and operator are required.
    assert_eq!(
        fields(
            "  tier: Admin\n  priority: 1\n  subject: {namespaces: {matchExpressions: [{key: a}]}}\n"
        ),
        ["spec.subject.namespaces.matchExpressions[0].operator"]
    );
}

#[test]
fn metadata_name_is_a_dns_subdomain() {
    let y = head(BASE).replace("name: p", "name: Bad_Name");
    let (p, d) = cnp(&y);
    assert!(!p.valid);
    assert_eq!(d[0].field.as_deref(), Some("metadata.name"));
}

#[test]
fn other_versions_are_a_clear_error_and_missing_spec_is_named() {
    let mut o = Objects::default();
    let mut d = Vec::new();
    parse_into(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec: {}\n---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: q}\n",
        "t.yaml",
        &mut o,
        &mut d,
    );
    assert!(o.cluster_policies.is_empty());
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0].field.as_deref(), Some("apiVersion"));
    assert!(d[0].message.contains("v1alpha2"), "{}", d[0]);
    assert_eq!(d[1].field.as_deref(), Some("spec"), "{}", d[1]);
}

#[test]
fn lists_unknown_fields_and_round_trips() {
    let mut o = Objects::default();
    let mut d = Vec::new();
    parse_into(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: policy.networking.k8s.io/v1alpha2\n  kind: ClusterNetworkPolicy\n  metadata: {name: p}\n  spec: {tier: Admin, priority: 1, subject: {namespaces: {matchLabel: {a: b}}}, egress: [{action: Deny, to: [{networks: [10.0.0.0/8]}], protocol: []}]}\n  status: {conditions: [{type: Ready, status: 'True', reason: R, message: m, lastTransitionTime: '2024-01-01T00:00:00Z', observedGeneration: 1}]}\n- {apiVersion: v1, kind: Node, metadata: {name: n1}, status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}}\n",
        "t.yaml",
        &mut o,
        &mut d,
    );
    let f: Vec<&str> = d.iter().filter_map(|d| d.field.as_deref()).collect();
    assert_eq!(
        f,
        [
            "spec.egress[0].protocol",
            "spec.subject.namespaces.matchLabel"
        ],
        "{d:?}"
    );
    assert_eq!((o.cluster_policies.len(), o.nodes.len()), (1, 1));
    assert_eq!(o.cluster_policies[0].0.item, Some(1));
}

#[test]
fn nodes_keep_internal_and_external_ips_sorted() {
    let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}},
        "status": {"addresses": [
            {"type": "ExternalIP", "address": "203.0.113.5"},
            {"type": "Hostname", "address": "n1"},
            {"type": "InternalIP", "address": "fd00::1"},
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "InternalDNS", "address": "10.9.9.9"},
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "InternalIP", "address": "not-an-ip"}
        ]}
    }))
    .unwrap();
    let mut d = Vec::new();
    let m = node(&n, None, &mut d).unwrap();
    let ips: Vec<String> = m.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(ips, ["10.0.0.1", "203.0.113.5", "fd00::1"]);
    assert_eq!(
        m.labels.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    assert_eq!(d.len(), 1, "the unparsable address is a warning: {d:?}");
    assert!(!d[0].is_error());
}

#[test]
fn every_upstream_example_converts_as_expected() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cluster-network-policy/examples");
    let (objs, d) = crate::core::k8s::load::load_paths(&[dir]);
    // The two user-story-4 files are not YAML; example 09 uses a v1alpha1
    // peer shape (an unknown field).
    let load_errors: Vec<String> = d
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert_eq!(load_errors.len(), 3, "{load_errors:#?}");
    assert!(
        objs.cluster_policies.len() >= 25,
        "{}",
        objs.cluster_policies.len()
    );
    let mut d = Vec::new();
    for (src, c) in &objs.cluster_policies {
        let p = cluster_policy(c, Some(src), &mut d).unwrap();
        let invalid = src.file.contains("INVALID");
        assert_eq!(p.valid, !invalid, "{src}: {d:?}");
    }
}

#[test]
fn mode_annotation_on_a_cluster_network_policy() {
    let with = |ann: &str, spec: &str| {
        cnp(&format!(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: p, annotations: {ann}}}\nspec:\n{spec}"
        ))
    };
    let (p, d) = with("{nftpol.io/mode: audit}", BASE);
    assert!(p.audit && p.valid && d.is_empty(), "{d:?}");
    let (p, d) = with("{nftpol.io/mode: enforce}", BASE);
    assert!(!p.audit && d.is_empty(), "{d:?}");
    let (p, d) = with("{nftpol.io/mode: dry-run}", BASE);
    assert!(!p.audit, "not a mode: enforced");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].to_string()
            .contains("ClusterNetworkPolicy p: metadata.annotations[nftpol.io/mode]"),
        "{}",
        d[0]
    );
    // Invalid (priority out of range): fails closed, never audited.
    let (p, d) = with(
        "{nftpol.io/mode: audit}",
        "  tier: Admin\n  priority: 5000\n  subject: {namespaces: {}}\n",
    );
    assert!(!p.audit && !p.valid);
    assert!(
        d.iter()
            .any(|d| !d.is_error() && d.to_string().contains("audit mode ignored")),
        "{d:?}"
    );
}
