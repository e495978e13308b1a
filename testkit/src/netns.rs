//! Named network namespaces: creation, deletion, stale cleanup, commands and per-thread entry.
//!
//! Every namespace this module creates is named `nptb-<pid>-<instance>-<role>` so that a later
//! process can tell which ones were left behind by a process that died without cleaning up.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

use anyhow::{Context, Result, anyhow, bail};

/// Directory where `ip netns` keeps its bind mounts.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Name prefix shared by every namespace the test bed creates.
pub const NAME_PREFIX: &str = "nptb";

static INSTANCE: AtomicU32 = AtomicU32::new(0);
static OWN_PID_CLEANUP: Once = Once::new();
// `ip netns add` races with itself when two calls set up the shared /run/netns mount at once,
// so this process never runs two of them concurrently.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A fresh `nptb-<pid>-<n>` prefix, unique within this process and across live processes.
pub fn instance_prefix() -> String {
    let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}-{}-{n}", std::process::id())
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid embedded in a test-bed namespace name, if the name follows the scheme.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(NAME_PREFIX)?.strip_prefix('-')?;
    let pid = rest.split('-').next()?;
    pid.parse().ok().filter(|p| *p > 0)
}

/// Names of every namespace currently registered under [`NETNS_DIR`].
pub fn list() -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {NETNS_DIR}")),
    };
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.with_context(|| format!("reading {NETNS_DIR}"))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Deletes test-bed namespaces whose creating process is gone; returns how many were removed.
///
/// The first call in a process also removes namespaces carrying this process's own pid: they can
/// only come from an earlier, dead process that had the same pid, and would collide with ours.
/// That happens inside `call_once`, so concurrent first builders wait for it before creating
/// anything.
pub fn cleanup_stale() -> Result<usize> {
    let me = std::process::id() as i32;
    let mut removed = 0;
    let mut first: Result<()> = Ok(());
    OWN_PID_CLEANUP.call_once(|| match remove_where(|pid| pid == me) {
        Ok(n) => removed += n,
        Err(e) => first = Err(e),
    });
    first?;
    removed += remove_where(|pid| pid != me && !pid_alive(pid))?;
    Ok(removed)
}

fn remove_where(stale: impl Fn(i32) -> bool) -> Result<usize> {
    let doomed: Vec<String> = list()?
        .into_iter()
        .filter(|n| owner_pid(n).is_some_and(&stale))
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    // Another process may be deleting the same names right now, so failures are ignored and
    // the directory is re-read instead.
    let _ = delete(&doomed);
    let left: HashSet<String> = list()?.into_iter().collect();
    Ok(doomed.iter().filter(|n| !left.contains(*n)).count())
}

/// Creates the named namespaces (one `ip` process for all of them).
pub fn add(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let script: String = names.iter().map(|n| format!("netns add {n}\n")).collect();
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    run("ip", &["-batch", "-"], Some(&script)).context("creating network namespaces")?;
    Ok(())
}

/// Deletes the named namespaces, carrying on past names that no longer exist.
pub fn delete(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let script: String = names.iter().map(|n| format!("netns del {n}\n")).collect();
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    run("ip", &["-force", "-batch", "-"], Some(&script)).context("deleting network namespaces")?;
    Ok(())
}

fn render(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to completion, feeding `stdin`; returns stdout, or an error naming the command,
/// its exit status, its stderr and (for short scripts) the script itself.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let shown = render(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}` (is it installed?)"))?;
    // Writing from another thread keeps a child that fills its stdout pipe from deadlocking us.
    let writer = stdin.map(|text| {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        let text = text.to_owned();
        std::thread::spawn(move || pipe.write_all(text.as_bytes()))
    });
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{shown}`"))?;
    if let Some(w) = writer {
        // A child that exits early closes the pipe; its exit status tells the real story.
        let _ = w.join();
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut msg = format!("`{shown}` failed ({}): {}", out.status, stderr.trim());
        if let Some(text) = stdin.filter(|t| t.len() <= 4000) {
            msg.push_str("\n--- input ---\n");
            msg.push_str(text);
        }
        bail!(msg);
    }
    Ok(stdout)
}

/// Runs `argv` inside namespace `netns` via `ip netns exec`; returns stdout.
pub fn exec(netns: &str, argv: &[&str], stdin: Option<&str>) -> Result<String> {
    let (program, rest) = argv
        .split_first()
        .ok_or_else(|| anyhow!("empty command for netns {netns}"))?;
    let mut args = vec!["netns", "exec", netns, program];
    args.extend_from_slice(rest);
    run("ip", &args, stdin).with_context(|| format!("in netns {netns}"))
}

/// Runs `ip` commands (one per line, without the leading `ip`) in `netns` as one batch.
pub fn ip_batch(netns: &str, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let script: String = lines.iter().map(|l| format!("{l}\n")).collect();
    run("ip", &["-n", netns, "-batch", "-"], Some(&script))
        .with_context(|| format!("configuring netns {netns}"))?;
    Ok(())
}

/// Runs `bridge` commands (one per line) in `netns` as one batch.
pub fn bridge_batch(netns: &str, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let script: String = lines.iter().map(|l| format!("{l}\n")).collect();
    run("bridge", &["-n", netns, "-batch", "-"], Some(&script))
        .with_context(|| format!("configuring bridge fdb in netns {netns}"))?;
    Ok(())
}

/// Sets sysctls (`key=value`) inside `netns` with one `sysctl` process.
pub fn sysctl(netns: &str, settings: &[String]) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let mut argv = vec!["sysctl", "-q", "-w"];
    argv.extend(settings.iter().map(String::as_str));
    exec(netns, &argv, None)?;
    Ok(())
}

/// An open handle on a named namespace, for moving threads into it.
#[derive(Debug)]
pub struct NetnsHandle {
    name: String,
    file: File,
}

impl NetnsHandle {
    /// Opens `/var/run/netns/<name>`.
    pub fn open(name: &str) -> Result<NetnsHandle> {
        let path = Path::new(NETNS_DIR).join(name);
        let file = File::open(&path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        Ok(NetnsHandle {
            name: name.to_owned(),
            file,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread (only it: network namespaces are per thread) into the namespace.
    pub fn enter(&self) -> Result<()> {
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setns into network namespace {}", self.name));
        }
        Ok(())
    }
}

/// Runs `f` on a fresh thread that lives in namespace `netns`, so the caller's own thread never
/// changes namespace.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let handle = NetnsHandle::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            handle.enter()?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("thread inside netns {netns} panicked"))?
    })
}

/// A fresh network namespace of its own, `nptb-<pid>-<n>-<role>` with loopback up, deleted on
/// drop (also on panic). This is the one way the tests make a namespace: topologies create
/// theirs with the same naming through [`add`], so [`cleanup_stale`] finds what a killed test
/// left behind.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace (needs root).
    pub fn new(role: &str) -> Result<Netns> {
        cleanup_stale().context("removing stale test namespaces")?;
        let name = format!("{}-{role}", instance_prefix());
        add(std::slice::from_ref(&name))?;
        let ns = Netns { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"], None)?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec` and [`NetnsHandle::open`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `argv` inside the namespace; returns stdout (see [`exec`]).
    pub fn exec(&self, argv: &[&str], stdin: Option<&str>) -> Result<String> {
        exec(&self.name, argv, stdin)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`); add arguments,
    /// environment and working directory as usual.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread inside the namespace (see [`in_netns`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_netns(&self.name, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = delete(std::slice::from_ref(&self.name));
    }
}

/// Runs `f` on a new thread moved into a fresh [`Netns`] (threads it spawns, and processes
/// they start, live there too), which is deleted afterwards; returns what `f` returns and
/// re-raises its panic.
pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let ns = Netns::new("thread").expect("a fresh network namespace (tests need root)");
    let handle = NetnsHandle::open(ns.name()).expect("opening the fresh namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            handle.enter().expect("entering the fresh namespace");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Runs `sh -ec script` in a fresh [`Netns`] (deleted afterwards) with `env` set and `dir` as
/// working directory; returns its output.
pub fn sh_in_fresh_netns(script: &str, env: &[(&str, &str)], dir: &Path) -> std::process::Output {
    let ns = Netns::new("sh").expect("a fresh network namespace (tests need root)");
    ns.command("sh")
        .args(["-ec", script])
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("ip netns exec runs")
}
