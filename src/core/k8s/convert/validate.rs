//! The API server's string rules that a NetworkPolicy is checked against:
//! label keys and values (apimachinery's `IsQualifiedName`,
//! `IsValidLabelValue`) and CIDRs as `networking/v1` validates them
//! (`IsValidCIDRForLegacyField` on create: Go's "sloppy" parse, then the strict
//! rules — no leading zeros, no IPv4-mapped IPv6, no bits beyond the prefix —
//! and `except` checked with the sloppy parse's network, as Go's `IPNet.Contains`
//! does). `tests/validity.rs` compares the result with a real API server.

use std::net::{IpAddr, Ipv6Addr};

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters: the name
/// part of a label key, and a non-empty label value.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain (lower case, dot-separated labels, at most 253): an
/// object name, or the prefix of a label key.
pub fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A label key (`[prefix/]name`), as `IsQualifiedName`.
pub fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => {
            return Err(format!(
                "label key {k:?} must be a name with an optional DNS subdomain prefix and '/'"
            ));
        }
    };
    if let Some(p) = prefix
        && !dns_subdomain(p)
    {
        return Err(format!(
            "the prefix of label key {k:?} must be a lower-case DNS subdomain"
        ));
    }
    if !is_label_name(name) {
        return Err(format!(
            "label key {k:?}: the name part must be 1-63 characters, alphanumeric, '-', '_' or '.', starting and ending alphanumeric"
        ));
    }
    Ok(())
}

/// A label value (empty, or a label name).
pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_label_name(v) {
        Ok(())
    } else {
        Err(format!(
            "label value {v:?} must be empty or 1-63 characters, alphanumeric, '-', '_' or '.', starting and ending alphanumeric"
        ))
    }
}

/// A network as Go's `net.ParseCIDR` (Kubernetes' sloppy fork) returns it,
/// reduced to what `IPNet.Contains` and `Mask.Size` use.
#[derive(Debug, Clone, Copy)]
pub struct GoNet {
    /// IPv4 after `To4` (an IPv4 address, or an IPv4-mapped IPv6 network of
    /// prefix 96 or more).
    v4: bool,
    /// The masked address (low 32 bits for IPv4).
    addr: u128,
    /// The prefix length `Contains` applies (IPv4 bits for a mapped network).
    contains_len: u32,
    /// `Mask.Size()`: the prefix length as written.
    size: u32,
}

fn mask(bits: u32, len: u32) -> u128 {
    let all = if bits == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    all & !all.checked_shr(len).unwrap_or(0)
}

/// Decimal digits (any number of leading zeros), as Go's `dtoi`.
fn dtoi(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = s.trim_start_matches('0');
    if t.len() > 8 {
        return None;
    }
    Some(t.parse().unwrap_or(0))
}

/// Go's sloppy IPv4 parse: four decimal fields of at most 255, leading zeros
/// allowed.
fn sloppy_v4(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts.iter().try_fold(0u32, |acc, p| {
        let n = dtoi(p).filter(|n| *n <= 255)?;
        Some(acc << 8 | n)
    })
}

/// `ParseCIDRSloppy`: `None` where the API server says "must be a valid CIDR
/// value".
pub fn sloppy_cidr(s: &str) -> Option<GoNet> {
    let (a, l) = s.split_once('/')?;
    let (bits, v4, addr) = match sloppy_v4(a) {
        Some(v4) => (32, true, u128::from(v4)),
        None => (128, false, u128::from(a.parse::<Ipv6Addr>().ok()?)),
    };
    let len = dtoi(l).filter(|n| *n <= bits)?;
    let addr = addr & mask(bits, len);
    let mapped_prefix = 0xffffu128 << 32;
    if !v4 && len >= 96 && addr >> 32 == mapped_prefix >> 32 {
        // IPv4-mapped: `Contains` converts it with To4 and uses the mask's
        // last four bytes.
        return Some(GoNet {
            v4: true,
            addr: addr & u128::from(u32::MAX),
            contains_len: len - 96,
            size: len,
        });
    }
    Some(GoNet {
        v4,
        addr,
        contains_len: len,
        size: len,
    })
}

impl GoNet {
    /// The API server's `except` rule: `cidr.Contains(except.IP)` and a
    /// longer prefix.
    pub fn strictly_contains(&self, e: &GoNet) -> bool {
        let bits = if self.v4 { 32 } else { 128 };
        self.v4 == e.v4 && e.addr & mask(bits, self.contains_len) == self.addr && self.size < e.size
    }
}

/// The strict CIDR rules on top of the sloppy parse: `Err(why)` where the API
/// server rejects the string.
pub fn strict_cidr(s: &str) -> Result<(), String> {
    if sloppy_cidr(s).is_none() {
        return Err(format!(
            "{s:?} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        ));
    }
    let (a, l) = s.split_once('/').unwrap_or((s, ""));
    let Ok(ip) = a.parse::<IpAddr>() else {
        return Err(format!("{s:?} must not have leading 0s in the address"));
    };
    if l.len() > 1 && l.starts_with('0') {
        return Err(format!(
            "{s:?} must not have leading 0s in the prefix length"
        ));
    }
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(format!("{s:?} must not be an IPv4-mapped IPv6 address"));
    }
    let (bits, addr) = match ip {
        IpAddr::V4(v4) => (32, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (128, u128::from(v6)),
    };
    let len: u32 = l.parse().unwrap_or(0);
    if addr & !mask(bits, len) & mask(bits, bits) != 0 {
        return Err(format!(
            "{s:?} has bits set beyond the prefix length (write the network address)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_as_the_api_server_judges_them() {
        for ok in [
            "10.0.0.0/8",
            "::/0",
            "2001:DB8::/32",
            "2001:0db8::/32",
            "1.2.3.4/32",
        ] {
            assert_eq!(strict_cidr(ok), Ok(()), "{ok}");
        }
        for bad in [
            "10.0.0.1/8",
            "010.0.0.0/8",
            "10.0.0.0/08",
            "10.0.0.0",
            "10.0.0.0/33",
            "",
            " 10.0.0.0/8",
            "::ffff:10.0.0.0/104",
            "2001:db8::1/32",
            "fe80::%eth0/64",
            "10.0.0.0/+8",
            "1.2.3/24",
        ] {
            assert!(strict_cidr(bad).is_err(), "{bad}");
        }
        // Sloppy parses still give the network `except` is checked against.
        let net = sloppy_cidr("010.0.0.0/8").unwrap();
        assert!(net.strictly_contains(&sloppy_cidr("10.1.0.0/16").unwrap()));
        let mapped = sloppy_cidr("::ffff:10.0.0.0/104").unwrap();
        assert!(!mapped.strictly_contains(&sloppy_cidr("10.1.0.0/16").unwrap()));
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["app", "k8s.io/name", "A_b-c", "a.b"] {
            assert_eq!(label_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "bad key",
            "-app",
            "/app",
            "example.com/",
            "a/b/c",
            "Ex.com/x",
        ] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "web", "a.b_c-d"] {
            assert_eq!(label_value(ok), Ok(()), "{ok}");
        }
        for bad in ["-web", "web-", "a b", "x/y"] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
        for ok in ["p", "a.b", "web-1", "1a"] {
            assert!(dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "Bad", "a_b", "-a", "a-", "a..b", ".a"] {
            assert!(!dns_subdomain(bad), "{bad}");
        }
    }
}
