//! The first stage of a structural change as it is built: its `nft -f`
//! script and the same as data ([`Creation`]), from the same calls so the
//! two cannot disagree.

use super::super::render;
use super::super::ruleset::{Chain, Generation, Set, VerdictMap};
use super::{StageOps, block_or_empty};

/// What the first stage creates, exactly what its script declares: each
/// field in the script's order (the chains, then the sets, the maps and
/// the generation's set and map). `nft -f` sends the chains first, then
/// each set with its elements, then every chain's rules (so a rule may
/// jump to a chain or look up a set of the same stage, and a map element
/// jump to a chain of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creation {
    /// Regular chains (never a base chain: those go in the switch) with
    /// their rules.
    pub chains: Vec<(String, Chain)>,
    /// Sets with their elements.
    pub sets: Vec<(String, Set)>,
    /// Verdict maps with their elements.
    pub maps: Vec<(String, VerdictMap)>,
    /// The generation's set `ct-generation` and map `ct-stamp`, created
    /// holding this generation.
    pub generation: Option<Generation>,
}

/// The first stage as it is built.
#[derive(Default)]
pub(super) struct Create {
    script: String,
    ops: Creation,
}

impl Create {
    /// A regular chain with its rules.
    pub(super) fn chain(&mut self, name: &str, c: &Chain) {
        render::chain_decl(&mut self.script, name, c);
        self.ops.chains.push((name.to_string(), c.clone()));
    }

    pub(super) fn set(&mut self, name: &str, s: &Set) {
        render::set_decl(&mut self.script, name, s);
        self.ops.sets.push((name.to_string(), s.clone()));
    }

    pub(super) fn map(&mut self, name: &str, m: &VerdictMap) {
        render::map_decl(&mut self.script, name, m);
        self.ops.maps.push((name.to_string(), m.clone()));
    }

    /// The generation's set and map.
    pub(super) fn generation(&mut self, g: Generation) {
        render::generation(&mut self.script, g);
        self.ops.generation = Some(g);
    }

    /// The stage's script and data (nothing when it creates nothing).
    pub(super) fn stage(self) -> (String, Option<StageOps>) {
        let script = block_or_empty(&self.script);
        let ops = (!script.is_empty()).then_some(StageOps::Create(self.ops));
        (script, ops)
    }
}
