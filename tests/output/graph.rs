//! `nftpol graph`: for every `testdata/<case>/`, the DOT output renders with Graphviz
//! (`dot -Tpng`, Debian package `graphviz`), the JSON output is valid and consistent (every
//! edge joins two listed nodes), and both are byte-identical across runs and independent of
//! document order. A few outputs are snapshotted in `snapshots/`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use nftpol_testkit::cases;

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

fn export(dir: &Path, reverse: bool) -> nftpol::core::graph::export::Export {
    let (mut objs, diags) = nftpol::core::k8s::load_paths(&[dir.to_path_buf()]);
    assert!(!diags.iter().any(|d| d.is_error()), "{}", dir.display());
    if reverse {
        objs.namespaces.reverse();
        objs.pods.reverse();
        objs.policies.reverse();
    }
    let (cluster, _) = nftpol::core::k8s::to_cluster(&objs);
    let graph = nftpol::core::graph::SelectorGraph::build(&cluster);
    nftpol::core::graph::export::export(&cluster, &graph)
}

#[test]
fn every_case_renders_with_graphviz() {
    let cases = cases::case_dirs();
    assert!(cases.len() >= 20);
    // Render all cases in one `dot` process per case, concurrently (dot is single-threaded).
    let children: Vec<_> = cases
        .iter()
        .map(|dir| {
            let text = nftpol::core::graph::export::dot(&export(dir, false));
            let mut child = Command::new("dot")
                .arg("-Tpng")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("Graphviz `dot` is installed (Debian: graphviz; .ci/run installs it)");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            (dir, child)
        })
        .collect();
    for (dir, child) in children {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: dot failed: {err}", dir.display());
        // Graphviz reports syntax problems as warnings and still exits 0.
        assert!(
            err.trim().is_empty(),
            "{}: dot complained: {err}",
            dir.display()
        );
        assert!(
            out.stdout.starts_with(b"\x89PNG"),
            "{}: not a PNG",
            dir.display()
        );
    }
}

#[test]
fn json_is_consistent_and_output_deterministic() {
    for dir in cases::case_dirs() {
        let e = export(&dir, false);
        let ids: BTreeSet<&str> = e.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids.len(), e.nodes.len(), "{}: duplicate ids", dir.display());
        for edge in &e.edges {
            assert!(
                ids.contains(edge.from.as_str()) && ids.contains(edge.to.as_str()),
                "{}: edge {edge:?} joins an unknown node",
                dir.display()
            );
        }
        let json = nftpol::core::graph::export::json(&e);
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert!(v["nodes"].is_array() && v["edges"].is_array());
        // Same input, same bytes; document order does not matter.
        let again = export(&dir, true);
        assert_eq!(
            nftpol::core::graph::export::dot(&e),
            nftpol::core::graph::export::dot(&again),
            "{}",
            dir.display()
        );
        assert_eq!(
            json,
            nftpol::core::graph::export::json(&again),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn graph_shows_who_selects_and_allows_whom() {
    let e = export(
        &cases::root().join("testdata/k8s-docs-test-network-policy"),
        false,
    );
    let has = |from: &str, to: &str, kind: &str| {
        e.edges
            .iter()
            .any(|x| x.from == from && x.to == to && x.kind == kind)
    };
    let pol = "policy:default/test-network-policy";
    assert!(has(pol, "pod:default/db", "selects"));
    assert!(has(pol, "ipblock:10.0.0.0/24", "allows-to"));
    assert!(has(
        pol,
        "ipblock:172.17.0.0/16 except 172.17.1.0/24",
        "allows-from"
    ));
    assert!(has("ns:default", "pod:default/db", "contains"));
    // The namespaceSelector project=myproject matches exactly myproject/client.
    let sel = e
        .nodes
        .iter()
        .find(|n| n.kind == "selector" && n.label.contains("project=myproject"))
        .expect("the namespaceSelector is a node");
    let members: Vec<&str> = e
        .edges
        .iter()
        .filter(|x| x.from == sel.id && x.kind == "selects")
        .map(|x| x.to.as_str())
        .collect();
    assert_eq!(members, ["pod:myproject/client"]);
    assert!(has(pol, &sel.id, "allows-from"));
}

#[test]
fn outputs_match_their_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(cases::root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (case, format, filter) in [
            ("k8s-docs-test-network-policy", "dot", None),
            ("k8s-docs-test-network-policy", "json", None),
            ("empty-and-absent", "dot", None),
            ("invalid-operator", "dot", None),
            ("graph-at-scale", "dot", Some(["--namespace", "payments"])),
        ] {
            let out = Command::new(BIN)
                .args(["graph", "-f", &format!("testdata/{case}"), "-o", format])
                .args(filter.into_iter().flatten())
                .current_dir(cases::root())
                .output()
                .expect("nftpol runs");
            // invalid-operator has invalid policies: exit 1, the graph is still printed.
            let want = if case.starts_with("invalid") { 1 } else { 0 };
            assert_eq!(
                out.status.code(),
                Some(want),
                "{case}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // A filtered output is named after the filter's value.
            let suffix = filter.map(|f| format!("@{}", f[1])).unwrap_or_default();
            insta::assert_snapshot!(
                format!("graph-{case}{suffix}.{format}"),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    });
}

/// Runs `nftpol` from the repository root.
fn nftpol(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cases::root())
        .output()
        .expect("nftpol runs")
}

#[test]
fn every_filter_flag_and_its_exit_code() {
    // (args after `graph -f`, exit code, in stdout, not in stdout, in stderr, why)
    type Row<'a> = (Vec<&'a str>, i32, &'a str, &'a str, &'a str, &'a str);
    let scale = "testdata/graph-at-scale";
    let rows: Vec<Row> = vec![
        (
            vec![scale, "--namespace", "payments"],
            0,
            "\"policy:payments/internal\"",
            "\"policy:search/",
            "",
            "--namespace keeps its policies, not unrelated ones",
        ),
        (
            vec![scale, "-n", "payments", "-n", "search", "-o", "json"],
            0,
            "\"policy:search/api-from-shop\"",
            "\"policy:batch/",
            "",
            "-n is --namespace; filters add up; JSON too",
        ),
        (
            vec![scale, "--policy", "payments/internal"],
            0,
            "\"policy:payments/internal\"",
            "\"policy:payments/default-deny\"",
            "",
            "--policy NS/NAME keeps that NetworkPolicy",
        ),
        (
            vec![scale, "--pod", "payments/postgres-0"],
            0,
            "\"pod:payments/postgres-0\"",
            "\"pod:payments/postgres-1\"",
            "",
            "--pod keeps that pod, not its siblings",
        ),
        (
            vec![
                scale,
                "--pod",
                "payments/postgres-0",
                "--pod",
                "shop/redis-1",
            ],
            0,
            "\"pod:shop/redis-1\"",
            "\"policy:search/",
            "",
            "--pod repeated adds up",
        ),
        (
            vec![scale, "--expand-pods"],
            0,
            "\"pod:shop/redis-2\"",
            "\"pods:",
            "",
            "--expand-pods draws every pod",
        ),
        (
            vec![scale],
            0,
            "\"pods:shop/redis-0\"",
            "\"pod:shop/redis-2\"",
            "",
            "pods are grouped by default",
        ),
        (
            vec!["testdata/cluster-guardrails", "--policy", "allow-dns"],
            0,
            "\"cnp:allow-dns\"",
            "\"cnp:payments-gateway-only\"",
            "",
            "--policy NAME is a ClusterNetworkPolicy",
        ),
        (
            vec![scale, "--pod", "shop/nope"],
            1,
            "",
            "",
            "graph: --pod \"shop/nope\": no such pod",
            "--pod naming no pod",
        ),
        (
            vec![scale, "--pod", "redis-0"],
            1,
            "",
            "",
            "graph: --pod \"redis-0\": expected NAMESPACE/POD",
            "--pod without a namespace",
        ),
        (
            vec![scale, "--pod", "staging/redis-0"],
            1,
            "",
            "",
            "pods of that name: shop/redis-0",
            "--pod in the wrong namespace names the near miss",
        ),
        (
            vec![scale, "--policy", "shop/nope"],
            1,
            "",
            "",
            "graph: --policy \"shop/nope\": no such NetworkPolicy",
            "--policy naming no NetworkPolicy",
        ),
        (
            vec![scale, "--policy", "internal"],
            1,
            "",
            "",
            "graph: --policy \"internal\": no such ClusterNetworkPolicy; NetworkPolicies are given as NAMESPACE/NAME: payments/internal",
            "--policy with a NetworkPolicy's bare name",
        ),
        (
            vec![scale, "--policy", "a/b/c"],
            1,
            "",
            "",
            "graph: --policy \"a/b/c\": expected NAMESPACE/NAME (one '/')",
            "--policy malformed",
        ),
        (
            vec![scale, "--namespace", "nope"],
            1,
            "",
            "",
            "graph: --namespace \"nope\": no such namespace",
            "--namespace naming nothing",
        ),
        (
            vec![scale, "--namespace", "Shop"],
            1,
            "",
            "",
            "graph: --namespace \"Shop\": \"Shop\" is not a namespace name",
            "--namespace malformed",
        ),
        (
            vec![scale, "--namespace", "nope", "--pod", "shop/nope"],
            1,
            "",
            "",
            "nftpol: graph: --pod \"shop/nope\": no such pod",
            "every filter naming nothing is reported",
        ),
        (
            vec!["testdata/invalid-operator", "--namespace", "bad"],
            1,
            "\"policy:bad/unknown-operator-in-pod-selector\"",
            "",
            "",
            "invalid policies: the filtered graph is printed, exit 1",
        ),
    ];
    for (args, code, out_has, out_lacks, err_has, why) in rows {
        let args: Vec<&str> = ["graph", "-f"].into_iter().chain(args).collect();
        let out = nftpol(&args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(code), "{why}: {args:?}: {stderr}");
        if code == 1 && !out_has.is_empty() || code == 0 {
            assert!(stdout.contains(out_has), "{why}: stdout lacks {out_has:?}");
        } else {
            assert!(stdout.is_empty(), "{why}: a bad filter prints no graph");
        }
        if !out_lacks.is_empty() {
            assert!(
                !stdout.contains(out_lacks),
                "{why}: stdout has {out_lacks:?}"
            );
        }
        assert!(
            stderr.contains(err_has),
            "{why}: stderr lacks {err_has:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{why}: {stderr}");
    }
}

/// The docs' example: 100 pods, 25 policies.
fn at_scale(reverse: bool) -> nftpol::core::graph::export::Export {
    export(&cases::root().join("testdata/graph-at-scale"), reverse)
}

#[test]
fn at_scale_pods_are_grouped_and_the_output_deterministic() {
    use nftpol::core::graph::view::{View, view};
    let full = at_scale(false);
    let pods = full.nodes.iter().filter(|n| n.kind == "pod").count();
    let policies = full.nodes.iter().filter(|n| n.kind == "policy").count();
    assert_eq!((pods, policies), (100, 25), "the example's size");
    let grouped = view(&full, &View::default()).unwrap();
    let vertices = |e: &nftpol::core::graph::export::Export| {
        e.nodes.iter().filter(|n| n.kind.starts_with("pod")).count()
    };
    let members: usize = grouped
        .nodes
        .iter()
        .map(|n| match n.kind {
            "pods" => n.members.len(),
            "pod" => 1,
            _ => 0,
        })
        .sum();
    assert_eq!(members, 100, "every pod is drawn once");
    assert!(
        vertices(&grouped) <= 25,
        "100 pods drawn as {} vertices",
        vertices(&grouped)
    );
    // Mid-rollout: shop's frontend pods differ in pod-template-hash, are
    // treated alike, and are one group.
    let frontend = grouped
        .nodes
        .iter()
        .find(|n| {
            n.kind == "pods"
                && n.labels.get("app").is_some_and(|a| a == "frontend")
                && n.namespace.as_deref() == Some("shop")
        })
        .expect("shop's frontend group");
    assert_eq!(frontend.members.len(), 8);
    assert!(!frontend.labels.contains_key("pod-template-hash"));
    // Same bytes for any document order.
    let again = view(&at_scale(true), &View::default()).unwrap();
    assert_eq!(
        nftpol::core::graph::export::dot(&grouped),
        nftpol::core::graph::export::dot(&again)
    );
    assert_eq!(
        nftpol::core::graph::export::json(&grouped),
        nftpol::core::graph::export::json(&again)
    );
}

#[test]
fn at_scale_renders_with_graphviz_without_complaint() {
    for args in [
        &["graph", "-f", "testdata/graph-at-scale"][..],
        &[
            "graph",
            "-f",
            "testdata/graph-at-scale",
            "--namespace",
            "payments",
        ],
        &["graph", "-f", "testdata/graph-at-scale", "--expand-pods"],
    ] {
        let out = nftpol(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let mut child = Command::new("dot")
            .arg("-Tpng")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Graphviz `dot` is installed");
        child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let png = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&png.stderr);
        assert!(
            png.status.success() && err.trim().is_empty(),
            "{args:?}: {err}"
        );
        assert!(png.stdout.starts_with(b"\x89PNG"), "{args:?}");
    }
}

#[test]
fn cluster_policy_rule_edges_carry_their_ports() {
    let e = export(&cases::root().join("testdata/cluster-guardrails"), false);
    let ports = |from: &str, kind: &str, to_label: &str| -> Vec<String> {
        let to: Vec<&str> = e
            .nodes
            .iter()
            .filter(|n| n.label.contains(to_label))
            .map(|n| n.id.as_str())
            .collect();
        e.edges
            .iter()
            .find(|x| x.from == from && x.kind == kind && to.contains(&x.to.as_str()))
            .unwrap_or_else(|| panic!("{from} {kind} {to_label}"))
            .ports
            .clone()
    };
    assert_eq!(
        ports("cnp:allow-dns", "accept-to", "k8s-app=kube-dns"),
        ["tcp/53", "udp/53"]
    );
    assert_eq!(
        ports(
            "cnp:no-metadata-no-node-ssh",
            "deny-to",
            "node-role.kubernetes.io/worker"
        ),
        ["tcp/22"]
    );
    assert_eq!(
        ports(
            "cnp:no-metadata-no-node-ssh",
            "deny-to",
            "169.254.169.254/32"
        ),
        ["all ports"]
    );
}
