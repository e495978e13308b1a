//! The churn scenario: pod events at a fixed rate (creates, deletes,
//! relabels, spread over the cluster) while the agent runs, each timed from
//! its write to the first committed nftables transaction in node-01's
//! namespace that changes the sets holding the pod's IPv4 address
//! (`nftpol_testkit::nftmon`: the kernel's own notifications, replayed; not
//! the agent's apply counters, which cannot say which of many overlapping
//! events an apply carried). Also the agent's CPU (utime + stime, and its `nft` children's)
//! over the run as % of one core, and its peak RSS. Where the time goes:
//! the API server's answer to each write (and the latency counted from
//! that answer instead), and the agent's own compile and apply durations
//! over the run (its histograms: mean and spread).
//!
//! `NFTPOL_CHURN_SECS` and `NFTPOL_CHURN_RATE` (events per second) set the
//! run. Mix: 35 % create (a new replica of a random pod's workload, on a
//! random node, created and then given its IPs through the status
//! subresource; the clock starts at the status write), 35 % delete (grace
//! period 0: there is no kubelet to confirm), 30 % relabel (`app` moved to
//! another workload of the namespace, or `version` bumped). Every pod is the
//! subject of at most one event per run, so no later event's change can be
//! taken for an earlier one's. A create on another node is timed only if
//! its workload is a peer on node-01 when it is written (the pod it
//! replicates is in node-01's sets then); otherwise its address reaches
//! node-01 only through some later event, and is counted apart.

use super::METRICS;
use super::write::{self, pod_status};
use nftpol_testkit::agent;
use nftpol_testkit::bench::loadavg;
use nftpol_testkit::nftmon::{self, Monitor};
use nftpol_testkit::synth::{Rng, pod_ips};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Duration and rate of a run.
#[derive(Clone, Copy)]
pub struct Config {
    /// Seconds of churn.
    pub secs: f64,
    /// Events per second.
    pub rate: f64,
}

impl Config {
    /// `NFTPOL_CHURN_SECS` / `NFTPOL_CHURN_RATE`, else the defaults given.
    pub fn from_env(secs: f64, rate: f64) -> Config {
        let get = |k: &str, d: f64| {
            std::env::var(k)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{k}: not a number: {v}"))
                })
                .unwrap_or(d)
        };
        Config {
            secs: get("NFTPOL_CHURN_SECS", secs),
            rate: get("NFTPOL_CHURN_RATE", rate),
        }
    }
}

/// Transactions after a relabel's write that may carry it (see `run`).
const RELABEL_WINDOW: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Create,
    Delete,
    Relabel,
}

struct Live {
    ns: String,
    name: String,
    labels: BTreeMap<String, String>,
    ports: serde_json::Value,
}

/// An event as written: its kind, the pod's IPv4 address, when the timed
/// write started and when the API server answered it (None: the write
/// failed).
struct Done {
    kind: Kind,
    ip: u32,
    start: Option<(Instant, Instant)>,
    /// A create on another node than node-01: the address of the pod it
    /// replicates (same namespace, labels and ports, so the same peer sets).
    replica_of: Option<u32>,
}

fn ipv4(pod: &Pod) -> Option<u32> {
    pod.status
        .as_ref()?
        .pod_ips
        .iter()
        .flatten()
        .find_map(|ip| ip.ip.parse::<Ipv4Addr>().ok())
        .map(u32::from)
}

async fn create(
    client: kube::Client,
    ns: String,
    pod: serde_json::Value,
    ips: [String; 2],
) -> Option<(Instant, Instant)> {
    let api = Api::<Pod>::namespaced(client, &ns);
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let name = pod.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &pod).await.ok()?;
    let start = Instant::now();
    let ips = [ips[0].as_str(), ips[1].as_str()];
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(pod_status(&ips)),
    )
    .await
    .ok()?;
    Some((start, Instant::now()))
}

async fn delete(client: kube::Client, ns: String, name: String) -> Option<(Instant, Instant)> {
    let api = Api::<Pod>::namespaced(client, &ns);
    let start = Instant::now();
    api.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .ok()?;
    Some((start, Instant::now()))
}

async fn relabel(
    client: kube::Client,
    ns: String,
    name: String,
    labels: serde_json::Value,
) -> Option<(Instant, Instant)> {
    let api = Api::<Pod>::namespaced(client, &ns);
    let start = Instant::now();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": labels}})),
    )
    .await
    .ok()?;
    Some((start, Instant::now()))
}

/// The agent's compile and apply duration histograms (summed over their
/// labels): per `le` bound the cumulative count, then the sum and count.
pub struct Durations {
    compile: (Vec<(f64, f64)>, f64, f64),
    apply: (Vec<(f64, f64)>, f64, f64),
}

impl Durations {
    pub fn scrape() -> Durations {
        let body = agent::metrics_text(METRICS).expect("the agent's metrics");
        let hist = |name: &str| {
            let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
            let prefix = format!("{name}_bucket{{");
            for l in body.lines().filter(|l| l.starts_with(&prefix)) {
                let le = l.split("le=\"").nth(1).and_then(|r| r.split('"').next());
                let n = l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok());
                if let (Some(le), Some(n)) = (le, n) {
                    *buckets.entry(le.to_string()).or_default() += n;
                }
            }
            let mut buckets: Vec<(f64, f64)> = buckets
                .into_iter()
                .map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), n))
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let sum = agent::metric_in(&body, &format!("{name}_sum"), "");
            let count = agent::metric_in(&body, &format!("{name}_count"), "");
            (buckets, sum, count)
        };
        Durations {
            compile: hist("nftpol_compile_duration_seconds"),
            apply: hist("nftpol_apply_duration_seconds"),
        }
    }

    /// Mean and the spread over the histogram's bounds of what happened
    /// since `before`, on lines starting with `label`.
    pub fn print_since(&self, before: &Durations, label: &str) {
        for (what, now, then) in [
            ("compile", &self.compile, &before.compile),
            ("apply", &self.apply, &before.apply),
        ] {
            let n = now.2 - then.2;
            if n <= 0.0 {
                continue;
            }
            let mut spread = Vec::new();
            let mut below = 0.0;
            for (le, c) in &now.0 {
                let c0 = then.0.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
                let cum = c - c0;
                if cum > below {
                    spread.push(format!("<={:.1} ms: {}", le * 1e3, cum - below));
                }
                below = cum;
            }
            println!(
                "{label}: agent {what}: {n} taking {:.1} ms on average; by bound {}",
                (now.1 - then.1) / n * 1e3,
                spread.join(", ")
            );
        }
    }
}

/// [`write::pct`] in milliseconds (sorts `v`).
fn pct(v: &mut [Duration], p: f64) -> f64 {
    write::pct(v, p).as_secs_f64() * 1e3
}

/// Runs the churn against the agent `pid` (already settled) on the cluster
/// `objs` already written through `client`; `monitor` has listened since
/// before the agent started. Prints the figures.
pub fn run(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    objs: &nftpol::core::k8s::Objects,
    pid: u32,
    nodes: usize,
    cfg: Config,
    monitor: Monitor,
) {
    let mut rng = Rng::new(7);
    // (pod, IPv4) of every pod that may still be touched; created pods never are.
    let mut live: Vec<(Live, u32)> = objs
        .pods
        .iter()
        .filter_map(|(_, p)| {
            let ports = serde_json::to_value(&p.spec.as_ref()?.containers[0].ports).ok()?;
            Some((
                Live {
                    ns: p.metadata.namespace.clone()?,
                    name: p.metadata.name.clone()?,
                    labels: p.metadata.labels.clone().unwrap_or_default(),
                    ports,
                },
                ipv4(p)?,
            ))
        })
        .collect();
    // The workloads of each namespace, for relabels.
    let mut apps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (l, _) in &live {
        if let Some(a) = l.labels.get("app") {
            let v = apps.entry(l.ns.clone()).or_default();
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
    }
    let applies0 = agent::applies(METRICS).expect("the agent's metrics");
    let hist0 = Durations::scrape();
    let paths0 = agent::compile_paths(METRICS).expect("the agent's metrics");
    let cpu0 = nftmon::cpu_seconds(pid);
    let load0 = loadavg();
    let total = (cfg.secs * cfg.rate).round() as usize;
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(total);
    let mut skipped = 0;
    let mut per_node = vec![0usize; nodes];
    rt.block_on(async {
        let start = tokio::time::Instant::now();
        for i in 0..total {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / cfg.rate)).await;
            let c = client.clone();
            let kind = match rng.below(100) {
                0..=34 => Kind::Create,
                35..=69 => Kind::Delete,
                _ => Kind::Relabel,
            };
            if live.is_empty() {
                skipped += 1;
                continue;
            }
            let (pod, ip) = live.swap_remove(rng.below(live.len()));
            let h = match kind {
                Kind::Create => {
                    // A new replica of `pod`'s workload; `pod` stays as it is,
                    // and may still be touched.
                    let node = rng.below(nodes);
                    let replica_of = (node != 1).then_some(ip);
                    let (v4, v6) = pod_ips(50_000 + per_node[node], node);
                    per_node[node] += 1;
                    let new_ip = u32::from(v4.parse::<Ipv4Addr>().unwrap());
                    let doc = json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("churn-{i}"), "namespace": pod.ns,
                            "labels": pod.labels},
                        "spec": {"nodeName": format!("node-{node:02}"), "containers": [{"name": "c",
                            "image": "i", "ports": pod.ports}]}});
                    let ns = pod.ns.clone();
                    live.push((pod, ip));
                    let n = live.len() - 1;
                    live.swap(n, rng.below(n + 1));
                    tokio::spawn(async move {
                        Done {
                            kind,
                            ip: new_ip,
                            start: create(c, ns, doc, [v4, v6]).await,
                            replica_of,
                        }
                    })
                }
                Kind::Delete => tokio::spawn(async move {
                    Done {
                        kind,
                        ip,
                        start: delete(c, pod.ns, pod.name).await,
                        replica_of: None,
                    }
                }),
                Kind::Relabel => {
                    let others: Vec<&String> = apps
                        .get(&pod.ns)
                        .into_iter()
                        .flatten()
                        .filter(|a| Some(*a) != pod.labels.get("app"))
                        .collect();
                    let labels = if others.is_empty() {
                        json!({"version": "v2"})
                    } else {
                        json!({"app": others[rng.below(others.len())]})
                    };
                    tokio::spawn(async move {
                        Done {
                            kind,
                            ip,
                            start: relabel(c, pod.ns, pod.name, labels).await,
                            replica_of: None,
                        }
                    })
                }
            };
            handles.push(h);
        }
    });
    let issued = t0.elapsed();
    let done: Vec<Done> = rt.block_on(async {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("an event task"));
        }
        out
    });
    let written = t0.elapsed();
    super::settle(Duration::from_secs(2), Duration::from_secs(120));
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = nftmon::cpu_seconds(pid);
    let applies1 = agent::applies(METRICS).expect("the agent's metrics");
    let hist1 = Durations::scrape();
    let paths1 = agent::compile_paths(METRICS).expect("the agent's metrics");
    let load1 = loadavg();
    let (txns, overruns) = monitor.snapshot();
    drop(monitor);

    // Each event's latency: from its write to the first transaction after
    // it that changes the sets its address is in on node-01 (replayed from
    // every transaction since the agent's first: `nftmon::timelines`).
    // Exact for a create (absent -> present) and a delete (present ->
    // absent) whether it came as an element delta or inside a full
    // replacement. For a relabel any change of membership counts, but
    // another event's structural change can also cause one (a set appearing
    // or going away), so a relabel that changed nothing on node-01 would be
    // matched to some later apply: only the first `RELABEL_WINDOW`
    // transactions after its write count (the apply running when it was
    // written, and the next one, which starts after it and carries it).
    // A create on another node changes node-01 only if its workload is
    // already a peer there: the pod it replicates (same namespace, labels,
    // ports) is in node-01's sets when it is written. Otherwise its address
    // appears on node-01 only when a later event (a pod of its namespace
    // arriving on node-01, say) brings a policy that selects it: not this
    // event's latency, so such creates are counted apart, with how late
    // their address appeared.
    let lines = nftmon::timelines(&txns);
    let full_at: std::collections::BTreeSet<Instant> =
        txns.iter().filter(|t| t.full).map(|t| t.at).collect();
    let mut lat: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
    let mut by_kind: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    // The same latencies by the 10 s window their event was written in:
    // whether the tail is steady over the run or grows.
    let mut windows: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
    let failed = done.iter().filter(|d| d.start.is_none()).count();
    // Where the time goes: the API server's answer to each write, and the
    // latency counted from that answer instead (0 when the kernel had it
    // first: the watch event can outrun the write's response).
    let mut writes: Vec<Duration> = Vec::new();
    let mut after_answer: Vec<Duration> = Vec::new();
    // Creates not expected on node-01 whose address appeared there later.
    let mut unexpected: Vec<Duration> = Vec::new();
    let member_at = |ip: u32, at: Instant| {
        lines
            .get(&ip)
            .and_then(|l| l.iter().take_while(|(t, _)| *t <= at).last())
            .is_some_and(|(_, sets)| !sets.is_empty())
    };
    for d in &done {
        let Some((start, answered)) = d.start else {
            continue;
        };
        writes.push(answered - start);
        if let Some(src) = d.replica_of
            && !member_at(src, start)
        {
            let later = lines
                .get(&d.ip)
                .and_then(|l| l.iter().find(|(at, _)| *at > start));
            if let Some((at, _)) = later {
                unexpected.push(*at - start);
            }
            let class = if later.is_some() {
                "not a peer on node-01 when written, appeared later"
            } else {
                "not a peer on node-01 when written"
            };
            *by_kind.entry((d.kind, class)).or_insert(0) += 1;
            continue;
        }
        let window_end = match d.kind {
            Kind::Relabel => txns
                .iter()
                .filter(|t| t.at > start)
                .nth(RELABEL_WINDOW - 1)
                .map(|t| t.at),
            _ => None,
        };
        let hit = lines.get(&d.ip).and_then(|l| {
            l.iter()
                .find(|(at, _)| *at > start && window_end.is_none_or(|end| *at <= end))
        });
        let class = match hit {
            Some((at, _)) => {
                lat.entry(d.kind).or_default().push(*at - start);
                after_answer.push(at.saturating_duration_since(answered));
                let w = start.saturating_duration_since(t0).as_secs() / 10;
                windows.entry(w).or_default().push(*at - start);
                if full_at.contains(at) {
                    "in a full replacement"
                } else {
                    "in a delta"
                }
            }
            None => "no change on node-01 (relabels: within 2 transactions)",
        };
        *by_kind.entry((d.kind, class)).or_insert(0) += 1;
    }
    if !unexpected.is_empty() {
        println!(
            "churn: creates not expected on node-01 whose address appeared there through a later event ({}): after p50 {:.0} ms, max {:.0} ms (not counted as latency)",
            unexpected.len(),
            pct(&mut unexpected, 0.5),
            pct(&mut unexpected, 1.0),
        );
    }
    let during = txns.iter().filter(|t| t.at >= t0).count();
    let fulls = txns.iter().filter(|t| t.at >= t0 && t.full).count();
    let (self_cpu, child_cpu) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    println!(
        "churn: {} events in {:.1} s ({:.1}/s issued; writes done at {:.1} s; {failed} failed, {skipped} skipped); settled at {wall:.1} s; load average {load0} -> {load1}",
        done.len(),
        issued.as_secs_f64(),
        done.len() as f64 / issued.as_secs_f64(),
        written.as_secs_f64(),
    );
    println!("churn: events by kind and how node-01's kernel saw them: {by_kind:?}");
    let mut all: Vec<Duration> = lat.values().flatten().copied().collect();
    assert_eq!(overruns, 0, "nftables notifications were lost: no figures");
    assert!(!all.is_empty(), "no event reached node-01's kernel");
    for (kind, v) in lat
        .iter_mut()
        .map(|(k, v)| (format!("{k:?}"), v))
        .chain([("all".to_string(), &mut all)])
    {
        if v.is_empty() {
            continue;
        }
        println!(
            "churn: event -> kernel, {kind} ({} events): p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0),
        );
    }
    for (what, v) in [
        ("the API server's answer to a write", &mut writes),
        (
            "event -> kernel counted from that answer",
            &mut after_answer,
        ),
    ] {
        if v.is_empty() {
            continue;
        }
        println!(
            "churn: {what}: p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0),
        );
    }
    let by_window: Vec<String> = windows
        .iter_mut()
        .map(|(w, v)| {
            let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
            format!("{}-{} s {p50:.0}/{p99:.0}", w * 10, w * 10 + 10)
        })
        .collect();
    println!(
        "churn: p50/p99 ms by when the event was written: {}",
        by_window.join(", ")
    );
    println!(
        "churn: kernel transactions {during} ({fulls} full), notification overruns {overruns}; applies full/delta/unchanged +{}/+{}/+{}",
        applies1.0 - applies0.0,
        applies1.1 - applies0.1,
        applies1.2 - applies0.2,
    );
    println!(
        "churn: compiles by path incremental/partial/full +{}/+{}/+{}",
        paths1.0 - paths0.0,
        paths1.1 - paths0.1,
        paths1.2 - paths0.2,
    );
    hist1.print_since(&hist0, "churn");
    println!(
        "churn: agent CPU {:.1} % of one core (self {self_cpu:.1} s, nft children {child_cpu:.1} s, over {wall:.1} s: {:.1} % self, {:.1} % children); peak RSS {:.0} MB",
        (self_cpu + child_cpu) / wall * 100.0,
        self_cpu / wall * 100.0,
        child_cpu / wall * 100.0,
        super::write::peak_rss_mb(pid),
    );
}
