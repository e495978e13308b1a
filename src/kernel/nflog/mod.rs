//! A reader for one NFLOG group over netlink (`NETLINK_NETFILTER`,
//! subsystem `NFNL_SUBSYS_ULOG`), with no C library: the packets that
//! `log group N` statements send to user space. The socket is
//! `netlink-sys`'s, the messages `netlink-packet-netfilter`'s; nftpol itself
//! has no `unsafe` code.
//!
//! Protocol (the kernel's `include/uapi/linux/netfilter/nfnetlink_log.h`):
//! every message is a `nlmsghdr`, an `nfgenmsg` (family, version 0, and the
//! group number big-endian in `res_id`) and netlink attributes. We send
//! `NFULNL_MSG_CONFIG` messages to bind the group (`NFULA_CFG_CMD` BIND),
//! ask for the first [`COPY_RANGE`] bytes of each packet (`NFULA_CFG_MODE`,
//! copy mode PACKET: the IP and transport headers, never much payload) and
//! for immediate delivery (`NFULA_CFG_QTHRESH` 1). The kernel then sends one
//! `NFULNL_MSG_PACKET` per logged packet, with `NFULA_PREFIX` (the rule's log
//! prefix, NUL-terminated) and `NFULA_PAYLOAD` (the packet from its network
//! header on).
//!
//! NFLOG is per network namespace: bind from a thread in the namespace whose
//! table logs. A group can be bound by one socket at a time; closing the
//! socket releases it.
//!
//! Parsing is defensive: a short, truncated or unexpected message is skipped
//! (and counted), never a panic ([`parse`]).

mod parse;

use std::io;
use std::time::Duration;

use netlink_packet_netfilter::nflog::{ConfigCmd, ConfigMode, ConfigNla};
use netlink_sys::{Socket, SocketAddr, constants::NETLINK_NETFILTER};
use socket2::SockRef;

pub use crate::core::compile::droplog::{Packet, Transport, protocol_name};
pub use parse::{Batch, parse, parse_ip};
use parse::{ack, config_message};

/// Bytes of each packet copied to user space: enough for an IPv6 header, a
/// few extension headers and the transport ports.
pub const COPY_RANGE: u32 = 256;

/// A socket bound to one NFLOG group.
#[derive(Debug)]
pub struct Reader {
    socket: Socket,
    group: u16,
    seq: u32,
    buf: Vec<u8>,
    /// Times the kernel dropped messages because our socket buffer was full.
    pub overruns: u64,
}

/// Why binding failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A socket call failed.
    #[error("NFLOG group {group}: {what}: {source}")]
    Io {
        /// The group.
        group: u16,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Reader {
    /// Opens a netlink socket in the calling thread's network namespace and
    /// binds NFLOG group `group` (copy mode packet, [`COPY_RANGE`] bytes,
    /// immediate delivery). Fails with EPERM when another socket (ulogd,
    /// another agent) holds the group.
    pub fn bind(group: u16) -> Result<Reader, BindError> {
        let io = |what: &'static str| {
            move |source| BindError::Io {
                group,
                what,
                source,
            }
        };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io("creating netlink socket"))?;
        socket.bind_auto().map_err(io("binding netlink socket"))?;
        // A larger buffer rides out bursts; failure only makes overruns likelier.
        let _ = SockRef::from(&socket).set_recv_buffer_size(1 << 20);
        let mut r = Reader {
            socket,
            group,
            seq: 0,
            buf: vec![0; 1 << 16],
            overruns: 0,
        };
        r.config(ConfigCmd::Bind.into())
            .map_err(io("binding the group"))?;
        r.config(ConfigMode::new_packet(COPY_RANGE).into())
            .map_err(io("setting copy mode"))?;
        r.config(ConfigNla::QThresh(1))
            .map_err(io("setting queue threshold"))?;
        Ok(r)
    }

    /// The bound group.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Sends one config attribute and waits for the kernel's acknowledgement.
    fn config(&mut self, nla: ConfigNla) -> io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        let kernel = SocketAddr::new(0, 0);
        self.socket
            .send_to(&config_message(seq, self.group, nla), &kernel, 0)?;
        loop {
            let n = self.recv_raw()?;
            if let Some(answer) = ack(&self.buf[..n], seq) {
                return answer.map_err(io::Error::from_raw_os_error);
            }
        }
    }

    fn recv_raw(&mut self) -> io::Result<usize> {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The kernel dropped messages for us: count, carry on.
                    Some(libc::ENOBUFS) => self.overruns += 1,
                    _ => return Err(e),
                },
            }
        }
    }

    /// Waits at most `timeout` (`None`: forever) in [`Reader::recv`]; a
    /// timeout then returns an empty batch.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        // At least 1 µs: zero would mean "forever" to the kernel.
        let timeout = timeout.map(|d| d.max(Duration::from_micros(1)));
        SockRef::from(&self.socket).set_read_timeout(timeout)
    }

    /// Waits for the next datagram and parses it. An empty batch after a
    /// timeout (see [`Reader::set_timeout`]).
    pub fn recv(&mut self) -> io::Result<Batch> {
        match self.recv_raw() {
            Ok(n) => Ok(parse(&self.buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(Batch::default())
            }
            Err(e) => Err(e),
        }
    }
}
