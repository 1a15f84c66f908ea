//! Failed admin authentications, counted per client address: after
//! [`AuthThrottle::MAX_FAILURES`] failures within
//! [`AuthThrottle::WINDOW`], further calls from that address are answered
//! 429 (code 8) without checking their credentials until the window ends.
//!
//! The counts live in this node's memory (a throttle, not a record: a
//! restart or another node starts from zero) and are bounded: at most
//! [`AuthThrottle::MAX_ADDRESSES`] addresses are tracked, expired ones are
//! dropped first and, if all are live, the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failure counts per client address.
#[derive(Debug, Default)]
pub(crate) struct AuthThrottle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    /// Failures allowed per address within [`Self::WINDOW`].
    pub(crate) const MAX_FAILURES: u32 = 20;
    /// The window failures are counted in.
    pub(crate) const WINDOW: Duration = Duration::from_secs(60);
    /// Most addresses tracked at once.
    pub(crate) const MAX_ADDRESSES: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `ip` must still wait, if it is over its budget.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.lock();
        let (since, count) = failures.get(&ip)?;
        let elapsed = now.saturating_duration_since(*since);
        (*count >= Self::MAX_FAILURES && elapsed < Self::WINDOW).then(|| Self::WINDOW - elapsed)
    }

    /// Counts a failure from `ip`.
    pub(crate) fn fail(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= Self::MAX_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, (since, _)| now.saturating_duration_since(*since) < Self::WINDOW);
            if failures.len() >= Self::MAX_ADDRESSES {
                let oldest = failures.iter().min_by_key(|(_, (since, _))| *since).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= Self::WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let t = AuthThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..AuthThrottle::MAX_FAILURES - 1 {
            t.fail(a, start);
        }
        assert_eq!(t.blocked(a, start), None);
        t.fail(a, start);
        assert!(t.blocked(a, start + Duration::from_secs(59)).is_some());
        assert_eq!(t.blocked(b, start), None, "other addresses are not affected");
        assert_eq!(t.blocked(a, start + AuthThrottle::WINDOW), None, "the window ended");
        t.fail(a, start + AuthThrottle::WINDOW);
        assert_eq!(t.blocked(a, start + AuthThrottle::WINDOW), None, "a new window starts at zero");
    }
}
