//! `examples/keyctl.rs` end to end: the example is built once (with
//! `examples/axum_server.rs`, by a nested `cargo build` into this test's
//! target directory) and run as a process in a temporary directory, the way
//! an operator runs it.
//!
//! SQLite runs use the default URL (`api-keys.db` in the working directory)
//! and its pepper file. The PostgreSQL and Redis runs need the services on
//! loopback (`API_KEYS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `API_KEYS_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`); each works in a fresh schema or key
//! prefix, removed at the end also when the test fails. A store that is down
//! fails the test with keyctl's own message naming it (exit code 5).

#![cfg(all(feature = "cli", feature = "sqlite", feature = "postgres", feature = "redis"))]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

/// Features the examples are built with: keyctl's plus the server's.
const FEATURES: &str = "cli,sqlite,postgres,redis,axum";
const SQLITE_DEFAULT_URL: &str = "sqlite://api-keys.db?mode=rwc";
const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";
/// Variables keyctl and the server read; cleared in every child unless a
/// test sets them, so the caller's environment cannot leak in.
const VARS: [&str; 3] = ["API_KEYS_DATABASE_URL", "API_KEYS_PEPPER", "API_KEYS_PEPPER_VERSION"];

struct Examples {
    keyctl: PathBuf,
    axum_server: PathBuf,
}

/// Builds both examples once per test process and returns their paths, as
/// cargo reports them.
fn examples() -> &'static Examples {
    static EXAMPLES: OnceLock<Examples> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        // `CARGO_TARGET_TMPDIR` is `<target dir>/tmp`: build into the same
        // target directory as this test, whatever it is.
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
        let out = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--example", "keyctl", "--example", "axum_server", "--features", FEATURES])
            .arg("--target-dir")
            .arg(target_dir)
            .arg("--message-format=json-render-diagnostics")
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "building the examples failed");
        let mut found = (None, None);
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let msg: Value = serde_json::from_str(line).unwrap();
            if msg["reason"] != "compiler-artifact" || !msg["target"]["kind"].to_string().contains("example") {
                continue;
            }
            let exe = msg["executable"].as_str().map(PathBuf::from);
            match msg["target"]["name"].as_str() {
                Some("keyctl") => found.0 = exe,
                Some("axum_server") => found.1 = exe,
                _ => {}
            }
        }
        Examples { keyctl: found.0.unwrap(), axum_server: found.1.unwrap() }
    })
}

/// A unique lowercase name for schemas, prefixes and service accounts.
fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{label}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn random_pepper() -> String {
    api_keys::Pepper::generate(1).unwrap().to_base64().to_string()
}

/// One keyctl run.
#[derive(Debug, Clone)]
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "keyctl {} exited {}\nstdout:\n{}\nstderr:\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        self.expect(0)
    }

    /// stdout as YAML or JSON.
    fn value(&self) -> Value {
        serde_norway::from_str(&self.stdout).unwrap_or_else(|e| panic!("keyctl {}: {e}\n{}", self.args, self.stdout))
    }
}

/// A working directory and environment for keyctl runs; remembers every
/// run so tests can check what was ever printed.
struct Keyctl {
    dir: tempfile::TempDir,
    vars: Vec<(&'static str, String)>,
    runs: RefCell<Vec<Run>>,
}

impl Keyctl {
    /// A fresh directory; the default URL (SQLite `api-keys.db` there) and no
    /// pepper variable.
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), vars: Vec::new(), runs: RefCell::new(Vec::new()) }
    }

    fn with_var(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((name, value.into()));
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(&examples().keyctl);
        cmd.current_dir(self.dir.path()).args(args);
        for v in VARS {
            cmd.env_remove(v);
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let run = Run {
            args: args.join(" "),
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        self.runs.borrow_mut().push(run.clone());
        run
    }

    fn keyctl(&self, args: &[&str]) -> Run {
        self.run(args, None)
    }

    /// `verify` with the header value on stdin, as an operator pipes it.
    fn verify(&self, secret: &str, extra: &[&str]) -> Run {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        self.run(&args, Some(&format!("Api-Key {secret}\n")))
    }

    /// How many runs printed `text` anywhere.
    fn runs_showing(&self, text: &str) -> Vec<String> {
        self.runs
            .borrow()
            .iter()
            .filter(|r| r.stdout.contains(text) || r.stderr.contains(text))
            .map(|r| r.args.clone())
            .collect()
    }
}

/// `(id, secret)` of a create or reissue output (the `api_key.yaml` shape).
fn created(run: &Run) -> (String, String) {
    let v = run.value();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["api_key", "secret"], "{}", run.stdout);
    let id = v["api_key"]["id"].as_str().unwrap().to_owned();
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&format!("ak_{id}_")), "{secret}");
    assert!(run.stderr.contains("will not be shown again"), "{}", run.stderr);
    (id, secret)
}

/// The trimmed cells of the table row for key `id`.
fn row(table: &str, id: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
    line.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
}

fn masked(secret: &str) -> String {
    format!("****{}", &secret[secret.len() - 6..])
}

/// A secret with one character of its random part changed.
fn tampered(secret: &str) -> String {
    let mut b = secret.as_bytes().to_vec();
    let i = 30;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn sqlite_lifecycle_with_the_default_database() {
    let k = Keyctl::new();
    let create = k.keyctl(&[
        "create",
        "--service-account-id",
        "my-robot",
        "--description",
        "this API-key is for my-robot",
        "--scopes",
        "yc.monitoring.read,yc.postbox.send",
        "--expires-at",
        "2030-01-01T00:00:00Z",
    ]);
    create.ok();
    let (id, secret) = created(&create);
    let v = create.value();
    assert_eq!(v["api_key"]["service_account_id"], "my-robot");
    assert_eq!(v["api_key"]["scopes"], serde_json::json!(["yc.monitoring.read", "yc.postbox.send"]));
    assert_eq!(v["api_key"]["expires_at"], "2030-01-01T00:00:00Z");
    assert!(create.stdout.starts_with("api_key:\n  id: "), "{}", create.stdout);
    assert!(k.path("api-keys.db").exists());

    // The table: masked key and status, never the secret.
    let list = k.keyctl(&["list", "--service-account-id", "my-robot"]);
    list.ok();
    for header in ["ID", "CREATED AT", "LAST USED AT", "SCOPES", "EXPIRES AT", "MASKED KEY", "STATUS"] {
        assert!(list.stdout.contains(&format!(" {header} ")), "{header}: {}", list.stdout);
    }
    let cells = row(&list.stdout, &id);
    assert_eq!(cells[0], id);
    assert_eq!(cells[2], "", "never used");
    assert_eq!(cells[3], "yc.monitoring.read,yc.postbox.send");
    assert_eq!(cells[4..], ["2030-01-01 00:00:00", &masked(&secret), "active"]);
    assert!(list.stdout.starts_with("+-") && list.stdout.lines().count() == 5, "{}", list.stdout);

    let json = k.keyctl(&["list", "--service-account-id", "my-robot", "--format", "json"]);
    let keys = json.ok().value()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["masked_key"], masked(&secret));
    assert!(keys[0].get("digest").is_none() && keys[0].get("pepper_version").is_none());

    let get = k.keyctl(&["get", &id]);
    let got = get.ok().value();
    assert_eq!((got["id"].as_str(), got["description"].as_str()), (Some(&*id), Some("this API-key is for my-robot")));
    assert_eq!(got["status"], "active");

    // verify: the header value from stdin.
    let ok = k.verify(&secret, &[]);
    let principal = ok.ok().value();
    assert_eq!(
        (principal["key_id"].as_str(), principal["service_account_id"].as_str()),
        (Some(&*id), Some("my-robot"))
    );
    k.verify(&secret, &["--scope", "yc.monitoring.read"]).ok();
    let wrong_scope = k.verify(&secret, &["--scope", "yc.ai.translate.execute"]);
    assert!(wrong_scope.expect(1).stderr.contains("insufficient_scope"), "{}", wrong_scope.stderr);
    let bad = k.verify(&tampered(&secret), &[]);
    assert!(bad.expect(1).stderr.contains("invalid_token"), "{}", bad.stderr);
    let bare = k.run(&["verify"], Some(&format!("{secret}\n")));
    assert!(bare.expect(1).stderr.contains("Api-Key <key>"), "{}", bare.stderr);
    k.keyctl(&["verify", "--header", &format!("Api-Key {secret}"), "--format", "json"]).ok();

    // reissue with a grace period: both secrets work until it ends.
    let reissue = k.keyctl(&["reissue", &id, "--grace", "1h"]);
    reissue.ok();
    let (new_id, new_secret) = created(&reissue);
    assert_ne!(new_id, id);
    assert!(reissue.stderr.contains(&format!("the old key {id} stays valid until ")), "{}", reissue.stderr);
    k.verify(&secret, &[]).ok();
    k.verify(&new_secret, &["--scope", "yc.postbox.send"]).ok();
    let list = k.keyctl(&["list", "--service-account-id", "my-robot"]);
    assert_eq!(row(&list.ok().stdout, &id)[6], "grace");
    assert_eq!(row(&list.stdout, &new_id)[6], "active");
    let again = k.keyctl(&["reissue", &id]);
    assert!(again.expect(4).stderr.contains("already reissued"), "{}", again.stderr);

    // revoke, then delete.
    k.keyctl(&["revoke", &id]).ok();
    assert!(k.verify(&secret, &[]).expect(1).stderr.contains("invalid_token"));
    k.verify(&new_secret, &[]).ok();
    assert_eq!(k.keyctl(&["get", &id]).ok().value()["status"], "revoked");
    let list = k.keyctl(&["list", "--service-account-id", "my-robot"]);
    assert_eq!(row(&list.ok().stdout, &id)[6], "revoked");
    k.keyctl(&["delete", &id]).ok();
    assert!(k.keyctl(&["get", &id]).expect(3).stderr.contains("not found"));
    k.keyctl(&["delete", &id]).expect(3);
    k.keyctl(&["revoke", &id]).expect(3);
    k.keyctl(&["reissue", &id]).expect(3);
    assert!(k.verify(&secret, &[]).expect(1).stderr.contains("invalid_token"));

    // Each secret was printed once, by the command that made it; the
    // pepper never.
    assert_eq!(k.runs_showing(&secret), std::slice::from_ref(&create.args));
    assert_eq!(k.runs_showing(&new_secret), std::slice::from_ref(&reissue.args));
    let pepper = std::fs::read_to_string(k.path("api-keys.db.pepper")).unwrap();
    assert!(k.runs_showing(pepper.trim()).is_empty());
}

#[test]
fn import_reads_the_secret_from_stdin() {
    let k = Keyctl::new();
    let legacy = "AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    let import = k.run(
        &["import", "--service-account-id", "legacy-robot", "--scopes", "yc.postbox.send"],
        Some(&format!("{legacy}\n")),
    );
    let info = import.ok().value();
    // Six hex digits of the digest, never the end of the imported secret
    // (issue 17 finding 9).
    let masked = info["masked_key"].as_str().unwrap().to_owned();
    let masked = masked.as_str();
    assert!(masked.starts_with("****") && masked.len() == 10 && !masked.ends_with("rCG02w"), "{masked}");
    assert!(masked[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{masked}");
    assert_eq!(info["kind"], "imported");
    let id = info["id"].as_str().unwrap().to_owned();
    // The trailing newline was trimmed: the exact secret verifies.
    let v = k.verify(legacy, &["--scope", "yc.postbox.send"]);
    assert_eq!(v.ok().value()["key_id"].as_str(), Some(&*id));
    k.verify(&format!("{legacy}x"), &[]).expect(1);
    // Without a newline, too; a second import of the same secret is refused.
    let dup = k.run(&["import", "--service-account-id", "legacy-robot"], Some(legacy));
    assert!(dup.expect(4).stderr.contains("already imported"), "{}", dup.stderr);
    let short = k.run(&["import", "--service-account-id", "legacy-robot"], Some("short\n"));
    assert!(short.expect(2).stderr.contains("imported secret rejected"), "{}", short.stderr);
    let list = k.keyctl(&["list", "--service-account-id", "legacy-robot"]);
    assert!(list.ok().stdout.contains(masked) && !list.stdout.contains("rCG02w"), "{}", list.stdout);
    assert!(k.runs_showing(legacy).is_empty(), "the imported secret was echoed");
}

#[test]
fn bad_input_and_missing_keys_have_their_exit_codes() {
    let k = Keyctl::new();
    let unknown = k.keyctl(&["create", "--service-account-id", "r", "--scopes", "yc.monitoring.read,yc.bogus.scope"]);
    assert!(unknown.expect(2).stderr.contains("unknown scope `yc.bogus.scope`"), "{}", unknown.stderr);
    let date = k.keyctl(&["create", "--service-account-id", "r", "--expires-at", "2030-01-01"]);
    assert!(date.expect(2).stderr.contains("--expires-at"), "{}", date.stderr);
    let past = k.keyctl(&["create", "--service-account-id", "r", "--expires-at", "2020-01-01T00:00:00Z"]);
    assert!(past.expect(2).stderr.contains("not in the future"), "{}", past.stderr);
    k.keyctl(&["create", "--service-account-id", "not valid!"]).expect(2);
    k.keyctl(&["create", "--service-account-id", "r", "--scopes", ""]).expect(2);
    k.keyctl(&["get", "not-a-key-id"]).expect(2);
    k.keyctl(&["reissue", "aaaaaaaaaaaaaaaaaaaa", "--grace", "1 hour"]).expect(2);
    k.keyctl(&["list", "--service-account-id", "r", "--limit", "0"]).expect(2);
    k.keyctl(&["list-scopes", "--format", "xml"]).expect(2);
    k.keyctl(&["frobnicate"]).expect(2);
    k.verify("ak_x", &["--scope", "no.such.scope"]).expect(2);
    assert!(k.keyctl(&["get", "aaaaaaaaaaaaaaaaaaaa"]).expect(3).stderr.contains("not found"));
    assert!(k.keyctl(&["reissue", "aaaaaaaaaaaaaaaaaaaa"]).expect(3).stderr.contains("not found"));

    let scheme = k.keyctl(&["--database-url", "mysql://root:hunter2@db/keys", "list", "--service-account-id", "r"]);
    assert!(scheme.expect(2).stderr.contains("`mysql`") && !scheme.stderr.contains("hunter2"), "{}", scheme.stderr);
    let no_pepper = k.keyctl(&["--database-url", POSTGRES_DEFAULT, "create", "--service-account-id", "r"]);
    assert!(no_pepper.expect(2).stderr.contains("API_KEYS_PEPPER is not set"), "{}", no_pepper.stderr);
    let k2 = Keyctl::new().with_var("API_KEYS_PEPPER", "c2hvcnQ=");
    let short = k2.keyctl(&["create", "--service-account-id", "r"]);
    assert!(short.expect(2).stderr.contains("API_KEYS_PEPPER is unusable"), "{}", short.stderr);
    let k3 = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_PEPPER_VERSION", "v2");
    k3.keyctl(&["create", "--service-account-id", "r"]).expect(2);

    // A store that is down: 5.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let down = k.keyctl(&["--database-url", &format!("redis://127.0.0.1:{closed}"), "get", "aaaaaaaaaaaaaaaaaaaa"]);
    assert!(down.expect(5).stderr.contains("cannot open the Redis store"), "{}", down.stderr);

    // The scope catalog, as the seeds print it.
    let scopes = k.keyctl(&["list-scopes"]);
    assert!(scopes.ok().stdout.starts_with("- yc.ai.foundationModels.execute\n- yc.ai.imageGeneration.execute\n"));
    assert_eq!(scopes.stdout.lines().count(), 20);
    let json = k.keyctl(&["list-scopes", "--format", "json"]).ok().value();
    assert_eq!(json.as_array().unwrap().len(), 20);

    let help = k.keyctl(&["--help"]);
    assert!(help.ok().stdout.contains("Exit codes:") && help.stdout.contains("5  the store is unavailable"));
}

#[cfg(unix)]
#[test]
fn the_pepper_file_is_made_once_with_mode_0600() {
    let k = Keyctl::new();
    let file = k.path("api-keys.db.pepper");
    // Commands that open no store make no pepper.
    k.keyctl(&["list-scopes"]).ok();
    assert!(!file.exists());

    let first = k.keyctl(&["list", "--service-account-id", "r"]);
    assert!(first.ok().stderr.contains("created a new pepper in api-keys.db.pepper (mode 0600)"), "{}", first.stderr);
    assert_eq!(mode(&file), 0o600);
    let pepper = std::fs::read_to_string(&file).unwrap();
    let (_, secret) = created(k.keyctl(&["create", "--service-account-id", "r"]).ok());
    k.verify(&secret, &[]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), pepper, "the pepper file was rewritten");
    assert_eq!(k.runs_showing("created a new pepper").len(), 1, "the warning was printed more than once");

    // The key only verifies with that pepper.
    let same =
        Keyctl { dir: k.dir, vars: vec![("API_KEYS_PEPPER", pepper.trim().to_owned())], runs: RefCell::default() };
    same.verify(&secret, &[]).ok();
    let other = Keyctl { dir: same.dir, vars: vec![("API_KEYS_PEPPER", random_pepper())], runs: RefCell::default() };
    other.verify(&secret, &[]).expect(1);

    // A database whose pepper file is gone is not silently re-peppered.
    std::fs::remove_file(&file).unwrap();
    let k = Keyctl { dir: other.dir, vars: Vec::new(), runs: RefCell::default() };
    let lost = k.keyctl(&["create", "--service-account-id", "r"]);
    assert!(lost.expect(2).stderr.contains("does not; restore the pepper file"), "{}", lost.stderr);
    assert!(!file.exists());

    // With API_KEYS_PEPPER set, no file is made.
    let env = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    env.keyctl(&["create", "--service-account-id", "r"]).ok();
    assert!(env.path("api-keys.db").exists() && !env.path("api-keys.db.pepper").exists());
}

/// The lifecycle every backend must support, through `--database-url`.
fn network_lifecycle(k: &Keyctl, url: &str) {
    let sa = unique("robot").replace('_', "-");
    let create =
        k.keyctl(&["--database-url", url, "create", "--service-account-id", &sa, "--scopes", "yc.postbox.send"]);
    let (id, secret) = created(create.ok());
    k.verify(&secret, &["--database-url", url, "--scope", "yc.postbox.send"]).ok();
    k.verify(&secret, &["--database-url", url, "--scope", "yc.monitoring.read"]).expect(1);
    let list = k.keyctl(&["--database-url", url, "list", "--service-account-id", &sa]);
    assert!(list.ok().stdout.contains(&masked(&secret)) && !list.stdout.contains(&secret), "{}", list.stdout);
    let (new_id, new_secret) = created(k.keyctl(&["--database-url", url, "reissue", &id]).ok());
    k.verify(&secret, &["--database-url", url]).expect(1);
    k.verify(&new_secret, &["--database-url", url]).ok();
    let legacy = format!("LEGACY{}", unique("secret").replace('_', ""));
    k.run(&["--database-url", url, "import", "--service-account-id", &sa], Some(&legacy)).ok();
    k.verify(&legacy, &["--database-url", url]).ok();
    let json = k.keyctl(&["--database-url", url, "list", "--service-account-id", &sa, "--format", "json"]);
    let keys = json.ok().value()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let id = key["id"].as_str().unwrap();
        k.keyctl(&["--database-url", url, "delete", id]).ok();
    }
    k.keyctl(&["--database-url", url, "get", &new_id]).expect(3);
    k.verify(&new_secret, &["--database-url", url]).expect(1);
    k.verify(&legacy, &["--database-url", url]).expect(1);
    assert!(k.keyctl(&["--database-url", url, "list", "--service-account-id", &sa]).ok().stdout.lines().count() == 3);
}

/// Drops the test's PostgreSQL schema, also when the test panics.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        use sqlx::Connection as _;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&self.url).await {
                let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
                let dropped = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
                let _ = admin.close().await;
                if !std::thread::panicking() {
                    dropped.unwrap();
                }
            }
        });
    }
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    format!("{url}{}{name}={value}", if url.contains('?') { '&' } else { '?' })
}

#[test]
fn postgres_end_to_end() {
    let base = std::env::var("API_KEYS_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned());
    let schema = unique("keyctl_test");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    network_lifecycle(&k, &with_param(&base, "schema", &schema));
    // The tables are in the test's schema and nothing was left in them.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rows: i64 = rt.block_on(async {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        let sql = format!("SELECT count(*) FROM \"{schema}\".api_keys");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.unwrap()
    });
    assert_eq!(rows, 0);
    assert!(!k.path("api-keys.db").exists(), "a SQLite file was made for a PostgreSQL URL");
}

/// Removes every key under the test's Redis prefix, also when it panics.
struct PurgePrefix {
    url: String,
    prefix: String,
}

impl PurgePrefix {
    fn purge(&self) -> Result<u64, api_keys::StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = api_keys::RedisStore::builder(&self.url).prefix(&self.prefix).connect().await?;
            store.purge().await
        })
    }
}

impl Drop for PurgePrefix {
    fn drop(&mut self) {
        let purged = self.purge();
        if !std::thread::panicking() {
            purged.unwrap();
        }
    }
}

#[test]
fn redis_end_to_end() {
    let base = std::env::var("API_KEYS_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_DEFAULT.to_owned());
    let prefix = unique("keyctl-test");
    let cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    network_lifecycle(&k, &with_param(&base, "prefix", &prefix));
    // Deleting every key left nothing under the prefix.
    assert_eq!(cleanup.purge().unwrap(), 0);
}

/// The axum server example as a child process; killed if a test fails.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts the server in `k`'s directory with `k`'s variables and
    /// `API_KEYS_DATABASE_URL`, and waits until it accepts connections.
    fn start(k: &Keyctl, url: &str) -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let log = k.path(&format!("server-{port}.log"));
        let mut cmd = Command::new(&examples().axum_server);
        cmd.current_dir(k.dir.path());
        for v in VARS {
            cmd.env_remove(v);
        }
        cmd.envs(k.vars.iter().map(|(k, v)| (k, v)))
            .env("API_KEYS_DATABASE_URL", url)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut server = Self { child: cmd.spawn().unwrap(), port, log };
        // Wait for the listener (start-up only; no timing is asserted).
        for _ in 0..600 {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("axum_server exited with {status}:\n{}", server.log());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("axum_server did not listen on port {port}:\n{}", server.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request; returns the status and body.
    fn request(&self, method: &str, path: &str, secret: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Api-Key {secret}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    /// SIGTERM, then waits: the server writes pending last-used times and
    /// exits successfully.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(status.success(), "axum_server exited with {status}:\n{log}");
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn keys_made_with_keyctl_work_against_the_axum_server() {
    // Default SQLite database and its pepper file, shared by both programs.
    let k = Keyctl::new();
    let create = k.keyctl(&["create", "--service-account-id", "web-robot", "--scopes", "yc.monitoring.manage"]);
    let (id, secret) = created(create.ok());
    let pepper = std::fs::read_to_string(k.path("api-keys.db.pepper")).unwrap();

    let server = Server::start(&k, SQLITE_DEFAULT_URL);
    let (status, body) = server.request("GET", "/v1/whoami", &secret, "");
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let who: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((who["key_id"].as_str(), who["service_account_id"].as_str()), (Some(&*id), Some("web-robot")));
    // yc.monitoring.manage implies the route's yc.monitoring.read.
    assert_eq!(server.request("GET", "/v1/monitoring", &secret, "").0, 200);
    let translate = r#"{"text":"hello world","target_language":"ru"}"#;
    assert_eq!(server.request("POST", "/v1/translate", &secret, translate).0, 403);
    assert_eq!(server.request("GET", "/v1/whoami", &tampered(&secret), "").0, 401);
    let log = server.stop();
    assert!(!log.contains(&secret) && !log.contains(pepper.trim()), "the server logged a secret:\n{log}");
    assert!(!log.contains("created a new pepper"), "{log}");

    // The server recorded the use on shutdown; keyctl shows it.
    let got = k.keyctl(&["get", &id]).ok().value();
    assert!(got["last_used_at"].is_string(), "{got}");
    let list = k.keyctl(&["list", "--service-account-id", "web-robot"]);
    let last_used = row(&list.ok().stdout, &id)[2].clone();
    assert_eq!(last_used.len(), "2025-09-16 16:56:01".len(), "{}", list.stdout);

    // Revoked with keyctl: the server refuses the key.
    k.keyctl(&["revoke", &id]).ok();
    let server = Server::start(&k, SQLITE_DEFAULT_URL);
    assert_eq!(server.request("GET", "/v1/whoami", &secret, "").0, 401);
    server.stop();

    // The same with the pepper in API_KEYS_PEPPER instead of the file.
    std::fs::remove_file(k.path("api-keys.db.pepper")).unwrap();
    let k = Keyctl { dir: k.dir, vars: vec![("API_KEYS_PEPPER", pepper.trim().to_owned())], runs: RefCell::default() };
    let (_, secret) = created(k.keyctl(&["create", "--service-account-id", "web-robot"]).ok());
    let server = Server::start(&k, SQLITE_DEFAULT_URL);
    assert_eq!(server.request("GET", "/v1/whoami", &secret, "").0, 200);
    server.stop();
}
