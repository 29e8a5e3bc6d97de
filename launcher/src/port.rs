//! Choosing MASTER_PORT.
//!
//! With `--master-port` omitted (or 0) the launcher asks the kernel for a free port by binding
//! `127.0.0.1:0`, the fix torchrun users reach for with `--rdzv-endpoint=localhost:0` after
//! "errno 98 – Address already in use" (pytorch#126510).
//!
//! There is an unavoidable race: the port is free while *we* hold it, but rank 0 binds it only
//! after we close our socket and the worker starts. Two things keep the window small: the
//! listener stays open until just before the workers are spawned (so two launchers started at
//! the same time cannot be handed the same port), and the kernel picks ephemeral ports at a
//! random offset. The later rendezvous-store issue removes the race entirely: the launcher will
//! serve the store on the socket it bound instead of handing the number on.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

/// A port held open by the launcher until [`PortReservation::release`].
#[derive(Debug)]
pub struct PortReservation {
    listener: TcpListener,
    port: u16,
}

impl PortReservation {
    /// Binds `127.0.0.1:0` and keeps the socket open.
    pub fn reserve() -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        Ok(Self { listener, port })
    }

    /// The reserved port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes the socket so that a worker can bind the port; returns the port number.
    pub fn release(self) -> u16 {
        drop(self.listener);
        self.port
    }
}

/// How MASTER_PORT is obtained for a launch.
#[derive(Debug)]
pub enum MasterPort {
    /// Given by the user with `--master-port N` (N ≠ 0).
    Fixed(u16),
    /// Picked by the launcher; released just before the first spawn.
    Reserved(PortReservation),
}

impl MasterPort {
    /// `Fixed(port)` for a non-zero `--master-port`, else a fresh reservation.
    pub fn from_option(port: Option<u16>) -> io::Result<Self> {
        match port {
            Some(p) if p != 0 => Ok(Self::Fixed(p)),
            _ => PortReservation::reserve().map(Self::Reserved),
        }
    }

    /// The port number workers will be told.
    pub fn port(&self) -> u16 {
        match self {
            Self::Fixed(p) => *p,
            Self::Reserved(r) => r.port(),
        }
    }

    /// For a fixed port: whether something on this host already listens on it (rank 0 would
    /// then fail with "Address already in use" much later). Always `false` for a reservation.
    pub fn fixed_port_in_use(&self) -> bool {
        match self {
            Self::Fixed(p) => {
                let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, *p);
                matches!(TcpListener::bind(addr), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
            }
            Self::Reserved(_) => false,
        }
    }

    /// Releases a reservation (if any) so the port can be bound by a worker; returns the port.
    pub fn release(self) -> u16 {
        match self {
            Self::Fixed(p) => p,
            Self::Reserved(r) => r.release(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_port_is_held_then_freed() {
        let r = PortReservation::reserve().expect("reserve");
        let port = r.port();
        assert_ne!(port, 0);
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        assert_eq!(
            TcpListener::bind(addr).map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::AddrInUse),
            "the port must stay taken while reserved"
        );
        assert_eq!(r.release(), port);
        TcpListener::bind(addr).expect("the port is free after release");
    }

    #[test]
    fn concurrent_reservations_differ() {
        let a = PortReservation::reserve().expect("reserve a");
        let b = PortReservation::reserve().expect("reserve b");
        assert_ne!(a.port(), b.port());
    }

    #[test]
    fn busy_fixed_port_is_detected() {
        let taken = PortReservation::reserve().expect("reserve");
        assert!(MasterPort::Fixed(taken.port()).fixed_port_in_use());
        let port = taken.release();
        assert!(!MasterPort::Fixed(port).fixed_port_in_use());
    }

    #[test]
    fn zero_or_none_means_pick() {
        assert!(matches!(
            MasterPort::from_option(Some(29500)).expect("fixed"),
            MasterPort::Fixed(29500)
        ));
        for opt in [None, Some(0)] {
            let p = MasterPort::from_option(opt).expect("reserve");
            assert!(matches!(p, MasterPort::Reserved(_)));
            assert_ne!(p.port(), 0);
        }
    }
}
