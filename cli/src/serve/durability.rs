//! The Redis durability check at start: a Redis store keeps revocations,
//! credits, rate limits and the operations log, so a Redis that can lose
//! acknowledged writes on a crash (no append-only file, `appendfsync no`)
//! or evict keys under memory pressure (`maxmemory-policy` other than
//! `noeviction`) can bring a revoked key back.
//!
//! `keyctl serve` reads `CONFIG GET appendonly`, `appendfsync` and
//! `maxmemory-policy` once at start. By default a Redis that falls short is
//! warned about and served; with `--require-durable-redis`
//! (`API_KEYS_REQUIRE_DURABLE_REDIS=1`) it is refused (exit 2), and so is a
//! Redis whose settings cannot be read (a managed Redis that disables
//! `CONFIG`). The operator's guide is `docs/redis-durability.md`.

use std::collections::HashMap;

use api_keys::RedisStore;

use crate::failure::{BAD_INPUT, Failure};

/// One setting that falls short, with why it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shortfall(String);

/// What the settings say: every shortfall (none: durable).
pub(crate) fn assess(settings: &HashMap<String, String>) -> Vec<Shortfall> {
    let get = |name: &str| settings.get(name).map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default();
    let mut short = Vec::new();
    if get("appendonly") != "yes" {
        short.push(Shortfall(format!(
            "appendonly is `{}`: a crash loses every write since the last snapshot (a revoked key comes back)",
            get("appendonly")
        )));
    }
    if !matches!(get("appendfsync").as_str(), "always" | "everysec") {
        short.push(Shortfall(format!(
            "appendfsync is `{}`: the operating system decides when writes reach the disk (use always, or everysec for \
             a one-second window)",
            get("appendfsync")
        )));
    }
    if get("maxmemory-policy") != "noeviction" {
        short.push(Shortfall(format!(
            "maxmemory-policy is `{}`: Redis may evict key records and the operations log under memory pressure",
            get("maxmemory-policy")
        )));
    }
    short
}

/// Reads the three settings from the store's Redis.
async fn settings(store: &RedisStore) -> Result<HashMap<String, String>, redis::RedisError> {
    let mut conn = store.connection().clone();
    let mut all = HashMap::new();
    for name in ["appendonly", "appendfsync", "maxmemory-policy"] {
        let got: HashMap<String, String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await?;
        all.extend(got);
    }
    Ok(all)
}

/// Checks the Redis store, if the store is Redis: warns on stderr, or with
/// `require` refuses.
///
/// # Errors
/// [`BAD_INPUT`] with `require` when a setting falls short or cannot be
/// read.
pub(crate) async fn check(store: Option<&RedisStore>, require: bool) -> Result<(), Failure> {
    let Some(store) = store else { return Ok(()) };
    let problems = match tokio::time::timeout(super::READY_TIMEOUT * 5, settings(store)).await {
        Ok(Ok(settings)) => assess(&settings).into_iter().map(|s| s.0).collect(),
        Ok(Err(e)) => vec![format!("its settings cannot be read (CONFIG GET: {e}); durability is not known")],
        Err(_) => vec!["its settings cannot be read (CONFIG GET did not answer in time)".to_owned()],
    };
    if problems.is_empty() {
        return Ok(());
    }
    let text = problems.join("; ");
    if require {
        return Err(Failure::new(
            BAD_INPUT,
            format!(
                "the Redis store is not durable: {text}. Set it up as docs/redis-durability.md says, or start without \
                 --require-durable-redis to accept the risk"
            ),
        ));
    }
    eprintln!(
        "keyctl: warning: the Redis store is not durable: {text}. See docs/redis-durability.md; \
         --require-durable-redis refuses to start instead"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_aof_with_fsync_and_noeviction_is_durable() {
        for fsync in ["always", "everysec", "EVERYSEC"] {
            let s = settings(&[("appendonly", "yes"), ("appendfsync", fsync), ("maxmemory-policy", "noeviction")]);
            assert_eq!(assess(&s), []);
        }
        let defaults =
            settings(&[("appendonly", "no"), ("appendfsync", "everysec"), ("maxmemory-policy", "noeviction")]);
        let short = assess(&defaults);
        assert_eq!(short.len(), 1);
        assert!(short[0].0.starts_with("appendonly is `no`"), "{short:?}");
        let lru = settings(&[("appendonly", "yes"), ("appendfsync", "no"), ("maxmemory-policy", "allkeys-lru")]);
        assert_eq!(assess(&lru).len(), 2);
        assert_eq!(assess(&HashMap::new()).len(), 3, "nothing read is nothing known");
    }
}
