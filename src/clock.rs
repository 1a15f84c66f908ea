//! Time: the [`Timestamp`] type every record uses and the injectable [`Clock`].
//!
//! Timestamps are UTC instants with nanosecond precision, stored as a single
//! `i64` of nanoseconds since the Unix epoch so comparisons on the verify path
//! are integer compares. They serialise as RFC 3339 with a `Z` offset
//! (`2026-01-01T21:00:00Z`), which is the format the `api_key.yaml` result
//! and the `--expires-at` option use.
//!
//! ```
//! use api_keys::{Clock, ManualClock, Timestamp};
//!
//! let t: Timestamp = "2026-01-01T21:00:00Z".parse()?;
//! let clock = ManualClock::new(t);
//! clock.advance(std::time::Duration::from_secs(60));
//! assert_eq!(clock.now().to_string(), "2026-01-01T21:01:00Z");
//! # Ok::<(), api_keys::TimestampError>(())
//! ```

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant with nanosecond precision (years 1678 to 2261).
///
/// Ordering is chronological. [`Display`](fmt::Display) and serde use
/// RFC 3339 with a `Z` offset; fractional seconds are printed only when
/// non-zero. Eight bytes, and `Option<Timestamp>` is eight bytes too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(NonZeroU64);

/// Stored form: the nanoseconds with the sign bit flipped, so unsigned order
/// is chronological and zero (the niche) is `i64::MIN`, which
/// [`Timestamp::from_unix_nanos`] clamps away.
const fn encode(nanos: i64) -> NonZeroU64 {
    let n = if nanos == i64::MIN { i64::MIN + 1 } else { nanos };
    match NonZeroU64::new((n as u64) ^ (1 << 63)) {
        Some(v) => v,
        None => NonZeroU64::MIN, // unreachable: only i64::MIN encodes to 0
    }
}

/// Why a string or number is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The text is not RFC 3339 (`YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)`).
    #[error("timestamp is not RFC 3339 (expected e.g. 2026-01-01T21:00:00Z)")]
    Format,
    /// The instant lies outside the representable range (1678–2261).
    #[error("timestamp is outside the supported range (years 1678 to 2261)")]
    OutOfRange,
}

impl Timestamp {
    /// The Unix epoch, `1970-01-01T00:00:00Z`.
    pub const UNIX_EPOCH: Self = Self(encode(0));

    /// Builds a timestamp from nanoseconds since the Unix epoch
    /// (`i64::MIN` is clamped to `i64::MIN + 1`).
    #[must_use]
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(encode(nanos))
    }

    /// Builds a timestamp from whole seconds since the Unix epoch.
    ///
    /// # Errors
    /// [`TimestampError::OutOfRange`] when the result does not fit.
    pub const fn from_unix_seconds(secs: i64) -> Result<Self, TimestampError> {
        match secs.checked_mul(1_000_000_000) {
            Some(n) => Ok(Self::from_unix_nanos(n)),
            None => Err(TimestampError::OutOfRange),
        }
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub const fn unix_nanos(self) -> i64 {
        (self.0.get() ^ (1 << 63)) as i64
    }

    /// Whole seconds since the Unix epoch (rounded towards negative infinity).
    #[must_use]
    pub const fn unix_seconds(self) -> i64 {
        self.unix_nanos().div_euclid(1_000_000_000)
    }

    /// The current system time.
    ///
    /// A system clock set outside 1678–2261 saturates at the range's ends.
    #[must_use]
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Self::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Self::from_unix_nanos(i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n)),
        }
    }

    /// `self + d`, or `None` on overflow.
    #[must_use]
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let n = i64::try_from(d.as_nanos()).ok()?;
        self.unix_nanos().checked_add(n).map(Self::from_unix_nanos)
    }

    /// `self + d`, saturating at the end of the representable range.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Self::from_unix_nanos(i64::MAX))
    }

    /// `self - d`, saturating at the start of the representable range.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        let n = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Self::from_unix_nanos(self.unix_nanos().saturating_sub(n))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub fn duration_since(self, earlier: Self) -> Duration {
        u64::try_from(self.unix_nanos().saturating_sub(earlier.unix_nanos()))
            .map_or(Duration::ZERO, Duration::from_nanos)
    }

    /// Converts to [`time::OffsetDateTime`] in UTC.
    #[must_use]
    pub fn to_offset_date_time(self) -> OffsetDateTime {
        // Every i64 of nanoseconds is within time's supported range.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.unix_nanos())).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Parses RFC 3339; any offset is accepted and converted to UTC.
    ///
    /// # Errors
    /// [`TimestampError`] for text that is not RFC 3339 or out of range.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let dt = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimestampError::Format)?;
        Self::try_from(dt)
    }
}

impl TryFrom<OffsetDateTime> for Timestamp {
    type Error = TimestampError;
    fn try_from(dt: OffsetDateTime) -> Result<Self, Self::Error> {
        match i64::try_from(dt.unix_timestamp_nanos()) {
            Ok(n) if n != i64::MIN => Ok(Self::from_unix_nanos(n)),
            _ => Err(TimestampError::OutOfRange),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_offset_date_time();
        let (h, m, s, nanos) = dt.to_hms_nano();
        write!(f, "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}", dt.year(), u8::from(dt.month()), dt.day())?;
        if nanos != 0 {
            write!(f, ".{nanos:09}")?;
        }
        f.write_str("Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// A source of the current time, injectable so expiry can be tested.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock. The default [`Clock`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.unix_nanos()))
    }

    /// Moves the clock to `t` (backwards too).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.unix_nanos(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let n = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(v.saturating_add(n)));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// Parses a duration written `0` or as a whole number with `s`, `m`, `h`
/// or `d` (`30s`, `10m`, `1h`, `2d`).
///
/// # Errors
/// What is wrong with `text`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HELP: &str = "expected 0 or a whole number with s, m, h or d (e.g. 30s, 10m, 1h, 2d)";
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or(HELP)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| HELP)?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(HELP.to_owned()),
    };
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(|| "duration is too long".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1", "1x", "-1h", "1.5h", "1h30m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_round_trip_with_and_without_fraction() {
        for text in ["2026-01-01T21:00:00Z", "2025-04-04T10:23:08.722440521Z"] {
            let t: Timestamp = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let t: Timestamp = "2026-01-02T00:00:00+03:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-01T21:00:00Z");
    }

    #[test]
    fn bad_text_and_range_are_typed_errors() {
        assert_eq!("2026-01-01".parse::<Timestamp>(), Err(TimestampError::Format));
        assert_eq!("".parse::<Timestamp>(), Err(TimestampError::Format));
        assert_eq!("2026-13-01T00:00:00Z".parse::<Timestamp>(), Err(TimestampError::Format));
        assert_eq!("9999-01-01T00:00:00Z".parse::<Timestamp>(), Err(TimestampError::OutOfRange));
        assert_eq!(Timestamp::from_unix_seconds(i64::MAX), Err(TimestampError::OutOfRange));
    }

    #[test]
    fn serde_uses_rfc3339() {
        let t = Timestamp::from_unix_seconds(1_767_301_200).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-01-01T21:00:00Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_nanos(i64::MAX - 1);
        assert_eq!(t.saturating_add(Duration::from_secs(1)).unix_nanos(), i64::MAX);
        assert_eq!(t.checked_add(Duration::from_secs(1)), None);
        let a = Timestamp::from_unix_seconds(10).unwrap();
        let b = Timestamp::from_unix_seconds(4).unwrap();
        assert_eq!(a.duration_since(b), Duration::from_secs(6));
        assert_eq!(b.duration_since(a), Duration::ZERO);
    }

    #[test]
    fn order_and_niche() {
        assert_eq!(std::mem::size_of::<Option<Timestamp>>(), 8);
        let xs = [i64::MIN + 1, -5, -1, 0, 1, 5, i64::MAX];
        for w in xs.windows(2) {
            assert!(Timestamp::from_unix_nanos(w[0]) < Timestamp::from_unix_nanos(w[1]));
        }
        for x in xs {
            assert_eq!(Timestamp::from_unix_nanos(x).unix_nanos(), x);
        }
        assert_eq!(Timestamp::from_unix_nanos(i64::MIN).unix_nanos(), i64::MIN + 1);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::UNIX_EPOCH);
        assert_eq!(c.now(), Timestamp::UNIX_EPOCH);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now().unix_seconds(), 5);
        c.set(Timestamp::UNIX_EPOCH);
        assert_eq!(c.now(), Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now().unix_seconds() > 1_700_000_000);
    }
}
