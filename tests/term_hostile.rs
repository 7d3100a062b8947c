//! Hostile input to the codec and the reader: each case returns an error,
//! none panics, none allocates beyond the limits, none overflows the stack
//! (the deep cases run on a thread with a small stack to prove it: 256 KiB
//! in release builds, 1 MiB in debug builds whose frames are several times
//! larger; unbounded recursion over 100,000 levels would need far more than
//! either).

use erlangen::term::{decode, decode_prefix, encode, read, read_all, DecodeError, Limits};
use erlangen::{Symbol, Term};

fn samples() -> Vec<Term> {
    vec![
        Term::list(vec![Term::keyword("ping"), 42.into(), "x".into()]),
        Term::Vector((0..20).map(Term::from).collect()),
        Term::dotted(vec![Term::symbol("a"), 1.5.into()], Term::from("tail")),
        Term::Symbol(Symbol::qualified("pkg", "name")),
        Term::Bytes(vec![0, 1, 2, 255]),
        Term::from(i64::MIN),
        Term::list(vec![Term::Vector(vec![Term::Nil, Term::T]), Term::from(-1)]),
    ]
}

fn small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new()
        .stack_size(if cfg!(debug_assertions) {
            1024 * 1024
        } else {
            256 * 1024
        })
        .spawn(f)
        .unwrap()
        .join()
        .expect("no panic, no stack overflow");
}

#[test]
fn every_truncation_is_an_error() {
    let limits = Limits::default();
    for t in samples() {
        let bytes = encode(&t).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &limits).is_err(), "{t} cut at {cut}");
        }
    }
}

/// What any input must decode to: for no bytes, [`DecodeError::Empty`];
/// for a wrong version byte, [`DecodeError::Version`]; otherwise an error
/// or a term that encodes and decodes back to itself (no half-checked
/// value gets through as a term the format cannot carry). Never a panic.
fn an_error_or_a_term_that_encodes_again(b: &[u8], limits: &Limits) {
    let result = decode(b, limits);
    match (b.first(), result) {
        (None, result) => assert_eq!(result, Err(DecodeError::Empty)),
        (Some(&v), result) if v != erlangen::term::codec::VERSION => {
            assert_eq!(result, Err(DecodeError::Version(v)), "{b:02x?}")
        }
        (Some(_), Err(DecodeError::Empty | DecodeError::Version(_))) => {
            panic!("{b:02x?}: an empty-input or version error for a versioned input")
        }
        (Some(_), Err(_)) => {}
        (Some(_), Ok(t)) => {
            let again = encode(&t).unwrap_or_else(|e| {
                panic!("{b:02x?} decoded to {t}, which cannot be encoded: {e}")
            });
            let back = decode(&again, limits).unwrap_or_else(|e| {
                panic!("{b:02x?} decoded to {t}, which does not decode again: {e}")
            });
            assert_eq!(
                back, t,
                "{b:02x?} decoded to a term that changes when sent on"
            );
        }
    }
}

#[test]
fn every_single_byte_corruption_is_an_error_or_a_term_that_encodes_again() {
    let limits = Limits::default();
    for t in samples() {
        let bytes = encode(&t).unwrap();
        for i in 0..bytes.len() {
            for v in [
                0u8,
                1,
                0x7F,
                0x80,
                0xFE,
                0xFF,
                bytes[i] ^ 0x01,
                bytes[i].wrapping_add(1),
            ] {
                let mut b = bytes.clone();
                b[i] = v;
                an_error_or_a_term_that_encodes_again(&b, &limits);
            }
        }
    }
}

#[test]
fn random_bytes_are_an_error_or_a_term_that_encodes_again() {
    let limits = Limits::default();
    let mut x: u64 = 0x1234_5678_9ABC_DEF0;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 64) as usize;
        let mut b: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
        if let Some(first) = b.first_mut() {
            *first = 1; // get past the version byte most of the time
        }
        an_error_or_a_term_that_encodes_again(&b, &limits);
    }
}

#[test]
fn lengths_and_counts_beyond_the_input_are_refused() {
    let limits = Limits {
        max_elements: usize::MAX,
        max_string: usize::MAX,
        ..Limits::default()
    };
    // Tags: 0x06 string, 0x0A bytes, 0x0B list, 0x0D vector.
    for tag in [0x06u8, 0x0A, 0x0B, 0x0D, 0x07, 0x09, 0x0E] {
        for len in [u32::MAX, u32::MAX - 1, 1 << 31, 11] {
            let mut b = vec![1, tag];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[0u8; 10]);
            assert!(decode(&b, &limits).is_err(), "tag {tag:#x} len {len}");
        }
    }
    let strict = Limits::default();
    let mut b = vec![1, 0x0D];
    b.extend_from_slice(&(2_000_000u32).to_be_bytes());
    assert!(matches!(decode(&b, &strict), Err(DecodeError::TooMany(..))));
    // What is allocated meanwhile is measured in tests/codec_alloc.rs.
}

/// 127 nested list headers, each claiming a million elements, padded with
/// zeros to 1 MiB: each claim alone fits the bytes left, together they
/// cannot.
fn nested_claims() -> Vec<u8> {
    let mut b = vec![1u8];
    for _ in 0..127 {
        b.push(0x0B);
        b.extend_from_slice(&1_000_000u32.to_be_bytes());
    }
    b.resize(1 << 20, 0);
    b
}

#[test]
fn nested_claims_beyond_the_input_are_refused() {
    let b = nested_claims();
    let err = decode(&b, &Limits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Overcommitted(..)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("still expect") && text.contains("bytes remain"),
        "{text}"
    );
}

#[test]
fn trailing_bytes_unknown_tags_versions_and_bad_utf8() {
    let limits = Limits::default();
    let mut b = encode(&Term::from(1)).unwrap();
    b.push(0);
    assert!(matches!(decode(&b, &limits), Err(DecodeError::Trailing(1))));
    assert_eq!(decode_prefix(&b, &limits).unwrap().1, b.len() - 1);
    assert!(matches!(
        decode(&[1, 0x99], &limits),
        Err(DecodeError::UnknownTag(0x99, 1))
    ));
    assert!(matches!(
        decode(&[2, 0x00], &limits),
        Err(DecodeError::Version(2))
    ));
    assert!(matches!(decode(&[], &limits), Err(DecodeError::Empty)));
    let bad_utf8 = [1, 0x06, 0, 0, 0, 2, 0xC3, 0x28];
    assert!(matches!(
        decode(&bad_utf8, &limits),
        Err(DecodeError::BadUtf8(_))
    ));
    let empty_list = [1, 0x0B, 0, 0, 0, 0];
    assert!(decode(&empty_list, &limits).is_err());
    let too_big = Limits {
        max_size: 8,
        ..Limits::default()
    };
    let big = encode(&Term::from("a string longer than eight bytes")).unwrap();
    assert!(decode(&big, &too_big).is_err());
}

#[test]
fn nesting_100000_deep_is_refused_on_a_small_stack() {
    small_stack(|| {
        let mut b = vec![1u8];
        for _ in 0..100_000 {
            b.extend_from_slice(&[0x0B, 0, 0, 0, 1]);
        }
        b.push(0x00);
        assert!(matches!(
            decode(&b, &Limits::default()),
            Err(DecodeError::TooDeep(128))
        ));
        let text = "(".repeat(100_000) + &")".repeat(100_000);
        assert!(read(&text).is_err());
        let vectors = "#(".repeat(100_000);
        assert!(read(&vectors).is_err());
        let quotes = "'".repeat(100_000) + "x";
        assert!(read(&quotes).is_err());
    });
}

#[test]
fn garbage_text_is_an_error_with_a_position() {
    for text in [
        ")",
        "(1 2",
        "\"open",
        "#<AGENT 1>",
        "(1 . 2 3)",
        "( . 1)",
        "#(1 . 2)",
        "#z",
        ":",
        "a:b:c",
        "#.(evil)",
        "#|",
        "123456789012345678901234567890",
        "|open",
        "`(1)",
        "#",
    ] {
        let e = read(text).unwrap_err();
        assert!(e.line >= 1 && e.column >= 1, "{text}");
        assert!(!e.to_string().is_empty());
    }
    assert!(read_all("1 2 (3").is_err());
    assert!(read("").unwrap_err().is_incomplete());
}

#[test]
fn over_deep_terms_fail_at_the_sender() {
    small_stack(|| {
        let mut t = Term::Nil;
        for _ in 0..200 {
            t = Term::list(vec![t]);
        }
        assert!(encode(&t).is_err());
    });
}
