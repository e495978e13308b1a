//! ClusterNetworkPolicy → [`ClusterPolicy`], and Node → [`Node`].
//! Longer than 600 lines: it mirrors the whole CRD (schema, CEL rules and
//! which errors block the rules) in one place, in the CRD's order.
//!
//! Validation is the API server's with network-policy-api v0.2.0's
//! experimental CRD: its OpenAPI schema (required fields, enums, bounds,
//! one-of objects, `x-kubernetes-list-type: set`), its CEL rules (port range,
//! `isCIDR`, named port vs non-pod peers; the server skips them when the
//! schema found a "blocking" error: Required, NotSupported, TooLong,
//! TooMany or TypeInvalid, and then always adds an error without a field
//! saying so) and the generic
//! name rule. Field paths are the server's. Beyond the server, nftpol
//! refuses label selectors it cannot evaluate (the CRD does not check them;
//! documented in docs/cluster-network-policy.md), and `domainNames`, which it
//! does not support yet.
//!
//! An invalid policy keeps its tier, its priority (out of range: as it sorts, negative as 0) and its subject
//! (if valid, else every pod) and denies everything in both directions
//! there: it fails closed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::{FieldError, emit, ferr, policy::selector as np_selector, validate};
use crate::core::diag::{Diagnostic, Source};
use crate::core::k8s::cnp::{self, ClusterNetworkPolicy};
use crate::core::model::{
    Action, Cidr, ClusterPolicy, ClusterRule, NamespaceScope, Node, Peer, PodMatch, Port,
    PortMatch, Protocol, Selector, Tier,
};

/// The marker in the message of a selector error the API server does not
/// report (tests/validity.rs tells them apart by it).
pub const SELECTOR_MARK: &str = "the API server does not check the selectors of a ClusterNetworkPolicy, nftpol fails closed on one it cannot evaluate";
/// The marker of a field nftpol refuses although the API server accepts it.
pub const UNSUPPORTED_MARK: &str = "is not supported yet";

/// What the checks found, by how the API server reports it.
#[derive(Default)]
struct Found {
    /// Schema errors, each with whether it blocks the CEL rules.
    schema: Vec<(FieldError, bool)>,
    /// CEL rule failures (reported only without blocking schema errors).
    cel: Vec<FieldError>,
    /// Always reported: metadata, list-set duplicates.
    other: Vec<FieldError>,
    /// Selectors nftpol cannot evaluate (not the server's).
    selectors: Vec<FieldError>,
}

impl Found {
    fn invalid(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.schema.push((ferr(field, msg), false));
    }
    fn blocking(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.schema.push((ferr(field, msg), true));
    }
    fn required(&mut self, field: impl Into<String>) {
        self.blocking(field, "required");
    }
    fn count(&self) -> usize {
        self.schema.len() + self.cel.len() + self.other.len() + self.selectors.len()
    }
}

/// Converts a ClusterNetworkPolicy; an invalid one comes back with
/// `valid: false` (fail closed) and one error diagnostic per problem.
/// `None` (with an error) only without a name.
pub fn cluster_policy(
    cnp: &ClusterNetworkPolicy,
    src: Option<&Source>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ClusterPolicy> {
    let Some(name) = cnp.metadata.name.clone().filter(|n| !n.is_empty()) else {
        emit(
            diags,
            Diagnostic::error("a ClusterNetworkPolicy needs a name").field("metadata.name"),
            src,
            &"ClusterNetworkPolicy <unnamed>",
        );
        return None;
    };
    let object = format!("ClusterNetworkPolicy {name}");
    let mut f = Found::default();
    if !validate::dns_subdomain(&name) {
        f.other.push(ferr(
            "metadata.name",
            format!(
                "{name:?} is not a valid name (a lower-case DNS subdomain: a-z, 0-9, '-' and '.', at most 253)"
            ),
        ));
    }
    let spec = &cnp.spec;
    let tier = match spec.tier.as_deref() {
        None => {
            f.required("spec.tier");
            None
        }
        Some("Admin") => Some(Tier::Admin),
        Some("Baseline") => Some(Tier::Baseline),
        Some(t) => {
            f.blocking(
                "spec.tier",
                format!("unsupported value {t:?} (Admin or Baseline)"),
            );
            None
        }
    };
    let priority = match spec.priority {
        None => {
            f.required("spec.priority");
            None
        }
        Some(p) => {
            if !(0..=1000).contains(&p) {
                f.invalid("spec.priority", format!("{p} is out of range (0 to 1000)"));
            }
            // Out of range stays where it sorts (1001 after every valid
            // priority of the tier, as the reference evaluator orders it);
            // a negative one first (0).
            Some(p.clamp(0, i64::from(u32::MAX)) as u32)
        }
    };
    let subject = match &spec.subject {
        None => {
            f.required("spec.subject");
            None
        }
        Some(s) => subject(s, &mut f),
    };
    let mut unsupported: Vec<FieldError> = Vec::new();
    let ingress = rules(
        spec.ingress.as_deref(),
        "spec.ingress",
        &mut f,
        &mut unsupported,
    );
    let egress = rules(
        spec.egress.as_deref(),
        "spec.egress",
        &mut f,
        &mut unsupported,
    );

    let valid = f.count() == 0;
    let fails = "; the policy is invalid and fails closed (all traffic of its subjects is denied at its place)";
    let blocked = f.schema.iter().any(|(_, b)| *b);
    let mut errors: Vec<FieldError> = Vec::new();
    errors.extend(f.other);
    errors.extend(f.schema.into_iter().map(|(e, _)| e));
    if blocked {
        // The server says so whenever a blocking error exists (the CRD has
        // CEL rules), with no field (`<nil>` in its status causes).
        errors.push(ferr(
            "",
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else {
        errors.extend(f.cel);
    }
    for e in errors {
        let d = Diagnostic::error(format!("{}{fails}", e.message));
        let d = if e.field.is_empty() {
            d
        } else {
            d.field(e.field)
        };
        emit(diags, d, src, &object);
    }
    for e in f.selectors {
        let msg = format!("{} ({SELECTOR_MARK}){fails}", e.message);
        emit(diags, Diagnostic::error(msg).field(e.field), src, &object);
    }
    for e in unsupported {
        emit(
            diags,
            Diagnostic::error(e.message).field(e.field),
            src,
            &object,
        );
    }

    let everyone = || PodMatch {
        namespaces: NamespaceScope::Selector(Selector::everything()),
        pods: Selector::everything(),
    };
    let deny_all = || {
        vec![ClusterRule {
            name: None,
            action: Action::Deny,
            peers: None,
            ports: None,
        }]
    };
    let tier = tier.unwrap_or(Tier::Admin);
    let priority = priority.unwrap_or(0);
    let audit = super::audit_mode(
        cnp.metadata.annotations.as_ref(),
        valid,
        src,
        &object,
        diags,
    );
    if !valid {
        return Some(ClusterPolicy {
            name,
            tier,
            priority,
            subject: subject.unwrap_or_else(everyone),
            ingress: deny_all(),
            egress: deny_all(),
            valid: false,
            audit,
        });
    }
    Some(ClusterPolicy {
        name,
        tier,
        priority,
        subject: subject.unwrap_or_else(everyone),
        ingress,
        egress,
        valid: true,
        audit,
    })
}

/// The subject, `None` when any part of it is invalid.
fn subject(s: &cnp::Subject, f: &mut Found) -> Option<PodMatch> {
    let path = "spec.subject";
    match (&s.namespaces, &s.pods) {
        (None, None) => {
            f.invalid(path, "must set namespaces or pods (minProperties 1)");
            None
        }
        (Some(_), Some(_)) => {
            f.blocking(
                path,
                "may set only one of namespaces and pods (maxProperties 1)",
            );
            // Both parts are still checked, as the server does.
            let _ = selector(s.namespaces.as_ref(), &format!("{path}.namespaces"), f);
            let _ = namespaced_pod(s.pods.as_ref(), &format!("{path}.pods"), f);
            None
        }
        (Some(n), None) => Some(PodMatch {
            namespaces: NamespaceScope::Selector(selector(
                Some(n),
                &format!("{path}.namespaces"),
                f,
            )?),
            pods: Selector::everything(),
        }),
        (None, Some(p)) => namespaced_pod(Some(p), &format!("{path}.pods"), f),
    }
}

fn namespaced_pod(p: Option<&cnp::NamespacedPod>, path: &str, f: &mut Found) -> Option<PodMatch> {
    let p = p?;
    let ns = match &p.namespace_selector {
        None => Some(Selector::everything()),
        Some(s) => selector(Some(s), &format!("{path}.namespaceSelector"), f),
    };
    let pods = match &p.pod_selector {
        None => {
            f.required(format!("{path}.podSelector"));
            None
        }
        Some(s) => selector(Some(s), &format!("{path}.podSelector"), f),
    };
    Some(PodMatch {
        namespaces: NamespaceScope::Selector(ns?),
        pods: pods?,
    })
}

/// A selector: the CRD's schema (an expression needs key and operator),
/// then what nftpol needs to evaluate it (NetworkPolicy's rules).
fn selector(s: Option<&cnp::LabelSelector>, path: &str, f: &mut Found) -> Option<Selector> {
    let s = s?;
    let mut ok = true;
    let mut exprs = Vec::new();
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        if e.key.is_none() {
            f.required(format!("{p}.key"));
            ok = false;
        }
        if e.operator.is_none() {
            f.required(format!("{p}.operator"));
            ok = false;
        }
        exprs.push(meta::LabelSelectorRequirement {
            key: e.key.clone().unwrap_or_default(),
            operator: e.operator.clone().unwrap_or_default(),
            values: e.values.clone(),
        });
    }
    if !ok {
        return None;
    }
    let k = meta::LabelSelector {
        match_labels: s.match_labels.clone(),
        match_expressions: s.match_expressions.as_ref().map(|_| exprs),
    };
    np_selector(&k, path, &mut f.selectors)
}

/// Rules of one direction; problems go to `f`, unsupported peers to
/// `unsupported` (the rule then fails closed by itself).
fn rules<R: RuleView>(
    rules: Option<&[R]>,
    path: &str,
    f: &mut Found,
    unsupported: &mut Vec<FieldError>,
) -> Vec<ClusterRule> {
    let rules = rules.unwrap_or_default();
    if rules.len() > 25 {
        f.blocking(
            path,
            format!("too many rules: {} (at most 25)", rules.len()),
        );
    }
    rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| rule(r, &format!("{path}[{i}]"), f, unsupported))
        .collect()
}

/// What ingress and egress rules have in common.
trait RuleView {
    fn name(&self) -> Option<&str>;
    fn action(&self) -> Option<&str>;
    /// `from` or `to`.
    const PEERS: &'static str;
    fn peers(&self) -> Option<Vec<PeerView<'_>>>;
    fn protocols(&self) -> Option<&[cnp::ProtocolPort]>;
}

/// A peer of either direction.
struct PeerView<'a> {
    namespaces: Option<&'a cnp::LabelSelector>,
    pods: Option<&'a cnp::NamespacedPod>,
    nodes: Option<&'a cnp::LabelSelector>,
    networks: Option<&'a [String]>,
    domain_names: Option<&'a [String]>,
    unrecognised: &'a BTreeMap<String, serde_json::Value>,
}

impl RuleView for cnp::IngressRule {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn action(&self) -> Option<&str> {
        self.action.as_deref()
    }
    const PEERS: &'static str = "from";
    fn peers(&self) -> Option<Vec<PeerView<'_>>> {
        self.from.as_ref().map(|ps| {
            ps.iter()
                .map(|p| PeerView {
                    namespaces: p.namespaces.as_ref(),
                    pods: p.pods.as_ref(),
                    nodes: None,
                    networks: None,
                    domain_names: None,
                    unrecognised: &p.unrecognised,
                })
                .collect()
        })
    }
    fn protocols(&self) -> Option<&[cnp::ProtocolPort]> {
        self.protocols.as_deref()
    }
}

impl RuleView for cnp::EgressRule {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn action(&self) -> Option<&str> {
        self.action.as_deref()
    }
    const PEERS: &'static str = "to";
    fn peers(&self) -> Option<Vec<PeerView<'_>>> {
        self.to.as_ref().map(|ps| {
            ps.iter()
                .map(|p| PeerView {
                    namespaces: p.namespaces.as_ref(),
                    pods: p.pods.as_ref(),
                    nodes: p.nodes.as_ref(),
                    networks: p.networks.as_deref(),
                    domain_names: p.domain_names.as_deref(),
                    unrecognised: &p.unrecognised,
                })
                .collect()
        })
    }
    fn protocols(&self) -> Option<&[cnp::ProtocolPort]> {
        self.protocols.as_deref()
    }
}

/// What one peer became.
enum PeerOutcome {
    /// A model peer.
    Peer(Peer),
    /// Valid for the API server, but nftpol cannot enforce it: the field
    /// and what it is.
    Unsupported(String, String),
    /// Invalid (reported).
    Invalid,
}

fn rule<R: RuleView>(
    r: &R,
    path: &str,
    f: &mut Found,
    unsupported: &mut Vec<FieldError>,
) -> Option<ClusterRule> {
    let before = f.count();
    if let Some(n) = r.name()
        && n.chars().count() > 100
    {
        f.blocking(
            format!("{path}.name"),
            format!(
                "may not be longer than 100 characters ({})",
                n.chars().count()
            ),
        );
    }
    let action = match r.action() {
        None => {
            f.required(format!("{path}.action"));
            None
        }
        Some("Accept") => Some(Action::Accept),
        Some("Deny") => Some(Action::Deny),
        Some("Pass") => Some(Action::Pass),
        Some(a) => {
            f.blocking(
                format!("{path}.action"),
                format!("unsupported value {a:?} (Accept, Deny or Pass)"),
            );
            None
        }
    };
    let peers_path = format!("{path}.{}", R::PEERS);
    let views = r.peers();
    let mut peers = Vec::new();
    let mut refused = Vec::new();
    let mut non_pod_peer = false;
    match &views {
        None => f.required(&peers_path),
        Some(v) => {
            if v.is_empty() {
                f.invalid(&peers_path, "must have at least 1 item");
            } else if v.len() > 25 {
                f.blocking(
                    &peers_path,
                    format!("too many peers: {} (at most 25)", v.len()),
                );
            }
            for (j, p) in v.iter().enumerate() {
                let pp = format!("{peers_path}[{j}]");
                non_pod_peer |=
                    p.networks.is_some() || p.nodes.is_some() || p.domain_names.is_some();
                match peer(p, &pp, f) {
                    PeerOutcome::Peer(x) => peers.push(x),
                    PeerOutcome::Unsupported(field, what) => refused.push((field, what)),
                    PeerOutcome::Invalid => {}
                }
            }
        }
    }
    let ports = match r.protocols() {
        None => None,
        Some(ps) => {
            let pp = format!("{path}.protocols");
            if ps.is_empty() {
                f.invalid(&pp, "must have at least 1 item");
            } else if ps.len() > 25 {
                f.blocking(
                    &pp,
                    format!("too many protocols: {} (at most 25)", ps.len()),
                );
            }
            let mut out = Vec::new();
            for (j, p) in ps.iter().enumerate() {
                out.extend(protocol(p, &format!("{pp}[{j}]"), f));
            }
            Some(out)
        }
    };
    // The experimental channel's CEL rule on an egress rule.
    let named = r
        .protocols()
        .is_some_and(|ps| ps.iter().any(|p| p.destination_named_port.is_some()));
    if non_pod_peer && named {
        f.cel.push(ferr(path, cnp::NAMED_PORT_MESSAGE));
    }
    if f.count() > before {
        return None;
    }
    let action = action?;
    let name = r.name().map(str::to_string);
    if !refused.is_empty() {
        for (field, what) in &refused {
            unsupported.push(ferr(
                field.clone(),
                match action {
                    Action::Accept => format!("{what}; this peer matches nothing (fail closed)"),
                    _ => format!(
                        "{what}; the {action} rule denies all traffic of its subjects instead (fail closed)"
                    ),
                },
            ));
        }
        if action != Action::Accept {
            return Some(ClusterRule {
                name,
                action: Action::Deny,
                peers: None,
                ports: None,
            });
        }
    }
    Some(ClusterRule {
        name,
        action,
        peers: Some(peers),
        ports,
    })
}

fn peer(p: &PeerView<'_>, path: &str, f: &mut Found) -> PeerOutcome {
    let set = [
        p.namespaces.is_some(),
        p.pods.is_some(),
        p.nodes.is_some(),
        p.networks.is_some(),
        p.domain_names.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let before = f.count();
    if set > 1 {
        f.blocking(path, "may set only one field (maxProperties 1)");
    }
    // Every part is checked, as the server does.
    let namespaces = p
        .namespaces
        .map(|s| selector(Some(s), &format!("{path}.namespaces"), f));
    let pods = p
        .pods
        .map(|s| namespaced_pod(Some(s), &format!("{path}.pods"), f));
    let nodes = p
        .nodes
        .map(|s| selector(Some(s), &format!("{path}.nodes"), f));
    let networks = p
        .networks
        .map(|n| networks(n, &format!("{path}.networks"), f));
    if let Some(d) = p.domain_names {
        domain_names(d, &format!("{path}.domainNames"), f);
    }
    if set == 0 {
        if let Some(k) = p.unrecognised.keys().next() {
            // A field nftpol does not know (a newer CRD's peer type, read
            // leniently): the server may accept it, nftpol cannot enforce it.
            return PeerOutcome::Unsupported(
                format!("{path}.{k}"),
                format!("peer field {k:?} {UNSUPPORTED_MARK}"),
            );
        }
        f.invalid(path, "must set exactly one peer field (minProperties 1)");
        return PeerOutcome::Invalid;
    }
    if f.count() > before {
        return PeerOutcome::Invalid;
    }
    let out = if let Some(Some(n)) = namespaces {
        Peer::Pods(PodMatch {
            namespaces: NamespaceScope::Selector(n),
            pods: Selector::everything(),
        })
    } else if let Some(Some(m)) = pods {
        Peer::Pods(m)
    } else if let Some(Some(n)) = nodes {
        Peer::Nodes(n)
    } else if let Some(Some(n)) = networks {
        Peer::Networks(n)
    } else if p.domain_names.is_some() {
        return PeerOutcome::Unsupported(
            format!("{path}.domainNames"),
            format!("domainNames {UNSUPPORTED_MARK}"),
        );
    } else {
        return PeerOutcome::Invalid;
    };
    PeerOutcome::Peer(out)
}

/// Whether Kubernetes' CEL `isCIDR` accepts `s` (Go's `netip.ParsePrefix`,
/// no zone, no IPv4-mapped IPv6): an address without leading zeros, a
/// decimal prefix length without leading zeros; host bits may be set (the
/// network is then the masked prefix). tests/validity.rs checks each case
/// against the real API server.
pub fn is_cidr(s: &str) -> bool {
    let Some((a, l)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = a.parse::<IpAddr>() else {
        return false;
    };
    // Kubernetes' CEL IP library refuses IPv4-mapped IPv6 addresses.
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        return false;
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !l.is_empty()
        && l.bytes().all(|b| b.is_ascii_digit())
        && (l == "0" || !l.starts_with('0'))
        && l.len() <= 3
        && l.parse::<u32>().is_ok_and(|n| n <= max)
}

fn networks(ns: &[String], path: &str, f: &mut Found) -> Option<Vec<Cidr>> {
    let before = f.count();
    list_bounds(ns.len(), path, f);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, n) in ns.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !seen.insert(n.as_str()) {
            f.other.push(ferr(&p, format!("duplicate value {n:?}")));
        }
        if n.chars().count() > 43 {
            f.blocking(&p, "may not be longer than 43 characters");
        }
        if is_cidr(n) {
            out.extend(Cidr::parse(n).ok());
        } else {
            f.cel.push(ferr(&p, format!("{n:?}: {}", cnp::CIDR_RULE.1)));
        }
    }
    if f.count() > before {
        return None;
    }
    out.sort();
    out.dedup();
    Some(out)
}

fn list_bounds(len: usize, path: &str, f: &mut Found) {
    if len == 0 {
        f.invalid(path, "must have at least 1 item");
    } else if len > 25 {
        f.blocking(path, format!("too many items: {len} (at most 25)"));
    }
}

fn domain_names(ds: &[String], path: &str, f: &mut Found) {
    list_bounds(ds.len(), path, f);
    let mut seen = BTreeSet::new();
    for (i, d) in ds.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !seen.insert(d.as_str()) {
            f.other.push(ferr(&p, format!("duplicate value {d:?}")));
        }
        if !is_domain_name(d) {
            f.invalid(
                &p,
                format!("{d:?} does not match {}", cnp::DOMAIN_NAME_PATTERN),
            );
        }
    }
}

/// The CRD's DomainName pattern, `A-z` typo included: an optional `*.`, two
/// or more labels, an optional trailing dot.
pub fn is_domain_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    let first = |c: u8| c.is_ascii_digit() || c.is_ascii_lowercase() || (b'A'..=b'z').contains(&c);
    let mid = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    labels.len() >= 2
        && labels.iter().all(|l| {
            let b = l.as_bytes();
            match b {
                [] => false,
                [c] => first(*c),
                [c, rest @ .., last] => {
                    first(*c) && rest.iter().all(|x| mid(*x)) && last.is_ascii_alphanumeric()
                }
            }
        })
}

fn protocol(p: &cnp::ProtocolPort, path: &str, f: &mut Found) -> Vec<Port> {
    let before = f.count();
    let set = [
        p.tcp.is_some(),
        p.udp.is_some(),
        p.sctp.is_some(),
        p.destination_named_port.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set == 0 {
        f.invalid(
            path,
            "must set exactly one of tcp, udp, sctp and destinationNamedPort (minProperties 1)",
        );
    } else if set > 1 {
        f.blocking(
            path,
            "may set only one of tcp, udp, sctp and destinationNamedPort (maxProperties 1)",
        );
    }
    let mut out = Vec::new();
    for (proto, name, pp) in [
        (Protocol::Tcp, "tcp", &p.tcp),
        (Protocol::Udp, "udp", &p.udp),
        (Protocol::Sctp, "sctp", &p.sctp),
    ] {
        if let Some(pp) = pp
            && let Some(m) = port(pp, &format!("{path}.{name}"), f)
        {
            out.push(Port {
                protocol: proto,
                port: m,
            });
        }
    }
    if let Some(n) = &p.destination_named_port {
        // The protocol is the container port's: one entry per protocol,
        // each matching only a port declared with it.
        out.extend(Protocol::ALL.map(|protocol| Port {
            protocol,
            port: PortMatch::Named(n.clone()),
        }));
    }
    if f.count() > before {
        return Vec::new();
    }
    out
}

fn port(p: &cnp::ProtocolPorts, path: &str, f: &mut Found) -> Option<PortMatch> {
    let Some(d) = &p.destination_port else {
        f.invalid(path, "must set destinationPort (minProperties 1)");
        return None;
    };
    let path = format!("{path}.destinationPort");
    let before = f.count();
    let in_range = |field: String, n: i64, f: &mut Found| {
        if !(1..=65535).contains(&n) {
            f.invalid(field, format!("{n} is not a port number (1 to 65535)"));
        }
    };
    match (d.number, &d.range) {
        (None, None) => f.invalid(&path, "must set number or range (minProperties 1)"),
        (Some(_), Some(_)) => f.blocking(
            &path,
            "may set only one of number and range (maxProperties 1)",
        ),
        _ => {}
    }
    if let Some(n) = d.number {
        in_range(format!("{path}.number"), n, f);
    }
    if let Some(r) = &d.range {
        let rp = format!("{path}.range");
        match r.start {
            None => f.required(format!("{rp}.start")),
            Some(s) => in_range(format!("{rp}.start"), s, f),
        }
        match r.end {
            None => f.required(format!("{rp}.end")),
            Some(e) => in_range(format!("{rp}.end"), e, f),
        }
        if let (Some(s), Some(e)) = (r.start, r.end)
            && s >= e
        {
            f.cel.push(ferr(&rp, cnp::RANGE_RULE.1));
        }
    }
    if f.count() > before {
        return None;
    }
    let u = |n: i64| u16::try_from(n).ok();
    match (d.number, &d.range) {
        (Some(n), None) => Some(PortMatch::Range(u(n)?, u(n)?)),
        (None, Some(r)) => Some(PortMatch::Range(u(r.start?)?, u(r.end?)?)),
        _ => None,
    }
}

/// Converts a Node: its name, labels and the InternalIP and ExternalIP
/// addresses of its status (parsed ones only, sorted, deduplicated).
/// `None` (with an error) without a name.
pub fn node(n: &core::Node, src: Option<&Source>, diags: &mut Vec<Diagnostic>) -> Option<Node> {
    let Some(name) = n.metadata.name.clone().filter(|n| !n.is_empty()) else {
        emit(
            diags,
            Diagnostic::error("a Node needs a name").field("metadata.name"),
            src,
            &"Node <unnamed>",
        );
        return None;
    };
    let mut addresses = Vec::new();
    for (i, a) in n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !matches!(a.type_.as_str(), "InternalIP" | "ExternalIP") {
            continue;
        }
        match a.address.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip),
            Err(_) => emit(
                diags,
                Diagnostic::warning(format!("{:?} is not an IP address; ignored", a.address))
                    .field(format!("status.addresses[{i}].address")),
                src,
                &format!("Node {name}"),
            ),
        }
    }
    addresses.sort();
    addresses.dedup();
    let pod_cidrs = node_pod_cidrs(n, &name, src, diags);
    Some(Node {
        name,
        labels: n.metadata.labels.clone().unwrap_or_default(),
        addresses,
        pod_cidrs,
    })
}

/// `spec.podCIDRs` (or the older single `spec.podCIDR` when the list is
/// absent), parsed, sorted and deduplicated. The API server validates these,
/// so an unparsable one only comes from a hand-written file: a warning, and
/// the CIDR is left out of the new-pod guard's scope.
fn node_pod_cidrs(
    n: &core::Node,
    name: &str,
    src: Option<&Source>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Cidr> {
    let spec = n.spec.as_ref();
    let (field, list): (&str, Vec<&String>) = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
        Some(l) if !l.is_empty() => ("spec.podCIDRs", l.iter().collect()),
        _ => (
            "spec.podCIDR",
            spec.and_then(|s| s.pod_cidr.as_ref()).into_iter().collect(),
        ),
    };
    let mut out = Vec::new();
    for (i, s) in list.into_iter().enumerate() {
        match Cidr::parse(s) {
            Ok(c) => out.push(c),
            Err(e) => {
                let path = if field == "spec.podCIDRs" {
                    format!("{field}[{i}]")
                } else {
                    field.to_string()
                };
                emit(
                    diags,
                    Diagnostic::warning(format!("{e}; left out of the new-pod guard's scope"))
                        .field(path),
                    src,
                    &format!("Node {name}"),
                )
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
