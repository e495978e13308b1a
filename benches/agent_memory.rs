//! What `nftpol run` keeps in memory, step by step, without an API server.
//!
//! `cargo bench --bench agent_memory` builds a cluster's objects in memory,
//! dresses them as the API server serves them (uid, resourceVersion,
//! creationTimestamp, the pod spec and status defaults a real server fills
//! in), then does what the agent does with them, in the agent's own types:
//! - the watch stores: each object stripped (`core::k8s::strip`, as the
//!   watches' `modify` does) and put in a kube reflector store through its
//!   `Writer` (the initial list: `Init`, `InitApply`…, `InitDone`);
//! - the worker's first apply: `ClusterCache::update` (the model), `Held`
//!   (the NodeProgramStatus' policy list), `incremental::State::compile` for
//!   node-01 (full; the state keeps its index), `Enforcer::sync_owned` over
//!   an `nft` that discards its scripts (the ruleset becomes the mirror),
//!   the drop-log index handed to its reader;
//! - the status hash (the ruleset rendered and hashed) and a resync's
//!   `verify` (the kernel listing, rendered as `nft -j` would print it for
//!   the mirror, parsed and compared);
//! - steady state: a new pod on another node (the incremental path and an
//!   element delta), then a new policy (a full compile and a full
//!   replacement).
//!
//! Live bytes come from a counting global allocator (current and peak bytes
//! asked of the system allocator): exact, and the same on a loaded machine.
//! They are heap bytes, not RSS: the allocator's own overhead and
//! fragmentation, thread stacks and the binary are not in them. For each
//! step it prints the live heap after the step and the peak during it;
//! then the deep size of the main holders (each measured as the bytes a
//! clone of it allocates).
//!
//! Scales: `realistic` (`nftpol_testkit::realistic`, the agent_latency
//! bench's cluster) and `large` (`synth`, 10k pods / 5k policies, where
//! issue 14 states its target); `NFTPOL_SCALES=realistic` picks. Under
//! `cargo test` (no `--bench` argument) it runs the small scale as a smoke
//! test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::Event;
use nftpol::core::compile::Options;
use nftpol::core::compile::incremental::{Output, Path, State};
use nftpol::core::k8s::cache::ClusterCache;
use nftpol::core::k8s::node_status::Held;
use nftpol::core::k8s::slim::SlimPod;
use nftpol::core::k8s::{ClusterNetworkPolicy, Objects, strip};
use nftpol::core::nft::ruleset::Ruleset;
use nftpol::kernel::enforcer::{Applied, Enforcer};
use nftpol::kernel::listing;
use nftpol::kernel::nft::{ApplyError, Nft};
use nftpol_testkit::{realistic, synth};
use serde_json::{Value, json};

/// The system allocator, counting the bytes currently allocated and their
/// high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Live bytes as glibc's malloc would hold them (see [`chunk`]).
static CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// The chunk glibc's malloc takes for a request of `n` bytes on x86_64:
/// 8 bytes of header, rounded up to 16, at least 32 (large requests are
/// mmapped and page-rounded instead; the difference is small at those sizes).
fn chunk(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
    CHUNKS.fetch_add(chunk(n), Ordering::Relaxed);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
    CHUNKS.fetch_sub(chunk(n), Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) };
        shrank(l.size());
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            shrank(l.size());
            grew(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a step: its peak is measured from the current live bytes.
fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

fn mb(b: usize) -> f64 {
    b as f64 / 1e6
}

/// The bytes `f`'s value allocates (dropped before returning).
fn bytes_of<T>(f: impl FnOnce() -> T) -> usize {
    let before = live();
    let v = f();
    let n = live().saturating_sub(before);
    drop(v);
    n
}

/// An `nft` that accepts every script and throws it away; its listing is
/// what a kernel holding the enforcer's mirror would print.
#[derive(Debug, Default, Clone)]
struct NullNft {
    /// What the kernel holds (set by the bench before a verify).
    listing: Arc<std::sync::Mutex<Option<String>>>,
}

impl Nft for NullNft {
    fn apply(&self, script: &str) -> Result<(), ApplyError> {
        std::hint::black_box(script.len());
        Ok(())
    }
    fn check(&self, _script: &str) -> Result<(), ApplyError> {
        Ok(())
    }
    fn list_table(&self) -> Result<String, ApplyError> {
        self.listing
            .lock()
            .unwrap()
            .take()
            .ok_or(ApplyError::Rejected {
                stderr: "no table".into(),
            })
    }
    fn version(&self) -> Result<String, ApplyError> {
        Ok("nftables v1.0.6".into())
    }
}

/// The reflector stores and their writers.
struct Stores {
    pods: (Store<SlimPod>, Writer<SlimPod>),
    namespaces: (Store<Namespace>, Writer<Namespace>),
    policies: (Store<NetworkPolicy>, Writer<NetworkPolicy>),
    nodes: (Store<Node>, Writer<Node>),
    cluster_policies: (Store<ClusterNetworkPolicy>, Writer<ClusterNetworkPolicy>),
}

/// The initial list of one kind into its store, each object stripped.
fn list_into<K>(w: &mut Writer<K>, objs: Vec<K>, strip: fn(&mut K))
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    w.apply_watcher_event(&Event::Init);
    for mut o in objs {
        strip(&mut o);
        w.apply_watcher_event(&Event::InitApply(o));
    }
    w.apply_watcher_event(&Event::InitDone);
}

/// A uid as the API server makes them.
fn uid(i: usize) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        i,
        i % 65536,
        i % 4096,
        i % 4096,
        i
    )
}

/// Object metadata as the API server adds it.
fn served_meta(v: &mut Value, i: usize) {
    let m = &mut v["metadata"];
    m["uid"] = json!(uid(i));
    m["resourceVersion"] = json!(format!("{}", 1_000_000 + i));
    m["creationTimestamp"] = json!("2026-12-04T10:00:00Z");
    m["managedFields"] = json!([{"manager": "kubectl", "operation": "Update",
        "apiVersion": "v1", "time": "2026-12-04T10:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]);
}

/// A pod as the API server serves it: metadata, the spec defaults of
/// `SetDefaults_Pod` and friends, the status a kubelet writes.
fn served_pod(p: &Pod, i: usize) -> Pod {
    let mut v = serde_json::to_value(p).unwrap();
    served_meta(&mut v, i);
    v["metadata"]["generation"] = json!(1);
    v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "rs", "uid": uid(i + 1), "controller": true, "blockOwnerDeletion": true}]);
    let spec = &mut v["spec"];
    for (k, d) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("serviceAccount", json!("default")),
        ("serviceAccountName", json!("default")),
        ("terminationGracePeriodSeconds", json!(30)),
    ] {
        spec[k] = d;
    }
    for c in spec["containers"].as_array_mut().unwrap() {
        c["imagePullPolicy"] = json!("Always");
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["terminationMessagePolicy"] = json!("File");
        c["resources"] = json!({});
        for port in c["ports"].as_array_mut().into_iter().flatten() {
            if port.get("protocol").is_none() {
                port["protocol"] = json!("TCP");
            }
        }
    }
    let st = &mut v["status"];
    let first = st["podIPs"][0]["ip"].clone();
    st["podIP"] = first;
    st["qosClass"] = json!("BestEffort");
    st["startTime"] = json!("2026-12-04T10:00:01Z");
    st["hostIP"] = json!("192.168.0.2");
    st["hostIPs"] = json!([{"ip": "192.168.0.2"}]);
    st["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    serde_json::from_value(v).unwrap()
}

fn served<K: serde::Serialize + serde::de::DeserializeOwned>(o: &K, i: usize) -> K {
    let mut v = serde_json::to_value(o).unwrap();
    served_meta(&mut v, i);
    if v.get("spec").is_some() && v["kind"] == "NetworkPolicy" {
        v["metadata"]["generation"] = json!(1);
    }
    serde_json::from_value(v).unwrap()
}

/// The served objects of one cluster (the generator's output dropped).
struct Served {
    /// The objects' JSON as a list sends it, in bytes.
    json_bytes: usize,
    namespaces: Vec<Namespace>,
    pods: Vec<SlimPod>,
    policies: Vec<NetworkPolicy>,
}

fn serve(objs: Objects) -> Served {
    let mut i = 0;
    let mut next = || {
        i += 1;
        i
    };
    let namespaces: Vec<Namespace> = objs
        .namespaces
        .iter()
        .map(|o| served(&o.1, next()))
        .collect();
    let pods: Vec<Pod> = objs.pods.iter().map(|o| served_pod(&o.1, next())).collect();
    let policies: Vec<NetworkPolicy> = objs.policies.iter().map(|o| served(&o.1, next())).collect();
    fn len<T: serde::Serialize>(v: &[T]) -> usize {
        v.iter().map(|o| serde_json::to_vec(o).unwrap().len()).sum()
    }
    let json_bytes = len(&namespaces) + len(&pods) + len(&policies);
    Served {
        json_bytes,
        namespaces,
        // Parsed as the agent's watch parses a pod.
        pods: pods.iter().map(SlimPod::from).collect(),
        policies,
    }
}

struct Table {
    rows: Vec<(String, usize, usize, usize)>,
}

impl Table {
    /// Records a step that just ended: live bytes now, peak since its start.
    fn row(&mut self, step: impl Into<String>) {
        let chunks = CHUNKS.load(Ordering::Relaxed);
        let row = (step.into(), live(), PEAK.load(Ordering::Relaxed), chunks);
        println!(
            "  {:<62} {:>8.1} {:>8.1} {:>9.1}",
            row.0,
            mb(row.1),
            mb(row.2),
            mb(row.3)
        );
        self.rows.push(row);
        reset_peak();
    }
}

fn options() -> Options {
    Options {
        node: Some("node-01".into()),
        ..Options::default()
    }
}

/// What the worker's apply does: model update, the status' policy list
/// (only when some policy's resourceVersion moved), compile (edits on the
/// incremental path), sync, drop-log index handed over (see `agent::worker`).
struct Agent {
    model: ClusterCache,
    compiler: State,
    enforcer: Enforcer,
    nft: NullNft,
    drop_log: Option<Arc<nftpol::core::compile::droplog::Index>>,
    held: Held,
    held_version: Option<u64>,
}

/// Wall time of an apply's steps (CPU-bound here: the `nft` does nothing).
#[derive(Debug, Default)]
struct Steps {
    model: Duration,
    held: Duration,
    compile: Duration,
    sync: Duration,
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "model {:.1} ms, status list {:.1} ms, compile {:.1} ms, sync {:.1} ms",
            ms(self.model),
            ms(self.held),
            ms(self.compile),
            ms(self.sync)
        )
    }
}

impl Agent {
    fn apply(&mut self, s: &Stores) -> (Path, Applied, Steps) {
        let mut steps = Steps::default();
        let t = Instant::now();
        let (ns, pods, pols) = (
            s.namespaces.0.state(),
            s.pods.0.state(),
            s.policies.0.state(),
        );
        let (cnps, nodes) = (s.cluster_policies.0.state(), s.nodes.0.state());
        self.model.update(&ns, &pods, &pols);
        self.model.update_cluster_scoped(&cnps, &nodes);
        steps.model = t.elapsed();
        let t = Instant::now();
        let versions = self.model.policy_versions();
        if self.held_version != Some(versions) {
            self.held = Held::of(pols.iter().map(|o| &**o), cnps.iter().map(|o| &**o));
            self.held_version = Some(versions);
        }
        steps.held = t.elapsed();
        let t = Instant::now();
        let changes = self.model.take_changes();
        let (out, path) = self.compiler.compile_edits(
            self.model.cluster(),
            self.model.diagnostics(),
            &changes,
            &options(),
        );
        steps.compile = t.elapsed();
        let t = Instant::now();
        let (applied, drop_log) = match out {
            Output::Full(c) => (self.enforcer.sync_owned(c.ruleset), Arc::new(c.drop_log)),
            Output::Edited(e) => (
                self.enforcer.sync_edits(&e.edits).expect("a mirror"),
                e.drop_log,
            ),
            Output::Reshaped(r) => {
                let current = self.compiler.current().expect("indexed");
                let applied = self.enforcer.sync_touched(current, &r.touched);
                (applied.expect("a mirror"), r.drop_log)
            }
        };
        steps.sync = t.elapsed();
        self.drop_log = Some(drop_log);
        (path, applied.expect("null nft"), steps)
    }
}

fn run(name: &str, objs: Objects) {
    println!(
        "\n{name}: {} namespaces, {} pods, {} policies (node-01's view)",
        objs.namespaces.len(),
        objs.pods.len(),
        objs.policies.len()
    );
    println!(
        "  {:<62} {:>8} {:>8} {:>9}",
        "step", "live MB", "peak MB", "malloc MB"
    );
    let served = serve(objs);
    let input = served.json_bytes;
    let mut t = Table { rows: Vec::new() };
    let mut stores = Stores {
        pods: reflector::store(),
        namespaces: reflector::store(),
        policies: reflector::store(),
        nodes: reflector::store(),
        cluster_policies: reflector::store(),
    };
    // The served objects are input, not the agent's: the step's peak is
    // not reported (the real list reads pages of 500).
    list_into(
        &mut stores.namespaces.1,
        served.namespaces,
        strip::namespace,
    );
    list_into(&mut stores.pods.1, served.pods, strip::pod);
    list_into(
        &mut stores.policies.1,
        served.policies,
        strip::network_policy,
    );
    list_into(&mut stores.nodes.1, Vec::new(), strip::node);
    list_into(
        &mut stores.cluster_policies.1,
        Vec::new(),
        strip::cluster_network_policy,
    );
    reset_peak();
    t.row(format!(
        "watch stores, stripped (served JSON: {:.1} MB)",
        input as f64 / 1e6
    ));

    let nft = NullNft::default();
    let mut agent = Agent {
        model: ClusterCache::new(),
        compiler: State::default(),
        enforcer: Enforcer::with(nft.clone()),
        nft,
        drop_log: None,
        held: Held::default(),
        held_version: None,
    };
    {
        let (ns, pods, pols) = (
            stores.namespaces.0.state(),
            stores.pods.0.state(),
            stores.policies.0.state(),
        );
        agent.model.update(&ns, &pods, &pols);
        agent.model.update_cluster_scoped(&[], &[]);
    }
    t.row("+ ClusterCache (model, versions, diagnostics)");
    agent.held = Held::of(
        stores.policies.0.state().iter().map(|o| &**o),
        std::iter::empty(),
    );
    agent.held_version = Some(agent.model.policy_versions());
    t.row("+ status: policies held (Held)");
    let changes = agent.model.take_changes();
    let (compiled, path) = agent.compiler.compile(
        agent.model.cluster(),
        agent.model.diagnostics(),
        &changes,
        &options(),
    );
    assert!(matches!(path, Path::Full(_)));
    t.row("+ first compile (full) and the incremental index");
    let applied = agent
        .enforcer
        .sync_owned(compiled.ruleset)
        .expect("null nft");
    assert_eq!(applied, Applied::Full);
    agent.drop_log = Some(Arc::new(compiled.drop_log));
    drop(compiled.diagnostics);
    t.row("+ first apply: ruleset -> enforcer mirror, drop-log index");
    let hash = nftpol::agent::status::ruleset_hash(agent.enforcer.mirror().unwrap());
    std::hint::black_box(hash);
    t.row("  status hash (render + sha256)");
    *agent.nft.listing.lock().unwrap() = Some(listing::render(agent.enforcer.mirror().unwrap()));
    reset_peak();
    let (same, _) = agent.enforcer.verify_counting().expect("listing");
    assert!(same, "the listing of the mirror verifies");
    t.row("  resync: verify (the kernel's listing read and compared)");

    // A new pod on another node: a replica of the first pod of a namespace.
    // The store is a hash map: pick by name, so every run adds the same pod.
    let mut pods = stores.pods.0.state();
    pods.sort_by(|a, b| {
        let key = |p: &SlimPod| (p.metadata.namespace.clone(), p.metadata.name.clone());
        key(a).cmp(&key(b))
    });
    let model_pod = pods[0].clone();
    let mut p = (*model_pod).clone();
    p.metadata.name = Some("memory-bench-new".into());
    p.metadata.resource_version = Some("9000001".into());
    p.spec.as_mut().unwrap().node_name = Some("node-02".into());
    let st = p.status.as_mut().unwrap();
    st.pod_ip = Some("10.250.0.2".into());
    st.pod_ips = Some(vec![
        k8s_openapi::api::core::v1::PodIP {
            ip: "10.250.0.2".into(),
        },
        k8s_openapi::api::core::v1::PodIP {
            ip: "fd00:250::2".into(),
        },
    ]);
    stores.pods.1.apply_watcher_event(&Event::Apply(p));
    reset_peak();
    let (path, applied, pod_steps) = agent.apply(&stores);
    t.row(format!(
        "pod added on node-02: {path:?}, {}",
        applied.kind()
    ));

    // A new policy isolating a namespace with pods on node-01 (a structural
    // change: a new policy chain and group).
    let local = pods
        .iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-01"))
        .expect("a pod on node-01");
    let pol: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "memory-bench-new", "namespace": local.metadata.namespace,
                     "resourceVersion": "9000002"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"memory-bench": "x"}}}]}]}
    }))
    .unwrap();
    stores.policies.1.apply_watcher_event(&Event::Apply(pol));
    reset_peak();
    let (path, applied, policy_steps) = agent.apply(&stores);
    let reason = match path {
        Path::Full(r) => format!("full ({r})"),
        Path::Incremental => "incremental".into(),
        Path::Partial => "partial".into(),
    };
    t.row(format!("policy added: {reason}, {}", applied.kind()));
    let overall = t.rows.iter().skip(1).map(|r| r.2).max().unwrap_or(0);
    println!("  peak over the agent's steps: {:.1} MB", mb(overall));
    println!("  time (wall, one sample, counting allocator on):");
    println!("    pod added:    {pod_steps}");
    println!("    policy added: {policy_steps}");

    // The holders, each as the bytes a copy of it allocates.
    println!("  holders (deep size of a copy):");
    let holder = |what: &str, n: usize| println!("    {what:<56} {:>8.1}", mb(n));
    holder(
        "pod store",
        bytes_of(|| {
            stores
                .pods
                .0
                .state()
                .iter()
                .map(|o| (**o).clone())
                .collect::<Vec<_>>()
        }),
    );
    holder(
        "policy store",
        bytes_of(|| {
            stores
                .policies
                .0
                .state()
                .iter()
                .map(|o| (**o).clone())
                .collect::<Vec<_>>()
        }),
    );
    holder(
        "namespace store",
        bytes_of(|| {
            stores
                .namespaces
                .0
                .state()
                .iter()
                .map(|o| (**o).clone())
                .collect::<Vec<_>>()
        }),
    );
    let c = agent.model.cluster();
    // The pods themselves, not pointers to them (the model shares them).
    holder(
        "model: pods",
        bytes_of(|| {
            c.pods
                .iter()
                .map(|(k, p)| (k.clone(), nftpol::core::model::Pod::clone(p)))
                .collect::<std::collections::BTreeMap<_, _>>()
        }),
    );
    holder("model: policies", bytes_of(|| c.policies.clone()));
    holder("model: namespaces", bytes_of(|| c.namespaces.clone()));
    let n = agent.model.diagnostics().len();
    holder(
        &format!("model: conversion diagnostics ({n})"),
        bytes_of(|| agent.model.diagnostics()),
    );
    let rs: &Ruleset = agent.enforcer.mirror().unwrap();
    holder(
        "ruleset (one copy: the mirror; the index holds another)",
        bytes_of(|| rs.clone()),
    );
    holder("  of which sets", bytes_of(|| rs.sets.clone()));
    holder("  of which maps", bytes_of(|| rs.maps.clone()));
    holder("  of which chains", bytes_of(|| rs.chains.clone()));
    let dl = agent.drop_log.as_deref().unwrap();
    holder("drop-log index (pods by address)", bytes_of(|| dl.clone()));
    holder("status Held", bytes_of(|| agent.held.clone()));
    let text = nftpol::core::nft::render::script(rs);
    println!(
        "    (the ruleset's nft -f text: {:.1} MB; elements: {})",
        mb(text.len()),
        rs.stats().elements
    );
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let wanted = std::env::var("NFTPOL_SCALES").unwrap_or_else(|_| "realistic,large".into());
    println!(
        "live heap (counting allocator) of what `nftpol run --node node-01` holds; sizes in MB (10^6 bytes)"
    );
    {
        use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        use std::mem::size_of;
        println!(
            "inline sizes (bytes): Pod {}, ObjectMeta {}, PodSpec {}, Container {}, PodStatus {}, NetworkPolicy {}, model Pod {}, model Policy {}",
            size_of::<Pod>(),
            size_of::<ObjectMeta>(),
            size_of::<PodSpec>(),
            size_of::<Container>(),
            size_of::<PodStatus>(),
            size_of::<NetworkPolicy>(),
            size_of::<nftpol::core::model::Pod>(),
            size_of::<nftpol::core::model::Policy>(),
        );
    }
    if smoke {
        run("small", synth::generate(synth::SCALES[0], 42));
        return;
    }
    for name in wanted.split(',') {
        match name {
            "realistic" => run("realistic", realistic::generate(42)),
            s => {
                let scale = synth::SCALES.iter().find(|x| x.name == s).expect("a scale");
                run(s, synth::generate(*scale, 42));
            }
        }
    }
}
