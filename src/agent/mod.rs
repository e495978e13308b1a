//! The node agent (`nftpol run`): the only async code and the only module
//! that talks to the API server.
//!
//! ```text
//!  watch Pods ─────────┐   (reflectors: stripped objects in stores)      watch.rs
//!  watch Namespaces ───┼──▶ change signal ──▶ worker: coalesce ──▶ store state (Arcs)   worker/
//!  watch NetworkPolicies┘                          │                 → ClusterCache: convert
//!                                                   │                   changed objects only
//!                                                   │                 → graph + compile (blocking pool)
//!                                                   │                 → Enforcer::sync (delta/full)
//!                      periodic resync ────────────┘                 → metrics, readiness
//!                                                                     → drop-log index   droplog.rs
//! ```
//!
//! Nothing is written to the kernel until every watch has synced (a cluster
//! without the ClusterNetworkPolicy CRD counts as having none). A
//! failed apply leaves the previous ruleset in force and is retried with
//! backoff. Losing the API server keeps the last ruleset (the reflectors
//! retry with a jittered backoff and resync on return). SIGTERM leaves the
//! table in the kernel, so a restarting agent never opens a window of
//! unfiltered traffic.

pub mod droplog;
pub mod http;
mod journal;
pub mod kubeconfig;
pub mod metrics;
pub mod status;
pub mod status_query;
pub mod watch;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::Client;
use tokio::sync::Notify;

use crate::kernel::enforcer::Enforcer;
use crate::kernel::netlink::{NetlinkElements, Transports};
use crate::kernel::nft::NftCli;
use metrics::Metrics;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name (pods with this spec.nodeName are enforced).
    pub node: String,
    /// `--kubeconfig` (see [`kubeconfig`] for the lookup order).
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// The nft binary.
    pub nft: String,
    /// Longest one `nft` call may run before it is killed (a failed apply).
    pub nft_timeout: Duration,
    /// Element changes as netlink batches (`--element-updates netlink`),
    /// not `nft` processes.
    pub netlink_elements: bool,
    /// Longest a worker step may run before /healthz fails.
    pub liveness_stall: Duration,
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
    /// The new-pod guard: on or off, and pod ranges besides the Node's podCIDRs.
    pub new_pods: crate::core::compile::NewPods,
    /// Revocation of established flows (`--revoke-established`).
    pub revoke_established: bool,
    /// Shortest time between writes of this node's NodeProgramStatus (0: never write).
    pub status_interval: Duration,
    /// Namespace of the NodeProgramStatus (default: the client's, i.e. the
    /// service account's in a pod).
    pub status_namespace: Option<String>,
}

/// Runs the agent on a runtime of its own (two worker threads) until
/// SIGTERM/SIGINT: `nftpol run`'s entry point, so the CLI holds no async
/// code.
pub fn run_blocking(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    rt.block_on(run(cfg))
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let mut stop = shutdown_signal()?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let (kc, source) = kubeconfig::load(
        cfg.kubeconfig.as_deref(),
        std::env::var_os("KUBECONFIG").as_deref(),
        home.as_deref(),
    )?;
    tracing::info!(source = ?source, context = cfg.context.as_deref().unwrap_or("(current)"), "API server configuration");
    let client = Client::try_from(kubeconfig::config(kc, cfg.context.as_deref()).await?)?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(http::Health::new(cfg.liveness_stall));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz /readyz /metrics");
    tokio::spawn(http::serve(listener, health.clone(), metrics.clone()));

    let changed = Arc::new(Notify::new());
    let stores = watch::start(&client, changed.clone(), metrics.clone(), health.clone());

    health.alive.store(true, Ordering::Relaxed);
    tracing::info!(node = %cfg.node, "waiting for pods, namespaces, nodes, networkpolicies and clusternetworkpolicies to sync");
    tokio::select! {
        r = stores.wait_until_ready() => r?,
        _ = stopped(&mut stop) => return Ok(()),
    }
    tracing::info!("synced; taking over table inet nftpol");

    let (enforcer, transports) = enforcer(&cfg);
    let feed = (!cfg.status_interval.is_zero()).then(|| {
        let ns = cfg
            .status_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        tracing::info!(namespace = %ns, interval = ?cfg.status_interval, "publishing this node's NodeProgramStatus");
        status::start(&client, &ns, &cfg.node, cfg.status_interval, metrics.clone())
    });
    let mut worker = worker::Worker::new(cfg, enforcer, metrics, health);
    if let Some(t) = transports {
        worker = worker.with_transports(t);
    }
    if let Some(feed) = feed {
        worker = worker.with_status(feed);
    }
    worker.run(&stores, changed, stop).await;
    tracing::info!("shutting down; table inet nftpol stays in force");
    Ok(())
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

/// The enforcer over `nft` and, unless `--element-updates nft`, a netlink
/// socket for element changes (opened here, in the agent's network
/// namespace); without a socket, element changes go through `nft` too.
/// With the socket, its counts for `nftpol_kernel_batches_total`.
fn enforcer(cfg: &Config) -> (Enforcer, Option<Transports>) {
    let cli = NftCli::with_timeout(cfg.nft.clone(), cfg.nft_timeout);
    if !cfg.netlink_elements {
        tracing::info!("element changes through nft (--element-updates nft)");
        return (Enforcer::with(cli), None);
    }
    match NetlinkElements::open(cli.clone()) {
        Ok(nl) => {
            tracing::info!(
                max_batch = nl.max_batch(),
                "element changes as netlink batches"
            );
            let t = nl.transports();
            (Enforcer::with(nl), Some(t))
        }
        Err(e) => {
            tracing::warn!(error = %e, "no netlink socket: element changes through nft");
            (Enforcer::with(cli), None)
        }
    }
}
