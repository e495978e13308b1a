//! A deliberately naive reference evaluator for Kubernetes NetworkPolicy v1.
//!
//! Written only from the NetworkPolicy API reference and `/work/shared/SPEC.md` §1, directly on
//! the k8s-openapi types, as literally as possible and with no code shared with `src/`. It answers
//! one question: may a packet of `flow` go from `flow.src` to `flow.dst`?
//!
//! Conventions (the places where the spec leaves a choice, spelled out):
//! - A *pod* (for policy purposes) is a Pod that has at least one parseable IP in
//!   `status.podIPs` / `status.podIP`, is not `hostNetwork: true`, and is not in phase
//!   `Succeeded` or `Failed`. Every other address is *external*: never isolated, matched only by
//!   `ipBlock`. If two such pods share an IP, the first in `Cluster::pods` order wins.
//! - A missing `metadata.namespace` means `default`.
//! - A namespace always carries `kubernetes.io/metadata.name: <name>` (the API server forces it);
//!   a pod whose Namespace object is absent is in a namespace with only that label.
//! - A missing `spec` or `spec.podSelector` is an empty selector (selects every pod of the
//!   namespace), which is what the API server's defaulting produces.
//! - `ipBlock.cidr` with host bits set (`10.0.0.1/24`) is accepted, as the v1.33 API server does
//!   without the StrictIPCIDRValidation gate, and means the masked network.
//! - Named ports are looked up in `spec.containers[*].ports` only (not init containers).
//! - Invalid policies (the API server would reject them) fail closed: they isolate the pods
//!   their podSelector selects (every pod of the namespace if the podSelector itself is
//!   invalid) in their effective directions (both if a policyType is unknown), and allow
//!   nothing. Other, valid policies selecting the same pods still allow what they allow.
//! - Traffic between a pod and the node it runs on (always allowed by SPEC §1) and reply
//!   traffic of established connections are out of scope: `allowed` only judges the first
//!   packet of a flow between two addresses neither of which is treated as "the local node".

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The objects the evaluator looks at: Namespaces, Pods and NetworkPolicies.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Namespace objects (their labels feed namespaceSelectors).
    pub namespaces: Vec<Namespace>,
    /// Pod objects, active or not.
    pub pods: Vec<Pod>,
    /// NetworkPolicy objects, valid or not.
    pub policies: Vec<NetworkPolicy>,
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

/// Is the flow allowed by the cluster's NetworkPolicies?
pub fn allowed(cluster: &Cluster, flow: &Flow) -> bool {
    // A pod talking to itself is always allowed.
    if flow.src == flow.dst {
        return true;
    }
    egress_allows(cluster, flow) && ingress_allows(cluster, flow)
}

/// The egress half: the source pod is not isolated for egress, or some egress rule allows it.
fn egress_allows(cluster: &Cluster, flow: &Flow) -> bool {
    let Some(src_pod) = active_pod_with_ip(cluster, flow.src) else {
        // External sources are never isolated.
        return true;
    };
    let mut isolated = false;
    for policy in &cluster.policies {
        if !policy_selects_pod(policy, src_pod) {
            continue;
        }
        if !policy_has_direction(policy, Direction::Egress) {
            continue;
        }
        isolated = true;
        if !policy_is_valid(policy) {
            // Fail closed: isolates, allows nothing.
            continue;
        }
        let policy_namespace = namespace_of_policy(policy);
        let spec = spec_of(policy);
        for rule in spec.egress.iter().flatten() {
            let peer_ok = peers_match(cluster, &policy_namespace, rule.to.as_ref(), flow.dst);
            let port_ok = ports_match(cluster, rule.ports.as_ref(), flow);
            if peer_ok && port_ok {
                return true;
            }
        }
    }
    !isolated
}

/// The ingress half: the destination pod is not isolated for ingress, or some ingress rule
/// allows it.
fn ingress_allows(cluster: &Cluster, flow: &Flow) -> bool {
    let Some(dst_pod) = active_pod_with_ip(cluster, flow.dst) else {
        // External destinations are never isolated.
        return true;
    };
    let mut isolated = false;
    for policy in &cluster.policies {
        if !policy_selects_pod(policy, dst_pod) {
            continue;
        }
        if !policy_has_direction(policy, Direction::Ingress) {
            continue;
        }
        isolated = true;
        if !policy_is_valid(policy) {
            // Fail closed: isolates, allows nothing.
            continue;
        }
        let policy_namespace = namespace_of_policy(policy);
        let spec = spec_of(policy);
        for rule in spec.ingress.iter().flatten() {
            let peer_ok = peers_match(cluster, &policy_namespace, rule.from.as_ref(), flow.src);
            let port_ok = ports_match(cluster, rule.ports.as_ref(), flow);
            if peer_ok && port_ok {
                return true;
            }
        }
    }
    !isolated
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
// Loading (test input files)
// ---------------------------------------------------------------------------------------------

impl Cluster {
    /// Add the Namespaces, Pods and NetworkPolicies of a parsed document (recursing into
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
