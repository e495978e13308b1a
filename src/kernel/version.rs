//! The minimum `nft` and kernel versions the ruleset needs, and the check
//! `nftpol run` and `nftpol apply` make before touching the kernel.
//!
//! What sets the minimums (sources in docs/compatibility.md):
//!
//! - comments on chains, sets and maps: nft 0.9.7 ("src: add comment support
//!   for chains" / "... for set declarations") and Linux 5.10 (chain userdata,
//!   commit 002f21765320 "netfilter: nf_tables: add userdata attributes to
//!   nft_chain"). Older nft cannot parse our script; older kernels reject it.
//! - interval sets over concatenations (`inet_proto . inet_service` with port
//!   ranges): nft 0.9.4 and Linux 5.6 (the `pipapo` set type, commit
//!   f3a2181e16f1 "Support for sets with multiple ranged fields").
//! - everything else (inet family, verdict maps, `ct state`, `th dport`,
//!   `meta l4proto`, symbolic priority `filter`, JSON listing) is older.

use std::fmt;

use super::nft::{ApplyError, Nft, NftCli};

/// A `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch (0 when absent).
    pub patch: u32,
}

impl Version {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Oldest `nft` that parses the scripts nftpol writes (chain and set comments).
pub const MIN_NFT: Version = Version::new(0, 9, 7);
/// Oldest kernel that accepts them (chain comments need 5.10).
pub const MIN_KERNEL: Version = Version::new(5, 10, 0);

/// Why the environment cannot run nftpol's ruleset.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// `nft` could not be started at all.
    #[error("cannot run {nft} --version: {source}")]
    Spawn {
        /// The binary.
        nft: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `nft` is older than [`MIN_NFT`].
    #[error(
        "nft {found} found ({nft}), nftpol needs >= {MIN_NFT}: older nft cannot parse comments on chains and sets; install a newer nftables package"
    )]
    NftTooOld {
        /// The binary.
        nft: String,
        /// Its version.
        found: Version,
    },
    /// The kernel is older than [`MIN_KERNEL`].
    #[error(
        "kernel {found} found, nftpol needs >= {MIN_KERNEL}: older kernels reject comments on chains (and before 5.6, port-range sets)"
    )]
    KernelTooOld {
        /// The running kernel.
        found: Version,
    },
}

/// What the check found. Versions that could not be read are `None` and
/// explained in `warnings` (a wrapper script may print something else; the
/// kernel then has the last word when the ruleset is loaded).
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// `nft --version`.
    pub nft: Option<Version>,
    /// The running kernel.
    pub kernel: Option<Version>,
    /// Why a version is unknown.
    pub warnings: Vec<String>,
}

/// Parses `nft --version` output: `nftables v1.0.6 (Lester Gooch #5)`.
pub fn parse_nft_version(out: &str) -> Option<Version> {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("nftables"))?;
    let word = line.split_whitespace().nth(1)?;
    parse_dotted(word.strip_prefix('v').unwrap_or(word))
}

/// Parses a kernel release (`uname -r`, `/proc/sys/kernel/osrelease`):
/// `6.18.0-1-amd64`, `5.10.0-23-cloud-amd64`, `6.1.55+`, `5.15`.
pub fn parse_kernel_release(release: &str) -> Option<Version> {
    parse_dotted(release.trim())
}

/// `X.Y[.Z]` followed by anything that is not a digit or a dot.
fn parse_dotted(s: &str) -> Option<Version> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let mut parts = s[..end].split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some(Version::new(major, minor, patch))
}

/// Compares found versions with the minimums.
pub fn require(nft: &str, found: &Found) -> Result<(), VersionError> {
    if let Some(v) = found.nft
        && v < MIN_NFT
    {
        return Err(VersionError::NftTooOld {
            nft: nft.to_string(),
            found: v,
        });
    }
    if let Some(v) = found.kernel
        && v < MIN_KERNEL
    {
        return Err(VersionError::KernelTooOld { found: v });
    }
    Ok(())
}

/// Runs `nft --version`, reads the kernel release and checks both against
/// the minimums. A missing `nft` or a version below the minimum is an error;
/// a version that cannot be read is a warning in [`Found::warnings`].
pub fn check(nft: &str) -> Result<Found, VersionError> {
    check_with(nft, &NftCli::new(nft))
}

/// [`check`] with any [`Nft`]; `name` is how messages call the binary.
pub fn check_with(name: &str, nft: &dyn Nft) -> Result<Found, VersionError> {
    let mut found = Found::default();
    let text = match nft.version() {
        Ok(out) => out,
        Err(ApplyError::Spawn { source, .. }) => {
            return Err(VersionError::Spawn {
                nft: name.to_string(),
                source,
            });
        }
        // A failing or hung `--version` leaves the version unknown.
        Err(ApplyError::Rejected { .. } | ApplyError::TimedOut { .. }) => String::new(),
    };
    found.nft = parse_nft_version(&text);
    if found.nft.is_none() {
        found.warnings.push(format!(
            "cannot read the version of {name} (`{name} --version` printed {:?}); nftpol needs nft >= {MIN_NFT}",
            text.trim()
        ));
    }
    match kernel_release() {
        Some(r) => {
            found.kernel = parse_kernel_release(&r);
            if found.kernel.is_none() {
                found.warnings.push(format!(
                    "cannot parse the kernel release {r:?}; nftpol needs Linux >= {MIN_KERNEL}"
                ));
            }
        }
        None => found.warnings.push(format!(
            "cannot read the kernel release; nftpol needs Linux >= {MIN_KERNEL}"
        )),
    }
    require(name, &found)?;
    Ok(found)
}

/// The version `nft --version` reports, when it runs and prints one.
pub fn nft_version(nft: &str) -> Option<Version> {
    NftCli::new(nft)
        .version()
        .ok()
        .and_then(|out| parse_nft_version(&out))
}

/// The running kernel's release string (`/proc` is always there where
/// nftables is; without it the version is a warning, not an error).
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_version_lines() {
        let rows: &[(&str, Option<Version>, &str)] = &[
            (
                "nftables v1.0.6 (Lester Gooch #5)\n",
                Some(Version::new(1, 0, 6)),
                "Debian 12",
            ),
            (
                "nftables v0.9.1 (Headless Horseman)",
                Some(Version::new(0, 9, 1)),
                "Debian 10: too old",
            ),
            (
                "nftables v1.1.1 (Commodore Bullmoose #2)",
                Some(Version::new(1, 1, 1)),
                "a later release",
            ),
            (
                "nftables v0.9.7 (Anyface)",
                Some(Version::new(0, 9, 7)),
                "the minimum itself",
            ),
            (
                "nftables v1.0.9-rc1 (Old Doc Yak #3)",
                Some(Version::new(1, 0, 9)),
                "suffix after the number",
            ),
            ("nftables v1.1", Some(Version::new(1, 1, 0)), "no patch"),
            ("Error: Could not process rule", None, "not a version"),
            ("", None, "empty"),
            ("nftables vX.Y", None, "garbage"),
        ];
        for (input, want, why) in rows {
            assert_eq!(parse_nft_version(input), *want, "{why}: {input:?}");
        }
    }

    #[test]
    fn kernel_releases() {
        let rows: &[(&str, Option<Version>, &str)] = &[
            ("6.18.0-1-amd64\n", Some(Version::new(6, 18, 0)), "Debian"),
            (
                "5.10.0-23-cloud-amd64",
                Some(Version::new(5, 10, 0)),
                "the minimum",
            ),
            ("6.1.55+", Some(Version::new(6, 1, 55)), "plus suffix"),
            ("5.15", Some(Version::new(5, 15, 0)), "no patch"),
            (
                "4.19.0-27-amd64",
                Some(Version::new(4, 19, 0)),
                "too old, still parsed",
            ),
            ("linux", None, "no number"),
            ("6", None, "no minor"),
        ];
        for (input, want, why) in rows {
            assert_eq!(parse_kernel_release(input), *want, "{why}: {input:?}");
        }
    }

    #[test]
    fn minimums_are_enforced_with_a_clear_message() {
        let old_nft = Found {
            nft: Some(Version::new(0, 9, 1)),
            kernel: Some(Version::new(6, 1, 0)),
            warnings: vec![],
        };
        let e = require("/usr/sbin/nft", &old_nft).unwrap_err().to_string();
        assert!(
            e.starts_with("nft 0.9.1 found (/usr/sbin/nft), nftpol needs >= 0.9.7"),
            "{e}"
        );
        let old_kernel = Found {
            nft: Some(Version::new(1, 0, 6)),
            kernel: Some(Version::new(5, 4, 0)),
            warnings: vec![],
        };
        let e = require("nft", &old_kernel).unwrap_err().to_string();
        assert!(
            e.starts_with("kernel 5.4.0 found, nftpol needs >= 5.10.0"),
            "{e}"
        );
        let exact = Found {
            nft: Some(MIN_NFT),
            kernel: Some(MIN_KERNEL),
            warnings: vec![],
        };
        assert!(
            require("nft", &exact).is_ok(),
            "the minimums themselves pass"
        );
        assert!(
            require("nft", &Found::default()).is_ok(),
            "unknown versions are warnings, not errors"
        );
    }

    #[test]
    fn this_machine_passes() {
        if NftCli::new("nft").version().is_err() {
            eprintln!("skipped: no nft on PATH");
            return;
        }
        let found = check("nft").expect("the test machine meets the minimums");
        assert!(found.nft.is_some_and(|v| v >= MIN_NFT), "{found:?}");
        assert!(found.kernel.is_some_and(|v| v >= MIN_KERNEL), "{found:?}");
        assert!(found.warnings.is_empty(), "{found:?}");
    }

    #[test]
    fn a_missing_nft_is_an_error() {
        let e = check("/nonexistent/nft").unwrap_err();
        assert!(matches!(e, VersionError::Spawn { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("cannot run /nonexistent/nft --version"),
            "{e}"
        );
    }
}
