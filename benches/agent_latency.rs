//! Event-to-enforcement latency of `nftpol run`: the time from a write to the
//! (fake) API server until the agent has applied the resulting change to the
//! kernel, for a membership change (a new peer pod: element delta) and a
//! structural change (a new policy: full replacement), at each scale.
//!
//! `cargo bench --bench agent_latency` prints p50/p99 per scale and kind.
//! Under `cargo test` it runs the small scale with a few samples as a smoke
//! test. Runs in its own network namespace; the agent uses its default
//! coalescing settings (100 ms quiet time, 1 s maximum delay).

use nftpol_testkit::agent;
use nftpol_testkit::synth;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::json;

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

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn measure(scale: synth::Scale, samples: usize) {
    let api = FakeApiServer::start();
    let dir = std::env::temp_dir().join(format!("nftpol-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    api.kubeconfig(&kubeconfig).unwrap();
    let objs = synth::generate(scale, 42);
    for (_, o) in &objs.namespaces {
        api.apply(serde_json::to_value(o).unwrap()).unwrap();
    }
    for (_, o) in &objs.pods {
        api.apply(serde_json::to_value(o).unwrap()).unwrap();
    }
    for (_, o) in &objs.policies {
        api.apply(serde_json::to_value(o).unwrap()).unwrap();
    }
    let started = Instant::now();
    let _agent = agent::AgentProcess::spawn(
        Command::new(BIN)
            .args([
                "run",
                "--node",
                "node-01",
                "--listen",
                METRICS,
                "--resync",
                "0s",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let mut state = loop {
        if let Some(a) = applies()
            && a.0 >= 1.0
        {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no first apply"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "{}: agent start to first full apply: {}",
        scale.name,
        ms(started.elapsed())
    );

    // Membership: a new pod in a busy namespace, labelled like its neighbours,
    // joins existing peer sets (an element delta).
    let template = serde_json::to_value(&objs.pods[1].1).unwrap();
    let mut delta = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..samples {
        let mut p = template.clone();
        p["metadata"]["name"] = json!(format!("latency-{i}"));
        p["metadata"]["resourceVersion"] = serde_json::Value::Null;
        p["status"]["podIPs"] = json!([{"ip": format!("10.250.{}.{}", i / 200, i % 200 + 2)}]);
        std::thread::sleep(Duration::from_millis(150));
        let t = Instant::now();
        api.apply(p).unwrap();
        let (now, took) = wait_apply(state, t);
        let kind = if now.1 > state.1 {
            "delta"
        } else if now.0 > state.0 {
            "full"
        } else {
            "unchanged"
        };
        *kinds.entry(kind).or_insert(0) += 1;
        state = now;
        delta.push(took);
    }
    // Structure: a new policy (a full replacement).
    let mut full = Vec::new();
    for i in 0..samples {
        // Selects every pod of the namespace of pod 1 (which runs on node-01).
        let ns = objs.pods[1].1.metadata.namespace.clone().unwrap();
        let pol = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("latency-{i}"), "namespace": ns},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app-{i}")}}}]}]}});
        std::thread::sleep(Duration::from_millis(150));
        let t = Instant::now();
        api.apply(pol).unwrap();
        let (now, took) = wait_apply(state, t);
        assert!(
            now.0 > state.0,
            "a new policy selecting local pods is a full replacement"
        );
        state = now;
        full.push(took);
    }
    println!(
        "{:<7} pods {:>6} policies {:>5} | new pod ({kinds:?}): p50 {} p99 {} | new policy (full): p50 {} p99 {}",
        scale.name,
        scale.pods,
        scale.policies,
        ms(pct(&mut delta, 0.5)),
        ms(pct(&mut delta, 0.99)),
        ms(pct(&mut full, 0.5)),
        ms(pct(&mut full, 0.99)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    nftpol_testkit::netns::in_new_netns(move || {
        if bench {
            for scale in [synth::SCALES[0], synth::SCALES[2]] {
                measure(scale, 30);
            }
        } else {
            measure(synth::SCALES[0], 3);
        }
    });
}
