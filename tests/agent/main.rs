//! `nftpol run` as a process: against the fake API server in a fresh namespace, and end to end
//! against the real control plane on a two-node topology with one agent per node.

mod e2e;
mod process;
