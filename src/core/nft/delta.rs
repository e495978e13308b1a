//! Incremental updates: when only set and map *elements* differ between the
//! table in the kernel and a fresh compile, the change is applied as element
//! additions and deletions in one transaction, leaving every rule, chain and
//! set definition in place. Anything else needs a whole-table replacement.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use super::ruleset::Chain;
use super::ruleset::{Element, Generation, Ruleset, TABLE};
use super::{names, render};

mod create;
mod edits;
mod touched;
use create::Create;
pub use create::Creation;
pub use edits::{Edits, ElementChange, MapElements};
pub use touched::Touched;

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

/// A base chain as the kernel holds it (what decides whether a full
/// replacement may keep it: [`render::replacement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// Hook name (`forward`).
    pub hook: String,
    /// Priority.
    pub priority: i32,
}

/// The names a table holds: what a full replacement deletes before it
/// creates the new content (from the enforcer's mirror, or from a listing of
/// the kernel when the mirror is not trusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Present {
    /// Every chain, with its hook if it is a base chain.
    pub chains: Vec<(String, Option<BaseChain>)>,
    /// Sets (the generation's `ct-generation` included).
    pub sets: Vec<String>,
    /// Maps (the generation's `ct-stamp` included).
    pub maps: Vec<String>,
}

impl Present {
    /// What the kernel holds after loading `rs`.
    pub fn of(rs: &Ruleset) -> Present {
        let base = |c: &Chain| {
            c.hook.map(|h| BaseChain {
                hook: h.hook.to_string(),
                priority: h.priority,
            })
        };
        let mut sets: Vec<String> = rs.sets.keys().cloned().collect();
        let mut maps: Vec<String> = rs.maps.keys().cloned().collect();
        if rs.generation.is_some() {
            sets.push(names::GENERATION_SET.to_string());
            maps.push(names::STAMP_MAP.to_string());
        }
        Present {
            chains: rs
                .chains
                .iter()
                .map(|(n, c)| (n.clone(), base(c)))
                .collect(),
            sets,
            maps,
        }
    }
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
    match Edits::between(old, new) {
        Some(edits) => edits.script(),
        None => Update::Full,
    }
}

/// Element deletions and additions of sets and maps present before and after.
#[derive(Default)]
struct Elements {
    deletes: String,
    adds: String,
    added: usize,
    deleted: usize,
}

impl Elements {
    /// The script lines and counts of `edits`.
    fn of(edits: &Edits) -> Elements {
        let mut d = Elements::default();
        for (name, (deleted, added)) in &edits.sets {
            d.set_changes(name, deleted.iter(), added.iter());
        }
        for (name, (deleted, added)) in &edits.maps {
            d.map_changes(name, deleted.keys(), added.iter());
        }
        d
    }

    fn set_changes<'a>(
        &mut self,
        name: &str,
        gone: impl Iterator<Item = &'a Element>,
        came: impl Iterator<Item = &'a Element>,
    ) {
        let gone: Vec<&Element> = gone.collect();
        let came: Vec<&Element> = came.collect();
        self.deleted += gone.len();
        self.added += came.len();
        element_cmd(
            &mut self.deletes,
            "delete",
            name,
            gone.iter().map(|e| render::element(e)),
        );
        element_cmd(
            &mut self.adds,
            "add",
            name,
            came.iter().map(|e| render::element(e)),
        );
    }

    fn map_changes<'a>(
        &mut self,
        name: &str,
        gone: impl Iterator<Item = &'a IpAddr>,
        came: impl Iterator<Item = (&'a IpAddr, &'a String)>,
    ) {
        let gone: Vec<&IpAddr> = gone.collect();
        let came: Vec<(&IpAddr, &String)> = came.collect();
        self.deleted += gone.len();
        self.added += came.len();
        element_cmd(
            &mut self.deletes,
            "delete",
            name,
            gone.iter().map(|ip| ip.to_string()),
        );
        element_cmd(
            &mut self.adds,
            "add",
            name,
            came.iter()
                .map(|(ip, chain)| format!("{ip} : jump {chain}")),
        );
    }

    fn update(self) -> Update {
        if self.added + self.deleted == 0 {
            return Update::None;
        }
        Update::Elements {
            script: format!("{}{}", self.deletes, self.adds),
            added: self.added,
            deleted: self.deleted,
        }
    }
}

/// The first line of every stage of [`staged`].
pub const STAGE_HEADER: &str = "# nftpol: structural change, stage";

/// A structural change as up to three transactions, so that a packet whose
/// walk crosses a commit meets only chains and sets that are populated in
/// both generations (docs/nftables.md, "Replacing the table"):
///
/// 1. create what only `new` has (regular chains with their rules, sets and
///    maps with their elements): nothing in force refers to it yet;
/// 2. switch: flush and refill the chains both have whose rules differ,
///    element deltas of the sets and maps both have, the generation, and
///    base chains only `new` has;
/// 3. delete what only `old` has: nothing in force refers to it any more.
///
/// Why: the kernel walks a packet's rules in the generation it read when it
/// entered the base chain, but looks set elements up in the current one. A
/// packet that entered before a commit and looks up after it must not meet
/// a chain with no rules yet (a dispatch map's new element jumping to a
/// chain created in the same transaction: it returns, and the packet falls
/// through to accept) nor a deleted map (its elements are gone: a miss is
/// "not isolated").
///
/// Each stage is an `nft -f` script and, where it can be, the same as data
/// ([`Stage::ops`]: the first always, as a [`Creation`]; the switch when it
/// refills no chain; the last always), which a netlink transport sends
/// without `nft`.
///
/// `None` when something both have changed in a way that cannot be updated
/// in place (a set's type or comment, a chain's hook or comment): then the
/// caller replaces everything in one transaction.
pub fn staged(old: &Ruleset, new: &Ruleset) -> Option<Vec<Stage>> {
    staged_in(old, new, None, new.generation)
}

/// [`staged`] when everything that differs between `old` and `new` is
/// named in `touched` (a partial compile's record): only those chains,
/// sets and maps are looked at, so neither ruleset is compared whole; the
/// generation goes to `generation` (the enforcer's, not `new`'s). The
/// stages are those [`staged`] gives for the same two rulesets.
pub fn staged_touched(
    old: &Ruleset,
    new: &Ruleset,
    touched: &Touched,
    generation: Option<Generation>,
) -> Option<Vec<Stage>> {
    staged_in(old, new, Some(touched), generation)
}

fn staged_in(
    old: &Ruleset,
    new: &Ruleset,
    scope: Option<&Touched>,
    new_generation: Option<Generation>,
) -> Option<Vec<Stage>> {
    let chain_in = |n: &str| scope.is_none_or(|t| t.chains.contains(n));
    let old_chains: BTreeMap<&str, &Chain> = old
        .chains
        .iter()
        .filter(|(n, _)| chain_in(n))
        .map(|(n, c)| (n.as_str(), c))
        .collect();
    let mut create = Create::default();
    let mut flush = String::new();
    let mut switch = String::new();
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    for (name, c) in new.chains.iter().filter(|(n, _)| chain_in(n)) {
        kept.insert(name);
        match old_chains.get(name.as_str()) {
            Some(o) if o.hook != c.hook || o.comment != c.comment => return None,
            Some(o) if o.rules == c.rules => {}
            Some(_) => {
                let _ = writeln!(flush, "flush chain inet {TABLE} {name}");
                render::chain_decl(&mut switch, name, c);
            }
            None if c.hook.is_some() => render::chain_decl(&mut switch, name, c),
            None => create.chain(name, c),
        }
    }
    // Sets and maps: every one (or the touched ones), by name.
    let names = scope.map(|t| &t.sets);
    let (old_sets, old_maps): (Vec<&str>, Vec<&str>) = match names {
        None => (
            old.sets.keys().map(String::as_str).collect(),
            old.maps.keys().map(String::as_str).collect(),
        ),
        Some(n) => (
            n.iter()
                .map(String::as_str)
                .filter(|k| old.sets.contains_key(*k))
                .collect(),
            n.iter()
                .map(String::as_str)
                .filter(|k| old.maps.contains_key(*k))
                .collect(),
        ),
    };
    let new_sets: Vec<(&String, &super::ruleset::Set)> = match names {
        None => new.sets.iter().collect(),
        Some(n) => n.iter().filter_map(|k| new.sets.get_key_value(k)).collect(),
    };
    let new_maps: Vec<(&String, &super::ruleset::VerdictMap)> = match names {
        None => new.maps.iter().collect(),
        Some(n) => n.iter().filter_map(|k| new.maps.get_key_value(k)).collect(),
    };
    for (name, sn) in new_sets {
        match old.sets.get(name) {
            Some(so) if so.kind != sn.kind || so.comment != sn.comment => return None,
            Some(_) => {}
            None => create.set(name, sn),
        }
    }
    for (name, mn) in new_maps {
        match old.maps.get(name) {
            Some(mo) if mo.family != mn.family || mo.comment != mn.comment => return None,
            Some(_) => {}
            None => create.map(name, mn),
        }
    }
    // The element changes of what both have: once, for the script and as data.
    let edits = Edits::of_common_in(old, new, names);
    let mut d = Elements::of(&edits);
    match (old.generation, new_generation) {
        (Some(o), Some(n)) => d.adds.push_str(&generation_script(o, n)),
        (None, Some(n)) => create.generation(n),
        (Some(_), None) | (None, None) => {}
    }
    let gen_gone = old.generation.is_some() && new_generation.is_none();
    let remove = removal(
        old.chains
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| chain_in(n)),
        old_maps
            .into_iter()
            .filter(|n| !new.maps.contains_key(*n))
            .chain(gen_gone.then_some(names::STAMP_MAP)),
        old_sets
            .into_iter()
            .filter(|n| !new.sets.contains_key(*n))
            .chain(gen_gone.then_some(names::GENERATION_SET)),
        &kept,
    );
    // A switch that refills no chain is element changes only: as data too.
    let switch_ops = (flush.is_empty() && switch.is_empty()).then(|| StageOps::Elements {
        edits,
        generation: old.generation.zip(new_generation),
    });
    let mut second = format!("{flush}{}{}", d.deletes, d.adds);
    second.push_str(&block_or_empty(&switch));
    Some(stages_of(create.stage(), (second, switch_ops), remove))
}

/// [`staged`] when only the names of what the kernel holds are known (the
/// agent's first sync, a sync after a failure or drift, `nftpol apply`):
/// the chains, sets and maps both have are flushed and refilled instead of
/// updated. A walk crossing the switch's commit survives that too: a
/// flushed and re-added element is replaced in the same step, and a kept
/// chain keeps its old rules in the old generation. `None` when a name
/// changes between base and regular chain or hook (then one transaction).
/// A kept set whose type changed makes the kernel refuse the switch.
pub fn staged_over(present: &Present, new: &Ruleset) -> Option<Vec<Stage>> {
    let chains: BTreeMap<&str, &Option<BaseChain>> = present
        .chains
        .iter()
        .map(|(n, b)| (n.as_str(), b))
        .collect();
    let sets: BTreeSet<&str> = present.sets.iter().map(String::as_str).collect();
    let maps: BTreeSet<&str> = present.maps.iter().map(String::as_str).collect();
    let mut create = Create::default();
    let mut flush = String::new();
    let mut switch = String::new();
    for (name, c) in &new.chains {
        match chains.get(name.as_str()) {
            Some(base) => {
                let same = match (base, c.hook) {
                    (Some(b), Some(h)) => b.hook == h.hook && b.priority == h.priority,
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return None;
                }
                let _ = writeln!(flush, "flush chain inet {TABLE} {name}");
                render::chain_decl(&mut switch, name, c);
            }
            None if c.hook.is_some() => render::chain_decl(&mut switch, name, c),
            None => create.chain(name, c),
        }
    }
    for (name, set) in &new.sets {
        if sets.contains(name.as_str()) {
            let _ = writeln!(flush, "flush set inet {TABLE} {name}");
            render::set_decl(&mut switch, name, set);
        } else {
            create.set(name, set);
        }
    }
    for (name, map) in &new.maps {
        if maps.contains(name.as_str()) {
            let _ = writeln!(flush, "flush map inet {TABLE} {name}");
            render::map_decl(&mut switch, name, map);
        } else {
            create.map(name, map);
        }
    }
    let (gen_set, gen_map) = (names::GENERATION_SET, names::STAMP_MAP);
    if let Some(g) = new.generation {
        if sets.contains(gen_set) && maps.contains(gen_map) {
            let _ = writeln!(flush, "flush set inet {TABLE} {gen_set}");
            let _ = writeln!(flush, "flush map inet {TABLE} {gen_map}");
            render::generation(&mut switch, g);
        } else if !sets.contains(gen_set) && !maps.contains(gen_map) {
            create.generation(g);
        } else {
            return None;
        }
    }
    let kept_set = |n: &str| new.sets.contains_key(n) || (new.generation.is_some() && n == gen_set);
    let kept_map = |n: &str| new.maps.contains_key(n) || (new.generation.is_some() && n == gen_map);
    let remove = removal(
        present.chains.iter().map(|(n, _)| n.as_str()),
        maps.iter().copied().filter(|n| !kept_map(n)),
        sets.iter().copied().filter(|n| !kept_set(n)),
        &new.chains.iter().map(|(n, _)| n.as_str()).collect(),
    );
    Some(stages_of(
        create.stage(),
        (format!("{flush}{}", block_or_empty(&switch)), None),
        remove,
    ))
}

/// The last stage: flush the chains of `chains` not `kept` (the new
/// ruleset's: their rules hold references to the rest), then delete the
/// maps and sets given, and those chains; as a script and as data.
fn removal<'a>(
    chains: impl Iterator<Item = &'a str>,
    maps: impl Iterator<Item = &'a str>,
    sets: impl Iterator<Item = &'a str>,
    kept: &BTreeSet<&str>,
) -> (String, Option<StageOps>) {
    // By name: a node table has thousands of chains (a scan per chain was
    // quadratic: milliseconds per structural change).
    let r = Removal {
        chains: chains
            .filter(|n| !kept.contains(n))
            .map(String::from)
            .collect(),
        maps: maps.map(String::from).collect(),
        sets: sets.map(String::from).collect(),
    };
    let mut o = String::new();
    for n in &r.chains {
        let _ = writeln!(o, "flush chain inet {TABLE} {n}");
    }
    for n in &r.maps {
        let _ = writeln!(o, "delete map inet {TABLE} {n}");
    }
    for n in &r.sets {
        let _ = writeln!(o, "delete set inet {TABLE} {n}");
    }
    for n in &r.chains {
        let _ = writeln!(o, "delete chain inet {TABLE} {n}");
    }
    (o, Some(StageOps::Remove(r)))
}

/// One transaction of a structural change ([`staged`], [`staged_over`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The stage as an `nft -f` script, headed by [`STAGE_HEADER`].
    pub script: String,
    /// The same transaction as data when it only creates, only changes
    /// elements or only deletes (what a netlink transport sends without
    /// `nft`); `None` when it refills chains.
    pub ops: Option<StageOps>,
}

/// A stage as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOps {
    /// The first stage: what only the new ruleset has.
    Create(Creation),
    /// Element changes of the sets and maps both rulesets have, and the
    /// generation step (`(from, to)`) when both have one.
    Elements {
        /// The element changes.
        edits: Edits,
        /// The generation step.
        generation: Option<(Generation, Generation)>,
    },
    /// Deletions.
    Remove(Removal),
}

/// What the last stage deletes, in this order: the rules of `chains`, the
/// maps, the sets, then the chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Chains flushed first and deleted last.
    pub chains: Vec<String>,
    /// Maps deleted.
    pub maps: Vec<String>,
    /// Sets deleted.
    pub sets: Vec<String>,
}

/// `table inet nftpol { body }`, or nothing for an empty body.
fn block_or_empty(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!("table inet {TABLE} {{\n{body}}}\n")
    }
}

/// The non-empty stages, each headed by [`STAGE_HEADER`].
fn stages_of(
    create: (String, Option<StageOps>),
    switch: (String, Option<StageOps>),
    remove: (String, Option<StageOps>),
) -> Vec<Stage> {
    let stages: Vec<(String, Option<StageOps>)> = [create, switch, remove]
        .into_iter()
        .filter(|(s, _)| !s.is_empty())
        .collect();
    let n = stages.len();
    stages
        .into_iter()
        .enumerate()
        .map(|(i, (s, ops))| Stage {
            script: format!("{STAGE_HEADER} {} of {n}\n{s}", i + 1),
            ops,
        })
        .collect()
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
mod tests;
