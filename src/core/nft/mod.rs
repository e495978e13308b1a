//! nftables as data: object names, the typed ruleset, rendering to `nft -f`
//! text and libnftables JSON, element deltas between two rulesets, and the
//! packet tracer the tests use. Nothing here runs `nft`: that is
//! [`crate::kernel`].

pub mod delta;
pub mod json;
pub mod names;
pub mod render;
pub mod ruleset;
pub mod trace;
