//! A fleet: one `nftpol run` per node, each in its own network namespace
//! (its own kernel tables), all against one real API server (etcd +
//! kube-apiserver from `nftpol_testkit::control_plane`), as a DaemonSet
//! runs. Reports:
//!
//! - start-up: agent start → first table in every node's kernel;
//! - a policy change (created, then deleted) and a new pod → every node's
//!   kernel: per change, the time until the LAST node's kernel committed
//!   it (p50/p99/max over changes), and per node (p50/p99);
//! - what each agent costs the API server: requests (from the API
//!   server's audit log, one ServiceAccount per node) and bytes on the
//!   wire (TLS included, counted by each node's relay), at start-up, per
//!   change, and per minute in a quiet steady state;
//! - each agent's CPU time (start-up, per change, steady state): on this
//!   machine the agents share two cores, so a change reaches the last
//!   kernel after about the sum of the agents' CPU for it over two;
//! - each agent's peak RSS.
//!
//! Topology: a hub namespace holds the control plane (on its loopback) and
//! a bridge; each node namespace has a veth on it and a relay from its own
//! `127.0.0.1:<port>` to the hub (which relays to the API server), so the
//! agents' kubeconfigs are the ones TokenRequest gives. Kernel changes are
//! seen from outside the agents: a listener on each node's nftables
//! notifications (`nftpol_testkit::nftmon`), the change's clock starting
//! before the write to the API server.
//!
//! Workload: the synthetic cluster of the chosen scale (pods spread over
//! the nodes), plus a namespace `fleet` with one pod per node (`app:
//! fleet`) and a policy admitting `role: client` pods, so a policy there
//! and a new client pod reach every node's table.
//!
//! `cargo bench --bench fleet` runs 20 nodes at the large scale
//! (`NFTPOL_FLEET_NODES`, `NFTPOL_FLEET_SCALE`=small|medium|large,
//! `NFTPOL_FLEET_SAMPLES`, `NFTPOL_FLEET_QUIET_SECS` for the steady-state
//! window). Under `cargo test` it runs 3 nodes at the small scale with a
//! few samples as a smoke test.

#[path = "agent_latency/write.rs"]
mod write;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use nftpol_testkit::agent::AgentProcess;
use nftpol_testkit::bench::env_or;
use nftpol_testkit::control_plane::{self, ControlPlane};
use nftpol_testkit::netns::{self, Netns};
use nftpol_testkit::nftmon::{Monitor, cpu_seconds};
use nftpol_testkit::relay::Relay;
use nftpol_testkit::synth;
use write::{ms, pct, peak_rss_mb, pod_status};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
/// The hub's address on the bridge; node `i` (from 1) is `.10 + i`.
const HUB: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// Where the fleet's own pods get their addresses (not synth's ranges).
const FLEET_NET: &str = "10.251";

/// One node: its namespace, relay, kernel listener and agent.
struct Node {
    name: String,
    netns: Netns,
    relay: Relay,
    monitor: Monitor,
    agent: Option<AgentProcess>,
    user: String,
}

fn ip(args: &[&str]) {
    netns::run("ip", args, None).unwrap_or_else(|e| panic!("ip {args:?}: {e:#}"));
}

/// The hub (bridge `br0` with [`HUB`]) and `n` node namespaces, each with a
/// veth on the bridge.
fn build_namespaces(n: usize) -> (Netns, Vec<(String, Netns)>) {
    let hub = Netns::new("hub").expect("the hub namespace");
    let h = hub.name();
    ip(&["-n", h, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", h, "addr", "add", &format!("{HUB}/24"), "dev", "br0"]);
    ip(&["-n", h, "link", "set", "br0", "up"]);
    let mut nodes = Vec::new();
    for i in 1..=n {
        let name = format!("node-{i:02}");
        let ns = Netns::new(&format!("n{i:02}")).expect("a node namespace");
        let port = format!("v{i}");
        ip(&[
            "-n",
            h,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ]);
        ip(&["-n", h, "link", "set", &port, "master", "br0", "up"]);
        let addr = Ipv4Addr::new(192, 168, 77, 10 + i as u8);
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", ns.name(), "link", "set", "eth0", "up"]);
        nodes.push((name, ns));
    }
    (hub, nodes)
}

/// Audit logging of every request by the nodes' ServiceAccounts, one line
/// per request (when received).
fn audit_args(dir: &Path) -> (Vec<String>, PathBuf) {
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\n\
         omitStages: [ResponseStarted, ResponseComplete, Panic]\n\
         rules:\n\
         - level: Metadata\n  userGroups: [\"system:serviceaccounts:nftpol\"]\n\
         - level: None\n",
    )
    .unwrap();
    let log = dir.join("audit.log");
    let args = vec![
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log.display()),
        "--audit-log-format=json".into(),
        "--audit-log-maxsize=0".into(),
    ];
    (args, log)
}

/// Requests per user in the audit log between byte offsets `from` and `to`.
fn requests(log: &Path, from: usize, to: usize) -> BTreeMap<String, usize> {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[from.min(text.len())..to.min(text.len())]);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(user) = v["user"]["username"].as_str() {
            *out.entry(user.to_string()).or_default() += 1;
        }
    }
    out
}

fn audit_len(log: &Path) -> usize {
    std::fs::metadata(log)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// Transactions each node's kernel committed so far.
fn txn_counts(nodes: &[Node]) -> Vec<usize> {
    nodes.iter().map(|n| n.monitor.count()).collect()
}

/// Waits until no node's kernel committed anything for `quiet` (at most `max`).
fn settle(nodes: &[Node], quiet: Duration, max: Duration) {
    let start = Instant::now();
    let mut last = txn_counts(nodes);
    let mut since = Instant::now();
    while since.elapsed() < quiet && start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(20));
        let now = txn_counts(nodes);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// After a write at `t` (with `before` transactions per node): the time
/// until each node's kernel committed its next transaction.
fn wait_all(nodes: &[Node], before: &[usize], t: Instant, what: &str) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: Vec<Option<Duration>> = nodes
            .iter()
            .zip(before)
            .map(|(n, b)| n.monitor.committed(*b).map(|at| at - t))
            .collect();
        if got.iter().all(Option::is_some) {
            return got.into_iter().flatten().collect();
        }
        let missing: Vec<&str> = nodes
            .iter()
            .zip(&got)
            .filter(|(_, g)| g.is_none())
            .map(|(n, _)| n.name.as_str())
            .collect();
        assert!(
            Instant::now() < deadline,
            "{what}: no kernel change on {missing:?} within 120 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn fleet_pod(name: &str, node: &str, labels: Value, ip: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "fleet", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        "status": {"podIPs": [{"ip": ip}]}}))
    .unwrap()
}

fn fleet_policy(name: &str, from: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "fleet"},
        "spec": {"podSelector": {"matchLabels": {"app": "fleet"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": from}}]}]}}))
    .unwrap()
}

/// p50 / p99 / max of `v`, formatted.
fn spread(v: &mut [Duration]) -> String {
    format!(
        "p50 {} p99 {} max {}",
        ms(pct(v, 0.5)),
        ms(pct(v, 0.99)),
        ms(pct(v, 1.0))
    )
}

/// Median and max of per-agent figures.
fn per_agent(v: &mut [f64], unit: &str, scale: f64) -> String {
    v.sort_by(f64::total_cmp);
    let (mid, max) = (v[v.len() / 2], v[v.len() - 1]);
    format!(
        "median {:.1}{unit}, max {:.1}{unit}",
        mid / scale,
        max / scale
    )
}

/// The measured changes of one kind: per change the slowest node, and
/// every node's own latency.
#[derive(Default)]
struct Samples {
    last_node: Vec<Duration>,
    each_node: Vec<Duration>,
}

impl Samples {
    fn add(&mut self, per_node: Vec<Duration>) {
        self.last_node
            .push(*per_node.iter().max().expect("at least one node"));
        self.each_node.extend(per_node);
    }

    fn report(&mut self, what: &str, nodes: usize) -> String {
        format!(
            "{what} -> all {nodes} kernels: {} | -> one kernel: {}",
            spread(&mut self.last_node),
            spread(&mut self.each_node)
        )
    }
}

fn run(scale: synth::Scale, n: usize, samples: usize, quiet_secs: u64) {
    let objs = synth::generate(scale, 42);
    let (hub, node_ns) = build_namespaces(n);
    let scratch = std::env::temp_dir().join(format!("nftpol-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let (args, audit) = audit_args(&scratch);
    let t = Instant::now();
    let cp = netns::in_netns(hub.name(), || ControlPlane::start_with(&args)).unwrap();
    let port: u16 = cp.url().rsplit(':').next().unwrap().parse().unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let hub_addr = SocketAddr::from((HUB, port));
    let _hub_relay = netns::in_netns(hub.name(), || Relay::start(hub_addr, loopback))
        .unwrap()
        .expect("the hub relay binds the bridge address");
    // deploy/ as an admin applies it; one ServiceAccount per node (bound to
    // the same ClusterRole) so the audit log tells the agents apart.
    let kubeconfigs: Vec<PathBuf> = netns::in_netns(hub.name(), || {
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        node_ns
            .iter()
            .map(|(name, _)| {
                cp.kubectl_ok(&["create", "serviceaccount", "-n", "nftpol", name]);
                cp.kubectl_ok(&[
                    "create",
                    "clusterrolebinding",
                    &format!("nftpol-{name}"),
                    "--clusterrole=nftpol",
                    &format!("--serviceaccount=nftpol:{name}"),
                ]);
                cp.token_kubeconfig("nftpol", name)
            })
            .collect()
    })
    .unwrap();
    let cp_up = t.elapsed();

    let mut nodes: Vec<Node> = node_ns
        .into_iter()
        .map(|(name, ns)| {
            let (relay, monitor) = netns::in_netns(ns.name(), || {
                (
                    Relay::start(loopback, hub_addr).expect("a node relay binds 127.0.0.1"),
                    Monitor::start().expect("listening to the node's nftables notifications"),
                )
            })
            .unwrap();
            Node {
                user: format!("system:serviceaccount:nftpol:{name}"),
                name,
                netns: ns,
                relay,
                monitor,
                agent: None,
            }
        })
        .collect();

    // The cluster, written from the hub (one thread: its sockets live there).
    netns::in_netns(hub.name(), || {
        let (rt, client) = write::admin(cp.admin_kubeconfig());
        let t = Instant::now();
        rt.block_on(write::write_cluster(&client, &objs));
        let fleet: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "fleet", "labels": {"name": "fleet"}}}))
        .unwrap();
        rt.block_on(async {
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &fleet)
                .await
                .unwrap();
            for (i, node) in nodes.iter().enumerate() {
                let pod = fleet_pod(
                    &format!("fleet-{}", node.name),
                    &node.name,
                    json!({"app": "fleet"}),
                    &format!("{FLEET_NET}.0.{}", i + 2),
                );
                write::create_pod(&client, pod).await.unwrap();
            }
            Api::<NetworkPolicy>::namespaced(client.clone(), "fleet")
                .create(
                    &PostParams::default(),
                    &fleet_policy("clients", json!({"role": "client"})),
                )
                .await
                .unwrap();
        });
        eprintln!(
            "fleet {}: control plane up in {:.1} s; {} namespaces, {} pods, {} policies (+ fleet: {n} pods, 1 policy) written in {:.1} s",
            scale.name,
            cp_up.as_secs_f64(),
            objs.namespaces.len(),
            objs.pods.len(),
            objs.policies.len(),
            t.elapsed().as_secs_f64()
        );
    })
    .unwrap();

    // Start every agent at once, as a DaemonSet rollout on a fresh cluster.
    let audit_start = audit_len(&audit);
    let started = Instant::now();
    for (node, kubeconfig) in nodes.iter_mut().zip(&kubeconfigs) {
        let mut cmd = node.netns.command(BIN);
        cmd.args([
            "run",
            "--node",
            &node.name,
            "--listen",
            "127.0.0.1:9750",
            "--resync",
            "0s",
            // No NodeProgramStatus writes: not what this measures.
            "--status-interval",
            "0s",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        node.agent = Some(AgentProcess::spawn(&mut cmd));
    }
    let zero = vec![0; nodes.len()];
    let mut first = wait_all(&nodes, &zero, started, "the first table");
    settle(
        &nodes,
        Duration::from_millis(1000),
        Duration::from_secs(120),
    );
    let audit_settled = audit_len(&audit);
    let bytes_settled: Vec<(u64, u64)> = nodes.iter().map(|n| n.relay.bytes()).collect();
    let cpu = |nodes: &[Node]| -> Vec<f64> {
        let pid = |n: &Node| n.agent.as_ref().expect("spawned").pid();
        let both = |(own, children): (f64, f64)| own + children;
        nodes.iter().map(|n| both(cpu_seconds(pid(n)))).collect()
    };
    let cpu_settled = cpu(&nodes);

    // Changes, written from the hub.
    let mut created = Samples::default();
    let mut deleted = Samples::default();
    let mut new_pod = Samples::default();
    netns::in_netns(hub.name(), || {
        let (rt, client) = write::admin(cp.admin_kubeconfig());
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), "fleet");
        let pods = Api::<Pod>::namespaced(client.clone(), "fleet");
        let step = |write: &mut dyn FnMut(), into: &mut Samples, what: &str| {
            settle(&nodes, Duration::from_millis(300), Duration::from_secs(30));
            let before = txn_counts(&nodes);
            let t = Instant::now();
            write();
            into.add(wait_all(&nodes, &before, t, what));
        };
        for i in 0..samples {
            let pol = fleet_policy(&format!("change-{i}"), json!({"peer": format!("p{i}")}));
            step(
                &mut || {
                    rt.block_on(policies.create(&PostParams::default(), &pol))
                        .expect("creating a policy");
                },
                &mut created,
                "a new policy",
            );
        }
        for i in 0..samples {
            step(
                &mut || {
                    rt.block_on(policies.delete(&format!("change-{i}"), &DeleteParams::default()))
                        .expect("deleting a policy");
                },
                &mut deleted,
                "a policy deleted",
            );
        }
        for i in 0..samples {
            // Created without an address first (nothing to enforce), then
            // the clock runs from the status write, as in agent_latency.
            let name = format!("client-{i}");
            let node = &nodes[i % nodes.len()].name;
            let mut pod = fleet_pod(&name, node, json!({"role": "client"}), "0.0.0.0");
            pod.status = None;
            rt.block_on(pods.create(&PostParams::default(), &pod))
                .expect("creating a pod");
            let ip = format!("{FLEET_NET}.1.{}", i + 2);
            step(
                &mut || {
                    rt.block_on(pods.patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(pod_status(&[&ip])),
                    ))
                    .expect("writing a pod's status");
                },
                &mut new_pod,
                "a new client pod",
            );
        }
    })
    .unwrap();
    settle(&nodes, Duration::from_millis(500), Duration::from_secs(30));
    let changes = 3 * samples;
    let audit_changed = audit_len(&audit);
    let bytes_changed: Vec<(u64, u64)> = nodes.iter().map(|n| n.relay.bytes()).collect();
    let cpu_changed = cpu(&nodes);

    // Steady state: nothing changes.
    let quiet = Duration::from_secs(quiet_secs);
    std::thread::sleep(quiet);
    let audit_quiet = audit_len(&audit);
    let bytes_quiet: Vec<(u64, u64)> = nodes.iter().map(|n| n.relay.bytes()).collect();
    let cpu_quiet = cpu(&nodes);
    let minus =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };

    let phase = |from: usize, to: usize| -> Vec<f64> {
        let r = requests(&audit, from, to);
        nodes
            .iter()
            .map(|n| r.get(&n.user).copied().unwrap_or(0) as f64)
            .collect()
    };
    let bytes = |from: &[(u64, u64)], to: &[(u64, u64)]| -> (Vec<f64>, Vec<f64>) {
        from.iter()
            .zip(to)
            .map(|(a, b)| ((b.0 - a.0) as f64, (b.1 - a.1) as f64))
            .unzip()
    };
    let zero_bytes = vec![(0, 0); nodes.len()];
    let (mut up0, mut down0) = bytes(&zero_bytes, &bytes_settled);
    let (mut up1, mut down1) = bytes(&bytes_settled, &bytes_changed);
    let (mut up2, mut down2) = bytes(&bytes_changed, &bytes_quiet);
    let per_min = 60.0 / quiet.as_secs_f64();
    let mut rss: Vec<f64> = nodes
        .iter()
        .map(|n| peak_rss_mb(n.agent.as_ref().unwrap().pid()))
        .collect();
    let load = nftpol_testkit::bench::loadavg();

    println!(
        "fleet {} x {n} nodes ({} pods, {} policies) | start to first table in every kernel: {}",
        scale.name,
        objs.pods.len() + n,
        objs.policies.len() + 1,
        spread(&mut first)
    );
    println!("  {}", created.report("new policy", n));
    println!("  {}", deleted.report("policy deleted", n));
    println!("  {}", new_pod.report("new pod (peer set)", n));
    println!(
        "  API server, per agent, start-up: requests {}; bytes to the API server {}, from it {}",
        per_agent(&mut phase(audit_start, audit_settled), "", 1.0),
        per_agent(&mut up0, " KB", 1e3),
        per_agent(&mut down0, " MB", 1e6),
    );
    println!(
        "  API server, per agent, per change ({changes} changes): requests {}; bytes to it {}, from it {}",
        per_agent(&mut phase(audit_settled, audit_changed), "", changes as f64),
        per_agent(&mut up1, " KB", 1e3 * changes as f64),
        per_agent(&mut down1, " KB", 1e3 * changes as f64),
    );
    println!(
        "  API server, per agent, steady state ({quiet_secs} s quiet, per minute): requests {}; bytes to it {}, from it {}",
        per_agent(&mut phase(audit_changed, audit_quiet), "", 1.0 / per_min),
        per_agent(&mut up2, " KB", 1e3 / per_min),
        per_agent(&mut down2, " KB", 1e3 / per_min),
    );
    println!(
        "  agent CPU (user + system, its `nft` processes included): start-up {}; per change {}; steady state, per minute {}",
        per_agent(&mut cpu_settled.clone(), " ms", 1e-3),
        per_agent(
            &mut minus(&cpu_changed, &cpu_settled),
            " ms",
            1e-3 * changes as f64
        ),
        per_agent(&mut minus(&cpu_quiet, &cpu_changed), " ms", 1e-3 / per_min),
    );
    println!(
        "  agent peak RSS: {} | load average {load}",
        per_agent(&mut rss, " MB", 1.0)
    );
    for node in &mut nodes {
        if let Some(agent) = node.agent.take() {
            agent.terminate();
        }
    }
    drop(nodes);
    drop(cp);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // Built (if need be) while the machine's own network is reachable.
    control_plane::ensure_binaries();
    if bench {
        let name = std::env::var("NFTPOL_FLEET_SCALE").unwrap_or_else(|_| "large".into());
        let Some(scale) = synth::SCALES.iter().find(|s| s.name == name) else {
            eprintln!("NFTPOL_FLEET_SCALE: unknown scale {name:?}");
            std::process::exit(1);
        };
        run(
            *scale,
            env_or("NFTPOL_FLEET_NODES", 20),
            env_or("NFTPOL_FLEET_SAMPLES", 20),
            env_or("NFTPOL_FLEET_QUIET_SECS", 30),
        );
    } else {
        run(synth::SCALES[0], 3, 2, 2);
    }
}
