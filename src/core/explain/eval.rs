//! Evaluation: resolves the query's ends and port against the cluster, then
//! walks the policies isolating each end (from the selector graph) and
//! reports, rule by rule, which peers and ports match.
//!
//! Longer than 600 lines: query resolution, the NetworkPolicy and tier walks
//! (with audit mode) and the rule matcher they share, read together against
//! the compiler; splitting would scatter one evaluation over files.

use std::net::IpAddr;

use super::query::{Endpoint, PortArg, PortSpec, Query};
use super::report::{
    ClusterPolicyReport, ClusterRuleReport, DecidedBy, Decision, Explanation, Flow, Item,
    PolicyReport, ResolvedEndpoint, RuleReport, Side, UnknownPodAddress, Verdict,
};
use crate::core::compile::new_pods::unknown_pod_range;
use crate::core::graph::SelectorGraph;
use crate::core::model::{
    Action, Cluster, Direction, Family, NamespaceScope, ObjectRef, Peer, Pod, Port, PortMatch,
    Protocol, Rule, Tier,
};

/// What one tier says about one end of a flow.
enum TierOutcome {
    /// No rule matched.
    Nothing,
    /// A Pass rule (policy, rule index) left the tier.
    Passed(String, usize),
    /// An Accept or Deny rule (policy, rule index, action) decided.
    Decided(String, usize, Action),
}

/// Why a query cannot be answered. Each message names the object and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// No active pod of that name.
    #[error(
        "pod {0} not found among the pods that take part in policy (host-network, finished and not-yet-addressed pods take no part)"
    )]
    UnknownPod(ObjectRef),
    /// Two pods claim one address.
    #[error("{ip} is the address of more than one pod ({pods}); name the pod instead")]
    AmbiguousIp {
        /// The address.
        ip: IpAddr,
        /// The pods, comma separated.
        pods: String,
    },
    /// No usable address in the requested family.
    #[error("{0}")]
    Family(String),
    /// A named port that cannot be resolved.
    #[error("{0}")]
    Port(String),
}

struct Resolved<'a> {
    pod: Option<&'a Pod>,
    ip: IpAddr,
}

/// Answers a query over a cluster and its selector graph.
pub fn explain(
    cluster: &Cluster,
    graph: &SelectorGraph,
    q: &Query,
) -> Result<Explanation, ExplainError> {
    let from = lookup(cluster, &q.from)?;
    let to = lookup(cluster, &q.to)?;
    let family = pick_family(&q.from, from, &q.to, to, q.family)?;
    let src = resolve(from, &q.from, family)?;
    let dst = resolve(to, &q.to, family)?;
    let (protocol, port, port_name) = resolve_port(&q.port, dst.pod, &q.to)?;

    let ctx = Ctx {
        cluster,
        graph,
        family,
        protocol,
        port,
    };
    let egress = ctx.side(cluster, Direction::Egress, &src, &dst);
    let ingress = ctx.side(cluster, Direction::Ingress, &dst, &src);
    let is_self = match (src.pod, dst.pod) {
        (Some(a), Some(b)) => a.id == b.id,
        _ => false,
    };
    let unknown = new_pod_window(cluster, &src).or_else(|| new_pod_window(cluster, &dst));
    let verdict = if unknown.is_none() && (is_self || (egress.allowed && ingress.allowed)) {
        Verdict::Allowed
    } else {
        Verdict::Denied
    };
    // Audit notes in the order the ruleset logs them: the egress end, then
    // the ingress end if the packet gets there. A pod reaching itself is
    // never evaluated.
    let would_drop = if is_self {
        Vec::new()
    } else if egress.allowed {
        [egress.would_drop.clone(), ingress.would_drop.clone()].concat()
    } else {
        egress.would_drop.clone()
    };
    let end = |r: &Resolved| ResolvedEndpoint {
        pod: r.pod.map(|p| p.id.to_string()),
        ip: r.ip,
    };
    Ok(Explanation {
        verdict,
        flow: Flow {
            from: end(&src),
            to: end(&dst),
            protocol: protocol.nft(),
            port,
            port_name,
            family: family_name(family),
        },
        decided_by: if unknown.is_some() {
            DecidedBy::NewPodWindow
        } else if is_self {
            DecidedBy::SelfFlow
        } else {
            DecidedBy::Policies
        },
        unknown_pod_address: unknown,
        warnings: super::report::same_priority_warnings(&egress, &ingress),
        would_drop,
        egress,
        ingress,
    })
}

/// The new-pod guard: an end that is no known pod's address but lies in a
/// node's pod range is denied before any policy.
fn new_pod_window(cluster: &Cluster, end: &Resolved) -> Option<UnknownPodAddress> {
    let range = unknown_pod_range(cluster, end.pod.is_some(), end.ip)?;
    Some(UnknownPodAddress {
        ip: end.ip,
        pod_range: range.to_string(),
    })
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// The pod an endpoint names, if any.
fn lookup<'a>(cluster: &'a Cluster, e: &Endpoint) -> Result<Option<&'a Pod>, ExplainError> {
    match e {
        Endpoint::Pod(id) => cluster
            .pods
            .get(id)
            .map(|p| Some(&**p))
            .ok_or_else(|| ExplainError::UnknownPod(id.clone())),
        Endpoint::Ip(ip) => {
            let owners: Vec<&Pod> = cluster
                .pods
                .values()
                .filter(|p| p.ips.contains(ip))
                .map(|p| &**p)
                .collect();
            match owners.as_slice() {
                [] => Ok(None),
                [p] => Ok(Some(p)),
                many => Err(ExplainError::AmbiguousIp {
                    ip: *ip,
                    pods: many
                        .iter()
                        .map(|p| p.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
    }
}

fn pick_family(
    from_arg: &Endpoint,
    from: Option<&Pod>,
    to_arg: &Endpoint,
    to: Option<&Pod>,
    wanted: Option<Family>,
) -> Result<Family, ExplainError> {
    let given = |e: &Endpoint| match e {
        Endpoint::Ip(ip) => Some(Family::of(ip)),
        Endpoint::Pod(_) => None,
    };
    let mut fixed = None;
    for f in [given(from_arg), given(to_arg), wanted]
        .into_iter()
        .flatten()
    {
        match fixed {
            None => fixed = Some(f),
            Some(g) if g != f => {
                return Err(ExplainError::Family(format!(
                    "the source and destination are of different address families ({} and {})",
                    family_name(g),
                    family_name(f)
                )));
            }
            _ => {}
        }
    }
    if let Some(f) = fixed {
        return Ok(f);
    }
    let has =
        |p: Option<&Pod>, f: Family| p.is_none_or(|p| p.ips.iter().any(|i| Family::of(i) == f));
    Family::ALL
        .into_iter()
        .find(|f| has(from, *f) && has(to, *f))
        .ok_or_else(|| {
            ExplainError::Family(format!(
                "{from_arg} and {to_arg} have no address family in common",
                from_arg = describe_endpoint(from_arg),
                to_arg = describe_endpoint(to_arg)
            ))
        })
}

fn describe_endpoint(e: &Endpoint) -> String {
    match e {
        Endpoint::Pod(id) => format!("pod {id}"),
        Endpoint::Ip(ip) => ip.to_string(),
    }
}

fn resolve<'a>(
    pod: Option<&'a Pod>,
    arg: &Endpoint,
    family: Family,
) -> Result<Resolved<'a>, ExplainError> {
    let ip = match (pod, arg) {
        (_, Endpoint::Ip(ip)) => *ip,
        (Some(p), Endpoint::Pod(_)) => {
            *p.ips
                .iter()
                .find(|i| Family::of(i) == family)
                .ok_or_else(|| {
                    ExplainError::Family(format!(
                        "pod {} has no {} address",
                        p.id,
                        family_name(family)
                    ))
                })?
        }
        (None, Endpoint::Pod(id)) => return Err(ExplainError::UnknownPod(id.clone())),
    };
    Ok(Resolved { pod, ip })
}

fn resolve_port(
    arg: &PortArg,
    dst: Option<&Pod>,
    dst_arg: &Endpoint,
) -> Result<(Protocol, u16, Option<String>), ExplainError> {
    match &arg.port {
        PortSpec::Number(n) => Ok((arg.protocol.unwrap_or(Protocol::Tcp), *n, None)),
        PortSpec::Named(name) => {
            let Some(pod) = dst else {
                return Err(ExplainError::Port(format!(
                    "named port {name:?} needs a destination pod, and {} is not one",
                    describe_endpoint(dst_arg)
                )));
            };
            // The name's protocol, unless given, is the one the container
            // port declares; the number comes from `Pod::named_port`, the one
            // place a named port is resolved.
            let declared = Protocol::ALL
                .into_iter()
                .find_map(|p| pod.named_port(name, p).map(|num| (p, num)));
            let Some((proto, num)) = declared else {
                let known: Vec<String> = pod
                    .named_ports
                    .iter()
                    .map(|(n, (p, num))| format!("{n}={}/{num}", p.nft()))
                    .collect();
                return Err(ExplainError::Port(format!(
                    "pod {} has no container port named {name:?} (its named ports: {})",
                    pod.id,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if let Some(p) = arg.protocol
                && p != proto
            {
                return Err(ExplainError::Port(format!(
                    "pod {}: container port {name:?} is {}/{num}, not {}",
                    pod.id,
                    proto.nft(),
                    p.nft()
                )));
            }
            Ok((proto, num, Some(name.clone())))
        }
    }
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    graph: &'a SelectorGraph,
    family: Family,
    protocol: Protocol,
    port: u16,
}

impl Ctx<'_> {
    /// The policies of `subject` in `dir`, evaluated against the other end.
    fn side(
        &self,
        cluster: &Cluster,
        dir: Direction,
        subject: &Resolved,
        other: &Resolved,
    ) -> Side {
        let Some(pod) = subject.pod else {
            return Side {
                direction: dir,
                pod: None,
                isolated: false,
                allowed: true,
                policies: Vec::new(),
                admin: Vec::new(),
                baseline: Vec::new(),
                would_drop: Vec::new(),
                decision: (!cluster.cluster_policies.is_empty()).then(|| Decision {
                    tier: "default",
                    policy: None,
                    rule: None,
                    action: None,
                    passed: Vec::new(),
                }),
            };
        };
        // The destination pod, for named ports.
        let dst = match dir {
            Direction::Egress => other.pod,
            Direction::Ingress => Some(pod),
        };
        let policies: Vec<PolicyReport> = self
            .graph
            .isolating_policies(&pod.id, dir)
            .iter()
            .filter_map(|id| cluster.policies.get(id))
            .map(|pol| {
                let rules: Vec<RuleReport> = pol
                    .rules(dir)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, r)| self.rule(i, r, &pol.id.namespace, other, dst))
                    .collect();
                PolicyReport {
                    policy: pol.id.to_string(),
                    valid: pol.valid,
                    audit: pol.audit,
                    allows: rules.iter().any(|r| r.allows),
                    rules,
                }
            })
            .collect();
        // Audit mode: only enforced policies isolate and allow; a pod that
        // only audited policies select is not isolated, and what none of
        // them allows is logged as theirs to drop.
        let isolated = policies.iter().any(|p| !p.audit);
        let np_allows = policies.iter().any(|p| !p.audit && p.allows);
        let np_would_drop: Vec<String> =
            if !isolated && !policies.iter().any(|p| p.audit && p.allows) {
                policies.iter().map(|p| p.policy.clone()).collect()
            } else {
                Vec::new()
            };
        if cluster.cluster_policies.is_empty() {
            return Side {
                direction: dir,
                pod: Some(pod.id.to_string()),
                isolated,
                allowed: !isolated || np_allows,
                policies,
                admin: Vec::new(),
                baseline: Vec::new(),
                would_drop: np_would_drop,
                decision: None,
            };
        }
        // Admin → NetworkPolicy (if isolated) → Baseline → default.
        let mut passed = Vec::new();
        let mut would_drop = Vec::new();
        let (admin, admin_says) = self.tier(
            cluster,
            Tier::Admin,
            dir,
            pod,
            other,
            dst,
            true,
            &mut would_drop,
        );
        if !matches!(admin_says, TierOutcome::Decided(..)) {
            would_drop.extend(np_would_drop);
        }
        let baseline;
        let decision = match admin_says {
            TierOutcome::Decided(name, rule, action) => {
                (baseline, _) = self.tier(
                    cluster,
                    Tier::Baseline,
                    dir,
                    pod,
                    other,
                    dst,
                    false,
                    &mut would_drop,
                );
                Decision {
                    tier: "Admin",
                    policy: Some(name),
                    rule: Some(rule),
                    action: Some(action.api_name()),
                    passed,
                }
            }
            other_outcome => {
                if let TierOutcome::Passed(name, rule) = other_outcome {
                    passed.push(format!("Admin {name}[{rule}]"));
                }
                let baseline_says;
                (baseline, baseline_says) = self.tier(
                    cluster,
                    Tier::Baseline,
                    dir,
                    pod,
                    other,
                    dst,
                    !isolated,
                    &mut would_drop,
                );
                if isolated {
                    Decision {
                        tier: "NetworkPolicy",
                        policy: None,
                        rule: None,
                        action: Some(if np_allows { "Accept" } else { "Deny" }),
                        passed,
                    }
                } else {
                    match baseline_says {
                        TierOutcome::Decided(name, rule, action) => Decision {
                            tier: "Baseline",
                            policy: Some(name),
                            rule: Some(rule),
                            action: Some(action.api_name()),
                            passed,
                        },
                        TierOutcome::Passed(name, rule) => {
                            passed.push(format!("Baseline {name}[{rule}]"));
                            Decision {
                                tier: "default",
                                policy: None,
                                rule: None,
                                action: None,
                                passed,
                            }
                        }
                        TierOutcome::Nothing => Decision {
                            tier: "default",
                            policy: None,
                            rule: None,
                            action: None,
                            passed,
                        },
                    }
                }
            }
        };
        let allowed = match decision.tier {
            "NetworkPolicy" => np_allows,
            "default" => true,
            _ => decision.action == Some("Accept"),
        };
        Side {
            direction: dir,
            pod: Some(pod.id.to_string()),
            isolated,
            allowed,
            policies,
            admin,
            baseline,
            would_drop,
            decision: Some(decision),
        }
    }

    /// One tier's ClusterNetworkPolicies for `pod` in `dir`, in evaluation
    /// order, each rule matched against the flow; and what the tier says
    /// (when `reached`: the first matching rule decides or passes). An
    /// audited policy never decides: when it is reached and its first
    /// matching rule is a Deny, that rule goes into `would_drop`.
    #[allow(clippy::too_many_arguments)]
    fn tier(
        &self,
        cluster: &Cluster,
        tier: Tier,
        dir: Direction,
        pod: &Pod,
        other: &Resolved,
        dst: Option<&Pod>,
        reached: bool,
        would_drop: &mut Vec<String>,
    ) -> (Vec<ClusterPolicyReport>, TierOutcome) {
        let mut outcome = TierOutcome::Nothing;
        let mut open = reached;
        let mut reports = Vec::new();
        for (_, name) in self.graph.cluster_policies(&pod.id, tier, dir) {
            let Some(pol) = cluster.cluster_policies.get(&name) else {
                continue;
            };
            let evaluated = open;
            let mut rules = Vec::new();
            // An audited policy's own first match (it decides nothing).
            let mut audit_open = open && pol.audit;
            for (i, r) in pol.rules(dir).iter().enumerate() {
                let as_rule = Rule {
                    peers: r.peers.clone(),
                    ports: r.ports.clone(),
                };
                let rep = self.rule(i, &as_rule, "", other, dst);
                if audit_open && rep.allows {
                    audit_open = false;
                    if r.action == Action::Deny {
                        would_drop.push(
                            crate::core::compile::droplog::ClusterRuleDrop {
                                direction: dir,
                                tier: tier.api_name(),
                                policy: pol.name.clone(),
                                rule: i,
                                rule_name: r.name.clone(),
                                audit: true,
                            }
                            .to_string(),
                        );
                    }
                }
                if open && !pol.audit && rep.allows {
                    open = false;
                    outcome = match r.action {
                        Action::Pass => TierOutcome::Passed(pol.name.clone(), i),
                        a => TierOutcome::Decided(pol.name.clone(), i, a),
                    };
                }
                rules.push(ClusterRuleReport {
                    index: i,
                    name: r.name.clone(),
                    action: r.action.api_name(),
                    matches: rep.allows,
                    peers: rep.peers,
                    all_ports: rep.all_ports,
                    ports: rep.ports,
                });
            }
            reports.push(ClusterPolicyReport {
                policy: pol.name.clone(),
                priority: pol.priority,
                valid: pol.valid,
                audit: pol.audit,
                evaluated,
                rules,
            });
        }
        (reports, outcome)
    }

    fn rule(
        &self,
        index: usize,
        r: &Rule,
        policy_ns: &str,
        other: &Resolved,
        dst: Option<&Pod>,
    ) -> RuleReport {
        let peers: Vec<Item> = r
            .peers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| Item {
                index: i,
                what: describe_peer(p, policy_ns),
                matches: self.peer_matches(p, other),
            })
            .collect();
        let ports: Vec<Item> = r
            .ports
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| Item {
                index: i,
                what: p.to_string(),
                matches: self.port_matches(p, dst),
            })
            .collect();
        let all_peers = r.peers.is_none();
        let all_ports = r.ports.is_none();
        RuleReport {
            index,
            allows: (all_peers || peers.iter().any(|p| p.matches))
                && (all_ports || ports.iter().any(|p| p.matches)),
            all_peers,
            peers,
            all_ports,
            ports,
        }
    }

    fn peer_matches(&self, peer: &Peer, other: &Resolved) -> bool {
        match peer {
            Peer::Pods(m) => other
                .pod
                .is_some_and(|p| self.graph.members(m).binary_search(&p.id).is_ok()),
            Peer::IpBlock(b) => {
                b.cidr.family == self.family && b.ranges().iter().any(|r| r.contains(&other.ip))
            }
            Peer::Nodes(sel) => self
                .cluster
                .nodes
                .values()
                .any(|n| sel.matches(&n.labels) && n.addresses.contains(&other.ip)),
            Peer::Networks(cidrs) => cidrs.iter().any(|c| c.contains(&other.ip)),
        }
    }

    fn port_matches(&self, p: &Port, dst: Option<&Pod>) -> bool {
        if p.protocol != self.protocol {
            return false;
        }
        match &p.port {
            PortMatch::All => true,
            PortMatch::Range(a, b) => (*a..=*b).contains(&self.port),
            // Resolved against the destination pod; never matches a non-pod.
            PortMatch::Named(n) => dst
                .and_then(|d| d.named_port(n, p.protocol))
                .is_some_and(|num| num == self.port),
        }
    }
}

/// A peer in Kubernetes terms.
pub fn describe_peer(p: &Peer, policy_ns: &str) -> String {
    match p {
        Peer::Pods(m) => match &m.namespaces {
            NamespaceScope::Named(ns) if ns == policy_ns => format!("podSelector {}", m.pods),
            NamespaceScope::Named(ns) => format!("podSelector {} in namespace {ns}", m.pods),
            NamespaceScope::Selector(s) if m.pods.is_everything() => {
                format!("namespaceSelector {s}")
            }
            NamespaceScope::Selector(s) => {
                format!("namespaceSelector {s} and podSelector {}", m.pods)
            }
        },
        Peer::IpBlock(b) => format!("ipBlock {b}"),
        Peer::Nodes(sel) if sel.is_everything() => "nodes (all)".to_string(),
        Peer::Nodes(sel) => format!("nodes {sel}"),
        Peer::Networks(cidrs) => {
            let v: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
            format!("networks {}", v.join(", "))
        }
    }
}
