//! Enforcing a key's [`RateLimits`]: the [`RateLimiter`] the verifier asks,
//! and the default [`LocalRateLimiter`] (GCRA with `governor`, in memory,
//! **per node**).
//!
//! A [`RateLimiter`] is asked once per successful key check, after the
//! scope check, for keys that have rate limits (keys without any never get
//! here). It answers [`RateDecision::Allowed`] with the state of the
//! tightest limit (for `RateLimit` response headers) or
//! [`RateDecision::Limited`] with the limit that refused and how long to
//! wait.
//!
//! # Per node
//!
//! [`LocalRateLimiter`] keeps its state in the process: `N` nodes behind a
//! load balancer allow up to `N` times a key's limit in total. For one limit
//! across nodes use the Redis limiter (`controls::RedisRateLimiter`, feature
//! `redis`), or divide the limits by the node count.
//!
//! # Several limits
//!
//! The limits of a key are checked in name order and each one that allows
//! the request counts it; the first that refuses stops the check. A request
//! refused by a later limit has still been counted by the earlier ones
//! (GCRA state cannot be taken back), which only ever errs on the side of
//! refusing. Two limits of one key with the same rate and burst are one
//! constraint and are checked once.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use api_keys::controls::{LocalRateLimiter, RateDecision, RateLimiter, RateLimits};
//! use api_keys::{KeyId, ManualClock, Timestamp};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let clock = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
//! let limiter = LocalRateLimiter::new(clock.clone());
//! let limits: RateLimits = "api=2/1s".parse()?;
//! let key = KeyId::generate()?;
//! assert!(matches!(limiter.check(&key, &limits).await?, RateDecision::Allowed(_)));
//! assert!(matches!(limiter.check(&key, &limits).await?, RateDecision::Allowed(_)));
//! let RateDecision::Limited { retry_after, .. } = limiter.check(&key, &limits).await? else { panic!() };
//! assert_eq!(retry_after, Duration::from_millis(500));
//! clock.advance(retry_after);
//! assert!(matches!(limiter.check(&key, &limits).await?, RateDecision::Allowed(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::ops::Add;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::clock::Reference;
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota};

use super::rate::{RateLimit, RateLimits};
use crate::clock::Clock;
use crate::error::BoxError;
use crate::token::KeyId;

/// The future a [`RateLimiter`] returns.
pub type LimitCheck<'a> = Pin<Box<dyn Future<Output = Result<RateDecision, LimiterError>> + Send + 'a>>;

/// Decides whether a key may make one more request under its rate limits.
///
/// Implement it to keep rate-limit state elsewhere; the verifier holds one
/// behind an `Arc` ([`crate::VerifierBuilder::rate_limiter`]). Answers
/// must be fail-closed: if the state cannot be read or written, return
/// [`LimiterError`], and the verifier refuses the request as unavailable.
pub trait RateLimiter: Send + Sync + fmt::Debug + 'static {
    /// Counts one request of `key` against each of `limits` (never empty).
    ///
    /// # Errors
    /// [`LimiterError`] when the limiter's state is unavailable.
    fn check<'a>(&'a self, key: &'a KeyId, limits: &'a RateLimits) -> LimitCheck<'a>;
}

/// What a [`RateLimiter`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateDecision {
    /// Every limit allowed the request; the status of the tightest one.
    Allowed(RateStatus),
    /// The limit at `index` (in [`RateLimits::as_slice`]) refused.
    Limited {
        /// Which limit refused.
        index: usize,
        /// How long until it would allow the request.
        retry_after: Duration,
    },
}

/// The state of one limit after an allowed request, for the IETF
/// `RateLimit` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateStatus {
    /// Which limit (index in [`RateLimits::as_slice`]): the one with the
    /// fewest requests left.
    pub index: usize,
    /// Requests left in its burst right now.
    pub remaining: u32,
    /// How long until its burst is full again.
    pub reset: Duration,
}

impl RateStatus {
    /// A status for limit `index`.
    #[must_use]
    pub fn new(index: usize, remaining: u32, reset: Duration) -> Self {
        Self { index, remaining, reset }
    }

    /// Whether `self` is tighter than `other` (fewer left; on a tie, the
    /// longer reset).
    fn tighter_than(&self, other: &Self) -> bool {
        (self.remaining, std::cmp::Reverse(self.reset)) < (other.remaining, std::cmp::Reverse(other.reset))
    }
}

/// The limiter's state could not be read or written (for example Redis is
/// down). The verifier fails closed: the request is refused as unavailable.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit state unavailable")]
pub struct LimiterError(#[source] pub BoxError);

impl LimiterError {
    /// Wraps the cause.
    pub fn new(e: impl Into<BoxError>) -> Self {
        Self(e.into())
    }
}

/// governor's view of the verifier's [`Clock`]: nanoseconds since the Unix
/// epoch, so tests drive rate limits with [`crate::ManualClock`].
#[derive(Clone)]
struct GovClock(Arc<dyn Clock>);

/// An instant of [`GovClock`] (nanoseconds since the epoch, 0 before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct GovInstant(u64);

impl Add<Nanos> for GovInstant {
    type Output = Self;
    fn add(self, n: Nanos) -> Self {
        Self(self.0.saturating_add(n.as_u64()))
    }
}

impl Reference for GovInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_sub(earlier.0))
    }

    fn saturating_sub(&self, d: Nanos) -> Self {
        self.0.checked_sub(d.as_u64()).map_or(*self, Self)
    }
}

impl governor::clock::Clock for GovClock {
    type Instant = GovInstant;
    fn now(&self) -> GovInstant {
        GovInstant(u64::try_from(self.0.now().unix_nanos()).unwrap_or(0))
    }
}

/// One quota's keyed GCRA state.
type Keyed = governor::RateLimiter<KeyId, DashMapStateStore<KeyId>, GovClock, StateInformationMiddleware>;

/// What makes two limits one GCRA: emission interval and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct QuotaKey {
    interval: Duration,
    burst: u32,
}

impl QuotaKey {
    fn of(limit: &RateLimit) -> Self {
        Self { interval: limit.interval(), burst: limit.burst }
    }

    fn quota(self) -> Option<Quota> {
        Some(Quota::with_period(self.interval)?.allow_burst(NonZeroU32::new(self.burst)?))
    }
}

/// The default [`RateLimiter`]: GCRA (`governor`) in this process's memory.
///
/// **Per node**: `N` nodes behind a load balancer allow up to `N` times a
/// key's limit in total (for one limit across nodes use
/// `RedisRateLimiter`, feature `redis`). A key's limits are checked in
/// name order, each that allows counting the request, so a request refused
/// by a later limit was still counted by the earlier ones (erring towards
/// refusal); two limits of one key with the same rate and burst are
/// checked once. One keyed `governor` limiter
/// per distinct rate and burst, keyed by [`KeyId`], so each tracked key
/// costs one map entry per distinct limit (its id and an 8-byte GCRA
/// state; `examples/limiter_memory.rs` measures it). Only keys that passed
/// the digest check reach the limiter, so clients cannot add entries with
/// invented keys. Idle keys are forgotten: at most once per
/// [`LocalRateLimiter::sweep_every`] a check sweeps out every key whose
/// state equals a fresh one (a full burst) and shrinks the maps.
pub struct LocalRateLimiter {
    clock: GovClock,
    quotas: papaya::HashMap<QuotaKey, Arc<Keyed>>,
    sweep_every: Duration,
    /// Unix nanoseconds of the last sweep.
    last_sweep: AtomicI64,
}

impl fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRateLimiter")
            .field("quotas", &self.quotas.len())
            .field("tracked", &self.tracked())
            .field("sweep_every", &self.sweep_every)
            .finish()
    }
}

impl LocalRateLimiter {
    /// How often idle keys are swept out unless
    /// [`LocalRateLimiter::sweep_every`] says otherwise.
    pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);

    /// A limiter reading time from `clock` (the verifier's clock).
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let now = clock.now().unix_nanos();
        Self {
            clock: GovClock(clock),
            quotas: papaya::HashMap::new(),
            sweep_every: Self::DEFAULT_SWEEP_EVERY,
            last_sweep: AtomicI64::new(now),
        }
    }

    /// How often idle keys are forgotten. Defaults to 60 seconds.
    #[must_use]
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    /// Keys tracked, summed over distinct limits.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.quotas.pin().values().map(|k| k.len()).sum()
    }

    /// Forgets every key whose state equals a fresh one and shrinks the
    /// maps. Checks call it on their own every
    /// [`LocalRateLimiter::sweep_every`].
    pub fn sweep(&self) {
        for keyed in self.quotas.pin().values() {
            keyed.retain_recent();
            keyed.shrink_to_fit();
        }
    }

    /// Sweeps if [`LocalRateLimiter::sweep_every`] has passed since the
    /// last sweep; of concurrent callers one sweeps.
    fn maybe_sweep(&self) {
        let now = governor::clock::Clock::now(&self.clock).0;
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let last = self.last_sweep.load(Ordering::Relaxed);
        let every = i64::try_from(self.sweep_every.as_nanos()).unwrap_or(i64::MAX);
        if now.saturating_sub(last) >= every
            && self.last_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.sweep();
        }
    }

    /// The keyed state for `quota`, made on first use.
    fn keyed(&self, quota: QuotaKey) -> Option<Arc<Keyed>> {
        let map = self.quotas.pin();
        if let Some(k) = map.get(&quota) {
            return Some(Arc::clone(k));
        }
        let made: Keyed = governor::RateLimiter::<_, _, _, governor::middleware::NoOpMiddleware<GovInstant>>::new(
            quota.quota()?,
            DashMapStateStore::default(),
            self.clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Some(Arc::clone(map.get_or_insert(quota, Arc::new(made))))
    }

    /// The synchronous check behind [`RateLimiter::check`].
    ///
    /// # Errors
    /// Never in practice: [`LimiterError`] only for a limit governor cannot
    /// represent (which [`RateLimit::new`] refuses).
    pub fn check_now(&self, key: &KeyId, limits: &RateLimits) -> Result<RateDecision, LimiterError> {
        self.maybe_sweep();
        let slice = limits.as_slice();
        let mut tightest: Option<RateStatus> = None;
        for (index, limit) in slice.iter().enumerate() {
            let quota = QuotaKey::of(limit);
            if slice[..index].iter().any(|l| QuotaKey::of(l) == quota) {
                continue; // the same constraint, checked already
            }
            let keyed = self.keyed(quota).ok_or_else(|| LimiterError::new(format!("unusable rate limit {limit}")))?;
            match keyed.check_key(key) {
                Ok(snapshot) => {
                    let s = status(index, &snapshot);
                    if tightest.is_none_or(|t| s.tighter_than(&t)) {
                        tightest = Some(s);
                    }
                }
                Err(not_until) => return Ok(limited(index, &not_until, &self.clock)),
            }
        }
        tightest.map(RateDecision::Allowed).ok_or_else(|| LimiterError::new("no rate limits to check"))
    }
}

impl RateLimiter for LocalRateLimiter {
    fn check<'a>(&'a self, key: &'a KeyId, limits: &'a RateLimits) -> LimitCheck<'a> {
        Box::pin(std::future::ready(self.check_now(key, limits)))
    }
}

impl<R: RateLimiter + ?Sized> RateLimiter for Arc<R> {
    fn check<'a>(&'a self, key: &'a KeyId, limits: &'a RateLimits) -> LimitCheck<'a> {
        (**self).check(key, limits)
    }
}

/// The status after an allowed request.
fn status(index: usize, snapshot: &StateSnapshot) -> RateStatus {
    let quota = snapshot.quota();
    let remaining = snapshot.remaining_burst_capacity();
    let used = quota.burst_size().get().saturating_sub(remaining);
    RateStatus { index, remaining, reset: quota.replenish_interval().saturating_mul(used) }
}

/// The refusal of limit `index`.
fn limited(index: usize, not_until: &NotUntil<GovInstant>, clock: &GovClock) -> RateDecision {
    let now = governor::clock::Clock::now(clock);
    RateDecision::Limited { index, retry_after: not_until.wait_time_from(now) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Timestamp};

    fn setup() -> (Arc<ManualClock>, LocalRateLimiter) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600).unwrap()));
        let limiter = LocalRateLimiter::new(clock.clone());
        (clock, limiter)
    }

    fn key(n: u8) -> KeyId {
        KeyId::parse(&format!("key{n:017}")).unwrap()
    }

    fn allowed(d: RateDecision) -> RateStatus {
        match d {
            RateDecision::Allowed(s) => s,
            RateDecision::Limited { .. } => panic!("refused: {d:?}"),
        }
    }

    #[test]
    fn burst_then_refusal_then_refill_on_the_manual_clock() {
        let (clock, limiter) = setup();
        let limits: RateLimits = "api=10/1s:burst=3".parse().unwrap();
        let k = key(1);
        let left: Vec<u32> = (0..3).map(|_| allowed(limiter.check_now(&k, &limits).unwrap()).remaining).collect();
        assert_eq!(left, [2, 1, 0]);
        let refused = limiter.check_now(&k, &limits).unwrap();
        assert_eq!(refused, RateDecision::Limited { index: 0, retry_after: Duration::from_millis(100) });
        clock.advance(Duration::from_millis(99));
        assert!(matches!(limiter.check_now(&k, &limits).unwrap(), RateDecision::Limited { .. }));
        clock.advance(Duration::from_millis(1));
        assert_eq!(allowed(limiter.check_now(&k, &limits).unwrap()).remaining, 0);
        clock.advance(Duration::from_secs(1));
        let s = allowed(limiter.check_now(&k, &limits).unwrap());
        assert_eq!((s.remaining, s.reset), (2, Duration::from_millis(100)));
        assert_eq!(allowed(limiter.check_now(&key(2), &limits).unwrap()).remaining, 2, "keys are separate");
    }

    #[test]
    fn several_limits_per_key_the_tightest_reports_and_any_refuses() {
        let (clock, limiter) = setup();
        let limits: RateLimits = "burst=100/1s:burst=5,hourly=3/1h".parse().unwrap();
        let k = key(3);
        let s = allowed(limiter.check_now(&k, &limits).unwrap());
        assert_eq!((s.index, s.remaining), (1, 2), "hourly is the tightest");
        assert_eq!(s.reset, Duration::from_secs(1200));
        allowed(limiter.check_now(&k, &limits).unwrap());
        allowed(limiter.check_now(&k, &limits).unwrap());
        clock.advance(Duration::from_secs(1));
        let RateDecision::Limited { index, retry_after } = limiter.check_now(&k, &limits).unwrap() else {
            panic!("hourly must refuse")
        };
        assert_eq!(index, 1);
        assert_eq!(retry_after, Duration::from_secs(1199));
    }

    #[test]
    fn identical_quotas_of_one_key_count_once() {
        let (_clock, limiter) = setup();
        let limits: RateLimits = "a=2/1s,b=2/1s".parse().unwrap();
        let k = key(4);
        allowed(limiter.check_now(&k, &limits).unwrap());
        allowed(limiter.check_now(&k, &limits).unwrap());
        assert!(matches!(limiter.check_now(&k, &limits).unwrap(), RateDecision::Limited { index: 0, .. }));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn idle_keys_are_forgotten_by_the_periodic_sweep() {
        let (clock, limiter) = setup();
        let limiter = limiter.sweep_every(Duration::from_secs(10));
        let limits: RateLimits = "api=1/1s".parse().unwrap();
        for n in 0..50 {
            allowed(limiter.check_now(&key(n), &limits).unwrap());
        }
        assert_eq!(limiter.tracked(), 50);
        clock.advance(Duration::from_secs(5));
        allowed(limiter.check_now(&key(100), &limits).unwrap());
        assert_eq!(limiter.tracked(), 51, "no sweep before the interval");
        clock.advance(Duration::from_secs(5));
        allowed(limiter.check_now(&key(101), &limits).unwrap());
        // The sweep ran before key 101 was counted; key 100 (5 s ago) is
        // idle too, since its 1 s period passed.
        assert_eq!(limiter.tracked(), 1, "only the key just used is left");
    }

    #[test]
    fn a_key_that_is_still_limited_is_not_forgotten() {
        let (clock, limiter) = setup();
        let limits: RateLimits = "slow=1/1h".parse().unwrap();
        allowed(limiter.check_now(&key(7), &limits).unwrap());
        clock.advance(Duration::from_secs(60));
        limiter.sweep();
        assert_eq!(limiter.tracked(), 1);
        assert!(matches!(limiter.check_now(&key(7), &limits).unwrap(), RateDecision::Limited { .. }));
    }

    #[test]
    fn a_clock_moved_backwards_refuses_rather_than_resets() {
        let (clock, limiter) = setup();
        let limits: RateLimits = "api=1/1s".parse().unwrap();
        allowed(limiter.check_now(&key(8), &limits).unwrap());
        clock.set(Timestamp::from_unix_seconds(1_767_225_500).unwrap());
        assert!(matches!(limiter.check_now(&key(8), &limits).unwrap(), RateDecision::Limited { .. }));
    }
}
