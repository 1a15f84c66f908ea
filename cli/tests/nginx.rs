//! nginx `auth_request` in front of `keyctl serve`, for real: Debian's nginx
//! runs as a child process (`daemon off`, `master_process off`) on a loopback
//! port with a temporary configuration (the snippet of cli/README.md, upstream
//! keepalive included), and requests go through it: scopes, refusals, and
//! with `--trusted-proxy` (`X-Forwarded-For` and `--proxy-header forwarded`)
//! keys with an IP allow-list against a client that sends its own forwarding
//! header. Skipped, loudly, when nginx is not installed (`.ci/run` installs
//! it).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The nginx binary, if installed.
fn nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// The address nginx connects to keyctl from (`proxy_bind`, test only): the
/// one trusted proxy, so that the test's client (127.0.0.1) is not one.
const PROXY: &str = "127.0.0.3";

/// Which forwarding header nginx sets in the auth subrequest and `keyctl
/// serve` reads (`--proxy-header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// No `--trusted-proxy`: keyctl takes nginx's own address.
    Peer,
    XForwardedFor,
    Forwarded,
}

impl Via {
    /// `keyctl serve`'s variables for it.
    fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::Peer => vec![],
            Self::XForwardedFor => vec![("API_KEYS_TRUSTED_PROXIES", PROXY)],
            Self::Forwarded => vec![("API_KEYS_TRUSTED_PROXIES", PROXY), ("API_KEYS_PROXY_HEADER", "forwarded")],
        }
    }

    /// The `http`-level lines the auth locations need (the docs' `map` for
    /// `Forwarded`: an IPv6 address is quoted and bracketed).
    fn http_lines(self) -> &'static str {
        match self {
            Self::Forwarded => {
                r#"map $remote_addr $forwarded_for { "~:" "\"[$remote_addr]\""; default $remote_addr; }"#
            }
            _ => "",
        }
    }

    /// The auth subrequest's line that sets the client address: appended
    /// to (or overwriting) whatever the client sent, never the client's own.
    fn set_header(self) -> &'static str {
        match self {
            Self::Forwarded => r#"proxy_set_header Forwarded "for=$forwarded_for";"#,
            _ => "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        }
    }

    /// A client's own header claiming to come from `ip`.
    fn spoof(self, ip: &str) -> (&'static str, String) {
        match self {
            Self::Forwarded => ("Forwarded", format!("for={ip}")),
            _ => ("X-Forwarded-For", ip.to_owned()),
        }
    }
}

/// The documented configuration (cli/README.md, "Behind a reverse proxy"),
/// with the test's ports and paths, and `proxy_bind` so that nginx reaches
/// keyctl from [`PROXY`].
fn config(dir: &Path, listen: SocketAddr, keyctl: SocketAddr, via: Via) -> String {
    let d = dir.display();
    let (map, set_header) = (via.http_lines(), via.set_header());
    format!(
        r#"
error_log {d}/nginx-error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;
    {map}

    upstream keyctl {{
        server {keyctl};
        keepalive 16;
    }}

    server {{
        listen {listen};
        proxy_bind {PROXY};

        # One internal auth location per required scope.
        location = /_auth/monitoring {{
            internal;
            proxy_pass http://keyctl/v1/authorize?scope=yc.monitoring.read;
            proxy_pass_request_body off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Length "";
            {set_header}
        }}
        location = /_auth/translate {{
            internal;
            proxy_pass http://keyctl/v1/authorize;
            proxy_pass_request_body off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Length "";
            {set_header}
            proxy_set_header X-Required-Scope yc.ai.translate.execute;
        }}

        location /monitoring/ {{
            auth_request /_auth/monitoring;
            auth_request_set $api_key_id $upstream_http_x_api_key_id;
            auth_request_set $service_account $upstream_http_x_service_account_id;
            # An application behind nginx gets them as request headers
            # (proxy_set_header X-Api-Key-Id $api_key_id; …); here nginx
            # serves a file and shows them as response headers. (Never
            # `return` here: it runs before auth_request and skips it.)
            add_header X-Api-Key-Id $api_key_id;
            add_header X-Service-Account-Id $service_account;
            root {d}/www;
        }}
        location /translate/ {{
            auth_request /_auth/translate;
            root {d}/www;
        }}
    }}
}}
"#
    )
}

/// nginx as a child; killed when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    fn start(binary: &Path, dir: &Path, keyctl: SocketAddr, via: Via) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let conf = dir.join("nginx.conf");
        for page in ["monitoring", "translate"] {
            std::fs::create_dir_all(dir.join("www").join(page)).unwrap();
            std::fs::write(dir.join("www").join(page).join("status"), format!("{page} ok\n")).unwrap();
        }
        std::fs::write(&conf, config(dir, addr, keyctl, via)).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nginx-stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut nginx = Self { child, addr, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited with {status}:\n{}", nginx.log());
            }
            assert!(Instant::now() < deadline, "nginx did not listen:\n{}", nginx.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("nginx-stderr.log"), read("nginx-error.log"))
    }

    fn get(&self, path: &str, secret: Option<&str>) -> Response {
        self.get_with(path, secret, &[])
    }

    fn get_with(&self, path: &str, secret: Option<&str>, extra: &[(&str, &str)]) -> Response {
        let auth = secret.map(|s| format!("Api-Key {s}"));
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        headers.extend_from_slice(extra);
        http(self.addr, "GET", path, &headers, "")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_auth_request_through_keyctl_serve() {
    let Some(binary) = nginx() else {
        eprintln!("SKIPPED nginx_auth_request_through_keyctl_serve: nginx is not installed (apt-get install nginx)");
        return;
    };
    let k = Keyctl::new();
    let create = k.keyctl(&[
        "create",
        "--service-account-id",
        "proxy-robot",
        "--create-service-account",
        "--scopes",
        "yc.monitoring.manage",
    ]);
    let (id, secret) = created(create.ok());
    let serve = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    let nginx = Nginx::start(&binary, k.dir.path(), serve.addr, Via::Peer);

    let r = nginx.get("/monitoring/status", Some(&secret));
    assert_eq!(r.status, 200, "{r:?}\n{}", nginx.log());
    assert_eq!(r.body, "monitoring ok\n");
    assert_eq!((r.header("x-api-key-id"), r.header("x-service-account-id")), (Some(&*id), Some("proxy-robot")));
    // No key, a forged key, a revoked key: 401; the wrong scope: 403.
    assert_eq!(nginx.get("/monitoring/status", None).status, 401);
    assert_eq!(nginx.get("/monitoring/status", Some(&tampered(&secret))).status, 401);
    assert_eq!(nginx.get("/translate/status", Some(&secret)).status, 403);
    k.keyctl(&["revoke", &id]).ok();
    assert_eq!(nginx.get("/monitoring/status", Some(&secret)).status, 401);
    drop(nginx);
    serve.stop();
}

/// Keys allowed from one address, through nginx with `--trusted-proxy`: the
/// address keyctl checks is the one nginx saw, whatever forwarding header
/// the client sends itself.
fn a_client_cannot_choose_its_address(test: &str, via: Via) {
    let Some(binary) = nginx() else {
        eprintln!("SKIPPED {test}: nginx is not installed (apt-get install nginx)");
        return;
    };
    let k = Keyctl::new();
    let key = |allow: &str| {
        let run = k.keyctl(&[
            "create",
            "--service-account-id",
            "proxy-robot",
            "--create-service-account",
            "--scopes",
            "yc.monitoring.read",
        ]);
        let (id, secret) = created(run.ok());
        k.keyctl(&["update", &id, "--allow-ip", allow]).ok();
        secret
    };
    // Allowed only from an address the test's client does not have, and
    // from the client's real one (nginx sees 127.0.0.1).
    let (elsewhere, here) = (key("198.51.100.7"), key("127.0.0.1"));
    let serve = Server::start(&k, SQLITE_DEFAULT_URL, &via.env());
    let nginx = Nginx::start(&binary, k.dir.path(), serve.addr, via);
    let spoof = via.spoof("198.51.100.7");
    let spoofed = [(spoof.0, spoof.1.as_str())];

    let r = nginx.get_with("/monitoring/status", Some(&elsewhere), &spoofed);
    assert_eq!(r.status, 403, "a spoofed {} header chose the client address: {r:?}\n{}", spoof.0, serve.log());
    assert_eq!(nginx.get("/monitoring/status", Some(&elsewhere)).status, 403);
    let r = nginx.get("/monitoring/status", Some(&here));
    assert_eq!(r.status, 200, "{r:?}\n{}\n{}", nginx.log(), serve.log());
    let r = nginx.get_with("/monitoring/status", Some(&here), &spoofed);
    assert_eq!(r.status, 200, "the address nginx saw wins over the client's header: {r:?}");
    // The header is believed only from the trusted proxy: sent straight to
    // keyctl from 127.0.0.1, it is ignored.
    let direct =
        serve.request("GET", "/v1/authorize", &[("Authorization", &format!("Api-Key {elsewhere}")), spoofed[0]], "");
    assert_eq!(direct.status, 403, "{direct:?}");
    drop(nginx);
    serve.stop();
}

#[test]
fn a_spoofed_x_forwarded_for_does_not_pass_an_allow_list() {
    a_client_cannot_choose_its_address("a_spoofed_x_forwarded_for_does_not_pass_an_allow_list", Via::XForwardedFor);
}

#[test]
fn a_spoofed_forwarded_header_does_not_pass_an_allow_list() {
    a_client_cannot_choose_its_address("a_spoofed_forwarded_header_does_not_pass_an_allow_list", Via::Forwarded);
}
