//! Kubernetes objects → the validated model, with defaulting and validation.
//!
//! Validation mirrors what the API server enforces for networking.k8s.io/v1.
//! A policy it would reject is kept, but fails closed: it isolates the pods it
//! selects (all pods of its namespace if its podSelector is invalid) in its
//! directions (both if policyTypes is invalid) and allows nothing.
//!
//! Namespaces and pods here; policies (rules, peers, ports, selectors) in
//! [`policy`]; ClusterNetworkPolicies and Nodes in `cluster_policy`; the
//! API server's label and CIDR string rules in `validate`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;

use crate::core::diag::{Diagnostic, Source};
use crate::core::model::{
    LOG_DROPS_ANNOTATION, Labels, MODE_ANNOTATION, NAMESPACE_NAME_LABEL, Namespace, ObjectRef, Pod,
    Protocol,
};

/// A field-level problem found while converting one object.
struct FieldError {
    field: String,
    message: String,
}

fn ferr(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// `Kind namespace/name`, formatted only when a diagnostic is emitted.
struct Labelled<'a>(&'static str, &'a ObjectRef);

impl std::fmt::Display for Labelled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

fn emit(
    diags: &mut Vec<Diagnostic>,
    d: Diagnostic,
    src: Option<&Source>,
    object: &dyn std::fmt::Display,
) {
    let d = d.on(object.to_string());
    diags.push(match src {
        Some(s) => d.at(s),
        None => d,
    });
}

/// The `nftpol.io/mode` annotation of a policy: true for `audit`. `enforce`
/// or no annotation enforce; any other value is a warning naming the field
/// and enforces (never wider access). An invalid policy is never audited: it
/// fails closed, and a warning says the annotation is ignored.
fn audit_mode(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    valid: bool,
    src: Option<&Source>,
    object: &dyn std::fmt::Display,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let field = format!("metadata.annotations[{MODE_ANNOTATION}]");
    match annotations
        .and_then(|a| a.get(MODE_ANNOTATION))
        .map(String::as_str)
    {
        None | Some("enforce") => false,
        Some("audit") if valid => true,
        Some("audit") => {
            emit(
                diags,
                Diagnostic::warning(
                    "audit mode ignored: the policy is invalid, so it is enforced and fails closed",
                )
                .field(field),
                src,
                object,
            );
            false
        }
        Some(other) => {
            emit(
                diags,
                Diagnostic::warning(format!(
                    "{other:?} is neither \"audit\" nor \"enforce\"; the policy is enforced"
                ))
                .field(field),
                src,
                object,
            );
            false
        }
    }
}

/// Converts a Namespace; adds the `kubernetes.io/metadata.name` label the API
/// server always sets. `None` (with an error) when it has no name.
pub fn namespace(
    ns: &core::Namespace,
    src: Option<&Source>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Namespace> {
    let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) else {
        emit(
            diags,
            Diagnostic::error("a Namespace needs a name").field("metadata.name"),
            src,
            &"Namespace <unnamed>",
        );
        return None;
    };
    let mut labels: Labels = ns.metadata.labels.clone().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
    let log_drops = match ns
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOG_DROPS_ANNOTATION))
        .map(String::as_str)
    {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            emit(
                diags,
                Diagnostic::warning(format!(
                    "{other:?} is neither \"true\" nor \"false\"; ignored (the agent-wide drop-logging setting applies)"
                ))
                .field(format!("metadata.annotations[{LOG_DROPS_ANNOTATION}]")),
                src,
                &format!("Namespace {name}"),
            );
            None
        }
    };
    Some(Namespace {
        name,
        labels,
        log_drops,
    })
}

/// Converts a Pod. `None` when it takes no part in policy: host-network,
/// finished (Succeeded/Failed), or without an IP yet — or when it is invalid
/// (then with an error diagnostic).
pub fn pod(p: &core::Pod, src: Option<&Source>, diags: &mut Vec<Diagnostic>) -> Option<Pod> {
    let namespace = p
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let Some(name) = p.metadata.name.clone().filter(|n| !n.is_empty()) else {
        emit(
            diags,
            Diagnostic::error("a Pod needs a name").field("metadata.name"),
            src,
            &format!("Pod {namespace}/<unnamed>"),
        );
        return None;
    };
    let id = ObjectRef::new(namespace, name);
    // Formatted only when a diagnostic needs it: conversion runs for every
    // pod on every agent recompile.
    let object = Labelled("Pod", &id);
    let spec = p.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return None;
    }
    let status = p.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    // (index in status.podIPs or None for status.podIP, address).
    let mut raw_ips: Vec<(Option<usize>, &str)> = Vec::new();
    if let Some(st) = status {
        if let Some(ips) = &st.pod_ips {
            for (i, ip) in ips.iter().enumerate() {
                raw_ips.push((Some(i), ip.ip.as_str()));
            }
        }
        if raw_ips.is_empty()
            && let Some(ip) = &st.pod_ip
        {
            raw_ips.push((None, ip.as_str()));
        }
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for (i, s) in raw_ips {
        let field = || match i {
            Some(i) => format!("status.podIPs[{i}].ip"),
            None => "status.podIP".to_string(),
        };
        if s.is_empty() {
            continue;
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => {
                if ips.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                    emit(
                        diags,
                        Diagnostic::warning(format!(
                            "{s} ignored: the pod already has an address of that family"
                        ))
                        .field(field()),
                        src,
                        &object,
                    );
                } else {
                    ips.push(ip);
                }
            }
            Err(_) => {
                emit(
                    diags,
                    Diagnostic::error(format!("{s:?} is not an IP address; pod ignored"))
                        .field(field()),
                    src,
                    &object,
                );
                return None;
            }
        }
    }
    if ips.is_empty() {
        return None;
    }
    ips.sort();
    let mut named_ports = std::collections::BTreeMap::new();
    if let Some(spec) = spec {
        // Sidecars (init containers that keep running) serve ports too.
        let containers = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| ("spec.containers", i, c))
            .chain(
                spec.init_containers
                    .iter()
                    .flatten()
                    .enumerate()
                    .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
                    .map(|(i, c)| ("spec.initContainers", i, c)),
            );
        for (list, i, c) in containers {
            for (j, cp) in c.ports.iter().flatten().enumerate() {
                let Some(pname) = cp.name.clone().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let field = || format!("{list}[{i}].ports[{j}]");
                let proto = cp.protocol.as_deref().unwrap_or("TCP");
                let Some(proto) = Protocol::parse(proto) else {
                    emit(
                        diags,
                        Diagnostic::warning(format!("unknown protocol {proto:?}; port ignored"))
                            .field(format!("{}.protocol", field())),
                        src,
                        &object,
                    );
                    continue;
                };
                let Some(num) = u16::try_from(cp.container_port).ok().filter(|n| *n > 0) else {
                    emit(
                        diags,
                        Diagnostic::warning(format!(
                            "{} is not a port number; port ignored",
                            cp.container_port
                        ))
                        .field(format!("{}.containerPort", field())),
                        src,
                        &object,
                    );
                    continue;
                };
                if named_ports.contains_key(&pname) {
                    emit(
                        diags,
                        Diagnostic::warning(format!(
                            "port name {pname:?} used twice in the pod; the first one counts"
                        ))
                        .field(format!("{}.name", field())),
                        src,
                        &object,
                    );
                    continue;
                }
                named_ports.insert(pname, (proto, num));
            }
        }
    }
    Some(Pod {
        id,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ips,
        named_ports,
    })
}

mod cluster_policy;
mod policy;
mod validate;

pub use cluster_policy::{
    SELECTOR_MARK, UNSUPPORTED_MARK, cluster_policy, is_cidr, is_domain_name, node,
};
pub use policy::{policy, validate_port_name};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_policy_tests;
