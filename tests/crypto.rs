//! (Also: RFC 7748 X25519, RFC 8439 ChaCha20 / Poly1305 / AEAD and RFC
//! 5869 HKDF vectors; every Wycheproof vector is in tests/wycheproof.rs.)
//! SHA-256 against FIPS 180-4 / NIST example vectors, HMAC-SHA256 against
//! all RFC 4231 test cases, and the cookie file's rules.

use erlangen::crypto::{
    aead, chacha20_xor, cookie, hkdf, hmac_sha256, poly1305, sha256, x25519, x25519_public,
    x25519_shared, HmacSha256, Sha256,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn sha256_fips_180_4_vectors() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        hex(&sha256(
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
        )),
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
    );
    // One million 'a', fed in uneven pieces to exercise the streaming path.
    let mut h = Sha256::new();
    let chunk = [b'a'; 997];
    let mut left = 1_000_000;
    while left > 0 {
        let n = left.min(chunk.len());
        h.update(&chunk[..n]);
        left -= n;
    }
    assert_eq!(
        hex(&h.finalize()),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn hmac_sha256_rfc_4231_vectors() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "4869205468657265",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            "4a656665",
            "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &"dd".repeat(50),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            "0102030405060708090a0b0c0d0e0f10111213141516171819",
            &"cd".repeat(50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            &"aa".repeat(131),
            "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            &"aa".repeat(131),
            "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (i, (key, data, mac)) in cases.iter().enumerate() {
        assert_eq!(
            hex(&hmac_sha256(&unhex(key), &unhex(data))),
            *mac,
            "case {}",
            [1, 2, 3, 4, 6, 7][i]
        );
    }
    // Case 5: output truncated to 128 bits.
    let key = unhex("0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c");
    let mut mac = HmacSha256::new(&key);
    mac.update(b"Test With ");
    mac.update(b"Truncation");
    assert_eq!(
        hex(&mac.finalize()[..16]),
        "a3b6167473100ee06e0c796c2955552b"
    );
}

#[test]
fn cookie_is_created_private_and_reused() {
    let dir = std::env::temp_dir().join(format!("erlangen-cookie-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cookie");
    let first = cookie::load_or_create(&path).unwrap();
    assert!(first.len() >= 32);
    assert_eq!(cookie::load_or_create(&path).unwrap(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A cookie others can read is refused, with the fix in the message.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = cookie::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        // A short secret is refused.
        let short = dir.join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cookie::load_or_create(&short)
            .unwrap_err()
            .to_string()
            .contains("at least 32"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A private (mode 0600) cookie file with these bytes, in a fresh directory.
fn cookie_file(tag: &str, bytes: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("erlangen-cookie-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cookie");
    std::fs::write(&path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (dir, path)
}

#[test]
fn binary_cookie_bytes_are_used_exactly_as_they_are() {
    // Not UTF-8, whitespace inside, whitespace around: only the ASCII
    // whitespace around goes.
    let secret: Vec<u8> = (0..40u8)
        .map(|i| [0xFF, 0x80, 0x00, b' ', 0xC3, b'\n', b'a', 0x0B][i as usize % 8])
        .chain([0xFE])
        .collect();
    let mut content = b" \t\r\n".to_vec();
    content.extend_from_slice(&secret);
    content.extend_from_slice(b"\r\n\x0c ");
    let (dir, path) = cookie_file("binary", &content);
    assert_eq!(cookie::load_or_create(&path).unwrap(), secret);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn oversized_cookie_file_is_refused_naming_file_and_limit() {
    let (dir, path) = cookie_file("oversized", &vec![b'x'; cookie::MAX_COOKIE_FILE_BYTES + 1]);
    let err = cookie::load_or_create(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains(&cookie::MAX_COOKIE_FILE_BYTES.to_string()),
        "{err}"
    );
    // Exactly at the limit is fine.
    std::fs::write(&path, vec![b'x'; cookie::MAX_COOKIE_FILE_BYTES]).unwrap();
    assert_eq!(
        cookie::load_or_create(&path).unwrap().len(),
        cookie::MAX_COOKIE_FILE_BYTES
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn empty_cookie_is_refused() {
    for content in [&b""[..], b" \n\t\r\n"] {
        let (dir, path) = cookie_file("empty", content);
        let err = cookie::load_or_create(&path).unwrap_err();
        assert!(
            matches!(err, cookie::CookieError::Empty(_)),
            "{content:?}: {err}"
        );
        assert!(err.to_string().contains("empty"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn arr32(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap()
}

#[test]
fn x25519_rfc_7748_vectors() {
    // Section 5.2.
    assert_eq!(
        hex(&x25519(
            &arr32("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
            &arr32("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
        )),
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    );
    assert_eq!(
        hex(&x25519(
            &arr32("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
            &arr32("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")
        )),
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
    );
    // Section 5.2's iteration: 1 and 1,000 times.
    let (mut k, mut u) = (erlangen::crypto::BASEPOINT, erlangen::crypto::BASEPOINT);
    for i in 1..=1000 {
        let r = x25519(&k, &u);
        u = k;
        k = r;
        if i == 1 {
            assert_eq!(
                hex(&k),
                "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
            );
        }
    }
    assert_eq!(
        hex(&k),
        "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"
    );
    // Section 6.1: Alice and Bob.
    let a = arr32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let b = arr32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    assert_eq!(
        hex(&x25519_public(&a)),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    assert_eq!(
        hex(&x25519_public(&b)),
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    );
    let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    assert_eq!(hex(&x25519_shared(&a, &x25519_public(&b)).unwrap()), shared);
    assert_eq!(hex(&x25519_shared(&b, &x25519_public(&a)).unwrap()), shared);
    // A low-order point (0) gives the all-zero secret, refused.
    assert!(x25519_shared(&a, &[0u8; 32]).is_err());
}

#[test]
fn chacha20_poly1305_rfc_8439_vectors() {
    // Section 2.4.2.
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let nonce: [u8; 12] = unhex("000000000000004a00000000").try_into().unwrap();
    let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let mut data = plain.to_vec();
    chacha20_xor(&key, &nonce, 1, &mut data);
    assert_eq!(hex(&data), "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d");
    // Section 2.5.2.
    let pkey = arr32("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b");
    assert_eq!(
        hex(&poly1305(&pkey, b"Cryptographic Forum Research Group")),
        "a8061dc1305136c6c22b8baf0c0127a9"
    );
    // Section 2.8.2.
    let key = arr32("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce: [u8; 12] = unhex("070000004041424344454647").try_into().unwrap();
    let aad = unhex("50515253c0c1c2c3c4c5c6c7");
    let sealed = aead::seal(&key, &nonce, &aad, plain);
    assert_eq!(
        hex(&sealed[plain.len()..]),
        "1ae10b594f09e26a7e902ecbd0600691"
    );
    assert_eq!(aead::open(&key, &nonce, &aad, &sealed).unwrap(), plain);
    // Any flipped bit (ciphertext, tag or associated data) is refused.
    for i in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(aead::open(&key, &nonce, &aad, &bad).is_err());
    }
    let mut bad_aad = aad.clone();
    bad_aad[0] ^= 1;
    assert!(aead::open(&key, &nonce, &bad_aad, &sealed).is_err());
    // Lengths across the four-block boundaries of the implementation.
    for len in [
        0, 1, 15, 16, 17, 63, 64, 65, 191, 192, 193, 255, 256, 257, 1000, 4096,
    ] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let s = aead::seal(&key, &nonce, b"", &msg);
        let mut stream = msg.clone();
        chacha20_xor(&key, &nonce, 1, &mut stream);
        assert_eq!(&s[..len], &stream[..], "length {len}");
        assert_eq!(aead::open(&key, &nonce, b"", &s).unwrap(), msg);
    }
}

#[test]
fn hkdf_rfc_5869_vectors() {
    // Test case 1.
    let mut okm = [0u8; 42];
    hkdf(
        &unhex("000102030405060708090a0b0c"),
        &[0x0b; 22],
        &unhex("f0f1f2f3f4f5f6f7f8f9"),
        &mut okm,
    )
    .unwrap();
    assert_eq!(
        hex(&okm),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
    // Test case 3: empty salt and info.
    hkdf(b"", &[0x0b; 22], b"", &mut okm).unwrap();
    assert_eq!(
        hex(&okm),
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    );
    let mut too_long = vec![0u8; 255 * 32 + 1];
    assert!(hkdf(b"", b"k", b"", &mut too_long).is_err());
}
