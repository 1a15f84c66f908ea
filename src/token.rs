//! The key format: a branded prefix, the public key id, a 256-bit secret and
//! a CRC-32 checksum, all in `[A-Za-z0-9_]`.
//!
//! ```text
//! token    = prefix id "_" secret check            ; fixed length: len(prefix) + 70
//! prefix   = 1*16( ALPHA / DIGIT / "_" )           ; configurable, default "ak_"
//! id       = 20( %x61-7A / DIGIT )                 ; random base36, ~103 bits, public
//! secret   = 43( ALPHA / DIGIT )                   ; random base62, 256 bits, from the OS CSPRNG
//! check    = 6( ALPHA / DIGIT )                    ; base62 of CRC-32/ISO-HDLC over id "_" secret
//! ```
//!
//! Every token is a valid RFC 9110 `token68` and is selected whole by a double
//! click. The id lets the verifier fetch exactly one record; the checksum lets
//! it reject typos and garbage before any store access or hashing; the last six
//! characters (the masked view) are the checksum, so they reveal nothing of the
//! secret.
//!
//! ```
//! use api_keys::{Token, TokenFormat};
//!
//! let format = TokenFormat::default();
//! let key = format.generate()?;
//! let token = Token::parse(key.secret.expose_secret().as_bytes(), &format)?;
//! assert_eq!(token.id(), &key.id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::checksum::{BASE62, CHECKSUM_LEN, crc32, crc32_64, decode_base62_6, encode_base62_u32};
use crate::random::{RandomError, random_chars};
use crate::secret::Secret;

// Length of a key id in characters.
pub(crate) const KEY_ID_LEN: usize = 20;
// Length of the random secret part in characters (43 × log2(62) ≥ 256 bits).
pub(crate) const SECRET_LEN: usize = 43;
// Longest accepted prefix.
pub(crate) const MAX_PREFIX_LEN: usize = 16;
// Token length without the prefix: id, `_`, secret, checksum.
pub(crate) const BODY_LEN: usize = KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Byte classes: bit 0 = allowed in an id, bit 1 = allowed in secret/check,
/// bit 2 = allowed in a prefix.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
        let alnum = c.is_ascii_alphanumeric();
        let mut v = 0;
        if lower_or_digit {
            v |= 1;
        }
        if alnum {
            v |= 2 | 4;
        }
        if c == b'_' {
            v |= 4;
        }
        t[b] = v;
        b += 1;
    }
    t
};

/// Why bytes are not a token of this format. Never contains the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The input is not `len(prefix) + 70` bytes long.
    #[error("key has the wrong length ({actual} bytes, expected {expected})")]
    WrongLength {
        /// Bytes received.
        actual: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The input does not start with the configured prefix.
    #[error("key does not start with the expected prefix")]
    WrongPrefix,
    /// A byte outside the alphabet of its field.
    #[error("key has a character outside its alphabet at byte {position}")]
    InvalidCharacter {
        /// Zero-based offset of the first bad byte.
        position: usize,
    },
    /// The checksum does not match: a typo, truncation or invented key.
    #[error("key checksum does not match")]
    BadChecksum,
}

/// Why a configured prefix is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// Empty or longer than [`TokenFormat::MAX_PREFIX_LEN`].
    #[error("prefix must be 1 to {MAX_PREFIX_LEN} characters")]
    Length,
    /// Contains a character outside `[A-Za-z0-9_]`.
    #[error("prefix may only contain A-Z, a-z, 0-9 and _")]
    Alphabet,
}

/// A key's public identifier: 20 characters of `[a-z0-9]`.
///
/// Printable on its own (logs, URLs, listings); it carries no secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

/// Why a string is not a [`KeyId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyIdError {
    /// Not exactly 20 characters.
    #[error("key id must be exactly {KEY_ID_LEN} characters")]
    Length,
    /// A character outside `[a-z0-9]`.
    #[error("key id may only contain a-z and 0-9")]
    Alphabet,
}

impl KeyId {
    /// Length of a key id in characters.
    pub const LEN: usize = KEY_ID_LEN;

    /// A fresh random id from the OS CSPRNG.
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator fails.
    pub fn generate() -> Result<Self, RandomError> {
        let mut id = [0u8; KEY_ID_LEN];
        random_chars(&mut id, ID_ALPHABET)?;
        Ok(Self(id))
    }

    /// Validates an id.
    ///
    /// # Errors
    /// [`KeyIdError`] when the length or alphabet is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyIdError> {
        Self::from_bytes(text.as_bytes())
    }

    fn from_bytes(b: &[u8]) -> Result<Self, KeyIdError> {
        let arr: [u8; KEY_ID_LEN] = b.try_into().map_err(|_| KeyIdError::Length)?;
        if arr.iter().all(|&c| CLASS[usize::from(c)] & 1 != 0) { Ok(Self(arr)) } else { Err(KeyIdError::Alphabet) }
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The id's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }

    /// The shard (`0..shards`) this id belongs to, wherever keys are sharded.
    #[inline]
    pub(crate) fn shard(&self, shards: usize) -> usize {
        crate::shard::shard_of(&self.0, shards)
    }
}

impl std::hash::Hash for KeyId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The configured token format: which prefix keys carry.
///
/// Defaults to the prefix `ak_`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: [u8; MAX_PREFIX_LEN],
    prefix_len: u8,
}

impl fmt::Debug for TokenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFormat").field("prefix", &self.prefix()).finish()
    }
}

impl Default for TokenFormat {
    fn default() -> Self {
        let mut prefix = [0u8; MAX_PREFIX_LEN];
        prefix[..3].copy_from_slice(b"ak_");
        Self { prefix, prefix_len: 3 }
    }
}

/// A freshly generated key: its id and the full secret token.
#[derive(Debug)]
#[non_exhaustive]
pub struct GeneratedKey {
    /// Public id embedded in the token.
    pub id: KeyId,
    /// The whole token, shown once to the owner.
    pub secret: Secret,
}

impl TokenFormat {
    /// Longest accepted prefix.
    pub const MAX_PREFIX_LEN: usize = MAX_PREFIX_LEN;

    /// A format with the given prefix (1–16 characters of `[A-Za-z0-9_]`).
    ///
    /// ```
    /// let f = api_keys::TokenFormat::new("acme_")?;
    /// assert_eq!(f.token_len(), 75);
    /// assert!(api_keys::TokenFormat::new("bad-prefix").is_err());
    /// # Ok::<(), api_keys::PrefixError>(())
    /// ```
    ///
    /// # Errors
    /// [`PrefixError`] for an empty, too long or non-alphanumeric prefix.
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        let b = prefix.as_bytes();
        if b.is_empty() || b.len() > MAX_PREFIX_LEN {
            return Err(PrefixError::Length);
        }
        if !b.iter().all(|&c| CLASS[usize::from(c)] & 4 != 0) {
            return Err(PrefixError::Alphabet);
        }
        let mut buf = [0u8; MAX_PREFIX_LEN];
        buf[..b.len()].copy_from_slice(b);
        // b.len() <= 16 was checked above.
        Ok(Self { prefix: buf, prefix_len: b.len() as u8 })
    }

    /// The prefix keys start with.
    #[must_use]
    pub fn prefix(&self) -> &str {
        std::str::from_utf8(self.prefix_bytes()).unwrap_or("")
    }

    fn prefix_bytes(&self) -> &[u8] {
        &self.prefix[..usize::from(self.prefix_len)]
    }

    /// Whether `key` starts with the prefix (a byte compare, no UTF-8 check).
    #[inline]
    pub(crate) fn is_prefixed(&self, key: &[u8]) -> bool {
        key.starts_with(self.prefix_bytes())
    }

    /// Mask selecting the prefix bytes of a 16-byte little-endian word.
    #[inline]
    fn prefix_mask(&self) -> u128 {
        u128::MAX >> (8 * (MAX_PREFIX_LEN - usize::from(self.prefix_len)))
    }

    /// Total token length for this prefix.
    #[must_use]
    pub fn token_len(&self) -> usize {
        usize::from(self.prefix_len) + BODY_LEN
    }

    /// Generates a new key: random id, 256-bit random secret, checksum.
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator fails.
    pub fn generate(&self) -> Result<GeneratedKey, RandomError> {
        let id = KeyId::generate()?;
        let p = usize::from(self.prefix_len);
        let mut buf = zeroize::Zeroizing::new(vec![0u8; self.token_len()]);
        buf[..p].copy_from_slice(self.prefix_bytes());
        buf[p..p + KEY_ID_LEN].copy_from_slice(&id.0);
        buf[p + KEY_ID_LEN] = b'_';
        let secret_start = p + KEY_ID_LEN + 1;
        random_chars(&mut buf[secret_start..secret_start + SECRET_LEN], BASE62)?;
        let check_at = secret_start + SECRET_LEN;
        let check = token_checksum(&buf[p..check_at]);
        buf[check_at..].copy_from_slice(&check);
        // Every byte written above is ASCII.
        let text = String::from_utf8(std::mem::take(&mut *buf)).map_err(|_| RandomError)?;
        Ok(GeneratedKey { id, secret: Secret::from(text) })
    }
}

/// The checksum field for a token body (`id "_" secret`, the bytes between
/// the prefix and the checksum): six base62 characters of its CRC-32.
///
/// Public so secret scanners and migration tools can validate or assemble
/// keys offline exactly as the format specifies.
///
/// ```
/// use api_keys::{token_checksum, TokenFormat};
///
/// let f = TokenFormat::default();
/// let key = f.generate()?;
/// let s = key.secret.expose_secret();
/// let (body, check) = s[f.prefix().len()..].split_at(64);
/// assert_eq!(token_checksum(body.as_bytes()), check.as_bytes());
/// # Ok::<(), api_keys::RandomError>(())
/// ```
#[must_use]
pub fn token_checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    encode_base62_u32(crc32(body))
}

/// A parsed token, borrowing the caller's bytes.
#[derive(Clone, Copy)]
pub struct Token<'a> {
    id: KeyId,
    secret: &'a [u8],
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("id", &self.id).field("secret", &"[REDACTED]").finish()
    }
}

impl<'a> Token<'a> {
    /// Token length without the prefix: id, `_`, secret, checksum.
    pub const BODY_LEN: usize = BODY_LEN;

    /// Length of the random secret part in characters (43 × log2(62) ≥ 256 bits).
    pub const SECRET_LEN: usize = SECRET_LEN;

    /// Parses a token, checking length, then alphabet (prefix first), then
    /// checksum. Never panics, never allocates, and never echoes input in
    /// errors.
    ///
    /// # Errors
    /// [`TokenError`] naming the first check that failed.
    pub fn parse(input: &'a [u8], format: &TokenFormat) -> Result<Self, TokenError> {
        let p = usize::from(format.prefix_len);
        let expected = p + BODY_LEN;
        if input.len() != expected {
            return Err(TokenError::WrongLength { actual: input.len(), expected });
        }
        // Compare the prefix as one masked 16-byte word (input is >= 71 bytes).
        let mut head = [0u8; MAX_PREFIX_LEN];
        head.copy_from_slice(&input[..MAX_PREFIX_LEN]);
        if u128::from_le_bytes(head) & format.prefix_mask() != u128::from_le_bytes(format.prefix) {
            return Err(TokenError::WrongPrefix);
        }
        let id_end = p + KEY_ID_LEN;
        // The body as a fixed-size array (the length was checked above), so
        // every scan below has a constant length and unrolls fully.
        let Some(body) = input.last_chunk::<BODY_LEN>() else {
            return Err(TokenError::WrongLength { actual: input.len(), expected });
        };
        let (id, rest) = body.split_at(KEY_ID_LEN);
        if !(all_lower_digit(id) & (rest[0] == b'_') & all_alnum(&rest[1..])) {
            return Err(TokenError::InvalidCharacter { position: first_bad(input, p) });
        }
        let check_at = expected - CHECKSUM_LEN;
        // Decode the stated checksum and compute the real one independently
        // (the CPU overlaps them), then compare numbers.
        let (checked, check) = body.split_at(BODY_LEN - CHECKSUM_LEN);
        let checked: &[u8; 64] = checked.try_into().map_err(|_| TokenError::BadChecksum)?;
        if decode_base62_6(check) != Some(u64::from(crc32_64(checked))) {
            return Err(TokenError::BadChecksum);
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&input[p..id_end]);
        Ok(Self { id: KeyId(id), secret: &input[id_end + 1..check_at] })
    }

    /// The key id embedded in the token.
    #[must_use]
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The random secret part (43 bytes), the input of the digest.
    #[must_use]
    pub fn secret_bytes(&self) -> &'a [u8] {
        self.secret
    }
}

/// Whether `ok` holds for every byte of `b`, checked 16 bytes at a time.
///
/// Two branch-free folds of "bad" flags into one byte: over the longest
/// prefix whose length is a multiple of 16, then over the last 16 bytes
/// (overlapping it), so the compiler vectorises both at the full 16-byte
/// width with no scalar remainder loop (SSE2, no `unsafe`, no target
/// features). Inputs under 16 bytes take a plain fold. (A `bool` fold over
/// the whole slice, which this replaces, compiled to 8-byte vectors plus a
/// scalar tail: about twice the instructions.)
#[inline(always)]
pub(crate) fn all_bytes(b: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    let bad = |bytes: &[u8]| bytes.iter().fold(0u8, |bad, &c| bad | u8::from(!ok(c)));
    match b.last_chunk::<16>() {
        Some(last) => bad(b.as_chunks::<16>().0.as_flattened()) | bad(last) == 0,
        None => bad(b) == 0,
    }
}

/// `[A-Za-z0-9]`, as range compares.
#[inline(always)]
fn is_alnum(c: u8) -> bool {
    let folded = c | 0x20; // upper case onto lower case; digits keep 0x30-0x39
    (c.wrapping_sub(b'0') <= 9) | (folded.wrapping_sub(b'a') <= 25)
}

/// Every byte is `[A-Za-z0-9]` (see [`all_bytes`]).
#[inline(always)]
fn all_alnum(b: &[u8]) -> bool {
    all_bytes(b, is_alnum)
}

/// Every byte is `[a-z0-9]` (see [`all_bytes`]).
#[inline(always)]
fn all_lower_digit(b: &[u8]) -> bool {
    all_bytes(b, |c| (c.wrapping_sub(b'0') <= 9) | (c.wrapping_sub(b'a') <= 25))
}

/// Every byte is in the key alphabet `[A-Za-z0-9_]`, the characters of
/// every token of every format (see [`all_bytes`]).
#[inline(always)]
pub(crate) fn all_key_chars(b: &[u8]) -> bool {
    all_bytes(b, |c| is_alnum(c) | (c == b'_'))
}

/// Offset of the first byte outside its field's alphabet (error path only).
fn first_bad(input: &[u8], p: usize) -> usize {
    for (i, &c) in input[p..].iter().enumerate() {
        let ok = match i {
            i if i < KEY_ID_LEN => CLASS[usize::from(c)] & 1 != 0,
            KEY_ID_LEN => c == b'_',
            _ => CLASS[usize::from(c)] & 2 != 0,
        };
        if !ok {
            return p + i;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh() -> (TokenFormat, GeneratedKey) {
        let f = TokenFormat::default();
        let k = f.generate().unwrap();
        (f, k)
    }

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let (f, k) = fresh();
        let s = k.secret.expose_secret();
        assert_eq!(s.len(), 73);
        assert!(s.starts_with("ak_"));
        assert_eq!(&s[3..23], k.id.as_str());
        assert_eq!(&s[23..24], "_");
        assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
        let t = Token::parse(s.as_bytes(), &f).unwrap();
        assert_eq!(t.id(), &k.id);
        assert_eq!(t.secret_bytes(), &s.as_bytes()[24..67]);
    }

    #[test]
    fn alphabet_checks_match_the_byte_definition_everywhere() {
        for pos in 0..40 {
            for b in 0..=255u8 {
                let mut v = [b'a'; 40];
                v[pos] = b;
                assert_eq!(all_alnum(&v), b.is_ascii_alphanumeric(), "alnum {b:#x} at {pos}");
                let lower = b.is_ascii_lowercase() || b.is_ascii_digit();
                assert_eq!(all_lower_digit(&v), lower, "lower {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn chunked_check_agrees_with_a_plain_scan_at_every_length_and_position() {
        // Lengths around the 16-byte chunks (the overlapping tail, inputs
        // under one chunk, exact multiples), one odd byte at each position.
        let odd = [0u8, b'\t', b' ', b'-', b'/', b':', b'@', b'[', b'^', b'_', b'`', b'{', 0x7F, 0x80, 0xFF];
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        for len in 0..=80 {
            let clean = vec![b'z'; len];
            assert!(all_key_chars(&clean) && all_alnum(&clean) && all_lower_digit(&clean), "len {len}");
            for pos in 0..len {
                for &b in &odd {
                    let mut v = clean.clone();
                    v[pos] = b;
                    assert_eq!(all_key_chars(&v), word(b), "key {b:#x} at {pos} of {len}");
                    assert_eq!(all_alnum(&v), b.is_ascii_alphanumeric(), "alnum {b:#x} at {pos} of {len}");
                }
            }
        }
    }

    proptest! {
        /// The header's fast path relies on this: `Token::parse` accepts, or
        /// fails only on the checksum, nothing but a non-empty run of the key
        /// alphabet.
        #[test]
        fn parsed_or_bad_checksum_means_key_alphabet(
            edits in proptest::collection::vec((0usize..73, any::<u8>()), 0..3),
        ) {
            let f = TokenFormat::default();
            let k = f.generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut v = k.secret.expose_secret().as_bytes().to_vec();
            for (at, b) in edits {
                v[at] = b;
            }
            if matches!(Token::parse(&v, &f), Ok(_) | Err(TokenError::BadChecksum)) {
                prop_assert!(!v.is_empty() && all_key_chars(&v));
            }
        }
    }

    #[test]
    fn two_keys_differ() {
        let (_, a) = fresh();
        let (_, b) = fresh();
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn checks_run_in_order_length_alphabet_checksum() {
        let (f, k) = fresh();
        let good = k.secret.expose_secret().as_bytes().to_vec();
        assert_eq!(Token::parse(&good[..72], &f).unwrap_err(), TokenError::WrongLength { actual: 72, expected: 73 });
        let mut bad = good.clone();
        bad[0] = b'x';
        assert_eq!(Token::parse(&bad, &f).unwrap_err(), TokenError::WrongPrefix);
        let mut bad = good.clone();
        bad[5] = b'A'; // upper case is not allowed in the id
        assert_eq!(Token::parse(&bad, &f).unwrap_err(), TokenError::InvalidCharacter { position: 5 });
        let mut bad = good.clone();
        bad[23] = b'x';
        assert_eq!(Token::parse(&bad, &f).unwrap_err(), TokenError::InvalidCharacter { position: 23 });
        let mut bad = good.clone();
        bad[40] = b'-';
        assert_eq!(Token::parse(&bad, &f).unwrap_err(), TokenError::InvalidCharacter { position: 40 });
        let mut bad = good.clone();
        bad[40] = if bad[40] == b'a' { b'b' } else { b'a' };
        assert_eq!(Token::parse(&bad, &f).unwrap_err(), TokenError::BadChecksum);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let (f, k) = fresh();
        let good = k.secret.expose_secret().as_bytes().to_vec();
        for i in 3..good.len() {
            let mut bad = good.clone();
            bad[i] = if bad[i] == b'7' { b'8' } else { b'7' };
            if i == 23 {
                continue;
            }
            assert!(Token::parse(&bad, &f).is_err(), "typo at {i} accepted");
        }
    }

    #[test]
    fn custom_prefix() {
        let f = TokenFormat::new("acme_live_").unwrap();
        let k = f.generate().unwrap();
        assert!(k.secret.expose_secret().starts_with("acme_live_"));
        assert!(Token::parse(k.secret.expose_secret().as_bytes(), &f).is_ok());
        assert_eq!(
            Token::parse(k.secret.expose_secret().as_bytes(), &TokenFormat::default()).unwrap_err(),
            TokenError::WrongLength { actual: 80, expected: 73 }
        );
        assert_eq!(TokenFormat::new(""), Err(PrefixError::Length));
        assert_eq!(TokenFormat::new("a".repeat(17).as_str()), Err(PrefixError::Length));
        assert_eq!(TokenFormat::new("ak-"), Err(PrefixError::Alphabet));
    }

    #[test]
    fn key_id_validation() {
        assert!(KeyId::parse("aje5qvnhl67v12345678").is_ok());
        assert_eq!(KeyId::parse("short"), Err(KeyIdError::Length));
        assert_eq!(KeyId::parse("AJE5QVNHL67V12345678"), Err(KeyIdError::Alphabet));
        let id = KeyId::generate().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<KeyId>("\"nope\"").is_err());
    }

    #[test]
    fn errors_and_debug_never_echo_the_secret() {
        let (f, k) = fresh();
        let s = k.secret.expose_secret();
        let t = Token::parse(s.as_bytes(), &f).unwrap();
        assert!(!format!("{t:?}").contains(&s[24..67]));
        let mut bad = s.as_bytes().to_vec();
        bad[30] ^= 1;
        let e = Token::parse(&bad, &f).unwrap_err();
        assert!(!e.to_string().contains(&s[24..67]));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Token::parse(&bytes, &TokenFormat::default());
        }

        #[test]
        fn round_trip_for_any_prefix(prefix in "[A-Za-z0-9_]{1,16}") {
            let f = TokenFormat::new(&prefix).unwrap();
            let k = f.generate().unwrap();
            let t = Token::parse(k.secret.expose_secret().as_bytes(), &f).unwrap();
            prop_assert_eq!(t.id(), &k.id);
            prop_assert_eq!(k.secret.len(), f.token_len());
        }

        #[test]
        fn flipping_any_body_byte_is_rejected(pos in 3usize..73, delta in 1u8..=255) {
            let f = TokenFormat::default();
            let k = f.generate().unwrap();
            let mut bad = k.secret.expose_secret().as_bytes().to_vec();
            bad[pos] = bad[pos].wrapping_add(delta);
            prop_assert!(Token::parse(&bad, &f).is_err());
        }
    }
}
