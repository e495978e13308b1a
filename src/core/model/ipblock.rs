//! `ipBlock` arithmetic: a CIDR minus its excepts, as disjoint address ranges.
//!
//! Addresses are handled as `u128` within their family so IPv4 and IPv6 share
//! one implementation; ranges are inclusive and sorted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// Short suffix used in object names (`v4`, `v6`).
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
}

/// A parsed CIDR with host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// Address family.
    pub family: Family,
    /// Network address as an integer.
    pub addr: u128,
    /// Prefix length.
    pub len: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address/length`.
    #[error("{0:?} is not a CIDR (expected address/prefix-length)")]
    Syntax(String),
    /// Prefix length too long for the family.
    #[error("{0:?}: prefix length exceeds the address width")]
    PrefixTooLong(String),
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`. Host bits are cleared, as Kubernetes'
    /// own parser (Go's net.ParseCIDR) does.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.to_string()))?;
        let ip: IpAddr = a.parse().map_err(|_| CidrError::Syntax(s.to_string()))?;
        if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
            return Err(CidrError::Syntax(s.to_string()));
        }
        let len: u32 = l.parse().map_err(|_| CidrError::Syntax(s.to_string()))?;
        let family = Family::of(&ip);
        if len > family.bits() {
            return Err(CidrError::PrefixTooLong(s.to_string()));
        }
        let len = len as u8;
        Ok(Cidr {
            family,
            addr: ip_to_u128(&ip) & mask(family, len),
            len,
        })
    }

    /// The CIDR covering exactly one address.
    pub fn host(ip: IpAddr) -> Cidr {
        let family = Family::of(&ip);
        Cidr {
            family,
            addr: ip_to_u128(&ip),
            len: family.bits() as u8,
        }
    }

    /// First and last address, inclusive.
    pub fn range(&self) -> Range {
        Range {
            family: self.family,
            start: self.addr,
            end: self.addr | !mask(self.family, self.len) & max_addr(self.family),
        }
    }

    /// Whether `other` lies inside this CIDR and is strictly smaller (Kubernetes'
    /// rule for `except`).
    pub fn strictly_contains(&self, other: &Cidr) -> bool {
        self.family == other.family
            && other.len > self.len
            && other.addr & mask(self.family, self.len) == self.addr
    }

    /// The family's highest address as an integer.
    pub fn family_max(&self) -> u128 {
        max_addr(self.family)
    }

    /// Whether an address lies inside this CIDR.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family && ip_to_u128(ip) & mask(self.family, self.len) == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", u128_to_ip(self.family, self.addr), self.len)
    }
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Range {
    /// Address family.
    pub family: Family,
    /// First address.
    pub start: u128,
    /// Last address (inclusive).
    pub end: u128,
}

impl Range {
    /// If the range is exactly one CIDR, that CIDR.
    pub fn as_cidr(&self) -> Option<Cidr> {
        let size_minus_one = self.end - self.start;
        // A prefix block has a size that is a power of two and is aligned to it.
        if size_minus_one
            .checked_add(1)
            .is_some_and(|n| !n.is_power_of_two())
        {
            return None;
        }
        let host_bits = 128 - size_minus_one.leading_zeros();
        if host_bits > self.family.bits() {
            return None;
        }
        let len = (self.family.bits() - host_bits) as u8;
        let c = Cidr {
            family: self.family,
            addr: self.start,
            len,
        };
        (c.addr & mask(self.family, len) == c.addr).then_some(c)
    }

    /// Whether an address lies in the range.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family && (self.start..=self.end).contains(&ip_to_u128(ip))
    }
}

impl fmt::Display for Range {
    /// A CIDR when the range is one, else `first-last`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_cidr() {
            Some(c) if c.len as u32 == self.family.bits() => {
                write!(f, "{}", u128_to_ip(self.family, c.addr))
            }
            Some(c) => write!(f, "{c}"),
            None => write!(
                f,
                "{}-{}",
                u128_to_ip(self.family, self.start),
                u128_to_ip(self.family, self.end)
            ),
        }
    }
}

/// `cidr` minus every `except`, as sorted, disjoint, non-adjacent ranges.
/// Excepts of another family or outside `cidr` are ignored here; validation
/// rejects them earlier.
pub fn subtract(cidr: &Cidr, excepts: &[Cidr]) -> Vec<Range> {
    let mut holes: Vec<Range> = excepts
        .iter()
        .filter(|e| e.family == cidr.family)
        .map(|e| e.range())
        .collect();
    holes.sort();
    let whole = cidr.range();
    let mut out = Vec::new();
    let mut next = whole.start; // first address not yet emitted or skipped
    let mut done = false;
    for h in holes {
        if done || h.end < next {
            continue;
        }
        let hs = h.start.max(whole.start);
        if hs > next {
            out.push(Range {
                family: cidr.family,
                start: next,
                end: hs - 1,
            });
        }
        if h.end >= whole.end {
            done = true;
        } else {
            next = next.max(h.end + 1);
        }
    }
    if !done && next <= whole.end {
        out.push(Range {
            family: cidr.family,
            start: next,
            end: whole.end,
        });
    }
    out
}

/// The union of the CIDRs of family `f`, as sorted, disjoint, non-adjacent
/// ranges (nftables interval sets refuse overlapping elements).
pub fn union(cidrs: &[Cidr], f: Family) -> Vec<Range> {
    let mut rs: Vec<Range> = cidrs
        .iter()
        .filter(|c| c.family == f)
        .map(|c| c.range())
        .collect();
    rs.sort();
    let mut out: Vec<Range> = Vec::new();
    for r in rs {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn max_addr(f: Family) -> u128 {
    match f {
        Family::V4 => u32::MAX as u128,
        Family::V6 => u128::MAX,
    }
}

fn mask(f: Family, len: u8) -> u128 {
    let bits = f.bits();
    if len == 0 {
        0
    } else {
        (max_addr(f) >> (bits - len as u32)) << (bits - len as u32)
    }
}

/// An address as an integer within its family.
pub fn ip_to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(*v4) as u128,
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// An integer back to an address of the given family.
pub fn u128_to_ip(f: Family, n: u128) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn render(rs: &[Range]) -> Vec<String> {
        rs.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn parse_clears_host_bits_and_rejects_garbage() {
        assert_eq!(c("10.0.0.7/24").to_string(), "10.0.0.0/24");
        assert_eq!(c("fd00::1/64").to_string(), "fd00::/64");
        assert_eq!(c("0.0.0.0/0").range().end, u32::MAX as u128);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "::/129",
            "x/1",
            "10.0.0.0/-1",
            "10.0.0.0/ 8",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn strict_containment_follows_kubernetes() {
        let block = c("10.0.0.0/16");
        assert!(
            block.strictly_contains(&c("10.0.1.0/24")),
            "a smaller block inside"
        );
        assert!(
            !block.strictly_contains(&c("10.0.0.0/16")),
            "equal is not strict"
        );
        assert!(!block.strictly_contains(&c("10.1.0.0/24")), "outside");
        assert!(!block.strictly_contains(&c("10.0.0.0/8")), "larger");
        assert!(!block.strictly_contains(&c("::/120")), "other family");
    }

    #[test]
    fn subtract_table() {
        // (cidr, excepts, expected ranges, why)
        let rows: Vec<(&str, Vec<&str>, Vec<&str>, &str)> = vec![
            (
                "10.0.0.0/24",
                vec![],
                vec!["10.0.0.0/24"],
                "no except: the block itself",
            ),
            (
                "172.17.0.0/16",
                vec!["172.17.1.0/24"],
                vec!["172.17.0.0/24", "172.17.2.0-172.17.255.255"],
                "the Kubernetes docs example",
            ),
            (
                "10.0.0.0/24",
                vec!["10.0.0.0/25"],
                vec!["10.0.0.128/25"],
                "except at the start",
            ),
            (
                "10.0.0.0/24",
                vec!["10.0.0.128/25"],
                vec!["10.0.0.0/25"],
                "except at the end",
            ),
            (
                "10.0.0.0/24",
                vec!["10.0.0.5/32", "10.0.0.6/32"],
                vec!["10.0.0.0-10.0.0.4", "10.0.0.7-10.0.0.255"],
                "adjacent /32 excepts merge into one hole",
            ),
            (
                "10.0.0.0/24",
                vec!["10.0.0.0/26", "10.0.0.0/25"],
                vec!["10.0.0.128/25"],
                "nested excepts",
            ),
            (
                "10.0.0.0/24",
                vec!["10.0.0.0/25", "10.0.0.128/25"],
                vec![],
                "excepts covering everything leave nothing",
            ),
            (
                "0.0.0.0/0",
                vec!["10.0.0.0/8"],
                vec!["0.0.0.0-9.255.255.255", "11.0.0.0-255.255.255.255"],
                "everything but a private block",
            ),
            (
                "fd00::/64",
                vec!["fd00::1/128"],
                vec!["fd00::", "fd00::2-fd00::ffff:ffff:ffff:ffff"],
                "IPv6 /128 except",
            ),
            (
                "::/0",
                vec!["fd00::/8"],
                vec!["::-fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::/7"],
                "IPv6 everything but ULA",
            ),
            (
                "10.1.2.3/32",
                vec![],
                vec!["10.1.2.3"],
                "a single host renders as an address",
            ),
        ];
        for (cidr, ex, want, why) in rows {
            let ex: Vec<Cidr> = ex.into_iter().map(c).collect();
            let got = subtract(&c(cidr), &ex);
            assert_eq!(render(&got), want, "{why}");
            // The result never contains an excepted address and covers the rest.
            for r in &got {
                for e in &ex {
                    let er = e.range();
                    assert!(
                        r.end < er.start || r.start > er.end,
                        "{why}: {r} overlaps {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn range_as_cidr() {
        let r = |s: u128, e: u128| Range {
            family: Family::V4,
            start: s,
            end: e,
        };
        assert_eq!(r(0, 255).as_cidr().map(|c| c.len), Some(24));
        assert_eq!(r(0, 254).as_cidr(), None, "not a power of two");
        assert_eq!(r(128, 383).as_cidr(), None, "misaligned");
        assert_eq!(r(0, u32::MAX as u128).as_cidr().map(|c| c.len), Some(0));
        let v6all = Range {
            family: Family::V6,
            start: 0,
            end: u128::MAX,
        };
        assert_eq!(v6all.as_cidr().map(|c| c.len), Some(0));
    }
}
