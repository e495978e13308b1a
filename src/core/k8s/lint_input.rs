//! Objects → [`LintInput`]: what the lints read besides the model (every
//! pod with `hostNetwork`, Nodes' pod CIDRs, Services, EndpointSlices, and
//! where each object came from). Lenient: the lints only warn, so a value
//! they cannot read is left out, never an error (the loader has already
//! rejected unknown fields and type errors).

use std::net::IpAddr;

use super::Objects;
use crate::core::model::lint_input::{EndpointSlice, LintInput, LintPod, Service, ServicePort};
use crate::core::model::{Cidr, ObjectRef, Protocol};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Reads the lints' input from the loaded objects.
pub fn lint_input(objs: &Objects) -> LintInput {
    let mut out = LintInput::default();
    let id = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        ObjectRef::new(
            m.namespace.clone().unwrap_or_else(|| "default".to_string()),
            m.name.clone().unwrap_or_default(),
        )
    };
    for (src, p) in &objs.pods {
        let pid = id(&p.metadata);
        out.sources.insert(format!("Pod {pid}"), src.clone());
        out.pods.push(LintPod {
            id: pid,
            labels: p.metadata.labels.clone().unwrap_or_default(),
            host_network: p
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false),
        });
    }
    for (src, np) in &objs.policies {
        out.sources
            .insert(format!("NetworkPolicy {}", id(&np.metadata)), src.clone());
    }
    for (src, cnp) in &objs.cluster_policies {
        let name = cnp.metadata.name.clone().unwrap_or_default();
        out.sources
            .insert(format!("ClusterNetworkPolicy {name}"), src.clone());
    }
    for (_, n) in &objs.nodes {
        let Some(spec) = &n.spec else { continue };
        let mut cidrs: Vec<Cidr> = spec
            .pod_cidrs
            .iter()
            .flatten()
            .chain(spec.pod_cidr.iter())
            .filter_map(|c| Cidr::parse(c).ok())
            .collect();
        cidrs.sort();
        cidrs.dedup();
        if !cidrs.is_empty() {
            out.pod_cidrs
                .insert(n.metadata.name.clone().unwrap_or_default(), cidrs);
        }
    }
    for (src, s) in &objs.services {
        let sid = id(&s.metadata);
        out.sources.insert(format!("Service {sid}"), src.clone());
        let spec = s.spec.as_ref();
        let mut ips: Vec<IpAddr> = spec
            .and_then(|s| s.cluster_ips.clone())
            .filter(|v| !v.is_empty())
            .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        ips.sort();
        ips.dedup();
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(ServicePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    port: u16::try_from(p.port).ok()?,
                })
            })
            .collect();
        out.services.push(Service {
            id: sid,
            cluster_ips: ips,
            ports,
        });
    }
    for (src, e) in &objs.endpoint_slices {
        let eid = id(&e.metadata);
        out.sources
            .insert(format!("EndpointSlice {eid}"), src.clone());
        let mut addresses: Vec<IpAddr> = e
            .endpoints
            .iter()
            .flat_map(|ep| ep.addresses.iter())
            .filter_map(|a| a.parse().ok())
            .collect();
        addresses.sort();
        addresses.dedup();
        let ports = e
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(ServicePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    port: u16::try_from(p.port?).ok()?,
                })
            })
            .collect();
        out.endpoint_slices.push(EndpointSlice {
            id: eid,
            service: e
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .cloned(),
            addresses,
            ports,
        });
    }
    out
}

/// Every node the input names: pods' `spec.nodeName` and Node objects,
/// sorted (the nodes `nftpol compile --stats` reports on).
pub fn node_names(objs: &Objects) -> std::collections::BTreeSet<String> {
    objs.pods
        .iter()
        .filter_map(|(_, p)| p.spec.as_ref()?.node_name.clone())
        .chain(
            objs.nodes
                .iter()
                .filter_map(|(_, n)| n.metadata.name.clone()),
        )
        .filter(|n| !n.is_empty())
        .collect()
}
