//! Kubernetes objects → the validated model, with defaulting and validation.
//!
//! Validation mirrors what the API server enforces for networking.k8s.io/v1.
//! A policy it would reject is kept, but fails closed: it isolates the pods it
//! selects (all pods of its namespace if its podSelector is invalid) in its
//! directions (both if policyTypes is invalid) and allows nothing.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::core::diag::{Diagnostic, Source};
use crate::core::model::{
    Cidr, IpBlock, LOG_DROPS_ANNOTATION, Labels, NAMESPACE_NAME_LABEL, Namespace, NamespaceScope,
    ObjectRef, Peer, Pod, PodMatch, Policy, Port, PortMatch, Protocol, Requirement, Rule, Selector,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn np(yaml: &str) -> (Option<Policy>, Vec<Diagnostic>) {
        let obj: net::NetworkPolicy = serde_saphyr::from_str(yaml).unwrap();
        let mut d = Vec::new();
        (policy(&obj, None, &mut d), d)
    }

    const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\n";

    #[test]
    fn policy_types_defaulting_table() {
        // (spec, isolates ingress, isolates egress, why)
        let rows = [
            (
                "spec: {podSelector: {}}",
                true,
                false,
                "no policyTypes, no egress: Ingress only",
            ),
            (
                "spec: {podSelector: {}, egress: [{}]}",
                true,
                true,
                "egress rules add Egress",
            ),
            (
                "spec: {podSelector: {}, egress: []}",
                true,
                false,
                "egress: [] does not add Egress (len == 0)",
            ),
            (
                "spec: {podSelector: {}, policyTypes: []}",
                true,
                false,
                "empty policyTypes is defaulted too",
            ),
            (
                "spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}",
                false,
                true,
                "explicit Egress only ignores ingress rules",
            ),
            (
                "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}",
                true,
                true,
                "explicit both",
            ),
            (
                "spec: {podSelector: {}, policyTypes: [Sideways]}",
                true,
                true,
                "invalid policyType fails closed both ways",
            ),
        ];
        for (spec, want_in, want_eg, why) in rows {
            let (p, _) = np(&format!("{HEAD}{spec}"));
            let p = p.unwrap();
            assert_eq!(p.ingress.is_some(), want_in, "{why}: ingress");
            assert_eq!(p.egress.is_some(), want_eg, "{why}: egress");
        }
    }

    #[test]
    fn absent_and_empty_lists() {
        let (p, d) = np(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - {{}}\n  - from: []\n    ports: []\n  - ports: [{{}}]\n  - ports: [{{protocol: UDP}}]\n"
        ));
        assert!(d.is_empty(), "{d:?}");
        let rules = p.unwrap().ingress.unwrap();
        assert_eq!(rules[0], Rule::default(), "{{}} = all peers, all ports");
        assert_eq!(rules[1], Rule::default(), "empty lists mean all too");
        let all_tcp = Port {
            protocol: Protocol::Tcp,
            port: PortMatch::All,
        };
        assert_eq!(
            rules[2].ports,
            Some(vec![all_tcp]),
            "ports: [{{}}] = every TCP port"
        );
        assert_eq!(rules[3].ports.as_ref().unwrap()[0].protocol, Protocol::Udp);
        let (p, _) = np(&format!("{HEAD}spec: {{podSelector: {{}}, ingress: []}}"));
        assert_eq!(
            p.unwrap().ingress,
            Some(vec![]),
            "ingress: [] allows nothing"
        );
    }

    #[test]
    fn ports_are_defaulted_and_parsed() {
        let (p, d) = np(&format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{port: 80}}, {{port: http}}, {{protocol: SCTP, port: 1000, endPort: 2000}}]\n"
        ));
        assert!(d.is_empty(), "{d:?}");
        let ports = p.unwrap().ingress.unwrap()[0].ports.clone().unwrap();
        assert_eq!(
            ports[0],
            Port {
                protocol: Protocol::Tcp,
                port: PortMatch::Range(80, 80)
            }
        );
        assert_eq!(ports[1].port, PortMatch::Named("http".into()));
        assert_eq!(
            ports[2],
            Port {
                protocol: Protocol::Sctp,
                port: PortMatch::Range(1000, 2000)
            }
        );
    }

    #[test]
    fn invalid_policies_fail_closed_with_field_paths() {
        // (spec fragment, expected field, why)
        let rows = [
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
                "spec.ingress[0].from[0].ipBlock.cidr",
                "bad prefix",
            ),
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]",
                "spec.ingress[0].from[0].ipBlock.except[0]",
                "except outside",
            ),
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]",
                "spec.ingress[0].from[0].ipBlock.except[0]",
                "except equal to cidr",
            ),
            (
                "egress: [{to: [{podSelector: {matchExpressions: [{key: a, operator: Is}]}}]}]",
                "spec.egress[0].to[0].podSelector.matchExpressions[0].operator",
                "bad operator",
            ),
            (
                "ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]}]",
                "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
                "In without values",
            ),
            (
                "ingress: [{ports: [{port: 70000}]}]",
                "spec.ingress[0].ports[0].port",
                "port out of range",
            ),
            (
                "ingress: [{ports: [{port: 0}]}]",
                "spec.ingress[0].ports[0].port",
                "port zero",
            ),
            (
                "ingress: [{ports: [{port: 90, endPort: 80}]}]",
                "spec.ingress[0].ports[0].endPort",
                "endPort below port",
            ),
            (
                "ingress: [{ports: [{port: http, endPort: 80}]}]",
                "spec.ingress[0].ports[0].endPort",
                "endPort with a name",
            ),
            (
                "ingress: [{ports: [{endPort: 80}]}]",
                "spec.ingress[0].ports[0].endPort",
                "endPort alone",
            ),
            (
                "ingress: [{ports: [{port: \"80\"}]}]",
                "spec.ingress[0].ports[0].port",
                "digits as a port name",
            ),
            (
                "ingress: [{ports: [{protocol: ICMP}]}]",
                "spec.ingress[0].ports[0].protocol",
                "unknown protocol",
            ),
            (
                "ingress: [{from: [{}]}]",
                "spec.ingress[0].from[0]",
                "empty peer",
            ),
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
                "spec.ingress[0].from[0]",
                "ipBlock with a selector",
            ),
        ];
        for (frag, field, why) in rows {
            let (p, d) = np(&format!(
                "{HEAD}spec:\n  podSelector: {{matchLabels: {{app: a}}}}\n  {frag}\n"
            ));
            let p = p.unwrap();
            assert!(!p.valid, "{why}: must be invalid");
            assert_eq!(
                p.ingress,
                Some(vec![]),
                "{why}: ingress isolated, nothing allowed"
            );
            assert!(
                p.egress.as_ref().is_none_or(|e| e.is_empty()),
                "{why}: egress allows nothing"
            );
            assert_eq!(
                p.pod_selector,
                Selector::from_labels([("app", "a")]),
                "{why}: still selects its pods"
            );
            assert_eq!(d.len(), 1, "{why}: {d:?}");
            assert_eq!(d[0].field.as_deref(), Some(field), "{why}");
            assert!(
                d[0].to_string().contains("NetworkPolicy ns/p"),
                "{why}: {}",
                d[0]
            );
        }
        let (p, _) = np(&format!(
            "{HEAD}spec:\n  podSelector: {{matchExpressions: [{{key: a, operator: Bogus}}]}}\n"
        ));
        assert!(
            p.unwrap().pod_selector.is_everything(),
            "an invalid podSelector isolates the whole namespace"
        );
    }

    #[test]
    fn port_names() {
        for ok in ["http", "a", "web-8080", "x1"] {
            assert!(validate_port_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "HTTP",
            "8080",
            "-a",
            "a-",
            "a--b",
            "sixteen-chars-xx",
            "a_b",
        ] {
            assert!(validate_port_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_drops_annotation() {
        // (annotations, expected, warnings, why)
        let rows = [
            ("{}", None, 0, "absent: the agent-wide setting applies"),
            ("{nftpol.io/log-drops: \"true\"}", Some(true), 0, "opt in"),
            (
                "{nftpol.io/log-drops: \"false\"}",
                Some(false),
                0,
                "opt out",
            ),
            (
                "{nftpol.io/log-drops: \"yes\"}",
                None,
                1,
                "not a bool: warned, ignored",
            ),
            (
                "{other.io/log-drops: \"true\"}",
                None,
                0,
                "someone else's annotation",
            ),
        ];
        for (ann, want, warnings, why) in rows {
            let yaml = format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: n, annotations: {ann}}}\n"
            );
            let obj: core::Namespace = serde_saphyr::from_str(&yaml).unwrap();
            let mut d = Vec::new();
            let ns = namespace(&obj, None, &mut d).expect(why);
            assert_eq!(ns.log_drops, want, "{why}");
            assert_eq!(d.len(), warnings, "{why}: {d:?}");
            assert!(d.iter().all(|d| !d.is_error()), "{why}");
            if let Some(w) = d.first() {
                let text = w.to_string();
                assert!(
                    text.contains("Namespace n") && text.contains("nftpol.io/log-drops"),
                    "{why}: {text}"
                );
            }
        }
    }
}
