//! nftables: object names, the typed ruleset, rendering, and applying.
//! The only module that runs `nft`.

pub mod apply;
pub mod delta;
pub mod enforcer;
pub mod json;
pub mod names;
pub mod render;
pub mod ruleset;
pub mod trace;
pub mod version;
