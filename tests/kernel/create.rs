//! The first stage of a structural change (what only the new ruleset has:
//! regular chains with their rules, sets and maps with their elements) sent
//! as one netlink batch (`kernel::netlink::create`) in the real kernel: on
//! the same table, `nft` lists it exactly as it lists the same stage loaded
//! by `nft -f` (text and JSON, handles included), the later stages complete
//! the table, and the drift check's comparison holds.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use nftpol::core::compile::{DropLog, Options};
use nftpol::core::model::{Family, Protocol, Range};
use nftpol::core::nft::delta::{Stage, StageOps, staged};
use nftpol::core::nft::render;
use nftpol::core::nft::ruleset::{
    Addr, Chain, Element, Generation, Hook, Log, Match, Rule, Ruleset, Set, SetKind, Verdict,
    VerdictMap,
};
use nftpol::kernel::listing;
use nftpol::kernel::netlink::{NetlinkElements, Transports};
use nftpol::kernel::nft::{Nft, NftCli};
use nftpol_testkit::netns::Netns;

/// `rs` with only its base chains, without rules: a table the first stage
/// of `staged(skeleton, rs)` fills with every regular chain, set and map.
fn skeleton(rs: &Ruleset) -> Ruleset {
    Ruleset {
        chains: rs
            .chains
            .iter()
            .filter(|(_, c)| c.hook.is_some())
            .map(|(n, c)| {
                let mut c = c.clone();
                c.rules.clear();
                (n.clone(), c)
            })
            .collect(),
        ..Ruleset::default()
    }
}

/// What `nft` lists in the calling thread's namespace: the text, and the
/// JSON as printed (handles included).
fn listings() -> (String, String) {
    let list = |json: bool| {
        let mut cmd = std::process::Command::new("nft");
        if json {
            cmd.arg("-j");
        }
        let out = cmd
            .args(["list", "table", "inet", "nftpol"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    (list(false), list(true))
}

/// The kernel's own account of the table, as `nft --debug=netlink list`
/// prints it: every rule's expressions (registers, byte order conversions,
/// lookups, user data) and every element's key and flags as the kernel
/// dumps them, in blocks (a set's elements sorted: a hash set dumps them
/// in its hash's order, seeded per namespace).
fn kernel_view() -> Vec<Vec<String>> {
    let out = std::process::Command::new("nft")
        .args(["--debug=netlink", "list", "table", "inet", "nftpol"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("inet nftpol") {
            blocks.push(vec![line.to_string()]);
        } else if let Some(b) = blocks.last_mut() {
            b.push(line.to_string());
        }
    }
    for b in &mut blocks {
        if b[0].starts_with("inet nftpol @") {
            b[1..].sort();
        }
    }
    blocks
}

/// The lines of `a` and `b` that differ, for failure messages.
fn text_diff(a: &str, b: &str) -> String {
    let (la, lb): (BTreeSet<&str>, BTreeSet<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for l in la.difference(&lb).take(20) {
        out.push_str(&format!("  netlink only: {l}\n"));
    }
    for l in lb.difference(&la).take(20) {
        out.push_str(&format!("  nft only:     {l}\n"));
    }
    out
}

/// Two namespaces, one applying stages as the agent does (netlink), the
/// other through `nft -f`.
struct Pair {
    nl: Netns,
    cli: Netns,
}

impl Pair {
    fn new(role: &str) -> Pair {
        Pair {
            nl: Netns::new(&format!("{role}nl")).unwrap(),
            cli: Netns::new(&format!("{role}cli")).unwrap(),
        }
    }

    /// Loads `old` whole in both namespaces, then `new`'s stages: the
    /// first in one namespace as a netlink batch, in the other through
    /// `nft -f`, asserting both list the same; then the rest of the stages
    /// in both through `nft -f`, asserting both hold `new` (the drift
    /// check's comparison). `encoded`: whether the first stage is expected
    /// to go as a batch (else through `nft` in both).
    fn check(&self, what: &str, old: &Ruleset, new: &Ruleset, encoded: bool) {
        let stages = staged(old, new).expect("stages");
        let first = &stages[0];
        assert!(
            matches!(first.ops, Some(StageOps::Create(_))),
            "{what}: the first stage creates"
        );
        let script = render::script(old);
        let t: Transports = self
            .nl
            .run(|| {
                let nl = NetlinkElements::open(NftCli::new("nft")).unwrap();
                nl.apply(&script).unwrap();
                if let Err(e) = nl.apply_stage(first) {
                    panic!("{what}: {e}\n{}", first.script);
                }
                nl.transports()
            })
            .unwrap();
        let count = |c: &std::sync::Arc<std::sync::atomic::AtomicU64>| c.load(Ordering::Relaxed);
        assert_eq!(
            (count(&t.netlink), count(&t.refused), count(&t.nft)),
            if encoded { (1, 0, 0) } else { (0, 0, 1) },
            "{what}: how the first stage went"
        );
        self.cli
            .run(|| {
                let cli = NftCli::new("nft");
                cli.apply(&script).unwrap();
                cli.apply(&first.script).unwrap();
            })
            .unwrap();
        let (nl_text, nl_json) = self.nl.run(listings).unwrap();
        let (cli_text, cli_json) = self.cli.run(listings).unwrap();
        assert!(
            nl_text == cli_text,
            "{what}: the listings differ\n{}",
            text_diff(&nl_text, &cli_text)
        );
        assert_eq!(nl_json, cli_json, "{what}: the JSON listings differ");
        let (nl_view, cli_view) = (
            self.nl.run(kernel_view).unwrap(),
            self.cli.run(kernel_view).unwrap(),
        );
        assert!(nl_view.len() > 1, "{what}: {nl_view:?}");
        if let Some((a, b)) = nl_view.iter().zip(&cli_view).find(|(a, b)| a != b) {
            panic!(
                "{what}: the kernel holds\n{}\nwhere nft -f gives\n{}",
                a.join("\n"),
                b.join("\n")
            );
        }
        assert_eq!(nl_view.len(), cli_view.len(), "{what}");
        for ns in [&self.nl, &self.cli] {
            let json = ns
                .run(|| {
                    let cli = NftCli::new("nft");
                    for s in &stages[1..] {
                        cli.apply(&s.script).unwrap();
                    }
                    cli.list_table().unwrap()
                })
                .unwrap();
            assert!(
                listing::read(&json).0 == Some(listing::expected(new)),
                "{what}: {} holds the new ruleset",
                ns.name()
            );
        }
    }
}

/// Every testdata table (each case on node-1 with revocation, drop logging
/// for every namespace and the new-pod guard; and for all nodes without
/// them), built on its skeleton: the first stage creates every regular
/// chain, set and map in one netlink batch, and lists exactly as through
/// `nft -f`.
#[test]
fn created_stages_list_as_nft_lists_them() {
    let pair = Pair::new("create");
    let mut cases = nftpol_testkit::cases::case_dirs();
    let root = nftpol_testkit::cases::testdata();
    cases.extend(["cluster-network-policy", "upstream-xyz"].map(|c| root.join(c)));
    let variants = [
        Options {
            node: Some("node-1".to_string()),
            drop_log: DropLog {
                all_namespaces: true,
                ..DropLog::default()
            },
            ..Options::default()
        },
        Options {
            revoke_established: false,
            new_pods: nftpol::core::compile::NewPods {
                fail_closed: false,
                pod_cidrs: Vec::new(),
            },
            ..Options::default()
        },
    ];
    let mut tables = 0;
    let mut shapes = BTreeSet::new();
    for case in &cases {
        let (objs, _) = nftpol::core::k8s::load_paths(std::slice::from_ref(case));
        for (v, opts) in variants.iter().enumerate() {
            let rs = nftpol::core::compile::compile_objects(&objs, opts).ruleset;
            if rs.chains.iter().all(|(_, c)| c.hook.is_some()) {
                continue;
            }
            for (_, c) in rs.chains.iter().filter(|(_, c)| c.hook.is_none()) {
                for r in &c.rules {
                    shapes.insert(shape(r));
                }
            }
            let what = format!("{} variant {v}", case.display());
            pair.check(&what, &skeleton(&rs), &rs, true);
            tables += 1;
        }
    }
    eprintln!(
        "{tables} tables; rule shapes in regular chains:\n  {}",
        shapes.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    assert!(tables > 40, "{tables} tables");
    // (The new-pod guard's `!= @` is in base chains: see every_shape.)
    for needle in [
        "log prefix",
        "ct mark set",
        "return",
        "counter drop",
        "fib daddr",
    ] {
        assert!(
            shapes.iter().any(|s| s.contains(needle)),
            "no regular chain rule with {needle:?}"
        );
    }
}

/// A rule's text with names replaced, to count the shapes covered.
fn shape(r: &Rule) -> String {
    let text = render::rule(&Rule {
        comment: None,
        ..r.clone()
    });
    // Outside quotes, set names and chains jumped to; inside, the text.
    let unquoted = |part: &str| {
        let mut words: Vec<&str> = Vec::new();
        for w in part.split(' ') {
            let jump = matches!(words.last(), Some(&"jump" | &"goto"));
            words.push(if w.starts_with('@') {
                "@S"
            } else if jump {
                "C"
            } else {
                w
            });
        }
        words.join(" ")
    };
    text.split('"')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                unquoted(part)
            } else {
                "P".to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\"")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn range(f: Family, a: &str, b: &str) -> Element {
    let n = |s: &str| nftpol::core::model::ipblock::ip_to_u128(&ip(s));
    Element::Range(Range {
        family: f,
        start: n(a),
        end: n(b),
    })
}

fn rule(matches: Vec<Match>, verdict: Verdict, comment: Option<&str>) -> Rule {
    Rule {
        matches,
        verdict,
        comment: comment.map(str::to_string),
    }
}

/// A ruleset with every match and verdict the compiler writes, in
/// regular chains (the base chains' own shapes too), and sets at the
/// edges of their encoding: interval sets starting at address 0, ending
/// at the last address, single addresses, whole families, empty sets;
/// comments of 128 bytes and empty ones.
fn every_shape() -> Ruleset {
    use Family::{V4, V6};
    let set = |kind, comment: &str, elements: Vec<Element>| Set {
        kind,
        comment: comment.to_string(),
        elements: elements.into_iter().collect(),
    };
    let mut rs = Ruleset {
        generation: Some(Generation::new(77)),
        ..Ruleset::default()
    };
    let sets = [
        (
            "a4",
            set(
                SetKind::Addr(V4),
                "a4",
                vec![Element::Addr(ip("10.0.0.1")), Element::Addr(ip("10.0.0.2"))],
            ),
        ),
        (
            "a6",
            set(SetKind::Addr(V6), "", vec![Element::Addr(ip("fd00::1"))]),
        ),
        ("empty4", set(SetKind::Addr(V4), &"c".repeat(128), vec![])),
        (
            "p4",
            set(
                SetKind::AddrPair(V4),
                "p4",
                vec![Element::AddrPair(ip("10.0.0.1"), ip("10.0.0.1"))],
            ),
        ),
        (
            "p6",
            set(
                SetKind::AddrPair(V6),
                "p6",
                vec![Element::AddrPair(ip("fd00::1"), ip("fd00::1"))],
            ),
        ),
        (
            "pp",
            set(
                SetKind::ProtoPort,
                "pp",
                vec![
                    Element::ProtoPort(Protocol::Tcp, 80, 80),
                    Element::ProtoPort(Protocol::Udp, 53, 53),
                    Element::ProtoPort(Protocol::Tcp, 1000, 2000),
                    Element::ProtoPort(Protocol::Sctp, 0, 65535),
                ],
            ),
        ),
        ("pp-empty", set(SetKind::ProtoPort, "pp-empty", vec![])),
        (
            "app4",
            set(
                SetKind::AddrProtoPort(V4),
                "app4",
                vec![
                    Element::AddrProtoPort(ip("10.0.0.1"), Protocol::Tcp, 8080),
                    Element::AddrProtoPort(ip("10.0.0.2"), Protocol::Sctp, 9),
                ],
            ),
        ),
        (
            "app6",
            set(
                SetKind::AddrProtoPort(V6),
                "app6",
                vec![Element::AddrProtoPort(ip("fd00::1"), Protocol::Udp, 53)],
            ),
        ),
        (
            "i4",
            set(
                SetKind::AddrInterval(V4),
                "i4",
                vec![
                    range(V4, "10.0.0.0", "10.255.255.255"),
                    Element::Addr(ip("192.168.1.1")),
                    range(V4, "172.16.0.1", "172.16.0.9"),
                ],
            ),
        ),
        (
            "i4-zero",
            set(
                SetKind::AddrInterval(V4),
                "i4-zero",
                vec![
                    range(V4, "0.0.0.0", "9.255.255.255"),
                    range(V4, "11.0.0.0", "255.255.255.255"),
                ],
            ),
        ),
        (
            "i4-all",
            set(
                SetKind::AddrInterval(V4),
                "i4-all",
                vec![range(V4, "0.0.0.0", "255.255.255.255")],
            ),
        ),
        (
            "i6",
            set(
                SetKind::AddrInterval(V6),
                "i6",
                vec![
                    range(V6, "fd00::", "fd00::ffff:ffff:ffff:ffff"),
                    Element::Addr(ip("::1")),
                    range(
                        V6,
                        "fd00:10:244:3::",
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                    ),
                ],
            ),
        ),
        (
            "i6-all",
            set(
                SetKind::AddrInterval(V6),
                "i6-all",
                vec![range(V6, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")],
            ),
        ),
        (
            "i6-empty",
            set(SetKind::AddrInterval(V6), "i6-empty", vec![]),
        ),
    ];
    rs.sets = sets.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
    let map = |f, elements: Vec<(&str, &str)>| VerdictMap {
        family: f,
        comment: "dispatch".to_string(),
        elements: elements
            .into_iter()
            .map(|(a, c)| (ip(a), c.to_string()))
            .collect(),
    };
    rs.maps.insert(
        "m4".to_string(),
        map(V4, vec![("10.0.0.1", "target"), ("10.0.0.2", "target-2")]),
    );
    rs.maps
        .insert("m6".to_string(), map(V6, vec![("fd00::1", "target")]));
    rs.maps.insert("m6-empty".to_string(), map(V6, vec![]));
    let log = Log {
        group: 9750,
        rate: 10,
        burst: 20,
        prefix: "nftpol drop egress-group-X".to_string(),
    };
    let s = |n: &str| n.to_string();
    let rules = vec![
        rule(
            vec![Match::AddrIn(V4, Addr::Src, s("a4"))],
            Verdict::Accept,
            Some("ingress[0]"),
        ),
        rule(
            vec![Match::AddrIn(V6, Addr::Dst, s("a6"))],
            Verdict::Jump(s("target")),
            None,
        ),
        rule(
            vec![
                Match::AddrIn(V4, Addr::Dst, s("i4")),
                Match::AddrNotIn(V4, Addr::Dst, s("a4")),
            ],
            Verdict::CountedDrop,
            Some(""),
        ),
        rule(
            vec![
                Match::AddrIn(V6, Addr::Src, s("i6")),
                Match::AddrNotIn(V6, Addr::Src, s("a6")),
            ],
            Verdict::CtRevoke,
            None,
        ),
        rule(
            vec![Match::SelfPair(V4, s("p4"))],
            Verdict::Goto(s("target")),
            Some("pod to itself"),
        ),
        rule(vec![Match::SelfPair(V6, s("p6"))], Verdict::Return, None),
        rule(
            vec![Match::ProtoPortIn(s("pp"))],
            Verdict::Goto(s("target-2")),
            None,
        ),
        rule(
            vec![
                Match::AddrIn(V4, Addr::Src, s("a4")),
                Match::ProtoPortIn(s("pp")),
            ],
            Verdict::Log(log.clone()),
            Some(&"c".repeat(128)),
        ),
        rule(
            vec![
                Match::AddrIn(V6, Addr::Dst, s("a6")),
                Match::ProtoPortIn(s("pp-empty")),
            ],
            Verdict::CountedDrop,
            None,
        ),
        rule(
            vec![Match::DstProtoPortIn(V4, s("app4"))],
            Verdict::Accept,
            None,
        ),
        rule(
            vec![
                Match::AddrIn(V6, Addr::Src, s("i6-all")),
                Match::DstProtoPortIn(V6, s("app6")),
            ],
            Verdict::Goto(s("target")),
            None,
        ),
        rule(
            vec![
                Match::AddrIn(V4, Addr::Src, s("i4-zero")),
                Match::AddrIn(V4, Addr::Dst, s("i4-all")),
            ],
            Verdict::Return,
            None,
        ),
        rule(
            vec![
                Match::AddrIn(V6, Addr::Dst, s("i6-empty")),
                Match::AddrIn(V6, Addr::Src, s("a6")),
            ],
            Verdict::Accept,
            None,
        ),
        rule(
            vec![Match::AddrIn(V4, Addr::Dst, s("empty4"))],
            Verdict::Accept,
            None,
        ),
        rule(
            vec![Match::FibDaddrLocal],
            Verdict::Accept,
            Some("a pod may always reach its node"),
        ),
        rule(vec![Match::CtEstablishedRelated], Verdict::Accept, None),
        rule(vec![Match::CtEstablishedCurrent], Verdict::Accept, None),
        rule(vec![Match::CtStampCurrent], Verdict::Accept, None),
        rule(
            vec![Match::CtReply, Match::CtRevoked],
            Verdict::CountedDrop,
            None,
        ),
        rule(vec![Match::CtReply], Verdict::Accept, None),
        rule(vec![Match::CtRelated], Verdict::Accept, None),
        rule(vec![], Verdict::AddrVmap(V4, Addr::Src, s("m4")), None),
        rule(vec![], Verdict::AddrVmap(V6, Addr::Dst, s("m6")), None),
        rule(
            vec![],
            Verdict::AddrVmap(V6, Addr::Src, s("m6-empty")),
            None,
        ),
        rule(vec![], Verdict::Log(log), None),
        rule(
            vec![],
            Verdict::CtClearStamp,
            Some("no stamp if the other mark bits are in use"),
        ),
        rule(vec![], Verdict::CtStamp, None),
        rule(vec![], Verdict::Goto(s("target")), None),
    ];
    let chain = |comment: &str, rules| Chain {
        hook: None,
        comment: comment.to_string(),
        rules,
    };
    rs.chains = vec![
        (
            s("filter-forward"),
            Chain {
                hook: Some(Hook {
                    hook: "forward",
                    priority: 0,
                }),
                comment: s("base"),
                rules: vec![rule(vec![], Verdict::Jump(s("shapes")), None)],
            },
        ),
        (s("shapes"), chain("every shape", rules)),
        (
            s("target"),
            chain("", vec![rule(vec![], Verdict::Return, None)]),
        ),
        (s("target-2"), chain(&"c".repeat(128), vec![])),
    ];
    rs
}

/// Every shape, on its skeleton: one netlink batch, listed as `nft -f`
/// lists it; once more with the first stage creating the generation too
/// (no generation in the skeleton) and without it.
#[test]
fn every_rule_shape_and_set_kind_lists_as_nft_lists_it() {
    let pair = Pair::new("shapes");
    let rs = every_shape();
    pair.check("every shape", &skeleton(&rs), &rs, true);
    // Without revocation: no generation to create.
    let mut plain = rs.clone();
    plain.generation = None;
    for (_, c) in &mut plain.chains {
        c.rules.retain(|r| {
            !r.matches
                .iter()
                .any(|m| matches!(m, Match::CtEstablishedCurrent | Match::CtStampCurrent))
                && r.verdict != Verdict::CtStamp
        });
    }
    pair.check(
        "every shape, no generation",
        &skeleton(&plain),
        &plain,
        true,
    );
}

/// What the encoder leaves to `nft`: a neighbour discovery match (an
/// anonymous set) and a comment nft refuses send the stage as its script;
/// overlapping address ranges too (nft merges or refuses them).
#[test]
fn shapes_not_encoded_go_through_nft() {
    let pair = Pair::new("shapesnft");
    let base = every_shape();
    let mut nd = base.clone();
    nd.chains[1]
        .1
        .rules
        .push(rule(vec![Match::NeighbourDiscovery], Verdict::Accept, None));
    pair.check("neighbour discovery", &skeleton(&nd), &nd, false);
    let mut touching = base.clone();
    let i4 = touching.sets.get_mut("i4").unwrap();
    i4.elements
        .insert(range(Family::V4, "11.0.0.0", "11.0.0.255"));
    pair.check("touching ranges", &skeleton(&touching), &touching, false);
}

/// A first stage naming a chain that does not exist (a rule jumping to
/// it) is refused whole: the error names the rule, the table is as before,
/// and the refusal is counted.
#[test]
fn a_stage_naming_a_missing_chain_is_refused_and_changes_nothing() {
    let ns = Netns::new("createrefuse").unwrap();
    let rs = every_shape();
    let old = skeleton(&rs);
    let stages = staged(&old, &rs).unwrap();
    let Some(StageOps::Create(mut c)) = stages[0].ops.clone() else {
        panic!("a creation");
    };
    c.chains[0]
        .1
        .rules
        .push(rule(vec![], Verdict::Jump("nowhere".to_string()), None));
    let n = c.chains[0].1.rules.len();
    let bad = Stage {
        script: stages[0].script.clone(),
        ops: Some(StageOps::Create(c)),
    };
    ns.run(|| {
        let nl = NetlinkElements::open(NftCli::new("nft")).unwrap();
        nl.apply(&render::script(&old)).unwrap();
        let before = listings();
        let err = nl.apply_stage(&bad).unwrap_err().to_string();
        assert!(
            err.contains(&format!("add rule {n} to chain shapes")) && err.contains("No such file"),
            "{err}"
        );
        assert_eq!(listings(), before, "nothing applied");
        let t = nl.transports();
        let count = |c: &std::sync::Arc<std::sync::atomic::AtomicU64>| c.load(Ordering::Relaxed);
        assert_eq!(
            (count(&t.netlink), count(&t.refused), count(&t.nft)),
            (0, 1, 0)
        );
        // The stage as staged goes in.
        nl.apply_stage(&stages[0]).unwrap();
        assert_eq!(count(&t.netlink), 1);
    })
    .unwrap();
}
