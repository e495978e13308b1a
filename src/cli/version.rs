//! `nftpol version`: what this binary is (version, commit, build date, the
//! rustc that built it) and what it finds on this machine (nft, kernel) —
//! the first lines of a useful bug report.

use serde::Serialize;

use super::args::{TextOrJson, VersionArgs};
use super::input::print_stdout;
use super::{Failure, Outcome};

/// What `nftpol version` reports.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// nftpol's version (Cargo.toml).
    pub version: &'static str,
    /// The git commit it was built from, or `unknown`.
    pub commit: &'static str,
    /// The build date (UTC, `SOURCE_DATE_EPOCH` when set).
    pub build_date: &'static str,
    /// `rustc --version` of the compiler that built it.
    pub rustc: &'static str,
    /// The nft binary looked for.
    pub nft_binary: String,
    /// Its version, when it could be run and read.
    pub nft: Option<String>,
    /// The running kernel's release.
    pub kernel: Option<String>,
    /// Problems: nft missing or too old, kernel too old, versions unreadable.
    pub problems: Vec<String>,
}

impl VersionInfo {
    /// Gathers the build facts and looks for `nft` and the kernel.
    pub fn gather(nft: &str) -> VersionInfo {
        let mut info = VersionInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("NFTPOL_GIT_COMMIT"),
            build_date: env!("NFTPOL_BUILD_DATE"),
            rustc: env!("NFTPOL_RUSTC_VERSION"),
            nft_binary: nft.to_string(),
            nft: None,
            kernel: crate::kernel::version::kernel_release(),
            problems: Vec::new(),
        };
        match crate::kernel::version::check(nft) {
            Ok(found) => {
                info.nft = found.nft.map(|v| v.to_string());
                info.problems = found.warnings;
            }
            Err(e) => {
                // The check stops at the first problem; the nft version is
                // still worth showing when it was nft's age or the kernel's.
                info.nft = crate::kernel::version::nft_version(nft).map(|v| v.to_string());
                info.problems.push(e.to_string());
            }
        }
        info
    }

    /// The text report.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "nftpol {}\ncommit:     {}\nbuilt:      {}\nrustc:      {}\n",
            self.version, self.commit, self.build_date, self.rustc
        );
        s.push_str(&format!(
            "nft:        {} ({})\nkernel:     {}\n",
            self.nft.as_deref().unwrap_or("unknown"),
            self.nft_binary,
            self.kernel.as_deref().unwrap_or("unknown"),
        ));
        for p in &self.problems {
            s.push_str(&format!("problem:    {p}\n"));
        }
        s
    }
}

/// Prints the report. Always exits 0 when it could print: problems with nft
/// or the kernel are reported, not failed on (`nftpol run` fails on them).
pub fn version(a: &VersionArgs) -> Outcome {
    let info = VersionInfo::gather(&a.nft);
    let text = match a.output {
        TextOrJson::Text => info.to_text(),
        TextOrJson::Json => {
            let mut s = serde_json::to_string_pretty(&info)
                .map_err(|e| Failure::internal(format!("cannot encode the report: {e}")))?;
            s.push('\n');
            s
        }
    };
    print_stdout(&text)
}
