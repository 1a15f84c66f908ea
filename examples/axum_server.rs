//! An axum server protected by `Authorization: Api-Key`:
//!
//! ```text
//! cargo run --features axum --example axum_server
//! ```
//!
//! Binds 127.0.0.1 on `PORT` (default 3000) and serves
//!
//! | route                | needs                                   |
//! |----------------------|-----------------------------------------|
//! | `GET /v1/whoami`     | any valid key: its id, service account, scopes |
//! | `POST /v1/translate` | `yc.ai.translate.execute`               |
//! | `GET /v1/monitoring` | `yc.monitoring.read` (`….manage` implies it) |
//!
//! Without `API_KEYS_DATABASE_URL` it keeps keys in memory, creates a demo
//! key with scopes `yc.ai.translate.execute` and `yc.monitoring.manage`, and
//! prints exactly one line on stdout, `demo-key: <token>`; everything else
//! goes to stderr through `tracing` (`RUST_LOG` filters it, default `info`).
//!
//! ```text
//! KEY=$(cargo run -q --features axum --example axum_server | sed -n 's/^demo-key: //p;q') …
//! curl -H "Authorization: Api-Key $KEY" localhost:3000/v1/whoami
//! curl -H "Authorization: Api-Key $KEY" localhost:3000/v1/monitoring
//! curl -H "Authorization: Api-Key $KEY" -H 'content-type: application/json' \
//!      -d '{"text":"hello world","target_language":"ru"}' localhost:3000/v1/translate
//! ```
//!
//! With `API_KEYS_DATABASE_URL` set (`sqlite:…`, `postgres://…` or
//! `redis://…`, with the matching cargo feature) the keys live in that store
//! instead, digested with the pepper in `API_KEYS_PEPPER` (base64, at least
//! 32 bytes; version `API_KEYS_PEPPER_VERSION`, default 1); no demo key is
//! made. These are variables `keyctl` reads too, so a key made with
//! `keyctl create …` (crate `api-keys-cli`) works here. For a ready-made key
//! service use `keyctl serve` instead of this example.
//! Ctrl-C (or SIGTERM) stops accepting connections, lets in-flight requests
//! finish, writes pending last-used times and exits.

#[path = "axum_server/app.rs"]
mod app;

use std::error::Error;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use api_keys::http::ApiKeyLayer;
use api_keys::{CreateRequest, KeyManager, KeyStore, MemoryStore, Pepper, Peppers, ScopeCatalog};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn Error + Send + Sync>;

/// How often last-used times are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut cause = e.source();
            let mut chain = e.to_string();
            while let Some(c) = cause {
                chain.push_str(": ");
                chain.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::error!(error = %chain, "axum_server failed");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?} is not a port number: {e}"))?,
        Err(_) => 3000,
    };
    // The scopes this service knows; `….manage` implies `….read`.
    let catalog = ScopeCatalog::builder()
        .scope(app::TRANSLATE_SCOPE, "Text translation")
        .scope("yc.monitoring.manage", "Viewing and writing monitoring data")
        .scope(app::MONITORING_SCOPE, "Viewing monitoring data")
        .build()?;
    match std::env::var("API_KEYS_DATABASE_URL") {
        Ok(url) => database::serve(&url, port, catalog).await,
        Err(_) => {
            let peppers = Peppers::single(Pepper::generate(1)?);
            let manager = KeyManager::builder(Arc::new(MemoryStore::new()), peppers, catalog).build();
            let demo = manager
                .create(
                    CreateRequest::new("demo-robot")
                        .description("axum_server demo key")
                        .scopes([app::TRANSLATE_SCOPE, "yc.monitoring.manage"]),
                )
                .await?;
            tracing::info!(key_id = %demo.api_key.id, "created an in-memory demo key");
            println!("demo-key: {}", demo.secret.expose_secret());
            serve(manager, port).await
        }
    }
}

/// Serves the example router over any store until Ctrl-C or SIGTERM.
async fn serve<S: KeyStore>(manager: KeyManager<S>, port: u16) -> Result<(), BoxError> {
    let auth = ApiKeyLayer::new(manager.verifier().build());
    let verifier = Arc::clone(auth.verifier());
    let router = app::router(auth, manager.catalog())?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let flusher = {
        let verifier = Arc::clone(&verifier);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = verifier.flush_last_used().await {
                    tracing::warn!(error = %e, "could not write last-used times; will retry");
                }
            }
        })
    };
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;
    flusher.abort();
    match verifier.flush_last_used().await {
        Ok(n) => tracing::info!(written = n, "stopped"),
        Err(e) => tracing::warn!(error = %e, "stopped; last-used times not written"),
    }
    Ok(())
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// `API_KEYS_DATABASE_URL`: where persistent stores plug in. The URL is
/// mapped to a store by [`api_keys::store::any::open_store`], as `keyctl`
/// maps it, so keys made with `keyctl` verify here; the router, layer and
/// shutdown are the same for every store.
mod database {
    use super::BoxError;
    use api_keys::ScopeCatalog;

    /// Opens the store `url` names (`sqlite:…`, `postgres://…` or
    /// `redis://…`, each with its cargo feature) with the pepper from
    /// `API_KEYS_PEPPER` / `API_KEYS_PEPPER_VERSION`, and serves it. No demo
    /// key is made: keys come from the operator tools. (The pepper file that
    /// `keyctl` keeps beside a SQLite database is `keyctl`'s own rule;
    /// `keyctl serve` reads it, this example does not.)
    #[cfg(feature = "_backend")]
    pub(super) async fn serve(url: &str, port: u16, catalog: ScopeCatalog) -> Result<(), BoxError> {
        use api_keys::{Pepper, Peppers};
        let pepper = std::env::var("API_KEYS_PEPPER")
            .map_err(|_| "API_KEYS_PEPPER is not set: give the pepper the keys were made with")?;
        let version = match std::env::var("API_KEYS_PEPPER_VERSION") {
            Ok(v) if !v.trim().is_empty() => {
                v.trim().parse().map_err(|_| "API_KEYS_PEPPER_VERSION must be a whole number")?
            }
            _ => 1,
        };
        let peppers = Peppers::single(Pepper::from_base64(version, &pepper)?);
        let store = api_keys::store::any::open_store(url).await?;
        tracing::info!(backend = %store.backend(), "keys are kept in the database");
        let manager = api_keys::KeyManager::builder(std::sync::Arc::new(store), peppers, catalog).build();
        super::serve(manager, port).await
    }

    /// Without any store feature there is nothing `url` could name.
    #[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "redis")))]
    pub(super) async fn serve(_url: &str, _port: u16, _catalog: ScopeCatalog) -> Result<(), BoxError> {
        Err("API_KEYS_DATABASE_URL is set, but this build has no persistent store; build with \
             `--features axum,sqlite` (or `postgres`, `redis`)"
            .into())
    }
}
