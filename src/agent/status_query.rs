//! `nftpol status`'s API calls: list the policies, the Nodes and the
//! NodeProgramStatus objects, and hand them to the pure comparison
//! (`core::status`); with `--wait`, ask again every second until the check
//! passes or the time is up.
//!
//! Reads only (`list`): networkpolicies (all namespaces, or the one asked
//! for), clusternetworkpolicies (a 404, no CRD, counts as none), nodes (a
//! 403 skips the node check with a warning), and nodeprogramstatuses in the
//! agents' namespace.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use kube::Client;
use kube::api::{Api, ListParams, ObjectList};

use super::kubeconfig;
use crate::core::k8s::node_status::{self, NodeProgramStatus};
use crate::core::k8s::{ClusterNetworkPolicy, NetworkPolicy, Node};
use crate::core::status::{Filter, Input, PolicyId, Report};

/// Which policy the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every policy (`-n` narrows to a namespace).
    All,
    /// A NetworkPolicy by name (in `-n`, else the kubeconfig's namespace).
    Network(String),
    /// A ClusterNetworkPolicy by name.
    Cluster(String),
}

/// What `nftpol status` asks.
#[derive(Debug, Clone)]
pub struct Query {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `-n`.
    pub namespace: Option<String>,
    /// The POLICY argument.
    pub target: Target,
    /// Namespace of the NodeProgramStatus objects.
    pub status_namespace: String,
    /// `--max-lag`.
    pub max_lag: Duration,
    /// `--wait`: ask until the check passes, at most this long.
    pub wait: Option<Duration>,
}

/// Runs the query on a runtime of its own (the CLI holds no async code).
pub fn run_blocking(q: &Query) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    rt.block_on(run(q))
}

async fn run(q: &Query) -> anyhow::Result<Report> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let (kc, _) = kubeconfig::load(
        q.kubeconfig.as_deref(),
        std::env::var_os("KUBECONFIG").as_deref(),
        home.as_deref(),
    )?;
    let client = Client::try_from(kubeconfig::config(kc, q.context.as_deref()).await?)?;
    let filter = match &q.target {
        Target::All => match &q.namespace {
            Some(ns) => Filter::Namespace(ns.clone()),
            None => Filter::All,
        },
        Target::Network(name) => {
            let ns = q
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string());
            Filter::Policy(PolicyId::network(&ns, name))
        }
        Target::Cluster(name) => Filter::Policy(PolicyId::cluster(name)),
    };
    let deadline = q.wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let report = once(&client, q, &filter).await?;
        match deadline {
            Some(d) if !report.ok && tokio::time::Instant::now() < d => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return Ok(report),
        }
    }
}

async fn once(client: &Client, q: &Query, filter: &Filter) -> anyhow::Result<Report> {
    let lp = ListParams::default();
    let policies: Api<NetworkPolicy> = match filter {
        Filter::All => Api::all(client.clone()),
        Filter::Namespace(ns) => Api::namespaced(client.clone(), ns),
        Filter::Policy(id) if id.namespace.is_empty() => Api::all(client.clone()),
        Filter::Policy(id) => Api::namespaced(client.clone(), &id.namespace),
    };
    let policies = policies
        .list(&lp)
        .await
        .context("listing networkpolicies")?
        .items;
    let cluster: Api<ClusterNetworkPolicy> = Api::all(client.clone());
    let cluster = match cluster.list(&lp).await {
        Ok(l) => l.items,
        Err(e) if code(&e) == Some(404) => Vec::new(),
        Err(e) => return Err(e).context("listing clusternetworkpolicies"),
    };
    let statuses: Api<NodeProgramStatus> = Api::namespaced(client.clone(), &q.status_namespace);
    let statuses: ObjectList<NodeProgramStatus> =
        statuses.list(&lp).await.with_context(|| {
            format!(
                "listing nodeprogramstatuses.nftpol.io in namespace {} (is nftpol installed there? --status-namespace)",
                q.status_namespace
            )
        })?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_names = match nodes.list_metadata(&lp).await {
        Ok(l) => Some(
            l.items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect(),
        ),
        Err(e) if matches!(code(&e), Some(401 | 403)) => {
            tracing::warn!("cannot list nodes ({e}): nodes without an agent are not reported");
            None
        }
        Err(e) => return Err(e).context("listing nodes"),
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    Ok(crate::core::status::report(&Input {
        policies: node_status::current_policies(&policies, &cluster),
        nodes: statuses.items.iter().map(node_status::node_state).collect(),
        node_names,
        filter: filter.clone(),
        now,
        max_lag: q.max_lag.as_secs() as i64,
    }))
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
