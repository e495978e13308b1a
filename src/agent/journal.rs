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
//! Every kind starts marked whole: the first apply walks everything.

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
        let mut p = std::mem::replace(
            &mut *self.lock(),
            Pending {
                namespaces: Keys::none(),
                pods: Keys::none(),
                policies: Keys::none(),
                cluster_policies: Keys::none(),
                nodes: Keys::none(),
            },
        );
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
