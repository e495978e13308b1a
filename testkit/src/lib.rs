//! nftpol's test kit: one dev-only crate that every integration test, bench and example links.
//!
//! - [`cases`]: the `testdata/` cases and the expectation files next to them.
//! - [`oracle`]: the naive reference evaluator, and [`verdicts`]: its data-driven expectations.
//! - [`netns`]: fresh network namespaces (one way: [`netns::Netns`]), commands inside them.
//! - [`topology`]: cluster-like topologies in namespaces (routed, bridge, overlay), with the
//!   two-node spec ([`TopoSpec::two_nodes`]) defined once; [`server`], [`probe`], [`sctp`],
//!   [`sock`] and [`held`] are its servers, probes and long-lived connections.
//! - [`listing`]: the kernel listing normaliser (counters zeroed or kept).
//! - [`wait`]: deadline-bounded polling; [`agent`]: driving `nftpol run` (metrics, process);
//!   [`nftmon`]: timestamps of committed nftables transactions (netlink).
//! - [`conformance`]: the runner for `testdata/upstream/`.
//! - [`control_plane`]: the real etcd + kube-apiserver (`hack/control-plane.sh`) and `kubectl`.
//! - [`trace`]: the packet tracer over the typed ruleset (the kernel's verdict, without a kernel).
//! - [`synth`] and [`plot`]: the benches' synthetic clusters and PNG plots; [`realistic`]: a
//!   cluster with a real one's statistics.
//!
//! Real-kernel use needs root:
//!
//! ```ignore
//! let topo = Topology::build(Shape::Bridge, &TopoSpec::grid(2, 2))?; // servers on 80, 81
//! topo.add_service_everywhere(svc_ip, 8080, Proto::Tcp, topo.pod_ip("n2-p0", Family::V4), 80)?;
//! topo.load_ruleset_all(&nft_text)?; // `nft -f -` in every node namespace
//! let ok = topo.probe_many(&[ProbeSpec::pod("n1-p0", svc_ip, Proto::Tcp, 8080)]);
//! // or: topo.check("label", &[(spec, expected)]) -> Ok(summary) / Err(report of mismatches)
//! ```
//!
//! Dropping a `Topology` stops its servers and deletes its namespaces (also on panic).

pub mod agent;
pub mod bench;
pub mod cases;
pub mod conformance;
pub mod control_plane;
pub mod held;
pub mod listing;
pub mod netns;
pub mod nftmon;
pub mod oracle;
pub mod plot;
pub mod probe;
pub mod realistic;
pub mod relay;
pub mod sctp;
pub mod server;
pub mod sock;
pub mod synth;
pub mod topology;
pub mod trace;
pub mod udp;
pub mod verdicts;
pub mod wait;

pub use probe::{Outcome, Proto};
pub use sctp::ChecksumMode;
pub use topology::{
    CheckSummary, Cidr, Endpoint, Family, NodeSpec, PodSpec, ProbeSpec, Shape, TopoSpec, Topology,
};
pub use wait::{wait_every, wait_for};

impl From<Proto> for oracle::Proto {
    fn from(p: Proto) -> oracle::Proto {
        match p {
            Proto::Tcp => oracle::Proto::Tcp,
            Proto::Udp => oracle::Proto::Udp,
            Proto::Sctp => oracle::Proto::Sctp,
        }
    }
}

/// Runs `cmd` with stdout and stderr captured and `stdin` fed to it (closed
/// at once, so the child sees EOF; `None`: no stdin at all). `what` names
/// the program in panics.
pub fn output_with_stdin(
    cmd: &mut std::process::Command,
    stdin: Option<&str>,
    what: &str,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    if let Some(input) = stdin {
        // Dropped at the end of the statement: the child sees EOF.
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing {what}'s stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"))
}

/// The Helm chart's value name of an `nftpol run` flag: `min-interval` ->
/// `minInterval` (charts/nftpol, `agent.<camelCase>`).
pub fn chart_value_key(long: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in long.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
