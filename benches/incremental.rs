//! Incremental vs full compile for one pod relabel, as the agent runs them.
//!
//! `cargo bench --bench incremental` generates the cluster (`NFTPOL_SCALES`:
//! `small`, `large` (the default) or `realistic`), loads it into a
//! `ClusterCache` and an `incremental::State` (one full compile), picks a
//! pod whose `app` relabel takes the incremental path both ways, then
//! alternates, round by round, on the same model: the relabel (and back)
//! through `State::compile_edits` (the agent's path: the result as edits of
//! the ruleset the state keeps), and a full `compile_cluster` of the same
//! model. Both views: node-01's table and every pod. Then the same for a
//! relabel that takes the partial path both ways (a pod alone in its group:
//! the group chain goes and another comes). Prints medians of wall and
//! thread CPU time, their ratio and the load average before and after, and
//! the CPU time of turning the result into a whole ruleset (a copy: what
//! `State::compile`, the CLI's path, adds). The cache's conversion of the
//! one pod is common to both paths and not timed. `NFTPOL_ROUNDS` sets the
//! rounds (default 11; each is one incremental and one full compile per
//! direction). Under `cargo test` it runs the small scale with 2 rounds.
//! `NFTPOL_PROFILE=incremental` or `=partial` runs only that path's node
//! view and no full compiles (for `perf record`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nftpol::core::compile::incremental::{Path, State};
use nftpol::core::compile::{Options, compile_cluster};
use nftpol::core::k8s::Objects;
use nftpol::core::k8s::cache::ClusterCache;
use nftpol::core::nft::render::script;
use nftpol_testkit::bench::{loadavg, median_ms, relist, update_pods, versioned};
use nftpol_testkit::{realistic, synth};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (wall, thread CPU) of `f`, and its value.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (c, t) = (thread_cpu(), Instant::now());
    let v = f();
    (v, t.elapsed(), thread_cpu() - c)
}

/// `objs` with pod `k`'s `app` label moved `step` values on.
fn relabelled(objs: &Objects, k: usize, step: usize) -> (Objects, String) {
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
    (changed, what)
}

fn view(
    scale: synth::Scale,
    objs: &Objects,
    node: Option<&str>,
    rounds: usize,
    want: Path,
) -> Result<()> {
    let opts = Options {
        node: node.map(String::from),
        ..Options::default()
    };
    let mut cache = ClusterCache::new();
    let mut state = State::default();
    let compile = |cache: &mut ClusterCache, state: &mut State, objs: &Objects| {
        relist(cache, objs);
        let changes = cache.take_changes();
        state.compile(cache.cluster(), cache.diagnostics(), &changes, &opts)
    };
    compile(&mut cache, &mut state, objs);
    // A relabel that takes the wanted path there and back: for the partial
    // path, a pod enforced here that is alone in its group (or makes a new
    // one), so only pods of this view are tried.
    let mut found = None;
    let candidates = (0..objs.pods.len())
        .filter(|k| {
            let spec_node = objs.pods[*k]
                .1
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref());
            want == Path::Incremental || node.is_none() || spec_node == node
        })
        .take(200);
    'search: for k in candidates {
        for step in 1..5 {
            let (changed, what) = relabelled(objs, k, step);
            let there = compile(&mut cache, &mut state, &changed).1;
            let back = compile(&mut cache, &mut state, objs).1;
            if there == want && back == want {
                found = Some((changed, what, k));
                break 'search;
            }
        }
    }
    let (changed, what, k) =
        found.with_context(|| format!("no {want:?} relabel among the pods tried"))?;
    let (mut inc_wall, mut inc_cpu, mut full_wall, mut full_cpu) = (vec![], vec![], vec![], vec![]);
    let mut copy_cpu = vec![];
    let load_before = loadavg();
    for _ in 0..rounds {
        for target in [&changed, objs] {
            update_pods(&mut cache, target, &[k]);
            let changes = cache.take_changes();
            // The agent's path: the result as edits (or the names of what
            // changed) of the ruleset the state keeps.
            let ((out, path), w, c) = timed(|| {
                state.compile_edits(cache.cluster(), cache.diagnostics(), &changes, &opts)
            });
            ensure!(path == want, "took {path:?}");
            inc_wall.push(w);
            inc_cpu.push(c);
            // What the CLI's path adds: the whole ruleset as a copy.
            let (got, _, copy) = timed(|| out.into_compiled(|| state.current().expect("indexed")));
            copy_cpu.push(copy);
            if std::env::var("NFTPOL_PROFILE").is_ok() {
                continue;
            }
            let (want, w, c) =
                timed(|| compile_cluster(cache.cluster(), cache.diagnostics(), &opts));
            full_wall.push(w);
            full_cpu.push(c);
            ensure!(
                script(&got.ruleset) == script(&want.ruleset),
                "incremental and full differ"
            );
        }
    }
    let (iw, ic, fw, fc) = (
        median_ms(inc_wall),
        median_ms(inc_cpu),
        median_ms(full_wall),
        median_ms(full_cpu),
    );
    println!(
        "  {}/{} {}: {what}: incremental {iw:.2} ms wall / {ic:.2} ms CPU, full {fw:.1} ms wall / \
         {fc:.1} ms CPU; full/incremental {:.0}x (CPU); whole ruleset (copy) {:.2} ms CPU; \
         load {load_before} -> {}",
        scale.name,
        want.as_str(),
        if node.is_some() { "node" } else { "all" },
        fc / ic.max(1e-6),
        median_ms(copy_cpu),
        loadavg()
    );
    Ok(())
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let names = std::env::var("NFTPOL_SCALES")
        .unwrap_or_else(|_| if bench { "large" } else { "small" }.to_string());
    let rounds: usize = nftpol_testkit::bench::env_or("NFTPOL_ROUNDS", if bench { 11 } else { 2 });
    println!(
        "== one pod relabel: incremental vs full compile (median of {rounds} rounds x 2 directions)"
    );
    for name in names.split(',') {
        let (scale, mut objs) = if name == realistic::SCALE.name {
            (realistic::SCALE, realistic::generate(42))
        } else {
            let scale = *synth::SCALES
                .iter()
                .find(|s| s.name == name)
                .with_context(|| format!("no scale {name}"))?;
            (scale, synth::generate(scale, 42))
        };
        versioned(&mut objs);
        for want in [Path::Incremental, Path::Partial] {
            for node in [Some("node-01"), None] {
                if let Ok(w) = std::env::var("NFTPOL_PROFILE")
                    && (w != want.as_str() || node.is_none())
                {
                    continue;
                }
                view(scale, &objs, node, rounds, want)?;
            }
        }
    }
    Ok(())
}
