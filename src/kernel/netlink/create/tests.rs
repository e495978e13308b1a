use std::net::IpAddr;

use netlink_packet_core::NetlinkBuffer;

use super::*;
use crate::core::model::{Protocol, Range};
use crate::core::nft::delta::{StageOps, staged};
use crate::core::nft::ruleset::{Addr, Chain, Log, Match, Rule, Ruleset, Verdict};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(matches: Vec<Match>, verdict: Verdict, comment: Option<&str>) -> Rule {
    Rule {
        matches,
        verdict,
        comment: comment.map(str::to_string),
    }
}

/// A small table with one rule of most shapes, every set kind, a map and
/// the generation: the first stage of creating it on an empty table is
/// what [`NFT_REFERENCE`] holds nft's messages for.
fn reference() -> Ruleset {
    use Family::{V4, V6};
    let set = |kind, comment: &str, elements: Vec<Element>| Set {
        kind,
        comment: comment.to_string(),
        elements: elements.into_iter().collect(),
    };
    let n = |s: &str| ip_to_u128(&ip(s));
    let mut rs = Ruleset {
        generation: Some(Generation::new(5)),
        ..Ruleset::default()
    };
    for (name, s) in [
        (
            "a4",
            set(
                SetKind::Addr(V4),
                "ns shop pods app=web",
                vec![Element::Addr(ip("10.244.2.10"))],
            ),
        ),
        (
            "app6",
            set(
                SetKind::AddrProtoPort(V6),
                "named",
                vec![Element::AddrProtoPort(ip("fd00::1"), Protocol::Sctp, 80)],
            ),
        ),
        (
            "i4",
            set(
                SetKind::AddrInterval(V4),
                "ipBlock",
                vec![
                    Element::Addr(ip("10.0.0.1")),
                    Element::Range(Range {
                        family: V4,
                        start: n("200.0.0.0"),
                        end: n("255.255.255.255"),
                    }),
                ],
            ),
        ),
        (
            "p6",
            set(
                SetKind::AddrPair(V6),
                "self",
                vec![Element::AddrPair(ip("fd00::1"), ip("fd00::1"))],
            ),
        ),
        (
            "pp",
            set(
                SetKind::ProtoPort,
                "ports",
                vec![
                    Element::ProtoPort(Protocol::Tcp, 80, 80),
                    Element::ProtoPort(Protocol::Tcp, 1000, 2000),
                ],
            ),
        ),
    ] {
        rs.sets.insert(name.to_string(), s);
    }
    rs.maps.insert(
        "m4".to_string(),
        VerdictMap {
            family: V4,
            comment: "dispatch".to_string(),
            elements: [(ip("10.0.0.1"), "c2".to_string())].into(),
        },
    );
    let s = |x: &str| x.to_string();
    let log = Log {
        group: 9750,
        rate: 10,
        burst: 20,
        prefix: s("nftpol drop x"),
    };
    let rules = vec![
        rule(
            vec![Match::AddrIn(V4, Addr::Src, s("a4"))],
            Verdict::Accept,
            Some("ingress[0]"),
        ),
        rule(
            vec![
                Match::AddrIn(V4, Addr::Dst, s("i4")),
                Match::AddrNotIn(V4, Addr::Dst, s("a4")),
            ],
            Verdict::CountedDrop,
            None,
        ),
        rule(
            vec![Match::SelfPair(V6, s("p6"))],
            Verdict::Goto(s("c2")),
            None,
        ),
        rule(
            vec![Match::ProtoPortIn(s("pp"))],
            Verdict::Jump(s("c2")),
            None,
        ),
        rule(
            vec![Match::DstProtoPortIn(V6, s("app6"))],
            Verdict::Return,
            None,
        ),
        rule(vec![Match::FibDaddrLocal], Verdict::Accept, None),
        rule(vec![Match::CtEstablishedCurrent], Verdict::Accept, None),
        rule(
            vec![Match::CtReply, Match::CtRevoked],
            Verdict::CountedDrop,
            None,
        ),
        rule(vec![], Verdict::AddrVmap(V4, Addr::Src, s("m4")), None),
        rule(vec![], Verdict::Log(log), Some("log drops (rate-limited)")),
        rule(vec![], Verdict::CtRevoke, None),
        rule(vec![], Verdict::CtStamp, None),
    ];
    let chain = |comment: &str, rules| Chain {
        hook: None,
        comment: comment.to_string(),
        rules,
    };
    rs.chains = vec![
        (s("c1"), chain("chain one", rules)),
        (s("c2"), chain("", vec![])),
    ];
    rs
}

/// The messages of a batch between its begin and end: each one's
/// `NFT_MSG_*` type and payload.
fn messages(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = bytes;
    while let Ok(m) = NetlinkBuffer::new_checked(buf) {
        let len = m.length() as usize;
        if m.message_type() >> 8 == 10 {
            out.push((m.message_type() as u8, m.payload().to_vec()));
        }
        buf = &buf[len.next_multiple_of(4)..];
    }
    out
}

/// The first stage of creating [`reference`] on a table holding nothing is
/// `reference.nft`; what nft 1.0.6 sent the kernel for it (`ip netns exec
/// X nft add table inet nftpol; ip netns exec X nft --debug=mnl -f
/// reference.nft`, the messages between batch begin and end, each
/// message's payload as the dump's hex lines give it) is `reference.hex`.
/// The batch is the same, message for message and byte for byte.
#[test]
fn the_batch_is_the_one_nft_sends() {
    let stages = staged(&Ruleset::default(), &reference()).unwrap();
    assert_eq!(stages[0].script, include_str!("reference.nft"));
    let Some(StageOps::Create(c)) = &stages[0].ops else {
        panic!("a creation");
    };
    let batch = creation(c, 7).expect("encoded");
    let got = messages(&batch.bytes);
    let want: Vec<(u8, Vec<u8>)> = include_str!("reference.hex")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (t, hex) = l.split_once(' ').unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (t.parse().unwrap(), bytes)
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{:?}", batch.messages);
    for (i, ((gt, g), (wt, w))) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            (gt, hex(g)),
            (wt, hex(w)),
            "message {i} ({})",
            batch.messages[i].1
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Address interval sets as nft lays them out for a set it creates (what
/// `nft --debug=netlink -f` printed for sets `{ 0.0.0.0/8, 10.0.0.0/8 }`,
/// `{ 10.0.0.1, 200.0.0.0-255.255.255.255 }` and `{ ::/0 }`): an end at
/// 0 only when the first range starts above it, no end after a range
/// reaching the last address but the open flag in its user data.
#[test]
fn interval_elements_are_laid_out_as_nft_lays_them_out() {
    let n = |s: &str| ip_to_u128(&ip(s));
    let r = |f, a: &str, b: &str| {
        Element::Range(Range {
            family: f,
            start: n(a),
            end: n(b),
        })
    };
    let layout = |f, es: Vec<Element>| {
        interval_elems(f, &es.into_iter().collect())
            .unwrap()
            .into_iter()
            .map(|e| (hex(&e.key), e.end, e.userdata.is_some()))
            .collect::<Vec<_>>()
    };
    let v4 = |a: &str| hex(&a.parse::<std::net::Ipv4Addr>().unwrap().octets());
    assert_eq!(
        layout(
            Family::V4,
            vec![
                r(Family::V4, "0.0.0.0", "0.255.255.255"),
                r(Family::V4, "10.0.0.0", "10.255.255.255")
            ]
        ),
        [
            (v4("0.0.0.0"), false, false),
            (v4("1.0.0.0"), true, false),
            (v4("10.0.0.0"), false, false),
            (v4("11.0.0.0"), true, false),
        ]
    );
    assert_eq!(
        layout(
            Family::V4,
            vec![
                Element::Addr(ip("10.0.0.1")),
                r(Family::V4, "200.0.0.0", "255.255.255.255")
            ]
        ),
        [
            (v4("0.0.0.0"), true, false),
            (v4("10.0.0.1"), false, false),
            (v4("10.0.0.2"), true, false),
            (v4("200.0.0.0"), false, true),
        ]
    );
    let all6 = r(Family::V6, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_eq!(
        layout(Family::V6, vec![all6]),
        [(hex(&[0; 16]), false, true)]
    );
    assert_eq!(layout(Family::V6, vec![]), []);
    // Overlapping or touching ranges, or an element of another family or
    // kind: not encoded.
    let bad = |es: Vec<Element>| interval_elems(Family::V4, &es.into_iter().collect());
    assert!(
        bad(vec![
            r(Family::V4, "10.0.0.0", "10.0.0.9"),
            r(Family::V4, "10.0.0.10", "10.0.0.20")
        ])
        .is_none()
    );
    assert!(
        bad(vec![
            r(Family::V4, "10.0.0.0", "10.0.0.9"),
            Element::Addr(ip("10.0.0.5"))
        ])
        .is_none()
    );
    assert!(bad(vec![Element::Addr(ip("fd00::1"))]).is_none());
    assert!(bad(vec![Element::ProtoPort(Protocol::Tcp, 1, 2)]).is_none());
}

/// What the stage's script does instead: a base chain, an element of
/// another kind than its set's, a comment nft refuses.
#[test]
fn what_is_not_encoded_gives_none() {
    let stages = staged(&Ruleset::default(), &reference()).unwrap();
    let Some(StageOps::Create(c)) = &stages[0].ops else {
        panic!("a creation");
    };
    assert!(creation(c, 1).is_some());
    let mut base = c.clone();
    base.chains[1].1.hook = Some(crate::core::nft::ruleset::Hook {
        hook: "forward",
        priority: 0,
    });
    assert!(creation(&base, 1).is_none());
    let mut kinds = c.clone();
    kinds.sets[0]
        .1
        .elements
        .insert(Element::ProtoPort(Protocol::Tcp, 1, 1));
    assert!(creation(&kinds, 1).is_none());
    let mut long = c.clone();
    long.maps[0].1.comment = "x".repeat(129);
    assert!(creation(&long, 1).is_none());
    let mut upside_down = c.clone();
    let pp = upside_down
        .sets
        .iter_mut()
        .find(|(n, _)| n == "pp")
        .unwrap();
    pp.1.elements
        .insert(Element::ProtoPort(Protocol::Udp, 9, 8));
    assert!(creation(&upside_down, 1).is_none());
}

/// The batch: table, chains, each set with its elements, rules; only
/// the last message asks for an acknowledgement.
#[test]
fn the_batch_creates_in_nft_order() {
    let stages = staged(&Ruleset::default(), &reference()).unwrap();
    let Some(StageOps::Create(c)) = &stages[0].ops else {
        panic!("a creation");
    };
    let b = creation(c, 100).unwrap();
    let whats: Vec<&str> = b.messages.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(
        whats[..6],
        [
            "add table inet nftpol",
            "add chain c1",
            "add chain c2",
            "add set a4",
            "add 1 element(s) in a4",
            "add set app6"
        ]
    );
    assert_eq!(whats.last(), Some(&"add rule 12 to chain c1"));
    assert_eq!(b.acked(), 100 + b.messages.len() as u32);
}
