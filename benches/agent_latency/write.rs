//! What the control-plane benchmarks (`agent_latency`, `fleet`) share:
//! writing a cluster to the API server as an admin and a kubelet would,
//! the admin's client, percentiles and peak RSS.

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Requests in flight while writing the cluster.
const IN_FLIGHT: usize = 32;

/// A current-thread runtime and a client with the admin's kubeconfig
/// (client certificate) on it: its sockets are opened from the thread that
/// uses them, so in that thread's network namespace.
pub fn admin(kubeconfig: &Path) -> (tokio::runtime::Runtime, kube::Client) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let conf = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(conf).unwrap()
    });
    (rt, client)
}

/// The `p` quantile of `v` (sorted in place; nearest rank).
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A pod's status as a kubelet writes it: `podIP` is `podIPs[0]`.
pub fn pod_status(ips: &[&str]) -> Value {
    json!({"status": {"phase": "Running", "podIP": ips[0],
        "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}})
}

/// Creates a pod without status, then writes its status (with the IPs)
/// through the status subresource, as the kubelet would.
pub async fn create_pod(client: &kube::Client, mut pod: Pod) -> kube::Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap();
    let name = pod.metadata.name.clone().unwrap();
    let status = pod.status.take();
    let api = Api::<Pod>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &pod).await?;
    let ips: Vec<String> = status
        .and_then(|s| s.pod_ips)
        .unwrap_or_default()
        .into_iter()
        .map(|ip| ip.ip)
        .collect();
    if !ips.is_empty() {
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(pod_status(&ips)),
        )
        .await?;
    }
    Ok(())
}

async fn create_policy(client: &kube::Client, pol: NetworkPolicy) -> kube::Result<()> {
    let ns = pol.metadata.namespace.clone().unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pol)
        .await
        .map(drop)
}

/// Writes the synthetic cluster (namespaces, then pods with their status,
/// then policies) with `IN_FLIGHT` requests in flight.
pub async fn write_cluster(client: &kube::Client, objs: &nftpol::core::k8s::Objects) {
    let nss = Api::<Namespace>::all(client.clone());
    futures::stream::iter(objs.namespaces.iter().map(|(_, o)| {
        let nss = &nss;
        async move { nss.create(&PostParams::default(), o).await.map(drop) }
    }))
    .buffer_unordered(IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await
    .expect("creating the namespaces");
    futures::stream::iter(objs.pods.iter().map(|(_, o)| create_pod(client, o.clone())))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating the pods");
    futures::stream::iter(
        objs.policies
            .iter()
            .map(|(_, o)| create_policy(client, o.clone())),
    )
    .buffer_unordered(IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await
    .expect("creating the policies");
}

/// `VmHWM` of process `pid`, in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024.0
}
