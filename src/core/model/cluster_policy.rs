//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`) in the model:
//! cluster-scoped policies in two tiers around NetworkPolicy.
//!
//! Evaluation, per packet and at both ends (docs/cluster-network-policy.md):
//! the Admin tier (policies by [`ClusterPolicy::order`], rules in order, the
//! first matching rule decides; `Pass` leaves the tier) → NetworkPolicy (if
//! the pod is isolated, NetworkPolicy decides) → the Baseline tier → allow.

use std::fmt;
use std::net::IpAddr;

use super::{Labels, Peer, PodMatch, Port};

/// The tier a ClusterNetworkPolicy belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Evaluated before NetworkPolicy; namespace owners cannot override it.
    Admin,
    /// Evaluated after NetworkPolicy, for pods NetworkPolicy does not isolate.
    Baseline,
}

impl Tier {
    /// Lower-case name used in object names and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "admin",
            Tier::Baseline => "baseline",
        }
    }

    /// The API's spelling (`Admin`, `Baseline`).
    pub fn api_name(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }

    /// Both tiers, in evaluation order.
    pub const ALL: [Tier; 2] = [Tier::Admin, Tier::Baseline];
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// What a matching ClusterNetworkPolicy rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Allow at this end; later tiers and NetworkPolicy are not consulted.
    Accept,
    /// Drop.
    Deny,
    /// Leave the tier: in Admin, continue with NetworkPolicy; in Baseline,
    /// nothing is left to decide and the default (allow) applies.
    Pass,
}

impl Action {
    /// The API's spelling.
    pub fn api_name(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// One ingress or egress rule of a ClusterNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRule {
    /// `name`, if given (shown in comments and `explain`).
    pub name: Option<String>,
    /// What a match does.
    pub action: Action,
    /// Peers (`from`/`to`), ORed; `None` = every address (only an invalid
    /// policy's fail-closed rule has it: the API requires at least one peer).
    pub peers: Option<Vec<Peer>>,
    /// Protocols and ports, ORed; `None` = every protocol and port.
    pub ports: Option<Vec<Port>>,
}

/// A validated ClusterNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPolicy {
    /// Name (the object is cluster-scoped).
    pub name: String,
    /// Tier.
    pub tier: Tier,
    /// Priority, 0–1000 (an invalid policy's may be higher); lower is evaluated first.
    pub priority: u32,
    /// The pods it applies to: `subject.namespaces` is a namespace selector
    /// with every pod, `subject.pods` a namespace selector × pod selector.
    /// Host-networked pods are never subjects (they are not in the model).
    pub subject: PodMatch,
    /// Ingress rules, in order.
    pub ingress: Vec<ClusterRule>,
    /// Egress rules, in order.
    pub egress: Vec<ClusterRule>,
    /// False when the API server would have rejected the policy: it then
    /// has one rule per direction, `Deny` everything, in its place (fail
    /// closed), and this flag makes the output say so.
    pub valid: bool,
    /// Audit mode (`nftpol.io/mode: audit`): no rule decides; a packet whose
    /// first matching rule of this policy is a Deny is logged as "would
    /// drop" and evaluation goes on as if the policy were absent. Never true
    /// for an invalid policy (it fails closed).
    pub audit: bool,
}

impl ClusterPolicy {
    /// Rules of one direction, in order.
    pub fn rules(&self, dir: super::Direction) -> &[ClusterRule] {
        match dir {
            super::Direction::Ingress => &self.ingress,
            super::Direction::Egress => &self.egress,
        }
    }

    /// The evaluation order within a tier: priority, then name. Upstream
    /// leaves the order of equal priorities undefined; nftpol picks the
    /// name so the result is deterministic (and `explain` warns).
    pub fn order(&self) -> (Tier, u32, &str) {
        (self.tier, self.priority, &self.name)
    }
}

/// A Node, for ClusterNetworkPolicy `nodes` peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Its addresses (`status.addresses` of type InternalIP and ExternalIP), sorted.
    pub addresses: Vec<IpAddr>,
    /// The pod address ranges assigned to it (`spec.podCIDRs`, else
    /// `spec.podCIDR`), sorted: the scope of the new-pod guard
    /// (docs/nftables.md, "The new-pod window").
    pub pod_cidrs: Vec<super::Cidr>,
}
