//! nftpol against the real Kubernetes control plane (etcd + kube-apiserver
//! with TLS and RBAC, the test kit's `control_plane`), as it runs in a
//! cluster: `deploy/` accepted by strict server-side apply; the agent's
//! ServiceAccount allowed exactly what `deploy/manifests/01-rbac.yaml` grants (the real
//! authorizer's `auth can-i --list`); the agent syncing with a token-only
//! kubeconfig; and every single permission of the ClusterRole needed (the
//! agent fails visibly without it).
//!
//! Each test starts its own control plane inside a fresh network namespace
//! (the agent's nft table lives there too, and it reaches the API server on
//! that namespace's loopback). Needs root. The binaries come from
//! `NFTPOL_K8S_BIN`, else `hack/k8s-binaries.sh` builds them into its cache
//! on first use; a test that cannot have them fails, none is skipped (the
//! test kit's `control_plane::bin_dir`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use nftpol_testkit::agent::{AgentProcess, http_get, metric};
use nftpol_testkit::control_plane::{ControlPlane, ensure_binaries, repo};
use nftpol_testkit::netns::in_new_netns;
use nftpol_testkit::wait_for;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const NODE: &str = "node-1";

/// `kubectl apply --server-side --validate=strict -f deploy/` as the admin.
fn apply_deploy(cp: &ControlPlane) -> String {
    let deploy = repo().join("deploy");
    cp.kubectl_ok(&[
        "apply",
        "--server-side",
        "--validate=strict",
        "-f",
        deploy.to_str().unwrap(),
    ])
}

/// The documents of a YAML file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// The ClusterRole `nftpol` of deploy/manifests/01-rbac.yaml.
fn cluster_role() -> ClusterRole {
    let doc = yaml_docs("deploy/manifests/01-rbac.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "nftpol")
        .expect("deploy/manifests/01-rbac.yaml has ClusterRole nftpol");
    serde_json::from_value(doc).unwrap()
}

/// One line of `kubectl auth can-i --list`: a resource (`pods`,
/// `networkpolicies.networking.k8s.io`) or a non-resource URL, the resource
/// names (`[]` = all) and one verb.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    Resource {
        resource: String,
        names: String,
        verb: String,
    },
    Url {
        url: String,
        verb: String,
    },
}

/// The grants of a ClusterRole's rules, in `auth can-i --list` terms.
fn grants_of(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        let names = format!(
            "[{}]",
            r.resource_names.clone().unwrap_or_default().join(" ")
        );
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                let resource = if g.is_empty() {
                    res.clone()
                } else {
                    format!("{res}.{g}")
                };
                for v in &r.verbs {
                    out.insert(Grant::Resource {
                        resource: resource.clone(),
                        names: names.clone(),
                        verb: v.clone(),
                    });
                }
            }
        }
        for url in r.non_resource_urls.iter().flatten() {
            for v in &r.verbs {
                out.insert(Grant::Url {
                    url: url.clone(),
                    verb: v.clone(),
                });
            }
        }
    }
    out
}

/// Parses the table `kubectl auth can-i --list` prints (columns `Resources`,
/// `Non-Resource URLs`, `Resource Names`, `Verbs`, aligned with spaces).
fn parse_can_i(table: &str) -> BTreeSet<Grant> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let col = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("column {name:?} in {header:?}"))
    };
    let (c_urls, c_names, c_verbs) = (
        col("Non-Resource URLs"),
        col("Resource Names"),
        col("Verbs"),
    );
    assert_eq!(col("Resources"), 0, "{header}");
    let list = |s: &str| -> Vec<String> {
        let s = s.trim();
        let inner = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or_else(|| panic!("a [list]: {s:?}"));
        inner.split_whitespace().map(str::to_string).collect()
    };
    let mut out = BTreeSet::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let field = |a: usize, b: usize| line.get(a..b.min(line.len())).unwrap_or("").trim();
        let resource = field(0, c_urls);
        let urls = list(field(c_urls, c_names));
        let names = format!("[{}]", list(field(c_names, c_verbs)).join(" "));
        let verbs = list(field(c_verbs, line.len()));
        for verb in verbs {
            if resource.is_empty() {
                for url in &urls {
                    out.insert(Grant::Url {
                        url: url.clone(),
                        verb: verb.clone(),
                    });
                }
            } else {
                assert!(urls.is_empty(), "a resource line with URLs: {line}");
                out.insert(Grant::Resource {
                    resource: resource.to_string(),
                    names: names.clone(),
                    verb: verb.clone(),
                });
            }
        }
    }
    out
}

/// What `kubeconfig`'s user may do, by the real authorizer.
fn can_i_list(cp: &ControlPlane, kubeconfig: &Path) -> BTreeSet<Grant> {
    let out = cp.kubectl_as(kubeconfig, &["auth", "can-i", "--list"], None);
    assert!(
        out.status.success(),
        "auth can-i --list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_can_i(&String::from_utf8_lossy(&out.stdout))
}

/// `nft list table inet nftpol` in this thread's namespace, or None.
fn table() -> Option<String> {
    nftpol_testkit::listing::table_text_here()
}

/// `nftpol run` as the DaemonSet would run it: `--kubeconfig` (token only),
/// `--node`, its own metrics address; stderr (the log) into `log`.
fn start_agent(kubeconfig: &Path, listen: &str, log: &Path) -> AgentProcess {
    let log = std::fs::File::create(log).unwrap();
    AgentProcess::spawn(
        nftpol_testkit::agent::command(BIN, NODE, listen, kubeconfig)
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info")
            .stderr(log),
    )
}

fn readyz(listen: &str) -> Option<u16> {
    http_get(listen, "/readyz").map(|(c, _)| c)
}

#[test]
fn deploy_is_accepted_by_strict_server_side_apply() {
    ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        let out = apply_deploy(&cp);
        for obj in [
            "namespace/nftpol",
            "serviceaccount/nftpol",
            "clusterrole.rbac.authorization.k8s.io/nftpol",
            "clusterrolebinding.rbac.authorization.k8s.io/nftpol",
            "daemonset.apps/nftpol",
        ] {
            assert!(
                out.contains(&format!("{obj} serverside-applied")),
                "{obj} applied:\n{out}"
            );
        }
        // What the server stored is what the manifests say (nothing dropped
        // or defaulted away): the DaemonSet keeps hostNetwork and its priority.
        let ds: Value = serde_json::from_str(&cp.kubectl_ok(&[
            "get",
            "daemonset",
            "nftpol",
            "-n",
            "nftpol",
            "-o",
            "json",
        ]))
        .unwrap();
        let spec = &ds["spec"]["template"]["spec"];
        assert_eq!(spec["hostNetwork"], json!(true));
        assert_eq!(spec["priorityClassName"], json!("system-node-critical"));
        assert_eq!(spec["serviceAccountName"], json!("nftpol"));
        // Re-applying is a no-op, and a typo is rejected by the real schema.
        apply_deploy(&cp);
        let typo = cp.apply_output(
            r#"{"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "typo", "namespace": "nftpol", "lables": {"a": "b"}}}"#,
        );
        assert!(!typo.status.success(), "strict validation rejects a typo");
        assert!(
            String::from_utf8_lossy(&typo.stderr).contains("lables"),
            "the error names the field: {}",
            String::from_utf8_lossy(&typo.stderr)
        );
    });
}

#[test]
fn service_account_may_do_exactly_what_the_cluster_role_grants() {
    ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        apply_deploy(&cp);
        // What every service account gets by default (system:basic-user,
        // system:discovery, system:public-info-viewer,
        // system:cluster-trust-bundle-discovery): a fresh account with no
        // binding of its own, in the same namespace.
        cp.kubectl_ok(&["create", "serviceaccount", "baseline", "-n", "nftpol"]);
        let baseline = can_i_list(&cp, &cp.token_kubeconfig("nftpol", "baseline"));
        let nftpol = can_i_list(&cp, &cp.token_kubeconfig("nftpol", "nftpol"));
        let want = grants_of(&cluster_role().rules.unwrap_or_default());

        assert!(!want.is_empty());
        assert!(
            want.is_disjoint(&baseline),
            "the ClusterRole grants nothing every account has anyway: {:?}",
            want.intersection(&baseline).collect::<Vec<_>>()
        );
        // Sanity of the baseline: self-reviews and discovery, nothing the agent reads.
        assert!(baseline.contains(&Grant::Resource {
            resource: "selfsubjectaccessreviews.authorization.k8s.io".into(),
            names: "[]".into(),
            verb: "create".into(),
        }));
        assert!(baseline.contains(&Grant::Url {
            url: "/version".into(),
            verb: "get".into(),
        }));
        for g in &baseline {
            if let Grant::Resource { resource, .. } = g {
                assert!(
                    ![
                        "pods",
                        "namespaces",
                        "networkpolicies.networking.k8s.io",
                        "*.*"
                    ]
                    .contains(&resource.as_str()),
                    "baseline grants {g:?}"
                );
            }
        }

        let extra: BTreeSet<Grant> = nftpol.difference(&baseline).cloned().collect();
        assert_eq!(
            extra, want,
            "auth can-i --list as nftpol, minus the defaults, is exactly deploy/manifests/01-rbac.yaml"
        );
        assert!(baseline.is_subset(&nftpol));
    });
}

#[test]
fn agent_syncs_with_its_service_account_token() {
    ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        apply_deploy(&cp);
        let kc = cp.token_kubeconfig("nftpol", "nftpol");
        let listen = "127.0.0.1:9750";
        let log = cp.scratch().join("agent.log");
        let _agent = start_agent(&kc, listen, &log);
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

        wait_for("readiness", Duration::from_secs(60), || {
            readyz(listen) == Some(200)
        });
        wait_for("table inet nftpol", Duration::from_secs(10), || {
            table().is_some()
        });
        assert_eq!(metric(listen, "nftpol_watch_errors_total", ""), 0.0);

        cp.apply(
            r#"{"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "shop", "labels": {"team": "a"}}}"#,
        );
        cp.apply(&format!(
            r#"{{"apiVersion": "v1", "kind": "Pod",
                "metadata": {{"name": "web", "namespace": "shop", "labels": {{"app": "web"}}}},
                "spec": {{"nodeName": "{NODE}", "containers": [{{"name": "c", "image": "i",
                    "ports": [{{"name": "http", "containerPort": 8080}}]}}]}}}}"#
        ));
        cp.kubectl_ok(&[
            "patch",
            "pod",
            "web",
            "-n",
            "shop",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"10.244.1.5",
                "podIPs":[{"ip":"10.244.1.5"},{"ip":"fd00:10:244:1::5"}]}}"#,
        ]);
        cp.apply(
            r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "web-in", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}}"#,
        );
        wait_for(
            "the pod and its policy in the table",
            Duration::from_secs(20),
            || {
                table().is_some_and(|t| {
                    t.contains("10.244.1.5 : jump ingress-group-")
                        && t.contains("fd00:10:244:1::5 : jump ingress-group-")
                        && t.contains("shop/web-in")
                })
            },
        );
        assert_eq!(metric(listen, "nftpol_enforced_pods", ""), 1.0);
        assert_eq!(readyz(listen), Some(200));
        assert_eq!(
            metric(listen, "nftpol_watch_errors_total", ""),
            0.0,
            "no watch error with the granted permissions:\n{}",
            log_text()
        );
        assert!(!log_text().contains("forbidden"), "{}", log_text());
        // Its NodeProgramStatus, written with deploy/'s Role.
        wait_for("the node's status written", Duration::from_secs(20), || {
            metric(listen, "nftpol_status_writes_total", "result=\"ok\"") >= 1.0
        });
        assert_eq!(
            metric(listen, "nftpol_status_writes_total", "result=\"error\""),
            0.0
        );
    });
}

/// `rules` without `verb` on `resource` (an `apiGroup/resource` pair).
fn without(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for r in rules {
        let groups = r.api_groups.clone().unwrap_or_default();
        let resources = r.resources.clone().unwrap_or_default();
        if !(groups.iter().any(|g| g == group) && resources.iter().any(|x| x == resource)) {
            out.push(r.clone());
            continue;
        }
        assert_eq!(
            groups.len(),
            1,
            "one API group per rule in deploy/manifests/01-rbac.yaml"
        );
        let others: Vec<String> = resources
            .iter()
            .filter(|x| *x != resource)
            .cloned()
            .collect();
        if !others.is_empty() {
            out.push(PolicyRule {
                resources: Some(others),
                ..r.clone()
            });
        }
        let verbs: Vec<String> = r.verbs.iter().filter(|v| *v != verb).cloned().collect();
        if !verbs.is_empty() {
            out.push(PolicyRule {
                resources: Some(vec![resource.to_string()]),
                verbs,
                ..r.clone()
            });
        }
    }
    out
}

#[test]
fn agent_fails_visibly_without_any_one_permission() {
    ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        apply_deploy(&cp);
        let role = cluster_role();
        let rules = role.rules.clone().unwrap_or_default();
        let full = grants_of(&rules);

        // One account per removed permission, bound to a copy of the
        // ClusterRole without it; all agents run at once (none of them may
        // sync, so none writes the namespace's table).
        struct Case {
            verb: String,
            resource: String,
            group: String,
            listen: String,
            log: std::path::PathBuf,
            agent: Option<AgentProcess>,
        }
        let mut cases = Vec::new();
        for r in &rules {
            for group in r.api_groups.iter().flatten() {
                for resource in r.resources.iter().flatten() {
                    for verb in &r.verbs {
                        let name = format!("nftpol-no-{verb}-{resource}");
                        let reduced = without(&rules, group, resource, verb);
                        assert_eq!(grants_of(&reduced).len(), full.len() - 1, "{name}");
                        let mut copy = role.clone();
                        copy.metadata = Default::default();
                        copy.metadata.name = Some(name.clone());
                        copy.rules = Some(reduced);
                        let mut obj = serde_json::to_value(&copy).unwrap();
                        obj["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
                        obj["kind"] = json!("ClusterRole");
                        cp.apply(&obj.to_string());
                        cp.apply(
                            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": name, "namespace": "nftpol"}})
                            .to_string(),
                        );
                        cp.apply(
                            &json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                                "kind": "ClusterRoleBinding", "metadata": {"name": name},
                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                    "kind": "ClusterRole", "name": name},
                                "subjects": [{"kind": "ServiceAccount", "name": name,
                                    "namespace": "nftpol"}]})
                            .to_string(),
                        );
                        let kc = cp.token_kubeconfig("nftpol", &name);
                        let listen = format!("127.0.0.1:{}", 9760 + cases.len());
                        let log = cp.scratch().join(format!("{name}.log"));
                        cases.push(Case {
                            verb: verb.clone(),
                            resource: resource.clone(),
                            group: group.clone(),
                            agent: Some(start_agent(&kc, &listen, &log)),
                            listen,
                            log,
                        });
                    }
                }
            }
        }

        // Watch them for a while: each must report the forbidden call, count
        // watch errors, and never become ready. (An agent that may list but
        // not watch does sync and write the table before its first watch is
        // refused; they all compute the same ruleset, so sharing the
        // namespace's table does not matter here.)
        let start = Instant::now();
        let window = Duration::from_secs(15);
        let mut ready_seen = vec![false; cases.len()];
        while start.elapsed() < window {
            for (i, c) in cases.iter().enumerate() {
                if readyz(&c.listen) == Some(200) {
                    ready_seen[i] = true;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut failures = Vec::new();
        let mut unused = BTreeSet::new();
        for (i, c) in cases.iter_mut().enumerate() {
            let what = format!("without {} on {}", c.verb, c.resource);
            let errors = metric(&c.listen, "nftpol_watch_errors_total", "");
            let ready = http_get(&c.listen, "/readyz");
            let code = ready.as_ref().map(|r| r.0);
            let log = std::fs::read_to_string(&c.log).unwrap_or_default();
            let named = format!("cannot {} resource \"{}\"", c.verb, c.resource);
            let line = log
                .lines()
                .find(|l| l.contains(&named) && l.contains("nftpol::agent"));
            eprintln!("{what}: watch errors {errors}, readyz {code:?}");
            if ready_seen[i] && code == Some(200) && errors == 0.0 && line.is_none() {
                // The agent works without it: the permission is not needed.
                unused.insert(c.verb.clone());
                continue;
            }
            let mut problems = Vec::new();
            if ready_seen[i] || code != Some(503) {
                problems.push(format!("became ready (now {code:?})"));
            }
            if !ready
                .as_ref()
                .is_some_and(|(_, body)| body.contains(c.resource.as_str()))
            {
                problems.push(format!("/readyz does not name {}: {ready:?}", c.resource));
            }
            if errors < 1.0 {
                problems.push("nftpol_watch_errors_total did not rise".to_string());
            }
            if line.is_none() {
                problems.push(format!("no agent log line with {named:?}"));
            }
            if !problems.is_empty() {
                let running = c.agent.as_mut().is_some_and(AgentProcess::running);
                failures.push(format!(
                    "{what} ({}): {} (running: {running})\n--- log:\n{}",
                    c.group,
                    problems.join("; "),
                    log.lines().take(12).collect::<Vec<_>>().join("\n")
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));

        // Granting the permission back heals every agent without a restart
        // (the refused call succeeds on a retry, or the denial expires).
        for c in cases.iter().filter(|c| !unused.contains(&c.verb)) {
            let name = format!("nftpol-no-{}-{}", c.verb, c.resource);
            let mut copy = role.clone();
            copy.metadata = Default::default();
            copy.metadata.name = Some(name);
            let mut obj = serde_json::to_value(&copy).unwrap();
            obj["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
            obj["kind"] = json!("ClusterRole");
            cp.apply(&obj.to_string());
        }
        for c in cases.iter().filter(|c| !unused.contains(&c.verb)) {
            wait_for(
                &format!(
                    "readiness once {} on {} is granted again",
                    c.verb, c.resource
                ),
                Duration::from_secs(40),
                || readyz(&c.listen) == Some(200),
            );
        }
        // The ClusterRole is minimal: the agent needs every verb it grants.
        assert!(
            unused.is_empty(),
            "permissions of deploy/manifests/01-rbac.yaml the agent works without: {unused:?}"
        );
    });
}

/// A kubeconfig whose only context points at a port nothing listens on.
const DECOY_KUBECONFIG: &str = "apiVersion: v1
kind: Config
current-context: decoy
clusters:
- name: decoy
  cluster: {server: \"https://127.0.0.1:1\"}
users:
- name: decoy
  user: {token: nothing}
contexts:
- name: decoy
  context: {cluster: decoy, user: decoy}
";

/// `nftpol run` with no `--kubeconfig`: `$KUBECONFIG` is a list (a missing
/// file, a decoy whose current-context is unreachable, the real token
/// kubeconfig), merged like kubectl, and `--context cp` picks the real
/// context from the third file. An unknown `--context` stops the agent with
/// an error naming it instead of falling back to anything.
#[test]
fn agent_finds_its_kubeconfig_like_kubectl() {
    ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        apply_deploy(&cp);
        let real = cp.token_kubeconfig("nftpol", "nftpol");
        let decoy = cp.scratch().join("decoy.kubeconfig");
        std::fs::write(&decoy, DECOY_KUBECONFIG).unwrap();
        let list =
            std::env::join_paths([cp.scratch().join("missing.kubeconfig"), decoy, real]).unwrap();
        let run = |context: &str, listen: &str, log: &Path| {
            let mut cmd = std::process::Command::new(BIN);
            cmd.args(["run", "--node", NODE, "--listen", listen])
                .args(["--min-interval", "50ms", "--resync", "1s"])
                .args(["--context", context])
                .env("KUBECONFIG", &list)
                .env("HOME", cp.scratch())
                .env("RUST_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log).unwrap());
            AgentProcess::spawn(&mut cmd)
        };

        let log = cp.scratch().join("agent-context.log");
        let listen = "127.0.0.1:9752";
        let agent = run("cp", listen, &log);
        wait_for(
            "readiness through the merged kubeconfig",
            Duration::from_secs(60),
            || readyz(listen) == Some(200),
        );
        wait_for("table inet nftpol", Duration::from_secs(10), || {
            table().is_some()
        });
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("Env([")
                && text.contains("decoy.kubeconfig")
                && !text.contains("missing.kubeconfig"),
            "the log says which files were merged (the missing one skipped):\n{text}"
        );
        drop(agent);

        let log = cp.scratch().join("agent-nope.log");
        let mut agent = run("nope", "127.0.0.1:9753", &log);
        let start = Instant::now();
        while agent.running() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "an unknown --context must stop the agent"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = agent.kill9();
        assert_eq!(status.code(), Some(2));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("--context nope") && text.contains("it has: decoy, cp"),
            "the error names the context and the ones there are:\n{text}"
        );
    });
}

/// The Role `nftpol-status` of deploy/manifests/01-rbac.yaml.
fn status_role() -> Value {
    yaml_docs("deploy/manifests/01-rbac.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "nftpol-status")
        .expect("deploy/manifests/01-rbac.yaml has Role nftpol-status")
}

/// A NodeProgramStatus as the agent writes it.
fn node_status(ns: &str, node: &str, generation: i64) -> String {
    json!({"apiVersion": "nftpol.io/v1alpha1", "kind": "NodeProgramStatus",
        "metadata": {"name": node, "namespace": ns},
        "spec": {"node": node, "generation": generation}})
    .to_string()
}

/// Server-side apply of `obj` with `kubeconfig` (as the agent does it);
/// the API server's answer.
fn apply_as(cp: &ControlPlane, kubeconfig: &Path, obj: &str) -> Result<(), String> {
    let out = cp.kubectl_as(
        kubeconfig,
        &[
            "apply",
            "--server-side",
            "--field-manager=nftpol-agent",
            "-f",
            "-",
        ],
        Some(obj),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_agent_may_write_only_status_objects_in_its_namespace() {
    ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        apply_deploy(&cp);
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/nodeprogramstatuses.nftpol.io",
        ]);
        let kc = cp.token_kubeconfig("nftpol", "nftpol");

        // In its namespace: the ClusterRole's reads plus exactly the Role's
        // writes; elsewhere (tested above for `default`) the reads only.
        cp.kubectl_ok(&["create", "serviceaccount", "baseline", "-n", "nftpol"]);
        let list_in = |kc: &Path, ns: &str| {
            let out = cp.kubectl_as(kc, &["auth", "can-i", "--list", "-n", ns], None);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            parse_can_i(&String::from_utf8_lossy(&out.stdout))
        };
        let baseline = list_in(&cp.token_kubeconfig("nftpol", "baseline"), "nftpol");
        let role: Role = serde_json::from_value(status_role()).unwrap();
        let mut want = grants_of(&cluster_role().rules.unwrap_or_default());
        want.extend(grants_of(&role.rules.clone().unwrap_or_default()));
        let extra: BTreeSet<Grant> = list_in(&kc, "nftpol")
            .difference(&baseline)
            .cloned()
            .collect();
        assert_eq!(
            extra, want,
            "in nftpol: the ClusterRole and the Role, nothing else"
        );

        // The real authorizer on real writes: create and update its status…
        apply_as(&cp, &kc, &node_status("nftpol", "node-1", 1)).expect("creating a status");
        apply_as(&cp, &kc, &node_status("nftpol", "node-1", 2)).expect("updating it");
        let got = cp.kubectl_ok(&[
            "get",
            "nodeprogramstatus",
            "node-1",
            "-n",
            "nftpol",
            "-o",
            "jsonpath={.spec.generation}",
        ]);
        assert_eq!(got, "2");
        // …but not in another namespace, not another kind, not read or delete.
        let denied = |r: Result<(), String>, what: &str| {
            let e = r.expect_err(what);
            assert!(e.contains("forbidden"), "{what}: {e}");
        };
        cp.kubectl_ok(&["create", "namespace", "other"]);
        denied(
            apply_as(&cp, &kc, &node_status("other", "node-1", 1)),
            "a status in another namespace",
        );
        denied(
            apply_as(
                &cp,
                &kc,
                &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "x", "namespace": "nftpol"}})
                .to_string(),
            ),
            "a ConfigMap in its namespace",
        );
        for verb in [
            &["delete", "nodeprogramstatus", "node-1", "-n", "nftpol"][..],
            &["get", "nodeprogramstatus", "node-1", "-n", "nftpol"],
        ] {
            let out = cp.kubectl_as(&kc, verb, None);
            assert!(!out.status.success(), "{verb:?} is refused");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("forbidden"),
                "{verb:?}"
            );
        }

        // Each verb of the Role is needed: without `create` a new status
        // cannot be made, without `patch` none can be written at all.
        for verb in ["create", "patch"] {
            let name = format!("no-{verb}");
            let mut r = status_role();
            r["metadata"] = json!({"name": name, "namespace": "nftpol"});
            r["rules"][0]["verbs"] = json!(
                ["create", "patch"]
                    .into_iter()
                    .filter(|v| *v != verb)
                    .collect::<Vec<_>>()
            );
            cp.apply(&r.to_string());
            cp.kubectl_ok(&["create", "serviceaccount", &name, "-n", "nftpol"]);
            cp.kubectl_ok(&[
                "create",
                "rolebinding",
                &name,
                "-n",
                "nftpol",
                &format!("--role={name}"),
                &format!("--serviceaccount=nftpol:{name}"),
            ]);
            let kc = cp.token_kubeconfig("nftpol", &name);
            denied(
                apply_as(&cp, &kc, &node_status("nftpol", &format!("node-{verb}"), 1)),
                &format!("a new status without {verb}"),
            );
        }
    });
}
