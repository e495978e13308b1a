//! nftpol: enforces Kubernetes network policy with one nftables table.
//!
//! The crate has three bands, and arrows only point down (`tests/tidy.rs`
//! checks it):
//!
//! ```text
//! drivers      cli (offline commands)        agent (`nftpol run`: watches, worker, http)
//!                 │            ╲            ╱            │
//! kernel IO       │             kernel (spawns nft, netlink: apply, enforcer, nflog)
//!                 │            ╱
//! pure core    core (k8s → model → graph → compile → nft text; explain)
//! ```
//!
//! See ARCHITECTURE.md.

// No module opts out: the NFLOG reader's syscalls are netlink-sys's.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod cli;
pub mod core;
pub mod kernel;
