//! Longer than 600 lines: the worker's scenarios share one harness (`Run`) and read best together.
//! Unit tests of the worker over a fake nft, on tokio's paused clock: every
//! time below is virtual and exact (a blocking compile or apply takes no
//! virtual time, since tokio does not auto-advance the clock while a
//! `spawn_blocking` task runs).
//!
//! Observables: the times the worker read its source (one read per apply
//! attempt), the scripts the fake nft saw (full or delta, accepted or
//! rejected), what the fake kernel holds, readiness and metrics.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::{sync::Notify, sync::watch, task::JoinHandle, time::Instant};

use super::{RETRY_MAX, RETRY_MIN, Source, StoreState, Worker};
use crate::agent::Config;
use crate::agent::http::{HEALTHZ, Health, respond};
use crate::agent::metrics::{Metrics, ReasonLabel};
use crate::core::compile::{DropLog, Options, compile_objects};
use crate::core::k8s::slim::SlimPod;
use crate::core::k8s::{Objects, Pod, load_paths};
use crate::core::nft::ruleset::Ruleset;
use crate::kernel::enforcer::Enforcer;
use crate::kernel::fake::{Call, FakeNft};

/// The worker's node (x/a, x/c, y/b, z/a and z/c run there).
const NODE: &str = "node-1";
/// Quiet time that ends a burst.
const MIN: Duration = Duration::from_millis(100);
/// Longest wait of a change.
const MAX_DELAY: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The upstream x/y/z cluster (9 pods on two nodes, 3 namespaces, policies
/// in x) as a mutable source that records when the worker reads it.
struct TestSource {
    objs: Mutex<Objects>,
    reads: Mutex<Vec<Instant>>,
}

impl TestSource {
    fn new() -> TestSource {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/upstream-xyz");
        let (objs, diags) = load_paths(&[root]);
        assert!(diags.is_empty(), "{diags:?}");
        TestSource {
            objs: Mutex::new(objs),
            reads: Mutex::new(Vec::new()),
        }
    }

    /// Adds pod `y/peer-k` on the other node: a peer that namespace `x`'s
    /// ingress rule (from namespace `y`) lets in, so its address joins a
    /// set (an element delta, no structural change).
    fn add_peer(&self, k: u8) {
        let mut objs = lock(&self.objs);
        let (src, template) = objs
            .pods
            .iter()
            .find(|(_, p)| {
                p.metadata.namespace.as_deref() == Some("y")
                    && p.metadata.name.as_deref() == Some("a")
            })
            .cloned()
            .expect("pod y/a");
        let mut pod: Pod = template;
        pod.metadata.name = Some(format!("peer-{k}"));
        let ip = peer_ip(k);
        let status = pod.status.as_mut().expect("status");
        status.pod_ip = Some(ip.clone());
        let ips = status.pod_ips.as_mut().expect("podIPs");
        ips.truncate(1);
        ips[0].ip = ip;
        objs.pods.push((src, pod));
    }

    /// The ruleset this source compiles to on [`NODE`].
    fn ruleset(&self) -> Ruleset {
        let opts = Options {
            node: Some(NODE.into()),
            drop_log: DropLog::default(),
            ..Default::default()
        };
        compile_objects(&lock(&self.objs), &opts).ruleset
    }
}

fn peer_ip(k: u8) -> String {
    format!("10.244.2.{}", 100 + u16::from(k))
}

impl Source for TestSource {
    fn state(&self) -> StoreState {
        lock(&self.reads).push(Instant::now());
        let objs = lock(&self.objs);
        StoreState {
            namespaces: objs
                .namespaces
                .iter()
                .map(|(_, o)| Arc::new(o.clone()))
                .collect(),
            pods: objs
                .pods
                .iter()
                .map(|(_, o)| Arc::new(SlimPod::from(o)))
                .collect(),
            policies: objs
                .policies
                .iter()
                .map(|(_, o)| Arc::new(o.clone()))
                .collect(),
            cluster_policies: objs
                .cluster_policies
                .iter()
                .map(|(_, o)| Arc::new(o.clone()))
                .collect(),
            nodes: objs
                .nodes
                .iter()
                .map(|(_, o)| Arc::new(o.clone()))
                .collect(),
        }
    }
}

/// A worker running on its own task over a [`TestSource`] and a [`FakeNft`].
struct Run {
    t0: Instant,
    source: Arc<TestSource>,
    nft: FakeNft,
    changed: Arc<Notify>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Run {
    /// Starts a worker at virtual time zero; `prepare` sets up the fake
    /// before the worker first touches it.
    fn start(resync: Duration, prepare: impl FnOnce(&TestSource, &FakeNft)) -> Run {
        let nft = FakeNft::new();
        let source = TestSource::new();
        prepare(&source, &nft);
        Run::over(
            Enforcer::with(nft.clone()),
            nft,
            source,
            resync,
            Health::DEFAULT_STALL_BOUND,
        )
    }

    /// A worker over `enforcer` (whose `nft` may be another than `nft`),
    /// failing liveness after `stall`.
    fn over(
        enforcer: Enforcer,
        nft: FakeNft,
        source: TestSource,
        resync: Duration,
        stall: Duration,
    ) -> Run {
        let t0 = Instant::now();
        let source = Arc::new(source);
        let cfg = Config {
            node: NODE.into(),
            kubeconfig: None,
            context: None,
            nft: "nft".into(),
            nft_timeout: Duration::from_secs(10),
            netlink_elements: false,
            liveness_stall: stall,
            listen: "127.0.0.1:0".parse().expect("address"),
            min_interval: MIN,
            max_delay: MAX_DELAY,
            resync,
            drop_log: DropLog::default(),
            new_pods: Default::default(),
            revoke_established: true,
            status_interval: Duration::ZERO,
            status_namespace: None,
        };
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(stall));
        // What agent::run sets before the worker starts.
        health
            .alive
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let changed = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let mut worker = Worker::new(cfg, enforcer, metrics.clone(), health.clone());
        let task = {
            let (source, changed) = (source.clone(), changed.clone());
            tokio::spawn(async move { worker.run(&*source, changed, stop_rx).await })
        };
        Run {
            t0,
            source,
            nft,
            changed,
            health,
            metrics,
            stop,
            task,
        }
    }

    /// Sleeps until `t` after the start.
    async fn at(&self, t: Duration) {
        tokio::time::sleep_until(self.t0 + t).await;
    }

    /// The start of every apply attempt so far, since the start.
    fn attempts(&self) -> Vec<Duration> {
        lock(&self.source.reads)
            .iter()
            .map(|t| *t - self.t0)
            .collect()
    }

    /// Every nft apply so far as (kind, accepted).
    fn calls(&self) -> Vec<(&'static str, bool)> {
        self.nft.calls().iter().map(shape).collect()
    }

    fn ready(&self) -> bool {
        self.health.is_ready()
    }

    /// The status `/healthz` answers now.
    fn healthz(&self) -> u16 {
        respond(HEALTHZ, &self.health, &self.metrics)
            .status()
            .as_u16()
    }

    fn count(&self, family: &str, label: &str) -> u64 {
        let m = &self.metrics;
        match family {
            "applies" => m.applies.get_or_create(&Metrics::kind(label)).get(),
            "resyncs" => m.resyncs.get_or_create(&Metrics::kind(label)).get(),
            "failures" => m
                .failures
                .get_or_create(&ReasonLabel {
                    reason: label.into(),
                })
                .get(),
            _ => unreachable!("{family}"),
        }
    }

    async fn stop(self) {
        self.stop.send(true).expect("worker listens");
        self.task.await.expect("worker does not panic");
    }
}

fn shape(c: &Call) -> (&'static str, bool) {
    (if c.is_full() { "full" } else { "delta" }, c.ok)
}

const FULL: (&str, bool) = ("full", true);
const DELTA: (&str, bool) = ("delta", true);
const FULL_REJECTED: (&str, bool) = ("full", false);
const DELTA_REJECTED: (&str, bool) = ("delta", false);

#[tokio::test(start_paused = true)]
async fn a_lone_change_applies_at_once_and_a_burst_coalesces_behind_it() {
    let run = Run::start(Duration::ZERO, |_, _| {});
    run.at(ms(1000)).await;
    assert_eq!(run.attempts(), [ms(0)], "the first sync runs at once");
    assert_eq!(run.calls(), [FULL]);
    assert!(run.ready());

    // Ten changes 50 ms apart (each within the quiet time of the previous).
    for k in 0..10 {
        run.at(ms(2000 + 50 * u64::from(k))).await;
        run.source.add_peer(k);
        run.changed.notify_one();
    }
    run.at(ms(5000)).await;
    assert_eq!(
        run.attempts(),
        [ms(0), ms(2000), ms(2450) + MIN],
        "the first change at once (leading edge), the nine behind it in one \
         apply the quiet time after the last (trailing batch)"
    );
    assert_eq!(run.calls(), [FULL, DELTA, DELTA]);
    let calls = run.nft.calls();
    assert!(calls[1].script.contains(&peer_ip(0)));
    for k in 1..10 {
        let delta = &calls[2].script;
        assert!(delta.contains(&peer_ip(k)), "{k} missing from {delta}");
    }
    assert_eq!(run.count("applies", "delta"), 2);

    // A lone change long after the burst: applied at once again.
    run.at(ms(7000)).await;
    run.source.add_peer(10);
    run.changed.notify_one();
    run.at(ms(8000)).await;
    assert_eq!(run.attempts()[3..], [ms(7000)]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn max_delay_bounds_a_burst_that_never_goes_quiet() {
    let run = Run::start(Duration::ZERO, |_, _| {});
    run.at(ms(1000)).await;
    // A change every 30 ms from 1 s to 4.27 s: never 100 ms of quiet.
    let signals: Vec<Duration> = (0..110).map(|k| ms(1000 + 30 * k)).collect();
    for (k, t) in signals.iter().enumerate() {
        run.at(*t).await;
        run.source.add_peer(u8::try_from(k).expect("small"));
        run.changed.notify_one();
    }
    run.at(ms(6000)).await;
    // The first change is applied at once (1.0 s); each later apply comes
    // max_delay after the first change it waited for (1.03 s, then the
    // first changes after each apply: 2.05 s and 3.07 s); the last one the
    // quiet time after the burst's end.
    assert_eq!(
        run.attempts(),
        [
            ms(0),
            ms(1000),
            ms(2030),
            ms(3050),
            ms(4070),
            ms(4270) + MIN
        ]
    );
    assert_eq!(run.calls(), [FULL, DELTA, DELTA, DELTA, DELTA, DELTA]);
    // No change waited longer than max_delay for the apply that took it in.
    let attempts = run.attempts();
    for t in &signals {
        let applied = attempts.iter().find(|a| *a >= t).expect("applied");
        assert!(
            *applied - *t <= MAX_DELAY,
            "change at {t:?} applied at {applied:?}"
        );
    }
    run.stop().await;
}

/// Changes that arrive while an apply runs wait at most max_delay from
/// the first of them, not from the end of that apply (under churn the
/// quiet never comes, and an apply's duration used to add to the wait).
#[tokio::test(start_paused = true)]
async fn a_change_during_an_apply_waits_max_delay_from_its_arrival() {
    let run = Run::start(Duration::ZERO, |_, _| {});
    run.at(ms(1000)).await;
    run.nft.hang();
    run.source.add_peer(0);
    run.changed.notify_one();
    // The apply blocks in nft; virtual time stands still until advanced.
    let start = std::time::Instant::now();
    while run.nft.hung() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the apply never reached nft"
        );
        std::thread::sleep(ms(1));
        tokio::task::yield_now().await;
    }
    for k in 1..=3 {
        tokio::time::advance(ms(20)).await;
        run.source.add_peer(k);
        run.changed.notify_one();
        // Let the worker's task see it now (as it would on a live runtime).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    // The apply ends at 1.06 s (released: the delta is "killed", the same
    // attempt replaces the table in full).
    run.nft.release();
    // Then a change every 30 ms until 3 s: never quiet.
    for k in 4..70u8 {
        run.at(ms(1060 + 30 * u64::from(k - 3))).await;
        run.source.add_peer(k);
        run.changed.notify_one();
    }
    let attempts = run.attempts();
    assert_eq!(attempts[..2], [ms(0), ms(1000)]);
    assert_eq!(
        attempts[2],
        ms(1020) + MAX_DELAY,
        "max_delay after the first change that came during the apply (1.02 s), \
         not after the apply's end (1.06 s)"
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_retries_with_doubling_backoff_and_keeps_the_old_table() {
    let run = Run::start(Duration::ZERO, |_, _| {});
    run.at(ms(1000)).await;
    let before = run.nft.in_force();
    assert_eq!(before.len(), 1, "one full table");

    // Nine attempts fail: the first as a delta and its full fallback, the
    // others as full replacements (the mirror is distrusted), 10 scripts.
    run.nft.fail_next(10);
    run.source.add_peer(0);
    run.changed.notify_one();

    run.at(ms(10_000)).await;
    assert!(!run.ready(), "a failed apply makes the agent unready");
    assert_eq!(run.nft.in_force(), before, "the old table stays, whole");
    assert_eq!(run.count("failures", "rejected"), 5);

    run.at(ms(200_000)).await;
    let attempts = run.attempts();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(attempts[1], ms(1000), "the first attempt at once");
    let s = Duration::from_secs;
    assert_eq!(
        gaps[1..],
        [
            RETRY_MIN,
            s(1),
            s(2),
            s(4),
            s(8),
            s(16),
            RETRY_MAX,
            RETRY_MAX,
            RETRY_MAX
        ],
        "0.5 s doubling, capped at 30 s, no retries after the success: {attempts:?}"
    );
    assert_eq!(RETRY_MIN, ms(500));
    assert_eq!(RETRY_MAX, s(30));
    let mut expected = vec![FULL, DELTA_REJECTED];
    expected.extend([FULL_REJECTED; 9]);
    expected.push(FULL);
    assert_eq!(run.calls(), expected);
    assert!(run.ready());
    let in_force = run.nft.in_force();
    assert_eq!(in_force.len(), 1);
    assert!(in_force[0].contains(&peer_ip(0)), "the new table, whole");
    assert_eq!(run.count("failures", "rejected"), 9);

    // The backoff is back to zero: the next change is applied at once.
    let n = run.attempts().len();
    run.source.add_peer(1);
    run.changed.notify_one();
    run.at(ms(201_000)).await;
    assert_eq!(run.attempts()[n..], [ms(200_000)]);
    assert_eq!(run.calls().last(), Some(&DELTA));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_delta_falls_back_to_a_full_replacement_in_the_same_attempt() {
    let run = Run::start(Duration::ZERO, |_, _| {});
    run.at(ms(1000)).await;
    run.nft.fail_next(1);
    run.source.add_peer(0);
    run.changed.notify_one();
    run.at(ms(5000)).await;
    assert_eq!(run.attempts(), [ms(0), ms(1000)], "one attempt, no retry");
    assert_eq!(run.calls(), [FULL, DELTA_REJECTED, FULL]);
    assert!(run.ready(), "the attempt succeeded");
    assert_eq!(run.count("applies", "full"), 2);
    assert_eq!(run.count("failures", "rejected"), 0);
    let in_force = run.nft.in_force();
    assert_eq!(in_force.len(), 1);
    assert!(in_force[0].contains(&peer_ip(0)));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn drift_is_found_on_resync_and_repaired_in_full() {
    let resync = Duration::from_secs(10);
    let run = Run::start(resync, |source, nft| nft.holds(&source.ruleset()));
    run.at(ms(15_000)).await;
    assert_eq!(
        run.count("resyncs", "ok"),
        1,
        "the kernel held what was applied"
    );
    assert_eq!(run.attempts(), [ms(0)], "a clean resync applies nothing");
    assert_eq!(run.calls(), [FULL]);

    // Someone deletes an element of a dispatch map behind nftpol's back.
    let mut drifted = run.source.ruleset();
    let map = drifted
        .maps
        .values_mut()
        .find(|m| !m.elements.is_empty())
        .expect("a dispatch map with pods");
    map.elements.pop_first();
    run.nft.holds(&drifted);
    run.at(ms(25_000)).await;
    assert_eq!(run.count("resyncs", "drift"), 1);
    assert_eq!(
        run.attempts(),
        [ms(0), resync * 2],
        "repaired at once, without a change signal"
    );
    assert_eq!(run.calls(), [FULL, FULL], "repaired in full");
    let calls = run.nft.calls();
    let stamp = |i: usize| {
        let g = crate::kernel::fake::generation_in(&calls[i].script).expect("a generation");
        crate::core::nft::render::mark(g.stamp())
    };
    assert_eq!(
        calls[1].script.replace(&stamp(1), &stamp(0)),
        calls[0].script,
        "the same table again, in a new generation"
    );

    // The kernel holds it again: the next resync is clean.
    run.nft.holds(&run.source.ruleset());
    run.at(ms(35_000)).await;
    assert_eq!(run.count("resyncs", "ok"), 2);
    assert_eq!(run.attempts().len(), 2);
    run.stop().await;
}

/// Waits (in real time) until `f` holds; false if it did not within `limit`.
async fn eventually(limit: Duration, f: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !f() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(ms(10)).await;
    }
    true
}

/// An `nft` stuck where its timeout does not reach (the fake hangs until
/// released): the worker's apply step stops advancing, `/healthz` turns 503
/// once the step has run longer than the liveness bound (the kubelet would
/// restart the agent), and the kernel keeps the table it had. Real time:
/// the bound is measured on the wall clock, as in production.
#[tokio::test]
async fn a_hung_nft_fails_liveness_and_the_table_stays() {
    let stall = ms(1000);
    let nft = FakeNft::new();
    let run = Run::over(
        Enforcer::with(nft.clone()),
        nft,
        TestSource::new(),
        Duration::ZERO,
        stall,
    );
    assert!(eventually(Duration::from_secs(10), || run.ready()).await);
    assert_eq!(run.healthz(), 200);
    let before = run.nft.in_force();
    assert_eq!(before.len(), 1);

    run.nft.hang();
    run.source.add_peer(0);
    run.changed.notify_one();
    assert!(eventually(Duration::from_secs(10), || run.nft.hung() == 1).await);
    assert_eq!(run.healthz(), 200, "stuck for less than the bound");
    tokio::time::sleep(stall + ms(200)).await;
    assert_eq!(
        run.healthz(),
        503,
        "stuck in the apply for longer than the bound"
    );
    let (step, _) = run.health.stalled().expect("stalled");
    assert_eq!(step, "apply");
    assert_eq!(run.nft.in_force(), before, "the kernel keeps its table");
    assert!(
        run.ready(),
        "readiness is the last apply's, which succeeded"
    );

    // Released (as if killed): the delta fails, the same attempt replaces
    // the table in full, and liveness is back.
    run.nft.release();
    assert!(eventually(Duration::from_secs(10), || run.calls().len() == 3).await);
    assert_eq!(run.calls(), [FULL, DELTA_REJECTED, FULL]);
    assert!(eventually(Duration::from_secs(10), || run.healthz() == 200).await);
    let in_force = run.nft.in_force();
    assert_eq!(in_force.len(), 1);
    assert!(in_force[0].contains(&peer_ip(0)));
    run.stop().await;
}

/// A real `NftCli` whose binary hangs (a script that sleeps while a marker
/// file exists, and otherwise records its script as "the kernel"): every
/// call is killed after the timeout and counted as a failed apply with
/// reason `timeout`; readiness fails, liveness does not (each step ends
/// within the bound), the kernel keeps its table, and the retry after the
/// backoff succeeds once `nft` answers again.
#[tokio::test]
async fn a_timed_out_nft_is_a_failed_apply_retried_and_the_agent_stays_alive() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "nftpol-hang-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("nft");
    let (hang, kernel) = (dir.join("hang"), dir.join("kernel"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$*\" in *list*) exit 1;; esac\n\
             if [ -e '{hang}' ]; then exec sleep 30; fi\n\
             if [ \"$*\" = '-f -' ]; then cat >> '{kernel}'; echo >> '{kernel}'; fi\n",
            hang = hang.display(),
            kernel = kernel.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Far above what sh and cat take even on a loaded machine.
    let timeout = ms(500);
    let nft = crate::kernel::nft::NftCli::with_timeout(script.display().to_string(), timeout);
    let run = Run::over(
        Enforcer::with(nft),
        FakeNft::new(),
        TestSource::new(),
        Duration::ZERO,
        Duration::from_secs(3),
    );
    let held = || std::fs::read_to_string(&kernel).unwrap_or_default();
    assert!(eventually(Duration::from_secs(10), || run.ready()).await);
    let before = held();
    assert!(
        before.contains("delete table inet"),
        "a full table: {before}"
    );

    std::fs::write(&hang, "").expect("marker");
    run.source.add_peer(0);
    run.changed.notify_one();
    // The delta is killed, then its full fallback: one failed apply.
    assert!(
        eventually(Duration::from_secs(10), || run.count("failures", "timeout")
            == 1)
        .await
    );
    assert!(!run.ready(), "a failed apply makes the agent unready");
    assert_eq!(run.healthz(), 200, "each nft call ended within the bound");
    assert_eq!(held(), before, "the kernel keeps its table");

    std::fs::remove_file(&hang).expect("marker");
    assert!(eventually(Duration::from_secs(10), || run.ready()).await);
    assert!(held().contains(&peer_ip(0)), "the retry applied the change");
    assert_eq!(run.healthz(), 200);
    run.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
