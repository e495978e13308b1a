//! Loading a ruleset into the kernel by running `nft -f -` (one transaction).
//! The process handling lives in [`super::nft`]; this is the entry point the
//! command line and the tests use.

pub use super::nft::ApplyError;
use super::nft::NftCli;

/// Runs `nft [-c] [-j] -f -` with `script` on stdin. With `check`, nothing is
/// changed (`nft -c`). The kernel applies the whole script or none of it.
pub fn run_nft(nft: &str, script: &str, check: bool, json: bool) -> Result<(), ApplyError> {
    NftCli::new(nft).run_script(script, check, json)
}
