//! UDP floods and counting sinks in network namespaces, for tests that count how many
//! datagrams of a denied flow get through while the table changes (the new-pod window, a
//! structural change committing).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netns;

/// Datagrams received, by source address (IPv4 ones unmapped).
pub type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A dual-stack UDP socket bound to `[::]:port` in `ns`; a thread counts datagrams per source
/// address until `stop`.
pub fn sink(ns: &str, port: u16, stop: Arc<AtomicBool>) -> Counts {
    let s = netns::in_netns(ns, || UdpSocket::bind(("::", port)))
        .unwrap()
        .expect("binding the sink");
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let counts: Counts = Arc::default();
    let c = counts.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                *c.lock()
                    .unwrap()
                    .entry(from.ip().to_canonical())
                    .or_default() += 1;
            }
        }
    });
    counts
}

/// Sends one datagram to each of `to` from namespace `ns`, over and over until `stop`, with
/// `pause` between rounds (none: as fast as it goes); returns how many datagrams left (a send
/// error, such as no route yet, sends nothing).
pub fn sender(
    ns: &str,
    to: Vec<SocketAddr>,
    pause: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let socks = netns::in_netns(ns, || {
        [UdpSocket::bind("0.0.0.0:0"), UdpSocket::bind("[::]:0")]
    })
    .unwrap();
    let [v4, v6] = socks.map(|s| s.expect("a sender socket"));
    std::thread::spawn(move || {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            for a in &to {
                let s = if a.is_ipv4() { &v4 } else { &v6 };
                if s.send_to(b"nftpol-test", a).is_ok() {
                    sent += 1;
                }
            }
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
        }
        sent
    })
}
