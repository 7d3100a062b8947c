//! Round trips of randomly generated terms through the binary codec and
//! the text form. The generator is a seeded splitmix64; set
//! `ERLANGEN_TEST_SEED` to replay a failure (the seed is printed on one).

use erlangen::term::{decode, encode, read, Limits};
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
