//! `nftpol run`: start the node agent. Errors go to the agent's log (text
//! or JSON lines), not to a bare stderr line.

use super::args::RunArgs;
use super::{Failure, Outcome};

/// Sets up logging, checks `nft` and the kernel, and runs the agent until
/// it stops.
pub fn run(a: RunArgs) -> Outcome {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if a.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    if a.nft_timeout.is_zero() || a.liveness_stall <= a.nft_timeout * 2 {
        let msg = format!(
            "--liveness-stall ({}) must exceed twice --nft-timeout ({}), which must not be 0: \
             an apply may run nft twice, and the kubelet would restart a healthy agent",
            humantime::format_duration(a.liveness_stall),
            humantime::format_duration(a.nft_timeout)
        );
        tracing::error!("{msg}");
        return Err(Failure::Invalid(None));
    }
    // Fail fast, before the API server is contacted: an agent that can never
    // load its ruleset must not look alive.
    match crate::kernel::version::check(&a.nft) {
        Ok(found) => {
            for w in &found.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                nft = %found.nft.map_or("unknown".into(), |v| v.to_string()),
                kernel = %found.kernel.map_or("unknown".into(), |v| v.to_string()),
                "nft and kernel versions"
            );
        }
        Err(e) => {
            tracing::error!("{e}");
            return Err(Failure::Internal(None));
        }
    }
    let cfg = crate::agent::Config {
        node: a.node,
        kubeconfig: a.kubeconfig,
        nft: a.nft,
        nft_timeout: a.nft_timeout,
        liveness_stall: a.liveness_stall,
        listen: a.listen,
        min_interval: a.min_interval,
        max_delay: a.max_delay,
        resync: a.resync,
        drop_log: a.drop_log.options(),
    };
    crate::agent::run_blocking(cfg).map_err(|e| {
        tracing::error!(error = %e, "nftpol run failed");
        Failure::Internal(None)
    })
}
