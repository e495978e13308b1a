//! Differential property test: random small clusters and random flows; the
//! verdict of the compiled ruleset (run through the packet tracer, on every
//! node the packet crosses, each node with its own `--node` ruleset) must equal
//! the verdict of the naive reference evaluator in `nftpol_testkit::oracle`, which
//! shares no code with the compiler.
//!
//! `PROPTEST_CASES` sets the number of clusters (default 10,000 here).

use nftpol_testkit::oracle;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol::core::compile::Options;
use nftpol::core::diag::Source;
use nftpol::core::model::Protocol;
use nftpol_testkit::trace::{L4, Outcome, Packet, trace};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PORTS: [u16; 8] = [53, 80, 81, 1000, 1500, 8080, 9090, 9100];
const EXTERNAL: [&str; 4] = ["192.168.7.7", "10.0.0.5", "172.17.1.9", "fd00:99::5"];

/// A label selector drawn from a small vocabulary so selectors often match.
fn selector() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec!["app", "tier", "team"]);
    let val = prop::sample::select(vec!["a", "b", "c"]);
    let expr = (
        key.clone(),
        prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist", "Bogus"]),
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

#[derive(Debug, Clone)]
struct Case {
    namespaces: Vec<Value>,
    pods: Vec<Value>,
    policies: Vec<Value>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..7, 0usize..5)
        .prop_flat_map(|(np, npol)| {
            (
                namespaces(),
                (0..np).map(pod).collect::<Vec<_>>(),
                (0..npol).map(policy).collect::<Vec<_>>(),
            )
        })
        .prop_map(|(namespaces, pods, policies)| Case {
            namespaces,
            pods,
            policies,
        })
}

fn decode<T: serde::de::DeserializeOwned>(v: &[Value]) -> Vec<T> {
    v.iter()
        .map(|x| serde_json::from_value(x.clone()).expect("generated objects decode"))
        .collect()
}

/// Runs one case: every flow between pod addresses and a few external ones,
/// for every protocol and a few ports, compared with the oracle.
fn check(case: &Case) -> Result<usize, TestCaseError> {
    let ns: Vec<Namespace> = decode(&case.namespaces);
    let pods: Vec<Pod> = decode(&case.pods);
    let pols: Vec<NetworkPolicy> = decode(&case.policies);
    let src = Source::default();
    let objs = nftpol::core::k8s::Objects {
        namespaces: ns.iter().cloned().map(|o| (src.clone(), o)).collect(),
        pods: pods.iter().cloned().map(|o| (src.clone(), o)).collect(),
        policies: pols.iter().cloned().map(|o| (src.clone(), o)).collect(),
        ..Default::default()
    };
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
    for &s in &addrs {
        for &d in &addrs {
            if s.is_ipv4() != d.is_ipv4() || (!home.contains_key(&s) && !home.contains_key(&d)) {
                continue;
            }
            for (proto, oproto) in [
                (Protocol::Tcp, oracle::Proto::Tcp),
                (Protocol::Udp, oracle::Proto::Udp),
                (Protocol::Sctp, oracle::Proto::Sctp),
            ] {
                for port in PORTS {
                    let want = oracle::allowed(
                        &cluster,
                        &oracle::Flow {
                            src: s,
                            dst: d,
                            proto: oproto,
                            port,
                        },
                    );
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
    Ok(flows)
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
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |c| {
        let n = check(&c)?;
        flows.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    println!(
        "differential: {cases} clusters, {} flows, 0 disagreements, {:.1}s",
        flows.into_inner(),
        started.elapsed().as_secs_f64()
    );
}

/// The tracer follows established flows and neighbour discovery the way the
/// kernel does, whatever the policies.
#[test]
fn tracer_always_allows_replies_and_neighbour_discovery() {
    let dir = nftpol_testkit::cases::case("k8s-docs-default-deny-all");
    let (objs, _) = nftpol::core::k8s::load_paths(&[dir]);
    let rs = nftpol::core::compile::compile_objects(&objs, &Options::default()).ruleset;
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
