//! The ruleset delta of one node: sets and maps added, removed or changed
//! (with the elements added and removed, as `nft` spells them), chains
//! added, removed or changed (with their rule counts).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::core::nft::render;
use crate::core::nft::ruleset::Ruleset;

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectChange {
    /// Only in the tree after.
    Added,
    /// Only in the tree before.
    Removed,
    /// In both, different.
    Changed,
}

/// A set or verdict map that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetDelta {
    /// Name.
    pub name: String,
    /// Its comment (after, or before when removed).
    pub comment: String,
    /// What happened to it.
    pub change: ObjectChange,
    /// Whether its type or comment changed (not only elements).
    pub definition_changed: bool,
    /// Elements only after, as `nft` spells them.
    pub added: Vec<String>,
    /// Elements only before.
    pub removed: Vec<String>,
}

/// A chain that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainDelta {
    /// Name.
    pub name: String,
    /// Its comment (after, or before when removed).
    pub comment: String,
    /// What happened to it.
    pub change: ObjectChange,
    /// Rules before (0 when added).
    pub rules_before: usize,
    /// Rules after (0 when removed).
    pub rules_after: usize,
}

/// The delta of one ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesetDelta {
    /// The node (`--node`), or `None` for the ruleset enforcing every pod.
    pub node: Option<String>,
    /// Sets that differ, by name.
    pub sets: Vec<SetDelta>,
    /// Verdict maps that differ, by name.
    pub maps: Vec<SetDelta>,
    /// Chains that differ, by name.
    pub chains: Vec<ChainDelta>,
}

impl RulesetDelta {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.maps.is_empty() && self.chains.is_empty()
    }

    /// Elements added and removed over all sets and maps.
    pub fn element_counts(&self) -> (usize, usize) {
        self.sets
            .iter()
            .chain(&self.maps)
            .fold((0, 0), |(a, r), s| (a + s.added.len(), r + s.removed.len()))
    }
}

fn elements_delta(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    (
        after.difference(before).cloned().collect(),
        before.difference(after).cloned().collect(),
    )
}

fn change_of<T>(b: Option<T>, a: Option<T>) -> ObjectChange {
    match (b, a) {
        (None, _) => ObjectChange::Added,
        (_, None) => ObjectChange::Removed,
        _ => ObjectChange::Changed,
    }
}

/// The sets (or maps) added, removed or changed between `before` and
/// `after`: each one's elements (`elements` renders them), whether its
/// definition changed (`definition_changed` compares two versions), its
/// comment; unchanged ones are left out.
fn named_deltas<T>(
    before: &BTreeMap<String, T>,
    after: &BTreeMap<String, T>,
    elements: impl Fn(&T) -> BTreeSet<String>,
    definition_changed: impl Fn(&T, &T) -> bool,
    comment: impl Fn(&T) -> &String,
) -> Vec<SetDelta> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        let els = |x: Option<&T>| x.map(&elements).unwrap_or_default();
        let (added, removed) = elements_delta(&els(b), &els(a));
        let definition_changed = match (b, a) {
            (Some(b), Some(a)) => definition_changed(b, a),
            _ => false,
        };
        if b.is_some()
            && a.is_some()
            && added.is_empty()
            && removed.is_empty()
            && !definition_changed
        {
            continue;
        }
        out.push(SetDelta {
            name: name.clone(),
            comment: a.or(b).map(|x| comment(x).clone()).unwrap_or_default(),
            change: change_of(b, a),
            definition_changed,
            added,
            removed,
        });
    }
    out
}

/// What differs between two rulesets.
pub fn delta(node: Option<String>, before: &Ruleset, after: &Ruleset) -> RulesetDelta {
    let sets = named_deltas(
        &before.sets,
        &after.sets,
        |s| s.elements.iter().map(render::element).collect(),
        |b, a| b.kind != a.kind || b.comment != a.comment,
        |s| &s.comment,
    );
    let maps = named_deltas(
        &before.maps,
        &after.maps,
        |m| {
            m.elements
                .iter()
                .map(|(ip, chain)| format!("{ip} : jump {chain}"))
                .collect()
        },
        |b, a| b.family != a.family || b.comment != a.comment,
        |m| &m.comment,
    );
    let mut chains = Vec::new();
    let names: BTreeSet<&String> = before
        .chains
        .iter()
        .chain(&after.chains)
        .map(|(n, _)| n)
        .collect();
    for name in names {
        let (b, a) = (before.chain(name), after.chain(name));
        if b.is_some() && b == a {
            continue;
        }
        chains.push(ChainDelta {
            name: name.clone(),
            comment: a.or(b).map(|c| c.comment.clone()).unwrap_or_default(),
            change: change_of(b, a),
            rules_before: b.map_or(0, |c| c.rules.len()),
            rules_after: a.map_or(0, |c| c.rules.len()),
        });
    }
    RulesetDelta {
        node,
        sets,
        maps,
        chains,
    }
}
