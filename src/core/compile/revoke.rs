//! Revocation of established flows (docs/nftables.md, "Revoking established
//! flows"): a pass over the finished table, kept apart from the layouts so it
//! composes with whatever else the base chains hold.
//!
//! Every connection a base chain accepts after evaluating the policy is
//! stamped with the ruleset generation in nftpol's bits of `ct mark`
//! ([`Generation::MASK`]). The generation is data (one element of the set
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
//!     before every drop: ct mark set ct mark | MASK (revoked)
//! ct-stamp-HOOK (priority filter + 10: only what filter-HOOK accepted)
//!   ct mark @ct-generation accept ; ct direction reply accept ; ct state related accept
//!   ct mark set ct mark & ~MASK                   no stamp (other mark bits in use: evaluate every packet)
//!   ct mark set ct mark & ~MASK map @ct-stamp     { 0 : current stamp }
//! ```

use super::{Compiler, rule};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Chain, Generation, Hook, Match, Rule, Verdict};

/// Priority of the stamping chains: after nftpol's filter chains.
const STAMP_PRIORITY: i32 = 10;

impl Compiler<'_> {
    /// Turns the table's conntrack shortcut into the revocation block, adds
    /// the stamping chains, marks every drop as a revocation, and declares
    /// the generation.
    pub(super) fn revoke_established(&mut self) {
        // Every drop (group chains, ClusterNetworkPolicy Deny) also marks the
        // flow revoked, so its replies stop too. A separate rule, because a
        // `ct mark` expression ends a rule for a packet without conntrack.
        for (_, chain) in &mut self.rs.chains {
            let mut rules = Vec::with_capacity(chain.rules.len() + 1);
            for r in chain.rules.drain(..) {
                if r.verdict == Verdict::CountedDrop {
                    rules.push(rule(
                        r.matches.clone(),
                        Verdict::CtRevoke,
                        "revoked: its replies are dropped too",
                    ));
                }
                rules.push(r);
            }
            chain.rules = rules;
        }
        let mut hooks = Vec::new();
        for (_, chain) in &mut self.rs.chains {
            let Some(hook) = chain.hook else { continue };
            let Some(at) = chain
                .rules
                .iter()
                .position(|r| r.matches == [Match::CtEstablishedRelated])
            else {
                continue;
            };
            chain.rules.splice(at..=at, shortcut());
            hooks.push(hook.hook);
        }
        for hook in hooks {
            self.rs.chains.push((
                names::stamp_chain(hook),
                Chain {
                    hook: Some(Hook {
                        hook,
                        priority: STAMP_PRIORITY,
                    }),
                    comment: format!(
                        "nftpol: stamp flows filter-{hook} accepted with the ruleset generation"
                    ),
                    rules: stamp_rules(),
                },
            ));
        }
        self.rs.generation = Some(Generation::FIRST);
    }
}

/// What replaces `ct state established,related accept`.
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
            vec![Match::CtStampCurrent],
            Verdict::Accept,
            "already stamped",
        ),
        rule(
            vec![Match::CtReply],
            Verdict::Accept,
            "replies are not evaluated",
        ),
        rule(
            vec![Match::CtRelated],
            Verdict::Accept,
            "nor are ICMP errors",
        ),
        rule(
            vec![],
            Verdict::CtClearStamp,
            "no stamp if the other mark bits are in use",
        ),
        rule(vec![], Verdict::CtStamp, "the current generation"),
    ]
}
