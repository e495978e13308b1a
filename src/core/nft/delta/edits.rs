//! Element changes as data: what the incremental compile records, what the
//! enforcer sends (as an `nft` script, or as one netlink batch:
//! `kernel::netlink`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Elements, Update, generation_script};
use crate::core::nft::ruleset::{Element, Generation, Ruleset, Set, VerdictMap};

/// A verdict map's elements: address → the chain it jumps to.
pub type MapElements = BTreeMap<IpAddr, String>;

/// Element changes to a ruleset, as recorded by whoever made them (the
/// incremental compile): applying them to the old ruleset gives the new one,
/// and [`Edits::script`] is what [`super::diff`] of the two would say, without
/// comparing the whole tables. Net changes only: an element deleted and
/// added back is in neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Set → (elements deleted, elements added).
    pub sets: BTreeMap<String, (BTreeSet<Element>, BTreeSet<Element>)>,
    /// Verdict map → (elements deleted, elements added); a key whose
    /// verdict changed is in both.
    pub maps: BTreeMap<String, (MapElements, MapElements)>,
}

impl Edits {
    /// The element changes from `old` to `new`; `None` when their structure
    /// differs ([`super::same_structure`]: then no element change gets there).
    pub fn between(old: &Ruleset, new: &Ruleset) -> Option<Edits> {
        super::same_structure(old, new).then(|| Edits::of_common(old, new))
    }

    /// The element changes of the sets and maps `old` and `new` both have
    /// (by name; the rest is not looked at).
    pub fn of_common(old: &Ruleset, new: &Ruleset) -> Edits {
        Edits::of_common_in(old, new, None)
    }

    /// [`Edits::of_common`] over the sets and maps named in `names` only
    /// (all of them for `None`).
    pub fn of_common_in(old: &Ruleset, new: &Ruleset, names: Option<&BTreeSet<String>>) -> Edits {
        let mut e = Edits::default();
        let sets: Vec<(&String, &Set)> = match names {
            None => new.sets.iter().collect(),
            Some(n) => n.iter().filter_map(|k| new.sets.get_key_value(k)).collect(),
        };
        for (name, sn) in sets {
            let Some(so) = old.sets.get(name) else {
                continue;
            };
            let deleted: BTreeSet<Element> =
                so.elements.difference(&sn.elements).cloned().collect();
            let added: BTreeSet<Element> = sn.elements.difference(&so.elements).cloned().collect();
            if !deleted.is_empty() || !added.is_empty() {
                e.sets.insert(name.clone(), (deleted, added));
            }
        }
        let maps: Vec<(&String, &VerdictMap)> = match names {
            None => new.maps.iter().collect(),
            Some(n) => n.iter().filter_map(|k| new.maps.get_key_value(k)).collect(),
        };
        for (name, mn) in maps {
            let Some(mo) = old.maps.get(name) else {
                continue;
            };
            let (deleted, added) = (only_in(mo, mn), only_in(mn, mo));
            if !deleted.is_empty() || !added.is_empty() {
                e.maps.insert(name.clone(), (deleted, added));
            }
        }
        e
    }

    /// Elements (map entries included) added and deleted; a map key whose
    /// verdict changed counts in both.
    pub fn counts(&self) -> (usize, usize) {
        let sets = self.sets.values().map(|(d, a)| (a.len(), d.len()));
        let maps = self.maps.values().map(|(d, a)| (a.len(), d.len()));
        sets.chain(maps)
            .fold((0, 0), |(a, d), (a1, d1)| (a + a1, d + d1))
    }

    /// No element changes.
    pub fn is_empty(&self) -> bool {
        self.sets
            .values()
            .all(|(d, a)| d.is_empty() && a.is_empty())
            && self
                .maps
                .values()
                .all(|(d, a)| d.is_empty() && a.is_empty())
    }

    /// Records that `el` left `set` (it was there).
    pub fn set_deleted(&mut self, set: &str, el: &Element) {
        let (deleted, added) = self.sets.entry(set.to_string()).or_default();
        if !added.remove(el) {
            deleted.insert(el.clone());
        }
    }

    /// Records that `el` joined `set` (it was not there).
    pub fn set_added(&mut self, set: &str, el: &Element) {
        let (deleted, added) = self.sets.entry(set.to_string()).or_default();
        if !deleted.remove(el) {
            added.insert(el.clone());
        }
    }

    /// Records that `map` lost `ip`, which jumped to `was`.
    pub fn map_deleted(&mut self, map: &str, ip: IpAddr, was: &str) {
        let (deleted, added) = self.maps.entry(map.to_string()).or_default();
        // Added by these edits: the addition is undone (an original
        // element, if there was one, stays deleted).
        if added.remove(&ip).is_none() {
            deleted.insert(ip, was.to_string());
        }
    }

    /// Records that `map` has `ip` → `chain`; `was` is what `ip` jumped to
    /// just before (`None`: it was not in the map).
    pub fn map_added(&mut self, map: &str, ip: IpAddr, chain: &str, was: Option<&str>) {
        if let Some(was) = was {
            if was == chain {
                return;
            }
            self.map_deleted(map, ip, was);
        }
        let (deleted, added) = self.maps.entry(map.to_string()).or_default();
        if deleted.get(&ip).is_some_and(|c| c == chain) {
            deleted.remove(&ip);
        } else {
            added.insert(ip, chain.to_string());
        }
    }

    /// Applies the edits to `rs`; false (and `rs` unchanged) when a set or
    /// map they name is not in it.
    pub fn apply(&self, rs: &mut Ruleset) -> bool {
        if !self.sets.keys().all(|s| rs.sets.contains_key(s))
            || !self.maps.keys().all(|m| rs.maps.contains_key(m))
        {
            return false;
        }
        for (name, (deleted, added)) in &self.sets {
            let elements = &mut rs.sets.get_mut(name).expect("checked").elements;
            for e in deleted {
                elements.remove(e);
            }
            elements.extend(added.iter().cloned());
        }
        for (name, (deleted, added)) in &self.maps {
            let elements = &mut rs.maps.get_mut(name).expect("checked").elements;
            for ip in deleted.keys() {
                elements.remove(ip);
            }
            elements.extend(added.iter().map(|(ip, c)| (*ip, c.clone())));
        }
        true
    }

    /// The element deletions and additions as one script (what [`super::diff`]
    /// gives for the same change, byte for byte), with counts; `Update::None`
    /// when there are none.
    pub fn script(&self) -> Update {
        Elements::of(self).update()
    }
}

/// The entries of `a` that `b` does not have with the same verdict.
fn only_in(a: &VerdictMap, b: &VerdictMap) -> MapElements {
    a.elements
        .iter()
        .filter(|(ip, chain)| b.elements.get(*ip) != Some(*chain))
        .map(|(ip, chain)| (*ip, chain.clone()))
        .collect()
}

/// One element transaction as the enforcer sends it: the edits, and the
/// generation step that goes with them (`ct-generation` and `ct-stamp`
/// move from the first generation to the second) when the table revokes
/// established flows.
#[derive(Debug, Clone, Copy)]
pub struct ElementChange<'a> {
    /// The element changes.
    pub edits: &'a Edits,
    /// `(from, to)`: the generation the table holds and the one it gets.
    pub generation: Option<(Generation, Generation)>,
}

impl ElementChange<'_> {
    /// The change as one `nft -f` script: the edits' deletions and
    /// additions, then the generation's.
    pub fn script(&self) -> String {
        let mut script = match self.edits.script() {
            Update::Elements { script, .. } => script,
            Update::None | Update::Full => String::new(),
        };
        if let Some((old, new)) = self.generation {
            script.push_str(&generation_script(old, new));
        }
        script
    }
}
