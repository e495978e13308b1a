//! Reading the kernel's table back: `nft -j list table inet nftpol` parsed
//! into a [`Content`] that [`expected`] also computes from a [`Ruleset`], so
//! the enforcer's drift check is one comparison. [`render`] writes the
//! listing nft would print for a ruleset (what the fake `nft` lists).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::core::model::ipblock::{ip_to_u128, u128_to_ip};
use crate::core::model::{Cidr, Family, Protocol, Range};
use crate::core::nft::delta::{BaseChain, Present};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Element, Generation, Ruleset, SetKind, TABLE, Verdict};

mod stream;

/// What verify compares, per object: `chain NAME` → its rule count,
/// `set NAME` → its elements, `map NAME` → its address → chain entries.
/// Elements are compared by value (a swapped address is drift even when the
/// counts agree); rules only by count, since comparing rule text would mean
/// re-implementing nft's canonical listing.
pub type Content = BTreeMap<String, Object>;

/// One object of a [`Content`].
#[derive(Debug, PartialEq, Eq)]
pub enum Object {
    /// A chain and its number of rules.
    Chain(usize),
    /// A set and its elements.
    Set(BTreeSet<Element>),
    /// A verdict map: address → chain jumped to.
    Map(BTreeMap<IpAddr, String>),
    /// A set of `ct mark` values (the generation's stamp).
    Marks(BTreeSet<u32>),
    /// A `mark : mark` map (other mark bits → mark with the stamp).
    MarkMap(BTreeMap<u32, u32>),
}

/// What the kernel lists after loading `rs`, in [`Content`] form.
pub fn expected(rs: &Ruleset) -> Content {
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
    if let Some(g) = rs.generation {
        s.insert(
            format!("set {}", names::GENERATION_SET),
            Object::Marks(BTreeSet::from([g.stamp()])),
        );
        s.insert(
            format!("map {}", names::STAMP_MAP),
            Object::MarkMap(BTreeMap::from([(0, g.stamp())])),
        );
    }
    s
}

/// The generation of the table in a listing (of the table, or of the set
/// `ct-generation` alone), if it has one.
pub fn generation(json: &str) -> Option<Generation> {
    let v: Value = serde_json::from_str(json).ok()?;
    v.get("nftables")?.as_array()?.iter().find_map(|o| {
        let set = o.get("set")?;
        if set.get("name")?.as_str()? != names::GENERATION_SET {
            return None;
        }
        let mark = u32::try_from(elems(set).first()?.as_u64()?).ok()?;
        Generation::from_stamp(mark)
    })
}

/// The chains (with their hooks), sets and maps of table `inet nftpol` in a
/// listing (`nft -j -t list table inet nftpol` is enough: no elements
/// needed); `None` if the listing is not JSON of that shape.
pub fn present(json: &str) -> Option<Present> {
    let v: Value = serde_json::from_str(json).ok()?;
    let mut p = Present::default();
    for o in v.get("nftables")?.as_array()? {
        let ours = |x: &Value| {
            x.get("table").and_then(Value::as_str) == Some(TABLE)
                && x.get("family").and_then(Value::as_str) == Some("inet")
        };
        if let Some(c) = o.get("chain").filter(|c| ours(c)) {
            let name = c.get("name")?.as_str()?.to_string();
            let base = match c.get("hook") {
                Some(h) => Some(BaseChain {
                    hook: h.as_str()?.to_string(),
                    priority: i32::try_from(c.get("prio")?.as_i64()?).ok()?,
                }),
                None => None,
            };
            p.chains.push((name, base));
        } else if let Some(s) = o.get("set").filter(|s| ours(s)) {
            p.sets.push(s.get("name")?.as_str()?.to_string());
        } else if let Some(m) = o.get("map").filter(|m| ours(m)) {
            p.maps.push(m.get("name")?.as_str()?.to_string());
        }
    }
    Some(p)
}

fn mark(v: &Value) -> Option<u32> {
    u32::try_from(v.as_u64()?).ok()
}

/// Packets counted so far by the `counter` of the drop rules (`counter
/// drop`) of each chain, by chain name: the kernel's own count of every
/// packet the table dropped (group chains, ClusterNetworkPolicy Deny rules).
pub type DropCounters = BTreeMap<String, u64>;

/// The content of `nft -j list table` output; `None` if any part of it is
/// not a shape nftpol emits (which counts as drift).
pub fn parse(json: &str) -> Option<Content> {
    read(json).0
}

/// [`parse`] and the [`DropCounters`] of the same listing, reading the JSON
/// once and one object of the `nftables` array at a time ([`stream`]): the
/// whole listing as one `serde_json::Value` took about twenty times the
/// listing's size (a node's table: tens of MB at every resync).
pub fn read(json: &str) -> (Option<Content>, DropCounters) {
    // `content` is None until the array starts, and once one of its
    // objects is not a shape nftpol emits.
    let (mut content, mut drops) = (None, DropCounters::new());
    let streamed = stream::objects(json, |obj| match obj {
        None => {
            content = Some(Content::new());
            drops = DropCounters::new();
        }
        Some(obj) => {
            count_drops(&mut drops, &obj);
            if content
                .as_mut()
                .is_some_and(|c| parse_object(c, &obj).is_none())
            {
                content = None;
            }
        }
    });
    match streamed {
        Ok(()) => (content, drops),
        Err(_) => (None, DropCounters::new()),
    }
}

/// Adds a rule's counted drops (`counter … drop`) to its chain's.
fn count_drops(out: &mut DropCounters, obj: &Value) {
    let Some(r) = obj.get("rule") else {
        return;
    };
    let (Some(chain), Some(expr)) = (
        r.get("chain").and_then(Value::as_str),
        r.get("expr").and_then(Value::as_array),
    ) else {
        return;
    };
    let drops = expr.iter().any(|e| e.get("drop").is_some());
    let packets = expr
        .iter()
        .find_map(|e| e.get("counter")?.get("packets")?.as_u64());
    if let (true, Some(n)) = (drops, packets) {
        *out.entry(chain.to_string()).or_default() += n;
    }
}

/// Adds one listed object to `s`; `None` if it is not a shape nftpol emits.
fn parse_object(s: &mut Content, obj: &Value) -> Option<()> {
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
    } else if let Some(set) = obj.get("set").filter(|s| s["type"] == "mark") {
        let marks = elems(set).iter().map(mark).collect::<Option<_>>()?;
        s.insert(
            format!("set {}", set.get("name")?.as_str()?),
            Object::Marks(marks),
        );
    } else if let Some(m) = obj.get("map").filter(|m| m["map"] == "mark") {
        let entries = elems(m)
            .iter()
            .map(|e| {
                let pair = e.as_array()?;
                Some((mark(pair.first()?)?, mark(pair.get(1)?)?))
            })
            .collect::<Option<_>>()?;
        s.insert(
            format!("map {}", m.get("name")?.as_str()?),
            Object::MarkMap(entries),
        );
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
    Some(())
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

/// The `nft -j list table inet nftpol` output for a kernel holding `rs`, in
/// the shapes nft 1.0 prints (one-address intervals as plain addresses,
/// port ranges as `{"range": [lo, hi]}`); [`parse`] reads it back to
/// [`expected`]`(rs)`. Used by the fake `nft` and by tests.
pub fn render(rs: &Ruleset) -> String {
    let mut out = vec![json!({"metainfo": {"json_schema_version": 1}})];
    out.push(json!({"table": {"family": "inet", "name": TABLE}}));
    if let Some(g) = rs.generation {
        out.push(
            json!({"set": {"family": "inet", "name": names::GENERATION_SET, "table": TABLE,
            "type": "mark", "elem": [g.stamp()]}}),
        );
        out.push(
            json!({"map": {"family": "inet", "name": names::STAMP_MAP, "table": TABLE,
            "type": "mark", "map": "mark", "elem": [[0, g.stamp()]]}}),
        );
    }
    for (name, m) in &rs.maps {
        let elem: Vec<Value> = m
            .elements
            .iter()
            .map(|(ip, chain)| json!([ip.to_string(), {"jump": {"target": chain}}]))
            .collect();
        out.push(json!({"map": {"family": "inet", "name": name, "table": TABLE, "map": "verdict", "elem": elem}}));
    }
    for (name, s) in &rs.sets {
        let interval = matches!(s.kind, SetKind::AddrInterval(_) | SetKind::ProtoPort);
        let elem: Vec<Value> = s.elements.iter().map(render_element).collect();
        let mut set = json!({"family": "inet", "name": name, "table": TABLE, "elem": elem});
        if interval {
            set["flags"] = json!(["interval"]);
        }
        out.push(json!({ "set": set }));
    }
    for (name, c) in &rs.chains {
        out.push(json!({"chain": {"family": "inet", "table": TABLE, "name": name}}));
        for r in &c.rules {
            let mut rule = json!({"family": "inet", "table": TABLE, "chain": name});
            // Only the expressions nftpol reads back: a drop rule's counter.
            if r.verdict == Verdict::CountedDrop {
                rule["expr"] = json!([{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]);
            }
            out.push(json!({ "rule": rule }));
        }
    }
    json!({ "nftables": out }).to_string()
}

fn render_element(e: &Element) -> Value {
    let port = |lo: u16, hi: u16| {
        if lo == hi {
            json!(lo)
        } else {
            json!({"range": [lo, hi]})
        }
    };
    match e {
        Element::Addr(a) => json!(a.to_string()),
        Element::Range(r) if r.start == r.end => json!(u128_to_ip(r.family, r.start).to_string()),
        Element::Range(r) => json!({"range": [
            u128_to_ip(r.family, r.start).to_string(),
            u128_to_ip(r.family, r.end).to_string()
        ]}),
        Element::AddrPair(a, b) => json!({"concat": [a.to_string(), b.to_string()]}),
        Element::AddrProtoPort(a, p, n) => json!({"concat": [a.to_string(), p.nft(), n]}),
        Element::ProtoPort(p, lo, hi) => json!({"concat": [p.nft(), port(*lo, *hi)]}),
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
        let a = parse(&listing("10.0.0.2")).unwrap();
        let b = parse(&listing("10.0.0.3")).unwrap();
        assert_ne!(a, b, "same count, different element");
        assert_eq!(a, parse(&listing("10.0.0.2")).unwrap());
    }

    #[test]
    fn a_rendered_listing_parses_back_to_the_expected_content() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut rs = Ruleset::default();
        let set = |kind, elements: Vec<Element>| crate::core::nft::ruleset::Set {
            kind,
            comment: String::new(),
            elements: elements.into_iter().collect(),
        };
        rs.sets.insert(
            "a".into(),
            set(
                SetKind::Addr(Family::V4),
                vec![Element::Addr(ip("10.0.0.1"))],
            ),
        );
        rs.sets.insert(
            "b".into(),
            set(
                SetKind::AddrInterval(Family::V6),
                vec![
                    Element::Addr(ip("fd00::1")),
                    range("2001:db8::", "2001:db8::ff"),
                ],
            ),
        );
        rs.sets.insert(
            "c".into(),
            set(
                SetKind::ProtoPort,
                vec![
                    Element::ProtoPort(Protocol::Tcp, 80, 80),
                    Element::ProtoPort(Protocol::Udp, 1000, 2000),
                ],
            ),
        );
        rs.sets.insert(
            "d".into(),
            set(
                SetKind::AddrProtoPort(Family::V4),
                vec![Element::AddrProtoPort(ip("10.0.0.1"), Protocol::Sctp, 9)],
            ),
        );
        rs.sets.insert(
            "e".into(),
            set(
                SetKind::AddrPair(Family::V4),
                vec![Element::AddrPair(ip("10.0.0.1"), ip("10.0.0.1"))],
            ),
        );
        assert_eq!(parse(&render(&rs)), Some(expected(&rs)));
    }

    #[test]
    fn drop_counters_sum_each_chains_counted_drops() {
        // The shapes `nft -j list table inet nftpol` prints (nft 1.0).
        let listing = json!({"nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"chain": {"family": "inet", "table": TABLE, "name": "ingress-group-AAAA"}},
            {"rule": {"family": "inet", "table": TABLE, "chain": "ingress-group-AAAA", "handle": 4,
                "expr": [{"jump": {"target": "ingress-BBBB-shop/db"}}]}},
            {"rule": {"family": "inet", "table": TABLE, "chain": "ingress-group-AAAA", "handle": 5,
                "comment": "no policy allows this ingress",
                "expr": [{"counter": {"packets": 12, "bytes": 720}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": TABLE, "chain": "admin-egress-CCCC", "handle": 9,
                "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "10.1.2.3"}}, {"counter": {"packets": 3, "bytes": 180}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": TABLE, "chain": "admin-egress-CCCC", "handle": 10,
                "expr": [{"counter": {"packets": 4, "bytes": 240}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": TABLE, "chain": "filter-forward", "handle": 2,
                "expr": [{"counter": {"packets": 99, "bytes": 1}}, {"accept": null}]}},
        ]})
        .to_string();
        let (content, drops) = read(&listing);
        assert!(content.is_some());
        assert_eq!(
            drops,
            DropCounters::from([
                ("admin-egress-CCCC".to_string(), 7),
                ("ingress-group-AAAA".to_string(), 12),
            ]),
            "summed per chain; a counted accept is no drop"
        );
        assert_eq!(read("not json"), (None, DropCounters::new()));
        // What the fake lists: every counted drop of the ruleset, at zero.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/upstream-xyz");
        let (objs, _) = crate::core::k8s::load_paths(&[root]);
        let rs = crate::core::compile::compile_objects(&objs, &Default::default()).ruleset;
        let (content, drops) = read(&render(&rs));
        assert_eq!(content, Some(expected(&rs)));
        let counted: Vec<&String> = rs
            .chains
            .iter()
            .filter(|(_, c)| c.rules.iter().any(|r| r.verdict == Verdict::CountedDrop))
            .map(|(n, _)| n)
            .collect();
        assert!(!counted.is_empty());
        assert_eq!(drops.keys().collect::<Vec<_>>(), counted);
        assert!(drops.values().all(|n| *n == 0));
    }
}
