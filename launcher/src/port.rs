//! MASTER_PORT: the port of the rendezvous store that the node-0 launcher hosts.
//!
//! The launcher binds the store's socket itself, before any worker starts, and serves the
//! store on it for the whole launch. With `--master-port` omitted (or 0) the kernel picks a
//! free port, the fix torchrun users reach for with `--rdzv-endpoint=localhost:0` after
//! "errno 98 – Address already in use" (pytorch#126510). Since the socket is never released,
//! there is no window in which another program (or a second launcher) could take the port:
//! two launchers started at once always get different ports, and a busy fixed port is an
//! immediate, clear error instead of a worker failing to bind much later.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

/// Binds the store's listening socket: `127.0.0.1` for a single-node launch whose workers
/// reach the store over loopback, all interfaces (`0.0.0.0`) when workers on other hosts
/// must reach it (`public`). `port` `None` or 0 lets the kernel pick a free port.
pub fn bind_store(port: Option<u16>, public: bool) -> io::Result<TcpListener> {
    let ip = if public {
        Ipv4Addr::UNSPECIFIED
    } else {
        Ipv4Addr::LOCALHOST
    };
    TcpListener::bind(SocketAddrV4::new(ip, port.unwrap_or(0)))
}

/// Whether `addr` (MASTER_ADDR) names this host's loopback interface, so that a store bound to
/// 127.0.0.1 is reachable under it.
pub fn is_loopback(addr: &str) -> bool {
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_port_is_held_while_bound() {
        let l = bind_store(None, false).expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert_ne!(port, 0);
        let err = bind_store(Some(port), false).expect_err("the port must stay taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(l);
        bind_store(Some(port), false).expect("free again after the store closes");
    }

    #[test]
    fn concurrent_bindings_differ() {
        let a = bind_store(Some(0), false).expect("bind a");
        let b = bind_store(None, false).expect("bind b");
        assert_ne!(
            a.local_addr().expect("a").port(),
            b.local_addr().expect("b").port()
        );
    }

    #[test]
    fn public_binding_listens_on_all_interfaces() {
        let l = bind_store(None, true).expect("bind");
        assert!(l.local_addr().expect("addr").ip().is_unspecified());
    }

    #[test]
    fn loopback_names() {
        for a in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"] {
            assert!(is_loopback(a), "{a}");
        }
        for a in ["10.0.0.1", "node01", "0.0.0.0"] {
            assert!(!is_loopback(a), "{a}");
        }
    }
}
