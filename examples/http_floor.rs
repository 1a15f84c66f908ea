//! The HTTP floor: a bare axum server that answers `200` to every request
//! on `/v1/authorize`, with no key check, over the same axum and hyper as
//! `keyctl serve`. `cli/bench/floor.sh` runs wrk against it and against
//! `keyctl serve` side by side, so the service's figures stand beside what
//! the HTTP plumbing alone costs on this machine.
//!
//! ```text
//! cargo run --release --features axum --example http_floor [ADDR]   # default 127.0.0.1:18081
//! ```

use axum::Router;
use axum::routing::any;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let app = Router::new().route("/v1/authorize", any(|| async { "" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("floor: listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
