//! Publishing this node's `NodeProgramStatus` (`core::k8s::node_status`):
//! what the kernel holds, for `nftpol status`.
//!
//! ```text
//!  worker ── after every apply (ok or failed) ──▶ Feed: record, mark pending
//!         ── at most every --status-interval ──▶ Feed::snapshot (hash the
//!            mirror if the generation moved) ──▶ watch channel (latest wins)
//!  publisher task ◀── watch channel: one server-side apply of the object,
//!            then waits --status-interval; a failed write is retried with
//!            backoff (the interval doubling to 60 s) with the latest snapshot
//! ```
//!
//! O(nodes) objects, at most one write per node per interval, and none when
//! nothing changed. What `nftpol status` compares (the policies held, the
//! error) is written at most `--status-interval` after it changed; a change
//! of the ruleset alone (pod churn: a new generation and hash, the same
//! policies) waits up to [`MINOR_FACTOR`] intervals, so that constant pod
//! churn costs each node one write a minute, not one every 5 s. Writing never blocks or fails enforcement: the worker
//! only replaces the channel's value; the publisher's errors are logged and
//! counted (`nftpol_status_writes_total{result="error"}`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::Metrics;
use crate::core::k8s::node_status::{self, Held, NodeProgramStatus, Programmed};
use crate::core::nft::ruleset::Ruleset;

/// The field manager of the agent's server-side applies.
pub const FIELD_MANAGER: &str = "nftpol-agent";
/// A change of generation alone is published after this many intervals.
pub const MINOR_FACTOR: u32 = 12;
/// Longest wait between retries of a failed write.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// RFC 3339, UTC, seconds (as `metav1.Time` prints).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `sha256:` and the hex digest of the ruleset's `nft -f` text (what
/// `nftpol compile --node NODE` prints for the same objects).
pub fn ruleset_hash(rs: &Ruleset) -> String {
    let digest = Sha256::digest(crate::core::nft::render::script(rs).as_bytes());
    let mut out = String::from("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The worker's side: what the last applies did, and when to publish.
pub struct Feed {
    tx: watch::Sender<Option<Arc<Programmed>>>,
    interval: Duration,
    /// When the last publication was handed over (`None`: never).
    last: Option<Instant>,
    /// Something changed since the last publication.
    pending: bool,
    /// The policies held or the error changed since the last publication.
    major: bool,
    state: Programmed,
    /// The generation `state.ruleset_hash` belongs to.
    hashed: i64,
}

impl Feed {
    /// A feed for `node` publishing into `tx` at most every `interval`.
    pub fn new(node: &str, interval: Duration, tx: watch::Sender<Option<Arc<Programmed>>>) -> Feed {
        Feed {
            tx,
            interval,
            last: None,
            pending: false,
            major: false,
            state: Programmed {
                node: node.to_string(),
                ..Programmed::default()
            },
            hashed: 0,
        }
    }

    /// A successful sync of the policies `held` (`None`: the same as at the
    /// last successful sync); `changed` when it changed the kernel (a new
    /// generation).
    pub fn succeeded(&mut self, held: Option<Held>, changed: bool) {
        let now = rfc3339(SystemTime::now());
        if changed {
            self.state.generation += 1;
            self.state.applied_at = Some(now.clone());
        }
        self.state.synced_at = Some(now);
        if held.as_ref().is_some_and(|h| *h != self.state.held) || self.state.error.is_some() {
            self.major = true;
        }
        self.pending |= changed || self.major;
        if let Some(held) = held {
            self.state.held = held;
        }
        self.state.error = None;
    }

    /// A failed apply: the kernel keeps the last good ruleset (still listed).
    pub fn failed(&mut self, message: String) {
        let since = match self.state.error.take() {
            Some((old, since)) => {
                if old != message {
                    self.major = true;
                    self.pending = true;
                }
                since
            }
            None => {
                self.major = true;
                self.pending = true;
                rfc3339(SystemTime::now())
            }
        };
        self.state.error = Some((message, since));
    }

    /// When the next publication is due (`None`: nothing to publish).
    pub fn wake(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        let Some(last) = self.last else {
            return Some(Instant::now());
        };
        Some(if self.major {
            last + self.interval
        } else {
            last + self.interval * MINOR_FACTOR
        })
    }

    /// Whether a publication is due now.
    pub fn due(&self) -> bool {
        self.wake().is_some_and(|w| Instant::now() >= w)
    }

    /// Whether the ruleset hash must be computed (the generation moved
    /// since the last one).
    pub fn needs_hash(&self) -> bool {
        self.state.generation != self.hashed
    }

    /// Hands the current state to the publisher; `hash` is the kernel
    /// ruleset's when [`Feed::needs_hash`] said so.
    pub fn publish(&mut self, hash: Option<String>) {
        if let Some(h) = hash {
            self.state.ruleset_hash = h;
            self.hashed = self.state.generation;
        }
        let _ = self.tx.send(Some(Arc::new(self.state.clone())));
        self.pending = false;
        self.major = false;
        self.last = Some(Instant::now());
    }
}

/// Starts the publisher task writing `NodeProgramStatus` `node` in
/// `namespace`; returns the feed the worker records into.
pub fn start(
    client: &Client,
    namespace: &str,
    node: &str,
    interval: Duration,
    metrics: Arc<Metrics>,
) -> Feed {
    let (tx, rx) = watch::channel(None);
    let api: Api<NodeProgramStatus> = Api::namespaced(client.clone(), namespace);
    tokio::spawn(publish(api, rx, interval, metrics));
    Feed::new(node, interval, tx)
}

async fn publish(
    api: Api<NodeProgramStatus>,
    mut rx: watch::Receiver<Option<Arc<Programmed>>>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut backoff = Duration::ZERO;
    loop {
        if rx.changed().await.is_err() {
            return; // the worker is gone
        }
        loop {
            let Some(p) = rx.borrow_and_update().clone() else {
                break;
            };
            let obj = NodeProgramStatus::new(&p.node, node_status::spec(&p));
            match api.patch(&p.node, &params, &Patch::Apply(&obj)).await {
                Ok(_) => {
                    metrics.status_write("ok");
                    if !backoff.is_zero() {
                        tracing::info!("status written again");
                    }
                    backoff = Duration::ZERO;
                    break;
                }
                Err(e) => {
                    metrics.status_write("error");
                    backoff = (backoff * 2).clamp(interval.max(Duration::from_secs(1)), RETRY_MAX);
                    tracing::warn!(error = %e, retry_in = ?backoff, namespace = api.namespace().unwrap_or_default(),
                        "cannot write this node's NodeProgramStatus (enforcement is not affected)");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_feed_keeps_the_first_failure_time_and_counts_generations() {
        let (tx, mut rx) = watch::channel(None);
        let mut f = Feed::new("n1", Duration::from_secs(5), tx);
        assert!(!f.due(), "nothing to say yet");
        f.succeeded(Some(Held::default()), true);
        assert!(f.due() && f.needs_hash());
        f.publish(Some("sha256:aa".into()));
        let p = rx.borrow_and_update().clone().unwrap();
        assert_eq!((p.generation, p.ruleset_hash.as_str()), (1, "sha256:aa"));
        f.failed("one".into());
        assert!(!f.due(), "rate-limited");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(f.due() && !f.needs_hash());
        f.publish(None);
        f.failed("one".into());
        assert_eq!(f.wake(), None, "the same failure again: nothing new");
        let since = {
            f.failed("two".into());
            f.publish(None);
            let p = rx.borrow_and_update().clone().unwrap();
            let (m, since) = p.error.clone().unwrap();
            assert_eq!(m, "two");
            since
        };
        f.failed("three".into());
        assert_eq!(
            f.state.error.as_ref().unwrap().1,
            since,
            "since the first failure"
        );
        f.succeeded(Some(Held::default()), false);
        assert_eq!((f.state.generation, f.state.error.is_none()), (1, true));
        f.publish(None);
        // A new generation with the same policies waits MINOR_FACTOR intervals;
        // a policy change only one.
        tokio::time::advance(Duration::from_secs(5)).await;
        f.succeeded(Some(Held::default()), true);
        assert!(!f.due(), "pod churn alone: later");
        tokio::time::advance(Duration::from_secs(5 * u64::from(MINOR_FACTOR))).await;
        assert!(f.due());
        f.publish(Some("sha256:bb".into()));
        let mut held = Held::default();
        held.cluster_network_policies.insert("c".into(), "1".into());
        tokio::time::advance(Duration::from_secs(5)).await;
        f.succeeded(Some(held.clone()), false);
        assert!(f.due(), "a policy change: after one interval");
        f.publish(None);
        f.succeeded(Some(held.clone()), false);
        assert_eq!(f.wake(), None, "an unchanged sync writes nothing");
        // `None`: the policies did not change since the last sync.
        f.succeeded(None, false);
        assert_eq!(f.wake(), None);
        assert_eq!(f.state.held, held, "the policies held are kept");
    }
}
