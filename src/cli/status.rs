//! `nftpol status`: on how many nodes each policy's current version is
//! programmed (the agents' NodeProgramStatus objects, read by
//! `agent::status_query`, compared by `core::status`). Exit 0 when no node
//! lags or fails beyond `--max-lag`, 1 otherwise (also after `--wait` ran
//! out), 2 when the API server cannot be read.

use std::io::Write;

use super::args::{StatusArgs, TextOrJson};
use super::{Failure, Outcome};
use crate::agent::status_query::{Query, Target};

/// Parses POLICY: `NAME`, `networkpolicy/NAME` (`netpol/`,
/// `networkpolicies/`), `clusternetworkpolicy/NAME` (`cnp/`,
/// `clusternetworkpolicies/`).
pub fn target(policy: Option<&str>) -> Result<Target, String> {
    let Some(p) = policy else {
        return Ok(Target::All);
    };
    let (kind, name) = match p.split_once('/') {
        Some((k, n)) => (Some(k.to_ascii_lowercase()), n),
        None => (None, p),
    };
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "{p}: expected NAME, networkpolicy/NAME or clusternetworkpolicy/NAME"
        ));
    }
    match kind.as_deref() {
        None | Some("networkpolicy" | "networkpolicies" | "netpol") => {
            Ok(Target::Network(name.into()))
        }
        Some("clusternetworkpolicy" | "clusternetworkpolicies" | "cnp") => {
            Ok(Target::Cluster(name.into()))
        }
        Some(k) => Err(format!(
            "{p}: unknown kind {k} (networkpolicy or clusternetworkpolicy)"
        )),
    }
}

/// Runs the query and prints the report.
pub fn status(a: &StatusArgs) -> Outcome {
    let target = target(a.policy.as_deref()).map_err(Failure::invalid)?;
    if matches!(target, Target::Cluster(_)) && a.namespace.is_some() {
        return Err(Failure::invalid(
            "-n: a ClusterNetworkPolicy has no namespace",
        ));
    }
    let q = Query {
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
        namespace: a.namespace.clone(),
        target,
        status_namespace: a.status_namespace.clone(),
        max_lag: a.max_lag,
        wait: a.wait,
    };
    let report = crate::agent::status_query::run_blocking(&q)
        .map_err(|e| Failure::internal(format!("{e:#}")))?;
    let text = match a.output {
        TextOrJson::Text => crate::core::status::text(&report, &|s| {
            humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string()
        }),
        TextOrJson::Json => {
            let mut s = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::internal(format!("encoding the report: {e}")))?;
            s.push('\n');
            s
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::internal(format!("writing stdout: {e}")))?;
    if report.ok {
        Ok(())
    } else {
        Err(Failure::Invalid(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_arguments() {
        assert_eq!(target(None), Ok(Target::All));
        assert_eq!(target(Some("a")), Ok(Target::Network("a".into())));
        assert_eq!(target(Some("netpol/a")), Ok(Target::Network("a".into())));
        assert_eq!(target(Some("cnp/c")), Ok(Target::Cluster("c".into())));
        assert_eq!(
            target(Some("ClusterNetworkPolicy/c")),
            Ok(Target::Cluster("c".into()))
        );
        assert!(
            target(Some("pod/a"))
                .unwrap_err()
                .contains("unknown kind pod")
        );
        assert!(target(Some("a/b/c")).is_err());
        assert!(target(Some("cnp/")).is_err());
    }
}
