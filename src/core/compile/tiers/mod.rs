//! ClusterNetworkPolicy tiers (docs/cluster-network-policy.md): when the
//! cluster has any ClusterNetworkPolicy, the table takes its tiered layout.
//!
//! ```text
//! filter-forward / filter-input ── admin-egress-pods ─▶ admin-egress-group-* ─▶ admin-egress-*
//!         │ (no Admin decision)                              Pass ──┐
//!         ▼                                                         ▼
//!     pod-egress ── egress-pods ─▶ egress-group-* (NetworkPolicy decides if isolated)
//!         │ ── baseline-egress-pods ─▶ baseline-egress-group-* ─▶ baseline-egress-*
//!         ▼ (egress end allowed)
//!     admin-ingress ── admin-ingress-pods ─▶ … Pass ─▶ pod-ingress
//!     pod-ingress ── ingress-pods ─▶ ingress-group-* ; baseline-ingress-pods ─▶ … ; accept
//! ```
//!
//! Every stage dispatches on the pod's address through a verdict map, so the
//! per-packet cost does not grow with pods; a pod's group chain jumps to the
//! chains of exactly the ClusterNetworkPolicies that select it, in evaluation
//! order. Accept continues with the other end (`goto` the ingress start) or
//! accepts; Deny drops; Pass `goto`s the next stage. The stage chains after
//! a `goto` always end in a verdict, so nothing returns into a chain that
//! was left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Compiler, DropLog, droplog, rule};
use crate::core::model::{Action, ClusterPolicy, Direction, Family, Pod, Rule as PolicyRule, Tier};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Chain, Log, Match, Rule, Verdict, VerdictMap};

/// (tier, direction, policy names in evaluation order) → group chain.
pub(super) type TierGroupKey = (Tier, Direction, Vec<String>);

/// The tier group chains and which pod address dispatches to which.
#[derive(Default)]
pub(super) struct TierDispatch {
    /// Group key → group chain name.
    pub(super) groups: BTreeMap<TierGroupKey, String>,
    /// (tier, direction, family) → enforced pod address → its group chain.
    pub(super) targets: BTreeMap<(Tier, Direction, Family), BTreeMap<IpAddr, String>>,
}

impl Compiler<'_> {
    /// Whether the table takes the tiered layout (any ClusterNetworkPolicy).
    pub(super) fn tiered(&self) -> bool {
        !self.cluster.cluster_policies.is_empty()
    }

    /// Whether a tier has any policy (its stage and maps exist). Asked for
    /// every egress rule's verdict, so answered from [`Compiler::tiers`],
    /// computed once per compilation.
    pub(super) fn has_tier(&self, tier: Tier) -> bool {
        match tier {
            Tier::Admin => self.tiers.0,
            Tier::Baseline => self.tiers.1,
        }
    }

    /// Where checking the destination end starts: the Admin ingress stage if
    /// there is an Admin tier, else NetworkPolicy's `pod-ingress`.
    pub(super) fn ingress_start(&self) -> String {
        if self.has_tier(Tier::Admin) {
            names::tier_stage_chain(Tier::Admin, Direction::Ingress)
        } else {
            names::INGRESS_CHAIN.to_string()
        }
    }

    /// Each enforced pod's ClusterNetworkPolicies per tier and direction define its group.
    pub(super) fn tier_dispatch(&self, enforced: &[&Pod]) -> TierDispatch {
        let mut d = TierDispatch::default();
        for pod in enforced {
            for tier in Tier::ALL {
                for dir in Direction::ALL {
                    let pols: Vec<String> = self
                        .graph()
                        .cluster_policies(&pod.id, tier, dir)
                        .into_iter()
                        .map(|(_, n)| n)
                        .collect();
                    if pols.is_empty() {
                        continue;
                    }
                    let chain = d
                        .groups
                        .entry((tier, dir, pols))
                        .or_insert_with_key(|(t, dir, pols)| {
                            let names: Vec<&str> = pols.iter().map(String::as_str).collect();
                            names::tier_group_chain(*t, *dir, &names)
                        })
                        .clone();
                    for ip in &pod.ips {
                        d.targets
                            .entry((tier, dir, Family::of(ip)))
                            .or_default()
                            .insert(*ip, chain.clone());
                    }
                }
            }
        }
        d
    }

    /// The rules that dispatch one tier and direction on the pod's address
    /// (source for egress, destination for ingress), with their maps.
    pub(super) fn tier_dispatch_rules(
        &mut self,
        tier: Tier,
        dir: Direction,
        targets: &mut BTreeMap<(Tier, Direction, Family), BTreeMap<IpAddr, String>>,
    ) -> Vec<Rule> {
        if !self.has_tier(tier) {
            return Vec::new();
        }
        let addr = match dir {
            Direction::Egress => crate::core::nft::ruleset::Addr::Src,
            Direction::Ingress => crate::core::nft::ruleset::Addr::Dst,
        };
        let mut rules = Vec::new();
        for f in Family::ALL {
            let name = names::tier_dispatch_map(tier, dir, f);
            let elements = targets.remove(&(tier, dir, f)).unwrap_or_default();
            self.rs.maps.insert(
                name.clone(),
                VerdictMap {
                    family: f,
                    comment: names::comment(&format!(
                        "enforced pods -> the {} ClusterNetworkPolicies of their {}",
                        tier.api_name(),
                        dir.as_str()
                    )),
                    elements,
                },
            );
            rules.push(Rule {
                matches: vec![],
                verdict: Verdict::AddrVmap(f, addr, name),
                comment: None,
            });
        }
        rules
    }

    /// Every tier group chain (jump to each policy's chain in evaluation
    /// order; no decision falls back to the stage that dispatched), sorted by
    /// name; returns the (tier, direction, policy) chains they use.
    pub(super) fn tier_group_chains(
        &mut self,
        groups: &BTreeMap<TierGroupKey, String>,
    ) -> BTreeSet<(Direction, String)> {
        let mut used = BTreeSet::new();
        let mut chains = Vec::new();
        for ((tier, dir, pols), name) in groups {
            let rules = pols
                .iter()
                .map(|p| Rule {
                    matches: vec![],
                    verdict: Verdict::Jump(names::cluster_policy_chain(*tier, *dir, p)),
                    comment: None,
                })
                .collect();
            used.extend(pols.iter().map(|p| (*dir, p.clone())));
            chains.push((
                name.clone(),
                Chain {
                    hook: None,
                    comment: names::comment(&format!(
                        "{} tier, {}: {}",
                        tier.api_name(),
                        dir.as_str(),
                        pols.join(", ")
                    )),
                    rules,
                },
            ));
        }
        chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.rs.chains.extend(chains);
        used
    }

    /// The chains of the ClusterNetworkPolicies the groups use, sorted by name.
    pub(super) fn cluster_policy_chains(
        &mut self,
        used: BTreeSet<(Direction, String)>,
        log: &DropLog,
    ) {
        let mut chains = Vec::new();
        for (dir, name) in used {
            let pol = &self.cluster.cluster_policies[&name];
            chains.push((
                names::cluster_policy_chain(pol.tier, dir, &pol.name),
                self.cluster_policy_chain(pol, dir, log),
            ));
        }
        chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.rs.chains.extend(chains);
    }

    /// What a matching rule does, as an nft verdict, by tier, direction and action.
    fn action_verdict(&self, tier: Tier, dir: Direction, action: Action) -> Verdict {
        let allow = match dir {
            Direction::Egress => Verdict::Goto(self.ingress_start()),
            Direction::Ingress => Verdict::Accept,
        };
        match (action, tier, dir) {
            (Action::Accept, _, _) => allow,
            (Action::Deny, _, _) => Verdict::CountedDrop,
            (Action::Pass, Tier::Admin, Direction::Egress) => {
                Verdict::Goto(names::EGRESS_CHAIN.to_string())
            }
            (Action::Pass, Tier::Admin, Direction::Ingress) => {
                Verdict::Goto(names::INGRESS_CHAIN.to_string())
            }
            // Pass in Baseline: nothing is left to decide; the default allows.
            (Action::Pass, Tier::Baseline, _) => allow,
        }
    }

    /// One ClusterNetworkPolicy in one direction: its rules in order, each
    /// peer × port class × family an nft rule with the rule's verdict.
    /// With agent-wide drop logging (`--log-drops`), each Deny rule is
    /// preceded by a rate-limited log rule with the same matches, whose
    /// prefix names the policy and rule (docs/drop-logging.md).
    fn cluster_policy_chain(
        &mut self,
        pol: &ClusterPolicy,
        dir: Direction,
        log: &DropLog,
    ) -> Chain {
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: BTreeSet<Vec<Match>> = BTreeSet::new();
        for (i, r) in pol.rules(dir).iter().enumerate() {
            if pol.audit {
                self.audit_cluster_rule(pol, dir, i, log, &mut seen, &mut rules);
                continue;
            }
            let verdict = self.action_verdict(pol.tier, dir, r.action);
            let as_rule = PolicyRule {
                peers: r.peers.clone(),
                ports: r.ports.clone(),
            };
            let label = match &r.name {
                Some(n) => format!("{}[{i}] {n}: {}", dir.as_str(), r.action),
                None => format!("{}[{i}]: {}", dir.as_str(), r.action),
            };
            let logged = log.all_namespaces && r.action == Action::Deny;
            for matches in self.rule_matches(&as_rule, dir) {
                // The first rule with these matches decides; a later
                // duplicate could never match first.
                if seen.insert(matches.clone()) {
                    if logged {
                        let l = self.cluster_rule_log(matches.clone(), log, pol, dir, i, false);
                        rules.push(l);
                    }
                    rules.push(rule(matches, verdict.clone(), &names::comment(&label)));
                }
            }
        }
        let what = format!(
            "{} {} priority {} {}{}",
            pol.tier.api_name(),
            pol.name,
            pol.priority,
            dir.as_str(),
            if pol.audit {
                " AUDIT: never decides"
            } else if pol.valid {
                ""
            } else {
                " INVALID: fails closed, denies everything"
            }
        );
        Chain {
            hook: None,
            comment: names::comment(&what),
            rules,
        }
    }

    /// One rule of an audited ClusterNetworkPolicy: no verdict of its own.
    /// A packet whose first matching rule of the policy is a Deny is logged
    /// as "would drop" (rate-limited, whatever the drop-logging settings);
    /// any first match returns to the tier group chain, which goes on with
    /// the next policy, as if this one were absent.
    fn audit_cluster_rule(
        &mut self,
        pol: &ClusterPolicy,
        dir: Direction,
        i: usize,
        log: &DropLog,
        seen: &mut BTreeSet<Vec<Match>>,
        rules: &mut Vec<Rule>,
    ) {
        let r = &pol.rules(dir)[i];
        let as_rule = PolicyRule {
            peers: r.peers.clone(),
            ports: r.ports.clone(),
        };
        let label = match &r.name {
            Some(n) => format!("{}[{i}] {n}: {} (audit)", dir.as_str(), r.action),
            None => format!("{}[{i}]: {} (audit)", dir.as_str(), r.action),
        };
        for matches in self.rule_matches(&as_rule, dir) {
            if !seen.insert(matches.clone()) {
                continue;
            }
            if r.action == Action::Deny {
                let l = self.cluster_rule_log(matches.clone(), log, pol, dir, i, true);
                rules.push(l);
            }
            rules.push(rule(matches, Verdict::Return, &names::comment(&label)));
        }
    }

    /// The rate-limited log rule of rule `i` of `pol` in `dir` (`audit`: a
    /// would-drop of an audited policy, with the audit prefix), recorded in
    /// the drop-log index under the rule's key.
    fn cluster_rule_log(
        &mut self,
        matches: Vec<Match>,
        log: &DropLog,
        pol: &ClusterPolicy,
        dir: Direction,
        i: usize,
        audit: bool,
    ) -> Rule {
        let key = names::cluster_rule_log_key(pol.tier, dir, &pol.name, i);
        let (prefix, comment) = if audit {
            (
                names::audit_log_prefix(&key),
                "audit: would drop (rate-limited log, no drop)",
            )
        } else {
            (names::log_prefix(&key), "log drops (rate-limited)")
        };
        self.drop_log.cluster_rules.insert(
            key,
            droplog::ClusterRuleDrop {
                direction: dir,
                tier: pol.tier.api_name(),
                policy: pol.name.clone(),
                rule: i,
                rule_name: pol.rules(dir)[i].name.clone(),
                audit,
            },
        );
        let log = Log {
            group: log.group,
            rate: log.rate,
            burst: log.burst,
            prefix,
        };
        rule(matches, Verdict::Log(log), comment)
    }

    /// The tiered layout's base and stage chains: `filter-forward` and
    /// `filter-input` (conntrack, then the Admin egress stage, then
    /// `pod-egress`), `pod-egress` (NetworkPolicy, then Baseline egress,
    /// then the ingress start), `admin-ingress` (Admin ingress, then
    /// `pod-ingress`) and `pod-ingress` (NetworkPolicy, then Baseline
    /// ingress, then accept), with every map they name.
    pub(super) fn tiered_base_chains(
        &mut self,
        mut np_targets: BTreeMap<(Direction, Family), BTreeMap<IpAddr, String>>,
        mut tier_targets: BTreeMap<(Tier, Direction, Family), BTreeMap<IpAddr, String>>,
    ) {
        use crate::core::nft::ruleset::{Addr, Hook};
        let ct = rule(
            vec![Match::CtEstablishedRelated],
            Verdict::Accept,
            "replies of allowed flows",
        );
        let admin_egress =
            self.tier_dispatch_rules(Tier::Admin, Direction::Egress, &mut tier_targets);
        let to_egress = Rule {
            matches: vec![],
            verdict: Verdict::Goto(names::EGRESS_CHAIN.to_string()),
            comment: None,
        };
        let nd = rule(
            vec![Match::NeighbourDiscovery],
            Verdict::Accept,
            "IPv6 neighbour discovery",
        );
        let mut fwd = vec![ct.clone(), nd.clone()];
        fwd.extend(admin_egress.iter().cloned());
        fwd.push(to_egress.clone());
        // A pod's neighbour discovery to its node (its router) is never
        // policy: a Deny to `::/0` must not cut the pod off the network.
        let mut input = vec![ct, nd];
        input.extend(admin_egress);
        input.push(to_egress);

        let mut np_dispatch = |c: &mut Self, dir: Direction| -> Vec<Rule> {
            let addr = match dir {
                Direction::Egress => Addr::Src,
                Direction::Ingress => Addr::Dst,
            };
            Family::ALL
                .into_iter()
                .map(|f| {
                    let elements = np_targets.remove(&(dir, f)).unwrap_or_default();
                    let map = c.np_dispatch_map(dir, f, elements);
                    Rule {
                        matches: vec![],
                        verdict: Verdict::AddrVmap(f, addr, map),
                        comment: None,
                    }
                })
                .collect()
        };
        let mut egress = np_dispatch(self, Direction::Egress);
        egress.extend(self.tier_dispatch_rules(
            Tier::Baseline,
            Direction::Egress,
            &mut tier_targets,
        ));
        egress.push(rule(
            vec![],
            Verdict::Goto(self.ingress_start()),
            "egress end allowed: check the destination",
        ));
        let mut ingress = np_dispatch(self, Direction::Ingress);
        ingress.extend(self.tier_dispatch_rules(
            Tier::Baseline,
            Direction::Ingress,
            &mut tier_targets,
        ));
        ingress.push(rule(vec![], Verdict::Accept, "no tier denies this ingress"));
        // Audit mode: an audited NetworkPolicy's match continues after the
        // NetworkPolicy stage, so the Baseline stage gets chains of its own
        // (`baseline-egress`, `baseline-ingress`) for it to `goto`.
        let mut baseline_stages = Vec::new();
        if self.np_audit && self.has_tier(Tier::Baseline) {
            for (dir, rules) in [
                (Direction::Egress, &mut egress),
                (Direction::Ingress, &mut ingress),
            ] {
                let stage = names::tier_stage_chain(Tier::Baseline, dir);
                let tail = rules.split_off(Family::ALL.len());
                rules.push(Rule {
                    matches: vec![],
                    verdict: Verdict::Goto(stage.clone()),
                    comment: None,
                });
                baseline_stages.push((
                    stage,
                    Chain {
                        hook: None,
                        comment: format!("{}: the Baseline tier", dir.as_str()),
                        rules: tail,
                    },
                ));
            }
        }

        let base = |hook: &'static str, comment: &str, rules: Vec<Rule>| Chain {
            hook: Some(Hook { hook, priority: 0 }),
            comment: comment.to_string(),
            rules,
        };
        self.rs.chains.push((
            names::FORWARD_CHAIN.to_string(),
            base("forward", names::FORWARD_CHAIN_COMMENT, fwd),
        ));
        self.rs.chains.push((
            names::INPUT_CHAIN.to_string(),
            base(
                "input",
                "nftpol: ClusterNetworkPolicy egress of local pods to this node",
                input,
            ),
        ));
        self.rs.chains.push((
            names::EGRESS_CHAIN.to_string(),
            Chain {
                hook: None,
                comment: "egress: NetworkPolicy, then the Baseline tier".to_string(),
                rules: egress,
            },
        ));
        let mut baseline_stages = baseline_stages.into_iter();
        self.rs.chains.extend(baseline_stages.next());
        if self.has_tier(Tier::Admin) {
            let rules = {
                let mut r =
                    self.tier_dispatch_rules(Tier::Admin, Direction::Ingress, &mut tier_targets);
                r.push(Rule {
                    matches: vec![],
                    verdict: Verdict::Goto(names::INGRESS_CHAIN.to_string()),
                    comment: None,
                });
                r
            };
            self.rs.chains.push((
                names::tier_stage_chain(Tier::Admin, Direction::Ingress),
                Chain {
                    hook: None,
                    comment: "ingress: the Admin tier on the destination pod".to_string(),
                    rules,
                },
            ));
        }
        self.rs.chains.push((
            names::INGRESS_CHAIN.to_string(),
            Chain {
                hook: None,
                comment: names::INGRESS_CHAIN_COMMENT.to_string(),
                rules: ingress,
            },
        ));
        self.rs.chains.extend(baseline_stages.next());
    }

    /// The rules a NetworkPolicy group chain starts with in the tiered layout:
    /// what NetworkPolicy always allows, made explicit because the Admin tier
    /// now runs before it (a pod reaching its own node, through `input`, and
    /// a pod reaching itself through a Service).
    pub(super) fn np_always_allowed(&self, dir: Direction) -> Vec<Rule> {
        match dir {
            Direction::Egress => {
                let mut v = vec![rule(
                    vec![Match::FibDaddrLocal],
                    Verdict::Accept,
                    "a pod may always reach its node",
                )];
                for f in Family::ALL {
                    v.push(rule(
                        vec![Match::SelfPair(f, names::self_set(f))],
                        Verdict::Goto(self.ingress_start()),
                        "a pod may always reach itself",
                    ));
                }
                v
            }
            Direction::Ingress => Family::ALL
                .into_iter()
                .map(|f| {
                    rule(
                        vec![Match::SelfPair(f, names::self_set(f))],
                        Verdict::Accept,
                        "a pod may always reach itself",
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
