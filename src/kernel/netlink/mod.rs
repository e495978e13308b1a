//! Element changes straight to the kernel: one nftables netlink batch per
//! transaction from a socket the agent keeps open, instead of an `nft -f`
//! process per change (issue 14, item 3: a process costs 16–20 ms, most of
//! it starting up; docs/performance.md, "A process per transaction, or one
//! long-lived `nft`").
//!
//! [`NetlinkElements`] is an [`Nft`]: everything but element changes goes to
//! the `nft` binary as before (full replacements, listings for the drift
//! check, the version check); [`Nft::apply_elements`] sends
//! `NFT_MSG_DELSETELEM` / `NFT_MSG_NEWSETELEM` messages between a batch
//! begin and end — one transaction, all of it or nothing, exactly as the
//! same `delete element` / `add element` script through `nft -f` would be
//! (same order, same flags: an add of an element already there is not an
//! error, a delete of one not there is, and aborts the batch). The last
//! message asks for an acknowledgement, and the kernel answers every
//! message it refuses; it processes a batch inside the `send` call, so
//! every reply is queued when it returns, and the transaction counts as
//! applied only when the last message was acknowledged and none refused.
//! Anything else is an error, after which the enforcer replaces the whole
//! table with `nft` (the same fallback as a refused script).
//!
//! The stages of a structural change (`delta::staged`) go the same way when
//! they can ([`Nft::apply_stage`]): the switch, when it refills no chain, is
//! element changes and the generation step; the last stage only deletes
//! (rule flushes, map, set and chain deletions by name); the first stage
//! creates chains with their rules and sets and maps with their elements
//! ([`create`], with the rule expressions of [`expr`]: what `nft -f` sends
//! for the same script, so `nft list` prints it back the same). A switch
//! that refills chains goes through `nft`.
//!
//! A change holding an interval element (not encoded: [`encode`]), a rule
//! shape or comment [`expr`] does not encode, or a batch too large for one
//! send goes through `nft -f` as its script.
//!
//! The socket belongs to the network namespace of the thread that opened
//! it ([`NetlinkElements::open`]): open it in the namespace whose table it
//! changes.

mod create;
pub mod encode;
mod expr;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use netlink_sys::{Socket, SocketAddr, constants::NETLINK_NETFILTER};
use socket2::SockRef;

use super::nft::{ApplyError, Nft, NftCli};
use crate::core::nft::delta::{ElementChange, Stage, StageOps};

/// Element changes over netlink, everything else through [`NftCli`].
#[derive(Debug)]
pub struct NetlinkElements {
    cli: NftCli,
    state: Mutex<State>,
    /// Largest batch one send may carry (the socket's send buffer).
    max_batch: usize,
    /// How the transactions went.
    counts: Transports,
}

/// Counts of the transactions [`NetlinkElements`] was given (element
/// changes and stages; full replacements are not counted), by how they went
/// to the kernel; shared, so the agent reads them for its metrics.
#[derive(Debug, Clone, Default)]
pub struct Transports {
    /// Sent as a netlink batch and acknowledged.
    pub netlink: Arc<AtomicU64>,
    /// Sent as a netlink batch and refused (the caller falls back).
    pub refused: Arc<AtomicU64>,
    /// Sent as an `nft -f` script instead (intervals, batches too large,
    /// stages that create chains).
    pub nft: Arc<AtomicU64>,
}

#[derive(Debug)]
struct State {
    socket: Socket,
    /// Next sequence number.
    seq: u32,
    buf: Vec<u8>,
}

impl NetlinkElements {
    /// Opens a netfilter netlink socket in the calling thread's network
    /// namespace; `cli` does the rest.
    pub fn open(cli: NftCli) -> io::Result<NetlinkElements> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        let sock = SockRef::from(&socket);
        // Larger buffers take larger batches; the kernel may cap them.
        let _ = sock.set_send_buffer_size(1 << 20);
        let _ = sock.set_recv_buffer_size(1 << 20);
        // The kernel refuses a datagram longer than the send buffer minus
        // a little bookkeeping.
        let max_batch = sock.send_buffer_size()?.saturating_sub(1024);
        Ok(NetlinkElements {
            cli,
            state: Mutex::new(State {
                socket,
                seq: std::process::id().wrapping_mul(1 << 16),
                buf: vec![0; 1 << 16],
            }),
            max_batch,
            counts: Transports::default(),
        })
    }

    /// A counter of the batches the kernel acknowledged (changes that went
    /// through `nft` instead are not counted), still readable once the
    /// transport is handed to an enforcer.
    pub fn applied(&self) -> Arc<AtomicU64> {
        self.counts.netlink.clone()
    }

    /// All the counts (see [`Transports`]).
    pub fn transports(&self) -> Transports {
        self.counts.clone()
    }

    /// The largest batch sent over netlink (larger ones go through `nft`).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
}

impl NetlinkElements {
    /// Sends the batch `encode` gives for the next sequence number; when it
    /// gives none (an interval element, nothing to do) or one too large,
    /// runs `script` through `nft` instead.
    fn send_or(
        &self,
        encode: impl FnOnce(u32) -> Option<encode::Batch>,
        script: impl FnOnce() -> String,
    ) -> Result<(), ApplyError> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match encode(st.seq) {
            Some(batch) if batch.bytes.len() <= self.max_batch => {
                st.seq = st.seq.wrapping_add(batch.messages.len() as u32 + 2);
                let sent = st.send(&batch);
                let counter = match &sent {
                    Ok(()) => &self.counts.netlink,
                    Err(_) => &self.counts.refused,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                sent
            }
            _ => {
                drop(st);
                self.counts.nft.fetch_add(1, Ordering::Relaxed);
                self.cli.apply(&script())
            }
        }
    }
}

impl State {
    /// Sends `batch` and checks that the kernel acknowledged its last
    /// message and refused none.
    fn send(&mut self, batch: &encode::Batch) -> Result<(), ApplyError> {
        let io_err = |what: &str, e: io::Error| ApplyError::Rejected {
            stderr: format!("netlink: {what}: {e}"),
        };
        // Replies left over from an earlier batch (say one whose error
        // outgrew the buffer) must not answer for this one.
        while self
            .recv_now()
            .map_err(|e| io_err("receiving", e))?
            .is_some()
        {}
        let kernel = SocketAddr::new(0, 0);
        let sent = self
            .socket
            .send_to(&batch.bytes, &kernel, 0)
            .map_err(|e| io_err("sending the batch", e))?;
        if sent != batch.bytes.len() {
            return Err(io_err(
                "sending the batch",
                io::Error::other(format!("{sent} of {} bytes sent", batch.bytes.len())),
            ));
        }
        // The kernel answers every message it refuses, and acknowledges the
        // last: once that acknowledgement is read, every answer before it
        // has been (they come in the batch's order).
        let mut acked = false;
        let mut refused = Vec::new();
        while !acked {
            let Some(n) = self.recv_now().map_err(|e| io_err("receiving", e))? else {
                break;
            };
            for (seq, code) in encode::replies(&self.buf[..n]) {
                let Some(what) = batch.describe(seq) else {
                    continue;
                };
                if code != 0 {
                    let e = io::Error::from_raw_os_error(-code);
                    refused.push(format!("{what}: {e}"));
                } else if seq == batch.acked() {
                    acked = true;
                }
            }
        }
        if !refused.is_empty() {
            return Err(ApplyError::Rejected {
                stderr: format!(
                    "netlink: the kernel refused the batch (the previous ruleset stays in force): {}",
                    refused.join("; ")
                ),
            });
        }
        if !acked {
            return Err(ApplyError::Rejected {
                stderr: format!(
                    "netlink: the batch of {} messages was not acknowledged",
                    batch.messages.len()
                ),
            });
        }
        Ok(())
    }

    /// One datagram if one is queued (`None`: none is).
    fn recv_now(&mut self) -> io::Result<Option<usize>> {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
                Ok(n) => return Ok(Some(n.min(self.buf.len()))),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Nft for NetlinkElements {
    fn apply(&self, script: &str) -> Result<(), ApplyError> {
        self.cli.apply(script)
    }

    fn apply_elements(&self, change: &ElementChange) -> Result<(), ApplyError> {
        self.send_or(|seq| encode::batch(change, seq), || change.script())
    }

    fn apply_stage(&self, stage: &Stage) -> Result<(), ApplyError> {
        match &stage.ops {
            Some(StageOps::Elements { edits, generation }) => {
                let change = ElementChange {
                    edits,
                    generation: *generation,
                };
                self.send_or(|seq| encode::batch(&change, seq), || stage.script.clone())
            }
            Some(StageOps::Remove(r)) => {
                self.send_or(|seq| encode::removal(r, seq), || stage.script.clone())
            }
            Some(StageOps::Create(c)) => {
                self.send_or(|seq| create::creation(c, seq), || stage.script.clone())
            }
            None => {
                self.counts.nft.fetch_add(1, Ordering::Relaxed);
                self.cli.apply(&stage.script)
            }
        }
    }

    fn check(&self, script: &str) -> Result<(), ApplyError> {
        self.cli.check(script)
    }

    fn list_table(&self) -> Result<String, ApplyError> {
        self.cli.list_table()
    }

    fn version(&self) -> Result<String, ApplyError> {
        self.cli.version()
    }

    fn list_generation(&self) -> Result<String, ApplyError> {
        self.cli.list_generation()
    }

    fn list_names(&self) -> Result<String, ApplyError> {
        self.cli.list_names()
    }
}
