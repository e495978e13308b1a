//! When does the kernel hold a change? A listener on NETLINK_NETFILTER's
//! nftables group (NFNLGRP_NFTABLES, 7), as `nft monitor` is, but with a
//! large forced receive buffer and our own timestamps (FACTS.md: `nft
//! monitor` block-buffers and overruns on big transactions).
//!
//! Every committed transaction in the namespace of the thread that called
//! [`Monitor::start`] is reported as one [`Txn`]: when its last notification
//! (NEWGEN) arrived, whether it replaced a table (NEWTABLE or DELTABLE: a
//! full replacement) and the IPv4 addresses (with the set's name) that lead
//! the keys of the set
//! elements it added and deleted (a key of 4 bytes, or a concatenation that
//! starts with one; IPv6 keys of this project's pods start with `fd00` and
//! never look like the `10.x` addresses the benches look for).

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// One committed nftables transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    /// When its NEWGEN notification was read.
    pub at: Instant,
    /// A table was created or deleted in it (a whole-table replacement).
    pub full: bool,
    /// (IPv4 address in host order, set name) of the added element keys
    /// that start with an address.
    pub added: BTreeSet<(u32, String)>,
    /// The same for deleted elements.
    pub deleted: BTreeSet<(u32, String)>,
}

/// The sets each address was in after each transaction, replayed from
/// `txns` (in order; the first one must be the table's first full load): a
/// full replacement starts from nothing. Per address, the times its
/// membership changed and the new membership.
pub fn timelines(txns: &[Txn]) -> HashMap<u32, Vec<(Instant, BTreeSet<String>)>> {
    let mut now: HashMap<u32, BTreeSet<String>> = HashMap::new();
    let mut out: HashMap<u32, Vec<(Instant, BTreeSet<String>)>> = HashMap::new();
    for t in txns {
        let mut next = if t.full { HashMap::new() } else { now.clone() };
        for (ip, set) in &t.deleted {
            if let Some(v) = next.get_mut(ip) {
                v.remove(set);
            }
        }
        for (ip, set) in &t.added {
            next.entry(*ip).or_default().insert(set.clone());
        }
        next.retain(|_, v| !v.is_empty());
        let ips: BTreeSet<u32> = now.keys().chain(next.keys()).copied().collect();
        for ip in ips {
            if now.get(&ip) != next.get(&ip) {
                let m = next.get(&ip).cloned().unwrap_or_default();
                out.entry(ip).or_default().push((t.at, m));
            }
        }
        now = next;
    }
    out
}

/// The listener; its thread stops when it is dropped.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    txns: Vec<Txn>,
    overruns: usize,
}

const NETLINK_NETFILTER: i32 = 12;
const NFNLGRP_NFTABLES: u32 = 7;
const SUBSYS_NFTABLES: u16 = 10;
const MSG_NEWTABLE: u16 = 0;
const MSG_DELTABLE: u16 = 2;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;
const MSG_NEWGEN: u16 = 15;

fn check(r: i32, what: &str) -> std::io::Result<i32> {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, v: &T, what: &str) -> std::io::Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(r, what).map(drop)
}

fn open() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = check(
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_NETFILTER) },
        "socket",
    )?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let size: i32 = 256 << 20;
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &size,
        "SO_RCVBUFFORCE",
    )?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
    // SAFETY: zeroed sockaddr_nl is valid; the fields are set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = 1 << (NFNLGRP_NFTABLES - 1);
    // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    check(r, "bind")?;
    Ok(owned)
}

/// Netlink attributes of `buf`: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((ty, payload))
    })
}

/// The IPv4 addresses leading the element keys of a SETELEM message body
/// (after the nfgenmsg header).
fn element_ips(body: &[u8], out: &mut BTreeSet<(u32, String)>) {
    // NFTA_SET_ELEM_LIST_SET (2): the set's name; NFTA_SET_ELEM_LIST_ELEMENTS
    // (3) > NFTA_LIST_ELEM (1) > NFTA_SET_ELEM_KEY (1) > NFTA_DATA_VALUE (1).
    let set = attrs(body)
        .find(|(ty, _)| *ty == 2)
        .map(|(_, v)| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        })
        .unwrap_or_default();
    for (ty, list) in attrs(body) {
        if ty != 3 {
            continue;
        }
        for (ty, elem) in attrs(list) {
            if ty != 1 {
                continue;
            }
            for (ty, key) in attrs(elem) {
                if ty != 1 {
                    continue;
                }
                for (ty, value) in attrs(key) {
                    if ty == 1 && value.len() >= 4 && value.len() % 4 == 0 {
                        let ip = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                        out.insert((ip, set.clone()));
                    }
                }
            }
        }
    }
}

fn read_loop(fd: OwnedFd, stop: Arc<AtomicBool>, shared: Arc<Mutex<Shared>>) {
    let mut buf = vec![0u8; 1 << 20];
    let mut cur = Txn {
        at: Instant::now(),
        full: false,
        added: BTreeSet::new(),
        deleted: BTreeSet::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                shared.lock().unwrap().overruns += 1;
            }
            continue;
        }
        let at = Instant::now();
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= 16 {
            let len = u32::from_ne_bytes(msgs[..4].try_into().unwrap()) as usize;
            if len < 16 || len > msgs.len() {
                break;
            }
            let ty = u16::from_ne_bytes([msgs[4], msgs[5]]);
            let body = msgs.get(20..len).unwrap_or(&[]);
            if ty >> 8 == SUBSYS_NFTABLES {
                match ty & 0xff {
                    MSG_NEWTABLE | MSG_DELTABLE => cur.full = true,
                    MSG_NEWSETELEM => element_ips(body, &mut cur.added),
                    MSG_DELSETELEM => element_ips(body, &mut cur.deleted),
                    MSG_NEWGEN => {
                        let done = std::mem::replace(
                            &mut cur,
                            Txn {
                                at,
                                full: false,
                                added: BTreeSet::new(),
                                deleted: BTreeSet::new(),
                            },
                        );
                        shared.lock().unwrap().txns.push(Txn { at, ..done });
                    }
                    _ => {}
                }
            }
            msgs = msgs.get((len + 3) & !3..).unwrap_or(&[]);
        }
    }
}

impl Monitor {
    /// Starts listening in the calling thread's network namespace.
    pub fn start() -> std::io::Result<Monitor> {
        let fd = open()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread = {
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::spawn(move || read_loop(fd, stop, shared))
        };
        Ok(Monitor {
            stop,
            shared,
            thread: Some(thread),
        })
    }

    /// The transactions seen so far and the receive-buffer overruns (a
    /// non-zero count means notifications were lost).
    pub fn snapshot(&self) -> (Vec<Txn>, usize) {
        let s = self.shared.lock().unwrap();
        (s.txns.clone(), s.overruns)
    }

    /// How many transactions were seen so far (no copy, for polling).
    pub fn count(&self) -> usize {
        self.shared.lock().unwrap().txns.len()
    }

    /// When transaction `i` (counting from 0) was committed, once seen.
    pub fn committed(&self, i: usize) -> Option<Instant> {
        self.shared.lock().unwrap().txns.get(i).map(|t| t.at)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU seconds (user + system) of process `pid` and of its waited-for
/// children (fields 14–17 of `/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces; fields restart after its ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // `rest` starts at field 3 (state): utime is field 14, index 11.
    ((f[11] + f[12]) / hz, (f[13] + f[14]) / hz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn nft(script: &str) {
        let mut c = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success(), "{script}");
    }

    /// Needs root (a fresh network namespace).
    #[test]
    fn sees_full_and_element_transactions() {
        crate::netns::in_new_netns(|| {
            let m = Monitor::start().unwrap();
            nft(
                "table inet t { set s { type ipv4_addr; elements = { 10.1.2.3 }; }\n\
                 set c { type ipv4_addr . inet_service; }; }",
            );
            nft(
                "add element inet t s { 10.1.2.4 }; add element inet t c { 10.1.2.5 . 80 }\n\
                 delete element inet t s { 10.1.2.3 }",
            );
            crate::wait_for(
                "two transactions",
                std::time::Duration::from_secs(5),
                || m.snapshot().0.len() >= 2,
            );
            let (t, overruns) = m.snapshot();
            assert_eq!(overruns, 0);
            let ip = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
            let e = |a: &str, s: &str| (ip(a), s.to_string());
            assert!(
                t[0].full && t[0].added.contains(&e("10.1.2.3", "s")),
                "{t:?}"
            );
            assert!(!t[1].full, "{t:?}");
            assert_eq!(t[1].added, [e("10.1.2.4", "s"), e("10.1.2.5", "c")].into());
            assert_eq!(t[1].deleted, [e("10.1.2.3", "s")].into(), "{t:?}");
            let tl = timelines(&t[..2]);
            let sets = |ip_: &str| -> Vec<Vec<String>> {
                tl[&ip(ip_)]
                    .iter()
                    .map(|(_, m)| m.iter().cloned().collect())
                    .collect()
            };
            assert_eq!(sets("10.1.2.3"), [vec!["s".to_string()], vec![]]);
            assert_eq!(sets("10.1.2.5"), [vec!["c".to_string()]]);
        });
    }
}
