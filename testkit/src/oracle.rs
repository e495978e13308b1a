//! A deliberately naive reference evaluator for Kubernetes NetworkPolicy v1 and
//! ClusterNetworkPolicy v1alpha2.
//!
//! Written only from the NetworkPolicy API reference, `/work/shared/SPEC.md` §1 and §1b and the
//! ClusterNetworkPolicy facts (`/work/notes/cnp/cnp-facts.md` §1–2: the v1alpha2 Go types, CRD
//! and docs), directly on the k8s-openapi types (NetworkPolicy, Pod, Namespace, Node) and on
//! the raw JSON of ClusterNetworkPolicies (k8s-openapi has no type for them), as literally as
//! possible and with no code shared with `src/`. It answers one question: may a packet of
//! `flow` go from `flow.src` to `flow.dst`?
//!
//! Each end of the flow is judged on its own (egress at the source pod, ingress at the
//! destination pod) and both must allow. One end goes through the tiers: the Admin tier
//! (ClusterNetworkPolicies whose subject selects the pod, by priority; the first matching rule
//! decides: Accept allows, Deny denies, Pass leaves the tier) → NetworkPolicy v1 (if the pod is
//! isolated in that direction, its policies decide) → the Baseline tier (same walk; Pass means
//! the default) → allow.
//!
//! Conventions (the places where the spec leaves a choice, spelled out):
//! - A *pod* (for policy purposes) is a Pod that has at least one parseable IP in
//!   `status.podIPs` / `status.podIP`, is not `hostNetwork: true`, and is not in phase
//!   `Succeeded` or `Failed`. Every other address is *external*: never isolated, never a CNP
//!   subject, matched only by `ipBlock` and by CNP `networks` and `nodes` peers (so a
//!   host-network pod is reached only through those). If two such pods share an IP, the first
//!   in `Cluster::pods` order wins.
//! - A missing `metadata.namespace` means `default`.
//! - A namespace always carries `kubernetes.io/metadata.name: <name>` (the API server forces it);
//!   a pod whose Namespace object is absent is in a namespace with only that label.
//! - A missing `spec` or `spec.podSelector` is an empty selector (selects every pod of the
//!   namespace), which is what the API server's defaulting produces.
//! - `ipBlock.cidr` with host bits set (`10.0.0.1/24`) is accepted, as the v1.33 API server does
//!   without the StrictIPCIDRValidation gate, and means the masked network.
//! - Named ports are looked up in `spec.containers[*].ports` only (not init containers).
//! - Invalid NetworkPolicies (the API server would reject them) fail closed: they isolate the
//!   pods their podSelector selects (every pod of the namespace if the podSelector itself is
//!   invalid) in their effective directions (both if a policyType is unknown), and allow
//!   nothing. Other, valid policies selecting the same pods still allow what they allow.
//! - Traffic between a pod and the node it runs on (always allowed by SPEC §1) and reply
//!   traffic of established connections are out of scope: `allowed` only judges the first
//!   packet of a flow between two addresses neither of which is treated as "the local node".
//!   A [`Flow`] carries no node, so there is no "local node" here: a node's address is an
//!   external address like any other, matched by `nodes` and `networks` peers. Callers must
//!   not ask about a pod and an address of its own node (the kernel sees those in the input
//!   and output hooks, not forward).
//!
//! ClusterNetworkPolicy conventions:
//! - A ClusterNetworkPolicy is any document of `kind: ClusterNetworkPolicy` (its `apiVersion`
//!   is not looked at). A JSON `null` is the same as an absent field (the API server prunes the
//!   nulls of non-nullable fields before it validates a custom resource).
//! - Order within a tier: `spec.priority` (lower first), then `metadata.name` (byte order:
//!   nftpol's documented deterministic tie-break for equal priorities, which the API leaves to
//!   the implementation), then input order.
//! - Subjects: `namespaces` = every pod of the matching namespaces; `pods` =
//!   `namespaceSelector` AND `podSelector`, a missing `namespaceSelector` is every namespace.
//!   Host-network pods are never subjects (they are not pods, above).
//! - Peers: `namespaces` and `pods` match pods only (as subjects do); `nodes` (egress) match
//!   the destination address when it is one of the `status.addresses` of type `InternalIP` or
//!   `ExternalIP` of a Node whose labels match (no automatic label is added to Nodes);
//!   `networks` (egress) match a destination address inside any of the CIDRs, pod and node
//!   addresses included (host bits set mean the masked network). Peers are ORed.
//! - `protocols` absent: every protocol and port. Otherwise any entry: `tcp`/`udp`/`sctp` with
//!   `destinationPort.number` or `.range` (inclusive at both ends); `destinationNamedPort` = a
//!   port of that name declared in the destination pod's `spec.containers[*].ports`, whatever
//!   its protocol (a missing protocol is TCP), and the flow's protocol and port must be that
//!   container port's. A named port never matches a destination that is not a pod.
//! - `domainNames` is not supported (SPEC §1b): in an Accept rule a `domainNames` peer matches
//!   nothing (the rule's other peers still match); a Deny or Pass rule with a `domainNames`
//!   peer, when reached, denies every flow, whatever its other peers and its protocols.
//! - Validity is the experimental-channel CRD's (it is the one that has `nodes` and
//!   `domainNames`): required fields, enums (`Admin`/`Baseline`, `Accept`/`Deny`/`Pass`,
//!   case-sensitive), priority 0..=1000, the one-of objects (subject, peers, protocols, ports),
//!   list lengths (rules ≤ 25, peers and protocols 1..=25, networks and domainNames 1..=25
//!   without duplicates), ports 1..=65535 with `start < end`, `tcp: {}` refused, CIDRs
//!   (`isCIDR`, at most 43 characters, a prefix length without leading zeros), the DomainName
//!   pattern (its `A-z` typo included), rule names ≤ 100 characters, `metadata.name` a DNS-1123
//!   subdomain, `status` with `conditions`, and the CEL rule refusing a
//!   `destinationNamedPort` in an egress rule with a `networks`, `nodes` or `domainNames` peer.
//!   Besides, the policy is invalid when it has an unknown field at the top level or anywhere
//!   under `spec` or `status` (kubectl's strict validation, SPEC §1c; `metadata` is not looked
//!   at beyond `name`; an ingress peer of an egress-only kind, `networks`, `nodes` or
//!   `domainNames`, is such a field), or a label selector that cannot be converted (bad
//!   operator, In/NotIn without values, Exists/DoesNotExist with values, bad key or value),
//!   though the CRD itself stores such a selector.
//! - Invalid ClusterNetworkPolicies fail closed: at their position (their tier, or Admin when
//!   the tier is not exactly `Admin` or `Baseline`; their priority when it is an integer, even
//!   out of range, else 0; then their name) they deny, in both directions, every flow of the
//!   pods their subject selects (every pod when the subject itself is invalid or missing).
//!   Earlier policies still decide first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The objects the evaluator looks at: Namespaces, Pods, NetworkPolicies,
/// ClusterNetworkPolicies and Nodes.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Namespace objects (their labels feed namespaceSelectors).
    pub namespaces: Vec<Namespace>,
    /// Pod objects, active or not.
    pub pods: Vec<Pod>,
    /// NetworkPolicy objects, valid or not.
    pub policies: Vec<NetworkPolicy>,
    /// ClusterNetworkPolicy objects (policy.networking.k8s.io/v1alpha2), valid or not, as
    /// JSON: k8s-openapi has no type for them, and the evaluator reads them literally.
    pub cluster_policies: Vec<Value>,
    /// Node objects (their labels and addresses feed `nodes` peers).
    pub nodes: Vec<Node>,
}

/// The transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// One flow: the first packet from `src` to `dst` on `proto`/`port` (destination port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol.
    pub proto: Proto,
    /// Destination port.
    pub port: u16,
}

/// Direction of a policy: which side of the flow the policy's pods are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// Is the flow allowed by the cluster's ClusterNetworkPolicies and NetworkPolicies?
pub fn allowed(cluster: &Cluster, flow: &Flow) -> bool {
    // A pod talking to itself is always allowed.
    if flow.src == flow.dst {
        return true;
    }
    end_allows(cluster, flow, Direction::Egress) && end_allows(cluster, flow, Direction::Ingress)
}

/// One end of the flow (the source for egress, the destination for ingress), through the
/// tiers: Admin, then NetworkPolicy if the pod is isolated in that direction, then Baseline,
/// then allow.
fn end_allows(cluster: &Cluster, flow: &Flow, direction: Direction) -> bool {
    let end = match direction {
        Direction::Egress => flow.src,
        Direction::Ingress => flow.dst,
    };
    let Some(pod) = active_pod_with_ip(cluster, end) else {
        // External addresses (and host-network pods) are never subjects nor isolated.
        return true;
    };
    match tier_decides(cluster, Tier::Admin, pod, direction, flow) {
        Some(Action::Accept) => return true,
        Some(Action::Deny) => return false,
        // Pass, or no rule matched: the next tier.
        Some(Action::Pass) | None => {}
    }
    if let Some(verdict) = network_policy_decides(cluster, pod, direction, flow) {
        return verdict;
    }
    match tier_decides(cluster, Tier::Baseline, pod, direction, flow) {
        Some(Action::Accept) => true,
        Some(Action::Deny) => false,
        // Pass, or no rule matched: the default, allow.
        Some(Action::Pass) | None => true,
    }
}

/// The NetworkPolicy tier for one end: `None` if the pod is not isolated in `direction`,
/// otherwise whether some rule of a policy selecting it allows the flow.
fn network_policy_decides(
    cluster: &Cluster,
    pod: &Pod,
    direction: Direction,
    flow: &Flow,
) -> Option<bool> {
    let mut isolated = false;
    for policy in &cluster.policies {
        if !policy_selects_pod(policy, pod) {
            continue;
        }
        if !policy_has_direction(policy, direction) {
            continue;
        }
        // Audit mode: a valid audited policy neither isolates nor allows.
        if policy_is_valid(policy) && is_audited(policy.metadata.annotations.as_ref()) {
            continue;
        }
        isolated = true;
        if !policy_is_valid(policy) {
            // Fail closed: isolates, allows nothing.
            continue;
        }
        let policy_namespace = namespace_of_policy(policy);
        let spec = spec_of(policy);
        match direction {
            Direction::Egress => {
                for rule in spec.egress.iter().flatten() {
                    let peer_ok =
                        peers_match(cluster, &policy_namespace, rule.to.as_ref(), flow.dst);
                    let port_ok = ports_match(cluster, rule.ports.as_ref(), flow);
                    if peer_ok && port_ok {
                        return Some(true);
                    }
                }
            }
            Direction::Ingress => {
                for rule in spec.ingress.iter().flatten() {
                    let peer_ok =
                        peers_match(cluster, &policy_namespace, rule.from.as_ref(), flow.src);
                    let port_ok = ports_match(cluster, rule.ports.as_ref(), flow);
                    if peer_ok && port_ok {
                        return Some(true);
                    }
                }
            }
        }
    }
    if isolated { Some(false) } else { None }
}

// ---------------------------------------------------------------------------------------------
// Pods and namespaces
// ---------------------------------------------------------------------------------------------

/// The namespace a pod lives in (`default` when unset).
fn namespace_of_pod(pod: &Pod) -> String {
    match &pod.metadata.namespace {
        Some(ns) => ns.clone(),
        None => "default".to_string(),
    }
}

/// The namespace a policy lives in (`default` when unset).
fn namespace_of_policy(policy: &NetworkPolicy) -> String {
    match &policy.metadata.namespace {
        Some(ns) => ns.clone(),
        None => "default".to_string(),
    }
}

/// The labels of a pod (empty when unset).
fn labels_of_pod(pod: &Pod) -> BTreeMap<String, String> {
    match &pod.metadata.labels {
        Some(labels) => labels.clone(),
        None => BTreeMap::new(),
    }
}

/// The labels of a namespace by name, always including `kubernetes.io/metadata.name`.
fn labels_of_namespace(cluster: &Cluster, name: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for ns in &cluster.namespaces {
        if ns.metadata.name.as_deref() == Some(name) {
            if let Some(ns_labels) = &ns.metadata.labels {
                labels = ns_labels.clone();
            }
            break;
        }
    }
    labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    labels
}

/// All parseable IPs of a pod, from `status.podIPs` and `status.podIP`.
fn ips_of_pod(pod: &Pod) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    let Some(status) = &pod.status else {
        return ips;
    };
    let mut texts: Vec<String> = Vec::new();
    for pod_ip in status.pod_ips.iter().flatten() {
        texts.push(pod_ip.ip.clone());
    }
    if let Some(pod_ip) = &status.pod_ip {
        texts.push(pod_ip.clone());
    }
    for text in texts {
        let Ok(ip) = text.parse::<IpAddr>() else {
            continue;
        };
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// Does this Pod count as a pod for policy purposes?
fn pod_is_active(pod: &Pod) -> bool {
    let host_network = match &pod.spec {
        Some(spec) => spec.host_network == Some(true),
        None => false,
    };
    if host_network {
        return false;
    }
    let phase = match &pod.status {
        Some(status) => status.phase.clone().unwrap_or_default(),
        None => String::new(),
    };
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    !ips_of_pod(pod).is_empty()
}

/// The active pod owning `ip`, if any.
fn active_pod_with_ip(cluster: &Cluster, ip: IpAddr) -> Option<&Pod> {
    cluster
        .pods
        .iter()
        .find(|pod| pod_is_active(pod) && ips_of_pod(pod).contains(&ip))
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// The policy's spec, or the defaulted empty spec.
fn spec_of(policy: &NetworkPolicy) -> NetworkPolicySpec {
    match &policy.spec {
        Some(spec) => spec.clone(),
        None => NetworkPolicySpec::default(),
    }
}

/// Does the annotation `nftpol.io/mode` say `audit` (exactly; any other
/// value enforces)?
fn is_audited(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get("nftpol.io/mode"))
        .is_some_and(|v| v == "audit")
}

/// Does the policy select the pod (same namespace, podSelector matches)?
fn policy_selects_pod(policy: &NetworkPolicy, pod: &Pod) -> bool {
    if namespace_of_policy(policy) != namespace_of_pod(pod) {
        return false;
    }
    let spec = spec_of(policy);
    // Absent podSelector = empty selector.
    let selector = spec.pod_selector.unwrap_or_default();
    if !selector_is_valid(&selector) {
        // An unusable podSelector fails closed: every pod of the namespace.
        return true;
    }
    selector_matches(&selector, &labels_of_pod(pod))
}

/// Does the policy's effective policyTypes contain `direction`?
fn policy_has_direction(policy: &NetworkPolicy, direction: Direction) -> bool {
    let spec = spec_of(policy);
    let types = match &spec.policy_types {
        Some(types) => types.clone(),
        None => Vec::new(),
    };
    if types.is_empty() {
        // Defaulting: Ingress, plus Egress iff the egress list is non-empty.
        let egress_len = match &spec.egress {
            Some(rules) => rules.len(),
            None => 0,
        };
        return match direction {
            Direction::Ingress => true,
            Direction::Egress => egress_len != 0,
        };
    }
    for t in &types {
        if t != "Ingress" && t != "Egress" {
            // Unknown policyType: fail closed in both directions.
            return true;
        }
    }
    let wanted = match direction {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    };
    types.iter().any(|t| t == wanted)
}

/// Do the peers of a rule match `ip`? Absent or empty list: every address.
fn peers_match(
    cluster: &Cluster,
    policy_namespace: &str,
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ip: IpAddr,
) -> bool {
    let Some(peers) = peers else {
        return true;
    };
    if peers.is_empty() {
        return true;
    }
    for peer in peers {
        if peer_matches(cluster, policy_namespace, peer, ip) {
            return true;
        }
    }
    false
}

/// Does one peer match `ip`?
fn peer_matches(
    cluster: &Cluster,
    policy_namespace: &str,
    peer: &NetworkPolicyPeer,
    ip: IpAddr,
) -> bool {
    if let Some(block) = &peer.ip_block {
        return ip_block_matches(block, ip);
    }
    let Some(pod) = active_pod_with_ip(cluster, ip) else {
        // Selectors only ever match pods.
        return false;
    };
    let pod_namespace = namespace_of_pod(pod);
    match (&peer.pod_selector, &peer.namespace_selector) {
        (Some(pod_selector), None) => {
            pod_namespace == policy_namespace && selector_matches(pod_selector, &labels_of_pod(pod))
        }
        (None, Some(namespace_selector)) => selector_matches(
            namespace_selector,
            &labels_of_namespace(cluster, &pod_namespace),
        ),
        (Some(pod_selector), Some(namespace_selector)) => {
            selector_matches(pod_selector, &labels_of_pod(pod))
                && selector_matches(
                    namespace_selector,
                    &labels_of_namespace(cluster, &pod_namespace),
                )
        }
        // An empty peer is invalid; a valid policy never gets here.
        (None, None) => false,
    }
}

/// Is `ip` inside `cidr` and outside every `except`?
fn ip_block_matches(block: &IPBlock, ip: IpAddr) -> bool {
    let Some(cidr) = parse_cidr(&block.cidr) else {
        return false;
    };
    if !cidr_contains(cidr, ip) {
        return false;
    }
    for except in block.except.iter().flatten() {
        let Some(except) = parse_cidr(except) else {
            return false;
        };
        if cidr_contains(except, ip) {
            return false;
        }
    }
    true
}

/// Do the ports of a rule match the flow? Absent or empty list: every port and protocol.
fn ports_match(cluster: &Cluster, ports: Option<&Vec<NetworkPolicyPort>>, flow: &Flow) -> bool {
    let Some(ports) = ports else {
        return true;
    };
    if ports.is_empty() {
        return true;
    }
    for port in ports {
        if port_matches(cluster, port, flow) {
            return true;
        }
    }
    false
}

/// The Kubernetes spelling of a protocol.
fn proto_name(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
        Proto::Sctp => "SCTP",
    }
}

/// Does one NetworkPolicyPort match the flow?
fn port_matches(cluster: &Cluster, port: &NetworkPolicyPort, flow: &Flow) -> bool {
    let protocol = match &port.protocol {
        Some(p) => p.as_str(),
        None => "TCP",
    };
    if protocol != proto_name(flow.proto) {
        return false;
    }
    let flow_port = i32::from(flow.port);
    match &port.port {
        // Only a protocol: every port of that protocol.
        None => true,
        Some(IntOrString::Int(number)) => match port.end_port {
            None => flow_port == *number,
            Some(end) => *number <= flow_port && flow_port <= end,
        },
        Some(IntOrString::String(name)) => {
            // A named port resolves against the destination pod's container ports.
            let Some(dst_pod) = active_pod_with_ip(cluster, flow.dst) else {
                return false;
            };
            let Some(spec) = &dst_pod.spec else {
                return false;
            };
            for container in &spec.containers {
                for container_port in container.ports.iter().flatten() {
                    let container_protocol = match &container_port.protocol {
                        Some(p) => p.as_str(),
                        None => "TCP",
                    };
                    if container_port.name.as_deref() == Some(name.as_str())
                        && container_protocol == protocol
                        && container_port.container_port == flow_port
                    {
                        return true;
                    }
                }
            }
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// Does a (valid) label selector match a label set? All terms are ANDed; empty matches all.
fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(match_labels) = &selector.match_labels {
        for (key, value) in match_labels {
            if labels.get(key) != Some(value) {
                return false;
            }
        }
    }
    if let Some(expressions) = &selector.match_expressions {
        for expression in expressions {
            let values = match &expression.values {
                Some(values) => values.clone(),
                None => Vec::new(),
            };
            let actual = labels.get(&expression.key);
            let ok = match expression.operator.as_str() {
                "In" => match actual {
                    Some(v) => values.contains(v),
                    None => false,
                },
                "NotIn" => match actual {
                    Some(v) => !values.contains(v),
                    None => true,
                },
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Validation: what the API server would reject
// ---------------------------------------------------------------------------------------------

/// Would the API server accept this policy?
pub fn policy_is_valid(policy: &NetworkPolicy) -> bool {
    let spec = spec_of(policy);
    let pod_selector = spec.pod_selector.clone().unwrap_or_default();
    if !selector_is_valid(&pod_selector) {
        return false;
    }
    if let Some(types) = &spec.policy_types {
        if types.len() > 2 {
            return false;
        }
        for t in types {
            if t != "Ingress" && t != "Egress" {
                return false;
            }
        }
    }
    for rule in spec.ingress.iter().flatten() {
        for peer in rule.from.iter().flatten() {
            if !peer_is_valid(peer) {
                return false;
            }
        }
        for port in rule.ports.iter().flatten() {
            if !port_is_valid(port) {
                return false;
            }
        }
    }
    for rule in spec.egress.iter().flatten() {
        for peer in rule.to.iter().flatten() {
            if !peer_is_valid(peer) {
                return false;
            }
        }
        for port in rule.ports.iter().flatten() {
            if !port_is_valid(port) {
                return false;
            }
        }
    }
    true
}

/// A peer sets exactly one of ipBlock or (podSelector and/or namespaceSelector), all valid.
fn peer_is_valid(peer: &NetworkPolicyPeer) -> bool {
    let mut count = 0;
    if let Some(selector) = &peer.pod_selector {
        count += 1;
        if !selector_is_valid(selector) {
            return false;
        }
    }
    if let Some(selector) = &peer.namespace_selector {
        count += 1;
        if !selector_is_valid(selector) {
            return false;
        }
    }
    if let Some(block) = &peer.ip_block {
        count += 1;
        if !ip_block_is_valid(block) {
            return false;
        }
    }
    if count == 0 {
        return false;
    }
    if count > 1 && peer.ip_block.is_some() {
        return false;
    }
    true
}

/// cidr parses; every except parses and is a strict subset of cidr (same family, longer prefix).
fn ip_block_is_valid(block: &IPBlock) -> bool {
    let Some(cidr) = parse_cidr(&block.cidr) else {
        return false;
    };
    for except in block.except.iter().flatten() {
        let Some(except) = parse_cidr(except) else {
            return false;
        };
        if !cidr_contains(cidr, except.0) {
            return false;
        }
        if except.1 <= cidr.1 {
            return false;
        }
    }
    true
}

/// protocol is TCP/UDP/SCTP; port is 1..=65535 or a valid port name; endPort only after a
/// numeric port, not below it, and itself a valid port number.
fn port_is_valid(port: &NetworkPolicyPort) -> bool {
    let protocol = match &port.protocol {
        Some(p) => p.as_str(),
        None => "TCP",
    };
    if protocol != "TCP" && protocol != "UDP" && protocol != "SCTP" {
        return false;
    }
    let port_ok = match &port.port {
        None => true,
        Some(IntOrString::Int(number)) => (1..=65535).contains(number),
        Some(IntOrString::String(name)) => port_name_is_valid(name),
    };
    if !port_ok {
        return false;
    }
    if let Some(end) = port.end_port {
        match &port.port {
            None => return false,
            Some(IntOrString::String(_)) => return false,
            Some(IntOrString::Int(number)) => {
                if end < *number {
                    return false;
                }
            }
        }
        if !(1..=65535).contains(&end) {
            return false;
        }
    }
    true
}

/// IANA_SVC_NAME: 1-15 chars of [a-z0-9-], at least one letter, no leading, trailing or
/// double hyphen.
fn port_name_is_valid(name: &str) -> bool {
    if name.is_empty() || name.len() > 15 {
        return false;
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return false;
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        return false;
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return false;
    }
    true
}

/// Operators are In/NotIn (with values) or Exists/DoesNotExist (without); keys are qualified
/// names; values are label values.
fn selector_is_valid(selector: &LabelSelector) -> bool {
    if let Some(match_labels) = &selector.match_labels {
        for (key, value) in match_labels {
            if !qualified_name_is_valid(key) || !label_value_is_valid(value) {
                return false;
            }
        }
    }
    if let Some(expressions) = &selector.match_expressions {
        for expression in expressions {
            let values = match &expression.values {
                Some(values) => values.clone(),
                None => Vec::new(),
            };
            match expression.operator.as_str() {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        return false;
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        return false;
                    }
                }
                _ => return false,
            }
            if !qualified_name_is_valid(&expression.key) {
                return false;
            }
            for value in &values {
                if !label_value_is_valid(value) {
                    return false;
                }
            }
        }
    }
    true
}

/// `[prefix/]name`: prefix a DNS-1123 subdomain, name 1-63 chars
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn qualified_name_is_valid(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.len() {
        1 => !parts[0].is_empty() && label_value_is_valid(parts[0]),
        2 => {
            dns_subdomain_is_valid(parts[0])
                && !parts[1].is_empty()
                && label_value_is_valid(parts[1])
        }
        _ => false,
    }
}

/// Empty, or 1-63 chars `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn label_value_is_valid(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    if value.len() > 63 {
        return false;
    }
    let chars: Vec<char> = value.chars().collect();
    if !chars[0].is_ascii_alphanumeric() || !chars[chars.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    chars
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
}

/// DNS-1123 subdomain: at most 253 chars, dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn dns_subdomain_is_valid(value: &str) -> bool {
    if value.is_empty() || value.len() > 253 {
        return false;
    }
    for label in value.split('.') {
        if label.is_empty() {
            return false;
        }
        let chars: Vec<char> = label.chars().collect();
        let ok_edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !ok_edge(chars[0]) || !ok_edge(chars[chars.len() - 1]) {
            return false;
        }
        if !chars.iter().all(|c| ok_edge(*c) || *c == '-') {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// CIDRs
// ---------------------------------------------------------------------------------------------

/// Parse `address/prefix` (prefix digits only, within the family's width).
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let width = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if prefix > width {
        return None;
    }
    Some((address, prefix))
}

/// Is `ip` inside the network `cidr` (same family, first `prefix` bits equal)?
fn cidr_contains(cidr: (IpAddr, u8), ip: IpAddr) -> bool {
    let (network, prefix) = cidr;
    match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let n = u32::from(n);
            let a = u32::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            n & mask == a & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let n = u128::from(n);
            let a = u128::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            n & mask == a & mask
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2), read from the JSON literally
// ---------------------------------------------------------------------------------------------

/// A ClusterNetworkPolicy tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    Admin,
    Baseline,
}

/// A ClusterNetworkPolicy rule's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Accept,
    Deny,
    Pass,
}

/// A field of a JSON object; a `null` value is the same as an absent field (the API server
/// prunes nulls of non-nullable fields before validating a custom resource).
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value.get(key) {
        Some(Value::Null) | None => None,
        Some(v) => Some(v),
    }
}

/// The tier a CNP sits in: `Baseline` only when `spec.tier` says exactly that; anything else
/// (including an invalid tier) is the Admin tier.
fn cnp_tier(policy: &Value) -> Tier {
    let tier = field(policy, "spec").and_then(|spec| field(spec, "tier"));
    match tier.and_then(Value::as_str) {
        Some("Baseline") => Tier::Baseline,
        _ => Tier::Admin,
    }
}

/// The priority a CNP is ordered by: `spec.priority` when it is an integer (even out of
/// range), 0 otherwise (missing, or not an integer).
fn cnp_priority(policy: &Value) -> i64 {
    let priority = field(policy, "spec").and_then(|spec| field(spec, "priority"));
    priority.and_then(Value::as_i64).unwrap_or(0)
}

/// The name a CNP is ordered by among equal priorities (empty when missing).
fn cnp_name(policy: &Value) -> String {
    let name = field(policy, "metadata").and_then(|meta| field(meta, "name"));
    name.and_then(Value::as_str).unwrap_or("").to_string()
}

/// The CNPs of one tier, in evaluation order: priority (lower first), then name, then input
/// order.
fn cnps_of_tier(cluster: &Cluster, tier: Tier) -> Vec<&Value> {
    let mut policies: Vec<&Value> = Vec::new();
    for policy in &cluster.cluster_policies {
        if cnp_tier(policy) == tier {
            policies.push(policy);
        }
    }
    // A stable sort: equal (priority, name) keep input order.
    policies.sort_by_key(|policy| (cnp_priority(policy), cnp_name(policy)));
    policies
}

/// What one tier says about one end of a flow: the action of the first matching rule of the
/// first policy (in order) that has one, `None` if no rule matches. An invalid policy
/// selecting the pod denies everything at its position.
fn tier_decides(
    cluster: &Cluster,
    tier: Tier,
    pod: &Pod,
    direction: Direction,
    flow: &Flow,
) -> Option<Action> {
    for policy in cnps_of_tier(cluster, tier) {
        if !cnp_subject_selects(cluster, policy, pod) {
            continue;
        }
        if !cnp_is_valid(policy) {
            return Some(Action::Deny);
        }
        // Audit mode: a valid audited policy never decides.
        let annotations = field(policy, "metadata")
            .and_then(|m| field(m, "annotations"))
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect::<BTreeMap<String, String>>()
            });
        if is_audited(annotations.as_ref()) {
            continue;
        }
        let Some(spec) = field(policy, "spec") else {
            continue;
        };
        let (rules_key, peers_key, other_end) = match direction {
            Direction::Ingress => ("ingress", "from", flow.src),
            Direction::Egress => ("egress", "to", flow.dst),
        };
        let Some(rules) = field(spec, rules_key).and_then(Value::as_array) else {
            continue;
        };
        for rule in rules {
            let action = match field(rule, "action").and_then(Value::as_str) {
                Some("Accept") => Action::Accept,
                Some("Deny") => Action::Deny,
                Some("Pass") => Action::Pass,
                // A valid policy never gets here.
                _ => Action::Deny,
            };
            let peers: Vec<Value> = match field(rule, peers_key).and_then(Value::as_array) {
                Some(peers) => peers.clone(),
                None => Vec::new(),
            };
            // domainNames is not supported: a Deny or Pass rule naming domains denies
            // everything (whatever its other peers and protocols); in an Accept rule the
            // domainNames peer matches nothing.
            let names_domains = peers
                .iter()
                .any(|peer| field(peer, "domainNames").is_some());
            if names_domains && action != Action::Accept {
                return Some(Action::Deny);
            }
            let mut peer_ok = false;
            for peer in &peers {
                if cnp_peer_matches(cluster, peer, other_end) {
                    peer_ok = true;
                    break;
                }
            }
            let protocols_ok = match field(rule, "protocols").and_then(Value::as_array) {
                // Absent: every protocol and port.
                None => true,
                Some(protocols) => protocols
                    .iter()
                    .any(|protocol| cnp_protocol_matches(cluster, protocol, flow)),
            };
            if peer_ok && protocols_ok {
                return Some(action);
            }
        }
    }
    None
}

/// Does the CNP's subject select the pod? An invalid subject selects every pod.
fn cnp_subject_selects(cluster: &Cluster, policy: &Value, pod: &Pod) -> bool {
    let subject = field(policy, "spec").and_then(|spec| field(spec, "subject"));
    let Some(subject) = subject else {
        return true;
    };
    if !cnp_subject_is_valid(subject) {
        return true;
    }
    if let Some(namespaces) = field(subject, "namespaces") {
        let Some(selector) = label_selector_of(namespaces) else {
            return true;
        };
        return selector_matches(
            &selector,
            &labels_of_namespace(cluster, &namespace_of_pod(pod)),
        );
    }
    if let Some(pods) = field(subject, "pods") {
        return namespaced_pod_matches(cluster, pods, pod);
    }
    true
}

/// A NamespacedPod (`namespaceSelector` AND `podSelector`; a missing namespaceSelector is
/// every namespace) against a pod. Unusable selectors match every pod (only reached for a
/// subject, and a subject with them is invalid, which selects every pod).
fn namespaced_pod_matches(cluster: &Cluster, pods: &Value, pod: &Pod) -> bool {
    let namespace_ok = match field(pods, "namespaceSelector") {
        None => true,
        Some(selector) => match label_selector_of(selector) {
            Some(selector) => selector_matches(
                &selector,
                &labels_of_namespace(cluster, &namespace_of_pod(pod)),
            ),
            None => true,
        },
    };
    let pod_ok = match field(pods, "podSelector").and_then(label_selector_of) {
        Some(selector) => selector_matches(&selector, &labels_of_pod(pod)),
        None => true,
    };
    namespace_ok && pod_ok
}

/// Does one peer of a valid CNP rule match `ip` (the source for ingress, the destination
/// for egress)?
fn cnp_peer_matches(cluster: &Cluster, peer: &Value, ip: IpAddr) -> bool {
    if let Some(namespaces) = field(peer, "namespaces") {
        let Some(pod) = active_pod_with_ip(cluster, ip) else {
            return false;
        };
        let Some(selector) = label_selector_of(namespaces) else {
            return false;
        };
        return selector_matches(
            &selector,
            &labels_of_namespace(cluster, &namespace_of_pod(pod)),
        );
    }
    if let Some(pods) = field(peer, "pods") {
        let Some(pod) = active_pod_with_ip(cluster, ip) else {
            return false;
        };
        return namespaced_pod_matches(cluster, pods, pod);
    }
    if let Some(nodes) = field(peer, "nodes") {
        let Some(selector) = label_selector_of(nodes) else {
            return false;
        };
        for node in &cluster.nodes {
            if selector_matches(&selector, &labels_of_node(node)) && ips_of_node(node).contains(&ip)
            {
                return true;
            }
        }
        return false;
    }
    if let Some(networks) = field(peer, "networks").and_then(Value::as_array) {
        for network in networks {
            let Some(cidr) = network.as_str().and_then(parse_cidr) else {
                continue;
            };
            if cidr_contains(cidr, ip) {
                return true;
            }
        }
        return false;
    }
    // domainNames (in an Accept rule): matches nothing.
    false
}

/// Does one `protocols` entry match the flow?
fn cnp_protocol_matches(cluster: &Cluster, protocol: &Value, flow: &Flow) -> bool {
    for (key, proto) in [
        ("tcp", Proto::Tcp),
        ("udp", Proto::Udp),
        ("sctp", Proto::Sctp),
    ] {
        let Some(entry) = field(protocol, key) else {
            continue;
        };
        if flow.proto != proto {
            return false;
        }
        let Some(port) = field(entry, "destinationPort") else {
            return false;
        };
        let flow_port = i64::from(flow.port);
        if let Some(number) = field(port, "number").and_then(Value::as_i64) {
            return flow_port == number;
        }
        if let Some(range) = field(port, "range") {
            let start = field(range, "start").and_then(Value::as_i64);
            let end = field(range, "end").and_then(Value::as_i64);
            return match (start, end) {
                // Inclusive at both ends.
                (Some(start), Some(end)) => start <= flow_port && flow_port <= end,
                _ => false,
            };
        }
        return false;
    }
    if let Some(name) = field(protocol, "destinationNamedPort").and_then(Value::as_str) {
        // The destination pod's declared container port of that name; its protocol, whatever
        // it is, must be the flow's.
        let Some(dst_pod) = active_pod_with_ip(cluster, flow.dst) else {
            return false;
        };
        let Some(spec) = &dst_pod.spec else {
            return false;
        };
        for container in &spec.containers {
            for container_port in container.ports.iter().flatten() {
                let container_protocol = match &container_port.protocol {
                    Some(p) => p.as_str(),
                    None => "TCP",
                };
                if container_port.name.as_deref() == Some(name)
                    && container_protocol == proto_name(flow.proto)
                    && container_port.container_port == i32::from(flow.port)
                {
                    return true;
                }
            }
        }
        return false;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// The labels of a node (empty when unset).
fn labels_of_node(node: &Node) -> BTreeMap<String, String> {
    match &node.metadata.labels {
        Some(labels) => labels.clone(),
        None => BTreeMap::new(),
    }
}

/// The parseable addresses of type InternalIP or ExternalIP in `status.addresses`.
fn ips_of_node(node: &Node) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    let Some(status) = &node.status else {
        return ips;
    };
    for address in status.addresses.iter().flatten() {
        if address.type_ != "InternalIP" && address.type_ != "ExternalIP" {
            continue;
        }
        if let Ok(ip) = address.address.parse::<IpAddr>() {
            ips.push(ip);
        }
    }
    ips
}

// ---------------------------------------------------------------------------------------------
// ClusterNetworkPolicy validation: what the API server (experimental-channel CRD) would reject
// ---------------------------------------------------------------------------------------------

/// The non-null keys of a JSON object, or `None` if it is not an object.
fn keys_of(value: &Value) -> Option<Vec<&str>> {
    let map = value.as_object()?;
    let mut keys = Vec::new();
    for (key, v) in map {
        if !v.is_null() {
            keys.push(key.as_str());
        }
    }
    Some(keys)
}

/// An object whose non-null keys are all in `allowed` and include every one of `required`.
fn object_with(value: &Value, allowed: &[&str], required: &[&str]) -> bool {
    let Some(keys) = keys_of(value) else {
        return false;
    };
    keys.iter().all(|key| allowed.contains(key)) && required.iter().all(|key| keys.contains(key))
}

/// An object with exactly one non-null key, from `allowed` (the schema's one-of: minProperties
/// 1, maxProperties 1).
fn one_of(value: &Value, allowed: &[&str]) -> bool {
    match keys_of(value) {
        Some(keys) => keys.len() == 1 && allowed.contains(&keys[0]),
        None => false,
    }
}

/// A list of `min..=max` items.
fn list_of(value: &Value, min: usize, max: usize) -> Option<&Vec<Value>> {
    let list = value.as_array()?;
    if list.len() < min || list.len() > max {
        return None;
    }
    Some(list)
}

/// Would the API server accept this ClusterNetworkPolicy? Unknown fields are refused (kubectl's
/// strict validation, SPEC §1c); a label selector that cannot be converted (bad operator,
/// In/NotIn without values, Exists/DoesNotExist with values, a bad key or value) makes the
/// policy invalid too, although the CRD does not check it.
pub fn cnp_is_valid(policy: &Value) -> bool {
    if !object_with(
        policy,
        &["apiVersion", "kind", "metadata", "spec", "status"],
        &["metadata", "spec"],
    ) {
        return false;
    }
    let Some(metadata) = field(policy, "metadata") else {
        return false;
    };
    if !metadata.is_object() {
        return false;
    }
    match field(metadata, "name").and_then(Value::as_str) {
        Some(name) if dns_subdomain_is_valid(name) => {}
        _ => return false,
    }
    if let Some(status) = field(policy, "status")
        && !cnp_status_is_valid(status)
    {
        return false;
    }
    let Some(spec) = field(policy, "spec") else {
        return false;
    };
    if !object_with(
        spec,
        &["tier", "priority", "subject", "ingress", "egress"],
        &["tier", "priority", "subject"],
    ) {
        return false;
    }
    match field(spec, "tier").and_then(Value::as_str) {
        Some("Admin") | Some("Baseline") => {}
        _ => return false,
    }
    match field(spec, "priority").and_then(Value::as_i64) {
        Some(priority) if (0..=1000).contains(&priority) => {}
        _ => return false,
    }
    match field(spec, "subject") {
        Some(subject) if cnp_subject_is_valid(subject) => {}
        _ => return false,
    }
    if let Some(ingress) = field(spec, "ingress") {
        let Some(rules) = list_of(ingress, 0, 25) else {
            return false;
        };
        for rule in rules {
            if !cnp_rule_is_valid(rule, Direction::Ingress) {
                return false;
            }
        }
    }
    if let Some(egress) = field(spec, "egress") {
        let Some(rules) = list_of(egress, 0, 25) else {
            return false;
        };
        for rule in rules {
            if !cnp_rule_is_valid(rule, Direction::Egress) {
                return false;
            }
        }
    }
    true
}

/// `status`, when present, must hold `conditions` (metav1.Condition items).
fn cnp_status_is_valid(status: &Value) -> bool {
    if !object_with(status, &["conditions"], &["conditions"]) {
        return false;
    }
    let Some(conditions) = field(status, "conditions").and_then(Value::as_array) else {
        return false;
    };
    for condition in conditions {
        let required = ["lastTransitionTime", "message", "reason", "status", "type"];
        let mut allowed = required.to_vec();
        allowed.push("observedGeneration");
        if !object_with(condition, &allowed, &required) {
            return false;
        }
        let text = |key: &str| field(condition, key).and_then(Value::as_str);
        let (Some(_time), Some(message), Some(reason), Some(status), Some(kind)) = (
            text("lastTransitionTime"),
            text("message"),
            text("reason"),
            text("status"),
            text("type"),
        ) else {
            return false;
        };
        if message.chars().count() > 32768 {
            return false;
        }
        if !condition_reason_is_valid(reason) || !condition_type_is_valid(kind) {
            return false;
        }
        if status != "True" && status != "False" && status != "Unknown" {
            return false;
        }
        if let Some(generation) = field(condition, "observedGeneration") {
            match generation.as_i64() {
                Some(g) if g >= 0 => {}
                _ => return false,
            }
        }
    }
    true
}

/// `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, 1..=1024 characters.
fn condition_reason_is_valid(reason: &str) -> bool {
    let chars: Vec<char> = reason.chars().collect();
    if chars.is_empty() || chars.len() > 1024 {
        return false;
    }
    if !chars[0].is_ascii_alphabetic() {
        return false;
    }
    let last = chars[chars.len() - 1];
    if !(last.is_ascii_alphanumeric() || last == '_') {
        return false;
    }
    chars
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ',' || *c == ':')
}

/// At most 316 characters: an optional lowercase DNS prefix and `/`, then
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn condition_type_is_valid(kind: &str) -> bool {
    if kind.chars().count() > 316 {
        return false;
    }
    let name = match kind.rsplit_once('/') {
        Some((prefix, name)) => {
            for label in prefix.split('.') {
                let chars: Vec<char> = label.chars().collect();
                let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
                if chars.is_empty() || !edge(chars[0]) || !edge(chars[chars.len() - 1]) {
                    return false;
                }
                if !chars.iter().all(|c| edge(*c) || *c == '-') {
                    return false;
                }
            }
            name
        }
        None => kind,
    };
    let chars: Vec<char> = name.chars().collect();
    if chars.is_empty() {
        return false;
    }
    if !chars[0].is_ascii_alphanumeric() || !chars[chars.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    chars
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
}

/// Exactly one of `namespaces` (a label selector) or `pods` (a NamespacedPod).
fn cnp_subject_is_valid(subject: &Value) -> bool {
    if !one_of(subject, &["namespaces", "pods"]) {
        return false;
    }
    if let Some(namespaces) = field(subject, "namespaces") {
        return label_selector_of(namespaces).is_some();
    }
    match field(subject, "pods") {
        Some(pods) => namespaced_pod_is_valid(pods),
        None => false,
    }
}

/// `podSelector` (required) and `namespaceSelector` (optional), both usable selectors.
fn namespaced_pod_is_valid(pods: &Value) -> bool {
    if !object_with(
        pods,
        &["namespaceSelector", "podSelector"],
        &["podSelector"],
    ) {
        return false;
    }
    if let Some(selector) = field(pods, "namespaceSelector")
        && label_selector_of(selector).is_none()
    {
        return false;
    }
    match field(pods, "podSelector") {
        Some(selector) => label_selector_of(selector).is_some(),
        None => false,
    }
}

/// One ingress or egress rule: `name` (at most 100 characters), `action`
/// (Accept/Deny/Pass), 1..=25 peers of the direction's kinds, 1..=25 protocols when present;
/// in egress, no named port alongside a networks, nodes or domainNames peer (the
/// experimental-channel CEL rule).
fn cnp_rule_is_valid(rule: &Value, direction: Direction) -> bool {
    let (peers_key, peer_kinds): (&str, &[&str]) = match direction {
        Direction::Ingress => ("from", &["namespaces", "pods"]),
        Direction::Egress => (
            "to",
            &["namespaces", "pods", "nodes", "networks", "domainNames"],
        ),
    };
    if !object_with(
        rule,
        &["name", "action", peers_key, "protocols"],
        &["action", peers_key],
    ) {
        return false;
    }
    if let Some(name) = field(rule, "name") {
        match name.as_str() {
            Some(name) if name.chars().count() <= 100 => {}
            _ => return false,
        }
    }
    match field(rule, "action").and_then(Value::as_str) {
        Some("Accept") | Some("Deny") | Some("Pass") => {}
        _ => return false,
    }
    let Some(peers) = field(rule, peers_key).and_then(|p| list_of(p, 1, 25)) else {
        return false;
    };
    let mut non_pod_peer = false;
    for peer in peers {
        if !one_of(peer, peer_kinds) {
            return false;
        }
        if let Some(selector) = field(peer, "namespaces")
            && label_selector_of(selector).is_none()
        {
            return false;
        }
        if let Some(pods) = field(peer, "pods")
            && !namespaced_pod_is_valid(pods)
        {
            return false;
        }
        if let Some(selector) = field(peer, "nodes") {
            non_pod_peer = true;
            if label_selector_of(selector).is_none() {
                return false;
            }
        }
        if let Some(networks) = field(peer, "networks") {
            non_pod_peer = true;
            let Some(networks) = list_of(networks, 1, 25) else {
                return false;
            };
            for (i, network) in networks.iter().enumerate() {
                match network.as_str() {
                    Some(cidr) if cidr.chars().count() <= 43 && is_cidr(cidr) => {}
                    _ => return false,
                }
                // A set: no duplicates.
                if networks[..i].contains(network) {
                    return false;
                }
            }
        }
        if let Some(names) = field(peer, "domainNames") {
            non_pod_peer = true;
            let Some(names) = list_of(names, 1, 25) else {
                return false;
            };
            for (i, name) in names.iter().enumerate() {
                match name.as_str() {
                    Some(text) if domain_name_is_valid(text) => {}
                    _ => return false,
                }
                if names[..i].contains(name) {
                    return false;
                }
            }
        }
    }
    let mut named_port = false;
    if let Some(protocols) = field(rule, "protocols") {
        let Some(protocols) = list_of(protocols, 1, 25) else {
            return false;
        };
        for protocol in protocols {
            if !cnp_protocol_is_valid(protocol) {
                return false;
            }
            if field(protocol, "destinationNamedPort").is_some() {
                named_port = true;
            }
        }
    }
    !(non_pod_peer && named_port)
}

/// Exactly one of `tcp`/`udp`/`sctp` (each exactly `{destinationPort: Port}`) or
/// `destinationNamedPort` (any string).
fn cnp_protocol_is_valid(protocol: &Value) -> bool {
    if !one_of(protocol, &["tcp", "udp", "sctp", "destinationNamedPort"]) {
        return false;
    }
    if let Some(name) = field(protocol, "destinationNamedPort") {
        return name.is_string();
    }
    for key in ["tcp", "udp", "sctp"] {
        if let Some(entry) = field(protocol, key) {
            // minProperties 1, and destinationPort is the only field.
            if !object_with(entry, &["destinationPort"], &["destinationPort"]) {
                return false;
            }
            let Some(port) = field(entry, "destinationPort") else {
                return false;
            };
            return cnp_port_is_valid(port);
        }
    }
    false
}

/// Exactly one of `number` (1..=65535) or `range` (`start` < `end`, both 1..=65535).
fn cnp_port_is_valid(port: &Value) -> bool {
    let in_range = |v: Option<&Value>| match v.and_then(Value::as_i64) {
        Some(n) => (1..=65535).contains(&n),
        None => false,
    };
    if !one_of(port, &["number", "range"]) {
        return false;
    }
    if let Some(number) = field(port, "number") {
        return in_range(Some(number));
    }
    let Some(range) = field(port, "range") else {
        return false;
    };
    if !object_with(range, &["start", "end"], &["start", "end"]) {
        return false;
    }
    let start = field(range, "start");
    let end = field(range, "end");
    if !in_range(start) || !in_range(end) {
        return false;
    }
    start.and_then(Value::as_i64) < end.and_then(Value::as_i64)
}

/// CEL `isCIDR`: an address of either family, `/`, a prefix length without leading zeros
/// within the family's width. Host bits may be set (the network is the masked one).
fn is_cidr(text: &str) -> bool {
    let Some((_, prefix)) = text.split_once('/') else {
        return false;
    };
    if prefix.len() > 1 && prefix.starts_with('0') {
        return false;
    }
    parse_cidr(text).is_some()
}

/// The DomainName pattern, typo included:
/// `^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`
/// (`A-z` also admits `[ \ ] ^ _` and the backtick as a label's first character).
fn domain_name_is_valid(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    for label in labels {
        let chars: Vec<char> = label.chars().collect();
        if chars.is_empty() {
            return false;
        }
        let first = chars[0];
        if !(first.is_ascii_alphanumeric() || ('['..='`').contains(&first)) {
            return false;
        }
        if chars.len() > 1 {
            let last = chars[chars.len() - 1];
            if !last.is_ascii_alphanumeric() {
                return false;
            }
            let middle = &chars[1..chars.len() - 1];
            if !middle
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            {
                return false;
            }
        }
    }
    true
}

/// A label selector read from JSON (`matchLabels`: strings; `matchExpressions`: `key` and
/// `operator` required, `values` optional), if it has the schema's shape and can be
/// converted (`selector_is_valid`).
fn label_selector_of(value: &Value) -> Option<LabelSelector> {
    if !object_with(value, &["matchLabels", "matchExpressions"], &[]) {
        return None;
    }
    let mut selector = LabelSelector::default();
    if let Some(labels) = field(value, "matchLabels") {
        let mut match_labels = BTreeMap::new();
        for (key, v) in labels.as_object()? {
            match_labels.insert(key.clone(), v.as_str()?.to_string());
        }
        selector.match_labels = Some(match_labels);
    }
    if let Some(expressions) = field(value, "matchExpressions") {
        let mut match_expressions = Vec::new();
        for expression in expressions.as_array()? {
            if !object_with(
                expression,
                &["key", "operator", "values"],
                &["key", "operator"],
            ) {
                return None;
            }
            let key = field(expression, "key")?.as_str()?.to_string();
            let operator = field(expression, "operator")?.as_str()?.to_string();
            let values = match field(expression, "values") {
                None => None,
                Some(values) => {
                    let mut texts = Vec::new();
                    for v in values.as_array()? {
                        texts.push(v.as_str()?.to_string());
                    }
                    Some(texts)
                }
            };
            match_expressions.push(LabelSelectorRequirement {
                key,
                operator,
                values,
            });
        }
        selector.match_expressions = Some(match_expressions);
    }
    if !selector_is_valid(&selector) {
        return None;
    }
    Some(selector)
}

// ---------------------------------------------------------------------------------------------
// Loading (test input files)
// ---------------------------------------------------------------------------------------------

impl Cluster {
    /// Add the Namespaces, Pods, NetworkPolicies, ClusterNetworkPolicies and Nodes of a parsed
    /// document (recursing into
    /// `kind: List`); returns the `kind`s it skipped.
    pub fn add_document(&mut self, doc: serde_json::Value) -> Result<Vec<String>, String> {
        let mut skipped = Vec::new();
        if doc.is_null() {
            return Ok(skipped);
        }
        let kind = doc
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        match kind.as_str() {
            "List" => {
                let items = match doc.get("items").and_then(|i| i.as_array()) {
                    Some(items) => items.clone(),
                    None => Vec::new(),
                };
                for item in items {
                    skipped.extend(self.add_document(item)?);
                }
            }
            "Namespace" => self
                .namespaces
                .push(serde_json::from_value(doc).map_err(|e| format!("Namespace: {e}"))?),
            "Pod" => self
                .pods
                .push(serde_json::from_value(doc).map_err(|e| format!("Pod: {e}"))?),
            "NetworkPolicy" => self
                .policies
                .push(serde_json::from_value(doc).map_err(|e| format!("NetworkPolicy: {e}"))?),
            "ClusterNetworkPolicy" => self.cluster_policies.push(doc),
            "Node" => self
                .nodes
                .push(serde_json::from_value(doc).map_err(|e| format!("Node: {e}"))?),
            _ => skipped.push(kind),
        }
        Ok(skipped)
    }

    /// Add every document of a YAML (multi-document) or JSON text.
    pub fn add_text(&mut self, text: &str, json: bool) -> Result<Vec<String>, String> {
        let docs: Vec<serde_json::Value> = if json {
            vec![serde_json::from_str(text).map_err(|e| e.to_string())?]
        } else {
            serde_saphyr::from_multiple::<serde_json::Value>(text).map_err(|e| e.to_string())?
        };
        let mut skipped = Vec::new();
        for doc in docs {
            skipped.extend(self.add_document(doc)?);
        }
        Ok(skipped)
    }

    /// Build a cluster from a YAML text.
    pub fn from_yaml(text: &str) -> Result<Cluster, String> {
        let mut cluster = Cluster::default();
        cluster.add_text(text, false)?;
        Ok(cluster)
    }

    /// Build a cluster from a file or a directory (its `.yaml`, `.yml` and `.json` files, sorted).
    pub fn load(path: &Path) -> Result<Cluster, String> {
        Ok(Cluster::load_reporting(path)?.0)
    }

    /// Like [`Cluster::load`], also returning the `kind`s that were skipped.
    pub fn load_reporting(path: &Path) -> Result<(Cluster, Vec<String>), String> {
        let mut files = Vec::new();
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| e.to_string())?;
                files.push(entry.path());
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut cluster = Cluster::default();
        let mut skipped = Vec::new();
        for file in files {
            let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext != "yaml" && ext != "yml" && ext != "json" {
                continue;
            }
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let file_skipped = cluster
                .add_text(&text, ext == "json")
                .map_err(|e| format!("{}: {e}", file.display()))?;
            skipped.extend(file_skipped);
        }
        Ok((cluster, skipped))
    }
}
