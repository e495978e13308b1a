//! Kernel IO: the only code that spawns `nft` or opens netlink sockets.
//!
//! `nft` (the [`nft::Nft`] trait and [`nft::NftCli`], the one place a
//! process is spawned), `apply` (one `nft -f -` transaction), `enforcer`
//! (keeps the kernel table equal to the latest compiled ruleset: deltas, full
//! replacement, drift verification), `listing` (reads `nft -j list table`),
//! `version` (minimum nft and kernel), `netlink` (element changes as one
//! nftables netlink batch, the agent's transport), `nflog` (the NFLOG group
//! reader used by drop logging), `fake` (an in-memory [`nft::Nft`] for tests), `fuzz`
//! (the fuzz targets' bodies, shared by `fuzz/` and the CI smoke test).

pub mod apply;
pub mod enforcer;
pub mod fake;
pub mod fuzz;
pub mod listing;
pub mod netlink;
pub mod nflog;
pub mod nft;
pub mod version;
