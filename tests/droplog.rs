//! Drop logging with real packets: `testdata/drop-logging` (namespace shop
//! annotated `nftpol.io/log-drops: "true"`, lab not) rebuilt as a two-node
//! topology, each node loading its `--node` ruleset, an NFLOG reader
//! ([`nftpol::kernel::nflog::Reader`]) running inside each node's network namespace,
//! and blocked and allowed probes (TCP and UDP, IPv4 and IPv6, same-node and
//! cross-node, ingress and egress drops). Checked:
//!
//! - every blocked flow of a logging namespace is reported, with the right
//!   direction, pods and isolating policies; nothing allowed and nothing of a
//!   non-logging namespace is reported;
//! - a flood of blocked packets yields no more log messages than the limit
//!   lets through: burst + rate × elapsed (nft's bucket holds `burst`
//!   packets and refills at `rate`; measured: 15 of 400 packets sent over
//!   1.1 s at rate 5, burst 10, both fresh and after 3 s idle);
//! - with logging off the table has no log statement and nothing arrives.
//!
//! Plus compile-only checks: no testdata case gets a log statement unless it
//! asks for one, the agent-wide option and the `"false"` opt-out.
//!
//! Needs root and network namespaces: a missing capability fails, never skips.

use nftpol_testkit as kit;

use std::collections::BTreeSet;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kit::agent::metric_matching;
use kit::control_plane::{self, ControlPlane};
use kit::netns::{NetnsHandle, in_netns};
use kit::{Family, ProbeSpec, Proto, Shape, TopoSpec, Topology};
use nftpol::agent::droplog::Dedupe;
use nftpol::core::compile::droplog::DroppedFlow;
use nftpol::core::compile::{DropLog, Options};
use nftpol::core::model::Direction;
use nftpol::kernel::nflog::{Packet, Reader};

const GROUP: u16 = 4242;

fn case_dir() -> PathBuf {
    kit::cases::case("drop-logging")
}

fn load(dir: &Path) -> nftpol::core::k8s::Objects {
    let (objs, diags) = nftpol::core::k8s::load_paths(&[dir.to_path_buf()]);
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
    objs
}

fn compile(
    objs: &nftpol::core::k8s::Objects,
    node: &str,
    drop_log: DropLog,
) -> nftpol::core::compile::Compiled {
    nftpol::core::compile::compile_objects(
        objs,
        &Options {
            node: Some(node.to_string()),
            drop_log,
            ..Default::default()
        },
    )
}

/// Logging for the probe phase: a bucket large enough that no probe is rate-limited.
fn generous() -> DropLog {
    DropLog {
        group: GROUP,
        rate: 1000,
        burst: 1000,
        ..DropLog::default()
    }
}

/// Lines of a rendered script that hold a log statement.
fn log_lines(script: &str) -> Vec<&str> {
    script.lines().filter(|l| l.contains(" log ")).collect()
}

/// Reads NFLOG group [`GROUP`] inside a network namespace until stopped.
struct Collector {
    stop: Arc<AtomicBool>,
    packets: Arc<Mutex<Vec<(Instant, Packet)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Returns once the group is bound, so no packet sent afterwards is missed.
    fn start(netns: &str) -> Collector {
        let handle = NetnsHandle::open(netns).expect("node namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (stop, packets) = (stop.clone(), packets.clone());
            std::thread::spawn(move || {
                handle.enter().expect("setns");
                let mut reader = match Reader::bind(GROUP) {
                    Ok(r) => r,
                    Err(e) => {
                        ready_tx.send(Err(e.to_string())).unwrap();
                        return;
                    }
                };
                reader.set_timeout(Some(Duration::from_millis(50))).unwrap();
                ready_tx.send(Ok(())).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let batch = reader.recv().expect("reading the NFLOG group");
                    assert_eq!(batch.skipped, 0, "unreadable NFLOG messages");
                    let now = Instant::now();
                    packets
                        .lock()
                        .unwrap()
                        .extend(batch.packets.into_iter().map(|p| (now, p)));
                }
            })
        };
        ready_rx
            .recv()
            .expect("collector thread")
            .unwrap_or_else(|e| panic!("binding NFLOG in {netns}: {e}"));
        Collector {
            stop,
            packets,
            thread: Some(thread),
        }
    }

    /// Waits a little for stragglers, stops, and returns everything read.
    fn finish(mut self) -> Vec<(Instant, Packet)> {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("collector thread");
        std::mem::take(&mut *self.packets.lock().unwrap())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The case's pods as topology pods `ns.name`, at the case's addresses.
fn topology(shape: Shape) -> Topology {
    let spec = TopoSpec::two_nodes("node-1", "node-2")
        .pod_at("shop.db", "node-1", 10)
        .pod_at("shop.batch", "node-1", 11)
        .pod_at("shop.web", "node-2", 10)
        .pod_at("lab.db", "node-1", 12)
        .pod_at("lab.web", "node-2", 11)
        .pod_at("typo.x", "node-2", 12)
        .ports(&[80, 81]);
    let mut topo = Topology::build(shape, &spec).expect("topology");
    topo.set_timeout(Duration::from_millis(800));
    topo
}

/// A probe and what must come of it: reached or not, and for a logged drop
/// (direction, isolated pod, isolating policies).
struct Expect {
    from: &'static str,
    to: &'static str,
    proto: Proto,
    port: u16,
    reached: bool,
    logged: Option<(Direction, &'static str, &'static str)>,
}

const fn e(
    from: &'static str,
    to: &'static str,
    proto: Proto,
    port: u16,
    reached: bool,
    logged: Option<(Direction, &'static str, &'static str)>,
) -> Expect {
    Expect {
        from,
        to,
        proto,
        port,
        reached,
        logged,
    }
}

const DB_IN: Option<(Direction, &str, &str)> =
    Some((Direction::Ingress, "shop/db", "shop/db-allow-web"));
const BATCH_OUT: Option<(Direction, &str, &str)> =
    Some((Direction::Egress, "shop/batch", "shop/batch-egress"));

const PROBES: [Expect; 10] = [
    // Allowed: never reported.
    e("shop.web", "shop.db", Proto::Tcp, 80, true, None),
    e("shop.web", "shop.db", Proto::Udp, 80, true, None),
    e("lab.web", "lab.db", Proto::Tcp, 80, true, None),
    e("typo.x", "shop.web", Proto::Tcp, 81, true, None),
    // Dropped by shop's policies: reported. Cross-node ingress (TCP, UDP) ...
    e("shop.web", "shop.db", Proto::Tcp, 81, false, DB_IN),
    e("lab.web", "shop.db", Proto::Udp, 80, false, DB_IN),
    // ... same-node ingress (batch's egress allows it, db's ingress does not) ...
    e("shop.batch", "shop.db", Proto::Tcp, 80, false, DB_IN),
    // ... same-node and cross-node egress.
    e("shop.batch", "shop.db", Proto::Udp, 81, false, BATCH_OUT),
    e("shop.batch", "typo.x", Proto::Udp, 80, false, BATCH_OUT),
    // Dropped by lab's policy: lab does not log.
    e("shop.web", "lab.db", Proto::Tcp, 81, false, None),
];

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}

fn kernel_case(shape: Shape) {
    let objs = load(&case_dir());
    let topo = topology(shape);
    let node1 = compile(&objs, "node-1", generous());
    let node2 = compile(&objs, "node-2", generous());
    let script1 = nftpol::core::nft::render::script(&node1.ruleset);
    assert!(!log_lines(&script1).is_empty(), "node-1 logs shop's drops");
    topo.load_ruleset("node-1", &script1).unwrap();
    topo.load_ruleset("node-2", &nftpol::core::nft::render::script(&node2.ruleset))
        .unwrap();

    // 1. Every dropped flow of shop is reported, nothing else.
    let c1 = Collector::start(topo.node_netns("node-1"));
    let c2 = Collector::start(topo.node_netns("node-2"));
    let mut specs = Vec::new();
    let mut wanted = Vec::new();
    for fam in [Family::V4, Family::V6] {
        for x in &PROBES {
            specs.push(ProbeSpec::pod(
                x.from,
                topo.pod_ip(x.to, fam),
                x.proto,
                x.port,
            ));
            wanted.push(x);
        }
    }
    let reached = topo.probe_many(&specs);
    let logged1 = c1.finish();
    let logged2 = c2.finish();
    for ((spec, x), got) in specs.iter().zip(&wanted).zip(&reached) {
        assert_eq!(*got, x.reached, "{shape}: {spec}: reachability");
    }
    assert!(
        logged2.is_empty(),
        "{shape}: node-2 enforces no logging group, yet logged {logged2:?}"
    );
    let flows: Vec<DroppedFlow> = logged1
        .iter()
        .map(|(_, p)| {
            node1
                .drop_log
                .describe(p)
                .unwrap_or_else(|| panic!("{shape}: a packet not from nftpol: {p:?}"))
        })
        .collect();
    for (spec, x) in specs.iter().zip(&wanted) {
        let src = topo.pod_ip(x.from, Family::of(spec.to));
        let matching: Vec<&DroppedFlow> = flows
            .iter()
            .filter(|f| {
                f.src == src
                    && f.dst == spec.to
                    && f.protocol == proto_number(x.proto)
                    && f.dport == Some(x.port)
            })
            .collect();
        match x.logged {
            None => assert!(
                matching.is_empty(),
                "{shape}: {spec} ({}) reported as dropped: {matching:?}",
                if x.reached {
                    "allowed"
                } else {
                    "lab does not log"
                }
            ),
            Some((dir, pod, policy)) => {
                assert!(
                    !matching.is_empty(),
                    "{shape}: {spec} dropped but not reported"
                );
                for f in matching {
                    assert_eq!(f.direction, dir, "{shape}: {spec}: {f}");
                    assert_eq!(
                        format!("{}/{}", f.namespace, f.pod.as_deref().unwrap_or("?")),
                        pod,
                        "{shape}: {spec}: {f}"
                    );
                    assert_eq!(f.policy_list(), policy, "{shape}: {spec}: {f}");
                    let (from, to) = (x.from.replace('.', "/"), x.to.replace('.', "/"));
                    assert_eq!(
                        (f.src_name(), f.dst_name()),
                        (from, to),
                        "{shape}: {spec}: {f}"
                    );
                }
            }
        }
    }
    // One log line per flow: retransmits of a flow fold into it.
    let mut dedupe = Dedupe::new(nftpol::agent::droplog::DEDUPE_WINDOW);
    let lines = flows
        .iter()
        .filter(|f| dedupe.first(f.key(), Instant::now()))
        .count();
    let distinct: BTreeSet<_> = flows
        .iter()
        .map(|f| (f.src, f.dst, f.protocol, f.sport, f.dport))
        .collect();
    assert_eq!(lines, distinct.len(), "{shape}: one line per flow");

    // 2. The rate limit holds under a flood of blocked packets.
    let (rate, burst) = (5u32, 10u32);
    let limited = compile(
        &objs,
        "node-1",
        DropLog {
            group: GROUP,
            rate,
            burst,
            ..DropLog::default()
        },
    );
    topo.load_ruleset(
        "node-1",
        &nftpol::core::nft::render::script(&limited.ruleset),
    )
    .unwrap();
    let c1 = Collector::start(topo.node_netns("node-1"));
    let db = topo.pod_ip("shop.db", Family::V4);
    let sent = 400;
    let start = Instant::now();
    in_netns(topo.pod_netns("lab.web"), || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..sent {
            s.send_to(b"flood", (db, 81)).unwrap();
            std::thread::sleep(Duration::from_micros(2500));
        }
    })
    .unwrap();
    let elapsed = start.elapsed();
    let logged = c1.finish();
    let bound = f64::from(burst) + f64::from(rate) * elapsed.as_secs_f64();
    eprintln!(
        "{shape}: flood of {sent} blocked packets over {elapsed:?}: {} logged (bound {bound:.0})",
        logged.len()
    );
    assert!(
        logged.len() as f64 <= bound + 1.0,
        "{shape}: {} logged, limit allows {bound:.0}",
        logged.len()
    );
    assert!(
        logged.len() >= burst as usize,
        "{shape}: only {} of {sent} dropped packets logged; the burst alone is {burst}",
        logged.len()
    );
    assert!(
        logged
            .iter()
            .all(|(_, p)| p.dst == db
                && p.prefix.starts_with(nftpol::core::compile::droplog::PREFIX)),
        "{shape}: unexpected packets in the flood"
    );
    // The kernel's own counter on the group chain's drop rule counted every
    // packet of the flood, logged or not (what the agent exports as
    // nftpol_chain_dropped_packets_total, read from this listing).
    let listing = topo
        .exec(
            topo.node_netns("node-1"),
            &["nft", "-j", "list", "table", "inet", "nftpol"],
        )
        .unwrap();
    let (content, drops) = nftpol::kernel::listing::read(&listing);
    assert!(content.is_some(), "{shape}: the listing parses");
    let (db_group, _) = limited
        .drop_log
        .groups
        .iter()
        .find(|(_, g)| {
            g.direction == Direction::Ingress && g.policies.iter().any(|p| p.name == "db-allow-web")
        })
        .expect("db's ingress group");
    let counted = drops.get(db_group).copied().unwrap_or(0);
    eprintln!("{shape}: {db_group} counter drop: {counted} packets");
    assert!(
        counted >= sent,
        "{shape}: the kernel counted {counted} drops in {db_group}, the flood alone was {sent}"
    );

    // 3. Logging off: no log statement, nothing arrives.
    let quiet = strip_annotations(&objs);
    let off = compile(&quiet, "node-1", generous());
    let script = nftpol::core::nft::render::script(&off.ruleset);
    assert!(log_lines(&script).is_empty(), "{:?}", log_lines(&script));
    assert!(!off.drop_log.logs_any());
    topo.load_ruleset("node-1", &script).unwrap();
    let c1 = Collector::start(topo.node_netns("node-1"));
    let blocked: Vec<ProbeSpec> = PROBES
        .iter()
        .filter(|x| x.logged.is_some())
        .map(|x| ProbeSpec::pod(x.from, topo.pod_ip(x.to, Family::V4), x.proto, x.port))
        .collect();
    assert!(
        topo.probe_many(&blocked).iter().all(|r| !r),
        "{shape}: still blocked"
    );
    let logged = c1.finish();
    assert!(logged.is_empty(), "{shape}: logging off, yet {logged:?}");
}

fn strip_annotations(objs: &nftpol::core::k8s::Objects) -> nftpol::core::k8s::Objects {
    let mut quiet = objs.clone();
    for (_, ns) in &mut quiet.namespaces {
        ns.metadata.annotations = None;
    }
    for (_, p) in &mut quiet.policies {
        p.metadata.annotations = None;
    }
    for (_, p) in &mut quiet.cluster_policies {
        p.metadata.annotations = None;
    }
    quiet
}

#[test]
fn drops_are_logged_routed() {
    kernel_case(Shape::Routed);
}

#[test]
fn drops_are_logged_bridge() {
    kernel_case(Shape::Bridge);
}

/// With default options, no testdata case but drop-logging and the audit-mode
/// cases (which ask for it) gets a log statement; with their annotations
/// removed neither do they.
#[test]
fn no_log_statement_unless_asked() {
    let mut cases = 0;
    for dir in kit::cases::case_dirs() {
        cases += 1;
        let (objs, _) = nftpol::core::k8s::load_paths(std::slice::from_ref(&dir));
        let out = nftpol::core::compile::compile_objects(&objs, &Options::default());
        let script = nftpol::core::nft::render::script(&out.ruleset);
        let json = nftpol::core::nft::json::script(&out.ruleset);
        let audit = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("audit-mode"));
        if dir.ends_with("drop-logging") || audit {
            assert!(!log_lines(&script).is_empty());
            let quiet = strip_annotations(&objs);
            let out = nftpol::core::compile::compile_objects(&quiet, &Options::default());
            assert!(log_lines(&nftpol::core::nft::render::script(&out.ruleset)).is_empty());
            assert!(!nftpol::core::nft::json::script(&out.ruleset).contains("\"log\""));
        } else {
            assert!(log_lines(&script).is_empty(), "{}", dir.display());
            assert!(!json.contains("\"log\""), "{}", dir.display());
            assert!(!out.drop_log.logs_any(), "{}", dir.display());
            assert!(out.drop_log.pods.is_empty(), "{}", dir.display());
        }
    }
    assert!(cases > 20);
}

/// `--log-drops` logs every namespace's groups except those annotated "false";
/// the log rule always sits right before the drop.
#[test]
fn agent_wide_option_and_opt_out() {
    let mut objs = load(&case_dir());
    for (_, ns) in &mut objs.namespaces {
        if ns.metadata.name.as_deref() == Some("shop") {
            ns.metadata
                .annotations
                .get_or_insert_default()
                .insert("nftpol.io/log-drops".into(), "false".into());
        }
    }
    let out = nftpol::core::compile::compile_objects(
        &objs,
        &Options {
            node: None,
            revoke_established: true,
            drop_log: DropLog {
                all_namespaces: true,
                ..DropLog::default()
            },
            ..Default::default()
        },
    );
    let logged: BTreeSet<(String, Direction)> = out
        .drop_log
        .groups
        .values()
        .filter(|g| g.logged)
        .map(|g| (g.namespace.clone(), g.direction))
        .collect();
    assert_eq!(
        logged,
        BTreeSet::from([("lab".to_string(), Direction::Ingress)]),
        "lab follows the agent-wide option, shop opted out"
    );
    for (name, chain) in &out.ruleset.chains {
        let Some(g) = out.drop_log.groups.get(name) else {
            continue;
        };
        let text: Vec<String> = chain
            .rules
            .iter()
            .map(nftpol::core::nft::render::rule)
            .collect();
        let n = text.len();
        assert!(text[n - 1].starts_with("counter drop"), "{name}: {text:?}");
        // Before the drop: the log rule, then (with revocation) the stamp
        // that marks the flow revoked so its replies are dropped too.
        let before = if text[n - 2].starts_with("ct mark set") {
            n - 3
        } else {
            n - 2
        };
        if g.logged {
            assert_eq!(
                text[before],
                format!(
                    "limit rate 10/second burst 20 packets log prefix \"nftpol drop {name}\" group 9750 comment \"log drops (rate-limited)\""
                )
            );
        } else {
            assert!(text.iter().all(|r| !r.contains(" log ")), "{name}");
        }
    }
    // The pods of the whole cluster, to name both ends of a drop.
    let ip: IpAddr = "10.244.2.12".parse().unwrap();
    assert_eq!(out.drop_log.pods[&ip].to_string(), "typo/x");
}

/// The agent's `/metrics` text, read from inside `netns`.
fn metrics_in(netns: &str, addr: &str) -> String {
    in_netns(netns, || kit::agent::metrics_text(addr))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Server-side apply of `obj` as the admin, from a thread inside `netns`
/// (where the control plane listens); a pod's IP through the status
/// subresource.
fn apply_in(netns: &str, cp: &ControlPlane, obj: serde_json::Value) {
    in_netns(netns, || cp.apply_object(&obj))
        .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
}

/// `nftpol run` on node-1 against the real control plane (etcd and
/// kube-apiserver inside node-1's network namespace, as the agent; the agent
/// on deploy/'s RBAC with a token-only kubeconfig): the dropped-packets
/// counter and the per-flow log lines after real blocked probes; nothing for
/// allowed traffic or for lab, until lab is annotated through the API server
/// (then its drops are logged too).
#[test]
fn agent_counts_and_logs_drops() {
    const METRICS: &str = "127.0.0.1:9750";
    // Built (if need be) here: node-1's namespace has no route to the Go module proxy.
    control_plane::ensure_binaries();
    let objs = load(&case_dir());
    let topo = topology(Shape::Routed);
    let node1 = topo.node_netns("node-1").to_string();
    let cp = in_netns(&node1, ControlPlane::start)
        .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
    // deploy/ as a cluster admin would apply it; the agent authenticates with the
    // ServiceAccount's token only (TokenRequest API).
    let kubeconfig = in_netns(&node1, || {
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        cp.token_kubeconfig("nftpol", "nftpol")
    })
    .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
    for (_, o) in &objs.namespaces {
        apply_in(&node1, &cp, serde_json::to_value(o).unwrap());
    }
    for (_, o) in &objs.pods {
        apply_in(&node1, &cp, serde_json::to_value(o).unwrap());
    }
    for (_, o) in &objs.policies {
        apply_in(&node1, &cp, serde_json::to_value(o).unwrap());
    }
    let dir = std::env::temp_dir().join(format!("nftpol-droplog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let group = GROUP.to_string();
    let mut agent = std::process::Command::new("ip")
        .args(["netns", "exec", &node1, env!("CARGO_BIN_EXE_nftpol"), "run"])
        .args(["--node", "node-1", "--listen", METRICS, "--log-json"])
        .args(["--min-interval", "50ms", "--max-delay", "300ms"])
        .args([
            "--log-group",
            &group,
            "--log-rate",
            "1000",
            "--log-burst",
            "1000",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("nftpol run starts");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let start = Instant::now();
        while !topo
            .exec(&node1, &["nft", "list", "table", "inet", "nftpol"])
            .is_ok_and(|t| t.contains(" log prefix "))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no table with log rules"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The reader starts right after the apply that first logs.
        std::thread::sleep(Duration::from_millis(500));
        let db4 = topo.pod_ip("shop.db", Family::V4);
        let db6 = topo.pod_ip("shop.db", Family::V6);
        let lab4 = topo.pod_ip("lab.db", Family::V4);
        let reached = topo.probe_many(&[
            ProbeSpec::pod("shop.web", db4, Proto::Tcp, 81), // ingress drop, logged
            ProbeSpec::pod("lab.web", db6, Proto::Udp, 80),  // ingress drop, logged
            ProbeSpec::pod("shop.batch", db4, Proto::Udp, 81), // egress drop, logged
            ProbeSpec::pod("shop.web", db4, Proto::Tcp, 80), // allowed
            ProbeSpec::pod("shop.web", lab4, Proto::Tcp, 81), // dropped, lab does not log
        ]);
        assert_eq!(reached, [false, false, false, true, false]);
        let db_in = ["namespace=\"shop\"", "pod=\"db\"", "direction=\"ingress\""];
        let batch_out = [
            "namespace=\"shop\"",
            "pod=\"batch\"",
            "direction=\"egress\"",
        ];
        let metric = "nftpol_dropped_packets_total";
        let start = Instant::now();
        let body = loop {
            let body = metrics_in(&node1, METRICS);
            if metric_matching(&body, metric, &db_in) >= 2.0
                && metric_matching(&body, metric, &batch_out) >= 1.0
            {
                break body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "counters:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            metric_matching(&body, metric, &["namespace=\"lab\""]),
            0.0,
            "lab does not log"
        );

        // Annotating lab turns its logging on (a structural change: full replacement).
        let mut lab = objs
            .namespaces
            .iter()
            .map(|(_, n)| n.clone())
            .find(|n| n.metadata.name.as_deref() == Some("lab"))
            .unwrap();
        lab.metadata
            .annotations
            .get_or_insert_default()
            .insert("nftpol.io/log-drops".into(), "true".into());
        apply_in(&node1, &cp, serde_json::to_value(&lab).unwrap());
        let start = Instant::now();
        while !topo
            .exec(&node1, &["nft", "list", "table", "inet", "nftpol"])
            .is_ok_and(|t| t.matches(" log prefix ").count() == 3)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "lab's log rule never came"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let lab_in = ["namespace=\"lab\"", "pod=\"db\"", "direction=\"ingress\""];
        assert_eq!(
            topo.probe_many(&[ProbeSpec::pod("shop.web", lab4, Proto::Tcp, 81)]),
            [false]
        );
        let start = Instant::now();
        loop {
            let body = metrics_in(&node1, METRICS);
            if metric_matching(&body, metric, &lab_in) >= 1.0 {
                break body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "counters:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }));
    // SIGTERM, then read what the agent logged.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Err(e) = result {
        eprintln!("agent log:\n{text}");
        std::panic::resume_unwind(e);
    }
    let drops: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "nftpol::drop")
        .collect();
    let has = |dir: &str, src: &str, dst: &str, proto: &str, dport: u64, policies: &str| {
        drops.iter().any(|v| {
            let f = &v["fields"];
            f["direction"] == dir
                && f["src"] == src
                && f["dst"] == dst
                && f["proto"] == proto
                && f["dport"] == dport
                && f["policies"] == policies
        })
    };
    assert!(
        has(
            "ingress",
            "shop/web",
            "shop/db",
            "tcp",
            81,
            "shop/db-allow-web"
        ),
        "{text}"
    );
    assert!(
        has(
            "ingress",
            "lab/web",
            "shop/db",
            "udp",
            80,
            "shop/db-allow-web"
        ),
        "{text}"
    );
    assert!(
        has(
            "egress",
            "shop/batch",
            "shop/db",
            "udp",
            81,
            "shop/batch-egress"
        ),
        "{text}"
    );
    assert!(
        drops
            .iter()
            .all(|v| v["fields"]["dport"] != 80 || v["fields"]["proto"] != "tcp"),
        "an allowed flow was logged: {text}"
    );
    // Before the annotation, lab's drop (shop/web -> lab/db tcp/81) was not
    // logged; after it, the same flow (new source ports) was, exactly once per flow.
    assert!(
        has(
            "ingress",
            "shop/web",
            "lab/db",
            "tcp",
            81,
            "lab/db-allow-web"
        ),
        "{text}"
    );
    // One line per flow: no two lines for the same 5-tuple.
    let keys: Vec<String> = drops
        .iter()
        .map(|v| {
            let f = &v["fields"];
            format!(
                "{} {} {} {} {}",
                f["src_ip"], f["dst_ip"], f["proto"], f["sport"], f["dport"]
            )
        })
        .collect();
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary's flags: `--log-drops` and friends reach the ruleset, bad values
/// are refused, and without them a case without annotations has no log rule.
#[test]
fn cli_flags() {
    let bin = env!("CARGO_BIN_EXE_nftpol");
    let case = kit::cases::case("k8s-docs-default-deny-all");
    let run = |extra: &[&str]| {
        std::process::Command::new(bin)
            .arg("compile")
            .arg("-f")
            .arg(&case)
            .args(extra)
            .output()
            .unwrap()
    };
    let plain = run(&[]);
    assert!(plain.status.success());
    assert!(log_lines(&String::from_utf8_lossy(&plain.stdout)).is_empty());
    let on = run(&[
        "--log-drops",
        "--log-group",
        "7",
        "--log-rate",
        "3",
        "--log-burst",
        "4",
    ]);
    assert!(on.status.success());
    let text = String::from_utf8_lossy(&on.stdout).into_owned();
    let lines = log_lines(&text);
    assert_eq!(lines.len(), 2, "ingress and egress group: {text}");
    assert!(
        lines.iter().all(|l| l
            .contains("limit rate 3/second burst 4 packets log prefix \"nftpol drop ")
            && l.contains("\" group 7 ")),
        "{lines:?}"
    );
    let json = run(&["--log-drops", "-o", "json"]);
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"log\""));
    for bad in [
        &["--log-rate", "0"][..],
        &["--log-burst", "0"],
        &["--log-group", "70000"],
    ] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(bad[0]),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Audit mode (docs/review.md, "Audit mode") with real packets
// ---------------------------------------------------------------------------------------------

/// `testdata/audit-mode` as a two-node topology.
fn audit_topology(shape: Shape) -> Topology {
    let spec = TopoSpec::two_nodes("node-1", "node-2")
        .pod_at("shop.db", "node-1", 10)
        .pod_at("shop.batch", "node-1", 11)
        .pod_at("shop.web", "node-2", 10)
        .pod_at("lab.db", "node-1", 12)
        .pod_at("lab.web", "node-2", 11)
        .ports(&[80, 81]);
    let mut topo = Topology::build(shape, &spec).expect("topology");
    topo.set_timeout(Duration::from_millis(800));
    topo
}

/// An audit probe: reached or not, and the would-drop log lines it must
/// give as `(direction, audited policies)`, in order (egress end first).
struct AuditExpect {
    from: &'static str,
    to: &'static str,
    proto: Proto,
    port: u16,
    reached: bool,
    would_drop: &'static [(Direction, &'static str)],
}

const fn a(
    from: &'static str,
    to: &'static str,
    proto: Proto,
    port: u16,
    reached: bool,
    would_drop: &'static [(Direction, &'static str)],
) -> AuditExpect {
    AuditExpect {
        from,
        to,
        proto,
        port,
        reached,
        would_drop,
    }
}

const DB_AUDIT: (Direction, &str) = (Direction::Ingress, "shop/db-allow-web");
const BATCH_AUDIT: (Direction, &str) = (Direction::Egress, "shop/batch-egress");

const AUDIT_PROBES: [AuditExpect; 8] = [
    // The audited policies allow it: delivered, nothing logged.
    a("shop.web", "shop.db", Proto::Tcp, 80, true, &[]),
    // They would drop it: delivered AND logged (cross-node, same-node; ingress, egress, both).
    a("lab.web", "shop.db", Proto::Tcp, 80, true, &[DB_AUDIT]),
    a("lab.web", "shop.db", Proto::Udp, 81, true, &[DB_AUDIT]),
    a("shop.batch", "shop.db", Proto::Tcp, 80, true, &[DB_AUDIT]),
    a(
        "shop.batch",
        "shop.db",
        Proto::Udp,
        81,
        true,
        &[BATCH_AUDIT, DB_AUDIT],
    ),
    // The enforced policy beside them still drops, and logs nothing (lab does not log drops).
    a("lab.web", "lab.db", Proto::Tcp, 81, false, &[]),
    a(
        "shop.batch",
        "lab.db",
        Proto::Tcp,
        80,
        false,
        &[BATCH_AUDIT],
    ),
    a("lab.web", "lab.db", Proto::Tcp, 80, true, &[]),
];

/// Audit mode with real packets: the would-drop flows of the audited
/// policies are delivered and logged (NFLOG, prefix `nftpol audit`, without
/// any drop-logging option), with the direction and policies; the enforced
/// policy beside them still drops. Then the same objects with the
/// annotations removed (every policy enforced): the would-drop flows are
/// dropped.
fn audit_kernel_case(shape: Shape) {
    let objs = load(&kit::cases::case("audit-mode"));
    let topo = audit_topology(shape);
    // Drop logging off (no --log-drops, no namespace annotation): audit logs anyway.
    let quiet = DropLog {
        group: GROUP,
        rate: 1000,
        burst: 1000,
        all_namespaces: false,
    };
    let node1 = compile(&objs, "node-1", quiet.clone());
    let node2 = compile(&objs, "node-2", quiet.clone());
    topo.load_ruleset("node-1", &nftpol::core::nft::render::script(&node1.ruleset))
        .unwrap();
    topo.load_ruleset("node-2", &nftpol::core::nft::render::script(&node2.ruleset))
        .unwrap();

    let c1 = Collector::start(topo.node_netns("node-1"));
    let c2 = Collector::start(topo.node_netns("node-2"));
    let mut specs = Vec::new();
    let mut wanted = Vec::new();
    for fam in [Family::V4, Family::V6] {
        for x in &AUDIT_PROBES {
            specs.push(ProbeSpec::pod(
                x.from,
                topo.pod_ip(x.to, fam),
                x.proto,
                x.port,
            ));
            wanted.push(x);
        }
    }
    let reached = topo.probe_many(&specs);
    let logged1 = c1.finish();
    let logged2 = c2.finish();
    for ((spec, x), got) in specs.iter().zip(&wanted).zip(&reached) {
        assert_eq!(*got, x.reached, "{shape}: {spec}: reachability");
    }
    assert!(
        logged2.is_empty(),
        "{shape}: node-2 has no audited pod, yet logged {logged2:?}"
    );
    let flows: Vec<DroppedFlow> = logged1
        .iter()
        .map(|(_, p)| {
            node1
                .drop_log
                .describe(p)
                .unwrap_or_else(|| panic!("{shape}: a packet not from nftpol: {p:?}"))
        })
        .collect();
    assert!(
        flows.iter().all(|f| f.audit),
        "{shape}: only would-drop logs expected: {flows:?}"
    );
    for (spec, x) in specs.iter().zip(&wanted) {
        let src = topo.pod_ip(x.from, Family::of(spec.to));
        let matching: Vec<&DroppedFlow> = flows
            .iter()
            .filter(|f| {
                f.src == src
                    && f.dst == spec.to
                    && f.protocol == proto_number(x.proto)
                    && f.dport == Some(x.port)
            })
            .collect();
        // Retransmits repeat a flow's lines; the distinct (direction, policies) in order of
        // first appearance are what the packet's path logged.
        let mut seen: Vec<(Direction, String)> = Vec::new();
        for f in &matching {
            let k = (f.direction, f.policy_list());
            if !seen.contains(&k) {
                seen.push(k);
            }
        }
        let want: Vec<(Direction, String)> = x
            .would_drop
            .iter()
            .map(|(d, p)| (*d, p.to_string()))
            .collect();
        assert_eq!(seen, want, "{shape}: {spec}: would-drop logs");
        for f in matching {
            assert!(f.to_string().contains(" would drop "), "{f}");
            assert!(f.to_string().ends_with(" (audit)"), "{f}");
        }
    }

    // Switched to enforce (annotations removed): the would-drop flows are dropped.
    let enforced = strip_annotations(&objs);
    for node in ["node-1", "node-2"] {
        let out = compile(&enforced, node, quiet.clone());
        let script = nftpol::core::nft::render::script(&out.ruleset);
        assert!(
            log_lines(&script).is_empty(),
            "{shape}: {node}: no audit left"
        );
        topo.load_ruleset(node, &script).unwrap();
    }
    let would: Vec<ProbeSpec> = AUDIT_PROBES
        .iter()
        .filter(|x| !x.would_drop.is_empty())
        .flat_map(|x| {
            [Family::V4, Family::V6]
                .map(|fam| ProbeSpec::pod(x.from, topo.pod_ip(x.to, fam), x.proto, x.port))
        })
        .collect();
    let got = topo.probe_many(&would);
    for (spec, r) in would.iter().zip(got) {
        assert!(!r, "{shape}: {spec}: enforced, yet delivered");
    }
}

#[test]
fn audit_mode_logs_and_delivers_routed() {
    audit_kernel_case(Shape::Routed);
}

#[test]
fn audit_mode_logs_and_delivers_bridge() {
    audit_kernel_case(Shape::Bridge);
}

#[test]
fn audit_mode_logs_and_delivers_vxlan() {
    audit_kernel_case(Shape::Vxlan);
}

/// `nftpol run` on node-1 against the real control plane with
/// `testdata/audit-mode`: a flow that the audited shop/db-allow-web would
/// drop is delivered, counted in `nftpol_would_drop_packets_total` and logged
/// (target `nftpol::audit`); switching the policy's annotation to `enforce`
/// through the API server starts dropping it, and the policy's would-drop
/// series is removed.
#[test]
fn agent_audit_mode_then_enforce() {
    const METRICS: &str = "127.0.0.1:9751";
    control_plane::ensure_binaries();
    let objs = load(&kit::cases::case("audit-mode"));
    let topo = audit_topology(Shape::Routed);
    let node1 = topo.node_netns("node-1").to_string();
    let cp = in_netns(&node1, ControlPlane::start)
        .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
    let kubeconfig = in_netns(&node1, || {
        let deploy = control_plane::repo().join("deploy");
        cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
        cp.token_kubeconfig("nftpol", "nftpol")
    })
    .unwrap_or_else(|e| panic!("{e:#} (its panic message is above)"));
    for (_, o) in &objs.namespaces {
        apply_in(&node1, &cp, serde_json::to_value(o).unwrap());
    }
    for (_, o) in &objs.pods {
        apply_in(&node1, &cp, serde_json::to_value(o).unwrap());
    }
    for (_, o) in &objs.policies {
        apply_in(&node1, &cp, serde_json::to_value(o).unwrap());
    }
    let dir = std::env::temp_dir().join(format!("nftpol-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let group = GROUP.to_string();
    // No --log-drops: audit mode logs by itself.
    let mut agent = std::process::Command::new("ip")
        .args(["netns", "exec", &node1, env!("CARGO_BIN_EXE_nftpol"), "run"])
        .args(["--node", "node-1", "--listen", METRICS, "--log-json"])
        .args(["--min-interval", "50ms", "--max-delay", "300ms"])
        .args([
            "--log-group",
            &group,
            "--log-rate",
            "1000",
            "--log-burst",
            "1000",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("nftpol run starts");
    let table = || {
        topo.exec(&node1, &["nft", "list", "table", "inet", "nftpol"])
            .unwrap_or_default()
    };
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let series = ["namespace=\"shop\"", "policy=\"db-allow-web\""];
    let metric = "nftpol_would_drop_packets_total";
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("a table with audit log rules", &|| {
            table().contains("log prefix \"nftpol audit audit-ingress-group-")
        });
        // The reader starts right after the apply that first logs.
        std::thread::sleep(Duration::from_millis(500));
        let db4 = topo.pod_ip("shop.db", Family::V4);
        let db6 = topo.pod_ip("shop.db", Family::V6);
        let lab_db = topo.pod_ip("lab.db", Family::V4);
        let reached = topo.probe_many(&[
            ProbeSpec::pod("lab.web", db4, Proto::Tcp, 80), // would drop: delivered
            ProbeSpec::pod("lab.web", db6, Proto::Udp, 81), // would drop: delivered
            ProbeSpec::pod("shop.web", db4, Proto::Tcp, 80), // allowed by it: not counted
            ProbeSpec::pod("lab.web", lab_db, Proto::Tcp, 81), // enforced beside it: dropped
        ]);
        assert_eq!(reached, [true, true, true, false]);
        wait_for("would-drop counts", &|| {
            metric_matching(&metrics_in(&node1, METRICS), metric, &series) >= 2.0
        });
        let body = metrics_in(&node1, METRICS);
        assert_eq!(
            metric_matching(&body, "nftpol_dropped_packets_total", &[]),
            0.0,
            "drop logging is off: {body}"
        );

        // Switch the policy to enforce through the API server.
        let mut pol = objs
            .policies
            .iter()
            .map(|(_, p)| p.clone())
            .find(|p| {
                p.metadata.name.as_deref() == Some("db-allow-web")
                    && p.metadata.namespace.as_deref() == Some("shop")
            })
            .unwrap();
        pol.metadata
            .annotations
            .get_or_insert_default()
            .insert("nftpol.io/mode".into(), "enforce".into());
        apply_in(&node1, &cp, serde_json::to_value(&pol).unwrap());
        wait_for("shop/db enforced", &|| {
            let t = table();
            t.contains("ingress of pods isolated by shop/db-allow-web")
                && !t.contains("audit-ingress-group-")
        });
        let reached = topo.probe_many(&[
            ProbeSpec::pod("lab.web", db4, Proto::Tcp, 80),
            ProbeSpec::pod("lab.web", db6, Proto::Udp, 81),
            ProbeSpec::pod("shop.web", db4, Proto::Tcp, 80),
        ]);
        assert_eq!(reached, [false, false, true], "enforced: dropping starts");
        let body = metrics_in(&node1, METRICS);
        assert_eq!(
            metric_matching(&body, metric, &series),
            0.0,
            "the series of a policy no longer audited is removed: {body}"
        );
    }));
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Err(e) = result {
        eprintln!("agent log:\n{text}");
        std::panic::resume_unwind(e);
    }
    let audits: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "nftpol::audit")
        .collect();
    eprintln!("audit lines: {audits:?}");
    assert!(
        audits.iter().any(|v| {
            let f = &v["fields"];
            f["direction"] == "ingress"
                && f["src"] == "lab/web"
                && f["dst"] == "shop/db"
                && f["proto"] == "tcp"
                && f["dport"] == 80
                && f["policies"] == "shop/db-allow-web"
        }),
        "{text}"
    );
    assert!(
        audits.iter().all(|v| v["fields"]["src"] != "shop/web"),
        "a flow the audited policy allows was logged: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
