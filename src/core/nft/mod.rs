//! nftables as data: object names, the typed ruleset, rendering to `nft -f`
//! text and libnftables JSON, and element deltas between two rulesets. Nothing
//! here runs `nft`: that is [`crate::kernel`]. (The packet tracer the tests use
//! lives in the test kit, `testkit/src/trace.rs`.)

pub mod cost;
pub mod delta;
pub mod json;
pub mod names;
pub mod render;
pub mod ruleset;
