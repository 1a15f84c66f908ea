//! [`RedisRateLimiter`]: rate limits shared by every node that uses one
//! Redis (feature `redis`).

use std::fmt;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::limiter::{LimitCheck, LimiterError, RateDecision, RateLimiter, RateStatus};
use super::rate::{RateLimit, RateLimits};
use crate::token::KeyId;

/// GCRA over all of a key's limits in one script: every limit is checked
/// first and only if all allow are their states written, so a request
/// refused by one limit counts against none. Time is the server's (`TIME`,
/// microseconds), so node clocks do not matter. Each state key expires
/// when its state equals a fresh one (`PX`), so idle keys vanish.
///
/// KEYS: one state key per limit. ARGV: per limit, its emission interval
/// and burst (µs, count). Returns `{1, index, remaining, reset_us}` or
/// `{0, index, retry_after_us}` (0-based index).
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if allow_at > now then
    return {0, i - 1, allow_at - now}
  end
  tats[i] = new_tat
end
local best, best_left, best_reset = 0, -1, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local reset = tats[i] - now
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil(reset / 1000) + 1)
  local left = math.floor((burst * interval - reset) / interval)
  if best_left < 0 or left < best_left or (left == best_left and reset > best_reset) then
    best, best_left, best_reset = i - 1, left, reset
  end
end
return {1, best, best_left, best_reset}
";

/// Rate limits counted in Redis, shared by every node using the same Redis
/// and prefix: one `EVALSHA` of a GCRA script per check (all of a key's
/// limits in one atomic step, on the server's clock).
///
/// State keys are `<prefix>:rl:{<key id>}:<limit name>` (one hash slot
/// per API key), each expiring once it equals a fresh state. Any Redis
/// error or a check slower than the timeout is a [`LimiterError`]: the
/// verifier refuses the request as unavailable (fail closed).
///
/// Unlike [`super::limiter::LocalRateLimiter`], a request refused by one limit is
/// counted by none. Times are whole microseconds.
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: Box<str>,
    timeout: Duration,
    script: Script,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.prefix).field("timeout", &self.timeout).finish()
    }
}

impl RedisRateLimiter {
    /// A limiter over `conn` with keys under `prefix`, each check bounded
    /// by [`crate::store::DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, prefix: prefix.into(), timeout: crate::store::DEFAULT_TIMEOUT, script: Script::new(GCRA_LUA) }
    }

    /// Connects to `url` (`redis://…`). Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    /// [`LimiterError`] when the URL is invalid or Redis does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url).map_err(LimiterError::new)?;
        let conn = ConnectionManager::new(client).await.map_err(LimiterError::new)?;
        Ok(Self::new(conn, prefix))
    }

    /// The longest a check may take. Defaults to
    /// [`crate::store::DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The state key of `limit` for `key`.
    fn state_key(&self, key: &KeyId, limit: &RateLimit) -> String {
        format!("{}:rl:{{{key}}}:{}", self.prefix, limit.name)
    }

    async fn run(&self, key: &KeyId, limits: &RateLimits) -> Result<RateDecision, LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        for limit in limits.as_slice() {
            let interval = u64::try_from(limit.interval().as_micros()).unwrap_or(u64::MAX).max(1);
            invocation.key(self.state_key(key, limit)).arg(interval).arg(limit.burst);
        }
        let mut conn = self.conn.clone();
        let call = invocation.invoke_async::<Vec<i64>>(&mut conn);
        let reply = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map_err(LimiterError::new)?,
            Err(_) => return Err(LimiterError::new("rate-limit check timed out")),
        };
        decode(&reply).ok_or_else(|| LimiterError::new("unexpected reply from the rate-limit script"))
    }
}

/// The script's reply as a decision.
fn decode(reply: &[i64]) -> Option<RateDecision> {
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    match *reply {
        [0, index, wait] => {
            Some(RateDecision::Limited { index: usize::try_from(index).ok()?, retry_after: micros(wait) })
        }
        [1, index, left, reset] => Some(RateDecision::Allowed(RateStatus::new(
            usize::try_from(index).ok()?,
            u32::try_from(left.max(0)).unwrap_or(u32::MAX),
            micros(reset),
        ))),
        _ => None,
    }
}

impl RateLimiter for RedisRateLimiter {
    fn check<'a>(&'a self, key: &'a KeyId, limits: &'a RateLimits) -> LimitCheck<'a> {
        Box::pin(self.run(key, limits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_or_are_refused() {
        assert_eq!(
            decode(&[0, 1, 1_500_000]),
            Some(RateDecision::Limited { index: 1, retry_after: Duration::from_millis(1500) })
        );
        assert_eq!(
            decode(&[1, 0, 3, 250]),
            Some(RateDecision::Allowed(RateStatus::new(0, 3, Duration::from_micros(250))))
        );
        assert_eq!(decode(&[1, -1, 3, 250]), None);
        assert_eq!(decode(&[2]), None);
        assert_eq!(decode(&[]), None);
    }
}
