//! The first stage of a structural change ([`Creation`]: regular chains
//! with their rules, sets and maps with their elements) as one nftables
//! netlink batch, the messages `nft -f` sends for the stage's script. No
//! IO here: [`creation`] gives the bytes one `send` hands the kernel.
//!
//! In nft's order, which the kernel accepts in one transaction and which
//! hands out the same handles: the table (`NFT_MSG_NEWTABLE`, as the
//! script's `table inet nftpol { … }` block does: it exists already, so
//! nothing changes), every chain (`NFT_MSG_NEWCHAIN`, without rules), then
//! each set and map (`NFT_MSG_NEWSET`, then `NFT_MSG_NEWSETELEM` with its
//! elements: a map's element may jump to a chain created above), then
//! every chain's rules (`NFT_MSG_NEWRULE`: a rule may jump to a chain, or
//! look up a set, created above). Flags are nft's: objects are added, not
//! created exclusively, and rules appended.
//!
//! What a set carries is what `nft --debug=mnl` shows nft 1.0.6 send for
//! its declaration, so that `nft list` prints it back the same: key type
//! (a concatenation's types six bits each, the first highest) and length,
//! flags (`interval`, and `concat` for an interval concatenation, whose
//! field lengths go in `NFTA_SET_DESC`), a transaction id (what the
//! elements and lookups of the same batch may name it by), and libnftnl's
//! user data: the key's byte order (network for addresses, host for
//! `mark`, none for a concatenation, which instead says it is one, with
//! no `typeof` expressions), a map's data byte order and interval flag,
//! then the comment.
//!
//! Interval sets hold their elements as nft lays them out for a set it
//! creates: an address interval set (ipBlocks) as the kernel's rbtree
//! takes them, sorted, each range a start element and an end element one
//! past its last address (flagged as interval end), an end element at
//! address 0 first when the first range starts above it, and a range that
//! ends at the family's last address without end element but with user
//! data saying it is open; a numeric ports set (a concatenation) one
//! element per range with its first and last key. Address ranges that
//! overlap or touch (which nft would refuse or merge; the compiler never
//! writes them) are not encoded. Neither are a base chain, a rule shape
//! [`expr`] does not encode, or a comment nft would refuse: [`creation`]
//! gives `None` and the caller runs the stage's script.

use std::collections::BTreeSet;

use netlink_packet_core::{DefaultNla, NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute,
    SetFlags, SetMessage, TableAttribute, TableFlags, TableMessage,
};

use super::encode::{self, Batch, Elem, Message};
use super::expr::{self, Attrs, Holds, Refs};
use crate::core::model::Family;
use crate::core::model::ipblock::ip_to_u128;
use crate::core::nft::delta::Creation;
use crate::core::nft::names;
use crate::core::nft::ruleset::{Element, Generation, Set, SetKind, TABLE, VerdictMap};

const NLA_F_NESTED: u16 = 0x8000;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_FIELD_LEN: u16 = 1;

/// Set flags: `NFT_SET_INTERVAL`, `NFT_SET_MAP`, `NFT_SET_CONCAT`.
const INTERVAL: u32 = 0x4;
const MAP: u32 = 0x8;
const CONCAT: u32 = 0x80;
/// nft's data types: `ipv4_addr`, `ipv6_addr`, `inet_proto`,
/// `inet_service`, `mark`, and `NFT_DATA_VERDICT`.
const IPV4_ADDR: u32 = 7;
const IPV6_ADDR: u32 = 8;
const INET_PROTO: u32 = 12;
const INET_SERVICE: u32 = 13;
const MARK: u32 = 19;
const VERDICT: u32 = 0xffff_ff00;
/// `NFT_DATA_VALUE_MAXLEN`-free lengths: a mark, a protocol or port field
/// (padded to 4 bytes in a key).
const WORD: u32 = 4;

/// libnftnl's set user data types (`NFTNL_UDATA_SET_*`).
const UDATA_KEYBYTEORDER: u8 = 0;
const UDATA_DATABYTEORDER: u8 = 1;
const UDATA_KEY_TYPEOF: u8 = 3;
const UDATA_DATA_INTERVAL: u8 = 6;
const UDATA_SET_COMMENT: u8 = 7;
/// `NFTNL_UDATA_CHAIN_COMMENT`, `NFTNL_UDATA_RULE_COMMENT`.
const UDATA_COMMENT: u8 = 0;
/// nft's byte orders: host, big-endian.
const HOST_ENDIAN: u32 = 1;
const BIG_ENDIAN: u32 = 2;
/// nft's expression type of a concatenation (`EXPR_CONCAT`).
const EXPR_CONCAT: u32 = 13;
/// An element's `NFTNL_UDATA_SET_ELEM_FLAGS` = `NFTNL_SET_ELEM_F_INTERVAL_OPEN`.
const ELEM_OPEN: [u8; 6] = [1, 4, 1, 0, 0, 0];

/// A set's definition as `NFT_MSG_NEWSET` carries it.
struct SetDef {
    flags: u32,
    key_type: u32,
    key_len: u32,
    /// A map's data type and length.
    data: Option<(u32, u32)>,
    /// An interval concatenation's field lengths.
    fields: &'static [u32],
    userdata: Vec<u8>,
}

/// One libnftnl user data TLV holding a host-order `u32`.
fn udata_u32(kind: u8, v: u32) -> Vec<u8> {
    [&[kind, 4][..], &v.to_ne_bytes()].concat()
}

fn addr_type(f: Family) -> (u32, u32) {
    match f {
        Family::V4 => (IPV4_ADDR, 4),
        Family::V6 => (IPV6_ADDR, 16),
    }
}

/// The definition of a set of `kind` with `comment`.
fn set_def(kind: SetKind, comment: &str) -> Option<SetDef> {
    let comment = expr::comment(UDATA_SET_COMMENT, comment)?;
    // A concatenation's key byte order is none, and its `typeof` says it
    // is a concatenation of no expressions (the types above say it all).
    let concat_udata = || {
        let typeof_ = [UDATA_KEY_TYPEOF, 8, 0, 4]
            .into_iter()
            .chain(EXPR_CONCAT.to_ne_bytes())
            .chain([1, 0]);
        [
            udata_u32(UDATA_KEYBYTEORDER, 0),
            typeof_.collect(),
            comment.clone(),
        ]
        .concat()
    };
    let plain_udata = || [udata_u32(UDATA_KEYBYTEORDER, BIG_ENDIAN), comment.clone()].concat();
    let def = |flags, (key_type, key_len), fields, userdata| SetDef {
        flags,
        key_type,
        key_len,
        data: None,
        fields,
        userdata,
    };
    Some(match kind {
        SetKind::Addr(f) => def(0, addr_type(f), &[], plain_udata()),
        SetKind::AddrInterval(f) => def(INTERVAL, addr_type(f), &[], plain_udata()),
        SetKind::AddrPair(f) => {
            let (t, len) = addr_type(f);
            def(0, (t << 6 | t, 2 * len), &[], concat_udata())
        }
        SetKind::AddrProtoPort(f) => {
            let (t, len) = addr_type(f);
            let key = (t << 12 | INET_PROTO << 6 | INET_SERVICE, len + 2 * WORD);
            def(0, key, &[], concat_udata())
        }
        SetKind::ProtoPort => {
            let key = (INET_PROTO << 6 | INET_SERVICE, 2 * WORD);
            def(INTERVAL | CONCAT, key, &[1, 2], concat_udata())
        }
    })
}

/// A set's elements; `None` when one does not fit its kind or cannot be
/// encoded.
fn set_elems(s: &Set) -> Option<Vec<Elem>> {
    match s.kind {
        SetKind::Addr(_) | SetKind::AddrPair(_) | SetKind::AddrProtoPort(_) => {
            encode::set_elems(&s.elements)
        }
        SetKind::AddrInterval(f) => interval_elems(f, &s.elements),
        SetKind::ProtoPort => s
            .elements
            .iter()
            .map(|e| match e {
                Element::ProtoPort(p, a, b) if a <= b => {
                    let key = |port: u16| {
                        let [hi, lo] = port.to_be_bytes();
                        vec![p.number(), 0, 0, 0, hi, lo, 0, 0]
                    };
                    Some(Elem {
                        key_end: Some(key(*b)),
                        ..Elem::key(key(*a))
                    })
                }
                _ => None,
            })
            .collect(),
    }
}

/// An address interval set's elements as nft sends them for a set it
/// creates (see the module's documentation).
fn interval_elems(f: Family, elements: &BTreeSet<Element>) -> Option<Vec<Elem>> {
    let last = match f {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    };
    let mut ranges: Vec<(u128, u128)> = elements
        .iter()
        .map(|e| match e {
            Element::Range(r) if r.family == f && r.start <= r.end && r.end <= last => {
                Some((r.start, r.end))
            }
            Element::Addr(ip) if Family::of(ip) == f => Some((ip_to_u128(ip), ip_to_u128(ip))),
            _ => None,
        })
        .collect::<Option<_>>()?;
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[0].1 + 1 >= w[1].0) {
        return None;
    }
    let bytes = |v: u128| match f {
        Family::V4 => (v as u32).to_be_bytes().to_vec(),
        Family::V6 => v.to_be_bytes().to_vec(),
    };
    let end = |v: u128| Elem {
        end: true,
        ..Elem::key(bytes(v))
    };
    let mut out = Vec::with_capacity(2 * ranges.len() + 1);
    if ranges.first().is_some_and(|(start, _)| *start != 0) {
        out.push(end(0));
    }
    for (start, stop) in ranges {
        if stop == last {
            out.push(Elem {
                userdata: Some(ELEM_OPEN.to_vec()),
                ..Elem::key(bytes(start))
            });
        } else {
            out.push(Elem::key(bytes(start)));
            out.push(end(stop + 1));
        }
    }
    Some(out)
}

/// `NFT_MSG_NEWSET` for set `name` with transaction id `id`.
fn new_set(name: &str, id: u32, d: &SetDef) -> Message {
    let mut attributes = vec![
        SetAttribute::Table(TABLE.to_string()),
        SetAttribute::Name(name.to_string()),
        SetAttribute::Flags(SetFlags::from_bits_retain(d.flags)),
        SetAttribute::KeyType(d.key_type),
        SetAttribute::KeyLen(d.key_len),
    ];
    if let Some((t, len)) = d.data {
        attributes.extend([SetAttribute::DataType(t), SetAttribute::DataLen(len)]);
    }
    attributes.push(SetAttribute::Id(id));
    if !d.fields.is_empty() {
        let mut desc = Attrs::default();
        desc.nest(NFTA_SET_DESC_CONCAT, |a| {
            for len in d.fields {
                a.nest(NFTA_LIST_ELEM, |a| a.u32(NFTA_SET_FIELD_LEN, *len));
            }
        });
        let nla = DefaultNla::new(NFTA_SET_DESC | NLA_F_NESTED, desc.0);
        attributes.push(SetAttribute::Other(nla));
    }
    attributes.push(SetAttribute::UserData(d.userdata.clone()));
    let m = NfTablesMessage::NewSet(SetMessage { attributes });
    (m, NLM_F_CREATE, format!("add set {name}"))
}

/// A verdict map's definition and elements.
fn map(m: &VerdictMap) -> Option<(SetDef, Vec<Elem>)> {
    let comment = expr::comment(UDATA_SET_COMMENT, &m.comment)?;
    let elems = m
        .elements
        .iter()
        .map(|(ip, chain)| (Family::of(ip) == m.family).then(|| encode::map_elem(ip, chain)))
        .collect::<Option<_>>()?;
    let userdata = [
        udata_u32(UDATA_KEYBYTEORDER, BIG_ENDIAN),
        udata_u32(UDATA_DATABYTEORDER, 0),
        udata_u32(UDATA_DATA_INTERVAL, 0),
        comment,
    ]
    .concat();
    let (key_type, key_len) = addr_type(m.family);
    let def = SetDef {
        flags: MAP,
        key_type,
        key_len,
        data: Some((VERDICT, 0)),
        fields: &[],
        userdata,
    };
    Some((def, elems))
}

/// The generation's set and map with their one element each.
fn generation(g: Generation) -> Option<[(&'static str, SetDef, Vec<Elem>); 2]> {
    let marks = |comment: &str, map: bool| -> Option<SetDef> {
        let mut userdata = udata_u32(UDATA_KEYBYTEORDER, HOST_ENDIAN);
        if map {
            userdata.extend(udata_u32(UDATA_DATABYTEORDER, HOST_ENDIAN));
            userdata.extend(udata_u32(UDATA_DATA_INTERVAL, 0));
        }
        userdata.extend(expr::comment(UDATA_SET_COMMENT, comment)?);
        Some(SetDef {
            flags: if map { MAP } else { 0 },
            key_type: MARK,
            key_len: WORD,
            data: map.then_some((MARK, WORD)),
            fields: &[],
            userdata,
        })
    };
    Some([
        (
            names::GENERATION_SET,
            marks(names::GENERATION_COMMENT, false)?,
            vec![encode::generation_elem(g.stamp())],
        ),
        (
            names::STAMP_MAP,
            marks(names::STAMP_COMMENT, true)?,
            vec![encode::stamp_elem(g.stamp())],
        ),
    ])
}

/// The stage as one batch whose sequence numbers start at `seq`; `None`
/// when it holds something not encoded (the caller sends the script).
pub fn creation(c: &Creation, seq: u32) -> Option<Batch> {
    // The sets and maps with their definitions and elements, in the
    // script's order; transaction ids from 1 in the same order.
    let mut sets: Vec<(&str, SetDef, Vec<Elem>, Holds)> = Vec::new();
    for (name, s) in &c.sets {
        sets.push((
            name,
            set_def(s.kind, &s.comment)?,
            set_elems(s)?,
            Holds::Set(s.kind),
        ));
    }
    for (name, m) in &c.maps {
        let (def, elems) = map(m)?;
        sets.push((name, def, elems, Holds::Map(m.family)));
    }
    if let Some(g) = c.generation {
        for (name, def, elems) in generation(g)? {
            sets.push((name, def, elems, Holds::Marks));
        }
    }
    let mut refs = Refs::default();
    for (i, (name, _, _, holds)) in sets.iter().enumerate() {
        refs.sets.insert(name, (i as u32 + 1, *holds));
    }
    let table = || TABLE.to_string();
    let mut messages: Vec<Message> = vec![(
        NfTablesMessage::NewTable(TableMessage {
            attributes: vec![
                TableAttribute::Name(table()),
                TableAttribute::Flags(TableFlags::empty()),
            ],
        }),
        0,
        format!("add table inet {TABLE}"),
    )];
    for (name, chain) in &c.chains {
        if chain.hook.is_some() {
            return None;
        }
        let attributes = vec![
            ChainAttribute::Table(table()),
            ChainAttribute::Name(name.clone()),
            ChainAttribute::UserData(expr::comment(UDATA_COMMENT, &chain.comment)?),
        ];
        let m = NfTablesMessage::NewChain(ChainMessage { attributes });
        messages.push((m, NLM_F_CREATE, format!("add chain {name}")));
    }
    for (name, def, elems, _) in &sets {
        let id = refs.sets[name].0;
        messages.push(new_set(name, id, def));
        messages.extend(encode::element_messages(true, name, Some(id), elems));
    }
    for (name, chain) in &c.chains {
        for (i, r) in chain.rules.iter().enumerate() {
            let exprs = expr::expressions(r, &refs)?;
            let mut attributes = vec![
                RuleAttribute::Table(table()),
                RuleAttribute::Chain(name.clone()),
                RuleAttribute::Other(DefaultNla::new(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED, exprs)),
            ];
            if let Some(text) = &r.comment {
                attributes.push(RuleAttribute::UserData(expr::comment(UDATA_COMMENT, text)?));
            }
            let m = NfTablesMessage::NewRule(RuleMessage { attributes });
            let what = format!("add rule {} to chain {name}", i + 1);
            messages.push((m, NLM_F_CREATE | NLM_F_APPEND, what));
        }
    }
    encode::framed(messages, seq)
}

#[cfg(test)]
mod tests;
