//! Prints `N` (default 100,000) distinct forged keys, one per line: the
//! default format, random ids nobody issued, correct checksums — what any
//! script can make, since the checksum is public. The input of the flood
//! benchmark in docs/performance.md (`cli/bench/flood.lua`).
//!
//! ```text
//! cargo run -q --release --example forged_keys -- 100000 > /tmp/forged.txt
//! ```

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let n: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: forged_keys [N]");
            return ExitCode::from(2);
        }
    };
    let format = api_keys::TokenFormat::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..n {
        let key = match format.generate() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("forged_keys: {e}");
                return ExitCode::FAILURE;
            }
        };
        if writeln!(out, "{}", key.secret.expose_secret()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
