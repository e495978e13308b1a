//! Conformance: the upstream Kubernetes e2e NetworkPolicy suite (and nftpol's own cases) in
//! `testdata/upstream/`, played with real packets on one live topology per shape (routed,
//! bridge, vxlan, in parallel), replacing each node's ruleset in place after every step
//! ("sequential mode"), with probes straight to the pods and through two Services (one backend
//! on each node). Every case's expectations are also checked against the reference evaluator,
//! and every probe's real-packet result against what `nftpol explain` says about that flow.
//!
//! `cnp_conformance` does the same for the network-policy-api ClusterNetworkPolicy suite in
//! `testdata/cluster-network-policy/conformance/` (`cnp_cases_are_well_formed` checks its case
//! files without root).
//!
//! Plus real-packet checks the case format cannot express: established connections survive a
//! ruleset swap, node↔pod traffic under default deny, hostNetwork pods, and a Service with a
//! cross-node backend under ingress and egress policies.
//!
//! Needs root and network namespaces: a missing capability fails the tests, never skips them.

use nftpol_testkit as kit;

use nftpol_testkit::conformance;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use conformance::{Base, CasePlan, ShapeReport};
use kit::held::{EchoServer, HeldConn};
use kit::{Family, Proto, Shape, TopoSpec, Topology};

/// Probe timeout of the conformance batches.
const TIMEOUT: Duration = Duration::from_millis(800);

/// `testdata/upstream`, or the directory in `NFTPOL_CONFORMANCE_DIR` (for developing cases).
fn upstream_dir() -> std::path::PathBuf {
    match std::env::var_os("NFTPOL_CONFORMANCE_DIR") {
        Some(d) => d.into(),
        None => kit::cases::case("upstream"),
    }
}

#[test]
fn upstream_conformance() {
    let dir = upstream_dir();
    let base = Base::load(&dir.join("cluster.yaml")).unwrap_or_else(|e| panic!("{e:#}"));
    run_suite(&dir, base);
}

/// `testdata/cluster-network-policy/conformance`, or the directory in
/// `NFTPOL_CNP_CONFORMANCE_DIR`.
fn cnp_dir() -> std::path::PathBuf {
    match std::env::var_os("NFTPOL_CNP_CONFORMANCE_DIR") {
        Some(d) => d.into(),
        None => kit::cases::case("cluster-network-policy/conformance"),
    }
}

/// The network-policy-api ClusterNetworkPolicy v1alpha2 conformance suite (and nftpol's own
/// CNP cases) in `testdata/cluster-network-policy/conformance/`, played like
/// [`upstream_conformance`]: all three shapes, both families. A denied probe must time out
/// (upstream fails a `REFUSED`).
#[test]
fn cnp_conformance() {
    let dir = cnp_dir();
    let mut base = Base::load(&dir.join("cluster.yaml")).unwrap_or_else(|e| panic!("{e:#}"));
    base.drops_must_time_out = true;
    run_suite(&dir, base);
}

/// Every CNP case file parses and plans against its base cluster (every probed pod exists,
/// templates resolve, no two probes disagree), every policy object is a
/// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (or a NetworkPolicy, or a
/// relabelled base object), and every namespace a selector names by
/// `kubernetes.io/metadata.name` exists. Pure: no namespaces, no root.
#[test]
fn cnp_cases_are_well_formed() {
    let dir = cnp_dir();
    let base = Base::load(&dir.join("cluster.yaml")).unwrap_or_else(|e| panic!("{e:#}"));
    let svcs = conformance::services(&base);
    let cases = conformance::load_cases(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    let namespaces: Vec<&str> = base
        .namespaces
        .iter()
        .filter_map(|n| n.pointer("/metadata/name")?.as_str())
        .collect();
    let mut problems = Vec::new();
    let (mut upstream, mut custom) = (Vec::new(), 0);
    for (path, case) in cases {
        let shown = path.display().to_string();
        let case = match case {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{shown}: {e:#}"));
                continue;
            }
        };
        match (&case.upstream, &case.custom) {
            (Some(u), _) => upstream.push(u.clone()),
            _ => custom += 1,
        }
        for (k, step) in case.steps.iter().enumerate() {
            let Some(objects) = &step.objects else {
                continue;
            };
            // Templates are replaced before parsing, as the runner does.
            let text = base
                .substitute(objects, kit::Family::V4)
                .unwrap_or_else(|e| panic!("{shown} step {}: {e:#}", k + 1));
            let docs: Vec<serde_json::Value> = match serde_saphyr::from_multiple(&text) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{shown} step {}: objects: {e}", k + 1));
                    continue;
                }
            };
            for doc in docs.iter().filter(|d| !d.is_null()) {
                let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
                let api = doc.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("");
                let ok = matches!(
                    (kind, api),
                    ("ClusterNetworkPolicy", "policy.networking.k8s.io/v1alpha2")
                        | ("NetworkPolicy", "networking.k8s.io/v1")
                        | ("Namespace" | "Pod" | "Node", "v1")
                );
                if !ok {
                    problems.push(format!("{shown} step {}: {api} {kind}", k + 1));
                }
                if kind == "ClusterNetworkPolicy" && doc.pointer("/metadata/namespace").is_some() {
                    problems.push(format!("{shown} step {}: a namespaced CNP", k + 1));
                }
                let mut names = Vec::new();
                metadata_names(doc, &mut names);
                for n in names
                    .into_iter()
                    .filter(|n| !namespaces.contains(&n.as_str()))
                {
                    problems.push(format!("{shown} step {}: no namespace {n}", k + 1));
                }
            }
        }
        let plan = conformance::plan_case(&path, Ok(case), &base, &svcs);
        problems.extend(plan.errors);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every network-policy-api v1alpha2 conformance test, once.
    let mut want: Vec<&str> = UPSTREAM_CNP_TESTS.to_vec();
    want.sort_unstable();
    upstream.sort();
    assert_eq!(upstream, want, "upstream tests transcribed");
    assert!(custom >= 3, "nftpol's own CNP cases: {custom}");
}

/// The ShortNames of network-policy-api's conformance tests (commit 0eec1b0e5fa9).
const UPSTREAM_CNP_TESTS: [&str; 24] = [
    "CNPAdminTierIngressTCP",
    "CNPAdminTierIngressUDP",
    "CNPAdminTierIngressSCTP",
    "CNPAdminTierEgressTCP",
    "CNPAdminTierEgressUDP",
    "CNPAdminTierEgressSCTP",
    "CNPAdminTierGress",
    "CNPAdminTierEgressInlineCIDRPeers",
    "CNPAdminTierIntegration",
    "CNPAdminTierPriorityField",
    "CNPAdminTierEgressNamedPort",
    "CNPAdminTierIngressNamedPort",
    "CNPAdminTierEgressNodePeers",
    "CNPBaselineTierIngressTCP",
    "CNPBaselineTierIngressUDP",
    "CNPBaselineTierIngressSCTP",
    "CNPBaselineTierEgressTCP",
    "CNPBaselineTierEgressUDP",
    "CNPBaselineTierEgressSCTP",
    "CNPBaselineTierGress",
    "CNPBaselineTierEgressInlineCIDRPeers",
    "CNPBaselineTierEgressNamedPort",
    "CNPBaselineTierIngressNamedPort",
    "CNPBaselineTierEgressNodePeers",
];

/// Every value of a `kubernetes.io/metadata.name` key in `matchLabels` or an `In`
/// expression, anywhere in `v`.
fn metadata_names(v: &serde_json::Value, out: &mut Vec<String>) {
    const KEY: &str = "kubernetes.io/metadata.name";
    match v {
        serde_json::Value::Object(m) => {
            if let Some(n) = m
                .get("matchLabels")
                .and_then(|l| l.get(KEY))
                .and_then(|n| n.as_str())
            {
                out.push(n.to_owned());
            }
            for e in m
                .get("matchExpressions")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
                .filter(|e| e.get("key").and_then(|k| k.as_str()) == Some(KEY))
            {
                let values = e.get("values").and_then(|v| v.as_array());
                out.extend(
                    values
                        .into_iter()
                        .flatten()
                        .filter_map(|v| Some(v.as_str()?.to_owned())),
                );
            }
            m.values().for_each(|v| metadata_names(v, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| metadata_names(v, out)),
        _ => {}
    }
}

/// Plans every case of `dir` against `base` and plays them on every shape in parallel.
fn run_suite(dir: &std::path::Path, base: Base) {
    let start = Instant::now();
    let svcs = conformance::services(&base);
    let cases = conformance::load_cases(dir).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!cases.is_empty(), "no case files in {}", dir.display());
    let plans: Vec<CasePlan> = cases
        .into_iter()
        .map(|(path, case)| conformance::plan_case(&path, case, &base, &svcs))
        .collect();
    let plan_time = start.elapsed();
    let ports: Vec<u16> = base.ports.iter().copied().collect();

    let reports: Vec<Result<ShapeReport, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = Shape::ALL
            .iter()
            .map(|&shape| {
                let (base, svcs, ports, plans) = (&base, &svcs, &ports, &plans);
                s.spawn(move || {
                    conformance::run_shape(shape, base, svcs, ports, plans, TIMEOUT)
                        .map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("shape thread panicked".into()))
            })
            .collect()
    });

    let mut out = String::new();
    let mut failures = String::new();
    writeln!(
        out,
        "conformance: {} cases from {} (planned in {} ms), services {}",
        plans.len(),
        dir.display(),
        plan_time.as_millis(),
        svcs.iter()
            .map(|s| format!("{}/{} -> {}", s.ip4, s.ip6, base.pod_info[s.backend].label))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    // Per case: one column per shape.
    let ok: Vec<&ShapeReport> = reports.iter().filter_map(|r| r.as_ref().ok()).collect();
    write!(out, "{:48}", "case").unwrap();
    for r in &ok {
        write!(out, " {:>14}", r.shape.to_string()).unwrap();
    }
    writeln!(out).unwrap();
    for (i, plan) in plans.iter().enumerate() {
        write!(out, "{:48}", plan.name).unwrap();
        for r in &ok {
            let c = &r.cases[i];
            let cell = if !plan.errors.is_empty() {
                "CASE ERROR".to_owned()
            } else if c.passed() {
                format!("ok {:5}", c.probes)
            } else {
                format!(
                    "FAIL {}/{}",
                    c.mismatches.len() + c.explain_mismatches.len() + c.errors.len(),
                    c.probes
                )
            };
            write!(out, " {cell:>14}").unwrap();
        }
        writeln!(out).unwrap();
    }
    writeln!(
        out,
        "\n{:8} {:>6} {:>7} {:>7} {:>8} {:>9} {:>8}",
        "shape", "cases", "passed", "failed", "probes", "build s", "total s"
    )
    .unwrap();
    for r in &reports {
        match r {
            Ok(r) => {
                let passed = r
                    .cases
                    .iter()
                    .zip(&plans)
                    .filter(|(c, p)| c.passed() && p.errors.is_empty())
                    .count();
                writeln!(
                    out,
                    "{:8} {:>6} {:>7} {:>7} {:>8} {:>9.1} {:>8.1}",
                    r.shape.to_string(),
                    r.cases.len(),
                    passed,
                    r.cases.len() - passed,
                    r.cases.iter().map(|c| c.probes).sum::<usize>(),
                    r.build_time.as_secs_f64(),
                    r.elapsed.as_secs_f64()
                )
                .unwrap();
                for (c, plan) in r.cases.iter().zip(&plans).filter(|(c, _)| !c.passed()) {
                    writeln!(
                        failures,
                        "[{}] case {} ({}): {} mismatches, {} explain disagreements, {} errors",
                        r.shape,
                        c.name,
                        plan.file.display(),
                        c.mismatches.len(),
                        c.explain_mismatches.len(),
                        c.errors.len()
                    )
                    .unwrap();
                    for m in &c.explain_mismatches {
                        writeln!(failures, "  nftpol explain disagrees with the packet: {m}")
                            .unwrap();
                    }
                    for e in &c.errors {
                        writeln!(failures, "  error: {e}").unwrap();
                    }
                    for m in &c.mismatches {
                        writeln!(failures, "  {m}").unwrap();
                    }
                }
            }
            Err(e) => writeln!(failures, "shape failed: {e}").unwrap(),
        }
    }
    writeln!(out, "total {:.1} s", start.elapsed().as_secs_f64()).unwrap();

    let case_errors: Vec<&String> = plans.iter().flat_map(|p| &p.errors).collect();
    if !case_errors.is_empty() {
        writeln!(failures, "case files that could not be planned:").unwrap();
        for e in case_errors {
            writeln!(failures, "  {e}").unwrap();
        }
    }
    let disagreements: Vec<&String> = plans.iter().flat_map(|p| &p.oracle_disagreements).collect();
    if !disagreements.is_empty() {
        writeln!(
            failures,
            "case expectations that disagree with the reference evaluator ({}):",
            disagreements.len()
        )
        .unwrap();
        for d in disagreements {
            writeln!(failures, "  {d}").unwrap();
        }
    }
    println!("{out}");
    assert!(failures.is_empty(), "{out}\n{failures}");
}

// ---------------------------------------------------------------------------------------------
// What the case format cannot express
// ---------------------------------------------------------------------------------------------

/// Two nodes, two pods each: `a`, `b` on node-1 and `c`, `d` on node-2.
fn small_spec() -> TopoSpec {
    TopoSpec::two_nodes("node-1", "node-2")
        .pod_at("a", "node-1", 10)
        .pod_at("b", "node-1", 11)
        .pod_at("c", "node-2", 10)
        .pod_at("d", "node-2", 11)
}

fn build(shape: Shape, spec: &TopoSpec) -> Topology {
    let mut topo =
        Topology::build(shape, spec).unwrap_or_else(|e| panic!("building {shape} topology: {e:#}"));
    topo.set_timeout(TIMEOUT);
    topo
}

/// Namespace `default` and a Running pod object for every topology pod (labels `app: <name>`),
/// plus `extra` YAML documents.
fn objects_yaml(topo: &Topology, extra: &str) -> String {
    let mut s = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n");
    for pod in topo.pods() {
        write!(
            s,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: default, labels: {{app: {pod}}}}}\n\
             spec: {{nodeName: {node}, containers: [{{name: main, image: agnhost}}]}}\n\
             status: {{phase: Running, podIPs: [{{ip: \"{ip4}\"}}, {{ip: \"{ip6}\"}}]}}\n",
            node = topo.pod_node(pod),
            ip4 = topo.pod_ip(pod, Family::V4),
            ip6 = topo.pod_ip(pod, Family::V6),
        )
        .unwrap();
    }
    for doc in extra.split("\n---\n").filter(|d| !d.trim().is_empty()) {
        s.push_str("---\n");
        s.push_str(doc.trim_start_matches("---\n"));
        s.push('\n');
    }
    s
}

/// Compiles `yaml` for every node and loads each node's ruleset (`--node <node>`).
fn apply(topo: &Topology, yaml: &str) {
    apply_with(topo, yaml, true);
}

/// Like [`apply`], compiled with `--revoke-established=false`.
fn apply_without_revocation(topo: &Topology, yaml: &str) {
    apply_options(topo, yaml, true, false);
}

/// Like [`apply`]; with `per_node` false every node loads the ruleset that enforces every pod
/// (`nftpol compile` without `--node`).
fn apply_with(topo: &Topology, yaml: &str, per_node: bool) {
    apply_options(topo, yaml, per_node, true);
}

fn apply_options(topo: &Topology, yaml: &str, per_node: bool, revoke_established: bool) {
    let mut objs = nftpol::core::k8s::Objects::default();
    let mut diags = Vec::new();
    nftpol::core::k8s::parse_into(yaml, "test", &mut objs, &mut diags);
    assert!(diags.is_empty(), "test objects: {diags:?}");
    for node in topo.nodes() {
        let out = nftpol::core::compile::compile_objects(
            &objs,
            &nftpol::core::compile::Options {
                node: per_node.then(|| node.to_owned()),
                revoke_established,
                ..Default::default()
            },
        );
        let errors: Vec<String> = out
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .filter(|d| d.contains("error"))
            .collect();
        assert!(errors.is_empty(), "compile diagnostics: {errors:?}");
        topo.load_ruleset(node, &nftpol::core::nft::render::script(&out.ruleset))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

const DENY_ALL: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
    metadata: {name: deny-all, namespace: default}\n\
    spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";

/// Port of the echo servers used for held connections (not served by the probe servers).
const ECHO_PORT: u16 = 7000;

/// (a) Without revocation (`--revoke-established=false`), a TCP connection opened while
/// allowed keeps working after a swap to default deny; a new connection to the same server is
/// dropped. Same-node and cross-node, both families. (With revocation, the default, it is cut:
/// tests/kernel/revoke.rs.)
#[test]
fn established_connection_survives_ruleset_swap() {
    for shape in [Shape::Bridge, Shape::Routed] {
        let topo = build(shape, &small_spec());
        apply_without_revocation(&topo, &objects_yaml(&topo, ""));
        let servers: Vec<EchoServer> = ["b", "c"]
            .iter()
            .map(|p| EchoServer::start(topo.pod_netns(p), ECHO_PORT).unwrap())
            .collect();
        let mut conns = Vec::new();
        for to in ["b", "c"] {
            for family in Family::ALL {
                let dst = std::net::SocketAddr::new(topo.pod_ip(to, family), ECHO_PORT);
                let mut c = HeldConn::open(topo.pod_netns("a"), dst, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("{e:#}"))
                    .unwrap_or_else(|e| panic!("{shape}: a -> {to} {family} before deny: {e}"));
                c.echo(b"before")
                    .unwrap_or_else(|e| panic!("{shape}: a -> {to} {family} echo: {e:#}"));
                conns.push((to, family, dst, c));
            }
        }
        apply_without_revocation(&topo, &objects_yaml(&topo, DENY_ALL));
        for (to, family, dst, c) in &mut conns {
            c.echo(b"after the swap").unwrap_or_else(|e| {
                panic!("{shape}: established a -> {to} {family} broke after default deny: {e:#}")
            });
            let fresh = HeldConn::open(topo.pod_netns("a"), *dst, TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
            match fresh {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => {
                    panic!("{shape}: new connection a -> {to} {family}: {e} (expected a drop)")
                }
                Ok(_) => panic!(
                    "{shape}: a new connection a -> {to} {family} was allowed under default deny"
                ),
            }
        }
        drop(servers);
    }
}

/// (b) Under default deny (ingress and egress) a node still reaches its own pods and they
/// reach it; another node's traffic to an isolated pod is still denied.
#[test]
fn node_and_own_pods_under_default_deny() {
    for shape in [Shape::Bridge, Shape::Routed] {
        let mut topo = build(shape, &small_spec());
        topo.serve_node("node-1", &[80])
            .unwrap_or_else(|e| panic!("{e:#}"));
        apply(&topo, &objects_yaml(&topo, DENY_ALL));
        let mut cases = Vec::new();
        for family in Family::ALL {
            for proto in Proto::ALL {
                for pod in ["a", "b"] {
                    cases.push((
                        kit::ProbeSpec::node("node-1", topo.pod_ip(pod, family), proto, 80),
                        true,
                    ));
                    cases.push((
                        kit::ProbeSpec::pod(pod, topo.node_ip("node-1", family), proto, 80),
                        true,
                    ));
                    // The pods themselves stay isolated from each other.
                    cases.push((
                        kit::ProbeSpec::pod(pod, topo.pod_ip("c", family), proto, 80),
                        false,
                    ));
                }
            }
        }
        if let Err(e) = topo.check("node <-> own pods under deny-all", &cases) {
            panic!("{e}");
        }
    }
}

/// (c) A hostNetwork pod (the node's address, labels that a deny-all policy selects) is never
/// isolated: its node reaches pods on both nodes, and pods reach it.
#[test]
fn host_network_pod_is_never_isolated() {
    for shape in [Shape::Bridge, Shape::Routed] {
        let mut topo = build(shape, &small_spec());
        topo.serve_node("node-1", &[80])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let hostnet = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: agent, namespace: default, labels: {{app: agent}}}}\n\
             spec: {{nodeName: node-1, hostNetwork: true, containers: [{{name: main, image: agent}}]}}\n\
             status: {{phase: Running, podIPs: [{{ip: \"{}\"}}, {{ip: \"{}\"}}]}}\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: deny-agent, namespace: default}}\n\
             spec: {{podSelector: {{matchLabels: {{app: agent}}}}, policyTypes: [Ingress, Egress]}}\n",
            topo.node_ip("node-1", Family::V4),
            topo.node_ip("node-1", Family::V6),
        );
        let mut cases = Vec::new();
        for family in Family::ALL {
            for proto in Proto::ALL {
                for pod in ["a", "c"] {
                    cases.push((
                        kit::ProbeSpec::node("node-1", topo.pod_ip(pod, family), proto, 80),
                        true,
                    ));
                    cases.push((
                        kit::ProbeSpec::pod(pod, topo.node_ip("node-1", family), proto, 80),
                        true,
                    ));
                }
            }
        }
        // The agent's own traffic never crosses node-1's forward hook; with every pod enforced
        // on every node, its cross-node traffic crosses node-2's, where a wrongly isolated
        // agent address would be dropped.
        for (per_node, view) in [(true, "--node rulesets"), (false, "all-pods rulesets")] {
            apply_with(&topo, &objects_yaml(&topo, &hostnet), per_node);
            if let Err(e) = topo.check(&format!("hostNetwork pod, {view}"), &cases) {
                panic!("{e}");
            }
        }
    }
}

/// (d) A Service whose backend `c` is on node-2, with `c` accepting only `app: a` on TCP 80
/// and `b` allowed egress only to `d`: through the ClusterIP, `a` and `b` (node-1) reach `c`
/// only as the policies say, exactly like direct traffic; `d` (node-2, same node) is denied.
#[test]
fn service_with_cross_node_backend_under_policy() {
    const POLICIES: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: c-from-a-and-b, namespace: default}\n\
        spec:\n  podSelector: {matchLabels: {app: c}}\n  policyTypes: [Ingress]\n\
        \x20 ingress:\n  - from: [{podSelector: {matchLabels: {app: a}}}]\n    ports: [{port: 80}]\n\
        \x20 - from: [{podSelector: {matchLabels: {app: b}}}]\n\
        ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: b-only-to-d, namespace: default}\n\
        spec:\n  podSelector: {matchLabels: {app: b}}\n  policyTypes: [Egress]\n\
        \x20 egress:\n  - to: [{podSelector: {matchLabels: {app: d}}}]\n";
    let svc: [(Family, IpAddr); 2] = [
        (Family::V4, "10.96.0.20".parse().unwrap()),
        (Family::V6, "fd00:10:96::20".parse().unwrap()),
    ];
    for shape in [Shape::Bridge, Shape::Routed, Shape::Vxlan] {
        let topo = build(shape, &small_spec());
        for (family, ip) in svc {
            for proto in Proto::ALL {
                topo.add_service_everywhere(ip, 8080, proto, topo.pod_ip("c", family), 80)
                    .unwrap_or_else(|e| panic!("{e:#}"));
            }
        }
        apply(&topo, &objects_yaml(&topo, POLICIES));
        let mut cases = Vec::new();
        for (family, ip) in svc {
            for proto in Proto::ALL {
                // a: allowed on TCP 80 only; b: c would accept it but b's egress allows only d;
                // d: not allowed by c's ingress.
                for (from, want) in [("a", proto == Proto::Tcp), ("b", false), ("d", false)] {
                    cases.push((kit::ProbeSpec::pod(from, ip, proto, 8080), want));
                    cases.push((
                        kit::ProbeSpec::pod(from, topo.pod_ip("c", family), proto, 80),
                        want,
                    ));
                }
                // b may still reach d, directly.
                cases.push((
                    kit::ProbeSpec::pod("b", topo.pod_ip("d", family), proto, 80),
                    true,
                ));
            }
        }
        if let Err(e) = topo.check("service to a cross-node backend", &cases) {
            panic!("{e}");
        }
    }
}
