//! What the input says beyond what the compiler reads: host-network pods,
//! Nodes' pod CIDRs, Services and EndpointSlices. Only the lints
//! (`core::lint`) read it; the ruleset never depends on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Cidr, Labels, ObjectRef, Protocol};
use crate::core::diag::Source;

/// A pod as the lints see it: every pod of the input, whether it takes part
/// in policy or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintPod {
    /// Namespace and name.
    pub id: ObjectRef,
    /// Labels.
    pub labels: Labels,
    /// `spec.hostNetwork: true` (never selected, never filtered).
    pub host_network: bool,
}

/// A Service's port: `port` on the ClusterIP, `target` on the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`, if any.
    pub name: Option<String>,
    /// Protocol (TCP by default).
    pub protocol: Protocol,
    /// `port`.
    pub port: u16,
}

/// A Service (only what the lints read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub id: ObjectRef,
    /// `spec.clusterIPs` (or `spec.clusterIP`), without `None` (headless).
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
}

/// An EndpointSlice (only what the lints read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Namespace and name.
    pub id: ObjectRef,
    /// The `kubernetes.io/service-name` label: the Service it belongs to.
    pub service: Option<String>,
    /// Every endpoint's addresses (IPv4 and IPv6 slices; FQDN slices have none).
    pub addresses: Vec<IpAddr>,
    /// `ports`: name, protocol, number (after DNAT, the port the packet carries).
    pub ports: Vec<ServicePort>,
}

/// Everything the lints read besides the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintInput {
    /// Every pod of the input, with `hostNetwork`.
    pub pods: Vec<LintPod>,
    /// Nodes' `spec.podCIDRs` (or `spec.podCIDR`): node name → CIDRs.
    pub pod_cidrs: BTreeMap<String, Vec<Cidr>>,
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Where each object came from, keyed `Kind namespace/name` (`Kind name`
    /// when cluster-scoped), as diagnostics name objects.
    pub sources: BTreeMap<String, Source>,
}
