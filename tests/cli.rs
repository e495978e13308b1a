//! The `nftpol` binary end to end: exit codes, error messages, inputs from
//! stdin and directories, and `apply` in fresh network namespaces.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("nftpol runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a shell script in a new, empty network namespace (never the host's).
fn in_fresh_netns(script: &str) -> Output {
    nftpol_testkit::netns::sh_in_fresh_netns(
        script,
        &[("NFTPOL", BIN)],
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn compile_prints_a_ruleset_nft_accepts() {
    let out = run(
        &["compile", "-f", "testdata/k8s-docs-test-network-policy"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("table inet nftpol {"));
    let check = in_fresh_netns(&format!("nft -c -f - <<'EOF'\n{script}\nEOF"));
    assert!(check.status.success(), "nft -c: {}", text(&check.stderr));
}

#[test]
fn stdin_and_output_file() {
    // The case's files concatenated into one multi-document stream.
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/k8s-docs-default-deny-all"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let yaml: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap() + "\n---\n")
        .collect();
    let from_dir = run(
        &["compile", "-f", "testdata/k8s-docs-default-deny-all"],
        None,
    );
    let from_stdin = run(&["compile", "-f", "-"], Some(&yaml));
    assert_eq!(
        from_stdin.status.code(),
        Some(0),
        "{}",
        text(&from_stdin.stderr)
    );
    assert_eq!(
        text(&from_dir.stdout),
        text(&from_stdin.stdout),
        "stdin and directory give the same ruleset"
    );
    let tmp = std::env::temp_dir().join(format!("nftpol-cli-{}.nft", std::process::id()));
    let out = run(
        &["compile", "-f", "-", "-o", tmp.to_str().unwrap()],
        Some(&yaml),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "-o writes nothing to stdout");
    assert_eq!(
        std::fs::read_to_string(&tmp).unwrap(),
        text(&from_dir.stdout)
    );
    let _ = std::fs::remove_file(tmp);
}

#[test]
fn bad_input_exit_codes_and_messages() {
    // (args, stdin, exit code, stdout empty?, text the error must contain, why)
    type Row<'a> = (Vec<&'a str>, Option<&'a str>, i32, bool, &'a str, &'a str);
    let rows: Vec<Row> = vec![
        (
            vec!["compile", "-f", "no/such/file.yaml"],
            None,
            1,
            true,
            "no/such/file.yaml",
            "missing file",
        ),
        (
            vec!["compile", "-f", "-"],
            Some("kind: [unclosed"),
            1,
            true,
            "cannot parse",
            "unparsable YAML",
        ),
        (
            vec!["compile", "-f", "-"],
            Some(
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec: {containers: 7}\n",
            ),
            1,
            true,
            "Pod n/p: spec.containers",
            "a type error names object and field; no ruleset",
        ),
        (
            vec!["compile", "-f", "testdata/invalid-cidr"],
            None,
            1,
            false,
            "ipBlock.cidr",
            "an invalid policy: error, but the fail-closed ruleset is printed",
        ),
        (
            vec!["compile", "-f", "testdata/unknown-kind"],
            None,
            0,
            false,
            "kind ConfigMap is not used by nftpol; skipped",
            "unknown kinds are skipped with a warning",
        ),
        (vec!["compile"], None, 2, true, "--filename", "usage error"),
    ];
    for (args, stdin, code, empty, needle, why) in rows {
        let out = run(&args, stdin);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{why}: {err}");
        assert_eq!(
            out.stdout.is_empty(),
            empty,
            "{why}: stdout {}",
            text(&out.stdout)
        );
        assert!(
            err.contains(needle),
            "{why}: stderr lacks {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{why}: {err}");
    }
}

#[test]
fn apply_loads_and_replaces_the_table_in_a_fresh_namespace() {
    let out = in_fresh_netns(
        r#"
        "$NFTPOL" apply --check -f testdata/k8s-docs-default-deny-all
        if nft list table inet nftpol 2>/dev/null; then echo "--check loaded it"; exit 1; fi
        "$NFTPOL" apply -f testdata/k8s-docs-default-deny-all
        nft list table inet nftpol | grep -q 'ingress-pods-v4'
        nft add table inet othertable
        "$NFTPOL" apply -f testdata/upstream-xyz    # replaces ours, leaves theirs
        nft list tables
        nft list table inet nftpol | grep -c 'chain '
        "$NFTPOL" uninstall
        if nft list table inet nftpol 2>/dev/null; then echo "not removed"; exit 1; fi
        nft list table inet othertable >/dev/null   # theirs stays
        "$NFTPOL" uninstall                          # idempotent
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.contains("table inet othertable"),
        "other tables untouched: {stdout}"
    );
    assert_eq!(stdout.matches("table inet nftpol").count(), 1, "{stdout}");
}

#[test]
fn apply_refuses_invalid_policies_and_keeps_the_previous_table() {
    let out = in_fresh_netns(
        r#"
        "$NFTPOL" apply -f testdata/k8s-docs-default-deny-all
        before=$(nft list table inet nftpol)
        if "$NFTPOL" apply -f testdata/invalid-cidr; then echo "applied?!"; exit 1; fi
        after=$(nft list table inet nftpol)
        [ "$before" = "$after" ] && echo unchanged
        "#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("unchanged"));
    assert!(
        text(&out.stderr).contains("not applied"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_rejected_apply_exits_2_and_changes_nothing() {
    // A fake `nft` that fails like a kernel rejection.
    let out = in_fresh_netns(
        r#"
        fake=$(mktemp); printf '#!/bin/sh\necho "Error: Could not process rule" >&2\nexit 1\n' > "$fake"; chmod +x "$fake"
        set +e
        "$NFTPOL" apply --nft "$fake" -f testdata/k8s-docs-default-deny-all
        echo "code=$?"
        rm -f "$fake"
        "#,
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("code=2"), "{stdout} {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("previous ruleset stays in force"));
}

/// A NetworkPolicy with `matchLabel` for `matchLabels`: kubectl's strict
/// validation rejects it; read leniently the namespaceSelector is `{}` and
/// allows every namespace, so the typo would widen access.
const TYPO: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: n}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabel: {team: a}}
";
const TYPO_FIELD: &str = "spec.ingress[0].from[0].namespaceSelector.matchLabel";

#[test]
fn unknown_fields_are_errors_unless_lenient() {
    let graph = ["graph", "-f", "-"];
    let explain = [
        "explain", "-f", "-", "--from", "10.0.0.1", "--to", "10.0.0.2", "--port", "80",
    ];
    for args in [&["compile", "-f", "-"][..], &graph, &explain] {
        let out = run(args, Some(TYPO));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing printed");
        assert!(
            err.contains(&format!(
                "error: - (document 1): NetworkPolicy n/p: {TYPO_FIELD}: unknown field"
            )),
            "{args:?}: names file, document, object and field: {err}"
        );

        let lenient: Vec<&str> = args.iter().copied().chain(["--lenient"]).collect();
        let out = run(&lenient, Some(TYPO));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{lenient:?}: {err}");
        assert!(!out.stdout.is_empty(), "{lenient:?} proceeds");
        assert!(
            err.contains(&format!(
                "warning: - (document 1): NetworkPolicy n/p: {TYPO_FIELD}: unknown field"
            )),
            "{lenient:?}: warns naming the field: {err}"
        );
    }
    // The same manifest spelt right is unaffected.
    let fixed = TYPO.replace("matchLabel:", "matchLabels:");
    let out = run(&["compile", "-f", "-"], Some(&fixed));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "no diagnostics: {err}");
}

#[test]
fn apply_refuses_unknown_fields_before_touching_the_kernel() {
    // `--nft false`: were nft ever run, the apply would fail with exit 2.
    let out = run(
        &["apply", "--check", "--nft", "false", "-f", "-"],
        Some(TYPO),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(TYPO_FIELD), "{err}");
}

/// The upstream ClusterNetworkPolicy examples (network-policy-api's user stories
/// and CRD test fixtures): every valid one compiles to a tiered ruleset nft
/// accepts; the ones upstream itself marks invalid exit 1 naming file and field.
#[test]
fn compile_accepts_the_upstream_cluster_network_policy_examples() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cluster-network-policy/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let (mut valid, mut invalid) = (0, 0);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let out = run(&["compile", "-f", f.to_str().unwrap()], None);
        if name.contains("INVALID") {
            invalid += 1;
            assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
            assert!(
                text(&out.stderr).contains(&name),
                "{name}: the error names the file: {}",
                text(&out.stderr)
            );
            continue;
        }
        valid += 1;
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("hook input"), "{name}: tiered layout");
        let check = in_fresh_netns(&format!("nft -c -f - <<'EOF'\n{script}\nEOF"));
        assert!(
            check.status.success(),
            "{name}: nft -c: {}",
            text(&check.stderr)
        );
    }
    assert_eq!(
        (valid, invalid),
        (6, 3),
        "the upstream examples in {}",
        dir.display()
    );
}
