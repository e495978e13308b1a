//! `nftpol run` as a process against the real control plane: one agent in a fresh namespace
//! (`process`), end to end on a two-node topology with one agent per node (`e2e`), and the
//! new-pod window measured with real packets in every shape (`new_pod`).

mod cluster_policy;
mod e2e;
mod new_pod;
mod process;
mod status;
