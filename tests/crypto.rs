//! SHA-256 against FIPS 180-4 / NIST example vectors, HMAC-SHA256 against
//! all RFC 4231 test cases, and the cookie file's rules.

use erlangen::crypto::{cookie, hmac_sha256, sha256, HmacSha256, Sha256};

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
