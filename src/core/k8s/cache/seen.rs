//! Per-kind bookkeeping of [`super::ClusterCache`]: which objects it has
//! seen, at which address and resourceVersion, and how a whole set or a
//! set of changed keys is applied to the model.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{UpdateStats, object_key};
use crate::core::diag::Diagnostic;
use crate::core::model::ObjectRef;

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
pub(super) struct Seen<K> {
    /// Namespace → name → the resourceVersion converted (`None`: the object
    /// had none, and is converted whenever it has a new address).
    versions: HashMap<String, HashMap<String, Option<String>>>,
    /// Address → the object, and the last update that saw it there.
    pub(super) objects: HashMap<usize, (Arc<K>, u64)>,
    /// Key → the address of its object in `objects`.
    addresses: HashMap<ObjectRef, usize>,
    /// Bumped by every update.
    epoch: u64,
    pub(super) diags: BTreeMap<ObjectRef, Vec<Diagnostic>>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Seen {
            versions: HashMap::new(),
            objects: HashMap::new(),
            addresses: HashMap::new(),
            epoch: 0,
            diags: BTreeMap::new(),
        }
    }
}

pub(super) fn len<K>(o: Objs<'_, K>) -> usize {
    match o {
        Objs::All(v) => v.len(),
        Objs::Keys(v) => v.len(),
    }
}

fn address<K>(o: &Arc<K>) -> usize {
    Arc::as_ptr(o) as usize
}
/// One kind's objects for an update: all of them (a store's whole state),
/// or only those whose keys the watch reported since the last update, each
/// with its current object (`None`: gone).
#[derive(Debug)]
pub enum Delta<K> {
    /// The complete current set of the kind.
    All(Vec<Arc<K>>),
    /// The objects of these keys changed (or went, `None`); every other
    /// object is as at the last update.
    Keys(Vec<(ObjectRef, Option<Arc<K>>)>),
}

impl<K> Delta<K> {
    pub(super) fn objs(&self) -> Objs<'_, K> {
        match self {
            Delta::All(v) => Objs::All(v),
            Delta::Keys(v) => Objs::Keys(v),
        }
    }
}

/// A borrowed [`Delta`].
pub(super) enum Objs<'a, K> {
    All(&'a [Arc<K>]),
    Keys(&'a [(ObjectRef, Option<Arc<K>>)]),
}

impl<K> Clone for Objs<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Objs<'_, K> {}

/// How [`Seen`] reads and converts one kind's objects.
struct Kind<'a, K, V> {
    meta: &'a dyn Fn(&K) -> &ObjectMeta,
    namespaced: bool,
    convert: &'a mut dyn FnMut(&K, &mut Vec<Diagnostic>) -> Option<V>,
}

impl<K> Seen<K> {
    /// The same objects as last time, at the same addresses (or no key
    /// changed): nothing to do.
    pub(super) fn unchanged(&self, objs: Objs<'_, K>) -> bool {
        match objs {
            Objs::All(objs) => {
                objs.len() == self.objects.len()
                    && objs.iter().all(|o| self.objects.contains_key(&address(o)))
            }
            Objs::Keys(keys) => keys.is_empty(),
        }
    }

    /// Applies `delta` to the model ([`Seen::update`] for a whole set,
    /// [`Seen::update_keys`] for keys). True when some object was new, had
    /// a new resourceVersion or went away.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply<V: PartialEq>(
        &mut self,
        delta: Objs<'_, K>,
        meta: impl Fn(&K) -> &ObjectMeta,
        namespaced: bool,
        mut convert: impl FnMut(&K, &mut Vec<Diagnostic>) -> Option<V>,
        model: &mut BTreeMap<ObjectRef, V>,
        stats: &mut UpdateStats,
        changed: &mut BTreeSet<ObjectRef>,
    ) -> bool {
        let mut kind = Kind {
            meta: &meta,
            namespaced,
            convert: &mut convert,
        };
        match delta {
            Objs::All(objs) => self.update(objs, &mut kind, model, stats, changed),
            Objs::Keys(keys) => self.update_keys(keys, &mut kind, model, stats, changed),
        }
    }

    /// Applies `objs` (the complete current set of one kind) to the model:
    /// `convert` turns a changed object into its model entry (or None when
    /// the model leaves it out), `insert`/`remove` edit the model.
    /// Keys whose model entry appeared, went or changed are added to `changed`.
    /// True when some object was new, had a new resourceVersion or went away.
    fn update<V: PartialEq>(
        &mut self,
        objs: &[Arc<K>],
        kind: &mut Kind<'_, K, V>,
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
        let mut fresh: Vec<(&Arc<K>, ObjectRef)> = Vec::new();
        let mut fresh_keys: HashSet<ObjectRef> = HashSet::new();
        for o in objs {
            if let Some((_, seen)) = self.objects.get_mut(&address(o)) {
                again += (*seen != epoch) as usize;
                *seen = epoch;
                stats.reused += 1;
                continue;
            }
            let k = object_key((kind.meta)(o), kind.namespaced);
            fresh_keys.insert(k.clone());
            touched |= self.convert(o, &k, kind, model, stats, changed);
            fresh.push((o, k));
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
                let k = object_key((kind.meta)(&old), kind.namespaced);
                if fresh_keys.contains(&k) {
                    continue;
                }
                touched = true;
                self.addresses.remove(&k);
                self.forget(&k, model, stats, changed);
            }
        }
        for (o, k) in fresh {
            self.objects.insert(address(o), (o.clone(), epoch));
            self.addresses.insert(k, address(o));
        }
        touched
    }

    /// Applies the objects of the changed `keys` (each with its current
    /// object, or `None` when it went) to the model; the other objects are
    /// not read. The same result as [`Seen::update`] with every object.
    fn update_keys<V: PartialEq>(
        &mut self,
        keys: &[(ObjectRef, Option<Arc<K>>)],
        kind: &mut Kind<'_, K, V>,
        model: &mut BTreeMap<ObjectRef, V>,
        stats: &mut UpdateStats,
        changed: &mut BTreeSet<ObjectRef>,
    ) -> bool {
        let mut touched = false;
        for (k, o) in keys {
            let was = self.addresses.get(k).copied();
            match o {
                Some(o) if was == Some(address(o)) => stats.reused += 1,
                Some(o) => {
                    if let Some(a) = was {
                        self.objects.remove(&a);
                    }
                    self.objects.insert(address(o), (o.clone(), self.epoch));
                    self.addresses.insert(k.clone(), address(o));
                    touched |= self.convert(o, k, kind, model, stats, changed);
                }
                None => {
                    if let Some(a) = was {
                        self.objects.remove(&a);
                        self.addresses.remove(k);
                        touched = true;
                        self.forget(k, model, stats, changed);
                    }
                }
            }
        }
        touched
    }

    /// Converts object `o` (key `k`, at a new address) unless its
    /// resourceVersion is the one converted; true when it was converted.
    fn convert<V: PartialEq>(
        &mut self,
        o: &K,
        k: &ObjectRef,
        kind: &mut Kind<'_, K, V>,
        model: &mut BTreeMap<ObjectRef, V>,
        stats: &mut UpdateStats,
        changed: &mut BTreeSet<ObjectRef>,
    ) -> bool {
        let rv = (kind.meta)(o).resource_version.as_deref();
        let version = self
            .versions
            .entry(k.namespace.clone())
            .or_default()
            .entry(k.name.clone())
            .or_insert(None);
        if rv.is_some() && version.as_deref() == rv {
            stats.reused += 1;
            return false;
        }
        // An object without a resourceVersion is converted every time.
        *version = rv.map(str::to_string);
        let mut d = Vec::new();
        let differs = match (kind.convert)(o, &mut d) {
            Some(v) => model
                .insert(k.clone(), v)
                .is_none_or(|old| Some(&old) != model.get(k)),
            None => model.remove(k).is_some(),
        };
        if d.is_empty() {
            self.diags.remove(k);
        } else {
            self.diags.insert(k.clone(), d);
        }
        if differs {
            changed.insert(k.clone());
        }
        stats.converted += 1;
        true
    }

    /// Takes key `k`, whose object went away, out of the model.
    fn forget<V>(
        &mut self,
        k: &ObjectRef,
        model: &mut BTreeMap<ObjectRef, V>,
        stats: &mut UpdateStats,
        changed: &mut BTreeSet<ObjectRef>,
    ) {
        if let Some(names) = self.versions.get_mut(&k.namespace) {
            names.remove(&k.name);
            if names.is_empty() {
                self.versions.remove(&k.namespace);
            }
        }
        if model.remove(k).is_some() {
            stats.removed += 1;
            changed.insert(k.clone());
        }
        self.diags.remove(k);
    }
}
