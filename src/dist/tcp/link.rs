//! The two persistent connections of a ring member and the one primitive the algorithms need:
//! send bytes to the next rank while receiving bytes from the previous one, at the same time.
//!
//! Sending and receiving must overlap: if every rank first sent a large block and only then
//! received, all of them would block once the socket buffers are full. Both sockets are
//! non-blocking and driven by one `poll(2)` loop, which also gives the failure behaviour we
//! want without threads or heartbeats:
//! - a peer that exits or crashes closes its sockets, so `recv` sees EOF (or `send` sees
//!   EPIPE/ECONNRESET) at once and the operation fails naming that peer;
//! - the connection to the next rank carries no data towards us, so it becoming readable (EOF)
//!   while we still have to send means that peer is gone. A connection is watched only while
//!   the current step uses it, because a neighbour that has completed the operation may exit
//!   normally; a dead peer is still noticed at once, as every step of every rank receives from
//!   its previous rank, and each rank that fails shuts its connections, failing its neighbours
//!   in turn around the ring;
//! - a peer that is alive but never participates hits the operation's deadline.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::dist::collective::{CollectiveError, Op};

/// The connections of one rank in the ring.
pub(crate) struct Links {
    /// This rank.
    pub rank: usize,
    /// Rank we send to.
    pub next: usize,
    /// Rank we receive from.
    pub prev: usize,
    to_next: TcpStream,
    from_prev: TcpStream,
}

/// What to move in one exchange: byte ranges to send to `next` (in order) and buffers to fill
/// from `prev` (in order).
pub(crate) struct Transfer<'s, 'r> {
    /// Sent back to back.
    pub send: Vec<&'s [u8]>,
    /// Filled back to back.
    pub recv: Vec<&'r mut [u8]>,
}

impl Links {
    /// Wraps the two connected sockets (switched to non-blocking mode here).
    pub fn new(
        rank: usize,
        next: usize,
        prev: usize,
        to_next: TcpStream,
        from_prev: TcpStream,
    ) -> io::Result<Self> {
        for s in [&to_next, &from_prev] {
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
        }
        Ok(Self {
            rank,
            next,
            prev,
            to_next,
            from_prev,
        })
    }

    /// Closes both connections so that the neighbours' pending operations fail at once.
    pub fn shut_down(&self) {
        let _ = self.to_next.shutdown(Shutdown::Both);
        let _ = self.from_prev.shutdown(Shutdown::Both);
    }

    /// Sends all of `t.send` to `next` while filling all of `t.recv` from `prev`; fails on a
    /// closed connection at once, and when `deadline` passes without completion.
    pub fn exchange(
        &self,
        mut t: Transfer<'_, '_>,
        op: Op,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), CollectiveError> {
        let mut send_part = 0;
        let mut send_off = 0;
        let mut recv_part = 0;
        let mut recv_off = 0;
        let out_fd = self.to_next.as_raw_fd();
        let in_fd = self.from_prev.as_raw_fd();
        loop {
            // Skip finished (or empty) parts.
            while send_part < t.send.len() && send_off == t.send[send_part].len() {
                send_part += 1;
                send_off = 0;
            }
            while recv_part < t.recv.len() && recv_off == t.recv[recv_part].len() {
                recv_part += 1;
                recv_off = 0;
            }
            let sending = send_part < t.send.len();
            let receiving = recv_part < t.recv.len();
            if !sending && !receiving {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                let peer = if receiving { self.prev } else { self.next };
                return Err(self.timeout(op, peer, timeout));
            }
            let wait_ms = (deadline - now).as_millis().clamp(1, 60_000) as libc::c_int;
            // The next rank never sends to us: readable means EOF or a broken peer. A
            // connection this step does not use is left out (fd −1): a neighbour that already
            // completed the operation may legitimately have exited.
            let mut fds = [
                libc::pollfd {
                    fd: if sending { out_fd } else { -1 },
                    events: libc::POLLOUT | libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if receiving { in_fd } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of 2 pollfd structs for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait_ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.io(op, self.prev, e));
            }
            if n == 0 {
                continue;
            }
            let out_rev = fds[0].revents;
            if out_rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                return Err(self.next_gone(op));
            }
            if receiving && fds[1].revents != 0 {
                let buf = &mut t.recv[recv_part][recv_off..];
                // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
                let got = unsafe { libc::recv(in_fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if got == 0 {
                    return Err(self.closed(op, self.prev));
                }
                if got < 0 {
                    let e = io::Error::last_os_error();
                    if !retryable(&e) {
                        return Err(self.classify(op, self.prev, e));
                    }
                } else {
                    recv_off += got as usize;
                }
            }
            if sending && out_rev & libc::POLLOUT != 0 {
                let buf = &t.send[send_part][send_off..];
                // SAFETY: `buf` is a valid readable region; MSG_NOSIGNAL turns a closed peer
                // into EPIPE instead of a SIGPIPE that would kill the process.
                let sent = unsafe {
                    libc::send(out_fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
                };
                if sent < 0 {
                    let e = io::Error::last_os_error();
                    if !retryable(&e) {
                        return Err(self.classify(op, self.next, e));
                    }
                } else {
                    send_off += sent as usize;
                }
            }
        }
    }

    /// The connection to `next` became readable: find out whether it closed.
    fn next_gone(&self, op: Op) -> CollectiveError {
        let mut byte = [0u8; 1];
        // SAFETY: reads at most one byte into a local buffer.
        let got = unsafe { libc::recv(self.to_next.as_raw_fd(), byte.as_mut_ptr().cast(), 1, 0) };
        if got > 0 {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected data on the sending connection (protocol violation)",
            );
            return self.io(op, self.next, e);
        }
        if got < 0 {
            let e = io::Error::last_os_error();
            if !retryable(&e) {
                return self.classify(op, self.next, e);
            }
        }
        self.closed(op, self.next)
    }

    fn classify(&self, op: Op, peer: usize, e: io::Error) -> CollectiveError {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => self.closed(op, peer),
            _ => self.io(op, peer, e),
        }
    }

    fn closed(&self, op: Op, peer: usize) -> CollectiveError {
        CollectiveError::PeerClosed {
            rank: self.rank,
            op,
            peer,
        }
    }

    fn io(&self, op: Op, peer: usize, source: io::Error) -> CollectiveError {
        CollectiveError::Io {
            rank: self.rank,
            op,
            peer,
            source,
        }
    }

    fn timeout(&self, op: Op, peer: usize, timeout: Duration) -> CollectiveError {
        CollectiveError::Timeout {
            rank: self.rank,
            op,
            peer,
            timeout,
        }
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
