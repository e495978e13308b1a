//! The new-pod guard: no traffic from or to an address of this node's pod
//! ranges that is not the address of a pod the ruleset knows.
//!
//! nftpol dispatches on pod addresses, so a pod whose address the agent has
//! not programmed yet would be neither isolated nor allowed by name: without
//! the guard, the first packets of a new pod in a default-deny namespace get
//! through until the pod's event arrives and the table is updated. With it,
//! `filter-forward` drops, right after the rules that are never policy
//! (established/related, IPv6 neighbour discovery, a pod to itself):
//!
//! ```text
//! ip saddr @node-pod-cidrs-v4 ip saddr != @local-pods-v4 counter drop
//! ip daddr @node-pod-cidrs-v4 ip daddr != @local-pods-v4 counter drop
//! ```
//!
//! (and the same for IPv6). `node-pod-cidrs-*` holds the node's
//! `spec.podCIDRs` plus `--pod-cidr` (all Nodes' without `--node`);
//! `local-pods-*` every address of a pod enforced here, isolated or not. Pod
//! churn therefore stays an element update. Only the `forward` hook carries
//! the guard: traffic between a pod and its own node (kubelet probes, the
//! CNI gateway such as `cni0`'s address, which lies inside the pod range)
//! goes through `input`/`output` and is never touched. Without any known pod
//! range (no podCIDRs, no `--pod-cidr`) there is no guard at all, and the
//! ruleset is the one nftpol emitted before the guard existed.
//!
//! The same rule in [`crate::core::explain`] (`new_pod_window` there) and
//! in the test kit's packet tracer. docs/nftables.md, "The new-pod window",
//! has the trade-offs and the opt-out (`--fail-closed-new-pods=false`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{Compiler, rule};
use crate::core::model::{Cidr, Cluster, Family, Pod, ipblock};
use crate::core::nft::names;
use crate::core::nft::ruleset::{Addr, Element, Match, Rule, Set, SetKind, Verdict};

/// The new-pod guard's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPods {
    /// Drop traffic from or to an unknown address in the node's pod ranges
    /// (`--fail-closed-new-pods`, default on).
    pub fail_closed: bool,
    /// Pod ranges in addition to the Nodes' `spec.podCIDRs` (`--pod-cidr`),
    /// for CNIs that assign pod addresses without podCIDRs.
    pub pod_cidrs: Vec<Cidr>,
}

impl Default for NewPods {
    fn default() -> Self {
        NewPods {
            fail_closed: true,
            pod_cidrs: Vec::new(),
        }
    }
}

/// The pod ranges the guard covers: `node`'s `spec.podCIDRs` (every Node's
/// without a node, the all-nodes view), plus `extra`; sorted, deduplicated.
/// Empty when the guard is off.
pub fn guarded_ranges(cluster: &Cluster, node: Option<&str>, opts: &NewPods) -> Vec<Cidr> {
    if !opts.fail_closed {
        return Vec::new();
    }
    let mut out: BTreeSet<Cidr> = opts.pod_cidrs.iter().copied().collect();
    for n in cluster.nodes.values() {
        if node.is_none_or(|name| name == n.name) {
            out.extend(n.pod_cidrs.iter().copied());
        }
    }
    out.into_iter().collect()
}

/// For explain: the pod range that makes `ip` an unknown pod address (not
/// `is_pod`, inside some Node's `spec.podCIDRs`), if any. Explain takes the
/// all-nodes view with the guard on (`compile` without `--node` and
/// `--pod-cidr`), so its verdict is that ruleset's.
pub fn unknown_pod_range(cluster: &Cluster, is_pod: bool, ip: IpAddr) -> Option<Cidr> {
    if is_pod {
        return None;
    }
    guarded_ranges(cluster, None, &NewPods::default())
        .into_iter()
        .find(|c| c.contains(&ip))
}

impl Compiler<'_> {
    /// Adds the guard to the finished `filter-forward` (both layouts): its
    /// rules go right after the chain's leading `accept` rules (conntrack,
    /// neighbour discovery, a pod to itself: never policy), before any
    /// dispatch. Kept apart from the base chains' construction so that other
    /// additions to `filter-forward` merge without touching it. No pod range
    /// of a family: no rule and no set for it.
    pub(super) fn new_pod_guard(&mut self, enforced: &[&Pod], node: Option<&str>, opts: &NewPods) {
        let ranges = guarded_ranges(self.cluster, node, opts);
        let mut rules = Vec::new();
        for f in Family::ALL {
            let mine: Vec<Cidr> = ranges.iter().filter(|c| c.family == f).copied().collect();
            if !mine.is_empty() {
                rules.extend(self.guard_family(enforced, f, &mine));
            }
        }
        if rules.is_empty() {
            return;
        }
        let Some((_, fwd)) = self
            .rs
            .chains
            .iter_mut()
            .find(|(n, _)| n == names::FORWARD_CHAIN)
        else {
            return;
        };
        let at = fwd
            .rules
            .iter()
            .position(|r| r.verdict != Verdict::Accept)
            .unwrap_or(fwd.rules.len());
        fwd.rules.splice(at..at, rules);
    }

    /// One family's two sets and two rules.
    fn guard_family(&mut self, enforced: &[&Pod], f: Family, ranges: &[Cidr]) -> Vec<Rule> {
        let cidrs = names::node_pod_cidrs_set(f);
        let known = names::local_pods_set(f);
        self.rs.sets.insert(
            cidrs.clone(),
            Set {
                kind: SetKind::AddrInterval(f),
                comment: names::comment("pod address ranges of this node (new-pod guard)"),
                elements: ipblock::union(ranges, f)
                    .into_iter()
                    .map(Element::Range)
                    .collect(),
            },
        );
        self.rs.sets.insert(
            known.clone(),
            Set {
                kind: SetKind::Addr(f),
                comment: names::comment("addresses of the pods enforced here (new-pod guard)"),
                elements: enforced
                    .iter()
                    .flat_map(|p| p.ips.iter())
                    .filter(|ip| Family::of(ip) == f)
                    .map(|ip| Element::Addr(*ip))
                    .collect(),
            },
        );
        [(Addr::Src, "from"), (Addr::Dst, "to")]
            .into_iter()
            .map(|(a, what)| {
                rule(
                    vec![
                        Match::AddrIn(f, a, cidrs.clone()),
                        Match::AddrNotIn(f, a, known.clone()),
                    ],
                    Verdict::CountedDrop,
                    &format!("{what} a pod address not programmed yet (new-pod window)"),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Node;

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        for (name, cidrs) in [
            ("n1", &["10.244.1.0/24", "fd00:10:244:1::/64"][..]),
            ("n2", &["10.244.2.0/24"][..]),
        ] {
            c.nodes.insert(
                name.into(),
                Node {
                    name: name.into(),
                    labels: Default::default(),
                    addresses: vec![],
                    pod_cidrs: cidrs.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
                },
            );
        }
        c
    }

    #[test]
    fn the_scope_is_the_nodes_pod_cidrs_plus_the_flag_or_nothing_when_off() {
        let c = cluster();
        let cidr = |s: &str| Cidr::parse(s).unwrap();
        let show = |v: Vec<Cidr>| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let on = NewPods::default();
        assert_eq!(
            show(guarded_ranges(&c, Some("n1"), &on)),
            ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "one node: its own ranges"
        );
        assert_eq!(
            show(guarded_ranges(&c, None, &on)),
            ["10.244.1.0/24", "10.244.2.0/24", "fd00:10:244:1::/64"],
            "no node: every node's"
        );
        assert!(
            guarded_ranges(&c, Some("n3"), &on).is_empty(),
            "a node without podCIDRs and no flag: no guard"
        );
        let flag = NewPods {
            fail_closed: true,
            pod_cidrs: vec![cidr("10.99.0.0/16")],
        };
        assert_eq!(
            show(guarded_ranges(&c, Some("n3"), &flag)),
            ["10.99.0.0/16"],
            "--pod-cidr alone"
        );
        let off = NewPods {
            fail_closed: false,
            pod_cidrs: vec![cidr("10.99.0.0/16")],
        };
        assert!(
            guarded_ranges(&c, Some("n1"), &off).is_empty(),
            "opted out: nothing, whatever the ranges"
        );
    }

    fn pod(name: &str, node: &str, ips: &[&str]) -> crate::core::model::Pod {
        crate::core::model::Pod {
            id: crate::core::model::ObjectRef::new("default", name),
            labels: Default::default(),
            node: Some(node.into()),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            named_ports: Default::default(),
        }
    }

    fn compiled(c: &Cluster, node: Option<&str>) -> crate::core::nft::ruleset::Ruleset {
        let opts = super::super::Options {
            node: node.map(str::to_string),
            // The guard's own placement; revocation rewrites the rules
            // around it (`revoke.rs` and its tests).
            revoke_established: false,
            ..Default::default()
        };
        super::super::compile_cluster(c, vec![], &opts).ruleset
    }

    #[test]
    fn the_guard_follows_the_never_policy_rules_and_pod_churn_stays_an_element_update() {
        let mut c = cluster();
        for p in [
            pod("a", "n1", &["10.244.1.10", "fd00:10:244:1::10"]),
            pod("b", "n2", &["10.244.2.10"]),
        ] {
            c.pods.insert(p.id.clone(), p.into());
        }
        let rs = compiled(&c, Some("n1"));
        let text = crate::core::nft::render::script(&rs);
        let fwd = rs.chain(names::FORWARD_CHAIN).unwrap();
        let shapes: Vec<String> = fwd
            .rules
            .iter()
            .map(crate::core::nft::render::rule)
            .collect();
        let first_guard = shapes
            .iter()
            .position(|r| r.contains("@node-pod-cidrs-v4"))
            .unwrap_or_else(|| panic!("no guard in\n{text}"));
        assert!(
            fwd.rules[..first_guard]
                .iter()
                .all(|r| r.verdict == Verdict::Accept),
            "only never-policy accepts come first:\n{text}"
        );
        assert!(
            shapes[first_guard]
                .starts_with("ip saddr @node-pod-cidrs-v4 ip saddr != @local-pods-v4 counter drop"),
            "{}",
            shapes[first_guard]
        );
        assert_eq!(
            shapes
                .iter()
                .filter(|r| r.contains("!= @local-pods-"))
                .count(),
            4,
            "source and destination, both families:\n{text}"
        );
        let known = &rs.sets[&names::local_pods_set(Family::V4)].elements;
        assert_eq!(
            known.iter().collect::<Vec<_>>(),
            [&Element::Addr("10.244.1.10".parse().unwrap())],
            "only the pods of n1"
        );
        // A new pod on n1: elements only.
        let mut c2 = c.clone();
        let p = pod("c", "n1", &["10.244.1.11"]);
        c2.pods.insert(p.id.clone(), p.into());
        assert!(matches!(
            crate::core::nft::delta::diff(&rs, &compiled(&c2, Some("n1"))),
            crate::core::nft::delta::Update::Elements { .. }
        ));
        // Opted out, or no pod range: the table of before.
        let mut bare = c.clone();
        bare.nodes.clear();
        let off = super::super::Options {
            node: Some("n1".into()),
            new_pods: NewPods {
                fail_closed: false,
                pod_cidrs: vec![],
            },
            revoke_established: false,
            ..Default::default()
        };
        let rs_off = super::super::compile_cluster(&c, vec![], &off).ruleset;
        assert_eq!(rs_off, compiled(&bare, Some("n1")));
        assert!(!crate::core::nft::render::script(&rs_off).contains("local-pods"));
    }
}
