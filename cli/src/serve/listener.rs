//! The listener of `keyctl serve`: one TCP port serving HTTP/1.1 and HTTP/2
//! (hyper-util's automatic builder: an HTTP/2 preface or ALPN `h2` selects
//! HTTP/2), in plaintext or, with `--tls-cert` and `--tls-key`, over TLS
//! (rustls; ALPN `h2` and `http/1.1`; the PEM certificate chain as given).
//!
//! Each connection goes through these steps, each bounded:
//! 1. **accept** — at most [`Limits::max_connections`] connections at once;
//!    when they are all taken the loop stops accepting (the kernel's backlog
//!    holds the rest) until one closes. `RLIMIT_NOFILE` is raised to its
//!    hard limit at start ([`raise_open_files`]) and the cap is kept below it,
//!    so accepting never fails for want of descriptors;
//! 2. **TLS** — the handshake must finish within the header timeout; a
//!    plaintext request to a TLS listener gets a plain `400` saying so;
//! 3. **first request head** within [`Limits::header`] of the connection
//!    (and, on HTTP/1.1, each later head within the same time of its first
//!    byte); a connection with no traffic for [`Limits::idle`] is closed
//!    (gracefully: a running request finishes);
//! 4. **body** ([`guard`]): a declared `Content-Length` over the route's
//!    limit is refused before a byte is read (413, or gRPC status 8); a body
//!    must arrive within [`Limits::body`] and within the limit, and the
//!    bytes of all bodies being read share one budget
//!    ([`BODY_MEMORY`]), so slow or unfinished bodies cannot grow memory
//!    without bound: a body that cannot get budget waits (and its sender
//!    with it) until its own deadline.
//!
//! Each request carries axum's `ConnectInfo<SocketAddr>` (the peer), as
//! `axum::serve` would set it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt;

use crate::failure::{BAD_INPUT, Failure, OTHER};

/// `API_KEYS_TLS_CERT`: the PEM certificate chain (same as `--tls-cert`).
pub(crate) const TLS_CERT_VAR: &str = "API_KEYS_TLS_CERT";
/// `API_KEYS_TLS_KEY`: the PEM private key (same as `--tls-key`).
pub(crate) const TLS_KEY_VAR: &str = "API_KEYS_TLS_KEY";
/// `API_KEYS_PUBLIC_ADDRESS`: the address clients are told to use.
pub(crate) const PUBLIC_ADDRESS_VAR: &str = "API_KEYS_PUBLIC_ADDRESS";
/// `API_KEYS_HEADER_TIMEOUT`.
const HEADER_TIMEOUT_VAR: &str = "API_KEYS_HEADER_TIMEOUT";
/// `API_KEYS_BODY_TIMEOUT`.
const BODY_TIMEOUT_VAR: &str = "API_KEYS_BODY_TIMEOUT";
/// `API_KEYS_IDLE_TIMEOUT`.
const IDLE_TIMEOUT_VAR: &str = "API_KEYS_IDLE_TIMEOUT";
/// `API_KEYS_MAX_CONNECTIONS`.
const MAX_CONNECTIONS_VAR: &str = "API_KEYS_MAX_CONNECTIONS";

/// Default time for a request head (and a TLS handshake): 10 s.
const DEFAULT_HEADER: Duration = Duration::from_secs(10);
/// Default time for a whole request body: 30 s.
const DEFAULT_BODY: Duration = Duration::from_secs(30);
/// Default time a connection may sit without traffic: 60 s.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// Default connection cap (lowered to fit the open-file limit).
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Descriptors kept for everything but client connections (store pools,
/// files, the listener).
const RESERVED_FILES: u64 = 256;
/// The bytes of request bodies held at once, over all connections: 32 MiB.
pub(crate) const BODY_MEMORY: usize = 32 * 1024 * 1024;
/// The body limit of every route but the GitHub endpoint: 64 KiB (the
/// management API's own limit, and tonic's message limit there).
pub(crate) const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The GitHub endpoint's body limit (the endpoint's own default).
const GITHUB_BODY_LIMIT: usize =
    api_keys::scan::github::SecretScanning::<api_keys::MemoryStore>::DEFAULT_MAX_BODY_BYTES;
/// The GitHub endpoint's route, whose reports may be larger.
const GITHUB_PATH: &str = "/v1/secret-scanning/github";
/// Concurrent HTTP/2 streams per connection.
const MAX_STREAMS: u32 = 128;

/// The listener's flags of `keyctl serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ListenerArgs {
    /// PEM certificate chain (leaf first) for TLS; with --tls-key turns TLS on
    /// [env: API_KEYS_TLS_CERT] [default: plaintext].
    #[arg(long = "tls-cert", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1)
    /// [env: API_KEYS_TLS_KEY].
    #[arg(long = "tls-key", value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// HOST:PORT the gRPC endpoint service advertises to clients
    /// [env: API_KEYS_PUBLIC_ADDRESS] [default: the listen address].
    #[arg(long = "public-address", value_name = "HOST:PORT")]
    public_address: Option<String>,
    /// Time a client has for a request head (and the TLS handshake)
    /// [env: API_KEYS_HEADER_TIMEOUT] [default: 10s].
    #[arg(long = "header-timeout", value_name = "DURATION")]
    header_timeout: Option<String>,
    /// Time a client has to send a whole request body [env: API_KEYS_BODY_TIMEOUT] [default: 30s].
    #[arg(long = "body-timeout", value_name = "DURATION")]
    body_timeout: Option<String>,
    /// Time a connection may sit without traffic before it is closed
    /// [env: API_KEYS_IDLE_TIMEOUT] [default: 60s].
    #[arg(long = "idle-timeout", value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Most client connections at once; more wait to be accepted
    /// [env: API_KEYS_MAX_CONNECTIONS] [default: 10000, lowered to fit the open-file limit].
    #[arg(long = "max-connections", value_name = "N")]
    max_connections: Option<String>,
}

/// The bounds of [the module's](self) steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time for the TLS handshake and the first request head.
    pub(crate) header: Duration,
    /// Time for a whole request body.
    pub(crate) body: Duration,
    /// Time a connection may sit without traffic.
    pub(crate) idle: Duration,
    /// Connections at once.
    pub(crate) max_connections: usize,
}

/// What the listener was configured with.
pub(crate) struct Listening {
    tls: Option<TlsAcceptor>,
    public_address: Option<String>,
    limits: Limits,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("tls", &self.tls.is_some())
            .field("public_address", &self.public_address)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A flag, else its variable.
fn flag_or_var(flag: Option<String>, var: &str) -> Option<(String, String)> {
    match flag {
        Some(v) => Some((v, "the flag".to_owned())),
        None => crate::env::var(var).map(|v| (v, var.to_owned())),
    }
}

fn duration(flag: Option<String>, var: &str, name: &str, default: Duration) -> Result<Duration, Failure> {
    let Some((text, from)) = flag_or_var(flag, var) else { return Ok(default) };
    match crate::input::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(Failure::new(BAD_INPUT, format!("--{name} ({from}): must be more than 0"))),
        Err(e) => Err(Failure::new(BAD_INPUT, format!("--{name} ({from}): {e}"))),
    }
}

impl Listening {
    /// Reads the flags (else their variables): the TLS files are loaded and
    /// checked now, so a bad file stops the start with exit code 2.
    ///
    /// # Errors
    /// [`BAD_INPUT`] naming the flag and what is wrong.
    pub(crate) fn resolve(args: ListenerArgs) -> Result<Self, Failure> {
        let cert = args.tls_cert.or_else(|| crate::env::var(TLS_CERT_VAR).map(PathBuf::from));
        let key = args.tls_key.or_else(|| crate::env::var(TLS_KEY_VAR).map(PathBuf::from));
        let tls = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(Arc::new(tls_config(&cert, &key)?))),
            _ => return Err(Failure::new(BAD_INPUT, "--tls-cert and --tls-key go together: give both or neither")),
        };
        let public_address = flag_or_var(args.public_address, PUBLIC_ADDRESS_VAR)
            .map(|(text, from)| public_address(text.trim(), &from))
            .transpose()?;
        let max_connections = match flag_or_var(args.max_connections, MAX_CONNECTIONS_VAR) {
            None => None,
            Some((text, from)) => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(Failure::new(
                        BAD_INPUT,
                        format!("--max-connections ({from}): expected a number above 0"),
                    ));
                }
            },
        };
        let limits = Limits {
            header: duration(args.header_timeout, HEADER_TIMEOUT_VAR, "header-timeout", DEFAULT_HEADER)?,
            body: duration(args.body_timeout, BODY_TIMEOUT_VAR, "body-timeout", DEFAULT_BODY)?,
            idle: duration(args.idle_timeout, IDLE_TIMEOUT_VAR, "idle-timeout", DEFAULT_IDLE)?,
            max_connections: fit_open_files(max_connections),
        };
        Ok(Self { tls, public_address, limits })
    }

    /// Whether TLS is on.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address to advertise: `--public-address`, else `local`.
    pub(crate) fn public_address(&self, local: SocketAddr) -> String {
        self.public_address.clone().unwrap_or_else(|| local.to_string())
    }
}

/// `HOST:PORT` with a port number.
fn public_address(text: &str, from: &str) -> Result<String, Failure> {
    let bad = || {
        let shown: String = text.chars().take(64).collect();
        Failure::new(BAD_INPUT, format!("--public-address ({from}): `{shown}` is not HOST:PORT"))
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:_".contains(c));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// The rustls server configuration of `cert` (a PEM chain, used as given)
/// and `key`, with ALPN `h2` and `http/1.1`.
///
/// # Errors
/// [`BAD_INPUT`] for a missing or unreadable file, a file without a
/// certificate or key, or a key that does not match the certificate.
fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, Failure> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path, flag: &str| {
        std::fs::read(path).map_err(|e| Failure::new(BAD_INPUT, format!("{flag}: cannot read {}: {e}", path.display())))
    };
    let cert_pem = read(cert, "--tls-cert")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::new(BAD_INPUT, format!("--tls-cert: {} is not PEM: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Failure::new(BAD_INPUT, format!("--tls-cert: {} holds no CERTIFICATE", cert.display())));
    }
    let key_pem = zeroize::Zeroizing::new(read(key, "--tls-key")?);
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Failure::new(BAD_INPUT, format!("--tls-key: {} holds no usable PEM private key: {e}", key.display()))
    })?;
    // ring, not aws-lc-rs: no C/CMake toolchain in the build. Its provider
    // lacks post-quantum key exchange (hence the deprecation); the classical
    // groups (X25519, P-256, P-384) stay as safe as they are elsewhere.
    #[allow(deprecated, reason = "ring's provider, chosen for the build; see above")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(OTHER, format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Failure::new(
                BAD_INPUT,
                format!(
                    "--tls-cert/--tls-key: {} and {} do not make a usable pair: {e}",
                    cert.display(),
                    key.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, where allowed;
/// returns the soft limit in force afterwards (`None`: unlimited or unknown).
pub(crate) fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
    }
    limit.current
}

/// The connection cap: `asked` (else the default), kept
/// [`RESERVED_FILES`] below the open-file limit.
fn fit_open_files(asked: Option<usize>) -> usize {
    let wanted = asked.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let Some(files) = raise_open_files() else { return wanted };
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES).max(16)).unwrap_or(usize::MAX);
    if wanted > room {
        if asked.is_some() {
            eprintln!("keyctl: --max-connections {wanted} lowered to {room} to fit the open-file limit ({files})");
        }
        room
    } else {
        wanted
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting, lets running requests finish and returns once every
/// connection has closed, or after `drain` (whichever comes first).
///
/// # Errors
/// Never at present; accept errors are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    listening: Listening,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> Result<(), Failure> {
    let limits = listening.limits;
    let app = app.layer(axum::middleware::from_fn_with_state(Arc::new(BodyGuard::new(limits.body)), guard));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    loop {
        let slot = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = Conn { peer, app: app.clone(), tls: listening.tls.clone(), limits, stop: stop_rx.clone() };
                tokio::spawn(conn.run(stream, slot));
            }
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all)).await.is_err() {
        eprintln!("keyctl: requests still running after {drain:?}; stopping anyway");
    }
    Ok(())
}

/// One accepted connection.
struct Conn {
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn run(self, stream: TcpStream, slot: OwnedSemaphorePermit) {
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        match self.tls.clone() {
            None => self.http(Tracked { io: stream, activity: Arc::clone(&activity) }, activity).await,
            Some(acceptor) => {
                let Some(tls) = self.handshake(&acceptor, stream).await else { return };
                self.http(Tracked { io: tls, activity: Arc::clone(&activity) }, activity).await;
            }
        }
        drop(slot);
    }

    /// The TLS handshake, within the header timeout; a plaintext client
    /// (its first byte is not a TLS handshake record) gets a plain 400.
    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        mut stream: TcpStream,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let mut first = [0_u8; 1];
        match tokio::time::timeout(self.limits.header, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == 0x16 => {}
            Ok(Ok(1)) => {
                let _ = tokio::time::timeout(self.limits.header, stream.write_all(PLAINTEXT_REFUSAL)).await;
                let _ = stream.shutdown().await;
                tracing::debug!(peer = %self.peer, "plaintext request to the TLS listener refused");
                return None;
            }
            _ => return None,
        }
        match tokio::time::timeout(self.limits.header, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }

    /// HTTP/1.1 or HTTP/2 on `io` until the client closes, the idle or
    /// first-head deadline passes, or the server stops.
    async fn http<I>(self, io: Tracked<I>, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self { peer, app, limits, mut stop, .. } = self;
        let seen = Arc::clone(&activity);
        let service = tower::service_fn(move |mut req: Request<Incoming>| {
            seen.requested.store(true, Ordering::Relaxed);
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header).keep_alive(true);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(MAX_STREAMS);
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let (mut stopping, mut idle) = (false, false);
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = activity.quiet_for(limits), if !idle => {
                    idle = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a plaintext client of the TLS listener gets.
const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\
content-length: 50\r\n\r\nthis port speaks TLS only: use https:// (or grpcs)\n";

/// When a connection last moved bytes, and whether it has sent a request.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last read or write.
    last: AtomicU64,
    requested: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0), requested: AtomicBool::new(false) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection has been quiet for the idle timeout,
    /// or has sent no request within the header timeout of its start.
    async fn quiet_for(&self, limits: Limits) {
        loop {
            let due = if self.requested.load(Ordering::Relaxed) {
                self.start + Duration::from_millis(self.last.load(Ordering::Relaxed)) + limits.idle
            } else {
                self.start + limits.header
            };
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// An I/O stream that records its traffic in an [`Activity`].
struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The request-body bounds shared by every connection.
struct BodyGuard {
    timeout: Duration,
    memory: Arc<Semaphore>,
}

impl BodyGuard {
    fn new(timeout: Duration) -> Self {
        Self { timeout, memory: Arc::new(Semaphore::new(BODY_MEMORY)) }
    }
}

/// The body limit of a route.
fn body_limit(path: &str) -> usize {
    if path == GITHUB_PATH { GITHUB_BODY_LIMIT } else { DEFAULT_BODY_LIMIT }
}

/// Middleware: refuses a declared body over the route's limit before
/// reading it, and bounds the rest ([`GuardedBody`]).
async fn guard(State(guard): State<Arc<BodyGuard>>, request: Request, next: Next) -> Response {
    let limit = body_limit(request.uri().path());
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // Forward auth never reads its body: a large one is ignored, as before.
    let reads_body = request.uri().path() != "/v1/authorize";
    if reads_body && declared.is_some_and(|n| n > limit as u64) {
        return too_large(&request, limit);
    }
    let deadline = Box::pin(tokio::time::sleep(guard.timeout));
    let request = request.map(|body| {
        Body::new(GuardedBody {
            inner: body,
            deadline,
            left: limit,
            memory: Arc::clone(&guard.memory),
            held: None,
            waiting: None,
        })
    });
    next.run(request).await
}

/// 413 (a gRPC call: status 8, RESOURCE_EXHAUSTED) for a body over `limit`.
fn too_large(request: &Request, limit: usize) -> Response {
    let message = format!("request body is larger than {limit} bytes");
    if crate::serve::grpc::is_grpc(request.headers()) {
        return crate::serve::grpc::status_response(8, &message);
    }
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, format!("{message}\n")).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BodyError {
    /// Over the route's limit.
    #[error("request body is larger than the limit")]
    TooLarge,
    /// Not finished within the body timeout.
    #[error("request body not received in time")]
    TimedOut,
    /// The connection failed.
    #[error("request body: {0}")]
    Read(#[from] axum::Error),
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

/// A request body with a deadline, a byte limit and a share of the
/// process-wide body memory, held until the body is dropped.
struct GuardedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    left: usize,
    memory: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    /// A data frame read, waiting for memory.
    waiting: Option<(Frame<Bytes>, Acquire)>,
}

impl GuardedBody {
    fn hold(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
    }
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyError::TimedOut)));
        }
        if let Some((_, acquire)) = self.waiting.as_mut() {
            let permit = ready!(acquire.as_mut().poll(cx));
            let Some((frame, _)) = self.waiting.take() else { return Poll::Ready(None) };
            if let Ok(p) = permit {
                self.hold(p);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        let Some(n) = frame.data_ref().map(Bytes::len) else { return Poll::Ready(Some(Ok(frame))) };
        if n > self.left {
            return Poll::Ready(Some(Err(BodyError::TooLarge)));
        }
        self.left -= n;
        let n = u32::try_from(n.min(BODY_MEMORY)).unwrap_or(u32::MAX);
        match Arc::clone(&self.memory).try_acquire_many_owned(n) {
            Ok(p) => {
                self.hold(p);
                Poll::Ready(Some(Ok(frame)))
            }
            Err(_) => {
                self.waiting = Some((frame, Box::pin(Arc::clone(&self.memory).acquire_many_owned(n))));
                self.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for ok in ["127.0.0.1:8443", "keys.example.com:443", "[::1]:50051"] {
            assert_eq!(public_address(ok, "x").unwrap(), ok);
        }
        for bad in ["127.0.0.1", ":443", "host:port", "a b:1", "h:70000"] {
            assert!(public_address(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn body_limits_per_route() {
        assert_eq!(body_limit("/iam/v1/apiKeys"), DEFAULT_BODY_LIMIT);
        assert_eq!(body_limit(GITHUB_PATH), GITHUB_BODY_LIMIT);
    }
}
