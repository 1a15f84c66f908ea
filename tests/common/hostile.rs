//! The hostile `Authorization` table shared by the parser-level test
//! (`tests/hostile_headers.rs`) and the HTTP-level test. Each row documents
//! the expected outcome at both levels.
//!
//! `{KEY}` in a value is replaced by a valid key of the fixture; `{K}`… see
//! [`render`].

#![allow(dead_code, clippy::unwrap_used, reason = "test helpers")]

use api_keys::ClientClass;

/// What the header parser should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// `Credentials::ApiKey`.
    ApiKey,
    /// `Credentials::Bearer`.
    Bearer,
    /// `HeaderError::Empty`.
    Empty,
    /// `HeaderError::TooLong`.
    TooLong,
    /// `HeaderError::InvalidByte`.
    InvalidByte,
    /// `HeaderError::InvalidScheme`.
    InvalidScheme,
    /// `HeaderError::UnsupportedScheme`.
    UnsupportedScheme,
    /// `HeaderError::MissingCredentials`.
    MissingCredentials,
    /// `HeaderError::InvalidCredentials`.
    InvalidCredentials,
}

/// What the verifier (and so the HTTP layer) should conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted.
    Accept,
    /// Rejected with this client class.
    Reject(ClientClass),
}

/// One row: a name, the raw value (with `{KEY}` placeholders), and the
/// expected parser and verifier outcomes.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) value: &'static [u8],
    pub(crate) parse: Parse,
    pub(crate) outcome: Outcome,
}

use ClientClass::{InvalidRequest as Bad, InvalidToken as Invalid, NoCredentials as NoCreds};
use Outcome::{Accept, Reject};
use Parse::*;

const fn case(name: &'static str, value: &'static [u8], parse: Parse, outcome: Outcome) -> Case {
    Case { name, value, parse, outcome }
}

/// At least 40 hostile (and a few friendly) values.
pub(crate) const CASES: &[Case] = &[
    case("canonical", b"Api-Key {KEY}", ApiKey, Accept),
    case("lowercase scheme", b"api-key {KEY}", ApiKey, Accept),
    case("uppercase scheme", b"API-KEY {KEY}", ApiKey, Accept),
    case("mixed-case scheme", b"aPi-KeY {KEY}", ApiKey, Accept),
    case("two spaces after scheme (1*SP)", b"Api-Key  {KEY}", ApiKey, Accept),
    case("leading space (outer OWS trimmed)", b" Api-Key {KEY}", ApiKey, Accept),
    case("trailing space (outer OWS trimmed)", b"Api-Key {KEY} ", ApiKey, Accept),
    case("leading tab (outer OWS trimmed)", b"\tApi-Key {KEY}", ApiKey, Accept),
    case("trailing tab (outer OWS trimmed)", b"Api-Key {KEY}\t", ApiKey, Accept),
    case("empty", b"", Empty, Reject(NoCreds)),
    case("only spaces", b"   ", Empty, Reject(NoCreds)),
    case("scheme only", b"Api-Key", MissingCredentials, Reject(Bad)),
    case("scheme and space only", b"Api-Key ", MissingCredentials, Reject(Bad)),
    case("bearer scheme only", b"Bearer", MissingCredentials, Reject(Bad)),
    case("tab separator", b"Api-Key\t{KEY}", InvalidCredentials, Reject(Bad)),
    case("space then tab separator", b"Api-Key \t{KEY}", InvalidCredentials, Reject(Bad)),
    case("look-alike ApiKey", b"ApiKey {KEY}", UnsupportedScheme, Reject(NoCreds)),
    case("look-alike Api_Key", b"Api_Key {KEY}", UnsupportedScheme, Reject(NoCreds)),
    case("look-alike Api-Keys", b"Api-Keys {KEY}", UnsupportedScheme, Reject(NoCreds)),
    case("look-alike X-Api-Key", b"X-Api-Key {KEY}", UnsupportedScheme, Reject(NoCreds)),
    case("Basic", b"Basic dXNlcjpwYXNz", UnsupportedScheme, Reject(NoCreds)),
    case("Digest with auth-params", b"Digest username=\"a\", realm=\"b\"", UnsupportedScheme, Reject(NoCreds)),
    case("Kelvin sign in scheme", "Api-\u{212A}ey {KEY}".as_bytes(), InvalidByte, Reject(Bad)),
    case("non-ASCII in key", "Api-Key ключ".as_bytes(), InvalidByte, Reject(Bad)),
    case("raw 0xFF byte", b"Api-Key \xff{KEY}", InvalidByte, Reject(Bad)),
    case("NUL inside", b"Api-Key {KEY}\0", InvalidByte, Reject(Bad)),
    case("NUL in scheme", b"Api\0Key {KEY}", InvalidByte, Reject(Bad)),
    case("CR LF injection", b"Api-Key {KEY}\r\nX-Admin: 1", InvalidByte, Reject(Bad)),
    case("bare LF", b"Api-Key {KEY}\n", InvalidByte, Reject(Bad)),
    case("bare CR", b"Api-Key\r{KEY}", InvalidByte, Reject(Bad)),
    case("DEL byte", b"Api-Key {KEY}\x7f", InvalidByte, Reject(Bad)),
    case("vertical tab", b"Api-Key\x0b{KEY}", InvalidByte, Reject(Bad)),
    case("escape byte", b"Api-Key \x1b[31m{KEY}", InvalidByte, Reject(Bad)),
    case("colon after scheme", b"Api-Key: {KEY}", InvalidScheme, Reject(Bad)),
    case("quoted scheme", b"\"Api-Key\" {KEY}", InvalidScheme, Reject(Bad)),
    case("comma-joined two keys", b"Api-Key {KEY}, Api-Key {KEY}", InvalidCredentials, Reject(Bad)),
    case("comma-joined with Bearer", b"Api-Key {KEY},Bearer abc", InvalidCredentials, Reject(Bad)),
    case("quoted key", b"Api-Key \"{KEY}\"", InvalidCredentials, Reject(Bad)),
    case("auth-param form", b"Api-Key key=\"{KEY}\"", InvalidCredentials, Reject(Bad)),
    case("auth-param token form", b"Api-Key key={KEY}", InvalidCredentials, Reject(Bad)),
    case("space inside key", b"Api-Key ak_ abc", InvalidCredentials, Reject(Bad)),
    case("two keys space-separated", b"Api-Key {KEY} {KEY}", InvalidCredentials, Reject(Bad)),
    case("padding only", b"Api-Key ===", InvalidCredentials, Reject(Bad)),
    case("padding in the middle", b"Api-Key ab=cd", InvalidCredentials, Reject(Bad)),
    case("base64 padding on our key", b"Api-Key {KEY}==", ApiKey, Reject(Invalid)),
    case("truncated key", b"Api-Key {KEY_TRUNC}", ApiKey, Reject(Invalid)),
    case("key with one character changed", b"Api-Key {KEY_TYPO}", ApiKey, Reject(Invalid)),
    case("key of another prefix", b"Api-Key sk_live_0123456789abcdef0123456789", ApiKey, Reject(Invalid)),
    case("short opaque key", b"Api-Key abc", ApiKey, Reject(Invalid)),
    case("Bearer with our key", b"Bearer {KEY}", Bearer, Reject(NoCreds)),
    case("bearer lowercase", b"bearer eyJhbGciOiJIUzI1NiJ9.e30.x", Bearer, Reject(NoCreds)),
    case("over-long (1 MiB)", b"{HUGE}", TooLong, Reject(Bad)),
    case("just over the cap", b"{OVER_CAP}", TooLong, Reject(Bad)),
];

/// Fills the placeholders: `{KEY}` a valid key, `{KEY_TRUNC}` it without its
/// last character, `{KEY_TYPO}` it with one checksum-breaking change,
/// `{HUGE}` a 1 MiB value of NUL bytes after `Api-Key `, `{OVER_CAP}` a
/// well-formed value one byte over the 4 KiB cap.
pub(crate) fn render(value: &[u8], key: &str) -> Vec<u8> {
    match value {
        b"{HUGE}" => {
            let mut v = b"Api-Key ".to_vec();
            v.resize(1 << 20, 0);
            return v;
        }
        b"{OVER_CAP}" => {
            let mut v = b"Api-Key ".to_vec();
            v.resize(4097, b'a');
            return v;
        }
        _ => {}
    }
    let mut typo = key.as_bytes().to_vec();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    let trunc = &key[..key.len() - 1];
    let text = String::from_utf8_lossy(value).into_owned();
    if !text.contains('{') || text.contains('\u{FFFD}') {
        // Non-UTF-8 rows: replace the placeholder bytes directly.
        return replace_bytes(value, b"{KEY}", key.as_bytes());
    }
    text.replace("{KEY_TRUNC}", trunc).replace("{KEY_TYPO}", &typo).replace("{KEY}", key).into_bytes()
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + with.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}
