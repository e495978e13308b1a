//! `/healthz`, `/readyz` and `/metrics` on one small HTTP server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::metrics::Metrics;

/// Liveness probe: 200 while the worker loop runs and no step of it (compile,
/// apply, verify) has run longer than the liveness bound.
pub const HEALTHZ: &str = "/healthz";
/// Readiness probe: 200 once every watch synced and the last apply succeeded,
/// while the API server forbids none of them.
pub const READYZ: &str = "/readyz";
/// OpenMetrics text of [`Metrics`].
pub const METRICS: &str = "/metrics";
/// Every path the server answers (anything else is 404).
pub const PATHS: [&str; 3] = [HEALTHZ, READYZ, METRICS];

/// What the probes report.
pub struct Health {
    /// The worker loop is running.
    pub alive: AtomicBool,
    /// All watches synced and the last apply succeeded.
    pub ready: AtomicBool,
    /// Resources whose list or watch the API server refused (401/403) and
    /// when it last did; see [`Health::denied`].
    denied: Mutex<BTreeMap<&'static str, Instant>>,
    /// The worker's heartbeat: the step it runs (none while it waits for
    /// work or a timer) and when it last advanced.
    beat: Mutex<(Option<&'static str>, Instant)>,
    /// Longest a step may run before liveness fails.
    stall_bound: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(Self::DEFAULT_STALL_BOUND)
    }
}

impl Health {
    /// Default of `nftpol run --liveness-stall`: more than an apply's two
    /// `nft` calls at the default `--nft-timeout` (10 s each), plus room for a
    /// large compile.
    pub const DEFAULT_STALL_BOUND: Duration = Duration::from_secs(30);

    /// Probes whose liveness fails once a worker step runs longer than `stall_bound`.
    pub fn new(stall_bound: Duration) -> Health {
        Health {
            alive: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            denied: Mutex::default(),
            beat: Mutex::new((None, Instant::now())),
            stall_bound,
        }
    }

    /// The heartbeat advances: the worker starts `step` (work is pending
    /// until [`Health::idle`]).
    pub fn busy(&self, step: &'static str) {
        *self.lock_beat() = (Some(step), Instant::now());
    }

    /// The heartbeat advances: the worker finished its step and waits.
    pub fn idle(&self) {
        *self.lock_beat() = (None, Instant::now());
    }

    /// The step that has run for longer than the bound, and for how long.
    pub fn stalled(&self) -> Option<(&'static str, Duration)> {
        let (step, since) = *self.lock_beat();
        let running = since.elapsed();
        step.filter(|_| running > self.stall_bound)
            .map(|s| (s, running))
    }

    /// Alive: the worker loop runs and is not stuck in a step.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed) && self.stalled().is_none()
    }

    fn lock_beat(&self) -> std::sync::MutexGuard<'_, (Option<&'static str>, Instant)> {
        self.beat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A denial counts for this long after the last refusal (longer than the
    /// watch retry's longest delay, so a call that stays forbidden keeps the
    /// agent unready; once allowed again, readiness returns within this time
    /// even if the watch has no event to deliver).
    pub const DENIAL_HOLD: Duration = Duration::from_secs(15);

    /// Records that the API server refused `resource`'s list or watch.
    pub fn deny(&self, resource: &'static str) {
        self.lock_denied().insert(resource, Instant::now());
    }

    /// Records an event from `resource`'s watch: it is allowed again.
    pub fn allow(&self, resource: &'static str) {
        self.lock_denied().remove(resource);
    }

    /// The resources refused within [`Self::DENIAL_HOLD`].
    pub fn denied(&self) -> Vec<&'static str> {
        self.lock_denied()
            .iter()
            .filter(|(_, t)| t.elapsed() < Self::DENIAL_HOLD)
            .map(|(r, _)| *r)
            .collect()
    }

    /// Ready: synced, the last apply succeeded, and nothing is denied.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.denied().is_empty()
    }

    fn lock_denied(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Instant>> {
        self.denied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Serves until the listener fails; each connection on its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    loop {
        let (stream, _peer): (_, SocketAddr) = listener.accept().await?;
        let (health, metrics) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(req.uri().path(), &health, &metrics);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The status, content type and body the server answers `path` with.
pub fn respond(path: &str, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        HEALTHZ if health.is_alive() => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        HEALTHZ => {
            let body = match health.stalled() {
                Some((step, running)) => format!(
                    "worker stalled: its {step} has run for {}s (bound {}s)\n",
                    running.as_secs(),
                    health.stall_bound.as_secs()
                ),
                None => "worker not running\n".to_string(),
            };
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", body)
        }
        READYZ if health.is_ready() => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        READYZ => {
            let denied = health.denied();
            let body = if denied.is_empty() {
                "not synced, or the last apply failed\n".to_string()
            } else {
                format!(
                    "the API server forbids listing or watching {}\n",
                    denied.join(", ")
                )
            };
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", body)
        }
        METRICS => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_resource_keeps_readiness_off_until_allowed() {
        let h = Health::default();
        h.ready.store(true, Ordering::Relaxed);
        assert!(h.is_ready());
        h.deny("namespaces");
        assert!(!h.is_ready());
        assert_eq!(h.denied(), ["namespaces"]);
        h.ready.store(true, Ordering::Relaxed); // a later successful apply
        assert!(!h.is_ready(), "an apply does not clear a denial");
        h.allow("namespaces");
        assert!(h.is_ready());
    }

    #[test]
    fn liveness_fails_only_while_a_step_runs_past_the_bound() {
        let h = Health::new(Duration::from_millis(200));
        let m = Metrics::new();
        let status = |h: &Health| respond(HEALTHZ, h, &m).status();
        assert_eq!(status(&h), StatusCode::SERVICE_UNAVAILABLE, "not started");
        h.alive.store(true, Ordering::Relaxed);
        assert_eq!(status(&h), StatusCode::OK);
        h.busy("apply");
        assert_eq!(status(&h), StatusCode::OK, "within the bound");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(status(&h), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h.stalled().map(|s| s.0), Some("apply"));
        h.idle();
        assert_eq!(status(&h), StatusCode::OK, "the step ended");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            status(&h),
            StatusCode::OK,
            "waiting for work is not a stall"
        );
    }
}
