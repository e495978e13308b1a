//! Dropping what nftpol never reads from API objects, so the agent's stores
//! stay small at 10k pods. Objects are rebuilt from the fields conversion
//! reads (everything else left at its default, which holds no heap memory):
//! metadata keeps name, namespace, labels, resourceVersion and nftpol's own
//! annotations. Pods are parsed as [`SlimPod`]s in the first place (each
//! container's name, ports and `restartPolicy`, `spec.nodeName`,
//! `spec.hostNetwork`, `status.phase`, `status.podIP(s)`): only their
//! metadata is stripped here.

use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, NodeStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::slim::SlimPod;

/// Strips a pod's metadata (a [`SlimPod`] holds nothing else conversion
/// does not read).
pub fn pod(p: &mut SlimPod) {
    meta(&mut p.metadata);
}

/// Strips a namespace to its metadata (its spec and status are never read).
pub fn namespace(n: &mut Namespace) {
    meta(&mut n.metadata);
    n.spec = None;
    n.status = None;
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
    let annotations = m.annotations.take().map(|mut a| {
        // Only nftpol's own annotations are ever read.
        a.retain(|k, _| k.starts_with("nftpol.io/"));
        a
    });
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        labels: m.labels.take(),
        annotations,
        resource_version: m.resource_version.take(),
        ..ObjectMeta::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::k8s::cache::ClusterCache;
    use k8s_openapi::api::core::v1::Pod;
    use std::sync::Arc;

    /// The model a cache builds from namespace `a` and `p`, and its diagnostics (both as text).
    fn model_of(p: &SlimPod) -> (String, String) {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}})).unwrap();
        let mut c = ClusterCache::new();
        c.update(&[Arc::new(ns)], &[Arc::new(p.clone())], &[]);
        let diags: Vec<String> = c.diagnostics().iter().map(|d| d.to_string()).collect();
        (format!("{:?}", c.cluster()), format!("{diags:?}"))
    }

    #[test]
    fn stripping_keeps_what_the_model_reads() {
        let full: Pod = serde_json::from_value(serde_json::json!({
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
        let model = |p: &SlimPod| model_of(p).0;
        let mut p = SlimPod::from(&full);
        let before = model(&p);
        pod(&mut p);
        assert_eq!(model(&p), before, "the model does not change");
        let m = &p.metadata;
        assert!(m.managed_fields.is_none() && m.owner_references.is_none());
        assert_eq!(m.annotations.as_ref().unwrap().len(), 1);
        let spec = p.spec.as_ref().unwrap();
        assert!(spec.containers[0].ports.is_some(), "named ports stay");
    }

    /// Sidecars, a container without ports, a bad port (its diagnostic's
    /// field path), a uid and defaults the API server fills in: the model and
    /// the diagnostics are the same after stripping, and exactly the fields
    /// conversion reads are left.
    #[test]
    fn a_stripped_pod_converts_the_same_and_keeps_only_what_is_read() {
        let mut p: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "a", "labels": {"app": "web"},
                         "uid": "u", "resourceVersion": "9", "generation": 1,
                         "creationTimestamp": "2026-12-04T10:00:00Z",
                         "annotations": {"nftpol.io/x": "1", "other": "2"}},
            "spec": {
                "nodeName": "n1", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                "containers": [
                    {"name": "bare", "image": "i", "imagePullPolicy": "Always"},
                    {"name": "c", "image": "i", "terminationMessagePath": "/dev/termination-log",
                     "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                               {"name": "bad", "containerPort": 0}]}],
                "initContainers": [
                    {"name": "init", "image": "i", "ports": [{"name": "once", "containerPort": 1}]},
                    {"name": "sidecar", "image": "i", "restartPolicy": "Always",
                     "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}]}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                       "hostIP": "192.168.0.1", "qosClass": "BestEffort",
                       "startTime": "2026-12-04T10:00:01Z"}
        }))
        .unwrap();
        let model = |p: &SlimPod| {
            let (cluster, diags) = model_of(p);
            format!("{cluster} {diags}")
        };
        let before = model(&p);
        assert!(before.contains("containerPort"), "{before}");
        pod(&mut p);
        assert_eq!(model(&p), before, "the model and diagnostics do not change");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({
                "metadata": {"name": "web", "namespace": "a", "labels": {"app": "web"},
                             "resourceVersion": "9", "annotations": {"nftpol.io/x": "1"}},
                "spec": {
                    "nodeName": "n1",
                    "containers": [
                        {"name": "bare"},
                        {"name": "c", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                                {"name": "bad", "containerPort": 0}]}],
                    "initContainers": [
                        {"name": "init", "ports": [{"name": "once", "containerPort": 1}]},
                        {"name": "sidecar", "restartPolicy": "Always",
                         "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}]}]
                },
                "status": {"phase": "Running", "podIP": "10.0.0.1",
                           "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
            })
        );
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
            c.update_cluster_scoped(&[], &[Arc::new(n.clone())]);
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
