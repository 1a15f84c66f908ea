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
mod error;
mod ip;
mod key_controls;
mod limiter;
mod metadata;
mod rate;
#[cfg(feature = "redis")]
mod redis_limiter;

pub use credits::{CreditSpend, Credits, Refill, RefillPeriod};
pub use error::ControlError;
pub use ip::IpAllowList;
pub use key_controls::{ControlsPatch, KeyControls};
pub use limiter::{LimitCheck, LimiterError, LocalRateLimiter, RateDecision, RateLimiter, RateStatus};
pub use metadata::{ExternalId, Metadata};
pub use rate::{LimitName, RateLimit, RateLimits};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_limiter::RedisRateLimiter;
