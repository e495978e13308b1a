//! Rendering the typed ruleset as libnftables JSON (`nft -j -f`).
//!
//! The document is the same transaction as [`super::render::script`]: add,
//! delete and re-add `inet nftpol`, then the whole table, so loading it
//! replaces the table atomically and also works in a fresh namespace.
//!
//! Everything is built from the `nftables` crate's types except two objects
//! it cannot express, which get small serde structs of their own here:
//! verdict maps (`"map": "verdict"`: the crate's `SetType` has no verdict)
//! and chain comments (the crate's `Chain` has no `comment` field).
//!
//! Comments are written everywhere the text script has them, but nft does not
//! read all of them back: its JSON parser ignores `comment` on sets and maps
//! (every release up to at least 1.1.6) and on chains before 1.0.8. Loading
//! this JSON therefore gives the same table as the text script except for
//! those comments; rules and their comments are identical.
//!
//! Order differs from the text script in one way: every chain is declared
//! before any map or rule. nft's JSON input resolves `jump`/`goto` targets
//! (in rules and in verdict-map elements) command by command and fails with
//! ENOENT on a chain added later, whereas a text table block lets nft order
//! the objects itself. nft's text path creates chains, then maps and sets,
//! then rules, so this order also gives the kernel the same creation order
//! (same listing order). Relative order is otherwise render.rs's: maps, then
//! sets by name; chains and their rules as in [`Ruleset::chains`].
//!
//! Output is pretty-printed (one value per line) so two rulesets diff well,
//! and deterministic: serde structs keep field order and every collection
//! iterated is sorted or ordered.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use nftables::expr::{
    self, CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload,
    PayloadField, Prefix, SetItem,
};
use nftables::schema::{
    self, MetainfoObject, NfCmd, NfListObject, NfObject, SetFlag, SetType, SetTypeValue,
};
use nftables::stmt::{self, Counter, JumpTarget, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Serialize;

use super::names;
use super::render::ND_TYPES;
use super::ruleset::{
    Addr, Element, Generation, Hook, Match, Rule, Ruleset, SetKind, TABLE, Verdict,
};
use crate::core::model::ipblock::u128_to_ip;
use crate::core::model::{Family, Protocol, Range};

/// The top-level `{"nftables": [...]}` document.
#[derive(Serialize)]
struct Document<'a> {
    nftables: Vec<Command<'a>>,
}

/// One entry of the `nftables` array.
#[derive(Serialize)]
#[serde(untagged)]
enum Command<'a> {
    /// Anything the `nftables` crate can express.
    Crate(NfObject<'a>),
    /// `{"add": {...}}` for the objects the crate cannot express.
    Own { add: OwnObject<'a> },
}

/// Objects the crate cannot express (see the module comment).
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum OwnObject<'a> {
    /// A verdict map.
    Map(VerdictMapObject<'a>),
    /// A chain with a comment.
    Chain(CommentedChain<'a>),
}

/// `map NAME { type ADDR : verdict; comment ...; elements = { ... } }`,
/// with the same fields as nft lists for such a map.
#[derive(Serialize)]
struct VerdictMapObject<'a> {
    family: NfFamily,
    table: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    key_type: SetTypeValue<'static>,
    /// Always `"verdict"`: the value the crate's `SetType` lacks.
    map: &'static str,
    comment: &'a str,
    /// `[key, verdict]` pairs; omitted when empty, like the text's elements block.
    #[serde(skip_serializing_if = "Option::is_none")]
    elem: Option<Vec<Expression<'a>>>,
}

/// The crate's chain plus the `comment` field it lacks.
#[derive(Serialize)]
struct CommentedChain<'a> {
    #[serde(flatten)]
    chain: schema::Chain<'a>,
    comment: &'a str,
}

/// The whole ruleset as one `nft -j -f` transaction: atomic create-or-replace
/// of `inet nftpol`, equivalent to [`super::render::script`].
///
/// # Panics
///
/// If a base chain's hook is not an nftables hook name (the compiler only
/// uses `forward`).
pub fn script(rs: &Ruleset) -> String {
    let mut cmds = vec![
        // Lets nft refuse the input if its schema is older than what we write.
        Command::Crate(NfObject::ListObject(NfListObject::MetainfoObject(
            MetainfoObject {
                version: None,
                release_name: None,
                json_schema_version: Some(1),
            },
        ))),
        // Adding first makes the delete succeed when the table does not exist yet.
        add(NfListObject::Table(table())),
        Command::Crate(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
            table(),
        )))),
        add(NfListObject::Table(table())),
    ];
    for (name, c) in &rs.chains {
        cmds.push(Command::Own {
            add: OwnObject::Chain(CommentedChain {
                chain: chain(name, c.hook.as_ref()),
                comment: &c.comment,
            }),
        });
    }
    if let Some(g) = rs.generation {
        cmds.push(add(NfListObject::Set(Box::new(schema::Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: Cow::Borrowed(names::GENERATION_SET),
            handle: None,
            set_type: SetTypeValue::Single(SetType::Mark),
            policy: None,
            flags: None,
            elem: Some(vec![Expression::Number(g.stamp())].into()),
            timeout: None,
            gc_interval: None,
            size: None,
            comment: Some(Cow::Borrowed(names::GENERATION_COMMENT)),
        }))));
        cmds.push(Command::Own {
            add: OwnObject::Map(VerdictMapObject {
                family: NfFamily::INet,
                table: TABLE,
                name: names::STAMP_MAP,
                key_type: SetTypeValue::Single(SetType::Mark),
                map: "mark",
                comment: names::STAMP_COMMENT,
                elem: Some(vec![Expression::List(vec![
                    Expression::Number(0),
                    Expression::Number(g.stamp()),
                ])]),
            }),
        });
    }
    for (name, m) in &rs.maps {
        let elem: Vec<Expression> = m
            .elements
            .iter()
            .map(|(ip, target)| {
                Expression::List(vec![
                    addr(ip),
                    Expression::Verdict(expr::Verdict::Jump(JumpTarget {
                        target: Cow::Borrowed(target),
                    })),
                ])
            })
            .collect();
        cmds.push(Command::Own {
            add: OwnObject::Map(VerdictMapObject {
                family: NfFamily::INet,
                table: TABLE,
                name,
                key_type: SetTypeValue::Single(addr_type(m.family)),
                map: "verdict",
                comment: &m.comment,
                elem: (!elem.is_empty()).then_some(elem),
            }),
        });
    }
    for (name, s) in &rs.sets {
        let (set_type, interval) = set_type(s.kind);
        let elem: Vec<Expression> = s.elements.iter().map(element).collect();
        cmds.push(add(NfListObject::Set(Box::new(schema::Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: Cow::Borrowed(name),
            handle: None,
            set_type,
            policy: None,
            // A one-element HashSet serializes deterministically.
            flags: interval.then(|| HashSet::from([SetFlag::Interval])),
            elem: (!elem.is_empty()).then(|| elem.into()),
            timeout: None,
            gc_interval: None,
            size: None,
            comment: Some(Cow::Borrowed(&s.comment)),
        }))));
    }
    for (name, c) in &rs.chains {
        for r in &c.rules {
            cmds.push(add(NfListObject::Rule(rule(name, r))));
        }
    }
    let mut out = serde_json::to_string_pretty(&Document { nftables: cmds })
        .expect("serializing plain structs to a String cannot fail");
    out.push('\n');
    out
}

fn add(obj: NfListObject<'_>) -> Command<'_> {
    Command::Crate(NfObject::CmdObject(NfCmd::Add(obj)))
}

fn table() -> schema::Table<'static> {
    schema::Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn chain<'a>(name: &'a str, hook: Option<&Hook>) -> schema::Chain<'a> {
    schema::Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: Cow::Borrowed(name),
        newname: None,
        handle: None,
        _type: hook.map(|_| NfChainType::Filter),
        hook: hook.map(|h| nf_hook(h.hook)),
        prio: hook.map(|h| h.priority),
        dev: None,
        // The text renderer writes `policy accept` on every base chain.
        policy: hook.map(|_| NfChainPolicy::Accept),
    }
}

fn nf_hook(name: &str) -> NfHook {
    match name {
        "ingress" => NfHook::Ingress,
        "prerouting" => NfHook::Prerouting,
        "forward" => NfHook::Forward,
        "input" => NfHook::Input,
        "output" => NfHook::Output,
        "postrouting" => NfHook::Postrouting,
        "egress" => NfHook::Egress,
        other => panic!("base chain hook {other:?} is not an nftables hook"),
    }
}

fn addr_type(f: Family) -> SetType {
    match f {
        Family::V4 => SetType::Ipv4Addr,
        Family::V6 => SetType::Ipv6Addr,
    }
}

/// Key type of a set kind, and whether it needs `flags interval` (as
/// [`super::render::set_type`]).
fn set_type(kind: SetKind) -> (SetTypeValue<'static>, bool) {
    let concat = |types: Vec<SetType>| SetTypeValue::Concatenated(types.into());
    match kind {
        SetKind::Addr(f) => (SetTypeValue::Single(addr_type(f)), false),
        SetKind::AddrInterval(f) => (SetTypeValue::Single(addr_type(f)), true),
        SetKind::AddrPair(f) => (concat(vec![addr_type(f), addr_type(f)]), false),
        SetKind::AddrProtoPort(f) => (
            concat(vec![addr_type(f), SetType::InetProto, SetType::InetService]),
            false,
        ),
        SetKind::ProtoPort => (concat(vec![SetType::InetProto, SetType::InetService]), true),
    }
}

fn addr(ip: &IpAddr) -> Expression<'static> {
    Expression::String(ip.to_string().into())
}

fn proto(p: Protocol) -> Expression<'static> {
    Expression::String(p.nft().into())
}

fn port(n: u16) -> Expression<'static> {
    Expression::Number(n.into())
}

fn concat(items: Vec<Expression<'_>>) -> Expression<'_> {
    Expression::Named(NamedExpression::Concat(items))
}

fn range<'a>(first: Expression<'a>, last: Expression<'a>) -> Expression<'a> {
    Expression::Range(Box::new(expr::Range {
        range: [first, last],
    }))
}

/// An address range as the text renderer writes it (`Range`'s `Display`):
/// a single address, a prefix, or `first-last`.
fn addr_range(r: &Range) -> Expression<'static> {
    match r.as_cidr() {
        Some(c) if u32::from(c.len) == r.family.bits() => addr(&u128_to_ip(r.family, c.addr)),
        Some(c) => Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr(&u128_to_ip(r.family, c.addr))),
            len: c.len.into(),
        })),
        None => range(
            addr(&u128_to_ip(r.family, r.start)),
            addr(&u128_to_ip(r.family, r.end)),
        ),
    }
}

/// One set element (as [`super::render::element`]).
fn element(e: &Element) -> Expression<'static> {
    match e {
        Element::Addr(a) => addr(a),
        Element::Range(r) => addr_range(r),
        Element::AddrPair(a, b) => concat(vec![addr(a), addr(b)]),
        Element::AddrProtoPort(a, p, n) => concat(vec![addr(a), proto(*p), port(*n)]),
        Element::ProtoPort(p, a, b) if a == b => concat(vec![proto(*p), port(*a)]),
        Element::ProtoPort(p, a, b) => concat(vec![proto(*p), range(port(*a), port(*b))]),
    }
}

fn payload<'a>(protocol: &'a str, field: &'a str) -> Expression<'a> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn ip_payload(f: Family, a: Addr) -> Expression<'static> {
    let proto = match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    payload(proto, a.nft())
}

fn l4proto() -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta {
        key: MetaKey::L4proto,
    }))
}

fn set_ref(name: &str) -> Expression<'static> {
    Expression::String(format!("@{name}").into())
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

/// `ct mark and VALUE`.
fn ct_mark_and(value: u32) -> Expression<'static> {
    Expression::BinaryOperation(Box::new(expr::BinaryOperation::AND(
        ct("mark"),
        Expression::Number(value),
    )))
}

/// `ct mark set VALUE`.
fn set_ct_mark(value: Expression<'static>) -> Statement<'static> {
    Statement::Mangle(stmt::Mangle {
        key: ct("mark"),
        value,
    })
}

/// One match (as [`super::render::match_expr`]). Operators are the ones
/// `nft -j list` prints for the text form: `in` (nft's implicit operator, a
/// flag test for `ct state`), `==` for set lookups and `!=` for negated ones.
fn match_stmts(m: &Match, out: &mut Vec<Statement<'_>>) {
    match m {
        Match::CtEstablishedCurrent => {
            out.push(Statement::Match(stmt::Match {
                left: ct("state"),
                right: Expression::String("established".into()),
                op: Operator::IN,
            }));
            out.push(match_stmt(&Match::CtStampCurrent));
        }
        m => out.push(match_stmt(m)),
    }
}

fn match_stmt(m: &Match) -> Statement<'static> {
    let (left, op, right) = match m {
        Match::CtEstablishedRelated => (
            Expression::Named(NamedExpression::CT(CT {
                key: "state".into(),
                family: None,
                dir: None,
            })),
            Operator::IN,
            Expression::List(vec![
                Expression::String("established".into()),
                Expression::String("related".into()),
            ]),
        ),
        Match::NeighbourDiscovery => (
            payload("icmpv6", "type"),
            Operator::EQ,
            Expression::Named(NamedExpression::Set(
                ND_TYPES
                    .iter()
                    .map(|t| SetItem::Element(Expression::String((*t).into())))
                    .collect(),
            )),
        ),
        Match::SelfPair(f, set) => (
            concat(vec![ip_payload(*f, Addr::Src), ip_payload(*f, Addr::Dst)]),
            Operator::EQ,
            set_ref(set),
        ),
        Match::AddrIn(f, a, set) => (ip_payload(*f, *a), Operator::EQ, set_ref(set)),
        Match::AddrNotIn(f, a, set) => (ip_payload(*f, *a), Operator::NEQ, set_ref(set)),
        Match::ProtoPortIn(set) => (
            concat(vec![l4proto(), payload("th", "dport")]),
            Operator::EQ,
            set_ref(set),
        ),
        Match::DstProtoPortIn(f, set) => (
            concat(vec![
                ip_payload(*f, Addr::Dst),
                l4proto(),
                payload("th", "dport"),
            ]),
            Operator::EQ,
            set_ref(set),
        ),
        Match::FibDaddrLocal => (
            Expression::Named(NamedExpression::Fib(Fib {
                result: FibResult::Type,
                flags: [FibFlag::Daddr].into_iter().collect(),
            })),
            Operator::EQ,
            Expression::String("local".into()),
        ),
        Match::CtEstablishedCurrent => {
            unreachable!("two matches: expanded by match_stmts")
        }
        Match::CtStampCurrent => (ct("mark"), Operator::EQ, set_ref(names::GENERATION_SET)),
        Match::CtReply => (
            ct("direction"),
            Operator::EQ,
            Expression::String("reply".into()),
        ),
        Match::CtRevoked => (
            ct_mark_and(Generation::MASK),
            Operator::EQ,
            Expression::Number(Generation::MASK),
        ),
        Match::CtRelated => (
            ct("state"),
            Operator::IN,
            Expression::String("related".into()),
        ),
    };
    Statement::Match(stmt::Match { left, right, op })
}

/// The verdict statements (as [`super::render::verdict`]).
fn verdict_stmts<'a>(v: &'a Verdict, out: &mut Vec<Statement<'a>>) {
    match v {
        Verdict::Accept => out.push(Statement::Accept(None)),
        Verdict::CountedDrop => {
            // `"counter": null`: a fresh anonymous counter, like text `counter`.
            out.push(Statement::Counter(Counter::Anonymous(None)));
            out.push(Statement::Drop(None));
        }
        Verdict::Jump(c) => out.push(Statement::Jump(JumpTarget {
            target: Cow::Borrowed(c),
        })),
        Verdict::Goto(c) => out.push(Statement::Goto(JumpTarget {
            target: Cow::Borrowed(c),
        })),
        Verdict::Return => out.push(Statement::Return(None)),
        Verdict::AddrVmap(f, a, map) => out.push(Statement::VerdictMap(stmt::VerdictMap {
            key: ip_payload(*f, *a),
            data: set_ref(map),
        })),
        Verdict::Log(l) => {
            // Rate unit "packets" is the default; the burst is then in packets too.
            out.push(Statement::Limit(stmt::Limit {
                rate: l.rate,
                rate_unit: None,
                per: Some(Cow::Borrowed("second")),
                burst: Some(l.burst),
                burst_unit: None,
                inv: None,
            }));
            let mut log = stmt::Log::new(Some(u32::from(l.group)));
            log.prefix = Some(Cow::Borrowed(&l.prefix));
            out.push(Statement::Log(Some(log)));
        }
        Verdict::CtRevoke => out.push(set_ct_mark(Expression::BinaryOperation(Box::new(
            expr::BinaryOperation::OR(vec![ct("mark"), Expression::Number(Generation::MASK)]),
        )))),
        Verdict::CtClearStamp => out.push(set_ct_mark(ct_mark_and(!Generation::MASK))),
        Verdict::CtStamp => out.push(set_ct_mark(Expression::Named(NamedExpression::Map(
            Box::new(expr::Map {
                key: ct_mark_and(!Generation::MASK),
                data: set_ref(names::STAMP_MAP),
            }),
        )))),
    }
}

fn rule<'a>(chain: &'a str, r: &'a Rule) -> schema::Rule<'a> {
    let mut expr: Vec<Statement> = Vec::new();
    for m in &r.matches {
        match_stmts(m, &mut expr);
    }
    verdict_stmts(&r.verdict, &mut expr);
    schema::Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: Cow::Borrowed(chain),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: r.comment.as_deref().map(Cow::Borrowed),
    }
}
