//! The only module that knows Kubernetes types: loading YAML/JSON and
//! converting k8s-openapi objects into the model.

pub mod cache;
pub mod cnp;
pub mod convert;
pub mod lint_input;
pub mod load;
pub mod node_status;
pub mod slim;
pub mod strip;

use crate::core::diag::Diagnostic;
use crate::core::model::Cluster;
pub use cnp::ClusterNetworkPolicy;
pub use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
pub use k8s_openapi::api::networking::v1::NetworkPolicy;
pub use lint_input::{lint_input, node_names};
pub use load::{Objects, UnknownFields, load_paths, load_paths_with, parse_into, parse_into_with};

/// Converts loaded objects into a cluster. Later duplicates of the same
/// object replace earlier ones, with a warning.
pub fn to_cluster(objs: &Objects) -> (Cluster, Vec<Diagnostic>) {
    let mut c = Cluster::default();
    let mut d = Vec::new();
    let dup = |kind: &str, id: &str, src: &crate::core::diag::Source| {
        Diagnostic::warning("defined again; this definition replaces the earlier one")
            .at(src)
            .on(format!("{kind} {id}"))
    };
    for (src, ns) in &objs.namespaces {
        if let Some(n) = convert::namespace(ns, Some(src), &mut d)
            && let Some(_) = c.namespaces.insert(n.name.clone(), n.clone())
        {
            d.push(dup("Namespace", &n.name, src));
        }
    }
    for (src, p) in &objs.pods {
        if let Some(p) = convert::pod(p, Some(src), &mut d)
            && let Some(old) = c.pods.insert(p.id.clone(), p.into())
        {
            d.push(dup("Pod", &old.id.to_string(), src));
        }
    }
    for (src, np) in &objs.policies {
        if let Some(p) = convert::policy(np, Some(src), &mut d)
            && let Some(old) = c.policies.insert(p.id.clone(), p)
        {
            d.push(dup("NetworkPolicy", &old.id.to_string(), src));
        }
    }
    for (src, n) in &objs.nodes {
        if let Some(n) = convert::node(n, Some(src), &mut d)
            && let Some(old) = c.nodes.insert(n.name.clone(), n)
        {
            d.push(dup("Node", &old.name, src));
        }
    }
    for (src, p) in &objs.cluster_policies {
        if let Some(p) = convert::cluster_policy(p, Some(src), &mut d)
            && let Some(old) = c.cluster_policies.insert(p.name.clone(), p)
        {
            d.push(dup("ClusterNetworkPolicy", &old.name, src));
        }
    }
    (c, d)
}
