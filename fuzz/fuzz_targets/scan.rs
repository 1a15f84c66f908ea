//! Bytes → `api_keys::scan::Scanner`, with two real keys planted.
//!
//! Invariants: scanning the input fed whole, and fed in chunks whose sizes
//! the input chooses, report the same findings (a key split between feeds
//! is still found); every finding parses as a token of the format and is a
//! whole `[A-Za-z0-9_]` run at its stated offset, line and column; and the
//! two planted keys, each set off by newlines, are found exactly where they
//! were put, whatever bytes surround them.
#![no_main]

use std::sync::OnceLock;

use api_keys::scan::{Finding, Scanner, scan_bytes};
use api_keys::{Token, TokenFormat};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (TokenFormat, [String; 2]) {
    static KEYS: OnceLock<(TokenFormat, [String; 2])> = OnceLock::new();
    KEYS.get_or_init(|| {
        let f = TokenFormat::default();
        let k = || f.generate().expect("OS random generator").secret.expose_secret().to_owned();
        let keys = [k(), k()];
        (f, keys)
    })
}

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn chunked(format: &TokenFormat, data: &[u8], sizes: &[u8]) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut scanner = Scanner::new(format.clone());
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (usize::from(sizes.get(i % sizes.len().max(1)).copied().unwrap_or(7)) % 97 + 1).min(rest.len());
        scanner.feed(&rest[..n], &mut |f| found.push(f));
        rest = &rest[n..];
        i += 1;
    }
    scanner.finish(&mut |f| found.push(f));
    found
}

fn check_finding(format: &TokenFormat, data: &[u8], f: &Finding) {
    let at = usize::try_from(f.offset()).expect("offset fits");
    let end = at + format.token_len();
    let token = &data[at..end];
    assert_eq!(token, f.secret().expose_secret().as_bytes(), "finding is the bytes at its offset");
    assert!(Token::parse(token, format).is_ok(), "finding parses");
    assert!(at == 0 || !word(data[at - 1]), "run starts at a boundary");
    assert!(end == data.len() || !word(data[end]), "run ends at a boundary");
    let before = &data[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count() as u64;
    let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count() as u64;
    assert_eq!((f.line(), f.column()), (line, column), "line and column");
    assert!(!format!("{f:?}").contains(&f.secret().expose_secret()[3..]), "Debug hides the secret");
}

fuzz_target!(|data: &[u8]| {
    let (format, [a, b]) = keys();
    let (sizes, data) = data.split_at(data.len().min(8));

    let whole = scan_bytes(format, data);
    let pieces = chunked(format, data, sizes);
    let offsets = |v: &[Finding]| v.iter().map(Finding::offset).collect::<Vec<_>>();
    assert_eq!(offsets(&whole), offsets(&pieces), "chunking changes nothing");
    for f in &whole {
        check_finding(format, data, f);
    }

    // Plant the two keys in the input and find them.
    let mid = data.len() / 2;
    let mut planted = data[..mid].to_vec();
    planted.push(b'\n');
    let at_a = planted.len();
    planted.extend_from_slice(a.as_bytes());
    planted.push(b'\n');
    planted.extend_from_slice(&data[mid..]);
    planted.push(b'\n');
    let at_b = planted.len();
    planted.extend_from_slice(b.as_bytes());
    let found = chunked(format, &planted, sizes);
    for f in &found {
        check_finding(format, &planted, f);
    }
    let found = offsets(&found);
    assert!(found.contains(&(at_a as u64)) && found.contains(&(at_b as u64)), "planted keys found");
});
