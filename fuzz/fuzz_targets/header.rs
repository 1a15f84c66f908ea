//! `Authorization` bytes → `header::parse_authorization`, checked against an
//! independent reference parser of the documented grammar.
//!
//! Invariants: a value over the cap is always `TooLong` (whatever it
//! contains); accepted credentials are a `token68`, contain no whitespace,
//! and are a subslice of the input ending where the trimmed value ends; the
//! parser accepts exactly what the reference accepts, with the same scheme
//! and the same credentials.
#![no_main]

use api_keys::header::{Credentials, DEFAULT_MAX_HEADER_LEN, HeaderError, is_token68, parse_authorization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data, DEFAULT_MAX_HEADER_LEN);
    // Also with a small cap taken from the first two bytes, so the cap
    // boundary is exercised on short inputs.
    if let [a, b, rest @ ..] = data {
        check(rest, usize::from(u16::from_le_bytes([*a, *b]) % 300));
    }
});

fn check(value: &[u8], max: usize) {
    let got = parse_authorization(value, max);
    assert_eq!(got, parse_authorization(value, max), "deterministic");
    if value.len() > max {
        assert_eq!(got, Err(HeaderError::TooLong { len: value.len(), max }));
        return;
    }
    let want = reference(value);
    match (got, want) {
        (Ok(c), Some((is_api_key, creds))) => {
            let (kind, bytes) = match c {
                Credentials::ApiKey(b) => (true, b),
                Credentials::Bearer(b) => (false, b),
            };
            assert_eq!(kind, is_api_key, "scheme");
            assert_eq!(bytes, creds, "credentials");
            assert!(is_token68(bytes));
            assert!(!bytes.is_empty());
            assert!(!bytes.iter().any(|b| b.is_ascii_whitespace()), "whitespace in credentials");
            let outer = value.as_ptr_range();
            let inner = bytes.as_ptr_range();
            assert!(outer.start <= inner.start && inner.end <= outer.end, "credentials are a subslice of the input");
        }
        (Err(e), None) => {
            assert!(!matches!(e, HeaderError::TooLong { .. }), "TooLong under the cap");
            if let HeaderError::InvalidByte { position } = e {
                let b = value[position];
                assert!((b < 0x20 && b != b'\t') || b >= 0x7F, "InvalidByte names a valid byte");
            }
        }
        (got, want) => panic!("parser {got:?} disagrees with the reference {want:?} on {value:?}"),
    }
}

/// The documented grammar, written independently of the crate:
/// `OWS scheme 1*SP token68 OWS`, OWS = spaces and tabs, only printable
/// ASCII and tab anywhere, scheme `Api-Key` or `Bearer` in any ASCII case.
fn reference(value: &[u8]) -> Option<(bool, &[u8])> {
    if value.iter().any(|&b| !(b == b'\t' || (0x20..0x7F).contains(&b))) {
        return None;
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b))?;
    let end = value.iter().rposition(|b| !is_ows(b))? + 1;
    let v = &value[start..end];
    let scheme_len = v.iter().position(is_ows).unwrap_or(v.len());
    let (scheme, rest) = v.split_at(scheme_len);
    let is_api_key = if scheme.eq_ignore_ascii_case(b"api-key") {
        true
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        false
    } else {
        return None;
    };
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    if spaces == 0 {
        return None;
    }
    let creds = &rest[spaces..];
    let body = creds.iter().take_while(|&&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)).count();
    if body == 0 || !creds[body..].iter().all(|&b| b == b'=') {
        return None;
    }
    Some((is_api_key, creds))
}
