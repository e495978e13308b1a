//! A real Kubernetes control plane for tests: `etcd` + `kube-apiserver`
//! (TLS, client-certificate admin in `system:masters`, service-account
//! signing keys, `--authorization-mode=RBAC`) on 127.0.0.1, started and
//! stopped by `hack/control-plane.sh` (the one place that knows the flags),
//! plus the project's own `kubectl` (never a `/usr/bin/kubectl`). The API
//! server alone can be stopped and started again (an outage; etcd and the
//! data stay), and etcd compacted (watches resuming from before get 410 Gone).
//!
//! The binaries come from `$NFTPOL_K8S_BIN` (`.ci/run` sets it), else from
//! `hack/k8s-binaries.sh`, which builds them into its cache on first use
//! ([`bin_dir`]). A test that cannot have them fails; none is skipped.
//!
//! The servers start in the calling thread's network namespace (a test that
//! runs `nftpol run` in a fresh namespace starts the control plane there
//! too, so the agent reaches it on loopback). Dropping the [`ControlPlane`]
//! (also while a test panics) runs `hack/control-plane.sh down`, which stops
//! both servers, and removes the temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root (for `hack/` and `deploy/`).
pub fn repo() -> PathBuf {
    crate::cases::root().to_path_buf()
}

/// The binaries' directory, built first if need be; panics (failing the
/// test) with the reason when there is none. Call it before entering a fresh
/// network namespace: a build needs the Go module proxy, and
/// [`ControlPlane::start`] then finds the result without building.
pub fn ensure_binaries() -> PathBuf {
    bin_dir().unwrap_or_else(|why| panic!("no real control plane: {why}"))
}

/// Where the binaries are. `$NFTPOL_K8S_BIN` when set (as `.ci/run` sets
/// it); otherwise `hack/k8s-binaries.sh` says, building them into its cache
/// first if they are not there (about 11 minutes once per machine, 0.3 s
/// after that; concurrent callers wait on the script's lock). Run once per
/// test process. `Err` says why there is no control plane: the calling test
/// fails, it is never skipped. Build it outside any fresh network namespace
/// ([`ensure_binaries`]).
/// Runs one of the repository's build scripts (`hack/k8s-binaries.sh`,
/// `hack/helm-binary.sh`: they build into their cache on first use and print
/// the cached bin directory after that) and returns the last line it printed.
/// `Err` names the script's failure and `instead`, what to set to do without.
pub fn built_by_script(script: &str, instead: &str) -> Result<PathBuf, String> {
    let script = repo().join(script);
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(dir) if out.status.success() => Ok(PathBuf::from(dir.trim())),
        _ => Err(format!(
            "{} failed ({}); it needs Go >= 1.26 and the Go module proxy, or {instead}",
            script.display(),
            out.status
        )),
    }
}

pub fn bin_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(bin) = std::env::var_os("NFTPOL_K8S_BIN").filter(|b| !b.is_empty()) {
            return Ok(PathBuf::from(bin));
        }
        built_by_script(
            "hack/k8s-binaries.sh",
            "set NFTPOL_K8S_BIN to a directory with etcd, kube-apiserver and kubectl",
        )
    })
    .clone()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running etcd + kube-apiserver; see the module documentation.
pub struct ControlPlane {
    /// Our temporary directory (removed on drop); the script's DIR is `root/cp`.
    root: PathBuf,
    bin: PathBuf,
    /// Extra kube-apiserver flags (`NFTPOL_APISERVER_ARGS`).
    apiserver_args: String,
    kubeconfig: PathBuf,
    url: String,
    ca: PathBuf,
    etcd_url: String,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver (`hack/control-plane.sh up`, which waits
    /// for `/readyz`). Panics when that fails, with the script's output.
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(&[])
    }

    /// [`Self::start`], with `apiserver_args` added to kube-apiserver's flags
    /// (also when [`Self::start_apiserver`] restarts it), e.g. audit logging.
    pub fn start_with(apiserver_args: &[String]) -> ControlPlane {
        let bin = bin_dir().unwrap_or_else(|why| panic!("{why}"));
        let root = std::env::temp_dir().join(format!(
            "nftpol-cp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("creating the control plane's temp dir");
        let dir = root.join("cp");
        let out = Command::new(repo().join("hack/control-plane.sh"))
            .arg("up")
            .arg(&dir)
            .env("NFTPOL_K8S_BIN", &bin)
            .env("NFTPOL_APISERVER_ARGS", apiserver_args.join(" "))
            .stdin(Stdio::null())
            .output()
            .expect("hack/control-plane.sh runs");
        if !out.status.success() {
            // `up` tore down what it started and removed its DIR.
            let _ = std::fs::remove_dir_all(&root);
            panic!(
                "hack/control-plane.sh up failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // From here on, Drop tears down.
        let mut cp = ControlPlane {
            root,
            bin,
            apiserver_args: apiserver_args.join(" "),
            kubeconfig: PathBuf::new(),
            url: String::new(),
            ca: PathBuf::new(),
            etcd_url: String::new(),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        cp.kubeconfig = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        let env = std::fs::read_to_string(dir.join("env")).expect("DIR/env written by up");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{k} missing from DIR/env"))
                .to_string()
        };
        cp.url = get("APISERVER_URL");
        cp.ca = PathBuf::from(get("APISERVER_CA"));
        cp.etcd_url = get("ETCD_URL");
        assert!(
            cp.url.starts_with("https://127.0.0.1:"),
            "the API server listens on loopback only: {}",
            cp.url
        );
        assert!(
            cp.kubeconfig.is_file(),
            "admin kubeconfig {:?}",
            cp.kubeconfig
        );
        cp
    }

    /// The directory `hack/control-plane.sh` manages (logs, pki, env).
    pub fn dir(&self) -> PathBuf {
        self.root.join("cp")
    }

    /// A scratch directory for the test's own files (removed on drop).
    pub fn scratch(&self) -> &Path {
        &self.root
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// etcd's client URL, `http://127.0.0.1:<port>` (no TLS, no auth).
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Runs `hack/control-plane.sh <sub> DIR`; panics with its output unless it succeeds.
    fn script(&self, sub: &str) {
        let out = Command::new(repo().join("hack/control-plane.sh"))
            .arg(sub)
            .arg(self.dir())
            .env("NFTPOL_APISERVER_ARGS", &self.apiserver_args)
            .stdin(Stdio::null())
            .output()
            .expect("hack/control-plane.sh runs");
        assert!(
            out.status.success(),
            "hack/control-plane.sh {sub} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops kube-apiserver only (SIGTERM, as a rolling restart would; etcd
    /// keeps running): `hack/control-plane.sh stop-apiserver`.
    pub fn stop_apiserver(&self) {
        self.script("stop-apiserver");
    }

    /// Starts kube-apiserver again with the same flags, port and PKI, and
    /// waits for `/readyz` (`hack/control-plane.sh start-apiserver`). Like
    /// [`Self::start`] it runs in the calling thread's network namespace,
    /// which must be the one the control plane was started in.
    pub fn start_apiserver(&self) {
        self.script("start-apiserver");
    }

    /// Compacts etcd's history up to its current revision (physically), so
    /// that a watch resuming from any earlier revision gets 410 Gone once it
    /// reaches etcd; returns that revision. Uses etcd's v3 JSON gateway
    /// (`/v3/kv/range` for the revision header, then `/v3/kv/compaction`)
    /// through `curl`, from the calling thread's network namespace.
    pub fn compact_etcd(&self) -> i64 {
        let post = |path: &str, body: &str| -> serde_json::Value {
            let out = Command::new("curl")
                .args(["-fsS", "--max-time", "10", "-X", "POST", "-d", body])
                .arg(format!("{}{path}", self.etcd_url))
                .stdin(Stdio::null())
                .output()
                .expect("curl runs");
            assert!(
                out.status.success(),
                "POST {path} to etcd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("etcd's answer to {path}: {e}"))
        };
        // Any key (base64 "/"): only the header's revision matters.
        let range = post("/v3/kv/range", r#"{"key": "Lw==", "count_only": true}"#);
        let revision: i64 = range["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("a revision in etcd's range header: {range}"));
        post(
            "/v3/kv/compaction",
            &serde_json::json!({"revision": revision.to_string(), "physical": true}).to_string(),
        );
        revision
    }

    /// The CA certificate that signed the API server's serving certificate.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The admin kubeconfig (client certificate, group `system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The project's kubectl binary.
    pub fn kubectl_bin(&self) -> PathBuf {
        self.bin.join("kubectl")
    }

    /// The last `n` lines of the kube-apiserver log (for failure messages).
    pub fn apiserver_log_tail(&self, n: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir().join("kube-apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig, args, None)
    }

    /// Runs kubectl with `kubeconfig`, feeding `stdin` if given.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .env_remove("KUBECONFIG");
        crate::output_with_stdin(&mut cmd, stdin, "kubectl")
    }

    /// Runs kubectl as the admin; panics (with its stderr) unless it succeeds.
    /// Returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        ok(self.kubectl(args), args)
    }

    /// `kubectl apply --server-side --validate=strict -f -` of `yaml` as the
    /// admin (the field manager takes over conflicts, so re-applying a
    /// modified copy works).
    pub fn apply_output(&self, yaml: &str) -> Output {
        self.kubectl_as(
            &self.kubeconfig,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=nftpol-test",
                "--validate=strict",
                "-f",
                "-",
            ],
            Some(yaml),
        )
    }

    /// [`Self::apply_output`], panicking unless it succeeds; returns stdout.
    pub fn apply(&self, yaml: &str) -> String {
        ok(self.apply_output(yaml), &["apply", "-f", "-"])
    }

    /// Server-side apply of `obj` as the admin, without its status; a pod's
    /// status with a `podIP`, or a Node's with `addresses`, is then written
    /// through the status subresource, as a kubelet would (no kubelet runs here).
    pub fn apply_object(&self, obj: &serde_json::Value) {
        let mut obj = obj.clone();
        let status = obj.as_object_mut().and_then(|o| o.remove("status"));
        self.apply(&obj.to_string());
        let kind = if obj["kind"] == "Node" { "node" } else { "pod" };
        if let Some(status) =
            status.filter(|s| s.get("podIP").is_some() || s.get("addresses").is_some())
        {
            let meta = &obj["metadata"];
            let mut args = vec![
                "patch",
                kind,
                meta["name"].as_str().expect("an object has a name"),
            ];
            if kind == "pod" {
                args.extend(["-n", meta["namespace"].as_str().unwrap_or("default")]);
            }
            let patch = serde_json::json!({ "status": status }).to_string();
            args.extend(["--subresource=status", "--type=merge", "-p", &patch]);
            self.kubectl_ok(&args);
        }
    }

    /// A ServiceAccount token minted with the TokenRequest API
    /// (`kubectl create token`).
    pub fn create_token(&self, namespace: &str, service_account: &str) -> String {
        let token = self.kubectl_ok(&[
            "create",
            "token",
            service_account,
            "-n",
            namespace,
            "--duration=1h",
        ]);
        let token = token.trim().to_string();
        assert!(!token.is_empty(), "an empty token");
        token
    }

    /// Writes `scratch/<name>.kubeconfig` holding only the API server's URL,
    /// its CA (embedded) and a fresh token for `namespace/service_account`:
    /// what a pod of that account would have. Returns its path.
    pub fn token_kubeconfig(&self, namespace: &str, service_account: &str) -> PathBuf {
        let token = self.create_token(namespace, service_account);
        let path = self
            .root
            .join(format!("{namespace}-{service_account}.kubeconfig"));
        let _ = std::fs::remove_file(&path);
        let user = format!("{namespace}-{service_account}");
        let ca = format!("--certificate-authority={}", self.ca.display());
        let server = format!("--server={}", self.url);
        let tok = format!("--token={token}");
        let ctx_user = format!("--user={user}");
        for args in [
            &["config", "set-cluster", "cp", &server, &ca, "--embed-certs"][..],
            &["config", "set-credentials", &user, &tok],
            &["config", "set-context", "cp", "--cluster=cp", &ctx_user],
            &["config", "use-context", "cp"],
        ] {
            let out = Command::new(self.kubectl_bin())
                .arg("--kubeconfig")
                .arg(&path)
                .args(args)
                .env_remove("KUBECONFIG")
                .stdin(Stdio::null())
                .output()
                .expect("kubectl config runs");
            assert!(
                out.status.success(),
                "kubectl {}: {}",
                args[..2].join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("client-certificate") && !text.contains("client-key"),
            "a token-only kubeconfig"
        );
        path
    }
}

/// stdout of a successful kubectl run; panics with its stderr otherwise.
fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // `down` stops kube-apiserver then etcd (only if their pid files still
        // name our binaries with this DIR) and removes DIR.
        let out = Command::new(repo().join("hack/control-plane.sh"))
            .arg("down")
            .arg(self.dir())
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "hack/control-plane.sh down {} failed: {}",
                self.dir().display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("hack/control-plane.sh down: {e}"),
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
