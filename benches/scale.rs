//! Compile, memory and kernel-load figures per cluster scale.
//!
//! `cargo bench --bench scale` prints, for each scale (small, medium, large)
//! and each view (`node`: node-01's table, as the DaemonSet compiles it;
//! `all`: every pod enforced, no `--node`):
//! - compile time of the library from parsed objects, with a breakdown
//!   (convert, selector graph, compile, render), ruleset size;
//! - recompile after one pod relabel, as the agent does it: its
//!   `ClusterCache` converts only the relabelled pod, then the selector graph
//!   and the compile run over the whole model; plus the size of the
//!   resulting element delta;
//! - peak memory of a fresh child process compiling that scale;
//! - `nftpol compile` end to end (process start, reading and parsing the
//!   manifests, compile, render, write) with its peak RSS;
//! - in a fresh network namespace, through the agent's real apply path
//!   (`nft::enforcer::Enforcer`, one `nft -f -` process per sync): first load
//!   of the table, one pod's relabel applied as an element delta, and the
//!   same change applied as a full replacement, alternated round by round.
//!
//! - with ClusterNetworkPolicies (Admin and Baseline tiers,
//!   [`synth::add_cluster_policies`]) added, 25 / 100 / 500 at the small /
//!   medium / large scale: compile time of both views, ruleset size and the
//!   node table's first load, measured round by round alternately with the
//!   NetworkPolicy-only cluster (`== ClusterNetworkPolicy` rows).
//!
//! Under `cargo test` it runs the medium scale once as a smoke test.
//! `NFTPOL_CNP_ONLY=1` runs only the ClusterNetworkPolicy comparison.
//! `NFTPOL_SCALES=small,large` picks scales; with `NFTPOL_PLOTS=DIR` it
//! writes `DIR/perf-scale.png`.

use nftpol_testkit as kit;

use nftpol_testkit::plot;
use nftpol_testkit::synth;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol::core::k8s::slim::SlimPod;

use anyhow::{Context, Result, bail, ensure};
use nftpol::core::compile::Options;
use nftpol::core::k8s::Objects;
use nftpol::core::k8s::cache::ClusterCache;
use nftpol::core::nft::delta::{Update, diff};
use nftpol::core::nft::ruleset::Ruleset;
use nftpol::kernel::enforcer::{Applied, Enforcer};

use kit::netns;

/// The node whose view the `node` rows compile.
const NODE: &str = "node-01";
/// Environment variable that turns this binary into the memory-measuring child.
const MEM_CHILD: &str = "NFTPOL_BENCH_MEM_CHILD";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// CPU time of the calling thread: on a shared, loaded machine wall time
/// includes waiting for a core; this is the "one core" figure.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `f`'s value and thread CPU time.
fn cpu_of<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let c = thread_cpu();
    let v = f();
    (v, thread_cpu() - c)
}

/// (wall, thread CPU) time of `f`.
fn timed_cpu<T>(f: impl FnOnce() -> T) -> (Duration, Duration) {
    let c = thread_cpu();
    let (_, wall) = timed(f);
    (wall, thread_cpu() - c)
}

fn opts(node: Option<&str>) -> Options {
    Options {
        node: node.map(String::from),
        ..Default::default()
    }
}

/// Objects as a watch store holds them (each in an `Arc`).
struct Stored {
    namespaces: Vec<Arc<Namespace>>,
    pods: Vec<Arc<SlimPod>>,
    policies: Vec<Arc<NetworkPolicy>>,
}

impl Stored {
    fn of(objs: &Objects) -> Stored {
        Stored {
            namespaces: objs
                .namespaces
                .iter()
                .map(|o| Arc::new(o.1.clone()))
                .collect(),
            pods: objs
                .pods
                .iter()
                .map(|o| Arc::new(SlimPod::from(&o.1)))
                .collect(),
            policies: objs
                .policies
                .iter()
                .map(|o| Arc::new(o.1.clone()))
                .collect(),
        }
    }

    /// `self` with the objects that differ in `objs` replaced (the others
    /// keep their `Arc`s, as in a store).
    fn with(&self, objs: &Objects) -> Stored {
        fn swap<K: Clone + PartialEq>(
            v: &[Arc<K>],
            new: &[(nftpol::core::diag::Source, K)],
        ) -> Vec<Arc<K>> {
            v.iter()
                .zip(new)
                .map(|(a, (_, n))| {
                    if **a == *n {
                        a.clone()
                    } else {
                        Arc::new(n.clone())
                    }
                })
                .collect()
        }
        Stored {
            namespaces: swap(&self.namespaces, &objs.namespaces),
            pods: self
                .pods
                .iter()
                .zip(&objs.pods)
                .map(|(a, (_, n))| {
                    let n = SlimPod::from(n);
                    if **a == n { a.clone() } else { Arc::new(n) }
                })
                .collect(),
            policies: swap(&self.policies, &objs.policies),
        }
    }
}

/// What the agent does after a change: the cache converts only objects
/// whose resourceVersion changed, then the selector graph and the compile.
fn agent_recompile(cache: &mut ClusterCache, objs: &Stored, node: Option<&str>) -> Ruleset {
    cache.update(&objs.namespaces, &objs.pods, &objs.policies);
    nftpol::core::compile::compile_cluster(cache.cluster(), cache.diagnostics(), &opts(node))
        .ruleset
}

fn compile(objs: &Objects, node: Option<&str>) -> Result<Ruleset> {
    let out = nftpol::core::compile::compile_objects(objs, &opts(node));
    if let Some(d) = out.diagnostics.iter().find(|d| d.is_error()) {
        bail!("synthetic cluster does not compile: {d:?}");
    }
    Ok(out.ruleset)
}

/// Relabels one pod (its `app` label moves to another value), preferably on
/// another node than [`NODE`], so that node's table changes by elements
/// only; returns the modified objects and a description of the change, or
/// `None` when no such relabel exists among the first pods (tiny clusters).
fn relabel_one(objs: &Objects, before: &Ruleset) -> Result<Option<(Objects, String)>> {
    // Bounded: a generator change that breaks this should fail fast.
    let n = objs.pods.len().min(100);
    let is_local = |k: usize| {
        objs.pods[k]
            .1
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            == Some(NODE)
    };
    let remote_first = (0..n)
        .filter(|k| !is_local(*k))
        .chain((0..n).filter(|k| is_local(*k)));
    for k in remote_first {
        for step in 1..5 {
            let mut changed = objs.clone();
            let p = &mut changed.pods[k].1;
            let labels = p.metadata.labels.get_or_insert_with(Default::default);
            let app = labels.get("app").cloned().unwrap_or_default();
            let n: usize = app.trim_start_matches("app-").parse().unwrap_or(0);
            let to = format!("app-{}", (n + step) % 5);
            labels.insert("app".into(), to.clone());
            p.metadata.resource_version = Some("2".into());
            let what = format!(
                "{}/{} app={app} -> {to}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            let after = compile(&changed, Some(NODE))?;
            if matches!(diff(before, &after), Update::Elements { .. }) {
                return Ok(Some((changed, what)));
            }
        }
    }
    Ok(None)
}

/// The memory child: generates the scale, then compiles it, and prints the
/// resident size before compiling and the peak during it (VmHWM is reset
/// first, so the peak is this compile's, not the generator's).
fn mem_child(spec: &str) -> Result<()> {
    let (scale, view) = spec.split_once(':').context("child spec")?;
    let scale = synth::SCALES
        .iter()
        .find(|s| s.name == scale)
        .context("child scale")?;
    let objs = synth::generate(*scale, 42);
    let status = |key: &str| -> Result<u64> {
        let s = std::fs::read_to_string("/proc/self/status")?;
        let line = s
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{key} in /proc/self/status"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    };
    let before = status("VmRSS:")?;
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM")?;
    let rs = compile(&objs, (view == "node").then_some(NODE))?;
    let text = nftpol::core::nft::render::script(&rs);
    std::hint::black_box(&text);
    let peak = status("VmHWM:")?;
    println!("{before} {peak}");
    Ok(())
}

/// (resident KiB with the input loaded, peak KiB while compiling) of a fresh
/// child process.
fn mem_of(scale: &str, view: &str) -> Result<(u64, u64)> {
    let out = Command::new(std::env::current_exe()?)
        .env(MEM_CHILD, format!("{scale}:{view}"))
        .output()
        .context("running the memory child")?;
    ensure!(
        out.status.success(),
        "memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = s
        .split_whitespace()
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?;
    ensure!(v.len() == 2, "memory child printed {s:?}");
    Ok((v[0], v[1]))
}

/// Writes the objects as one JSON-stream manifest file in `dir`.
fn write_manifests(objs: &Objects, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("cluster.json"))?);
    for (_, o) in &objs.namespaces {
        serde_json::to_writer(&mut f, o)?;
        writeln!(f)?;
    }
    for (_, o) in &objs.pods {
        serde_json::to_writer(&mut f, o)?;
        writeln!(f)?;
    }
    for (_, o) in &objs.policies {
        serde_json::to_writer(&mut f, o)?;
        writeln!(f)?;
    }
    f.flush()?;
    Ok(())
}

/// Runs `nftpol compile -f DIR [--node]`; returns wall time and peak RSS (KiB).
fn cli_compile(dir: &Path, node: Option<&str>) -> Result<(Duration, u64)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nftpol"));
    cmd.arg("compile")
        .arg("-f")
        .arg(dir)
        .args(["-o", "/dev/null"]);
    if let Some(n) = node {
        cmd.args(["--node", n]);
    }
    // stderr to a file, not a pipe nobody reads while waiting (the lints'
    // warnings on a large input fill a pipe and the child blocks).
    let err_path = dir.with_extension("stderr");
    let err_file = std::fs::File::create(&err_path).context("creating the stderr file")?;
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .context("starting nftpol")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; status and rusage point to locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let d = t.elapsed();
    ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "nftpol compile failed (status {status}): {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    Ok((d, ru.ru_maxrss as u64))
}

/// Kernel figures of one view, measured in namespace `ns`.
struct Kernel {
    load: Duration,
    delta: Option<Duration>,
    full: Duration,
    delta_elements: usize,
}

/// First load of `old`; then, alternated, `old` <-> `new` as element deltas
/// and as full replacements (without `new`: full replacements of `old`).
fn kernel(ns: &str, old: &Ruleset, new: Option<&Ruleset>, rounds: usize) -> Result<Kernel> {
    netns::in_netns(ns, || -> Result<Kernel> {
        // First load into a namespace without the table.
        let mut e = Enforcer::new("nft");
        let _ = e.remove_table();
        let mut e = Enforcer::new("nft");
        let (r, load) = timed(|| e.sync(old));
        ensure!(r? == Applied::Full, "first sync is not a full load");
        if let Some(new) = new {
            // The in-process part of a delta sync: the diff (the agent moves the
            // new ruleset into its mirror with `sync_owned`, no copy).
            let (_, t_diff) = cpu_of(|| diff(old, new));
            println!(
                "    in-process part of a delta: diff {:.1} ms (CPU)",
                ms(t_diff)
            );
        }
        let (mut deltas, mut fulls) = (Vec::new(), Vec::new());
        let mut delta_elements = 0;
        for _ in 0..rounds {
            // old -> new and back as element deltas, then both as full replacements.
            if let Some(new) = new {
                for target in [new, old] {
                    // As the agent does: the ruleset moves into the mirror.
                    let owned = target.clone();
                    let (r, d) = timed(|| e.sync_owned(owned));
                    match r? {
                        Applied::Delta { added, deleted } => delta_elements = added + deleted,
                        other => bail!("expected an element delta, got {other:?}"),
                    }
                    deltas.push(d);
                }
            }
            for target in [new.unwrap_or(old), old] {
                e.invalidate();
                let (r, d) = timed(|| e.sync(target));
                ensure!(r? == Applied::Full, "expected a full replacement");
                fulls.push(d);
            }
        }
        ensure!(e.verify()?, "kernel table differs from the mirror");
        e.remove_table()?;
        Ok(Kernel {
            load,
            delta: (!deltas.is_empty()).then(|| median(deltas)),
            full: median(fulls),
            delta_elements,
        })
    })?
}

struct Row {
    scale: synth::Scale,
    view: &'static str,
    compile: Duration,
    compile_cpu: Duration,
    relabel: Duration,
    relabel_cpu: Duration,
    cli: Duration,
    cli_rss: u64,
    mem: (u64, u64),
    k: Kernel,
}

fn main() -> Result<()> {
    if let Ok(spec) = std::env::var(MEM_CHILD) {
        return mem_child(&spec);
    }
    let bench = std::env::args().any(|a| a == "--bench");
    // The smoke run takes the medium scale: the small one has no single-pod
    // relabel that is an element delta for node-01, so no delta path.
    let scales: Vec<synth::Scale> = match std::env::var("NFTPOL_SCALES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                synth::SCALES
                    .iter()
                    .find(|s| s.name == n)
                    .copied()
                    .with_context(|| format!("NFTPOL_SCALES: unknown scale {n:?}"))
            })
            .collect::<Result<_>>()?,
        Err(_) if bench => synth::SCALES.to_vec(),
        Err(_) => vec![synth::SCALES[1]],
    };
    let rounds = if bench { 5 } else { 1 };
    let ns = netns::Netns::new("scale")?;
    let tmp = std::env::temp_dir().join(format!("nftpol-bench-{}", std::process::id()));
    let result = run(&scales, rounds, bench, ns.name(), &tmp);
    drop(ns);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// One variant's figures of the ClusterNetworkPolicy comparison.
struct CnpRow {
    label: String,
    view: &'static str,
    pods: usize,
    pols: usize,
    cnps: usize,
    compile: Duration,
    compile_cpu: Duration,
    stats: nftpol::core::nft::ruleset::Stats,
    bytes: usize,
    load: Option<Duration>,
    full: Option<Duration>,
}

/// NetworkPolicy-only against the same cluster with ClusterNetworkPolicies:
/// compile (both views) and, for the node view, the first load and a full
/// replacement through [`kernel`], the two variants alternated round by round.
fn run_cnp(scales: &[synth::Scale], rounds: usize, ns: &str) -> Result<()> {
    println!(
        "\n== ClusterNetworkPolicy (NetworkPolicy-only and +CNP variants alternated; median of {rounds})"
    );
    let mut rows: Vec<CnpRow> = Vec::new();
    for &scale in scales {
        let objs = synth::generate(scale, 42);
        let n = synth::cluster_policy_count(&scale);
        let mut with = objs.clone();
        synth::add_cluster_policies(&mut with, n, 7);
        ensure!(with.cluster_policies.len() == n, "expected {n} CNPs");
        let variants = [
            (scale.name.to_string(), &objs, 0),
            (format!("{}+{n} CNP", scale.name), &with, n),
        ];
        for (view, node) in [("node", Some(NODE)), ("all", None)] {
            let mut times: [Vec<(Duration, Duration)>; 2] = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                for k in 0..2 {
                    let v = (k + round) % 2;
                    times[v].push(timed_cpu(|| compile(variants[v].1, node)));
                }
            }
            let sets: Vec<Ruleset> = variants
                .iter()
                .map(|v| compile(v.1, node))
                .collect::<Result<_>>()?;
            let mut loads: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
            let mut fulls: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
            if node.is_some() {
                for round in 0..rounds {
                    for k in 0..2 {
                        let v = (k + round) % 2;
                        let kf = kernel(ns, &sets[v], None, 1).with_context(|| {
                            format!("kernel figures of {}/{view}", variants[v].0)
                        })?;
                        loads[v].push(kf.load);
                        fulls[v].push(kf.full);
                    }
                }
            }
            for v in 0..2 {
                let (wall, cpu): (Vec<Duration>, Vec<Duration>) =
                    std::mem::take(&mut times[v]).into_iter().unzip();
                let text = nftpol::core::nft::render::script(&sets[v]);
                rows.push(CnpRow {
                    label: variants[v].0.clone(),
                    view,
                    pods: scale.pods,
                    pols: scale.policies,
                    cnps: variants[v].2,
                    compile: median(wall),
                    compile_cpu: median(cpu),
                    stats: sets[v].stats(),
                    bytes: text.len(),
                    load: (!loads[v].is_empty()).then(|| median(std::mem::take(&mut loads[v]))),
                    full: (!fulls[v].is_empty()).then(|| median(std::mem::take(&mut fulls[v]))),
                });
            }
        }
    }
    println!(
        "{:<22} {:>6} {:>6} {:>5} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "scale/view",
        "pods",
        "pols",
        "cnps",
        "compile",
        "cpu",
        "chains",
        "rules",
        "sets+maps",
        "elements",
        "bytes",
        "load",
        "full"
    );
    let opt = |d: Option<Duration>| d.map_or("n/a".into(), |d| format!("{:.1}", ms(d)));
    for r in &rows {
        println!(
            "{:<22} {:>6} {:>6} {:>5} {:>9.1} {:>9.1} {:>7} {:>7} {:>9} {:>9} {:>10} {:>9} {:>9}",
            format!("{}/{}", r.label, r.view),
            r.pods,
            r.pols,
            r.cnps,
            ms(r.compile),
            ms(r.compile_cpu),
            r.stats.chains,
            r.stats.rules,
            r.stats.sets + r.stats.maps,
            r.stats.elements,
            r.bytes,
            opt(r.load),
            opt(r.full),
        );
    }
    println!(
        "(times in ms; compile: library from parsed objects, wall and thread CPU time; load: first \
         load of {NODE}'s table into a namespace without it, full: a whole-table replacement, both \
         through Enforcer::sync, nft process included; CNPs: ~60% Admin, 40% Baseline, 1-5 rules each)"
    );
    Ok(())
}

fn run(scales: &[synth::Scale], rounds: usize, bench: bool, ns: &str, tmp: &Path) -> Result<()> {
    if std::env::var_os("NFTPOL_CNP_ONLY").is_some() {
        return run_cnp(scales, rounds, ns);
    }
    let mut rows = Vec::new();
    println!("== compile (library, from parsed objects; median of {rounds})");
    for &scale in scales {
        let mut objs = synth::generate(scale, 42);
        // As from the API server: every object has a resourceVersion.
        nftpol_testkit::bench::versioned(&mut objs);
        let base_node = compile(&objs, Some(NODE))?;
        let relabel = relabel_one(&objs, &base_node)?;
        let dir = tmp.join(scale.name);
        write_manifests(&objs, &dir)?;
        for (view, node) in [("node", Some(NODE)), ("all", None)] {
            let (compile_times, compile_cpu): (Vec<Duration>, Vec<Duration>) = (0..rounds)
                .map(|_| timed_cpu(|| compile(&objs, node)))
                .unzip();
            let old = compile(&objs, node)?;
            let changed = relabel.as_ref().map(|r| &r.0).unwrap_or(&objs);
            // The agent's path: its ClusterCache holds the model of `objs`; the
            // relabel converts one pod, then graph + compile run (and back,
            // untimed, before the next round).
            let mut cache = ClusterCache::new();
            let stored = Stored::of(&objs);
            let stored_changed = stored.with(changed);
            agent_recompile(&mut cache, &stored, node);
            let (relabel_times, relabel_cpu): (Vec<Duration>, Vec<Duration>) = (0..rounds)
                .map(|_| {
                    let t = timed_cpu(|| agent_recompile(&mut cache, &stored_changed, node));
                    agent_recompile(&mut cache, &stored, node);
                    t
                })
                .unzip();
            let new = compile(changed, node)?;
            // The same relabel may be structural in another view.
            let new = (relabel.is_some() && matches!(diff(&old, &new), Update::Elements { .. }))
                .then_some(new);
            // Where the (CPU) time goes: conversion, graph, compile, render.
            let (cluster, t_conv) = cpu_of(|| nftpol::core::k8s::to_cluster(&objs).0);
            let (graph, t_graph) = cpu_of(|| nftpol::core::graph::SelectorGraph::build(&cluster));
            let (out, t_comp) =
                cpu_of(|| nftpol::core::compile::compile(&cluster, &graph, &opts(node)));
            let (text, t_render) = cpu_of(|| nftpol::core::nft::render::script(&out.ruleset));
            let s = old.stats();
            println!(
                "  {}/{view}: {} chains, {} rules, {} sets+maps, {} elements, {} bytes; \
                 convert {:.1} ms, graph {:.1} ms, compile {:.1} ms, render {:.1} ms",
                scale.name,
                s.chains,
                s.rules,
                s.sets + s.maps,
                s.elements,
                text.len(),
                ms(t_conv),
                ms(t_graph),
                ms(t_comp),
                ms(t_render)
            );
            let cli: Vec<(Duration, u64)> = (0..rounds.min(3))
                .map(|_| cli_compile(&dir, node))
                .collect::<Result<_>>()?;
            let cli_rss = cli.iter().map(|c| c.1).max().unwrap_or(0);
            let cli = median(cli.into_iter().map(|c| c.0).collect());
            let mem = mem_of(scale.name, view)?;
            let k = kernel(ns, &old, new.as_ref(), rounds)
                .with_context(|| format!("kernel figures of {}/{view}", scale.name))?;
            rows.push(Row {
                scale,
                view,
                compile: median(compile_times),
                compile_cpu: median(compile_cpu),
                relabel: median(relabel_times),
                relabel_cpu: median(relabel_cpu),
                cli,
                cli_rss,
                mem,
                k,
            });
        }
        match &relabel {
            Some((_, what)) => println!("  relabel for the relabel/delta columns: {what}"),
            None => println!(
                "  no single-pod relabel changes {NODE}'s table by elements only: no delta figures"
            ),
        }
    }

    println!(
        "\n== figures (medians of {rounds} rounds; kernel rows through Enforcer::sync, nft process included)"
    );
    println!(
        "{:<13} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>5} {:>9} {:>7}",
        "scale/view",
        "pods",
        "pols",
        "compile",
        "cpu",
        "relabel",
        "cpu",
        "cli",
        "cli MB",
        "RSS in MB",
        "peak MB",
        "load",
        "delta",
        "Δel",
        "full",
        "full/Δ"
    );
    for r in &rows {
        println!(
            "{:<13} {:>6} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>5} {:>9.1} {:>7}",
            format!("{}/{}", r.scale.name, r.view),
            r.scale.pods,
            r.scale.policies,
            ms(r.compile),
            ms(r.compile_cpu),
            ms(r.relabel),
            ms(r.relabel_cpu),
            ms(r.cli),
            r.cli_rss as f64 / 1024.0,
            r.mem.0 as f64 / 1024.0,
            r.mem.1 as f64 / 1024.0,
            ms(r.k.load),
            r.k.delta.map_or("n/a".into(), |d| format!("{:.1}", ms(d))),
            r.k.delta_elements,
            ms(r.k.full),
            r.k.delta.map_or("n/a".into(), |d| format!(
                "{:.1}",
                r.k.full.as_secs_f64() / d.as_secs_f64()
            )),
        );
    }
    println!(
        "(times in ms; compile/relabel: library from parsed objects, wall and thread CPU time, \
         relabel = the agent's recompile after one pod relabel (ClusterCache converts that pod, then graph + compile); cli: `nftpol compile` end to end incl. parsing; cli MB: its peak RSS; \
         RSS in / peak MB: fresh process holding the generated objects / peak while compiling; \
         delta: one pod's relabel as an element delta of Δel elements; full: the same change as a \
         whole-table replacement)"
    );

    if let Ok(dir) = std::env::var("NFTPOL_PLOTS") {
        let path = Path::new(&dir).join("perf-scale.png");
        let series = |name: &str, view: &str, f: fn(&Row) -> Duration| {
            (
                name.to_string(),
                rows.iter()
                    .filter(|r| r.view == view)
                    .map(|r| (r.scale.pods as f64, ms(f(r))))
                    .collect::<Vec<_>>(),
            )
        };
        plot::log_lines(
            &path,
            "nftpol compile and apply time against cluster size",
            "pods in the cluster (policies = pods / 2)",
            "milliseconds",
            &[
                series("compile (CPU), one node's table", "node", |r| r.compile_cpu),
                series("compile (CPU), whole cluster", "all", |r| r.compile_cpu),
                series("nftpol compile CLI, one node", "node", |r| r.cli),
                series("kernel load, one node's table", "node", |r| r.k.load),
                (
                    "one pod's change as delta, one node".to_string(),
                    rows.iter()
                        .filter(|r| r.view == "node")
                        .filter_map(|r| r.k.delta.map(|d| (r.scale.pods as f64, ms(d))))
                        .collect(),
                ),
            ],
        )?;
        println!("wrote {}", path.display());
    }
    run_cnp(scales, rounds, ns)?;
    if !bench {
        println!("(smoke run: `cargo bench --bench scale` for every scale)");
    }
    Ok(())
}
