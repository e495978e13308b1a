//! Real-packet smoke test of every compiler feature: each `testdata/<case>/` that has pods is
//! rebuilt as a live topology (same pod names, nodes and addresses), each node loads the
//! ruleset `nftpol compile --node <node>` would print, and every pod probes every pod (itself
//! included) over IPv4 and IPv6, TCP, UDP and SCTP, on every port the case mentions, in one
//! concurrent batch. Real packets must agree with the reference evaluator
//! (`nftpol_testkit::oracle`) on every probe.
//!
//! One test per shape (bridge, routed, vxlan); each runs all cases. Needs root and network
//! namespaces: a missing capability fails the test, never skips it.

use nftpol_testkit as kit;

use nftpol_testkit::oracle;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kit::{Family, ProbeSpec, Proto, Shape, TopoSpec, Topology};
use nftpol::core::compile::Options;

/// Probe timeout: a dropped probe costs this much, once per batch.
const TIMEOUT: Duration = Duration::from_millis(800);

/// At most this many ports per case (each pod serves all of them on TCP, UDP and SCTP).
const MAX_PORTS: usize = 8;

/// A port no testdata case mentions, served as a control for "every port" rules.
const CONTROL_PORT: u16 = 12345;

/// The nodes every testdata case uses.
const NODES: [(&str, &str, &str); 2] = kit::topology::TWO_NODES;

/// An active pod of a case (what the oracle and the compiler count as a pod).
#[derive(Clone, Debug)]
struct CasePod {
    /// `ns/pod`, for reports.
    label: String,
    /// `ns.pod`, the topology's (unique) pod name.
    topo_name: String,
    node: String,
    ip4: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
}

impl CasePod {
    fn ip(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.ip4.map(IpAddr::V4),
            Family::V6 => self.ip6.map(IpAddr::V6),
        }
    }
}

/// The pods that count for policy: not hostNetwork, not Succeeded/Failed, with an IP. An IP
/// already held by an earlier active pod stays with that pod (as in the oracle).
fn active_pods(cluster: &oracle::Cluster) -> Vec<CasePod> {
    let mut out: Vec<CasePod> = Vec::new();
    let mut taken: BTreeSet<IpAddr> = BTreeSet::new();
    for pod in &cluster.pods {
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.host_network == Some(true) {
            continue;
        }
        let status = pod.status.clone().unwrap_or_default();
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        ips.extend(
            status
                .pod_ip
                .iter()
                .filter_map(|p| p.parse::<IpAddr>().ok()),
        );
        let mut ip4 = None;
        let mut ip6 = None;
        for ip in ips {
            if taken.contains(&ip) {
                continue;
            }
            match ip {
                IpAddr::V4(v4) if ip4.is_none() => ip4 = Some(v4),
                IpAddr::V6(v6) if ip6.is_none() => ip6 = Some(v6),
                _ => {}
            }
        }
        if ip4.is_none() && ip6.is_none() {
            continue;
        }
        taken.extend(ip4.map(IpAddr::V4));
        taken.extend(ip6.map(IpAddr::V6));
        let ns = pod.metadata.namespace.clone().unwrap_or("default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        out.push(CasePod {
            label: format!("{ns}/{name}"),
            topo_name: format!("{ns}.{name}"),
            node: spec.node_name.unwrap_or_default(),
            ip4,
            ip6,
        });
    }
    out
}

/// The port numbers a case's policies and container ports mention, plus both neighbours of
/// every `endPort` range and an unmentioned control port, at most [`MAX_PORTS`].
fn case_ports(cluster: &oracle::Cluster) -> Vec<u16> {
    let mut mentioned: BTreeSet<u16> = BTreeSet::new();
    let mut neighbours: BTreeSet<u16> = BTreeSet::new();
    let valid = |n: i32| u16::try_from(n).ok().filter(|p| *p > 0);
    for policy in &cluster.policies {
        let Some(spec) = &policy.spec else { continue };
        let ingress = spec.ingress.iter().flatten().flat_map(|r| r.ports.iter());
        let egress = spec.egress.iter().flatten().flat_map(|r| r.ports.iter());
        for port in ingress.chain(egress).flatten() {
            let Some(IntOrString::Int(n)) = port.port else {
                continue;
            };
            mentioned.extend(valid(n));
            if let Some(end) = port.end_port {
                mentioned.extend(valid(end));
                neighbours.extend(valid(n - 1));
                neighbours.extend(valid(end + 1));
            }
        }
    }
    for pod in &cluster.pods {
        let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
        for cp in containers.flat_map(|c| c.ports.iter().flatten()) {
            mentioned.extend(valid(cp.container_port));
        }
    }
    if mentioned.is_empty() {
        mentioned.insert(80);
    }
    let extra: Vec<u16> = neighbours.difference(&mentioned).copied().collect();
    let mut ports: Vec<u16> = mentioned.into_iter().collect();
    ports.extend(extra);
    if !ports.contains(&CONTROL_PORT) {
        ports.push(CONTROL_PORT);
    }
    assert!(
        ports.len() <= MAX_PORTS,
        "case mentions too many ports for one topology: {ports:?}"
    );
    ports
}

/// The topology of a case: nodes node-1/node-2, its active pods with their addresses. A pod
/// lacking one family gets a filler address of that family that is never probed.
fn topo_spec(case: &str, pods: &[CasePod], ports: &[u16]) -> TopoSpec {
    let mut spec = TopoSpec::two_nodes(NODES[0].0, NODES[1].0).ports(ports);
    for (k, p) in pods.iter().enumerate() {
        let n = NODES
            .iter()
            .position(|(name, _, _)| *name == p.node)
            .unwrap_or_else(|| panic!("{case}: pod {} on unknown node {:?}", p.label, p.node));
        let filler4 = Ipv4Addr::new(10, 244, n as u8 + 1, 250 - k as u8);
        let filler6 = Ipv6Addr::new(0xfd00, 0x10, 0x244, n as u16 + 1, 0, 0, 0xff, k as u16);
        spec = spec.pod(
            &p.topo_name,
            &p.node,
            &p.ip4.unwrap_or(filler4).to_string(),
            &p.ip6.unwrap_or(filler6).to_string(),
        );
    }
    spec
}

/// One probe and what the oracle says about it.
struct Probe {
    spec: ProbeSpec,
    from: usize,
    to: usize,
    family: Family,
    expected: bool,
}

/// Result of one case on one shape.
struct CaseResult {
    probes: usize,
    /// Probes the oracle allows.
    allowed: usize,
    mismatches: Vec<String>,
}

fn compile_for(dir: &Path, node: &str) -> String {
    let (objs, _) = nftpol::core::k8s::load_paths(&[dir.to_path_buf()]);
    let out = nftpol::core::compile::compile_objects(
        &objs,
        &Options {
            node: Some(node.into()),
            ..Default::default()
        },
    );
    nftpol::core::nft::render::script(&out.ruleset)
}

fn run_case(shape: Shape, dir: &Path) -> Option<CaseResult> {
    let case = dir.file_name().unwrap().to_string_lossy().into_owned();
    let cluster = oracle::Cluster::load(dir)
        .unwrap_or_else(|e| panic!("{case}: loading for the oracle: {e}"));
    let pods = active_pods(&cluster);
    if pods.is_empty() {
        return None;
    }
    let ports = case_ports(&cluster);
    let mut topo = Topology::build(shape, &topo_spec(&case, &pods, &ports))
        .unwrap_or_else(|e| panic!("{shape} {case}: building topology: {e:#}"));
    topo.set_timeout(TIMEOUT);
    let mut rulesets = Vec::new();
    for (node, _, _) in NODES {
        let text = compile_for(dir, node);
        topo.load_ruleset(node, &text)
            .unwrap_or_else(|e| panic!("{shape} {case}: {e:#}"));
        rulesets.push((node, text));
    }

    let mut probes = Vec::new();
    for (i, a) in pods.iter().enumerate() {
        for (j, b) in pods.iter().enumerate() {
            for family in Family::ALL {
                let (Some(src), Some(dst)) = (a.ip(family), b.ip(family)) else {
                    continue;
                };
                for proto in Proto::ALL {
                    for &port in &ports {
                        let flow = oracle::Flow {
                            src,
                            dst,
                            proto: proto.into(),
                            port,
                        };
                        probes.push(Probe {
                            spec: ProbeSpec::pod(&a.topo_name, dst, proto, port),
                            from: i,
                            to: j,
                            family,
                            expected: oracle::allowed(&cluster, &flow),
                        });
                    }
                }
            }
        }
    }
    let specs: Vec<ProbeSpec> = probes.iter().map(|p| p.spec.clone()).collect();
    let outcomes = topo.probe_outcomes(&specs);
    let verdict = |b: bool| if b { "allowed" } else { "blocked" };
    let mismatches: Vec<String> = probes
        .iter()
        .zip(&outcomes)
        .filter(|(p, o)| o.reached() != p.expected)
        .map(|(p, o)| {
            format!(
                "{shape} {case}: {} -> {} {}/{} {}: expected {}, got {o}",
                pods[p.from].label,
                pods[p.to].label,
                p.spec.proto,
                p.spec.port,
                p.family,
                verdict(p.expected),
            )
        })
        .collect();
    if !mismatches.is_empty() {
        // Keep the rulesets of a failing case for the report.
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-cases");
        let _ = std::fs::create_dir_all(&out);
        for (node, text) in &rulesets {
            let _ = std::fs::write(out.join(format!("{shape}-{case}@{node}.nft")), text);
        }
    }
    Some(CaseResult {
        probes: probes.len(),
        allowed: probes.iter().filter(|p| p.expected).count(),
        mismatches,
    })
}

/// Cases of one shape run this many at a time (their probes mostly wait on timeouts).
const CASES_IN_PARALLEL: usize = 3;

fn run_shape(shape: Shape) {
    let start = Instant::now();
    let dirs = kit::cases::case_dirs();
    let next = AtomicUsize::new(0);
    let results: Vec<OnceLock<Option<(CaseResult, Duration)>>> =
        dirs.iter().map(|_| OnceLock::new()).collect();
    std::thread::scope(|s| {
        for _ in 0..CASES_IN_PARALLEL {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(dir) = dirs.get(i) else { break };
                    let case_start = Instant::now();
                    let r = run_case(shape, dir).map(|r| (r, case_start.elapsed()));
                    let _ = results[i].set(r);
                }
            });
        }
    });
    let mut report = String::new();
    let mut all_mismatches = Vec::new();
    let (mut cases, mut probes) = (0, 0);
    for (dir, r) in dirs.iter().zip(results) {
        let Some((r, elapsed)) = r.into_inner().flatten() else {
            continue;
        };
        cases += 1;
        probes += r.probes;
        let line = format!(
            "{shape:6} {:32} probes {:5} ({:5} allowed)  mismatches {:4}  {:5} ms",
            dir.file_name().unwrap().to_string_lossy(),
            r.probes,
            r.allowed,
            r.mismatches.len(),
            elapsed.as_millis()
        );
        println!("{line}");
        writeln!(report, "{line}").unwrap();
        all_mismatches.extend(r.mismatches);
    }
    let total = format!(
        "{shape}: {cases} cases, {probes} probes, {} mismatches, {:.1} s",
        all_mismatches.len(),
        start.elapsed().as_secs_f64()
    );
    println!("{total}");
    assert!(
        cases >= 20,
        "{shape}: expected the testdata cases, ran {cases}"
    );
    assert!(
        all_mismatches.is_empty(),
        "{report}{total}\nreal packets disagree with the oracle (rulesets kept in {}/kernel-cases):\n{}",
        env!("CARGO_TARGET_TMPDIR"),
        all_mismatches.join("\n")
    );
}

#[test]
fn bridge_cases() {
    run_shape(Shape::Bridge);
}

#[test]
fn routed_cases() {
    run_shape(Shape::Routed);
}

#[test]
fn vxlan_cases() {
    run_shape(Shape::Vxlan);
}
