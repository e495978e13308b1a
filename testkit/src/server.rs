//! In-process responders living in a network namespace: TCP accept, UDP echo, SCTP INIT-ACK.
//!
//! One thread per namespace enters it with setns; the sockets it creates stay in that namespace.
//! Every socket is bound to one local address so replies leave from the address the request was
//! sent to, even in a node namespace with several addresses.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::netns::NetnsHandle;
use super::sctp;
use super::sock;

/// How often the server loop looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Sctp(OwnedFd),
}

impl Sock {
    fn fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Udp(s) => s.as_raw_fd(),
            Sock::Sctp(s) => s.as_raw_fd(),
        }
    }
}

/// TCP, UDP and SCTP responders on a set of ports inside one namespace; stops on drop.
pub struct Server {
    netns: String,
    addrs: Vec<IpAddr>,
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts responders on `ports` for every global address currently in `netns`; returns once
    /// all sockets are bound.
    pub fn start(netns: &str, ports: &[u16]) -> Result<Server> {
        let handle = NetnsHandle::open(netns)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Result<Vec<IpAddr>, String>>();
        let ports_owned = ports.to_vec();
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("srv-{netns}"))
            .stack_size(256 << 10)
            .spawn(move || {
                let setup = handle
                    .enter()
                    .and_then(|()| bind_all(&ports_owned))
                    .map_err(|e| format!("{e:#}"));
                match setup {
                    Ok((addrs, socks)) => {
                        let _ = tx.send(Ok(addrs));
                        serve(socks, &ports_owned, &stop_flag);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .context("spawning server thread")?;
        let addrs = rx
            .recv()
            .map_err(|_| anyhow!("server thread for netns {netns} died during setup"))?
            .map_err(|e| anyhow!("starting servers in netns {netns}: {e}"))?;
        Ok(Server {
            netns: netns.to_owned(),
            addrs,
            ports: ports.to_vec(),
            stop,
            thread: Some(thread),
        })
    }

    /// Namespace the server lives in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Addresses the server bound to.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// Ports served for each protocol.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Asks the server thread to stop without waiting for it (see [`Server::join`]).
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the server and waits until its sockets are closed.
    pub fn join(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_all(ports: &[u16]) -> Result<(Vec<IpAddr>, Vec<Sock>)> {
    let addrs = sock::local_addresses().context("listing local addresses")?;
    let mut socks = Vec::new();
    for &ip in &addrs {
        for &port in ports {
            let sa = SocketAddr::new(ip, port);
            let tcp = TcpListener::bind(sa).with_context(|| format!("binding tcp {sa}"))?;
            tcp.set_nonblocking(true)?;
            socks.push(Sock::Tcp(tcp));
            let udp = UdpSocket::bind(sa).with_context(|| format!("binding udp {sa}"))?;
            udp.set_nonblocking(true)?;
            socks.push(Sock::Udp(udp));
        }
        let raw = sock::raw_sctp(ip).with_context(|| {
            format!("opening raw SCTP (IP protocol 132) socket on {ip}; needs root")
        })?;
        socks.push(Sock::Sctp(raw));
    }
    Ok((addrs, socks))
}

fn serve(socks: Vec<Sock>, ports: &[u16], stop: &AtomicBool) {
    let fds: Vec<RawFd> = socks.iter().map(Sock::fd).collect();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok(revents) = sock::poll(&fds, libc::POLLIN, STOP_POLL) else {
            break;
        };
        for (s, ev) in socks.iter().zip(revents) {
            if ev == 0 {
                continue;
            }
            match s {
                Sock::Tcp(l) => loop {
                    match l.accept() {
                        Ok((stream, _)) => drop(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                },
                Sock::Udp(u) => {
                    while let Ok((n, from)) = u.recv_from(&mut buf) {
                        let _ = u.send_to(&buf[..n], from);
                    }
                }
                Sock::Sctp(fd) => {
                    while let Ok(Some((n, from))) = sock::recv_from(fd.as_raw_fd(), &mut buf) {
                        answer_sctp(fd.as_raw_fd(), &buf[..n], from, ports);
                    }
                }
            }
        }
    }
}

/// Answers an INIT for a served port with an INIT ACK, like a listening SCTP socket would.
fn answer_sctp(fd: RawFd, datagram: &[u8], from: Option<SocketAddr>, ports: &[u16]) {
    // Raw IPv4 sockets deliver the IP header, raw IPv6 sockets do not.
    let (src, packet) = match from {
        Some(SocketAddr::V4(_)) => match sctp::strip_ipv4(datagram) {
            Some((src, rest)) => (IpAddr::V4(src), rest),
            None => return,
        },
        Some(SocketAddr::V6(a)) => (IpAddr::V6(*a.ip()), datagram),
        None => return,
    };
    let Some(p) = sctp::parse(packet) else {
        return;
    };
    // A real stack silently discards bad checksums and non-zero tags on INIT.
    if p.chunk != sctp::CHUNK_INIT || !p.checksum_ok || p.vtag != 0 || !ports.contains(&p.dport) {
        return;
    }
    let Some(peer_tag) = p.initiate_tag else {
        return;
    };
    let own_tag = super::probe::random_u32() | 1;
    let reply = sctp::build_init_ack(
        p.dport,
        p.sport,
        peer_tag,
        own_tag,
        super::probe::random_u32(),
    );
    let to = match (src, from) {
        (IpAddr::V6(ip), Some(SocketAddr::V6(a))) => {
            SocketAddr::V6(std::net::SocketAddrV6::new(ip, 0, 0, a.scope_id()))
        }
        (ip, _) => SocketAddr::new(ip, 0),
    };
    let _ = sock::send_to(fd, &reply, to);
}
