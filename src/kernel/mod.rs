//! Kernel IO: the only code that spawns `nft` or opens netlink sockets.
//!
//! `apply` (one `nft -f -` transaction, check, list), `enforcer` (keeps the
//! kernel table equal to the latest compiled ruleset: deltas, full
//! replacement, drift verification), `version` (minimum nft and kernel),
//! `nflog` (the NFLOG group reader used by drop logging).

pub mod apply;
pub mod enforcer;
pub mod nflog;
pub mod version;
