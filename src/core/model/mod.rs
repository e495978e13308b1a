//! The validated, Kubernetes-free model that the compiler works on.
//!
//! Everything here is plain data with defaults already applied
//! (policyTypes, protocol TCP, int-or-string ports). Collections are
//! `BTreeMap`s so iteration order, and with it the output, is deterministic.

pub mod cluster_policy;
pub mod ipblock;
pub mod lint_input;
pub mod selector;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use cluster_policy::{Action, ClusterPolicy, ClusterRule, Node, Tier};
pub use ipblock::{Cidr, Family, Range};
pub use selector::{Labels, Requirement, Selector};

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The values of `map` whose keys are in namespace `ns`, by name: a range,
/// not a walk (keys order by namespace first).
pub fn in_namespace<'a, V>(
    map: &'a BTreeMap<ObjectRef, V>,
    ns: &str,
) -> impl Iterator<Item = &'a V> + 'a {
    let ns = ns.to_string();
    map.range(ObjectRef::new(ns.clone(), String::new())..)
        .take_while(move |(id, _)| id.namespace == ns)
        .map(|(_, v)| v)
}

impl ObjectRef {
    /// Builds a reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocols NetworkPolicy ports can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nftables keyword (`tcp`, `udp`, `sctp`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IP protocol number (`inet_proto` in a set key).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// All protocols, in canonical order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
}

/// Traffic direction relative to the selected pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic to the pod.
    Ingress,
    /// Traffic from the pod.
    Egress,
}

impl Direction {
    /// Lower-case name used in object names.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// Both directions, ingress first.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

/// A namespace and its labels (including `kubernetes.io/metadata.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// The `nftpol.io/log-drops` annotation: `Some(true)` logs the drops of
    /// this namespace's policy groups, `Some(false)` never does, `None`
    /// follows the agent-wide setting.
    pub log_drops: Option<bool>,
}

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The Namespace annotation that turns drop logging on (`"true"`) or off
/// (`"false"`) for the namespace's policies, overriding the agent-wide setting.
pub const LOG_DROPS_ANNOTATION: &str = "nftpol.io/log-drops";

/// The annotation on a NetworkPolicy or ClusterNetworkPolicy that puts it in
/// audit mode (`audit`): compiled, but it only logs and counts what it would
/// drop (docs/review.md, "Audit mode"). `enforce` or absent: enforced.
pub const MODE_ANNOTATION: &str = "nftpol.io/mode";

/// A pod that takes part in policy: has an IP, is not host-network, is not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace and name.
    pub id: ObjectRef,
    /// Labels.
    pub labels: Labels,
    /// `spec.nodeName`, if scheduled.
    pub node: Option<String>,
    /// Pod IPs (at most one per family), sorted.
    pub ips: Vec<IpAddr>,
    /// Named container ports: name → (protocol, number).
    pub named_ports: BTreeMap<String, (Protocol, u16)>,
}

impl Pod {
    /// Whether the table of `node` enforces this pod (`None`: the table of
    /// every pod).
    pub fn enforced_by(&self, node: Option<&str>) -> bool {
        node.is_none() || self.node.as_deref() == node
    }

    /// The number a NetworkPolicy port `name` (with `protocol`) means on
    /// this pod: the container port of that name, if its protocol matches.
    /// The one place a named port is resolved (compile, explain and the
    /// drop-log index all ask here); `None` matches nothing on this pod.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        match self.named_ports.get(name) {
            Some(&(proto, num)) if proto == protocol => Some(num),
            _ => None,
        }
    }
}

/// Which namespaces a pod-selecting peer looks in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamespaceScope {
    /// One namespace by name (a peer with only `podSelector`).
    Named(String),
    /// Namespaces matching a selector.
    Selector(Selector),
}

/// A set of pods: namespace scope x pod selector. The unit one nftables set implements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodMatch {
    /// Which namespaces.
    pub namespaces: NamespaceScope,
    /// Which pods in them.
    pub pods: Selector,
}

impl fmt::Display for PodMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespaces {
            NamespaceScope::Named(n) => write!(f, "ns {n}")?,
            NamespaceScope::Selector(s) => write!(f, "ns {s}")?,
        }
        write!(f, " pods {}", self.pods)
    }
}

/// An `ipBlock`: a CIDR minus excepts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    /// The block.
    pub cidr: Cidr,
    /// Holes in it, each strictly inside `cidr`, sorted.
    pub except: Vec<Cidr>,
}

impl IpBlock {
    /// The addresses the block allows, as disjoint ranges.
    pub fn ranges(&self) -> Vec<Range> {
        ipblock::subtract(&self.cidr, &self.except)
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        if !self.except.is_empty() {
            let ex: Vec<String> = self.except.iter().map(|c| c.to_string()).collect();
            write!(f, " except {}", ex.join(","))?;
        }
        Ok(())
    }
}

/// A peer of a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Pods chosen by labels.
    Pods(PodMatch),
    /// Addresses.
    IpBlock(IpBlock),
    /// The addresses of Nodes chosen by labels (ClusterNetworkPolicy egress `nodes`).
    Nodes(Selector),
    /// Addresses in any of these CIDRs, sorted and deduplicated
    /// (ClusterNetworkPolicy egress `networks`).
    Networks(Vec<Cidr>),
}

/// Which ports of a protocol a policy port matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// Every port (a port entry with only a protocol).
    All,
    /// An inclusive range (`port`, or `port`..`endPort`).
    Range(u16, u16),
    /// A named container port of the destination pod.
    Named(String),
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// Protocol (defaulted to TCP).
    pub protocol: Protocol,
    /// Port(s).
    pub port: PortMatch,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.protocol.nft();
        match &self.port {
            PortMatch::All => write!(f, "{p}"),
            PortMatch::Range(a, b) if a == b => write!(f, "{p}/{a}"),
            PortMatch::Range(a, b) => write!(f, "{p}/{a}-{b}"),
            PortMatch::Named(n) => write!(f, "{p}/{n}"),
        }
    }
}

/// One ingress or egress rule. `None` means "all" (absent or empty list).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// Peers (`from`/`to`); `None` = every peer.
    pub peers: Option<Vec<Peer>>,
    /// Ports; `None` = every port and protocol.
    pub ports: Option<Vec<Port>>,
}

/// A validated NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Namespace and name.
    pub id: ObjectRef,
    /// Which pods of the namespace it selects.
    pub pod_selector: Selector,
    /// Ingress rules if the policy isolates for ingress, else `None`.
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules if the policy isolates for egress, else `None`.
    pub egress: Option<Vec<Rule>>,
    /// False when the API server would have rejected the policy; it then
    /// isolates (fail closed) and its rules are empty.
    pub valid: bool,
    /// Audit mode (`nftpol.io/mode: audit`): the policy neither isolates nor
    /// allows; the packets of pods only it (and other audited policies)
    /// selects that it would not allow are logged as "would drop". Never
    /// true for an invalid policy (it fails closed).
    pub audit: bool,
}

impl Policy {
    /// Rules of one direction, if the policy isolates in it.
    pub fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// Everything the compiler needs: the cluster as the model sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Active pods by namespace/name (shared: the incremental compile's
    /// index holds the same pods, not copies).
    pub pods: BTreeMap<ObjectRef, Arc<Pod>>,
    /// Policies by namespace/name.
    pub policies: BTreeMap<ObjectRef, Policy>,
    /// ClusterNetworkPolicies by name.
    pub cluster_policies: BTreeMap<String, ClusterPolicy>,
    /// Nodes by name (for `nodes` peers).
    pub nodes: BTreeMap<String, Node>,
}

impl Cluster {
    /// Labels of a namespace; a namespace with no object still carries its
    /// name label, as the API server would give it.
    pub fn namespace_labels(&self, name: &str) -> Labels {
        match self.namespaces.get(name) {
            Some(ns) => ns.labels.clone(),
            None => Labels::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
        }
    }

    /// Whether `sel` matches namespace `name`'s labels
    /// ([`Cluster::namespace_labels`], without copying them).
    pub fn namespace_matches(&self, sel: &Selector, name: &str) -> bool {
        match self.namespaces.get(name) {
            Some(ns) => sel.matches(&ns.labels),
            None => sel.matches(&self.namespace_labels(name)),
        }
    }

    /// The pods of namespace `ns`, by name: a range of [`Cluster::pods`].
    pub fn pods_of<'a>(&'a self, ns: &str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        in_namespace(&self.pods, ns)
    }

    /// The namespaces that have pods, sorted (one range lookup per
    /// namespace, not a walk over every pod).
    pub fn pod_namespaces(&self) -> impl Iterator<Item = &str> + '_ {
        let mut next = self.pods.keys().next();
        std::iter::from_fn(move || {
            let ns = next?.namespace.as_str();
            // The least namespace after `ns`: `ns` followed by NUL.
            let after = ObjectRef::new(format!("{ns}\0"), String::new());
            next = self.pods.range(after..).next().map(|(k, _)| k);
            Some(ns)
        })
    }
}
