//! Per-node programmed status against the real control plane: three agents
//! (`--node node-a|b|c`, each with its own ServiceAccount token from
//! deploy/'s RBAC) publish their NodeProgramStatus; `nftpol status` (as the
//! admin) shows a policy programmed on all three; a stopped agent lags
//! behind a changed policy (exit 1, the others programmed), `--max-lag`
//! tolerates it, and it catches up when restarted; a node whose applies
//! fail shows as failing.
//!
//! The agents share the test's network namespace (they reach the API server
//! on its loopback), so each gets a fake `nft` (a shell script that accepts
//! every script, or fails while a file exists) instead of fighting over one
//! kernel table: what is tested here is the status, not the ruleset.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nftpol_testkit::agent::{self, AgentProcess};
use nftpol_testkit::control_plane::{self, ControlPlane};
use nftpol_testkit::netns::in_new_netns;
use nftpol_testkit::wait::wait_every;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// A fake nft: `--version` answers like nft 1.0.6; anything else reads its
/// script and succeeds, unless `$FAKE_NFT_FAIL` names a file that exists.
fn fake_nft(dir: &Path) -> PathBuf {
    let path = dir.join("fake-nft");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then echo 'nftables v1.0.6 (Lester Gooch #5)'; exit 0; fi\n\
         cat >/dev/null\n\
         if [ -n \"$FAKE_NFT_FAIL\" ] && [ -e \"$FAKE_NFT_FAIL\" ]; then echo 'Error: Could not process rule: fake' >&2; exit 1; fi\n\
         exit 0\n",
    )
    .unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

struct Agents {
    nft: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Agents {
    fn listen(i: usize) -> String {
        format!("127.0.0.1:{}", 9790 + i)
    }

    fn fail_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("fail-{}", NODES[i]))
    }

    fn start(&self, i: usize) -> AgentProcess {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", NODES[i]))).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["run", "--node", NODES[i], "--listen", &Self::listen(i)])
            .args([
                "--min-interval",
                "50ms",
                "--max-delay",
                "300ms",
                "--resync",
                "0s",
            ])
            .args(["--status-interval", "1s", "--status-namespace", "nftpol"])
            .arg("--nft")
            .arg(&self.nft)
            // The fake stands in for the kernel too: no netlink to the host's.
            .args(["--element-updates", "nft"])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAMESPACE")
            .env("FAKE_NFT_FAIL", self.fail_file(i))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        AgentProcess::spawn(&mut cmd)
    }
}

/// `nftpol status ARGS -o json` as the admin: the exit code and the report.
fn status(cp: &ControlPlane, args: &[&str]) -> (i32, Value) {
    let out = std::process::Command::new(BIN)
        .arg("status")
        .args(args)
        .args(["-o", "json", "--kubeconfig"])
        .arg(cp.admin_kubeconfig())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "nftpol status {args:?} (exit {code}) printed no JSON report: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn policy(spec_port: u16) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "db", "namespace": "web"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"ports": [{"port": spec_port}]}]}})
}

fn lagging_nodes(report: &Value) -> Vec<String> {
    report["policies"][0]["lagging"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["node"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn status_shows_each_node_programmed_lagging_or_failing() {
    control_plane::ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/nodeprogramstatuses.nftpol.io",
        ]);
        // The Node objects (node-d has no agent), a namespace and a policy.
        for n in NODES.iter().chain(&["node-d"]) {
            cp.apply_object(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}));
        }
        cp.apply_object(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
        );
        cp.apply_object(&policy(5432));

        let agents = Agents {
            nft: fake_nft(cp.scratch()),
            kubeconfig: cp.token_kubeconfig("nftpol", "nftpol"),
            dir: cp.scratch().to_path_buf(),
        };
        let mut running: Vec<Option<AgentProcess>> =
            (0..3).map(|i| Some(agents.start(i))).collect();

        // Every agent has published (before that, --wait would be satisfied
        // by the nodes that have)...
        wait_every(
            "three statuses",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || {
                status(&cp, &["-n", "web", "db"]).1["nodes"]
                    .as_array()
                    .map(Vec::len)
                    == Some(3)
            },
        );
        // ...and the policy is programmed on all three (CI's way: --wait
        // until the check passes).
        let (code, r) = status(&cp, &["-n", "web", "db", "--wait", "60s"]);
        assert_eq!(code, 0, "{r:#}");
        let p = &r["policies"][0];
        assert_eq!(
            (p["programmed"].as_u64(), p["nodes"].as_u64()),
            (Some(3), Some(3)),
            "{r:#}"
        );
        assert_eq!(r["withoutStatus"], json!(["node-d"]), "{r:#}");
        let rv1 = p["resourceVersion"].as_str().unwrap().to_string();
        for n in r["nodes"].as_array().unwrap() {
            assert!(n["generation"].as_i64().unwrap() >= 1, "{n}");
            assert!(
                n["rulesetHash"].as_str().unwrap().starts_with("sha256:"),
                "{n}"
            );
        }
        // The objects themselves, as kubectl shows them.
        let obj: Value = serde_json::from_str(&cp.kubectl_ok(&[
            "get",
            "nodeprogramstatus",
            "node-a",
            "-n",
            "nftpol",
            "-o",
            "json",
            "--show-managed-fields",
        ]))
        .unwrap();
        assert_eq!(
            obj["spec"]["networkPolicies"]["web"]["db"],
            json!(rv1),
            "{obj:#}"
        );
        let managers: Vec<&str> = obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert_eq!(managers, ["nftpol-agent"], "one server-side apply manager");

        // Stop node-c's agent; change the policy: a and b program it, c lags.
        running[2].take().unwrap().kill9();
        cp.apply_object(&policy(5433));
        let mut last = None;
        wait_every(
            "node-a and node-b to program the new version",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let (code, r) = status(&cp, &["-n", "web", "db"]);
                let done = r["policies"][0]["programmed"].as_u64() == Some(2);
                last = Some((code, r));
                done
            },
        );
        let (code, r) = last.unwrap();
        assert_eq!(code, 1, "a lagging node fails the check: {r:#}");
        assert_eq!(lagging_nodes(&r), ["node-c"], "{r:#}");
        let lag = &r["policies"][0]["lagging"][0];
        assert_eq!(lag["kind"], json!("older"), "{r:#}");
        assert_eq!(lag["holds"], json!(rv1), "{r:#}");
        assert_ne!(r["policies"][0]["resourceVersion"], json!(rv1));
        // Within a tolerance the same state passes; the whole-cluster view agrees.
        let (code, r) = status(&cp, &["--max-lag", "1h"]);
        assert_eq!(code, 0, "{r:#}");
        assert_eq!(lagging_nodes(&r), ["node-c"], "{r:#}");
        // The text report names the lagging node.
        let out = std::process::Command::new(BIN)
            .args(["status", "-n", "web", "db", "--kubeconfig"])
            .arg(cp.admin_kubeconfig())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains(&format!("node-c (holds {rv1}")), "{text}");

        // node-c's agent returns and catches up.
        running[2] = Some(agents.start(2));
        let (code, r) = status(&cp, &["-n", "web", "db", "--wait", "60s"]);
        assert_eq!(code, 0, "{r:#}");
        assert_eq!(r["policies"][0]["programmed"].as_u64(), Some(3), "{r:#}");

        // node-b's applies fail from now on: failing since, and lagging.
        // (A pod of the policy's on node-b, so its ruleset changes: a policy
        // that selects no pod there changes nothing in its kernel.)
        std::fs::write(agents.fail_file(1), "").unwrap();
        cp.apply_object(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "db", "namespace": "web", "labels": {"app": "db"}},
            "spec": {"nodeName": "node-b", "containers": [{"name": "c", "image": "i"}]}}));
        cp.kubectl_ok(&[
            "patch",
            "pod",
            "db",
            "-n",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"10.244.2.5","podIPs":[{"ip":"10.244.2.5"}]}}"#,
        ]);
        cp.apply_object(&policy(5434));
        let mut last = None;
        wait_every(
            "node-b to report its failure",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let (code, r) = status(&cp, &[]);
                let node_b = r["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| n["node"] == "node-b" && n["failure"].is_object())
                    .cloned();
                let done = node_b.is_some();
                last = node_b.map(|n| (code, n, r));
                done
            },
        );
        let (code, node_b, r) = last.unwrap();
        assert_eq!(code, 1, "{r:#}");
        assert!(
            node_b["failure"]["message"]
                .as_str()
                .unwrap()
                .contains("fake"),
            "the nft message: {node_b:#}"
        );
        assert!(node_b["failure"]["since"].is_string(), "{node_b:#}");
        // Recovery clears it.
        std::fs::remove_file(agents.fail_file(1)).unwrap();
        let (code, r) = status(&cp, &["--wait", "60s"]);
        assert_eq!(code, 0, "{r:#}");

        // Writes counted; none failed.
        let m = agent::metrics_text(&Agents::listen(0)).unwrap();
        assert!(agent::metric_in(&m, "nftpol_status_writes_total", "result=\"ok\"") >= 1.0);
        assert_eq!(
            agent::metric_in(&m, "nftpol_status_writes_total", "result=\"error\""),
            0.0
        );
        for a in running.iter_mut().flatten() {
            assert!(a.running(), "every agent still runs");
        }
    });
}
