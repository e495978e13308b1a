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
    if let Err(msg) = check_liveness(a.nft_timeout, a.liveness_stall) {
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
        context: a.context,
        nft: a.nft,
        nft_timeout: a.nft_timeout,
        netlink_elements: a.element_updates == crate::cli::args::ElementUpdates::Netlink,
        liveness_stall: a.liveness_stall,
        listen: a.listen,
        min_interval: a.min_interval,
        max_delay: a.max_delay,
        resync: a.resync,
        drop_log: a.drop_log.options(),
        new_pods: a.new_pods.options(),
        revoke_established: a.revoke.revoke_established,
        status_interval: a.status_interval,
        status_namespace: a.status_namespace,
    };
    crate::agent::run_blocking(cfg).map_err(|e| {
        tracing::error!(error = %e, "nftpol run failed");
        Failure::Internal(None)
    })
}

/// `--liveness-stall` must exceed what a healthy apply can take: two `nft`
/// calls (a delta and its full fallback) of up to `--nft-timeout` each.
fn check_liveness(
    nft_timeout: std::time::Duration,
    liveness_stall: std::time::Duration,
) -> Result<(), String> {
    if nft_timeout.is_zero() || liveness_stall <= nft_timeout * 2 {
        return Err(format!(
            "--liveness-stall ({}) must exceed twice --nft-timeout ({}), which must not be 0: \
             an apply may run nft twice, and the kubelet would restart a healthy agent",
            humantime::format_duration(liveness_stall),
            humantime::format_duration(nft_timeout)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_liveness;
    use std::time::Duration;

    #[test]
    fn the_liveness_bound_must_exceed_two_nft_calls() {
        let s = Duration::from_secs;
        assert!(check_liveness(s(10), s(30)).is_ok(), "the defaults");
        let e = check_liveness(s(15), s(30)).unwrap_err();
        assert!(
            e.contains("--liveness-stall (30s) must exceed twice --nft-timeout (15s)"),
            "{e}"
        );
        assert!(check_liveness(s(0), s(30)).is_err(), "no timeout at all");
    }
}
