//! Element changes and deletions as nftables netlink messages, and the
//! kernel's replies. No IO here: [`batch`] and [`removal`] give the bytes
//! one `send` hands the kernel, [`replies`] reads what comes back.
//!
//! Layout (the kernel's `include/uapi/linux/netfilter/nf_tables.h`, and
//! what `nft --debug=netlink` prints for the same `add element`): a key is
//! its fields one after the other, each padded to 4 bytes — an IPv4
//! address 4 bytes, IPv6 16 (network order), `inet_proto` its number in
//! the first byte of 4, `inet_service` the port big-endian in the first two
//! of 4; `mark` (the generation's set and map) is a host-order `u32`. A
//! dispatch map's value is a verdict: `jump` and the chain's name.
//! Interval sets (ipBlocks, numeric port ranges) are not encoded: their
//! elements are ranges whose kernel form depends on the set's backend, and
//! element churn never touches them; a change naming one goes as a script.

use std::net::IpAddr;

use netlink_packet_core::{
    DefaultNla, Emitable, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkMessage,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, ListAttribute, NfTablesMessage, RuleAttribute,
    RuleMessage, SetAttribute, SetElementAttribute, SetElementFlags, SetElementList,
    SetElementMessage, SetMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

use crate::core::nft::delta::{ElementChange, MapElements, Removal};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Element, TABLE};

/// `NFNL_SUBSYS_NFTABLES`: the subsystem a batch begins and ends for.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NLMSG_ERROR`: an acknowledgement (error 0) or an error.
const NLMSG_ERROR: u16 = 2;
/// Elements per message: keeps one message far below the socket buffer.
const ELEMENTS_PER_MESSAGE: usize = 512;
/// `NFTA_DATA_VALUE`.
const NFTA_DATA_VALUE: u16 = 1;

/// One element of a set or map as the kernel takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Elem {
    pub(super) key: Vec<u8>,
    /// Closes the interval the element before it opened
    /// (`NFT_SET_ELEM_INTERVAL_END`).
    pub(super) end: bool,
    /// A concatenated interval's last key (`NFTA_SET_ELEM_KEY_END`).
    pub(super) key_end: Option<Vec<u8>>,
    /// A map's value.
    pub(super) data: Option<DataAttribute>,
    /// libnftnl's user data (`NFTA_SET_ELEM_USERDATA`).
    pub(super) userdata: Option<Vec<u8>>,
}

impl Elem {
    /// An element that is its key.
    pub(super) fn key(key: Vec<u8>) -> Elem {
        Elem {
            key,
            ..Elem::default()
        }
    }
}

/// One message of a batch: what it carries, its extra flags, and what it
/// does (for error messages).
pub(super) type Message = (NfTablesMessage, u16, String);

/// The messages of one transaction, ready to send.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Batch begin, the messages, batch end.
    pub bytes: Vec<u8>,
    /// Sequence number of each message between begin and end (they follow
    /// the begin's), with what it does. Only the last asks for an
    /// acknowledgement: the kernel reports every message it refuses
    /// anyway, and an acknowledgement per message would overflow the
    /// socket's receive buffer on a batch of thousands of rules.
    pub messages: Vec<(u32, String)>,
}

impl Batch {
    /// What the message numbered `seq` does; the begin or end of the batch
    /// for theirs; `None` for any other number.
    pub fn describe(&self, seq: u32) -> Option<&str> {
        let first = self.messages.first()?.0;
        let begin = first.wrapping_sub(1);
        let end = first.wrapping_add(self.messages.len() as u32);
        if seq == begin || seq == end {
            return Some("the batch");
        }
        let i = seq.wrapping_sub(first) as usize;
        self.messages.get(i).map(|(_, w)| w.as_str())
    }

    /// The sequence number of the message whose acknowledgement says the
    /// kernel took the batch.
    pub fn acked(&self) -> u32 {
        self.messages.last().map_or(0, |(s, _)| *s)
    }
}

/// The address's bytes as the kernel keys it (network order).
fn addr(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A set element's key, or `None` for an interval element (not encoded).
fn key(e: &Element) -> Option<Vec<u8>> {
    Some(match e {
        Element::Addr(ip) => addr(ip),
        Element::AddrPair(a, b) => [addr(a), addr(b)].concat(),
        Element::AddrProtoPort(ip, proto, port) => {
            let [hi, lo] = port.to_be_bytes();
            [addr(ip), vec![proto.number(), 0, 0, 0], vec![hi, lo, 0, 0]].concat()
        }
        Element::Range(_) | Element::ProtoPort(..) => return None,
    })
}

fn jump(chain: &str) -> DataAttribute {
    DataAttribute::Verdict(vec![
        VerdictAttribute::Code(Verdict::Jump),
        VerdictAttribute::Chain(chain.to_string()),
    ])
}

/// A dispatch map's element: address to `jump` chain.
pub(super) fn map_elem(ip: &IpAddr, chain: &str) -> Elem {
    Elem {
        data: Some(jump(chain)),
        ..Elem::key(addr(ip))
    }
}

fn map_elems(m: &MapElements) -> Vec<Elem> {
    m.iter().map(|(ip, chain)| map_elem(ip, chain)).collect()
}

/// Elements of a set that is not an interval set; `None` when one is an
/// interval.
pub(super) fn set_elems<'a>(s: impl IntoIterator<Item = &'a Element>) -> Option<Vec<Elem>> {
    s.into_iter().map(|e| key(e).map(Elem::key)).collect()
}

/// The element of `ct-generation` holding `stamp` (a `mark`: host order).
pub(super) fn generation_elem(stamp: u32) -> Elem {
    Elem::key(stamp.to_ne_bytes().to_vec())
}

/// The element of `ct-stamp` mapping the unstamped mark 0 to `stamp`.
pub(super) fn stamp_elem(stamp: u32) -> Elem {
    Elem {
        data: Some(DataAttribute::Value(stamp.to_ne_bytes().to_vec())),
        ..Elem::key(0u32.to_ne_bytes().to_vec())
    }
}

/// What one transaction does, in the order the script would: every
/// deletion (sets, then maps), every addition, then the generation step.
/// `None` when an element cannot be encoded.
fn operations(change: &ElementChange) -> Option<Vec<(bool, String, Vec<Elem>)>> {
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for (name, (deleted, added)) in &change.edits.sets {
        deletes.push((false, name.clone(), set_elems(deleted)?));
        adds.push((true, name.clone(), set_elems(added)?));
    }
    for (name, (deleted, added)) in &change.edits.maps {
        deletes.push((false, name.clone(), map_elems(deleted)));
        adds.push((true, name.clone(), map_elems(added)));
    }
    let mut ops = deletes;
    ops.extend(adds);
    if let Some((old, new)) = change.generation {
        let gen_set = names::GENERATION_SET.to_string();
        let stamp_map = names::STAMP_MAP.to_string();
        ops.push((false, gen_set.clone(), vec![generation_elem(old.stamp())]));
        ops.push((false, stamp_map.clone(), vec![stamp_elem(old.stamp())]));
        ops.push((true, gen_set, vec![generation_elem(new.stamp())]));
        ops.push((true, stamp_map, vec![stamp_elem(new.stamp())]));
    }
    ops.retain(|(_, _, elems)| !elems.is_empty());
    Some(ops)
}

fn emit(m: &mut NetlinkMessage<NetfilterMessage>, out: &mut Vec<u8>) {
    m.finalize();
    let start = out.len();
    out.resize(start + m.header.length as usize, 0);
    m.serialize(&mut out[start..]);
}

fn control(
    inner: netlink_packet_netfilter::none::ControlMessage,
    seq: u32,
) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        inner,
    ));
    m.header.flags = NLM_F_REQUEST;
    m.header.sequence_number = seq;
    m
}

/// The transaction as one batch whose sequence numbers start at `seq`;
/// `None` when it holds an element this encoder does not write (an
/// interval: the caller sends the script instead), or nothing to do.
pub fn batch(change: &ElementChange, seq: u32) -> Option<Batch> {
    let ops = operations(change)?;
    let mut messages = Vec::new();
    for (add, set, elems) in ops {
        messages.extend(element_messages(add, &set, None, &elems));
    }
    framed(messages, seq)
}

/// `NFT_MSG_NEWSETELEM` (`add`) or `NFT_MSG_DELSETELEM` messages for
/// `elems` of set `set`, [`ELEMENTS_PER_MESSAGE`] at most in each, in
/// order; `id`: the set's transaction id when the same batch creates it.
pub(super) fn element_messages(
    add: bool,
    set: &str,
    id: Option<u32>,
    elems: &[Elem],
) -> Vec<Message> {
    let mut messages = Vec::new();
    for chunk in elems.chunks(ELEMENTS_PER_MESSAGE) {
        let list = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut attrs = Vec::new();
                if e.end {
                    attrs.push(SetElementAttribute::Flags(SetElementFlags::IntervalEnd));
                }
                attrs.push(SetElementAttribute::Key(DataAttribute::Value(
                    e.key.clone(),
                )));
                if let Some(k) = &e.key_end {
                    attrs.push(SetElementAttribute::KeyEnd(vec![DefaultNla::new(
                        NFTA_DATA_VALUE,
                        k.clone(),
                    )]));
                }
                if let Some(d) = &e.data {
                    attrs.push(SetElementAttribute::Data(d.clone()));
                }
                if let Some(u) = &e.userdata {
                    attrs.push(SetElementAttribute::UserData(u.clone()));
                }
                // Numbered from 1 as libnftnl numbers them (the kernel
                // reads a list's attributes whatever their type).
                let mut bytes = vec![0; attrs.as_slice().buffer_len()];
                attrs.as_slice().emit(&mut bytes);
                let kind = u16::try_from(i + 1).expect("512 at most") | NLA_F_NESTED;
                ListAttribute::Other(DefaultNla::new(kind, bytes))
            })
            .collect();
        let mut attributes = vec![
            SetElementList::Table(TABLE.to_string()),
            SetElementList::Set(set.to_string()),
        ];
        attributes.extend(id.map(SetElementList::SetId));
        attributes.push(SetElementList::Elements(list));
        let msg = SetElementMessage { attributes };
        let verb = if add { "add" } else { "delete" };
        let what = format!("{verb} {} element(s) in {set}", chunk.len());
        messages.push(match add {
            true => (NfTablesMessage::NewSetElement(msg), NLM_F_CREATE, what),
            false => (NfTablesMessage::DeleteSetElement(msg), 0, what),
        });
    }
    messages
}

/// A removal stage as one batch, in the script's order: each chain's rules
/// deleted (`flush chain`: a rule deletion naming only the chain), the maps
/// and sets deleted, then the chains.
pub fn removal(r: &Removal, seq: u32) -> Option<Batch> {
    let table = || TABLE.to_string();
    let mut messages = Vec::new();
    for c in &r.chains {
        let attributes = vec![
            RuleAttribute::Table(table()),
            RuleAttribute::Chain(c.clone()),
        ];
        let m = NfTablesMessage::DeleteRule(RuleMessage { attributes });
        messages.push((m, 0, format!("flush chain {c}")));
    }
    for (kind, name) in r
        .maps
        .iter()
        .map(|m| ("map", m))
        .chain(r.sets.iter().map(|s| ("set", s)))
    {
        let attributes = vec![
            SetAttribute::Table(table()),
            SetAttribute::Name(name.clone()),
        ];
        let m = NfTablesMessage::DeleteSet(SetMessage { attributes });
        messages.push((m, 0, format!("delete {kind} {name}")));
    }
    for c in &r.chains {
        let attributes = vec![
            ChainAttribute::Table(table()),
            ChainAttribute::Name(c.clone()),
        ];
        let m = NfTablesMessage::DeleteChain(ChainMessage { attributes });
        messages.push((m, 0, format!("delete chain {c}")));
    }
    framed(messages, seq)
}

/// `messages` (each with its extra flags and what it does) between a batch
/// begin and end, numbered from `seq`, the last asking for an
/// acknowledgement; `None` when there are none.
pub(super) fn framed(messages: Vec<Message>, seq: u32) -> Option<Batch> {
    use netlink_packet_netfilter::none::ControlMessage;
    if messages.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut seq = seq;
    emit(&mut control(ControlMessage::BatchBegin, seq), &mut out);
    let n = messages.len();
    let mut described = Vec::with_capacity(n);
    for (i, (inner, flags, what)) in messages.into_iter().enumerate() {
        seq = seq.wrapping_add(1);
        let mut m = NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
            inner,
        ));
        let ack = if i + 1 == n { NLM_F_ACK } else { 0 };
        m.header.flags = NLM_F_REQUEST | ack | flags;
        m.header.sequence_number = seq;
        emit(&mut m, &mut out);
        described.push((seq, what));
    }
    seq = seq.wrapping_add(1);
    emit(&mut control(ControlMessage::BatchEnd, seq), &mut out);
    Some(Batch {
        bytes: out,
        messages: described,
    })
}

/// The acknowledgements and errors in a datagram from the kernel: each
/// `NLMSG_ERROR`'s sequence number and code (0: acknowledged; negative:
/// `-errno`). Anything else, or a truncated message, is skipped.
pub fn replies(mut buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while let Ok(m) = NetlinkBuffer::new_checked(buf) {
        let len = m.length() as usize;
        if m.message_type() == NLMSG_ERROR
            && let Some(code) = m.payload().get(..4)
        {
            let code = i32::from_ne_bytes(code.try_into().expect("4 bytes"));
            out.push((m.sequence_number(), code));
        }
        let next = (len + 3) & !3;
        if next == 0 || next > buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Protocol;
    use crate::core::nft::delta::Edits;
    use crate::core::nft::ruleset::Generation;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The key bytes are what `nft --debug=netlink` shows for the same
    /// elements (its words are printed in host order: `0302010a` is
    /// 10.1.2.3; `0000901f` is port 8080 in the first two bytes).
    #[test]
    fn keys_are_laid_out_as_nft_lays_them_out() {
        assert_eq!(key(&Element::Addr(ip("10.1.2.3"))), Some(vec![10, 1, 2, 3]));
        assert_eq!(
            key(&Element::Addr(ip("fd00::1"))),
            Some([vec![0xfd], vec![0; 14], vec![1]].concat())
        );
        assert_eq!(
            key(&Element::AddrPair(ip("10.1.2.3"), ip("10.1.2.4"))),
            Some(vec![10, 1, 2, 3, 10, 1, 2, 4])
        );
        assert_eq!(
            key(&Element::AddrProtoPort(ip("10.1.2.3"), Protocol::Tcp, 8080)),
            Some(vec![10, 1, 2, 3, 6, 0, 0, 0, 0x1f, 0x90, 0, 0])
        );
        assert_eq!(key(&Element::ProtoPort(Protocol::Udp, 53, 53)), None);
    }

    #[test]
    fn a_batch_is_begin_the_element_messages_and_end() {
        let mut edits = Edits::default();
        edits.set_added(
            "self-v4",
            &Element::AddrPair(ip("10.0.0.9"), ip("10.0.0.9")),
        );
        edits.set_deleted(
            "self-v4",
            &Element::AddrPair(ip("10.0.0.8"), ip("10.0.0.8")),
        );
        edits.map_added("ingress-pods-v4", ip("10.0.0.9"), "ns-a", None);
        let change = ElementChange {
            edits: &edits,
            generation: Some((Generation::new(5), Generation::new(6))),
        };
        let b = batch(&change, 100).expect("encodable");
        // delete in self-v4; add in self-v4, the map; the generation's two deletes and two adds.
        let seqs: Vec<u32> = b.messages.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [101, 102, 103, 104, 105, 106, 107]);
        assert!(
            b.messages[0]
                .1
                .starts_with("delete 1 element(s) in self-v4")
        );
        assert!(b.messages[2].1.contains("ingress-pods-v4"));
        assert_eq!(b.acked(), 107);
        assert_eq!(b.describe(101), Some(b.messages[0].1.as_str()));
        assert_eq!(b.describe(100), Some("the batch"));
        assert_eq!(b.describe(108), Some("the batch"));
        assert_eq!(b.describe(109), None);
        // Walk the messages: types and flags.
        let mut types = Vec::new();
        let mut buf = &b.bytes[..];
        while let Ok(m) = NetlinkBuffer::new_checked(buf) {
            types.push((m.message_type(), m.flags()));
            buf = &buf[((m.length() as usize) + 3) & !3..];
        }
        let (req, ack, create) = (NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE);
        let (new, del) = ((10 << 8) | 12, (10 << 8) | 14);
        assert_eq!(types.first(), Some(&(16, req)), "batch begin");
        assert_eq!(types.last(), Some(&(17, req)), "batch end");
        assert_eq!(types[1], (del, req));
        assert_eq!(types[2], (new, req | create));
        assert_eq!(types.len(), 9);
        assert_eq!(
            types[7],
            (new, req | ack | create),
            "only the last asks for an ack"
        );
        // The generation's set key is the stamp in host order.
        let stamp = Generation::new(6).stamp().to_ne_bytes();
        assert!(b.bytes.windows(4).any(|w| w == stamp));
    }

    #[test]
    fn intervals_and_empty_changes_are_not_encoded() {
        let mut edits = Edits::default();
        edits.set_added("ports", &Element::ProtoPort(Protocol::Tcp, 80, 90));
        let change = ElementChange {
            edits: &edits,
            generation: None,
        };
        assert!(batch(&change, 1).is_none());
        let none = Edits::default();
        let change = ElementChange {
            edits: &none,
            generation: None,
        };
        assert!(batch(&change, 1).is_none());
    }

    #[test]
    fn large_changes_are_split_into_messages() {
        let mut edits = Edits::default();
        for i in 0..1200u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            edits.set_added("pods-v4", &Element::Addr(a));
        }
        let change = ElementChange {
            edits: &edits,
            generation: None,
        };
        let b = batch(&change, 0).unwrap();
        let counts: Vec<&str> = b.messages.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            counts,
            [
                "add 512 element(s) in pods-v4",
                "add 512 element(s) in pods-v4",
                "add 176 element(s) in pods-v4"
            ]
        );
    }

    #[test]
    fn replies_read_acknowledgements_and_errors_and_skip_the_rest() {
        let reply = |seq: u32, code: i32, ty: u16| {
            let mut r = Vec::new();
            r.extend(36u32.to_ne_bytes());
            r.extend(ty.to_ne_bytes());
            r.extend(0u16.to_ne_bytes());
            r.extend(seq.to_ne_bytes());
            r.extend(0u32.to_ne_bytes());
            r.extend(code.to_ne_bytes());
            r.extend([0u8; 16]);
            r
        };
        let buf = [reply(7, 0, 2), reply(8, -2, 2), reply(9, 0, 3)].concat();
        assert_eq!(replies(&buf), [(7, 0), (8, -2)]);
        assert_eq!(replies(&buf[..40]), [(7, 0)], "a truncated second message");
        assert_eq!(replies(&[1, 2, 3]), []);
    }
}
