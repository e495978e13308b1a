//! Long-lived TCP connections for testing what happens to established flows: an echo server in
//! a namespace and a client connection opened from another namespace, kept open across ruleset
//! changes.
//!
//! A socket belongs to the namespace it was created in, so both are created on a thread inside
//! their namespace and then used from any thread.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::netns;
use super::sock;

/// How often server threads look at their stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A TCP echo server on one port of every global address of a namespace; stops on drop.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts listening in `netns` on `port` (every global address) and echoes every byte of
    /// every accepted connection back until the peer closes it.
    pub fn start(netns: &str, port: u16) -> Result<EchoServer> {
        let listeners = netns::in_netns(netns, || -> Result<Vec<TcpListener>> {
            let mut out = Vec::new();
            for ip in sock::local_addresses()? {
                let l = TcpListener::bind(SocketAddr::new(ip, port))
                    .with_context(|| format!("binding tcp {ip}:{port}"))?;
                l.set_nonblocking(true)?;
                out.push(l);
            }
            Ok(out)
        })??;
        ensure!(!listeners.is_empty(), "netns {netns} has no global address");
        let stop = Arc::new(AtomicBool::new(false));
        let threads = listeners
            .into_iter()
            .map(|l| {
                let stop = stop.clone();
                std::thread::spawn(move || accept_loop(l, &stop))
            })
            .collect();
        Ok(EchoServer { stop, threads })
    }
}

fn accept_loop(listener: TcpListener, stop: &Arc<AtomicBool>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let stop = stop.clone();
                conns.push(std::thread::spawn(move || echo_loop(stream, &stop)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(STOP_POLL),
            Err(_) => break,
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn echo_loop(mut stream: TcpStream, stop: &AtomicBool) {
    if stream.set_read_timeout(Some(STOP_POLL)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A client TCP connection created inside a namespace and kept open.
pub struct HeldConn {
    stream: TcpStream,
}

impl HeldConn {
    /// Connects from `netns` to `to` within `timeout`. The outer error is the harness failing
    /// (cannot enter the namespace); the inner one is the network's answer (timeout, refused).
    pub fn open(
        netns: &str,
        to: SocketAddr,
        timeout: Duration,
    ) -> Result<std::io::Result<HeldConn>> {
        netns::in_netns(netns, || {
            TcpStream::connect_timeout(&to, timeout).map(|stream| HeldConn { stream })
        })
    }

    /// Sends `data` and waits (up to two seconds) for the same bytes to come back.
    pub fn echo(&mut self, data: &[u8]) -> Result<()> {
        self.stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        self.stream.write_all(data).context("sending")?;
        let mut back = vec![0u8; data.len()];
        self.stream
            .read_exact(&mut back)
            .context("waiting for the echo")?;
        if back != data {
            bail!("echo differs: sent {data:?}, got {back:?}");
        }
        Ok(())
    }
}

/// A UDP flow held open: one socket created in a namespace, connected to a UDP echo server
/// (the test kit's [`crate::Server`]), so every exchange uses the same 5-tuple and conntrack
/// entry.
pub struct HeldUdp {
    sock: std::net::UdpSocket,
}

impl HeldUdp {
    /// A socket in `netns` connected to `to` (nothing is sent yet).
    pub fn open(netns: &str, to: SocketAddr) -> Result<HeldUdp> {
        netns::in_netns(netns, || -> Result<HeldUdp> {
            let local: SocketAddr = match to {
                SocketAddr::V4(_) => "0.0.0.0:0".parse()?,
                SocketAddr::V6(_) => "[::]:0".parse()?,
            };
            let sock = std::net::UdpSocket::bind(local).context("binding UDP")?;
            sock.connect(to).context("connecting UDP")?;
            Ok(HeldUdp { sock })
        })?
    }

    /// Sends a token (again every 200 ms) until it comes back or `timeout` passes.
    pub fn echo(&self, timeout: Duration) -> Result<()> {
        let token = super::probe::random_u64().to_be_bytes();
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = [0u8; 64];
        self.sock
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        while std::time::Instant::now() < deadline {
            // A send refused by an earlier ICMP error is only a lost round.
            let _ = self.sock.send(&token);
            match self.sock.recv(&mut buf) {
                Ok(n) if buf[..n] == token => return Ok(()),
                _ => {}
            }
        }
        bail!("no UDP echo within {timeout:?}")
    }
}

/// An SCTP "association" held open: a raw socket in a namespace sending the same INIT (same
/// ports and initiate tag) to a responder that answers INIT ACK, so every exchange belongs to
/// one conntrack flow. Conntrack forgets an SCTP flow in COOKIE WAIT after 3 s: exchange more
/// often than that to keep it.
pub struct HeldSctp {
    fd: std::os::fd::OwnedFd,
    sport: u16,
    tag: u32,
    to: SocketAddr,
}

impl HeldSctp {
    /// A raw SCTP socket in `netns` for a flow to `to` (nothing is sent yet).
    pub fn open(netns: &str, to: SocketAddr) -> Result<HeldSctp> {
        let unspecified = match to {
            SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let fd = netns::in_netns(netns, || sock::raw_sctp(unspecified))?
            .context("opening a raw SCTP socket (needs root)")?;
        Ok(HeldSctp {
            fd,
            sport: super::probe::sctp_source_port(),
            tag: super::probe::random_u32() | 1,
            to,
        })
    }

    /// One INIT / INIT ACK exchange within `timeout`.
    pub fn exchange(&self, timeout: Duration) -> Result<()> {
        let out = super::probe::sctp_exchange(
            &self.fd,
            self.sport,
            self.tag,
            self.to,
            timeout,
            super::sctp::ChecksumMode::Correct,
        )?;
        ensure!(out.reached(), "SCTP INIT to {} answered {out:?}", self.to);
        Ok(())
    }
}
