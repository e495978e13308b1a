//! Incremental updates: when only set and map *elements* differ between the
//! table in the kernel and a fresh compile, the change is applied as element
//! additions and deletions in one transaction, leaving every rule, chain and
//! set definition in place. Anything else needs a whole-table replacement.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::ruleset::{Element, Generation, Ruleset, TABLE};
use super::{names, render};

/// How to go from one ruleset to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Nothing to do.
    None,
    /// Only elements changed: an `nft -f` script of element deletions and
    /// additions (one transaction), with counts.
    Elements {
        /// The script.
        script: String,
        /// Elements added (map entries whose verdict changed count here and in `deleted`).
        added: usize,
        /// Elements deleted.
        deleted: usize,
    },
    /// Rules, chains or set definitions changed: replace the whole table.
    Full,
}

/// Whether two rulesets have the same structure: same chains and rules, same
/// sets and maps with the same types and comments (elements may differ).
pub fn same_structure(a: &Ruleset, b: &Ruleset) -> bool {
    a.chains == b.chains
        && a.generation.is_some() == b.generation.is_some()
        && a.sets.len() == b.sets.len()
        && a.maps.len() == b.maps.len()
        && a.sets
            .iter()
            .zip(&b.sets)
            .all(|((na, sa), (nb, sb))| na == nb && sa.kind == sb.kind && sa.comment == sb.comment)
        && a.maps.iter().zip(&b.maps).all(|((na, ma), (nb, mb))| {
            na == nb && ma.family == mb.family && ma.comment == mb.comment
        })
}

/// The commands that move the table from generation `old` to `new` (one
/// element of `ct-generation` and of `ct-stamp` each), to go in the same
/// transaction as an element delta. Empty when they are equal.
pub fn generation_script(old: Generation, new: Generation) -> String {
    if old == new {
        return String::new();
    }
    let mut o = String::new();
    let set = names::GENERATION_SET;
    let map = names::STAMP_MAP;
    let _ = writeln!(
        o,
        "delete element inet {TABLE} {set} {{ {} }}",
        render::mark(old.stamp())
    );
    let _ = writeln!(
        o,
        "delete element inet {TABLE} {map} {{ {} }}",
        render::mark(0)
    );
    let _ = writeln!(
        o,
        "add element inet {TABLE} {set} {{ {} }}",
        render::mark(new.stamp())
    );
    let _ = writeln!(
        o,
        "add element inet {TABLE} {map} {{ {} }}",
        render::stamp_element(new)
    );
    o
}

/// The update that turns `old` (what the kernel holds) into `new`.
/// Generations are not compared (only whether both have one): whoever
/// applies the update picks the new generation and adds
/// [`generation_script`].
pub fn diff(old: &Ruleset, new: &Ruleset) -> Update {
    if !same_structure(old, new) {
        return Update::Full;
    }
    let mut deletes = String::new();
    let mut adds = String::new();
    let (mut added, mut deleted) = (0, 0);
    for ((name, so), (_, sn)) in old.sets.iter().zip(&new.sets) {
        let gone: Vec<&Element> = so.elements.difference(&sn.elements).collect();
        let came: Vec<&Element> = sn.elements.difference(&so.elements).collect();
        deleted += gone.len();
        added += came.len();
        element_cmd(
            &mut deletes,
            "delete",
            name,
            gone.iter().map(|e| render::element(e)),
        );
        element_cmd(
            &mut adds,
            "add",
            name,
            came.iter().map(|e| render::element(e)),
        );
    }
    for ((name, mo), (_, mn)) in old.maps.iter().zip(&new.maps) {
        let old_keys: BTreeSet<_> = mo.elements.iter().collect();
        let new_keys: BTreeSet<_> = mn.elements.iter().collect();
        let gone: Vec<_> = old_keys.difference(&new_keys).collect();
        let came: Vec<_> = new_keys.difference(&old_keys).collect();
        deleted += gone.len();
        added += came.len();
        // A key whose verdict changed appears in both: deleted first, re-added.
        element_cmd(
            &mut deletes,
            "delete",
            name,
            gone.iter().map(|(ip, _)| ip.to_string()),
        );
        element_cmd(
            &mut adds,
            "add",
            name,
            came.iter()
                .map(|(ip, chain)| format!("{ip} : jump {chain}")),
        );
    }
    if added + deleted == 0 {
        return Update::None;
    }
    Update::Elements {
        script: format!("{deletes}{adds}"),
        added,
        deleted,
    }
}

fn element_cmd(out: &mut String, verb: &str, set: &str, elements: impl Iterator<Item = String>) {
    let elements: Vec<String> = elements.collect();
    if elements.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{verb} element inet {TABLE} {set} {{ {} }}",
        elements.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nft::ruleset::{Chain, Log, Rule, Verdict};

    #[test]
    fn a_log_rule_is_a_structure_change() {
        let drop = Rule {
            matches: vec![],
            verdict: Verdict::CountedDrop,
            comment: None,
        };
        let chain = |rules: Vec<Rule>| Chain {
            hook: None,
            comment: "g".into(),
            rules,
        };
        let mut quiet = Ruleset::default();
        quiet.chains.push(("g".into(), chain(vec![drop.clone()])));
        let mut logging = Ruleset::default();
        let log = Rule {
            matches: vec![],
            verdict: Verdict::Log(Log {
                group: 9750,
                rate: 10,
                burst: 20,
                prefix: "nftpol drop g".into(),
            }),
            comment: None,
        };
        logging.chains.push(("g".into(), chain(vec![log, drop])));
        assert_eq!(diff(&quiet, &logging), Update::Full);
        assert_eq!(diff(&logging, &quiet), Update::Full);
        assert_eq!(diff(&logging, &logging.clone()), Update::None);
    }
}
