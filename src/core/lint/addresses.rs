//! `ipblock-pod-range` and `ipblock-service-range`: an ipBlock (or a
//! ClusterNetworkPolicy's `networks`) that includes pod addresses or Service
//! ClusterIPs.
//!
//! - Service range: nftpol's hook sees a packet after kube-proxy's DNAT,
//!   addressed to a backend (its address and targetPort), so a ClusterIP
//!   never matches as a destination, and no packet comes from one.
//! - Pod range: nftpol does match ipBlocks against pod addresses (so do
//!   Calico and kube-router), but upstream leaves it to the implementation
//!   (Cilium ignores ipBlocks for pod traffic), and a pod's address changes
//!   whenever it is recreated: pods are meant to be selected by labels.
//!
//! The pod range is the Nodes' `spec.podCIDRs` when the input has them, else
//! the addresses of the input's pods; the Service range is the ClusterIPs of
//! the input's Services plus `--service-cidr`. Not flagged: a `/0` block
//! ("anywhere", pods included on purpose), and a block whose excepts remove
//! the ranges.

use std::net::IpAddr;

use super::{LintInput, LintOptions, warning};
use crate::core::diag::Diagnostic;
use crate::core::model::{Cidr, Cluster, Direction, Peer, Range};

fn overlaps(ranges: &[Range], c: &Cidr) -> bool {
    let r = c.range();
    ranges
        .iter()
        .any(|x| x.family == r.family && x.start <= r.end && r.start <= x.end)
}

fn holds(ranges: &[Range], ip: &IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

/// The pod and Service addresses a block's ranges include, described.
struct Hits {
    pods: Vec<String>,
    services: Vec<String>,
}

struct Known<'a> {
    cluster: &'a Cluster,
    input: &'a LintInput,
    opts: &'a LintOptions,
}

impl Known<'_> {
    fn hits(&self, ranges: &[Range]) -> Hits {
        let mut pods = Vec::new();
        if self.input.pod_cidrs.is_empty() {
            for p in self.cluster.pods.values() {
                for ip in p.ips.iter().filter(|ip| holds(ranges, ip)) {
                    pods.push(format!("{} {ip}", p.id));
                }
            }
        } else {
            for (node, cidrs) in &self.input.pod_cidrs {
                for c in cidrs.iter().filter(|c| overlaps(ranges, c)) {
                    pods.push(format!("node {node}'s podCIDR {c}"));
                }
            }
        }
        let mut services = Vec::new();
        for s in &self.input.services {
            for ip in s.cluster_ips.iter().filter(|ip| holds(ranges, ip)) {
                services.push(format!("Service {} {ip}", s.id));
            }
        }
        for c in self
            .opts
            .service_cidrs
            .iter()
            .filter(|c| overlaps(ranges, c))
        {
            services.push(format!("--service-cidr {c}"));
        }
        Hits { pods, services }
    }

    fn report(
        &self,
        object: &str,
        field: &str,
        what: &str,
        dir: Direction,
        ranges: &[Range],
        out: &mut Vec<Diagnostic>,
    ) {
        let h = self.hits(ranges);
        if !h.pods.is_empty() {
            out.push(warning(
                self.input,
                "ipblock-pod-range",
                object.to_string(),
                field,
                &format!(
                    "{what} includes pod addresses ({}): nftpol matches it against pods' current addresses, but a pod's address changes whenever it is recreated, and other enforcers ignore ipBlocks for pod traffic (upstream meant them for cluster-external addresses). Select pods with podSelector/namespaceSelector; to keep pods out of the block, list the pod range in `except`.",
                    list(&h.pods)
                ),
            ));
        }
        if !h.services.is_empty() {
            let why = match dir {
                Direction::Egress => {
                    "nftpol sees Service traffic after kube-proxy's DNAT, addressed to a backend's own address and targetPort, so a ClusterIP never matches. Allow the backends instead: a podSelector/namespaceSelector peer with the Service's targetPort (for the API server, its EndpointSlice's addresses and port)."
                }
                Direction::Ingress => {
                    "no packet comes from a ClusterIP (kube-proxy rewrites destinations), so that part never matches. Select the clients with podSelector/namespaceSelector."
                }
            };
            out.push(warning(
                self.input,
                "ipblock-service-range",
                object.to_string(),
                field,
                &format!(
                    "{what} includes Service ClusterIPs ({}): {why}",
                    list(&h.services)
                ),
            ));
        }
    }
}

fn list(items: &[String]) -> String {
    let mut s = items.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 3 {
        s.push_str(&format!(" (+{} more)", items.len() - 3));
    }
    s
}

pub(super) fn ranges(
    cluster: &Cluster,
    input: &LintInput,
    opts: &LintOptions,
    out: &mut Vec<Diagnostic>,
) {
    let k = Known {
        cluster,
        input,
        opts,
    };
    for pol in cluster.policies.values().filter(|p| p.valid) {
        let object = format!("NetworkPolicy {}", pol.id);
        for dir in Direction::ALL {
            let peer_field = match dir {
                Direction::Ingress => "from",
                Direction::Egress => "to",
            };
            for (i, rule) in pol.rules(dir).into_iter().flatten().enumerate() {
                for (j, peer) in rule.peers.iter().flatten().enumerate() {
                    let Peer::IpBlock(b) = peer else { continue };
                    if b.cidr.len == 0 {
                        continue;
                    }
                    let field = format!("spec.{}[{i}].{peer_field}[{j}].ipBlock", dir.as_str());
                    k.report(
                        &object,
                        &field,
                        &format!("ipBlock {b}"),
                        dir,
                        &b.ranges(),
                        out,
                    );
                }
            }
        }
    }
    for cnp in cluster.cluster_policies.values().filter(|p| p.valid) {
        let object = format!("ClusterNetworkPolicy {}", cnp.name);
        for (i, rule) in cnp.egress.iter().enumerate() {
            for peer in rule.peers.iter().flatten() {
                let Peer::Networks(cidrs) = peer else {
                    continue;
                };
                for c in cidrs.iter().filter(|c| c.len > 0) {
                    k.report(
                        &object,
                        &format!("spec.egress[{i}]"),
                        &format!("networks entry {c}"),
                        Direction::Egress,
                        &[c.range()],
                        out,
                    );
                }
            }
        }
    }
}
