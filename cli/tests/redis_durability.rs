//! `keyctl serve`'s Redis durability check (issue 25 finding 6), against
//! the machine's Redis (no append-only file, as CI's) and against private
//! `redis-server` processes on loopback ports in a temporary directory,
//! including the crash the check is about: a revocation made after the last
//! snapshot is lost by `kill -9` without an append-only file, and kept with
//! one (harness in `common/`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `redis-server` on a free loopback port, data in `dir`; killed
/// (SIGKILL) when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(dir: &Path, port: Option<u16>, settings: &[&str]) -> Self {
        let port =
            port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let mut args = vec!["--port".to_owned(), port.to_string(), "--bind".to_owned(), "127.0.0.1".to_owned()];
        args.extend(["--dir".to_owned(), dir.display().to_string(), "--daemonize".to_owned(), "no".to_owned()]);
        args.extend(settings.iter().map(|s| (*s).to_owned()));
        let child =
            Command::new("redis-server").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `kill -9`: nothing is flushed.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_redis_server() -> bool {
    let found = Command::new("redis-server").arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: no redis-server on PATH");
    }
    found
}

/// Starts `keyctl serve` with `args` and expects exit 2 before listening;
/// returns stderr.
fn refused(k: &Keyctl, url: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(KEYCTL);
    cmd.current_dir(k.dir.path()).args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.envs(k.vars.iter().map(|(k, v)| (k, v))).env("API_KEYS_DATABASE_URL", url).envs(env.iter().copied());
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(2), "{err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyctl serve {args:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The machine's Redis keeps nothing on disk: served with a warning by
/// default, refused when durability is required.
#[test]
fn a_redis_without_an_append_only_file_is_warned_about_or_refused() {
    let base = redis_url();
    let prefix = unique("durability");
    let _cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    let url = with_param(&base, "prefix", &prefix);
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let server = Server::start(&k, &url, &[]);
    let log = server.log();
    assert!(log.contains("warning: the Redis store is not durable: appendonly is `no`"), "{log}");
    assert!(log.contains("docs/redis-durability.md"), "{log}");
    server.stop();

    let err = refused(&k, &url, &["--require-durable-redis"], &[]);
    assert!(err.contains("the Redis store is not durable: appendonly is `no`"), "{err}");
    let err = refused(&k, &url, &[], &[("API_KEYS_REQUIRE_DURABLE_REDIS", "1")]);
    assert!(err.contains("the Redis store is not durable"), "{err}");
    let err = refused(&k, &url, &[], &[("API_KEYS_REQUIRE_DURABLE_REDIS", "maybe")]);
    assert!(err.contains("API_KEYS_REQUIRE_DURABLE_REDIS: `maybe` is not"), "{err}");
    // A store that is not Redis is not checked.
    let sqlite = Server::start(&k, SQLITE_DEFAULT_URL, &[("API_KEYS_REQUIRE_DURABLE_REDIS", "1")]);
    assert!(!sqlite.log().contains("durable"), "{}", sqlite.log());
    sqlite.stop();
}

/// What the check is about, on private Redis processes: without an
/// append-only file a revocation made after the last snapshot is undone by
/// a crash; with `appendonly yes` and `appendfsync always` it is kept, and
/// such a Redis passes `--require-durable-redis` (an evicting one does not).
#[test]
fn a_crash_undoes_a_revocation_only_without_an_append_only_file() {
    if !have_redis_server() {
        return;
    }
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let status = |url: &str, id: &str| -> String {
        let v = k.keyctl(&["--database-url", url, "get", id, "--format", "json"]).ok().value();
        v["status"].as_str().unwrap().to_owned()
    };
    for durable in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let settings: &[&str] = if durable {
            &["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction", "--save", ""]
        } else {
            // Redis's defaults: snapshots only.
            &["--appendonly", "no", "--save", "3600 1"]
        };
        let redis = Redis::start(dir.path(), None, settings);
        let url = format!("{}?prefix=crash", redis.url());
        let (id, _) = created(
            k.keyctl(&["--database-url", &url, "create", "--service-account-id", "robot", "--create-service-account"])
                .ok(),
        );
        assert_eq!(redis.cli(&["SAVE"]), "OK");
        k.keyctl(&["--database-url", &url, "revoke", &id]).ok();
        assert_eq!(status(&url, &id), "revoked");
        if durable {
            let server = Server::start(&k, &url, &[("API_KEYS_REQUIRE_DURABLE_REDIS", "1")]);
            assert!(!server.log().contains("not durable"), "{}", server.log());
            server.stop();
        }
        let port = redis.port;
        redis.crash();
        let redis = Redis::start(dir.path(), Some(port), settings);
        let expected = if durable { "revoked" } else { "active" };
        assert_eq!(status(&url, &id), expected, "durable: {durable}");
        if durable {
            assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]), "OK");
            let err = refused(&k, &url, &["--require-durable-redis"], &[]);
            assert!(err.contains("maxmemory-policy is `allkeys-lru`"), "{err}");
        }
    }
}
