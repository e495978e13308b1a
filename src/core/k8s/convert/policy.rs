//! NetworkPolicy → [`Policy`]: defaulting, validation as the API server
//! does it, and the fail-closed form of a policy it would reject.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{FieldError, Labelled, emit, ferr};
use crate::core::diag::{Diagnostic, Source};
use crate::core::model::{
    Cidr, IpBlock, NamespaceScope, ObjectRef, Peer, PodMatch, Policy, Port, PortMatch, Protocol,
    Requirement, Rule, Selector,
};

/// Converts a NetworkPolicy with defaulting; invalid ones come back with
/// `valid: false` (fail closed) and one error diagnostic per problem.
pub fn policy(
    np: &net::NetworkPolicy,
    src: Option<&Source>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let namespace = np
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let Some(name) = np.metadata.name.clone().filter(|n| !n.is_empty()) else {
        emit(
            diags,
            Diagnostic::error("a NetworkPolicy needs a name").field("metadata.name"),
            src,
            &format!("NetworkPolicy {namespace}/<unnamed>"),
        );
        return None;
    };
    let id = ObjectRef::new(namespace, name);
    let object = Labelled("NetworkPolicy", &id);
    let default_spec = net::NetworkPolicySpec::default();
    let spec = np.spec.as_ref().unwrap_or(&default_spec);
    let mut errors: Vec<FieldError> = Vec::new();

    let pod_selector = match spec.pod_selector.as_ref() {
        None => Some(Selector::everything()),
        Some(s) => selector(s, "spec.podSelector", &mut errors),
    };

    // Defaulting, exactly as the API server's SetDefaults_NetworkPolicy.
    let (mut isolate_in, mut isolate_eg) = (false, false);
    match spec.policy_types.as_deref() {
        None | Some([]) => {
            isolate_in = true;
            isolate_eg = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        }
        Some(types) => {
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => isolate_in = true,
                    "Egress" => isolate_eg = true,
                    other => {
                        errors.push(ferr(
                            format!("spec.policyTypes[{i}]"),
                            format!("unsupported value {other:?} (Ingress or Egress)"),
                        ));
                        isolate_in = true;
                        isolate_eg = true;
                    }
                }
            }
        }
    }

    let ns = &id.namespace;
    let ingress: Vec<Rule> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("spec.ingress[{i}]");
            rule(
                r.from.as_deref(),
                r.ports.as_deref(),
                &path,
                "from",
                ns,
                &mut errors,
            )
        })
        .collect();
    let egress: Vec<Rule> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("spec.egress[{i}]");
            rule(
                r.to.as_deref(),
                r.ports.as_deref(),
                &path,
                "to",
                ns,
                &mut errors,
            )
        })
        .collect();

    let valid = errors.is_empty();
    for e in errors {
        let msg = format!(
            "{}; the policy is invalid and fails closed (its pods are isolated, nothing is allowed)",
            e.message
        );
        emit(diags, Diagnostic::error(msg).field(e.field), src, &object);
    }
    let (ingress, egress) = if valid {
        (ingress, egress)
    } else {
        (Vec::new(), Vec::new())
    };
    Some(Policy {
        id,
        pod_selector: pod_selector
            .filter(|_| valid)
            .unwrap_or_else(|| fail_closed_selector(spec)),
        ingress: isolate_in.then_some(ingress),
        egress: isolate_eg.then_some(egress),
        valid,
    })
}

/// The podSelector of an invalid policy: its own if that part is valid,
/// every pod of the namespace otherwise.
fn fail_closed_selector(spec: &net::NetworkPolicySpec) -> Selector {
    let mut scratch = Vec::new();
    spec.pod_selector
        .as_ref()
        .map_or(Some(Selector::everything()), |s| {
            selector(s, "", &mut scratch)
        })
        .unwrap_or_else(Selector::everything)
}

fn rule(
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    path: &str,
    peer_field: &str,
    ns: &str,
    errors: &mut Vec<FieldError>,
) -> Rule {
    let peers = match peers {
        None | Some([]) => None,
        Some(ps) => Some(
            ps.iter()
                .enumerate()
                .filter_map(|(j, p)| peer(p, &format!("{path}.{peer_field}[{j}]"), ns, errors))
                .collect(),
        ),
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(ps) => Some(
            ps.iter()
                .enumerate()
                .filter_map(|(j, p)| port(p, &format!("{path}.ports[{j}]"), errors))
                .collect(),
        ),
    };
    Rule { peers, ports }
}

fn peer(
    p: &net::NetworkPolicyPeer,
    path: &str,
    ns: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Peer> {
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(b), None, None) => ip_block(b, &format!("{path}.ipBlock"), errors).map(Peer::IpBlock),
        (Some(_), _, _) => {
            errors.push(ferr(
                path,
                "ipBlock may not be combined with podSelector or namespaceSelector",
            ));
            None
        }
        (None, None, None) => {
            errors.push(ferr(
                path,
                "a peer must set podSelector, namespaceSelector or ipBlock",
            ));
            None
        }
        (None, nsel, psel) => {
            let namespaces = match nsel {
                None => Some(NamespaceScope::Named(ns.to_string())),
                Some(s) => selector(s, &format!("{path}.namespaceSelector"), errors)
                    .map(NamespaceScope::Selector),
            };
            let pods = match psel {
                None => Some(Selector::everything()),
                Some(s) => selector(s, &format!("{path}.podSelector"), errors),
            };
            Some(Peer::Pods(PodMatch {
                namespaces: namespaces?,
                pods: pods?,
            }))
        }
    }
}

fn ip_block(b: &net::IPBlock, path: &str, errors: &mut Vec<FieldError>) -> Option<IpBlock> {
    let cidr = match Cidr::parse(&b.cidr) {
        Ok(c) => c,
        Err(e) => {
            errors.push(ferr(format!("{path}.cidr"), e.to_string()));
            return None;
        }
    };
    let mut except = Vec::new();
    let mut ok = true;
    for (i, e) in b.except.iter().flatten().enumerate() {
        let field = format!("{path}.except[{i}]");
        match Cidr::parse(e) {
            Ok(ec) if cidr.strictly_contains(&ec) => except.push(ec),
            Ok(_) => {
                errors.push(ferr(
                    field,
                    format!("{e:?} must be a strict subset of cidr {:?}", b.cidr),
                ));
                ok = false;
            }
            Err(err) => {
                errors.push(ferr(field, err.to_string()));
                ok = false;
            }
        }
    }
    except.sort();
    except.dedup();
    ok.then_some(IpBlock { cidr, except })
}

fn port(p: &net::NetworkPolicyPort, path: &str, errors: &mut Vec<FieldError>) -> Option<Port> {
    let proto_s = p.protocol.as_deref().unwrap_or("TCP");
    let Some(protocol) = Protocol::parse(proto_s) else {
        errors.push(ferr(
            format!("{path}.protocol"),
            format!("unsupported protocol {proto_s:?} (TCP, UDP or SCTP)"),
        ));
        return None;
    };
    let in_range = |n: i32| (1..=65535).contains(&n);
    let port = match (&p.port, p.end_port) {
        (None, None) => PortMatch::All,
        (None, Some(_)) => {
            errors.push(ferr(
                format!("{path}.endPort"),
                "endPort requires a numeric port",
            ));
            return None;
        }
        (Some(IntOrString::Int(n)), end) => {
            if !in_range(*n) {
                errors.push(ferr(
                    format!("{path}.port"),
                    format!("{n} is not a valid port number (1-65535)"),
                ));
                return None;
            }
            let end = end.unwrap_or(*n);
            if !in_range(end) || end < *n {
                errors.push(ferr(
                    format!("{path}.endPort"),
                    format!("{end} must be a port number (1-65535) not below port {n}"),
                ));
                return None;
            }
            PortMatch::Range(*n as u16, end as u16)
        }
        (Some(IntOrString::String(s)), end) => {
            if let Err(why) = validate_port_name(s) {
                errors.push(ferr(format!("{path}.port"), why));
                return None;
            }
            if end.is_some() {
                errors.push(ferr(
                    format!("{path}.endPort"),
                    "endPort may not be used with a named port",
                ));
                return None;
            }
            PortMatch::Named(s.clone())
        }
    };
    Some(Port { protocol, port })
}

/// Kubernetes' IANA_SVC_NAME rule for named ports.
pub fn validate_port_name(s: &str) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.is_empty() || s.len() > 15 {
        Err(format!("port name {s:?} must be 1-15 characters"))
    } else if !ok_chars {
        Err(format!(
            "port name {s:?} may contain only lower-case letters, digits and '-'"
        ))
    } else if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        Err(format!(
            "port name {s:?} must contain a letter (a number belongs in an integer port)"
        ))
    } else if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        Err(format!(
            "port name {s:?} may not start or end with '-' or contain '--'"
        ))
    } else {
        Ok(())
    }
}

/// Converts a LabelSelector; `None` (with errors) when an expression is invalid.
fn selector(s: &LabelSelector, path: &str, errors: &mut Vec<FieldError>) -> Option<Selector> {
    let mut reqs = Vec::new();
    let mut ok = true;
    for (k, v) in s.match_labels.iter().flatten() {
        reqs.push(Requirement::In(k.clone(), BTreeSet::from([v.clone()])));
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
        if e.key.is_empty() {
            errors.push(ferr(format!("{field}.key"), "key must not be empty"));
            ok = false;
            continue;
        }
        let r = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                errors.push(ferr(
                    format!("{field}.values"),
                    format!("operator {} needs at least one value", e.operator),
                ));
                ok = false;
                continue;
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errors.push(ferr(
                    format!("{field}.values"),
                    format!("operator {} takes no values", e.operator),
                ));
                ok = false;
                continue;
            }
            "In" => Requirement::In(e.key.clone(), values),
            "NotIn" => Requirement::NotIn(e.key.clone(), values),
            "Exists" => Requirement::Exists(e.key.clone()),
            "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
            op => {
                errors.push(ferr(
                    format!("{field}.operator"),
                    format!("unknown operator {op:?} (In, NotIn, Exists, DoesNotExist)"),
                ));
                ok = false;
                continue;
            }
        };
        reqs.push(r);
    }
    ok.then(|| Selector::new(reqs))
}
