//! The Helm chart `charts/nftpol` with the real `helm` (helm.sh/helm/v4,
//! built from Go modules by `hack/helm-binary.sh`) and, for the last two
//! tests, the real control plane (etcd + kube-apiserver, as in
//! tests/control_plane.rs): `helm lint --strict` passes; the default
//! rendering is deploy/install.yaml object for object (the one documented
//! difference: the Namespace only with `namespace.create=true`); every flag
//! of `nftpol run` (from the real CLI parser, so a new flag fails here until
//! the chart has a value for it) is a chart value that reaches the agent's
//! command line; the rendering is accepted by `kubectl apply
//! --dry-run=server`; and `helm install`, `upgrade`, `rollback` and
//! `uninstall` work against the API server.
//!
//! `helm` comes from `$NFTPOL_HELM_BIN` (the binary; `.ci/run` sets it), else
//! from `hack/helm-binary.sh`, which builds it into its cache on first use
//! (about 5 minutes once per machine; 0.1 s after that). A test that cannot
//! have it fails; none is skipped. The control-plane tests need root, like
//! tests/control_plane.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use clap::{ArgAction, CommandFactory, Parser};
use nftpol::cli::{Cli, Command as Sub};
use nftpol_testkit::control_plane::{ControlPlane, ensure_binaries, repo};
use nftpol_testkit::netns::in_new_netns;
use serde_json::{Value, json};

const CHART: &str = "charts/nftpol";
const RELEASE: &str = "nftpol";
const NAMESPACE: &str = "nftpol";

/// The helm binary: `$NFTPOL_HELM_BIN`, else what `hack/helm-binary.sh`
/// prints (building it first if its cache lacks it). Panics (failing the
/// test) with the reason when there is none. Call it outside any fresh
/// network namespace: a build needs the Go module proxy.
fn helm_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("NFTPOL_HELM_BIN").filter(|b| !b.is_empty()) {
            return Ok(PathBuf::from(bin));
        }
        let instead = format!("set NFTPOL_HELM_BIN to a helm {} binary", helm_version());
        nftpol_testkit::control_plane::built_by_script("hack/helm-binary.sh", &instead)
            .map(|dir| dir.join("helm"))
    })
    .clone()
    .unwrap_or_else(|why| panic!("no helm: {why}"))
}

/// HELM_VERSION of hack/k8s-versions.env.
fn helm_version() -> String {
    let env = std::fs::read_to_string(repo().join("hack/k8s-versions.env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix("HELM_VERSION="))
        .expect("HELM_VERSION in hack/k8s-versions.env")
        .trim()
        .to_string()
}

/// Runs helm in the repository with its own (empty) cache, config and data
/// directories, feeding `stdin` if given.
fn helm_output(args: &[&str], stdin: Option<&str>) -> Output {
    let home = std::env::temp_dir().join(format!("nftpol-helm-home-{}", std::process::id()));
    let mut cmd = Command::new(helm_bin());
    cmd.args(args)
        .current_dir(repo())
        .env_remove("KUBECONFIG")
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    nftpol_testkit::output_with_stdin(&mut cmd, stdin, "helm")
}

/// helm's stdout; panics with its output unless it succeeds.
fn helm(args: &[&str]) -> String {
    let out = helm_output(args, None);
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template nftpol charts/nftpol --namespace nftpol ARGS...`.
fn template(args: &[&str]) -> String {
    let mut all = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    all.extend_from_slice(args);
    helm(&all)
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Objects by `kind namespace/name`.
fn objects(text: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for doc in yaml_docs(text) {
        let key = format!(
            "{} {}/{}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["namespace"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert!(out.insert(key.clone(), doc).is_none(), "{key} twice");
    }
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Asserts two object maps are equal, naming the first object that differs.
fn assert_same_objects(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the same objects"
    );
    for (k, w) in want {
        let g = &got[k];
        assert!(
            g == w,
            "{what}: {k} differs\n--- rendered by helm:\n{}\n--- deploy/install.yaml:\n{}",
            serde_json::to_string_pretty(g).unwrap(),
            serde_json::to_string_pretty(w).unwrap()
        );
    }
}

/// The DaemonSet of a rendering.
fn daemonset(rendered: &str) -> Value {
    yaml_docs(rendered)
        .into_iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet")
}

/// The agent container's command + args.
fn argv(ds: &Value) -> Vec<String> {
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let mut argv: Vec<String> = serde_json::from_value(c["command"].clone()).unwrap();
    argv.extend(serde_json::from_value::<Vec<String>>(c["args"].clone()).unwrap());
    argv
}

/// Parses a DaemonSet's command line with the agent's real parser (with
/// `--node`, which the pod takes from NODE_NAME).
fn parses(argv: &[String]) -> Result<(), String> {
    let mut argv = argv.to_vec();
    argv.extend(["--node".to_string(), "n1".to_string()]);
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Sub::Run(_),
        }) => Ok(()),
        Ok(other) => Err(format!("{argv:?} is not `nftpol run`: {other:?}")),
        Err(e) => Err(format!("{argv:?}: {e}")),
    }
}

#[test]
fn helm_lint_strict_passes() {
    for set in [
        &[][..],
        &["--set", "namespace.create=true"],
        &[
            "--set",
            "agent.resync=5s,agent.logGroup=3,agent.logDrops=true,image.tag=0.2.0",
        ],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(set);
        let out = helm(&args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        for line in out.lines() {
            assert!(
                !line.starts_with("[WARNING]") && !line.starts_with("[ERROR]"),
                "helm lint {set:?}: {line}"
            );
        }
    }
    // The version is the pinned one (the cache key says so too).
    assert_eq!(
        helm(&["version", "--template", "{{.Version}}"]),
        helm_version()
    );
}

#[test]
fn the_default_rendering_is_install_yaml() {
    let install = objects(&read("deploy/install.yaml"));
    // With namespace.create=true: every object, field for field.
    let all = objects(&template(&["--set", "namespace.create=true"]));
    assert_same_objects(&all, &install, "helm template --set namespace.create=true");
    // The defaults: the same without the Namespace (helm install
    // --create-namespace makes it).
    let mut want = install.clone();
    let ns = want
        .remove(&format!("Namespace /{NAMESPACE}"))
        .expect("install.yaml has the Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        json!("privileged")
    );
    assert_same_objects(&objects(&template(&[])), &want, "helm template");
    // The CRD of crds/ is deploy/'s (`--include-crds` adds it, and only it).
    let mut with_crds = objects(&template(&["--include-crds"]));
    let crd = with_crds
        .remove("CustomResourceDefinition /clusternetworkpolicies.policy.networking.k8s.io")
        .expect("the CRD with --include-crds");
    assert_eq!(
        crd,
        yaml_docs(&read("deploy/crd-clusternetworkpolicies.yaml"))[0]
    );
    assert_same_objects(&with_crds, &want, "helm template --include-crds");
}

#[test]
fn every_run_flag_is_a_chart_value_that_reaches_the_agent() {
    let defaults = daemonset(&template(&[]));
    let default_argv = argv(&defaults);
    parses(&default_argv).unwrap();

    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run");
    let mut checked = Vec::new();
    let mut all_set = Vec::new();
    let mut all_flags = Vec::new();
    for a in run.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        // --node comes from the downward API (NODE_NAME), per node.
        if matches!(long, "help" | "version" | "node") {
            continue;
        }
        let key = nftpol_testkit::chart_value_key(long);
        let flag = format!("--{long}");
        let (set, expect): (String, String) = if matches!(a.get_action(), ArgAction::SetTrue) {
            let on = default_argv.contains(&flag);
            // The switch flips: on by default -> false removes it, and back.
            (
                format!("agent.{key}={}", !on),
                if on { String::new() } else { flag.clone() },
            )
        } else {
            // A value the real parser accepts for this flag and the default
            // rendering does not already pass.
            let candidate = [
                "7s",
                "7",
                "0.0.0.0:9999",
                "/etc/nftpol/kubeconfig",
                "false",
                "10.99.0.0/16",
                "nft",
            ]
            .into_iter()
            .find(|c| {
                let arg = format!("{flag}={c}");
                let mut argv = default_argv.clone();
                argv.retain(|x| !x.starts_with(&format!("{flag}=")));
                argv.push(arg.clone());
                !default_argv.contains(&arg) && parses(&argv).is_ok()
            })
            .unwrap_or_else(|| panic!("no test value for {flag}"));
            (
                format!("agent.{key}={candidate}"),
                format!("{flag}={candidate}"),
            )
        };
        let out = helm_output(
            &[
                "template",
                RELEASE,
                CHART,
                "--namespace",
                NAMESPACE,
                "--set",
                &set,
            ],
            None,
        );
        assert!(
            out.status.success(),
            "`nftpol run {flag}` has no chart value agent.{key} (charts/nftpol/values.yaml \
             and values.schema.json): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = argv(&daemonset(&String::from_utf8_lossy(&out.stdout)));
        if expect.is_empty() {
            assert!(!got.contains(&flag), "--set {set}: {flag} still in {got:?}");
        } else {
            assert!(
                got.contains(&expect),
                "`nftpol run {flag}`: --set {set} does not reach the agent: {got:?} (add it to \
                 the nftpol.args helper of charts/nftpol/templates/_helpers.tpl)"
            );
        }
        parses(&got).unwrap_or_else(|e| panic!("--set {set}: {e}"));
        checked.push(flag.clone());
        all_set.push(set);
        all_flags.push(expect);
    }
    assert!(checked.len() >= 11, "{checked:?}");

    // Everything at once, plus extraArgs (after the values).
    let mut args = vec![];
    for s in &all_set {
        args.extend(["--set", s.as_str()]);
    }
    args.extend(["--set-json", r#"extraArgs=["--resync=9s"]"#]);
    let ds = daemonset(&template(&args));
    let got = argv(&ds);
    for f in all_flags.iter().filter(|f| !f.is_empty()) {
        assert!(got.contains(f), "{f} in {got:?}");
    }
    assert_eq!(got.last().map(String::as_str), Some("--resync=9s"));
    parses(&got).unwrap_err(); // --resync twice: clap refuses a repeat
    // The listen port is the container's, the probes' (by name) and the
    // Service's.
    let rendered = template(&["--set", "agent.listen=[::]:9999"]);
    let ds = daemonset(&rendered);
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], json!(9999));
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], json!("metrics"));
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        json!("9999")
    );
    let svc = yaml_docs(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "Service")
        .unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], json!(9999));
    // values.schema.json: a misspelt or out-of-range value is refused, not
    // ignored.
    for (set, says) in [
        (
            "agent.minIntervall=1s",
            "additional properties 'minIntervall' not allowed",
        ),
        ("agent.logGroup=70000", "/agent/logGroup"),
    ] {
        let out = helm_output(&["template", RELEASE, CHART, "--set", set], None);
        assert!(!out.status.success(), "--set {set} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "--set {set}: {err}");
    }
    // A listen address without a port is refused: by the schema, and by
    // the template itself when the schema is skipped.
    for (skip, says) in [
        (false, "/agent/listen"),
        (true, "agent.listen must be ADDRESS:PORT"),
    ] {
        let mut args = vec!["template", RELEASE, CHART, "--set", "agent.listen=0.0.0.0"];
        if skip {
            args.push("--skip-schema-validation");
        }
        let out = helm_output(&args, None);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
}

/// Values that change every optional part of the chart (for the server's
/// verdict on the less travelled template branches).
const EVERYTHING: &str = r#"
image: {repository: ghcr.io/example/nftpol, tag: 0.2.0, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
agent:
  kubeconfig: /etc/nftpol/kubeconfig
  minInterval: 200ms
  maxDelay: 2s
  resync: 30s
  logDrops: true
  logGroup: 0
  logRate: 1000000
  logBurst: 5
  failClosedNewPods: false
  podCidr: [10.99.0.0/16, "fd00:99::/64"]
  logLevel: nftpol=debug
extraArgs: []
extraEnv: [{name: KUBERNETES_SERVICE_HOST, value: 10.0.0.1}]
extraVolumes: [{name: kubeconfig, secret: {secretName: nftpol-kubeconfig}}]
extraVolumeMounts: [{name: kubeconfig, mountPath: /etc/nftpol, readOnly: true}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: example.com/no-nftpol, operator: DoesNotExist}]
podLabels: {team: net}
podAnnotations: {example.com/owner: net}
maxUnavailable: 10%
"#;

/// `kubectl apply --dry-run=server` of `yaml` as the admin; its stdout.
fn dry_run(cp: &ControlPlane, yaml: &str, server_side: bool) -> String {
    let mut args = vec!["apply", "--dry-run=server", "--validate=strict", "-f", "-"];
    if server_side {
        args.push("--server-side");
    }
    let out = cp.kubectl_as(cp.admin_kubeconfig(), &args, Some(yaml));
    assert!(
        out.status.success(),
        "kubectl {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_rendered_chart_is_accepted_by_the_api_server() {
    ensure_binaries();
    let defaults = template(&[]);
    let with_ns = template(&["--set", "namespace.create=true", "--include-crds"]);
    let values =
        std::env::temp_dir().join(format!("nftpol-helm-values-{}.yaml", std::process::id()));
    std::fs::write(&values, EVERYTHING).unwrap();
    let everything = template(&["--include-crds", "-f", values.to_str().unwrap()]);
    let _ = std::fs::remove_file(&values);
    let ds = daemonset(&everything);
    parses(&argv(&ds)).unwrap();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        // The Namespace and the two CRDs (ClusterNetworkPolicy,
        // NodeProgramStatus) alone, dry (the namespaced objects would need
        // the Namespace to exist): all new to this server.
        let items: Vec<Value> = yaml_docs(&with_ns)
            .into_iter()
            .filter(|d| d["kind"] == "Namespace" || d["kind"] == "CustomResourceDefinition")
            .collect();
        assert_eq!(items.len(), 3);
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let out = dry_run(&cp, &list, false);
        assert!(
            out.contains("namespace/nftpol created (server dry run)"),
            "{out}"
        );
        // The release namespace as `helm install --create-namespace` makes it.
        cp.kubectl_ok(&["create", "namespace", NAMESPACE]);
        for (what, yaml) in [("defaults", &defaults), ("every option", &everything)] {
            for server_side in [false, true] {
                let out = dry_run(&cp, yaml, server_side);
                let n = objects(yaml).len();
                assert_eq!(
                    out.lines()
                        .filter(|l| l.ends_with("(server dry run)"))
                        .count(),
                    n,
                    "{what} (server-side {server_side}): every object:\n{out}"
                );
            }
        }
        // Dry: nothing was created.
        let got = cp.kubectl(&["get", "daemonset", "nftpol", "-n", NAMESPACE]);
        assert!(!got.status.success(), "a dry run creates nothing");
        // A typo in a value that lands in the DaemonSet is refused by the server.
        let typo = template(&["--set-json", r#"affinity={"nodeAfinity":{}}"#]);
        let out = cp.kubectl_as(
            cp.admin_kubeconfig(),
            &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
            Some(&typo),
        );
        assert!(!out.status.success(), "strict validation of the rendering");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nodeAfinity"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn helm_install_upgrade_rollback_uninstall_on_the_api_server() {
    ensure_binaries();
    helm_bin();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        let kc = cp.admin_kubeconfig().to_str().unwrap().to_string();
        let h = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--kubeconfig", &kc, "--namespace", NAMESPACE]);
            helm(&all)
        };
        let image = || -> String {
            let ds: Value = serde_json::from_str(&cp.kubectl_ok(&[
                "get",
                "daemonset",
                "nftpol",
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ]))
            .unwrap();
            ds["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        };
        // No controller manager here: nothing becomes ready, and helm's
        // default (--wait=hookOnly, and the chart has no hooks) does not wait.
        let out = h(&["install", RELEASE, CHART, "--create-namespace"]);
        assert!(out.contains("STATUS: deployed"), "{out}");
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(image(), format!("nftpol:{version}"));
        // crds/ installed the CRD (absent before).
        cp.kubectl_ok(&[
            "get",
            "crd",
            "clusternetworkpolicies.policy.networking.k8s.io",
        ]);
        // What helm applied is what it renders: e.g. the RBAC.
        let role: Value =
            serde_json::from_str(&cp.kubectl_ok(&["get", "clusterrole", "nftpol", "-o", "json"]))
                .unwrap();
        let install = objects(&read("deploy/install.yaml"));
        assert_eq!(
            role["rules"], install["ClusterRole /nftpol"]["rules"],
            "the installed ClusterRole is install.yaml's"
        );
        // Upgrade to another image (as a new version would), keeping the
        // values given before over the chart's defaults.
        h(&[
            "upgrade",
            RELEASE,
            CHART,
            "--reset-then-reuse-values",
            "--set",
            "image.repository=ghcr.io/example/nftpol,image.tag=9.9.9",
        ]);
        assert_eq!(image(), "ghcr.io/example/nftpol:9.9.9");
        let history = h(&["history", RELEASE]);
        assert!(history.lines().count() >= 3, "{history}");
        h(&["rollback", RELEASE, "1"]);
        assert_eq!(image(), format!("nftpol:{version}"));
        h(&["uninstall", RELEASE]);
        let gone = cp.kubectl(&["get", "daemonset", "nftpol", "-n", NAMESPACE]);
        assert!(!gone.status.success(), "uninstall removes the DaemonSet");
        let gone = cp.kubectl(&["get", "clusterrole", "nftpol"]);
        assert!(!gone.status.success(), "and the ClusterRole");
        // Helm never deletes what crds/ installed.
        cp.kubectl_ok(&[
            "get",
            "crd",
            "clusternetworkpolicies.policy.networking.k8s.io",
        ]);

        // Moving from deploy/install.yaml to the chart, as docs/operations.md
        // shows it. install.yaml with a registry's image (the documented
        // `sed`, run by sh) and client-side `kubectl apply`; then helm adopts
        // the objects with --take-ownership, and --force-conflicts takes over
        // the fields kubectl manages (helm 4 applies server-side: fields the
        // server normalised, such as the quota's `10000` stored as `10k` or
        // the defaulted `fieldRef.apiVersion`, count as conflicts).
        let registry = "ghcr.io/example/nftpol";
        let sed = Command::new("sh")
            .arg("-c")
            .arg(format!(
                r#"sed "s|image: nftpol:{version}|image: $IMAGE|" deploy/install.yaml"#
            ))
            .env("IMAGE", format!("{registry}:{version}"))
            .current_dir(repo())
            .output()
            .expect("sh runs");
        assert!(sed.status.success());
        let manifest = String::from_utf8(sed.stdout).unwrap();
        let applied = cp.kubectl_as(
            cp.admin_kubeconfig(),
            &["apply", "-f", "-"],
            Some(&manifest),
        );
        assert!(
            applied.status.success(),
            "kubectl apply -f - of the sed output: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
        assert_eq!(image(), format!("{registry}:{version}"));
        let refused = helm_output(
            &[
                "install",
                RELEASE,
                CHART,
                "--kubeconfig",
                &kc,
                "--namespace",
                NAMESPACE,
            ],
            None,
        );
        assert!(
            !refused.status.success(),
            "helm does not take over objects it did not create unless told"
        );
        let set = format!("image.repository={registry}");
        let out = h(&[
            "upgrade",
            "--install",
            RELEASE,
            CHART,
            "--take-ownership",
            "--force-conflicts",
            "--set",
            &set,
        ]);
        assert!(out.contains("STATUS: deployed"), "{out}");
        let ds: Value = serde_json::from_str(&cp.kubectl_ok(&[
            "get",
            "daemonset",
            "nftpol",
            "-n",
            NAMESPACE,
            "-o",
            "json",
        ]))
        .unwrap();
        assert_eq!(
            ds["metadata"]["annotations"]["meta.helm.sh/release-name"],
            json!(RELEASE),
            "the DaemonSet now belongs to the release"
        );
        assert_eq!(image(), format!("{registry}:{version}"));
    });
}
