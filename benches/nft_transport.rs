//! How an element delta reaches the kernel (issue 14, item 3): one `nft -f -`
//! process per transaction (`--element-updates nft`) against one long-lived
//! `nft -i` process fed one transaction per line, and one netlink batch
//! from the agent's own socket.
//!
//! `cargo bench --bench nft_transport` compiles node-01's table of the
//! synthetic cluster (`NFTPOL_SCALES`, default `small,large`), loads it into
//! a network namespace of its own, and then sends transactions shaped like
//! one pod replaced by another — `delete element` of the previous address
//! and `add element` of a new one in `self-v4` (what a pod scheduled on the
//! node changes), one atomic
//! transaction each — alternating the two transports in rounds
//! (`NFTPOL_ROUNDS`, default 5, of `NFTPOL_TXNS` transactions each, default
//! 40). Each transaction is timed from the first byte written to:
//! - spawn: the `nft -f -` process exiting with success;
//! - long-lived: `nft -e -i` (echo; under `stdbuf -oL`, as its stdout is a
//!   pipe) echoing the added element, which it prints once the transaction
//!   is committed (an error goes to stderr and no echo comes: the bench
//!   then fails on a timeout).
//!
//! - long-lived, acknowledged by a marker: `nft -i` without echo, each
//!   transaction followed by `list tables`, timed to the `table inet
//!   nftpol` line that prints (a refused transaction shows on stderr only;
//!   telling it apart would need reading stderr between markers).
//!
//! Then, as a control for what echo costs, one `nft -i` without echo fed
//! `NFTPOL_TXNS` transactions at once (no acknowledgement per transaction:
//! the mean up to its exit). All run on a thread inside the namespace (no
//! `ip netns exec`). At the
//! end the set must hold exactly the last address added (checked through
//! the enforcer's listing path). Prints p50 / p90 / max per transport and
//! the ratio of the medians, with the load average. The fourth transport is
//! the third option of the issue, what the agent uses: the same change as
//! one nftables netlink batch from a socket kept open
//! (`kernel::netlink::NetlinkElements::apply_elements`), timed to the
//! kernel's acknowledgement of every message. Under `cargo test` it runs the
//! small scale with 2 rounds of 5.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nftpol::core::compile::{Options, compile_objects};
use nftpol::core::model::Family;
use nftpol::core::nft::delta::{Edits, ElementChange};
use nftpol::core::nft::names;
use nftpol::core::nft::ruleset::{Element, SetKind, TABLE};
use nftpol::kernel::enforcer::{Applied, Enforcer};
use nftpol::kernel::netlink::NetlinkElements;
use nftpol::kernel::nft::{Nft, NftCli};
use nftpol_testkit::bench::loadavg;
use nftpol_testkit::{netns, synth};

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// The i-th address a transaction adds (outside every generated range).
fn addr(i: usize) -> String {
    format!("10.254.{}.{}", (i / 250) % 250, 1 + i % 250)
}

/// Its element in `self-v4`.
fn element(i: usize) -> String {
    format!("{0} . {0}", addr(i))
}

/// Transaction `i`: the previous address goes, the next one comes.
fn txn(set: &str, i: usize) -> String {
    let add = format!("add element inet {TABLE} {set} {{ {} }}", element(i));
    match i {
        0 => add,
        _ => format!(
            "delete element inet {TABLE} {set} {{ {} }}; {add}",
            element(i - 1)
        ),
    }
}

/// One `nft -f -` per transaction.
fn spawn_one(script: &str) -> Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning nft")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{script}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    let d = t.elapsed();
    ensure!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(d)
}

/// Transaction `i` as one netlink batch through the agent's transport,
/// timed to its acknowledgement.
fn netlink_one(nl: &NetlinkElements, set: &str, i: usize) -> Result<Duration> {
    let el = |i: usize| -> Result<Element> {
        let a: std::net::IpAddr = addr(i).parse()?;
        Ok(Element::AddrPair(a, a))
    };
    let mut edits = Edits::default();
    if i > 0 {
        edits.set_deleted(set, &el(i - 1)?);
    }
    edits.set_added(set, &el(i)?);
    let change = ElementChange {
        edits: &edits,
        generation: None,
    };
    let t = Instant::now();
    nl.apply_elements(&change)?;
    Ok(t.elapsed())
}

/// A long-lived `nft -i`, its stdin, and its stdout lines; with `echo`,
/// a transaction is acknowledged by the echo of what it adds, else by the
/// output of a `list tables` sent after it (nft runs its input in order).
struct Resident {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
    echo: bool,
}

impl Resident {
    fn start(echo: bool) -> Result<Resident> {
        // nft's stdout is a pipe here: line-buffered through stdbuf, or
        // what it prints would sit in its buffer.
        let args: &[&str] = match echo {
            true => &["-oL", "nft", "-e", "-i"],
            false => &["-oL", "nft", "-i"],
        };
        let mut child = Command::new("stdbuf")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning nft -i")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Resident {
            child,
            stdin,
            lines,
            echo,
        })
    }

    /// Sends one transaction; waits for its acknowledgement (see the type).
    fn send(&mut self, script: &str, added: &str) -> Result<Duration> {
        let t = Instant::now();
        match self.echo {
            true => self.stdin.write_all(format!("{script}\n").as_bytes())?,
            false => self
                .stdin
                .write_all(format!("{script}\nlist tables\n").as_bytes())?,
        }
        self.stdin.flush()?;
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .context("no echo from nft -i within 10 s (a refused transaction?)")?;
            let done = match self.echo {
                true => l.starts_with("add element") && l.contains(added),
                false => l == format!("table inet {TABLE}"),
            };
            if done {
                return Ok(t.elapsed());
            }
        }
    }

    fn stop(mut self) -> Result<()> {
        drop(self.stdin);
        let st = self.child.wait()?;
        ensure!(st.success(), "nft -i exited with {st}");
        Ok(())
    }
}

fn run(scale: synth::Scale, rounds: usize, txns: usize) -> Result<()> {
    let objs = synth::generate(scale, 42);
    let opts = Options {
        node: Some("node-01".into()),
        ..Options::default()
    };
    let rs = compile_objects(&objs, &opts).ruleset;
    // `self-v4` (`addr . addr` of the enforced pods): in every table, and
    // what a pod scheduled here changes.
    let set = names::self_set(Family::V4);
    ensure!(
        rs.sets.get(&set).map(|s| s.kind) == Some(SetKind::AddrPair(Family::V4)),
        "no {set} in the table"
    );
    let s = rs.stats();
    let ns = netns::Netns::new("transport")?;
    let load = loadavg();
    let (spawned, (resident, marked), (netlink, held)) = ns.run(|| -> Result<_> {
        let mut e = Enforcer::new("nft");
        ensure!(e.sync(&rs)? == Applied::Full, "first load");
        let mut echoing = Resident::start(true)?;
        let mut marked = Resident::start(false)?;
        let nl = NetlinkElements::open(NftCli::new("nft"))?;
        let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut i = 0;
        for round in 0..rounds {
            // Rotate which transport goes first in a round.
            for k in 0..4 {
                for _ in 0..txns {
                    let script = txn(&set, i);
                    i += 1;
                    match (round + k) % 4 {
                        0 => a.push(spawn_one(&script)?),
                        1 => b.push(echoing.send(&script, &element(i - 1))?),
                        2 => c.push(marked.send(&script, &element(i - 1))?),
                        _ => d.push(netlink_one(&nl, &set, i - 1)?),
                    }
                }
            }
        }
        echoing.stop()?;
        marked.stop()?;
        // Without echo (which may make nft fetch more to print it): no
        // acknowledgement per transaction, so a batch of them, one per
        // line, and the mean up to the process's exit.
        let mut quiet = Command::new("nft")
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines: String = (0..txns)
            .map(|_| {
                i += 1;
                format!("{}\n", txn(&set, i - 1))
            })
            .collect();
        let t = Instant::now();
        quiet
            .stdin
            .take()
            .expect("piped")
            .write_all(lines.as_bytes())?;
        let out = quiet.wait_with_output()?;
        let mean = t.elapsed() / txns as u32;
        ensure!(
            out.status.success() && out.stderr.is_empty(),
            "nft -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = Command::new("nft")
            .args(["list", "set", "inet", TABLE, &set])
            .output()?;
        let text = String::from_utf8_lossy(&listing.stdout).to_string();
        e.remove_table()?;
        Ok((a, (b, c), (d, (text, i, mean))))
    })??;
    let (text, n, quiet_mean) = held;
    let last = addr(n - 1);
    let ours: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| t.starts_with("10.254."))
        .collect();
    if ours != [last.as_str(), last.as_str()] {
        bail!("the set should hold only {last} . {last} of the bench's elements, holds {ours:?}");
    }
    println!(
        "  {}: node-01 table {} chains, {} rules, {} sets, {} elements; set {set}",
        scale.name, s.chains, s.rules, s.sets, s.elements
    );
    for (what, v) in [
        ("nft -f per transaction", &spawned),
        ("one nft -e -i (echo)", &resident),
        ("one nft -i + list tables", &marked),
        ("netlink batch (agent)", &netlink),
    ] {
        println!(
            "    {what:<24} {} txns: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 1.0)
        );
    }
    println!(
        "    one nft -i, no echo      {txns} txns in one go: mean {:.2} ms",
        quiet_mean.as_secs_f64() * 1e3
    );
    println!(
        "    spawn / long-lived, echo / marker / netlink (p50): {:.1}x / {:.1}x / {:.1}x; load {load} -> {}",
        pct(&spawned, 0.5) / pct(&resident, 0.5).max(1e-6),
        pct(&spawned, 0.5) / pct(&marked, 0.5).max(1e-6),
        pct(&spawned, 0.5) / pct(&netlink, 0.5).max(1e-6),
        loadavg()
    );
    Ok(())
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let get = nftpol_testkit::bench::env_or::<usize>;
    let rounds = get("NFTPOL_ROUNDS", if bench { 5 } else { 2 });
    let txns = get("NFTPOL_TXNS", if bench { 40 } else { 5 });
    let names = std::env::var("NFTPOL_SCALES")
        .unwrap_or_else(|_| if bench { "small,large" } else { "small" }.to_string());
    println!(
        "== an element delta (one address out, one in) per transaction, {rounds} rounds x {txns} per transport"
    );
    for name in names.split(',') {
        let scale = *synth::SCALES
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no scale {name}"))?;
        run(scale, rounds, txns)?;
    }
    Ok(())
}
