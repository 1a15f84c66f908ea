//! Pieces shared by the persistent stores (SQL and Redis): the timeout
//! wrapper, the configuration error, and the conversion between
//! [`KeyRecord`] and the primitive column values every backend stores. What
//! only the SQL stores share is in [`sql`](super::sql).
//!
//! Every backend keeps the same columns (Redis: hash fields) with the same
//! encodings:
//!
//! | field | encoding |
//! |---|---|
//! | `id`, `replaced_by`, `reissued_from` | text, 20 characters of `[a-z0-9]` |
//! | `service_account_id`, `description`, `masked_key` | text (masked key: the last six characters only) |
//! | `created_at`, `last_used_at`, `expires_at` | `i64` nanoseconds since the Unix epoch (exact, no rounding) |
//! | `scopes` | a list of scope names (PostgreSQL `TEXT[]`; SQLite and Redis: names joined by `,`, which no scope contains) |
//! | `pepper_version` | integer (`0..=u32::MAX`) |
//! | `digest` | the 32 raw bytes (SQLite `BLOB`, PostgreSQL `BYTEA`; Redis: standard base64) |
//! | `status`, `kind` | [`KeyStatus::as_str`] / [`KeyKind::as_str`] |
//! | `enabled` | boolean (SQLite `0`/`1`; Redis: field `enabled = 0` only when disabled) |
//! | `external_id` | text |
//! | `controls` | every other control (metadata, IP allow-list, rate limits, …) as one JSON object, in [`KeyControls`]' serde shape (camelCase, absent controls left out) |
//! | `credits_remaining`, `credits_refill_amount` | integer `0..=Credits::MAX` |
//! | `credits_refill_period` | `daily` / `monthly` |
//! | `credits_refill_at` | seconds after midnight UTC, `0..=86399` |
//! | `credits_refilled_at` | `i64` nanoseconds since the Unix epoch |
//!
//! Absent controls are absent columns (SQL `NULL`, Redis: no field; the
//! `controls` object leaves them out and is itself absent when empty); the
//! refill columns are all set or all absent, and only with a remaining count.
//!
//! Only what a store queries has a column of its own ([`COLUMN_CONTROLS`]:
//! the external id, which listings filter by, and the credits, which a
//! spend changes in one atomic statement or script); every other control
//! lives in `controls`, so a new control needs no migration and no change
//! here or in a backend. A `controls` object naming a control this version
//! does not know is [`StoreError::Corrupt`]: an older node fails closed on
//! a newer node's control instead of ignoring it.
//!
//! Reading a row back validates every field with the same constructors the
//! rest of the crate uses; anything invalid is [`StoreError::Corrupt`], whose
//! text names the field but never its value.

use std::future::Future;
use std::time::Duration;

use super::StoreError;
use crate::clock::Timestamp;
use crate::controls::{Credits, ExternalId, KeyControls, Refill, RefillPeriod};
use crate::digest::Digest;
use crate::record::{Description, KeyKind, KeyRecord, KeyStatus, ReissueLinks, ServiceAccountId};
use crate::scope::{Scope, ScopeSet};
use crate::secret::MaskedKey;
use crate::token::KeyId;

/// How long a persistent store waits for its backend before giving up with
/// [`StoreError::Timeout`], unless configured otherwise: 2 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A store's configuration is unusable. Returned as the source of
/// [`StoreError::Unavailable`] by the stores' constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A PostgreSQL schema name must be 1 to 63 characters of `[a-z0-9_]`,
    /// not starting with a digit.
    #[error("schema name must be 1 to 63 characters of a-z 0-9 _, not starting with a digit")]
    SchemaName,
    /// A Redis key prefix must be 1 to 64 characters of `[A-Za-z0-9_.:-]`.
    #[error("key prefix must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")]
    KeyPrefix,
}

/// Runs `fut`, turning an overrun of `limit` into [`StoreError::Timeout`].
/// The future is dropped on timeout, which does not cancel a statement or
/// script the server already received: an open SQL transaction rolls back,
/// but a single statement, a commit or a Redis script already sent may still
/// take effect. Callers see a failure either way and must assume nothing and
/// everything: a later read tells (a create may leave an unusable orphan
/// whose secret was never shown).
pub(crate) async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        Ok(Err(StoreError::Unavailable(e)))
            if e.downcast_ref::<sqlx::Error>().is_some_and(|e| matches!(e, sqlx::Error::PoolTimedOut)) =>
        {
            // The pool gave up waiting for a connection within the same limit.
            Err(StoreError::Timeout(limit))
        }
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout(limit)),
    }
}

/// A record as primitive column values, as read from a backend.
#[derive(Default)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) service_account_id: String,
    pub(crate) description: String,
    pub(crate) created_at: i64,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) masked_key: String,
    pub(crate) pepper_version: i64,
    pub(crate) digest: Vec<u8>,
    pub(crate) status: String,
    pub(crate) kind: String,
    pub(crate) replaced_by: Option<String>,
    pub(crate) reissued_from: Option<String>,
    pub(crate) controls: ControlColumns,
}

/// The controls with columns of their own (by name, as the fields of
/// [`KeyControls`]); the others are kept together in `controls`.
pub(crate) const COLUMN_CONTROLS: [&str; 2] = ["external_id", "credits"];

/// Whether control `name` has a column of its own.
pub(crate) fn has_column(name: &str) -> bool {
    COLUMN_CONTROLS.contains(&name)
}

/// The enabled flag and the controls as primitive column values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlColumns {
    pub(crate) enabled: bool,
    pub(crate) external_id: Option<String>,
    pub(crate) credits_remaining: Option<i64>,
    pub(crate) credits_refill_amount: Option<i64>,
    pub(crate) credits_refill_period: Option<String>,
    pub(crate) credits_refill_at: Option<i64>,
    pub(crate) credits_refilled_at: Option<i64>,
    /// Every control without a column, as a JSON object (`None`: none).
    pub(crate) controls: Option<String>,
}

impl Default for ControlColumns {
    /// What a record written before the controls existed reads as: enabled,
    /// no control.
    fn default() -> Self {
        Self {
            enabled: true,
            external_id: None,
            credits_remaining: None,
            credits_refill_amount: None,
            credits_refill_period: None,
            credits_refill_at: None,
            credits_refilled_at: None,
            controls: None,
        }
    }
}

/// A credit count as stored (counts never exceed [`Credits::MAX`], which
/// fits `i64`).
fn count_column(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `controls` value of `c`: its controls without a column, as a JSON
/// object; `None` when it has none.
pub(crate) fn controls_json(c: &KeyControls) -> Option<String> {
    let rest = c.only(|name| !has_column(name));
    // Controls serialise to JSON without fail (validated values, string keys).
    if rest.is_empty() { None } else { serde_json::to_string(&rest).ok() }
}

/// Reads a `controls` value: every control it names must be one this
/// version knows and has no column of its own, and valid.
fn parse_controls_json(text: &str) -> Result<KeyControls, StoreError> {
    let bad = || corrupt("controls", "is not a valid controls object");
    let stored: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(|_| bad())?;
    let named = stored.len();
    let c: KeyControls = serde_json::from_value(serde_json::Value::Object(stored)).map_err(|_| bad())?;
    // What reads back names as many controls as the object did, unless it
    // named one this version does not know (which serde skipped).
    let known = serde_json::to_value(&c).ok().and_then(|v| v.as_object().map(serde_json::Map::len));
    if known != Some(named) {
        return Err(corrupt("controls", "names a control this version does not know"));
    }
    if c != c.only(|name| !has_column(name)) {
        return Err(corrupt("controls", "holds a control that has a column of its own"));
    }
    Ok(c)
}

/// The `controls` value of a record written with one field per control
/// (Redis record layout 2): the metadata (JSON text), the allow-list and
/// the rate limits (their `FromStr` syntax, comma-joined), validated.
#[cfg(any(feature = "redis", test))]
pub(crate) fn legacy_controls_json(
    metadata: Option<&str>,
    allowed_ips: Option<&str>,
    rate_limits: Option<&str>,
) -> Result<Option<String>, StoreError> {
    use crate::controls::{IpAllowList, Metadata, RateLimits};
    let mut c = KeyControls::new();
    c.metadata = metadata
        .map(|m| Metadata::parse(m).map_err(|_| corrupt("metadata", "is not a valid metadata object")))
        .transpose()?;
    c.allowed_ips = allowed_ips
        .map(|l| l.parse::<IpAllowList>().map_err(|_| corrupt("allowed_ips", "is not a valid IP allow-list")))
        .transpose()?;
    c.rate_limits = rate_limits
        .map(|l| l.parse::<RateLimits>().map_err(|_| corrupt("rate_limits", "is not a valid rate limit list")))
        .transpose()?;
    Ok(controls_json(&c))
}

impl ControlColumns {
    /// The columns of `record`'s enabled flag and controls.
    pub(crate) fn of(record: &KeyRecord) -> Self {
        Self::from_parts(record.enabled, record.controls())
    }

    /// The columns of an enabled flag and controls.
    pub(crate) fn from_parts(enabled: bool, c: &KeyControls) -> Self {
        let credits = c.credits.as_ref();
        let refill = credits.and_then(|c| c.refill.as_ref());
        Self {
            enabled,
            external_id: c.external_id.as_ref().map(|e| e.as_str().to_owned()),
            credits_remaining: credits.map(|c| count_column(c.remaining)),
            credits_refill_amount: refill.map(|r| count_column(r.amount)),
            credits_refill_period: refill.map(|r| r.period.as_str().to_owned()),
            credits_refill_at: refill.map(|r| i64::from(r.at_second)),
            credits_refilled_at: credits.and_then(|c| c.refilled_at).map(Timestamp::unix_nanos),
            controls: controls_json(c),
        }
    }

    /// Validates the columns into the enabled flag and the controls.
    pub(crate) fn into_controls(self) -> Result<(bool, KeyControls), StoreError> {
        let mut c = self.controls.as_deref().map(parse_controls_json).transpose()?.unwrap_or_default();
        c.external_id = self
            .external_id
            .as_deref()
            .map(|e| ExternalId::new(e).map_err(|_| corrupt("external_id", "is not a valid external id")))
            .transpose()?;
        c.credits = self.credits()?;
        Ok((self.enabled, c))
    }

    fn credits(&self) -> Result<Option<Credits>, StoreError> {
        let count = |field: &str, n: i64| {
            u64::try_from(n)
                .ok()
                .filter(|n| *n <= Credits::MAX)
                .ok_or_else(|| corrupt(field, "is outside 0..=Credits::MAX"))
        };
        let refill = match (self.credits_refill_amount, self.credits_refill_period.as_deref(), self.credits_refill_at) {
            (None, None, None) => None,
            (Some(amount), Some(period), Some(at)) => Some(Refill {
                amount: count("credits_refill_amount", amount)?,
                period: RefillPeriod::parse(period)
                    .ok_or_else(|| corrupt("credits_refill_period", "is not daily or monthly"))?,
                at_second: u32::try_from(at)
                    .ok()
                    .filter(|s| *s < 86_400)
                    .ok_or_else(|| corrupt("credits_refill_at", "is outside 0..=86399"))?,
            }),
            _ => return Err(corrupt("credits_refill_amount", "and the other refill fields are not all set")),
        };
        let Some(remaining) = self.credits_remaining else {
            if refill.is_some() || self.credits_refilled_at.is_some() {
                return Err(corrupt("credits_remaining", "is missing while a refill is set"));
            }
            return Ok(None);
        };
        Ok(Some(Credits {
            remaining: count("credits_remaining", remaining)?,
            refill,
            refilled_at: self.credits_refilled_at.map(Timestamp::from_unix_nanos),
        }))
    }
}

fn corrupt(field: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("field `{field}` {what}"))
}

fn key_id(field: &str, text: &str) -> Result<KeyId, StoreError> {
    KeyId::parse(text).map_err(|_| corrupt(field, "is not a key id"))
}

impl Row {
    /// Validates every field into a [`KeyRecord`].
    pub(crate) fn into_record(self) -> Result<KeyRecord, StoreError> {
        let scopes = self
            .scopes
            .iter()
            .map(|s| Scope::new(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| corrupt("scopes", "holds an invalid scope name"))?;
        let masked = self.masked_key.as_bytes();
        if masked.len() > 6 || !masked.iter().all(u8::is_ascii_graphic) {
            return Err(corrupt("masked_key", "is not at most six visible ASCII characters"));
        }
        let digest: [u8; 32] =
            self.digest.as_slice().try_into().map_err(|_| corrupt("digest", "is not exactly 32 bytes"))?;
        let mut record = KeyRecord::new(
            key_id("id", &self.id)?,
            ServiceAccountId::new(&self.service_account_id)
                .map_err(|_| corrupt("service_account_id", "is not a valid service account id"))?,
            KeyKind::parse(&self.kind).ok_or_else(|| corrupt("kind", "is not native or imported"))?,
            u32::try_from(self.pepper_version).map_err(|_| corrupt("pepper_version", "is outside 0..=4294967295"))?,
            Digest::from_bytes(digest),
            MaskedKey::from_tail(masked),
            Timestamp::from_unix_nanos(self.created_at),
        );
        record.description =
            Description::new(&self.description).map_err(|_| corrupt("description", "is not a valid description"))?;
        record.last_used_at = self.last_used_at.map(Timestamp::from_unix_nanos);
        record.scopes = ScopeSet::new(scopes).map_err(|_| corrupt("scopes", "holds too many scopes"))?;
        record.expires_at = self.expires_at.map(Timestamp::from_unix_nanos);
        record.status = KeyStatus::parse(&self.status).ok_or_else(|| corrupt("status", "is not active or revoked"))?;
        record.links = ReissueLinks {
            replaced_by: self.replaced_by.as_deref().map(|t| key_id("replaced_by", t)).transpose()?,
            reissued_from: self.reissued_from.as_deref().map(|t| key_id("reissued_from", t)).transpose()?,
        };
        let (enabled, controls) = self.controls.into_controls()?;
        record.enabled = enabled;
        record.set_controls(controls);
        Ok(record)
    }
}

/// Scope names joined by `,` (SQLite and Redis). Scope names never contain
/// a comma, so the list splits back unambiguously.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn join_scopes(scopes: &ScopeSet) -> String {
    let mut out = String::with_capacity(scopes.iter().map(|s| s.as_str().len() + 1).sum());
    for (i, s) in scopes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(s.as_str());
    }
    out
}

/// Inverse of [`join_scopes`]; the empty text is the empty list.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    if text.is_empty() { Vec::new() } else { text.split(',').map(str::to_owned).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::Metadata;

    fn good() -> Row {
        Row {
            id: "ajeuo7ng2p6u00000000".into(),
            service_account_id: "robot".into(),
            description: "d".into(),
            created_at: 1_743_762_188_722_440_521,
            last_used_at: Some(-5),
            scopes: vec!["b.read".into(), "a.read".into()],
            expires_at: Some(i64::MAX),
            masked_key: "rCG02w".into(),
            pepper_version: i64::from(u32::MAX),
            digest: vec![7; 32],
            status: "revoked".into(),
            kind: "imported".into(),
            replaced_by: Some("bbbbbbbbbbbbbbbbbbbb".into()),
            reissued_from: None,
            controls: ControlColumns::default(),
        }
    }

    #[test]
    fn controls_round_trip_through_their_columns() {
        let mut r = good().into_record().unwrap();
        assert!(r.enabled && r.controls.is_none(), "old rows are enabled, without controls");
        r.enabled = false;
        let refill = Refill::new(50, RefillPeriod::Monthly).unwrap().at(6, 30).unwrap();
        r.set_controls(
            KeyControls::new()
                .metadata(Metadata::parse(r#"{"plan":"pro","n":[1,2]}"#).unwrap())
                .external_id(ExternalId::new("cust_1").unwrap())
                .allowed_ips("10.0.0.0/8,2001:db8::1".parse().unwrap())
                .rate_limits("api=100/1s:burst=20,day=5000/1d".parse().unwrap())
                .credits(Credits::new(Credits::MAX).unwrap().refill(refill, Timestamp::from_unix_nanos(-7))),
        );
        let columns = ControlColumns::of(&r);
        assert_eq!(columns.credits_refill_at, Some(23_400));
        assert_eq!(columns.external_id.as_deref(), Some("cust_1"));
        let json: serde_json::Value = serde_json::from_str(columns.controls.as_deref().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "metadata": {"plan": "pro", "n": [1, 2]},
                "allowedIps": ["10.0.0.0/8", "2001:db8::1/128"],
                "rateLimits": ["api=100/1s:burst=20", "day=5000/1d"],
            }),
            "the controls without a column, together"
        );
        let (enabled, controls) = columns.into_controls().unwrap();
        assert!(!enabled);
        assert_eq!(&controls, r.controls());
        // Only column controls: no `controls` object.
        let only_columns = KeyControls::new().external_id(ExternalId::new("c").unwrap());
        assert_eq!(ControlColumns::from_parts(true, &only_columns).controls, None);
    }

    #[test]
    fn legacy_control_fields_read_as_the_controls_object() {
        let json = legacy_controls_json(Some(r#"{"a":null,"b":1e2}"#), Some("10.0.0.0/8"), None).unwrap().unwrap();
        let c = ControlColumns { controls: Some(json), ..ControlColumns::default() }.into_controls().unwrap().1;
        assert_eq!(c.metadata.unwrap().to_json(), r#"{"a":null,"b":100.0}"#);
        assert_eq!(c.allowed_ips.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(legacy_controls_json(None, None, None).unwrap(), None);
        for (m, ips, rl, field) in [
            (Some("[SECRET]"), None, None, "metadata"),
            (None, Some("SECRET"), None, "allowed_ips"),
            (None, None, Some("SECRET"), "rate_limits"),
        ] {
            let e = legacy_controls_json(m, ips, rl).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains(field) && !text.contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn invalid_control_columns_are_corrupt() {
        type Spoil = Box<dyn Fn(&mut ControlColumns)>;
        let base = ControlColumns {
            credits_remaining: Some(1),
            credits_refill_amount: Some(1),
            credits_refill_period: Some("daily".into()),
            credits_refill_at: Some(0),
            ..ControlColumns::default()
        };
        assert!(base.clone().into_controls().is_ok());
        let cases: Vec<(&str, Spoil)> = vec![
            ("controls", Box::new(|c| c.controls = Some("[SECRET]".into()))),
            ("controls", Box::new(|c| c.controls = Some(r#"{"metadata":["SECRET"]}"#.into()))),
            ("controls", Box::new(|c| c.controls = Some(r#"{"allowedIps":["SECRETVALUE"]}"#.into()))),
            ("controls", Box::new(|c| c.controls = Some(r#"{"rateLimits":["SECRETVALUE"]}"#.into()))),
            // A control of a newer version: refused, not ignored.
            ("controls", Box::new(|c| c.controls = Some(r#"{"allowedIps":["10.0.0.0/8"],"SECRET":1}"#.into()))),
            // A control with a column of its own does not belong here.
            ("controls", Box::new(|c| c.controls = Some(r#"{"externalId":"SECRET"}"#.into()))),
            ("external_id", Box::new(|c| c.external_id = Some("SECRET VALUE".into()))),
            ("credits_remaining", Box::new(|c| c.credits_remaining = Some(-1))),
            ("credits_refill_amount", Box::new(|c| c.credits_refill_amount = Some(-1))),
            ("credits_refill_period", Box::new(|c| c.credits_refill_period = Some("weekly".into()))),
            ("credits_refill_at", Box::new(|c| c.credits_refill_at = Some(86_400))),
            ("credits_refill_amount", Box::new(|c| c.credits_refill_period = None)),
            ("credits_remaining", Box::new(|c| c.credits_remaining = None)),
        ];
        for (field, spoil) in cases {
            let mut c = base.clone();
            spoil(&mut c);
            let e = c.into_controls().unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(matches!(e, StoreError::Corrupt(_)) && text.contains(field), "{field}: {text}");
            assert!(!text.contains("SECRET"), "{field}: {text}");
        }
    }

    #[test]
    fn valid_rows_convert_exactly() {
        let r = good().into_record().unwrap();
        assert_eq!(r.created_at.unix_nanos(), 1_743_762_188_722_440_521);
        assert_eq!(r.last_used_at.unwrap().unix_nanos(), -5);
        assert_eq!(r.expires_at.unwrap().unix_nanos(), i64::MAX);
        assert_eq!(r.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(), ["a.read", "b.read"]);
        // An imported row shows six hex digits of its digest, whatever its
        // masked_key column holds.
        assert_eq!(r.masked_key.tail(), "070707");
        assert_eq!(r.pepper_version, u32::MAX);
        assert_eq!(r.digest.as_bytes(), &[7; 32]);
        assert_eq!((r.status, r.kind), (KeyStatus::Revoked, KeyKind::Imported));
        assert_eq!(r.links.replaced_by.unwrap().as_str(), "bbbbbbbbbbbbbbbbbbbb");
    }

    #[cfg(any(feature = "sqlite", feature = "redis"))]
    #[test]
    fn scope_lists_join_and_split() {
        let r = good().into_record().unwrap();
        assert_eq!(join_scopes(&r.scopes), "a.read,b.read");
        assert_eq!(split_scopes("a.read,b.read"), ["a.read", "b.read"]);
        assert!(split_scopes("").is_empty());
        assert_eq!(join_scopes(&ScopeSet::default()), "");
    }

    #[test]
    fn invalid_fields_are_corrupt_and_never_echo_the_value() {
        type Spoil = Box<dyn Fn(&mut Row)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("id", Box::new(|r| r.id = "SECRETVALUE".into())),
            ("service_account_id", Box::new(|r| r.service_account_id = "SECRET VALUE".into())),
            ("description", Box::new(|r| r.description = "SECRET\nVALUE".into())),
            ("scopes", Box::new(|r| r.scopes = vec!["SECRET VALUE".into()])),
            ("masked_key", Box::new(|r| r.masked_key = "SECRETVALUE".into())),
            ("pepper_version", Box::new(|r| r.pepper_version = -1)),
            ("digest", Box::new(|r| r.digest = b"SECRETVALUE".to_vec())),
            ("status", Box::new(|r| r.status = "SECRETVALUE".into())),
            ("kind", Box::new(|r| r.kind = "SECRETVALUE".into())),
            ("replaced_by", Box::new(|r| r.replaced_by = Some("SECRETVALUE".into()))),
            ("reissued_from", Box::new(|r| r.reissued_from = Some("SECRETVALUE".into()))),
        ];
        for (field, spoil) in cases {
            let mut row = good();
            spoil(&mut row);
            let e = row.into_record().unwrap_err();
            assert!(matches!(e, StoreError::Corrupt(_)), "{field}: {e:?}");
            let text = format!("{e} {e:?}");
            assert!(text.contains(field), "{field}: {text}");
            assert!(!text.contains("SECRET"), "{field}: {text}");
        }
    }
}
