//! ClusterNetworkPolicies live, against the real control plane: the agent starts
//! on a cluster WITHOUT the CRD (NetworkPolicy is enforced, the agent is ready),
//! the CRD is installed later and the agent starts enforcing CNPs without a
//! restart; then CNPs are applied, edited (rule order swapped, priority changed),
//! a Node's addresses feed a `nodes` peer, and deleting the last CNP brings the
//! NetworkPolicy-only table back.

use nftpol_testkit::agent;

use std::process::Stdio;
use std::time::Duration;

use agent::AgentProcess;
use nftpol_testkit::control_plane::{self, ControlPlane};
use nftpol_testkit::netns::in_new_netns;
use nftpol_testkit::wait_for;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const METRICS: &str = "127.0.0.1:9751";

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, node: &str, ip4: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": ip4, "podIPs": [{"ip": ip4}]}})
}

fn node(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"role": "worker"}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

/// An Admin CNP on namespace `web`'s ingress: `rules` as given.
fn cnp(name: &str, priority: u32, rules: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"tier": "Admin", "priority": priority,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}},
            "ingress": rules}})
}

fn rule(name: &str, action: &str, from_ns: &str) -> Value {
    json!({"name": name, "action": action,
        "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": from_ns}}}]})
}

fn table() -> String {
    nftpol_testkit::listing::table_text_here().unwrap_or_default()
}

/// The rule comments of the Admin ingress chain of the CNP `name`, in order.
fn chain_comments(t: &str, name: &str) -> Vec<String> {
    let Some(start) = t.lines().find_map(|l| {
        let l = l.trim();
        (l.starts_with("chain admin-ingress-") && l.ends_with(&format!("-{name} {{")))
            .then(|| t.find(l))
            .flatten()
    }) else {
        return Vec::new();
    };
    let body = &t[start..t[start..].find("\n\t}").map_or(t.len(), |e| start + e)];
    body.lines()
        .filter_map(|l| l.split("comment \"").nth(1))
        .map(|c| c.trim_end_matches('"').to_string())
        .collect()
}

/// The chains an Admin ingress group chain jumps to, in order.
fn group_jumps(t: &str) -> Vec<String> {
    let Some(start) = t.find("chain admin-ingress-group-") else {
        return Vec::new();
    };
    let body = &t[start..t[start..].find("\n\t}").map_or(t.len(), |e| start + e)];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("jump "))
        .map(str::to_string)
        .collect()
}

#[test]
fn agent_enforces_cluster_network_policies_live() {
    control_plane::ensure_binaries();
    in_new_netns(|| {
        let cp = ControlPlane::start();
        let deploy = control_plane::repo().join("deploy");
        // Namespace and RBAC only (two of install.yaml's sources): no CRD yet.
        for f in ["manifests/00-namespace.yaml", "manifests/01-rbac.yaml"] {
            cp.kubectl_ok(&[
                "apply",
                "--server-side",
                "-f",
                deploy.join(f).to_str().unwrap(),
            ]);
        }
        let kubeconfig = cp.token_kubeconfig("nftpol", "nftpol");
        for n in ["web", "tools", "lab"] {
            cp.apply_object(&ns(n));
        }
        cp.apply_object(&pod("web", "server", "node-1", "10.244.1.10", "web"));
        cp.apply_object(&pod("tools", "client", "node-2", "10.244.2.10", "client"));
        cp.apply_object(&pod("lab", "probe", "node-2", "10.244.2.20", "probe"));
        cp.apply_object(
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "web"},
            "spec": {"podSelector": {}}}),
        );

        let agent = AgentProcess::spawn(
            agent::command(BIN, "node-1", METRICS, &kubeconfig).stderr(Stdio::inherit()),
        );
        // No CRD: NetworkPolicy is enforced and the agent is ready.
        wait_for(
            "the first apply without the CRD",
            Duration::from_secs(20),
            || table().contains("10.244.1.10 : jump ingress-group-"),
        );
        wait_for("readiness without the CRD", Duration::from_secs(10), || {
            agent::http_get(METRICS, "/readyz").is_some_and(|(c, _)| c == 200)
        });
        assert!(!table().contains("hook input"), "no tiers without CNPs");

        // The CRD arrives, then a CNP: enforced without a restart.
        cp.kubectl_ok(&[
            "apply",
            "--server-side",
            "-f",
            deploy
                .join("crd-clusternetworkpolicies.yaml")
                .to_str()
                .unwrap(),
        ]);
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/clusternetworkpolicies.policy.networking.k8s.io",
        ]);
        cp.apply_object(&cnp(
            "guard",
            20,
            json!([
                rule("from-tools", "Accept", "tools"),
                rule("lab", "Deny", "lab")
            ]),
        ));
        // The agent asks for CNPs every 30-60 s while the CRD is missing. The layout change is
        // staged (docs/nftables.md, "Atomic replacement"): the new chains exist a moment
        // before the switch that hooks `input` and dispatches to them, so wait for the switch.
        wait_for(
            "the CNP enforced after the CRD appeared",
            Duration::from_secs(75),
            || {
                let t = table();
                t.contains("hook input")
                    && chain_comments(&t, "guard")
                        .iter()
                        .any(|c| c.contains("from-tools"))
            },
        );
        let t = table();
        assert!(t.contains("hook input"), "tiered layout: {t}");
        assert!(
            t.contains("10.244.1.10 : jump admin-ingress-group-"),
            "the subject dispatches to its Admin group: {t}"
        );
        // One nft rule per family: the rules' comments, consecutive duplicates merged.
        let order = |t: &str| {
            let mut v: Vec<String> = chain_comments(t, "guard")
                .into_iter()
                .filter(|c| c.starts_with("ingress["))
                .collect();
            v.dedup();
            v
        };
        assert_eq!(
            order(&t)
                .iter()
                .map(|c| c.split(' ').nth(1).unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
            ["from-tools:", "lab:"],
            "{t}"
        );

        // Swap the rule order: the kernel follows.
        cp.apply_object(&cnp(
            "guard",
            20,
            json!([
                rule("lab", "Deny", "lab"),
                rule("from-tools", "Accept", "tools")
            ]),
        ));
        wait_for("the swapped rule order", Duration::from_secs(15), || {
            order(&table())
                .first()
                .is_some_and(|c| c.starts_with("ingress[0] lab:"))
        });

        // A second CNP at a higher priority number is jumped to after `guard`;
        // lowering its number puts it first.
        cp.apply_object(&cnp("open", 30, json!([rule("all-lab", "Accept", "lab")])));
        wait_for(
            "two Admin policies in priority order",
            Duration::from_secs(15),
            || {
                let j = group_jumps(&table());
                j.len() == 2 && j[0].ends_with("-guard") && j[1].ends_with("-open")
            },
        );
        cp.apply_object(&cnp("open", 10, json!([rule("all-lab", "Accept", "lab")])));
        wait_for("the priority change", Duration::from_secs(15), || {
            let j = group_jumps(&table());
            j.len() == 2 && j[0].ends_with("-open") && j[1].ends_with("-guard")
        });

        // A Node feeds a `nodes` peer.
        cp.apply_object(&node("node-9", "192.168.50.9"));
        cp.apply_object(&json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy", "metadata": {"name": "no-nodes"},
            "spec": {"tier": "Baseline", "priority": 5,
                "subject": {"namespaces": {}},
                "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "worker"}}}]}]}}));
        wait_for(
            "the node address in a nodes set",
            Duration::from_secs(15),
            || table().contains("192.168.50.9"),
        );

        // Deleting every CNP brings back the NetworkPolicy-only table.
        for n in ["guard", "open", "no-nodes"] {
            cp.kubectl_ok(&["delete", "clusternetworkpolicy", n]);
        }
        wait_for(
            "the NetworkPolicy-only table",
            Duration::from_secs(15),
            || {
                let t = table();
                !t.contains("hook input") && t.contains("10.244.1.10 : jump ingress-group-")
            },
        );
        assert_eq!(
            agent::http_get(METRICS, "/readyz").map(|(c, _)| c),
            Some(200)
        );
        agent.terminate();
    });
}
