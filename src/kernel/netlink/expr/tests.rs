use super::*;

// What nft 1.0.6 sent as NFTA_RULE_EXPRESSIONS for these rules of a chain
// in `inet nftpol`, the sets they name created in the same batch with
// transaction ids 3 (p4), 5 (pp), 6 (app4), 7 (app6) and the generation's
// map `ct-stamp` with 13: `nft --debug=mnl -f` of a script holding
// `ip saddr . ip daddr @p4 accept`, `meta l4proto . th dport @pp goto c2`,
// `ip daddr . meta l4proto . th dport @app4 jump c2`,
// `ip6 daddr . meta l4proto . th dport @app6 return`,
// `ct mark and 0xfffff000 == 0xfffff000 counter drop`,
// `ct state established,related accept`,
// `limit rate 10/second burst 20 packets log prefix "nftpol drop x" group 9750`,
// `ct mark set ct mark and 0x00000fff map @ct-stamp`; each rule's nest
// read back from the dump's hex lines.
const SELF_PAIR_V4: &str = concat!(
    "24000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100",
    "636d700020000280080001000000000108000200000000000c0003800500010002000000340001800c000100",
    "7061796c6f6164002400028008000100000000010800020000000001080003000000000c0800040000000004",
    "340001800c0001007061796c6f61640024000280080001000000000908000200000000010800030000000010",
    "08000400000000042c0001800b0001006c6f6f6b757000001c00028008000200000000010700010070340000",
    "0800040000000003300001800e000100696d6d6564696174650000001c000280080001000000000010000280",
    "0c0002800800010000000001",
);

const PROTO_PORT: &str = concat!(
    "24000180090001006d657461000000001400028008000200000000100800010000000001400001800e000100",
    "627974656f726465720000002c00028008000100000000010800020000000001080003000000000108000400",
    "000000010800050000000002340001800c0001007061796c6f61640024000280080001000000000908000200",
    "00000002080003000000000208000400000000022c0001800b0001006c6f6f6b757000001c00028008000200",
    "0000000107000100707000000800040000000005380001800e000100696d6d65646961746500000024000280",
    "0800010000000000180002801400028008000100fffffffc0700020063320000",
);

const DST_PROTO_PORT_V4: &str = concat!(
    "24000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100",
    "636d700020000280080001000000000108000200000000000c0003800500010002000000340001800c000100",
    "7061796c6f616400240002800800010000000001080002000000000108000300000000100800040000000004",
    "24000180090001006d657461000000001400028008000200000000100800010000000009340001800c000100",
    "7061796c6f61640024000280080001000000000a080002000000000208000300000000020800040000000002",
    "300001800b0001006c6f6f6b7570000020000280080002000000000109000100617070340000000008000400",
    "00000006380001800e000100696d6d6564696174650000002400028008000100000000001800028014000280",
    "08000100fffffffd0700020063320000",
);

const DST_PROTO_PORT_V6: &str = concat!(
    "24000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100",
    "636d700020000280080001000000000108000200000000000c000380050001000a000000340001800c000100",
    "7061796c6f616400240002800800010000000001080002000000000108000300000000180800040000000010",
    "24000180090001006d657461000000001400028008000200000000100800010000000002340001800c000100",
    "7061796c6f61640024000280080001000000000d080002000000000208000300000000020800040000000002",
    "300001800b0001006c6f6f6b7570000020000280080002000000000109000100617070360000000008000400",
    "00000007300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c000280",
    "08000100fffffffb",
);

const CT_REVOKED_DROP: &str = concat!(
    "20000180070001006374000014000280080002000000000308000100000000014c0001800c00010062697477",
    "697365003c00028008000100000000010800020000000001080006000000000008000300000000040c000480",
    "0800010000f0ffff0c00058008000100000000002c00018008000100636d7000200002800800010000000001",
    "08000200000000000c0003800800010000f0ffff140001800c000100636f756e746572000400028030000180",
    "0e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000000",
);

const CT_ESTABLISHED_RELATED: &str = concat!(
    "2000018007000100637400001400028008000200000000000800010000000001440001800c00010062697477",
    "69736500340002800800010000000001080002000000000108000300000000040c0004800800010006000000",
    "0c00058008000100000000002c00018008000100636d70002000028008000100000000010800020000000001",
    "0c0003800800010000000000300001800e000100696d6d6564696174650000001c0002800800010000000000",
    "100002800c0002800800010000000001",
);

const LOG: &str = concat!(
    "440001800a0001006c696d6974000000340002800c000100000000000000000a0c0002000000000000000001",
    "0800030000000014080004000000000008000500000000002c000180080001006c6f67002000028012000200",
    "6e6674706f6c2064726f7020780000000600010026160000",
);

const CT_STAMP: &str = concat!(
    "20000180070001006374000014000280080002000000000308000100000000014c0001800c00010062697477",
    "697365003c00028008000100000000010800020000000001080006000000000008000300000000040c000480",
    "08000100ff0f00000c00058008000100000000003c0001800b0001006c6f6f6b757000002c00028008000200",
    "0000000108000300000000010d00010063742d7374616d7000000000080004000000000d2000018007000100",
    "637400001400028008000200000000030800040000000001",
);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn refs() -> Refs<'static> {
    use Family::{V4, V6};
    let mut r = Refs::default();
    r.sets.insert("p4", (3, Holds::Set(SetKind::AddrPair(V4))));
    r.sets.insert("pp", (5, Holds::Set(SetKind::ProtoPort)));
    r.sets
        .insert("app4", (6, Holds::Set(SetKind::AddrProtoPort(V4))));
    r.sets
        .insert("app6", (7, Holds::Set(SetKind::AddrProtoPort(V6))));
    r.sets.insert("ct-stamp", (13, Holds::Marks));
    r.sets.insert("m4", (10, Holds::Map(V4)));
    r
}

fn rule(matches: Vec<Match>, verdict: Verdict) -> Rule {
    Rule {
        matches,
        verdict,
        comment: None,
    }
}

fn encoded(matches: Vec<Match>, verdict: Verdict) -> Option<String> {
    expressions(&rule(matches, verdict), &refs()).map(|b| hex(&b))
}

#[test]
fn expressions_are_the_ones_nft_sends() {
    use Family::{V4, V6};
    let s = |x: &str| x.to_string();
    let cases = [
        (
            vec![Match::SelfPair(V4, s("p4"))],
            Verdict::Accept,
            SELF_PAIR_V4,
        ),
        (
            vec![Match::ProtoPortIn(s("pp"))],
            Verdict::Goto(s("c2")),
            PROTO_PORT,
        ),
        (
            vec![Match::DstProtoPortIn(V4, s("app4"))],
            Verdict::Jump(s("c2")),
            DST_PROTO_PORT_V4,
        ),
        (
            vec![Match::DstProtoPortIn(V6, s("app6"))],
            Verdict::Return,
            DST_PROTO_PORT_V6,
        ),
        (
            vec![Match::CtRevoked],
            Verdict::CountedDrop,
            CT_REVOKED_DROP,
        ),
        (
            vec![Match::CtEstablishedRelated],
            Verdict::Accept,
            CT_ESTABLISHED_RELATED,
        ),
        (vec![], Verdict::CtStamp, CT_STAMP),
    ];
    for (matches, verdict, want) in cases {
        let what = crate::core::nft::render::rule(&rule(matches.clone(), verdict.clone()));
        assert_eq!(encoded(matches, verdict).as_deref(), Some(want), "{what}");
    }
    let log = Log {
        group: 9750,
        rate: 10,
        burst: 20,
        prefix: s("nftpol drop x"),
    };
    assert_eq!(encoded(vec![], Verdict::Log(log)).as_deref(), Some(LOG));
}

#[test]
fn registers_are_named_as_nft_names_them() {
    // A concatenation's words: 0 is NFT_REG_1, a 16-byte boundary the
    // 128-bit register, the rest NFT_REG32_00 + word.
    assert_eq!(
        [reg(0), reg(1), reg(2), reg(4), reg(5), reg(8)],
        [1, 9, 10, 2, 13, 3]
    );
}

#[test]
fn what_nft_would_refuse_or_does_not_write_this_way_is_not_encoded() {
    use Family::{V4, V6};
    let s = |x: &str| x.to_string();
    // Both families in one rule: nft says "conflicting protocols".
    let mixed = vec![
        Match::AddrIn(V4, Addr::Src, s("a")),
        Match::AddrIn(V6, Addr::Dst, s("b")),
    ];
    assert_eq!(encoded(mixed, Verdict::Accept), None);
    // The same family twice needs one dependency.
    let twice = encoded(
        vec![
            Match::AddrIn(V4, Addr::Src, s("a")),
            Match::AddrNotIn(V4, Addr::Src, s("b")),
        ],
        Verdict::CountedDrop,
    )
    .unwrap();
    assert_eq!(twice.matches("6d65746100").count(), 1, "one meta nfproto");
    // An anonymous set.
    assert_eq!(
        encoded(vec![Match::NeighbourDiscovery], Verdict::Accept),
        None
    );
    // A set of the batch of another kind than the match needs.
    assert_eq!(
        encoded(vec![Match::ProtoPortIn(s("p4"))], Verdict::Accept),
        None
    );
    assert_eq!(
        encoded(vec![], Verdict::AddrVmap(V6, Addr::Src, s("m4"))),
        None
    );
    // A log nft refuses (burst 0) or whose prefix would not read back.
    let log = |burst, prefix: &str| Log {
        group: 1,
        rate: 1,
        burst,
        prefix: prefix.to_string(),
    };
    assert_eq!(encoded(vec![], Verdict::Log(log(0, "x"))), None);
    assert_eq!(encoded(vec![], Verdict::Log(log(1, "a\"b"))), None);
    assert!(encoded(vec![], Verdict::Log(log(1, "%a\\b"))).is_some());
}

#[test]
fn comments_are_one_tlv_up_to_what_nft_takes() {
    // `comment "ingress[0]"` as nft wrote it for a rule.
    assert_eq!(
        comment(0, "ingress[0]").map(|c| hex(&c)).as_deref(),
        Some("000b696e67726573735b305d00")
    );
    assert_eq!(comment(7, ""), Some(vec![7, 1, 0]));
    assert!(comment(0, &"x".repeat(128)).is_some());
    assert_eq!(comment(0, &"x".repeat(129)), None, "nft: comment too long");
    assert_eq!(comment(0, "a\"b"), None);
}
