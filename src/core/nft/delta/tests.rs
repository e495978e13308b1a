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
