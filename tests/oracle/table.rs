//! Table-driven tests of the naive NetworkPolicy reference evaluator (`nftpol_testkit::oracle`),
//! plus sanity checks that every `testdata/` case loads and means what its README line says.

use nftpol_testkit::oracle;

use std::net::IpAddr;
use std::path::Path;

use oracle::{Cluster, Flow, Proto, allowed};
use serde_json::{Value, json};

// The base world every row starts from.
/// default/a {app: a, tier: api}: http=8080/TCP, dns=53/UDP, diameter=3868/SCTP.
const A: &str = "10.0.1.1";
/// IPv6 address of default/a.
const A6: &str = "fd00::1:1";
/// default/b {app: b}: http=9090/TCP.
const B: &str = "10.0.1.2";
/// IPv6 address of default/b.
const B6: &str = "fd00::1:2";
/// other/c {app: b} (namespace other: team=blue).
const C: &str = "10.0.2.1";
/// other/e {app: e}.
const E: &str = "10.0.2.2";
/// ghost/d {app: d}: its Namespace object does not exist.
const D: &str = "10.0.3.1";
/// An address that belongs to no pod.
const EXT: &str = "192.0.2.1";
/// IPv6 address that belongs to no pod.
const EXT6: &str = "2001:db8::1";

/// A Namespace object.
fn mk_ns(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A Running pod with IPs and container ports `(name, number, protocol)`; "" = unnamed / default.
fn mk_pod(ns: &str, name: &str, labels: Value, ips: &[&str], ports: &[(&str, i32, &str)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(port_name, number, protocol)| {
            let mut port = json!({"containerPort": number});
            if !port_name.is_empty() {
                port["name"] = json!(port_name);
            }
            if !protocol.is_empty() {
                port["protocol"] = json!(protocol);
            }
            port
        })
        .collect();
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "agnhost", "ports": ports}]},
        "status": {"phase": "Running", "podIPs": pod_ips},
    });
    if let Some(first) = ips.first() {
        pod["status"]["podIP"] = json!(first);
    }
    pod
}

/// The same pod in another phase.
fn with_phase(mut pod: Value, phase: &str) -> Value {
    pod["status"]["phase"] = json!(phase);
    pod
}

/// The same pod with `hostNetwork: true`.
fn host_network(mut pod: Value) -> Value {
    pod["spec"]["hostNetwork"] = json!(true);
    pod
}

/// A NetworkPolicy in `ns` whose spec is the given (indented) YAML.
fn mk_policy(ns: &str, spec_yaml: &str) -> Value {
    let spec: Value = serde_saphyr::from_str(&dedent(spec_yaml)).expect("policy spec YAML");
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": spec,
    })
}

/// Remove the common leading indentation of a block of text.
fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| if l.len() >= indent { &l[indent..] } else { "" })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Namespaces default and other (team=blue) and pods a, b, c, e, d (see the constants).
fn base() -> Vec<Value> {
    vec![
        mk_ns("default", json!({})),
        mk_ns("other", json!({"team": "blue"})),
        mk_pod(
            "default",
            "a",
            json!({"app": "a", "tier": "api"}),
            &[A, A6],
            &[
                ("http", 8080, "TCP"),
                ("dns", 53, "UDP"),
                ("diameter", 3868, "SCTP"),
            ],
        ),
        mk_pod(
            "default",
            "b",
            json!({"app": "b"}),
            &[B, B6],
            &[("http", 9090, "")],
        ),
        mk_pod("other", "c", json!({"app": "b"}), &[C], &[]),
        mk_pod("other", "e", json!({"app": "e", "role": "x"}), &[E], &[]),
        mk_pod("ghost", "d", json!({"app": "d"}), &[D], &[]),
    ]
}

/// Parse an IP literal.
fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP literal")
}

/// A TCP flow.
fn tcp(src: &str, dst: &str, port: u16) -> Flow {
    Flow {
        src: ip(src),
        dst: ip(dst),
        proto: Proto::Tcp,
        port,
    }
}

/// A UDP flow.
fn udp(src: &str, dst: &str, port: u16) -> Flow {
    Flow {
        proto: Proto::Udp,
        ..tcp(src, dst, port)
    }
}

/// An SCTP flow.
fn sctp(src: &str, dst: &str, port: u16) -> Flow {
    Flow {
        proto: Proto::Sctp,
        ..tcp(src, dst, port)
    }
}

/// One row: objects added to `base()`, a flow, the expected verdict, and why.
struct Row {
    why: &'static str,
    extra: Vec<Value>,
    flow: Flow,
    want: bool,
}

/// Shorthand constructor for a row.
fn row(why: &'static str, extra: Vec<Value>, flow: Flow, want: bool) -> Row {
    Row {
        why,
        extra,
        flow,
        want,
    }
}

const DENY_INGRESS_DEFAULT: &str = "
    podSelector: {}
    policyTypes: [Ingress]
";
const DENY_EGRESS_DEFAULT: &str = "
    podSelector: {}
    policyTypes: [Egress]
";

/// The table: grouped pushes read better than one giant `vec![]`.
#[allow(clippy::vec_init_then_push)]
fn rows() -> Vec<Row> {
    let deny_in = || mk_policy("default", DENY_INGRESS_DEFAULT);
    let deny_out = || mk_policy("default", DENY_EGRESS_DEFAULT);
    let a_allows = |from_yaml: &str| {
        mk_policy(
            "default",
            &format!(
                "podSelector: {{matchLabels: {{app: a}}}}\npolicyTypes: [Ingress]\n{}",
                dedent(from_yaml)
            ),
        )
    };
    let mut r = Vec::new();

    // --- isolation and policyTypes -----------------------------------------------------------
    r.push(row(
        "no policy: everything is allowed",
        vec![],
        tcp(B, A, 80),
        true,
    ));
    r.push(row(
        "default-deny-ingress isolates every pod of its namespace",
        vec![deny_in()],
        tcp(C, A, 80),
        false,
    ));
    r.push(row(
        "default-deny-ingress in default does not touch pods of other namespaces",
        vec![deny_in()],
        tcp(A, C, 80),
        true,
    ));
    r.push(row(
        "an ingress-only policy does not isolate egress (to an external address)",
        vec![deny_in()],
        tcp(A, EXT, 443),
        true,
    ));
    r.push(row(
        "default-deny-egress blocks pod-to-pod traffic at the source",
        vec![deny_out()],
        tcp(A, C, 80),
        false,
    ));
    r.push(row(
        "default-deny-egress blocks traffic to external addresses",
        vec![deny_out()],
        udp(A, EXT, 53),
        false,
    ));
    r.push(row(
        "an egress-only policy does not isolate ingress",
        vec![deny_out()],
        tcp(EXT, A, 8080),
        true,
    ));
    r.push(row(
        "both directions must allow: egress of a allows c, but c's namespace denies ingress",
        vec![
            mk_policy(
                "default",
                "
                podSelector: {matchLabels: {app: a}}
                policyTypes: [Egress]
                egress: [{to: [{namespaceSelector: {matchLabels: {team: blue}}}]}]
                ",
            ),
            mk_policy("other", DENY_INGRESS_DEFAULT),
        ],
        tcp(A, C, 80),
        false,
    ));
    r.push(row(
        "absent policyTypes with a non-empty egress section isolates egress",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            egress: [{to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]
            ",
        )],
        tcp(A, B, 9090),
        false,
    ));
    r.push(row(
        "absent policyTypes with an egress section still allows what egress lists",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            egress: [{to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]
            ",
        )],
        tcp(A, EXT, 443),
        true,
    ));
    r.push(row(
        "absent policyTypes always includes Ingress (no ingress rules: nothing comes in)",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            egress: [{to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]
            ",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "egress: [] without policyTypes does NOT isolate egress (defaulting needs len != 0)",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            egress: []
            ",
        )],
        tcp(A, B, 9090),
        true,
    ));
    r.push(row(
        "egress: [] without policyTypes is still an ingress isolation",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            egress: []
            ",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "empty policyTypes list is defaulted like an absent one (Ingress only here)",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: []
            ",
        )],
        tcp(A, B, 9090),
        true,
    ));
    r.push(row(
        "policyTypes [Egress] ignores the ingress section: a is not isolated for ingress",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: [Egress]
            ingress: [{from: [{podSelector: {matchLabels: {app: nobody}}}]}]
            egress: []
            ",
        )],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "policyTypes [Egress] with egress: [] allows no egress",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: [Egress]
            egress: []
            ",
        )],
        tcp(A, B, 9090),
        false,
    ));
    r.push(row(
        "a policy only selects pods of its own namespace",
        vec![mk_policy(
            "other",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: [Ingress]
            ",
        )],
        tcp(B, A, 8080),
        true,
    ));

    // --- empty and absent lists ---------------------------------------------------------------
    r.push(row(
        "ingress: [] allows nothing",
        vec![a_allows("ingress: []")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "ingress: [{}] allows everything, even from external addresses",
        vec![deny_in(), a_allows("ingress: [{}]")],
        tcp(EXT, A, 1),
        true,
    ));
    r.push(row(
        "from: [] means all sources (external included)",
        vec![a_allows("ingress: [{from: [], ports: [{port: 8080}]}]")],
        tcp(EXT, A, 8080),
        true,
    ));
    r.push(row(
        "ports: [] means all ports and protocols",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: []}]",
        )],
        sctp(B, A, 3868),
        true,
    ));
    r.push(row(
        "policies are additive: a second policy adds what the first lacks",
        vec![
            a_allows("ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 8080}]}]"),
            a_allows("ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}], ports: [{port: 53, protocol: UDP}]}]"),
        ],
        udp(C, A, 53),
        true,
    ));

    // --- peers --------------------------------------------------------------------------------
    r.push(row(
        "podSelector peer selects matching pods of the policy's namespace",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]",
        )],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "podSelector peer alone never reaches into other namespaces (c has app=b too)",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]",
        )],
        tcp(C, A, 8080),
        false,
    ));
    r.push(row(
        "podSelector: {} peer = every pod of the policy's namespace, but not external",
        vec![a_allows("ingress: [{from: [{podSelector: {}}]}]")],
        tcp(EXT, A, 8080),
        false,
    ));
    r.push(row(
        "namespaceSelector peer alone = all pods of matching namespaces",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]",
        )],
        tcp(E, A, 8080),
        true,
    ));
    r.push(row(
        "namespaceSelector peer does not match pods of non-matching namespaces",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "every namespace carries kubernetes.io/metadata.name",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}]}]",
        )],
        tcp(C, A, 8080),
        true,
    ));
    r.push(row(
        "a pod whose Namespace object is absent still has kubernetes.io/metadata.name",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ghost}}}]}]",
        )],
        tcp(D, A, 8080),
        true,
    ));
    r.push(row(
        "namespaceSelector: {} = every pod of every namespace",
        vec![a_allows("ingress: [{from: [{namespaceSelector: {}}]}]")],
        tcp(D, A, 8080),
        true,
    ));
    r.push(row(
        "namespaceSelector: {} does not match external addresses",
        vec![a_allows("ingress: [{from: [{namespaceSelector: {}}]}]")],
        tcp(EXT, A, 8080),
        false,
    ));
    r.push(row(
        "both selectors in one peer are ANDed: e is app=e in team=blue",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {app: e}}}]}]",
        )],
        tcp(E, A, 8080),
        true,
    ));
    r.push(row(
        "both selectors in one peer are ANDed: c is in team=blue but not app=e",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {app: e}}}]}]",
        )],
        tcp(C, A, 8080),
        false,
    ));
    r.push(row(
        "two peers are ORed: c matches the namespaceSelector peer",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}, {podSelector: {matchLabels: {app: e}}}]}]",
        )],
        tcp(C, A, 8080),
        true,
    ));

    // --- ipBlock ------------------------------------------------------------------------------
    r.push(row(
        "ipBlock matches external addresses",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24}}]}]",
        )],
        tcp(EXT, A, 8080),
        true,
    ));
    r.push(row(
        "ipBlock except removes addresses from cidr",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.0/28]}}]}]",
        )],
        tcp(EXT, A, 8080),
        false,
    ));
    r.push(row(
        "ipBlock matches pod IPs too",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24}}]}]",
        )],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "ipBlock /32 except on a pod IP",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.2/32, 10.0.3.0/24]}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "ipBlock with excepts still matches the rest of the cidr",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.2/32, 10.0.3.0/24]}}]}]",
        )],
        tcp(C, A, 8080),
        true,
    ));
    r.push(row(
        "IPv6 ipBlock with a /128 except",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 'fd00::/64', except: ['fd00::1:2/128']}}]}]",
        )],
        tcp(B6, A6, 8080),
        false,
    ));
    r.push(row(
        "IPv6 ipBlock matches an external IPv6 address",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: '2001:db8::/32'}}]}]",
        )],
        tcp(EXT6, A6, 8080),
        true,
    ));
    r.push(row(
        "an IPv4 ipBlock (even 0.0.0.0/0) never matches IPv6",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]",
        )],
        tcp(EXT6, A6, 8080),
        false,
    ));
    r.push(row(
        "egress ipBlock: a may reach the listed external range",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: [Egress]
            egress: [{to: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]}]
            ",
        )],
        tcp(A, EXT, 443),
        true,
    ));

    // --- label selector expressions -----------------------------------------------------------
    r.push(row(
        "matchExpressions In",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [b, z]}]}}]}]",
        )],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "matchExpressions In on a missing key does not match",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: role, operator: In, values: [x]}]}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "matchExpressions NotIn on a missing key matches",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: role, operator: NotIn, values: [x]}]}}]}]",
        )],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "matchExpressions NotIn on a present key with a listed value does not match",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: role, operator: NotIn, values: [x]}]}}]}]",
        )],
        tcp(E, A, 8080),
        false,
    ));
    r.push(row(
        "matchExpressions Exists",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: role, operator: Exists}]}}]}]",
        )],
        tcp(E, A, 8080),
        true,
    ));
    r.push(row(
        "matchExpressions DoesNotExist",
        vec![a_allows(
            "ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: role, operator: DoesNotExist}]}}]}]",
        )],
        tcp(E, A, 8080),
        false,
    ));
    r.push(row(
        "matchLabels and matchExpressions are ANDed",
        vec![mk_policy(
            "default",
            "
            podSelector:
              matchLabels: {app: a}
              matchExpressions: [{key: tier, operator: In, values: [db]}]
            policyTypes: [Ingress]
            ",
        )],
        tcp(B, A, 8080),
        true,
    ));

    // --- ports --------------------------------------------------------------------------------
    let a_from_b_ports = |ports: &str| {
        a_allows(&format!(
            "ingress: [{{from: [{{podSelector: {{matchLabels: {{app: b}}}}}}], ports: {ports}}}]"
        ))
    };
    r.push(row(
        "numeric port, protocol defaults to TCP",
        vec![a_from_b_ports("[{port: 8080}]")],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "numeric port: another port is denied",
        vec![a_from_b_ports("[{port: 8080}]")],
        tcp(B, A, 8081),
        false,
    ));
    r.push(row(
        "numeric port with default protocol does not match UDP",
        vec![a_from_b_ports("[{port: 8080}]")],
        udp(B, A, 8080),
        false,
    ));
    r.push(row(
        "SCTP numeric port",
        vec![a_from_b_ports("[{protocol: SCTP, port: 3868}]")],
        sctp(B, A, 3868),
        true,
    ));
    r.push(row(
        "protocol without port = every port of that protocol",
        vec![a_from_b_ports("[{protocol: UDP}]")],
        udp(B, A, 5353),
        true,
    ));
    r.push(row(
        "protocol without port does not open other protocols",
        vec![a_from_b_ports("[{protocol: UDP}]")],
        tcp(B, A, 5353),
        false,
    ));
    r.push(row(
        "ports: [{}] = every TCP port",
        vec![a_from_b_ports("[{}]")],
        tcp(B, A, 12345),
        true,
    ));
    r.push(row(
        "ports: [{}] does not open SCTP",
        vec![a_from_b_ports("[{}]")],
        sctp(B, A, 3868),
        false,
    ));
    r.push(row(
        "endPort range includes its upper bound",
        vec![a_from_b_ports("[{port: 32000, endPort: 32768}]")],
        tcp(B, A, 32768),
        true,
    ));
    r.push(row(
        "endPort range excludes the port above it",
        vec![a_from_b_ports("[{port: 32000, endPort: 32768}]")],
        tcp(B, A, 32769),
        false,
    ));
    r.push(row(
        "endPort range excludes the port below it",
        vec![a_from_b_ports("[{port: 32000, endPort: 32768}]")],
        tcp(B, A, 31999),
        false,
    ));

    // --- named ports --------------------------------------------------------------------------
    let web_http = || {
        mk_policy(
            "default",
            "
            podSelector: {matchExpressions: [{key: app, operator: In, values: [a, b]}]}
            policyTypes: [Ingress]
            ingress: [{ports: [{port: http}]}]
            ",
        )
    };
    r.push(row(
        "named port http resolves to 8080 on a",
        vec![web_http()],
        tcp(E, A, 8080),
        true,
    ));
    r.push(row(
        "named port http is not 9090 on a (9090 is b's http)",
        vec![web_http()],
        tcp(E, A, 9090),
        false,
    ));
    r.push(row(
        "named port http resolves to 9090 on b",
        vec![web_http()],
        tcp(E, B, 9090),
        true,
    ));
    r.push(row(
        "named port http is not 8080 on b",
        vec![web_http()],
        tcp(E, B, 8080),
        false,
    ));
    r.push(row(
        "a name the destination pod lacks matches nothing",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: b}}
            ingress: [{ports: [{port: dns, protocol: UDP}]}]
            ",
        )],
        udp(A, B, 53),
        false,
    ));
    r.push(row(
        "named port must match the container port's protocol (dns is UDP, rule says TCP)",
        vec![a_allows("ingress: [{ports: [{port: dns}]}]")],
        tcp(B, A, 53),
        false,
    ));
    r.push(row(
        "named UDP port",
        vec![a_allows("ingress: [{ports: [{port: dns, protocol: UDP}]}]")],
        udp(B, A, 53),
        true,
    ));
    let a_egress_http = || {
        mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: [Egress]
            egress: [{ports: [{port: http}]}]
            ",
        )
    };
    r.push(row(
        "egress named port resolves against the destination pod (b: http=9090)",
        vec![a_egress_http()],
        tcp(A, B, 9090),
        true,
    ));
    r.push(row(
        "egress named port: the source's own mapping (a: http=8080) is irrelevant",
        vec![a_egress_http()],
        tcp(A, B, 8080),
        false,
    ));
    r.push(row(
        "egress named port never matches an external destination",
        vec![a_egress_http()],
        tcp(A, EXT, 8080),
        false,
    ));

    // --- pods that are not pods ---------------------------------------------------------------
    let a_from_b = || a_allows("ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]");
    r.push(row(
        "a hostNetwork pod is never isolated (its IP is external)",
        vec![
            deny_in(),
            host_network(mk_pod(
                "default",
                "h",
                json!({"app": "a"}),
                &["192.168.0.1"],
                &[],
            )),
        ],
        tcp(B, "192.168.0.1", 10250),
        true,
    ));
    r.push(row(
        "a hostNetwork pod is never matched by a podSelector",
        vec![
            a_from_b(),
            host_network(mk_pod(
                "default",
                "h",
                json!({"app": "b"}),
                &["192.168.0.1"],
                &[],
            )),
        ],
        tcp("192.168.0.1", A, 8080),
        false,
    ));
    r.push(row(
        "a hostNetwork pod is matched by ipBlock like any external address",
        vec![
            a_allows("ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/24}}]}]"),
            host_network(mk_pod(
                "default",
                "h",
                json!({"app": "b"}),
                &["192.168.0.1"],
                &[],
            )),
        ],
        tcp("192.168.0.1", A, 8080),
        true,
    ));
    r.push(row(
        "a Succeeded pod's IP is not a pod (not matched by podSelector)",
        vec![
            a_from_b(),
            with_phase(
                mk_pod("default", "s", json!({"app": "b"}), &["10.0.1.7"], &[]),
                "Succeeded",
            ),
        ],
        tcp("10.0.1.7", A, 8080),
        false,
    ));
    r.push(row(
        "a Failed pod is not isolated",
        vec![
            deny_in(),
            with_phase(
                mk_pod("default", "f", json!({"app": "a"}), &["10.0.1.7"], &[]),
                "Failed",
            ),
        ],
        tcp(B, "10.0.1.7", 80),
        true,
    ));
    r.push(row(
        "an IP reported by a Failed pod and reused by a Running pod belongs to the Running one",
        vec![
            a_from_b(),
            with_phase(
                mk_pod("default", "f", json!({"app": "b"}), &["10.0.1.8"], &[]),
                "Failed",
            ),
            mk_pod("default", "z", json!({"app": "z"}), &["10.0.1.8"], &[]),
        ],
        tcp("10.0.1.8", A, 8080),
        false,
    ));
    r.push(row(
        "a Pending pod without an IP contributes nothing (b still reaches a)",
        vec![
            a_from_b(),
            with_phase(
                mk_pod("default", "p", json!({"app": "b"}), &[], &[]),
                "Pending",
            ),
        ],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "a Pending pod that already has an IP is a pod",
        vec![
            a_from_b(),
            with_phase(
                mk_pod("default", "p", json!({"app": "b"}), &["10.0.1.9"], &[]),
                "Pending",
            ),
        ],
        tcp("10.0.1.9", A, 8080),
        true,
    ));
    r.push(row(
        "external to external is never filtered",
        vec![deny_in(), deny_out()],
        tcp(EXT, "198.51.100.1", 80),
        true,
    ));

    // --- self traffic -------------------------------------------------------------------------
    r.push(row(
        "a pod talking to itself is always allowed",
        vec![mk_policy(
            "default",
            "
            podSelector: {}
            policyTypes: [Ingress, Egress]
            ",
        )],
        tcp(A, A, 8080),
        true,
    ));
    r.push(row(
        "a pod talking to itself over IPv6 is always allowed",
        vec![mk_policy(
            "default",
            "
            podSelector: {}
            policyTypes: [Ingress, Egress]
            ",
        )],
        udp(A6, A6, 53),
        true,
    ));

    // --- invalid policies fail closed ---------------------------------------------------------
    r.push(row(
        "invalid cidr: fails closed (a dropped peer must not turn into `from: []`)",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.300.0/24}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "invalid cidr: the valid peers of the same policy do not apply either",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: '10.0.0.0/33'}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "except outside cidr: fails closed",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24, except: [10.0.2.0/24]}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "except equal to cidr (not a strict subset): fails closed",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]",
        )],
        tcp(C, A, 8080),
        false,
    ));
    r.push(row(
        "except of the other family: fails closed",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: ['fd00::/64']}}]}]",
        )],
        tcp(C, A, 8080),
        false,
    ));
    r.push(row(
        "unknown selector operator in a peer: fails closed",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Equals, values: [b]}]}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "In without values: fails closed",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: []}]}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "Exists with values: fails closed",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [b]}]}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "invalid label key in matchLabels: fails closed",
        vec![a_allows(
            "ingress: [{from: [{podSelector: {matchLabels: {'bad key!': b}}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "a peer with neither selector nor ipBlock is invalid: fails closed (not 'all peers')",
        vec![a_allows("ingress: [{from: [{}]}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "a peer with both ipBlock and a selector is invalid: fails closed",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "port 70000: fails closed",
        vec![a_from_b_ports("[{port: 70000}]")],
        tcp(B, A, 4464),
        false,
    ));
    r.push(row(
        "port 0: fails closed",
        vec![a_from_b_ports("[{port: 0}, {port: 8080}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "endPort below port: fails closed",
        vec![a_from_b_ports(
            "[{port: 9000, endPort: 8000}, {port: 8080}]",
        )],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "endPort with a named port: fails closed",
        vec![a_from_b_ports("[{port: http, endPort: 8080}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "endPort without port: fails closed",
        vec![a_from_b_ports("[{protocol: TCP, endPort: 8080}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "invalid port name (uppercase): fails closed",
        vec![a_from_b_ports("[{port: HTTP}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "unknown protocol: fails closed",
        vec![a_from_b_ports("[{protocol: ICMP}, {port: 8080}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "lowercase protocol is unknown to the API server: fails closed",
        vec![a_from_b_ports("[{protocol: tcp, port: 8080}]")],
        tcp(B, A, 8080),
        false,
    ));
    r.push(row(
        "unknown policyType: fails closed in both directions (egress of a)",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchLabels: {app: a}}
            policyTypes: [Ingress, Everything]
            ingress: [{}]
            egress: [{}]
            ",
        )],
        tcp(A, B, 9090),
        false,
    ));
    r.push(row(
        "an invalid policy leaves pods it does not select alone",
        vec![a_allows("ingress: [{from: [{ipBlock: {cidr: bogus}}]}]")],
        tcp(A, B, 9090),
        true,
    ));
    r.push(row(
        "an invalid podSelector fails closed for every pod of the namespace",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchExpressions: [{key: app, operator: Like, values: [a]}]}
            policyTypes: [Ingress]
            ingress: [{}]
            ",
        )],
        tcp(A, B, 9090),
        false,
    ));
    r.push(row(
        "an invalid podSelector in default does not isolate other namespaces",
        vec![mk_policy(
            "default",
            "
            podSelector: {matchExpressions: [{key: app, operator: Like, values: [a]}]}
            policyTypes: [Ingress]
            ",
        )],
        tcp(A, C, 80),
        true,
    ));
    r.push(row(
        "an invalid policy allows nothing, but a valid policy on the same pod still allows",
        vec![
            a_allows("ingress: [{from: [{ipBlock: {cidr: 10.0.300.0/24}}]}]"),
            a_from_b(),
        ],
        tcp(B, A, 8080),
        true,
    ));
    r.push(row(
        "self traffic stays allowed even under an invalid policy",
        vec![a_allows(
            "ingress: [{from: [{ipBlock: {cidr: 10.0.300.0/24}}]}]",
        )],
        tcp(A, A, 8080),
        true,
    ));
    r
}

#[test]
fn table() {
    let rows = rows();
    assert!(rows.len() >= 40, "only {} rows", rows.len());
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let mut cluster = Cluster::default();
        for doc in base().into_iter().chain(row.extra.iter().cloned()) {
            cluster.add_document(doc).expect("valid object");
        }
        let got = allowed(&cluster, &row.flow);
        if got != row.want {
            failures.push(format!(
                "row {i} ({}): {:?} -> got {got}, want {}",
                row.why, row.flow, row.want
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn policy_validity_is_exposed() {
    let valid = mk_policy("default", DENY_INGRESS_DEFAULT);
    let invalid = mk_policy(
        "default",
        "
        podSelector: {}
        ingress: [{ports: [{port: 70000}]}]
        ",
    );
    let mut cluster = Cluster::default();
    cluster.add_document(valid).expect("valid");
    cluster.add_document(invalid).expect("parses");
    assert!(oracle::policy_is_valid(&cluster.policies[0]));
    assert!(!oracle::policy_is_valid(&cluster.policies[1]));
}

// ---------------------------------------------------------------------------------------------
// testdata/
// ---------------------------------------------------------------------------------------------

/// Load `testdata/<case>`.
fn case(name: &str) -> Cluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    Cluster::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every case directory loads, has 2..=9 active-looking pods and at least one policy.
#[test]
fn testdata_cases_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("testdata/README.md");
    let mut count = 0;
    for entry in std::fs::read_dir(&root).expect("testdata/") {
        let entry = entry.expect("dir entry");
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        if name == "upstream" {
            // Conformance cases in their own format (testdata/upstream/FORMAT.md).
            continue;
        }
        count += 1;
        let cluster = case(&name);
        assert!(
            (2..=9).contains(&cluster.pods.len()),
            "{name}: {} pods",
            cluster.pods.len()
        );
        assert!(!cluster.policies.is_empty(), "{name}: no policy");
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not described in testdata/README.md"
        );
    }
    assert!(count >= 27, "only {count} cases");
}

/// The ConfigMap and the Service of `unknown-kind` are skipped, not errors.
#[test]
fn testdata_unknown_kinds_are_skipped() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/unknown-kind");
    let (cluster, mut skipped) = Cluster::load_reporting(&path).expect("loads");
    skipped.sort();
    assert_eq!(
        skipped,
        vec!["ConfigMap".to_string(), "Service".to_string()]
    );
    assert_eq!(cluster.pods.len(), 2);
    assert_eq!(cluster.policies.len(), 1);
}

/// `list-kind` holds the same objects as `pod-selector`: same verdict on every pod pair.
#[test]
fn testdata_list_kind_equals_pod_selector() {
    let listed = case("list-kind");
    let plain = case("pod-selector");
    assert_eq!(listed.namespaces.len(), plain.namespaces.len());
    assert_eq!(listed.pods.len(), plain.pods.len());
    assert_eq!(listed.policies.len(), plain.policies.len());
    let ips = [
        "10.244.1.10",
        "10.244.2.10",
        "10.244.1.11",
        "10.244.2.11",
        "192.0.2.1",
    ];
    for src in ips {
        for dst in ips {
            for port in [80, 5432, 8080] {
                let flow = tcp(src, dst, port);
                assert_eq!(allowed(&listed, &flow), allowed(&plain, &flow), "{flow:?}");
            }
        }
    }
}

/// One expectation on a testdata case: (case, flow, expected verdict, why).
type Expectation = (&'static str, Flow, bool, &'static str);

/// A few verdicts per case, so that the YAML means what testdata/README.md says.
#[rustfmt::skip]
fn expectations() -> Vec<Expectation> {
    vec![
        ("k8s-docs-default-deny-ingress", tcp("10.244.1.11", "10.244.1.10", 80), false, "other/client -> frontend"),
        ("k8s-docs-default-deny-ingress", tcp("10.244.1.10", "10.244.1.11", 80), true, "frontend -> other/client"),
        ("k8s-docs-default-deny-egress", tcp("10.244.1.10", "10.244.2.10", 8080), false, "frontend -> backend"),
        ("k8s-docs-default-deny-egress", tcp("10.244.1.11", "10.244.2.10", 8080), true, "other/client -> backend"),
        ("k8s-docs-default-deny-all", tcp("10.244.1.11", "10.244.2.10", 8080), false, "other/client -> backend"),
        ("k8s-docs-default-deny-all", tcp("10.244.2.10", "192.0.2.1", 443), false, "backend -> external"),
        ("k8s-docs-allow-all-ingress", tcp("192.0.2.1", "10.244.2.10", 8080), true, "external -> backend"),
        ("k8s-docs-allow-all-egress", tcp("10.244.2.10", "192.0.2.1", 443), true, "backend -> external"),
        ("k8s-docs-test-network-policy", tcp("172.17.0.5", "10.244.1.10", 6379), true, "ipBlock -> db"),
        ("k8s-docs-test-network-policy", tcp("172.17.1.5", "10.244.1.10", 6379), false, "except -> db"),
        ("k8s-docs-test-network-policy", tcp("10.244.2.11", "10.244.1.10", 6379), true, "myproject/client -> db"),
        ("k8s-docs-test-network-policy", tcp("10.244.2.10", "10.244.1.10", 6379), true, "frontend -> db"),
        ("k8s-docs-test-network-policy", tcp("10.244.1.12", "10.244.1.10", 6379), false, "otherproject/outsider (role=frontend) -> db"),
        ("k8s-docs-test-network-policy", tcp("10.244.2.10", "10.244.1.10", 80), false, "frontend -> db wrong port"),
        ("k8s-docs-test-network-policy", tcp("10.244.1.10", "10.0.0.7", 5978), true, "db -> 10.0.0.0/24:5978"),
        ("k8s-docs-test-network-policy", tcp("10.244.1.10", "10.244.2.10", 80), false, "db -> frontend"),
        ("k8s-docs-endport", tcp("10.244.1.10", "10.0.0.1", 32768), true, "db -> range top"),
        ("k8s-docs-endport", tcp("10.244.1.10", "10.0.0.1", 32769), false, "db -> above range"),
        ("pod-selector", tcp("10.244.2.10", "10.244.1.11", 5432), true, "default/api -> db"),
        ("pod-selector", tcp("10.244.2.11", "10.244.1.11", 5432), false, "other/api -> db"),
        ("pod-selector", tcp("10.244.1.10", "10.244.1.11", 5432), false, "web -> db"),
        ("namespace-selector", tcp("10.244.1.11", "10.244.1.10", 9090), true, "monitoring -> api metrics"),
        ("namespace-selector", tcp("10.244.1.11", "10.244.1.10", 8080), false, "monitoring -> api http"),
        ("namespace-selector", tcp("10.244.2.11", "10.244.1.10", 8080), true, "staging -> api"),
        ("namespace-selector", tcp("10.244.1.12", "10.244.1.10", 8080), false, "dev -> api"),
        ("namespace-selector", tcp("10.244.1.12", "10.244.2.10", 80), true, "dev -> web (unselected)"),
        ("pod-and-namespace-selector", tcp("10.244.1.11", "10.244.1.10", 8080), true, "staging/client"),
        ("pod-and-namespace-selector", tcp("10.244.2.11", "10.244.1.10", 8080), false, "staging/other"),
        ("pod-and-namespace-selector", tcp("10.244.2.10", "10.244.1.10", 8080), false, "app/client"),
        ("pod-and-namespace-selector", tcp("10.244.1.12", "10.244.1.10", 8080), false, "prod/client"),
        ("pod-or-namespace-selector", tcp("10.244.1.11", "10.244.1.10", 8080), true, "staging/client"),
        ("pod-or-namespace-selector", tcp("10.244.2.11", "10.244.1.10", 8080), true, "staging/other"),
        ("pod-or-namespace-selector", tcp("10.244.2.10", "10.244.1.10", 8080), true, "app/client"),
        ("pod-or-namespace-selector", tcp("10.244.1.12", "10.244.1.10", 8080), false, "prod/client"),
        ("match-expressions", tcp("10.244.1.12", "10.244.1.10", 6379), true, "client-role -> store-cache"),
        ("match-expressions", tcp("10.244.2.12", "10.244.1.10", 6379), false, "client-blocked -> store-cache"),
        ("match-expressions", tcp("10.244.1.13", "10.244.1.11", 5432), false, "client-norole -> store-db (NotIn missing key: selected)"),
        ("match-expressions", tcp("10.244.1.13", "10.244.2.10", 5432), true, "client-norole -> store-db-prod (unselected)"),
        ("match-expressions", tcp("10.244.1.13", "10.244.2.11", 80), true, "client-norole -> store-web (unselected)"),
        ("named-ports", tcp("10.244.1.12", "10.244.1.10", 8080), true, "client -> web-a http"),
        ("named-ports", tcp("10.244.1.12", "10.244.1.10", 9090), false, "client -> web-a 9090"),
        ("named-ports", tcp("10.244.1.12", "10.244.2.10", 9090), true, "client -> web-b http"),
        ("named-ports", tcp("10.244.1.12", "10.244.2.10", 8080), false, "client -> web-b 8080"),
        ("named-ports", tcp("10.244.1.12", "10.244.1.11", 8080), false, "client -> web-c unnamed 8080"),
        ("named-ports", udp("10.244.1.12", "10.244.2.11", 53), true, "client -> dns udp"),
        ("named-ports", tcp("10.244.1.12", "10.244.2.11", 53), false, "client -> dns tcp"),
        ("named-ports", tcp("10.244.1.12", "198.51.100.1", 8080), false, "client -> external named"),
        ("named-ports", tcp("10.244.2.11", "10.244.1.10", 8080), true, "dns (unisolated egress) -> web-a"),
        ("ports-protocols", tcp("10.244.1.12", "10.244.1.10", 80), true, "numeric tcp"),
        ("ports-protocols", tcp("10.244.1.12", "10.244.1.10", 443), true, "default tcp"),
        ("ports-protocols", udp("10.244.1.12", "10.244.1.10", 53), true, "udp 53"),
        ("ports-protocols", sctp("10.244.1.12", "10.244.1.10", 9999), true, "sctp 9999"),
        ("ports-protocols", udp("10.244.1.12", "10.244.1.10", 80), false, "udp 80"),
        ("ports-protocols", udp("10.244.1.12", "10.244.2.10", 514), true, "udp any"),
        ("ports-protocols", tcp("10.244.1.12", "10.244.2.10", 53), false, "tcp on udp-only"),
        ("ports-protocols", tcp("10.244.1.12", "10.244.1.11", 31337), true, "ports [{}] any tcp"),
        ("ports-protocols", udp("10.244.1.12", "10.244.1.11", 53), false, "ports [{}] no udp"),
        ("ports-protocols", sctp("10.244.1.12", "10.244.2.11", 3868), true, "sctp any from client"),
        ("ports-protocols", sctp("10.244.1.10", "10.244.2.11", 3868), false, "sctp from non-client"),
        ("ipblock-except-v4", tcp("10.244.1.11", "10.244.1.10", 80), true, "node-1 pod"),
        ("ipblock-except-v4", tcp("10.244.1.66", "10.244.1.10", 80), false, "/32 except"),
        ("ipblock-except-v4", tcp("10.244.2.10", "10.244.1.10", 80), false, "node-2 except"),
        ("ipblock-except-v4", tcp("192.0.2.1", "10.244.1.10", 80), true, "external in block"),
        ("ipblock-except-v4", tcp("192.0.2.7", "10.244.1.10", 80), false, "external /32 except"),
        ("ipblock-except-v4", tcp("192.0.2.200", "10.244.1.10", 80), false, "external /25 except"),
        ("ipblock-except-v4", tcp("fd00:10:244:1::11", "fd00:10:244:1::10", 80), false, "v6 never matches v4 block"),
        ("ipblock-except-v4", tcp("10.244.2.11", "203.0.113.2", 443), true, "egress in block"),
        ("ipblock-except-v4", tcp("10.244.2.11", "203.0.113.1", 443), false, "egress /32 except"),
        ("ipblock-except-v4", tcp("10.244.2.11", "203.0.113.9", 443), false, "egress /29 except"),
        ("ipblock-except-v4", tcp("10.244.2.11", "203.0.113.130", 443), false, "egress /26 except"),
        ("ipblock-except-v4", tcp("10.244.2.11", "10.244.1.10", 80), false, "egress to pod outside block"),
        ("ipblock-except-v6", tcp("fd00:10:244:1::11", "fd00:10:244:1::10", 80), true, "node-1 pod v6"),
        ("ipblock-except-v6", tcp("fd00:10:244:1::12", "fd00:10:244:1::10", 80), true, "v6-only pod"),
        ("ipblock-except-v6", tcp("10.244.1.11", "10.244.1.10", 80), false, "v4 never matches v6 block"),
        ("ipblock-except-v6", tcp("fd00:10:244:1::66", "fd00:10:244:1::10", 80), false, "/128 except"),
        ("ipblock-except-v6", tcp("fd00:10:244:2::10", "fd00:10:244:1::10", 80), false, "node-2 /64 except"),
        ("ipblock-except-v6", tcp("2001:db8:2::1", "fd00:10:244:1::10", 80), true, "external v6"),
        ("ipblock-except-v6", tcp("2001:db8:1::1", "fd00:10:244:1::10", 80), false, "external /48 except"),
        ("ipblock-except-v6", tcp("2001:db8::7", "fd00:10:244:1::10", 80), false, "external /128 except"),
        ("ipblock-except-v6", tcp("fd00:10:244:2::11", "2001:db8:ff::2", 443), true, "egress v6"),
        ("ipblock-except-v6", tcp("fd00:10:244:2::11", "2001:db8:ff::1", 443), false, "egress /128 except"),
        ("ipblock-except-v6", tcp("fd00:10:244:2::11", "2001:db8:ff:1::5", 443), false, "egress /64 except"),
        ("policy-types", tcp("10.244.2.12", "10.244.1.10", 80), true, "friend -> p1"),
        ("policy-types", tcp("10.244.2.10", "10.244.1.10", 80), false, "p2 -> p1"),
        ("policy-types", tcp("10.244.1.10", "10.244.2.12", 80), true, "p1 egress not isolated"),
        ("policy-types", tcp("10.244.2.10", "10.244.2.12", 80), true, "p2 -> friend (10/8)"),
        ("policy-types", tcp("10.244.2.10", "192.0.2.1", 80), false, "p2 -> external"),
        ("policy-types", tcp("10.244.2.12", "10.244.2.10", 80), false, "friend -> p2"),
        ("policy-types", tcp("10.244.1.11", "192.0.2.1", 80), true, "p3 egress: [] not isolated"),
        ("policy-types", tcp("10.244.2.12", "10.244.1.11", 80), false, "friend -> p3"),
        ("policy-types", tcp("10.244.1.10", "10.244.2.11", 80), true, "p1 -> p4 ingress not isolated"),
        ("policy-types", tcp("10.244.2.11", "10.244.2.12", 80), false, "p4 egress: []"),
        ("policy-types", tcp("10.244.2.12", "10.244.1.12", 80), true, "friend -> p5"),
        ("policy-types", tcp("10.244.1.12", "10.244.2.12", 80), true, "p5 -> friend"),
        ("policy-types", tcp("10.244.1.12", "10.244.1.10", 80), false, "p5 -> p1"),
        ("empty-and-absent", tcp("10.244.2.12", "10.244.1.10", 80), false, "ingress: []"),
        ("empty-and-absent", tcp("192.0.2.1", "10.244.2.10", 1234), true, "ingress: [{}]"),
        ("empty-and-absent", tcp("192.0.2.1", "10.244.1.11", 80), true, "from: [] port 80"),
        ("empty-and-absent", tcp("192.0.2.1", "10.244.1.11", 81), false, "from: [] port 81"),
        ("empty-and-absent", udp("10.244.2.12", "10.244.2.11", 5353), true, "ports: []"),
        ("empty-and-absent", tcp("10.244.1.13", "10.244.2.11", 80), false, "ports: [] wrong peer"),
        ("empty-and-absent", tcp("10.244.1.13", "10.244.1.12", 80), true, "namespaceSelector {} other ns"),
        ("empty-and-absent", tcp("192.0.2.1", "10.244.1.12", 80), false, "namespaceSelector {} external"),
        ("host-network-and-pending", tcp("10.244.1.10", "10.244.2.10", 80), true, "client -> server"),
        ("host-network-and-pending", tcp("192.168.0.1", "10.244.2.10", 80), false, "hostnet IP -> server"),
        ("host-network-and-pending", tcp("10.244.1.50", "10.244.2.10", 80), false, "succeeded IP -> server"),
        ("host-network-and-pending", tcp("10.244.2.51", "10.244.2.10", 80), false, "failed IP reused by reuser"),
        ("host-network-and-pending", tcp("10.244.2.10", "192.168.0.1", 9100), true, "server -> hostnet"),
        ("multi-policy", tcp("10.244.1.10", "10.244.2.10", 8080), true, "frontend -> backend http"),
        ("multi-policy", tcp("10.244.1.10", "10.244.2.10", 9090), true, "frontend -> backend (tier=api: any)"),
        ("multi-policy", tcp("10.244.1.10", "10.244.1.11", 9090), false, "frontend -> backend-2 metrics"),
        ("multi-policy", tcp("10.244.1.12", "10.244.1.11", 9090), true, "monitor -> backend-2 metrics"),
        ("multi-policy", tcp("10.244.1.12", "10.244.2.10", 8080), false, "monitor -> backend http"),
        ("multi-policy", tcp("10.244.1.11", "10.244.2.11", 5432), true, "backend-2 -> db"),
        ("multi-policy", tcp("10.244.1.10", "10.244.2.11", 5432), false, "frontend -> db"),
        ("multi-policy", tcp("10.244.2.11", "10.244.1.10", 80), false, "db egress: []"),
        ("multi-policy", tcp("10.244.2.10", "10.244.1.10", 80), false, "backend -> frontend"),
        ("invalid-cidr", tcp("10.244.1.12", "10.244.1.10", 80), false, "client -> a"),
        ("invalid-cidr", tcp("10.244.1.12", "10.244.2.10", 80), false, "client -> b"),
        ("invalid-cidr", tcp("10.244.1.11", "10.244.1.12", 80), false, "c -> client"),
        ("invalid-cidr", tcp("10.244.1.12", "10.244.1.11", 80), true, "client -> c"),
        ("invalid-cidr", tcp("10.244.1.12", "10.244.2.11", 80), true, "client -> d"),
        ("invalid-except-outside", tcp("10.244.1.12", "10.244.1.10", 80), false, "client -> a"),
        ("invalid-except-outside", tcp("10.244.1.12", "10.244.2.10", 80), false, "client -> b"),
        ("invalid-except-outside", tcp("10.244.1.12", "10.244.1.11", 80), false, "client -> c"),
        ("invalid-except-outside", tcp("10.244.1.11", "10.244.1.12", 80), false, "c -> client"),
        ("invalid-except-outside", tcp("10.244.1.12", "10.244.2.11", 80), true, "client -> d"),
        ("invalid-operator", tcp("10.244.1.12", "10.244.1.10", 80), false, "client -> a"),
        ("invalid-operator", tcp("10.244.1.12", "10.244.2.10", 80), false, "client -> b"),
        ("invalid-operator", tcp("10.244.1.12", "10.244.1.11", 80), false, "client -> c"),
        ("invalid-operator", tcp("10.244.1.12", "10.244.2.11", 80), true, "client -> d"),
        ("invalid-operator", tcp("10.244.1.12", "10.244.1.20", 80), false, "client -> bad/x"),
        ("invalid-operator", tcp("10.244.1.12", "10.244.2.20", 80), false, "client -> bad/y"),
        ("invalid-operator", tcp("10.244.1.20", "10.244.1.12", 80), true, "bad/x -> client"),
        ("invalid-port-range", tcp("10.244.1.12", "10.244.1.10", 4464), false, "client -> a"),
        ("invalid-port-range", tcp("10.244.1.12", "10.244.2.10", 80), false, "client -> b"),
        ("invalid-port-range", tcp("10.244.1.12", "10.244.1.11", 8080), false, "client -> c"),
        ("invalid-port-range", tcp("10.244.1.12", "10.244.2.11", 80), true, "client -> d"),
        ("unknown-kind", tcp("10.244.2.10", "10.244.1.10", 80), true, "client -> web http"),
        ("unknown-kind", tcp("10.244.2.10", "10.244.1.10", 8080), false, "client -> web 8080"),
        ("upstream-xyz", tcp("10.244.2.11", "10.244.1.10", 80), true, "y/a -> x/a tcp 80"),
        ("upstream-xyz", udp("10.244.1.12", "10.244.2.10", 80), true, "y/b -> x/b udp 80"),
        ("upstream-xyz", tcp("10.244.2.11", "10.244.1.10", 81), false, "y/a -> x/a tcp 81"),
        ("upstream-xyz", sctp("10.244.2.11", "10.244.1.10", 80), false, "y/a -> x/a sctp 80"),
        ("upstream-xyz", tcp("10.244.1.13", "10.244.1.10", 80), false, "z/a -> x/a"),
        ("upstream-xyz", tcp("10.244.2.10", "10.244.1.10", 80), false, "x/b -> x/a"),
        ("upstream-xyz", tcp("10.244.1.10", "10.244.1.13", 81), true, "x/a -> z/a"),
        ("upstream-xyz", tcp("fd00:10:244:2::11", "fd00:10:244:1::10", 80), true, "y/a -> x/a v6"),
    ]
}

/// Check the expectations against the oracle.
#[test]
fn testdata_verdicts() {
    let mut failures = Vec::new();
    for (name, flow, want, why) in expectations() {
        let got = allowed(&case(name), &flow);
        if got != want {
            failures.push(format!("{name}: {why}: {flow:?} got {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
