//! `/healthz`, `/readyz` and `/metrics` on one small HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::metrics::Metrics;

/// Liveness probe: 200 while the worker loop runs.
pub const HEALTHZ: &str = "/healthz";
/// Readiness probe: 200 once every watch synced and the last apply succeeded.
pub const READYZ: &str = "/readyz";
/// OpenMetrics text of [`Metrics`].
pub const METRICS: &str = "/metrics";
/// Every path the server answers (anything else is 404).
pub const PATHS: [&str; 3] = [HEALTHZ, READYZ, METRICS];

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// The worker loop is running.
    pub alive: AtomicBool,
    /// All watches synced and the last apply succeeded.
    pub ready: AtomicBool,
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

fn respond(path: &str, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        HEALTHZ if health.alive.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        HEALTHZ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "worker not running\n".to_string(),
        ),
        READYZ if health.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        READYZ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not synced, or the last apply failed\n".to_string(),
        ),
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
