//! `nftpol explain`: why one flow is allowed or denied, offline.
//!
//! Reasons over the model and the selector graph (so it can name the policy,
//! rule, peer and port that decide), with exactly the semantics the compiled
//! ruleset has — `tests/explain.rs` checks the verdict against the packet
//! tracer over the compiled ruleset for every pod pair × port of every case,
//! and the conformance suite checks it against real packets:
//!
//! - a pod talking to itself is always allowed (the `self-*` sets);
//! - egress of the source, if it is a pod isolated for egress: some egress
//!   rule of a policy selecting it must match the destination and the port;
//! - ingress of the destination, likewise;
//! - an endpoint that is not a pod (an IP address of no known pod) has no
//!   policies of its own; only ipBlock peers can match it, and a named port
//!   never matches it.
//!
//! Pure: no IO. The CLI renders an [`Explanation`] as text or JSON.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use crate::core::graph::SelectorGraph;
use crate::core::model::{
    Cluster, Direction, Family, NamespaceScope, ObjectRef, Peer, Pod, Port, PortMatch, Protocol,
    Rule,
};

/// One end of the flow, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `NS/POD`.
    Pod(ObjectRef),
    /// An address: a pod's IP resolves to that pod; any other address is not a pod.
    Ip(IpAddr),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Endpoint::Ip(ip));
        }
        if crate::core::model::Cidr::parse(s).is_ok() {
            return Err(format!(
                "{s:?} is a CIDR; a flow endpoint is NAMESPACE/POD or one IP address"
            ));
        }
        // Namespace names are DNS labels: lower-case letters, digits and '-'.
        let dns_label = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        match s.split_once('/') {
            Some((ns, pod)) if dns_label(ns) && !pod.is_empty() && !pod.contains('/') => {
                Ok(Endpoint::Pod(ObjectRef::new(ns, pod)))
            }
            _ => Err(format!("{s:?} is neither NAMESPACE/POD nor an IP address")),
        }
    }
}

/// The destination port as given: a number or the name of a container port
/// of the destination pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A port number.
    Number(u16),
    /// A named container port of the destination pod.
    Named(String),
}

/// `--port N[/PROTO]` or `--port NAME[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortArg {
    /// Number or name.
    pub port: PortSpec,
    /// Protocol, if given (a number defaults to TCP; a name takes the
    /// protocol the container port declares).
    pub protocol: Option<Protocol>,
}

impl FromStr for PortArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (s, None),
        };
        let protocol = match proto {
            None => None,
            Some(p) => Some(Protocol::parse(&p.to_ascii_uppercase()).ok_or_else(|| {
                format!("{s:?}: unknown protocol {p:?} (expected TCP, UDP or SCTP)")
            })?),
        };
        let port = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            match port.parse::<u16>() {
                Ok(n) if n > 0 => PortSpec::Number(n),
                _ => {
                    return Err(format!(
                        "{s:?}: {port} is not a valid port number (1-65535)"
                    ));
                }
            }
        } else {
            crate::core::k8s::convert::validate_port_name(port)
                .map_err(|why| format!("{s:?}: not a port number or a valid port name: {why}"))?;
            PortSpec::Named(port.to_string())
        };
        Ok(PortArg { port, protocol })
    }
}

/// What to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Source.
    pub from: Endpoint,
    /// Destination.
    pub to: Endpoint,
    /// Destination port.
    pub port: PortArg,
    /// Address family when both ends are pods (default: IPv4 if both have
    /// an IPv4 address, else IPv6).
    pub family: Option<Family>,
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

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The ruleset forwards the flow's first packet.
    Allowed,
    /// The ruleset drops it.
    Denied,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allowed => "ALLOWED",
            Verdict::Denied => "DENIED",
        })
    }
}

/// One end of the flow after resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedEndpoint {
    /// `ns/name` when the end is a pod.
    pub pod: Option<String>,
    /// The address used.
    pub ip: IpAddr,
}

/// The flow that was explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Source.
    pub from: ResolvedEndpoint,
    /// Destination.
    pub to: ResolvedEndpoint,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    /// Destination port number.
    pub port: u16,
    /// The container port name, when the port was given by name.
    pub port_name: Option<String>,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// A peer or port of a rule, and whether it matches the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Index in the rule's `from`/`to` or `ports` list.
    pub index: usize,
    /// The peer or port, readable.
    pub what: String,
    /// Whether it matches the flow.
    pub matches: bool,
}

/// How one rule fared against the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    /// Index in the policy's `ingress`/`egress` list.
    pub index: usize,
    /// Whether the rule allows the flow (a peer and a port match).
    pub allows: bool,
    /// The rule has no `from`/`to`: every peer matches.
    pub all_peers: bool,
    /// Every peer of the rule (empty when `all_peers`).
    pub peers: Vec<Item>,
    /// The rule has no `ports`: every port and protocol matches.
    pub all_ports: bool,
    /// Every port of the rule (empty when `all_ports`).
    pub ports: Vec<Item>,
}

/// One policy that isolates the pod in this direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// `ns/name`.
    pub policy: String,
    /// False when the API server would reject it: it fails closed (isolates, allows nothing).
    pub valid: bool,
    /// Whether any of its rules allows the flow.
    pub allows: bool,
    /// Every rule of the direction, in order.
    pub rules: Vec<RuleReport>,
}

/// One direction: egress of the source or ingress of the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// `egress` or `ingress`.
    pub direction: &'static str,
    /// The pod whose policies decide; `None` when that end is not a pod.
    pub pod: Option<String>,
    /// Whether at least one policy isolates the pod in this direction.
    pub isolated: bool,
    /// Whether this direction lets the flow through.
    pub allowed: bool,
    /// The isolating policies, sorted.
    pub policies: Vec<PolicyReport>,
}

/// The full answer; this is also the `--output json` schema (docs/explain.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// ALLOWED or DENIED.
    pub verdict: Verdict,
    /// What was explained.
    pub flow: Flow,
    /// `self` (a pod talking to itself: always allowed) or `policies`
    /// (egress of the source and ingress of the destination decide).
    pub decided_by: &'static str,
    /// Egress of the source.
    pub egress: Side,
    /// Ingress of the destination.
    pub ingress: Side,
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
    let verdict = if is_self || (egress.allowed && ingress.allowed) {
        Verdict::Allowed
    } else {
        Verdict::Denied
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
        decided_by: if is_self { "self" } else { "policies" },
        egress,
        ingress,
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
            .map(Some)
            .ok_or_else(|| ExplainError::UnknownPod(id.clone())),
        Endpoint::Ip(ip) => {
            let owners: Vec<&Pod> = cluster
                .pods
                .values()
                .filter(|p| p.ips.contains(ip))
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
            let Some(&(proto, num)) = pod.named_ports.get(name) else {
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
                direction: dir.as_str(),
                pod: None,
                isolated: false,
                allowed: true,
                policies: Vec::new(),
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
                    allows: rules.iter().any(|r| r.allows),
                    rules,
                }
            })
            .collect();
        Side {
            direction: dir.as_str(),
            pod: Some(pod.id.to_string()),
            isolated: !policies.is_empty(),
            allowed: policies.is_empty() || policies.iter().any(|p| p.allows),
            policies,
        }
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
    }
}

impl Explanation {
    /// The human-readable report: the verdict line first, then one section
    /// per direction naming policies, rules, peers and ports.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let f = &self.flow;
        let end = |e: &ResolvedEndpoint| match &e.pod {
            Some(p) => format!("{p} ({})", e.ip),
            None => format!("{} (not a pod)", e.ip),
        };
        let port = match &f.port_name {
            Some(n) => format!("{}/{} (port {n:?})", f.protocol, f.port),
            None => format!("{}/{}", f.protocol, f.port),
        };
        let _ = writeln!(
            s,
            "{}: {} -> {} {port}",
            self.verdict,
            end(&f.from),
            end(&f.to)
        );
        if self.decided_by == "self" {
            let _ = writeln!(
                s,
                "  a pod may always reach itself: policies are not consulted for this flow"
            );
        }
        for side in [&self.egress, &self.ingress] {
            s.push('\n');
            side.write_text(&mut s, self.decided_by == "self");
        }
        s
    }
}

impl Side {
    fn write_text(&self, s: &mut String, informational: bool) {
        let (title, field, peers_field) = match self.direction {
            "egress" => ("Egress of", "egress", "to"),
            _ => ("Ingress of", "ingress", "from"),
        };
        let Some(pod) = &self.pod else {
            let _ = writeln!(
                s,
                "{title} the {}: not a pod, no policy of its own applies: allowed",
                if self.direction == "egress" {
                    "source"
                } else {
                    "destination"
                }
            );
            return;
        };
        if !self.isolated {
            let _ = writeln!(
                s,
                "{title} {pod}: not isolated (no NetworkPolicy with {} selects it): allowed",
                if self.direction == "egress" {
                    "Egress"
                } else {
                    "Ingress"
                }
            );
            return;
        }
        let names: Vec<&str> = self.policies.iter().map(|p| p.policy.as_str()).collect();
        let result = if self.allowed {
            "allowed"
        } else if informational {
            "no rule allows it (not consulted)"
        } else {
            "DENIED, no rule allows it"
        };
        let _ = writeln!(
            s,
            "{title} {pod}: isolated by {}: {result}",
            names.join(", ")
        );
        for p in &self.policies {
            if !p.valid {
                let _ = writeln!(
                    s,
                    "  {}: INVALID (the API server would reject it): fails closed, isolates and allows nothing",
                    p.policy
                );
                continue;
            }
            if p.rules.is_empty() {
                let _ = writeln!(
                    s,
                    "  {}: no {field} rules (isolates, allows nothing)",
                    p.policy
                );
                continue;
            }
            for r in &p.rules {
                let peers = if r.all_peers {
                    format!("every {} (no {peers_field})", peer_word(self.direction))
                } else {
                    items(&format!("{peers_field} peer"), peers_field, &r.peers)
                };
                let ports = if r.all_ports {
                    "every port (no ports)".to_string()
                } else {
                    items("port", "ports", &r.ports)
                };
                let _ = writeln!(
                    s,
                    "  {} {field}[{}]: {}: {peers}; {ports}",
                    p.policy,
                    r.index,
                    if r.allows { "ALLOWS" } else { "no match" }
                );
            }
        }
    }
}

fn peer_word(direction: &str) -> &'static str {
    if direction == "egress" {
        "destination"
    } else {
        "source"
    }
}

/// The matching items, or "no X matches" with every item when none does.
fn items(what: &str, field: &str, items: &[Item]) -> String {
    let list = |it: &mut dyn Iterator<Item = &Item>| {
        it.map(|i| format!("{field}[{}] {}", i.index, i.what))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if items.iter().any(|i| i.matches) {
        list(&mut items.iter().filter(|i| i.matches))
    } else {
        format!("no {what} matches ({})", list(&mut items.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let table: &[(&str, Option<Endpoint>, &str)] = &[
            (
                "x/a",
                Some(Endpoint::Pod(ObjectRef::new("x", "a"))),
                "NS/POD",
            ),
            (
                "10.0.0.1",
                Some(Endpoint::Ip("10.0.0.1".parse().unwrap())),
                "IPv4",
            ),
            (
                "fd00::1",
                Some(Endpoint::Ip("fd00::1".parse().unwrap())),
                "IPv6",
            ),
            ("10.0.0.0/24", None, "a CIDR is not an endpoint"),
            ("a", None, "a bare name has no namespace"),
            ("/a", None, "empty namespace"),
            ("x/", None, "empty pod"),
            ("x/a/b", None, "too many parts"),
            ("1.2.3.4/a", None, "not a namespace name"),
            ("X/a", None, "namespace names are lower case"),
            (
                "kube-system/coredns-5d78c9869d-abcde",
                Some(Endpoint::Pod(ObjectRef::new(
                    "kube-system",
                    "coredns-5d78c9869d-abcde",
                ))),
                "a real pod name",
            ),
        ];
        for (s, want, why) in table {
            assert_eq!(s.parse::<Endpoint>().ok(), *want, "{s}: {why}");
        }
    }

    #[test]
    fn ports_parse() {
        let num = |n, p| {
            Some(PortArg {
                port: PortSpec::Number(n),
                protocol: p,
            })
        };
        let table: &[(&str, Option<PortArg>, &str)] = &[
            ("80", num(80, None), "number, protocol left to default"),
            (
                "53/udp",
                num(53, Some(Protocol::Udp)),
                "lower-case protocol",
            ),
            (
                "53/SCTP",
                num(53, Some(Protocol::Sctp)),
                "upper-case protocol",
            ),
            (
                "http",
                Some(PortArg {
                    port: PortSpec::Named("http".into()),
                    protocol: None,
                }),
                "a name",
            ),
            ("0", None, "port 0"),
            ("70000", None, "beyond 65535"),
            ("80/icmp", None, "unknown protocol"),
            ("Bad_Name", None, "invalid port name"),
            ("", None, "empty"),
        ];
        for (s, want, why) in table {
            assert_eq!(s.parse::<PortArg>().ok(), *want, "{s}: {why}");
        }
    }
}
