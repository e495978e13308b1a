//! A model [`Cluster`] kept in step with API objects, converting only the
//! objects whose `resourceVersion` changed.
//!
//! The agent recompiles after every burst of events. Converting (and before
//! that, deep-cloning) all 10k pods and 5k policies of a large cluster for one
//! relabelled pod was the largest part of that recompile; with the cache a
//! relabel converts one pod. The result is exactly what [`super::to_cluster`]
//! gives for the same objects (tested below), so the compiler's output does
//! not depend on which path built the model.

use super::slim::SlimPod;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

mod seen;
pub use seen::Delta;
use seen::{Objs, Seen, len};

use super::cnp::ClusterNetworkPolicy;
use super::convert;
use crate::core::compile::incremental::Changes;
use crate::core::diag::{Diagnostic, Source};
use crate::core::model::{Cluster, ObjectRef};

/// What one [`ClusterCache::update`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Objects converted (new or changed resourceVersion).
    pub converted: usize,
    /// Objects gone from the input and removed from the model.
    pub removed: usize,
    /// Objects reused unchanged.
    pub reused: usize,
}

/// The model of the cluster, updated incrementally. See the module docs.
#[derive(Debug, Default)]
pub struct ClusterCache {
    cluster: Cluster,
    namespaces: Seen<core::Namespace>,
    pods: Seen<SlimPod>,
    policies: Seen<net::NetworkPolicy>,
    cluster_policies: Seen<ClusterNetworkPolicy>,
    nodes: Seen<core::Node>,
    /// What changed in the model since [`ClusterCache::take_changes`].
    changes: Changes,
    /// Bumped by every update in which a NetworkPolicy or
    /// ClusterNetworkPolicy was new, had a new resourceVersion or went away.
    policy_versions: u64,
}

/// The model's key of an API object: namespace/name (a namespaced object
/// without a namespace is in `default`), or `""`/name for a cluster-scoped one.
pub fn object_key(m: &ObjectMeta, namespaced: bool) -> ObjectRef {
    let ns = if namespaced {
        m.namespace.clone().unwrap_or_else(|| "default".to_string())
    } else {
        String::new()
    };
    ObjectRef::new(ns, m.name.clone().unwrap_or_default())
}

/// A name-keyed model map as the ObjectRef-keyed map [`Seen`] edits.
fn by_name<V>(m: BTreeMap<String, V>) -> BTreeMap<ObjectRef, V> {
    m.into_iter()
        .map(|(n, v)| (ObjectRef::new(String::new(), n), v))
        .collect()
}

/// The source every API object's diagnostics carry.
pub fn api_source() -> Source {
    Source {
        file: "api".to_string(),
        document: 0,
        item: None,
    }
}

impl ClusterCache {
    /// An empty cache.
    pub fn new() -> ClusterCache {
        ClusterCache {
            changes: Changes {
                other: true,
                ..Changes::default()
            },
            ..ClusterCache::default()
        }
    }

    /// Brings the model to exactly the given objects (each slice is the
    /// complete current set of its kind, e.g. a reflector store's state),
    /// converting only objects that are new or whose resourceVersion changed
    /// (an object handed over as the same `Arc` as last time is not read).
    pub fn update(
        &mut self,
        namespaces: &[Arc<core::Namespace>],
        pods: &[Arc<SlimPod>],
        policies: &[Arc<net::NetworkPolicy>],
    ) -> UpdateStats {
        self.update_objs(Objs::All(namespaces), Objs::All(pods), Objs::All(policies))
    }

    /// [`ClusterCache::update`] from what changed: per kind every object, or
    /// only the keys the watch reported since the last update (with their
    /// current objects), so that one changed pod costs one pod, not a walk
    /// over every object of a large cluster. The result is the same as
    /// [`ClusterCache::update`] with the complete sets (tested).
    pub fn update_delta(
        &mut self,
        namespaces: &Delta<core::Namespace>,
        pods: &Delta<SlimPod>,
        policies: &Delta<net::NetworkPolicy>,
    ) -> UpdateStats {
        self.update_objs(namespaces.objs(), pods.objs(), policies.objs())
    }

    fn update_objs(
        &mut self,
        namespaces: Objs<'_, core::Namespace>,
        pods: Objs<'_, SlimPod>,
        policies: Objs<'_, net::NetworkPolicy>,
    ) -> UpdateStats {
        let src = api_source();
        let mut stats = UpdateStats::default();
        let mut other = BTreeSet::new();

        if self.namespaces.unchanged(namespaces) {
            stats.reused += len(namespaces);
        } else {
            self.update_namespaces(namespaces, &mut stats, &mut other);
        }
        self.pods.apply(
            pods,
            |p: &SlimPod| &p.metadata,
            true,
            |p, d| convert::pod(&p.to_pod(), Some(&src), d).map(Arc::new),
            &mut self.cluster.pods,
            &mut stats,
            &mut self.changes.pods,
        );
        if self.policies.apply(
            policies,
            |p: &net::NetworkPolicy| &p.metadata,
            true,
            |p, d| convert::policy(p, Some(&src), d),
            &mut self.cluster.policies,
            &mut stats,
            &mut self.changes.policies,
        ) {
            self.policy_versions += 1;
        }
        self.changes.other |= !other.is_empty();
        stats
    }

    fn update_namespaces(
        &mut self,
        namespaces: Objs<'_, core::Namespace>,
        stats: &mut UpdateStats,
        other: &mut BTreeSet<ObjectRef>,
    ) {
        let src = api_source();
        // Namespaces are keyed by name in the model; reuse the generic
        // bookkeeping over an ObjectRef-keyed view and copy changes across.
        let mut ns_model = by_name(std::mem::take(&mut self.cluster.namespaces));
        self.namespaces.apply(
            namespaces,
            |n: &core::Namespace| &n.metadata,
            false,
            |n, d| convert::namespace(n, Some(&src), d),
            &mut ns_model,
            stats,
            other,
        );
        self.cluster.namespaces = ns_model.into_iter().map(|(k, v)| (k.name, v)).collect();
    }

    /// Brings the ClusterNetworkPolicies and Nodes of the model to exactly
    /// the given objects (each the complete current set of its kind),
    /// converting only those that are new or whose resourceVersion changed.
    /// Separate from [`ClusterCache::update`] so a driver that does not
    /// watch them yet leaves them empty.
    pub fn update_cluster_scoped(
        &mut self,
        cluster_policies: &[Arc<ClusterNetworkPolicy>],
        nodes: &[Arc<core::Node>],
    ) -> UpdateStats {
        self.update_scoped_objs(Objs::All(cluster_policies), Objs::All(nodes))
    }

    /// [`ClusterCache::update_cluster_scoped`] from what changed (see
    /// [`ClusterCache::update_delta`]).
    pub fn update_cluster_scoped_delta(
        &mut self,
        cluster_policies: &Delta<ClusterNetworkPolicy>,
        nodes: &Delta<core::Node>,
    ) -> UpdateStats {
        self.update_scoped_objs(cluster_policies.objs(), nodes.objs())
    }

    fn update_scoped_objs(
        &mut self,
        cluster_policies: Objs<'_, ClusterNetworkPolicy>,
        nodes: Objs<'_, core::Node>,
    ) -> UpdateStats {
        let src = api_source();
        let mut stats = UpdateStats::default();
        let mut other = BTreeSet::new();
        if self.cluster_policies.unchanged(cluster_policies) && self.nodes.unchanged(nodes) {
            stats.reused += len(cluster_policies) + len(nodes);
            return stats;
        }
        let mut model = by_name(std::mem::take(&mut self.cluster.cluster_policies));
        if self.cluster_policies.apply(
            cluster_policies,
            |p: &ClusterNetworkPolicy| &p.metadata,
            false,
            |p, d| convert::cluster_policy(p, Some(&src), d),
            &mut model,
            &mut stats,
            &mut other,
        ) {
            self.policy_versions += 1;
        }
        self.cluster.cluster_policies = model.into_iter().map(|(k, v)| (k.name, v)).collect();
        let mut model = by_name(std::mem::take(&mut self.cluster.nodes));
        self.nodes.apply(
            nodes,
            |n: &core::Node| &n.metadata,
            false,
            |n, d| convert::node(n, Some(&src), d),
            &mut model,
            &mut stats,
            &mut other,
        );
        self.cluster.nodes = model.into_iter().map(|(k, v)| (k.name, v)).collect();
        self.changes.other |= !other.is_empty();
        stats
    }

    /// The current NetworkPolicy and ClusterNetworkPolicy objects (as last
    /// handed to an update), in no particular order.
    pub fn policy_objects(
        &self,
    ) -> (
        impl Iterator<Item = &net::NetworkPolicy>,
        impl Iterator<Item = &ClusterNetworkPolicy>,
    ) {
        (
            self.policies.objects.values().map(|(o, _)| &**o),
            self.cluster_policies.objects.values().map(|(o, _)| &**o),
        )
    }

    /// What changed in the model (by value, not by resourceVersion) since
    /// the last call, for [`crate::core::compile::incremental`]; a new cache
    /// starts with everything changed.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Changes when the (cluster) network policies' names or
    /// resourceVersions may have changed; the same value means they did not
    /// (what the NodeProgramStatus lists need not be rebuilt).
    pub fn policy_versions(&self) -> u64 {
        self.policy_versions
    }

    /// The model as of the last update.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Conversion diagnostics of the current objects: namespaces, pods,
    /// policies, nodes, then ClusterNetworkPolicies, each sorted by
    /// namespace/name.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        [
            &self.namespaces.diags,
            &self.pods.diags,
            &self.policies.diags,
            &self.nodes.diags,
            &self.cluster_policies.diags,
        ]
        .iter()
        .flat_map(|d| d.values().flatten().cloned())
        .collect()
    }
}

#[cfg(test)]
mod tests;
