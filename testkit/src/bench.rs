//! What the benchmarks share: the load average they print beside their
//! figures, medians, and the synthetic objects dressed as an API server
//! serves them.

use std::sync::Arc;
use std::time::Duration;

use nftpol::core::k8s::Objects;
use nftpol::core::k8s::cache::ClusterCache;

/// The 1, 5 and 15 minute load averages (`?` where /proc is unreadable).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Environment variable `key` parsed as a `T` (a bench setting such as
/// `NFTPOL_ROUNDS`), else `default` (also when it does not parse).
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` in milliseconds (0 for none).
pub fn median_ms(mut v: Vec<Duration>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Every object of `objs` with resourceVersion 1, as from an API server
/// (the agent's cache converts an object only when its version is new).
pub fn versioned(objs: &mut Objects) {
    for (_, o) in &mut objs.namespaces {
        o.metadata.resource_version = Some("1".into());
    }
    for (_, o) in &mut objs.pods {
        o.metadata.resource_version = Some("1".into());
    }
    for (_, o) in &mut objs.policies {
        o.metadata.resource_version = Some("1".into());
    }
}

/// The cache brought to `objs` when only the pods at indices `changed`
/// differ from what it holds, as the agent's watches report a change: those
/// pods' keys and objects (`Delta::Keys`), nothing else read. (A
/// [`relist`] per round also frees and allocates every object, which left
/// the allocator's free lists for the timed compile after it to sort out.)
pub fn update_pods(cache: &mut ClusterCache, objs: &Objects, changed: &[usize]) {
    use nftpol::core::k8s::cache::{Delta, object_key};
    let pods = changed
        .iter()
        .map(|&k| {
            let p = &objs.pods[k].1;
            let pod = nftpol::core::k8s::slim::SlimPod::from(p);
            (object_key(&p.metadata, true), Some(Arc::new(pod)))
        })
        .collect();
    cache.update_delta(
        &Delta::Keys(Vec::new()),
        &Delta::Keys(pods),
        &Delta::Keys(Vec::new()),
    );
}

/// The cache brought to `objs` with every object in a new `Arc`, as after a
/// relist: read, converted only where the resourceVersion is new (the
/// agent's watches hand over the same `Arc`s for unchanged objects, so
/// this costs more than the agent's update does; the benchmarks do not time it).
pub fn relist(cache: &mut ClusterCache, objs: &Objects) {
    fn arcs<K: Clone>(v: &[(nftpol::core::diag::Source, K)]) -> Vec<Arc<K>> {
        v.iter().map(|o| Arc::new(o.1.clone())).collect()
    }
    cache.update(
        &arcs(&objs.namespaces),
        &objs
            .pods
            .iter()
            .map(|o| Arc::new(nftpol::core::k8s::slim::SlimPod::from(&o.1)))
            .collect::<Vec<_>>(),
        &arcs(&objs.policies),
    );
}
