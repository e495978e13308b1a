//! Real-kernel test bed: cluster-like topologies in network namespaces, in-process servers and
//! concurrent reachability probes (TCP, UDP, raw-socket SCTP) for testing nftpol rulesets.
//!
//! Needs root. Use from an integration test with `mod support;`:
//!
//! ```ignore
//! let topo = Topology::build(Shape::Bridge, &TopoSpec::grid(2, 2))?; // servers on 80, 81
//! topo.add_service_everywhere(svc_ip, 8080, Proto::Tcp, topo.pod_ip("n2-p0", Family::V4), 80)?;
//! topo.load_ruleset_all(&nft_text)?; // `nft -f -` in every node namespace
//! let ok = topo.probe_many(&[ProbeSpec::pod("n1-p0", svc_ip, Proto::Tcp, 8080)]);
//! // or: topo.check("label", &[(spec, expected)]) -> Ok(summary) / Err(report of mismatches)
//! ```
//!
//! Dropping the `Topology` stops its servers and deletes its namespaces (also on panic).

// Each integration test binary compiles this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod cases;
pub mod held;
pub mod netns;
pub mod probe;
pub mod sctp;
pub mod server;
pub mod sock;
pub mod topology;

pub use probe::{Outcome, Proto};
pub use sctp::ChecksumMode;
pub use topology::{
    CheckSummary, Cidr, Endpoint, Family, NodeSpec, PodSpec, ProbeSpec, Shape, TopoSpec, Topology,
};
