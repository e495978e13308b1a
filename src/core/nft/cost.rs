//! What a ruleset costs: its size, its predicted load time (`nft -f` of the
//! whole table) and the worst-case work a new connection's first packet
//! does in it, from a model fitted to the project's own measurements
//! (docs/performance.md, "Cost model"; `benches/cost_model.rs` measures and
//! fits it). `nftpol compile --stats` prints it per node.
//!
//! The coefficients below are constants so that the report is the same
//! everywhere; refit them with the bench when the ruleset's shape or the
//! kernel changes, and update the doc with the fit.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::names::{FORWARD_CHAIN, INGRESS_CHAIN, INPUT_CHAIN, tier_stage_chain};
use super::ruleset::{Match, Rule, Ruleset, Verdict};
use crate::core::model::{Direction, Family, Tier};

// The load model, fitted (least squares, weighted by relative error) to the
// 12 first loads of docs/performance.md: the "Kernel" table (6 tables of
// the synthetic cluster, small to large, node and whole-cluster views) and
// the node loads of the "ClusterNetworkPolicy at scale" table (6 tables
// with and without CNPs, a noisier run). Error of the fit and how to refit
// (`benches/cost_model.rs`): docs/performance.md, "Cost model".

/// Load model: fixed cost of one `nft -f` of the table (process start,
/// cache fetch, transaction), microseconds.
pub const LOAD_FIXED_US: f64 = 12_150.0;
/// Load model: per rule, microseconds (parsing, evaluating and committing it).
pub const LOAD_PER_RULE_US: f64 = 21.3;
/// Load model: per named set or verdict map, microseconds.
pub const LOAD_PER_SET_US: f64 = 117.0;
/// Load model: per set or map element, microseconds.
pub const LOAD_PER_ELEMENT_US: f64 = 5.6;
/// Load model: per (rule, set) pair, nanoseconds: the kernel resolves every
/// set a rule names by walking the table's list of sets by name
/// (`nft_set_lookup_global`, the top kernel symbol when profiled), so a
/// table's load grows with rules × sets.
pub const LOAD_PER_RULE_SET_NS: f64 = 5.36;
/// Per-rule cost on the packet path, nanoseconds: the linear baseline of
/// `benches/packet_path` (744 rules on every SYN) cost ≈ 31 µs per
/// connection more than conntrack alone, ≈ 40 ns per rule
/// (docs/performance.md, "Why, and what would close each miss"). A rule
/// that looks up a set or map is counted as one rule (the baseline's
/// rules compared two fields each).
pub const PACKET_PER_RULE_NS: f64 = 40.0;

/// The worst-case path of a new connection's first packet through the
/// table: rules evaluated and, among them, set or map lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Path {
    /// Rules evaluated.
    pub rules: usize,
    /// Of those, rules that look up a set or a verdict map.
    pub lookups: usize,
}

/// One table's cost report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Chains.
    pub chains: usize,
    /// Rules over all chains.
    pub rules: usize,
    /// Named sets.
    pub sets: usize,
    /// Verdict maps.
    pub maps: usize,
    /// Set and map elements.
    pub elements: usize,
    /// Bytes of the `nft -f` text.
    pub bytes: usize,
    /// Predicted time of a whole-table load, milliseconds.
    pub load_ms: f64,
    /// Worst-case path of the first packet, both ends (the source's egress
    /// and the destination's ingress).
    pub first_packet: Path,
    /// Of that, the destination's ingress end.
    pub ingress: Path,
    /// Predicted extra cost of a new connection's first packet in the worst
    /// case, microseconds.
    pub new_connection_us: f64,
}

/// The model's coefficients, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Model {
    /// [`LOAD_FIXED_US`].
    pub load_fixed_us: f64,
    /// [`LOAD_PER_RULE_US`].
    pub load_per_rule_us: f64,
    /// [`LOAD_PER_SET_US`].
    pub load_per_set_us: f64,
    /// [`LOAD_PER_ELEMENT_US`].
    pub load_per_element_us: f64,
    /// [`LOAD_PER_RULE_SET_NS`].
    pub load_per_rule_set_ns: f64,
    /// [`PACKET_PER_RULE_NS`].
    pub packet_per_rule_ns: f64,
}

/// The coefficients in force.
pub const MODEL: Model = Model {
    load_fixed_us: LOAD_FIXED_US,
    load_per_rule_us: LOAD_PER_RULE_US,
    load_per_set_us: LOAD_PER_SET_US,
    load_per_element_us: LOAD_PER_ELEMENT_US,
    load_per_rule_set_ns: LOAD_PER_RULE_SET_NS,
    packet_per_rule_ns: PACKET_PER_RULE_NS,
};

/// Predicted whole-table load time, milliseconds.
pub fn predicted_load_ms(rules: usize, sets_and_maps: usize, elements: usize) -> f64 {
    (LOAD_FIXED_US
        + LOAD_PER_RULE_US * rules as f64
        + LOAD_PER_SET_US * sets_and_maps as f64
        + LOAD_PER_ELEMENT_US * elements as f64
        + LOAD_PER_RULE_SET_NS / 1000.0 * rules as f64 * sets_and_maps as f64)
        / 1000.0
}

/// The cost of a ruleset whose `nft -f` text is `bytes` long.
pub fn cost(rs: &Ruleset, bytes: usize) -> Cost {
    let s = rs.stats();
    // A packet is IPv4 or IPv6: one walk per family, the worse one counts.
    let mut walks: Vec<Walk> = Family::ALL
        .into_iter()
        .map(|family| Walk {
            rs,
            family,
            memo: BTreeMap::new(),
            visiting: BTreeSet::new(),
        })
        .collect();
    let worst = |walks: &mut [Walk], chain: &str| {
        walks
            .iter_mut()
            .map(|w| w.worst(chain))
            .fold(Path::default(), longer)
    };
    let first_packet = [FORWARD_CHAIN, INPUT_CHAIN]
        .into_iter()
        .filter(|c| rs.chain(c).is_some())
        .map(|c| worst(&mut walks, c))
        .fold(Path::default(), longer);
    // The ingress end starts at the Admin tier's ingress stage when there is one.
    let admin_ingress = tier_stage_chain(Tier::Admin, Direction::Ingress);
    let entry = if rs.chain(&admin_ingress).is_some() {
        admin_ingress.as_str()
    } else {
        INGRESS_CHAIN
    };
    let ingress = if rs.chain(entry).is_some() {
        worst(&mut walks, entry)
    } else {
        Path::default()
    };
    Cost {
        chains: s.chains,
        rules: s.rules,
        sets: s.sets,
        maps: s.maps,
        elements: s.elements,
        bytes,
        load_ms: predicted_load_ms(s.rules, s.sets + s.maps, s.elements),
        first_packet,
        ingress,
        new_connection_us: first_packet.rules as f64 * PACKET_PER_RULE_NS / 1000.0,
    }
}

/// Worst-case paths per chain: `(returning, leaving)` — the most rules a
/// packet evaluates if it falls off the chain's end (back to the caller),
/// and if it leaves through a `goto` (never returning). Conditional
/// verdicts (accept, drop) are assumed not to match: the worst case. A rule
/// of the other family is evaluated (its first expression checks the
/// family) but never jumps.
struct Walk<'a> {
    rs: &'a Ruleset,
    family: Family,
    memo: BTreeMap<String, (Option<Path>, Path)>,
    visiting: BTreeSet<String>,
}

fn add(a: Path, b: Path) -> Path {
    Path {
        rules: a.rules + b.rules,
        lookups: a.lookups + b.lookups,
    }
}

fn longer(a: Path, b: Path) -> Path {
    if (b.rules, b.lookups) > (a.rules, a.lookups) {
        b
    } else {
        a
    }
}

impl Walk<'_> {
    fn worst(&mut self, chain: &str) -> Path {
        let (ret, leave) = self.chain(chain);
        longer(ret.unwrap_or_default(), leave)
    }

    /// `(returning, leaving)`; `returning` is `None` when the chain never
    /// falls off its end (it ends with an unconditional verdict).
    fn chain(&mut self, name: &str) -> (Option<Path>, Path) {
        if let Some(p) = self.memo.get(name) {
            return *p;
        }
        // The emitted shapes have no cycles; a cycle would count as empty.
        if !self.visiting.insert(name.to_string()) {
            return (Some(Path::default()), Path::default());
        }
        let Some(chain) = self.rs.chain(name) else {
            return (Some(Path::default()), Path::default());
        };
        let mut acc = Some(Path::default());
        let mut leave = Path::default();
        for r in &chain.rules {
            let Some(before) = acc else { break };
            let looks = r.matches.iter().any(|m| {
                matches!(
                    m,
                    Match::SelfPair(..)
                        | Match::AddrIn(..)
                        | Match::ProtoPortIn(_)
                        | Match::DstProtoPortIn(..)
                )
            }) || matches!(r.verdict, Verdict::AddrVmap(..));
            let this = add(
                before,
                Path {
                    rules: 1,
                    lookups: looks as usize,
                },
            );
            if rule_family(r).is_some_and(|f| f != self.family) {
                acc = Some(this);
                continue;
            }
            let always = r.matches.is_empty();
            let targets: Vec<String> = match &r.verdict {
                Verdict::Jump(t) | Verdict::Goto(t) => vec![t.clone()],
                Verdict::AddrVmap(_, _, map) => self
                    .rs
                    .maps
                    .get(map)
                    .map(|m| m.elements.values().cloned().collect::<BTreeSet<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            };
            let (mut ret, mut lv) = (None::<Path>, Path::default());
            for t in &targets {
                let (tr, tl) = self.chain(t);
                ret = match (ret, tr) {
                    (Some(a), Some(b)) => Some(longer(a, b)),
                    (a, b) => a.or(b),
                };
                lv = longer(lv, tl);
            }
            match &r.verdict {
                Verdict::Goto(_) => {
                    leave = longer(leave, add(this, longer(ret.unwrap_or_default(), lv)));
                    acc = (!always).then_some(this);
                }
                Verdict::Jump(_) | Verdict::AddrVmap(..) => {
                    leave = longer(leave, add(this, lv));
                    let through = ret.map(|p| add(this, p));
                    // A vmap, or a jump with matches, may also not be taken.
                    let skipped =
                        (!always || matches!(r.verdict, Verdict::AddrVmap(..))).then_some(this);
                    acc = match (through, skipped) {
                        (Some(a), Some(b)) => Some(longer(a, b)),
                        (a, b) => a.or(b),
                    };
                }
                Verdict::Accept | Verdict::CountedDrop => {
                    if always {
                        leave = longer(leave, this);
                        acc = None;
                    } else {
                        acc = Some(this);
                    }
                }
                // Statements, and a return (an upper bound: the rules after
                // an unconditional return are counted as if reachable).
                Verdict::Log(_)
                | Verdict::Return
                | Verdict::CtRevoke
                | Verdict::CtClearStamp
                | Verdict::CtStamp => acc = Some(this),
            }
        }
        self.visiting.remove(name);
        self.memo.insert(name.to_string(), (acc, leave));
        (acc, leave)
    }
}

/// The family a rule is limited to, if any.
fn rule_family(r: &Rule) -> Option<Family> {
    if let Verdict::AddrVmap(f, ..) = r.verdict {
        return Some(f);
    }
    r.matches.iter().find_map(|m| match m {
        Match::SelfPair(f, _) | Match::AddrIn(f, ..) | Match::DstProtoPortIn(f, _) => Some(*f),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nft::ruleset::Chain;

    fn rule(verdict: Verdict) -> Rule {
        Rule {
            matches: vec![Match::CtEstablishedRelated],
            verdict,
            comment: None,
        }
    }

    fn chain(rules: Vec<Rule>) -> Chain {
        Chain {
            hook: None,
            comment: String::new(),
            rules,
        }
    }

    #[test]
    fn worst_path_counts_jumps_that_return_and_gotos_that_leave() {
        // forward: r, jump a (3 rules, returns), goto pod-ingress (2 rules).
        let rs = Ruleset {
            chains: vec![
                (
                    FORWARD_CHAIN.to_string(),
                    chain(vec![
                        rule(Verdict::Accept),
                        rule(Verdict::Jump("a".into())),
                        rule(Verdict::Goto(INGRESS_CHAIN.into())),
                    ]),
                ),
                (
                    "a".to_string(),
                    chain(vec![
                        rule(Verdict::Accept),
                        rule(Verdict::Accept),
                        rule(Verdict::CountedDrop),
                    ]),
                ),
                (
                    INGRESS_CHAIN.to_string(),
                    chain(vec![rule(Verdict::Accept), rule(Verdict::Accept)]),
                ),
            ],
            ..Default::default()
        };
        let c = cost(&rs, 100);
        // 1 + (1 + 3) + (1 + 2) = 8 rules.
        assert_eq!(c.first_packet.rules, 8);
        assert_eq!(c.ingress.rules, 2);
        assert_eq!(c.rules, 8);
        assert!((c.new_connection_us - 8.0 * PACKET_PER_RULE_NS / 1000.0).abs() < 1e-9);
    }
}
