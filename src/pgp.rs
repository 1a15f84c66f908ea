//! One-time secrets delivered encrypted with OpenPGP (feature `pgp`).
//!
//! A create or reissue may name an OpenPGP public key (as the cloud's
//! Terraform resource's `pgp_key` argument): the answer then carries only
//! the secret encrypted to that key, as an ASCII-armored OpenPGP message
//! that `gpg --decrypt` opens, and never the plain secret.
//!
//! [`PgpRecipient::parse`] takes the key — ASCII-armored
//! (`-----BEGIN PGP PUBLIC KEY BLOCK-----`) or the base64 of the binary key
//! (`gpg --export KEYID | base64`) — and refuses, **before anything is
//! made**, a key that is malformed, expired, revoked, or has no valid
//! encryption-capable (sub)key (a signing-only key): the caller validates
//! first, then creates the API key, then encrypts
//! ([`PgpRecipient::encrypt`]), so a bad key never leaves a key behind.
//!
//! What counts as valid: only self-signatures that verify with the primary
//! key are read (third-party certifications are ignored, not refused); the
//! primary key is revoked by a verified key revocation signature, and
//! expires at the key expiration time of its newest self-signature; a
//! subkey counts when its newest verified binding signature gives it an
//! encryption flag (communications or storage), no verified subkey
//! revocation names it, it has not expired, and its algorithm can encrypt.
//! The message is encrypted to the newest such subkey (or to the primary
//! key when it is the only one flagged for encryption), as SEIPD v1 with
//! AES-256, which every GnuPG 2.x reads.
//!
//! The crate is [rPGP](https://github.com/rpgp/rpgp) (`pgp`, MIT OR
//! Apache-2.0): pure Rust, no system library, RFC 9580 with the v4 keys
//! GnuPG makes. Sequoia (`sequoia-openpgp`) was the other candidate; its
//! default backend links the system's nettle (a C library), and it is
//! LGPL-2.0-or-later.
//!
//! The plain secret is only read from the caller's buffer (no copy is
//! kept by this module); rPGP's own working buffers during encryption are
//! beyond its reach. Nothing here logs or formats a secret: [`PgpError`]
//! never carries one, and a [`PgpRecipient`]'s `Debug` shows only the
//! key's fingerprint.

use std::fmt;
use std::time::{Duration, SystemTime};

use ::pgp::composed::{ArmorOptions, Deserializable as _, MessageBuilder, SignedPublicKey, SignedPublicSubKey};
use ::pgp::crypto::sym::SymmetricKeyAlgorithm;
use ::pgp::packet::Signature;
use ::pgp::types::{KeyDetails as _, Tag};
use base64::Engine as _;

/// The longest key text accepted: 64 KiB (a 4096-bit RSA key with a few
/// subkeys and user ids is under 10 KiB).
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// Why an OpenPGP public key was refused, or encryption failed. Never
/// carries a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgpError {
    /// Not an OpenPGP public key: bad armor or base64, not a public key
    /// block, too long, or a self-signature that does not verify.
    #[error("the PGP key is not a valid OpenPGP public key: {0}")]
    Malformed(String),
    /// The key (or every encryption subkey it has) has expired.
    #[error("the PGP key has expired")]
    Expired,
    /// The key (or every encryption subkey it has) is revoked.
    #[error("the PGP key is revoked")]
    Revoked,
    /// No (sub)key of the key may encrypt: a signing-only key.
    #[error("the PGP key has no encryption-capable key (a signing-only key?)")]
    NoEncryptionKey,
    /// Encrypting failed (an unsupported algorithm of the key).
    #[error("could not encrypt to the PGP key: {0}")]
    Encrypt(String),
}

/// An OpenPGP public key checked to be usable for encryption now.
#[derive(Clone)]
pub struct PgpRecipient {
    key: SignedPublicKey,
    /// The subkey to encrypt to; `None`: the primary key.
    subkey: Option<usize>,
}

impl fmt::Debug for PgpRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgpRecipient").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl PgpRecipient {
    /// Parses and checks `text` (ASCII-armored, or base64 of the binary
    /// key) as a key to encrypt to now.
    ///
    /// # Errors
    /// See [`PgpError`]: malformed, expired, revoked, or no encryption key.
    pub fn parse(text: &str) -> Result<Self, PgpError> {
        Self::parse_at(text, SystemTime::now())
    }

    /// [`PgpRecipient::parse`], checking validity at `now`.
    ///
    /// # Errors
    /// As [`PgpRecipient::parse`].
    pub fn parse_at(text: &str, now: SystemTime) -> Result<Self, PgpError> {
        let key = read_key(text)?;
        let primary = &key.primary_key;
        let verified_revocation = key.details.revocation_signatures.iter().any(|s| s.verify_key(primary).is_ok());
        if verified_revocation {
            return Err(PgpError::Revoked);
        }
        // The newest verified self-signature: user id certifications and
        // direct key signatures.
        let mut self_sigs: Vec<&Signature> =
            key.details.direct_signatures.iter().filter(|s| s.verify_key(primary).is_ok()).collect();
        for user in &key.details.users {
            self_sigs.extend(
                user.signatures.iter().filter(|s| s.verify_certification(primary, Tag::UserId, &user.id).is_ok()),
            );
        }
        let newest = self_sigs.iter().copied().max_by_key(|s| s.created().map(|t| t.as_secs()));
        let Some(newest) = newest else {
            return Err(PgpError::Malformed("no valid self-signature".into()));
        };
        let created = SystemTime::from(primary.created_at());
        if expired(created, newest.key_expiration_time(), now) {
            return Err(PgpError::Expired);
        }
        let mut best: Option<(u32, usize)> = None;
        let (mut saw_expired, mut saw_revoked) = (false, false);
        for (i, sub) in key.public_subkeys.iter().enumerate() {
            match subkey_state(primary, sub, now) {
                SubkeyState::Usable => {
                    let at = sub.key.created_at().as_secs();
                    if best.is_none_or(|(b, _)| at >= b) {
                        best = Some((at, i));
                    }
                }
                SubkeyState::Expired => saw_expired = true,
                SubkeyState::Revoked => saw_revoked = true,
                SubkeyState::NotForEncryption => {}
            }
        }
        if let Some((_, i)) = best {
            return Ok(Self { key, subkey: Some(i) });
        }
        let flags = newest.key_flags();
        if (flags.encrypt_comms() || flags.encrypt_storage()) && primary.algorithm().can_encrypt() {
            return Ok(Self { key, subkey: None });
        }
        Err(if saw_revoked {
            PgpError::Revoked
        } else if saw_expired {
            PgpError::Expired
        } else {
            PgpError::NoEncryptionKey
        })
    }

    /// The primary key's fingerprint, as hex.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.fingerprint())
    }

    /// `secret` encrypted to the key: an ASCII-armored OpenPGP message.
    ///
    /// # Errors
    /// [`PgpError::Encrypt`] when the key's algorithm cannot be used.
    pub fn encrypt(&self, secret: &[u8]) -> Result<String, PgpError> {
        let fail = |e: ::pgp::errors::Error| PgpError::Encrypt(e.to_string());
        let rng = rand_core::OsRng;
        let mut builder = MessageBuilder::from_reader("", secret).seipd_v1(rng, SymmetricKeyAlgorithm::AES256);
        match self.subkey.and_then(|i| self.key.public_subkeys.get(i)) {
            Some(sub) => builder.encrypt_to_key(rng, sub).map_err(fail)?,
            None => builder.encrypt_to_key(rng, &self.key).map_err(fail)?,
        };
        builder.to_armored_string(rng, ArmorOptions::default()).map_err(fail)
    }
}

/// Reads one public key block, armored or base64 of the binary form.
fn read_key(text: &str) -> Result<SignedPublicKey, PgpError> {
    let malformed = |what: &str| PgpError::Malformed(what.to_owned());
    if text.len() > MAX_KEY_LEN {
        return Err(malformed("longer than 64 KiB"));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(malformed("empty"));
    }
    if text.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return SignedPublicKey::from_string(text).map(|(k, _)| k).map_err(|e| PgpError::Malformed(e.to_string()));
    }
    if text.starts_with("-----BEGIN") {
        return Err(malformed("not a PGP public key block (a secret key or a message?)"));
    }
    if text.starts_with("keybase:") {
        return Err(malformed("keybase: names are not supported; give the key itself"));
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let binary = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| malformed("neither ASCII armor nor base64 of a binary key"))?;
    SignedPublicKey::from_bytes(&binary[..]).map_err(|e| PgpError::Malformed(e.to_string()))
}

/// Whether a key made at `created` with expiration `after` (absent or 0:
/// never) has expired at `now`.
fn expired(created: SystemTime, after: Option<::pgp::types::Duration>, now: SystemTime) -> bool {
    match after.map(|d| d.as_secs()).filter(|&s| s != 0) {
        Some(secs) => created + Duration::from_secs(secs.into()) <= now,
        None => false,
    }
}

enum SubkeyState {
    Usable,
    NotForEncryption,
    Expired,
    Revoked,
}

/// What a subkey is good for at `now`, from its verified signatures.
fn subkey_state(primary: &::pgp::packet::PublicKey, sub: &SignedPublicSubKey, now: SystemTime) -> SubkeyState {
    let verified: Vec<&Signature> =
        sub.signatures.iter().filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok()).collect();
    let binding = verified
        .iter()
        .copied()
        .filter(|s| s.typ() == Some(::pgp::packet::SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(|t| t.as_secs()));
    let Some(binding) = binding else { return SubkeyState::NotForEncryption };
    let flags = binding.key_flags();
    if !(flags.encrypt_comms() || flags.encrypt_storage()) || !sub.key.algorithm().can_encrypt() {
        return SubkeyState::NotForEncryption;
    }
    let revoked = verified.iter().any(|s| s.typ() == Some(::pgp::packet::SignatureType::SubkeyRevocation));
    if revoked {
        return SubkeyState::Revoked;
    }
    if expired(SystemTime::from(sub.key.created_at()), binding.key_expiration_time(), now) {
        return SubkeyState::Expired;
    }
    SubkeyState::Usable
}

#[cfg(test)]
mod tests {
    use ::pgp::composed::{
        EncryptionCaps, KeyType, Message, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
    };
    use ::pgp::crypto::ecc_curve::ECCCurve;
    use ::pgp::types::Password;

    use super::*;

    /// A fresh key pair: an Ed25519 primary key, and with `encrypting` an
    /// X25519 (ECDH Curve25519) encryption subkey.
    fn generate(encrypting: bool) -> (SignedSecretKey, String) {
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("T <t@x.invalid>".into());
        if encrypting {
            let mut sub = SubkeyParamsBuilder::default();
            sub.key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy)).can_encrypt(EncryptionCaps::All);
            params.subkeys(vec![sub.build().unwrap()]);
        }
        let secret = params.build().unwrap().generate(rand_core::OsRng).unwrap();
        let public = SignedPublicKey::from(secret.clone()).to_armored_string(ArmorOptions::default()).unwrap();
        (secret, public)
    }

    fn decrypt(secret: &SignedSecretKey, armored: &str) -> Vec<u8> {
        let (message, _) = Message::from_string(armored).unwrap();
        let mut plain = message.decrypt(&Password::empty(), secret).unwrap();
        plain.as_data_vec().unwrap()
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/data/pgp/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn encrypts_to_a_generated_key_and_its_secret_key_decrypts() {
        let (secret, public) = generate(true);
        let recipient = PgpRecipient::parse(&public).unwrap();
        let armored = recipient.encrypt(b"AQVN-the-secret").unwrap();
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"), "{armored}");
        assert!(!armored.contains("the-secret"));
        assert_eq!(decrypt(&secret, &armored), b"AQVN-the-secret");
        let debug = format!("{recipient:?}");
        assert!(debug.contains(&recipient.fingerprint()) && !debug.contains("BEGIN"), "{debug}");
    }

    #[test]
    fn base64_of_the_binary_key_is_accepted_as_armor_is() {
        use ::pgp::ser::Serialize as _;
        let (secret, _) = generate(true);
        let binary = SignedPublicKey::from(secret.clone()).to_bytes().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(binary);
        let armored = PgpRecipient::parse(&b64).unwrap().encrypt(b"s3cret").unwrap();
        assert_eq!(decrypt(&secret, &armored), b"s3cret");
        // GnuPG's own, both forms (tests/data/pgp/make.sh).
        let (a, b) = (
            PgpRecipient::parse(&fixture("usable.asc")).unwrap(),
            PgpRecipient::parse(&fixture("usable.b64")).unwrap(),
        );
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), "7BDCB672D652D445B692F7CBB971E58A81EAD5AB");
        assert!(a.subkey.is_some(), "encrypts to the cv25519 subkey");
    }

    #[test]
    fn malformed_keys_are_refused() {
        let (_, public) = generate(true);
        let truncated = &public[..public.len() / 2];
        for bad in [
            "",
            "   ",
            "not a key",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
            truncated,
            "aGVsbG8gd29ybGQ=",
            "keybase:someone",
        ] {
            assert!(matches!(PgpRecipient::parse(bad), Err(PgpError::Malformed(_))), "{bad:?}");
        }
        let message = PgpRecipient::parse(&public).unwrap().encrypt(b"x").unwrap();
        assert!(matches!(PgpRecipient::parse(&message), Err(PgpError::Malformed(_))), "a message is not a key");
        assert!(matches!(PgpRecipient::parse(&"A".repeat(MAX_KEY_LEN + 1)), Err(PgpError::Malformed(_))));
    }

    #[test]
    fn a_signing_only_key_is_refused() {
        let (_, public) = generate(false);
        assert_eq!(PgpRecipient::parse(&public).unwrap_err(), PgpError::NoEncryptionKey);
        assert_eq!(PgpRecipient::parse(&fixture("signing-only.asc")).unwrap_err(), PgpError::NoEncryptionKey);
    }

    #[test]
    fn an_expired_key_is_refused_and_was_usable_before() {
        let key = fixture("expired.asc");
        assert_eq!(PgpRecipient::parse(&key).unwrap_err(), PgpError::Expired);
        // Made 2020-01-01T00:00:00Z, expired a day later.
        let made = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
        assert!(PgpRecipient::parse_at(&key, made + Duration::from_secs(3600)).is_ok());
        assert_eq!(PgpRecipient::parse_at(&key, made + Duration::from_secs(86_400)).unwrap_err(), PgpError::Expired);
    }

    #[test]
    fn a_revoked_key_is_refused() {
        assert_eq!(PgpRecipient::parse(&fixture("revoked.asc")).unwrap_err(), PgpError::Revoked);
    }

    #[test]
    fn errors_never_carry_the_secret_or_the_key() {
        for e in [PgpError::Expired, PgpError::Revoked, PgpError::NoEncryptionKey] {
            assert!(e.to_string().starts_with("the PGP key"), "{e}");
        }
    }
}
