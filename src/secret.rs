//! The one-time secret: zeroized on drop, redacted in `Debug`, never `Display`.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// The full API key a client sends (`Authorization: Api-Key <secret>`).
///
/// It exists only in memory: at creation or reissue it is returned once and
/// never stored (stores keep an HMAC digest). Its buffer is zeroized when the
/// value is dropped, `Debug` prints `Secret([REDACTED])`, it implements neither
/// `Display` nor `Serialize`, and the text is reachable only through the
/// explicit [`Secret::expose_secret`].
///
/// ```
/// use api_keys::Secret;
///
/// let s = Secret::from("AQVN3sHvAWTemWB8QxHkunfG2x4q7G3Oabcdefgh".to_owned());
/// assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
/// assert!(s.expose_secret().starts_with("AQVN"));
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// Longest importable secret, in bytes.
    pub const MAX_IMPORTED_LEN: usize = 512;

    /// Shortest importable secret, in bytes.
    pub const MIN_IMPORTED_LEN: usize = 16;

    /// The secret text. Call this only to hand the key to its owner once.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret: every key of one format has the same).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last six characters, as shown in masked listings (`****rCG02w`).
    /// Shorter secrets give what they have.
    #[must_use]
    pub(crate) fn tail6(&self) -> MaskedKey {
        MaskedKey::from_tail(self.0.as_bytes())
    }
}

impl From<String> for Secret {
    /// Takes ownership of the string; its buffer is zeroized on drop.
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl PartialEq for Secret {
    /// Constant-time for secrets of equal length.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

/// The masked form of a key: its last six characters, shown as `****XXXXXX`.
///
/// For keys in this crate's format the last six characters are the public
/// checksum, so the masked view reveals no bits of the random secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MaskedKey {
    tail: [u8; 6],
    len: u8,
}

impl MaskedKey {
    pub(crate) fn from_tail(bytes: &[u8]) -> Self {
        let start = bytes.len().saturating_sub(6);
        let src = &bytes[start..];
        let mut tail = [0u8; 6];
        tail[..src.len()].copy_from_slice(src);
        // At most 6, fits in u8.
        Self { tail, len: src.len() as u8 }
    }

    /// The masked form of an imported key: six hex digits of its digest.
    ///
    /// An imported secret's last characters are part of the secret itself
    /// (a native key ends in its public checksum), so they are never kept or
    /// shown; the digest prefix still tells keys apart in a listing and
    /// reveals nothing about the secret.
    pub(crate) fn of_digest(digest: &crate::digest::Digest) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut tail = [0u8; 6];
        for (i, b) in digest.as_bytes()[..3].iter().enumerate() {
            tail[2 * i] = HEX[usize::from(b >> 4)];
            tail[2 * i + 1] = HEX[usize::from(b & 0x0F)];
        }
        Self { tail, len: 6 }
    }

    /// The visible characters (at most six).
    #[must_use]
    pub fn tail(&self) -> &str {
        std::str::from_utf8(&self.tail[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "****{}", self.tail())
    }
}

impl fmt::Debug for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskedKey({self})")
    }
}

impl serde::Serialize for MaskedKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MaskedKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let tail = text.strip_prefix("****").unwrap_or(&text);
        if tail.len() > 6 || !tail.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(serde::de::Error::custom("masked key must be `****` and at most six visible ASCII characters"));
        }
        Ok(Self::from_tail(tail.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from("super-secret-value".to_owned());
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    Secret([REDACTED]),\n)");
    }

    #[test]
    fn zeroize_clears_the_buffer() {
        let mut s = Secret::from("abcdef".to_owned());
        s.zeroize();
        assert!(s.is_empty());
    }

    #[test]
    fn masked_view_shows_last_six() {
        let s = Secret::from("AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w".to_owned());
        assert_eq!(s.tail6().to_string(), "****rCG02w");
        assert_eq!(MaskedKey::from_tail(b"abc").to_string(), "****abc");
    }

    #[test]
    fn masked_serde_round_trip_and_rejects_long() {
        let m = MaskedKey::from_tail(b"xxrCG02w");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"****rCG02w\"");
        assert_eq!(serde_json::from_str::<MaskedKey>(&json).unwrap(), m);
        assert!(serde_json::from_str::<MaskedKey>("\"****toolong1\"").is_err());
        assert!(serde_json::from_str::<MaskedKey>("\"**** \\n\"").is_err());
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(Secret::from("a".to_owned()), Secret::from("a".to_owned()));
        assert_ne!(Secret::from("a".to_owned()), Secret::from("b".to_owned()));
    }
}
