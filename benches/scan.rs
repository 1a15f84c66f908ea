//! The leak scanner's throughput against a floor measured in the same run.
//!
//! Group `scan`, over 8 MiB of source-like text (identifiers, strings,
//! numbers, a real key every ~64 KiB):
//!
//! - `floor_count_lines`: counting `\n` bytes, the least any scanner that
//!   reports line numbers must do;
//! - `scan_bytes`: [`api_keys::scan::scan_bytes`] over the whole buffer;
//! - `scan_reader_64k`: [`api_keys::scan::scan_reader`] reading it in 64 KiB
//!   chunks (what `keyctl scan` does with a file).
//!
//! Criterion reports each as bytes per second; docs/performance.md quotes the ratio
//! to the floor.

use std::hint::black_box;

use api_keys::TokenFormat;
use api_keys::scan::{scan_bytes, scan_reader};
use criterion::{Criterion, Throughput};

const SIZE: usize = 8 * 1024 * 1024;

fn corpus(format: &TokenFormat) -> (Vec<u8>, usize) {
    let mut text = Vec::with_capacity(SIZE + 4096);
    let mut keys = 0;
    let mut i = 0u64;
    while text.len() < SIZE {
        if text.len() / 65_536 > keys {
            let key = format.generate().expect("OS random generator");
            text.extend_from_slice(format!("    api_key = \"{}\"\n", key.secret.expose_secret()).as_bytes());
            keys += 1;
        }
        let line = format!(
            "    let config_value_{i} = lookup(\"section_{}\", {}) + 0x{:08x}; // note {}\n",
            i % 97,
            i * 7,
            i.wrapping_mul(2_654_435_761),
            i % 13
        );
        text.extend_from_slice(line.as_bytes());
        i += 1;
    }
    (text, keys)
}

fn main() {
    let format = TokenFormat::default();
    let (text, keys) = corpus(&format);
    assert_eq!(scan_bytes(&format, &text).len(), keys, "every planted key is found");
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("floor_count_lines", |b| {
        b.iter(|| black_box(&text).iter().filter(|&&c| c == b'\n').count());
    });
    g.bench_function("scan_bytes", |b| b.iter(|| scan_bytes(&format, black_box(&text)).len()));
    g.bench_function("scan_reader_64k", |b| {
        b.iter(|| {
            let mut n = 0;
            scan_reader(&format, black_box(&text[..]), &mut |_| n += 1).expect("reading a slice");
            n
        });
    });
    g.finish();
    c.final_summary();
}
