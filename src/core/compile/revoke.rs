//! Revocation of established flows (docs/nftables.md, "Revoking established
//! flows"): a pass over the finished table, kept apart from the layouts so it
//! composes with whatever else the base chains hold.
//!
//! Every connection the policy accepts is stamped with the ruleset
//! generation in nftpol's bits of `ct mark` ([`Generation::MASK`]): every
//! `accept` of the policy walk becomes `goto ct-stamp-accept`, one chain that
//! stamps and accepts. The generation is data (one element of the set
//! `ct-generation` and of the map `ct-stamp`), so a new one goes in with the
//! element delta of the same transaction, without a rule change.
//!
//! ```text
//! filter-HOOK (priority filter)
//!   ct state established ct mark @ct-generation  accept   stamped by this generation
//!   ct direction reply ct mark & MASK == MASK     drop     replies of revoked flows
//!   ct direction reply                            accept   other replies: the original direction decides
//!   ct state related                              accept   ICMP errors of tracked flows
//!   … the policy, for new flows and established ones with an old stamp;
//!     every accept: goto ct-stamp-accept
//!     before every drop: ct mark set ct mark | MASK (revoked)
//! ct-stamp-accept (a regular chain: reached only by goto)
//!   ct mark set ct mark & ~MASK                   no stamp (other mark bits in use: evaluate every packet)
//!   ct mark set ct mark & ~MASK map @ct-stamp     { 0 : current stamp }
//!   accept
//! ```
//!
//! An earlier layout stamped in a second base chain at priority filter + 10;
//! every packet then paid two hook traversals (docs/performance.md,
//! "Revocation").

use super::{Compiler, rule};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Chain, Generation, Match, Rule, Verdict};

impl Compiler<'_> {
    /// Turns the table's conntrack shortcut into the revocation block, sends
    /// every accept of the policy walk through the stamping chain, marks
    /// every drop as a revocation, and declares the generation.
    pub(super) fn revoke_established(&mut self) {
        // Every drop (group chains, ClusterNetworkPolicy Deny) also marks the
        // flow revoked, so its replies stop too. A separate rule, because a
        // `ct mark` expression ends a rule for a packet without conntrack.
        // Every accept stamps, except neighbour discovery (not tracked).
        for (_, chain) in &mut self.rs.chains {
            revoke_in(chain);
        }
        for (_, chain) in &mut self.rs.chains {
            if chain.hook.is_none() {
                continue;
            }
            let Some(at) = chain
                .rules
                .iter()
                .position(|r| r.matches == [Match::CtEstablishedRelated])
            else {
                continue;
            };
            chain.rules.splice(at..=at, shortcut());
        }
        self.rs.chains.push((
            names::STAMP_CHAIN.to_string(),
            Chain {
                hook: None,
                comment: "nftpol: accept, stamping the flow with the ruleset generation".into(),
                rules: stamp_rules(),
            },
        ));
        self.rs.generation = Some(Generation::FIRST);
    }
}

/// What replaces `ct state established,related accept`.
/// One chain's part of [`Compiler::revoke_established`]: a drop also
/// revokes the flow; an accept (but neighbour discovery's) stamps it.
pub(super) fn revoke_in(chain: &mut Chain) {
    let mut rules = Vec::with_capacity(chain.rules.len() + 1);
    for mut r in chain.rules.drain(..) {
        match r.verdict {
            Verdict::CountedDrop => rules.push(rule(
                r.matches.clone(),
                Verdict::CtRevoke,
                "revoked: its replies are dropped too",
            )),
            Verdict::Accept if r.matches != [Match::NeighbourDiscovery] => {
                r.verdict = Verdict::Goto(names::STAMP_CHAIN.to_string());
            }
            _ => {}
        }
        rules.push(r);
    }
    chain.rules = rules;
}

fn shortcut() -> Vec<Rule> {
    vec![
        rule(
            vec![Match::CtEstablishedCurrent],
            Verdict::Accept,
            "flows this generation allowed",
        ),
        rule(
            vec![Match::CtReply, Match::CtRevoked],
            Verdict::CountedDrop,
            "replies of revoked flows",
        ),
        rule(
            vec![Match::CtReply],
            Verdict::Accept,
            "replies: the original direction decides",
        ),
        rule(
            vec![Match::CtRelated],
            Verdict::Accept,
            "ICMP errors of tracked flows",
        ),
    ]
}

/// The stamping chain's rules.
fn stamp_rules() -> Vec<Rule> {
    vec![
        rule(
            vec![],
            Verdict::CtClearStamp,
            "no stamp if the other mark bits are in use",
        ),
        rule(vec![], Verdict::CtStamp, "the current generation"),
        rule(vec![], Verdict::Accept, "allowed"),
    ]
}
