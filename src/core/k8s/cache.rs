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
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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

/// Per-kind bookkeeping: the objects last seen, the resourceVersion each
/// was converted at and the diagnostics its conversion produced.
///
/// Every update walks a whole store (tens of thousands of objects) for what
/// is usually one changed object, so the walk must not touch the objects: a
/// store hands an unchanged object over as the same `Arc`, and `objects`
/// (which holds each, so its address cannot be reused) recognises it by its
/// address alone. Only objects with a new address are read: converted if
/// their resourceVersion is new (a relist hands over new `Arc`s of the same
/// versions: not converted again).
#[derive(Debug)]
struct Seen<K> {
    /// Namespace → name → the resourceVersion converted (`None`: the object
    /// had none, and is converted whenever it has a new address).
    versions: HashMap<String, HashMap<String, Option<String>>>,
    /// Address → the object, and the last update that saw it there.
    objects: HashMap<usize, (Arc<K>, u64)>,
    /// Bumped by every update.
    epoch: u64,
    diags: BTreeMap<ObjectRef, Vec<Diagnostic>>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Seen {
            versions: HashMap::new(),
            objects: HashMap::new(),
            epoch: 0,
            diags: BTreeMap::new(),
        }
    }
}

fn address<K>(o: &Arc<K>) -> usize {
    Arc::as_ptr(o) as usize
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

fn key(m: &ObjectMeta, namespaced: bool) -> ObjectRef {
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

impl<K> Seen<K> {
    /// The same objects as last time, at the same addresses: nothing to do.
    fn unchanged(&self, objs: &[Arc<K>]) -> bool {
        objs.len() == self.objects.len()
            && objs.iter().all(|o| self.objects.contains_key(&address(o)))
    }

    /// Applies `objs` (the complete current set of one kind) to the model:
    /// `convert` turns a changed object into its model entry (or None when
    /// the model leaves it out), `insert`/`remove` edit the model.
    /// Keys whose model entry appeared, went or changed are added to `changed`.
    /// True when some object was new, had a new resourceVersion or went away.
    #[allow(clippy::too_many_arguments)]
    fn update<V: PartialEq>(
        &mut self,
        objs: &[Arc<K>],
        meta: impl Fn(&K) -> &ObjectMeta,
        namespaced: bool,
        mut convert: impl FnMut(&K, &mut Vec<Diagnostic>) -> Option<V>,
        model: &mut BTreeMap<ObjectRef, V>,
        stats: &mut UpdateStats,
        changed: &mut BTreeSet<ObjectRef>,
    ) -> bool {
        self.epoch += 1;
        let epoch = self.epoch;
        // Objects seen again at their address (distinct).
        let mut again = 0;
        let mut touched = false;
        // Objects at a new address, and their keys.
        let mut fresh: Vec<&Arc<K>> = Vec::new();
        let mut fresh_keys: HashSet<ObjectRef> = HashSet::new();
        for o in objs {
            if let Some((_, seen)) = self.objects.get_mut(&address(o)) {
                again += (*seen != epoch) as usize;
                *seen = epoch;
                stats.reused += 1;
                continue;
            }
            fresh.push(o);
            let m = meta(o);
            let k = key(m, namespaced);
            let rv = m.resource_version.as_deref();
            fresh_keys.insert(k.clone());
            let version = self
                .versions
                .entry(k.namespace.clone())
                .or_default()
                .entry(k.name.clone())
                .or_insert(None);
            if rv.is_some() && version.as_deref() == rv {
                stats.reused += 1;
                continue;
            }
            // An object without a resourceVersion is converted every time.
            *version = rv.map(str::to_string);
            touched = true;
            let mut d = Vec::new();
            let differs = match convert(o, &mut d) {
                Some(v) => model
                    .insert(k.clone(), v)
                    .is_none_or(|old| Some(&old) != model.get(&k)),
                None => model.remove(&k).is_some(),
            };
            if d.is_empty() {
                self.diags.remove(&k);
            } else {
                self.diags.insert(k.clone(), d);
            }
            if differs {
                changed.insert(k);
            }
            stats.converted += 1;
        }
        if again != self.objects.len() {
            // Objects not handed over again: replaced (their key came at a
            // new address) or gone.
            let left: Vec<usize> = self
                .objects
                .iter()
                .filter(|(_, (_, seen))| *seen != epoch)
                .map(|(a, _)| *a)
                .collect();
            for a in left {
                let (old, _) = self.objects.remove(&a).expect("listed");
                let k = key(meta(&old), namespaced);
                if fresh_keys.contains(&k) {
                    continue;
                }
                touched = true;
                if let Some(names) = self.versions.get_mut(&k.namespace) {
                    names.remove(&k.name);
                    if names.is_empty() {
                        self.versions.remove(&k.namespace);
                    }
                }
                if model.remove(&k).is_some() {
                    stats.removed += 1;
                    changed.insert(k.clone());
                }
                self.diags.remove(&k);
            }
        }
        for o in fresh {
            self.objects.insert(address(o), (o.clone(), epoch));
        }
        touched
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
        let src = api_source();
        let mut stats = UpdateStats::default();
        let mut other = BTreeSet::new();

        if self.namespaces.unchanged(namespaces) {
            stats.reused += namespaces.len();
        } else {
            self.update_namespaces(namespaces, &mut stats, &mut other);
        }
        self.pods.update(
            pods,
            |p: &SlimPod| &p.metadata,
            true,
            |p, d| convert::pod(&p.to_pod(), Some(&src), d).map(Arc::new),
            &mut self.cluster.pods,
            &mut stats,
            &mut self.changes.pods,
        );
        if self.policies.update(
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
        namespaces: &[Arc<core::Namespace>],
        stats: &mut UpdateStats,
        other: &mut BTreeSet<ObjectRef>,
    ) {
        let src = api_source();
        // Namespaces are keyed by name in the model; reuse the generic
        // bookkeeping over an ObjectRef-keyed view and copy changes across.
        let mut ns_model: BTreeMap<ObjectRef, crate::core::model::Namespace> =
            std::mem::take(&mut self.cluster.namespaces)
                .into_iter()
                .map(|(n, v)| (ObjectRef::new(String::new(), n), v))
                .collect();
        self.namespaces.update(
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
        let src = api_source();
        let mut stats = UpdateStats::default();
        let mut other = BTreeSet::new();
        if self.cluster_policies.unchanged(cluster_policies) && self.nodes.unchanged(nodes) {
            stats.reused += cluster_policies.len() + nodes.len();
            return stats;
        }
        let mut model = by_name(std::mem::take(&mut self.cluster.cluster_policies));
        if self.cluster_policies.update(
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
        self.nodes.update(
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
