//! Opaque page tokens: the position a listing stopped at, encrypted and
//! authenticated, so a caller learns nothing from a token (not the id of a
//! key it may not see) and cannot forge one.
//!
//! A token is base64url of `nonce (12) ‖ ciphertext ‖ tag (16)`: the
//! plaintext (a one-byte listing tag and the position) is XORed with an
//! HMAC-SHA256 keystream (`HMAC(k_enc, nonce ‖ counter)`, a PRF in counter
//! mode) and the nonce and ciphertext are authenticated with
//! `HMAC(k_mac, …)` truncated to 16 bytes (encrypt-then-MAC). Both keys are
//! derived from one 32-byte secret ([`PageTokens::new`]); nodes that share
//! it read each other's tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const NONCE: usize = 12;
const TAG: usize = 16;
/// Longest position a token carries, in bytes.
const MAX_POSITION: usize = 64;

/// Why a page token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid pageToken")]
pub(crate) struct BadToken;

/// Seals and opens page tokens with keys derived from one secret.
pub(crate) struct PageTokens {
    enc: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTokens").finish_non_exhaustive()
    }
}

fn prf(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl PageTokens {
    /// Tokens sealed with keys derived from `secret`.
    pub(crate) fn new(secret: &[u8; 32]) -> Self {
        Self {
            enc: Zeroizing::new(prf(secret, &[b"api-keys page token encryption"])),
            mac: Zeroizing::new(prf(secret, &[b"api-keys page token authentication"])),
        }
    }

    /// Tokens with a random secret (valid in this process only).
    ///
    /// # Errors
    /// When the OS random generator fails.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut())?;
        Ok(Self::new(&secret))
    }

    fn keystream_xor(&self, nonce: &[u8], data: &mut [u8]) {
        for (counter, chunk) in (0u32..).zip(data.chunks_mut(32)) {
            let block = prf(self.enc.as_ref(), &[nonce, &counter.to_be_bytes()]);
            for (b, k) in chunk.iter_mut().zip(block) {
                *b ^= k;
            }
        }
    }

    /// A token for `position` in a listing tagged `tag`; `""` for none.
    pub(crate) fn seal(&self, tag: u8, position: Option<&str>) -> String {
        let Some(position) = position else { return String::new() };
        let mut nonce = [0u8; NONCE];
        if getrandom::fill(&mut nonce).is_err() {
            // Without randomness no token is made: the listing ends here
            // rather than reuse a nonce.
            return String::new();
        }
        let mut out = Vec::with_capacity(NONCE + 1 + position.len() + TAG);
        out.extend_from_slice(&nonce);
        out.push(tag);
        out.extend_from_slice(position.as_bytes());
        self.keystream_xor(&nonce, &mut out[NONCE..]);
        let tag_bytes = prf(self.mac.as_ref(), &[&out]);
        out.extend_from_slice(&tag_bytes[..TAG]);
        B64.encode(out)
    }

    /// The position in a token of a listing tagged `tag`; `None` for `""`.
    ///
    /// # Errors
    /// [`BadToken`] for anything this process's keys did not seal for `tag`.
    pub(crate) fn open(&self, tag: u8, token: &str) -> Result<Option<String>, BadToken> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > 4 * (NONCE + 1 + MAX_POSITION + TAG) / 3 + 4 {
            return Err(BadToken);
        }
        let mut raw = B64.decode(token).map_err(|_| BadToken)?;
        if raw.len() < NONCE + 1 + TAG {
            return Err(BadToken);
        }
        let (body, mac) = raw.split_at(raw.len() - TAG);
        let expected = prf(self.mac.as_ref(), &[body]);
        if !bool::from(expected[..TAG].ct_eq(mac)) {
            return Err(BadToken);
        }
        raw.truncate(raw.len() - TAG);
        let (nonce, data) = raw.split_at_mut(NONCE);
        self.keystream_xor(nonce, data);
        let (found, position) = data.split_first().ok_or(BadToken)?;
        if *found != tag {
            return Err(BadToken);
        }
        String::from_utf8(position.to_vec()).map(Some).map_err(|_| BadToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_hide_the_position_and_refuse_forgeries() {
        let tokens = PageTokens::new(&[7u8; 32]);
        let t = tokens.seal(b'k', Some("ajeuo7ng2p6u00000000"));
        assert_eq!(tokens.open(b'k', &t).unwrap().as_deref(), Some("ajeuo7ng2p6u00000000"));
        assert_ne!(t, tokens.seal(b'k', Some("ajeuo7ng2p6u00000000")), "a fresh nonce each time");
        let raw = B64.decode(&t).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"ajeuo7ng"), "the id is not readable in the token");
        assert_eq!(tokens.open(b'o', &t), Err(BadToken), "another listing's token");
        assert_eq!(PageTokens::new(&[8u8; 32]).open(b'k', &t), Err(BadToken), "another secret");
        let mut flipped = raw.clone();
        flipped[NONCE + 2] ^= 1;
        assert_eq!(tokens.open(b'k', &B64.encode(flipped)), Err(BadToken), "tampered");
        for bad in ["!!", "a", &B64.encode(b"kajeuo7ng2p6u00000000"), &"A".repeat(5000)] {
            assert_eq!(tokens.open(b'k', bad), Err(BadToken), "{bad}");
        }
        assert_eq!(tokens.seal(b'k', None), "");
        assert_eq!(tokens.open(b'k', ""), Ok(None));
    }
}
