//! `/readyz`: whether the store answers, asked at most once per
//! [`FRESH_FOR`] however many probes arrive.
//!
//! The endpoint is unauthenticated, so without a bound each request would be
//! one store query that no flood shield stands in front of. Concurrent
//! probes wait for the one check in flight (single flight) and every probe
//! within [`FRESH_FOR`] of a finished check gets its answer. `/metrics`
//! counts the probes (`keyctl_readyz_requests_total`) and the store checks
//! they caused (`keyctl_readiness_checks_total{result}`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_keys::{KeyId, KeyStore};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::Mutex;

use super::{App, Node, READY_TIMEOUT};
use crate::failure::{Failure, OTHER};

/// How long one store check answers every probe.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// What the last store check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The store answered the lookup.
    Ready,
    /// The store answered with an error.
    Unavailable,
    /// The store did not answer within [`READY_TIMEOUT`].
    TimedOut,
}

impl Answer {
    /// The label of `keyctl_readiness_checks_total`.
    const fn label(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Unavailable => "unavailable",
            Self::TimedOut => "timeout",
        }
    }
}

/// The readiness state the handlers share.
pub(crate) struct Readiness {
    /// A random id the check looks up (any answer, found or not, is ready).
    probe: KeyId,
    /// The last check and when it finished; the lock is held while a check
    /// runs, so concurrent probes wait for it instead of starting their own.
    last: Mutex<Option<(Instant, Answer)>>,
}

impl Readiness {
    /// A readiness state with a fresh random probe id and no check yet.
    ///
    /// # Errors
    /// [`OTHER`] if the system's random source fails.
    pub(crate) fn new() -> Result<Self, Failure> {
        let probe = KeyId::generate().map_err(|e| Failure::new(OTHER, e.to_string()))?;
        Ok(Self { probe, last: Mutex::new(None) })
    }

    /// The answer of a check that finished less than [`FRESH_FOR`] ago, or
    /// of a new one.
    async fn answer(&self, node: &Node) -> Answer {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && at.elapsed() < FRESH_FOR
        {
            return answer;
        }
        let answer = self.check(node).await;
        *last = Some((Instant::now(), answer));
        answer
    }

    /// One store lookup, counted.
    async fn check(&self, node: &Node) -> Answer {
        let started = Instant::now();
        let answer = match tokio::time::timeout(READY_TIMEOUT, node.ping(&self.probe)).await {
            Ok(Ok(())) => Answer::Ready,
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::failure::chain(&e), "readiness: the store does not answer");
                Answer::Unavailable
            }
            Err(_) => {
                tracing::warn!(waited = ?started.elapsed(), "readiness: the store did not answer in time");
                Answer::TimedOut
            }
        };
        metrics::counter!("keyctl_readiness_checks_total", "result" => answer.label()).increment(1);
        answer
    }
}

/// `GET /readyz`: 200 when the store answers, else 503.
pub(crate) async fn readyz<S: KeyStore>(State(app): State<Arc<App<S>>>) -> Response {
    metrics::counter!("keyctl_readyz_requests_total").increment(1);
    match app.readiness.answer(&app.node).await {
        Answer::Ready => (StatusCode::OK, "ready\n").into_response(),
        Answer::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response(),
        Answer::TimedOut => (StatusCode::SERVICE_UNAVAILABLE, "store did not answer in time\n").into_response(),
    }
}
