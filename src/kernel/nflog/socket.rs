//! The netlink socket under the NFLOG reader: thin, safe wrappers around the
//! few libc calls it needs. Everything else (messages, parsing) is safe code
//! in the sibling modules.
#![allow(unsafe_code)] // raw netlink syscalls through libc: the only unsafe code in nftpol.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `NETLINK_NETFILTER` from `linux/netlink.h`.
const NETLINK_NETFILTER: i32 = 12;

/// A raw `NETLINK_NETFILTER` socket.
#[derive(Debug)]
pub(super) struct Socket {
    fd: OwnedFd,
}

/// A netlink address: port 0 is the kernel; binding to it lets the kernel
/// pick our port id.
fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: a zeroed sockaddr_nl is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Socket {
    /// A new socket in the calling thread's network namespace.
    pub(super) fn open() -> io::Result<Socket> {
        // SAFETY: a plain syscall; the returned descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        check(fd)?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Socket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Binds to a port id the kernel picks.
    pub(super) fn bind(&self) -> io::Result<()> {
        let addr = kernel_addr();
        // SAFETY: pointer and length describe `addr`.
        check(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })
    }

    /// Sets an integer or struct socket option at level `SOL_SOCKET`.
    fn set_option<T>(&self, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: pointer and length describe `value`.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        })
    }

    /// Asks for a receive buffer of `bytes`.
    pub(super) fn set_receive_buffer(&self, bytes: libc::c_int) -> io::Result<()> {
        self.set_option(libc::SO_RCVBUF, &bytes)
    }

    /// Makes [`Socket::recv`] give up after `timeout` (`None`: never).
    pub(super) fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let tv = match timeout {
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            Some(d) => libc::timeval {
                tv_sec: d.as_secs() as libc::time_t,
                // At least 1 µs: zero would mean "forever".
                tv_usec: libc::suseconds_t::from(d.subsec_micros().max(u32::from(d.is_zero()))),
            },
        };
        self.set_option(libc::SO_RCVTIMEO, &tv)
    }

    /// Sends one datagram to the kernel.
    pub(super) fn send_to_kernel(&self, m: &[u8]) -> io::Result<()> {
        let to = kernel_addr();
        // SAFETY: buffers and lengths describe `m` and `to`.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                m.as_ptr().cast(),
                m.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into `buf`; its length.
    pub(super) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}
