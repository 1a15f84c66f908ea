//! Many nodes, measured across processes: three `keyctl serve` over one
//! PostgreSQL schema and three over one Redis prefix, with keys created and
//! revoked by separate `keyctl` processes (harness in `common/`).
//!
//! - a key created with `keyctl create` verifies on every node within 1 s;
//! - after `keyctl revoke` returns, every node rejects the (cached) key
//!   within 1 s — 50 revocations, p50/p99 printed (`--nocapture`);
//! - with the nodes' notification connections killed on the server side
//!   (`pg_terminate_backend`, `CLIENT KILL ID`), a revocation still reaches
//!   every node within the configured maximum staleness, and the listeners
//!   reconnect by themselves (a later revocation arrives within 1 s again);
//! - a node killed with SIGKILL and restarted serves again: its keys verify,
//!   revoked keys stay rejected.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

/// Long enough that every rejection within the test's 1 s bounds comes from
/// the invalidation channel, not from entries ageing out.
const TTL: &str = "20s";
const MAX_STALENESS: &str = "20s";
const MAX_STALENESS_SECS: u64 = 20;
const REVOCATIONS: usize = 50;

/// Which server-side connection-killing the backend uses.
#[derive(Clone, Copy)]
enum Backend {
    Postgres,
    Redis,
}

#[test]
fn three_postgres_nodes() {
    let base = postgres_url();
    let schema = unique("nodes_pg");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    three_nodes(Backend::Postgres, &base, &with_param(&base, "schema", &schema));
}

#[test]
fn three_redis_nodes() {
    let base = redis_url();
    let prefix = unique("nodes-redis");
    let _cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    three_nodes(Backend::Redis, &base, &with_param(&base, "prefix", &prefix));
}

fn three_nodes(backend: Backend, base: &str, url: &str) {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_DATABASE_URL", url);
    let env = [("API_KEYS_CACHE_TTL", TTL), ("API_KEYS_CACHE_MAX_STALENESS", MAX_STALENESS)];
    let mut nodes: Vec<Server> = (0..3).map(|_| Server::start(&k, url, &env)).collect();
    for n in &nodes {
        wait_connected(n);
    }

    // Created elsewhere: verifies on every node.
    let (id, secret) =
        created(k.keyctl(&["create", "--service-account-id", "n-robot", "--create-service-account"]).ok());
    for n in &nodes {
        let waited = until(Duration::from_secs(1), || n.authorize(Some(&secret), None).status == 200);
        assert!(waited.is_some(), "a new key was not accepted within 1 s:\n{}", n.log());
    }

    // Revocations by a separate keyctl process reach every node.
    let mut latencies = Vec::new();
    for _ in 0..REVOCATIONS {
        latencies.extend(revoke_and_measure(&k, &nodes[1..], Duration::from_secs(1)));
    }
    report(backend, &latencies);

    // Notification connections killed on the server side: the revocation
    // still arrives within the maximum staleness, and the listeners
    // reconnect by themselves.
    let (warm_id, warm_secret) =
        created(k.keyctl(&["create", "--service-account-id", "n-robot", "--create-service-account"]).ok());
    for n in &nodes[1..] {
        assert_eq!(n.authorize(Some(&warm_secret), None).status, 200);
        // The cache reports what it holds (moka counts in the background).
        let counted = until(Duration::from_secs(2), || metric(n, "keyctl_cache_entries") >= 1.0);
        assert!(counted.is_some(), "keyctl_cache_entries stayed 0 after a lookup:\n{}", n.log());
    }
    let killed: usize = nodes[1..].iter().map(|n| kill_listeners(backend, base, n)).sum();
    assert!(killed >= 2, "expected a listener per node, killed {killed}");
    let started = Instant::now();
    k.keyctl(&["revoke", &warm_id]).ok();
    for n in &nodes[1..] {
        let bound = Duration::from_secs(MAX_STALENESS_SECS);
        let waited = until(bound, || n.authorize(Some(&warm_secret), None).status == 401);
        assert!(waited.is_some(), "revocation not seen within the maximum staleness:\n{}", n.log());
    }
    eprintln!("{backend:?}: with the listeners killed, revocation reached both nodes in {:?}", started.elapsed());
    for n in &nodes[1..] {
        wait_connected(n);
        assert!(metric(n, "keyctl_invalidation_connected") == 1.0);
    }
    let again = revoke_and_measure(&k, &nodes[1..], Duration::from_secs(1));
    eprintln!("{backend:?}: after the listeners reconnected, revocation took {again:?}");

    // SIGKILL and restart: nothing lost.
    let killed = nodes.remove(2);
    killed.kill();
    let restarted = Server::start(&k, url, &env);
    assert_eq!(restarted.authorize(Some(&secret), None).status, 200, "{}", restarted.log());
    assert_eq!(restarted.authorize(Some(&warm_secret), None).status, 401);
    wait_connected(&restarted);
    k.keyctl(&["revoke", &id]).ok();
    let waited = until(Duration::from_secs(1), || restarted.authorize(Some(&secret), None).status == 401);
    assert!(waited.is_some(), "the restarted node missed a revocation:\n{}", restarted.log());
    nodes.push(restarted);
    for n in nodes {
        let log = n.stop();
        assert!(!log.contains(&secret) && !log.contains(&warm_secret), "a node logged a secret:\n{log}");
    }
}

/// Creates a key, warms it into the nodes' caches, revokes it with keyctl
/// and returns, per node, how long after `keyctl revoke` returned the node
/// first rejected it (asserted under `bound`).
fn revoke_and_measure(k: &Keyctl, nodes: &[Server], bound: Duration) -> Vec<Duration> {
    let (id, secret) =
        created(k.keyctl(&["create", "--service-account-id", "n-robot", "--create-service-account"]).ok());
    for n in nodes {
        // The create's announcement reaches the node's flood shield within
        // the 1 s bound, not necessarily before this request.
        let accepted = until(Duration::from_secs(1), || n.authorize(Some(&secret), None).status == 200);
        assert!(accepted.is_some(), "a new key was not accepted within 1 s:\n{}", n.log());
        assert_eq!(n.authorize(Some(&secret), None).status, 200, "cached");
    }
    k.keyctl(&["revoke", &id]).ok();
    let returned = Instant::now();
    let mut seen = vec![None; nodes.len()];
    while seen.iter().any(Option::is_none) && returned.elapsed() < bound {
        for (i, n) in nodes.iter().enumerate() {
            if seen[i].is_none() && n.authorize(Some(&secret), None).status == 401 {
                seen[i] = Some(returned.elapsed());
            }
        }
    }
    seen.into_iter()
        .zip(nodes)
        .map(|(s, n)| s.unwrap_or_else(|| panic!("revocation not seen within {bound:?}:\n{}", n.log())))
        .collect()
}

fn report(backend: Backend, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "{backend:?}: revocation reached the other nodes after `keyctl revoke` returned: \
         p50 {:?}, p99 {:?}, max {:?} over {} revocations x {} nodes",
        at(0.5),
        at(0.99),
        sorted[sorted.len() - 1],
        latencies.len() / 2,
        2
    );
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres => "PostgreSQL",
            Self::Redis => "Redis",
        })
    }
}

/// Polls `check` until it holds or `bound` passes; how long it took.
fn until(bound: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A metric's value from the node's `/metrics`.
fn metric(n: &Server, name: &str) -> f64 {
    let body = n.request("GET", "/metrics", &[], "").body;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the node's invalidation subscription is up.
fn wait_connected(n: &Server) {
    let up = until(Duration::from_secs(30), || metric(n, "keyctl_invalidation_connected") == 1.0);
    assert!(up.is_some(), "the node's invalidation listener did not connect:\n{}", n.log());
}

/// Kills, on the server side, the node's notification connections (only
/// this node's: matched by the local ports of its sockets). Returns how
/// many were killed.
fn kill_listeners(backend: Backend, base: &str, n: &Server) -> usize {
    let ports = local_ports(n.child.id());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        match backend {
            Backend::Postgres => {
                use sqlx::Connection as _;
                let mut admin = sqlx::PgConnection::connect(base).await.unwrap();
                let rows: Vec<(i32, Option<i32>)> =
                    sqlx::query_as("SELECT pid, client_port FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'")
                        .fetch_all(&mut admin)
                        .await
                        .unwrap();
                let mut killed = 0;
                for (pid, port) in rows {
                    let ours = port.and_then(|p| u16::try_from(p).ok()).is_some_and(|p| ports.contains(&p));
                    if ours {
                        let _: (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
                            .bind(pid)
                            .fetch_one(&mut admin)
                            .await
                            .unwrap();
                        killed += 1;
                    }
                }
                killed
            }
            Backend::Redis => {
                let client = redis::Client::open(base).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await.unwrap();
                let mut killed = 0;
                for line in list.lines() {
                    let field = |name: &str| {
                        line.split(' ').find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    };
                    let port = field("addr").and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
                    let subscriber = field("cmd").is_some_and(|c| c.contains("subscribe"));
                    if subscriber && port.is_some_and(|p| ports.contains(&p)) {
                        let id = field("id").unwrap();
                        let _: i64 =
                            redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut conn).await.unwrap();
                        killed += 1;
                    }
                }
                killed
            }
        }
    })
}

/// The local TCP ports of a process's sockets (from `/proc`).
fn local_ports(pid: u32) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9
                && inodes.contains(cols[9])
                && let Some(port) = cols[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}
