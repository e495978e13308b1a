//! The pod step: the changed pods' old elements out, their new ones in,
//! and the group chains that come or go with them ([`Index::restructure`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::{Contribution, GroupKey, Index, Step};
use crate::core::model::{Cluster, ObjectRef, Pod};
use crate::core::nft::delta::Edits;
use crate::core::nft::ruleset::Ruleset;

impl Index {
    /// Applies the changed pods to the previous ruleset, or says why it
    /// cannot (and then changes nothing).
    pub(super) fn update(
        &mut self,
        cluster: &Cluster,
        changed: &BTreeSet<ObjectRef>,
    ) -> Result<Step, &'static str> {
        // (pod, as indexed, as now, the group keys of each)
        type Edit<'a> = (
            &'a ObjectRef,
            Option<Arc<Pod>>,
            Option<&'a Arc<Pod>>,
            [Vec<GroupKey>; 2],
        );
        let mut edits: Vec<Edit> = Vec::new();
        let mut count = self.pods.len() as isize;
        let mut group_delta: BTreeMap<GroupKey, isize> = BTreeMap::new();
        let mut owner_delta: HashMap<IpAddr, i64> = HashMap::new();
        for id in changed {
            let (old, new) = (self.pods.get(id).cloned(), cluster.pods.get(id));
            if old.as_ref() == new {
                continue;
            }
            count += new.is_some() as isize - old.is_some() as isize;
            let mut keys: [Vec<GroupKey>; 2] = Default::default();
            for (i, (p, sign)) in [(old.as_deref(), -1), (new.map(|p| &**p), 1)]
                .into_iter()
                .enumerate()
            {
                let Some(p) = p else { continue };
                keys[i] = self.group_keys(p);
                for key in &keys[i] {
                    match group_delta.get_mut(key) {
                        Some(d) => *d += sign as isize,
                        None => {
                            group_delta.insert(key.clone(), sign as isize);
                        }
                    }
                }
                for ip in &p.ips {
                    *owner_delta.entry(*ip).or_default() += sign;
                }
            }
            edits.push((id, old, new, keys));
        }
        if count != cluster.pods.len() as isize {
            return Err("the change list does not account for the pods");
        }
        for (ip, d) in &owner_delta {
            let before = i64::from(self.owners.get(ip).copied().unwrap_or(0));
            if before > 1 || before + d > 1 {
                return Err("an address is shared by pods");
            }
        }
        let (came, went) = self.came_went(&group_delta)?;
        let structural = !came.is_empty() || !went.is_empty();
        if structural && self.logs_flip(cluster, &came, &went) {
            return Err("drop logging of some group turns on or off");
        }
        // Checked: from here on nothing fails. The old contributions go
        // while the old chains and sets are there; the new ones come once
        // the new ones are.
        let mut out = Edits::default();
        for (_, old, _, [keys, _]) in &edits {
            if let Some(p) = old {
                let c = self
                    .contribution(cluster, p, keys)
                    .expect("an indexed pod's groups have chains");
                self.apply(&c, false, &mut out);
            }
        }
        if structural {
            self.restructure(cluster, &came, &went, &BTreeSet::new());
        }
        self.count_groups(group_delta);
        for (ip, d) in owner_delta {
            let n = self.owners.entry(ip).or_default();
            *n = (i64::from(*n) + d) as u32;
            if *n == 0 {
                self.owners.remove(&ip);
            }
        }
        for (id, old, new, [_, keys]) in edits {
            let enforced = &mut self.compiled.enforced_pods;
            *enforced -=
                old.as_ref()
                    .is_some_and(|p| p.enforced_by(self.node.as_deref())) as usize;
            if let Some(p) = new {
                let c = self
                    .contribution(cluster, p, &keys)
                    .expect("chains of new groups were added");
                self.apply(&c, true, &mut out);
                self.compiled.enforced_pods += c.enforced as usize;
            }
            match new {
                Some(p) => self.pods.insert(id.clone(), p.clone()),
                None => self.pods.remove(id),
            };
        }
        Ok(match structural {
            true => {
                self.touch_edits(&out);
                Step::Structural
            }
            false => Step::Elements(out),
        })
    }

    /// Adds (`add`) or removes a contribution's elements, recording the
    /// net changes in `edits`.
    pub(super) fn apply(&mut self, c: &Contribution, add: bool, edits: &mut Edits) {
        let rs: &mut Ruleset = &mut self.compiled.ruleset;
        for (set, el) in &c.sets {
            let elements = &mut rs.sets.get_mut(set).expect("indexed set").elements;
            match add {
                true if elements.insert(el.clone()) => edits.set_added(set, el),
                false if elements.remove(el) => edits.set_deleted(set, el),
                _ => {}
            }
        }
        for (map, ip, chain) in &c.maps {
            let elements = &mut rs.maps.get_mut(map).expect("dispatch map").elements;
            match add {
                true => {
                    let was = elements.insert(*ip, chain.clone());
                    edits.map_added(map, *ip, chain, was.as_deref());
                }
                false => {
                    if let Some(was) = elements.remove(ip) {
                        edits.map_deleted(map, *ip, &was);
                    }
                }
            }
        }
        if self.logs_any {
            let pods = &mut Arc::make_mut(&mut self.drop_log).pods;
            for ip in &c.ips {
                match add {
                    true => pods.insert(*ip, c.id.clone()),
                    false => pods.remove(ip),
                };
            }
        }
    }
}
