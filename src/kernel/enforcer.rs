//! Keeps the kernel's `inet nftpol` table equal to the latest compiled
//! ruleset, with an in-memory mirror of what the kernel holds so updates are
//! computed without listing the kernel every time.
//!
//! - Membership-only changes go in as element deltas (one transaction).
//! - Anything structural, the first sync, and every sync after a failure go
//!   in as an atomic whole-table replacement.
//! - A failed apply leaves the kernel as it was (nft transactions are all or
//!   nothing); the mirror is then distrusted until a full replacement works.
//! - `verify` lists the kernel table and compares it with the mirror (chains
//!   and their rule counts, every set and map element by value), to repair
//!   drift (someone flushed or edited the table).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

use super::apply::{ApplyError, run_nft};
use crate::core::model::ipblock::ip_to_u128;
use crate::core::model::{Cidr, Family, Protocol, Range};
use crate::core::nft::delta::{Update, diff};
use crate::core::nft::render;
use crate::core::nft::ruleset::{Element, Ruleset, SetKind, TABLE};

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The kernel already held this ruleset.
    Unchanged,
    /// Element additions/deletions.
    Delta {
        /// Elements added.
        added: usize,
        /// Elements deleted.
        deleted: usize,
    },
    /// Whole-table replacement.
    Full,
}

impl Applied {
    /// Label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Applied::Unchanged => "unchanged",
            Applied::Delta { .. } => "delta",
            Applied::Full => "full",
        }
    }
}

/// Applies rulesets to the kernel of the current network namespace.
#[derive(Debug)]
pub struct Enforcer {
    nft: String,
    /// What the kernel holds, when known for sure.
    mirror: Option<Ruleset>,
}

impl Enforcer {
    /// An enforcer running the given `nft` binary; the first sync is a full
    /// replacement of whatever table is in the kernel.
    pub fn new(nft: impl Into<String>) -> Enforcer {
        Enforcer {
            nft: nft.into(),
            mirror: None,
        }
    }

    /// The ruleset the kernel is known to hold.
    pub fn mirror(&self) -> Option<&Ruleset> {
        self.mirror.as_ref()
    }

    /// Forgets the mirror so the next sync replaces the whole table.
    pub fn invalidate(&mut self) {
        self.mirror = None;
    }

    /// Brings the kernel to `new`.
    pub fn sync(&mut self, new: &Ruleset) -> Result<Applied, ApplyError> {
        let applied = self.bring(new)?;
        if applied != Applied::Unchanged {
            self.mirror = Some(new.clone());
        }
        Ok(applied)
    }

    /// [`Enforcer::sync`], keeping `new` as the mirror without copying it
    /// (the agent's path: a copy of a node's table costs milliseconds).
    pub fn sync_owned(&mut self, new: Ruleset) -> Result<Applied, ApplyError> {
        let applied = self.bring(&new)?;
        if applied != Applied::Unchanged {
            self.mirror = Some(new);
        }
        Ok(applied)
    }

    /// Applies the difference between the mirror and `new`; the caller
    /// records `new` as the mirror unless nothing changed.
    fn bring(&mut self, new: &Ruleset) -> Result<Applied, ApplyError> {
        let update = match &self.mirror {
            Some(old) => diff(old, new),
            None => Update::Full,
        };
        Ok(match update {
            Update::None => Applied::Unchanged,
            Update::Elements {
                script,
                added,
                deleted,
            } => match run_nft(&self.nft, &script, false, false) {
                Ok(()) => Applied::Delta { added, deleted },
                // The mirror may be wrong (drift): fall back to a full replacement now.
                Err(_) => self.full(new)?,
            },
            Update::Full => self.full(new)?,
        })
    }

    fn full(&mut self, new: &Ruleset) -> Result<Applied, ApplyError> {
        self.mirror = None;
        run_nft(&self.nft, &render::script(new), false, false)?;
        Ok(Applied::Full)
    }

    /// Compares the kernel's table with the mirror: the same chains with the
    /// same number of rules, the same sets and maps with the same elements
    /// (by value). `Ok(false)` (and the mirror forgotten) when they differ.
    pub fn verify(&mut self) -> Result<bool, ApplyError> {
        let Some(mirror) = &self.mirror else {
            return Ok(false);
        };
        let listed = Command::new(&self.nft)
            .args(["-j", "list", "table", "inet", TABLE])
            .output()
            .map_err(|source| ApplyError::Spawn {
                nft: self.nft.clone(),
                source,
            })?;
        let same = listed.status.success()
            && kernel_content(&String::from_utf8_lossy(&listed.stdout))
                == Some(expected_content(mirror));
        if !same {
            self.mirror = None;
        }
        Ok(same)
    }

    /// Deletes the table (deliberate uninstall). Missing table is not an error.
    pub fn remove_table(&mut self) -> Result<(), ApplyError> {
        self.mirror = None;
        let script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
        run_nft(&self.nft, &script, false, false)
    }
}

/// What verify compares, per object: `chain NAME` → its rule count,
/// `set NAME` → its elements, `map NAME` → its address → chain entries.
/// Elements are compared by value (a swapped address is drift even when the
/// counts agree); rules only by count, since comparing rule text would mean
/// re-implementing nft's canonical listing.
type Content = BTreeMap<String, Object>;

#[derive(Debug, PartialEq, Eq)]
enum Object {
    Chain(usize),
    Set(BTreeSet<Element>),
    Map(BTreeMap<IpAddr, String>),
}

fn expected_content(rs: &Ruleset) -> Content {
    let mut s = Content::new();
    for (n, c) in &rs.chains {
        s.insert(format!("chain {n}"), Object::Chain(c.rules.len()));
    }
    for (n, set) in &rs.sets {
        let interval = matches!(set.kind, SetKind::AddrInterval(_) | SetKind::ProtoPort);
        let elements = set
            .elements
            .iter()
            .map(|e| match e {
                // The kernel lists a one-address interval as a plain address.
                Element::Addr(a) if interval => Element::Range(single(*a)),
                e => e.clone(),
            })
            .collect();
        s.insert(format!("set {n}"), Object::Set(elements));
    }
    for (n, m) in &rs.maps {
        s.insert(format!("map {n}"), Object::Map(m.elements.clone()));
    }
    s
}

/// The content of `nft -j list table` output; `None` if any part of it is
/// not a shape nftpol emits (which counts as drift).
fn kernel_content(json: &str) -> Option<Content> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut s = Content::new();
    for obj in v.get("nftables")?.as_array()? {
        if let Some(c) = obj.get("chain") {
            s.entry(format!("chain {}", c.get("name")?.as_str()?))
                .or_insert(Object::Chain(0));
        } else if let Some(r) = obj.get("rule") {
            let chain = s
                .entry(format!("chain {}", r.get("chain")?.as_str()?))
                .or_insert(Object::Chain(0));
            if let Object::Chain(n) = chain {
                *n += 1;
            }
        } else if let Some(set) = obj.get("set") {
            let interval = set
                .get("flags")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x == "interval"));
            let elements = elems(set)
                .iter()
                .map(|e| parse_element(e, interval))
                .collect::<Option<_>>()?;
            s.insert(
                format!("set {}", set.get("name")?.as_str()?),
                Object::Set(elements),
            );
        } else if let Some(m) = obj.get("map") {
            let entries = elems(m)
                .iter()
                .map(|e| {
                    let pair = e.as_array()?;
                    let target = pair.get(1)?.get("jump")?.get("target")?.as_str()?;
                    Some((parse_ip(pair.first()?)?, target.to_string()))
                })
                .collect::<Option<_>>()?;
            s.insert(
                format!("map {}", m.get("name")?.as_str()?),
                Object::Map(entries),
            );
        }
    }
    Some(s)
}

fn elems(obj: &serde_json::Value) -> &[serde_json::Value] {
    obj.get("elem")
        .and_then(|e| e.as_array())
        .map_or(&[], |e| e.as_slice())
}

fn single(a: IpAddr) -> Range {
    let n = ip_to_u128(&a);
    Range {
        family: Family::of(&a),
        start: n,
        end: n,
    }
}

fn parse_ip(v: &serde_json::Value) -> Option<IpAddr> {
    v.as_str()?.parse().ok()
}

fn parse_proto(v: &serde_json::Value) -> Option<Protocol> {
    match v.as_str()? {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => None,
    }
}

fn parse_port(v: &serde_json::Value) -> Option<u16> {
    v.as_u64()?.try_into().ok()
}

/// `a`, `{"range": [a, b]}` or `{"prefix": {"addr": a, "len": n}}`.
fn parse_range(v: &serde_json::Value) -> Option<Range> {
    if let Some(r) = v.get("range").and_then(|r| r.as_array()) {
        let (a, b) = (parse_ip(r.first()?)?, parse_ip(r.get(1)?)?);
        (Family::of(&a) == Family::of(&b)).then(|| Range {
            family: Family::of(&a),
            start: ip_to_u128(&a),
            end: ip_to_u128(&b),
        })
    } else if let Some(p) = v.get("prefix") {
        let addr = parse_ip(p.get("addr")?)?;
        let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
        Some(Cidr::parse(&format!("{addr}/{len}")).ok()?.range())
    } else {
        Some(single(parse_ip(v)?))
    }
}

/// One element as listed by `nft -j`, in the [`Element`] form the compiler
/// produces.
fn parse_element(v: &serde_json::Value, interval: bool) -> Option<Element> {
    let Some(parts) = v.get("concat").and_then(|c| c.as_array()) else {
        return if interval {
            parse_range(v).map(Element::Range)
        } else {
            parse_ip(v).map(Element::Addr)
        };
    };
    match parts.as_slice() {
        [a, b] if parse_ip(a).is_some() => Some(Element::AddrPair(parse_ip(a)?, parse_ip(b)?)),
        [p, port] => {
            let (lo, hi) = match port.get("range").and_then(|r| r.as_array()) {
                Some(r) => (parse_port(r.first()?)?, parse_port(r.get(1)?)?),
                None => (parse_port(port)?, parse_port(port)?),
            };
            Some(Element::ProtoPort(parse_proto(p)?, lo, hi))
        }
        [a, p, port] => Some(Element::AddrProtoPort(
            parse_ip(a)?,
            parse_proto(p)?,
            parse_port(port)?,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range(a: &str, b: &str) -> Element {
        let (a, b): (IpAddr, IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
        Element::Range(Range {
            family: Family::of(&a),
            start: ip_to_u128(&a),
            end: ip_to_u128(&b),
        })
    }

    #[test]
    fn listed_elements_parse_into_compiler_elements() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        // (element as `nft -j list` prints it, interval set?, expected), shapes seen on nft 1.0.6.
        let rows = [
            (
                json!("10.0.0.1"),
                false,
                Some(Element::Addr(ip("10.0.0.1"))),
            ),
            (json!("fd00::1"), false, Some(Element::Addr(ip("fd00::1")))),
            (
                json!("203.0.113.0"),
                true,
                Some(range("203.0.113.0", "203.0.113.0")),
            ),
            (
                json!({"range": ["203.0.113.2", "203.0.113.7"]}),
                true,
                Some(range("203.0.113.2", "203.0.113.7")),
            ),
            (
                json!({"prefix": {"addr": "203.0.113.192", "len": 26}}),
                true,
                Some(range("203.0.113.192", "203.0.113.255")),
            ),
            (
                json!({"prefix": {"addr": "2001:db8::", "len": 127}}),
                true,
                Some(range("2001:db8::", "2001:db8::1")),
            ),
            (
                json!({"concat": ["10.0.0.1", "10.0.0.1"]}),
                false,
                Some(Element::AddrPair(ip("10.0.0.1"), ip("10.0.0.1"))),
            ),
            (
                json!({"concat": ["10.0.0.1", "tcp", 8080]}),
                false,
                Some(Element::AddrProtoPort(ip("10.0.0.1"), Protocol::Tcp, 8080)),
            ),
            (
                json!({"concat": ["udp", 53]}),
                true,
                Some(Element::ProtoPort(Protocol::Udp, 53, 53)),
            ),
            (
                json!({"concat": ["sctp", {"range": [32000, 32768]}]}),
                true,
                Some(Element::ProtoPort(Protocol::Sctp, 32000, 32768)),
            ),
            // Anything nftpol never emits is unreadable, which verify treats as drift.
            (json!({"concat": ["icmp", 1]}), true, None),
            (
                json!({"elem": {"val": "10.0.0.1", "timeout": 5}}),
                false,
                None,
            ),
            (json!({"range": ["10.0.0.1", "fd00::1"]}), true, None),
            (json!(42), false, None),
        ];
        for (listed, interval, want) in rows {
            assert_eq!(parse_element(&listed, interval), want, "{listed}");
        }
    }

    #[test]
    fn a_swapped_element_is_a_different_content() {
        let listing = |elem: &str| {
            format!(
                r#"{{"nftables": [{{"metainfo": {{}}}}, {{"set": {{"family": "inet", "name": "s", "table": "nftpol", "type": "ipv4_addr", "elem": ["10.0.0.1", "{elem}"]}}}}]}}"#
            )
        };
        let a = kernel_content(&listing("10.0.0.2")).unwrap();
        let b = kernel_content(&listing("10.0.0.3")).unwrap();
        assert_ne!(a, b, "same count, different element");
        assert_eq!(a, kernel_content(&listing("10.0.0.2")).unwrap());
    }
}
