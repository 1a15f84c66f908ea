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
//!
//! Every control is declared once, in the list at the end of this file,
//! which writes [`KeyControls`] (the controls a key has) and
//! [`ControlsPatch`] (a change of some of them: the one shape shared by
//! [`UpdateRequest`](crate::UpdateRequest), [`KeyUpdate`](crate::KeyUpdate)
//! and [`OperationChanges`](crate::OperationChanges)). The stores keep the
//! controls that no statement queries in one serialised `controls` field
//! (see [`store`](crate::store)), so a control is stored, read
//! back, validated, logged, cached and answered by every backend without
//! an edit there and without a migration.
//!
//! # Adding a control
//! 1. `src/controls/<name>.rs`: the type. Validate in its constructor and in
//!    `Deserialize` (stores and logs read it back through serde), serialise
//!    to a small JSON value, and give it `FromStr` (a short text syntax) if
//!    a command line takes it as a flag. Unit tests beside it, bad input
//!    included.
//! 2. `src/controls/error.rs`: the [`ControlError`] variant its constructor
//!    returns (and its bounds, as constants).
//! 3. This file: `mod <name>;`, `pub use`, and one line in the list below
//!    (`/// docs` then `name: Type, enforced = BOOL;`, `true` if the
//!    verifier checks it). That is the whole library and store
//!    side: create and update requests, the operations log, the response
//!    snapshots, SQLite, PostgreSQL, Redis and the memory store carry it.
//! 4. `src/verify.rs`, only if the control is enforced on verify: the
//!    check, in order, with its [`VerifyError`](crate::VerifyError).
//!
//! The operator tool in `cli/` adds its own flag for a control; its
//! checklist is in `cli/README.md`.
//!
//! The REST API's wire types (`admin/types.rs`, and the mask and parsing in
//! `admin/api.rs`) name each control too: exposing a control over REST adds
//! those two files. A control that a store must *query* (filter or change
//! atomically, as the external id and the credits) is not this checklist:
//! it needs a column, a migration and the statements in `store/`.

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
pub use limiter::{LimitCheck, LimiterError, LocalRateLimiter, RateDecision, RateLimiter, RateStatus};
pub use metadata::{ExternalId, Metadata};
pub use rate::{LimitName, RateLimit, RateLimits};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_limiter::RedisRateLimiter;

key_controls::key_controls! {
    /// Application-defined JSON object, returned on the principal.
    metadata: Metadata, enforced = false;
    /// The application's own owner (customer, tenant) id.
    external_id: ExternalId, enforced = false;
    /// Client addresses the key may be used from.
    allowed_ips: IpAllowList, enforced = true;
    /// Usage credits.
    credits: Credits, enforced = true;
    /// Named rate limits.
    rate_limits: RateLimits, enforced = true;
}
