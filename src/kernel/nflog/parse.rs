//! The defensive half of the NFLOG reader: netlink messages in and out as
//! plain bytes. Parsing never panics: a short, truncated or unexpected
//! message is skipped (and counted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Packet, Transport};

pub(super) const NFNL_SUBSYS_ULOG: u16 = 4;
pub(super) const NFULNL_MSG_PACKET: u16 = 0;
pub(super) const NFULNL_MSG_CONFIG: u16 = 1;
pub(super) const NFULA_PAYLOAD: u16 = 9;
pub(super) const NFULA_PREFIX: u16 = 10;
pub(super) const NFULA_CFG_CMD: u16 = 1;
pub(super) const NFULA_CFG_MODE: u16 = 2;
pub(super) const NFULA_CFG_QTHRESH: u16 = 5;
pub(super) const NFULNL_CFG_CMD_BIND: u8 = 1;
pub(super) const NFULNL_COPY_PACKET: u8 = 2;
pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NFGENMSG_LEN: usize = 4;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLMSG_OVERRUN: u16 = 4;
pub(super) const NLM_F_REQUEST: u16 = 1;
pub(super) const NLM_F_ACK: u16 = 4;
/// The type bits nested/byte-order flags may set on an attribute.
pub(super) const NLA_TYPE_MASK: u16 = 0x3fff;

/// What one datagram from the kernel held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Packets parsed.
    pub packets: Vec<Packet>,
    /// Messages that were not packets we could read (short, truncated, no payload).
    pub skipped: usize,
}

/// Parses a datagram of netlink messages from the NFLOG subsystem.
pub fn parse(mut buf: &[u8]) -> Batch {
    let mut out = Batch::default();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            out.skipped += 1;
            break;
        }
        let body = &buf[NLMSG_HDRLEN..len];
        if ty == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
            match parse_packet_msg(body) {
                Some(p) => out.packets.push(p),
                None => out.skipped += 1,
            }
        } else if !matches!(ty, NLMSG_ERROR | NLMSG_DONE | NLMSG_OVERRUN) {
            out.skipped += 1;
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Netlink attributes `(type, payload)` of a message body after its fixed header.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, payload))
    })
}

/// One `NFULNL_MSG_PACKET` body (after the netlink header).
fn parse_packet_msg(body: &[u8]) -> Option<Packet> {
    let attrs = body.get(NFGENMSG_LEN..)?;
    let mut prefix = None;
    let mut payload = None;
    for (ty, data) in attributes(attrs) {
        match ty {
            NFULA_PREFIX => {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                prefix = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            }
            NFULA_PAYLOAD => payload = Some(data),
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
pub(super) fn config_message(seq: u32, group: u16, attr: u16, data: &[u8]) -> Vec<u8> {
    let attr_len = 4 + data.len();
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + align4(attr_len);
    let mut m = Vec::with_capacity(len);
    m.extend((len as u32).to_ne_bytes());
    m.extend(((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    m.extend([libc::AF_UNSPEC as u8, 0]);
    m.extend(group.to_be_bytes());
    m.extend((attr_len as u16).to_ne_bytes());
    m.extend(attr.to_ne_bytes());
    m.extend(data);
    m.resize(len, 0);
    m
}

/// The kernel's answer to request `seq` in a datagram, if it holds one:
/// `Ok(())` for an acknowledgement, `Err(errno)` for an error.
pub(super) fn ack(mut buf: &[u8], seq: u32) -> Option<Result<(), i32>> {
    while buf.len() >= NLMSG_HDRLEN {
        let mlen = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let mseq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if mlen < NLMSG_HDRLEN || mlen > buf.len() {
            return None;
        }
        if ty == NLMSG_ERROR && mseq == seq {
            let code = buf
                .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(-libc::EPROTO);
            return Some(if code == 0 { Ok(()) } else { Err(-code) });
        }
        buf = &buf[align4(mlen).min(buf.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_request_and_its_acknowledgement() {
        let m = config_message(7, 9750, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        assert_eq!(m.len(), NLMSG_HDRLEN + NFGENMSG_LEN + 8);
        assert_eq!(&m[18..20], &9750u16.to_be_bytes(), "group, big-endian");
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
    }

    /// A packet message as the kernel sends it: nlmsghdr, nfgenmsg, then
    /// attributes (packet header, a few others, prefix, payload).
    fn message(prefix: &str, payload: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        let mut attr = |ty: u16, data: &[u8]| {
            attrs.extend(((4 + data.len()) as u16).to_ne_bytes());
            attrs.extend(ty.to_ne_bytes());
            attrs.extend(data);
            while attrs.len() % 4 != 0 {
                attrs.push(0);
            }
        };
        attr(1, &[0x08, 0x00, 3, 0]); // NFULA_PACKET_HDR: ETH_P_IP, hook forward
        attr(4, &7u32.to_be_bytes()); // NFULA_IFINDEX_INDEV
        let mut p = prefix.as_bytes().to_vec();
        p.push(0);
        attr(NFULA_PREFIX, &p);
        attr(NFULA_PAYLOAD, payload);
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend((NFNL_SUBSYS_ULOG << 8).to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend([2, 0]);
        m.extend(9750u16.to_be_bytes());
        m.extend(attrs);
        m
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
        // An IPv6 packet whose extension headers loop or run off the end.
        let mut loopy = v6_udp_with_hop_by_hop();
        loopy[6] = 60;
        loopy[40] = 60;
        assert!(parse_ip(&loopy).is_some());
    }
}
