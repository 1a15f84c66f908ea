//! Optional per-key controls: owner metadata, an external owner id, an IP
//! allow-list, usage credits with refill and named rate limits.
//!
//! Every control is optional and a key with none of them set carries no
//! [`KeyControls`] at all (`KeyRecord::controls` is `None`), so the verify
//! path of such a key pays one branch. Disabling a key (the reversible
//! counterpart of revoke) is the record's `enabled` flag, not a control here,
//! because the verify path reads it for every key.
//!
//! | control | type | enforced by | rejection |
//! |---|---|---|---|
//! | metadata | [`Metadata`] | — (returned on the principal and in listings) | — |
//! | external owner id | [`ExternalId`] | — (listings filter by it) | — |
//! | IP allow-list | [`IpAllowList`] | the verifier, given the client address | 403 ([`crate::VerifyError::IpNotAllowed`]) |
//! | usage credits | [`Credits`] | one atomic store operation per verify | 429 ([`crate::VerifyError::UsageExceeded`]) |
//! | rate limits | [`RateLimits`] | a rate limiter (per node, or shared) | 429 ([`crate::VerifyError::RateLimited`]) |

mod credits;
mod ip;
mod limiter;
mod metadata;
mod rate;
#[cfg(feature = "redis")]
mod redis_limiter;

use serde::{Deserialize, Serialize};

pub use credits::{CreditSpend, Credits, Refill, RefillPeriod};
pub use ip::IpAllowList;
pub use limiter::{LimitCheck, LimiterError, LocalRateLimiter, RateDecision, RateLimiter, RateStatus};
pub use metadata::{ExternalId, Metadata};
pub use rate::{LimitName, RateLimit, RateLimits};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_limiter::RedisRateLimiter;

/// Why a control value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Metadata is not a JSON object, too large or too deeply nested.
    #[error(
        "metadata must be a JSON object of at most {} bytes nested at most {} levels deep",
        Metadata::MAX_BYTES,
        Metadata::MAX_DEPTH
    )]
    Metadata,
    /// External owner id empty, too long or outside the allowed characters.
    #[error("external id must be 1 to {} characters of A-Z a-z 0-9 _ . : @ -", ExternalId::MAX_LEN)]
    ExternalId,
    /// A CIDR range or address that does not parse, or too many of them.
    #[error("IP allow-list entry {0:?} is not an address or CIDR range (or the list has more than {max} entries)", max = IpAllowList::MAX_ENTRIES)]
    IpRange(String),
    /// A rate limit that does not parse or is out of range.
    #[error("rate limit {0:?} must look like NAME=COUNT/PERIOD[:burst=N], e.g. api=100/1s:burst=20")]
    RateLimit(String),
    /// Two rate limits with one name, or more than the maximum.
    #[error("rate limits must have distinct names and be at most {} per key", RateLimits::MAX_LIMITS)]
    RateLimits,
    /// A credit or refill amount, refill time or period that is out of range.
    #[error("credits: {0}")]
    Credits(&'static str),
}

/// The optional controls of one key. A key without any has none of this
/// (`KeyRecord::controls` is `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KeyControls {
    /// Application-defined JSON object, returned on the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The application's own owner (customer, tenant) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    /// Client addresses the key may be used from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<IpAllowList>,
    /// Usage credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// Named rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
}

impl KeyControls {
    /// No control set, as a constant.
    pub const NONE: Self =
        Self { metadata: None, external_id: None, allowed_ips: None, credits: None, rate_limits: None };

    /// No control set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no control is set (such a record stores `None` instead).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether any control is enforced on verify (allow-list, credits or
    /// rate limits); metadata and the external id are not.
    #[must_use]
    pub fn enforces(&self) -> bool {
        self.allowed_ips.is_some() || self.credits.is_some() || self.rate_limits.is_some()
    }

    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, m: Metadata) -> Self {
        self.metadata = Some(m);
        self
    }

    /// Sets the external owner id.
    #[must_use]
    pub fn external_id(mut self, id: ExternalId) -> Self {
        self.external_id = Some(id);
        self
    }

    /// Sets the IP allow-list.
    #[must_use]
    pub fn allowed_ips(mut self, list: IpAllowList) -> Self {
        self.allowed_ips = Some(list);
        self
    }

    /// Sets the usage credits.
    #[must_use]
    pub fn credits(mut self, c: Credits) -> Self {
        self.credits = Some(c);
        self
    }

    /// Sets the rate limits.
    #[must_use]
    pub fn rate_limits(mut self, l: RateLimits) -> Self {
        self.rate_limits = Some(l);
        self
    }

    /// `Some(self)` unless empty: what a record stores.
    #[must_use]
    pub fn into_option(self) -> Option<std::sync::Arc<Self>> {
        if self.is_empty() { None } else { Some(std::sync::Arc::new(self)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_controls_are_stored_as_none() {
        assert!(KeyControls::new().is_empty());
        assert!(KeyControls::new().into_option().is_none());
        let c = KeyControls::new().external_id(ExternalId::new("cust_42").unwrap());
        assert!(!c.enforces(), "an external id is not enforced");
        assert!(c.into_option().is_some());
    }

    #[test]
    fn json_shape_is_camel_case_and_omits_absent_controls() {
        let c = KeyControls::new()
            .external_id(ExternalId::new("t-1").unwrap())
            .allowed_ips("10.0.0.0/8,2001:db8::/32".parse().unwrap())
            .rate_limits("api=100/1s:burst=20".parse().unwrap());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["externalId"], "t-1");
        assert_eq!(v["allowedIps"], serde_json::json!(["10.0.0.0/8", "2001:db8::/32"]));
        assert_eq!(v["rateLimits"], serde_json::json!(["api=100/1s:burst=20"]));
        assert!(v.get("credits").is_none() && v.get("metadata").is_none());
        assert_eq!(serde_json::from_value::<KeyControls>(v).unwrap(), c);
    }
}
