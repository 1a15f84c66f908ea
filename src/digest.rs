//! Peppered digests: `HMAC-SHA256(pepper, secret)`, versioned peppers, and a
//! [`Digest`] type that can only be compared in constant time.
//!
//! The pepper is a server-side secret kept outside the key store (environment,
//! secret manager). A store dump without the pepper cannot be used to test
//! guesses. Each record remembers the pepper version it was made with; a
//! [`Peppers`] set holds the current pepper (for new keys) and older ones (to
//! verify existing keys), so peppers rotate without reissuing keys.
//!
//! ```
//! use api_keys::{Pepper, Peppers};
//!
//! let old = Pepper::new(1, [7u8; 32])?;
//! let new = Pepper::new(2, [9u8; 32])?;
//! let peppers = Peppers::new(new, [old])?;
//! let (version, digest) = peppers.digest_current(b"secret");
//! assert_eq!(version, 2);
//! assert!(peppers.verify(2, b"secret", &digest).unwrap());
//! # Ok::<(), api_keys::PepperError>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The message whose HMAC under a pepper is its fingerprint. It contains
/// spaces and a colon, so it is never a key (keys are token68).
const FINGERPRINT_LABEL: &[u8] = b"api-keys: pepper fingerprint v1";

// Shortest accepted pepper, in bytes.
pub(crate) const MIN_PEPPER_LEN: usize = 32;

/// A 32-byte HMAC-SHA256 digest of a secret.
///
/// `Debug` shows only a redacted marker; equality is constant-time
/// ([`subtle::ConstantTimeEq`]). Serialises as standard base64 so stores can
/// keep it as text.
#[derive(Clone, Copy)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps raw digest bytes (as read back from a store).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for writing to a store.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 text of the digest (for stores that keep text).
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses [`Digest::to_base64`] output.
    ///
    /// # Errors
    /// [`DigestError`] when the text is not base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, DigestError> {
        let mut out = [0u8; 32];
        // 32 bytes encode to 44 characters; anything else is wrong.
        if text.len() != 44 {
            return Err(DigestError);
        }
        let mut buf = [0u8; 33];
        let n = B64.decode_slice(text, &mut buf).map_err(|_| DigestError)?;
        if n != 32 {
            return Err(DigestError);
        }
        out.copy_from_slice(&buf[..32]);
        Ok(Self(out))
    }
}

impl ConstantTimeEq for Digest {
    /// Four 64-bit words compared with `subtle` (instead of 32 bytes one by
    /// one): same guarantee, a quarter of the work.
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let word = |d: &[u8; 32], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[8 * i..8 * i + 8]);
            u64::from_ne_bytes(w)
        };
        (0..4).fold(subtle::Choice::from(1), |acc, i| acc & word(&self.0, i).ct_eq(&word(&other.0, i)))
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Digest {}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest([REDACTED])")
    }
}

/// Text that is not a base64 digest of 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("digest must be standard base64 of exactly 32 bytes")]
pub struct DigestError;

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a pepper or pepper set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    /// The pepper is shorter than [`Pepper::MIN_LEN`] bytes.
    #[error("pepper must be at least {MIN_PEPPER_LEN} bytes, got {0}")]
    TooShort(usize),
    /// Two peppers in one set share a version number.
    #[error("pepper version {0} appears more than once")]
    DuplicateVersion(u32),
    /// The pepper text is not valid base64.
    #[error("pepper is not valid base64")]
    Base64,
}

/// A versioned server secret used as the HMAC key.
///
/// Its bytes are zeroized on drop; `Debug` shows only the version. The keyed
/// HMAC state is computed once here, so a verification never re-keys: for
/// short messages (every key in this crate's format) it runs exactly the two
/// SHA-256 compressions HMAC needs, from the precomputed inner and outer
/// states ([`Pepper::digest`]); longer messages use the `hmac` crate's keyed
/// state.
#[derive(Clone)]
pub struct Pepper {
    version: u32,
    keyed: HmacSha256,
    states: Zeroizing<PadStates>,
    _bytes: Zeroizing<Vec<u8>>,
}

/// SHA-256 states after absorbing `key ⊕ ipad` and `key ⊕ opad`.
#[derive(Clone, Default, zeroize::Zeroize)]
struct PadStates {
    inner: [u32; 8],
    outer: [u32; 8],
}

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Longest message hashed by the two-compression fast path: 64 bytes of
/// block minus the 0x80 marker and the 8-byte length.
const ONE_BLOCK_MAX: usize = 55;

impl PadStates {
    fn new(key: &[u8]) -> Self {
        use sha2::Digest as _;
        // HMAC (RFC 2104): keys longer than the block are hashed first.
        let mut block = Zeroizing::new([0u8; 64]);
        if key.len() > 64 {
            block[..32].copy_from_slice(&sha2::Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = Zeroizing::new([0u8; 64]);
        let mut states = Self { inner: SHA256_IV, outer: SHA256_IV };
        for (b, p) in block.iter().zip(pad.iter_mut()) {
            *p = b ^ 0x36;
        }
        sha2::block_api::compress256(&mut states.inner, &[*pad]);
        for (b, p) in block.iter().zip(pad.iter_mut()) {
            *p = b ^ 0x5c;
        }
        sha2::block_api::compress256(&mut states.outer, &[*pad]);
        states
    }

    /// `HMAC-SHA256` of a message of at most [`ONE_BLOCK_MAX`] bytes: one
    /// compression from the inner state, one from the outer state.
    #[inline]
    fn mac_one_block(&self, msg: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        block[..msg.len()].copy_from_slice(msg);
        block[msg.len()] = 0x80;
        let bits = (64 + msg.len() as u64) * 8;
        block[56..].copy_from_slice(&bits.to_be_bytes());
        let mut inner = self.inner;
        sha2::block_api::compress256(&mut inner, std::slice::from_ref(&block));
        // The block held the presented secret: wipe this copy.
        zeroize::Zeroize::zeroize(&mut block);

        let mut outer_block = [0u8; 64];
        for (chunk, word) in outer_block[..32].chunks_exact_mut(4).zip(inner) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        zeroize::Zeroize::zeroize(&mut inner);
        outer_block[32] = 0x80;
        outer_block[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
        let mut outer = self.outer;
        sha2::block_api::compress256(&mut outer, std::slice::from_ref(&outer_block));
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(outer) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pepper").field("version", &self.version).finish_non_exhaustive()
    }
}

impl Pepper {
    /// Shortest accepted pepper, in bytes.
    pub const MIN_LEN: usize = MIN_PEPPER_LEN;

    /// A pepper with a version number and at least 32 bytes of key material.
    ///
    /// # Errors
    /// [`PepperError::TooShort`] for fewer than 32 bytes.
    pub fn new(version: u32, bytes: impl AsRef<[u8]>) -> Result<Self, PepperError> {
        let bytes = Zeroizing::new(bytes.as_ref().to_vec());
        if bytes.len() < MIN_PEPPER_LEN {
            return Err(PepperError::TooShort(bytes.len()));
        }
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(&bytes).map_err(|_| PepperError::TooShort(bytes.len()))?;
        let states = Zeroizing::new(PadStates::new(&bytes));
        Ok(Self { version, keyed, states, _bytes: bytes })
    }

    /// Decodes a base64 pepper (as in `API_KEYS_PEPPER`).
    ///
    /// # Errors
    /// [`PepperError::Base64`] or [`PepperError::TooShort`].
    pub fn from_base64(version: u32, text: &str) -> Result<Self, PepperError> {
        let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| PepperError::Base64)?);
        Self::new(version, &*bytes)
    }

    /// A fresh random 32-byte pepper.
    ///
    /// # Errors
    /// [`crate::RandomError`] if the OS generator fails.
    pub fn generate(version: u32) -> Result<Self, crate::RandomError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::random::fill_random(bytes.as_mut())?;
        Self::new(version, bytes.as_ref()).map_err(|_| crate::RandomError)
    }

    /// The pepper's bytes as base64, e.g. to save a generated pepper.
    /// Treat the result as a secret.
    #[must_use]
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(&*self._bytes))
    }

    /// The version stored beside digests made with this pepper.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The pepper's public fingerprint: `HMAC-SHA256(pepper, label)` with a
    /// fixed label no key can equal. Stores keep it per version
    /// ([`crate::KeyStore::pepper_fingerprint`]) so a wrong pepper is
    /// refused at start ([`crate::KeyManager::check_peppers`]) instead of
    /// answering "wrong secret" to every key. It reveals nothing about the
    /// pepper.
    #[must_use]
    pub fn fingerprint(&self) -> Digest {
        self.digest(FINGERPRINT_LABEL)
    }

    /// `HMAC-SHA256(pepper, secret)`.
    ///
    /// Secrets of up to 55 bytes (all keys in this crate's format) take two
    /// SHA-256 compressions from precomputed states — the minimum HMAC
    /// allows; longer ones go through the `hmac` crate. Both paths are
    /// checked against each other and the RFC 4231 vectors in the tests.
    #[must_use]
    pub fn digest(&self, secret: &[u8]) -> Digest {
        if secret.len() <= ONE_BLOCK_MAX {
            return Digest(self.states.mac_one_block(secret));
        }
        let mut mac = self.keyed.clone();
        mac.update(secret);
        Digest(mac.finalize().into_bytes().into())
    }
}

/// The current pepper plus older ones still accepted for verification.
#[derive(Clone, Debug)]
pub struct Peppers {
    current: Pepper,
    older: Vec<Pepper>,
}

impl Peppers {
    /// A set with `current` for new digests and `older` for existing ones.
    ///
    /// # Errors
    /// [`PepperError::DuplicateVersion`] when two peppers share a version.
    pub fn new(current: Pepper, older: impl IntoIterator<Item = Pepper>) -> Result<Self, PepperError> {
        let older: Vec<Pepper> = older.into_iter().collect();
        let mut seen = vec![current.version];
        for p in &older {
            if seen.contains(&p.version) {
                return Err(PepperError::DuplicateVersion(p.version));
            }
            seen.push(p.version);
        }
        Ok(Self { current, older })
    }

    /// A set holding one pepper.
    #[must_use]
    pub fn single(current: Pepper) -> Self {
        Self { current, older: Vec::new() }
    }

    /// The pepper new digests are made with.
    #[must_use]
    pub fn current(&self) -> &Pepper {
        &self.current
    }

    /// The pepper with this version, if held.
    #[must_use]
    pub fn get(&self, version: u32) -> Option<&Pepper> {
        if self.current.version == version {
            return Some(&self.current);
        }
        self.older.iter().find(|p| p.version == version)
    }

    /// Every pepper held, current first.
    pub fn iter(&self) -> impl Iterator<Item = &Pepper> {
        std::iter::once(&self.current).chain(self.older.iter())
    }

    /// Digest under the current pepper, with its version.
    #[must_use]
    pub fn digest_current(&self, secret: &[u8]) -> (u32, Digest) {
        (self.current.version, self.current.digest(secret))
    }

    /// Constant-time check of `secret` against `expected` under pepper
    /// `version`; `None` if that version is not held.
    #[must_use]
    pub fn verify(&self, version: u32, secret: &[u8], expected: &Digest) -> Option<bool> {
        self.get(version).map(|p| p.digest(secret).ct_eq(expected).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2_shape() {
        // RFC 4231 test case 2 uses a short key; check our HMAC plumbing with a
        // 32-byte key against an independently keyed computation instead.
        let p = Pepper::new(1, [0x0bu8; 32]).unwrap();
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&[0x0bu8; 32]).unwrap();
        mac.update(b"Hi There");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(p.digest(b"Hi There").as_bytes(), &expected);
    }

    fn reference(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn fast_path_matches_the_hmac_crate_for_every_length() {
        for key_len in [32usize, 63, 64, 65, 100] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 31 + 7) as u8).collect();
            let p = Pepper::new(1, &key).unwrap();
            for len in 0..=200 {
                let msg: Vec<u8> = (0..len).map(|i| (i * 13 + key_len) as u8).collect();
                assert_eq!(p.digest(&msg).as_bytes(), &reference(&key, &msg), "key {key_len} msg {len}");
            }
        }
    }

    #[test]
    fn rfc4231_vectors_with_long_keys() {
        // RFC 4231 test case 6: 131-byte key, hashed before use.
        let p = Pepper::new(1, [0xaa; 131]).unwrap();
        let d = p.digest(b"Test Using Larger Than Block-Size Key - Hash Key First");
        let hex: String = d.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
        // Test case 7 (long message): goes through the hmac crate path.
        let d = p.digest(b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.");
        let hex: String = d.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    }

    proptest::proptest! {
        #[test]
        fn fast_path_matches_for_random_keys(key in proptest::collection::vec(proptest::prelude::any::<u8>(), 32..80),
                                             msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..56)) {
            let p = Pepper::new(1, &key).unwrap();
            let got = *p.digest(&msg).as_bytes();
            proptest::prop_assert_eq!(got, reference(&key, &msg));
        }
    }

    #[test]
    fn digest_equality_sees_every_byte() {
        let base = Digest::from_bytes([7u8; 32]);
        assert_eq!(base, Digest::from_bytes([7u8; 32]));
        for i in 0..32 {
            let mut other = [7u8; 32];
            other[i] ^= 0x80;
            assert_ne!(base, Digest::from_bytes(other), "byte {i}");
        }
    }

    #[test]
    fn short_peppers_are_refused() {
        assert_eq!(Pepper::new(1, [0u8; 31]).unwrap_err(), PepperError::TooShort(31));
        assert_eq!(Pepper::from_base64(1, "not base64!").unwrap_err(), PepperError::Base64);
        assert_eq!(Pepper::from_base64(1, "AAAA").unwrap_err(), PepperError::TooShort(3));
    }

    #[test]
    fn rotation_keeps_old_digests_verifiable() {
        let old = Pepper::new(1, [1u8; 32]).unwrap();
        let d_old = old.digest(b"k");
        let set = Peppers::new(Pepper::new(2, [2u8; 32]).unwrap(), [old]).unwrap();
        assert_eq!(set.verify(1, b"k", &d_old), Some(true));
        assert_eq!(set.verify(2, b"k", &d_old), Some(false));
        assert_eq!(set.verify(3, b"k", &d_old), None);
        assert_eq!(set.iter().map(Pepper::version).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let a = Pepper::new(1, [1u8; 32]).unwrap();
        let b = Pepper::new(1, [2u8; 32]).unwrap();
        assert_eq!(Peppers::new(a, [b]).unwrap_err(), PepperError::DuplicateVersion(1));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let p = Pepper::new(7, [0xABu8; 32]).unwrap();
        let d = p.digest(b"x");
        assert_eq!(format!("{d:?}"), "Digest([REDACTED])");
        let dbg = format!("{p:?}");
        assert!(dbg.contains("version: 7"));
        assert!(!dbg.contains("171") && !dbg.to_lowercase().contains("ab"));
    }

    #[test]
    fn digest_base64_round_trip_and_errors() {
        let d = Pepper::new(1, [3u8; 32]).unwrap().digest(b"x");
        assert_eq!(Digest::from_base64(&d.to_base64()).unwrap(), d);
        assert_eq!(Digest::from_base64("AAAA"), Err(DigestError));
        assert_eq!(Digest::from_base64(&"A".repeat(44)), Err(DigestError));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn generated_peppers_differ_and_round_trip() {
        let a = Pepper::generate(1).unwrap();
        let b = Pepper::from_base64(1, &a.to_base64()).unwrap();
        assert_eq!(a.digest(b"s"), b.digest(b"s"));
        assert_ne!(a.digest(b"s"), Pepper::generate(1).unwrap().digest(b"s"));
    }
}
