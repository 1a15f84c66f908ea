//! The harness shared by the process tests: `keyctl` runs in a temporary
//! directory (the binary cargo built for this package,
//! `CARGO_BIN_EXE_keyctl`), `keyctl serve` nodes as child processes, and
//! per-test PostgreSQL schemas and Redis prefixes removed at the end, also
//! when a test fails.
//!
//! The PostgreSQL and Redis tests need the services on loopback
//! (`API_KEYS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `API_KEYS_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`). A store that is down fails the test
//! with keyctl's own message naming it (exit code 5).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, reason = "shared by several test binaries; tests")]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KEYCTL: &str = env!("CARGO_BIN_EXE_keyctl");
pub const SQLITE_DEFAULT_URL: &str = "sqlite://api-keys.db?mode=rwc";
/// Variables keyctl reads; cleared in every child unless a test sets them,
/// so the caller's environment cannot leak in.
pub const VARS: [&str; 18] = [
    "API_KEYS_ACCEPT_IMPORTED",
    "API_KEYS_DATABASE_URL",
    "API_KEYS_PEPPER",
    "API_KEYS_PEPPER_VERSION",
    "API_KEYS_LISTEN",
    "API_KEYS_CACHE",
    "API_KEYS_CACHE_TTL",
    "API_KEYS_CACHE_MAX_STALENESS",
    "API_KEYS_ADMIN_TOKEN",
    "API_KEYS_ADMIN_TOKEN_FILE",
    "API_KEYS_TRUSTED_PROXIES",
    "API_KEYS_PROXY_HEADER",
    "API_KEYS_RATE_LIMIT_REDIS",
    "API_KEYS_METRICS_LISTEN",
    "API_KEYS_REQUIRE_DURABLE_REDIS",
    "API_KEYS_GITHUB_KEYS_FILE",
    "API_KEYS_GITHUB_LEAK_ACTION",
    "API_KEYS_FOLDER_ID",
];

/// The library's test helper for the servers' URLs, shared rather than copied.
#[path = "../../../tests/common/services.rs"]
mod services;
#[allow(unused_imports, reason = "not every test binary uses each")]
pub(crate) use services::{POSTGRES_DEFAULT, REDIS_DEFAULT, postgres_url, redis_url};

pub fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{label}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn random_pepper() -> String {
    api_keys::Pepper::generate(1).unwrap().to_base64().to_string()
}

/// One keyctl run.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "keyctl {} exited {}\nstdout:\n{}\nstderr:\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect(0)
    }

    /// stdout as YAML or JSON.
    pub fn value(&self) -> Value {
        serde_norway::from_str(&self.stdout).unwrap_or_else(|e| panic!("keyctl {}: {e}\n{}", self.args, self.stdout))
    }
}

/// A working directory and environment for keyctl runs; remembers every
/// run so tests can check what was ever printed.
pub struct Keyctl {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(&'static str, String)>,
    pub runs: RefCell<Vec<Run>>,
}

impl Keyctl {
    /// A fresh directory; the default URL (SQLite `api-keys.db` there) and no
    /// pepper variable.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), vars: Vec::new(), runs: RefCell::new(Vec::new()) }
    }

    pub fn with_var(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((name, value.into()));
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(KEYCTL);
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

    pub fn keyctl(&self, args: &[&str]) -> Run {
        self.run(args, None)
    }

    /// `verify` with the header value on stdin, as an operator pipes it.
    pub fn verify(&self, secret: &str, extra: &[&str]) -> Run {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        self.run(&args, Some(&format!("Api-Key {secret}\n")))
    }

    /// How many runs printed `text` anywhere.
    pub fn runs_showing(&self, text: &str) -> Vec<String> {
        self.runs
            .borrow()
            .iter()
            .filter(|r| r.stdout.contains(text) || r.stderr.contains(text))
            .map(|r| r.args.clone())
            .collect()
    }
}

/// `(id, secret)` of a create or reissue output (the `api_key.yaml` shape).
pub fn created(run: &Run) -> (String, String) {
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
pub fn row(table: &str, id: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
    line.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
}

pub fn masked(secret: &str) -> String {
    format!("****{}", &secret[secret.len() - 6..])
}

/// A secret with one character of its random part changed.
pub fn tampered(secret: &str) -> String {
    let mut b = secret.as_bytes().to_vec();
    let i = 30;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Drops the test's PostgreSQL schema, also when the test panics.
pub struct DropSchema {
    pub url: String,
    pub schema: String,
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

/// `DROP SCHEMA … CASCADE` now.
pub fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
        let _ = admin.close().await;
    });
}

pub fn with_param(url: &str, name: &str, value: &str) -> String {
    format!("{url}{}{name}={value}", if url.contains('?') { '&' } else { '?' })
}

/// Removes every key under the test's Redis prefix, also when it panics.
pub struct PurgePrefix {
    pub url: String,
    pub prefix: String,
}

impl PurgePrefix {
    pub fn purge(&self) -> Result<u64, api_keys::StoreError> {
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

/// A `keyctl serve` child process; killed (SIGKILL) if still running when
/// dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// Starts `keyctl serve --listen 127.0.0.1:0` in `k`'s directory with
    /// `k`'s variables, `API_KEYS_DATABASE_URL=url` and `extra`, and waits
    /// for its "listening on" line (start-up only; no timing is asserted).
    pub fn start(k: &Keyctl, url: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_on(k, url, extra, "127.0.0.1:0")
    }

    /// As [`Server::start`], on a given address (a restart on the same port).
    pub fn start_on(k: &Keyctl, url: &str, extra: &[(&str, &str)], listen: &str) -> Self {
        Self::spawn(k, url, extra, listen).listening()
    }

    /// Starts `keyctl serve` as [`Server::start_on`] does, without waiting
    /// for it (see [`Starting::listening`]).
    pub fn spawn(k: &Keyctl, url: &str, extra: &[(&str, &str)], listen: &str) -> Starting {
        static N: AtomicU32 = AtomicU32::new(0);
        let log = k.path(&format!("serve-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = Command::new(KEYCTL);
        cmd.current_dir(k.dir.path()).args(["serve", "--listen", listen]);
        for v in VARS {
            cmd.env_remove(v);
        }
        cmd.envs(k.vars.iter().map(|(k, v)| (k, v)))
            .env("API_KEYS_DATABASE_URL", url)
            .envs(extra.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        Starting { child: cmd.spawn().unwrap(), log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the server printed on stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    /// `GET /v1/authorize` with the key (if any) and `?scope=`.
    pub fn authorize(&self, secret: Option<&str>, scope: Option<&str>) -> Response {
        let path = match scope {
            Some(s) => format!("/v1/authorize?scope={s}"),
            None => "/v1/authorize".to_owned(),
        };
        let auth = secret.map(|s| format!("Api-Key {s}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", &path, &headers, "")
    }

    /// One HTTP/1.1 request on a new connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        http(self.addr, method, path, headers, body)
    }

    /// Creates service account `name` in the default folder through the
    /// management API (`POST /iam/v1/serviceAccounts` with `bearer`, an
    /// operator's `Authorization` value) and returns its generated id:
    /// `keyctl serve` makes keys only for accounts that exist.
    #[allow(dead_code, reason = "not every test binary makes keys over the API")]
    pub fn service_account(&self, bearer: &str, name: &str) -> String {
        let body = serde_json::json!({"folderId": "defaultfolder0000000", "name": name}).to_string();
        let made = self.request(
            "POST",
            "/iam/v1/serviceAccounts",
            &[("authorization", bearer), ("content-type", "application/json")],
            &body,
        );
        assert_eq!(made.status, 200, "{made:?}");
        made.json()["response"]["id"].as_str().unwrap().to_owned()
    }

    /// SIGTERM, then waits: the server drains, writes pending last-used
    /// times and exits successfully. Returns its log.
    pub fn stop(mut self) -> String {
        signal(&self.child, "TERM");
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(status.success(), "keyctl serve exited with {status}:\n{log}");
        log
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A `keyctl serve` started but not yet known to listen.
pub struct Starting {
    pub child: Child,
    pub log: PathBuf,
}

impl Starting {
    /// Waits for the "listening on" line (start-up only; no timing is
    /// asserted); panics with the log if the process exits first.
    pub fn listening(self) -> Server {
        let Self { mut child, log } = self;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // Only finished lines: stderr is unbuffered and `eprintln!` may
            // write a line in pieces, so the address can still be missing.
            let mut finished = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            if let Some(addr) = finished.find_map(|l| l.trim_end().strip_prefix("keyctl: listening on ")) {
                let addr = addr.split_whitespace().next().unwrap().parse().unwrap();
                return Server { child, addr, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("keyctl serve exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "keyctl serve did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// Sends `SIGNAL` to a child by its pid.
pub fn signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
}

/// An HTTP response: status, lower-case headers, body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&String::from_utf8_lossy(&raw))
}

pub fn parse_response(text: &str) -> Response {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response { status, headers, body: body.to_owned() }
}

/// A counter's value in a `/metrics` text (0 when absent).
#[allow(dead_code, reason = "not every test binary reads /metrics")]
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A directory holding a pinned SDK: `$var`, else `default` (relative to
/// the workspace), prepared by `script` (relative to `cli/`; idempotent:
/// it installs only what is missing or different). The test fails naming
/// the directory if the script fails.
pub fn sdk_dir(var: &str, default: &str, script: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(default));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let made = Command::new("bash").arg(&script).arg(&dir).status();
    assert!(made.is_ok_and(|s| s.success()), "{} could not prepare {}", script.display(), dir.display());
    dir
}

/// The Python of the virtualenv with the cloud's pinned SDK (`$SDK_VENV`,
/// else `target/sdk-venv`; `cli/tests/sdk/venv.sh` makes it with pip from
/// PyPI when it is missing or has another version).
pub fn sdk_python() -> PathBuf {
    sdk_dir("SDK_VENV", "target/sdk-venv", "tests/sdk/venv.sh").join("bin/python")
}
