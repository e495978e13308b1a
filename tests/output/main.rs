//! What nftpol prints, without a kernel packet path: per-case snapshots, the checked-in
//! rulesets, text/JSON equivalence in `nft`, and the selector graph exports.

mod graph;
mod json_equivalence;
mod rulesets;
mod snapshots;
