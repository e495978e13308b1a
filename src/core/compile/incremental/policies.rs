//! The policy step: NetworkPolicies added, deleted or changed become a
//! partial compile of what they touch: their own chains (rebuilt while some
//! group still jumps to them), the group chains of the pods whose isolating
//! policies change (with the policy chains and sets only those use), and
//! those pods' dispatch map entries. Nothing else of the ruleset depends on
//! a NetworkPolicy (the layout without ClusterNetworkPolicies): a policy
//! chain is named by its policy and names its own sets, a group chain only
//! jumps to its policies' chains.
//!
//! Runs on the indexed pods (before the pod step of the same batch), so the
//! pod step finds the index as if these policies had always been there;
//! the sets it creates are filled from the model's pods, which the pod
//! step's edits then leave as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::{GroupKey, Index, Isolator};
use crate::core::model::{Cluster, Direction, Family, ObjectRef, Pod, in_namespace};
use crate::core::nft::names;

impl Index {
    /// Brings the index and its ruleset to the `changed` policies' new
    /// versions in `cluster`; true when the ruleset changed. On `Err` the
    /// index is half updated: the caller drops it (a full compile follows).
    pub(super) fn update_policies(
        &mut self,
        cluster: &Cluster,
        changed: &BTreeSet<ObjectRef>,
    ) -> Result<bool, &'static str> {
        let namespaces: BTreeSet<&str> = changed.iter().map(|id| id.namespace.as_str()).collect();
        // The enforced pods these policies may select (a range of the
        // index's pods per namespace), and their groups under the old
        // policies.
        let pods: Vec<Arc<Pod>> = namespaces
            .iter()
            .flat_map(|ns| in_namespace(&self.pods, ns))
            .filter(|p| self.enforced(p))
            .cloned()
            .collect();
        let before: Vec<Vec<GroupKey>> = pods.iter().map(|p| self.group_keys(p)).collect();
        // Policy chains that exist now: rebuilt if still used afterwards.
        let mut rebuild: BTreeSet<(Direction, ObjectRef)> = BTreeSet::new();
        for id in changed {
            for dir in Direction::ALL {
                if self.policy_uses.contains_key(&(dir, id.clone())) {
                    rebuild.insert((dir, id.clone()));
                }
            }
            self.set_isolator(cluster, id);
        }
        let after: Vec<Vec<GroupKey>> = pods.iter().map(|p| self.group_keys(p)).collect();
        let mut group_delta: BTreeMap<GroupKey, isize> = BTreeMap::new();
        let mut moved: Vec<usize> = Vec::new();
        for (i, (old, new)) in before.iter().zip(&after).enumerate() {
            if old == new {
                continue;
            }
            moved.push(i);
            for k in old {
                *group_delta.entry(k.clone()).or_default() -= 1;
            }
            for k in new {
                *group_delta.entry(k.clone()).or_default() += 1;
            }
        }
        // Dispatch maps are keyed by address (as in the pod step).
        let shared = |ip: &IpAddr| self.owners.get(ip).is_some_and(|n| *n > 1);
        if moved.iter().any(|&i| pods[i].ips.iter().any(shared)) {
            return Err("an address is shared by pods");
        }
        let (came, went) = self.came_went(&group_delta)?;
        if self.logs_flip(cluster, &came, &went) {
            return Err("drop logging of some group turns on or off");
        }
        if moved.is_empty() && rebuild.is_empty() {
            return Ok(false);
        }
        for &i in &moved {
            self.dispatch(&pods[i].ips, &before[i], false);
        }
        self.restructure(cluster, &came, &went, &rebuild);
        self.count_groups(group_delta);
        for &i in &moved {
            self.dispatch(&pods[i].ips, &after[i], true);
        }
        Ok(true)
    }

    /// Puts the model's version of policy `id` among its namespace's
    /// isolators (sorted by name, as the full compile orders a group's
    /// policies), or takes it out.
    fn set_isolator(&mut self, cluster: &Cluster, id: &ObjectRef) {
        let list = self.policies.entry(id.namespace.clone()).or_default();
        list.retain(|i| *i.id != *id);
        if let Some(isolator) = cluster.policies.get(id).and_then(Isolator::of) {
            let at = list.partition_point(|i| *i.id < *id);
            list.insert(at, isolator);
        }
        if list.is_empty() {
            self.policies.remove(&id.namespace);
        }
    }

    /// Adds (`add`) or removes the dispatch map entries of a pod's
    /// addresses for its groups `keys` (whose chains exist when adding).
    fn dispatch(&mut self, ips: &[IpAddr], keys: &[GroupKey], add: bool) {
        for key in keys {
            let chain = self.groups.get(key).map(|(name, _)| name.clone());
            for ip in ips {
                let map = names::dispatch_map(key.0, Family::of(ip));
                self.touched.sets.insert(map.clone());
                let elements = &mut self
                    .compiled
                    .ruleset
                    .maps
                    .get_mut(&map)
                    .expect("dispatch map")
                    .elements;
                match add {
                    true => {
                        let chain = chain.clone().expect("a group's chain was added");
                        elements.insert(*ip, chain);
                    }
                    false => {
                        elements.remove(ip);
                    }
                }
            }
        }
    }
}
