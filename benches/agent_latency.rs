//! Event-to-enforcement latency of `nftpol run` against a real control plane
//! (etcd + kube-apiserver from `nftpol_testkit::control_plane`): the time
//! from a write to the API server until the agent has applied the resulting
//! change to the kernel, for a membership change (a pod getting its IP
//! through the status subresource: element delta) and a structural change
//! (a new policy: a structural apply, staged), at each scale; also the agent's start-up
//! to its first table and its peak RSS (`VmHWM`).
//!
//! `cargo bench --bench agent_latency` prints p50/p99 per scale and kind.
//! Under `cargo test` (no `--bench` argument) it runs the small scale with a
//! few samples as a smoke test. Runs in its own network namespace, where the
//! control plane starts too; the agent authenticates with deploy/'s
//! ServiceAccount token (TokenRequest) and uses its default coalescing
//! settings (a change to an idle agent at once; changes within 20 ms of an
//! apply's start coalesced, at most 20 ms; `NFTPOL_AGENT_ARGS="--max-delay 250ms"` adds agent flags to
//! compare settings). `NFTPOL_SCALES=small` picks scales, `NFTPOL_SAMPLES`
//! the single-change samples of each kind (30). The cluster is written
//! with the admin's client certificate through `kube` (a few dozen requests
//! in flight), not kubectl.
//!
//! Scales: `small` and `large` are `synth`'s; `realistic` is
//! `nftpol_testkit::realistic` (a real cluster's statistics), where the
//! churn scenario (`churn.rs`: pod events at `NFTPOL_CHURN_RATE` per second
//! for `NFTPOL_CHURN_SECS`, 100/s for 60 s by default) runs after the
//! single-change samples. The smoke run churns the small cluster for 2 s at
//! 20/s.

#[path = "agent_latency/churn.rs"]
mod churn;
#[path = "agent_latency/write.rs"]
mod write;

use nftpol_testkit::agent;
use nftpol_testkit::control_plane::{self, ControlPlane};
use nftpol_testkit::{realistic, synth};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use write::{ms, pct, peak_rss_mb, pod_status};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const METRICS: &str = "127.0.0.1:9750";

fn applies() -> Option<(f64, f64, f64)> {
    agent::applies(METRICS)
}

/// Waits until the applies counters change from `before`; returns the new
/// value and the elapsed time.
fn wait_apply(before: (f64, f64, f64), started: Instant) -> ((f64, f64, f64), Duration) {
    let mut now = None;
    nftpol_testkit::wait_every(
        "an apply",
        Duration::from_secs(60),
        Duration::from_millis(1),
        || {
            now = applies().filter(|n| *n != before);
            now.is_some()
        },
    );
    (now.expect("the wait ended on a change"), started.elapsed())
}

/// Polls the applies counters until they have not moved for `quiet`
/// (at most `max`); returns the last value.
fn settle(quiet: Duration, max: Duration) -> (f64, f64, f64) {
    let start = Instant::now();
    let mut last = applies().expect("the agent's metrics");
    let mut since = Instant::now();
    while since.elapsed() < quiet && start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(10));
        let now = applies().expect("the agent's metrics");
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

fn measure(
    scale: synth::Scale,
    objs: &nftpol::core::k8s::Objects,
    samples: usize,
    churn: Option<churn::Config>,
) {
    let t = Instant::now();
    let cp = ControlPlane::start();
    let cp_up = t.elapsed();
    let deploy = control_plane::repo().join("deploy");
    cp.kubectl_ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
    let kubeconfig = cp.token_kubeconfig("nftpol", "nftpol");
    // One thread: every socket is opened from this thread, in this namespace.
    let (rt, client) = write::admin(cp.admin_kubeconfig());
    let t = Instant::now();
    rt.block_on(write::write_cluster(&client, objs));
    eprintln!(
        "{}: control plane up in {:.1} s; {} namespaces, {} pods (+ status), {} policies written in {:.1} s",
        scale.name,
        cp_up.as_secs_f64(),
        objs.namespaces.len(),
        objs.pods.len(),
        objs.policies.len(),
        t.elapsed().as_secs_f64()
    );

    // The churn's kernel listener hears the agent's first table too.
    let monitor = churn.map(|_| {
        nftpol_testkit::nftmon::Monitor::start().expect("listening to nftables notifications")
    });
    let started = Instant::now();
    let agent = agent::AgentProcess::spawn(
        Command::new(BIN)
            .args([
                "run",
                "--node",
                "node-01",
                "--listen",
                METRICS,
                "--resync",
                "0s",
                // No NodeProgramStatus writes: the bench's control plane
                // has no status Role in the context's namespace, and the
                // writes are off the event-to-kernel path anyway.
                "--status-interval",
                "0s",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            // Extra agent flags to compare settings (e.g. `--max-delay 250ms`).
            .args(
                std::env::var("NFTPOL_AGENT_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            // `NFTPOL_AGENT_LOG=info` shows the agent's own timeline.
            .env(
                "RUST_LOG",
                std::env::var("NFTPOL_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    loop {
        if let Some(a) = applies()
            && a.0 >= 1.0
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no first apply"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = started.elapsed();
    println!(
        "{}: agent start to first full apply: {}",
        scale.name,
        ms(first)
    );
    settle(Duration::from_millis(500), Duration::from_secs(30));

    // Membership: a new pod in a busy namespace, labelled like its neighbours,
    // joins existing peer sets (an element delta) when it gets its IP. The
    // pod is created without one first (whatever the agent does with that
    // settles), then the clock runs from the status write.
    let template = objs
        .pods
        .iter()
        .map(|(_, p)| p)
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-01"))
        .expect("a pod on node-01")
        .clone();
    let ns = template.metadata.namespace.clone().unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let hist0 = churn::Durations::scrape();
    let mut delta = Vec::new();
    // How long the API server took to answer each write (part of the
    // latency; the agent cannot shorten it).
    let mut pod_answers = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..samples {
        let mut p = template.clone();
        let name = format!("latency-{i}");
        p.metadata.name = Some(name.clone());
        p.status = None;
        rt.block_on(pods.create(&PostParams::default(), &p))
            .expect("creating a pod");
        std::thread::sleep(Duration::from_millis(150));
        let state = settle(Duration::from_millis(400), Duration::from_secs(10));
        let ip = format!("10.250.{}.{}", i / 200, i % 200 + 2);
        let t = Instant::now();
        rt.block_on(pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(pod_status(&[&ip])),
        ))
        .expect("writing a pod's status");
        pod_answers.push(t.elapsed());
        let (now, took) = wait_apply(state, t);
        let kind = if now.1 > state.1 {
            "delta"
        } else if now.0 > state.0 {
            "full"
        } else {
            "unchanged"
        };
        *kinds.entry(kind).or_insert(0) += 1;
        delta.push(took);
    }
    let hist1 = churn::Durations::scrape();
    // Structure: a new policy (its chains, its pods' groups: a staged apply).
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    let mut full = Vec::new();
    let mut policy_answers = Vec::new();
    for i in 0..samples {
        // Selects every pod of the template's namespace (it runs on node-01).
        let pol: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("latency-{i}"), "namespace": ns},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app-{i}")}}}]}]}}))
        .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let state = settle(Duration::from_millis(200), Duration::from_secs(10));
        let t = Instant::now();
        rt.block_on(policies.create(&PostParams::default(), &pol))
            .expect("creating a policy");
        policy_answers.push(t.elapsed());
        let (now, took) = wait_apply(state, t);
        assert!(
            now.0 > state.0,
            "a new policy selecting local pods is a structural (staged) apply"
        );
        full.push(took);
    }
    let hist2 = churn::Durations::scrape();
    let rss = peak_rss_mb(agent.pid());
    let (pods_n, pols_n) = (objs.pods.len(), objs.policies.len());
    println!(
        "{:<7} pods {:>6} policies {:>5} | start to first table {} | new pod ({kinds:?}): p50 {} p99 {} | new policy (structural apply): p50 {} p99 {} | agent peak RSS {:.0} MB",
        scale.name,
        pods_n,
        pols_n,
        ms(first),
        ms(pct(&mut delta, 0.5)),
        ms(pct(&mut delta, 0.99)),
        ms(pct(&mut full, 0.5)),
        ms(pct(&mut full, 0.99)),
        rss,
    );
    println!(
        "{}: {samples} samples each; new pod p90 {} max {}, its write answered p50 {} p99 {}; new policy p90 {} max {}, its write answered p50 {} p99 {}",
        scale.name,
        ms(pct(&mut delta, 0.9)),
        ms(pct(&mut delta, 1.0)),
        ms(pct(&mut pod_answers, 0.5)),
        ms(pct(&mut pod_answers, 0.99)),
        ms(pct(&mut full, 0.9)),
        ms(pct(&mut full, 1.0)),
        ms(pct(&mut policy_answers, 0.5)),
        ms(pct(&mut policy_answers, 0.99)),
    );
    hist1.print_since(&hist0, &format!("{}: new pods", scale.name));
    hist2.print_since(&hist1, &format!("{}: new policies", scale.name));
    if let (Some(cfg), Some(monitor)) = (churn, monitor) {
        churn::run(&rt, &client, objs, agent.pid(), scale.nodes, cfg, monitor);
    }
    drop(agent);
    drop(rt);
    drop(cp);
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // Built (if need be) before entering the fresh namespace, which has no
    // route to the Go module proxy.
    control_plane::ensure_binaries();
    nftpol_testkit::netns::in_new_netns(move || {
        if bench {
            // `NFTPOL_SCALES=small,large,realistic` (the default) picks scales.
            let names =
                std::env::var("NFTPOL_SCALES").unwrap_or_else(|_| "small,large,realistic".into());
            // `NFTPOL_SAMPLES`: single-change samples of each kind (30: the
            // p99 is then the slowest; more make it a percentile).
            let samples = std::env::var("NFTPOL_SAMPLES").map_or(30, |v| {
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| panic!("NFTPOL_SAMPLES: not a count of 1 or more: {v}"))
            });
            for name in names.split(',') {
                if name == realistic::SCALE.name {
                    let objs = realistic::generate(42);
                    let cfg = churn::Config::from_env(60.0, 100.0);
                    measure(realistic::SCALE, &objs, samples, Some(cfg));
                    continue;
                }
                let Some(scale) = synth::SCALES.iter().find(|s| s.name == name) else {
                    eprintln!("NFTPOL_SCALES: unknown scale {name:?}");
                    std::process::exit(1);
                };
                // `NFTPOL_CHURN=all`: the churn at the synthetic scales too.
                let churn = (std::env::var("NFTPOL_CHURN").as_deref() == Ok("all"))
                    .then(|| churn::Config::from_env(60.0, 100.0));
                measure(*scale, &synth::generate(*scale, 42), samples, churn);
            }
        } else {
            let scale = synth::SCALES[0];
            let cfg = churn::Config::from_env(2.0, 20.0);
            measure(scale, &synth::generate(scale, 42), 3, Some(cfg));
        }
    });
}
