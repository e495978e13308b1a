//! A small TCP load tool for the packet-path benchmark: new connections per
//! second, request/response transactions per second on one connection, and
//! bulk throughput of one stream, between two network namespaces.
//!
//! The server echoes every byte it receives, except on a connection whose
//! first byte is [`BULK`], whose bytes it discards. Clients close with
//! `SO_LINGER {on, 0}` (an RST), so neither side keeps sockets in TIME_WAIT
//! and the ephemeral port range never runs dry at tens of thousands of
//! connections per second.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use nftpol_testkit::netns::NetnsHandle;

/// First byte of a bulk-throughput connection.
pub const BULK: u8 = b'B';

/// Echo/discard server on one or more ports inside a namespace; stops on drop.
pub struct LoadServer {
    fds: Vec<i32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _listeners: Vec<Arc<TcpListener>>,
}

fn serve_conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 << 10];
    let mut first = true;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if first && buf[0] == BULK {
                    // Discard everything until the client closes.
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                    return;
                }
                first = false;
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

impl LoadServer {
    /// Listens on `ports` on every address of `netns`, with `workers`
    /// accepting threads per port.
    pub fn start(netns: &str, ports: &[u16], workers: usize) -> Result<LoadServer> {
        let handle = NetnsHandle::open(netns)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ports = ports.to_vec();
        let listeners: Vec<Arc<TcpListener>> = std::thread::scope(|s| {
            s.spawn(|| -> Result<Vec<Arc<TcpListener>>> {
                handle.enter()?;
                ports
                    .iter()
                    .map(|p| {
                        TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], *p)))
                            .map(Arc::new)
                            .with_context(|| format!("binding TCP port {p} in {netns}"))
                    })
                    .collect()
            })
            .join()
            .map_err(|_| anyhow!("server setup thread panicked"))?
        })?;
        let mut threads = Vec::new();
        for l in &listeners {
            for _ in 0..workers {
                let l = l.clone();
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((s, _)) => serve_conn(s),
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => {
                                if stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }));
            }
        }
        Ok(LoadServer {
            fds: listeners.iter().map(|l| l.as_raw_fd()).collect(),
            stop,
            threads,
            _listeners: listeners,
        })
    }
}

impl Drop for LoadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for fd in &self.fds {
            // On Linux, shutting a listening socket down wakes every thread
            // blocked in accept() on it with EINVAL.
            // SAFETY: plain syscall on a descriptor the listener still owns.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn close_with_rst(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a correctly sized linger struct on an owned fd.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// One short connection: connect, 1-byte request, 1-byte response, RST.
fn one_conn(dst: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&dst, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"c")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    close_with_rst(s);
    Ok(())
}

/// Whether a TCP connection (with one echoed byte) from `netns` to `dst`
/// succeeds within `timeout`.
pub fn reachable(netns: &str, dst: SocketAddr, timeout: Duration) -> Result<bool> {
    let handle = NetnsHandle::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<bool> {
            handle.enter()?;
            Ok(one_conn(dst, timeout).is_ok())
        })
        .join()
        .map_err(|_| anyhow!("probe thread panicked"))?
    })
}

/// Opens and closes as many short connections as `threads` clients in
/// `netns` manage in `duration`; returns (connections per second, failures).
pub fn conn_rate(
    netns: &str,
    dst: SocketAddr,
    threads: usize,
    duration: Duration,
) -> Result<(f64, u64)> {
    let handle = NetnsHandle::open(netns)?;
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + duration;
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    handle.enter()?;
                    let (mut ok, mut bad) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match one_conn(dst, Duration::from_secs(1)) {
                            Ok(()) => ok += 1,
                            Err(_) => bad += 1,
                        }
                    }
                    done.fetch_add(ok, Ordering::Relaxed);
                    failed.fetch_add(bad, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| anyhow!("client thread panicked"))??;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    ))
}

/// 1-byte request/response transactions per second on one connection.
pub fn rr_rate(netns: &str, dst: SocketAddr, duration: Duration) -> Result<f64> {
    let handle = NetnsHandle::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<f64> {
            handle.enter()?;
            let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(1))?;
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut b = [0u8; 1];
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < duration {
                c.write_all(b"r")?;
                c.read_exact(&mut b)?;
                n += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            close_with_rst(c);
            Ok(n as f64 / secs)
        })
        .join()
        .map_err(|_| anyhow!("rr thread panicked"))?
    })
}

/// Throughput of one TCP stream in Gbit/s (bytes the sender wrote).
pub fn bulk_gbps(netns: &str, dst: SocketAddr, duration: Duration) -> Result<f64> {
    let handle = NetnsHandle::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<f64> {
            handle.enter()?;
            let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(1))?;
            c.write_all(&[BULK])?;
            let buf = vec![0x5au8; 128 << 10];
            let start = Instant::now();
            let mut bytes = 0u64;
            while start.elapsed() < duration {
                c.write_all(&buf)?;
                bytes += buf.len() as u64;
            }
            let secs = start.elapsed().as_secs_f64();
            close_with_rst(c);
            Ok(bytes as f64 * 8.0 / secs / 1e9)
        })
        .join()
        .map_err(|_| anyhow!("bulk thread panicked"))?
    })
}
