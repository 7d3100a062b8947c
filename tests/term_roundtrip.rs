//! Round trips of randomly generated terms through the binary codec and
//! the text form. The generator is a seeded splitmix64; set
//! `ERLANGEN_TEST_SEED` to replay a failure (the seed is printed on one).

use erlangen::term::{decode, encode, encode_with, read, EncodeError, Limits};
use erlangen::AgentRef;
use erlangen::{Symbol, Term};

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, good enough to
/// generate test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ALPHABET: &[char] = &[
    'a', 'Z', '0', '9', '-', '+', '.', ' ', '"', '\\', '|', '(', ')', ':', ';', '#', '\'', 'é',
    '→', '\n', '*', '/',
];

fn text(rng: &mut Rng, max: u64) -> String {
    (0..rng.below(max + 1))
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}

fn name(rng: &mut Rng) -> String {
    let mut s = text(rng, 8).to_uppercase();
    if s.is_empty() {
        s.push('X');
    }
    s
}

fn term(rng: &mut Rng, depth: u32) -> Term {
    let leaf = depth == 0 || rng.below(3) == 0;
    let choice = if leaf { rng.below(9) } else { 9 + rng.below(3) };
    match choice {
        0 => Term::Nil,
        1 => Term::T,
        2 => Term::Int(match rng.below(4) {
            0 => rng.below(256) as i64 - 128,
            1 => rng.next() as i32 as i64,
            2 => rng.next() as i64,
            _ => [i64::MIN, i64::MAX, 0, -1][rng.below(4) as usize],
        }),
        3 => Term::Float(match rng.below(4) {
            // The text form has one NaN (as SBCL prints one); random bit
            // patterns that are NaNs are made that one.
            0 => Some(f64::from_bits(rng.next()))
                .filter(|x| !x.is_nan())
                .unwrap_or(f64::NAN),
            1 => (rng.next() as i64 as f64) / 1e6,
            2 => [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY][rng.below(4) as usize],
            _ => f64::NAN,
        }),
        4 => Term::Str(text(rng, 12)),
        5 => Term::Symbol(Symbol {
            package: None,
            name: name(rng),
        }),
        6 => Term::Symbol(Symbol {
            package: Some(name(rng)),
            name: name(rng),
        }),
        7 => Term::Keyword(name(rng)),
        8 => Term::Bytes((0..rng.below(10)).map(|_| rng.next() as u8).collect()),
        9 => Term::list((0..rng.below(5)).map(|_| term(rng, depth - 1)).collect()),
        10 => Term::Vector((0..rng.below(5)).map(|_| term(rng, depth - 1)).collect()),
        _ => Term::dotted(
            (0..1 + rng.below(3))
                .map(|_| term(rng, depth - 1))
                .collect(),
            term(rng, 0),
        ),
    }
}

/// The innermost pair of sub-terms that differ, to make failures readable.
fn smallest_difference(a: &Term, b: &Term) -> String {
    let children = |t: &Term| -> Vec<Term> {
        match t {
            Term::List(v) | Term::Vector(v) => v.clone(),
            Term::Dotted(v, tail) => {
                let mut v = v.clone();
                v.push((**tail).clone());
                v
            }
            _ => Vec::new(),
        }
    };
    let (ca, cb) = (children(a), children(b));
    if ca.len() == cb.len() {
        for (x, y) in ca.iter().zip(&cb) {
            if x != y {
                return smallest_difference(x, y);
            }
        }
    }
    format!("{a:?} vs {b:?} ({:?} vs {:?})", a.kind(), b.kind())
}

fn seed() -> u64 {
    std::env::var("ERLANGEN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

#[test]
fn random_terms_round_trip_through_codec_and_text() {
    let seed = seed();
    let mut rng = Rng(seed);
    let limits = Limits::default();
    for i in 0..5000 {
        let t = term(&mut rng, 4);
        let bytes = encode(&t).unwrap_or_else(|e| panic!("seed {seed}, term {i}: encode {t}: {e}"));
        let back = decode(&bytes, &limits)
            .unwrap_or_else(|e| panic!("seed {seed}, term {i}: decode {t}: {e}"));
        assert_eq!(back, t, "seed {seed}, term {i}: binary");
        let printed = t.to_string();
        let read_back =
            read(&printed).unwrap_or_else(|e| panic!("seed {seed}, term {i}: read {printed}: {e}"));
        if read_back != t {
            panic!(
                "seed {seed}, term {i}: text round trip\n printed: {printed}\n read:    {read_back}\n smallest differing part: {}",
                smallest_difference(&t, &read_back)
            );
        }
    }
}

#[test]
fn printing_matches_common_lisp() {
    let cases = [
        ("(1 2 . 3)", "(1 2 . 3)"),
        ("#(1 \"a\" :k)", "#(1 \"a\" :K)"),
        ("'x", "(QUOTE X)"),
        ("(a . (b c))", "(A B C)"),
        ("-0.0", "-0.0"),
        ("1.5d0", "1.5"),
        ("|foo bar|", "|foo bar|"),
        (
            "erlangen.examples:parallel-map",
            "ERLANGEN.EXAMPLES:PARALLEL-MAP",
        ),
        ("\"q\\\"uote\"", "\"q\\\"uote\""),
    ];
    for (text, printed) in cases {
        assert_eq!(read(text).unwrap().to_string(), printed, "{text}");
    }
}

/// `depth` vectors inside each other, the innermost empty.
fn nested_vectors(depth: usize) -> Term {
    let mut t = Term::Vector(Vec::new());
    for _ in 1..depth {
        t = Term::Vector(vec![t]);
    }
    t
}

#[test]
fn the_depth_boundary_is_the_same_for_encoder_and_decoder() {
    let limits = Limits::default();
    assert_eq!(limits.max_depth, 128);
    // 127 collections inside each other: sent and received.
    for t in [
        nested_vectors(127),
        (0..126).fold(Term::from(1), |t, _| Term::list(vec![t, Term::T])),
    ] {
        let bytes = encode(&t).expect("127 levels encode");
        assert_eq!(decode(&bytes, &limits).unwrap(), t);
    }
    // 128: refused at the sender, with the setting named.
    let err = encode(&nested_vectors(128)).unwrap_err();
    assert_eq!(err, EncodeError::TooDeep(128));
    assert!(err.to_string().contains("max depth setting"), "{err}");
    // A dotted list's tail counts one level deeper, as in the decoder.
    let tail_deep = Term::dotted(vec![Term::T], nested_vectors(127));
    assert_eq!(encode(&tail_deep), Err(EncodeError::TooDeep(128)));
}

#[test]
fn the_encoder_refuses_each_limit_the_decoder_enforces() {
    let small = Limits {
        max_size: 64,
        max_depth: 4,
        max_elements: 3,
        max_string: 5,
    };
    let cases = [
        (Term::from("123456"), "max string setting"),
        (Term::symbol("abcdef"), "max string setting"),
        (Term::keyword("abcdef"), "max string setting"),
        (Term::Bytes(vec![0; 6]), "max string setting"),
        (
            Term::Agent(AgentRef::Id("h/n/123".into())),
            "max string setting",
        ),
        (
            Term::Vector((0..4).map(Term::from).collect()),
            "max elements setting",
        ),
        (nested_vectors(4), "max depth setting"),
        // Three lists of three 10-byte strings: 111 bytes.
        (
            Term::list(vec![Term::list(vec![Term::from("12345"); 3]); 3]),
            "max size setting",
        ),
    ];
    for (t, setting) in cases {
        let err = encode_with(&t, &small).unwrap_err();
        assert!(err.to_string().contains(setting), "{t}: {err}");
        let unlimited = encode(&t).unwrap();
        assert!(decode(&unlimited, &small).is_err(), "{t}");
    }
    // At the defaults too: a string one byte over 16 MiB.
    let long = Term::Str("x".repeat(16 * 1024 * 1024 + 1));
    assert!(matches!(
        encode(&long),
        Err(EncodeError::StringTooLong { .. })
    ));
    // Shapes the decoder refuses.
    assert_eq!(
        encode(&Term::Agent(AgentRef::Id("".into()))),
        Err(EncodeError::EmptyAgentId)
    );
    for bad in [
        Term::Dotted(Vec::new(), Box::new(Term::T)),
        Term::Dotted(vec![Term::T], Box::new(Term::Nil)),
        Term::Dotted(vec![Term::T], Box::new(Term::list(vec![Term::T]))),
    ] {
        assert_eq!(encode(&bad), Err(EncodeError::MalformedDotted), "{bad:?}");
    }
}

/// Encoding with some limits succeeds exactly when decoding the (unlimited)
/// encoding with those limits does: the sender refuses what a receiver
/// would, and nothing else.
#[test]
fn encode_accepts_exactly_what_decode_accepts() {
    let seed = seed();
    let mut rng = Rng(seed);
    let unlimited = Limits {
        max_size: usize::MAX,
        max_depth: usize::MAX,
        max_elements: usize::MAX,
        max_string: usize::MAX,
    };
    for i in 0..5000 {
        let limits = if i % 5 == 0 {
            Limits::default()
        } else {
            Limits {
                max_size: 8 + rng.below(200) as usize,
                max_depth: 1 + rng.below(7) as usize,
                max_elements: rng.below(6) as usize,
                max_string: rng.below(12) as usize,
            }
        };
        // Now and then a chain of nesting across the default depth limit.
        let t = if i % 50 == 0 {
            let depth = 120 + rng.below(16) as usize;
            (1..depth).fold(term(&mut rng, 0), |t, _| Term::list(vec![t]))
        } else {
            term(&mut rng, 6)
        };
        let full = encode_with(&t, &unlimited)
            .unwrap_or_else(|e| panic!("seed {seed}, term {i}: encode {t}: {e}"));
        match (encode_with(&t, &limits), decode(&full, &limits)) {
            (Ok(bytes), Ok(back)) => {
                assert_eq!(bytes, full, "seed {seed}, term {i}");
                assert_eq!(back, t, "seed {seed}, term {i}");
            }
            (Err(_), Err(_)) => {}
            (e, d) => panic!(
                "seed {seed}, term {i}: {t} with {limits:?}: encode {:?}, decode {:?}",
                e.map(|_| ()),
                d.map(|_| ())
            ),
        }
    }
}
