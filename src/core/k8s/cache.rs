//! A model [`Cluster`] kept in step with API objects, converting only the
//! objects whose `resourceVersion` changed.
//!
//! The agent recompiles after every burst of events. Converting (and before
//! that, deep-cloning) all 10k pods and 5k policies of a large cluster for one
//! relabelled pod was the largest part of that recompile; with the cache a
//! relabel converts one pod. The result is exactly what [`super::to_cluster`]
//! gives for the same objects (tested below), so the compiler's output does
//! not depend on which path built the model.

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

/// Per-kind bookkeeping: the resourceVersion each object was converted at
/// and the diagnostics its conversion produced.
#[derive(Debug, Default)]
struct Seen {
    version: HashMap<ObjectRef, String>,
    diags: BTreeMap<ObjectRef, Vec<Diagnostic>>,
}

/// The model of the cluster, updated incrementally. See the module docs.
#[derive(Debug, Default)]
pub struct ClusterCache {
    cluster: Cluster,
    namespaces: Seen,
    pods: Seen,
    policies: Seen,
    cluster_policies: Seen,
    nodes: Seen,
    /// What changed in the model since [`ClusterCache::take_changes`].
    changes: Changes,
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

impl Seen {
    /// Applies `objs` (the complete current set of one kind) to the model:
    /// `convert` turns a changed object into its model entry (or None when
    /// the model leaves it out), `insert`/`remove` edit the model.
    /// Keys whose model entry appeared, went or changed are added to `changed`.
    #[allow(clippy::too_many_arguments)]
    fn update<'a, K: 'a, V: PartialEq>(
        &mut self,
        objs: impl IntoIterator<Item = &'a K>,
        meta: impl Fn(&K) -> &ObjectMeta,
        namespaced: bool,
        mut convert: impl FnMut(&K, &mut Vec<Diagnostic>) -> Option<V>,
        model: &mut BTreeMap<ObjectRef, V>,
        stats: &mut UpdateStats,
        changed: &mut BTreeSet<ObjectRef>,
    ) {
        let mut present: HashSet<ObjectRef> = HashSet::with_capacity(self.version.len());
        for o in objs {
            let m = meta(o);
            let k = key(m, namespaced);
            let rv = m.resource_version.as_deref();
            let unchanged = rv.is_some() && self.version.get(&k).map(String::as_str) == rv;
            if unchanged {
                stats.reused += 1;
            } else {
                let mut d = Vec::new();
                let differs = match convert(o, &mut d) {
                    Some(v) => model
                        .insert(k.clone(), v)
                        .is_none_or(|old| Some(&old) != model.get(&k)),
                    None => model.remove(&k).is_some(),
                };
                if differs {
                    changed.insert(k.clone());
                }
                if d.is_empty() {
                    self.diags.remove(&k);
                } else {
                    self.diags.insert(k.clone(), d);
                }
                // An object without a resourceVersion is converted every time.
                match rv {
                    Some(rv) => self.version.insert(k.clone(), rv.to_string()),
                    None => self.version.remove(&k),
                };
                stats.converted += 1;
            }
            present.insert(k);
        }
        let gone: Vec<ObjectRef> = model
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            model.remove(&k);
            stats.removed += 1;
            changed.insert(k);
        }
        self.version.retain(|k, _| present.contains(k));
        self.diags.retain(|k, _| present.contains(k));
    }
}

impl ClusterCache {
    /// An empty cache.
    pub fn new() -> ClusterCache {
        ClusterCache {
            changes: Changes {
                pods: BTreeSet::new(),
                other: true,
            },
            ..ClusterCache::default()
        }
    }

    /// Brings the model to exactly the given objects (each iterator is the
    /// complete current set of its kind, e.g. a reflector store's state),
    /// converting only objects that are new or whose resourceVersion changed.
    pub fn update<'a>(
        &mut self,
        namespaces: impl IntoIterator<Item = &'a core::Namespace>,
        pods: impl IntoIterator<Item = &'a core::Pod>,
        policies: impl IntoIterator<Item = &'a net::NetworkPolicy>,
    ) -> UpdateStats {
        let src = api_source();
        let mut stats = UpdateStats::default();
        let mut other = BTreeSet::new();

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
            &mut stats,
            &mut other,
        );
        self.cluster.namespaces = ns_model.into_iter().map(|(k, v)| (k.name, v)).collect();

        self.pods.update(
            pods,
            |p: &core::Pod| &p.metadata,
            true,
            |p, d| convert::pod(p, Some(&src), d).map(Arc::new),
            &mut self.cluster.pods,
            &mut stats,
            &mut self.changes.pods,
        );
        self.policies.update(
            policies,
            |p: &net::NetworkPolicy| &p.metadata,
            true,
            |p, d| convert::policy(p, Some(&src), d),
            &mut self.cluster.policies,
            &mut stats,
            &mut other,
        );
        self.changes.other |= !other.is_empty();
        stats
    }

    /// Brings the ClusterNetworkPolicies and Nodes of the model to exactly
    /// the given objects (each the complete current set of its kind),
    /// converting only those that are new or whose resourceVersion changed.
    /// Separate from [`ClusterCache::update`] so a driver that does not
    /// watch them yet leaves them empty.
    pub fn update_cluster_scoped<'a>(
        &mut self,
        cluster_policies: impl IntoIterator<Item = &'a ClusterNetworkPolicy>,
        nodes: impl IntoIterator<Item = &'a core::Node>,
    ) -> UpdateStats {
        let src = api_source();
        let mut stats = UpdateStats::default();
        let mut other = BTreeSet::new();
        let mut model = by_name(std::mem::take(&mut self.cluster.cluster_policies));
        self.cluster_policies.update(
            cluster_policies,
            |p: &ClusterNetworkPolicy| &p.metadata,
            false,
            |p, d| convert::cluster_policy(p, Some(&src), d),
            &mut model,
            &mut stats,
            &mut other,
        );
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

    /// The model as of the last update.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Conversion diagnostics of the current objects: namespaces, pods,
    /// policies, nodes, then ClusterNetworkPolicies, each sorted by
    /// namespace/name.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        [
            &self.namespaces,
            &self.pods,
            &self.policies,
            &self.nodes,
            &self.cluster_policies,
        ]
        .iter()
        .flat_map(|s| s.diags.values().flatten().cloned())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::k8s::{Objects, to_cluster};
    use serde_json::json;

    fn pod(name: &str, rv: &str, app: &str, ip: &str) -> core::Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "a", "resourceVersion": rv,
                         "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c",
                "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"podIP": ip}
        }))
        .unwrap()
    }

    fn ns(name: &str, rv: &str, team: &str) -> core::Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": name, "resourceVersion": rv, "labels": {"team": team}}
        }))
        .unwrap()
    }

    fn pol(name: &str, rv: &str, from_app: &str) -> net::NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "a", "resourceVersion": rv},
            "spec": {"podSelector": {}, "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"app": from_app}}}]}]}
        }))
        .unwrap()
    }

    fn objects(n: &[core::Namespace], p: &[core::Pod], q: &[net::NetworkPolicy]) -> Objects {
        let src = api_source;
        Objects {
            namespaces: n.iter().map(|o| (src(), o.clone())).collect(),
            pods: p.iter().map(|o| (src(), o.clone())).collect(),
            policies: q.iter().map(|o| (src(), o.clone())).collect(),
            ..Objects::default()
        }
    }

    /// After every step the cached model equals a fresh conversion of the
    /// same objects, and only changed objects were converted.
    #[test]
    fn cached_model_equals_fresh_conversion() {
        let mut cache = ClusterCache::new();
        let mut namespaces = vec![ns("a", "1", "x"), ns("b", "2", "y")];
        let mut pods = vec![
            pod("p1", "3", "web", "10.0.0.1"),
            pod("p2", "4", "db", "10.0.0.2"),
            pod("bad", "5", "web", "not-an-ip"),
        ];
        let mut policies = vec![pol("allow", "6", "web")];
        let mut check = |n: &[core::Namespace],
                         p: &[core::Pod],
                         q: &[net::NetworkPolicy],
                         expect_converted: usize,
                         expect_removed: usize| {
            let stats = cache.update(n, p, q);
            let (fresh, fresh_diags) = to_cluster(&objects(n, p, q));
            assert_eq!(
                cache.cluster(),
                &fresh,
                "model differs from a fresh conversion"
            );
            let mut a: Vec<String> = cache.diagnostics().iter().map(|d| d.to_string()).collect();
            let mut b: Vec<String> = fresh_diags.iter().map(|d| d.to_string()).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "diagnostics differ");
            assert_eq!(stats.converted, expect_converted, "{stats:?}");
            assert_eq!(stats.removed, expect_removed, "{stats:?}");
        };
        check(&namespaces, &pods, &policies, 6, 0);
        // Nothing changed: nothing converted.
        check(&namespaces, &pods, &policies, 0, 0);
        // A relabel (new resourceVersion) converts one pod.
        pods[1] = pod("p2", "7", "web", "10.0.0.2");
        check(&namespaces, &pods, &policies, 1, 0);
        // A namespace relabel and a policy change.
        namespaces[1] = ns("b", "8", "z");
        policies[0] = pol("allow", "9", "db");
        check(&namespaces, &pods, &policies, 2, 0);
        // The bad pod gets a valid IP: its diagnostic goes away.
        pods[2] = pod("bad", "10", "web", "10.0.0.3");
        check(&namespaces, &pods, &policies, 1, 0);
        // Deletions of each kind.
        pods.remove(0);
        namespaces.remove(1);
        policies.clear();
        check(&namespaces, &pods, &policies, 0, 3);
    }

    /// `take_changes` names the pods whose model changed (by value: a new
    /// resourceVersion alone is no change) and flags every other kind.
    #[test]
    fn changes_name_the_pods_and_flag_the_rest() {
        let mut cache = ClusterCache::new();
        let namespaces = vec![ns("a", "1", "x")];
        let mut pods = vec![
            pod("p1", "2", "web", "10.0.0.1"),
            pod("p2", "3", "db", "10.0.0.2"),
        ];
        let mut policies = vec![pol("allow", "4", "web")];
        let id = |n: &str| ObjectRef::new("a", n);
        cache.update(&namespaces, &pods, &policies);
        let first = cache.take_changes();
        assert!(first.other);
        assert_eq!(first.pods, BTreeSet::from([id("p1"), id("p2")]));
        cache.update(&namespaces, &pods, &policies);
        assert_eq!(cache.take_changes(), Changes::default(), "nothing changed");
        pods[0] = pod("p1", "5", "web", "10.0.0.1");
        cache.update(&namespaces, &pods, &policies);
        assert_eq!(cache.take_changes(), Changes::default(), "same content");
        pods[1] = pod("p2", "6", "web", "10.0.0.2");
        cache.update(&namespaces, &pods, &policies);
        let relabel = Changes {
            pods: BTreeSet::from([id("p2")]),
            other: false,
        };
        assert_eq!(cache.take_changes(), relabel);
        pods.remove(0);
        policies[0] = pol("allow", "7", "db");
        cache.update(&namespaces, &pods, &policies);
        // Changes accumulate until taken.
        pods[0] = pod("p2", "8", "db", "10.0.0.2");
        cache.update(&namespaces, &pods, &policies);
        let both = Changes {
            pods: BTreeSet::from([id("p1"), id("p2")]),
            other: true,
        };
        assert_eq!(cache.take_changes(), both);
    }

    fn cnp(name: &str, rv: &str, priority: i64) -> ClusterNetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name, "resourceVersion": rv},
            "spec": {"tier": "Admin", "priority": priority, "subject": {"namespaces": {}},
                     "egress": [{"action": "Deny", "to": [{"nodes": {}}]}]}
        }))
        .unwrap()
    }

    fn node(name: &str, rv: &str, ip: &str) -> core::Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "resourceVersion": rv},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
        }))
        .unwrap()
    }

    /// ClusterNetworkPolicies and Nodes: the same guarantee as above.
    #[test]
    fn cluster_scoped_objects_are_cached_too() {
        let mut cache = ClusterCache::new();
        let mut check = |c: &[ClusterNetworkPolicy], n: &[core::Node], converted, removed| {
            let stats = cache.update_cluster_scoped(c, n);
            let objs = Objects {
                cluster_policies: c.iter().map(|o| (api_source(), o.clone())).collect(),
                nodes: n.iter().map(|o| (api_source(), o.clone())).collect(),
                ..Objects::default()
            };
            let (fresh, fresh_diags) = to_cluster(&objs);
            assert_eq!(cache.cluster(), &fresh);
            let a: Vec<String> = cache.diagnostics().iter().map(|d| d.to_string()).collect();
            let mut b: Vec<String> = fresh_diags.iter().map(|d| d.to_string()).collect();
            b.sort();
            let mut a = a;
            a.sort();
            assert_eq!(a, b);
            assert_eq!(
                (stats.converted, stats.removed),
                (converted, removed),
                "{stats:?}"
            );
        };
        let mut c = vec![cnp("a", "1", 10), cnp("bad", "2", 5000)];
        let mut n = vec![node("n1", "3", "10.0.0.1"), node("n2", "4", "10.0.0.2")];
        check(&c, &n, 4, 0);
        check(&c, &n, 0, 0);
        c[0] = cnp("a", "5", 20);
        n[1] = node("n2", "6", "10.0.0.3");
        check(&c, &n, 2, 0);
        c.remove(1);
        n.remove(0);
        check(&c, &n, 0, 2);
    }
}
