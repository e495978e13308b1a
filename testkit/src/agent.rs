//! Helpers for driving `nftpol run` from tests and benches: a minimal HTTP
//! reader for its `/metrics`, `/readyz` and `/healthz`, metric sample sums,
//! and an agent process that is killed and reaped however the test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `GET path` from `addr` (e.g. `127.0.0.1:9750`) in the calling thread's
/// namespace: the status code and the whole response, or `None` if the
/// server is not reachable or the answer is unreadable.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.get(9..12)?.parse().ok()?;
    Some((code, buf))
}

/// The `/metrics` text served at `addr`, if reachable.
pub fn metrics_text(addr: &str) -> Option<String> {
    http_get(addr, "/metrics").map(|(_, body)| body)
}

/// Sum of the samples of metric `name` in an OpenMetrics text whose line
/// contains `filter` (e.g. `kind="delta"`; `""` takes every sample).
pub fn metric_in(body: &str, name: &str, filter: &str) -> f64 {
    metric_matching(body, name, &[filter])
}

/// Sum of the samples of metric `name` whose line contains every one of
/// `filters` (e.g. `["namespace=\"shop\"", "direction=\"ingress\""]`).
pub fn metric_matching(body: &str, name: &str, filters: &[&str]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// [`metric_in`] of the metrics served at `addr`; 0 when unreachable.
pub fn metric(addr: &str, name: &str, filter: &str) -> f64 {
    metrics_text(addr).map_or(0.0, |b| metric_in(&b, name, filter))
}

/// The `nftpol_applies_total` counters `(full, delta, unchanged)` at `addr`.
pub fn applies(addr: &str) -> Option<(f64, f64, f64)> {
    let body = metrics_text(addr)?;
    let get = |kind: &str| metric_in(&body, "nftpol_applies_total", &format!("kind=\"{kind}\""));
    Some((get("full"), get("delta"), get("unchanged")))
}

/// The agent's `nftpol_compile_path_total` (incremental, partial, full)
/// scraped from `addr`; `None` while it does not answer.
pub fn compile_paths(addr: &str) -> Option<(f64, f64, f64)> {
    let body = metrics_text(addr)?;
    let get = |path: &str| {
        metric_in(
            &body,
            "nftpol_compile_path_total",
            &format!("path=\"{path}\""),
        )
    };
    Some((get("incremental"), get("partial"), get("full")))
}

/// `nftpol run` (the binary at `bin`) for `node`, serving on `listen`, with
/// the API server of `kubeconfig` and the tests' quick timings
/// (`--min-interval 50ms --max-delay 300ms --resync 1s`), its NodeProgramStatus
/// in namespace `nftpol` (deploy/'s, as the DaemonSet's `POD_NAMESPACE`
/// says); stdout discarded.
/// The caller adds the environment and where stderr (the log) goes.
pub fn command(bin: &str, node: &str, listen: &str, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--node", node, "--listen", listen])
        .args([
            "--min-interval",
            "50ms",
            "--max-delay",
            "300ms",
            "--resync",
            "1s",
            "--status-namespace",
            "nftpol",
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::null());
    cmd
}

/// A running `nftpol run` (or any child): killed with SIGKILL and reaped on
/// drop, so no test leaks processes, also when it panics.
pub struct AgentProcess(pub Child);

impl AgentProcess {
    /// Spawns `cmd`; panics if it cannot start.
    pub fn spawn(cmd: &mut Command) -> AgentProcess {
        AgentProcess(cmd.spawn().expect("nftpol run starts"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "agent ignores SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (no chance to clean up) and reap.
    pub fn kill9(mut self) -> ExitStatus {
        let _ = self.0.kill();
        self.0.wait().expect("reaping the killed agent")
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
