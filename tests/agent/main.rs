//! `nftpol run` as a process against the real control plane: one agent in a fresh namespace
//! (`process`), and end to end on a two-node topology with one agent per node (`e2e`).

mod cluster_policy;
mod e2e;
mod process;
mod status;
