//! kubectl against the fake. No Debian or crates.io package ships kubectl, so
//! the test is `#[ignore]`d: run it with `cargo test -p fake-apiserver -- --ignored`
//! where kubectl is installed.

use fake_apiserver::FakeApiServer;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MANIFESTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec: {podSelector: {}}
";

/// Runs kubectl against `dir`'s kubeconfig; panics with its stderr if it fails.
fn kubectl(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let cache = dir.join("cache");
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs kubectl on PATH"]
fn kubectl_applies_reads_labels_and_deletes() {
    let server = FakeApiServer::start();
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "fake-apiserver-kubectl-{}-{}",
        std::process::id(),
        server.addr().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    server.kubeconfig(dir.join("kubeconfig")).unwrap();

    // No OpenAPI documents are served, so client-side validation must be off.
    kubectl(
        &dir,
        &["apply", "--validate=false", "-f", "-"],
        Some(MANIFESTS),
    );
    let pods: Value =
        serde_json::from_str(&kubectl(&dir, &["get", "pods", "-A", "-o", "json"], None)).unwrap();
    assert_eq!(pods["items"][0]["metadata"]["name"], "web");
    kubectl(&dir, &["label", "pod", "web", "tier=front"], None);
    let pod = server.get("pod", "default", "web").unwrap();
    assert_eq!(pod["metadata"]["labels"]["tier"], "front");
    let selector = kubectl(
        &dir,
        &[
            "get",
            "netpol",
            "deny",
            "-o",
            "jsonpath={.spec.podSelector}",
        ],
        None,
    );
    assert_eq!(selector, "{}");
    // Applying again is a no-op; server-side apply is accepted too.
    kubectl(
        &dir,
        &["apply", "--validate=false", "-f", "-"],
        Some(MANIFESTS),
    );
    kubectl(
        &dir,
        &["apply", "--validate=false", "--server-side", "-f", "-"],
        Some(MANIFESTS),
    );
    kubectl(&dir, &["delete", "pod", "web"], None);
    assert_eq!(server.get("pod", "default", "web").unwrap_err().code, 404);
    kubectl(&dir, &["delete", "namespace", "default"], None);
    assert_eq!(
        server.get("netpol", "default", "deny").unwrap_err().code,
        404,
        "namespace contents go too"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
