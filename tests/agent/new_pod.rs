//! The new-pod window, measured with real packets (docs/nftables.md, "The new-pod window").
//!
//! Per shape (routed, bridge, VXLAN): a two-node topology, the real control plane inside node
//! 1's namespace, one `nftpol run` on node 1 (authenticated as deploy/'s ServiceAccount), the
//! Nodes with their `spec.podCIDRs`, and namespace `new` under default-deny (ingress and
//! egress) except egress to `web/web` on TCP 80, with one resident pod on node 1 (so every
//! new pod is an element update, as pod churn is in a real namespace). [`SLOTS`] pod namespaces on node 1 take
//! turns being new pods, concurrently; one trial:
//!
//! 1. the slot's address is no known pod's: a TCP connect to `web:80` must not get through
//!    (the guard closes the window; without it the slot would be an unisolated pod and
//!    connect), and the node still reaches the slot (kubelet probes go through `output`);
//! 2. the slot sends UDP to two forbidden destinations (same node and other node, both
//!    families) every 2 ms, from before its Pod object exists until after it is allowed;
//!    meanwhile a known pod (`talker`, not isolated) sends to every slot address;
//! 3. the Pod is created without an address, then `status.podIPs` is written (as a kubelet
//!    would); the time from that write returning to the first TCP connect to `web:80` that
//!    completes is the figure printed (the agent's delta latency plus `nft`);
//! 4. the Pod is deleted; once its address has left the node's table (asked of the kernel)
//!    the next trial may reuse it.
//!
//! The forbidden destinations count every datagram by source: 0 from any slot address, and 0
//! at the slots from `talker`, in every trial (a positive control checks that `talker`'s
//! datagrams do reach an allowed destination, so the counters count). `NFTPOL_NEW_POD_TRIALS`
//! sets the trials per shape (default 100); `NFTPOL_SHAPES` (e.g. `routed,bridge`) the shapes.
//! `NFTPOL_NEW_POD_GUARD=off` runs the agent with `--fail-closed-new-pods=false` and only
//! reports (the control experiment: the window is open then). `NFTPOL_NEW_POD_RESIDENT=off`
//! leaves the resident pod out: every new pod is then a structural change (full replacements).
//!
//! The agent verifies its table every second (`--resync 1s`), so the run also checks that the
//! kernel listing of the guard's sets matches what the agent applied (no drift repair: exactly
//! one full apply, the first; the rest are element deltas).

use nftpol_testkit as kit;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kit::agent::AgentProcess;
use kit::control_plane::{self, ControlPlane};
use kit::netns;
use kit::probe;
use kit::{ChecksumMode, Family, Proto, Shape, TopoSpec, Topology, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const METRICS: &str = "127.0.0.1:9752";
/// Every pod serves TCP (and UDP) here; the policy allows `web` on it.
const PORT: u16 = 80;
/// The counting sinks' UDP port (no server of the topology uses it).
const SINK: u16 = 7777;
/// Senders send one datagram to each destination every 2 ms.
const PAUSE: Option<Duration> = Some(Duration::from_millis(2));
/// Pod namespaces on node 1 that take turns being new pods, concurrently.
const SLOTS: usize = 5;
/// How long anything may take on this loaded 2-core machine before the test gives up.
const DEADLINE: Duration = Duration::from_secs(30);

fn trials() -> usize {
    std::env::var("NFTPOL_NEW_POD_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

fn guard_on() -> bool {
    std::env::var("NFTPOL_NEW_POD_GUARD").map_or(true, |v| v != "off")
}

/// `NFTPOL_NEW_POD_RESIDENT=off`: no resident pod in `new`, so each new pod
/// is the first of its group and every change is a full replacement (the
/// structural variant; docs/performance.md, "The new-pod window").
fn resident_on() -> bool {
    std::env::var("NFTPOL_NEW_POD_RESIDENT").map_or(true, |v| v != "off")
}

fn shapes() -> Vec<Shape> {
    match std::env::var("NFTPOL_SHAPES") {
        Ok(v) => Shape::ALL
            .into_iter()
            .filter(|s| v.split(',').any(|w| w.trim() == s.to_string()))
            .collect(),
        Err(_) => Shape::ALL.to_vec(),
    }
}

fn pod(ns: &str, name: &str, node: &str, ips: Option<[IpAddr; 2]>, labels: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}});
    if let Some([a, b]) = ips {
        p["status"] = json!({"phase": "Running", "podIP": a.to_string(),
            "podIPs": [{"ip": a.to_string()}, {"ip": b.to_string()}]});
    }
    p
}

fn tcp_reaches(ns: &str, to: SocketAddr, timeout: Duration) -> bool {
    probe::probe_in(ns, to, Proto::Tcp, timeout, ChecksumMode::Correct)
        .unwrap()
        .reached()
}

/// Whether `ip` is in node `n1`'s `egress-pods-v4` (the agent has programmed the pod: every
/// pod of `new` is isolated for egress; also without the guard).
fn programmed(n1: &str, ip: IpAddr) -> bool {
    use nftpol::core::model::{Direction, Family};
    let map = nftpol::core::nft::names::dispatch_map(Direction::Egress, Family::V4);
    let out = netns::exec(n1, &["nft", "list", "map", "inet", "nftpol", &map], None)
        .expect("listing the programmed pods");
    out.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|w| w == ip.to_string())
}

struct ShapeResult {
    /// `nftpol_applies_total` (full, delta, unchanged) at the end.
    applies: (f64, f64, f64),
    latencies: Vec<Duration>,
    slot_sent: usize,
    leaked_from_slots: usize,
    leaked_to_slots: usize,
    control_received: usize,
}

fn run_shape(shape: Shape, trials: usize) -> ShapeResult {
    let mut spec = TopoSpec::two_nodes("n1", "n2")
        .ports(&[PORT])
        .pod_at("web", "n2", 10)
        .pod_at("secret-a", "n1", 20)
        .pod_at("secret-b", "n2", 20)
        .pod_at("talker", "n1", 30)
        .pod_at("resident", "n1", 40);
    let slots: Vec<String> = (0..SLOTS).map(|i| format!("slot{i}")).collect();
    for (i, s) in slots.iter().enumerate() {
        spec = spec.pod_at(s, "n1", 100 + i as u8);
    }
    let topo = Topology::build(shape, &spec).expect("topology");
    let n1 = topo.node_netns("n1").to_string();
    let ips = |p: &str| [topo.pod_ip(p, Family::V4), topo.pod_ip(p, Family::V6)];

    let cp = netns::in_netns(&n1, ControlPlane::start)
        .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
    let api = |f: &(dyn Fn(&ControlPlane) + Sync)| {
        netns::in_netns(&n1, || f(&cp)).unwrap();
    };
    let kubeconfig = netns::in_netns(&n1, || {
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        cp.token_kubeconfig("nftpol", "nftpol")
    })
    .unwrap();
    let [(_, a4, a6), (_, b4, b6)] = kit::topology::TWO_NODES;
    api(&|cp| {
        for (name, c4, c6) in [("n1", a4, a6), ("n2", b4, b6)] {
            cp.apply_object(&json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name},
                "spec": {"podCIDR": c4, "podCIDRs": [c4, c6]}}));
        }
        for ns in ["new", "web", "other"] {
            cp.apply_object(&json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns}}));
        }
        cp.apply_object(&pod(
            "web",
            "web",
            "n2",
            Some(ips("web")),
            json!({"app": "web"}),
        ));
        // A pod of `new` that stays: its group chain always exists, so a new pod is an
        // element update (the first pod of a group would be a structural change).
        let resident = pod(
            "new",
            "resident",
            "n1",
            Some(ips("resident")),
            json!({"app": "new"}),
        );
        if resident_on() {
            cp.apply_object(&resident);
        }
        for p in ["secret-a", "secret-b", "talker"] {
            let node = topo.pod_node(p).to_string();
            cp.apply_object(&pod("other", p, &node, Some(ips(p)), json!({})));
        }
        cp.apply_object(
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-but-web", "namespace": "new"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                "egress": [{"to": [{"namespaceSelector": {"matchLabels":
                        {"kubernetes.io/metadata.name": "web"}},
                    "podSelector": {"matchLabels": {"app": "web"}}}],
                    "ports": [{"protocol": "TCP", "port": PORT}]}]}}),
        );
    });

    let dir = std::env::temp_dir().join(format!("nftpol-newpod-{}-{shape}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &n1, BIN, "run", "--node", "n1"])
        .args(["--listen", METRICS, "--resync", "1s"])
        .arg(format!("--fail-closed-new-pods={}", guard_on()))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let _agent = AgentProcess::spawn(&mut cmd);
    wait_for("the agent's first apply", DEADLINE, || {
        netns::in_netns(&n1, || kit::agent::http_get(METRICS, "/readyz"))
            .unwrap()
            .is_some_and(|r| r.0 == 200)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let secret_counts = [
        kit::udp::sink(topo.pod_netns("secret-a"), SINK, stop.clone()),
        kit::udp::sink(topo.pod_netns("secret-b"), SINK, stop.clone()),
    ];
    let slot_counts: Vec<_> = slots
        .iter()
        .map(|s| kit::udp::sink(topo.pod_netns(s), SINK, stop.clone()))
        .collect();
    // `talker` sends to every slot (ingress: the guard, then new's default-deny) and, as the
    // positive control, to secret-a (neither end isolated: must arrive).
    let mut talker_to: Vec<SocketAddr> = slots
        .iter()
        .flat_map(|s| ips(s))
        .map(|ip| SocketAddr::new(ip, SINK))
        .collect();
    talker_to.extend(ips("secret-a").map(|ip| SocketAddr::new(ip, SINK)));
    let talker = kit::udp::sender(topo.pod_netns("talker"), talker_to, PAUSE, stop.clone());

    let forbidden: Vec<SocketAddr> = ["secret-a", "secret-b"]
        .iter()
        .flat_map(|p| ips(p))
        .map(|ip| SocketAddr::new(ip, SINK))
        .collect();
    let web = SocketAddr::new(topo.pod_ip("web", Family::V4), PORT);
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let slot_sent = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for slot in &slots {
            let (topo, cp, n1) = (&topo, &cp, &n1);
            let (next, latencies, slot_sent, forbidden) =
                (&next, &latencies, &slot_sent, &forbidden);
            sc.spawn(move || {
                let ns = topo.pod_netns(slot).to_string();
                let addr = ips(slot);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= trials {
                        break;
                    }
                    let name = format!("new-{k}");
                    // 1. Unknown: the guard holds (allowed destinations included), the node
                    // still reaches the slot.
                    if guard_on() {
                        assert!(
                            !tcp_reaches(&ns, web, Duration::from_millis(150)),
                            "{shape} trial {k}: {slot}, an unknown address, reached web"
                        );
                    }
                    assert!(
                        tcp_reaches(n1, SocketAddr::new(addr[0], PORT), Duration::from_secs(2)),
                        "{shape} trial {k}: node n1 cannot reach {slot} (kubelet probes must pass)"
                    );
                    // 2. Sending to forbidden destinations from before the pod exists.
                    let stop_one = Arc::new(AtomicBool::new(false));
                    let tx = kit::udp::sender(&ns, forbidden.clone(), PAUSE, stop_one.clone());
                    std::thread::sleep(Duration::from_millis(30));
                    // 3. The Pod, first without an address, then with it.
                    netns::in_netns(n1, || {
                        cp.apply_object(&pod("new", &name, "n1", None, json!({"app": "new"})))
                    })
                    .unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                    let patch = json!({"status": {"phase": "Running",
                        "podIP": addr[0].to_string(),
                        "podIPs": [{"ip": addr[0].to_string()}, {"ip": addr[1].to_string()}]}})
                    .to_string();
                    netns::in_netns(n1, || {
                        cp.kubectl_ok(&[
                            "patch",
                            "pod",
                            &name,
                            "-n",
                            "new",
                            "--subresource=status",
                            "--type=merge",
                            "-p",
                            &patch,
                        ])
                    })
                    .unwrap();
                    let written = Instant::now();
                    while !tcp_reaches(&ns, web, Duration::from_millis(20)) {
                        assert!(
                            written.elapsed() < DEADLINE,
                            "{shape} trial {k}: {slot} never reached web once known"
                        );
                    }
                    latencies.lock().unwrap().push(written.elapsed());
                    std::thread::sleep(Duration::from_millis(30));
                    stop_one.store(true, Ordering::Relaxed);
                    slot_sent.fetch_add(tx.join().unwrap(), Ordering::Relaxed);
                    // 4. Gone: the address is unknown again.
                    netns::in_netns(n1, || {
                        cp.kubectl_ok(&[
                            "delete",
                            "pod",
                            &name,
                            "-n",
                            "new",
                            "--grace-period=0",
                            "--force",
                        ])
                    })
                    .unwrap();
                    // Asked of the kernel, not of a probe: a probe that times out on a loaded
                    // machine would start the next trial with the address still known.
                    let gone = Instant::now();
                    while programmed(n1, addr[0]) {
                        assert!(
                            gone.elapsed() < DEADLINE,
                            "{shape} trial {k}: {slot} still programmed after its pod was deleted"
                        );
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            });
        }
    });
    // Late datagrams still in flight arrive (or not) now.
    std::thread::sleep(Duration::from_millis(200));
    let applies = netns::in_netns(&n1, || kit::agent::applies(METRICS))
        .unwrap()
        .unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();
    let slot_ips: Vec<IpAddr> = slots.iter().flat_map(|s| ips(s)).collect();
    let leaked_from_slots = secret_counts
        .iter()
        .map(|c| {
            let c = c.lock().unwrap();
            slot_ips
                .iter()
                .map(|ip| c.get(ip).copied().unwrap_or(0))
                .sum::<usize>()
        })
        .sum();
    let talker_ips = ips("talker");
    let leaked_to_slots = slot_counts
        .iter()
        .map(|c| c.lock().unwrap().values().sum::<usize>())
        .sum();
    let control_received = {
        let c = secret_counts[0].lock().unwrap();
        talker_ips
            .iter()
            .map(|ip| c.get(ip).copied().unwrap_or(0))
            .sum()
    };
    ShapeResult {
        applies,
        latencies: latencies.into_inner().unwrap(),
        slot_sent: slot_sent.into_inner(),
        leaked_from_slots,
        leaked_to_slots,
        control_received,
    }
}

#[test]
fn a_new_pod_sends_nothing_before_its_address_is_programmed() {
    control_plane::ensure_binaries();
    let trials = trials();
    let mut failures = Vec::new();
    for shape in shapes() {
        let t = Instant::now();
        let r = run_shape(shape, trials);
        let mut l = r.latencies.clone();
        l.sort();
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
        println!(
            "{shape:6} trials {:3}  datagrams sent by new pods {:6}, through to forbidden \
             destinations {}, through to new pods {} (control {})  \
             IP written -> allowed traffic: min {:?} median {:?} p90 {:?} max {:?}  \
             applies full/delta/unchanged {:?}  ({:?})",
            l.len(),
            r.slot_sent,
            r.leaked_from_slots,
            r.leaked_to_slots,
            r.control_received,
            at(0.0),
            at(0.5),
            at(0.9),
            at(1.0),
            r.applies,
            t.elapsed()
        );
        assert_eq!(l.len(), trials, "{shape}: every trial ran");
        if !guard_on() {
            continue;
        }
        if resident_on() {
            assert_eq!(
                r.applies.0, 1.0,
                "{shape}: one full apply (the first); no drift repair, no structural change"
            );
        }
        if r.leaked_from_slots != 0 || r.leaked_to_slots != 0 {
            failures.push(format!(
                "{shape}: {} datagrams from new pods, {} to them got through",
                r.leaked_from_slots, r.leaked_to_slots
            ));
        }
        assert!(r.slot_sent > 0, "{shape}: the new pods sent nothing");
        assert!(
            r.control_received > 0,
            "{shape}: the positive control (talker -> secret-a) never arrived: the sinks do not count"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
