//! A fleet rolled out at once: five `keyctl serve` processes started at the
//! same moment on a store nobody has set up yet (a new PostgreSQL schema, a
//! new Redis prefix, a new SQLite file) all start and serve the same keys
//! (harness in `common/`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::*;

const NODES: usize = 5;

/// Starts [`NODES`] servers on `url` at once, waits for every one, and checks
/// that a key created afterwards through one store works on all of them.
fn start_together(k: &Keyctl, url: &str) {
    let starting: Vec<Starting> = (0..NODES).map(|_| Server::spawn(k, url, &[], "127.0.0.1:0")).collect();
    let servers: Vec<Server> = starting.into_iter().map(Starting::listening).collect();
    let (_, secret) = created(
        k.keyctl(&["--database-url", url, "create", "--service-account-id", "fleet", "--create-service-account"]).ok(),
    );
    for s in &servers {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Other nodes learn of the new key through the store (and drop their
        // shield's "unknown" answer on the invalidation channel).
        while s.authorize(Some(&secret), None).status != 200 {
            assert!(std::time::Instant::now() < deadline, "node {} refuses the key:\n{}", s.addr, s.log());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    for s in servers {
        s.stop();
    }
}

/// Issue 25 finding 13: two nodes started together on a new schema raced on
/// `CREATE SCHEMA IF NOT EXISTS` and one exited with a unique violation on
/// `pg_namespace`.
#[test]
fn five_nodes_start_together_on_a_new_postgres_schema() {
    let base = postgres_url();
    for _ in 0..5 {
        let schema = unique("rollout");
        let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
        let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
        start_together(&k, &with_param(&base, "schema", &schema));
    }
}

#[test]
fn five_nodes_start_together_on_a_new_redis_prefix() {
    let base = redis_url();
    for _ in 0..5 {
        let prefix = unique("rollout");
        let _cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
        let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
        start_together(&k, &with_param(&base, "prefix", &prefix));
    }
}

#[test]
fn five_nodes_start_together_on_a_new_sqlite_file() {
    for _ in 0..5 {
        let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
        start_together(&k, "sqlite://fleet.db?mode=rwc");
    }
}

/// The same with no pepper given: the nodes that find no pepper file race to
/// create it, and every node must end up with the one that was written.
#[test]
fn five_nodes_start_together_on_a_new_sqlite_file_and_pepper_file() {
    for _ in 0..5 {
        let k = Keyctl::new();
        start_together(&k, "sqlite://fleet.db?mode=rwc");
    }
}
