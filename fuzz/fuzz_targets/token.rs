//! Bytes → `Token::parse` with the default format (and a custom prefix).
//!
//! Invariants: an accepted token has the documented shape (length, prefix,
//! id alphabet, `_`, secret and checksum alphabets), its id and secret are
//! exactly the bytes at their offsets; and a key generated once, with any
//! one byte changed or any burst of up to four consecutive bytes changed
//! (CRC-32 detects every burst of at most 32 bits), is rejected.
#![no_main]

use std::sync::OnceLock;

use api_keys::{KeyId, Token, TokenFormat};
use libfuzzer_sys::fuzz_target;

struct Seeded {
    format: TokenFormat,
    key: Vec<u8>,
}

fn seeded() -> &'static Seeded {
    static SEEDED: OnceLock<Seeded> = OnceLock::new();
    SEEDED.get_or_init(|| {
        let format = TokenFormat::default();
        let key = format.generate().expect("OS random generator").secret.expose_secret().as_bytes().to_vec();
        assert!(Token::parse(&key, &format).is_ok(), "a generated key parses");
        Seeded { format, key }
    })
}

fn custom() -> &'static TokenFormat {
    static CUSTOM: OnceLock<TokenFormat> = OnceLock::new();
    CUSTOM.get_or_init(|| TokenFormat::new("acme_live_").expect("valid prefix"))
}

fuzz_target!(|data: &[u8]| {
    let s = seeded();
    check_shape(data, &s.format);
    check_shape(data, custom());

    // Round trip: mutate the generated key as the input says.
    if let [pos, len, bytes @ ..] = data {
        let body_end = s.key.len() - 6; // burst within prefix, id and secret
        let pos = usize::from(*pos) % s.key.len();
        let mut k = s.key.clone();
        if bytes.is_empty() {
            k[pos] ^= len | 1;
        } else {
            // A burst of 1..=4 bytes inside the prefix, id and secret.
            let n = usize::from(len % 4) + 1;
            let start = pos % (body_end - n + 1);
            for (i, slot) in k[start..start + n].iter_mut().enumerate() {
                *slot = bytes.get(i).copied().unwrap_or(0);
            }
        }
        if k != s.key {
            assert!(
                Token::parse(&k, &s.format).is_err(),
                "mutated key accepted: {} -> {}",
                String::from_utf8_lossy(&s.key),
                String::from_utf8_lossy(&k)
            );
        } else {
            assert!(Token::parse(&k, &s.format).is_ok());
        }
    }
});

fn check_shape(data: &[u8], format: &TokenFormat) {
    let Ok(t) = Token::parse(data, format) else { return };
    let p = format.prefix().len();
    assert_eq!(data.len(), format.token_len());
    assert_eq!(data.len(), p + KeyId::LEN + 1 + Token::SECRET_LEN + 6);
    assert_eq!(&data[..p], format.prefix().as_bytes());
    let id = &data[p..p + KeyId::LEN];
    assert!(id.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "id alphabet");
    assert_eq!(t.id().as_str().as_bytes(), id);
    assert_eq!(data[p + KeyId::LEN], b'_');
    let secret = &data[p + KeyId::LEN + 1..p + KeyId::LEN + 1 + Token::SECRET_LEN];
    assert_eq!(t.secret_bytes(), secret);
    assert_eq!(t.secret_bytes().as_ptr(), secret.as_ptr(), "secret borrows the input");
    assert!(data[p + KeyId::LEN + 1..].iter().all(u8::is_ascii_alphanumeric), "secret and checksum alphabet");
    // Debug never shows the secret.
    let dbg = format!("{t:?}");
    assert!(!dbg.contains(std::str::from_utf8(secret).unwrap_or("\u{0}")), "Debug leaks the secret");
}
