//! Where the time of a structural change goes, compile to kernel: the tail
//! of the churn scenario (issue 14) is its partial compiles, whose results
//! reach the kernel as a structural change in up to three stages.
//!
//! `cargo bench --bench structural_apply` builds the cluster
//! (`NFTPOL_SCALES`, default `large,realistic`), compiles node-01's table
//! through `incremental::State`, loads it into a network namespace of its
//! own, picks a pod of node-01 whose `app` relabel takes the partial path
//! both ways (its group chain goes and another comes), then alternates the
//! relabel and its undoing (`NFTPOL_ROUNDS`, default 10, of both
//! directions), timing each step the agent takes for it: the partial
//! compile (and, untimed in the change, how much of it is the copy of the
//! ruleset it hands out), `delta::staged` (the
//! comparison of the old and new rulesets and the stage scripts), and each
//! stage's transaction — rounds alternate the transport: every stage as its
//! `nft -f` script, or as the agent sends them (`NetlinkElements`: each
//! stage as a netlink batch where it can be, a switch that refills chains
//! through `nft`). At the end the kernel's table must equal a fresh
//! compile's (the drift check's comparison). Prints the median of
//! each, the scripts' sizes and the load average. Under `cargo test` it runs
//! the small scale with 2 rounds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nftpol::core::compile::incremental::{Output, Path, State};
use nftpol::core::compile::{Options, compile_cluster};
use nftpol::core::k8s::Objects;
use nftpol::core::k8s::cache::ClusterCache;
use nftpol::core::nft::delta::{staged, staged_touched};
use nftpol::core::nft::ruleset::Ruleset;
use nftpol::kernel::enforcer::{Applied, Enforcer};
use nftpol::kernel::netlink::NetlinkElements;
use nftpol::kernel::nft::{Nft, NftCli};
use nftpol_testkit::bench::{loadavg, median_ms, relist, update_pods, versioned};
use nftpol_testkit::{netns, realistic, synth};

/// `objs` with pod `k`'s `app` label set to `to`.
fn relabelled(objs: &Objects, k: usize, to: &str) -> Objects {
    let mut changed = objs.clone();
    let p = &mut changed.pods[k].1;
    let labels = p.metadata.labels.get_or_insert_with(Default::default);
    labels.insert("app".into(), to.to_string());
    p.metadata.resource_version = Some("2".into());
    changed
}

fn run(name: &str, mut objs: Objects, rounds: usize) -> Result<()> {
    versioned(&mut objs);
    let opts = Options {
        node: Some("node-01".into()),
        ..Options::default()
    };
    let mut cache = ClusterCache::new();
    let mut state = State::default();
    let compile = |cache: &mut ClusterCache, state: &mut State, objs: &Objects| {
        relist(cache, objs);
        let changes = cache.take_changes();
        state.compile(cache.cluster(), cache.diagnostics(), &changes, &opts)
    };
    let first = compile(&mut cache, &mut state, &objs).0.ruleset;
    let on_node: Vec<usize> = (0..objs.pods.len())
        .filter(|k| {
            objs.pods[*k]
                .1
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                == Some("node-01")
        })
        .take(300)
        .collect();
    let mut found = None;
    'search: for k in on_node {
        for to in ["nftpol-bench-a", "app-0", "app-1", "web"] {
            let changed = relabelled(&objs, k, to);
            let there = compile(&mut cache, &mut state, &changed).1;
            let back = compile(&mut cache, &mut state, &objs).1;
            if there == Path::Partial && back == Path::Partial {
                found = Some((changed, format!("pod {k} app={to}"), k));
                break 'search;
            }
        }
    }
    let (changed, what, k) = found.context("no relabel on node-01 takes the partial path")?;
    let ns = netns::Netns::new("structural")?;
    let load = loadavg();
    let mut steps: [Vec<Duration>; 4] = Default::default();
    // Per transport (nft, netlink): each stage, and the whole change.
    let mut stages: [[Vec<Duration>; 3]; 2] = Default::default();
    let mut totals: [Vec<Duration>; 2] = Default::default();
    let mut sizes = [0usize; 3];
    let mut counts = Vec::new();
    let held = ns.run(|| -> Result<String> {
        let nft = NftCli::new("nft");
        let nl = NetlinkElements::open(NftCli::new("nft"))?;
        let mut e = Enforcer::new("nft");
        ensure!(e.sync(&first)? == Applied::Full, "first load");
        let mut old: Ruleset = e.mirror().context("a mirror")?.clone();
        let mut before = old.clone();
        for round in 0..rounds {
            // Rounds alternate the transport (both directions each).
            let via = round % 2;
            for target in [&changed, &objs] {
                // The cache update is not timed (the pod's key, as the
                // agent's watches report it).
                update_pods(&mut cache, target, &[k]);
                let changes = cache.take_changes();
                let t0 = Instant::now();
                let t = Instant::now();
                let (out, path) =
                    state.compile_edits(cache.cluster(), cache.diagnostics(), &changes, &opts);
                ensure!(path == Path::Partial, "took {path:?}");
                steps[0].push(t.elapsed());
                let Output::Reshaped(reshaped) = out else {
                    bail!("the partial path names what it changed");
                };
                let current = state.current().context("indexed")?;
                let generation = old.generation.map(|g| g.next());
                let t = Instant::now();
                let scripts = staged_touched(&old, current, &reshaped.touched, generation)
                    .context("stages")?;
                steps[2].push(t.elapsed());
                counts.push(scripts.len());
                for (i, s) in scripts.iter().enumerate() {
                    let t = Instant::now();
                    match via {
                        0 => nft.apply(&s.script)?,
                        _ => nl.apply_stage(s)?,
                    }
                    stages[via][i].push(t.elapsed());
                    sizes[i] = sizes[i].max(s.script.len());
                }
                // The enforcer's mirror follows by copying what is named.
                let t = Instant::now();
                reshaped.touched.apply_to(&mut old, current);
                old.generation = generation;
                steps[3].push(t.elapsed());
                totals[via].push(t0.elapsed());
                // Not part of the change: what the enforcer did before it was
                // handed the names (a copy of the ruleset, and staged() over
                // both whole rulesets).
                let t = Instant::now();
                let mut copy = current.clone();
                copy.generation = generation;
                let whole = staged(&before, &copy).context("stages")?;
                steps[1].push(t.elapsed());
                ensure!(
                    whole == scripts,
                    "stages over the touched names differ from staged()"
                );
                before = copy;
            }
        }
        let listing = nft.list_table()?;
        Ok(listing)
    })??;
    let want = compile_cluster(cache.cluster(), cache.diagnostics(), &opts).ruleset;
    let (got, _) = nftpol::kernel::listing::read(&held);
    let mut want_gen = want.clone();
    want_gen.generation = nftpol::kernel::listing::generation(&held);
    ensure!(
        got == Some(nftpol::kernel::listing::expected(&want_gen)),
        "the kernel's table is not the fresh compile's"
    );
    let s = want.stats();
    println!(
        "  {name}: node-01 table {} chains, {} rules, {} sets, {} elements; {what}",
        s.chains, s.rules, s.sets, s.elements
    );
    println!(
        "    {} changes (stages per change {:?}), medians: partial compile {:.2} ms, \
         stages over the names it touched {:.2} ms, mirror updated {:.2} ms \
         (before: a copy of the ruleset and staged() over both {:.2} ms); \
         largest stage scripts {} / {} / {} bytes",
        counts.len(),
        counts
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        median_ms(steps[0].clone()),
        median_ms(steps[2].clone()),
        median_ms(steps[3].clone()),
        median_ms(steps[1].clone()),
        sizes[0],
        sizes[1],
        sizes[2],
    );
    for (via, what) in ["nft -f per stage", "netlink where it can"]
        .iter()
        .enumerate()
    {
        println!(
            "    {what:<21} stage 1/2/3 {:.2} / {:.2} / {:.2} ms; whole change {:.2} ms ({} changes)",
            median_ms(stages[via][0].clone()),
            median_ms(stages[via][1].clone()),
            median_ms(stages[via][2].clone()),
            median_ms(totals[via].clone()),
            totals[via].len()
        );
    }
    println!("    load {load} -> {}", loadavg());
    Ok(())
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let names = std::env::var("NFTPOL_SCALES")
        .unwrap_or_else(|_| if bench { "large,realistic" } else { "small" }.to_string());
    let rounds: usize = nftpol_testkit::bench::env_or("NFTPOL_ROUNDS", if bench { 10 } else { 2 });
    println!(
        "== a structural change (a partial compile) to the kernel, step by step; {rounds} rounds x 2 directions"
    );
    for name in names.split(',') {
        let objs = match name {
            "realistic" => realistic::generate(42),
            _ => synth::generate(
                *synth::SCALES
                    .iter()
                    .find(|s| s.name == name)
                    .with_context(|| format!("no scale {name}"))?,
                42,
            ),
        };
        run(name, objs, rounds)?;
    }
    Ok(())
}
