//! The node agent (`nftpol run`): the only async code and the only module
//! that talks to the API server.
//!
//! ```text
//!  watch Pods ─────────┐   (reflectors: stripped objects in stores)
//!  watch Namespaces ───┼──▶ change signal ──▶ worker: coalesce ──▶ store state (Arcs)
//!  watch NetworkPolicies┘                          │                 → ClusterCache: convert
//!                                                   │                   changed objects only
//!                                                   │                 → graph + compile (blocking pool)
//!                                                   │                 → Enforcer::sync (delta/full)
//!                      periodic resync ────────────┘                 → metrics, readiness
//! ```
//!
//! Nothing is written to the kernel until all three watches have synced. A
//! failed apply leaves the previous ruleset in force and is retried with
//! backoff. Losing the API server keeps the last ruleset (the reflectors
//! retry and resync on return). SIGTERM leaves the table in the kernel, so a
//! restarting agent never opens a window of unfiltered traffic.

pub mod droplog;
pub mod http;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::core::compile::Options;
use crate::core::compile::droplog::{DroppedFlow, Index};
use crate::core::k8s::cache::ClusterCache;
use crate::kernel::enforcer::{Applied, Enforcer};
use droplog::{DEDUPE_WINDOW, Dedupe};
use metrics::{DropLabel, Metrics, ObjectLabel, ReasonLabel};

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name (pods with this spec.nodeName are enforced).
    pub node: String,
    /// Kubeconfig file; in-cluster config or the default kubeconfig when absent.
    pub kubeconfig: Option<PathBuf>,
    /// The nft binary.
    pub nft: String,
    /// Address of the /healthz, /readyz and /metrics server.
    pub listen: SocketAddr,
    /// Quiet time that ends a burst of events, and the minimum time between applies.
    pub min_interval: Duration,
    /// Longest an event may wait for its apply, however busy the API server is.
    pub max_delay: Duration,
    /// How often the kernel table is verified against the mirror (0 = never).
    pub resync: Duration,
    /// Drop logging: which namespaces log, NFLOG group, rate and burst.
    pub drop_log: crate::core::compile::DropLog,
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let mut stop = shutdown_signal()?;
    let client = match &cfg.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            let conf = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            Client::try_from(conf)?
        }
        None => Client::try_default().await?,
    };
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(http::Health::default());
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz /readyz /metrics");
    tokio::spawn(http::serve(listener, health.clone(), metrics.clone()));

    let changed = Arc::new(Notify::new());
    let (pods, pods_w) = reflector::store::<Pod>();
    let (namespaces, ns_w) = reflector::store::<Namespace>();
    let (policies, pol_w) = reflector::store::<NetworkPolicy>();
    let wcfg = watcher::Config::default();
    let events = stream::select_all([
        watcher(Api::<Pod>::all(client.clone()), wcfg.clone())
            .backoff(WatchBackoff::default())
            .modify(strip_pod)
            .reflect(pods_w)
            .map(|e| e.map(|_| "pods").map_err(|err| ("pods", err)))
            .boxed(),
        watcher(Api::<Namespace>::all(client.clone()), wcfg.clone())
            .backoff(WatchBackoff::default())
            .modify(|n| strip_meta(&mut n.metadata))
            .reflect(ns_w)
            .map(|e| e.map(|_| "namespaces").map_err(|err| ("namespaces", err)))
            .boxed(),
        watcher(Api::<NetworkPolicy>::all(client.clone()), wcfg)
            .backoff(WatchBackoff::default())
            .modify(|p| strip_meta(&mut p.metadata))
            .reflect(pol_w)
            .map(|e| {
                e.map(|_| "networkpolicies")
                    .map_err(|err| ("networkpolicies", err))
            })
            .boxed(),
    ]);
    {
        let changed = changed.clone();
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut events = events;
            while let Some(e) = events.next().await {
                match e {
                    Ok(resource) => {
                        health.allow(resource);
                        changed.notify_one();
                    }
                    // The backoff retries; the stores keep their last state meanwhile.
                    Err((resource, err)) => {
                        metrics
                            .watch_errors
                            .get_or_create(&metrics::ResourceLabel {
                                resource: resource.to_string(),
                            })
                            .inc();
                        if is_denied(&err) {
                            // Not transient: RBAC (or the token) is wrong. A
                            // forbidden watch after a successful list would
                            // otherwise leave a ready agent on a frozen view.
                            health.deny(resource);
                            tracing::error!(resource, error = %err, "the API server refuses this call (check the ClusterRole and the token); not ready; retrying");
                        } else {
                            tracing::warn!(resource, error = %err, "watch error; retrying");
                        }
                    }
                }
            }
        });
    }

    health.alive.store(true, Ordering::Relaxed);
    tracing::info!(node = %cfg.node, "waiting for pods, namespaces and networkpolicies to sync");
    let synced = async {
        pods.wait_until_ready().await?;
        namespaces.wait_until_ready().await?;
        policies.wait_until_ready().await
    };
    tokio::select! {
        r = synced => r?,
        _ = stopped(&mut stop) => return Ok(()),
    }
    tracing::info!("synced; taking over table inet nftpol");

    let stores = Stores {
        pods,
        namespaces,
        policies,
    };
    let mut worker = Worker {
        cfg: cfg.clone(),
        enforcer: Some(Enforcer::new(cfg.nft.clone())),
        model: Some(ClusterCache::new()),
        metrics,
        health,
        drop_index: Arc::new(RwLock::new(Arc::new(Index::default()))),
        drop_reader: false,
    };
    worker.run(stores, changed, stop).await;
    tracing::info!("shutting down; table inet nftpol stays in force");
    Ok(())
}

/// Whether a watch error is the API server refusing the call (401, 403):
/// wrong RBAC or credentials, which retrying does not fix.
fn is_denied(err: &watcher::Error) -> bool {
    let code = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return false,
    };
    matches!(code, 401 | 403)
}

/// Becomes true once SIGTERM or SIGINT arrived (one handler for the whole
/// run, so no signal is lost between waits).
fn shutdown_signal() -> std::io::Result<tokio::sync::watch::Receiver<bool>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Resolves once shutdown was requested.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Retry delays of a failed list/watch: 250 ms doubling to 5 s, back to
/// 250 ms after any successful event. kube-runtime's default (0.8 s doubling
/// to 30 s, reset only after 120 s) kept an agent up to 30 s behind after an
/// API server outage (docs/agent-testing.md); 5 s bounds that catch-up while
/// still spacing a node's retries.
#[derive(Debug, Clone)]
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

struct Stores {
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    policies: Store<NetworkPolicy>,
}

impl Stores {
    /// The stores' current content (shared pointers, no copies).
    fn state(&self) -> StoreState {
        StoreState {
            namespaces: self.namespaces.state(),
            pods: self.pods.state(),
            policies: self.policies.state(),
        }
    }
}

/// One moment of the three stores.
struct StoreState {
    namespaces: Vec<Arc<Namespace>>,
    pods: Vec<Arc<Pod>>,
    policies: Vec<Arc<NetworkPolicy>>,
}

struct Worker {
    cfg: Config,
    /// Taken out while a blocking apply runs.
    enforcer: Option<Enforcer>,
    /// The model, converted incrementally (only changed objects); taken out
    /// while a blocking compile runs.
    model: Option<ClusterCache>,
    metrics: Arc<Metrics>,
    health: Arc<http::Health>,
    /// What the drop-log reader explains packets with: the index of the
    /// ruleset in the kernel.
    drop_index: Arc<RwLock<Arc<Index>>>,
    /// Whether the drop-log reader runs (started when a ruleset first logs).
    drop_reader: bool,
}

impl Worker {
    async fn run(
        &mut self,
        stores: Stores,
        changed: Arc<Notify>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::ZERO;
        let mut last_apply = Instant::now() - self.cfg.min_interval;
        let mut next_resync = Instant::now() + self.resync_period();
        let mut dirty = true; // the first sync always runs
        loop {
            if !dirty {
                tokio::select! {
                    _ = changed.notified() => dirty = true,
                    _ = tokio::time::sleep_until(next_resync.into()) => {
                        next_resync = Instant::now() + self.resync_period();
                        if !self.verify().await {
                            dirty = true;
                        }
                    }
                    _ = stopped(&mut stop) => return,
                }
                if !dirty {
                    continue;
                }
            }
            // Coalesce a burst: wait for quiet, but never past max_delay.
            let first = Instant::now();
            let deadline = first + self.cfg.max_delay;
            let earliest = (last_apply + self.cfg.min_interval).max(first + backoff);
            loop {
                let quiet_until = Instant::now() + self.cfg.min_interval;
                let wake = quiet_until.max(earliest).min(deadline.max(earliest));
                tokio::select! {
                    _ = changed.notified() => if Instant::now() >= deadline { break },
                    _ = tokio::time::sleep_until(wake.into()) => break,
                    _ = stopped(&mut stop) => return,
                }
            }
            let ok = self.apply_once(&stores).await;
            last_apply = Instant::now();
            if ok {
                dirty = false;
                backoff = Duration::ZERO;
            } else {
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
                tracing::warn!(retry_in = ?backoff, "apply failed; previous ruleset stays in force");
            }
        }
    }

    fn resync_period(&self) -> Duration {
        if self.cfg.resync.is_zero() {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            self.cfg.resync
        }
    }

    /// Compiles the stores and brings the kernel to the result; true on success.
    async fn apply_once(&mut self, stores: &Stores) -> bool {
        let state = stores.state();
        let node = self.cfg.node.clone();
        let drop_log = self.cfg.drop_log.clone();
        let mut model = self.model.take().expect("model present between applies");
        let t = Instant::now();
        let (model, compiled) = tokio::task::spawn_blocking(move || {
            let stats = model.update(
                state.namespaces.iter().map(|o| &**o),
                state.pods.iter().map(|o| &**o),
                state.policies.iter().map(|o| &**o),
            );
            tracing::debug!(
                converted = stats.converted,
                removed = stats.removed,
                reused = stats.reused,
                "model updated"
            );
            let compiled = crate::core::compile::compile_cluster(
                model.cluster(),
                model.diagnostics(),
                &Options {
                    node: Some(node),
                    drop_log,
                },
            );
            (model, compiled)
        })
        .await
        .expect("the compiler does not panic");
        self.model = Some(model);
        self.metrics
            .compile_seconds
            .observe(t.elapsed().as_secs_f64());
        let invalid = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
        self.metrics.invalid_policies.set(invalid as i64);
        for d in compiled.diagnostics.iter().filter(|d| d.is_error()) {
            tracing::warn!(diagnostic = %d, "invalid object (fails closed)");
        }
        let enforced_pods = compiled.enforced_pods;
        let drop_index = compiled.drop_log;
        let ruleset = compiled.ruleset;
        let s = ruleset.stats();
        let mut enforcer = self
            .enforcer
            .take()
            .expect("enforcer present between applies");
        let t = Instant::now();
        let (enforcer, result) = tokio::task::spawn_blocking(move || {
            let r = enforcer.sync_owned(ruleset);
            (enforcer, r)
        })
        .await
        .expect("the enforcer does not panic");
        self.enforcer = Some(enforcer);
        match result {
            Ok(applied) => {
                let kind = applied.kind();
                self.metrics
                    .apply_seconds
                    .get_or_create(&Metrics::kind(kind))
                    .observe(t.elapsed().as_secs_f64());
                self.metrics
                    .applies
                    .get_or_create(&Metrics::kind(kind))
                    .inc();
                for (object, n) in [
                    ("sets", s.sets),
                    ("maps", s.maps),
                    ("chains", s.chains),
                    ("rules", s.rules),
                    ("elements", s.elements),
                ] {
                    self.metrics
                        .ruleset_objects
                        .get_or_create(&ObjectLabel {
                            object: object.into(),
                        })
                        .set(n as i64);
                }
                self.metrics.enforced_pods.set(enforced_pods as i64);
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                self.metrics.last_success.set(now.as_secs() as i64);
                self.health.ready.store(true, Ordering::Relaxed);
                self.set_drop_index(drop_index);
                if !matches!(applied, Applied::Unchanged) {
                    tracing::info!(kind, rules = s.rules, elements = s.elements, took = ?t.elapsed(), "applied");
                }
                true
            }
            Err(e) => {
                let reason = match e {
                    crate::kernel::apply::ApplyError::Spawn { .. } => "spawn",
                    crate::kernel::apply::ApplyError::Rejected { .. } => "rejected",
                };
                self.metrics
                    .failures
                    .get_or_create(&ReasonLabel {
                        reason: reason.into(),
                    })
                    .inc();
                self.health.ready.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "apply failed");
                false
            }
        }
    }

    /// Hands the applied ruleset's index to the drop-log reader, starting the
    /// reader the first time a ruleset logs (so an agent whose table never
    /// logs never binds the NFLOG group).
    fn set_drop_index(&mut self, index: Index) {
        let logs = index.logs_any();
        *self
            .drop_index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(index);
        if logs && !self.drop_reader {
            self.drop_reader = true;
            spawn_drop_reader(
                self.cfg.drop_log.group,
                self.drop_index.clone(),
                self.metrics.clone(),
            );
        }
    }

    /// Verifies the kernel table; false when it drifted (the next apply is full).
    async fn verify(&mut self) -> bool {
        let mut enforcer = self
            .enforcer
            .take()
            .expect("enforcer present between applies");
        let (enforcer, ok) = tokio::task::spawn_blocking(move || {
            let ok = enforcer.verify().unwrap_or(false);
            (enforcer, ok)
        })
        .await
        .expect("verify does not panic");
        self.enforcer = Some(enforcer);
        let label = if ok { "ok" } else { "drift" };
        self.metrics
            .resyncs
            .get_or_create(&Metrics::kind(label))
            .inc();
        if !ok {
            tracing::warn!("kernel table drifted from what nftpol applied; repairing");
        }
        ok
    }
}

/// Reads the NFLOG group on a thread of its own (blocking netlink reads, in
/// the agent's network namespace): counts every logged packet and logs each
/// dropped flow once per [`DEDUPE_WINDOW`].
fn spawn_drop_reader(group: u16, index: Arc<RwLock<Arc<Index>>>, metrics: Arc<Metrics>) {
    let run = move || {
        let mut reader = match crate::kernel::nflog::Reader::bind(group) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "drop logging unavailable: cannot read the NFLOG group");
                return;
            }
        };
        tracing::info!(group, "reading dropped packets from NFLOG group");
        let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
        let mut overruns = 0;
        loop {
            let batch = match reader.recv() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, group, "reading the NFLOG group failed; drop logging stops");
                    return;
                }
            };
            if reader.overruns > overruns {
                overruns = reader.overruns;
                tracing::warn!(
                    group,
                    "NFLOG socket buffer overrun: some dropped packets were not logged"
                );
            }
            let ix = index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            for pkt in &batch.packets {
                let Some(flow) = ix.describe(pkt) else {
                    continue;
                };
                metrics
                    .dropped_packets
                    .get_or_create(&DropLabel {
                        namespace: flow.namespace.clone(),
                        pod: flow.pod.clone().unwrap_or_default(),
                        direction: flow.direction.as_str().into(),
                    })
                    .inc();
                if dedupe.first(flow.key(), Instant::now()) {
                    log_dropped_flow(&flow);
                }
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("nftpol-droplog".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "drop logging unavailable: cannot start its thread");
    }
}

/// The log line of one dropped flow (docs/drop-logging.md lists the fields).
fn log_dropped_flow(flow: &DroppedFlow) {
    tracing::info!(
        target: "nftpol::drop",
        direction = flow.direction.as_str(),
        namespace = %flow.namespace,
        pod = flow.pod.as_deref().unwrap_or(""),
        src = %flow.src_name(),
        src_ip = %flow.src,
        dst = %flow.dst_name(),
        dst_ip = %flow.dst,
        proto = %flow.protocol_name(),
        sport = flow.sport,
        dport = flow.dport,
        policies = %flow.policy_list(),
        "{flow}"
    );
}

/// Drops what nftpol never reads, so the stores stay small at 10k pods.
fn strip_pod(p: &mut Pod) {
    strip_meta(&mut p.metadata);
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.command = None;
            c.args = None;
            c.resources = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
        }
    }
    if let Some(st) = p.status.as_mut() {
        st.conditions = None;
        st.container_statuses = None;
        st.init_container_statuses = None;
    }
}

fn strip_meta(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    m.managed_fields = None;
    m.owner_references = None;
    if let Some(a) = m.annotations.as_mut() {
        // Only nftpol's own annotations are ever read.
        a.retain(|k, _| k.starts_with("nftpol.io/"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn watch_backoff_doubles_to_five_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let ms: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
