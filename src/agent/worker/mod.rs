//! The worker: waits for changes, coalesces bursts, compiles the stores'
//! state and hands the ruleset to the [`Enforcer`]; retries a failed apply
//! with backoff and verifies the kernel table on every resync.
//!
//! Timing, per burst of change signals:
//! - leading edge: the first change to an idle agent (no apply started in
//!   the last `min_interval`, no backoff pending) is applied at once, so a lone event
//!   never waits for a quiet time; so is the first sync;
//! - trailing batch: changes that arrive while an apply is recent are
//!   coalesced: their apply runs once the signals have been quiet for
//!   `min_interval`, never sooner than `min_interval` after the previous
//!   apply began (so a long apply, a structural change, does not also
//!   delay the next batch), and never later than `max_delay` after the
//!   batch's first signal (which may have come while the previous apply
//!   ran), however busy the API server is;
//! - after a failed apply the state stays dirty and the next attempt waits a
//!   backoff (0.5 s doubling to 30 s; back to zero after a success). The
//!   enforcer itself falls back from a failed delta to a full replacement.
//! - every `resync`, the kernel table is verified; drift makes the state
//!   dirty, and the enforcer (its mirror forgotten) repairs in full. The
//!   same listing gives the kernel's drop counters to the metrics.
//!
//! Compile: the model is converted incrementally (`ClusterCache`); when
//! only pods changed, `core::compile::incremental` edits the previous
//! ruleset's elements instead of compiling in full, and when NetworkPolicies
//! changed it rebuilds only what they touch (its index falls back to the
//! full compile for namespaces, nodes, ClusterNetworkPolicies and options); `nftpol_compile_path_total`
//! counts which path ran, the debug log says why a compile was full.
//!
//! Status: after every apply (ok or failed) the [`status::Feed`] records
//! what the kernel holds; at most every `--status-interval` the worker
//! hashes the kernel's ruleset (only when its generation moved) and hands a
//! snapshot to the publisher task, which writes it without ever holding up
//! the next apply.
//!
//! Heartbeat: each step (compile, apply, verify) marks itself busy in
//! [`http::Health`] when it starts and idle when it ends; `/healthz` fails
//! while one runs longer than `--liveness-stall` (an `nft` call is killed
//! after `--nft-timeout`, an apply makes at most two). Waiting for changes,
//! the quiet time or a backoff is idle, however long.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::droplog::DropLogFeed;
use super::metrics::{Metrics, ObjectLabel, OutcomeLabel, PathLabel, ReasonLabel};
use super::status::{self, Feed};
use super::{Config, http, stopped};
use crate::core::compile::{Options, incremental};
use crate::core::k8s::cache::{ClusterCache, Delta};
use crate::core::k8s::node_status::Held;
use crate::core::k8s::slim::SlimPod;
use crate::core::k8s::{ClusterNetworkPolicy, Namespace, NetworkPolicy, Node};
use crate::kernel::enforcer::{Applied, Enforcer};
use crate::kernel::netlink::Transports;

/// Shortest wait after a failed apply; it doubles per failure up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait after failed applies.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// One moment of the three stores.
pub struct StoreState {
    /// Namespaces.
    pub namespaces: Vec<Arc<Namespace>>,
    /// Pods (parsed slim).
    pub pods: Vec<Arc<SlimPod>>,
    /// Network policies.
    pub policies: Vec<Arc<NetworkPolicy>>,
    /// ClusterNetworkPolicies (empty while their CRD is not installed).
    pub cluster_policies: Vec<Arc<ClusterNetworkPolicy>>,
    /// Nodes (for `nodes` peers).
    pub nodes: Vec<Arc<Node>>,
}

/// What changed in the stores since the worker last read them: per kind
/// every object, or the changed keys with their current objects.
pub struct StoreChanges {
    /// Namespaces.
    pub namespaces: Delta<Namespace>,
    /// Pods (parsed slim).
    pub pods: Delta<SlimPod>,
    /// Network policies.
    pub policies: Delta<NetworkPolicy>,
    /// ClusterNetworkPolicies.
    pub cluster_policies: Delta<ClusterNetworkPolicy>,
    /// Nodes.
    pub nodes: Delta<Node>,
}

/// Where the worker reads the cluster from (the reflectors' stores, or a
/// test's list of objects).
pub trait Source: Send + Sync {
    /// The current objects (shared pointers, no copies).
    fn state(&self) -> StoreState;

    /// Makes the next [`Source::changes`] hand over every object (the
    /// worker calls it every `--resync` period).
    fn rewalk(&self) {}

    /// What changed since the last call (the first call: everything). By
    /// default every object, every time.
    fn changes(&self) -> StoreChanges {
        let s = self.state();
        StoreChanges {
            namespaces: Delta::All(s.namespaces),
            pods: Delta::All(s.pods),
            policies: Delta::All(s.policies),
            cluster_policies: Delta::All(s.cluster_policies),
            nodes: Delta::All(s.nodes),
        }
    }
}

/// What a compile hands the enforcer.
enum Handover {
    /// A whole ruleset (a full compile).
    Ruleset(crate::core::nft::ruleset::Ruleset),
    /// Element edits of the previous one (the incremental path).
    Edits(crate::core::nft::delta::Edits),
    /// The names of what a partial compile changed in the previous one.
    Touched(crate::core::nft::delta::Touched),
}

/// The apply loop's state. See the module docs.
pub struct Worker {
    cfg: Config,
    /// Taken out while a blocking apply runs.
    enforcer: Option<Enforcer>,
    /// The model, converted incrementally (only changed objects); taken out
    /// while a blocking compile runs.
    model: Option<ClusterCache>,
    /// The previous compile and its index, for the incremental path; taken
    /// out with the model.
    compiler: Option<incremental::State>,
    metrics: Arc<Metrics>,
    health: Arc<http::Health>,
    drop_log: DropLogFeed,
    /// This node's NodeProgramStatus, when published.
    status: Option<Feed>,
    /// The model's [`ClusterCache::policy_versions`] when the status feed
    /// last took the policies held (they are rebuilt only when it moves).
    held_version: Option<u64>,
    /// The netlink transport's counts, and their values when last copied
    /// into `nftpol_kernel_batches_total`.
    transports: Option<(Transports, [u64; 3])>,
}

impl Worker {
    /// A worker bringing the kernel to the compiled state through `enforcer`.
    pub fn new(
        cfg: Config,
        enforcer: Enforcer,
        metrics: Arc<Metrics>,
        health: Arc<http::Health>,
    ) -> Worker {
        Worker {
            drop_log: DropLogFeed::new(cfg.drop_log.group, metrics.clone()),
            cfg,
            enforcer: Some(enforcer),
            model: Some(ClusterCache::new()),
            compiler: Some(incremental::State::default()),
            metrics,
            health,
            status: None,
            held_version: None,
            transports: None,
        }
    }

    /// Counts how the netlink transport's changes went in
    /// `nftpol_kernel_batches_total`.
    pub fn with_transports(mut self, t: Transports) -> Worker {
        self.transports = Some((t, [0; 3]));
        self
    }

    /// Copies the transport's counts (since the last call) into the metric.
    fn count_transports(&mut self) {
        let Some((t, seen)) = self.transports.as_mut() else {
            return;
        };
        let counts = [
            ("netlink", &t.netlink),
            ("netlink_refused", &t.refused),
            ("nft", &t.nft),
        ];
        for (i, (outcome, n)) in counts.into_iter().enumerate() {
            let now = n.load(Ordering::Relaxed);
            if now > seen[i] {
                self.metrics
                    .kernel_batches
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .inc_by(now - seen[i]);
            }
            seen[i] = now;
        }
    }

    /// Publishes this node's status through `feed` (see the module docs).
    pub fn with_status(mut self, feed: Feed) -> Worker {
        self.status = Some(feed);
        self
    }

    /// Runs until `stop` becomes true. The first apply runs at once,
    /// without a change signal.
    pub async fn run(
        &mut self,
        source: &dyn Source,
        changed: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::ZERO;
        let mut last_apply = Instant::now() - self.cfg.min_interval;
        let mut next_resync = Instant::now() + self.resync_period();
        let mut dirty = true; // the first sync always runs
        // When the first change not yet applied arrived, if it came while an
        // apply was running (the batch's wait counts from then).
        let mut pending_since: Option<Instant> = None;
        loop {
            if !dirty {
                let status_at = self.status.as_ref().and_then(Feed::wake);
                tokio::select! {
                    _ = changed.notified() => dirty = true,
                    _ = tokio::time::sleep_until(status_at.unwrap_or(next_resync)), if status_at.is_some() => {
                        self.publish_status().await;
                    }
                    _ = tokio::time::sleep_until(next_resync) => {
                        next_resync = Instant::now() + self.resync_period();
                        source.rewalk();
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
            // Leading edge: a change to an idle agent (the last apply began
            // at least min_interval ago, no backoff pending) is applied at
            // once. Trailing batch: changes that come while an apply is
            // recent are coalesced: wait for quiet, but never past max_delay
            // after the first of them (which may have come during the
            // previous apply).
            let now = Instant::now();
            let first = pending_since.take().unwrap_or(now);
            let deadline = first + self.cfg.max_delay;
            let earliest = (last_apply + self.cfg.min_interval).max(now + backoff);
            if now < earliest {
                loop {
                    let quiet_until = Instant::now() + self.cfg.min_interval;
                    let wake = quiet_until.max(earliest).min(deadline.max(earliest));
                    tokio::select! {
                        _ = changed.notified() => if Instant::now() >= deadline { break },
                        _ = tokio::time::sleep_until(wake) => break,
                        _ = stopped(&mut stop) => return,
                    }
                }
            }
            // The interval counts from the start of an apply: a long one
            // (a structural change) does not also delay the next batch.
            last_apply = Instant::now();
            // Changes arriving during the apply are not in it (it read the
            // stores when it began): note when the first came.
            let ok = {
                let apply = self.apply_once(source);
                tokio::pin!(apply);
                loop {
                    tokio::select! {
                        ok = &mut apply => break ok,
                        _ = changed.notified(), if pending_since.is_none() => {
                            pending_since = Some(Instant::now());
                        }
                    }
                }
            };
            if self.status.as_ref().is_some_and(Feed::due) {
                self.publish_status().await;
            }
            if ok {
                backoff = Duration::ZERO;
            } else {
                backoff = (backoff * 2).clamp(RETRY_MIN, RETRY_MAX);
                tracing::warn!(retry_in = ?backoff, "apply failed; previous ruleset stays in force");
            }
            // Still dirty after a failure, or when changes came meanwhile.
            dirty = !ok || pending_since.is_some();
        }
    }

    fn resync_period(&self) -> Duration {
        if self.cfg.resync.is_zero() {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            self.cfg.resync
        }
    }

    /// Compiles the source and brings the kernel to the result; true on success.
    async fn apply_once(&mut self, source: &dyn Source) -> bool {
        let changes = source.changes();
        let status = self.status.is_some();
        let held_version = self.held_version;
        let node = self.cfg.node.clone();
        let drop_log = self.cfg.drop_log.clone();
        let new_pods = self.cfg.new_pods.clone();
        let revoke_established = self.cfg.revoke_established;
        let mut model = self.model.take().expect("model present between applies");
        let mut compiler = self
            .compiler
            .take()
            .expect("compiler present between applies");
        self.health.busy("compile");
        let t = std::time::Instant::now();
        let (model, compiler, compiled, path, (versions, held)) =
            tokio::task::spawn_blocking(move || {
                let c = changes;
                let mut stats = model.update_delta(&c.namespaces, &c.pods, &c.policies);
                let scoped = model.update_cluster_scoped_delta(&c.cluster_policies, &c.nodes);
                // The objects are the stores' (shared); not held past the update.
                drop(c);
                stats.converted += scoped.converted;
                stats.removed += scoped.removed;
                stats.reused += scoped.reused;
                // The policies the status lists: rebuilt only when some policy's
                // name or resourceVersion changed (a walk over every policy).
                let versions = model.policy_versions();
                let held = (status && held_version != Some(versions)).then(|| {
                    let (policies, cluster_policies) = model.policy_objects();
                    Held::of(policies, cluster_policies)
                });
                tracing::debug!(
                    converted = stats.converted,
                    removed = stats.removed,
                    reused = stats.reused,
                    "model updated"
                );
                // Pod-only changes edit the previous ruleset; anything else (or
                // a pod change it cannot prove element-only) compiles in full.
                let changes = model.take_changes();
                let (compiled, path) = compiler.compile_edits(
                    model.cluster(),
                    model.diagnostics(),
                    &changes,
                    &Options {
                        node: Some(node),
                        drop_log,
                        new_pods,
                        revoke_established,
                    },
                );
                (model, compiler, compiled, path, (versions, held))
            })
            .await
            .expect("the compiler does not panic");
        self.model = Some(model);
        self.compiler = Some(compiler);
        self.metrics
            .compile_paths
            .get_or_create(&PathLabel {
                path: path.as_str().into(),
            })
            .inc();
        if let incremental::Path::Full(reason) = path {
            tracing::debug!(reason, "full compile");
        }
        self.metrics
            .compile_seconds
            .observe(t.elapsed().as_secs_f64());
        // A full compile hands over its ruleset; the incremental path its
        // element edits of the previous one, or (a partial compile) the
        // names of the chains, sets and maps it changed in the compiler's
        // ruleset, which the enforcer applies to its mirror of the kernel
        // (no copy, no comparison of whole tables).
        let (diagnostics, enforced_pods, drop_index, output) = match compiled {
            incremental::Output::Full(c) => (
                c.diagnostics,
                c.enforced_pods,
                Arc::new(c.drop_log),
                Handover::Ruleset(c.ruleset),
            ),
            incremental::Output::Edited(e) => (
                e.diagnostics,
                e.enforced_pods,
                e.drop_log,
                Handover::Edits(e.edits),
            ),
            incremental::Output::Reshaped(r) => (
                r.diagnostics,
                r.enforced_pods,
                r.drop_log,
                Handover::Touched(r.touched),
            ),
        };
        let invalid = diagnostics.iter().filter(|d| d.is_error()).count();
        self.metrics.invalid_policies.set(invalid as i64);
        for d in diagnostics.iter().filter(|d| d.is_error()) {
            tracing::warn!(diagnostic = %d, "invalid object (fails closed)");
        }
        let mut enforcer = self
            .enforcer
            .take()
            .expect("enforcer present between applies");
        let compiler = self
            .compiler
            .take()
            .expect("compiler present between applies");
        self.health.busy("apply");
        let t = std::time::Instant::now();
        let (enforcer, compiler, result, s) = tokio::task::spawn_blocking(move || {
            let r = match output {
                Handover::Ruleset(ruleset) => enforcer.sync_owned(ruleset),
                // Without a mirror (after a failure or drift) the enforcer
                // cannot apply edits: the whole edited ruleset then.
                Handover::Edits(edits) => enforcer.sync_edits(&edits).unwrap_or_else(|| {
                    let current = compiler.current().expect("edited: indexed");
                    enforcer.sync_owned(current.clone())
                }),
                // Likewise for a partial compile's structural change.
                Handover::Touched(touched) => {
                    let current = compiler.current().expect("reshaped: indexed");
                    enforcer
                        .sync_touched(current, &touched)
                        .unwrap_or_else(|| enforcer.sync_owned(current.clone()))
                }
            };
            let s = compiler.current().or(enforcer.mirror()).map(|r| r.stats());
            (enforcer, compiler, r, s)
        })
        .await
        .expect("the enforcer does not panic");
        self.health.idle();
        self.enforcer = Some(enforcer);
        self.compiler = Some(compiler);
        self.count_transports();
        let s = s.unwrap_or_default();
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
                self.drop_log.publish(drop_index);
                if let Some(f) = self.status.as_mut() {
                    f.succeeded(held, applied != Applied::Unchanged);
                    self.held_version = Some(versions);
                }
                if !matches!(applied, Applied::Unchanged) {
                    tracing::info!(kind, rules = s.rules, elements = s.elements, took = ?t.elapsed(), "applied");
                }
                true
            }
            Err(e) => {
                self.metrics
                    .failures
                    .get_or_create(&ReasonLabel {
                        reason: e.reason().into(),
                    })
                    .inc();
                self.health.ready.store(false, Ordering::Relaxed);
                if let Some(f) = self.status.as_mut() {
                    f.failed(e.to_string());
                }
                tracing::error!(error = %e, "apply failed");
                false
            }
        }
    }

    /// Hands the status to the publisher, hashing the kernel's ruleset first
    /// when its generation moved (unknown, "", if the mirror was forgotten
    /// after a failure).
    async fn publish_status(&mut self) {
        let Some(feed) = self.status.as_ref() else {
            return;
        };
        let hash = if feed.needs_hash() {
            let enforcer = self
                .enforcer
                .take()
                .expect("enforcer present between applies");
            let (enforcer, hash) = tokio::task::spawn_blocking(move || {
                let h = enforcer.mirror().map(status::ruleset_hash);
                (enforcer, h)
            })
            .await
            .expect("hashing does not panic");
            self.enforcer = Some(enforcer);
            Some(hash.unwrap_or_default())
        } else {
            None
        };
        if let Some(feed) = self.status.as_mut() {
            feed.publish(hash);
        }
    }

    /// Verifies the kernel table; false when it drifted (the next apply is full).
    async fn verify(&mut self) -> bool {
        let mut enforcer = self
            .enforcer
            .take()
            .expect("enforcer present between applies");
        self.health.busy("verify");
        let (enforcer, verified) = tokio::task::spawn_blocking(move || {
            let r = enforcer.verify_counting();
            (enforcer, r)
        })
        .await
        .expect("verify does not panic");
        self.health.idle();
        self.enforcer = Some(enforcer);
        let ok = match verified {
            Ok((same, drops)) => {
                self.metrics.set_chain_drops(drops);
                same
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the kernel table; replacing it");
                false
            }
        };
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

#[cfg(test)]
mod tests;
