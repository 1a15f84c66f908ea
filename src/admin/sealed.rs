//! The secret of a create or reissue delivered encrypted to the caller's
//! OpenPGP key (`pgpKey`, REST and gRPC; the library's `pgp` feature).
//!
//! The order is fixed: the key is parsed and checked ([`recipient`], a
//! bad key is a code-3 refusal) while the request is prepared, **before**
//! anything changes; the API key is then made; its secret is then
//! encrypted ([`seal`]) and only the armored message is answered. The
//! plain secret is read in place from the [`CreatedKey`] (zeroized when it
//! drops) and is never copied, logged or answered on this path.
//!
//! Idempotency: the record of a create or reissue keeps, as without a
//! `pgpKey`, only the key as made (its response snapshot), never the
//! secret nor the encrypted message. A replay answers `{"apiKey": …}`
//! without `secret` and without `encryptedSecret`: the message is not
//! kept, so it cannot be shown again (a client that lost it reissues the
//! key). The request's fingerprint covers the body and so the `pgpKey`: the
//! same `Idempotency-Key` with another key is a mismatch (code 9).

use super::error::{ApiError, Code};
use crate::record::CreatedKey;

/// A checked OpenPGP key to encrypt a new secret to.
#[cfg(feature = "pgp")]
pub(crate) type Recipient = crate::pgp::PgpRecipient;

/// Without the `pgp` feature no recipient can be made.
#[cfg(not(feature = "pgp"))]
#[derive(Debug)]
pub(crate) enum Recipient {}

/// The recipient a request's `field` (`pgpKey`, `pgp_key`) names, checked
/// before anything changes: `None` when absent or empty (proto3 unset).
///
/// # Errors
/// Code 3 naming `field` for a malformed, expired, revoked or
/// signing-only key, or when this build has no OpenPGP support.
pub(crate) fn recipient(field: &str, pgp_key: Option<&str>) -> Result<Option<Recipient>, ApiError> {
    let Some(text) = pgp_key.filter(|t| !t.trim().is_empty()) else { return Ok(None) };
    parse(field, text).map(Some)
}

#[cfg(feature = "pgp")]
fn parse(field: &str, text: &str) -> Result<Recipient, ApiError> {
    let bad = |e: crate::pgp::PgpError| ApiError::invalid(format!("{field}: {e}"));
    let recipient = Recipient::parse(text).map_err(bad)?;
    // A trial encryption, so that encrypting the real secret after the key
    // is made cannot fail on the key (an algorithm rPGP cannot encrypt with).
    recipient.encrypt(b"probe").map_err(bad)?;
    Ok(recipient)
}

#[cfg(not(feature = "pgp"))]
fn parse(field: &str, _text: &str) -> Result<Recipient, ApiError> {
    Err(ApiError::invalid(format!("{field}: this server is built without OpenPGP support (the `pgp` feature)")))
}

/// The secret of `created` encrypted to `to`: an ASCII-armored message.
///
/// # Errors
/// Code 13 (never expected after [`recipient`]'s trial encryption): the key
/// was made but its secret cannot be shown; the message says so and names it.
#[cfg(feature = "pgp")]
pub(crate) fn seal(to: &Recipient, created: &CreatedKey) -> Result<String, ApiError> {
    to.encrypt(created.secret.expose_secret().as_bytes()).map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!(
                "key {} was made but its secret could not be encrypted ({e}); delete or reissue it",
                created.api_key.id
            ),
        )
    })
}

#[cfg(not(feature = "pgp"))]
pub(crate) fn seal(to: &Recipient, _created: &CreatedKey) -> Result<String, ApiError> {
    let _ = Code::Internal;
    match *to {}
}
