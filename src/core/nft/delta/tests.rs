use super::*;
use crate::core::nft::ruleset::{Chain, Log, Rule, Verdict};

#[test]
fn a_log_rule_is_a_structure_change() {
    let drop = Rule {
        matches: vec![],
        verdict: Verdict::CountedDrop,
        comment: None,
    };
    let chain = |rules: Vec<Rule>| Chain {
        hook: None,
        comment: "g".into(),
        rules,
    };
    let mut quiet = Ruleset::default();
    quiet.chains.push(("g".into(), chain(vec![drop.clone()])));
    let mut logging = Ruleset::default();
    let log = Rule {
        matches: vec![],
        verdict: Verdict::Log(Log {
            group: 9750,
            rate: 10,
            burst: 20,
            prefix: "nftpol drop g".into(),
        }),
        comment: None,
    };
    logging.chains.push(("g".into(), chain(vec![log, drop])));
    assert_eq!(diff(&quiet, &logging), Update::Full);
    assert_eq!(diff(&logging, &quiet), Update::Full);
    assert_eq!(diff(&logging, &logging.clone()), Update::None);
}

/// The first stage carries, as data, exactly what its script declares:
/// the chains only the new ruleset has (a new base chain goes in the
/// switch), its new sets and maps, and the generation when the old table
/// had none; over a listing's names ([`staged_over`]) the same.
#[test]
fn the_first_stage_is_data_too() {
    use crate::core::model::Family;
    use crate::core::nft::ruleset::{Hook, Set, SetKind, VerdictMap};
    let chain = |hook: Option<Hook>, n: usize| Chain {
        hook,
        comment: format!("c{n}"),
        rules: vec![Rule {
            matches: vec![],
            verdict: Verdict::Accept,
            comment: None,
        }],
    };
    let set = |n: &str| Set {
        kind: SetKind::Addr(Family::V4),
        comment: n.into(),
        elements: Default::default(),
    };
    let map = VerdictMap {
        family: Family::V6,
        comment: "m".into(),
        elements: Default::default(),
    };
    let base = Hook {
        hook: "forward",
        priority: 0,
    };
    let mut old = Ruleset::default();
    old.chains.push(("kept".into(), chain(None, 1)));
    old.sets.insert("s-kept".into(), set("s-kept"));
    let mut new = old.clone();
    new.chains.push(("base".into(), chain(Some(base), 2)));
    new.chains.push(("fresh".into(), chain(None, 3)));
    new.sets.insert("s-fresh".into(), set("s-fresh"));
    new.maps.insert("m-fresh".into(), map.clone());
    new.generation = Some(Generation::new(3));
    let want = Creation {
        chains: vec![("fresh".into(), new.chains[2].1.clone())],
        sets: vec![("s-fresh".into(), set("s-fresh"))],
        maps: vec![("m-fresh".into(), map)],
        generation: Some(Generation::new(3)),
    };
    let stages = staged(&old, &new).unwrap();
    assert_eq!(stages[0].ops, Some(StageOps::Create(want.clone())));
    assert!(stages[0].script.contains("chain fresh") && !stages[0].script.contains("chain base"));
    let over = staged_over(&Present::of(&old), &new).unwrap();
    assert_eq!(over[0].ops, Some(StageOps::Create(want)));
    // Nothing to create: no first stage.
    let same = staged(&new, &new).unwrap();
    assert!(
        same.iter()
            .all(|s| !matches!(s.ops, Some(StageOps::Create(_))))
    );
}
