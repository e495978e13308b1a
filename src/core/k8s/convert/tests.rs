use k8s_openapi::api::networking::v1 as net;

use super::*;
use crate::core::model::{Policy, Port, PortMatch, Protocol, Rule, Selector};

fn np(yaml: &str) -> (Option<Policy>, Vec<Diagnostic>) {
    let obj: net::NetworkPolicy = serde_saphyr::from_str(yaml).unwrap();
    let mut d = Vec::new();
    (policy(&obj, None, &mut d), d)
}

const HEAD: &str =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\n";

#[test]
fn policy_types_defaulting_table() {
    // (spec, isolates ingress, isolates egress, why)
    let rows = [
        (
            "spec: {podSelector: {}}",
            true,
            false,
            "no policyTypes, no egress: Ingress only",
        ),
        (
            "spec: {podSelector: {}, egress: [{}]}",
            true,
            true,
            "egress rules add Egress",
        ),
        (
            "spec: {podSelector: {}, egress: []}",
            true,
            false,
            "egress: [] does not add Egress (len == 0)",
        ),
        (
            "spec: {podSelector: {}, policyTypes: []}",
            true,
            false,
            "empty policyTypes is defaulted too",
        ),
        (
            "spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}",
            false,
            true,
            "explicit Egress only ignores ingress rules",
        ),
        (
            "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}",
            true,
            true,
            "explicit both",
        ),
        (
            "spec: {podSelector: {}, policyTypes: [Sideways]}",
            true,
            true,
            "invalid policyType fails closed both ways",
        ),
    ];
    for (spec, want_in, want_eg, why) in rows {
        let (p, _) = np(&format!("{HEAD}{spec}"));
        let p = p.unwrap();
        assert_eq!(p.ingress.is_some(), want_in, "{why}: ingress");
        assert_eq!(p.egress.is_some(), want_eg, "{why}: egress");
    }
}

#[test]
fn absent_and_empty_lists() {
    let (p, d) = np(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - {{}}\n  - from: []\n    ports: []\n  - ports: [{{}}]\n  - ports: [{{protocol: UDP}}]\n"
    ));
    assert!(d.is_empty(), "{d:?}");
    let rules = p.unwrap().ingress.unwrap();
    assert_eq!(rules[0], Rule::default(), "{{}} = all peers, all ports");
    assert_eq!(rules[1], Rule::default(), "empty lists mean all too");
    let all_tcp = Port {
        protocol: Protocol::Tcp,
        port: PortMatch::All,
    };
    assert_eq!(
        rules[2].ports,
        Some(vec![all_tcp]),
        "ports: [{{}}] = every TCP port"
    );
    assert_eq!(rules[3].ports.as_ref().unwrap()[0].protocol, Protocol::Udp);
    let (p, _) = np(&format!("{HEAD}spec: {{podSelector: {{}}, ingress: []}}"));
    assert_eq!(
        p.unwrap().ingress,
        Some(vec![]),
        "ingress: [] allows nothing"
    );
}

#[test]
fn ports_are_defaulted_and_parsed() {
    let (p, d) = np(&format!(
        "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{port: 80}}, {{port: http}}, {{protocol: SCTP, port: 1000, endPort: 2000}}]\n"
    ));
    assert!(d.is_empty(), "{d:?}");
    let ports = p.unwrap().ingress.unwrap()[0].ports.clone().unwrap();
    assert_eq!(
        ports[0],
        Port {
            protocol: Protocol::Tcp,
            port: PortMatch::Range(80, 80)
        }
    );
    assert_eq!(ports[1].port, PortMatch::Named("http".into()));
    assert_eq!(
        ports[2],
        Port {
            protocol: Protocol::Sctp,
            port: PortMatch::Range(1000, 2000)
        }
    );
}

#[test]
fn invalid_policies_fail_closed_with_field_paths() {
    // (spec fragment, expected field, why)
    let rows = [
        (
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "bad prefix",
        ),
        (
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]",
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "except outside",
        ),
        (
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]",
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "except equal to cidr",
        ),
        (
            "egress: [{to: [{podSelector: {matchExpressions: [{key: a, operator: Is}]}}]}]",
            "spec.egress[0].to[0].podSelector.matchExpressions[0].operator",
            "bad operator",
        ),
        (
            "ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]}]",
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
            "In without values",
        ),
        (
            "ingress: [{ports: [{port: 70000}]}]",
            "spec.ingress[0].ports[0].port",
            "port out of range",
        ),
        (
            "ingress: [{ports: [{port: 0}]}]",
            "spec.ingress[0].ports[0].port",
            "port zero",
        ),
        (
            "ingress: [{ports: [{port: 90, endPort: 80}]}]",
            "spec.ingress[0].ports[0].endPort",
            "endPort below port",
        ),
        (
            "ingress: [{ports: [{port: http, endPort: 80}]}]",
            "spec.ingress[0].ports[0].endPort",
            "endPort with a name",
        ),
        (
            "ingress: [{ports: [{endPort: 80}]}]",
            "spec.ingress[0].ports[0].endPort",
            "endPort alone",
        ),
        (
            "ingress: [{ports: [{port: \"80\"}]}]",
            "spec.ingress[0].ports[0].port",
            "digits as a port name",
        ),
        (
            "ingress: [{ports: [{protocol: ICMP}]}]",
            "spec.ingress[0].ports[0].protocol",
            "unknown protocol",
        ),
        (
            "ingress: [{from: [{}]}]",
            "spec.ingress[0].from[0]",
            "empty peer",
        ),
        (
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
            "spec.ingress[0].from[0]",
            "ipBlock with a selector",
        ),
        // Found by tests/validity.rs against the real API server.
        (
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "bits set beyond the prefix",
        ),
        (
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/08}}]}]",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "leading zero in the prefix length",
        ),
        (
            "ingress: [{from: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}]}]",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "IPv4-mapped IPv6",
        ),
        (
            "ingress: [{from: [{podSelector: {matchLabels: {\"bad key\": x}}}]}]",
            "spec.ingress[0].from[0].podSelector.matchLabels",
            "bad label key (the API server names the map)",
        ),
        (
            "ingress: [{from: [{namespaceSelector: {matchLabels: {a: \"x/y\"}}}]}]",
            "spec.ingress[0].from[0].namespaceSelector.matchLabels",
            "bad label value",
        ),
        (
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: -a, operator: Exists}]}}]}]",
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].key",
            "bad expression key",
        ),
        (
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: In, values: [ok, web-]}]}}]}]",
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].values[1]",
            "bad expression value",
        ),
        (
            "policyTypes: [Ingress, Egress, Ingress]",
            "spec.policyTypes",
            "more than two policyTypes",
        ),
    ];
    for (frag, field, why) in rows {
        let (p, d) = np(&format!(
            "{HEAD}spec:\n  podSelector: {{matchLabels: {{app: a}}}}\n  {frag}\n"
        ));
        let p = p.unwrap();
        assert!(!p.valid, "{why}: must be invalid");
        assert_eq!(
            p.ingress,
            Some(vec![]),
            "{why}: ingress isolated, nothing allowed"
        );
        assert!(
            p.egress.as_ref().is_none_or(|e| e.is_empty()),
            "{why}: egress allows nothing"
        );
        assert_eq!(
            p.pod_selector,
            Selector::from_labels([("app", "a")]),
            "{why}: still selects its pods"
        );
        assert_eq!(d.len(), 1, "{why}: {d:?}");
        assert_eq!(d[0].field.as_deref(), Some(field), "{why}");
        assert!(
            d[0].to_string().contains("NetworkPolicy ns/p"),
            "{why}: {}",
            d[0]
        );
    }
    // Every problem is reported, as the API server does (one field each).
    let (p, d) = np(&format!(
        "{HEAD}spec:\n  ingress: [{{ports: [{{port: 0, endPort: 70000, protocol: ICMP}}], from: [{{ipBlock: {{cidr: 10.0.0.1/8, except: [11.0.0.0/16]}}, podSelector: {{matchLabels: {{-a: b}}}}}}]}}]\n"
    ));
    assert!(!p.unwrap().valid);
    let fields: Vec<_> = d.iter().filter_map(|d| d.field.as_deref()).collect();
    assert_eq!(
        fields,
        [
            "spec.ingress[0].from[0].podSelector.matchLabels",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "spec.ingress[0].from[0]",
            "spec.ingress[0].ports[0].protocol",
            "spec.ingress[0].ports[0].port",
            "spec.ingress[0].ports[0].endPort",
        ],
        "{d:?}"
    );
    let (p, _) = np(&format!(
        "{HEAD}spec:\n  podSelector: {{matchExpressions: [{{key: a, operator: Bogus}}]}}\n"
    ));
    assert!(
        p.unwrap().pod_selector.is_everything(),
        "an invalid podSelector isolates the whole namespace"
    );
}

#[test]
fn port_names() {
    for ok in ["http", "a", "web-8080", "x1"] {
        assert!(validate_port_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "HTTP",
        "8080",
        "-a",
        "a-",
        "a--b",
        "sixteen-chars-xx",
        "a_b",
    ] {
        assert!(validate_port_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn log_drops_annotation() {
    // (annotations, expected, warnings, why)
    let rows = [
        ("{}", None, 0, "absent: the agent-wide setting applies"),
        ("{nftpol.io/log-drops: \"true\"}", Some(true), 0, "opt in"),
        (
            "{nftpol.io/log-drops: \"false\"}",
            Some(false),
            0,
            "opt out",
        ),
        (
            "{nftpol.io/log-drops: \"yes\"}",
            None,
            1,
            "not a bool: warned, ignored",
        ),
        (
            "{other.io/log-drops: \"true\"}",
            None,
            0,
            "someone else's annotation",
        ),
    ];
    for (ann, want, warnings, why) in rows {
        let yaml =
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: n, annotations: {ann}}}\n");
        let obj: core::Namespace = serde_saphyr::from_str(&yaml).unwrap();
        let mut d = Vec::new();
        let ns = namespace(&obj, None, &mut d).expect(why);
        assert_eq!(ns.log_drops, want, "{why}");
        assert_eq!(d.len(), warnings, "{why}: {d:?}");
        assert!(d.iter().all(|d| !d.is_error()), "{why}");
        if let Some(w) = d.first() {
            let text = w.to_string();
            assert!(
                text.contains("Namespace n") && text.contains("nftpol.io/log-drops"),
                "{why}: {text}"
            );
        }
    }
}

#[test]
fn mode_annotation() {
    // (annotations, spec, audited, warnings, why)
    let ok = "{podSelector: {}}";
    let bad = "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}";
    let rows = [
        ("{}", ok, false, 0, "absent: enforced"),
        ("{nftpol.io/mode: audit}", ok, true, 0, "audit"),
        ("{nftpol.io/mode: enforce}", ok, false, 0, "enforce"),
        (
            "{nftpol.io/mode: Audit}",
            ok,
            false,
            1,
            "not a mode (case matters): warned, enforced",
        ),
        (
            "{nftpol.io/mode: \"\"}",
            ok,
            false,
            1,
            "empty: warned, enforced",
        ),
        (
            "{other.io/mode: audit}",
            ok,
            false,
            0,
            "someone else's annotation",
        ),
        (
            "{nftpol.io/mode: audit}",
            bad,
            false,
            1,
            "an invalid policy fails closed, never audited (plus its error)",
        ),
    ];
    for (ann, spec, want, warnings, why) in rows {
        let yaml = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: ns, annotations: {ann}}}\nspec: {spec}\n"
        );
        let (p, d) = np(&yaml);
        assert_eq!(p.expect(why).audit, want, "{why}");
        let warned: Vec<&Diagnostic> = d.iter().filter(|d| !d.is_error()).collect();
        assert_eq!(warned.len(), warnings, "{why}: {d:?}");
        for w in warned {
            let text = w.to_string();
            assert!(
                text.contains("NetworkPolicy ns/p")
                    && text.contains("metadata.annotations[nftpol.io/mode]"),
                "{why}: {text}"
            );
        }
    }
}
