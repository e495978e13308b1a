//! A TCP relay between network namespaces: a node's agent reaches the API
//! server (which listens on another namespace's loopback) over a link the
//! test built. Everything it opens lives in the namespace of the thread
//! that started it (the listener there; connections to `upstream` too).
//!
//! Counts the connections it accepted and the bytes it carried each way
//! (what a node's agent costs the API server on the wire, TLS included);
//! while [`Relay::cut`] it closes connections at once (a partition). Stops
//! (and cuts its connections) on drop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running relay; see the module docs.
pub struct Relay {
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    /// Bytes relayed client → upstream, upstream → client.
    bytes: Arc<[AtomicU64; 2]>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Copies `from` to `to` until either side closes, counting into `n`.
fn pipe(mut from: TcpStream, mut to: TcpStream, n: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(got) => got,
        };
        if to.write_all(&buf[..got]).is_err() {
            break;
        }
        n.fetch_add(got as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

impl Relay {
    /// Accepts on `listen` and pipes every connection to `upstream`.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let bytes: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let thread = {
            let (stop, cut, accepted, conns, bytes) = (
                stop.clone(),
                cut.clone(),
                accepted.clone(),
                conns.clone(),
                bytes.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    if cut.load(Ordering::Relaxed) {
                        continue;
                    }
                    let _ = client.set_nonblocking(false);
                    // API server down: the client sees its connection closed, like a refusal.
                    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))
                    else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let mut held = conns.lock().unwrap();
                    held.retain(|s| s.peer_addr().is_ok());
                    held.extend(client.try_clone());
                    held.extend(server.try_clone());
                    drop(held);
                    // Cut while connecting: `cut` may have drained before this one was held.
                    if cut.load(Ordering::Relaxed) {
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = server.shutdown(std::net::Shutdown::Both);
                        continue;
                    }
                    let pairs = [
                        (client.try_clone(), server.try_clone(), 0),
                        (server.try_clone(), client.try_clone(), 1),
                    ];
                    for pair in pairs {
                        if let (Ok(from), Ok(to), way) = pair {
                            let bytes = bytes.clone();
                            std::thread::spawn(move || pipe(from, to, &bytes[way]));
                        }
                    }
                }
            })
        };
        Ok(Relay {
            stop,
            cut,
            accepted,
            bytes,
            conns,
            thread: Some(thread),
        })
    }

    /// Connections accepted so far (also those closed at once while cut).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Bytes relayed so far: (client → upstream, upstream → client).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes[0].load(Ordering::Relaxed),
            self.bytes[1].load(Ordering::Relaxed),
        )
    }

    /// Cuts every open connection and closes new ones at once (`true`), or relays again.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
        if cut {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
