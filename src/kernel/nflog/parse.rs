//! The defensive half of the NFLOG reader: netlink messages in and out
//! through `netlink-packet-netfilter`, packet headers by hand. Parsing never
//! panics: a short, truncated or unexpected message is skipped (and
//! counted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{ConfigNla, PacketNla, ULogMessage, config_request};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};

use super::{Packet, Transport};

/// Length of a netlink message header.
const NLMSG_HDRLEN: usize = 16;
/// Message types below this are netlink's own (noop, error, done, overrun).
const NLMSG_MIN_TYPE: u16 = 0x10;
/// The nfnetlink subsystem of NFLOG (the high byte of a message type).
const NFNL_SUBSYS_ULOG: u16 = 4;

/// What one datagram from the kernel held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Packets parsed.
    pub packets: Vec<Packet>,
    /// Messages that were not packets we could read (short, truncated, no payload).
    pub skipped: usize,
}

/// The netlink messages of a datagram, each parsed on its own: a message
/// that does not parse is `Err` and the walk goes on with the next one; a
/// header whose length does not fit ends it.
///
/// Only netlink's own messages and NFLOG's are handed to the decoder; any
/// other nfnetlink subsystem is `Err` unread. The group socket receives
/// nothing else, and netlink-packet-netfilter 0.4's nf_tables and conntrack
/// decoders panic on some malformed attributes (a nested attribute whose
/// length runs past its parent: found by the `nflog` fuzz target,
/// `other_nfnetlink_subsystems_are_skipped_unread` replays it).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = Result<NetlinkMessage<NetfilterMessage>, ()>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let Ok(header) = NetlinkBuffer::new_checked(buf) else {
            buf = &[];
            return Some(Err(()));
        };
        // new_checked ensured NLMSG_HDRLEN <= len <= buf.len().
        let len = header.length() as usize;
        let ty = header.message_type();
        let one = if ty < NLMSG_MIN_TYPE || ty >> 8 == NFNL_SUBSYS_ULOG {
            NetlinkMessage::<NetfilterMessage>::deserialize(&buf[..len]).map_err(|_| ())
        } else {
            Err(())
        };
        buf = &buf[align4(len).min(buf.len())..];
        Some(one)
    })
}

/// Parses a datagram of netlink messages from the NFLOG subsystem.
pub fn parse(buf: &[u8]) -> Batch {
    let mut out = Batch::default();
    for m in messages(buf) {
        match m.map(|m| m.payload) {
            Ok(NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            })) => match packet(&nlas) {
                Some(p) => out.packets.push(p),
                None => out.skipped += 1,
            },
            Ok(
                NetlinkPayload::Error(_)
                | NetlinkPayload::Done(_)
                | NetlinkPayload::Noop
                | NetlinkPayload::Overrun(_),
            ) => {}
            _ => out.skipped += 1,
        }
    }
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One `NFULNL_MSG_PACKET`'s attributes: its prefix and the packet.
fn packet(nlas: &[PacketNla]) -> Option<Packet> {
    let mut prefix = None;
    let mut payload = None;
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => prefix = Some(p.to_string_lossy().into_owned()),
            PacketNla::Payload(p) => payload = Some(p.as_slice()),
            _ => {}
        }
    }
    let (src, dst, protocol, transport) = parse_ip(payload?)?;
    Some(Packet {
        prefix: prefix.unwrap_or_default(),
        src,
        dst,
        protocol,
        transport,
    })
}

/// Addresses, protocol and ports of an IPv4 or IPv6 packet (network header first).
pub fn parse_ip(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, Transport)> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < 20 {
                return None;
            }
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            let proto = p[9];
            let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            let l4 = if frag_offset != 0 {
                Transport::Unknown
            } else {
                transport(proto, p.get(ihl..).unwrap_or_default())
            };
            Some((src.into(), dst.into(), proto, l4))
        }
        6 => {
            if p.len() < 40 {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
            let mut next = p[6];
            let mut off = 40;
            // Hop-by-hop, routing, fragment, destination options: skip to the transport.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let h = p.get(off..off + 2)?;
                        next = h[0];
                        off += (usize::from(h[1]) + 1) * 8;
                    }
                    44 => {
                        let h = p.get(off..off + 8)?;
                        next = h[0];
                        let frag_offset = u16::from_be_bytes([h[2], h[3]]) >> 3;
                        off += 8;
                        if frag_offset != 0 {
                            return Some((src.into(), dst.into(), next, Transport::Unknown));
                        }
                    }
                    _ => break,
                }
            }
            let l4 = transport(next, p.get(off..).unwrap_or_default());
            Some((src.into(), dst.into(), next, l4))
        }
        _ => None,
    }
}

fn transport(proto: u8, h: &[u8]) -> Transport {
    match proto {
        // TCP, UDP, DCCP, SCTP, UDP-Lite: source and destination port first.
        6 | 17 | 33 | 132 | 136 if h.len() >= 4 => Transport::Ports {
            sport: u16::from_be_bytes([h[0], h[1]]),
            dport: u16::from_be_bytes([h[2], h[3]]),
        },
        1 | 58 if h.len() >= 2 => Transport::Icmp {
            kind: h[0],
            code: h[1],
        },
        _ => Transport::Unknown,
    }
}

/// One `NFULNL_MSG_CONFIG` request for `group` carrying one attribute,
/// asking for an acknowledgement.
pub(super) fn config_message(seq: u32, group: u16, nla: ConfigNla) -> Vec<u8> {
    let mut m = config_request(NetfilterProtoFamily::Unspec, group, vec![nla]);
    m.header.sequence_number = seq;
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

/// The kernel's answer to request `seq` in a datagram, if it holds one:
/// `Ok(())` for an acknowledgement, `Err(errno)` for an error.
pub(super) fn ack(buf: &[u8], seq: u32) -> Option<Result<(), i32>> {
    messages(buf).flatten().find_map(|m| match m.payload {
        NetlinkPayload::Error(e) if m.header.sequence_number == seq => Some(match e.code {
            None => Ok(()),
            Some(code) => Err(-code.get()),
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLMSG_ERROR: u16 = 2;

    #[test]
    fn a_config_request_and_its_acknowledgement() {
        use netlink_packet_netfilter::nflog::ConfigCmd;
        let m = config_message(7, 9750, ConfigCmd::Bind.into());
        // nlmsghdr, nfgenmsg, one 5-byte attribute padded to 8.
        assert_eq!(m.len(), NLMSG_HDRLEN + 4 + 8);
        assert_eq!(m[..4], (m.len() as u32).to_ne_bytes(), "length");
        assert_eq!(
            m[4..6],
            ((NFNL_SUBSYS_ULOG << 8) | 1).to_ne_bytes(),
            "NFULNL_MSG_CONFIG"
        );
        assert_eq!(m[6..8], 5u16.to_ne_bytes(), "NLM_F_REQUEST | NLM_F_ACK");
        assert_eq!(m[8..12], 7u32.to_ne_bytes(), "sequence number");
        assert_eq!(m[16], 0, "AF_UNSPEC");
        assert_eq!(&m[18..20], &9750u16.to_be_bytes(), "group, big-endian");
        assert_eq!(m[20..25], [5, 0, 1, 0, 1], "NFULA_CFG_CMD BIND");
        let reply = |seq: u32, code: i32| {
            let mut r = Vec::new();
            r.extend(36u32.to_ne_bytes());
            r.extend(NLMSG_ERROR.to_ne_bytes());
            r.extend(0u16.to_ne_bytes());
            r.extend(seq.to_ne_bytes());
            r.extend(0u32.to_ne_bytes());
            r.extend(code.to_ne_bytes());
            r.extend(&m[..16]);
            r
        };
        assert_eq!(ack(&reply(7, 0), 7), Some(Ok(())));
        assert_eq!(ack(&reply(7, -libc::EPERM), 7), Some(Err(libc::EPERM)));
        assert_eq!(ack(&reply(6, 0), 7), None, "another request's answer");
        assert_eq!(ack(&reply(7, 0)[..10], 7), None, "truncated");
        let mut two = reply(6, 0);
        two.extend(reply(7, -libc::EBUSY));
        assert_eq!(ack(&two, 7), Some(Err(libc::EBUSY)), "the second of two");
    }

    /// A packet message as the kernel sends it: nlmsghdr, nfgenmsg, then
    /// attributes (packet header, a few others, prefix, payload); the same
    /// builder makes the fuzzer's seeds.
    fn message(prefix: &str, payload: &[u8]) -> Vec<u8> {
        crate::kernel::fuzz::nflog_message(prefix, payload)
    }

    /// An IPv4 TCP SYN 10.244.1.10:40000 → 10.244.2.11:80 (captured layout).
    fn v4_tcp() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 63, 6, 0, 0, 10, 244, 1, 10, 10, 244, 2, 11,
        ];
        p.extend(40000u16.to_be_bytes());
        p.extend(80u16.to_be_bytes());
        p.extend([0; 16]);
        p
    }

    fn v6_udp_with_hop_by_hop() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0 /* hop-by-hop */, 64];
        p.extend("fd00:10:244:1::10".parse::<Ipv6Addr>().unwrap().octets());
        p.extend("fd00:10:244:2::11".parse::<Ipv6Addr>().unwrap().octets());
        p.extend([17, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, next UDP, 8 bytes
        p.extend(5353u16.to_be_bytes());
        p.extend(53u16.to_be_bytes());
        p.extend([0, 8, 0, 0]);
        p
    }

    #[test]
    fn parses_a_batch_of_v4_and_v6_packets() {
        let mut buf = message("nftpol drop ingress-group-ABC", &v4_tcp());
        buf.extend(message(
            "nftpol drop egress-group-XYZ",
            &v6_udp_with_hop_by_hop(),
        ));
        let b = parse(&buf);
        assert_eq!(b.skipped, 0);
        assert_eq!(
            b.packets,
            vec![
                Packet {
                    prefix: "nftpol drop ingress-group-ABC".into(),
                    src: "10.244.1.10".parse().unwrap(),
                    dst: "10.244.2.11".parse().unwrap(),
                    protocol: 6,
                    transport: Transport::Ports {
                        sport: 40000,
                        dport: 80
                    },
                },
                Packet {
                    prefix: "nftpol drop egress-group-XYZ".into(),
                    src: "fd00:10:244:1::10".parse().unwrap(),
                    dst: "fd00:10:244:2::11".parse().unwrap(),
                    protocol: 17,
                    transport: Transport::Ports {
                        sport: 5353,
                        dport: 53
                    },
                },
            ]
        );
    }

    #[test]
    fn icmp_fragments_and_other_protocols() {
        let mut icmp = v4_tcp();
        icmp[9] = 1;
        icmp[20] = 8; // echo request
        icmp[21] = 0;
        let (_, _, proto, t) = parse_ip(&icmp).unwrap();
        assert_eq!((proto, t), (1, Transport::Icmp { kind: 8, code: 0 }));
        let mut frag = v4_tcp();
        frag[7] = 10; // fragment offset 80 bytes: no transport header here
        assert_eq!(parse_ip(&frag).unwrap().3, Transport::Unknown);
        let mut gre = v4_tcp();
        gre[9] = 47;
        assert_eq!(parse_ip(&gre).unwrap().3, Transport::Unknown);
        // Ports cut off by the copy range.
        assert_eq!(parse_ip(&v4_tcp()[..22]).unwrap().3, Transport::Unknown);
    }

    #[test]
    fn never_panics_on_short_or_odd_input() {
        let good = message("p", &v4_tcp());
        // Every truncation of a valid message, and garbage, is skipped or parsed, never a panic.
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        for n in 0..v6_udp_with_hop_by_hop().len() {
            let _ = parse_ip(&v6_udp_with_hop_by_hop()[..n]);
        }
        let mut bad_len = good.clone();
        bad_len[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(parse(&bad_len).packets.len(), 0);
        let mut zero_attr = good.clone();
        zero_attr[20..22].copy_from_slice(&0u16.to_ne_bytes()); // first attribute length 0
        assert_eq!(parse(&zero_attr).packets.len(), 0);
        assert_eq!(parse(&[0xff; 64]).packets.len(), 0);
        // No payload attribute: skipped.
        let mut no_payload = message("p", &[]);
        no_payload.truncate(no_payload.len() - 4);
        let len = no_payload.len() as u32;
        no_payload[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse(&no_payload).packets.len(), 0);
        // A prefix without its terminating NUL: the message is skipped.
        let mut no_nul = message("p", &v4_tcp());
        let at = no_nul
            .windows(2)
            .position(|w| w == [b'p', 0])
            .expect("the prefix");
        no_nul[at + 1] = b'q';
        let b = parse(&no_nul);
        assert_eq!((b.packets.len(), b.skipped), (0, 1));
        // A bad message between two good ones costs only itself.
        let mut three = message("a", &v4_tcp());
        three.extend(no_nul);
        three.extend(message("c", &v4_tcp()));
        let b = parse(&three);
        assert_eq!(b.skipped, 1);
        let prefixes: Vec<&str> = b.packets.iter().map(|p| p.prefix.as_str()).collect();
        assert_eq!(prefixes, ["a", "c"]);
        // An IPv6 packet whose extension headers loop or run off the end.
        let mut loopy = v6_udp_with_hop_by_hop();
        loopy[6] = 60;
        loopy[40] = 60;
        assert!(parse_ip(&loopy).is_some());
    }

    #[test]
    fn other_nfnetlink_subsystems_are_skipped_unread() {
        // The `nflog` fuzz target's first crash, minimised: an nf_tables
        // NEWSET message (subsystem 10) whose nested attribute claims more
        // bytes than it has made netlink-packet-netfilter 0.4 index out of
        // bounds. It is now skipped without being decoded.
        let crash: &[u8] = &[
            0x74, 0, 0, 0, 0x09, 0x0a, 0, 0x03, 0, 0x08, 0, 0x04, 0, 0, 0, 0, //
            0x2c, 0, 0x09, 0, 0x45, 0, 0x11, 0, 0x12, 0x34, 0x40, 0, 0x3f, 0x06, 0, 0, //
            0x43, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x02, 0x0b, 0x9c, 0x40, 0, 0, 0, //
            0x43, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x02, 0x0b, 0x9c, 0x40, 0, 0x6e, 0x66, //
            0x74, 0x70, 0x6f, 0x6c, 0, 0x64, 0x72, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0, //
            0, 0, 0, 0, 0, 0, 0x02, 0, 0x26, 0x16, 0x08, 0, 0x01, 0, 0x20, 0x65, //
            0x10, 0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
            0, 0x9c, 0x40, 0,
        ];
        assert_eq!(crash.len(), 116);
        let b = parse(crash);
        assert_eq!((b.packets.len(), b.skipped), (0, 1), "{b:?}");
        // Behind it, an NFLOG packet is still read.
        let mut two = crash.to_vec();
        two.extend(message("after", &v4_tcp()));
        let b = parse(&two);
        assert_eq!((b.packets.len(), b.skipped), (1, 1), "{b:?}");
        assert_eq!(b.packets[0].prefix, "after");
    }

    proptest::proptest! {
        /// Any bytes at all, and any corruption of a valid batch, parse
        /// without a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&bytes);
            let _ = ack(&bytes, 1);
        }

        #[test]
        fn corrupted_messages_never_panic(at in 0usize..200, value in proptest::num::u8::ANY) {
            let mut buf = message("nftpol drop ingress-group-ABC", &v4_tcp());
            buf.extend(message("x", &v6_udp_with_hop_by_hop()));
            let i = at % buf.len();
            buf[i] = value;
            let b = parse(&buf);
            // Every packet or skip consumed at least one message header.
            proptest::prop_assert!(b.packets.len() + b.skipped <= buf.len() / NLMSG_HDRLEN);
        }
    }
}
