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
        for (case, format) in [
            ("k8s-docs-test-network-policy", "dot"),
            ("k8s-docs-test-network-policy", "json"),
            ("empty-and-absent", "dot"),
            ("invalid-operator", "dot"),
        ] {
            let out = Command::new(BIN)
                .args([
                    "graph",
                    "-f",
                    &format!("testdata/{case}"),
                    "--format",
                    format,
                ])
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
            insta::assert_snapshot!(
                format!("graph-{case}.{format}"),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    });
}
