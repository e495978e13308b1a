//! `nftpol explain` agrees with the compiled ruleset: for every `testdata/<case>/`, every
//! pair of endpoints (every pod, and addresses in and around every ipBlock), both families,
//! TCP/UDP/SCTP and every port that matters to the case, explain's verdict equals the
//! verdict of the packet tracer (`nftpol_testkit::trace`) over the compiled ruleset. Random clusters
//! (proptest, built on the model) get the same check. Real packets: `tests/conformance.rs`
//! checks explain against every probe of the conformance suite.
//!
//! Plus the binary: text and JSON reports (insta snapshots in `snapshots/`), exit codes and
//! error messages.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

use nftpol::core::explain::{
    DecidedBy, Endpoint, ExplainError, PortArg, PortSpec, Query, Verdict, explain,
};
use nftpol::core::graph::SelectorGraph;
use nftpol::core::model::{
    Cidr, Cluster, Family, IpBlock, NamespaceScope, ObjectRef, Peer, Pod, PodMatch, Policy, Port,
    PortMatch, Protocol, Requirement, Rule, Selector,
};
use nftpol::core::nft::ruleset::Ruleset;
use nftpol_testkit::trace::{L4, Outcome, Packet, trace};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use nftpol_testkit::cases;

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

/// Addresses that exercise every ipBlock of the cluster: both ends and the
/// neighbours of every range, and one address outside every block per family.
fn interesting_ips(c: &Cluster) -> BTreeSet<IpAddr> {
    let mut out: BTreeSet<IpAddr> = ["192.0.2.1", "2001:db8::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    // The new-pod guard's edges: each Node pod range's first, second and last
    // address and the ones just outside it.
    for cidr in c.nodes.values().flat_map(|n| &n.pod_cidrs) {
        let r = cidr.range();
        for n in [
            r.start.checked_sub(1),
            Some(r.start),
            Some(r.start + 1),
            Some(r.end),
        ]
        .into_iter()
        .flatten()
        .chain((r.end < cidr.family_max()).then_some(r.end + 1))
        {
            out.insert(nftpol::core::model::ipblock::u128_to_ip(cidr.family, n));
        }
    }
    for pol in c.policies.values() {
        for r in pol
            .ingress
            .iter()
            .chain(&pol.egress)
            .flatten()
            .flat_map(|r| r.peers.iter().flatten())
        {
            if let Peer::IpBlock(b) = r {
                let f = b.cidr.family;
                for range in b.ranges() {
                    let (lo, hi) = (range.start, range.end);
                    let max = if f == Family::V4 {
                        u32::MAX as u128
                    } else {
                        u128::MAX
                    };
                    for n in [lo.checked_sub(1), Some(lo), Some(hi), hi.checked_add(1)]
                        .into_iter()
                        .flatten()
                        .filter(|n| *n <= max)
                    {
                        out.insert(nftpol::core::model::ipblock::u128_to_ip(f, n));
                    }
                }
            }
        }
    }
    out
}

/// Ports that matter: every bound of every numeric port (and its neighbours),
/// every named port's number, and a few others.
fn interesting_ports(c: &Cluster) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = [1, 80, 65535].into();
    for pol in c.policies.values() {
        for p in pol
            .ingress
            .iter()
            .chain(&pol.egress)
            .flatten()
            .flat_map(|r| r.ports.iter().flatten())
        {
            if let PortMatch::Range(a, b) = p.port {
                for n in [a.checked_sub(1), Some(a), Some(b), b.checked_add(1)]
                    .into_iter()
                    .flatten()
                    .filter(|n| *n > 0)
                {
                    out.insert(n);
                }
            }
        }
    }
    for p in c.pods.values() {
        out.extend(p.named_ports.values().map(|(_, n)| *n));
    }
    out
}

/// Every endpoint: pods by name, other addresses by IP.
fn endpoints(c: &Cluster) -> Vec<Endpoint> {
    let pod_ips: BTreeSet<IpAddr> = c.pods.values().flat_map(|p| p.ips.clone()).collect();
    c.pods
        .keys()
        .map(|id| Endpoint::Pod(id.clone()))
        .chain(
            interesting_ips(c)
                .into_iter()
                .filter(|ip| !pod_ips.contains(ip))
                .map(Endpoint::Ip),
        )
        .collect()
}

/// Explains every flow of a cluster and traces it through the compiled ruleset;
/// returns the number of flows and the disagreements.
fn cross_check(c: &Cluster, ports: &BTreeSet<u16>) -> (usize, Vec<String>) {
    let graph = SelectorGraph::build(c);
    let compiled =
        nftpol::core::compile::compile(c, &graph, &nftpol::core::compile::Options::default());
    let rs: Ruleset = compiled.ruleset;
    let index = compiled.drop_log;
    let eps = endpoints(c);
    let mut flows = 0;
    let mut bad = Vec::new();
    for from in &eps {
        for to in &eps {
            for family in Family::ALL {
                for proto in Protocol::ALL {
                    for &port in ports {
                        let q = Query {
                            from: from.clone(),
                            to: to.clone(),
                            port: PortArg {
                                port: PortSpec::Number(port),
                                protocol: Some(proto),
                            },
                            family: Some(family),
                        };
                        let ex = match explain(c, &graph, &q) {
                            Ok(ex) => ex,
                            // An end without an address of this family.
                            Err(ExplainError::Family(_)) => continue,
                            Err(e) => panic!("{q:?}: {e}"),
                        };
                        let pkt = Packet {
                            src: ex.flow.from.ip,
                            dst: ex.flow.to.ip,
                            l4: L4::Port(proto, port),
                            established: false,
                        };
                        // With ClusterNetworkPolicies the forward hook sees a pod's
                        // traffic to itself only as a Service hairpin, which CNP
                        // filters; explain answers for the direct flow (never
                        // filtered): nothing to compare.
                        if ex.decided_by == DecidedBy::SelfFlow && !c.cluster_policies.is_empty() {
                            continue;
                        }
                        let t = trace(&rs, &pkt).expect("the compiled ruleset traces");
                        flows += 1;
                        let traced = match t.outcome {
                            Outcome::Accept => Verdict::Allowed,
                            Outcome::Drop => Verdict::Denied,
                        };
                        // Audit mode: the would-drop log rules on the packet's path
                        // name exactly what explain says would drop it.
                        let logged: Vec<String> = t
                            .logs(&rs)
                            .into_iter()
                            .filter_map(|prefix| {
                                let flow =
                                    index.describe(&nftpol::core::compile::droplog::Packet {
                                        prefix,
                                        src: pkt.src,
                                        dst: pkt.dst,
                                        protocol: 6,
                                        transport:
                                            nftpol::core::compile::droplog::Transport::Unknown,
                                    })?;
                                flow.audit.then_some(flow)
                            })
                            .flat_map(|f| match &f.cluster_rule {
                                Some(r) => vec![r.to_string()],
                                None => f.policies.iter().map(ToString::to_string).collect(),
                            })
                            .collect();
                        if logged != ex.would_drop {
                            bad.push(format!(
                                "{from:?} -> {to:?} {}/{port} {family:?}: explain says would drop {:?}, the ruleset logs {logged:?} (path {:?})\n{}",
                                proto.nft(),
                                ex.would_drop,
                                t.path,
                                ex.to_text()
                            ));
                        }
                        if traced != ex.verdict {
                            bad.push(format!(
                                "{from:?} -> {to:?} {}/{port} {family:?}: explain says {}, the ruleset {traced} (path {:?})\n{}",
                                proto.nft(),
                                ex.verdict,
                                t.path,
                                ex.to_text()
                            ));
                        }
                        // The same flow asked by IP address resolves to the same pods and verdict.
                        let by_ip = Query {
                            from: Endpoint::Ip(ex.flow.from.ip),
                            to: Endpoint::Ip(ex.flow.to.ip),
                            ..q.clone()
                        };
                        let ex2 = explain(c, &graph, &by_ip).expect("by IP");
                        if ex2 != ex {
                            bad.push(format!("{q:?}: asking by IP gives a different answer"));
                        }
                    }
                }
            }
        }
    }
    (flows, bad)
}

#[test]
fn explain_agrees_with_the_compiled_ruleset_on_every_case() {
    let mut total = 0;
    let mut bad = Vec::new();
    let cases = cases::case_dirs();
    assert!(cases.len() >= 20, "testdata cases: {}", cases.len());
    for dir in &cases {
        let c = load_lenient(dir);
        let (n, b) = cross_check(&c, &interesting_ports(&c));
        assert!(n > 0, "{}: no flows", dir.display());
        total += n;
        bad.extend(
            b.into_iter()
                .map(|m| format!("{}: {m}", dir.file_name().unwrap().to_string_lossy())),
        );
    }
    println!("{total} flows over {} cases", cases.len());
    assert!(
        bad.is_empty(),
        "{} disagreements, first ones:\n{}",
        bad.len(),
        bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Invalid cases load with conversion errors (they fail closed), which is what we want here.
fn load_lenient(dir: &Path) -> Cluster {
    let (objs, diags) = nftpol::core::k8s::load_paths(&[dir.to_path_buf()]);
    assert!(
        !diags.iter().any(|d| d.is_error()),
        "{}: unreadable: {diags:?}",
        dir.display()
    );
    nftpol::core::k8s::to_cluster(&objs).0
}

#[test]
fn named_ports_resolve_against_the_destination_pod() {
    for dir in cases::case_dirs() {
        let c = load_lenient(&dir);
        let graph = SelectorGraph::build(&c);
        for dst in c.pods.values() {
            for (name, (proto, num)) in &dst.named_ports {
                for src in c.pods.keys() {
                    let q = |port: PortSpec, protocol: Option<Protocol>| Query {
                        from: Endpoint::Pod(src.clone()),
                        to: Endpoint::Pod(dst.id.clone()),
                        port: PortArg { port, protocol },
                        family: None,
                    };
                    let by_name = match explain(&c, &graph, &q(PortSpec::Named(name.clone()), None))
                    {
                        Ok(e) => e,
                        Err(ExplainError::Family(_)) => continue,
                        Err(e) => panic!("{}: {e}", dir.display()),
                    };
                    let by_num = explain(&c, &graph, &q(PortSpec::Number(*num), Some(*proto)))
                        .expect("by number");
                    assert_eq!(
                        by_name.verdict, by_num.verdict,
                        "{src} -> {} {name}",
                        dst.id
                    );
                    assert_eq!(
                        (by_name.flow.port, by_name.flow.protocol),
                        (*num, proto.nft())
                    );
                    assert_eq!(by_name.flow.port_name.as_deref(), Some(name.as_str()));
                    // The name with the other protocol is an error naming the pod.
                    let other = Protocol::ALL.into_iter().find(|p| p != proto).unwrap();
                    let err = explain(&c, &graph, &q(PortSpec::Named(name.clone()), Some(other)))
                        .unwrap_err()
                        .to_string();
                    assert!(err.contains(&dst.id.to_string()), "{err}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random clusters, built directly on the model
// ---------------------------------------------------------------------------------------------

const NS: [&str; 2] = ["x", "y"];
const PORTS: [u16; 4] = [80, 81, 443, 8080];

fn selector() -> impl Strategy<Value = Selector> {
    let key = prop::sample::select(vec!["app", "tier"]);
    let val = prop::sample::select(vec!["a", "b"]);
    let req = (key, val, 0..4u8).prop_map(|(k, v, op)| match op {
        0 => Requirement::In(k.into(), [v.to_string()].into()),
        1 => Requirement::NotIn(k.into(), [v.to_string()].into()),
        2 => Requirement::Exists(k.into()),
        _ => Requirement::DoesNotExist(k.into()),
    });
    prop::collection::vec(req, 0..3).prop_map(Selector::new)
}

fn peer() -> impl Strategy<Value = Peer> {
    let cidr = |s: &str| Cidr::parse(s).unwrap();
    let blocks = vec![
        IpBlock {
            cidr: cidr("10.244.0.0/16"),
            except: vec![cidr("10.244.1.0/24")],
        },
        IpBlock {
            cidr: cidr("10.244.2.0/24"),
            except: vec![],
        },
        IpBlock {
            cidr: cidr("0.0.0.0/0"),
            except: vec![cidr("10.244.0.0/16")],
        },
        IpBlock {
            cidr: cidr("fd00::/8"),
            except: vec![cidr("fd00:10:244:1::/64")],
        },
    ];
    prop_oneof![
        3 => (prop::sample::select(NS.to_vec()), selector()).prop_map(|(n, s)| Peer::Pods(PodMatch {
            namespaces: NamespaceScope::Named(n.into()),
            pods: s,
        })),
        3 => (selector(), selector()).prop_map(|(n, s)| Peer::Pods(PodMatch {
            namespaces: NamespaceScope::Selector(n),
            pods: s,
        })),
        2 => prop::sample::select(blocks).prop_map(Peer::IpBlock),
    ]
}

fn port() -> impl Strategy<Value = Port> {
    let proto = prop::sample::select(Protocol::ALL.to_vec());
    let which = prop_oneof![
        1 => Just(PortMatch::All),
        3 => prop::sample::select(PORTS.to_vec()).prop_map(|p| PortMatch::Range(p, p)),
        1 => Just(PortMatch::Range(80, 443)),
        3 => prop::sample::select(vec!["http", "metrics"]).prop_map(|n| PortMatch::Named(n.into())),
    ];
    (proto, which).prop_map(|(protocol, port)| Port { protocol, port })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::option::weighted(0.8, prop::collection::vec(peer(), 1..3)),
        prop::option::weighted(0.7, prop::collection::vec(port(), 1..3)),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn rules() -> impl Strategy<Value = Option<Vec<Rule>>> {
    prop::option::weighted(0.6, prop::collection::vec(rule(), 0..3))
}

fn cluster() -> impl Strategy<Value = Cluster> {
    let labels = prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier"]).prop_map(String::from),
        prop::sample::select(vec!["a", "b"]).prop_map(String::from),
        0..3,
    );
    let named = prop::collection::btree_map(
        prop::sample::select(vec!["http", "metrics"]).prop_map(String::from),
        (
            prop::sample::select(Protocol::ALL.to_vec()),
            prop::sample::select(PORTS.to_vec()),
        ),
        0..3,
    );
    let pods = prop::collection::vec((labels.clone(), named, 0..3u8), 2..6);
    let policy = (
        selector(),
        rules(),
        rules(),
        prop::bool::weighted(0.1),
        prop::sample::select(NS.to_vec()),
        prop::bool::weighted(0.3),
    );
    (
        prop::collection::vec(labels, 2),
        pods,
        prop::collection::vec(policy, 0..4),
    )
        .prop_map(|(ns_labels, pods, policies)| {
            let mut c = Cluster::default();
            for (n, mut l) in NS.iter().zip(ns_labels) {
                l.insert("kubernetes.io/metadata.name".into(), n.to_string());
                c.namespaces.insert(
                    n.to_string(),
                    nftpol::core::model::Namespace {
                        name: n.to_string(),
                        labels: l,
                        log_drops: None,
                    },
                );
            }
            for (i, (labels, named_ports, stack)) in pods.into_iter().enumerate() {
                let ns = NS[i % 2];
                let v4: IpAddr = format!("10.244.{}.{}", i % 3, 10 + i).parse().unwrap();
                let v6: IpAddr = format!("fd00:10:244:{}::{:x}", i % 3, 10 + i)
                    .parse()
                    .unwrap();
                let ips = match stack {
                    0 => vec![v4],
                    1 => vec![v6],
                    _ => vec![v4, v6],
                };
                let id = ObjectRef::new(ns, format!("p{i}"));
                c.pods.insert(
                    id.clone(),
                    Pod {
                        id,
                        labels,
                        node: Some("node-1".into()),
                        ips,
                        named_ports,
                    }
                    .into(),
                );
            }
            for (i, (pod_selector, ingress, egress, invalid, ns, audit)) in
                policies.into_iter().enumerate()
            {
                // A policy isolates in at least one direction.
                let ingress = if ingress.is_none() && egress.is_none() {
                    Some(vec![])
                } else {
                    ingress
                };
                let (ingress, egress) = if invalid {
                    (ingress.map(|_| vec![]), egress.map(|_| vec![]))
                } else {
                    (ingress, egress)
                };
                let id = ObjectRef::new(ns, format!("pol{i}"));
                c.policies.insert(
                    id.clone(),
                    Policy {
                        id,
                        pod_selector,
                        ingress,
                        egress,
                        valid: !invalid,
                        // Audit mode (an invalid policy is never audited).
                        audit: audit && !invalid,
                    },
                );
            }
            c
        })
}

#[test]
fn explain_agrees_with_the_compiled_ruleset_on_random_clusters() {
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ports: BTreeSet<u16> = PORTS.into_iter().chain([1, 444]).collect();
    runner
        .run(&cluster(), |c| {
            let (_, bad) = cross_check(&c, &ports);
            prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
            Ok(())
        })
        .unwrap();
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

const DOCS: &str = "testdata/k8s-docs-test-network-policy";

/// `(snapshot name, case, from, to, port, extra args)`.
type Report = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const REPORTS: &[Report] = &[
    (
        "allowed-by-namespace-selector",
        DOCS,
        "myproject/client",
        "default/db",
        "6379",
        &[],
    ),
    (
        "denied-wrong-namespace",
        DOCS,
        "otherproject/outsider",
        "default/db",
        "redis",
        &[],
    ),
    (
        "denied-in-except",
        DOCS,
        "172.17.1.5",
        "default/db",
        "6379/TCP",
        &[],
    ),
    (
        "egress-to-ipblock-ipv6",
        DOCS,
        "default/db",
        "default/frontend",
        "80",
        &["--family", "ipv6"],
    ),
    ("self", DOCS, "default/db", "10.244.1.10", "1/udp", &[]),
    (
        "named-port-per-pod",
        "testdata/named-ports",
        "default/client",
        "default/web-b",
        "http",
        &[],
    ),
    (
        "invalid-policy-fails-closed",
        "testdata/invalid-cidr",
        "default/client",
        "default/a",
        "80",
        &[],
    ),
];

fn report_args<'a>(
    case: &'a str,
    from: &'a str,
    to: &'a str,
    port: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "explain", "-f", case, "--from", from, "--to", to, "--port", port,
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn reports_match_their_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(cases::root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (name, case, from, to, port, extra) in REPORTS {
            let out = run(&report_args(case, from, to, port, extra));
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{name}: {}",
                text(&out.stderr)
            );
            let shown = format!(
                "$ nftpol {}\n# exit {}\n{}",
                report_args(case, from, to, port, extra).join(" "),
                out.status.code().unwrap(),
                text(&out.stdout)
            );
            insta::assert_snapshot!(format!("explain-{name}"), shown);
        }
        let out = run(&report_args(
            DOCS,
            "myproject/client",
            "default/db",
            "6379",
            &["--output", "json"],
        ));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        assert_eq!(v["verdict"], "ALLOWED");
        insta::assert_snapshot!("explain-json", text(&out.stdout));
    });
}

#[test]
fn exit_codes_and_errors() {
    // (args after `explain -f DOCS`, exit code, stderr must contain, why)
    let table: &[(&[&str], i32, &str, &str)] = &[
        (
            &[
                "--from",
                "myproject/client",
                "--to",
                "default/db",
                "--port",
                "6379",
            ],
            0,
            "",
            "allowed: 0",
        ),
        (
            &[
                "--from",
                "otherproject/outsider",
                "--to",
                "default/db",
                "--port",
                "6379",
            ],
            0,
            "",
            "denied is an answer too: 0",
        ),
        (
            &[
                "--from",
                "otherproject/outsider",
                "--to",
                "default/db",
                "--port",
                "6379",
                "--expect",
                "denied",
            ],
            0,
            "",
            "--expect met",
        ),
        (
            &[
                "--from",
                "otherproject/outsider",
                "--to",
                "default/db",
                "--port",
                "6379",
                "--expect",
                "allowed",
            ],
            1,
            "expected ALLOWED, but the flow is DENIED",
            "--expect not met",
        ),
        (
            &[
                "--from",
                "default/nope",
                "--to",
                "default/db",
                "--port",
                "6379",
            ],
            1,
            "pod default/nope not found",
            "unknown pod",
        ),
        (
            &[
                "--from",
                "default/db",
                "--to",
                "default/frontend",
                "--port",
                "redis",
            ],
            1,
            "pod default/frontend has no container port named \"redis\" (its named ports: http=tcp/80)",
            "unknown named port",
        ),
        (
            &[
                "--from",
                "default/db",
                "--to",
                "192.0.2.1",
                "--port",
                "redis",
            ],
            1,
            "named port \"redis\" needs a destination pod",
            "named port to a non-pod",
        ),
        (
            &[
                "--from",
                "default/db",
                "--to",
                "default/frontend",
                "--port",
                "99999",
            ],
            1,
            "--port: \"99999\": 99999 is not a valid port number",
            "bad port number",
        ),
        (
            &[
                "--from",
                "default/db",
                "--to",
                "default/frontend",
                "--port",
                "80/icmp",
            ],
            1,
            "unknown protocol \"icmp\"",
            "bad protocol",
        ),
        (
            &["--from", "db", "--to", "default/frontend", "--port", "80"],
            1,
            "--from: \"db\" is neither NAMESPACE/POD nor an IP address",
            "bad endpoint",
        ),
        (
            &[
                "--from",
                "default/db",
                "--to",
                "2001:db8::1",
                "--port",
                "80",
                "--family",
                "ipv4",
            ],
            1,
            "different address families",
            "family conflict",
        ),
    ];
    for (args, code, msg, why) in table {
        let mut a = vec!["explain", "-f", DOCS];
        a.extend_from_slice(args);
        let out = run(&a);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{why}: {err}");
        assert!(err.contains(msg), "{why}: stderr {err:?} lacks {msg:?}");
        if *code == 0 {
            assert!(
                text(&out.stdout).starts_with("ALLOWED: ")
                    || text(&out.stdout).starts_with("DENIED: "),
                "{why}: the verdict comes first"
            );
        }
    }
    // Unreadable input: no answer at all.
    let out = run(&[
        "explain",
        "-f",
        "testdata/does-not-exist",
        "--from",
        "a/b",
        "--to",
        "a/c",
        "--port",
        "80",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no answer from unreadable input");
    // Invalid policies: the fail-closed answer is printed, and the exit code says the input is invalid.
    let out = run(&[
        "explain",
        "-f",
        "testdata/invalid-cidr",
        "--from",
        "default/client",
        "--to",
        "default/a",
        "--port",
        "80",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("DENIED: "), "{stdout}");
    assert!(stdout.contains("INVALID"), "{stdout}");
    assert!(text(&out.stderr).contains("fails closed"));
}

#[test]
fn same_input_same_output() {
    let args = report_args(
        DOCS,
        "myproject/client",
        "default/db",
        "6379",
        &["--output", "json"],
    );
    let a = run(&args);
    let b = run(&args);
    assert_eq!(a.stdout, b.stdout);
}

/// The new-pod guard: with Nodes that carry `spec.podCIDRs`, an address in
/// a pod range that is no known pod's is denied before any policy, by
/// explain and by the compiled ruleset alike (the cross-check above covers
/// the range edges); outside the ranges nothing changes.
#[test]
fn unknown_addresses_in_a_nodes_pod_range_are_denied_by_explain_and_the_ruleset() {
    let with_ranges = |case: &str| {
        let mut c = load_lenient(&cases::case(case));
        for (name, cidrs) in [
            ("node-1", &["10.244.1.0/24", "fd00:10:244:1::/64"][..]),
            ("node-2", &["10.244.2.0/24"][..]),
        ] {
            let node = c
                .nodes
                .entry(name.into())
                .or_insert_with(|| nftpol::core::model::Node {
                    name: name.into(),
                    labels: Default::default(),
                    addresses: vec![],
                    pod_cidrs: vec![],
                });
            node.pod_cidrs = cidrs.iter().map(|s| Cidr::parse(s).unwrap()).collect();
        }
        c
    };
    // The tiered layout (ClusterNetworkPolicies) too: its `filter-forward` differs.
    for case in ["cluster-guardrails", "k8s-docs-default-deny-ingress"] {
        let (n, bad) = cross_check(&with_ranges(case), &[80].into());
        assert!(n > 0);
        assert!(bad.is_empty(), "{case}: {}", bad.join("\n"));
    }
    let c = with_ranges("k8s-docs-default-deny-ingress");
    let graph = SelectorGraph::build(&c);
    let ask = |from: &str, to: &str| {
        let q = Query {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            port: PortArg {
                port: PortSpec::Number(80),
                protocol: Some(Protocol::Tcp),
            },
            family: None,
        };
        explain(&c, &graph, &q).unwrap()
    };
    let pod = c.pods.values().next().unwrap().id.to_string();
    for (from, to, range) in [
        ("10.244.1.77", pod.as_str(), "10.244.1.0/24"),
        (pod.as_str(), "10.244.2.77", "10.244.2.0/24"),
    ] {
        let ex = ask(from, to);
        assert_eq!(ex.verdict, Verdict::Denied, "{from} -> {to}");
        assert_eq!(ex.decided_by, DecidedBy::NewPodWindow, "{from} -> {to}");
        let text = ex.to_text();
        assert!(
            text.contains(
                "denied: unknown pod address in this node's pod range (new-pod window closed)"
            ) && text.contains(range),
            "{text}"
        );
        assert!(
            ex.to_json().contains("\"decided_by\": \"new-pod-window\""),
            "{}",
            ex.to_json()
        );
    }
    // Outside every pod range: a remote host, as before.
    assert_eq!(ask("192.0.2.1", &pod).decided_by, DecidedBy::Policies);
}
