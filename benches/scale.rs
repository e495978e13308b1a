//! Compile and kernel-load figures per cluster scale.
//!
//! `cargo bench --bench scale` prints, for each scale: compile time (one
//! node's view and the whole cluster), ruleset size, and the time `nft -f`
//! takes to load the table into a fresh network namespace and to replace it
//! there. Under `cargo test` it runs the small scale once, as a smoke test.

#[path = "support/synth.rs"]
mod synth;

use std::process::Command;
use std::time::{Duration, Instant};

use nftpol::compile::Options;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs `nft -f FILE` in the named network namespace and returns the wall time.
fn nft_load(netns: &str, file: &std::path::Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f"])
        .arg(file)
        .output()
        .expect("ip netns exec nft runs");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "nft -f failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn exec_overhead(netns: &str) -> Duration {
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                Command::new("ip")
                    .args(["netns", "exec", netns, "true"])
                    .status()
                    .unwrap();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let scales: Vec<synth::Scale> = if bench {
        synth::SCALES.to_vec()
    } else {
        vec![synth::SCALES[0]]
    };
    let rounds = if bench { 5 } else { 1 };
    let netns = format!("nftpol-bench-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &netns])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cannot create network namespace {netns} (root needed)");
    let overhead = exec_overhead(&netns);
    println!("nft exec overhead (subtracted below): {}", ms(overhead));
    println!(
        "{:<7} {:>6} {:>6} {:>12} {:>12} {:>7} {:>6} {:>6} {:>8} {:>9} {:>10} {:>10}",
        "scale",
        "pods",
        "pols",
        "compile/node",
        "compile/all",
        "chains",
        "rules",
        "sets",
        "elements",
        "bytes",
        "load",
        "replace"
    );
    for scale in scales {
        let objs = synth::generate(scale, 42);
        for (view, node) in [("node", Some("node-01".to_string())), ("all", None)] {
            let opts = Options {
                node: node.clone(),
                ..Default::default()
            };
            let compile_times: Vec<Duration> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    let out = nftpol::compile_objects(&objs, &opts);
                    std::hint::black_box(&out);
                    t.elapsed()
                })
                .collect();
            if bench {
                // Where the time goes: conversion, graph, compile, render.
                let t = Instant::now();
                let (cluster, _) = nftpol::k8s::to_cluster(&objs);
                let t_conv = t.elapsed();
                let graph = nftpol::graph::SelectorGraph::build(&cluster);
                let t_graph = t.elapsed() - t_conv;
                let out = nftpol::compile::compile(&cluster, &graph, &opts);
                let t_comp = t.elapsed() - t_conv - t_graph;
                let _ = nftpol::nft::render::script(&out.ruleset);
                let t_render = t.elapsed() - t_conv - t_graph - t_comp;
                println!(
                    "  {}/{view}: convert {} graph {} compile {} render {}",
                    scale.name,
                    ms(t_conv),
                    ms(t_graph),
                    ms(t_comp),
                    ms(t_render)
                );
            }
            let out = nftpol::compile_objects(&objs, &opts);
            assert!(
                out.diagnostics.iter().all(|d| !d.is_error()),
                "{:?}",
                out.diagnostics.first()
            );
            let script = nftpol::nft::render::script(&out.ruleset);
            let file = std::env::temp_dir().join(format!(
                "nftpol-bench-{}-{}.nft",
                std::process::id(),
                view
            ));
            std::fs::write(&file, &script).unwrap();
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", &netns, "nft", "delete", "table", "inet", "nftpol",
                ])
                .output();
            let load = nft_load(&netns, &file).saturating_sub(overhead);
            let replace = median(
                (0..rounds)
                    .map(|_| nft_load(&netns, &file).saturating_sub(overhead))
                    .collect(),
            );
            let s = out.ruleset.stats();
            println!(
                "{:<7} {:>6} {:>6} {:>12} {:>12} {:>7} {:>6} {:>6} {:>8} {:>9} {:>10} {:>10}",
                format!("{}/{view}", scale.name),
                scale.pods,
                scale.policies,
                if view == "node" {
                    ms(median(compile_times.clone()))
                } else {
                    "".into()
                },
                if view == "all" {
                    ms(median(compile_times))
                } else {
                    "".into()
                },
                s.chains,
                s.rules,
                s.sets + s.maps,
                s.elements,
                script.len(),
                ms(load),
                ms(replace)
            );
            let _ = std::fs::remove_file(&file);
        }
    }
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
}
