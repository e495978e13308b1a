//! Element changes sent as one netlink batch (`kernel::netlink`, the agent's
//! transport) in the real kernel: the same changes through `nft -f` in a
//! second namespace give the same table, every table verifies against the
//! enforcer's mirror (the drift check), and a refused batch changes nothing.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nftpol::core::compile::Options;
use nftpol::core::model::{Family, Protocol};
use nftpol::core::nft::delta::{Edits, ElementChange};
use nftpol::core::nft::ruleset::{Element, Ruleset, SetKind};
use nftpol::kernel::enforcer::{Applied, Enforcer};
use nftpol::kernel::netlink::NetlinkElements;
use nftpol::kernel::nft::{Nft, NftCli};
use nftpol_testkit::listing::{self, Counters};
use nftpol_testkit::netns::Netns;

use super::delta::Lcg;

/// An enforcer sending element changes over netlink, opened inside `ns`,
/// and its count of acknowledged batches.
fn netlink_enforcer(ns: &Netns) -> (Enforcer, Arc<AtomicU64>) {
    ns.run(|| {
        let nl = NetlinkElements::open(NftCli::new("nft")).expect("a netlink socket");
        let applied = nl.applied();
        (Enforcer::with(nl), applied)
    })
    .unwrap()
}

/// A fresh address of `family` (outside every testdata cluster).
fn fresh(family: Family, n: &mut u32) -> IpAddr {
    *n += 1;
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::from(0xc633_6400 + *n)),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(
            0x2001_0db8_00ee_0000_0000_0000_0000_0000u128 + u128::from(*n),
        )),
    }
}

/// `rs` with random element changes: some elements of the address, pair and
/// named-port sets removed and fresh ones added, some dispatch entries
/// removed, added or pointed at another chain of the same map.
fn mutate(rs: &Ruleset, rng: &mut Lcg, n: &mut u32) -> Ruleset {
    let mut new = rs.clone();
    for set in new.sets.values_mut() {
        if rng.below(3) != 0 {
            continue;
        }
        let element = |rng: &mut Lcg, n: &mut u32| match set.kind {
            SetKind::Addr(f) => Some(Element::Addr(fresh(f, n))),
            SetKind::AddrPair(f) => {
                let a = fresh(f, n);
                Some(Element::AddrPair(a, a))
            }
            SetKind::AddrProtoPort(f) => Some(Element::AddrProtoPort(
                fresh(f, n),
                Protocol::ALL[rng.below(3)],
                1 + rng.below(65535) as u16,
            )),
            SetKind::AddrInterval(_) | SetKind::ProtoPort => None,
        };
        let kind_ok = element(rng, n).is_some();
        if !kind_ok {
            continue;
        }
        for _ in 0..rng.below(3) {
            if let Some(e) = set
                .elements
                .iter()
                .nth(rng.below(set.elements.len().max(1)))
                .cloned()
            {
                set.elements.remove(&e);
            }
        }
        for _ in 0..rng.below(3) {
            set.elements.extend(element(rng, n));
        }
    }
    for map in new.maps.values_mut() {
        // Only chains this map already jumps to: another map's chain may
        // jump back into the chain that looks this map up (a loop the
        // kernel refuses).
        let targets: Vec<String> = map
            .elements
            .values()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if targets.is_empty() || rng.below(2) != 0 {
            continue;
        }
        let keys: Vec<IpAddr> = map.elements.keys().copied().collect();
        if !keys.is_empty() {
            let k = keys[rng.below(keys.len())];
            match rng.below(2) {
                0 => {
                    map.elements.remove(&k);
                }
                _ => {
                    map.elements
                        .insert(k, targets[rng.below(targets.len())].clone());
                }
            }
        }
        for _ in 0..rng.below(3) {
            let ip = fresh(map.family, n);
            map.elements
                .insert(ip, targets[rng.below(targets.len())].clone());
        }
    }
    new
}

/// The table of `ns` with counters zeroed and `want`'s revocation generation
/// (the two enforcers pick their own).
fn table(ns: &Netns, want: &serde_json::Value) -> serde_json::Value {
    let mut got = listing::table_in(ns.name(), Counters::Zeroed).expect("a table");
    listing::with_generation_of(&mut got, want).unwrap();
    got
}

/// Random element changes to four testdata tables (pods, named ports, IPv6,
/// the cluster tiers), with and without revocation: each goes in as one netlink
/// batch in one namespace and as an `nft -f` script in another; after every
/// step both enforcers report a delta, both tables verify against their
/// mirrors, and the two tables are equal.
#[test]
fn netlink_batches_and_nft_scripts_give_the_same_tables() {
    let root = nftpol_testkit::cases::testdata();
    let (nl_ns, cli_ns) = (Netns::new("nl").unwrap(), Netns::new("nlcli").unwrap());
    let mut steps = 0;
    let mut elements = 0;
    let mut deltas = 0;
    for case in [
        "upstream-xyz",
        "named-ports",
        "ipblock-except-v6",
        "cluster-network-policy",
    ] {
        for revoke in [true, false] {
            let (objs, _) = nftpol::core::k8s::load_paths(&[root.join(case)]);
            let opts = Options {
                revoke_established: revoke,
                ..Default::default()
            };
            let mut rs = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
            let (mut nl, applied) = netlink_enforcer(&nl_ns);
            let mut cli = Enforcer::new("nft");
            nl_ns.run(|| nl.invalidate()).unwrap();
            assert_eq!(nl_ns.run(|| nl.sync(&rs)).unwrap().unwrap(), Applied::Full);
            cli_ns.run(|| cli.sync(&rs)).unwrap().unwrap();
            let mut rng = Lcg(0x5eed ^ steps as u64);
            let mut n = 0;
            for step in 0..25 {
                let new = mutate(&rs, &mut rng, &mut n);
                let before = applied.load(Ordering::Relaxed);
                let got = nl_ns.run(|| nl.sync(&new)).unwrap().unwrap();
                let want = cli_ns.run(|| cli.sync(&new)).unwrap().unwrap();
                assert_eq!(got, want, "{case} revoke={revoke} step {step}");
                if let Applied::Delta { added, deleted } = got {
                    elements += added + deleted;
                    deltas += 1;
                    let sent = applied.load(Ordering::Relaxed) - before;
                    assert_eq!(
                        sent, 1,
                        "step {step}: the delta went in as one netlink batch"
                    );
                }
                assert!(
                    nl_ns.run(|| nl.verify()).unwrap().unwrap(),
                    "{case} revoke={revoke} step {step}: the netlink table verifies"
                );
                assert!(cli_ns.run(|| cli.verify()).unwrap().unwrap());
                let cli_table = listing::table_in(cli_ns.name(), Counters::Zeroed).unwrap();
                assert_eq!(
                    table(&nl_ns, &cli_table),
                    cli_table,
                    "{case} revoke={revoke} step {step}: {}",
                    listing::diff(&table(&nl_ns, &cli_table), &cli_table)
                );
                rs = new;
                steps += 1;
            }
        }
    }
    eprintln!("{steps} steps: {deltas} deltas ({elements} elements), each one netlink batch");
    assert!(elements > 100, "the changes changed elements: {elements}");
}

/// A batch the kernel refuses (it deletes an element that is not there,
/// after an addition that alone would succeed) changes nothing; the error
/// names the set; the enforcer then repairs with a full replacement.
#[test]
fn a_refused_batch_changes_nothing() {
    let root = nftpol_testkit::cases::testdata();
    let ns = Netns::new("nlrefuse").unwrap();
    let (objs, _) = nftpol::core::k8s::load_paths(&[root.join("upstream-xyz")]);
    let rs = nftpol::core::compile::compile_objects(&objs, &Options::default()).ruleset;
    let (name, set) = rs
        .sets
        .iter()
        .find(|(_, s)| matches!(s.kind, SetKind::Addr(Family::V4)))
        .expect("an address set");
    let mut edits = Edits::default();
    let mut n = 0;
    edits.set_added(name, &Element::Addr(fresh(Family::V4, &mut n)));
    edits.set_deleted(name, &Element::Addr(fresh(Family::V4, &mut n)));
    let change = ElementChange {
        edits: &edits,
        generation: None,
    };
    ns.run(|| {
        let mut e = Enforcer::new("nft");
        e.sync(&rs).unwrap();
        let before = listing::table_here(Counters::Kept);
        let nl = NetlinkElements::open(NftCli::new("nft")).unwrap();
        let err = nl.apply_elements(&change).unwrap_err().to_string();
        assert!(
            err.contains(&format!("delete 1 element(s) in {name}")) && err.contains("No such file"),
            "{err}"
        );
        assert_eq!(
            listing::table_here(Counters::Kept),
            before,
            "nothing applied"
        );
        assert!(e.verify().unwrap());
        // Without the bad deletion the same batch goes in.
        let mut good = Edits::default();
        good.sets
            .insert(name.clone(), (BTreeSet::new(), edits.sets[name].1.clone()));
        let change = ElementChange {
            edits: &good,
            generation: None,
        };
        nl.apply_elements(&change).unwrap();
        // What the agent's nftpol_kernel_batches_total reports.
        let t = nl.transports();
        let count = |n: &Arc<AtomicU64>| n.load(Ordering::Relaxed);
        assert_eq!(
            (count(&t.netlink), count(&t.refused), count(&t.nft)),
            (1, 1, 0),
            "one batch acknowledged, one refused, none through nft"
        );
        let added = good.sets[name].1.first().expect("one element");
        let get = std::process::Command::new("nft")
            .args(["get", "element", "inet", "nftpol", name])
            .arg(format!(
                "{{ {} }}",
                nftpol::core::nft::render::element(added)
            ))
            .output()
            .unwrap();
        assert!(get.status.success(), "the added element is in the kernel");
        assert!(
            !e.verify().unwrap(),
            "and the enforcer's mirror no longer matches"
        );
        assert!(set.elements.len() < 1 << 16);
    })
    .unwrap();
}

/// Structural changes (policies removed and restored, pods joining and
/// leaving groups) through the agent's transport — the stage that only
/// changes elements and the one that only deletes as netlink batches, the
/// one that creates chains through `nft` — and through `nft` alone in a
/// second namespace: after every change the two tables are equal and verify
/// against their mirrors.
#[test]
fn structural_stages_over_netlink_give_the_same_tables() {
    let (mut objs, _) = super::delta::upstream();
    let opts = Options {
        node: Some("node-1".to_string()),
        ..Default::default()
    };
    let (nl_ns, cli_ns) = (
        Netns::new("nlstage").unwrap(),
        Netns::new("nlstagecli").unwrap(),
    );
    let (mut nl, applied) = netlink_enforcer(&nl_ns);
    let mut cli = Enforcer::new("nft");
    let mut rng = Lcg(23);
    let mut next_ip = 100u8;
    let mut parked = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for step in 0..60 {
        let what = super::delta::structural_change(&mut objs, &mut parked, &mut rng, &mut next_ip);
        let rs = nftpol::core::compile::compile_objects(&objs, &opts).ruleset;
        let got = nl_ns.run(|| nl.sync(&rs)).unwrap().unwrap();
        let want = cli_ns.run(|| cli.sync(&rs)).unwrap().unwrap();
        assert_eq!(got, want, "step {step} ({what})");
        *kinds.entry(got.kind()).or_insert(0) += 1;
        assert!(
            nl_ns.run(|| nl.verify()).unwrap().unwrap(),
            "step {step} ({what})"
        );
        assert!(cli_ns.run(|| cli.verify()).unwrap().unwrap());
        let cli_table = listing::table_in(cli_ns.name(), Counters::Zeroed).unwrap();
        let nl_table = table(&nl_ns, &cli_table);
        assert!(
            nl_table == cli_table,
            "step {step} ({what}): {}",
            listing::diff(&nl_table, &cli_table)
        );
    }
    let batches = applied.load(Ordering::Relaxed);
    eprintln!("60 changes by how they applied {kinds:?}; {batches} netlink batches");
    assert!(kinds.get("full").copied().unwrap_or(0) >= 5, "{kinds:?}");
    // The first full load is one transaction through nft; every later
    // structural change sends at least its switch or its removal over
    // netlink, and every delta one batch.
    assert!(
        batches >= kinds["full"] - 1 + kinds.get("delta").copied().unwrap_or(0),
        "{batches} batches for {kinds:?}"
    );
}
