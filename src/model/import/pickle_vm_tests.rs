use super::*;

fn run(bytes: &[u8]) -> Result<Pickle, PickleError> {
    unpickle(bytes, 0)
}

fn root(p: &Pickle) -> &Obj {
    &p.arena[p.root]
}

#[test]
fn protocol2_dict_with_memo_and_list() {
    // {'a': 1, 'b': [2, 3]} as pickle.dumps(..., protocol=2) writes it.
    let bytes =
        b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x02K\x03eu.";
    let p = run(bytes).unwrap();
    assert_eq!(p.end, bytes.len());
    let Obj::Dict(pairs) = root(&p) else {
        panic!("not a dict: {:?}", root(&p))
    };
    assert_eq!(pairs.len(), 2);
    assert_eq!(p.arena[pairs[0].0], Obj::Str("a".into()));
    assert_eq!(p.arena[pairs[0].1], Obj::Int(1));
    let Obj::List(items) = &p.arena[pairs[1].1] else {
        panic!()
    };
    let values: Vec<_> = items.iter().map(|&i| p.arena[i].clone()).collect();
    assert_eq!(values, [Obj::Int(2), Obj::Int(3)]);
    assert_eq!(p.dict_get(p.root, "a"), Some(pairs[0].1));
    assert_eq!(p.dict_get(p.root, "zzz"), None);
}

#[test]
fn memoized_container_is_shared_after_it_is_filled() {
    // l = []; memo it; append 7; then (l, l): both entries must see the item.
    let bytes = b"\x80\x02]q\x00K\x07ah\x00\x86.";
    let p = run(bytes).unwrap();
    let Obj::Tuple(items) = root(&p) else {
        panic!()
    };
    assert_eq!(
        items[0], items[1],
        "the memo must hand back the same object"
    );
    let Obj::List(list) = &p.arena[items[0]] else {
        panic!()
    };
    assert_eq!(p.arena[list[0]], Obj::Int(7));
}

#[test]
fn integers_of_every_encoding() {
    let cases: [(&[u8], Obj); 9] = [
        (b"K\xff.", Obj::Int(255)),
        (b"M\xff\xff.", Obj::Int(65535)),
        (b"J\xff\xff\xff\xff.", Obj::Int(-1)),
        (b"\x8a\x00.", Obj::Int(0)),
        (b"\x8a\x01\xff.", Obj::Int(-1)),
        (b"\x8a\x02\xff\x00.", Obj::Int(255)),
        (
            b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff.",
            Obj::Int(-1),
        ),
        (
            b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80.",
            Obj::Int(i64::MIN),
        ),
        (b"I-42\n.", Obj::Int(-42)),
    ];
    for (bytes, expected) in cases {
        assert_eq!(root(&run(bytes).unwrap()), &expected, "{bytes:?}");
    }
    // 2**64 - 1 does not fit: kept as minimal two's complement bytes.
    let p = run(b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00.").unwrap();
    assert_eq!(
        root(&p),
        &Obj::BigInt(vec![0xff; 8].into_iter().chain([0]).collect())
    );
    // torch's magic number, as the legacy format starts.
    let p = run(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    assert!(matches!(root(&p), Obj::BigInt(b) if b.len() == 10));
    assert_eq!(root(&run(b"I01\n.").unwrap()), &Obj::Bool(true));
    assert_eq!(root(&run(b"L12L\n.").unwrap()), &Obj::Int(12));
}

#[test]
fn floats_strings_and_bytes() {
    assert_eq!(
        root(&run(b"G?\xf0\x00\x00\x00\x00\x00\x00.").unwrap()),
        &Obj::Float(1.0)
    );
    assert_eq!(root(&run(b"F-2.5\n.").unwrap()), &Obj::Float(-2.5));
    assert_eq!(
        root(&run(b"\x8c\x02\xc3\xa4.").unwrap()),
        &Obj::Str("ä".into())
    );
    let p = run(b"\x8d\x01\x00\x00\x00\x00\x00\x00\x00x.").unwrap();
    assert_eq!(root(&p), &Obj::Str("x".into()));
    assert_eq!(
        root(&run(b"C\x02\x00\xff.").unwrap()),
        &Obj::Bytes(vec![0, 255])
    );
    assert_eq!(
        root(&run(b"B\x01\x00\x00\x00z.").unwrap()),
        &Obj::Bytes(b"z".to_vec())
    );
    assert_eq!(root(&run(b"U\x02hi.").unwrap()), &Obj::Str("hi".into()));
    assert_eq!(root(&run(b"U\x01\xff.").unwrap()), &Obj::Bytes(vec![255]));
    assert!(matches!(
        run(b"X\x01\x00\x00\x00\xff."),
        Err(PickleError::Invalid { pos: 0, .. })
    ));
}

#[test]
fn globals_are_recorded_never_called() {
    // os.system('touch /tmp/x') via GLOBAL + REDUCE: only a record of the call results.
    let bytes = b"\x80\x02cos\nsystem\nq\x00X\x0c\x00\x00\x00touch /tmp/xq\x01\x85q\x02Rq\x03.";
    let p = run(bytes).unwrap();
    let Obj::Call(call) = root(&p) else {
        panic!("{:?}", root(&p))
    };
    assert_eq!((call.module.as_str(), call.name.as_str()), ("os", "system"));
    assert_eq!(p.arena[call.args[0]], Obj::Str("touch /tmp/x".into()));
    // BUILD and SETITEMS on the result are kept on the record.
    let bytes = b"\x80\x02cargparse\nNamespace\n)\x81}X\x01\x00\x00\x00aK\x01sb.";
    let p = run(bytes).unwrap();
    let Obj::Call(call) = root(&p) else { panic!() };
    assert_eq!(call.name, "Namespace");
    assert!(matches!(&p.arena[call.state.unwrap()], Obj::Dict(d) if d.len() == 1));
}

#[test]
fn protocol4_frames_stack_global_and_memoize() {
    // pickle.dumps(collections.OrderedDict, protocol=4)
    let bytes = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94.";
    let p = run(bytes).unwrap();
    assert_eq!(
        root(&p),
        &Obj::Global("collections".into(), "OrderedDict".into())
    );
    // Memo index of MEMOIZE counts entries: the third object is index 2.
    let p = run(b"\x80\x04K\x01\x94K\x02\x94K\x03\x94h\x00h\x02\x86.").unwrap();
    let Obj::Tuple(items) = root(&p) else {
        panic!()
    };
    assert_eq!(
        (&p.arena[items[0]], &p.arena[items[1]]),
        (&Obj::Int(1), &Obj::Int(3))
    );
}

#[test]
fn marks_tuples_sets_and_persistent_ids() {
    let p = run(b"(K\x01K\x02K\x03K\x04t.").unwrap();
    assert!(matches!(root(&p), Obj::Tuple(t) if t.len() == 4));
    let p = run(b"\x8f(K\x01K\x02\x90.").unwrap();
    assert!(matches!(root(&p), Obj::Set(s) if s.len() == 2));
    let p = run(b"(K\x01K\x02d.").unwrap();
    assert!(matches!(root(&p), Obj::Dict(d) if d.len() == 1));
    let p = run(b"X\x01\x00\x00\x000Q.").unwrap();
    assert!(matches!(root(&p), Obj::Persistent(_)));
    // POP with nothing above the mark drops the mark (Python's load_pop).
    let p = run(b"K\x05(0.").unwrap();
    assert_eq!(root(&p), &Obj::Int(5));
    // TUPLE2 may not reach below a mark.
    assert!(run(b"K\x01(K\x02\x86.").is_err());
}

#[test]
fn structural_errors_are_reported() {
    let invalid = |bytes: &[u8], needle: &str| match run(bytes) {
        Err(PickleError::Invalid { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("{bytes:?}: {other:?}"),
    };
    invalid(b"\x80\x06.", "protocol 6");
    invalid(b"t.", "no MARK");
    invalid(b"R.", "underflow");
    invalid(b"h\x05.", "memo entry 5");
    invalid(b"\x82\x01.", "unsupported opcode 0x82");
    invalid(b"K\x01K\x02R.", "not a tuple");
    invalid(b"K\x01)R.", "not a global");
    invalid(b"K\x01K\x02a.", "not a list");
    invalid(b"(K\x01d.", "odd number");
    invalid(b".", "underflow");
    assert!(matches!(
        run(b"K"),
        Err(PickleError::Truncated { pos: 0, .. })
    ));
    assert!(matches!(
        run(b"K\x01"),
        Err(PickleError::Truncated { pos: 2, .. })
    ));
    // A length far beyond the input is truncation, not an allocation.
    assert!(matches!(
        run(b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f"),
        Err(PickleError::Truncated { .. })
    ));
    assert!(matches!(
        run(b"B\xff\xff\xff\xff"),
        Err(PickleError::Truncated { .. })
    ));
}

#[test]
fn every_prefix_and_random_mutation_fails_cleanly() {
    let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x06tq\x07QK\x00K\x02K\x03\x86q\x08K\x03K\x01\x86q\x09\x89ccollections\nOrderedDict\nq\x0a)Rq\x0btq\x0cRq\x0du.";
    run(bytes).unwrap();
    for cut in 0..bytes.len() {
        assert!(run(&bytes[..cut]).is_err(), "prefix of {cut} bytes parsed");
    }
    // A small deterministic xorshift: no panic, whatever the outcome.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut mutated = bytes.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % mutated.len() as u64) as usize;
            mutated[at] = next() as u8;
        }
        let _ = run(&mutated);
    }
}
