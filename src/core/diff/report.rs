//! Changed classes merged into rows, and the two renderings: text for
//! people, JSON for tools (schema in docs/review.md).
//!
//! Merging keeps the product structure exact: a row means *every* source of
//! `from` × every destination of `to` × every port of `ports` × every family
//! changed as it says. Port atoms merge first (same ends, change and
//! reasons), then address atoms (same pod end, ports and reasons), then
//! families.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::connectivity::{Changed, Class};
use super::partition::{End, Partition};
use super::ruleset::ObjectChange;
use super::{Diff, RulesetDelta};
use crate::core::model::{Cidr, Family, Labels, Protocol, Range};

/// Ports of one protocol, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortRange {
    /// `tcp`, `udp` or `sctp`.
    #[serde(serialize_with = "protocol_name")]
    pub protocol: Protocol,
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

fn protocol_name<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.nft())
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// One end of a row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowEnd {
    /// A pod group.
    Pods {
        /// Namespace.
        namespace: String,
        /// Labels (in the tree after).
        labels: Labels,
        /// Labels before, when they differ.
        #[serde(skip_serializing_if = "Option::is_none")]
        labels_before: Option<Labels>,
        /// The pods, `ns/name`.
        pods: Vec<String>,
    },
    /// Addresses that are no pod's, as CIDRs.
    Addresses {
        /// The CIDRs.
        cidrs: Vec<String>,
        /// Nodes whose addresses these are (a Node address is its own range).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<String>,
    },
}

/// A verdict before or after, in a row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RowVerdict {
    /// `allowed` or `denied`.
    pub verdict: &'static str,
    /// The tier, policy and rule that decide each side.
    pub reason: String,
}

/// Flows whose verdict changed the same way for the same reasons.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Row {
    /// `widened` (now allowed) or `narrowed` (now denied).
    #[serde(rename = "change", serialize_with = "change_name")]
    pub widened: bool,
    /// Sources.
    pub from: RowEnd,
    /// Destinations.
    pub to: RowEnd,
    /// Address families.
    pub families: Vec<&'static str>,
    /// Destination ports.
    pub ports: Vec<PortRange>,
    /// Before.
    pub before: RowVerdict,
    /// After.
    pub after: RowVerdict,
}

fn change_name<S: serde::Serializer>(w: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *w { "widened" } else { "narrowed" })
}

/// An end while merging: a group, or a set of atoms of one family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Merging {
    Group(usize),
    Atoms(Family, Vec<usize>),
}

fn verdict(allowed: bool, reason: &str) -> RowVerdict {
    RowVerdict {
        verdict: if allowed { "allowed" } else { "denied" },
        reason: reason.to_string(),
    }
}

/// The changed classes as rows, widened first.
pub fn rows(p: &Partition, changed: &BTreeMap<Class, Changed>) -> Vec<Row> {
    // 1. Ports: same ends, family and verdicts.
    type Key1 = (End, End, Family, bool, String, String);
    let mut by_ends: BTreeMap<Key1, Vec<usize>> = BTreeMap::new();
    for (c, ch) in changed {
        by_ends
            .entry((
                c.src,
                c.dst,
                c.family,
                ch.after.allowed,
                ch.before.reason.clone(),
                ch.after.reason.clone(),
            ))
            .or_default()
            .push(c.port);
    }
    // 2. Address atoms: same pod end, ports, family and verdicts.
    type Key2 = (
        Merging,
        Merging,
        Family,
        bool,
        String,
        String,
        Vec<PortRange>,
    );
    let mut by_ports: BTreeMap<Key2, Vec<usize>> = BTreeMap::new();
    for ((src, dst, family, widened, before, after), ports) in by_ends {
        let ports = port_ranges(p, &ports);
        let (s, d, atom) = match (src, dst) {
            (End::Atom(f, i), End::Group(g)) => {
                (Merging::Atoms(f, vec![]), Merging::Group(g), Some(i))
            }
            (End::Group(g), End::Atom(f, i)) => {
                (Merging::Group(g), Merging::Atoms(f, vec![]), Some(i))
            }
            (End::Group(a), End::Group(b)) => (Merging::Group(a), Merging::Group(b), None),
            (End::Atom(..), End::Atom(..)) => continue,
        };
        let e = by_ports
            .entry((s, d, family, widened, before, after, ports))
            .or_default();
        e.extend(atom);
    }
    // 3. Families: same everything else.
    type Key3 = (Merging, Merging, bool, String, String, Vec<PortRange>);
    let mut by_family: BTreeMap<Key3, Vec<Family>> = BTreeMap::new();
    for ((s, d, family, widened, before, after, ports), atoms) in by_ports {
        let fill = |m: Merging| match m {
            Merging::Atoms(f, _) => Merging::Atoms(f, atoms.clone()),
            g => g,
        };
        by_family
            .entry((fill(s), fill(d), widened, before, after, ports))
            .or_default()
            .push(family);
    }
    let mut out: Vec<Row> = by_family
        .into_iter()
        .map(|((s, d, widened, before, after, ports), families)| Row {
            widened,
            from: row_end(p, &s),
            to: row_end(p, &d),
            families: families.into_iter().map(family_name).collect(),
            ports,
            before: verdict(!widened, &before),
            after: verdict(widened, &after),
        })
        .collect();
    out.sort_by(|a, b| b.widened.cmp(&a.widened).then_with(|| a.cmp(b)));
    out
}

fn port_ranges(p: &Partition, atoms: &[usize]) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    let mut sorted: Vec<_> = atoms.iter().map(|&i| p.ports[i]).collect();
    sorted.sort();
    for a in sorted {
        match out.last_mut() {
            Some(l) if l.protocol == a.protocol && l.last as u32 + 1 == a.first as u32 => {
                l.last = a.last;
            }
            _ => out.push(PortRange {
                protocol: a.protocol,
                first: a.first,
                last: a.last,
            }),
        }
    }
    out
}

fn row_end(p: &Partition, m: &Merging) -> RowEnd {
    match m {
        Merging::Group(g) => {
            let g = &p.groups[*g];
            RowEnd::Pods {
                namespace: g.namespace.clone(),
                labels: g.after.labels.clone(),
                labels_before: (g.before.labels != g.after.labels).then(|| g.before.labels.clone()),
                pods: g.pods.iter().map(|id| id.to_string()).collect(),
            }
        }
        Merging::Atoms(f, atoms) => {
            let list = &p.atoms[f];
            let mut ranges: Vec<Range> = Vec::new();
            let mut nodes = Vec::new();
            let mut sorted = atoms.clone();
            sorted.sort();
            for i in sorted {
                let a = &list[i];
                nodes.extend(a.nodes.iter().cloned());
                match ranges.last_mut() {
                    Some(l) if l.end.checked_add(1) == Some(a.range.start) => l.end = a.range.end,
                    _ => ranges.push(a.range),
                }
            }
            nodes.sort();
            nodes.dedup();
            RowEnd::Addresses {
                cidrs: ranges
                    .iter()
                    .flat_map(cidrs)
                    .map(|c| c.to_string())
                    .collect(),
                nodes,
            }
        }
    }
}

/// The fewest CIDRs covering exactly a range.
pub fn cidrs(r: &Range) -> Vec<Cidr> {
    let bits = r.family.bits();
    let low_mask = |h: u32| {
        if h >= 128 {
            u128::MAX
        } else {
            (1u128 << h) - 1
        }
    };
    let mut out = Vec::new();
    let mut start = r.start;
    loop {
        // The largest aligned block at `start` that does not pass the end.
        let mut h = 0;
        while h < bits {
            let m = low_mask(h + 1);
            if start & m != 0 || start.checked_add(m).is_none_or(|e| e > r.end) {
                break;
            }
            h += 1;
        }
        out.push(Cidr {
            family: r.family,
            addr: start,
            len: (bits - h) as u8,
        });
        match start
            .checked_add(low_mask(h))
            .and_then(|e| e.checked_add(1))
        {
            Some(next) if next <= r.end => start = next,
            _ => break,
        }
    }
    out
}

fn labels_text(l: &Labels) -> String {
    if l.is_empty() {
        return "(no labels)".to_string();
    }
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn end_text(e: &RowEnd) -> String {
    match e {
        RowEnd::Pods {
            namespace,
            labels,
            labels_before,
            pods,
        } => {
            let names: Vec<&str> = pods
                .iter()
                .map(|p| p.split_once('/').map_or(p.as_str(), |(_, n)| n))
                .collect();
            let shown = if names.len() > 3 {
                format!("{}, +{} more", names[..3].join(", "), names.len() - 3)
            } else {
                names.join(", ")
            };
            let was = labels_before
                .as_ref()
                .map(|b| format!(" (was {})", labels_text(b)))
                .unwrap_or_default();
            format!("{namespace}: {}{was} [{shown}]", labels_text(labels))
        }
        RowEnd::Addresses { cidrs, nodes } => {
            let shown = if cidrs.len() > 4 {
                format!("{}, +{} more", cidrs[..4].join(", "), cidrs.len() - 4)
            } else {
                cidrs.join(", ")
            };
            if nodes.is_empty() {
                shown
            } else {
                format!("{shown} (node {})", nodes.join(", "))
            }
        }
    }
}

fn ports_text(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(|p| {
            let all = p.first == 1 && p.last == 65535;
            match (all, p.first == p.last) {
                (true, _) => format!("{}/any", p.protocol.nft()),
                (_, true) => format!("{}/{}", p.protocol.nft(), p.first),
                _ => format!("{}/{}-{}", p.protocol.nft(), p.first, p.last),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ruleset_title(d: &RulesetDelta) -> String {
    match &d.node {
        Some(n) => format!("of node {n}"),
        None => "enforcing every pod (no --node)".to_string(),
    }
}

fn change_word(c: ObjectChange) -> &'static str {
    match c {
        ObjectChange::Added => "added",
        ObjectChange::Removed => "removed",
        ObjectChange::Changed => "changed",
    }
}

/// Elements listed per set in the text report; JSON lists all.
const ELEMENTS_SHOWN: usize = 8;

impl Diff {
    /// The readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Connectivity: {} widened, {} narrowed",
            self.widened(),
            self.narrowed()
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "\n{} {} -> {}  {}  {}",
                if r.widened { "WIDENED " } else { "NARROWED" },
                end_text(&r.from),
                end_text(&r.to),
                ports_text(&r.ports),
                r.families.join(",")
            );
            let _ = writeln!(s, "  before: {}: {}", r.before.verdict, r.before.reason);
            let _ = writeln!(s, "  after:  {}: {}", r.after.verdict, r.after.reason);
        }
        let pods = |s: &mut String, what: &str, list: &[crate::core::model::ObjectRef]| {
            if !list.is_empty() {
                let names: Vec<String> = list.iter().map(|p| p.to_string()).collect();
                let _ = writeln!(
                    s,
                    "\nPods only {what} (their flows are not compared): {}",
                    names.join(", ")
                );
            }
        };
        pods(&mut s, "before", &self.pods_removed);
        pods(&mut s, "after", &self.pods_added);
        for n in &self.notes {
            let _ = writeln!(s, "\nnote: {n}");
        }
        if self.rulesets.is_empty() {
            let _ = writeln!(s, "\nRulesets: no change");
        }
        for d in &self.rulesets {
            let (added, removed) = d.element_counts();
            let counts: Vec<String> = [
                ("set", d.sets.len()),
                ("map", d.maps.len()),
                ("chain", d.chains.len()),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
            .collect();
            let _ = writeln!(
                s,
                "\nRuleset {}: {} differ{}; elements +{added} -{removed}",
                ruleset_title(d),
                counts.join(", "),
                if counts.len() == 1 && counts[0].starts_with("1 ") {
                    "s"
                } else {
                    ""
                },
            );
            for (kind, list) in [("set", &d.sets), ("map", &d.maps)] {
                for set in list.iter() {
                    let def = if set.definition_changed {
                        ", definition changed"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        s,
                        "  {kind} {} {}{def}: +{} -{}  ({})",
                        set.name,
                        change_word(set.change),
                        set.added.len(),
                        set.removed.len(),
                        set.comment
                    );
                    for (sign, els) in [("+", &set.added), ("-", &set.removed)] {
                        for e in els.iter().take(ELEMENTS_SHOWN) {
                            let _ = writeln!(s, "    {sign} {e}");
                        }
                        if els.len() > ELEMENTS_SHOWN {
                            let _ =
                                writeln!(s, "    {sign} ... {} more", els.len() - ELEMENTS_SHOWN);
                        }
                    }
                }
            }
            for c in &d.chains {
                let _ = writeln!(
                    s,
                    "  chain {} {}: {} -> {} rules  ({})",
                    c.name,
                    change_word(c.change),
                    c.rules_before,
                    c.rules_after,
                    c.comment
                );
            }
        }
        s
    }

    /// The JSON report (pretty, one trailing newline; schema in docs/review.md).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Connectivity<'a> {
            widened: usize,
            narrowed: usize,
            rows: &'a [Row],
        }
        #[derive(Serialize)]
        struct Pods {
            added: Vec<String>,
            removed: Vec<String>,
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            connectivity: Connectivity<'a>,
            pods: Pods,
            rulesets: &'a [RulesetDelta],
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            notes: &'a [String],
        }
        let names = |l: &[crate::core::model::ObjectRef]| l.iter().map(|p| p.to_string()).collect();
        let doc = Doc {
            connectivity: Connectivity {
                widened: self.widened(),
                narrowed: self.narrowed(),
                rows: &self.rows,
            },
            pods: Pods {
                added: names(&self.pods_added),
                removed: names(&self.pods_removed),
            },
            rulesets: &self.rulesets,
            notes: &self.notes,
        };
        let mut s = serde_json::to_string_pretty(&doc).expect("plain data serialises");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_the_fewest_cidrs() {
        let r = |f: Family, a: &str, b: &str| Range {
            family: f,
            start: crate::core::model::ipblock::ip_to_u128(&a.parse().unwrap()),
            end: crate::core::model::ipblock::ip_to_u128(&b.parse().unwrap()),
        };
        let table: &[(Range, &[&str], &str)] = &[
            (
                r(Family::V4, "0.0.0.0", "255.255.255.255"),
                &["0.0.0.0/0"],
                "everything",
            ),
            (
                r(Family::V4, "10.0.0.5", "10.0.0.5"),
                &["10.0.0.5/32"],
                "one address",
            ),
            (
                r(Family::V4, "0.0.0.0", "203.0.112.255"),
                &[
                    "0.0.0.0/1",
                    "128.0.0.0/2",
                    "192.0.0.0/5",
                    "200.0.0.0/7",
                    "202.0.0.0/8",
                    "203.0.0.0/18",
                    "203.0.64.0/19",
                    "203.0.96.0/20",
                    "203.0.112.0/24",
                ],
                "below an except",
            ),
            (
                r(Family::V4, "10.0.0.3", "10.0.0.8"),
                &["10.0.0.3/32", "10.0.0.4/30", "10.0.0.8/32"],
                "unaligned",
            ),
            (
                r(Family::V6, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                &["::/0"],
                "all of IPv6",
            ),
        ];
        for (range, want, why) in table {
            let got: Vec<String> = cidrs(range).iter().map(|c| c.to_string()).collect();
            assert_eq!(got, *want, "{why}");
        }
    }
}
