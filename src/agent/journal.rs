//! Which objects the watches changed since the worker last read the stores,
//! so that an apply reads (and the model converts) those objects only, not
//! every object of every store.
//!
//! Each watch records the key of every object it applies to its store or
//! deletes from it, after the store has it (the journal's stream step runs
//! behind the reflector's). A relist (the watcher's `InitDone`, when the
//! store swaps in the listed objects) marks the whole kind: the next apply
//! walks that store. The worker takes the journal, then reads the current
//! object of each key: an event that lands between the two is read now and
//! again at the next apply (its key is recorded after the take), which
//! converts nothing twice (the model skips a resourceVersion it has).
//! Every kind starts marked whole: the first apply walks everything, and
//! every `--resync` period marks them whole again ([`Journal::mark_all`]),
//! so that a key the journal somehow missed cannot leave the model behind
//! its store for longer than a period and the next event.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

use super::worker::StoreChanges;
use crate::core::k8s::cache::{Delta, object_key};
use crate::core::model::ObjectRef;

/// One kind's pending changes.
#[derive(Debug)]
struct Keys {
    /// Read the whole store (start, relist).
    all: bool,
    /// Else the keys changed since the last take.
    keys: BTreeSet<ObjectRef>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            all: true,
            keys: BTreeSet::new(),
        }
    }
}

/// Which kind a watch feeds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Namespaces,
    Pods,
    Policies,
    ClusterPolicies,
    Nodes,
}

#[derive(Debug, Default)]
struct Pending {
    namespaces: Keys,
    pods: Keys,
    policies: Keys,
    cluster_policies: Keys,
    nodes: Keys,
}

impl Pending {
    fn of(&mut self, kind: Kind) -> &mut Keys {
        match kind {
            Kind::Namespaces => &mut self.namespaces,
            Kind::Pods => &mut self.pods,
            Kind::Policies => &mut self.policies,
            Kind::ClusterPolicies => &mut self.cluster_policies,
            Kind::Nodes => &mut self.nodes,
        }
    }
}

/// The watches' record of changed keys; see the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Journal(Arc<Mutex<Pending>>);

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding it leaves plain data: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what `event` (already applied to its store) changed.
    pub(super) fn record<K: Resource>(&self, kind: Kind, event: &watcher::Event<K>) {
        let namespaced = !matches!(kind, Kind::Namespaces | Kind::ClusterPolicies | Kind::Nodes);
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                let mut p = self.lock();
                let keys = p.of(kind);
                if !keys.all {
                    keys.keys.insert(object_key(o.meta(), namespaced));
                }
            }
            watcher::Event::InitDone => {
                let mut p = self.lock();
                let keys = p.of(kind);
                keys.all = true;
                keys.keys.clear();
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// Marks every kind whole: the next take reads every store.
    pub(super) fn mark_all(&self) {
        *self.lock() = Pending::default();
    }

    /// [`Journal::record`] for a watch stream's item (errors change no store).
    pub(super) fn record_result<K: Resource, E>(
        &self,
        kind: Kind,
        item: &Result<watcher::Event<K>, E>,
    ) {
        if let Ok(e) = item {
            self.record(kind, e);
        }
    }

    /// Takes the pending changes, reading their objects from the stores.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take(
        &self,
        namespaces: &Store<crate::core::k8s::Namespace>,
        pods: &Store<crate::core::k8s::slim::SlimPod>,
        policies: &Store<crate::core::k8s::NetworkPolicy>,
        cluster_policies: &Store<crate::core::k8s::ClusterNetworkPolicy>,
        nodes: &Store<crate::core::k8s::Node>,
    ) -> StoreChanges {
        let mut p = std::mem::replace(&mut *self.lock(), Pending::none());
        StoreChanges {
            namespaces: read(namespaces, std::mem::take(&mut p.namespaces), false),
            pods: read(pods, std::mem::take(&mut p.pods), true),
            policies: read(policies, std::mem::take(&mut p.policies), true),
            cluster_policies: read(
                cluster_policies,
                std::mem::take(&mut p.cluster_policies),
                false,
            ),
            nodes: read(nodes, std::mem::take(&mut p.nodes), false),
        }
    }
}

impl Keys {
    fn none() -> Keys {
        Keys {
            all: false,
            keys: BTreeSet::new(),
        }
    }
}

impl Pending {
    /// Nothing pending (after a take).
    fn none() -> Pending {
        Pending {
            namespaces: Keys::none(),
            pods: Keys::none(),
            policies: Keys::none(),
            cluster_policies: Keys::none(),
            nodes: Keys::none(),
        }
    }
}

/// The store's objects for `keys`: all of them, or each key's current one.
fn read<K>(store: &Store<K>, keys: Keys, namespaced: bool) -> Delta<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    if keys.all {
        return Delta::All(store.state());
    }
    Delta::Keys(
        keys.keys
            .into_iter()
            .map(|k| {
                let r = reflector::ObjectRef::<K>::new(&k.name);
                let r = match namespaced {
                    true => r.within(&k.namespace),
                    false => r,
                };
                let o = store.get(&r);
                (k, o)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::k8s::slim::SlimPod;
    use crate::core::k8s::{ClusterNetworkPolicy, Namespace, NetworkPolicy, Node};

    fn pod(name: &str) -> SlimPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "a", "resourceVersion": "1"}
        }))
        .unwrap()
    }

    /// What a take says of the pods: every object, or (key, present).
    fn pods_of(c: &StoreChanges) -> Result<usize, Vec<(String, bool)>> {
        match &c.pods {
            Delta::All(v) => Ok(v.len()),
            Delta::Keys(k) => Err(k
                .iter()
                .map(|(k, o)| (format!("{}/{}", k.namespace, k.name), o.is_some()))
                .collect()),
        }
    }

    #[test]
    fn a_take_reads_the_changed_keys_and_whole_kinds_after_a_relist() {
        let (pods, mut pods_w) = reflector::store::<SlimPod>();
        let (ns, _w1) = reflector::store::<Namespace>();
        let (pol, _w2) = reflector::store::<NetworkPolicy>();
        let (cnp, _w3) = reflector::store::<ClusterNetworkPolicy>();
        let (nodes, _w4) = reflector::store::<Node>();
        let j = Journal::default();
        let take = || j.take(&ns, &pods, &pol, &cnp, &nodes);
        let mut feed = |e: watcher::Event<SlimPod>| {
            pods_w.apply_watcher_event(&e);
            j.record(Kind::Pods, &e);
        };
        // The first take reads everything.
        feed(watcher::Event::Apply(pod("p1")));
        let c = take();
        assert_eq!(pods_of(&c), Ok(1));
        assert!(matches!(c.namespaces, Delta::All(_)) && matches!(c.nodes, Delta::All(_)));
        // Then only what changed, with its current object or none.
        assert_eq!(pods_of(&take()), Err(vec![]));
        feed(watcher::Event::Apply(pod("p2")));
        feed(watcher::Event::Apply(pod("p2")));
        feed(watcher::Event::Delete(pod("p1")));
        let c = take();
        assert_eq!(
            pods_of(&c),
            Err(vec![("a/p1".into(), false), ("a/p2".into(), true)])
        );
        assert!(matches!(&c.namespaces, Delta::Keys(k) if k.is_empty()));
        // A relist (the store swapped at InitDone) reads the whole kind.
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(pod("p3")));
        assert_eq!(pods_of(&take()), Err(vec![]), "nothing until InitDone");
        feed(watcher::Event::InitDone);
        assert_eq!(pods_of(&take()), Ok(1));
        // So does a resync's mark.
        j.mark_all();
        assert_eq!(pods_of(&take()), Ok(1));
        assert_eq!(pods_of(&take()), Err(vec![]));
    }
}
