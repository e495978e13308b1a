//! The `nftpol` binary end to end: exit codes, error messages, inputs from
//! stdin and directories, and `apply` in fresh network namespaces.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // An empty stdin rather than none: `-f -` reads it.
    nftpol_testkit::output_with_stdin(&mut c, Some(stdin.unwrap_or("")), "nftpol")
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
        &["compile", "-f", "-", "--output-file", tmp.to_str().unwrap()],
        Some(&yaml),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.is_empty(),
        "--output-file writes nothing to stdout"
    );
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
        (vec!["compile"], None, 1, true, "--filename", "usage error"),
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

fn tmp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nftpol-cli-{}-{name}", std::process::id()))
}

/// kubectl's convention: `-o FORMAT` everywhere, `--output-file FILE` for
/// files; the old spellings (`compile --format`, `compile -o FILE`, `graph
/// --format`) still work for one release, with a warning on stderr.
#[test]
fn output_flags_follow_kubectl() {
    let case = "testdata/k8s-docs-test-network-policy";
    let ok = |args: &[&str]| {
        let out = run(args, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        // The case's lint findings (egress-without-dns) are warnings on
        // stderr; this test is about the output flags, so it drops them.
        let err = text(&out.stderr)
            .lines()
            .filter(|l| !l.contains("[lint "))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        (text(&out.stdout), err)
    };
    let (nft, err) = ok(&["compile", "-f", case]);
    assert!(nft.starts_with("#!/usr/sbin/nft -f") || nft.contains("table inet nftpol {"));
    assert!(err.is_empty(), "{err}");
    assert_eq!(ok(&["compile", "-f", case, "-o", "nft"]).0, nft);
    let (json, err) = ok(&["compile", "-f", case, "--output", "json"]);
    assert!(
        json.starts_with("{") && json.contains("\"nftables\""),
        "{json}"
    );
    assert!(err.is_empty(), "{err}");
    // Deprecated spellings: same output, one warning.
    let (old, err) = ok(&["compile", "-f", case, "--format", "json"]);
    assert_eq!(old, json);
    assert!(
        err.contains("--format is deprecated") && err.contains("use -o json"),
        "{err}"
    );
    let file = tmp_path("old.nft");
    let (out, err) = ok(&["compile", "-f", case, "-o", file.to_str().unwrap()]);
    assert!(out.is_empty());
    assert!(
        err.contains("`-o FILE` is deprecated") && err.contains("--output-file"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), nft);
    let file = tmp_path("new.json");
    let (out, err) = ok(&[
        "compile",
        "-f",
        case,
        "-o",
        "json",
        "--output-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.is_empty() && err.is_empty(), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), json);

    // explain: -o text|json, --output-file.
    let q = [
        "--from",
        "default/frontend",
        "--to",
        "default/db",
        "--port",
        "6379",
    ];
    let explain = |extra: &[&str]| {
        let mut a = vec!["explain", "-f", case];
        a.extend(q);
        a.extend(extra);
        ok(&a)
    };
    let (long, _) = explain(&["--output", "json"]);
    assert!(long.contains("\"verdict\""), "{long}");
    assert_eq!(explain(&["-o", "json"]).0, long);
    let file = tmp_path("explain.json");
    let (out, _) = explain(&["-o", "json", "--output-file", file.to_str().unwrap()]);
    assert!(out.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), long);
    assert!(explain(&[]).0.contains("allowed") || explain(&[]).0.contains("denied"));

    // graph: -o dot|json, --format deprecated, --output-file.
    let (dot, _) = ok(&["graph", "-f", case]);
    assert!(dot.starts_with("digraph nftpol {"), "{dot}");
    assert_eq!(ok(&["graph", "-f", case, "-o", "dot"]).0, dot);
    let (gjson, err) = ok(&["graph", "-f", case, "-o", "json"]);
    assert!(gjson.contains("\"nodes\"") && err.is_empty(), "{err}");
    let (old, err) = ok(&["graph", "-f", case, "--format", "json"]);
    assert_eq!(old, gjson);
    assert!(err.contains("--format is deprecated"), "{err}");
    let file = tmp_path("graph.dot");
    let (out, _) = ok(&["graph", "-f", case, "--output-file", file.to_str().unwrap()]);
    assert!(out.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), dot);
    for f in ["old.nft", "new.json", "explain.json", "graph.dot"] {
        let _ = std::fs::remove_file(tmp_path(f));
    }
}

/// Usage errors are invalid input (exit 1, message and usage on stderr);
/// `--help` and `--version` print on stdout and exit 0; 2 stays "nftpol
/// itself failed".
#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let case = "testdata/k8s-docs-test-network-policy";
    let usage: &[(&[&str], &str)] = &[
        (&[], "Usage: nftpol <COMMAND>"),
        (
            &["no-such-command"],
            "unrecognized subcommand 'no-such-command'",
        ),
        (&["compile"], "--filename"),
        (&["compile", "-f", case, "--no-such-flag"], "--no-such-flag"),
        (
            &["compile", "-f", case, "-o", "yaml"],
            "-o yaml: unknown output format",
        ),
        (
            &["compile", "-f", case, "-o", "json", "--format", "nft"],
            "--format nft contradicts -o json",
        ),
        (
            &[
                "compile",
                "-f",
                case,
                "-o",
                "x.nft",
                "--output-file",
                "y.nft",
            ],
            "--output-file names the file",
        ),
        (
            &[
                "explain", "-f", case, "--from", "a/b", "--to", "c/d", "--port", "80", "-o", "yaml",
            ],
            "invalid value 'yaml'",
        ),
        (&["graph", "-f", case, "-o", "png"], "invalid value 'png'"),
        (
            &["graph", "-f", case, "-o", "json", "--format", "dot"],
            "--format dot contradicts -o json",
        ),
        (&["completion", "tcsh"], "invalid value 'tcsh'"),
        (&["version", "-o", "yaml"], "invalid value 'yaml'"),
        (&["run"], "--node"),
        (
            &["run", "--node", "n", "--min-interval", "soon"],
            "--min-interval",
        ),
    ];
    for (args, needle) in usage {
        let out = run(args, None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {err}"
        );
    }
    for args in [
        &["--help"][..],
        &["compile", "--help"],
        &["help", "run"],
        &["--version"],
        &["-V"],
    ] {
        let out = run(args, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} prints on stdout");
    }
    // The help states the real kubeconfig lookup order.
    let help = text(&run(&["run", "--help"], None).stdout);
    for needle in [
        "--kubeconfig",
        "$KUBECONFIG",
        "~/.kube/config",
        "in-cluster",
        "--context",
    ] {
        assert!(help.contains(needle), "run --help lacks {needle}: {help}");
    }
}

/// Typed lists as the API (and `kubectl get -o json` of one kind) return
/// them: `PodList`, `NamespaceList`, `NetworkPolicyList` whose items have
/// no `kind`/`apiVersion` compile exactly like the objects written out.
#[test]
fn typed_lists_compile_like_the_objects() {
    let objects = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}}], ports: [{port: 80}]}]
";
    let lists = r#"{"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "9"},
  "items": [{"metadata": {"name": "shop", "labels": {"team": "a"}}}]}
{"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"},
  "items": [{"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
             "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
             "status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]}}]}
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "metadata": {"resourceVersion": "9"},
  "items": [{"metadata": {"name": "web-in", "namespace": "shop"},
             "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                      "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}], "ports": [{"port": 80}]}]}}]}
"#;
    let a = run(&["compile", "-f", "-"], Some(objects));
    let b = run(&["compile", "-f", "-"], Some(lists));
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    assert!(text(&b.stderr).is_empty(), "{}", text(&b.stderr));
    assert!(text(&a.stdout).contains("10.244.1.5"));
    assert_eq!(text(&a.stdout), text(&b.stdout));
    // An item with a kind of its own keeps it (skipped with a warning here);
    // the list's kind fills in only what is missing.
    let mixed = "apiVersion: v1\nkind: PodList\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n- {metadata: {name: p, namespace: a}, status: {podIP: 10.0.0.9}}\n";
    let out = run(&["compile", "-f", "-"], Some(mixed));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "(document 1, item 1): ConfigMap c: kind ConfigMap is not used by nftpol; skipped"
        ),
        "{err}"
    );
    assert!(text(&out.stdout).contains("10.0.0.9"));
}

#[test]
fn completion_scripts_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _nftpol"),
        ("zsh", "#compdef nftpol"),
        ("fish", "complete -c nftpol"),
        ("elvish", "edit:completion:arg-completer[nftpol]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run(&["completion", shell], None);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: lacks {marker:?}");
        for word in ["compile", "explain", "output-file", "kubeconfig"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    // The bash script is valid bash.
    let script = text(&run(&["completion", "bash"], None).stdout);
    let path = tmp_path("completion.bash");
    std::fs::write(&path, script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
    let _ = std::fs::remove_file(path);
}

#[test]
fn man_pages_for_every_visible_command() {
    let out = run(&["man"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH nftpol 1"), "{page}");
    assert!(
        page.contains("compile") && page.contains("explain"),
        "{page}"
    );
    let dir = tmp_path("man");
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(&["man", "--output-dir", dir.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "nftpol-apply.1",
            "nftpol-compile.1",
            "nftpol-completion.1",
            "nftpol-diff.1",
            "nftpol-explain.1",
            "nftpol-graph.1",
            "nftpol-man.1",
            "nftpol-run.1",
            "nftpol-status.1",
            "nftpol-uninstall.1",
            "nftpol-version.1",
            "nftpol.1"
        ],
        "one page per visible command (the hidden `crd` has none)"
    );
    let compile = std::fs::read_to_string(dir.join("nftpol-compile.1")).unwrap();
    assert!(compile.contains(".TH nftpol-compile 1"), "{compile}");
    assert!(
        compile.contains("output\\-file"),
        "documents --output-file: {compile}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `nftpol version`: the build facts, and the nft and kernel found, which
/// the test reads independently.
#[test]
fn version_reports_build_and_machine() {
    let out = run(&["version", "-o", "json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_string());
    if let Some(c) = commit {
        // A commit made after the build would differ; the test binary and
        // nftpol are built together, so HEAD is the build's commit.
        assert_eq!(v["commit"], c.as_str());
    }
    assert!(
        v["build_date"]
            .as_str()
            .is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-'),
        "{v}"
    );
    assert!(
        v["rustc"].as_str().is_some_and(|r| r.starts_with("rustc ")),
        "{v}"
    );
    let nft = text(
        &Command::new("nft")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    );
    let nft_version = v["nft"].as_str().expect("nft found");
    assert!(nft.contains(&format!("v{nft_version}")), "{nft} vs {v}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(v["kernel"], kernel.trim());
    assert_eq!(v["problems"], serde_json::json!([]));
    let out = run(&["version"], None);
    let t = text(&out.stdout);
    assert!(
        t.starts_with(&format!("nftpol {}\n", env!("CARGO_PKG_VERSION"))),
        "{t}"
    );
    assert!(
        t.contains(&format!("nft:        {nft_version} (nft)")),
        "{t}"
    );

    // A missing nft is reported, not fatal.
    let out = run(&["version", "--nft", "/no/such/nft"], None);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(
        t.contains("nft:        unknown (/no/such/nft)")
            && t.contains("problem:    cannot run /no/such/nft"),
        "{t}"
    );
}

/// `compile --stats`: the cost report replaces the ruleset (text, and JSON
/// with `-o json`), one row per node the input names plus the whole
/// cluster; the lints go to stderr and never change the exit code.
#[test]
fn stats_report_per_node_and_lints_on_stderr() {
    let out = run(
        &[
            "compile",
            "-f",
            "testdata/lint-cnp-same-priority",
            "--stats",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("stats-lint-cnp-same-priority", report));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("[lint cnp-same-priority]") && stderr.starts_with("warning: "),
        "{stderr}"
    );

    let out = run(
        &[
            "compile",
            "-f",
            "testdata/lint-cnp-same-priority",
            "--stats",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node-1", "node-2"]);
    assert!(v["cluster"]["rules"].as_u64().unwrap() > 0, "{v}");
    assert!(v["cluster"]["load_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(
        v["model"]["packet_per_rule_ns"].as_f64().unwrap() > 0.0,
        "{v}"
    );

    // A bad --service-cidr is invalid input (exit 1) naming the flag.
    let out = run(
        &[
            "compile",
            "-f",
            "testdata/lint-ipblock-ranges",
            "--service-cidr",
            "10.96.0.0/33",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--service-cidr"),
        "{}",
        text(&out.stderr)
    );
    // explain shows the lints too.
    let out = run(
        &[
            "explain",
            "-f",
            "testdata/lint-ipblock-ranges",
            "--from",
            "default/client",
            "--to",
            "default/web",
            "--port",
            "8080",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[lint ipblock-pod-range]"),
        "{}",
        text(&out.stderr)
    );
}
