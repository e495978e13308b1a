//! Dispatch: the enforced pods, the group each belongs to per direction, the
//! base chains with their `self` sets and address → group maps, and the group
//! chains (jump to each isolating policy, maybe log, drop).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Compiler, DropLog, droplog, rule};
use crate::core::model::{Direction, Family, ObjectRef, Pod};
use crate::core::nft::names;
use crate::core::nft::ruleset::{
    Addr, Chain, Element, Hook, Log, Match, Rule, Set, SetKind, Verdict, VerdictMap,
};

/// Enforced pods isolated in one direction by exactly these policies share a group chain.
pub(super) type GroupKey = (Direction, Vec<ObjectRef>);

/// The group chains, and which pod address dispatches to which.
pub(super) struct Dispatch {
    /// (direction, isolating enforced policies, sorted) → group chain name.
    pub(super) groups: BTreeMap<GroupKey, String>,
    /// (direction, audited policies, sorted) → audit group chain name, for
    /// pods that no enforced policy isolates in that direction.
    pub(super) audit_groups: BTreeMap<GroupKey, String>,
    /// (direction, family) → enforced pod address → its group chain.
    pub(super) targets: BTreeMap<(Direction, Family), BTreeMap<IpAddr, String>>,
}

impl<'a> Compiler<'a> {
    /// The pods enforced here (on the compile's node, or all), counted.
    pub(super) fn enforced_pods(&mut self) -> Vec<&'a Pod> {
        let node = self.node;
        let enforced: Vec<&Pod> = self
            .cluster
            .pods
            .values()
            .map(|p| &**p)
            .filter(|p| p.enforced_by(node))
            .collect();
        self.enforced_count = enforced.len();
        enforced
    }

    /// Each enforced pod's isolating policies, per direction, define its
    /// group: the enforced ones if any (audited policies then change
    /// nothing), else the audited ones (an audit group, which only logs).
    pub(super) fn dispatch(&self, enforced: &[&Pod]) -> Dispatch {
        let mut groups: BTreeMap<GroupKey, String> = BTreeMap::new();
        let mut audit_groups: BTreeMap<GroupKey, String> = BTreeMap::new();
        let mut targets: BTreeMap<_, BTreeMap<IpAddr, String>> = BTreeMap::new();
        for pod in enforced {
            for dir in Direction::ALL {
                let (audited, pols): (Vec<ObjectRef>, Vec<ObjectRef>) = self
                    .graph()
                    .isolating_policies(&pod.id, dir)
                    .into_iter()
                    .partition(|id| self.cluster.policies.get(id).is_some_and(|p| p.audit));
                let chain = if !pols.is_empty() {
                    groups
                        .entry((dir, pols))
                        .or_insert_with_key(|(dir, pols)| names::group_chain(*dir, pols))
                        .clone()
                } else if !audited.is_empty() {
                    audit_groups
                        .entry((dir, audited))
                        .or_insert_with_key(|(dir, pols)| names::audit_group_chain(*dir, pols))
                        .clone()
                } else {
                    continue;
                };
                for ip in &pod.ips {
                    targets
                        .entry((dir, Family::of(ip)))
                        .or_default()
                        .insert(*ip, chain.clone());
                }
            }
        }
        Dispatch {
            groups,
            audit_groups,
            targets,
        }
    }

    /// `filter-forward` (conntrack, neighbour discovery, pod → itself, the
    /// source's egress group, then `goto pod-ingress`) and `pod-ingress` (the
    /// destination's ingress group, else accept), with the sets and maps they name.
    pub(super) fn base_chains(
        &mut self,
        enforced: &[&Pod],
        mut targets: BTreeMap<(Direction, Family), BTreeMap<IpAddr, String>>,
    ) {
        let mut fwd = vec![
            rule(
                vec![Match::CtEstablishedRelated],
                Verdict::Accept,
                "replies of allowed flows",
            ),
            rule(
                vec![Match::NeighbourDiscovery],
                Verdict::Accept,
                "IPv6 neighbour discovery",
            ),
        ];
        for f in Family::ALL {
            let set = self.self_set(enforced, f);
            fwd.push(rule(
                vec![Match::SelfPair(f, set)],
                Verdict::Accept,
                "pod to itself",
            ));
        }
        let mut ingress = Vec::new();
        for dir in Direction::ALL {
            for f in Family::ALL {
                let elements = targets.remove(&(dir, f)).unwrap_or_default();
                let map = self.np_dispatch_map(dir, f, elements);
                let (addr, chain) = match dir {
                    Direction::Egress => (Addr::Src, &mut fwd),
                    Direction::Ingress => (Addr::Dst, &mut ingress),
                };
                chain.push(Rule {
                    matches: vec![],
                    verdict: Verdict::AddrVmap(f, addr, map),
                    comment: None,
                });
            }
        }
        fwd.push(Rule {
            matches: vec![],
            verdict: Verdict::Goto(names::INGRESS_CHAIN.to_string()),
            comment: None,
        });
        ingress.push(rule(
            vec![],
            Verdict::Accept,
            "destination not isolated for ingress",
        ));
        self.rs.chains.push((
            names::FORWARD_CHAIN.to_string(),
            Chain {
                hook: Some(Hook {
                    hook: "forward",
                    priority: 0,
                }),
                comment: names::FORWARD_CHAIN_COMMENT.to_string(),
                rules: fwd,
            },
        ));
        self.rs.chains.push((
            names::INGRESS_CHAIN.to_string(),
            Chain {
                hook: None,
                comment: names::INGRESS_CHAIN_COMMENT.to_string(),
                rules: ingress,
            },
        ));
    }

    /// `self-v4/v6`: `ip . ip` of every enforced pod (a pod may always reach itself).
    pub(super) fn self_set(&mut self, enforced: &[&Pod], f: Family) -> String {
        let name = names::self_set(f);
        let elements = enforced
            .iter()
            .flat_map(|p| p.ips.iter())
            .filter(|ip| Family::of(ip) == f)
            .map(|ip| Element::AddrPair(*ip, *ip))
            .collect();
        self.rs.sets.insert(
            name.clone(),
            Set {
                kind: SetKind::AddrPair(f),
                comment: names::comment("enforced pods: a pod may always reach itself"),
                elements,
            },
        );
        name
    }

    /// `ingress-pods-v4` etc.: enforced pod address → `jump` its group chain.
    pub(super) fn np_dispatch_map(
        &mut self,
        dir: Direction,
        f: Family,
        elements: BTreeMap<IpAddr, String>,
    ) -> String {
        let name = names::dispatch_map(dir, f);
        self.rs.maps.insert(
            name.clone(),
            VerdictMap {
                family: f,
                comment: names::comment(&format!(
                    "enforced pods isolated for {} -> their policy group",
                    dir.as_str()
                )),
                elements,
            },
        );
        name
    }

    /// Every group chain, sorted by name; returns the (direction, policy)
    /// pairs whose chains the groups jump to.
    pub(super) fn group_chains(
        &mut self,
        groups: &BTreeMap<GroupKey, String>,
        log: &DropLog,
    ) -> BTreeSet<(Direction, ObjectRef)> {
        self.chains_of_groups(groups, log, Self::group_chain)
    }

    /// Builds each group's chain with `chain` and adds them sorted by name;
    /// returns the (direction, policy) pairs the groups jump to.
    fn chains_of_groups(
        &mut self,
        groups: &BTreeMap<GroupKey, String>,
        log: &DropLog,
        chain: fn(&mut Self, Direction, &[ObjectRef], &str, &DropLog) -> Chain,
    ) -> BTreeSet<(Direction, ObjectRef)> {
        let mut used = BTreeSet::new();
        let mut chains = Vec::new();
        for ((dir, pols), name) in groups {
            chains.push((name.clone(), chain(self, *dir, pols, name, log)));
            used.extend(pols.iter().map(|p| (*dir, p.clone())));
        }
        chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.rs.chains.extend(chains);
        used
    }

    /// One group chain: jump to each policy's chain, log if the namespace
    /// logs drops, then drop. Records the group in the drop-log index.
    pub(super) fn group_chain(
        &mut self,
        dir: Direction,
        pols: &[ObjectRef],
        name: &str,
        log: &DropLog,
    ) -> Chain {
        let mut rules: Vec<Rule> = if self.tiered() {
            self.np_always_allowed(dir)
        } else {
            Vec::new()
        };
        rules.extend(pols.iter().map(|p| Rule {
            matches: vec![],
            verdict: Verdict::Jump(names::policy_chain(dir, p)),
            comment: None,
        }));
        // Policies are namespaced and only select pods of their own
        // namespace, so every pod of a group is in one namespace.
        let namespace = pols
            .first()
            .map(|p| p.namespace.clone())
            .unwrap_or_default();
        let logged = log.logs(self.cluster, &namespace);
        if logged {
            // Right before the drop: nothing that any policy accepts gets here.
            rules.push(rule(
                vec![],
                Verdict::Log(Log {
                    group: log.group,
                    rate: log.rate,
                    burst: log.burst,
                    prefix: droplog::prefix(name),
                }),
                "log drops (rate-limited)",
            ));
        }
        self.drop_log.groups.insert(
            name.to_string(),
            droplog::Group {
                direction: dir,
                namespace,
                policies: pols.to_vec(),
                logged,
                audit: false,
            },
        );
        rules.push(rule(
            vec![],
            Verdict::CountedDrop,
            &format!("no policy allows this {}", dir.as_str()),
        ));
        let list: Vec<String> = pols.iter().map(|p| p.to_string()).collect();
        Chain {
            hook: None,
            comment: names::comment(&format!(
                "{} of pods isolated by {}",
                dir.as_str(),
                list.join(", ")
            )),
            rules,
        }
    }
}

impl Compiler<'_> {
    /// Every audit group chain, sorted by name; returns the (direction,
    /// policy) pairs whose chains they jump to.
    pub(super) fn audit_group_chains(
        &mut self,
        groups: &BTreeMap<GroupKey, String>,
        log: &DropLog,
    ) -> BTreeSet<(Direction, ObjectRef)> {
        self.chains_of_groups(groups, log, Self::audit_group_chain)
    }

    /// One audit group chain (pods that only audited policies select in
    /// `dir`): what NetworkPolicy always allows returns (tiered layout
    /// only; otherwise the base chain took it); a jump to each audited
    /// policy's chain, whose matching rules leave the NetworkPolicy stage
    /// as an unisolated pod would ([`Compiler::after_np_stage`]); what no
    /// audited policy allows is logged as "would drop" (rate-limited,
    /// whatever the drop-logging settings) and returns, so evaluation goes
    /// on exactly as for a pod no policy isolates. Never drops.
    pub(super) fn audit_group_chain(
        &mut self,
        dir: Direction,
        pols: &[ObjectRef],
        name: &str,
        log: &DropLog,
    ) -> Chain {
        let mut rules: Vec<Rule> = if self.tiered() {
            self.np_always_allowed(dir)
                .into_iter()
                .map(|r| Rule {
                    verdict: Verdict::Return,
                    ..r
                })
                .collect()
        } else {
            Vec::new()
        };
        rules.extend(pols.iter().map(|p| Rule {
            matches: vec![],
            verdict: Verdict::Jump(names::policy_chain(dir, p)),
            comment: None,
        }));
        rules.push(rule(
            vec![],
            Verdict::Log(Log {
                group: log.group,
                rate: log.rate,
                burst: log.burst,
                prefix: names::audit_log_prefix(name),
            }),
            "audit: would drop (rate-limited log, no drop)",
        ));
        let namespace = pols
            .first()
            .map(|p| p.namespace.clone())
            .unwrap_or_default();
        self.drop_log.groups.insert(
            name.to_string(),
            droplog::Group {
                direction: dir,
                namespace,
                policies: pols.to_vec(),
                logged: true,
                audit: true,
            },
        );
        let list: Vec<String> = pols.iter().map(|p| p.to_string()).collect();
        Chain {
            hook: None,
            comment: names::comment(&format!(
                "AUDIT {} of pods only audited policies select: {}",
                dir.as_str(),
                list.join(", ")
            )),
            rules,
        }
    }

    /// Where an unisolated pod's evaluation continues after the
    /// NetworkPolicy stage, as a verdict: the Baseline stage chain if the
    /// tier exists, else (ingress) accept or (egress) the ingress start.
    pub(super) fn after_np_stage(&self, dir: Direction) -> Verdict {
        use crate::core::model::Tier;
        if self.has_tier(Tier::Baseline) {
            return Verdict::Goto(names::tier_stage_chain(Tier::Baseline, dir));
        }
        match dir {
            Direction::Ingress => Verdict::Accept,
            Direction::Egress => Verdict::Goto(self.ingress_start()),
        }
    }
}
