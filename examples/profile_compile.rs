//! Times (or, under `valgrind --tool=callgrind`, counts instructions of) the
//! library pipeline on the large synthetic cluster, stage by stage:
//!
//! ```text
//! cargo build --release --example profile_compile
//! N=1 valgrind --tool=callgrind target/release/examples/profile_compile node-01
//! target/release/examples/profile_compile [NODE]   # N rounds, default 3
//! ```
use nftpol_testkit::synth;

use std::time::Instant;

fn main() {
    let scale = synth::SCALES[2];
    let objs = synth::generate(scale, 42);
    let node = std::env::args().nth(1);
    let opts = nftpol::core::compile::Options {
        node: node.clone(),
        ..Default::default()
    };
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for _ in 0..n {
        let t = Instant::now();
        let (cluster, _) = nftpol::core::k8s::to_cluster(&objs);
        let t_conv = t.elapsed();
        let graph = nftpol::core::graph::SelectorGraph::build(&cluster);
        let t_graph = t.elapsed() - t_conv;
        let out = nftpol::core::compile::compile(&cluster, &graph, &opts);
        let t_comp = t.elapsed() - t_conv - t_graph;
        std::hint::black_box(&out);
        println!(
            "{} node={}: convert {:?} graph {:?} compile {:?} total {:?}",
            scale.name,
            node.as_deref().unwrap_or("(all)"),
            t_conv,
            t_graph,
            t_comp,
            t.elapsed()
        );
    }
}
