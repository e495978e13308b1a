//! `nftpol explain`: why one flow is allowed or denied, offline.
//!
//! Reasons over the model and the selector graph (so it can name the policy,
//! rule, peer and port that decide), with exactly the semantics the compiled
//! ruleset has — `tests/explain.rs` checks the verdict against the packet
//! tracer over the compiled ruleset for every pod pair × port of every case,
//! and the conformance suite checks it against real packets:
//!
//! - a pod talking to itself is always allowed (the `self-*` sets);
//! - egress of the source, if it is a pod isolated for egress: some egress
//!   rule of a policy selecting it must match the destination and the port;
//! - ingress of the destination, likewise;
//! - an endpoint that is not a pod but lies in a Node's `spec.podCIDRs` is
//!   denied before any policy: the new-pod guard (`compile::new_pods`);
//! - an endpoint that is not a pod (an IP address of no known pod) has no
//!   policies of its own; only ipBlock peers can match it, and a named port
//!   never matches it.
//!
//! Pure: no IO. Three parts: [`query`] parses the command-line spelling of
//! the question, [`eval`] answers it, [`report`] renders the answer as text
//! or JSON.

pub mod eval;
pub mod query;
pub mod report;

pub use eval::{ExplainError, describe_peer, explain};
pub use query::{Endpoint, PortArg, PortSpec, Query};
pub use report::{
    ClusterPolicyReport, ClusterRuleReport, DecidedBy, Decision, Explanation, Flow, Item,
    PolicyReport, ResolvedEndpoint, RuleReport, Side, UnknownPodAddress, Verdict,
};
