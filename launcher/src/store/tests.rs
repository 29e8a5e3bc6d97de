//! Store server and client, in one process over loopback.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(20),
        reply_grace: Duration::from_secs(5),
    }
}

fn server(token: &str) -> (StoreServer, String) {
    let s = StoreServer::bind("127.0.0.1:0", token).expect("bind");
    let addr = s.local_addr().to_string();
    (s, addr)
}

fn client(addr: &str, token: &str) -> StoreClient {
    StoreClient::connect(addr, token, opts()).expect("connect")
}

#[test]
fn basic_operations() {
    let (_s, addr) = server("t");
    let mut c = client(&addr, "t");
    assert_eq!(c.try_get("a").expect("try_get"), None);
    c.set("a", b"1").expect("set");
    assert_eq!(c.get("a").expect("get"), b"1");
    assert_eq!(c.try_get("a").expect("try_get"), Some(b"1".to_vec()));
    assert_eq!(c.add("n", 5).expect("add"), 5);
    assert_eq!(c.add("n", -2).expect("add"), 3);
    assert_eq!(c.get("n").expect("get"), b"3");
    // compare_set: wins only when the expectation holds, always returns the stored value.
    assert_eq!(
        c.compare_set("c", None, b"x").expect("cas"),
        Some(b"x".to_vec())
    );
    assert_eq!(
        c.compare_set("c", None, b"y").expect("cas"),
        Some(b"x".to_vec())
    );
    assert_eq!(
        c.compare_set("c", Some(b"x"), b"z").expect("cas"),
        Some(b"z".to_vec())
    );
    assert_eq!(c.compare_set("d", Some(b"x"), b"z").expect("cas"), None);
    assert!(c.delete("a").expect("delete"));
    assert!(!c.delete("a").expect("delete"));
    c.wait(&["n", "c"]).expect("present keys need no waiting");
    // A value that is not an integer cannot be added to; the connection stays usable.
    c.set("s", b"abc").expect("set");
    let err = c.add("s", 1).expect_err("add on text");
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("not a decimal integer"), "{err}");
    assert!(matches!(c.set("", b""), Err(StoreError::InvalidKey { .. })));
    c.ping().expect("still usable");
}

#[test]
fn get_waits_for_a_later_set() {
    let (_s, addr) = server("t");
    let mut reader = client(&addr, "t");
    let writer_addr = addr.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        client(&writer_addr, "t").set("late", b"v").expect("set");
    });
    let start = Instant::now();
    assert_eq!(reader.get("late").expect("get"), b"v");
    assert!(start.elapsed() >= Duration::from_millis(150));
    t.join().expect("writer");
}

#[test]
fn wait_timeout_names_the_missing_keys() {
    let (_s, addr) = server("t");
    let mut c = client(&addr, "t");
    c.set("here", b"").expect("set");
    let start = Instant::now();
    let err = c
        .wait_timeout(&["here", "gone/1", "gone/2"], Duration::from_millis(300))
        .expect_err("must time out");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5));
    match &err {
        StoreError::Timeout { keys, op, .. } => {
            assert_eq!(keys, &["gone/1", "gone/2"]);
            assert_eq!(*op, "wait");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(c.get_timeout("never", Duration::from_millis(50)).is_err());
}

#[test]
fn wrong_token_fails_at_connect_and_names_both_runs() {
    let (_s, addr) = server("runA/0");
    let start = Instant::now();
    let err = StoreClient::connect(&addr, "runB/0", opts()).expect_err("must be refused");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "refusal must be immediate"
    );
    let msg = err.to_string();
    assert!(matches!(err, StoreError::TokenMismatch { .. }), "{msg}");
    assert!(msg.contains("runA/0") && msg.contains("runB/0"), "{msg}");
}

#[test]
fn unreachable_store_fails_after_the_connect_window() {
    // A port that was free a moment ago; nobody listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let o = ClientOptions {
        connect_timeout: Duration::from_millis(400),
        ..opts()
    };
    let start = Instant::now();
    let err = StoreClient::connect(&addr, "t", o).expect_err("nobody listens");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn connect_retries_until_the_store_starts() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        StoreServer::bind(addr, "t").expect("rebind the same port")
    });
    let mut c = client(&addr.to_string(), "t");
    c.set("k", b"v").expect("set");
    let server = t.join().expect("server thread");
    assert_eq!(server.len(), 1);
}

#[test]
fn barrier_is_reusable_and_names_missing_ranks() {
    let (_s, addr) = server("t");
    let handles: Vec<_> = (0..3u32)
        .map(|rank| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut c = client(&addr, "t");
                for round in 0..3 {
                    c.barrier("step", rank, 3).expect("barrier");
                    c.add(&format!("round{round}"), 1).expect("add");
                }
                // After the third barrier every rank has counted rounds 0 and 1.
                let n = c.get("round1").expect("get");
                assert!(n == b"3" || n == b"2" || n == b"1", "{n:?}");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("rank thread");
    }
    let mut c = client(&addr, "t");
    assert_eq!(c.get("round0").expect("get"), b"3");
    let err = c
        .barrier_timeout("lonely", 1, 3, Duration::from_millis(200))
        .expect_err("nobody else comes");
    match &err {
        StoreError::BarrierTimeout {
            arrived, missing, ..
        } => {
            assert_eq!(arrived, &[1]);
            assert_eq!(missing, &[0, 2]);
        }
        other => panic!("expected a barrier timeout, got {other}"),
    }
    assert!(err.to_string().contains("missing rank(s) [0, 2]"), "{err}");
    // The timed-out rank left the barrier: it can enter again, and a world-size mismatch or a
    // rank outside the world is refused.
    assert!(c
        .barrier_timeout("lonely", 1, 3, Duration::from_millis(10))
        .is_err());
    let err = c.barrier("odd", 3, 3).expect_err("rank outside the world");
    assert!(err.to_string().contains("outside world size 3"), "{err}");
}

#[test]
fn barrier_world_mismatch_and_duplicate_rank_are_refused() {
    let (_s, addr) = server("t");
    let a_addr = addr.clone();
    let waiter = thread::spawn(move || {
        client(&a_addr, "t").barrier_timeout("b", 0, 2, Duration::from_millis(1500))
    });
    thread::sleep(Duration::from_millis(200));
    let mut c = client(&addr, "t");
    let err = c.barrier("b", 1, 3).expect_err("world mismatch");
    assert!(err.to_string().contains("expects world size 3"), "{err}");
    let err = c.barrier("b", 0, 2).expect_err("rank 0 is already waiting");
    assert!(err.to_string().contains("entered twice"), "{err}");
    c.barrier("b", 1, 2).expect("the right rank completes it");
    waiter.join().expect("thread").expect("rank 0 released");
}

#[test]
fn reset_starts_a_new_attempt() {
    let (s, addr) = server(&attempt_token("run", 0));
    let mut old = client(&addr, "run/0");
    old.set("peer/0", b"x").expect("set");
    let blocked_addr = addr.clone();
    let blocked = thread::spawn(move || client(&blocked_addr, "run/0").get("never"));
    thread::sleep(Duration::from_millis(200));
    s.reset(&attempt_token("run", 1));
    let start = Instant::now();
    let err = blocked
        .join()
        .expect("thread")
        .expect_err("reset interrupts");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            err,
            StoreError::Refused { .. } | StoreError::Disconnected { .. }
        ),
        "{err}"
    );
    assert!(s.is_empty(), "the old attempt's keys are dropped");
    let err = StoreClient::connect(&addr, "run/0", opts()).expect_err("old token");
    assert!(err.to_string().contains("run/1"), "{err}");
    let mut new = client(&addr, "run/1");
    assert_eq!(new.try_get("peer/0").expect("try_get"), None);
}

#[test]
fn dying_server_fails_blocked_clients_quickly() {
    let (s, addr) = server("t");
    let mut c = client(&addr, "t");
    let t = thread::spawn(move || c.get("never"));
    thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    s.shutdown();
    let err = t.join().expect("thread").expect_err("server gone");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            err,
            StoreError::Refused { .. } | StoreError::Disconnected { .. }
        ),
        "{err}"
    );
    // A request on a dead connection is an error, not a hang.
    let err = StoreClient::connect(
        &addr,
        "t",
        ClientOptions {
            connect_timeout: Duration::from_millis(200),
            ..opts()
        },
    )
    .expect_err("nobody serves");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
}

#[test]
fn a_stranger_speaking_another_protocol_is_refused() {
    use std::io::{Read, Write};
    let (_s, addr) = server("t");
    let mut raw = std::net::TcpStream::connect(&addr).expect("connect");
    let body = b"GET / HTTP/1.1\r\n";
    raw.write_all(&(body.len() as u32).to_le_bytes())
        .and_then(|()| raw.write_all(body))
        .expect("write");
    let mut answer = Vec::new();
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    raw.read_to_end(&mut answer)
        .expect("server answers and closes");
    let resp = protocol::decode_response(&answer[4..]).expect("a refusal");
    assert!(matches!(
        resp,
        protocol::Response::Refused(protocol::Refusal::BadRequest, _)
    ));
    // The store keeps serving others.
    client(&addr, "t").ping().expect("ping");
}
