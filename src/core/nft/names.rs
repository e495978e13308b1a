//! Object names: readable, bounded and deterministic.
//!
//! Names are `<kind>-<HASH>[-<readable>]`, where HASH is the first 8
//! characters of the base32 SHA-256 of the object's canonical key, so equal
//! input gives equal names and the readable part may be cut without losing
//! uniqueness. Worst case: `egress-` (7) + hash (8) + `-` (1) + namespace
//! (63) + `/` (1) + policy name (253) = 333 bytes, above the kernel's
//! 255-byte chain name limit, so the readable part is cut to keep every name
//! within 128 bytes.

use sha2::{Digest, Sha256};

/// Longest name nftpol emits (the kernel allows 255).
pub const MAX_NAME: usize = 128;

/// Longest comment the kernel stores (NFTNL_UDATA_COMMENT_MAXLEN).
pub const MAX_COMMENT: usize = 128;

/// First 8 base32 characters of SHA-256 over `key`.
pub fn hash8(key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(key.as_bytes());
    let mut bits: u64 = 0;
    for b in &digest[..5] {
        bits = (bits << 8) | u64::from(*b);
    }
    (0..8)
        .map(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// `prefix-HASH-readable`, with `readable` cut (at a char boundary) so the
/// whole name fits in [`MAX_NAME`]; characters nft identifiers cannot hold are
/// replaced by `_`.
pub fn name(prefix: &str, key: &str, readable: &str) -> String {
    let mut n = format!("{prefix}-{}", hash8(key));
    if !readable.is_empty() {
        n.push('-');
        for c in readable.chars() {
            if n.len() >= MAX_NAME {
                break;
            }
            n.push(if c.is_ascii_alphanumeric() || "/-_.".contains(c) {
                c
            } else {
                '_'
            });
        }
    }
    n
}

/// A comment that nft accepts: no double quotes, at most [`MAX_COMMENT`] bytes.
pub fn comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .collect();
    if clean.len() <= MAX_COMMENT {
        return clean;
    }
    let mut cut = MAX_COMMENT - 3;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &clean[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_bounded_and_safe() {
        assert_eq!(hash8("x"), hash8("x"));
        assert_ne!(hash8("x"), hash8("y"));
        assert_eq!(hash8("x").len(), 8);
        let long = format!("{}/{}", "n".repeat(63), "p".repeat(253));
        let n = name("ingress", &long, &long);
        assert!(n.len() <= MAX_NAME, "{} bytes", n.len());
        assert!(n.starts_with("ingress-"));
        assert_eq!(name("x", "k", "a b\"c"), format!("x-{}-a_b_c", hash8("k")));
    }

    #[test]
    fn comments_are_bounded_and_unquoted() {
        assert_eq!(comment("say \"hi\""), "say 'hi'");
        let c = comment(&"é".repeat(100));
        assert!(c.len() <= MAX_COMMENT && c.ends_with("..."), "{c}");
    }
}
