//! `apiserver-port`: egress to the API server on 443 when, after DNAT, it
//! listens on another port. Pods reach the API server through Service
//! `default/kubernetes` (443); kube-proxy rewrites that to an endpoint of its
//! EndpointSlice, usually a control-plane node's address and port 6443,
//! before nftpol's hook sees the packet. A rule allowing 443 to the
//! ClusterIP, or to the endpoint's address, then never matches.
//!
//! Only when the input holds the Service and its EndpointSlice, and their
//! ports differ. A rule is looked at when it lists TCP 443 and an ipBlock
//! (not `/0`) holding the ClusterIP or an endpoint address: "443 to
//! anywhere" is ordinary HTTPS egress and says nothing about the API server.
//! It is flagged unless every pod its policy selects may reach every
//! endpoint on the endpoint port (checked with `explain`'s evaluator, so
//! another rule that allows it counts).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{LintInput, some_pods, warning};
use crate::core::diag::Diagnostic;
use crate::core::explain::{Endpoint, PortArg, PortSpec, Query};
use crate::core::graph::SelectorGraph;
use crate::core::model::{Cluster, Direction, Family, ObjectRef, Peer, PortMatch, Protocol};

const CODE: &str = "apiserver-port";

pub(super) fn port_after_dnat(
    cluster: &Cluster,
    graph: &SelectorGraph,
    input: &LintInput,
    out: &mut Vec<Diagnostic>,
) {
    let Some(svc) = input
        .services
        .iter()
        .find(|s| s.id == ObjectRef::new("default", "kubernetes"))
    else {
        return;
    };
    let Some(sport) = svc
        .ports
        .iter()
        .find(|p| p.protocol == Protocol::Tcp && p.port == 443)
    else {
        return;
    };
    let slices: Vec<_> = input
        .endpoint_slices
        .iter()
        .filter(|e| e.id.namespace == "default" && e.service.as_deref() == Some("kubernetes"))
        .collect();
    // The endpoint port of the Service's 443: the slice port of the same name.
    let Some(target) = slices
        .iter()
        .flat_map(|e| e.ports.iter())
        .find(|p| p.name == sport.name && p.protocol == Protocol::Tcp)
        .map(|p| p.port)
    else {
        return;
    };
    if target == 443 {
        return;
    }
    let endpoints: BTreeSet<IpAddr> = slices
        .iter()
        .flat_map(|e| e.addresses.iter().copied())
        .collect();
    if endpoints.is_empty() {
        return;
    }
    let slice_names = slices
        .iter()
        .map(|e| e.id.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let addrs = endpoints
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    for pol in cluster.policies.values().filter(|p| p.valid) {
        for (i, rule) in pol
            .rules(Direction::Egress)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(ports) = &rule.ports else { continue };
            let covers = |n: u16| {
                ports.iter().position(|p| {
                    p.protocol == Protocol::Tcp
                        && match p.port {
                            PortMatch::All => true,
                            PortMatch::Range(a, b) => a <= n && n <= b,
                            PortMatch::Named(_) => false,
                        }
                })
            };
            let Some(j) = covers(443) else { continue };
            if covers(target).is_some() {
                continue;
            }
            let named: Vec<String> = rule
                .peers
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    Peer::IpBlock(b) if b.cidr.len > 0 => Some(b),
                    _ => None,
                })
                .flat_map(|b| {
                    let ranges = b.ranges();
                    let holds = move |ip: &IpAddr| ranges.iter().any(|r| r.contains(ip));
                    svc.cluster_ips
                        .iter()
                        .filter(|ip| holds(ip))
                        .map(|ip| format!("the ClusterIP {ip}"))
                        .chain(
                            endpoints
                                .iter()
                                .filter(|ip| holds(ip))
                                .map(|ip| format!("the endpoint {ip}")),
                        )
                        .collect::<Vec<_>>()
                })
                .collect();
            if named.is_empty() {
                continue;
            }
            // Pods of the policy that cannot reach an endpoint on the target port.
            let selected: Vec<&ObjectRef> = cluster
                .pods
                .values()
                .filter(|p| {
                    p.id.namespace == pol.id.namespace && pol.pod_selector.matches(&p.labels)
                })
                .map(|p| &p.id)
                .collect();
            let blocked: Vec<&ObjectRef> = selected
                .iter()
                .copied()
                .filter(|pod| !reaches(cluster, graph, pod, &endpoints, target))
                .collect();
            if !selected.is_empty() && blocked.is_empty() {
                continue;
            }
            let who = if blocked.is_empty() {
                "the pods it selects".to_string()
            } else {
                format!("pods {}", some_pods(blocked.iter().copied(), 3))
            };
            out.push(warning(
                input,
                CODE,
                format!("NetworkPolicy {}", pol.id),
                &format!("spec.egress[{i}].ports[{j}]"),
                &format!(
                    "allows TCP 443 to the API server ({}; Service default/kubernetes), but nftpol sees that traffic after DNAT, addressed to its endpoints {addrs} on TCP {target} (EndpointSlice {slice_names}), which no egress rule allows for {who}. Allow TCP {target} to those addresses (ipBlock /32 or /128 each).",
                    named.join(", ")
                ),
            ));
        }
    }
}

/// Whether the pod's egress lets TCP `port` through to every endpoint of its family.
fn reaches(
    cluster: &Cluster,
    graph: &SelectorGraph,
    pod: &ObjectRef,
    endpoints: &BTreeSet<IpAddr>,
    port: u16,
) -> bool {
    let families: BTreeSet<Family> = cluster.pods[pod].ips.iter().map(Family::of).collect();
    endpoints
        .iter()
        .filter(|ip| families.contains(&Family::of(ip)))
        .all(|ip| {
            let q = Query {
                from: Endpoint::Pod(pod.clone()),
                to: Endpoint::Ip(*ip),
                port: PortArg {
                    port: PortSpec::Number(port),
                    protocol: Some(Protocol::Tcp),
                },
                family: Some(Family::of(ip)),
            };
            crate::core::explain::explain(cluster, graph, &q).is_ok_and(|ex| ex.egress.allowed)
        })
}
