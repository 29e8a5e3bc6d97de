//! Round trips and malformed messages of the store protocol.

use super::*;

fn all_requests() -> Vec<Request> {
    let t = Duration::from_millis(1500);
    vec![
        Request::Ping,
        Request::Set {
            key: "k".into(),
            value: vec![0, 1, 255],
        },
        Request::Get {
            key: "peer/3".into(),
            timeout: t,
        },
        Request::Wait {
            keys: vec!["a".into(), "b".into()],
            timeout: t,
        },
        Request::Add {
            key: "n".into(),
            delta: -7,
        },
        Request::CompareSet {
            key: "c".into(),
            expected: None,
            desired: b"x".to_vec(),
        },
        Request::CompareSet {
            key: "c".into(),
            expected: Some(Vec::new()),
            desired: Vec::new(),
        },
        Request::Delete { key: "d".into() },
        Request::Barrier {
            name: "start".into(),
            rank: 2,
            world: 3,
            timeout: t,
        },
    ]
}

#[test]
fn requests_round_trip() {
    for req in all_requests() {
        let body = encode_request("run/0", &req);
        let (token, back) = decode_request(&body).expect("decode");
        assert_eq!(token, "run/0");
        assert_eq!(back, req);
    }
}

#[test]
fn responses_round_trip() {
    let all = [
        Response::Ok,
        Response::Value(b"v".to_vec()),
        Response::Int(-3),
        Response::Missing(vec!["x".into()]),
        Response::BarrierTimeout {
            arrived: vec![0, 2],
            world: 3,
        },
        Response::Refused(Refusal::TokenMismatch, "other run".into()),
    ];
    for resp in all {
        assert_eq!(
            decode_response(&encode_response(&resp)).expect("decode"),
            resp
        );
    }
}

#[test]
fn bad_messages_are_named() {
    let err = decode_request(b"GET / HTTP/1.1\r\n").expect_err("not ours");
    assert!(err.0.contains("not an slt store request"), "{err}");
    let mut body = encode_request("t", &Request::Ping);
    body[4] = 99;
    let err = decode_request(&body).expect_err("version");
    assert!(err.0.contains("version 99"), "{err}");
    let body = encode_request("t", &Request::Delete { key: "k".into() });
    let err = decode_request(&body[..body.len() - 1]).expect_err("truncated");
    assert!(err.0.contains("truncated"), "{err}");
    let mut body = encode_request("t", &Request::Ping);
    body.push(0);
    assert!(decode_request(&body)
        .expect_err("trailing")
        .0
        .contains("trailing"));
    let body = encode_request("t", &Request::Delete { key: String::new() });
    assert!(decode_request(&body)
        .expect_err("empty key")
        .0
        .contains("key of 0"));
}

#[test]
fn frames_round_trip_and_reject_oversize() {
    let mut buf = Vec::new();
    write_frame(&mut buf, b"hello").expect("write");
    write_frame(&mut buf, b"").expect("write");
    let mut r = &buf[..];
    assert_eq!(read_frame(&mut r).expect("read"), Some(b"hello".to_vec()));
    assert_eq!(read_frame(&mut r).expect("read"), Some(Vec::new()));
    assert_eq!(read_frame(&mut r).expect("eof"), None);
    let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
    let err = read_frame(&mut &huge[..]).expect_err("oversize");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let err = read_frame(&mut &[1u8, 0][..]).expect_err("short length");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}
