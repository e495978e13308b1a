//! Rendering the typed ruleset as libnftables JSON (`nft -j -f`).

use super::ruleset::Ruleset;

/// The whole ruleset as one JSON transaction (placeholder until implemented).
pub fn script(rs: &Ruleset) -> String {
    let _ = rs;
    String::new()
}
