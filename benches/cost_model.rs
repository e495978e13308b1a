//! The cost model of `nftpol compile --stats` (`core::nft::cost`): measures
//! whole-table loads into a scratch network namespace for tables of several
//! sizes and shapes, prints measured against predicted (the constants in
//! force), and refits the load coefficients (least squares weighted by
//! relative error, the same fit as the constants' own) so a changed ruleset
//! shape or kernel can be brought into the model. docs/performance.md,
//! "Cost model", has the fit in force and its error.
//!
//! Tables: the synthetic cluster (`testkit/src/synth.rs`, seed 42) at
//! several sizes, node-01's view and the whole cluster, each also with
//! ClusterNetworkPolicies (`synth::add_cluster_policies`), which change the
//! ratio of rules to sets to elements the fit needs to tell apart. Each
//! load is a first load through the agent's apply path
//! (`kernel::enforcer::Enforcer::sync`, one `nft -f -` process), median of
//! `NFTPOL_ROUNDS` (default 3) rounds, the tables rotated round by round.
//!
//! `cargo bench --bench cost_model` (as root; about 2 minutes). Under
//! `cargo test` it loads the two smallest tables once (a smoke test).

use nftpol_testkit as kit;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use nftpol::core::compile::Options;
use nftpol::core::nft::cost::{self, predicted_load_ms};
use nftpol::core::nft::ruleset::Ruleset;
use nftpol::kernel::enforcer::{Applied, Enforcer};

use kit::netns;
use kit::synth::{self, Scale};

struct Table {
    label: String,
    ruleset: Ruleset,
    rules: usize,
    sets: usize,
    elements: usize,
    loads: Vec<Duration>,
}

fn scale(name: &'static str, namespaces: usize) -> Scale {
    Scale {
        name,
        namespaces,
        pods: namespaces * 10,
        policies: namespaces * 5,
        nodes: 20,
    }
}

fn tables(bench: bool) -> Result<Vec<Table>> {
    let scales: Vec<Scale> = if bench {
        vec![
            scale("10ns", 10),
            scale("50ns", 50),
            scale("100ns", 100),
            scale("300ns", 300),
            scale("1000ns", 1000),
        ]
    } else {
        vec![scale("10ns", 10)]
    };
    let mut out = Vec::new();
    for s in scales {
        let objs = synth::generate(s, 42);
        let mut with = objs.clone();
        let n = synth::cluster_policy_count(&s);
        synth::add_cluster_policies(&mut with, n, 7);
        let variants: Vec<(String, &nftpol::core::k8s::Objects)> = if bench {
            vec![(String::new(), &objs), (format!("+{n}cnp"), &with)]
        } else {
            vec![(String::new(), &objs)]
        };
        for (tag, o) in variants {
            for node in [Some("node-01"), None] {
                // The whole cluster's table with CNPs at 1,000 namespaces is
                // 390k rules: ~1 min per load, out of this bench's budget.
                if node.is_none() && !tag.is_empty() && s.namespaces >= 300 {
                    continue;
                }
                let c = nftpol::core::compile::compile_objects(
                    o,
                    &Options {
                        node: node.map(String::from),
                        ..Default::default()
                    },
                );
                let st = c.ruleset.stats();
                out.push(Table {
                    label: format!(
                        "{}{tag}/{}",
                        s.name,
                        if node.is_some() { "node" } else { "all" }
                    ),
                    rules: st.rules,
                    sets: st.sets + st.maps,
                    elements: st.elements,
                    ruleset: c.ruleset,
                    loads: Vec::new(),
                });
            }
        }
    }
    Ok(out)
}

/// Loads every table once, first load into a namespace without the table.
fn round(ns: &str, tables: &mut [Table]) -> Result<()> {
    netns::in_netns(ns, || -> Result<()> {
        for t in tables.iter_mut() {
            let _ = Enforcer::new("nft").remove_table();
            let mut e = Enforcer::new("nft");
            let start = Instant::now();
            let r = e.sync(&t.ruleset)?;
            t.loads.push(start.elapsed());
            ensure!(
                r == Applied::Full,
                "{}: first sync is not a full load",
                t.label
            );
            e.remove_table()?;
        }
        Ok(())
    })?
}

fn median_ms(v: &[Duration]) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// Weighted least squares by the normal equations (a handful of columns).
fn lstsq(x: &[Vec<f64>], y: &[f64], w: &[f64]) -> Option<Vec<f64>> {
    let n = x[0].len();
    let mut m = vec![vec![0.0; n + 1]; n];
    for ((row, yk), wk) in x.iter().zip(y).zip(w) {
        for (i, mrow) in m.iter_mut().enumerate() {
            for (cell, xj) in mrow.iter_mut().zip(row) {
                *cell += wk * row[i] * xj;
            }
            mrow[n] += wk * row[i] * yk;
        }
    }
    for i in 0..n {
        let p = (i..n).max_by(|a, b| m[*a][i].abs().total_cmp(&m[*b][i].abs()))?;
        m.swap(i, p);
        if m[i][i].abs() < 1e-12 {
            return None;
        }
        let pivot = m[i].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != i {
                let f = row[i] / pivot[i];
                for (cell, pv) in row.iter_mut().zip(&pivot).skip(i) {
                    *cell -= f * pv;
                }
            }
        }
    }
    Some(
        m.iter()
            .enumerate()
            .map(|(i, row)| row[n] / row[i])
            .collect(),
    )
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds: usize = nftpol_testkit::bench::env_or("NFTPOL_ROUNDS", if bench { 3 } else { 1 });
    let mut tables = tables(bench)?;
    let ns = netns::Netns::new("costmodel")?;
    for _ in 0..rounds {
        round(ns.name(), &mut tables)?;
    }
    drop(ns);
    println!(
        "{:<20} {:>8} {:>6} {:>9} {:>12} {:>13} {:>7}",
        "table", "rules", "sets", "elements", "measured ms", "predicted ms", "error"
    );
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut worst: f64 = 0.0;
    for t in &tables {
        let measured = median_ms(&t.loads);
        let predicted = predicted_load_ms(t.rules, t.sets, t.elements);
        let err = (predicted - measured) / measured;
        worst = worst.max(err.abs());
        println!(
            "{:<20} {:>8} {:>6} {:>9} {:>12.1} {:>13.1} {:>6.0}%",
            t.label,
            t.rules,
            t.sets,
            t.elements,
            measured,
            predicted,
            err * 100.0
        );
        let (r, s, e) = (t.rules as f64, t.sets as f64, t.elements as f64);
        x.push(vec![1.0, r, s, e, r * s / 1000.0]);
        y.push(measured);
    }
    println!(
        "model in force (core::nft::cost): worst error {:.0}% over {} tables, {rounds} round(s)",
        worst * 100.0,
        tables.len()
    );
    let w: Vec<f64> = y.iter().map(|v| 1.0 / (v * v)).collect();
    if tables.len() > 5 {
        match lstsq(&x, &y, &w) {
            Some(c) => println!(
                "refit: fixed {:.0} us, {:.2} us/rule, {:.1} us/set or map, {:.2} us/element, {:.2} ns/(rule x set)",
                c[0] * 1000.0,
                c[1] * 1000.0,
                c[2] * 1000.0,
                c[3] * 1000.0,
                c[4] * 1000.0
            ),
            None => println!("refit: singular (too few distinct tables)"),
        }
    }
    // The new-connection side of the model, for the same tables.
    for t in &tables {
        let c = cost::cost(&t.ruleset, 0);
        println!(
            "{:<20} worst first-packet path {} rules ({} lookups), ingress end {}: {:.2} us",
            t.label,
            c.first_packet.rules,
            c.first_packet.lookups,
            c.ingress.rules,
            c.new_connection_us
        );
    }
    Ok(())
}
