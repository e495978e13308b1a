//! The reflectors (pods, namespaces, network policies, nodes, cluster
//! network policies) feeding the worker, and their retry policy
//! ([`WatchBackoff`]).
//!
//! ClusterNetworkPolicy is a CRD that a cluster may not have: while listing
//! it answers 404 the agent counts it as absent (no ClusterNetworkPolicies)
//! instead of waiting for it, keeps retrying with the same backoff, and
//! picks the policies up without a restart once the CRD is installed (it
//! asks every 30–60 s while the CRD is missing: [`WatchBackoff::ABSENT`]). Any
//! other error keeps the last known policies (never fewer denials on an
//! outage). Node updates wake the worker only when a node's labels, pod CIDRs or
//! addresses changed, not on every status heartbeat.
//!
//! Retry figures of one watch (each watch has its own policy and its own
//! random jitter): 250 ms, 500 ms, 1 s, 2 s, then 2.5 s for every further
//! failure, each plus a random 0–100 % (so 250–500 ms, 0.5–1 s, 1–2 s,
//! 2–4 s, then 2.5–5 s); back to 250 ms only after 30 s without a failure.
//! The policy applies from the very first failure, including a failing
//! initial list before any successful sync: eight failed attempts in a row
//! take more than 10 s, not 2 s, and the three watches of a node (or the
//! agents of many nodes after one outage) spread out instead of retrying
//! every 250 ms in lockstep.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::{self, ExponentialBackoff, watcher};
use kube::runtime::{WatchStreamExt, reflector::store::WriterDropped};
use kube::{Api, Client};
use tokio::sync::Notify;

use super::http::Health;
use super::journal::{Journal, Kind};
use super::metrics::{Metrics, ResourceLabel};
use super::worker::{Source, StoreChanges, StoreState};
use crate::core::k8s::slim::SlimPod;
use crate::core::k8s::{ClusterNetworkPolicy, Namespace, NetworkPolicy, Node, strip};

/// Retry delays of one failed list/watch: exponential from [`Self::MIN`]
/// doubling to [`Self::MAX`], each with up to 100 % random jitter added (so
/// never above [`Self::LONGEST`], and the watches of one node, or of many
/// nodes after one outage, do not retry in lockstep), back to the start only
/// after [`Self::QUIET`] without a retry.
///
/// The watcher emits an `Init` marker (an `Ok`) before every list attempt,
/// and kube-runtime's stream backoff resets its policy on every `Ok`; a policy
/// that resets on request therefore retried a failing initial list at the
/// first delay forever (every 250 ms, all three watches at once). So
/// `reset` does nothing here: only the quiet timer (kube-runtime's
/// [`ResetTimerBackoff`]) starts the sequence over. kube-runtime's default
/// (0.8 s doubling to 30 s, reset after 120 s) kept an agent up to 30 s
/// behind after an API server outage (docs/agent-testing.md); 5 s bounds
/// that catch-up while still spacing a node's retries.
pub struct WatchBackoff(
    ResetTimerBackoff<ExponentialBackoff>,
    Option<Arc<std::sync::atomic::AtomicBool>>,
);

impl WatchBackoff {
    /// First delay (before jitter).
    pub const MIN: Duration = Duration::from_millis(250);
    /// Largest delay before jitter.
    pub const MAX: Duration = Duration::from_millis(2500);
    /// Largest delay with jitter (jitter adds less than the delay itself).
    pub const LONGEST: Duration = Duration::from_secs(5);
    /// Time without a retry after which the delays start again at [`Self::MIN`].
    pub const QUIET: Duration = Duration::from_secs(30);

    /// A fresh policy with its own random jitter.
    pub fn new() -> WatchBackoff {
        let exp = backon::ExponentialBuilder::default()
            .with_min_delay(Self::MIN)
            .with_max_delay(Self::MAX)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        WatchBackoff(ResetTimerBackoff::new(exp.into(), Self::QUIET), None)
    }

    /// Between two lists of a resource the API server does not serve (the
    /// ClusterNetworkPolicy CRD is not installed): one request per node every
    /// 30–60 s instead of every few seconds, so a cluster without the CRD is
    /// not polled hard, and the CRD is noticed within a minute once installed.
    pub const ABSENT: Duration = Duration::from_secs(30);

    /// A policy that waits [`Self::ABSENT`] (plus up to 100 % jitter) while
    /// `absent` is set.
    pub fn with_absent(absent: Arc<std::sync::atomic::AtomicBool>) -> WatchBackoff {
        let mut b = WatchBackoff::new();
        b.1 = Some(absent);
        b
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.0.next()?;
        match &self.1 {
            Some(a) if a.load(std::sync::atomic::Ordering::Relaxed) => {
                // The exponential delay (at most 2 × MAX) scaled onto [ABSENT, 2 × ABSENT]: jittered too.
                Some(
                    Self::ABSENT
                        + Self::ABSENT
                            .mul_f64((d.as_secs_f64() / Self::LONGEST.as_secs_f64()).min(1.0)),
                )
            }
            _ => Some(d),
        }
    }
}

impl Backoff for WatchBackoff {
    /// Ignored: see the type's docs (the quiet timer resets).
    fn reset(&mut self) {}
}

/// The reflectors' stores: stripped objects, kept current by the watches.
pub(super) struct Stores {
    pods: Store<SlimPod>,
    namespaces: Store<Namespace>,
    policies: Store<NetworkPolicy>,
    nodes: Store<Node>,
    cluster_policies: Store<ClusterNetworkPolicy>,
    /// True while listing ClusterNetworkPolicies answers 404 (no CRD).
    cnp_absent: tokio::sync::watch::Receiver<bool>,
    /// The keys the watches changed since the worker last read them.
    journal: Journal,
}

impl Stores {
    /// Resolves once every watch completed its initial list, or (for
    /// ClusterNetworkPolicies) the API server said it has no such resource.
    pub(super) async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        self.pods.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.policies.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        let mut absent = self.cnp_absent.clone();
        tokio::select! {
            r = self.cluster_policies.wait_until_ready() => r,
            _ = absent.wait_for(|a| *a) => {
                tracing::warn!("ClusterNetworkPolicy is not served (CRD not installed): enforcing NetworkPolicy; ClusterNetworkPolicies are picked up once the CRD appears");
                Ok(())
            }
        }
    }
}

impl Source for Stores {
    fn state(&self) -> StoreState {
        StoreState {
            namespaces: self.namespaces.state(),
            pods: self.pods.state(),
            policies: self.policies.state(),
            cluster_policies: self.cluster_policies.state(),
            nodes: self.nodes.state(),
        }
    }

    fn rewalk(&self) {
        self.journal.mark_all();
    }

    /// Only the objects the watches changed since the last call (a whole
    /// store after its relist): see `journal`.
    fn changes(&self) -> StoreChanges {
        self.journal.take(
            &self.namespaces,
            &self.pods,
            &self.policies,
            &self.cluster_policies,
            &self.nodes,
        )
    }
}

/// Starts the watches; every event that changes what nftpol reads wakes `changed`, every error is
/// counted and logged (the backoff retries; the stores keep their last
/// state meanwhile), and a call the API server refuses marks its resource
/// denied in `health` (see [`on_event`]).
pub(super) fn start(
    client: &Client,
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Stores {
    let (pods, pods_w) = reflector::store::<SlimPod>();
    let (namespaces, ns_w) = reflector::store::<Namespace>();
    let (policies, pol_w) = reflector::store::<NetworkPolicy>();
    let (nodes, node_w) = reflector::store::<Node>();
    let (cluster_policies, cnp_w) = reflector::store::<ClusterNetworkPolicy>();
    let (absent_tx, cnp_absent) = tokio::sync::watch::channel(false);
    let absent_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let absent_set = absent_flag.clone();
    let mut node_seen = NodeFingerprints::default();
    let wcfg = watcher::Config::default();
    let journal = Journal::default();
    let (j_pods, j_ns, j_pol, j_node, j_cnp) = (
        journal.clone(),
        journal.clone(),
        journal.clone(),
        journal.clone(),
        journal.clone(),
    );
    let events = stream::select_all([
        watcher(Api::<SlimPod>::all(client.clone()), wcfg.clone())
            .backoff(WatchBackoff::new())
            .modify(strip::pod)
            .reflect(pods_w)
            .inspect(move |e| j_pods.record_result(Kind::Pods, e))
            .map(|e| tag("pods", e))
            .boxed(),
        watcher(Api::<Namespace>::all(client.clone()), wcfg.clone())
            .backoff(WatchBackoff::new())
            .modify(strip::namespace)
            .reflect(ns_w)
            .inspect(move |e| j_ns.record_result(Kind::Namespaces, e))
            .map(|e| tag("namespaces", e))
            .boxed(),
        watcher(Api::<NetworkPolicy>::all(client.clone()), wcfg.clone())
            .backoff(WatchBackoff::new())
            .modify(strip::network_policy)
            .reflect(pol_w)
            .inspect(move |e| j_pol.record_result(Kind::Policies, e))
            .map(|e| tag("networkpolicies", e))
            .boxed(),
        watcher(Api::<Node>::all(client.clone()), wcfg.clone())
            .backoff(WatchBackoff::new())
            .modify(strip::node)
            .reflect(node_w)
            .inspect(move |e| j_node.record_result(Kind::Nodes, e))
            .map(move |e| {
                let relevant = match &e {
                    Ok(ev) => node_seen.changed(ev),
                    Err(_) => true,
                };
                match tag("nodes", e) {
                    Ok((r, answered, _)) => Ok((r, answered, relevant)),
                    err => err,
                }
            })
            .boxed(),
        watcher(Api::<ClusterNetworkPolicy>::all(client.clone()), wcfg)
            .backoff(WatchBackoff::with_absent(absent_flag))
            .modify(strip::cluster_network_policy)
            .reflect(cnp_w)
            .inspect(move |e| j_cnp.record_result(Kind::ClusterPolicies, e))
            .map(move |e| {
                match &e {
                    Err(err) if is_not_found(err) => {
                        absent_set.store(true, std::sync::atomic::Ordering::Relaxed);
                        absent_tx.send_if_modified(|a| !std::mem::replace(a, true));
                    }
                    Ok(ev) if !matches!(ev, watcher::Event::Init) => {
                        absent_set.store(false, std::sync::atomic::Ordering::Relaxed);
                        absent_tx.send_if_modified(|a| std::mem::replace(a, false));
                    }
                    _ => {}
                }
                tag("clusternetworkpolicies", e)
            })
            .boxed(),
    ]);
    tokio::spawn(async move {
        let mut events = events;
        while let Some(e) = events.next().await {
            on_event(e, &changed, &metrics, &health);
        }
    });
    Stores {
        pods,
        namespaces,
        policies,
        nodes,
        cluster_policies,
        cnp_absent,
        journal,
    }
}

/// What nftpol reads of each Node (labels, pod CIDRs and addresses), hashed, so that a
/// status heartbeat that changes neither does not wake the worker.
#[derive(Default)]
struct NodeFingerprints(std::collections::HashMap<String, u64>);

impl NodeFingerprints {
    /// Whether the event changes what nftpol reads (a deletion, a new node,
    /// changed labels, pod CIDRs or addresses; list boundaries count as changes).
    fn changed(&mut self, ev: &watcher::Event<Node>) -> bool {
        use std::hash::{Hash, Hasher};
        let node = match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => n,
            watcher::Event::Delete(n) => {
                self.0
                    .remove(n.metadata.name.as_deref().unwrap_or_default());
                return true;
            }
            watcher::Event::Init | watcher::Event::InitDone => return true,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        node.metadata.labels.hash(&mut h);
        if let Some(spec) = &node.spec {
            (&spec.pod_cidr, &spec.pod_cidrs).hash(&mut h);
        }
        if let Some(st) = &node.status {
            for a in st.addresses.iter().flatten() {
                (&a.type_, &a.address).hash(&mut h);
            }
        }
        let fp = h.finish();
        let name = node.metadata.name.clone().unwrap_or_default();
        self.0.insert(name, fp) != Some(fp)
    }
}

/// Whether a watch error is the API server not serving the resource (404:
/// the ClusterNetworkPolicy CRD is not installed).
fn is_not_found(err: &watcher::Error) -> bool {
    status_code(err) == Some(404)
}

/// The HTTP status the API server answered a failed list or watch with, if it answered.
fn status_code(err: &watcher::Error) -> Option<u16> {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

/// One item of the merged watch streams: the resource it came from, and
/// for an event whether it shows the API server answered a call and whether
/// it changes what nftpol reads (wakes the worker).
type Tagged = Result<(&'static str, bool, bool), (&'static str, watcher::Error)>;

/// Names the resource of an event or error. The `Init` marker comes before
/// the list call, so it shows nothing about whether the call is allowed;
/// every other event (a listed page, the end of the list, a watched change)
/// does.
fn tag<K>(resource: &'static str, e: watcher::Result<watcher::Event<K>>) -> Tagged {
    match e {
        Ok(ev) => Ok((resource, !matches!(ev, watcher::Event::Init), true)),
        Err(err) => Err((resource, err)),
    }
}

/// Handles one item of the merged watch streams: an event wakes the worker
/// (and clears a denial of its resource); an error is counted and logged,
/// and when the API server refused the call (401/403) it marks the resource
/// denied, which keeps `/readyz` at 503 naming it.
fn on_event(e: Tagged, changed: &Notify, metrics: &Metrics, health: &Health) {
    match e {
        Ok((resource, answered, relevant)) => {
            if answered {
                health.allow(resource);
            }
            if relevant {
                changed.notify_one();
            }
        }
        Err((resource, err)) => {
            metrics
                .watch_errors
                .get_or_create(&ResourceLabel {
                    resource: resource.to_string(),
                })
                .inc();
            if resource == "clusternetworkpolicies" && is_not_found(&err) {
                // No CRD: not an outage (see the module docs); the retry
                // notices when it is installed.
                tracing::debug!(resource, "not served (CRD not installed); retrying");
            } else if is_denied(&err) {
                // Not transient: RBAC (or the token) is wrong. A forbidden
                // watch after a successful list would otherwise leave a
                // ready agent on a frozen view.
                health.deny(resource);
                tracing::error!(resource, error = %err, "the API server refuses this call (check the ClusterRole and the token); not ready; retrying");
            } else {
                tracing::warn!(resource, error = %err, "watch error; retrying");
            }
        }
    }
}

/// Whether a watch error is the API server refusing the call (401, 403):
/// wrong RBAC or credentials, which retrying does not fix.
fn is_denied(err: &watcher::Error) -> bool {
    matches!(status_code(err), Some(401 | 403))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use kube::runtime::utils::StreamBackoff;

    #[test]
    fn delays_grow_with_bounded_jitter_and_differ_between_instances() {
        let a: Vec<Duration> = WatchBackoff::new().take(12).collect();
        let b: Vec<Duration> = WatchBackoff::new().take(12).collect();
        for delays in [&a, &b] {
            for (i, d) in (0u32..).zip(delays.iter()) {
                // 250 ms doubling, capped at 2.5 s; jitter adds 0-100 %.
                let base = (WatchBackoff::MIN * 2u32.pow(i)).min(WatchBackoff::MAX);
                assert!(
                    *d >= base && *d <= 2 * base,
                    "delay {i} = {d:?} outside [{base:?}, {:?}]: {delays:?}",
                    2 * base
                );
                assert!(*d <= WatchBackoff::LONGEST, "{delays:?}");
            }
            // The jitter ranges of steps two apart do not overlap: they grow.
            for i in 0..3 {
                assert!(delays[i + 2] > delays[i], "{delays:?}");
            }
            assert!(delays[4..].iter().all(|d| *d >= WatchBackoff::MAX));
        }
        assert_eq!(WatchBackoff::LONGEST, 2 * WatchBackoff::MAX);
        assert_ne!(a, b, "two watches do not retry in lockstep");
    }

    fn refused(code: u16) -> watcher::Error {
        let status = kube::core::Status::failure("namespaces is forbidden", "Forbidden");
        watcher::Error::InitialListFailed(kube::Error::Api(status.with_code(code).boxed()))
    }

    #[test]
    fn a_refused_call_denies_its_resource_until_an_answered_event() {
        let (changed, metrics, health) = (Notify::new(), Metrics::new(), Health::default());
        health
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let errors = |r: &str| {
            metrics
                .watch_errors
                .get_or_create(&ResourceLabel {
                    resource: r.to_string(),
                })
                .get()
        };
        on_event(Err(("pods", refused(500))), &changed, &metrics, &health);
        assert!(health.is_ready(), "a 500 is an outage, not a refusal");
        on_event(
            Err(("namespaces", refused(403))),
            &changed,
            &metrics,
            &health,
        );
        assert_eq!(health.denied(), ["namespaces"]);
        assert!(!health.is_ready());
        assert_eq!((errors("pods"), errors("namespaces")), (1, 1));
        // The next attempt's Init marker precedes the call: still denied.
        on_event(
            tag::<()>("namespaces", Ok(watcher::Event::Init)),
            &changed,
            &metrics,
            &health,
        );
        assert_eq!(health.denied(), ["namespaces"]);
        on_event(
            Err(("namespaces", refused(401))),
            &changed,
            &metrics,
            &health,
        );
        assert_eq!(errors("namespaces"), 2);
        // An event of another resource does not clear it; its own does.
        on_event(Ok(("pods", true, true)), &changed, &metrics, &health);
        assert_eq!(health.denied(), ["namespaces"]);
        on_event(
            tag::<()>("namespaces", Ok(watcher::Event::InitDone)),
            &changed,
            &metrics,
            &health,
        );
        assert!(health.is_ready());
    }

    #[test]
    fn a_missing_resource_is_asked_for_every_30_to_60_seconds() {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut b = WatchBackoff::with_absent(flag.clone());
        assert!(
            b.next().unwrap() <= 2 * WatchBackoff::MIN,
            "served: the usual delays"
        );
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..10 {
            let d = b.next().unwrap();
            assert!(
                d >= WatchBackoff::ABSENT && d <= 2 * WatchBackoff::ABSENT,
                "{d:?}"
            );
        }
        flag.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(b.next().unwrap() <= WatchBackoff::LONGEST, "served again");
    }

    #[test]
    fn a_denial_outlasts_the_longest_retry_delay() {
        // A call that stays forbidden is refused again (one retry delay plus
        // the call itself) before its denial lapses.
        assert!(Health::DENIAL_HOLD > 2 * WatchBackoff::LONGEST);
    }

    /// A watcher whose initial list keeps failing emits `Ok(Init)` then
    /// `Err` on every attempt; the delays must still grow.
    #[tokio::test(start_paused = true)]
    async fn a_failing_initial_list_backs_off_and_a_quiet_period_resets() {
        let (tx, rx) = mpsc::unbounded::<Result<(), ()>>();
        let mut s = std::pin::pin!(StreamBackoff::new(rx, WatchBackoff::new()));
        let attempt = || {
            tx.unbounded_send(Ok(())).unwrap(); // the Init marker
            tx.unbounded_send(Err(())).unwrap(); // the failed list
        };
        let mut gaps = Vec::new();
        let mut last = tokio::time::Instant::now();
        for _ in 0..8 {
            attempt();
            assert_eq!(s.next().await, Some(Ok(())));
            assert_eq!(s.next().await, Some(Err(())));
            let now = tokio::time::Instant::now();
            gaps.push(now - last);
            last = now;
        }
        // gaps[i] is the wait before attempt i (the first one is immediate).
        assert_eq!(gaps[0], Duration::ZERO);
        assert!(gaps[1] < 2 * WatchBackoff::MIN, "{gaps:?}");
        assert!(
            gaps[4] > 4 * WatchBackoff::MIN,
            "still growing after Init markers: {gaps:?}"
        );
        assert!(gaps.iter().all(|g| *g <= WatchBackoff::LONGEST), "{gaps:?}");
        let total: Duration = gaps.iter().sum();
        assert!(
            total > Duration::from_secs(10),
            "8 attempts take > 10 s, not 2 s: {gaps:?}"
        );

        // After a quiet period, the next error starts over.
        tokio::time::sleep(WatchBackoff::QUIET + WatchBackoff::LONGEST).await;
        attempt();
        assert_eq!(s.next().await, Some(Ok(())));
        assert_eq!(s.next().await, Some(Err(())));
        let t = tokio::time::Instant::now();
        attempt();
        assert_eq!(s.next().await, Some(Ok(())));
        assert!(
            t.elapsed() < 2 * WatchBackoff::MIN,
            "reset after quiet: {:?}",
            t.elapsed()
        );
    }
}
