//! Dropping what nftpol never reads from API objects, so the agent's stores
//! stay small at 10k pods: managed fields, owner references, annotations
//! other than nftpol's own, and the parts of a pod spec and status (volumes,
//! env, probes, container statuses ...) that never reach the model.

use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, NodeStatus, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Strips a pod down to what conversion reads.
pub fn pod(p: &mut Pod) {
    meta(&mut p.metadata);
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.command = None;
            c.args = None;
            c.resources = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
        }
    }
    if let Some(st) = p.status.as_mut() {
        st.conditions = None;
        st.container_statuses = None;
        st.init_container_statuses = None;
    }
}

/// Strips a namespace's metadata.
pub fn namespace(n: &mut Namespace) {
    meta(&mut n.metadata);
}

/// Strips a network policy's metadata (its spec is all read).
pub fn network_policy(p: &mut NetworkPolicy) {
    meta(&mut p.metadata);
}

/// Strips a ClusterNetworkPolicy's metadata and status (its spec is all
/// read).
pub fn cluster_network_policy(p: &mut super::ClusterNetworkPolicy) {
    meta(&mut p.metadata);
    p.status = None;
}

/// Strips a Node to its name, labels, resourceVersion, `spec.podCIDR(s)`
/// and `status.addresses`: a node's status (images, conditions, capacity) is
/// large and changes every heartbeat, none of it read.
pub fn node(n: &mut Node) {
    let addresses = n.status.take().and_then(|s| s.addresses);
    let spec = n.spec.take().and_then(|s| {
        (s.pod_cidr.is_some() || s.pod_cidrs.is_some()).then(|| NodeSpec {
            pod_cidr: s.pod_cidr,
            pod_cidrs: s.pod_cidrs,
            ..NodeSpec::default()
        })
    });
    *n = Node {
        metadata: ObjectMeta {
            name: n.metadata.name.take(),
            labels: n.metadata.labels.take(),
            resource_version: n.metadata.resource_version.take(),
            ..ObjectMeta::default()
        },
        spec,
        status: Some(NodeStatus {
            addresses,
            ..NodeStatus::default()
        }),
    };
}

fn meta(m: &mut ObjectMeta) {
    m.managed_fields = None;
    m.owner_references = None;
    if let Some(a) = m.annotations.as_mut() {
        // Only nftpol's own annotations are ever read.
        a.retain(|k, _| k.starts_with("nftpol.io/"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::k8s::cache::ClusterCache;

    #[test]
    fn stripping_keeps_what_the_model_reads() {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "a", "labels": {"app": "web"},
                "annotations": {"nftpol.io/x": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}]
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "b"}],
                                "ports": [{"name": "http", "containerPort": 8080}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}})).unwrap();
        let model = |p: &Pod| {
            let mut c = ClusterCache::new();
            c.update([&ns], [p], std::iter::empty());
            format!("{:?}", c.cluster())
        };
        let before = model(&p);
        pod(&mut p);
        assert_eq!(model(&p), before, "the model does not change");
        let m = &p.metadata;
        assert!(m.managed_fields.is_none() && m.owner_references.is_none());
        assert_eq!(m.annotations.as_ref().unwrap().len(), 1);
        let spec = p.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none() && spec.containers[0].env.is_none());
        assert!(spec.containers[0].ports.is_some(), "named ports stay");
        assert!(p.status.as_ref().unwrap().conditions.is_none());
    }

    #[test]
    fn stripping_a_node_keeps_name_labels_version_pod_cidrs_and_addresses() {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"},
                         "resourceVersion": "7", "annotations": {"a": "b"}, "uid": "u"},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                     "providerID": "x", "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"},
                                     {"type": "Hostname", "address": "n1"}],
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "images": [{"names": ["x"]}]}
        }))
        .unwrap();
        let model = |n: &Node| {
            let mut c = ClusterCache::new();
            c.update_cluster_scoped(std::iter::empty(), [n]);
            format!("{:?}", c.cluster())
        };
        let before = model(&n);
        node(&mut n);
        assert_eq!(model(&n), before, "the model does not change");
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}, "resourceVersion": "7"},
                "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"},
                                         {"type": "Hostname", "address": "n1"}]}
            })
        );
    }
}
