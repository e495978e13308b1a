//! Rule expressions as `nft` 1.0.6 writes them, for the first stage's
//! `NFT_MSG_NEWRULE` messages ([`super::create`]). No IO here.
//!
//! Each [`Match`] and [`Verdict`] becomes the expressions `nft
//! --debug=netlink` prints for its text form ([`crate::core::nft::render`]),
//! attribute for attribute in libnftnl's order, so that `nft list` prints the
//! rule exactly as it prints the one `nft -f` loaded. What nft adds on its
//! own is added here too:
//!
//! - in the `inet` family a match on an IPv4 or IPv6 header field first
//!   loads `meta nfproto` and compares it (once per rule: a second match of
//!   the same family needs no new dependency);
//! - each match's values start in register 1, and a concatenation's later
//!   fields follow 32-bit word by word, named as nft names them (a word on a
//!   16-byte boundary by its 128-bit register, `NFT_REG_1 + n / 4`, any
//!   other by its 32-bit one, `NFT_REG32_00 + n`);
//! - `meta l4proto . th dport` looked up in an interval set (the numeric
//!   ports sets are) converts the protocol to network order first
//!   (`byteorder`); in a plain set it does not;
//! - `ct state X` masks the state with a `bitwise` that carries no operation
//!   attribute, `ct mark and M` and `ct mark set ct mark or|and M` with one
//!   (`NFT_BITWISE_BOOL`): two code paths in nft, the same in the kernel,
//!   written as nft writes each;
//! - a lookup names its set, and its transaction id when the set is
//!   created in the same batch.
//!
//! Numbers are the kernel's (`include/uapi/linux/netfilter/nf_tables.h`);
//! attribute values are big-endian, register contents (compared data,
//! masks) in the byte order of what they hold (addresses in network order,
//! `ct mark` and `ct state` in host order). `icmpv6 type { … }` (an
//! anonymous set, only in base chains) is not encoded.

use std::collections::BTreeMap;

use crate::core::model::Family;
use crate::core::nft::names;
use crate::core::nft::ruleset::{Addr, Generation, Log, Match, Rule, SetKind, Verdict};

const NLA_F_NESTED: u16 = 0x8000;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// `NFT_REG_VERDICT` and `NFT_REG_1`: the first of 16 bytes.
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;

/// Verdict codes (`NF_DROP`, `NF_ACCEPT`, `NFT_JUMP`, `NFT_GOTO`, `NFT_RETURN`).
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

/// `NFT_META_NFPROTO`, `NFT_META_L4PROTO`; `NFPROTO_IPV4`, `NFPROTO_IPV6`.
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
/// `NFT_CT_STATE`, `NFT_CT_DIRECTION`, `NFT_CT_MARK`.
const CT_STATE: u32 = 0;
const CT_DIRECTION: u32 = 1;
const CT_MARK: u32 = 3;
/// `ct state` bits: established, related.
const CT_ESTABLISHED: u32 = 1 << 1;
const CT_RELATED: u32 = 1 << 2;
/// `IP_CT_DIR_REPLY`.
const CT_DIR_REPLY: u8 = 1;
/// `NFT_PAYLOAD_NETWORK_HEADER`, `NFT_PAYLOAD_TRANSPORT_HEADER`.
const NETWORK_HEADER: u32 = 1;
const TRANSPORT_HEADER: u32 = 2;
/// `NFTA_FIB_F_DADDR`, `NFT_FIB_RESULT_ADDRTYPE`, `RTN_LOCAL`.
const FIB_F_DADDR: u32 = 1 << 1;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const RTN_LOCAL: u32 = 2;

/// Netlink attributes being written, laid out as libmnl lays them out:
/// a 4-byte header (length without padding, type) and the value padded
/// to 4 bytes; a nest's length covers its padded attributes.
#[derive(Debug, Default)]
pub(super) struct Attrs(pub(super) Vec<u8>);

impl Attrs {
    pub(super) fn put(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).expect("an attribute under 64 KiB");
        self.0.extend(len.to_ne_bytes());
        self.0.extend(kind.to_ne_bytes());
        self.0.extend(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    pub(super) fn u32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_be_bytes());
    }

    fn u64(&mut self, kind: u16, v: u64) {
        self.put(kind, &v.to_be_bytes());
    }

    /// A NUL-terminated string.
    fn str(&mut self, kind: u16, s: &str) {
        self.put(kind, &[s.as_bytes(), &[0]].concat());
    }

    /// A nest of what `f` writes.
    pub(super) fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Attrs)) {
        let start = self.0.len();
        self.0.extend([0; 4]);
        f(self);
        let len = u16::try_from(self.0.len() - start).expect("a nest under 64 KiB");
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    /// `NFTA_DATA_VALUE` in a nest.
    fn data(&mut self, kind: u16, value: &[u8]) {
        self.nest(kind, |a| a.put(NFTA_DATA_VALUE, value));
    }

    /// One expression of a rule.
    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Attrs)) {
        self.nest(NFTA_LIST_ELEM, |a| {
            a.str(NFTA_EXPR_NAME, name);
            a.nest(NFTA_EXPR_DATA, data);
        });
    }
}

/// What a set or map created in the same batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holds {
    /// A set of this kind.
    Set(SetKind),
    /// A verdict map keyed by addresses of this family.
    Map(Family),
    /// The generation's set or map (`ct mark` values).
    Marks,
}

/// What the rules of a batch may refer to: the sets and maps the batch
/// creates, with their transaction ids and what they hold. Sets not named
/// here are taken to exist in the kernel with the kind the compiler gives
/// them (the rules that name them are the compiler's).
#[derive(Debug, Default)]
pub(super) struct Refs<'a> {
    pub(super) sets: BTreeMap<&'a str, (u32, Holds)>,
}

impl Refs<'_> {
    /// Whether set `name` can be what a rule expects: the batch does not
    /// create it, or creates it holding what `ok` accepts.
    fn fits(&self, name: &str, ok: impl Fn(Holds) -> bool) -> Option<()> {
        self.sets
            .get(name)
            .is_none_or(|(_, h)| ok(*h))
            .then_some(())
    }
}

/// The register nft names for a value starting `word` 32-bit words into
/// the first register's 64 bytes (nft's `netlink_put_register`).
fn reg(word: u32) -> u32 {
    const NFT_REG32_00: u32 = 8;
    if word.is_multiple_of(4) {
        REG_1 + word / 4
    } else {
        NFT_REG32_00 + word
    }
}

/// A rule's writer: the expressions so far, and the network protocol a
/// dependency has established.
struct Writer<'r, 'a> {
    a: Attrs,
    nfproto: Option<Family>,
    refs: &'r Refs<'a>,
}

impl Writer<'_, '_> {
    fn meta(&mut self, key: u32, dreg: u32) {
        self.a.expr("meta", |a| {
            a.u32(2, key);
            a.u32(1, dreg);
        });
    }

    fn cmp(&mut self, neq: bool, value: &[u8]) {
        self.a.expr("cmp", |a| {
            a.u32(1, REG_1);
            a.u32(2, u32::from(neq));
            a.data(3, value);
        });
    }

    fn payload(&mut self, dreg: u32, base: u32, offset: u32, len: u32) {
        self.a.expr("payload", |a| {
            a.u32(1, dreg);
            a.u32(2, base);
            a.u32(3, offset);
            a.u32(4, len);
        });
    }

    /// `lookup reg 1 set NAME [dreg D] [inverted]`.
    fn lookup(&mut self, set: &str, dreg: Option<u32>, inverted: bool) {
        let id = self.refs.sets.get(set).map(|(id, _)| *id);
        self.a.expr("lookup", |a| {
            a.u32(2, REG_1);
            if let Some(d) = dreg {
                a.u32(3, d);
            }
            a.str(1, set);
            if let Some(id) = id {
                a.u32(4, id);
            }
            if inverted {
                a.u32(5, 1);
            }
        });
    }

    fn ct_load(&mut self, key: u32) {
        self.a.expr("ct", |a| {
            a.u32(2, key);
            a.u32(1, REG_1);
        });
    }

    fn ct_set_mark(&mut self) {
        self.a.expr("ct", |a| {
            a.u32(2, CT_MARK);
            a.u32(4, REG_1);
        });
    }

    /// `reg 1 = (reg 1 & mask) ^ xor` on 4 host-order bytes; `op`: with
    /// the operation attribute (`NFT_BITWISE_BOOL`).
    fn bitwise(&mut self, op: bool, mask: u32, xor: u32) {
        self.a.expr("bitwise", |a| {
            a.u32(1, REG_1);
            a.u32(2, REG_1);
            if op {
                a.u32(6, 0);
            }
            a.u32(3, 4);
            a.data(4, &mask.to_ne_bytes());
            a.data(5, &xor.to_ne_bytes());
        });
    }

    /// `ct state` has one of `bits`.
    fn ct_state(&mut self, bits: u32) {
        self.ct_load(CT_STATE);
        self.bitwise(false, bits, 0);
        self.cmp(true, &0u32.to_ne_bytes());
    }

    /// `ct mark and ~MASK` in register 1 (what the stamp rules start with).
    fn ct_mark_unstamped(&mut self, xor: u32) {
        self.ct_load(CT_MARK);
        self.bitwise(true, !Generation::MASK, xor);
    }

    /// nft's `meta nfproto` dependency for a header field of `f`; `None`
    /// when the rule already matched the other family (nft refuses it).
    fn depend(&mut self, f: Family) -> Option<()> {
        match self.nfproto {
            Some(known) => (known == f).then_some(()),
            None => {
                self.meta(META_NFPROTO, REG_1);
                let proto: u8 = match f {
                    Family::V4 => 2,
                    Family::V6 => 10,
                };
                self.cmp(false, &[proto]);
                self.nfproto = Some(f);
                Some(())
            }
        }
    }

    /// The address `a` of the packet into `dreg` (with its dependency).
    fn addr(&mut self, f: Family, a: Addr, dreg: u32) -> Option<()> {
        self.depend(f)?;
        let (offset, len) = match (f, a) {
            (Family::V4, Addr::Src) => (12, 4),
            (Family::V4, Addr::Dst) => (16, 4),
            (Family::V6, Addr::Src) => (8, 16),
            (Family::V6, Addr::Dst) => (24, 16),
        };
        self.payload(dreg, NETWORK_HEADER, offset, len);
        Some(())
    }

    /// `th dport` into `dreg`.
    fn dport(&mut self, dreg: u32) {
        self.payload(dreg, TRANSPORT_HEADER, 2, 2);
    }

    fn matches(&mut self, m: &Match) -> Option<()> {
        let refs = self.refs;
        let words = |f: Family| match f {
            Family::V4 => 1,
            Family::V6 => 4,
        };
        match m {
            Match::AddrIn(f, a, set) | Match::AddrNotIn(f, a, set) => {
                let ok = |h| matches!(h, Holds::Set(SetKind::Addr(x) | SetKind::AddrInterval(x)) if x == *f);
                refs.fits(set, ok)?;
                self.addr(*f, *a, REG_1)?;
                self.lookup(set, None, matches!(m, Match::AddrNotIn(..)));
            }
            Match::SelfPair(f, set) => {
                refs.fits(set, |h| h == Holds::Set(SetKind::AddrPair(*f)))?;
                self.addr(*f, Addr::Src, REG_1)?;
                self.addr(*f, Addr::Dst, reg(words(*f)))?;
                self.lookup(set, None, false);
            }
            Match::ProtoPortIn(set) => {
                refs.fits(set, |h| h == Holds::Set(SetKind::ProtoPort))?;
                self.meta(META_L4PROTO, REG_1);
                // hton(reg 1, 2, 1): the protocol byte as the interval
                // set's network-order key holds it.
                self.a.expr("byteorder", |a| {
                    a.u32(1, REG_1);
                    a.u32(2, REG_1);
                    a.u32(3, 1);
                    a.u32(4, 1);
                    a.u32(5, 2);
                });
                self.dport(reg(1));
                self.lookup(set, None, false);
            }
            Match::DstProtoPortIn(f, set) => {
                refs.fits(set, |h| h == Holds::Set(SetKind::AddrProtoPort(*f)))?;
                self.addr(*f, Addr::Dst, REG_1)?;
                self.meta(META_L4PROTO, reg(words(*f)));
                self.dport(reg(words(*f) + 1));
                self.lookup(set, None, false);
            }
            Match::FibDaddrLocal => {
                self.a.expr("fib", |a| {
                    a.u32(3, FIB_F_DADDR);
                    a.u32(2, FIB_RESULT_ADDRTYPE);
                    a.u32(1, REG_1);
                });
                self.cmp(false, &RTN_LOCAL.to_ne_bytes());
            }
            Match::CtEstablishedRelated => self.ct_state(CT_ESTABLISHED | CT_RELATED),
            Match::CtRelated => self.ct_state(CT_RELATED),
            Match::CtEstablishedCurrent => {
                self.ct_state(CT_ESTABLISHED);
                self.ct_load(CT_MARK);
                self.lookup(names::GENERATION_SET, None, false);
            }
            Match::CtStampCurrent => {
                self.ct_load(CT_MARK);
                self.lookup(names::GENERATION_SET, None, false);
            }
            Match::CtReply => {
                self.ct_load(CT_DIRECTION);
                self.cmp(false, &[CT_DIR_REPLY]);
            }
            Match::CtRevoked => {
                self.ct_load(CT_MARK);
                self.bitwise(true, Generation::MASK, 0);
                self.cmp(false, &Generation::MASK.to_ne_bytes());
            }
            Match::NeighbourDiscovery => return None,
        }
        Some(())
    }

    /// `immediate reg 0 CODE [CHAIN]`.
    fn verdict_code(&mut self, code: i32, chain: Option<&str>) {
        self.a.expr("immediate", |a| {
            a.u32(1, REG_VERDICT);
            a.nest(2, |a| {
                a.nest(NFTA_DATA_VERDICT, |a| {
                    a.put(NFTA_VERDICT_CODE, &code.to_be_bytes());
                    if let Some(c) = chain {
                        a.str(NFTA_VERDICT_CHAIN, c);
                    }
                });
            });
        });
    }

    fn verdict(&mut self, v: &Verdict) -> Option<()> {
        match v {
            Verdict::Accept => self.verdict_code(NF_ACCEPT, None),
            Verdict::CountedDrop => {
                self.a.expr("counter", |_| {});
                self.verdict_code(NF_DROP, None);
            }
            Verdict::Jump(c) => self.verdict_code(NFT_JUMP, Some(c)),
            Verdict::Goto(c) => self.verdict_code(NFT_GOTO, Some(c)),
            Verdict::Return => self.verdict_code(NFT_RETURN, None),
            Verdict::AddrVmap(f, a, map) => {
                self.refs.fits(map, |h| h == Holds::Map(*f))?;
                self.addr(*f, *a, REG_1)?;
                self.lookup(map, Some(REG_VERDICT), false);
            }
            Verdict::Log(l) => self.log(l)?,
            Verdict::CtRevoke => {
                self.ct_mark_unstamped(Generation::MASK);
                self.ct_set_mark();
            }
            Verdict::CtClearStamp => {
                self.ct_mark_unstamped(0);
                self.ct_set_mark();
            }
            Verdict::CtStamp => {
                self.ct_mark_unstamped(0);
                self.lookup(names::STAMP_MAP, Some(REG_1), false);
                self.ct_set_mark();
            }
        }
        Some(())
    }

    /// `limit rate R/second burst B packets log prefix "P" group G`; `None`
    /// for what nft itself refuses or could not read back from the script
    /// (a burst of 0, a prefix with a double quote or a control character).
    fn log(&mut self, l: &Log) -> Option<()> {
        if l.burst == 0 || !quotable(&l.prefix) {
            return None;
        }
        self.a.expr("limit", |a| {
            a.u64(1, u64::from(l.rate));
            a.u64(2, 1);
            a.u32(3, l.burst);
            a.u32(4, 0);
            a.u32(5, 0);
        });
        self.a.expr("log", |a| {
            a.str(2, &l.prefix);
            a.put(1, &l.group.to_be_bytes());
        });
        Some(())
    }
}

/// Whether `s` reads back from a script's `"…"` as itself.
fn quotable(s: &str) -> bool {
    !s.chars().any(|c| c == '"' || c.is_control())
}

/// The `NFTA_RULE_EXPRESSIONS` list of `r` (its value, without the nest's
/// header), or `None` when it holds something not encoded or that nft
/// would refuse.
pub(super) fn expressions(r: &Rule, refs: &Refs<'_>) -> Option<Vec<u8>> {
    let mut w = Writer {
        a: Attrs::default(),
        nfproto: None,
        refs,
    };
    for m in &r.matches {
        w.matches(m)?;
    }
    w.verdict(&r.verdict)?;
    Some(w.a.0)
}

/// A comment as libnftnl's user data holds it: one TLV, `kind` (each
/// object type numbers its comment: `NFTNL_UDATA_RULE_COMMENT` and
/// `NFTNL_UDATA_CHAIN_COMMENT` are 0, `NFTNL_UDATA_SET_COMMENT` is 7), the
/// length with the terminating NUL, the text and a NUL. `None` for a
/// comment nft refuses (over 128 bytes) or could not read back.
pub(super) fn comment(kind: u8, text: &str) -> Option<Vec<u8>> {
    if text.len() > names::MAX_COMMENT || !quotable(text) {
        return None;
    }
    let len = u8::try_from(text.len() + 1).ok()?;
    Some([&[kind, len][..], text.as_bytes(), &[0]].concat())
}

#[cfg(test)]
mod tests;
