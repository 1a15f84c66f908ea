//! Named rate limits: `NAME=COUNT/PERIOD[:burst=N]`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::ControlError;

/// A rate limit's name: 1 to [`LimitName::MAX_LEN`] characters of
/// `[a-z0-9_-]`. It names the limit in `RateLimit` response headers.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LimitName(Arc<str>);

impl LimitName {
    /// Longest name, in bytes.
    pub const MAX_LEN: usize = 32;

    /// Validates a name.
    ///
    /// # Errors
    /// [`ControlError::RateLimit`].
    pub fn new(name: &str) -> Result<Self, ControlError> {
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if ok { Ok(Self(Arc::from(name))) } else { Err(ControlError::RateLimit(name.chars().take(64).collect())) }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LimitName({})", &*self.0)
    }
}

/// One named limit: at most `count` requests per `period` on average (the
/// generic cell rate algorithm: one request every `period / count`), with
/// up to `burst` requests at once. Without an explicit burst, `burst` is
/// `count` (a full period's worth).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateLimit {
    /// Name, for headers and logs.
    pub name: LimitName,
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub period: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

impl RateLimit {
    /// Shortest period.
    pub const MIN_PERIOD: Duration = Duration::from_millis(1);
    /// Longest period (one day).
    pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);
    /// Largest count or burst.
    pub const MAX_COUNT: u32 = 1_000_000_000;

    /// A limit of `count` per `period` with burst `burst` (`None`: `count`).
    ///
    /// # Errors
    /// [`ControlError::RateLimit`] when a count is 0 or above
    /// [`RateLimit::MAX_COUNT`], or the period is outside
    /// [`RateLimit::MIN_PERIOD`]..=[`RateLimit::MAX_PERIOD`].
    pub fn new(name: LimitName, count: u32, period: Duration, burst: Option<u32>) -> Result<Self, ControlError> {
        let burst = burst.unwrap_or(count);
        let ok = (1..=Self::MAX_COUNT).contains(&count)
            && (1..=Self::MAX_COUNT).contains(&burst)
            && (Self::MIN_PERIOD..=Self::MAX_PERIOD).contains(&period);
        let limit = Self { name, count, period, burst };
        if ok { Ok(limit) } else { Err(ControlError::RateLimit(limit.to_string())) }
    }

    /// The emission interval: the average time between requests
    /// (`period / count`, at least 1 ns).
    #[must_use]
    pub fn interval(&self) -> Duration {
        (self.period / self.count).max(Duration::from_nanos(1))
    }
}

/// Parses `1s`, `500ms`, `10m`, `1h`, `1d` (a positive integer and a unit).
fn parse_period(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(millis).map(Duration::from_millis)
}

/// Writes a period in the largest unit that divides it.
fn write_period(f: &mut fmt::Formatter<'_>, period: Duration) -> fmt::Result {
    let ms = period.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return write!(f, "{}{unit}", ms / size);
        }
    }
    write!(f, "{ms}ms")
}

impl FromStr for RateLimit {
    type Err = ControlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ControlError::RateLimit(s.chars().take(64).collect());
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let (rate, burst) = match rest.split_once(':') {
            Some((rate, opt)) => (rate, Some(opt.strip_prefix("burst=").ok_or_else(bad)?)),
            None => (rest, None),
        };
        let (count, period) = rate.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.parse().map_err(|_| bad())?;
        let period = parse_period(period).ok_or_else(bad)?;
        let burst = burst.map(|b| b.parse::<u32>().map_err(|_| bad())).transpose()?;
        Self::new(LimitName::new(name)?, count, period, burst).map_err(|_| bad())
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/", self.name, self.count)?;
        write_period(f, self.period)?;
        if self.burst != self.count {
            write!(f, ":burst={}", self.burst)?;
        }
        Ok(())
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A key's rate limits: 1 to [`RateLimits::MAX_LIMITS`], distinct names.
/// A request must pass all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimits(Arc<[RateLimit]>);

impl RateLimits {
    /// Most limits per key.
    pub const MAX_LIMITS: usize = super::error::RATE_LIMITS_MAX;

    /// Validates a set of limits.
    ///
    /// # Errors
    /// [`ControlError::RateLimits`] when empty, too many, or two share a name.
    pub fn new(limits: impl IntoIterator<Item = RateLimit>) -> Result<Self, ControlError> {
        let mut limits: Vec<RateLimit> = limits.into_iter().collect();
        limits.sort_by(|a, b| a.name.cmp(&b.name));
        let distinct = limits.windows(2).all(|w| w[0].name != w[1].name);
        if limits.is_empty() || limits.len() > Self::MAX_LIMITS || !distinct {
            return Err(ControlError::RateLimits);
        }
        Ok(Self(limits.into()))
    }

    /// The limits, by name.
    #[must_use]
    pub fn as_slice(&self) -> &[RateLimit] {
        &self.0
    }
}

impl FromStr for RateLimits {
    type Err = ControlError;

    /// Comma-separated limits: `api=100/1s:burst=20,daily=10000/1d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.split(',').map(str::trim).map(str::parse).collect::<Result<Vec<RateLimit>, _>>()?)
    }
}

impl fmt::Display for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

impl Serialize for RateLimits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for RateLimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let limits = <Vec<RateLimit>>::deserialize(d)?;
        Self::new(limits).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_text_syntax() {
        let l: RateLimit = "api=100/1s:burst=20".parse().unwrap();
        assert_eq!((l.name.as_str(), l.count, l.period, l.burst), ("api", 100, Duration::from_secs(1), 20));
        assert_eq!(l.interval(), Duration::from_millis(10));
        assert_eq!(l.to_string(), "api=100/1s:burst=20");
        let d: RateLimit = "daily=10000/1d".parse().unwrap();
        assert_eq!(d.burst, 10000, "burst defaults to the count");
        assert_eq!(d.to_string(), "daily=10000/1d");
        assert_eq!("x=5/60s".parse::<RateLimit>().unwrap().to_string(), "x=5/1m");
        assert_eq!("x=5/1500ms".parse::<RateLimit>().unwrap().to_string(), "x=5/1500ms");
    }

    #[test]
    fn bad_limits_are_refused() {
        for bad in [
            "api",
            "api=",
            "api=100",
            "api=100/",
            "api=100/1y",
            "api=0/1s",
            "api=100/0s",
            "API=1/1s",
            "a b=1/1s",
            "api=1/2d",
            "api=1/1s:burst=0",
            "api=1/1s:bust=2",
            "api=-1/1s",
            "=1/1s",
            "api=1/1s:burst=x",
            "api=1/99999999999999999999d",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_set_has_distinct_names() {
        let set: RateLimits = "b=1/1s, a=10/1m".parse().unwrap();
        assert_eq!(set.to_string(), "a=10/1m,b=1/1s", "kept by name");
        assert_eq!("a=1/1s,a=2/1s".parse::<RateLimits>(), Err(ControlError::RateLimits));
        let nine = (0..9).map(|i| format!("l{i}=1/1s")).collect::<Vec<_>>().join(",");
        assert_eq!(nine.parse::<RateLimits>(), Err(ControlError::RateLimits));
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["a=10/1m","b=1/1s"]"#);
        assert_eq!(serde_json::from_str::<RateLimits>(&json).unwrap(), set);
    }
}
