//! Rendering the typed ruleset as an `nft -f` script.
//!
//! The script first declares and deletes the table, then recreates it whole:
//! `nft -f` runs it as one transaction, so the kernel switches from the old
//! table to the new one atomically, and a fresh namespace (no table yet)
//! works too.

use std::fmt::Write;

use super::ruleset::{
    Chain, Element, Generation, Match, Rule, Ruleset, Set, SetKind, TABLE, Verdict, VerdictMap,
};
use super::{delta, names};
use crate::core::model::Family;

/// IPv6 neighbour discovery types that must always pass (bridged pods).
pub const ND_TYPES: [&str; 5] = [
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "nd-redirect",
];

fn ip_kw(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn addr_type(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

/// The nft type expression of a set kind, and whether it needs `flags interval`.
pub fn set_type(kind: SetKind) -> (String, bool) {
    match kind {
        SetKind::Addr(f) => (addr_type(f).to_string(), false),
        SetKind::AddrInterval(f) => (addr_type(f).to_string(), true),
        SetKind::AddrPair(f) => (format!("{0} . {0}", addr_type(f)), false),
        SetKind::AddrProtoPort(f) => (
            format!("{} . inet_proto . inet_service", addr_type(f)),
            false,
        ),
        SetKind::ProtoPort => ("inet_proto . inet_service".to_string(), true),
    }
}

/// One element in nft syntax.
pub fn element(e: &Element) -> String {
    match e {
        Element::Addr(a) => a.to_string(),
        Element::Range(r) => r.to_string(),
        Element::AddrPair(a, b) => format!("{a} . {b}"),
        Element::AddrProtoPort(a, p, n) => format!("{a} . {} . {n}", p.nft()),
        Element::ProtoPort(p, a, b) if a == b => format!("{} . {a}", p.nft()),
        Element::ProtoPort(p, a, b) => format!("{} . {a}-{b}", p.nft()),
    }
}

/// A `ct mark` value as nft lists it.
pub fn mark(m: u32) -> String {
    format!("{m:#010x}")
}

/// The generation's set and map (nft syntax, inside the table block).
pub(super) fn generation(o: &mut String, g: Generation) {
    let _ = writeln!(o, "\tset {} {{", names::GENERATION_SET);
    o.push_str("\t\ttype mark\n");
    let _ = writeln!(o, "\t\tcomment \"{}\"", names::GENERATION_COMMENT);
    let _ = writeln!(o, "\t\telements = {{ {} }}", mark(g.stamp()));
    o.push_str("\t}\n");
    let _ = writeln!(o, "\tmap {} {{", names::STAMP_MAP);
    o.push_str("\t\ttype mark : mark\n");
    let _ = writeln!(o, "\t\tcomment \"{}\"", names::STAMP_COMMENT);
    let _ = writeln!(o, "\t\telements = {{ {} }}", stamp_element(g));
    o.push_str("\t}\n");
}

/// The one element of the stamp map, `0x00000000 : STAMP`.
pub fn stamp_element(g: Generation) -> String {
    format!("{} : {}", mark(0), mark(g.stamp()))
}

/// One match in nft syntax.
pub fn match_expr(m: &Match) -> String {
    match m {
        Match::CtEstablishedRelated => "ct state established,related".to_string(),
        Match::NeighbourDiscovery => format!("icmpv6 type {{ {} }}", ND_TYPES.join(", ")),
        Match::SelfPair(f, set) => {
            let k = ip_kw(*f);
            format!("{k} saddr . {k} daddr @{set}")
        }
        Match::AddrIn(f, a, set) => format!("{} {} @{set}", ip_kw(*f), a.nft()),
        Match::AddrNotIn(f, a, set) => format!("{} {} != @{set}", ip_kw(*f), a.nft()),
        Match::ProtoPortIn(set) => format!("meta l4proto . th dport @{set}"),
        Match::DstProtoPortIn(f, set) => {
            format!("{} daddr . meta l4proto . th dport @{set}", ip_kw(*f))
        }
        Match::FibDaddrLocal => "fib daddr type local".to_string(),
        Match::CtEstablishedCurrent => {
            format!("ct state established ct mark @{}", names::GENERATION_SET)
        }
        Match::CtStampCurrent => format!("ct mark @{}", names::GENERATION_SET),
        Match::CtReply => "ct direction reply".to_string(),
        Match::CtRevoked => format!("ct mark and {0} == {0}", mark(Generation::MASK)),
        Match::CtRelated => "ct state related".to_string(),
    }
}

/// A verdict in nft syntax.
pub fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".to_string(),
        Verdict::CountedDrop => "counter drop".to_string(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Return => "return".to_string(),
        Verdict::AddrVmap(f, a, map) => format!("{} {} vmap @{map}", ip_kw(*f), a.nft()),
        // The order `nft list` prints, so the listing reads like the script.
        Verdict::Log(l) => format!(
            "limit rate {}/second burst {} packets log prefix \"{}\" group {}",
            l.rate, l.burst, l.prefix, l.group
        ),
        Verdict::CtRevoke => format!("ct mark set ct mark or {}", mark(Generation::MASK)),
        Verdict::CtClearStamp => format!("ct mark set ct mark and {}", mark(!Generation::MASK)),
        Verdict::CtStamp => format!(
            "ct mark set ct mark and {} map @{}",
            mark(!Generation::MASK),
            names::STAMP_MAP
        ),
    }
}

/// A rule in nft syntax (without indentation).
pub fn rule(r: &Rule) -> String {
    let mut s = String::new();
    for m in &r.matches {
        s.push_str(&match_expr(m));
        s.push(' ');
    }
    s.push_str(&verdict(&r.verdict));
    if let Some(c) = &r.comment {
        let _ = write!(s, " comment \"{c}\"");
    }
    s
}

/// The whole script for `nft -f`: atomic create-or-replace of `inet nftpol`
/// (deletes the table, whatever it holds, and creates it again). What
/// `nftpol compile` prints; the enforcer uses [`replacement`], which keeps
/// the base chains (docs/nftables.md, "Replacing the table").
pub fn script(rs: &Ruleset) -> String {
    let mut o = String::with_capacity(4096);
    o.push_str("#!/usr/sbin/nft -f\n");
    o.push_str("# Generated by nftpol. Loading this file replaces table inet nftpol atomically.\n");
    let _ = writeln!(o, "table inet {TABLE}");
    let _ = writeln!(o, "delete table inet {TABLE}");
    body(&mut o, rs);
    o
}

/// A whole-table replacement in one transaction that keeps the base chains
/// `present` and `rs` have in common (same name, hook and priority; the
/// kernel keeps a kept chain's comment, so base chain comments do not
/// change with the layout):
/// their rules are flushed and replaced, every other chain, set and map of
/// `present` is deleted, and `rs` is created.
///
/// Why not `delete table`: a new base chain is registered with the kernel
/// while the transaction is prepared, and at equal priority ahead of the old
/// one. A packet that meets the new chain just before the commit (its rules
/// not active yet: accept) and the old one just after (its rules gone:
/// accept) passes neither table's policy. A kept base chain switches from
/// old rules to new ones in one step.
pub fn replacement(rs: &Ruleset, present: &delta::Present) -> String {
    let mut o = String::with_capacity(4096);
    o.push_str("#!/usr/sbin/nft -f\n");
    o.push_str(
        "# Generated by nftpol: replaces table inet nftpol atomically, keeping its base chains.\n",
    );
    let _ = writeln!(o, "table inet {TABLE}");
    let _ = writeln!(o, "flush table inet {TABLE}");
    for m in &present.maps {
        let _ = writeln!(o, "delete map inet {TABLE} {m}");
    }
    for s in &present.sets {
        let _ = writeln!(o, "delete set inet {TABLE} {s}");
    }
    let kept = |name: &str, base: &delta::BaseChain| {
        rs.chain(name).is_some_and(|c| {
            c.hook
                .is_some_and(|h| h.hook == base.hook && h.priority == base.priority)
        })
    };
    for (name, base) in &present.chains {
        if base.as_ref().is_some_and(|b| kept(name, b)) {
            continue;
        }
        let _ = writeln!(o, "delete chain inet {TABLE} {name}");
    }
    body(&mut o, rs);
    o
}

/// `table inet nftpol { … }` with everything `rs` holds.
fn body(o: &mut String, rs: &Ruleset) {
    let _ = writeln!(o, "table inet {TABLE} {{");
    if let Some(g) = rs.generation {
        generation(o, g);
    }
    for (name, m) in &rs.maps {
        map_decl(o, name, m);
    }
    for (name, s) in &rs.sets {
        set_decl(o, name, s);
    }
    for (name, c) in &rs.chains {
        chain_decl(o, name, c);
    }
    o.push_str("}\n");
}

/// A verdict map with its elements (inside the table block).
pub(super) fn map_decl(o: &mut String, name: &str, m: &VerdictMap) {
    let _ = writeln!(o, "\tmap {name} {{");
    let _ = writeln!(o, "\t\ttype {} : verdict", addr_type(m.family));
    let _ = writeln!(o, "\t\tcomment \"{}\"", m.comment);
    if !m.elements.is_empty() {
        o.push_str("\t\telements = {\n");
        for (ip, chain) in &m.elements {
            let _ = writeln!(o, "\t\t\t{ip} : jump {chain},");
        }
        o.push_str("\t\t}\n");
    }
    o.push_str("\t}\n");
}

/// A set with its elements (inside the table block).
pub(super) fn set_decl(o: &mut String, name: &str, s: &Set) {
    let (ty, interval) = set_type(s.kind);
    let _ = writeln!(o, "\tset {name} {{");
    let _ = writeln!(o, "\t\ttype {ty}");
    if interval {
        o.push_str("\t\tflags interval\n");
    }
    let _ = writeln!(o, "\t\tcomment \"{}\"", s.comment);
    if !s.elements.is_empty() {
        o.push_str("\t\telements = {\n");
        for e in &s.elements {
            let _ = writeln!(o, "\t\t\t{},", element(e));
        }
        o.push_str("\t\t}\n");
    }
    o.push_str("\t}\n");
}

/// A chain with its rules (inside the table block; for a chain that exists,
/// the rules are appended).
pub(super) fn chain_decl(o: &mut String, name: &str, c: &Chain) {
    let _ = writeln!(o, "\tchain {name} {{");
    let _ = writeln!(o, "\t\tcomment \"{}\"", c.comment);
    if let Some(h) = &c.hook {
        let prio = match h.priority {
            0 => "filter".to_string(),
            p => p.to_string(),
        };
        let _ = writeln!(
            o,
            "\t\ttype filter hook {} priority {prio}; policy accept;",
            h.hook
        );
    }
    for r in &c.rules {
        let _ = writeln!(o, "\t\t{}", rule(r));
    }
    o.push_str("\t}\n");
}
