//! [`ControlError`], and the bounds of the control values it states. The
//! control types publish these bounds as their own constants
//! (`Metadata::MAX_BYTES`, …); they are defined here, where the refusal that
//! names them is, so the error depends on no control and every control on
//! the error.

/// Largest metadata object, serialized, in bytes.
pub(super) const METADATA_MAX_BYTES: usize = 4096;
/// Deepest nesting of a metadata object.
pub(super) const METADATA_MAX_DEPTH: usize = 8;
/// Longest external owner id, in characters.
pub(super) const EXTERNAL_ID_MAX_LEN: usize = 128;
/// Most entries of an IP allow-list.
pub(super) const IP_ALLOW_LIST_MAX_ENTRIES: usize = 64;
/// Most rate limits of one key.
pub(super) const RATE_LIMITS_MAX: usize = 8;

/// Why a control value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Metadata is not a JSON object, too large or too deeply nested.
    #[error(
        "metadata must be a JSON object of at most {METADATA_MAX_BYTES} bytes nested at most {METADATA_MAX_DEPTH} levels deep"
    )]
    Metadata,
    /// External owner id empty, too long or outside the allowed characters.
    #[error("external id must be 1 to {EXTERNAL_ID_MAX_LEN} characters of A-Z a-z 0-9 _ . : @ -")]
    ExternalId,
    /// A CIDR range or address that does not parse, or too many of them.
    #[error(
        "IP allow-list entry {0:?} is not an address or CIDR range (or the list has more than {IP_ALLOW_LIST_MAX_ENTRIES} entries)"
    )]
    IpRange(String),
    /// A rate limit that does not parse or is out of range.
    #[error("rate limit {0:?} must look like NAME=COUNT/PERIOD[:burst=N], e.g. api=100/1s:burst=20")]
    RateLimit(String),
    /// Two rate limits with one name, or more than the maximum.
    #[error("rate limits must have distinct names and be at most {RATE_LIMITS_MAX} per key")]
    RateLimits,
    /// A credit or refill amount, refill time or period that is out of range.
    #[error("credits: {0}")]
    Credits(&'static str),
}
