//! NetworkPolicy → [`Policy`]: defaulting, validation as the API server
//! does it, and the fail-closed form of a policy it would reject.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{FieldError, Labelled, audit_mode, emit, ferr, validate};
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
    if !validate::dns_subdomain(&id.name) {
        errors.push(ferr(
            "metadata.name",
            format!(
                "{:?} is not a valid name (a lower-case DNS subdomain: a-z, 0-9, '-' and '.', at most 253)",
                id.name
            ),
        ));
    }

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
        Some(types) if types.len() > 2 => {
            errors.push(ferr(
                "spec.policyTypes",
                format!("may not list more than two policyTypes ({})", types.len()),
            ));
            isolate_in = true;
            isolate_eg = true;
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
    let audit = audit_mode(np.metadata.annotations.as_ref(), valid, src, &object, diags);
    Some(Policy {
        id,
        pod_selector: pod_selector
            .filter(|_| valid)
            .unwrap_or_else(|| fail_closed_selector(spec)),
        ingress: isolate_in.then_some(ingress),
        egress: isolate_eg.then_some(egress),
        valid,
        audit,
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
    // Every part is validated, as the API server does, before the shape.
    let before = errors.len();
    let pods = p
        .pod_selector
        .as_ref()
        .map(|s| selector(s, &format!("{path}.podSelector"), errors));
    let namespaces = p
        .namespace_selector
        .as_ref()
        .map(|s| selector(s, &format!("{path}.namespaceSelector"), errors));
    let block = p
        .ip_block
        .as_ref()
        .map(|b| ip_block(b, &format!("{path}.ipBlock"), errors));
    match (block, namespaces, pods) {
        (None, None, None) => {
            errors.push(ferr(
                path,
                "a peer must set podSelector, namespaceSelector or ipBlock",
            ));
            None
        }
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            errors.push(ferr(
                path,
                "ipBlock may not be combined with podSelector or namespaceSelector",
            ));
            None
        }
        _ if errors.len() > before => None,
        (Some(b), None, None) => b.map(Peer::IpBlock),
        (None, nsel, psel) => Some(Peer::Pods(PodMatch {
            namespaces: match nsel {
                None => NamespaceScope::Named(ns.to_string()),
                Some(s) => NamespaceScope::Selector(s?),
            },
            pods: psel.unwrap_or_else(|| Some(Selector::everything()))?,
        })),
    }
}

fn ip_block(b: &net::IPBlock, path: &str, errors: &mut Vec<FieldError>) -> Option<IpBlock> {
    let field = format!("{path}.cidr");
    if b.cidr.is_empty() {
        errors.push(ferr(field, "cidr is required"));
        return None;
    }
    let before = errors.len();
    if let Err(why) = validate::strict_cidr(&b.cidr) {
        errors.push(ferr(field, cidr_message(&b.cidr, why)));
    }
    // As the API server: `except` is checked against the network its lenient
    // parse gives (a cidr with host bits is an error, and still a network).
    let net = validate::sloppy_cidr(&b.cidr)?;
    for (i, e) in b.except.iter().flatten().enumerate() {
        let field = format!("{path}.except[{i}]");
        if let Err(why) = validate::strict_cidr(e) {
            errors.push(ferr(field, cidr_message(e, why)));
        } else if !validate::sloppy_cidr(e).is_some_and(|ec| net.strictly_contains(&ec)) {
            errors.push(ferr(
                field,
                format!("{e:?} must be a strict subset of cidr {:?}", b.cidr),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    let cidr = Cidr::parse(&b.cidr).ok()?;
    let mut except: Vec<Cidr> = b
        .except
        .iter()
        .flatten()
        .map(|e| Cidr::parse(e).ok())
        .collect::<Option<_>>()?;
    except.sort();
    except.dedup();
    Some(IpBlock { cidr, except })
}

/// Why a CIDR is invalid: the model's parse error where it has one (not
/// `address/length`, prefix too long), else the API server's stricter rule.
fn cidr_message(s: &str, why: String) -> String {
    match Cidr::parse(s) {
        Err(e) if validate::sloppy_cidr(s).is_none() => e.to_string(),
        _ => why,
    }
}

fn port(p: &net::NetworkPolicyPort, path: &str, errors: &mut Vec<FieldError>) -> Option<Port> {
    // Every problem is reported, as the API server does.
    let before = errors.len();
    let proto_s = p.protocol.as_deref().unwrap_or("TCP");
    let protocol = Protocol::parse(proto_s);
    if protocol.is_none() {
        errors.push(ferr(
            format!("{path}.protocol"),
            format!("unsupported protocol {proto_s:?} (TCP, UDP or SCTP)"),
        ));
    }
    let in_range = |n: i32| (1..=65535).contains(&n);
    let end_field = || format!("{path}.endPort");
    let port = match (&p.port, p.end_port) {
        (None, None) => Some(PortMatch::All),
        (None, Some(_)) => {
            errors.push(ferr(end_field(), "endPort requires a numeric port"));
            None
        }
        (Some(IntOrString::Int(n)), end) => {
            if !in_range(*n) {
                errors.push(ferr(
                    format!("{path}.port"),
                    format!("{n} is not a valid port number (1-65535)"),
                ));
            }
            if let Some(e) = end
                && (e < *n || !in_range(e))
            {
                errors.push(ferr(
                    end_field(),
                    format!("{e} must be a port number (1-65535) not below port {n}"),
                ));
            }
            let end = end.unwrap_or(*n);
            u16::try_from(*n)
                .ok()
                .zip(u16::try_from(end).ok())
                .map(|(a, b)| PortMatch::Range(a, b))
        }
        (Some(IntOrString::String(s)), end) => {
            if end.is_some() {
                errors.push(ferr(
                    end_field(),
                    "endPort may not be used with a named port",
                ));
            }
            if let Err(why) = validate_port_name(s) {
                errors.push(ferr(format!("{path}.port"), why));
            }
            Some(PortMatch::Named(s.clone()))
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(Port {
        protocol: protocol?,
        port: port?,
    })
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

/// Converts a LabelSelector; `None` (with errors) when any part is invalid.
/// Every problem is reported, as the API server does.
pub(super) fn selector(
    s: &LabelSelector,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Selector> {
    let before = errors.len();
    let mut reqs = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        // The API server names the map, not the key.
        for check in [validate::label_key(k), validate::label_value(v)] {
            if let Err(why) = check {
                errors.push(ferr(format!("{path}.matchLabels"), why));
            }
        }
        reqs.push(Requirement::In(k.clone(), BTreeSet::from([v.clone()])));
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let raw = e.values.as_deref().unwrap_or_default();
        let values: BTreeSet<String> = raw.iter().cloned().collect();
        let r = match e.operator.as_str() {
            "In" | "NotIn" if raw.is_empty() => {
                errors.push(ferr(
                    format!("{field}.values"),
                    format!("operator {} needs at least one value", e.operator),
                ));
                None
            }
            "Exists" | "DoesNotExist" if !raw.is_empty() => {
                errors.push(ferr(
                    format!("{field}.values"),
                    format!("operator {} takes no values", e.operator),
                ));
                None
            }
            "In" => Some(Requirement::In(e.key.clone(), values)),
            "NotIn" => Some(Requirement::NotIn(e.key.clone(), values)),
            "Exists" => Some(Requirement::Exists(e.key.clone())),
            "DoesNotExist" => Some(Requirement::DoesNotExist(e.key.clone())),
            op => {
                errors.push(ferr(
                    format!("{field}.operator"),
                    format!("unknown operator {op:?} (In, NotIn, Exists, DoesNotExist)"),
                ));
                None
            }
        };
        if let Err(why) = validate::label_key(&e.key) {
            errors.push(ferr(format!("{field}.key"), why));
        }
        for (j, v) in raw.iter().enumerate() {
            if let Err(why) = validate::label_value(v) {
                errors.push(ferr(format!("{field}.values[{j}]"), why));
            }
        }
        reqs.extend(r);
    }
    (errors.len() == before).then(|| Selector::new(reqs))
}
