//! nginx `auth_request` in front of `keyctl serve`, for real: Debian's nginx
//! runs as a child process (`daemon off`, `master_process off`) on a loopback
//! port with a temporary configuration (the README's snippet), and requests
//! go through it. Skipped, loudly, when nginx is not installed (`.ci/run`
//! installs it).

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

/// The README's configuration, with the test's ports and paths.
fn config(dir: &Path, listen: SocketAddr, keyctl: SocketAddr) -> String {
    let d = dir.display();
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

    upstream keyctl {{ server {keyctl}; }}

    server {{
        listen {listen};

        # One internal auth location per required scope.
        location = /_auth/monitoring {{
            internal;
            proxy_pass http://keyctl/v1/authorize?scope=yc.monitoring.read;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location = /_auth/translate {{
            internal;
            proxy_pass http://keyctl/v1/authorize;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
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
    fn start(binary: &Path, dir: &Path, keyctl: SocketAddr) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let conf = dir.join("nginx.conf");
        for page in ["monitoring", "translate"] {
            std::fs::create_dir_all(dir.join("www").join(page)).unwrap();
            std::fs::write(dir.join("www").join(page).join("status"), format!("{page} ok\n")).unwrap();
        }
        std::fs::write(&conf, config(dir, addr, keyctl)).unwrap();
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
        let auth = secret.map(|s| format!("Api-Key {s}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
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
    let create = k.keyctl(&["create", "--service-account-id", "proxy-robot", "--scopes", "yc.monitoring.manage"]);
    let (id, secret) = created(create.ok());
    let serve = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    let nginx = Nginx::start(&binary, k.dir.path(), serve.addr);

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
