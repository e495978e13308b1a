//! End to end with real packets: the real control plane (etcd + kube-apiserver with TLS and
//! RBAC, `nftpol_testkit::control_plane`), two routed nodes with dual-stack pods, one `nftpol
//! run` per node (each in its node's network namespace, authenticated by the `nftpol`
//! ServiceAccount's token only, authorised by `deploy/`'s RBAC), and every pod pair probed (TCP
//! and UDP, IPv4 and IPv6) against the oracle after every step:
//!
//! 1. initial objects (readyz fails until the watches synced);
//! 2. relabels → element deltas only;
//! 3. a pod created without an IP, then given one (status subresource) → element delta;
//! 4. a policy added, modified, deleted → full replacements;
//! 5. kube-apiserver down for 30 s: enforcement unchanged, the agent's retries bounded by its
//!    backoff (counted at node 2's relay); back up: changes made after arrive;
//! 6. node 2 cut off while objects change, etcd compacted, kube-apiserver restarted: node 2's
//!    watches resume from a compacted resourceVersion (410 Gone), list again and converge;
//! 7. `kill -9` of one agent while probes run: no denied packet ever gets through;
//! 8. drift (an element swapped, the table deleted) → the periodic resync repairs it;
//! 9. throughout: each node's kernel table equals a fresh full compile of the API server's
//!    objects for that node, loaded into an empty namespace (compared as normalised JSON).
//!
//! etcd and kube-apiserver listen on 127.0.0.1 inside node 1's namespace (started from a thread
//! there; the agent there uses it directly). The serving certificate is for 127.0.0.1 and
//! localhost only, so node 2's agent uses the very same kubeconfig: a relay on 127.0.0.1 inside
//! node 2's namespace forwards to a relay on node 1's underlay address, which forwards to the
//! API server; node 2's API traffic crosses the node link, and its relay counts (and can refuse)
//! its connections.

use nftpol_testkit as kit;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kit::agent::{AgentProcess, metric_in, metrics_text};
use kit::control_plane::{self, ControlPlane};
use kit::listing::{self, Counters};
use kit::netns;
use kit::netns::Netns;
use kit::probe::{self, Outcome};
use kit::relay::Relay;
use kit::wait_for;
use kit::{ChecksumMode, Family, ProbeSpec, Proto, Shape, TopoSpec, Topology};

use nftpol::agent::watch::WatchBackoff;
use nftpol_testkit::oracle;

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
/// Where each agent serves its metrics, inside its own node namespace.
const METRICS: &str = "127.0.0.1:9750";
/// Every pod serves TCP and UDP on this port; policies talk about it.
const PORT: u16 = 80;
/// How long an agent may take to apply a change on this (loaded, 2-core) machine.
const APPLY_DEADLINE: Duration = Duration::from_secs(20);
/// How long step 5 keeps kube-apiserver down while counting the agent's retries.
const OUTAGE: Duration = Duration::from_secs(30);

/// The most list/watch attempts one watch can make in `window` after its API server went away:
/// the first at once, then one after each backoff delay at its shortest (no jitter, the
/// sequence starting over at [`WatchBackoff::MIN`]), plus one already under way.
fn max_attempts(window: Duration) -> usize {
    let mut attempts = 2;
    let (mut delay, mut waited) = (WatchBackoff::MIN, Duration::ZERO);
    while waited + delay <= window {
        waited += delay;
        attempts += 1;
        delay = (delay * 2).min(WatchBackoff::MAX);
    }
    attempts
}

/// Lines of `agent`'s log where the API server said a watch's resourceVersion is gone (410
/// Gone, `too old resource version: <asked> (<oldest>): Expired`).
fn expired_lines(agent: &Agent) -> usize {
    std::fs::read_to_string(&agent.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("too old resource version") && l.contains("Expired"))
        .count()
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

fn namespace(name: &str, team: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"team": team}}})
}

/// A pod; `ips` None is a pod the scheduler placed but whose sandbox has no address yet.
fn pod(ns: &str, name: &str, node: &str, ips: Option<(IpAddr, IpAddr)>, labels: Value) -> Value {
    let status = match ips {
        Some((v4, v6)) => json!({"phase": "Running", "podIP": v4.to_string(),
            "podIPs": [{"ip": v4.to_string()}, {"ip": v6.to_string()}]}),
        None => json!({"phase": "Pending"}),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": PORT}]}]},
        "status": status})
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// The real control plane, driven as the admin with the project's kubectl from a thread inside
/// node 1's namespace (where it listens).
struct Api {
    cp: ControlPlane,
    node1_netns: String,
    /// What [`Api::objects`] read just before kube-apiserver was stopped; nothing can change
    /// while it is down, so that is what it holds meanwhile. None while it runs.
    while_down: Mutex<Option<Vec<Value>>>,
}

impl Api {
    /// Runs `f` on a thread inside node 1's namespace.
    fn in_node1<T: Send>(&self, f: impl FnOnce(&ControlPlane) -> T + Send) -> T {
        netns::in_netns(&self.node1_netns, || f(&self.cp))
            .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"))
    }

    /// Server-side apply of `obj` (a pod's IP through the status subresource).
    fn apply(&self, obj: Value) {
        self.in_node1(|cp| cp.apply_object(&obj));
    }

    fn delete(&self, kind: &str, ns: &str, name: &str) {
        let resource = match kind {
            "NetworkPolicy" => "networkpolicies.networking.k8s.io",
            "Pod" => "pods",
            other => panic!("delete of a {other}"),
        };
        self.in_node1(|cp| cp.kubectl_ok(&["delete", resource, "-n", ns, name]));
    }

    /// Every namespace, pod and network policy the API server holds now (what the agents
    /// watch: also `default`, `kube-system`, deploy/'s `nftpol`, ...).
    fn objects(&self) -> Vec<Value> {
        if let Some(objects) = self.while_down.lock().unwrap().as_ref() {
            return objects.clone();
        }
        let out = self.in_node1(|cp| {
            cp.kubectl_ok(&[
                "get",
                "namespaces,pods,networkpolicies.networking.k8s.io",
                "--all-namespaces",
                "-o",
                "json",
            ])
        });
        let list: Value = serde_json::from_str(&out).expect("kubectl get -o json");
        list["items"].as_array().expect("a List").clone()
    }

    /// Stops kube-apiserver (etcd keeps running).
    fn stop(&self) {
        let objects = self.objects();
        self.cp.stop_apiserver();
        *self.while_down.lock().unwrap() = Some(objects);
    }

    /// Starts kube-apiserver again inside node 1's namespace; returns once it is ready.
    fn restart(&self) {
        self.in_node1(ControlPlane::start_apiserver);
        *self.while_down.lock().unwrap() = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

struct Agent {
    node: String,
    netns: String,
    kubeconfig: PathBuf,
    log: PathBuf,
    process: Option<AgentProcess>,
}

impl Agent {
    fn new(node: &str, netns: &str, kubeconfig: PathBuf, dir: &Path) -> Agent {
        let mut a = Agent {
            node: node.to_string(),
            netns: netns.to_string(),
            kubeconfig,
            log: dir.join(format!("agent-{node}.log")),
            process: None,
        };
        a.start();
        a
    }

    /// Starts `nftpol run` in the node's namespace (appending to its log).
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.netns,
            BIN,
            "run",
            "--node",
            &self.node,
        ])
        .args(["--listen", METRICS, "--resync", "1s"])
        .args(["--min-interval", "50ms", "--max-delay", "300ms"])
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        // `ip netns exec` execs the agent, so the child's pid is the agent's.
        self.process = Some(AgentProcess::spawn(&mut cmd));
    }

    fn kill9(&mut self) {
        let p = self.process.take().expect("agent running");
        let status = p.kill9();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the agent died of SIGKILL, not of something else ({status})"
        );
    }

    fn metrics(&self) -> String {
        netns::in_netns(&self.netns, || metrics_text(METRICS))
            .unwrap()
            .unwrap_or_default()
    }

    fn metric(&self, name: &str, filter: &str) -> f64 {
        metric_in(&self.metrics(), name, filter)
    }

    fn applies(&self, kind: &str) -> f64 {
        self.metric("nftpol_applies_total", &format!("kind=\"{kind}\""))
    }

    /// Waits until the apply counters stop moving: the worker counts an
    /// apply just after `nft` returns, so the kernel table can match a moment
    /// before the counter does.
    fn settle_counters(&self) {
        let total = || self.metric("nftpol_applies_total", "");
        let until = Instant::now() + Duration::from_secs(5);
        let mut last = total();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = total();
            if now == last || Instant::now() > until {
                return;
            }
            last = now;
        }
    }

    fn readyz(&self) -> Option<u16> {
        netns::in_netns(&self.netns, || {
            kit::agent::http_get(METRICS, "/readyz").map(|r| r.0)
        })
        .unwrap()
    }

    fn assert_alive(&mut self) {
        let p = self.process.as_mut().expect("agent started");
        assert!(
            p.running(),
            "agent on {} exited; log:\n{}",
            self.node,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel tables
// ---------------------------------------------------------------------------------------------

/// `nft -j list table inet nftpol` in `ns`, normalised with counters zeroed (the tables
/// compared saw different traffic); None without a table.
fn kernel_table(ns: &str) -> Option<Value> {
    listing::table_in(ns, Counters::Zeroed)
}

/// An empty namespace to load fresh full compiles into.
struct Scratch(Netns);

impl Scratch {
    fn new() -> Scratch {
        Scratch(Netns::new("scratch").unwrap())
    }

    /// The table a fresh full compile of `objects` for `node` produces in an empty kernel.
    fn fresh_table(&self, objects: &[Value], node: &str) -> Value {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let mut objs = nftpol::core::k8s::Objects::default();
        let mut diags = Vec::new();
        nftpol::core::k8s::parse_into(&list.to_string(), "api", &mut objs, &mut diags);
        assert!(
            diags.iter().all(|d| !d.is_error()),
            "the API server's objects load: {diags:?}"
        );
        let compiled = nftpol::core::compile::compile_objects(
            &objs,
            &nftpol::core::compile::Options {
                node: Some(node.to_string()),
                ..Default::default()
            },
        );
        let script = nftpol::core::nft::render::script(&compiled.ruleset);
        self.0.exec(&["nft", "-f", "-"], Some(&script)).unwrap();
        kernel_table(self.0.name()).expect("the fresh table loaded")
    }
}

// ---------------------------------------------------------------------------------------------
// The test bed
// ---------------------------------------------------------------------------------------------

/// Fields drop in order: agents first, the namespaces last.
struct Bed {
    agents: Vec<Agent>,
    /// Node 2's way to the API server: 127.0.0.1:P in node 2 → node 1's underlay address.
    relay_n2: Relay,
    /// Node 1's underlay address → the API server on 127.0.0.1:P in node 1.
    _relay_n1: Relay,
    api: Api,
    scratch: Scratch,
    topo: Topology,
    dir: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Failures print the agents' logs in their message; set NFTPOL_E2E_KEEP to keep them
        // (and the kubeconfigs) anyway.
        if std::env::var_os("NFTPOL_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("agent logs kept in {}", self.dir.display());
        }
    }
}

impl Bed {
    fn agent(&mut self, node: &str) -> &mut Agent {
        self.agents.iter_mut().find(|a| a.node == node).unwrap()
    }

    /// Waits until every node's kernel table equals a fresh full compile of the API server's
    /// objects for that node; returns how long it took.
    fn converge(&mut self, label: &str) -> Duration {
        self.converge_within(label, APPLY_DEADLINE)
    }

    fn converge_within(&mut self, label: &str, deadline: Duration) -> Duration {
        self.converge_nodes(label, &["n1", "n2"], deadline)
    }

    /// [`Self::converge_within`] for the agents of `nodes` only.
    fn converge_nodes(&mut self, label: &str, nodes: &[&str], deadline: Duration) -> Duration {
        let start = Instant::now();
        let objects = self.api.objects();
        for a in self
            .agents
            .iter_mut()
            .filter(|a| nodes.contains(&a.node.as_str()))
        {
            a.assert_alive();
            let want = self.scratch.fresh_table(&objects, &a.node);
            let mut last = None;
            let until = start + deadline;
            loop {
                let mut got = kernel_table(&a.netns);
                if let Some(g) = got.as_mut()
                    && let Err(e) = listing::with_generation_of(g, &want)
                {
                    panic!("[{label}] node {}: {e}", a.node);
                }
                if got.as_ref() == Some(&want) {
                    break;
                }
                if Instant::now() > until {
                    let diff = match &got {
                        Some(g) => listing::diff(g, &want),
                        None => "  no table inet nftpol at all\n".into(),
                    };
                    last = Some(diff);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(diff) = last {
                panic!(
                    "[{label}] node {}: kernel table differs from a fresh compile after {:?}:\n{diff}\nagent log:\n{}",
                    a.node,
                    deadline,
                    std::fs::read_to_string(&a.log).unwrap_or_default()
                );
            }
        }
        let took = start.elapsed();
        for a in self
            .agents
            .iter()
            .filter(|a| nodes.contains(&a.node.as_str()))
        {
            a.settle_counters();
        }
        took
    }

    /// Every ordered pod pair, TCP and UDP, IPv4 and IPv6, compared with the oracle's verdict
    /// for the API server's current objects.
    fn check(&self, label: &str) {
        let mut cluster = oracle::Cluster::default();
        for o in self.api.objects() {
            cluster.add_document(o).unwrap();
        }
        let pods = self.topo.pods();
        let mut cases = Vec::new();
        for a in &pods {
            for b in pods.iter().filter(|b| *b != a) {
                for fam in [Family::V4, Family::V6] {
                    for proto in [Proto::Tcp, Proto::Udp] {
                        let (src, dst) = (self.topo.pod_ip(a, fam), self.topo.pod_ip(b, fam));
                        let flow = oracle::Flow {
                            src,
                            dst,
                            proto: proto.into(),
                            port: PORT,
                        };
                        cases.push((
                            ProbeSpec::pod(a, dst, proto, PORT),
                            oracle::allowed(&cluster, &flow),
                        ));
                    }
                }
            }
        }
        match self.topo.check(label, &cases) {
            Ok(summary) => eprintln!("{summary}"),
            Err(report) => panic!("{report}"),
        }
    }

    /// Whether the oracle allows `from` → `to` (TCP, IPv4) for the current objects.
    fn oracle_allows(&self, from: &str, to: &str) -> bool {
        let mut cluster = oracle::Cluster::default();
        for o in self.api.objects() {
            cluster.add_document(o).unwrap();
        }
        oracle::allowed(
            &cluster,
            &oracle::Flow {
                src: self.topo.pod_ip(from, Family::V4),
                dst: self.topo.pod_ip(to, Family::V4),
                proto: oracle::Proto::Tcp,
                port: PORT,
            },
        )
    }

    /// Asserts that every agent applied `what` as element deltas only since
    /// `before` (from [`Self::counts`]): no full replacement, at least one delta.
    fn assert_only_deltas(&self, before: &[(f64, f64)], what: &str) {
        for (a, (full, delta)) in self.agents.iter().zip(before) {
            assert_eq!(a.applies("full"), *full, "{}: {what} is not full", a.node);
            assert!(a.applies("delta") > *delta, "{}: {what} is a delta", a.node);
        }
    }

    /// Applies counters per node: (full, delta).
    fn counts(&self) -> Vec<(f64, f64)> {
        self.agents
            .iter()
            .map(|a| (a.applies("full"), a.applies("delta")))
            .collect()
    }

    /// Time until a TCP probe `from` → `to` (IPv4) first gets through, probing every few ms.
    fn time_until_reached(&self, from: &str, to: &str, since: Instant) -> Duration {
        let ns = self.topo.pod_netns(from).to_string();
        let addr = SocketAddr::new(self.topo.pod_ip(to, Family::V4), PORT);
        loop {
            let o = probe::probe_in(
                &ns,
                addr,
                Proto::Tcp,
                Duration::from_millis(10),
                ChecksumMode::Correct,
            )
            .unwrap();
            if o.reached() {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < APPLY_DEADLINE,
                "{from} → {to} never became reachable"
            );
        }
    }

    fn ip(&self, pod: &str) -> Option<(IpAddr, IpAddr)> {
        Some((
            self.topo.pod_ip(pod, Family::V4),
            self.topo.pod_ip(pod, Family::V6),
        ))
    }
}

/// Builds the topology, the control plane in node 1 (kube-apiserver stopped again after the
/// initial objects were written), the relays and one agent per node; the agents cannot sync
/// until kube-apiserver is restarted.
fn bed() -> Bed {
    let spec = TopoSpec::two_nodes("n1", "n2")
        .ports(&[PORT])
        .pod_at("web-a", "n1", 10)
        .pod_at("cli-a", "n1", 11)
        .pod_at("ops-a", "n1", 12)
        .pod_at("web-b", "n2", 10)
        .pod_at("cli-b", "n2", 11)
        .pod_at("ops-b", "n2", 12)
        .pod_at("late-b", "n2", 13);
    let topo = Topology::build(Shape::Routed, &spec).expect("topology");
    let n1 = topo.node_netns("n1").to_string();
    let n2 = topo.node_netns("n2").to_string();
    let node1_ip = topo.node_ip("n1", Family::V4);
    let t = Instant::now();
    let cp = netns::in_netns(&n1, ControlPlane::start)
        .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
    eprintln!("control plane up in {:?}", t.elapsed());
    let port: u16 = cp
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the API server's URL");
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let underlay = SocketAddr::new(node1_ip, port);
    let relay_n1 = netns::in_netns(&n1, || Relay::start(underlay, loopback))
        .unwrap()
        .expect("relay binds node 1's address");
    let relay_n2 = netns::in_netns(&n2, || Relay::start(loopback, underlay))
        .unwrap()
        .expect("relay binds 127.0.0.1 in node 2");
    let dir = std::env::temp_dir().join(format!("nftpol-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let api = Api {
        cp,
        node1_netns: n1.clone(),
        while_down: Mutex::new(None),
    };
    // deploy/ as a cluster admin would apply it (no controller manager: the ServiceAccount is
    // deploy/'s own, its token comes from the TokenRequest API).
    let kubeconfig = api.in_node1(|cp| {
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        cp.token_kubeconfig("nftpol", "nftpol")
    });
    let ip = |p: &str| Some((topo.pod_ip(p, Family::V4), topo.pod_ip(p, Family::V6)));
    api.apply(namespace("web", "web"));
    api.apply(namespace("ops", "ops"));
    api.apply(pod(
        "web",
        "web-a",
        "n1",
        ip("web-a"),
        json!({"app": "web"}),
    ));
    api.apply(pod(
        "web",
        "cli-a",
        "n1",
        ip("cli-a"),
        json!({"role": "client"}),
    ));
    api.apply(pod(
        "ops",
        "ops-a",
        "n1",
        ip("ops-a"),
        json!({"role": "client"}),
    ));
    api.apply(pod(
        "web",
        "web-b",
        "n2",
        ip("web-b"),
        json!({"app": "web"}),
    ));
    api.apply(pod(
        "web",
        "cli-b",
        "n2",
        ip("cli-b"),
        json!({"role": "client"}),
    ));
    api.apply(pod(
        "ops",
        "ops-b",
        "n2",
        ip("ops-b"),
        json!({"role": "other"}),
    ));
    api.apply(policy(
        "web",
        "default-deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    api.apply(policy(
        "web",
        "allow-clients",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"role": "client"}}},
                {"namespaceSelector": {"matchLabels": {"team": "ops"}},
                 "podSelector": {"matchLabels": {"role": "client"}}}],
              "ports": [{"protocol": "TCP", "port": PORT}, {"protocol": "UDP", "port": PORT}]}]}),
    ));
    api.apply(policy(
        "ops",
        "egress-to-web",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]}]}),
    ));
    api.stop();

    // Both agents use the same token-only kubeconfig (https://127.0.0.1:P, the CA, the token).
    let agents = vec![
        Agent::new("n1", &n1, kubeconfig.clone(), &dir),
        Agent::new("n2", &n2, kubeconfig, &dir),
    ];
    Bed {
        agents,
        relay_n2,
        _relay_n1: relay_n1,
        api,
        scratch: Scratch::new(),
        topo,
        dir,
    }
}

#[test]
fn agents_enforce_what_the_api_server_says_with_real_packets() {
    // Built (if need be) here, not inside node 1's namespace, which has no
    // route to the Go module proxy.
    control_plane::ensure_binaries();
    let t0 = Instant::now();
    let mut bed = bed();
    eprintln!("test bed up in {:?}", t0.elapsed());

    // 1. kube-apiserver stopped: nothing synced, nothing written, not ready.
    std::thread::sleep(Duration::from_millis(700));
    for a in &mut bed.agents {
        a.assert_alive();
        wait_for("the metrics server", Duration::from_secs(10), || {
            a.readyz().is_some()
        });
        assert_eq!(a.readyz(), Some(503), "{}: not ready before sync", a.node);
        assert!(
            kernel_table(&a.netns).is_none(),
            "{}: nothing is written before the watches synced",
            a.node
        );
    }
    bed.api.restart();
    let took = bed.converge("initial sync");
    for a in &bed.agents {
        wait_for("readiness", Duration::from_secs(5), || {
            a.readyz() == Some(200)
        });
        assert_eq!(a.applies("full"), 1.0, "{}: the first sync is full", a.node);
    }
    eprintln!("initial sync after API server start: {took:?}");
    bed.check("1 initial");

    // 2. Relabels only move set elements: deltas on both nodes, no full replacement.
    let before = bed.counts();
    assert!(!bed.oracle_allows("ops-b", "web-a"));
    let t = Instant::now();
    let ops_b = pod(
        "ops",
        "ops-b",
        "n2",
        bed.ip("ops-b"),
        json!({"role": "client"}),
    );
    bed.api.apply(ops_b);
    let delta_latency = bed.time_until_reached("ops-b", "web-a", t);
    let cli_a = pod(
        "web",
        "cli-a",
        "n1",
        bed.ip("cli-a"),
        json!({"role": "none"}),
    );
    bed.api.apply(cli_a);
    bed.converge("2 relabel");
    bed.assert_only_deltas(&before, "a relabel");
    bed.check("2 relabel");

    // 3. A new pod without an IP contributes nothing; its IP arrives as a delta.
    let before = bed.counts();
    bed.api
        .apply(pod("web", "late-b", "n2", None, json!({"role": "client"})));
    bed.converge("3 pod without IP");
    let late = pod(
        "web",
        "late-b",
        "n2",
        bed.ip("late-b"),
        json!({"role": "client"}),
    );
    bed.api.apply(late);
    bed.converge("3 pod gets its IP");
    bed.assert_only_deltas(&before, "a new pod");
    bed.check("3 new pod");

    // 4. Policies: added, modified, deleted → full replacements.
    let allow_ops = |team: &str| {
        policy(
            "web",
            "allow-ops",
            json!({"podSelector": {}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"team": team}}}]}]}),
        )
    };
    assert!(!bed.oracle_allows("ops-a", "cli-a"));
    let before = bed.counts();
    let t = Instant::now();
    bed.api.apply(allow_ops("ops"));
    let full_latency = bed.time_until_reached("ops-a", "cli-a", t);
    bed.converge("4 policy added");
    bed.check("4 policy added");
    bed.api.apply(allow_ops("nobody"));
    bed.converge("4 policy modified");
    bed.check("4 policy modified");
    bed.api.delete("NetworkPolicy", "web", "allow-ops");
    bed.converge("4 policy deleted");
    for (a, (full, _)) in bed.agents.iter().zip(&before) {
        assert!(
            a.applies("full") >= full + 3.0,
            "{}: each policy change is a full replacement",
            a.node
        );
    }
    bed.check("4 policy deleted");
    eprintln!(
        "event to enforcement, seen by packets: delta (relabel) {delta_latency:?}, full (new policy) {full_latency:?}"
    );

    // 5. kube-apiserver down for 30 s: enforcement unchanged, readiness kept, the lost API
    //    server visible on /metrics, and the agents' retries bounded by their backoff (node 2's
    //    connection attempts counted at its relay); back up: changes made after arrive.
    let watch_errors = |a: &Agent| a.metric("nftpol_watch_errors_total", "");
    let errors_before: Vec<f64> = bed.agents.iter().map(watch_errors).collect();
    bed.api.stop();
    let outage = Instant::now();
    let attempts_before = bed.relay_n2.accepted();
    let n2_errors_before = watch_errors(&bed.agents[1]);
    bed.check("5 API server down");
    for a in &mut bed.agents {
        a.assert_alive();
        assert_eq!(
            a.readyz(),
            Some(200),
            "{}: the last ruleset stays in force (readiness only tracks applies)",
            a.node
        );
    }
    for (a, before) in bed.agents.iter().zip(&errors_before) {
        wait_for(
            &format!("{}: nftpol_watch_errors_total rises", a.node),
            Duration::from_secs(10),
            || watch_errors(a) > *before,
        );
    }
    std::thread::sleep(OUTAGE.saturating_sub(outage.elapsed()));
    let window = outage.elapsed();
    let attempts = bed.relay_n2.accepted() - attempts_before;
    let n2_errors = watch_errors(&bed.agents[1]) - n2_errors_before;
    // One list/watch per watched kind: pods, namespaces, networkpolicies,
    // nodes, clusternetworkpolicies (this cluster has no CNP CRD: its list
    // answers 404 and retries with the same backoff).
    const WATCHES: usize = 5;
    let bound = WATCHES * max_attempts(window);
    eprintln!(
        "API server down {window:?}: node 2's agent opened {attempts} connections ({n2_errors} watch errors) for its {WATCHES} watches; the backoff allows at most {bound}"
    );
    assert!(
        attempts <= bound,
        "node 2's agent retried {attempts} times in {window:?}; its backoff allows at most {bound}"
    );
    assert!(
        attempts >= WATCHES * 4,
        "node 2's agent kept retrying all {WATCHES} watches ({attempts} attempts in {window:?})"
    );
    for a in &mut bed.agents {
        a.assert_alive();
    }
    bed.api.restart();
    let back = Instant::now();
    let cli_a = pod(
        "web",
        "cli-a",
        "n1",
        bed.ip("cli-a"),
        json!({"role": "client"}),
    );
    bed.api.apply(cli_a);
    let ops_b = pod(
        "ops",
        "ops-b",
        "n2",
        bed.ip("ops-b"),
        json!({"role": "other"}),
    );
    bed.api.apply(ops_b);
    // The agent's watch backoff tops out at 5 s (kube-runtime's default, as client-go's,
    // reached 30 s and made this step take up to ~30 s); the rest is relist, coalescing
    // and a loaded machine.
    bed.converge_within("5 API server back", Duration::from_secs(20));
    eprintln!(
        "caught up {:?} after the API server came back",
        back.elapsed()
    );
    bed.check("5 API server back");

    // 6. Node 2 behind a compacted history: its connection is cut (its relay refuses) while
    //    objects change several times (node 1 follows), etcd is compacted to its current
    //    revision and kube-apiserver restarted (so its watch cache, which could still serve
    //    node 2's old resourceVersion from memory, starts over at the compacted revision);
    //    node 2 then reconnects: resuming its watches gets 410 Gone, the watcher lists again,
    //    and both tables converge.
    let n2_errors_before = watch_errors(&bed.agents[1]);
    bed.relay_n2.cut(true);
    wait_for(
        "node 2's watches lose the API server",
        Duration::from_secs(10),
        || watch_errors(&bed.agents[1]) > n2_errors_before,
    );
    // cli-b flips back and forth (many events, no net change); ops-b becomes a client, which
    //    changes a peer set on both nodes.
    for role in ["none", "client", "none", "client", "none", "client"] {
        let cli_b = pod("web", "cli-b", "n2", bed.ip("cli-b"), json!({"role": role}));
        bed.api.apply(cli_b);
    }
    assert!(!bed.oracle_allows("ops-b", "web-a"));
    let ops_b = pod(
        "ops",
        "ops-b",
        "n2",
        bed.ip("ops-b"),
        json!({"role": "client"}),
    );
    bed.api.apply(ops_b);
    assert!(bed.oracle_allows("ops-b", "web-a"));
    bed.converge_nodes("6 node 1 follows", &["n1"], APPLY_DEADLINE);
    let revision = bed.api.in_node1(ControlPlane::compact_etcd);
    bed.api.stop();
    bed.api.restart();
    let expired_before = expired_lines(&bed.agents[1]);
    let back = Instant::now();
    bed.relay_n2.cut(false);
    bed.converge_within("6 relisted after compaction", Duration::from_secs(20));
    let expired = expired_lines(&bed.agents[1]) - expired_before;
    eprintln!(
        "etcd compacted at revision {revision}; node 2 caught up {:?} after reconnecting, {expired} watch(es) told 410 Gone",
        back.elapsed()
    );
    assert!(
        expired >= 1,
        "node 2 resumed a watch from before the compaction and was told 410 Gone"
    );
    bed.check("6 relisted after compaction");

    // 7. kill -9 of node 1's agent under probes: the table stays, nothing denied gets through.
    let denied = [("web-b", "cli-a"), ("ops-a", "ops-b")];
    let allowed = ("cli-b", "web-a");
    for (from, to) in denied {
        assert!(!bed.oracle_allows(from, to), "{from} → {to} is denied");
    }
    assert!(bed.oracle_allows(allowed.0, allowed.1));
    let stop = AtomicBool::new(false);
    let leaks = AtomicUsize::new(0);
    let denied_probes = AtomicUsize::new(0);
    let allowed_ok = AtomicUsize::new(0);
    let allowed_probes = AtomicUsize::new(0);
    let flows: Vec<(String, SocketAddr, bool)> = denied
        .iter()
        .map(|(f, t)| (*f, *t, false))
        .chain([(allowed.0, allowed.1, true)])
        .flat_map(|(f, t, ok)| {
            [Family::V4, Family::V6].map(|fam| {
                (
                    bed.topo.pod_netns(f).to_string(),
                    SocketAddr::new(bed.topo.pod_ip(t, fam), PORT),
                    ok,
                )
            })
        })
        .collect();
    let window = std::thread::scope(|s| {
        for (ns, addr, ok) in &flows {
            for proto in [Proto::Tcp, Proto::Udp] {
                let (stop, leaks, denied_probes, allowed_ok, allowed_probes) =
                    (&stop, &leaks, &denied_probes, &allowed_ok, &allowed_probes);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let o = probe::probe_in(
                            ns,
                            *addr,
                            proto,
                            Duration::from_millis(300),
                            ChecksumMode::Correct,
                        )
                        .unwrap();
                        if *ok {
                            allowed_probes.fetch_add(1, Ordering::Relaxed);
                            if o.reached() {
                                allowed_ok.fetch_add(1, Ordering::Relaxed);
                            }
                        } else {
                            denied_probes.fetch_add(1, Ordering::Relaxed);
                            if !matches!(o, Outcome::Timeout) {
                                leaks.fetch_add(1, Ordering::Relaxed);
                                eprintln!("LEAK: {proto} {addr} from {ns}: {o}");
                            }
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
            }
        }
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        bed.agent("n1").kill9();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            kernel_table(&bed.agents[0].netns).is_some(),
            "the table outlives a killed agent"
        );
        bed.agent("n1").start();
        let a = &bed.agents[0];
        wait_for("the restarted agent's first apply", APPLY_DEADLINE, || {
            a.applies("full") >= 1.0 && a.readyz() == Some(200)
        });
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
        start.elapsed()
    });
    let (leaks, denied_probes) = (leaks.into_inner(), denied_probes.into_inner());
    let (allowed_ok, allowed_probes) = (allowed_ok.into_inner(), allowed_probes.into_inner());
    eprintln!(
        "kill -9 window {window:?}: {denied_probes} denied-flow probes, {leaks} got through; allowed flow {allowed_ok}/{allowed_probes}"
    );
    assert!(
        denied_probes >= 8,
        "the denied flows were probed throughout"
    );
    assert_eq!(
        leaks, 0,
        "a denied flow got through while the agent was down"
    );
    assert!(allowed_ok > 0, "the allowed flow kept working");
    assert!(
        bed.topo
            .probe_many(&[
                ProbeSpec::pod(
                    allowed.0,
                    bed.topo.pod_ip(allowed.1, Family::V4),
                    Proto::Tcp,
                    PORT
                ),
                ProbeSpec::pod(
                    allowed.0,
                    bed.topo.pod_ip(allowed.1, Family::V6),
                    Proto::Udp,
                    PORT
                ),
            ])
            .iter()
            .all(|r| *r),
        "the allowed flow works after the restart"
    );
    bed.converge("7 agent restarted");
    bed.check("7 agent restarted");

    // 8. Drift: an element swapped for another (same counts) on node 1, the whole table
    //    deleted on node 2; the periodic resync detects and repairs both.
    let drift_before: Vec<f64> = bed
        .agents
        .iter()
        .map(|a| a.metric("nftpol_resyncs_total", "kind=\"drift\""))
        .collect();
    let n1 = bed.agents[0].netns.clone();
    let cli_a4 = bed.topo.pod_ip("cli-a", Family::V4).to_string();
    let table = kernel_table(&n1).unwrap();
    let set = table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("set"))
        .find(|s| {
            s["type"] == "ipv4_addr"
                && s["elem"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x == &json!(cli_a4)))
        })
        .expect("a peer set holding cli-a")["name"]
        .as_str()
        .unwrap()
        .to_string();
    netns::exec(
        &n1,
        &["nft", "-f", "-"],
        Some(&format!(
            "delete element inet nftpol {set} {{ {cli_a4} }}\nadd element inet nftpol {set} {{ 10.244.9.99 }}\n"
        )),
    )
    .unwrap();
    netns::exec(
        &bed.agents[1].netns,
        &["nft", "delete", "table", "inet", "nftpol"],
        None,
    )
    .unwrap();
    let took = bed.converge("8 drift repaired");
    for (a, before) in bed.agents.iter().zip(&drift_before) {
        assert!(
            a.metric("nftpol_resyncs_total", "kind=\"drift\"") > *before,
            "{}: the resync counted the drift",
            a.node
        );
    }
    eprintln!("drift repaired within {took:?}");
    bed.check("8 drift repaired");

    // 9. After the whole sequence each kernel table equals a fresh full compile (converge
    //    compared them after every step; say it once more explicitly).
    let objects = bed.api.objects();
    for a in &bed.agents {
        let want = bed.scratch.fresh_table(&objects, &a.node);
        let mut got = kernel_table(&a.netns).unwrap();
        listing::with_generation_of(&mut got, &want).unwrap();
        assert!(
            got == want,
            "{}: final table differs:\n{}",
            a.node,
            listing::diff(&got, &want)
        );
    }
    for a in &mut bed.agents {
        a.assert_alive();
    }
    eprintln!("whole test {:?}", t0.elapsed());
}
