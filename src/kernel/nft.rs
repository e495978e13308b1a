//! The one place that spawns `nft`: the [`Nft`] trait the enforcer runs over,
//! and [`NftCli`], its implementation with the real binary.
//!
//! Every call has a deadline ([`NftCli::timeout`]): a hung `nft` (a stuck
//! netlink socket, a kernel busy for minutes) is killed and reported as
//! [`ApplyError::TimedOut`], so the agent retries instead of hanging forever.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::nft::delta::{ElementChange, Stage};
use crate::core::nft::ruleset::TABLE;

/// Why an `nft` call failed.
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
    /// `nft` did not finish in time and was killed; a transaction it was
    /// running is aborted by the kernel (all or nothing).
    #[error("{nft} did not finish within {after:?} and was killed")]
    TimedOut {
        /// The binary.
        nft: String,
        /// The deadline it missed.
        after: Duration,
    },
}

impl ApplyError {
    /// Label for metrics: `spawn`, `rejected` or `timeout`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Spawn { .. } => "spawn",
            ApplyError::Rejected { .. } => "rejected",
            ApplyError::TimedOut { .. } => "timeout",
        }
    }
}

/// What the enforcer and the version check need from `nft`. The real
/// implementation is [`NftCli`]; `kernel::fake::FakeNft` drives the
/// enforcer and the agent's worker in unit tests.
pub trait Nft: Send + std::fmt::Debug {
    /// Loads `script` as one transaction (`nft -f -`): all of it or nothing.
    fn apply(&self, script: &str) -> Result<(), ApplyError>;
    /// Applies element changes (and the generation step with them) as one
    /// transaction; by default as their `nft -f` script. The agent's
    /// transport (`kernel::netlink::NetlinkElements`) sends them as one
    /// netlink batch instead, without a process.
    fn apply_elements(&self, change: &ElementChange) -> Result<(), ApplyError> {
        self.apply(&change.script())
    }
    /// Applies one stage of a structural change as one transaction; by
    /// default as its script. The netlink transport sends a stage that is
    /// only element changes or only deletions ([`Stage::ops`]) as a batch.
    fn apply_stage(&self, stage: &Stage) -> Result<(), ApplyError> {
        self.apply(&stage.script)
    }
    /// Checks `script` without changing the kernel (`nft -c -f -`).
    fn check(&self, script: &str) -> Result<(), ApplyError>;
    /// The `inet nftpol` table as `nft -j list table inet nftpol` prints it.
    fn list_table(&self) -> Result<String, ApplyError>;
    /// What `nft --version` prints.
    fn version(&self) -> Result<String, ApplyError>;
    /// A listing holding at least the set `ct-generation` (the whole table
    /// by default; the real binary lists the one set, much cheaper).
    fn list_generation(&self) -> Result<String, ApplyError> {
        self.list_table()
    }
    /// A listing holding at least the table's chains (with their hooks),
    /// sets and maps (the whole table by default; the real binary lists it
    /// without elements).
    fn list_names(&self) -> Result<String, ApplyError> {
        self.list_table()
    }
}

/// The real `nft` binary, run as a child process per call.
#[derive(Debug, Clone)]
pub struct NftCli {
    /// Path or name of the binary.
    pub path: String,
    /// Longest one call may run before it is killed.
    pub timeout: Duration,
}

impl NftCli {
    /// Default deadline of one call (`nftpol run --nft-timeout`): ten times
    /// what a whole 10k-pod table takes (about a second), far below "hung".
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The binary at `path`, with [`NftCli::DEFAULT_TIMEOUT`].
    pub fn new(path: impl Into<String>) -> NftCli {
        NftCli::with_timeout(path, Self::DEFAULT_TIMEOUT)
    }

    /// The binary at `path`; a call running longer than `timeout` is killed.
    pub fn with_timeout(path: impl Into<String>, timeout: Duration) -> NftCli {
        NftCli {
            path: path.into(),
            timeout,
        }
    }

    /// Runs `nft [-c] [-j] -f -` with `script` on stdin.
    pub fn run_script(&self, script: &str, check: bool, json: bool) -> Result<(), ApplyError> {
        let mut args = Vec::new();
        if check {
            args.push("-c");
        }
        if json {
            args.push("-j");
        }
        args.extend(["-f", "-"]);
        self.run(&args, Some(script)).map(|_| ())
    }

    /// Runs `nft ARGS` (with `stdin` fed to it when given) and returns its
    /// stdout; a non-zero exit is [`ApplyError::Rejected`] with its stderr.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
        let spawn_err = |source| ApplyError::Spawn {
            nft: self.path.clone(),
            source,
        };
        let mut child = Command::new(&self.path)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let writer = child.stdin.take().map(|mut pipe| {
            let script = stdin.unwrap_or_default().to_string();
            std::thread::spawn(move || pipe.write_all(script.as_bytes()))
        });
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                let _ = pipe.read_to_end(&mut s);
                s
            })
        });
        let mut stdout_pipe = child.stdout.take().expect("stdout was requested as piped");
        let child = Arc::new(Mutex::new(child));
        let (done, watchdog) = watchdog(child.clone(), self.timeout);
        let mut stdout = Vec::new();
        // Ends when nft exits or is killed (the pipe closes).
        let read = stdout_pipe.read_to_end(&mut stdout);
        let stderr = stderr.map(|t| t.join().unwrap_or_default());
        let status = reap(&child);
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        if let Some(w) = writer {
            let _ = w.join();
        }
        if timed_out {
            return Err(ApplyError::TimedOut {
                nft: self.path.clone(),
                after: self.timeout,
            });
        }
        read.map_err(spawn_err)?;
        if status.map_err(spawn_err)?.success() {
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        } else {
            Err(ApplyError::Rejected {
                stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
            })
        }
    }
}

/// Waits for `child` to exit without holding its lock for long, so the
/// watchdog can still kill a child that closed stdout but keeps running.
fn reap(child: &Mutex<Child>) -> std::io::Result<std::process::ExitStatus> {
    let mut pause = Duration::from_micros(100);
    loop {
        if let Some(status) = lock(child).try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A thread that kills `child` unless told (through the returned sender)
/// within `timeout` that it finished; it returns whether it killed.
fn watchdog(
    child: Arc<Mutex<Child>>,
    timeout: Duration,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || match rx.recv_timeout(timeout) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let mut c = lock(&child);
            match c.try_wait() {
                Ok(None) => c.kill().is_ok(),
                _ => false,
            }
        }
        _ => false,
    });
    (tx, handle)
}

impl Nft for NftCli {
    fn apply(&self, script: &str) -> Result<(), ApplyError> {
        self.run_script(script, false, false)
    }

    fn check(&self, script: &str) -> Result<(), ApplyError> {
        self.run_script(script, true, false)
    }

    fn list_table(&self) -> Result<String, ApplyError> {
        self.run(&["-j", "list", "table", "inet", TABLE], None)
    }

    fn version(&self) -> Result<String, ApplyError> {
        self.run(&["--version"], None)
    }

    fn list_generation(&self) -> Result<String, ApplyError> {
        let set = crate::core::nft::names::GENERATION_SET;
        self.run(&["-j", "list", "set", "inet", TABLE, set], None)
    }

    fn list_names(&self) -> Result<String, ApplyError> {
        self.run(&["-j", "-t", "list", "table", "inet", TABLE], None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_nft_is_killed_and_reported() {
        // `sleep` stands in for an nft that never finishes.
        let nft = NftCli {
            path: "sleep".into(),
            timeout: Duration::from_millis(100),
        };
        let t = std::time::Instant::now();
        let e = nft.run(&["30"], None).unwrap_err();
        assert!(matches!(e, ApplyError::TimedOut { .. }), "{e}");
        assert_eq!(e.reason(), "timeout");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
    }

    #[test]
    fn output_exit_status_and_stderr() {
        let sh = NftCli::new("sh");
        assert_eq!(sh.run(&["-c", "echo hi"], None).unwrap(), "hi\n");
        let e = sh.run(&["-c", "echo bad >&2; exit 1"], None).unwrap_err();
        assert!(
            matches!(&e, ApplyError::Rejected { stderr } if stderr == "bad\n"),
            "{e}"
        );
        // stdin is fed while stdout is read: no deadlock on a large script.
        let big = "x".repeat(1 << 20);
        assert_eq!(
            sh.run(&["-c", "wc -c"], Some(&big)).unwrap().trim(),
            "1048576"
        );
        let e = NftCli::new("/nonexistent/nft").apply("").unwrap_err();
        assert!(matches!(e, ApplyError::Spawn { .. }), "{e}");
    }
}
