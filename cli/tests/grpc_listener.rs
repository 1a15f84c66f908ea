//! The listener of `keyctl serve`, as a process: TLS with ALPN (`h2`,
//! `http/1.1`), a plain refusal for plaintext on a TLS port, clear exit-2
//! failures for bad certificate files, and the connection bounds: slow
//! request heads cannot starve other clients, the connection cap holds,
//! and unfinished large bodies cannot grow memory past the body budget.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
mod grpc_tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use grpc_tls::{client, make_certs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The test process itself holds over a thousand sockets.
fn raise_own_open_files() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum });
}

#[tokio::test]
async fn tls_speaks_h2_and_http11_by_alpn_and_refuses_plaintext() {
    let k = Keyctl::new();
    let certs = make_certs(k.dir.path());
    let (cert, key) = (certs.cert.display().to_string(), certs.key.display().to_string());
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[("API_KEYS_TLS_CERT", &cert), ("API_KEYS_TLS_KEY", &key)]);
    assert!(server.log().contains("; TLS)"), "{}", server.log());

    // HTTP/1.1 over TLS.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = client(&certs.ca, &[b"http/1.1"]).connect(name.clone(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    // A client offering both gets h2 (gRPC clients need it).
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = client(&certs.ca, &[b"h2", b"http/1.1"]).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // Plaintext to the TLS port: a plain 400 that says why.
    let plain = http(server.addr, "GET", "/healthz", &[], "");
    assert_eq!(plain.status, 400);
    assert!(plain.body.contains("speaks TLS only"), "{}", plain.body);
    // A plaintext HTTP/2 (gRPC) preface gets the same and the connection ends.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // The server is still fine.
    let healthy = server.stop();
    assert!(!healthy.contains("panicked"), "{healthy}");
}

#[test]
fn bad_tls_files_stop_serve_with_exit_2() {
    let k = Keyctl::new();
    let certs = make_certs(k.dir.path());
    let other = tempfile::tempdir().unwrap();
    let other_certs = make_certs(other.path());
    std::fs::write(k.path("garbage.pem"), "not a pem file\n").unwrap();
    let p = |p: &std::path::Path| p.display().to_string();
    let missing = k.path("missing.pem").display().to_string();
    let cases: [(Vec<String>, &str); 5] = [
        (vec!["--tls-cert".into(), missing.clone(), "--tls-key".into(), p(&certs.key)], "--tls-cert: cannot read"),
        (vec!["--tls-cert".into(), p(&certs.cert), "--tls-key".into(), missing], "--tls-key: cannot read"),
        (
            vec!["--tls-cert".into(), p(&k.path("garbage.pem")), "--tls-key".into(), p(&certs.key)],
            "holds no CERTIFICATE",
        ),
        (
            vec!["--tls-cert".into(), p(&certs.cert), "--tls-key".into(), p(&other_certs.key)],
            "do not make a usable pair",
        ),
        (vec!["--tls-cert".into(), p(&certs.cert)], "--tls-cert and --tls-key go together"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(flags.iter().map(String::as_str));
        let run = k.keyctl(&args);
        run.expect(2);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    let run = k.keyctl(&["serve", "--listen", "127.0.0.1:0", "--public-address", "no-port"]);
    run.expect(2);
    assert!(run.stderr.contains("is not HOST:PORT"), "{}", run.stderr);
}

/// Opens `n` connections that each send an unfinished request head.
fn half_sent_heads(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow.example\r\nX-Slow: 1\r\n").unwrap();
            s
        })
        .collect()
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0_u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_request_heads_cannot_starve_other_clients() {
    raise_own_open_files();
    let k = Keyctl::new();
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[("API_KEYS_HEADER_TIMEOUT", "2s")]);
    let pid = server.child.id();
    let mut slow = half_sent_heads(server.addr, 1100);
    // While 1,100 heads are held, another client is answered at once.
    let started = Instant::now();
    let r = server.request("GET", "/healthz", &[], "");
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // The header timeout closes every slow connection.
    std::thread::sleep(Duration::from_secs(2));
    let mut still_open = 0;
    for s in &mut slow {
        if !closed_by_server(s, Duration::from_secs(3)) {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "connections left open past the header timeout");
    drop(slow);
    server.stop();

    // With a cap below the attack, the process holds no more than the cap,
    // and a client queued behind the slow ones is served once their
    // timeouts free slots.
    let server = Server::start(
        &k,
        SQLITE_DEFAULT_URL,
        &[("API_KEYS_HEADER_TIMEOUT", "1s"), ("API_KEYS_MAX_CONNECTIONS", "200")],
    );
    let pid2 = server.child.id();
    let before = open_files(pid2);
    let slow = half_sent_heads(server.addr, 1100);
    std::thread::sleep(Duration::from_millis(300));
    let held = open_files(pid2) - before;
    assert!(held <= 200, "{held} connections open with a cap of 200");
    let started = Instant::now();
    let r = server.request("GET", "/healthz", &[], "");
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    drop(slow);
    let _ = pid;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unfinished_large_bodies_keep_memory_bounded() {
    let k = Keyctl::new();
    let file = k.path("github-keys.json");
    // Any valid key file turns the endpoint on; the bodies never finish,
    // so no signature is ever checked.
    let signer = {
        use p256::elliptic_curve::Generate as _;
        p256::ecdsa::SigningKey::try_generate().unwrap()
    };
    let pem = {
        use p256::pkcs8::EncodePublicKey as _;
        signer.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap()
    };
    let doc = serde_json::json!({"public_keys": [{"key_identifier": "k", "key": pem, "is_current": true}]});
    std::fs::write(&file, doc.to_string()).unwrap();
    let file = file.display().to_string();
    let server = Server::start(
        &k,
        SQLITE_DEFAULT_URL,
        &[("API_KEYS_GITHUB_KEYS_FILE", file.as_str()), ("API_KEYS_BODY_TIMEOUT", "6s")],
    );
    let pid = server.child.id();
    let addr = server.addr;
    let before = rss_kib(pid);

    // 100 clients each declare 4 MiB and send all but one byte.
    const BODY: usize = 4 * 1024 * 1024;
    let mut senders = Vec::new();
    for _ in 0..100 {
        senders.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /v1/secret-scanning/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Github-Public-Key-Identifier: k\r\nGithub-Public-Key-Signature: AAAA\r\nContent-Length: {BODY}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while sent + chunk.len() < BODY {
                match tokio::time::timeout_at(deadline, s.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len(),
                    _ => break,
                }
            }
            (s, sent)
        }));
    }
    let mut held = Vec::new();
    for s in senders {
        held.push(s.await.unwrap());
    }
    let sent: usize = held.iter().map(|(_, n)| n).sum();
    let grown = rss_kib(pid).saturating_sub(before);
    // Meanwhile other clients are served.
    let healthy = tokio::task::spawn_blocking(move || http(addr, "GET", "/healthz", &[], "")).await.unwrap();
    assert_eq!(healthy.status, 200);
    // Without the budget this was 100 × 4 MiB (over 400 MB); the budget is 32 MiB.
    assert!(grown < 96 * 1024, "RSS grew by {grown} KiB while clients sent {} MiB", sent / (1024 * 1024));

    // A declared body over the limit is refused before it is sent.
    let mut over = TcpStream::connect(addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    over.write_all(b"POST /iam/v1/apiKeys HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{").unwrap();
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The body timeout ends them all.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (mut s, _) in held {
        let mut buf = [0_u8; 1024];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "an unfinished body was still being waited for past the body timeout");
    }
    server.stop();
}
