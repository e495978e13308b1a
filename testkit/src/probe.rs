//! Reachability probes run from inside a namespace: TCP connect, UDP echo, SCTP INIT/INIT-ACK.
//!
//! A probe that is dropped costs its whole timeout, so [`run_many`] runs a batch concurrently on
//! a bounded set of threads, each moving into the source namespace before opening its socket.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::netns::NetnsHandle;
use super::sctp::{self, ChecksumMode};
use super::sock;

/// Default time a probe waits before calling the destination unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Upper bound on concurrently running probes (threads) in one batch.
pub const MAX_PARALLEL: usize = 1024;

/// How often UDP and SCTP probes resend their request within the timeout, so one packet lost
/// while a neighbour entry resolves does not turn into a false "blocked".
const RESEND_EVERY: Duration = Duration::from_millis(250);

/// Transport protocol of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP: a completed three-way handshake.
    Tcp,
    /// UDP: the datagram comes back from the echo responder.
    Udp,
    /// SCTP: an INIT is answered by an INIT ACK carrying our tag.
    Sctp,
}

impl Proto {
    /// All three protocols.
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

    /// Lower-case name as nft spells it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a probe observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handshake completed / echo received / INIT ACK received.
    Reached,
    /// Actively refused: TCP RST, ICMP port unreachable, or SCTP ABORT.
    Refused,
    /// Nothing came back before the timeout (what a `drop` verdict looks like).
    Timeout,
    /// The network reported another error (unreachable, EPERM from a local output hook, ...).
    NetError(String),
}

impl Outcome {
    /// True only for [`Outcome::Reached`].
    pub fn reached(&self) -> bool {
        matches!(self, Outcome::Reached)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Reached => f.write_str("reached"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::NetError(e) => write!(f, "error: {e}"),
        }
    }
}

fn net_error(e: std::io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Outcome::Refused,
        _ => Outcome::NetError(e.to_string()),
    }
}

static RNG: AtomicU64 = AtomicU64::new(0);

/// A cheap non-cryptographic random number (SplitMix64), for tags, TSNs and payloads.
pub fn random_u64() -> u64 {
    if RNG.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ ((std::process::id() as u64) << 32);
        let _ = RNG.compare_exchange(0, seed | 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = RNG
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 32 random bits.
pub fn random_u32() -> u32 {
    random_u64() as u32
}

static SCTP_PORT: OnceLock<AtomicUsize> = OnceLock::new();

/// Source port for the next SCTP probe: handed out round-robin so concurrent probes never share
/// a conntrack tuple (the kernel picks ports for TCP and UDP).
fn next_sctp_port() -> u16 {
    const LOW: usize = 32768;
    const SPAN: usize = 28000;
    let counter = SCTP_PORT.get_or_init(|| AtomicUsize::new(random_u64() as usize % SPAN));
    (LOW + counter.fetch_add(1, Ordering::Relaxed) % SPAN) as u16
}

/// Probes `to` from the calling thread's namespace. `Err` means the harness itself failed
/// (e.g. cannot create a socket), never that the network said no.
pub fn probe_here(
    to: SocketAddr,
    proto: Proto,
    timeout: Duration,
    checksum: ChecksumMode,
) -> Result<Outcome> {
    match proto {
        Proto::Tcp => tcp(to, timeout),
        Proto::Udp => udp(to, timeout),
        Proto::Sctp => sctp_init(to, timeout, checksum),
    }
    .with_context(|| format!("{proto} probe to {to}"))
}

fn tcp(to: SocketAddr, timeout: Duration) -> Result<Outcome> {
    let start = Instant::now();
    let deadline = start + timeout;
    // A second SYN on a fresh socket part-way through stands in for the kernel's retransmit,
    // which comes only after one second.
    let second_at = start + timeout * 2 / 5;
    let mut socks: Vec<OwnedFd> = Vec::with_capacity(2);
    match sock::tcp_connect_start(to).context("creating TCP socket")? {
        Ok(fd) => socks.push(fd),
        Err(e) => return Ok(net_error(e)),
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Outcome::Timeout);
        }
        if socks.len() == 1 && now >= second_at {
            match sock::tcp_connect_start(to).context("creating TCP socket")? {
                Ok(fd) => socks.push(fd),
                Err(e) => return Ok(net_error(e)),
            }
        }
        let next = if socks.len() == 1 {
            second_at.min(deadline)
        } else {
            deadline
        };
        let fds: Vec<RawFd> = socks.iter().map(|s| s.as_raw_fd()).collect();
        let revents = sock::poll(&fds, libc::POLLOUT, next.saturating_duration_since(now))?;
        for (fd, ev) in fds.iter().zip(revents) {
            if ev == 0 {
                continue;
            }
            return Ok(match sock::so_error(*fd) {
                0 => Outcome::Reached,
                e => net_error(std::io::Error::from_raw_os_error(e)),
            });
        }
    }
}

fn udp(to: SocketAddr, timeout: Duration) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let local: SocketAddr = match to {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let s = bind_udp_source(local, to)?;
    if let Err(e) = s.connect(to) {
        return Ok(net_error(e));
    }
    let token = random_u64().to_be_bytes();
    let mut buf = [0u8; 64];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Outcome::Timeout);
        }
        if let Err(e) = s.send(&token) {
            return Ok(net_error(e));
        }
        let wait = RESEND_EVERY
            .min(deadline - now)
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(wait))?;
        let round_end = Instant::now() + wait;
        while Instant::now() < round_end {
            match s.recv(&mut buf) {
                Ok(n) if buf[..n] == token => return Ok(Outcome::Reached),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Ok(net_error(e)),
            }
        }
    }
}

/// A source port for an SCTP flow that no earlier probe used (see [`next_sctp_port`]).
pub fn sctp_source_port() -> u16 {
    next_sctp_port()
}

/// Per-destination source-port counters for UDP probes.
static UDP_PORTS: OnceLock<Mutex<HashMap<SocketAddr, usize>>> = OnceLock::new();

/// Binds a UDP probe socket to a source port that no earlier probe to `to` used (round-robin
/// over 28,000 ports per destination), so a probe never reuses the 5-tuple of an earlier one
/// whose conntrack entry (established if it was answered) may outlive a ruleset change.
/// Falls back to a kernel-chosen port if every tried port is busy.
fn bind_udp_source(local: SocketAddr, to: SocketAddr) -> Result<UdpSocket> {
    const LOW: usize = 32768;
    const SPAN: usize = 28000;
    const TRIES: usize = 64;
    let counters = UDP_PORTS.get_or_init(|| Mutex::new(HashMap::new()));
    for _ in 0..TRIES {
        let n = {
            let mut map = counters.lock().unwrap_or_else(|e| e.into_inner());
            let c = map
                .entry(to)
                .or_insert_with(|| random_u64() as usize % SPAN);
            *c = c.wrapping_add(1);
            *c
        };
        let port = (LOW + n % SPAN) as u16;
        match UdpSocket::bind(SocketAddr::new(local.ip(), port)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).context("binding UDP socket"),
        }
    }
    UdpSocket::bind(local).context("binding UDP socket")
}

fn sctp_init(to: SocketAddr, timeout: Duration, checksum: ChecksumMode) -> Result<Outcome> {
    let unspecified: IpAddr = match to {
        SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let fd = sock::raw_sctp(unspecified)
        .context("opening raw SCTP (IP protocol 132) socket; needs root")?;
    sctp_exchange(
        &fd,
        next_sctp_port(),
        random_u32() | 1,
        to,
        timeout,
        checksum,
    )
}

/// Sends the INIT of source port `sport` and initiate tag `tag` from the raw
/// SCTP socket `fd` to `to` until the matching INIT ACK (or ABORT) comes back
/// or `timeout` passes. The same `sport` and `tag` every time make every
/// exchange part of one conntrack flow (established once answered).
pub fn sctp_exchange(
    fd: &OwnedFd,
    sport: u16,
    tag: u32,
    to: SocketAddr,
    timeout: Duration,
    checksum: ChecksumMode,
) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let init = sctp::build_init(sport, to.port(), tag, random_u32(), checksum);
    let dest = SocketAddr::new(to.ip(), 0);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Outcome::Timeout);
        }
        if let Err(e) = sock::send_to(fd.as_raw_fd(), &init, dest) {
            return Ok(net_error(e));
        }
        let round_end = now + RESEND_EVERY.min(deadline - now);
        loop {
            let now = Instant::now();
            if now >= round_end {
                break;
            }
            sock::poll(&[fd.as_raw_fd()], libc::POLLIN, round_end - now)?;
            while let Some((n, from)) = sock::recv_from(fd.as_raw_fd(), &mut buf)? {
                let (src, packet) = match from {
                    Some(SocketAddr::V4(_)) => match sctp::strip_ipv4(&buf[..n]) {
                        Some((src, rest)) => (IpAddr::V4(src), rest),
                        None => continue,
                    },
                    Some(SocketAddr::V6(a)) => (IpAddr::V6(*a.ip()), &buf[..n]),
                    None => continue,
                };
                let Some(p) = sctp::parse(packet) else {
                    continue;
                };
                // Every raw socket in the namespace sees every SCTP packet: keep only ours.
                if src != to.ip() || p.sport != to.port() || p.dport != sport || p.vtag != tag {
                    continue;
                }
                match p.chunk {
                    sctp::CHUNK_INIT_ACK if p.checksum_ok => return Ok(Outcome::Reached),
                    sctp::CHUNK_ABORT => return Ok(Outcome::Refused),
                    _ => {}
                }
            }
        }
    }
}

/// One probe of a batch: from namespace `netns` to `to` over `proto`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Source namespace.
    pub netns: String,
    /// Destination address and port.
    pub to: SocketAddr,
    /// Transport protocol.
    pub proto: Proto,
}

/// Runs one probe on a fresh thread inside `netns`.
pub fn probe_in(
    netns: &str,
    to: SocketAddr,
    proto: Proto,
    timeout: Duration,
    checksum: ChecksumMode,
) -> Result<Outcome> {
    super::netns::in_netns(netns, || probe_here(to, proto, timeout, checksum))?
}

/// Runs all `jobs` concurrently (at most [`MAX_PARALLEL`] at a time); results keep job order.
/// Fails if the harness itself breaks (cannot enter a namespace, cannot create a socket).
pub fn run_many(jobs: &[Job], timeout: Duration) -> Result<Vec<Outcome>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    raise_fd_limit();
    let mut handles: HashMap<&str, NetnsHandle> = HashMap::new();
    for j in jobs {
        if !handles.contains_key(j.netns.as_str()) {
            handles.insert(&j.netns, NetnsHandle::open(&j.netns)?);
        }
    }
    let results: Vec<OnceLock<Result<Outcome, String>>> =
        jobs.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let workers = jobs.len().min(MAX_PARALLEL);
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..workers {
            std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn_scoped(s, || {
                    let mut current: Option<&str> = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        let r = (|| {
                            if current != Some(job.netns.as_str()) {
                                handles[job.netns.as_str()].enter()?;
                                current = Some(job.netns.as_str());
                            }
                            probe_here(job.to, job.proto, timeout, ChecksumMode::Correct)
                        })();
                        let _ = results[i].set(r.map_err(|e| format!("{e:#}")));
                    }
                })
                .context("spawning probe thread")?;
        }
        Ok(())
    })?;
    results
        .into_iter()
        .zip(jobs)
        .map(|(r, j)| {
            r.into_inner()
                .unwrap_or_else(|| Err("probe thread died".into()))
                .map_err(|e| anyhow!("probe from netns {}: {e}", j.netns))
        })
        .collect()
}

/// Raises the soft descriptor limit to the hard one: a full batch holds thousands of sockets.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
