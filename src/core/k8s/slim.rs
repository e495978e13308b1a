//! A pod as the agent keeps it: only the fields conversion reads, parsed
//! straight from the API server's JSON (everything else is skipped while
//! parsing, never allocated). The k8s-openapi `Pod` is 2,176 bytes and each
//! `Container` 2,120 bytes with every field empty, so a stripped
//! one-container `Pod` still took 5.3 KB in the watch store; a `SlimPod`
//! holds the same information in a fraction of that.
//!
//! It is the same API resource (`v1`, `pods`): the watches list and watch
//! `SlimPod`s, and [`SlimPod::to_pod`] gives conversion the k8s-openapi
//! `Pod` it reads (for changed pods only).

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A pod: metadata (stripped by `strip::pod`), `spec.nodeName`,
/// `spec.hostNetwork`, each container's name, ports and `restartPolicy`,
/// `status.phase` and `status.podIP(s)`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct SlimPod {
    /// As the pod's.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the spec says that conversion reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SlimPodSpec>,
    /// What the status says that conversion reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SlimPodStatus>,
}

/// The part of a `PodSpec` conversion reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    /// Containers (kept even without ports, so field paths name the same one).
    #[serde(default)]
    pub containers: Vec<SlimContainer>,
    /// Init containers (a sidecar, `restartPolicy: Always`, serves ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<SlimContainer>>,
    /// `spec.hostNetwork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// `spec.nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// The part of a `Container` conversion reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainer {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    /// `restartPolicy` (init containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// The part of a `PodStatus` conversion reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct SlimPodStatus {
    /// `status.phase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `status.podIP`.
    #[serde(rename = "podIP", default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// `status.podIPs`.
    #[serde(rename = "podIPs", default, skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<PodIP>>,
}

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl SlimContainer {
    fn of(c: &Container) -> SlimContainer {
        SlimContainer {
            name: c.name.clone(),
            ports: c.ports.clone(),
            restart_policy: c.restart_policy.clone(),
        }
    }

    fn to_container(&self) -> Container {
        Container {
            name: self.name.clone(),
            ports: self.ports.clone(),
            restart_policy: self.restart_policy.clone(),
            ..Container::default()
        }
    }
}

impl From<&Pod> for SlimPod {
    fn from(p: &Pod) -> SlimPod {
        SlimPod {
            metadata: p.metadata.clone(),
            spec: p.spec.as_ref().map(|s| SlimPodSpec {
                containers: s.containers.iter().map(SlimContainer::of).collect(),
                init_containers: s
                    .init_containers
                    .as_ref()
                    .map(|cs| cs.iter().map(SlimContainer::of).collect()),
                host_network: s.host_network,
                node_name: s.node_name.clone(),
            }),
            status: p.status.as_ref().map(|s| SlimPodStatus {
                phase: s.phase.clone(),
                pod_ip: s.pod_ip.clone(),
                pod_ips: s.pod_ips.clone(),
            }),
        }
    }
}

impl SlimPod {
    /// The k8s-openapi `Pod` with these fields (the rest at their defaults),
    /// for conversion.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| PodSpec {
                containers: s
                    .containers
                    .iter()
                    .map(SlimContainer::to_container)
                    .collect(),
                init_containers: s
                    .init_containers
                    .as_ref()
                    .map(|cs| cs.iter().map(SlimContainer::to_container).collect()),
                host_network: s.host_network,
                node_name: s.node_name.clone(),
                ..PodSpec::default()
            }),
            status: self.status.as_ref().map(|s| PodStatus {
                phase: s.phase.clone(),
                pod_ip: s.pod_ip.clone(),
                pod_ips: s.pod_ips.clone(),
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod as the API server sends it, parsed as a `SlimPod`, converts to
    /// the same model (and diagnostics) as the full `Pod`, and keeps none of
    /// the fields conversion does not read.
    #[test]
    fn a_slim_pod_converts_like_the_full_one() {
        let doc = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "a", "labels": {"app": "web"},
                "resourceVersion": "7", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "n1", "hostNetwork": false, "serviceAccountName": "x",
                "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}],
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                              {"name": "http", "containerPort": 81, "protocol": "TCP"}]}],
                "initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always",
                    "ports": [{"name": "metrics", "containerPort": 9000}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "192.168.0.1",
                "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let slim: SlimPod = serde_json::from_value(doc.clone()).unwrap();
        let full: Pod = serde_json::from_value(doc).unwrap();
        assert_eq!(
            SlimPod::from(&full),
            slim,
            "parsed = taken from the full pod"
        );
        let convert = |p: &Pod| {
            let mut d = Vec::new();
            let m = crate::core::k8s::convert::pod(p, None, &mut d);
            (format!("{m:?}"), format!("{d:?}"))
        };
        let (model, diags) = convert(&slim.to_pod());
        assert_eq!((&model, &diags), (&convert(&full).0, &convert(&full).1));
        assert!(
            model.contains("10.0.0.1") && model.contains("metrics"),
            "{model}"
        );
        assert!(
            diags.contains("http"),
            "the duplicate port name is reported: {diags}"
        );
        let back = slim.to_pod();
        let spec = back.spec.unwrap();
        assert_eq!(spec.containers[0].image, None);
        assert_eq!(spec.containers[0].env, None);
        assert_eq!(spec.service_account_name, None);
        assert_eq!(back.status.unwrap().host_ip, None);
    }
}
