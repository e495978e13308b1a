//! Loading a ruleset into the kernel by running `nft -f -` (one transaction).

use std::io::Write;
use std::process::{Command, Stdio};

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// `nft` could not be started.
    #[error("cannot run {nft}: {source}")]
    Spawn {
        /// The binary.
        nft: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `nft` rejected the ruleset; the kernel keeps the previous one.
    #[error("nft rejected the ruleset (the previous ruleset stays in force):\n{stderr}")]
    Rejected {
        /// What nft printed.
        stderr: String,
    },
}

/// Runs `nft [-c] [-j] -f -` with `script` on stdin. With `check`, nothing is
/// changed (`nft -c`). The kernel applies the whole script or none of it.
pub fn run_nft(nft: &str, script: &str, check: bool, json: bool) -> Result<(), ApplyError> {
    let mut cmd = Command::new(nft);
    if check {
        cmd.arg("-c");
    }
    if json {
        cmd.arg("-j");
    }
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| ApplyError::Spawn {
        nft: nft.to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("stdin was requested as piped");
    let writer = {
        let script = script.to_string();
        std::thread::spawn(move || stdin.write_all(script.as_bytes()))
    };
    let out = child.wait_with_output().map_err(spawn_err)?;
    let _ = writer.join();
    if out.status.success() {
        Ok(())
    } else {
        Err(ApplyError::Rejected {
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
