//! Self-test of the real-kernel test bed in the test kit (`testkit/`): every shape forwards pod, node and
//! Service traffic with no ruleset, and a hand-written `inet nftpol` table blocks exactly the
//! probes it should (post-DNAT addresses, `sctp dport` and `th dport`, IPv6 neighbour discovery).
//!
//! Needs root and network namespaces; a missing kernel feature fails the test, never skips it.

use nftpol_testkit as kit;

use std::net::IpAddr;
use std::time::Instant;

use kit::netns;
use kit::*;

const PODS: [&str; 4] = ["a", "b", "c", "d"];

fn spec() -> TopoSpec {
    TopoSpec::two_nodes("n1", "n2")
        .pod_at("a", "n1", 10)
        .pod_at("b", "n1", 11)
        .pod_at("c", "n2", 10)
        .pod_at("d", "n2", 11)
}

fn build(shape: Shape, spec: &TopoSpec) -> Topology {
    Topology::build(shape, spec).unwrap_or_else(|e| panic!("building {shape} topology: {e:#}"))
}

/// Services: ClusterIP ports 8080/8081 forward to the backend's 80/81. svc-a's backend shares
/// n1 with pod b (same-node path) and is remote for c and d (cross-node path); svc-c mirrors it.
const SERVICES: [(&str, &str, &str); 2] = [
    ("10.96.0.10", "fd00:10:96::10", "a"),
    ("10.96.0.11", "fd00:10:96::11", "c"),
];
const SERVICE_PORT_OFFSET: u16 = 8000;

fn service_ip(i: usize, family: Family) -> IpAddr {
    let (v4, v6, _) = SERVICES[i];
    match family {
        Family::V4 => v4.parse().unwrap(),
        Family::V6 => v6.parse().unwrap(),
    }
}

fn install_services(topo: &Topology) {
    for (i, (_, _, backend)) in SERVICES.iter().enumerate() {
        for family in Family::ALL {
            for proto in Proto::ALL {
                for port in [80, 81] {
                    topo.add_service_everywhere(
                        service_ip(i, family),
                        port + SERVICE_PORT_OFFSET,
                        proto,
                        topo.pod_ip(backend, family),
                        port,
                    )
                    .unwrap_or_else(|e| panic!("{e:#}"));
                }
            }
        }
    }
}

/// Who sends a probe, for computing expectations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    Pod(&'static str),
    Node(&'static str),
}

/// Where a probe really lands (after service DNAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dst {
    Pod(&'static str),
    Node(&'static str),
}

#[derive(Clone, Debug)]
struct Case {
    spec: ProbeSpec,
    src: Src,
    dst: Dst,
    family: Family,
    proto: Proto,
    /// Port at the destination, after DNAT.
    port: u16,
}

fn node_of(pod: &str) -> &'static str {
    if pod == "a" || pod == "b" { "n1" } else { "n2" }
}

/// Pod-to-pod (including self), pod-to-Service, node-to-pod and pod-to-node probes.
fn cases(topo: &Topology) -> Vec<Case> {
    let mut out = Vec::new();
    for family in Family::ALL {
        for proto in Proto::ALL {
            for port in [80u16, 81] {
                for src in PODS {
                    for dst in PODS {
                        out.push(Case {
                            spec: ProbeSpec::pod(src, topo.pod_ip(dst, family), proto, port),
                            src: Src::Pod(src),
                            dst: Dst::Pod(dst),
                            family,
                            proto,
                            port,
                        });
                    }
                    for (i, (_, _, backend)) in SERVICES.iter().enumerate() {
                        // Hairpin (a client reaching itself through a Service) needs kube-proxy's
                        // masquerade, which this DNAT-only helper does not model.
                        if *backend == src {
                            continue;
                        }
                        out.push(Case {
                            spec: ProbeSpec::pod(
                                src,
                                service_ip(i, family),
                                proto,
                                port + SERVICE_PORT_OFFSET,
                            ),
                            src: Src::Pod(src),
                            dst: Dst::Pod(backend),
                            family,
                            proto,
                            port,
                        });
                    }
                }
            }
            for node in ["n1", "n2"] {
                // The node's own traffic to a ClusterIP goes through the nat output chain.
                for (i, (_, _, backend)) in SERVICES.iter().enumerate() {
                    out.push(Case {
                        spec: ProbeSpec::node(
                            node,
                            service_ip(i, family),
                            proto,
                            81 + SERVICE_PORT_OFFSET,
                        ),
                        src: Src::Node(node),
                        dst: Dst::Pod(backend),
                        family,
                        proto,
                        port: 81,
                    });
                }
                for pod in PODS {
                    out.push(Case {
                        spec: ProbeSpec::node(node, topo.pod_ip(pod, family), proto, 81),
                        src: Src::Node(node),
                        dst: Dst::Pod(pod),
                        family,
                        proto,
                        port: 81,
                    });
                    out.push(Case {
                        spec: ProbeSpec::pod(pod, topo.node_ip(node, family), proto, 80),
                        src: Src::Pod(pod),
                        dst: Dst::Node(node),
                        family,
                        proto,
                        port: 80,
                    });
                }
            }
        }
    }
    out
}

/// The hand-written policy: per-destination port drops (v4 and v6), SCTP matched both as
/// `th dport` and `sctp dport`, and pod b isolated for IPv6 egress except tcp/81 to a.
/// `nd` decides whether neighbour discovery is accepted before b's egress chain.
fn ruleset(topo: &Topology, nd: bool) -> String {
    let ip = |p: &str, f: Family| topo.pod_ip(p, f);
    let nd_rule = if nd {
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"
    } else {
        "# neighbour discovery deliberately not accepted"
    };
    format!(
        "table inet nftpol {{}}
delete table inet nftpol
table inet nftpol {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ct state invalid drop
        {nd_rule}
        ip daddr {a4} tcp dport 80 drop
        ip6 daddr {a6} tcp dport 80 drop
        ip daddr {c4} udp dport 81 drop
        ip6 daddr {c6} udp dport 81 drop
        ip daddr {c4} meta l4proto sctp th dport 80 drop
        ip6 daddr {a6} sctp dport 81 drop
        ip6 saddr {b6} jump b_egress
    }}
    chain b_egress {{
        ip6 daddr {a6} tcp dport 81 accept
        drop
    }}
}}
",
        a4 = ip("a", Family::V4),
        a6 = ip("a", Family::V6),
        c4 = ip("c", Family::V4),
        c6 = ip("c", Family::V6),
        b6 = ip("b", Family::V6),
    )
}

/// What [`ruleset`] allows. Only forwarded traffic meets the forward hook: a pod talking to
/// itself or to its own node, and a node talking to its own pods, never do.
fn allowed(c: &Case) -> bool {
    let (src_node, src_pod) = match c.src {
        Src::Pod(p) => (node_of(p), Some(p)),
        Src::Node(n) => (n, None),
    };
    let (dst_node, dst_pod) = match c.dst {
        Dst::Pod(p) => (node_of(p), Some(p)),
        Dst::Node(n) => (n, None),
    };
    if src_pod.is_some() && src_pod == dst_pod {
        return true;
    }
    if (src_pod.is_none() || dst_pod.is_none()) && src_node == dst_node {
        return true;
    }
    if src_pod == Some("b") && c.family == Family::V6 {
        return dst_pod == Some("a") && c.proto == Proto::Tcp && c.port == 81;
    }
    let blocked = matches!(
        (dst_pod, c.proto, c.port, c.family),
        (Some("a"), Proto::Tcp, 80, _)
            | (Some("c"), Proto::Udp, 81, _)
            | (Some("c"), Proto::Sctp, 80, Family::V4)
            | (Some("a"), Proto::Sctp, 81, Family::V6)
    );
    !blocked
}

fn check(topo: &Topology, label: &str, cases: &[(ProbeSpec, bool)]) -> CheckSummary {
    match topo.check(label, cases) {
        Ok(s) => s,
        Err(report) => {
            let rules = topo.list_ruleset("n1").unwrap_or_else(|e| format!("{e:#}"));
            panic!("{report}\n--- ruleset on n1 ---\n{rules}");
        }
    }
}

fn tx_packets(topo: &Topology, node: &str, dev: &str) -> u64 {
    let out = topo
        .exec(
            topo.node_netns(node),
            &["ip", "-j", "-s", "link", "show", dev],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    v[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packets")
}

fn run_shape(shape: Shape) {
    let start = Instant::now();
    let mut topo = build(shape, &spec());
    let built = topo.build_time();
    install_services(&topo);
    for node in ["n1", "n2"] {
        topo.serve_node(node, &[80])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let all = cases(&topo);
    let mut summaries = Vec::new();
    let vx_before = (shape == Shape::Vxlan).then(|| tx_packets(&topo, "n1", "vx0"));

    // 1. No ruleset: everything reaches everything.
    let baseline: Vec<(ProbeSpec, bool)> = all.iter().map(|c| (c.spec.clone(), true)).collect();
    summaries.push(check(&topo, "no ruleset", &baseline));
    if let Some(before) = vx_before {
        let after = tx_packets(&topo, "n1", "vx0");
        assert!(
            after > before + 50,
            "cross-node traffic did not use vx0 ({before} -> {after} packets)"
        );
    }

    // 2. b isolated for IPv6 egress without accepting ND. On bridged shapes b's neighbour
    //    advertisements to a same-node pod cross the forward hook (br_netfilter) and are dropped,
    //    so even policy-allowed same-node IPv6 flows fail; routed pods only do ND with the node.
    topo.load_ruleset_all(&ruleset(&topo, false))
        .unwrap_or_else(|e| panic!("{e:#}"));
    topo.flush_neighbours().unwrap_or_else(|e| panic!("{e:#}"));
    let bridged = shape != Shape::Routed;
    let v6 = |p: &str| topo.pod_ip(p, Family::V6);
    let nd_cases = vec![
        (ProbeSpec::pod("a", v6("b"), Proto::Tcp, 81), !bridged),
        (ProbeSpec::pod("b", v6("a"), Proto::Tcp, 81), !bridged),
        (ProbeSpec::pod("c", v6("b"), Proto::Tcp, 81), true),
        (
            ProbeSpec::pod("a", topo.pod_ip("b", Family::V4), Proto::Tcp, 81),
            true,
        ),
    ];
    summaries.push(check(&topo, "policy without ND accept", &nd_cases));

    // 3. The full policy, with cold neighbour caches so ND must pass through it.
    topo.load_ruleset_all(&ruleset(&topo, true))
        .unwrap_or_else(|e| panic!("{e:#}"));
    topo.flush_neighbours().unwrap_or_else(|e| panic!("{e:#}"));
    let policy: Vec<(ProbeSpec, bool)> = all.iter().map(|c| (c.spec.clone(), allowed(c))).collect();
    summaries.push(check(&topo, "policy", &policy));

    // The single-probe helpers agree with the batch.
    assert!(topo.probe(
        "d",
        service_ip(0, Family::V6),
        Proto::Sctp,
        80 + SERVICE_PORT_OFFSET
    ));
    assert!(topo.probe_from_node("n2", topo.pod_ip("a", Family::V4), Proto::Udp, 80));

    drop(topo);
    let total: usize = summaries.iter().map(|s| s.probes).sum();
    println!(
        "[{shape}] built in {} ms; {total} probes, all as expected; total {} ms",
        built.as_millis(),
        start.elapsed().as_millis()
    );
    for s in &summaries {
        println!("[{shape}]   {s}");
    }
}

#[test]
fn routed_shape() {
    run_shape(Shape::Routed);
}

#[test]
fn bridge_shape() {
    run_shape(Shape::Bridge);
}

#[test]
fn vxlan_shape() {
    run_shape(Shape::Vxlan);
}

/// Conntrack verifies the SCTP CRC32c (stored little-endian) and marks bad packets invalid;
/// the test bed's INIT-ACK (with State Cookie) is accepted as a reply.
#[test]
fn sctp_checksum_and_conntrack() {
    assert_eq!(
        sctp::crc32c(b"123456789"),
        0xE306_9283,
        "CRC32c check value (RFC 3720 B.4)"
    );
    let spec = TopoSpec::new()
        .node("n1", "10.244.1.0/24", "fd00:10:244:1::/64")
        .pod("a", "n1", "10.244.1.10", "fd00:10:244:1::10")
        .pod("b", "n1", "10.244.1.11", "fd00:10:244:1::11");
    let topo = build(Shape::Routed, &spec);
    topo.load_ruleset(
        "n1",
        "table inet nftpol {
            counter invalid {}
            counter replies {}
            chain forward {
                type filter hook forward priority filter; policy accept;
                ct state invalid counter name \"invalid\" drop
                ct direction reply meta l4proto sctp counter name \"replies\" accept
            }
        }",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let from = Endpoint::Pod("b".into());
    for family in Family::ALL {
        let to = topo.pod_ip("a", family);
        let invalid0 = topo.nft_counter("n1", "inet nftpol", "invalid").unwrap();
        let replies0 = topo.nft_counter("n1", "inet nftpol", "replies").unwrap();
        let good = topo.probe_sctp_checksum(&from, to, 80, ChecksumMode::Correct);
        assert_eq!(
            good,
            Outcome::Reached,
            "{family}: INIT with little-endian CRC32c"
        );
        assert_eq!(
            topo.nft_counter("n1", "inet nftpol", "invalid").unwrap(),
            invalid0,
            "{family}: good INIT or INIT-ACK marked invalid"
        );
        assert!(
            topo.nft_counter("n1", "inet nftpol", "replies").unwrap() > replies0,
            "{family}: INIT-ACK not tracked as a reply"
        );
        for mode in [ChecksumMode::ByteSwapped, ChecksumMode::Zero] {
            let before = topo.nft_counter("n1", "inet nftpol", "invalid").unwrap();
            let got = topo.probe_sctp_checksum(&from, to, 80, mode);
            let after = topo.nft_counter("n1", "inet nftpol", "invalid").unwrap();
            assert_eq!(
                got,
                Outcome::Timeout,
                "{family}: INIT with {mode:?} checksum"
            );
            assert!(
                after > before,
                "{family}: conntrack did not flag {mode:?} checksum as invalid ({before} -> {after})"
            );
        }
    }
}

/// A 9 x 9 pod matrix over 6 (protocol, port) pairs per family, with a third of it dropped,
/// finishes in a few seconds; three nodes exercise the shared underlay bridge.
#[test]
fn probe_matrix_is_concurrent() {
    let topo = build(Shape::Routed, &TopoSpec::grid(3, 3));
    topo.load_ruleset_all(
        "table inet nftpol {
            chain forward {
                type filter hook forward priority filter; policy accept;
                ct state established,related accept
                ip daddr 10.244.2.0/24 tcp dport 81 drop
                ip6 daddr fd00:10:244:2::/64 tcp dport 81 drop
                ip saddr 10.244.3.0/24 meta l4proto sctp th dport 80 drop
                ip6 saddr fd00:10:244:3::/64 meta l4proto sctp th dport 80 drop
                meta l4proto udp th dport 81 drop
            }
        }",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let pods = topo.pods();
    for family in Family::ALL {
        let mut cases = Vec::new();
        for src in &pods {
            for dst in &pods {
                for proto in Proto::ALL {
                    for port in [80, 81] {
                        let same = src == dst;
                        let blocked = !same
                            && match (proto, port) {
                                (Proto::Tcp, 81) => topo.pod_node(dst) == "n2",
                                (Proto::Sctp, 80) => topo.pod_node(src) == "n3",
                                (Proto::Udp, 81) => true,
                                _ => false,
                            };
                        cases.push((
                            ProbeSpec::pod(src, topo.pod_ip(dst, family), proto, port),
                            !blocked,
                        ));
                    }
                }
            }
        }
        let s = check(&topo, &format!("9x9x6 {family}"), &cases);
        println!("[matrix] {s}");
        assert_eq!(s.probes, 486);
        assert!(
            s.elapsed.as_secs_f64() < 4.0,
            "{family} matrix took {:?}",
            s.elapsed
        );
    }
}

/// Namespaces disappear when a test panics, and leftovers of dead processes are removed.
#[test]
fn teardown_and_stale_cleanup() {
    let spec = TopoSpec::grid(1, 1);
    let mut created = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let topo = build(Shape::Bridge, &spec);
        created = topo.namespaces().to_vec();
        panic!("deliberate panic (expected) to check teardown during unwinding");
    }));
    assert!(result.is_err());
    assert!(!created.is_empty());
    let left = netns::list().unwrap();
    assert!(
        created.iter().all(|n| !left.contains(n)),
        "left behind after panic: {created:?}"
    );

    // A name carrying a pid that is not running, as a killed test process would leave.
    let dead = (2..32768)
        .rev()
        // SAFETY: signal 0 only probes for existence.
        .find(|&p| unsafe { libc::kill(p, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH))
        .expect("a free pid");
    // Our own pid in the role part keeps parallel runs of this test from sharing the name.
    let stale = format!(
        "{}-{dead}-0-n-stale{}",
        netns::NAME_PREFIX,
        std::process::id()
    );
    netns::add(std::slice::from_ref(&stale)).unwrap();
    let topo = build(Shape::Routed, &spec);
    assert!(
        !netns::list().unwrap().contains(&stale),
        "stale namespace {stale} survived a build"
    );
    drop(topo);
}
