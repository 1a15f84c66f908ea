//! `Authorization` header parsing from raw bytes (RFC 9110 §11, RFC 6750 §2.1).
//!
//! ```text
//! credentials = auth-scheme 1*SP token68
//! token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! Accepted schemes, matched with ASCII case-insensitivity only (no Unicode
//! folding, so a Kelvin sign is not a `K`): `Api-Key` → [`Credentials::ApiKey`]
//! and `Bearer` → [`Credentials::Bearer`], the latter for the application's own
//! token validator.
//!
//! **Whitespace policy.** Spaces and tabs *around the whole value* are
//! ignored: RFC 9110 §5.5 excludes them from the field value and `httparse`
//! already strips them, but `http::HeaderValue` does not, so the result must
//! not depend on which layer trimmed. Between the scheme and the credentials
//! one or more SP are required (`1*SP`); a tab there is rejected. No
//! whitespace is allowed inside the credentials. Everything else is strict:
//! control bytes (NUL, CR, LF, …), DEL and bytes ≥ 0x80 anywhere, a value over
//! the cap (checked first, before any other work), a scheme with no
//! credentials, auth-params, quoted strings and comma-joined lists are errors.
//!
//! ```
//! use api_keys::header::{parse_authorization, Credentials, HeaderError, DEFAULT_MAX_HEADER_LEN};
//!
//! let c = parse_authorization(b"api-key  ak_abc", DEFAULT_MAX_HEADER_LEN)?;
//! assert_eq!(c, Credentials::ApiKey(b"ak_abc"));
//! assert_eq!(parse_authorization(b"Basic dXNlcg==", 4096), Err(HeaderError::UnsupportedScheme));
//! assert_eq!(parse_authorization(b"Api-Key a b", 4096), Err(HeaderError::InvalidCredentials));
//! # Ok::<(), HeaderError>(())
//! ```

use std::fmt;

use crate::token::all_key_chars;

/// Default cap on the Authorization value in bytes (4 KiB).
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// The credentials carried by an `Authorization` value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// `Api-Key <token68>`: verified by this crate.
    ApiKey(&'a [u8]),
    /// `Bearer <token68>`: for the application's own token validator.
    Bearer(&'a [u8]),
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiKey(_) => f.write_str("ApiKey([REDACTED])"),
            Self::Bearer(_) => f.write_str("Bearer([REDACTED])"),
        }
    }
}

/// Why an `Authorization` value was rejected. Never contains the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The value is empty or only whitespace.
    #[error("authorization header is empty")]
    Empty,
    /// Longer than the configured cap.
    #[error("authorization header is {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// Bytes received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A control byte, DEL or non-ASCII byte.
    #[error("authorization header has a control or non-ASCII byte at offset {position}")]
    InvalidByte {
        /// Zero-based offset of the byte in the untrimmed value.
        position: usize,
    },
    /// The scheme is not an RFC 9110 token.
    #[error("authorization scheme is not a valid token")]
    InvalidScheme,
    /// A scheme other than `Api-Key` or `Bearer`.
    #[error("authorization scheme is not supported (use Api-Key or Bearer)")]
    UnsupportedScheme,
    /// `Api-Key` or `Bearer` without credentials.
    #[error("authorization scheme has no credentials")]
    MissingCredentials,
    /// The credentials are not a single token68 (inner whitespace, auth-params,
    /// quotes, commas, a tab separator, misplaced `=`).
    #[error("authorization credentials are not a single token68 value")]
    InvalidCredentials,
}

const T68: u8 = 1; // token68 body character
const TCHAR: u8 = 2; // RFC 9110 tchar

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut v = 0;
        if c.is_ascii_alphanumeric() {
            v |= T68 | TCHAR;
        }
        match c {
            b'-' | b'.' | b'_' | b'~' | b'+' => v |= T68 | TCHAR,
            b'/' => v |= T68,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'^' | b'`' | b'|' => v |= TCHAR,
            _ => {}
        }
        t[i] = v;
        i += 1;
    }
    t
};

/// Parses an `Authorization` field value.
///
/// The length cap is checked before anything else. The common shape
/// `Api-Key <run of [A-Za-z0-9_]>` takes a fast path (an 8-byte scheme
/// compare and one vectorised scan of the rest) whose result is exactly what
/// the full parser would return; everything else takes the full parser,
/// which names the first problem precisely. Never panics and never
/// allocates.
///
/// # Errors
/// [`HeaderError`] naming the first problem found.
#[inline]
pub fn parse_authorization(value: &[u8], max_len: usize) -> Result<Credentials<'_>, HeaderError> {
    #[cfg(test)]
    PARSE_CALLS.with(|c| c.set(c.get() + 1));
    if value.len() > max_len {
        return Err(HeaderError::TooLong { len: value.len(), max: max_len });
    }
    if let Some(credentials) = api_key_fast_path(value, max_len, |rest| is_t68_body(rest).then_some(rest)) {
        return Ok(Credentials::ApiKey(credentials));
    }
    parse_full(value)
}

/// The `Api-Key` fast path, with the caller's key check in place of the
/// header's own scan: for a value within `max_len` that starts with
/// `Api-Key ` (scheme in any ASCII case, one SP), returns `check(rest)`;
/// for any other value, `None`.
///
/// `check` must answer `Some` only for a non-empty run of `[A-Za-z0-9_]`
/// (the key alphabet, a subset of the `token68` characters). Such a rest is
/// well formed on its own, so [`parse_authorization`] would have returned
/// exactly `Credentials::ApiKey(rest)`: a caller that parses the key right
/// away (the verifier, with `Token::parse`) gets what parsing the header
/// and then the key would give, with the bytes scanned once, by the
/// stricter of the two. On `None` the caller parses the value with
/// [`parse_authorization`], which names the problem. [`parse_authorization`]
/// takes this same path with the alphabet check itself.
#[inline(always)]
pub(crate) fn api_key_fast_path<'a, T>(
    value: &'a [u8],
    max_len: usize,
    check: impl FnOnce(&'a [u8]) -> Option<T>,
) -> Option<T> {
    if value.len() > max_len {
        return None;
    }
    let rest = strip_api_key_scheme(value)?;
    let checked = check(rest)?;
    debug_assert!(is_t68_body(rest), "a fast-path check accepted bytes outside the key alphabet");
    Some(checked)
}

#[cfg(test)]
thread_local! {
    /// Calls of [`parse_authorization`] on this thread (unit tests count
    /// how often one request's header is parsed).
    pub(crate) static PARSE_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The full grammar (RFC 9110 §11.4 with the whitespace policy above), for
/// every value the fast path does not take. The cap was checked by the caller.
fn parse_full(value: &[u8]) -> Result<Credentials<'_>, HeaderError> {
    // A branch-free fold the compiler vectorises; the position is looked for
    // only on the error path.
    if value.iter().fold(false, |bad, &b| bad | is_forbidden(b)) {
        let position = value.iter().position(|&b| is_forbidden(b)).unwrap_or(0);
        return Err(HeaderError::InvalidByte { position });
    }
    let v = value.trim_ascii();
    if v.is_empty() {
        return Err(HeaderError::Empty);
    }
    let scheme_end = v.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(v.len());
    let (scheme, rest) = v.split_at(scheme_end);
    if !scheme.iter().all(|&b| CLASS[usize::from(b)] & TCHAR != 0) {
        return Err(HeaderError::InvalidScheme);
    }
    let is_api_key = if scheme.eq_ignore_ascii_case(b"Api-Key") {
        true
    } else if scheme.eq_ignore_ascii_case(b"Bearer") {
        false
    } else {
        return Err(HeaderError::UnsupportedScheme);
    };
    if rest.is_empty() {
        return Err(HeaderError::MissingCredentials);
    }
    let creds = {
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        &rest[start..]
    };
    if !is_token68(creds) {
        return Err(HeaderError::InvalidCredentials);
    }
    Ok(if is_api_key { Credentials::ApiKey(creds) } else { Credentials::Bearer(creds) })
}

/// If `value` starts with `Api-Key ` (scheme in any ASCII case, one SP),
/// returns the bytes after it. The fast path's pre-check; it validates
/// nothing else.
#[inline]
fn strip_api_key_scheme(value: &[u8]) -> Option<&[u8]> {
    // Bit 5 folds case on the six letters; '-' and ' ' must match exactly
    // (folding them would let CR and NUL through).
    const FOLD: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0, 0x20, 0x20, 0x20, 0]);
    const WANT: u64 = u64::from_le_bytes(*b"api-key ");
    let head: [u8; 8] = value.get(..8)?.try_into().ok()?;
    (u64::from_le_bytes(head) | FOLD == WANT).then(|| &value[8..])
}

/// Control bytes other than HTAB, DEL, and everything above ASCII.
#[inline(always)]
fn is_forbidden(b: u8) -> bool {
    (b < 0x20 && b != b'\t') | (b >= 0x7F)
}

/// A `token68` body character, as range compares (vectorisable):
/// `-` `.` `/` `0-9` (one run), `A-Z`, `a-z`, `+`, `_`, `~`.
#[inline(always)]
fn is_t68_char(c: u8) -> bool {
    (c.wrapping_sub(b'-') <= b'9' - b'-')
        | (c.wrapping_sub(b'A') <= 25)
        | (c.wrapping_sub(b'a') <= 25)
        | (c == b'+')
        | (c == b'_')
        | (c == b'~')
}

/// The fast path's check: a non-empty run of `[A-Za-z0-9_]` (the key
/// alphabet, a subset of the `token68` body characters, so a value that
/// passes is well-formed on its own). Values with other `token68`
/// characters take the full parser.
#[inline(always)]
fn is_t68_body(b: &[u8]) -> bool {
    !b.is_empty() && all_key_chars(b)
}

/// Whether `b` is an RFC 9110 `token68`.
#[must_use]
pub fn is_token68(b: &[u8]) -> bool {
    let body_end = b.iter().rposition(|&c| c != b'=').map_or(0, |i| i + 1);
    body_end > 0 && b[..body_end].iter().fold(true, |ok, &c| ok & is_t68_char(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Token, TokenError, TokenFormat};
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    const MAX: usize = DEFAULT_MAX_HEADER_LEN;

    #[test]
    fn schemes_are_ascii_case_insensitive() {
        for s in ["Api-Key", "api-key", "API-KEY", "aPi-kEy"] {
            let v = format!("{s} tok");
            assert_eq!(parse_authorization(v.as_bytes(), MAX), Ok(Credentials::ApiKey(b"tok")));
        }
        for s in ["Bearer", "bearer", "BEARER"] {
            let v = format!("{s} a.b-c_d~e+f/g==");
            assert_eq!(parse_authorization(v.as_bytes(), MAX), Ok(Credentials::Bearer(b"a.b-c_d~e+f/g==")));
        }
        // Kelvin sign (U+212A) is not K: rejected as non-ASCII.
        assert!(matches!(
            parse_authorization("Api-\u{212A}ey tok".as_bytes(), MAX),
            Err(HeaderError::InvalidByte { position: 4 })
        ));
    }

    #[test]
    fn whitespace_policy() {
        let ok = Ok(Credentials::ApiKey(&b"tok"[..]));
        assert_eq!(parse_authorization(b"  Api-Key tok\t ", MAX), ok);
        assert_eq!(parse_authorization(b"Api-Key    tok", MAX), ok);
        assert_eq!(parse_authorization(b"\tApi-Key tok", MAX), ok);
        assert_eq!(parse_authorization(b"Api-Key\ttok", MAX), Err(HeaderError::InvalidCredentials));
        assert_eq!(parse_authorization(b"Api-Key \ttok", MAX), Err(HeaderError::InvalidCredentials));
        assert_eq!(parse_authorization(b"Api-Key to k", MAX), Err(HeaderError::InvalidCredentials));
        assert_eq!(parse_authorization(b"   ", MAX), Err(HeaderError::Empty));
        assert_eq!(parse_authorization(b"", MAX), Err(HeaderError::Empty));
    }

    #[test]
    fn malformed_values() {
        use HeaderError::*;
        let cases: &[(&[u8], HeaderError)] = &[
            (b"Api-Key", MissingCredentials),
            (b"Api-Key   ", MissingCredentials),
            (b"Bearer", MissingCredentials),
            (b"Basic dXNlcjpwYXNz", UnsupportedScheme),
            (b"ApiKey tok", UnsupportedScheme),
            (b"Api_Key tok", UnsupportedScheme),
            (b"Api-Key: tok", InvalidScheme),
            (b"\"Api-Key\" tok", InvalidScheme),
            (b"Api-Key tok,Api-Key tok2", InvalidCredentials),
            (b"Api-Key tok, Bearer x", InvalidCredentials),
            (b"Api-Key key=\"tok\"", InvalidCredentials),
            (b"Api-Key \"tok\"", InvalidCredentials),
            (b"Api-Key =tok", InvalidCredentials),
            (b"Api-Key ==", InvalidCredentials),
            (b"Api-Key to=k", InvalidCredentials),
            (b"Api-Key tok\0", InvalidByte { position: 11 }),
            (b"Api-Key tok\r\nX: y", InvalidByte { position: 11 }),
            (b"Api-Key t\x7fk", InvalidByte { position: 9 }),
            (b"Api-Key t\xffk", InvalidByte { position: 9 }),
        ];
        for (input, want) in cases {
            assert_eq!(parse_authorization(input, MAX), Err(*want), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn fast_scheme_strip_is_exact() {
        assert_eq!(strip_api_key_scheme(b"Api-Key x"), Some(&b"x"[..]));
        assert_eq!(strip_api_key_scheme(b"aPI-kEY x"), Some(&b"x"[..]));
        for bad in [&b"Api\rKey x"[..], b"Api-Key\0x", b"Api-Key", b"Api-Kez x", b"Api_Key x", b"Bearer x"] {
            assert_eq!(strip_api_key_scheme(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // Every byte that is not the letter in either case is refused.
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut v = *b"Api-Key x";
                let orig = v[pos];
                v[pos] = b;
                let same = b == orig || (orig.is_ascii_alphabetic() && b.eq_ignore_ascii_case(&orig));
                assert_eq!(strip_api_key_scheme(&v).is_some(), same, "{b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn token68_character_set_is_exact() {
        for c in 0..=255u8 {
            let want = CLASS[usize::from(c)] & T68 != 0;
            assert_eq!(is_t68_char(c), want, "{c:#x}");
            let forbidden = (c < 0x20 && c != b'\t') || c >= 0x7F;
            assert_eq!(is_forbidden(c), forbidden, "{c:#x}");
        }
    }

    #[test]
    fn padding_is_token68() {
        assert_eq!(parse_authorization(b"Api-Key dG9r==", MAX), Ok(Credentials::ApiKey(b"dG9r==")));
    }

    #[test]
    fn cap_is_checked_first() {
        let mut big = b"Api-Key ".to_vec();
        big.resize(1 << 20, 0); // NUL bytes would be InvalidByte if looked at
        assert_eq!(parse_authorization(&big, MAX), Err(HeaderError::TooLong { len: 1 << 20, max: MAX }));
        let exact = [b"Api-Key ".as_slice(), &[b'a'; 4088]].concat();
        assert!(parse_authorization(&exact, MAX).is_ok());
        let over = [b"Api-Key ".as_slice(), &[b'a'; 4089]].concat();
        assert!(matches!(parse_authorization(&over, MAX), Err(HeaderError::TooLong { .. })));
    }

    #[test]
    fn fused_fast_path_keeps_the_cap_and_the_scheme() {
        let key = b"Api-Key abc";
        assert_eq!(api_key_fast_path(key, MAX, Some), Some(&b"abc"[..]));
        assert_eq!(api_key_fast_path(key, key.len() - 1, Some), None, "over the cap: the full parser answers");
        assert_eq!(api_key_fast_path(b"Bearer abc", MAX, Some), None);
        assert_eq!(api_key_fast_path(b" Api-Key abc", MAX, Some), None);
        assert_eq!(api_key_fast_path(key, MAX, |_| None::<()>), None);
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = parse_authorization(b"Api-Key secretvalue", MAX).unwrap();
        assert_eq!(format!("{c:?}"), "ApiKey([REDACTED])");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_authorization(&bytes, 256);
        }

        /// The fast path is an optimisation only: on every value the cap
        /// admits, the result equals the full parser's.
        #[test]
        fn fast_path_agrees_with_the_full_parser(
            scheme in prop::sample::select(vec!["Api-Key ", "api-KEY ", "Api-Key  ", "Api-Key\t", "Api-Ke ", "Bearer "]),
            rest in "[ -~\t\r\n\u{0}\u{7f}\u{e9}]{0,80}",
        ) {
            let value = format!("{scheme}{rest}");
            prop_assert_eq!(parse_authorization(value.as_bytes(), MAX), parse_full(value.as_bytes()));
        }

        #[test]
        fn fast_path_agrees_on_token_shaped_values(rest in "[A-Za-z0-9_~+/.=-]{0,80}") {
            let value = format!("Api-Key {rest}");
            prop_assert_eq!(parse_authorization(value.as_bytes(), MAX), parse_full(value.as_bytes()));
        }

        /// The verifier's use of the fast path: with `Token::parse` as the
        /// check (a key or its checksum failure), whatever it answers is what
        /// parsing the header first and the key second gives.
        #[test]
        fn fast_path_with_the_token_parser_agrees_with_parsing_the_header_first(
            scheme in prop::sample::select(vec!["Api-Key ", "aPI-kEY ", "Api-Key  ", "Api-Key\t", " Api-Key ", "Bearer "]),
            edit in proptest::option::of((0usize..73, any::<u8>())),
            tail in "[ \t,=.~-]{0,2}",
        ) {
            let format = TokenFormat::default();
            let key = format.generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut bytes = key.secret.expose_secret().as_bytes().to_vec();
            if let Some((at, b)) = edit {
                bytes[at] = b;
            }
            let value = [scheme.as_bytes(), &bytes, tail.as_bytes()].concat();
            let check = |k: &[u8]| match Token::parse(k, &format) {
                Ok(token) => Some(Ok(*token.id())),
                Err(TokenError::BadChecksum) => Some(Err(())),
                Err(_) => None,
            };
            if let Some(fast) = api_key_fast_path(&value, MAX, check) {
                let Ok(Credentials::ApiKey(k)) = parse_authorization(&value, MAX) else {
                    return Err(TestCaseError::fail("fast path answered for a value the parser does not take"));
                };
                prop_assert_eq!(Some(fast), check(k));
            }
            let plain = scheme == "Api-Key " && edit.is_none() && tail.is_empty();
            if plain {
                prop_assert_eq!(api_key_fast_path(&value, MAX, check), Some(Ok(key.id)));
            }
        }

        #[test]
        fn accepted_credentials_are_token68(s in "[ -~]{0,80}") {
            if let Ok(Credentials::ApiKey(c) | Credentials::Bearer(c)) = parse_authorization(s.as_bytes(), MAX) {
                prop_assert!(is_token68(c));
                prop_assert!(!c.contains(&b' '));
            }
        }
    }
}
