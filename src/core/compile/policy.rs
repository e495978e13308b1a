//! Policy chains: one per policy and direction that some group uses, with one
//! rule per peer × port class × family (docs/nftables.md, "Rules of a policy
//! chain").

use std::collections::BTreeSet;

use super::Compiler;
use super::sets::PortClass;
use crate::core::model::{Direction, Family, ObjectRef, Peer, Policy, Rule as PolicyRule};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Addr, Chain, Match, Rule, Verdict};

impl Compiler<'_> {
    /// The chains of the (direction, policy) pairs the group chains jump to, sorted by name.
    pub(super) fn policy_chains(&mut self, used: BTreeSet<(Direction, ObjectRef)>) {
        let mut chains = Vec::new();
        for (dir, id) in used {
            let pol = &self.cluster.policies[&id];
            chains.push((names::policy_chain(dir, &id), self.policy_chain(pol, dir)));
        }
        chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.rs.chains.extend(chains);
    }

    /// The chain of one policy in one direction. An ingress match accepts; an
    /// egress match continues with `goto pod-ingress`, so both ends are checked.
    /// An audited policy's match continues as for an unisolated pod (the
    /// same, unless a Baseline tier follows).
    pub(super) fn policy_chain(&mut self, pol: &Policy, dir: Direction) -> Chain {
        let verdict = match dir {
            _ if pol.audit => self.after_np_stage(dir),
            Direction::Ingress => Verdict::Accept,
            Direction::Egress => Verdict::Goto(self.ingress_start()),
        };
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: BTreeSet<Vec<Match>> = BTreeSet::new();
        for (i, r) in pol.rules(dir).unwrap_or_default().iter().enumerate() {
            for matches in self.rule_matches(r, dir) {
                // Exact duplicates are emitted once.
                if seen.insert(matches.clone()) {
                    rules.push(Rule {
                        matches,
                        verdict: verdict.clone(),
                        comment: Some(format!("{}[{i}]", dir.as_str())),
                    });
                }
            }
        }
        let what = if pol.audit {
            format!("{} {} AUDIT: never isolates", pol.id, dir.as_str())
        } else if pol.valid {
            format!("{} {}", pol.id, dir.as_str())
        } else {
            format!(
                "{} {} INVALID: fails closed, allows nothing",
                pol.id,
                dir.as_str()
            )
        };
        Chain {
            hook: None,
            comment: names::comment(&what),
            rules,
        }
    }

    /// The matches of every nft rule one policy rule yields, family by family.
    /// A rule matching neither an address nor a family-specific set is
    /// family-independent: it is yielded once (with IPv4), not per family.
    pub(super) fn rule_matches(&mut self, r: &PolicyRule, dir: Direction) -> Vec<Vec<Match>> {
        let ports = self.port_classes(r.ports.as_deref());
        let mut out = Vec::new();
        for f in Family::ALL {
            for peer in peers_in(r, f) {
                for port in &ports {
                    let matches = self.peer_port_matches(peer, port, dir, f);
                    let family_free = matches.iter().all(|m| matches!(m, Match::ProtoPortIn(_)));
                    if !(family_free && f != Family::V4) {
                        out.push(matches);
                    }
                }
            }
        }
        out
    }

    /// The matches of one peer × port class in one family.
    fn peer_port_matches(
        &mut self,
        peer: Option<&Peer>,
        port: &PortClass,
        dir: Direction,
        f: Family,
    ) -> Vec<Match> {
        // The peer is the source of an ingress packet, the destination of an egress one.
        let peer_addr = match dir {
            Direction::Ingress => Addr::Src,
            Direction::Egress => Addr::Dst,
        };
        let peer_match = |c: &mut Self| peer.map(|p| Match::AddrIn(f, peer_addr, c.peer_set(p, f)));
        match (port, dir) {
            (PortClass::Any, _) => peer_match(self).into_iter().collect(),
            (PortClass::Numeric(set), _) => peer_match(self)
                .into_iter()
                .chain([Match::ProtoPortIn(set.clone())])
                .collect(),
            // Ingress: the destination is the enforced pod itself.
            (PortClass::Named(n, proto), Direction::Ingress) => {
                let set = self.local_named_port_set(n, *proto, f);
                peer_match(self)
                    .into_iter()
                    .chain([Match::DstProtoPortIn(f, set)])
                    .collect()
            }
            // Egress: one set of `pod . proto . port` for the peer's pods
            // answers both "is it the peer" and "is it that port".
            (PortClass::Named(n, proto), Direction::Egress) => {
                let set = self.peer_named_port_set(peer, n, *proto, f);
                vec![Match::DstProtoPortIn(f, set)]
            }
        }
    }
}

/// A rule's peers in one family: `None` = every peer; ipBlocks of the other
/// family yield no rules here.
fn peers_in(r: &PolicyRule, f: Family) -> Vec<Option<&Peer>> {
    match &r.peers {
        None => vec![None],
        Some(ps) => ps
            .iter()
            .filter(|p| match p {
                Peer::IpBlock(b) => b.cidr.family == f,
                Peer::Networks(cidrs) => cidrs.iter().any(|c| c.family == f),
                Peer::Pods(_) | Peer::Nodes(_) => true,
            })
            .map(Some)
            .collect(),
    }
}
