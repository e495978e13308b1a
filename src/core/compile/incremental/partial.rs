//! The partial path: group chains (with the policy chains and sets only
//! they use) coming and going with the pods that change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{GroupKey, Index};
use crate::core::model::{Cluster, Direction, ObjectRef};
use crate::core::nft::names;

impl Index {
    /// Records the sets and maps `edits` change in [`Index::touched`].
    pub(super) fn touch_edits(&mut self, edits: &crate::core::nft::delta::Edits) {
        let t = &mut self.touched.sets;
        t.extend(edits.sets.keys().cloned());
        t.extend(edits.maps.keys().cloned());
    }

    /// Forgets a set the ruleset no longer has.
    pub(super) fn remove_source(&mut self, set: &str) {
        for (_, sets) in self.matches.iter_mut() {
            sets.retain(|(_, s)| s != set);
        }
        for sets in self.named_ports.values_mut() {
            sets.retain(|s| s.set != set);
        }
        self.named_ports.retain(|_, sets| !sets.is_empty());
        self.set_keys.remove(set);
    }

    /// Whether adding `came` and removing `went` would turn the drop-log
    /// index's pod addresses on or off (the full compile's index holds them
    /// only while some group logs): left to the full compile.
    pub(super) fn logs_flip(
        &self,
        cluster: &Cluster,
        came: &[GroupKey],
        went: &[GroupKey],
    ) -> bool {
        let dl = &*self.drop_log;
        let gone: BTreeSet<&str> = went
            .iter()
            .filter_map(|k| self.groups.get(k).map(|(n, _)| n.as_str()))
            .collect();
        let stays = dl
            .groups
            .iter()
            .any(|(name, g)| g.logged && !gone.contains(name.as_str()));
        let comes = came.iter().any(|(_, pols, audit)| {
            *audit || {
                let ns = pols
                    .first()
                    .map(|p| p.namespace.as_str())
                    .unwrap_or_default();
                self.options.drop_log.logs(cluster, ns)
            }
        });
        (stays || comes) != self.logs_any
    }

    /// The groups that appear (no chain yet) and go (their last pod
    /// leaves) when each group's pod count moves by `delta`.
    pub(super) fn came_went(
        &self,
        delta: &BTreeMap<GroupKey, isize>,
    ) -> Result<(Vec<GroupKey>, Vec<GroupKey>), &'static str> {
        let (mut came, mut went) = (Vec::new(), Vec::new());
        for (key, d) in delta {
            match self.groups.get(key) {
                Some((_, n)) if *n as isize + d <= 0 => went.push(key.clone()),
                Some(_) => {}
                None if *d > 0 => came.push(key.clone()),
                None if *d < 0 => return Err("a pod leaves a group that has no chain"),
                None => {}
            }
        }
        Ok((came, went))
    }

    /// Moves each remaining group's pod count by `delta`.
    pub(super) fn count_groups(&mut self, delta: BTreeMap<GroupKey, isize>) {
        for (key, d) in delta {
            if let Some((_, n)) = self.groups.get_mut(&key) {
                *n = (*n as isize + d) as usize;
            }
        }
    }

    /// Removes the chains of the groups in `went` (and the policy chains
    /// and sets only they used), adds those of `came` (and the policy
    /// chains and sets they need), each where the full compile puts it; the
    /// policy chains in `rebuild` are built anew while some group still
    /// jumps to them (their policy changed), else removed.
    pub(super) fn restructure(
        &mut self,
        cluster: &Cluster,
        came: &[GroupKey],
        went: &[GroupKey],
        rebuild: &BTreeSet<(Direction, ObjectRef)>,
    ) {
        use crate::core::nft::ruleset::Chain;
        let mut gone_chains: BTreeSet<String> = BTreeSet::new();
        for key in went {
            let (name, _) = self.groups.remove(key).expect("a group that went");
            Arc::make_mut(&mut self.drop_log).groups.remove(&name);
            gone_chains.insert(name);
            for p in &key.1 {
                let uses = self
                    .policy_uses
                    .get_mut(&(key.0, (**p).clone()))
                    .expect("used");
                *uses -= 1;
                if *uses == 0 {
                    self.policy_uses.remove(&(key.0, (**p).clone()));
                    gone_chains.insert(names::policy_chain(key.0, p));
                }
            }
        }
        let mut new_policies: BTreeSet<(Direction, ObjectRef)> = BTreeSet::new();
        for key in came {
            for p in &key.1 {
                let uses = self.policy_uses.entry((key.0, (**p).clone())).or_default();
                if *uses == 0 {
                    new_policies.insert((key.0, (**p).clone()));
                }
                *uses += 1;
            }
        }
        // A policy chain that goes and comes back in the same change stays.
        for (dir, p) in &new_policies {
            gone_chains.remove(&names::policy_chain(*dir, p));
        }
        if !new_policies.is_empty() {
            // (One walk over the chains against the few new names, not a
            // set of every chain's name.)
            let mut wanted: BTreeMap<String, (Direction, ObjectRef)> = new_policies
                .iter()
                .map(|(dir, p)| (names::policy_chain(*dir, p), (*dir, p.clone())))
                .collect();
            for (name, _) in &self.compiled.ruleset.chains {
                if let Some(key) = wanted.remove(name) {
                    new_policies.remove(&key);
                    if wanted.is_empty() {
                        break;
                    }
                }
            }
        }
        for (dir, p) in rebuild {
            gone_chains.insert(names::policy_chain(*dir, p));
            if self.policy_uses.contains_key(&(*dir, p.clone())) {
                new_policies.insert((*dir, p.clone()));
            }
        }
        let rs = &mut self.compiled.ruleset;
        let mut maybe_unused: BTreeSet<String> = BTreeSet::new();
        let set_uses = &mut self.set_uses;
        if !gone_chains.is_empty() {
            rs.chains.retain(|(name, chain)| {
                if !gone_chains.contains(name) {
                    return true;
                }
                chain_sets(chain, |s| {
                    if let Some(n) = set_uses.get_mut(s) {
                        *n -= 1;
                    }
                    maybe_unused.insert(s.to_string());
                });
                false
            });
        }
        // Everything removed or built here, by name (the sets the removed
        // chains named may go; those the new ones name may be new).
        self.touched.sets.extend(maybe_unused.iter().cloned());
        self.touched.chains.extend(gone_chains);
        let groups: Vec<(Direction, Vec<ObjectRef>, bool)> = came
            .iter()
            .map(|(d, pols, audit)| (*d, pols.iter().map(|p| (**p).clone()).collect(), *audit))
            .collect();
        let partial = crate::core::compile::partial(
            cluster,
            &self.options,
            &mut self.compiled.ruleset,
            &mut self.set_keys,
            Arc::make_mut(&mut self.drop_log),
            &groups,
            &new_policies,
        );
        for (key, (name, _)) in came.iter().zip(&partial.groups) {
            self.groups.insert(key.clone(), (name.clone(), 0));
        }
        // The full compile's order: base chains, group chains, audit group
        // chains, then the rest (policy chains), the stamp chain last, each
        // section by name. Ranks are looked up once per change, not once
        // per chain for every chain added.
        let rank = |dl: &crate::core::compile::droplog::Index, name: &str| -> u8 {
            if name == names::FORWARD_CHAIN || name == names::INGRESS_CHAIN {
                0
            } else if name == names::STAMP_CHAIN {
                4
            } else {
                match dl.groups.get(name) {
                    Some(g) if g.audit => 2,
                    Some(_) => 1,
                    None => 3,
                }
            }
        };
        let new_chains: Vec<(String, Chain)> =
            partial.groups.into_iter().chain(partial.policies).collect();
        let mut ranks: Vec<u8> = match new_chains.is_empty() {
            true => Vec::new(),
            false => (self.compiled.ruleset.chains.iter())
                .map(|(n, _)| rank(&self.drop_log, n))
                .collect(),
        };
        for (name, chain) in new_chains {
            self.touched.chains.insert(name.clone());
            let touched = &mut self.touched.sets;
            let set_uses = &mut self.set_uses;
            chain_sets(&chain, |s| {
                *set_uses.entry(s.to_string()).or_default() += 1;
                touched.insert(s.to_string());
            });
            let r = rank(&self.drop_log, &name);
            let chains = &self.compiled.ruleset.chains;
            let at = (0..chains.len())
                .find(|&i| ranks[i] > r || (ranks[i] == r && chains[i].0.as_str() > name.as_str()))
                .unwrap_or(chains.len());
            self.compiled.ruleset.chains.insert(at, (name, chain));
            ranks.insert(at, r);
        }
        for (set, source) in partial.sources {
            self.add_source(set, source);
        }
        // Sets no chain names any more go with the chains that named them.
        for set in &maybe_unused {
            if self.set_uses.get(set).is_some_and(|n| *n == 0) {
                self.set_uses.remove(set);
                self.compiled.ruleset.sets.remove(set);
                self.compiled.ruleset.maps.remove(set);
                self.remove_source(set);
            }
        }
    }
}

/// Calls `f` with each set and map a chain's rules name (once per mention).
pub(super) fn chain_sets(chain: &crate::core::nft::ruleset::Chain, mut f: impl FnMut(&str)) {
    use crate::core::nft::ruleset::{Match, Verdict};
    for r in &chain.rules {
        for m in &r.matches {
            match m {
                Match::SelfPair(_, s)
                | Match::AddrIn(_, _, s)
                | Match::AddrNotIn(_, _, s)
                | Match::ProtoPortIn(s)
                | Match::DstProtoPortIn(_, s) => f(s),
                _ => {}
            }
        }
        if let Verdict::AddrVmap(_, _, m) = &r.verdict {
            f(m);
        }
    }
}
