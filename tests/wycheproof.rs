//! Every Wycheproof test vector (tests/data/wycheproof/, a copy with its
//! LICENSE) for the four algorithms node sealing rests on: X25519,
//! ChaCha20-Poly1305, HKDF-SHA256 and HMAC-SHA256. Each test's `result`
//! (`valid`, `invalid` or `acceptable`) is checked, and the number of
//! tests run is compared with the file's `numberOfTests`, so none is
//! skipped silently. The JSON is read by a small std-only parser below.

use std::collections::BTreeMap;

use erlangen::crypto::{aead, hkdf, hmac_sha256, x25519, x25519_shared, MAX_OKM};

/// A JSON value (enough of JSON for the vector files).
#[derive(Debug)]
enum Json {
    /// `true`, `false` or `null` (no vector field uses them).
    Literal,
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or_else(|| panic!("no field {key:?}")),
            _ => panic!("not an object looking up {key:?}"),
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }
    fn num(&self) -> usize {
        match self {
            Json::Num(n) => *n as usize,
            other => panic!("not a number: {other:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
    fn hex(&self) -> Vec<u8> {
        unhex(self.str())
    }
    fn flags(&self) -> Vec<&str> {
        self.get("flags").arr().iter().map(Json::str).collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.s[self.i], c,
            "JSON: expected {:?} at {}",
            c as char, self.i
        );
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value() else {
                        panic!("JSON: key not a string")
                    };
                    self.eat(b':');
                    let v = self.value();
                    m.insert(k, v);
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(m);
                    }
                    assert_eq!(self.s[self.i - 1], b',', "JSON: bad object at {}", self.i);
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(a);
                    }
                    assert_eq!(self.s[self.i - 1], b',', "JSON: bad array at {}", self.i);
                }
            }
            b'"' => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let c = self.s[self.i];
                    self.i += 1;
                    match c {
                        b'"' => return Json::Str(out),
                        b'\\' => {
                            let e = self.s[self.i];
                            self.i += 1;
                            out.push(match e {
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                b'b' => '\u{8}',
                                b'f' => '\u{c}',
                                b'u' => {
                                    let h =
                                        std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                                    self.i += 4;
                                    char::from_u32(u32::from_str_radix(h, 16).unwrap())
                                        .unwrap_or('?')
                                }
                                other => other as char,
                            });
                        }
                        _ => {
                            // Multi-byte UTF-8: copy the whole sequence.
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.s.len() && (self.s[end] & 0xC0) == 0x80 {
                                end += 1;
                            }
                            out.push_str(std::str::from_utf8(&self.s[start..end]).unwrap());
                            self.i = end;
                        }
                    }
                }
            }
            b't' | b'n' => {
                self.i += 4;
                Json::Literal
            }
            b'f' => {
                self.i += 5;
                Json::Literal
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Json::Num(
                    t.parse()
                        .unwrap_or_else(|_| panic!("JSON: bad number {t:?}")),
                )
            }
        }
    }
}

fn load(name: &str) -> Json {
    let path = format!(
        "{}/tests/data/wycheproof/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut p = Parser { s: &text, i: 0 };
    let v = p.value();
    p.ws();
    assert_eq!(p.i, text.len(), "{name}: trailing bytes");
    v
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `check` on every test of `file`, which returns whether our code
/// accepted it (`true`: valid); counts by result. Returns the counts.
fn run(file: &str, mut check: impl FnMut(&Json, &Json) -> bool) -> BTreeMap<String, usize> {
    let doc = load(file);
    let mut counts = BTreeMap::new();
    let mut total = 0;
    let mut failures = Vec::new();
    for group in doc.get("testGroups").arr() {
        for t in group.get("tests").arr() {
            total += 1;
            let result = t.get("result").str();
            *counts.entry(result.to_owned()).or_insert(0) += 1;
            let accepted = check(group, t);
            let ok = match result {
                "valid" => accepted,
                "invalid" => !accepted,
                // Either answer is allowed; `check` asserted what it must.
                "acceptable" => true,
                other => panic!("unknown result {other}"),
            };
            if !ok {
                failures.push(format!(
                    "tcId {} ({}, {:?}): expected {result}, we {}",
                    t.get("tcId").num(),
                    t.get("comment").str(),
                    t.flags(),
                    if accepted { "accepted" } else { "rejected" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    assert_eq!(total, doc.get("numberOfTests").num(), "{file}: tests run");
    counts
}

#[test]
fn wycheproof_x25519() {
    let mut zero = 0;
    let counts = run("x25519_test.json", |_, t| {
        let (Ok(k), Ok(u)) = (
            <[u8; 32]>::try_from(t.get("private").hex()),
            <[u8; 32]>::try_from(t.get("public").hex()),
        ) else {
            return false;
        };
        let expected = t.get("shared").hex();
        // Valid and acceptable alike: the raw function must compute what
        // RFC 7748 defines (non-canonical and twist points included).
        let raw = x25519(&k, &u);
        assert_eq!(raw.to_vec(), expected, "tcId {}", t.get("tcId").num());
        // The checked form refuses exactly the all-zero secrets.
        let checked = x25519_shared(&k, &u);
        let all_zero = expected.iter().all(|&b| b == 0);
        assert_eq!(checked.is_err(), all_zero, "tcId {}", t.get("tcId").num());
        if all_zero {
            zero += 1;
            assert!(t.flags().contains(&"ZeroSharedSecret"));
        }
        true
    });
    assert_eq!(zero, 31, "all-zero shared secrets refused");
    assert_eq!(counts["valid"] + counts["acceptable"], 518);
}

#[test]
fn wycheproof_chacha20_poly1305() {
    let counts = run("chacha20_poly1305_test.json", |_, t| {
        let (key, iv) = (t.get("key").hex(), t.get("iv").hex());
        let (aad, msg) = (t.get("aad").hex(), t.get("msg").hex());
        let (ct, tag) = (t.get("ct").hex(), t.get("tag").hex());
        let (Ok(key), Ok(nonce)) = (<[u8; 32]>::try_from(key), <[u8; 12]>::try_from(iv)) else {
            // Only 96-bit nonces exist in RFC 8439: other sizes are refused.
            return false;
        };
        let mut sealed = ct.clone();
        sealed.extend_from_slice(&tag);
        let opened = aead::open(&key, &nonce, &aad, &sealed);
        if t.get("result").str() == "valid" {
            let mut expect = ct.clone();
            expect.extend_from_slice(&tag);
            assert_eq!(
                aead::seal(&key, &nonce, &aad, &msg),
                expect,
                "tcId {}",
                t.get("tcId").num()
            );
        }
        match opened {
            Ok(plain) => {
                assert_eq!(plain, msg, "tcId {}", t.get("tcId").num());
                true
            }
            Err(_) => false,
        }
    });
    assert_eq!((counts["valid"], counts["invalid"]), (256, 69));
}

#[test]
fn wycheproof_hkdf_sha256() {
    let counts = run("hkdf_sha256_test.json", |_, t| {
        let size = t.get("size").num();
        let mut okm = vec![0u8; size];
        match hkdf(
            &t.get("salt").hex(),
            &t.get("ikm").hex(),
            &t.get("info").hex(),
            &mut okm,
        ) {
            Ok(()) => {
                assert!(size <= MAX_OKM);
                okm == t.get("okm").hex()
            }
            Err(_) => false,
        }
    });
    assert_eq!((counts["valid"], counts["invalid"]), (83, 3));
}

#[test]
fn wycheproof_hmac_sha256() {
    let counts = run("hmac_sha256_test.json", |g, t| {
        let tag_bytes = g.get("tagSize").num() / 8;
        let mac = hmac_sha256(&t.get("key").hex(), &t.get("msg").hex());
        erlangen::crypto::constant_time_eq(&mac[..tag_bytes], &t.get("tag").hex())
    });
    assert_eq!((counts["valid"], counts["invalid"]), (66, 108));
}
