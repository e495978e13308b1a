//! `nftpol run` as a process against the real control plane (etcd +
//! kube-apiserver, `nftpol_testkit::control_plane`), both inside one fresh
//! network namespace, the agent on deploy/'s RBAC with a token-only
//! kubeconfig: initial sync, element deltas for pod churn, full replacement
//! for new policies, kube-apiserver outage (the table stays, readiness kept,
//! the lost watches counted) and return (a change made after it arrives),
//! drift repair, SIGTERM leaving the table in place.

use nftpol_testkit::agent;

use std::process::{Command, Stdio};
use std::time::Duration;

use agent::AgentProcess;
use nftpol_testkit::control_plane::{self, ControlPlane};
use nftpol_testkit::netns::in_new_netns;
use nftpol_testkit::wait_for;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const METRICS: &str = "127.0.0.1:9750";

fn ns(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn pod(ns: &str, name: &str, node: &str, ip4: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip4, "podIPs": [{"ip": ip4}]}})
}

/// Server-side apply of `obj` as the admin (a pod's IP through the status
/// subresource).
fn apply(cp: &ControlPlane, obj: Value) {
    cp.apply_object(&obj);
}

fn deny_ingress(ns: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": ns},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}})
}

/// `nft list table inet nftpol` in this thread's namespace, or None.
fn table() -> Option<String> {
    nftpol_testkit::listing::table_text_here()
}

fn http_get(path: &str) -> Option<(u16, String)> {
    agent::http_get(METRICS, path)
}

/// Sum of a metric's samples whose line contains `filter`.
fn metric(name: &str, filter: &str) -> f64 {
    agent::metric(METRICS, name, filter)
}

fn start_agent(kubeconfig: &std::path::Path) -> AgentProcess {
    AgentProcess::spawn(agent::command(BIN, "node-1", METRICS, kubeconfig).stderr(Stdio::inherit()))
}

#[test]
fn agent_follows_the_api_server() {
    // Built (if need be) here: the fresh namespace has no route to the Go module proxy.
    control_plane::ensure_binaries();
    in_new_netns(|| {
        // etcd and kube-apiserver on 127.0.0.1 in this fresh namespace, where the agent runs.
        let cp = ControlPlane::start();
        // deploy/ as a cluster admin would apply it; the agent authenticates with the
        // ServiceAccount's token only (TokenRequest API), authorised by deploy/'s RBAC.
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        let kubeconfig = cp.token_kubeconfig("nftpol", "nftpol");

        apply(&cp, ns("web", json!({"team": "a"})));
        apply(
            &cp,
            pod(
                "web",
                "server",
                "node-1",
                "10.244.1.10",
                json!({"app": "web"}),
            ),
        );
        apply(
            &cp,
            pod(
                "web",
                "client",
                "node-2",
                "10.244.2.10",
                json!({"role": "client"}),
            ),
        );
        apply(&cp, deny_ingress("web"));

        let agent = start_agent(&kubeconfig);
        wait_for("the first apply", Duration::from_secs(20), || {
            table().is_some_and(|t| t.contains("10.244.1.10 : jump ingress-group-"))
        });
        wait_for("readiness", Duration::from_secs(5), || {
            http_get("/readyz").is_some_and(|(c, _)| c == 200)
        });
        assert_eq!(http_get("/healthz").unwrap().0, 200);
        assert_eq!(
            metric("nftpol_applies_total", "kind=\"full\""),
            1.0,
            "the first sync is a full replacement"
        );
        assert!(
            table().unwrap().contains("10.244.2.10"),
            "the remote client is in the peer set"
        );
        assert_eq!(
            metric("nftpol_enforced_pods", ""),
            1.0,
            "only the node-1 pod is enforced here"
        );

        // Pod churn: a new client pod arrives → element delta only.
        apply(
            &cp,
            pod(
                "web",
                "client2",
                "node-2",
                "10.244.2.11",
                json!({"role": "client"}),
            ),
        );
        wait_for("the new peer", Duration::from_secs(5), || {
            table().unwrap().contains("10.244.2.11")
        });
        // The worker counts an apply just after nft returns: the table can be
        // seen a moment before the counter.
        wait_for("the delta counted", Duration::from_secs(5), || {
            metric("nftpol_applies_total", "kind=\"delta\"") >= 1.0
        });
        assert_eq!(
            metric("nftpol_applies_total", "kind=\"full\""),
            1.0,
            "a new pod is not a full replacement"
        );

        // Relabel: the client stops being a client → removed from the set by a delta.
        apply(
            &cp,
            pod(
                "web",
                "client2",
                "node-2",
                "10.244.2.11",
                json!({"role": "other"}),
            ),
        );
        wait_for("the relabel", Duration::from_secs(5), || {
            !table().unwrap().contains("10.244.2.11")
        });
        assert_eq!(metric("nftpol_applies_total", "kind=\"full\""), 1.0);

        // A new policy is structural → full replacement.
        let mut p = deny_ingress("web");
        p["metadata"]["name"] = json!("second");
        apply(&cp, p);
        wait_for("the second policy", Duration::from_secs(5), || {
            table().unwrap().contains("web/second")
        });
        wait_for(
            "the full replacement counted",
            Duration::from_secs(5),
            || metric("nftpol_applies_total", "kind=\"full\"") >= 2.0,
        );
        assert_eq!(metric("nftpol_applies_total", "kind=\"full\""), 2.0);

        // kube-apiserver outage (etcd keeps running): the table stays, the agent stays ready
        // and counts its lost watches. A real API server takes no writes while it is down, so
        // the change is made once it is back (the fake API server took one meanwhile): it
        // arrives.
        let watch_errors = metric("nftpol_watch_errors_total", "");
        cp.stop_apiserver();
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            table().unwrap().contains("web/second"),
            "the last ruleset stays in force"
        );
        wait_for(
            "nftpol_watch_errors_total rises",
            Duration::from_secs(10),
            || metric("nftpol_watch_errors_total", "") > watch_errors,
        );
        assert!(
            table().unwrap().contains("web/second"),
            "the last ruleset stays in force"
        );
        assert_eq!(
            http_get("/readyz").unwrap().0,
            200,
            "readiness only tracks applies"
        );
        cp.start_apiserver();
        cp.kubectl_ok(&[
            "delete",
            "networkpolicies.networking.k8s.io",
            "-n",
            "web",
            "second",
        ]);
        wait_for("resync after the outage", Duration::from_secs(30), || {
            !table().unwrap().contains("web/second")
        });

        // Drift: someone flushes our table; the periodic resync repairs it.
        assert!(
            Command::new("nft")
                .args(["flush", "table", "inet", "nftpol"])
                .status()
                .unwrap()
                .success()
        );
        // (flush removes the rules, not the set elements.)
        assert!(!table().unwrap().contains("ct state related accept"));
        wait_for("drift detection", Duration::from_secs(10), || {
            metric("nftpol_resyncs_total", "kind=\"drift\"") >= 1.0
        });
        wait_for("drift repair", Duration::from_secs(5), || {
            table().is_some_and(|t| t.contains("ct state related accept"))
        });

        // Every exported metric is documented in Metrics::NAMES and present.
        let (_, body) = http_get("/metrics").unwrap();
        for name in nftpol::agent::metrics::Metrics::NAMES {
            // OpenMetrics names a counter's family without its `_total` suffix.
            let family = name.trim_end_matches("_total");
            assert!(
                body.contains(&format!("# TYPE {family} ")),
                "{name} missing from /metrics"
            );
        }

        // SIGTERM: clean exit, table left in place.
        let status = agent.terminate();
        assert!(status.success(), "exit status {status}");
        assert!(
            table().is_some_and(|t| t.contains("10.244.1.10")),
            "the table outlives the agent"
        );
    });
}
