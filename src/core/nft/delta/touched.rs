//! What a partial compile changed, by name: the structural change's
//! counterpart of [`super::Edits`]. With it the enforcer neither copies nor
//! compares whole rulesets: [`super::staged_touched`] looks only at the
//! names listed, and [`Touched::apply_to`] brings its mirror to the new
//! ruleset by copying only them.

use std::collections::BTreeSet;

use crate::core::nft::ruleset::Ruleset;

/// The chains, sets and maps a change may have added, removed or changed
/// (a superset is fine; everything else must be the same before and after).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Chain names.
    pub chains: BTreeSet<String>,
    /// Set and verdict map names.
    pub sets: BTreeSet<String>,
}

impl Touched {
    /// Whether nothing is named.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.sets.is_empty()
    }

    /// Adds every name of `other`.
    pub fn extend(&mut self, other: Touched) {
        self.chains.extend(other.chains);
        self.sets.extend(other.sets);
    }

    /// Makes `old` equal to `new` where this names something: touched
    /// chains are taken out of `old` and copied from `new` at the place
    /// `new` has them; touched sets and maps are replaced by `new`'s (or
    /// removed). The generation is left alone. When everything that
    /// differs is named, `old` equals `new` afterwards.
    pub fn apply_to(&self, old: &mut Ruleset, new: &Ruleset) {
        if !self.chains.is_empty() {
            old.chains.retain(|(n, _)| !self.chains.contains(n));
            // In `new`'s order: every chain before a touched one is in place
            // (the untouched ones keep their relative order), so each goes
            // at its index in `new`.
            for (i, (n, c)) in new.chains.iter().enumerate() {
                if self.chains.contains(n) {
                    old.chains
                        .insert(i.min(old.chains.len()), (n.clone(), c.clone()));
                }
            }
        }
        for name in &self.sets {
            match new.sets.get(name) {
                Some(s) => {
                    old.sets.insert(name.clone(), s.clone());
                }
                None => {
                    old.sets.remove(name);
                }
            }
            match new.maps.get(name) {
                Some(m) => {
                    old.maps.insert(name.clone(), m.clone());
                }
                None => {
                    old.maps.remove(name);
                }
            }
        }
    }
}
