//! Rulesets in the real kernel (network namespaces, root): every testdata case probed on live
//! topologies, the test bed itself, and element deltas against full loads.

mod cases;
mod create;
mod delta;
mod netlink;
mod replace;
mod revoke;
mod testbed;
