//! The streaming scanner: bytes in, [`Finding`]s out.
//!
//! The scanner splits its input into maximal runs of `[A-Za-z0-9_]` and
//! parses each run whose length is exactly the format's token length. A run
//! that ends inside a chunk is parsed straight from the chunk; only a run
//! still open at the end of a chunk is copied, into a buffer of at most one
//! token (zeroized), so memory is bounded by one token whatever the input.

use std::fmt;
use std::io::{self, Read};

use zeroize::Zeroizing;

use crate::secret::{MaskedKey, Secret};
use crate::token::{KeyId, Token, TokenFormat};

/// Bytes read at a time by [`scan_reader`].
const READ_CHUNK: usize = 64 * 1024;

/// `[A-Za-z0-9_]`: the bytes a token is made of.
const WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    t
};

/// A key found in scanned bytes.
///
/// `Debug` shows the position, key id and masked form; the secret is only
/// reachable through [`Finding::secret`] (to check it against the store).
#[derive(Clone)]
pub struct Finding {
    key_id: KeyId,
    masked: MaskedKey,
    secret: Secret,
    line: u64,
    column: u64,
    offset: u64,
}

impl Finding {
    /// The key id embedded in the token (public).
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// `****` and the last six characters (the public checksum).
    #[must_use]
    pub fn masked(&self) -> MaskedKey {
        self.masked
    }

    /// The whole token. Handle as a secret: never print or log it.
    #[must_use]
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// 1-based line of the token's first byte (lines end at `\n`).
    #[must_use]
    pub fn line(&self) -> u64 {
        self.line
    }

    /// 1-based column of the token's first byte, counted in bytes (as
    /// `grep -b` and ripgrep's `--column` do).
    #[must_use]
    pub fn column(&self) -> u64 {
        self.column
    }

    /// 0-based byte offset of the token's first byte in the input.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("key_id", &self.key_id)
            .field("masked", &self.masked)
            .field("line", &self.line)
            .field("column", &self.column)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Totals of one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanStats {
    /// Bytes scanned.
    pub bytes: u64,
    /// Keys found.
    pub findings: u64,
}

/// Finds tokens of one [`TokenFormat`] in a stream of bytes fed in chunks of
/// any size; see the [module docs](crate::scan) for an example.
pub struct Scanner {
    format: TokenFormat,
    token_len: usize,
    /// The open run's bytes when it started in an earlier chunk (at most one
    /// token; cleared once the run is longer than a token).
    carry: Zeroizing<Vec<u8>>,
    /// Length of the open run (0: not inside a run).
    run_len: u64,
    run_line: u64,
    run_column: u64,
    run_offset: u64,
    /// Position of the next byte.
    line: u64,
    column: u64,
    offset: u64,
    findings: u64,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("format", &self.format)
            .field("offset", &self.offset)
            .field("findings", &self.findings)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner for keys of `format`, positioned at line 1, column 1.
    #[must_use]
    pub fn new(format: TokenFormat) -> Self {
        let token_len = format.token_len();
        Self {
            format,
            token_len,
            carry: Zeroizing::new(Vec::with_capacity(token_len)),
            run_len: 0,
            run_line: 1,
            run_column: 1,
            run_offset: 0,
            line: 1,
            column: 1,
            offset: 0,
            findings: 0,
        }
    }

    /// Scans the next chunk; keys that end in it go to `sink` in order. A key
    /// still open at the end of the chunk is reported by a later call.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut impl FnMut(Finding)) {
        let mut i = 0;
        while i < chunk.len() {
            if self.run_len == 0 {
                i = self.skip_separators(chunk, i);
                if i == chunk.len() {
                    break;
                }
                self.start_run();
            }
            i = self.extend_run(chunk, i, sink);
        }
    }

    /// Ends the input: reports a key that runs to the very last byte.
    pub fn finish(mut self, sink: &mut impl FnMut(Finding)) -> ScanStats {
        if self.run_len > 0 {
            self.close_carried_run(sink);
        }
        ScanStats { bytes: self.offset, findings: self.findings }
    }

    /// Skips bytes outside `[A-Za-z0-9_]` from `i`, counting lines; returns
    /// the index of the next word byte (or the chunk's length).
    fn skip_separators(&mut self, chunk: &[u8], i: usize) -> usize {
        let end = chunk[i..].iter().position(|&b| WORD[usize::from(b)]).map_or(chunk.len(), |n| i + n);
        for &b in &chunk[i..end] {
            if b == b'\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset += (end - i) as u64;
        end
    }

    fn start_run(&mut self) {
        self.run_line = self.line;
        self.run_column = self.column;
        self.run_offset = self.offset;
    }

    /// Consumes word bytes from `i`; when the run ends inside the chunk,
    /// parses it. Returns the index after the consumed bytes.
    fn extend_run(&mut self, chunk: &[u8], i: usize, sink: &mut impl FnMut(Finding)) -> usize {
        let end = chunk[i..].iter().position(|&b| !WORD[usize::from(b)]).map_or(chunk.len(), |n| i + n);
        let piece = &chunk[i..end];
        let started_here = self.run_len == 0;
        self.run_len += piece.len() as u64;
        self.column += piece.len() as u64;
        self.offset += piece.len() as u64;
        let closed = end < chunk.len();
        if started_here && closed {
            // The whole run is in this chunk: parse it in place.
            self.run_len = 0;
            self.report(piece, sink);
        } else {
            if self.run_len <= self.token_len as u64 {
                self.carry.extend_from_slice(piece);
            } else {
                self.carry.clear();
            }
            if closed {
                self.close_carried_run(sink);
            }
        }
        end
    }

    fn close_carried_run(&mut self, sink: &mut impl FnMut(Finding)) {
        let run = std::mem::replace(&mut self.carry, Zeroizing::new(Vec::with_capacity(self.token_len)));
        if self.run_len == self.token_len as u64 {
            self.report(&run, sink);
        }
        self.run_len = 0;
    }

    /// Reports `run` if it is a token of the format with a valid checksum.
    fn report(&mut self, run: &[u8], sink: &mut impl FnMut(Finding)) {
        if run.len() != self.token_len {
            return;
        }
        let Ok(token) = Token::parse(run, &self.format) else { return };
        // A parsed token is ASCII.
        let Ok(text) = std::str::from_utf8(run) else { return };
        self.findings += 1;
        sink(Finding {
            key_id: *token.id(),
            masked: MaskedKey::from_tail(run),
            secret: Secret::from(text.to_owned()),
            line: self.run_line,
            column: self.run_column,
            offset: self.run_offset,
        });
    }
}

/// Scans everything `reader` yields, 64 KiB at a time (memory stays bounded
/// whatever the input's size).
///
/// # Errors
/// The reader's error; findings before it have been given to `sink`.
pub fn scan_reader(
    format: &TokenFormat,
    mut reader: impl Read,
    sink: &mut impl FnMut(Finding),
) -> io::Result<ScanStats> {
    let mut scanner = Scanner::new(format.clone());
    // Chunks may hold secrets: wiped when done.
    let mut buf = Zeroizing::new(vec![0u8; READ_CHUNK]);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        scanner.feed(&buf[..n], sink);
    }
    Ok(scanner.finish(sink))
}

/// Every key of `format` in `bytes`, in order.
#[must_use]
pub fn scan_bytes(format: &TokenFormat, bytes: &[u8]) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut scanner = Scanner::new(format.clone());
    scanner.feed(bytes, &mut |f| found.push(f));
    scanner.finish(&mut |f| found.push(f));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(format: &TokenFormat) -> String {
        format.generate().unwrap().secret.expose_secret().to_owned()
    }

    fn positions(found: &[Finding]) -> Vec<(u64, u64, u64)> {
        found.iter().map(|f| (f.line, f.column, f.offset)).collect()
    }

    #[test]
    fn finds_keys_with_lines_and_columns() {
        let f = TokenFormat::default();
        let (a, b) = (key(&f), key(&f));
        let text = format!("{a}\n\n  x = \"{b}\";\r\n{a}");
        let found = scan_bytes(&f, text.as_bytes());
        let b_off = (a.len() + 2 + 7) as u64;
        let a2_off = b_off + b.len() as u64 + 4;
        assert_eq!(positions(&found), vec![(1, 1, 0), (3, 8, b_off), (4, 1, a2_off)]);
        assert_eq!(found[1].secret().expose_secret(), b);
        assert_eq!(found[1].masked().to_string(), format!("****{}", &b[b.len() - 6..]));
    }

    #[test]
    fn a_key_split_across_feeds_is_found_at_every_split_point() {
        let f = TokenFormat::default();
        let k = key(&f);
        let text = format!("a=1\nkey: {k} end");
        for split in 0..=text.len() {
            let mut found = Vec::new();
            let mut s = Scanner::new(f.clone());
            s.feed(&text.as_bytes()[..split], &mut |x| found.push(x));
            s.feed(&text.as_bytes()[split..], &mut |x| found.push(x));
            let stats = s.finish(&mut |x| found.push(x));
            assert_eq!(positions(&found), vec![(2, 6, 9)], "split at {split}");
            assert_eq!(stats, ScanStats { bytes: text.len() as u64, findings: 1 });
        }
    }

    #[test]
    fn one_byte_feeds_and_a_key_at_the_very_end() {
        let f = TokenFormat::default();
        let k = key(&f);
        let mut found = Vec::new();
        let mut s = Scanner::new(f.clone());
        for b in format!("-{k}").bytes() {
            s.feed(&[b], &mut |x| found.push(x));
        }
        assert!(found.is_empty(), "not reported before the run ends");
        s.finish(&mut |x| found.push(x));
        assert_eq!(positions(&found), vec![(1, 2, 1)]);
    }

    #[test]
    fn a_key_split_across_lines_is_not_a_key() {
        let f = TokenFormat::default();
        let k = key(&f);
        for at in 1..k.len() {
            for brk in ["\n", "\r\n", " ", "\\\n"] {
                let text = format!("{}{brk}{}", &k[..at], &k[at..]);
                assert!(scan_bytes(&f, text.as_bytes()).is_empty(), "split at {at} by {brk:?}");
            }
        }
    }

    #[test]
    fn near_misses_are_rejected() {
        let f = TokenFormat::default();
        let k = key(&f);
        let b = k.as_bytes();
        // Every one-character change anywhere.
        for i in 0..b.len() {
            for c in [b'0', b'a', b'Z', b'_'] {
                if b[i] == c {
                    continue;
                }
                let mut m = b.to_vec();
                m[i] = c;
                assert!(scan_bytes(&f, &m).is_empty(), "changed byte {i} to {}", c as char);
            }
        }
        // Wrong prefix with a recomputed checksum.
        let other = TokenFormat::new("zz_").unwrap();
        assert!(scan_bytes(&f, key(&other).as_bytes()).is_empty());
        // Glued inside a longer word run, on either side.
        for glued in [format!("x{k}"), format!("{k}x"), format!("_{k}"), format!("{k}_"), format!("{k}{k}")] {
            assert!(scan_bytes(&f, glued.as_bytes()).is_empty(), "glued {}", glued.len());
        }
        // Truncated and extended.
        assert!(scan_bytes(&f, &b[..b.len() - 1]).is_empty());
        // But any non-word neighbour is a boundary.
        for sep in ["-", ".", "\"", "'", "=", "/", "\t", "\u{e9}", "\0"] {
            let text = format!("{sep}{k}{sep}");
            assert_eq!(scan_bytes(&f, text.as_bytes()).len(), 1, "separator {sep:?}");
        }
    }

    #[test]
    fn custom_prefix_keys_and_default_keys_do_not_mix() {
        let acme = TokenFormat::new("acme_live_").unwrap();
        let text = format!("{} {}", key(&acme), key(&TokenFormat::default()));
        assert_eq!(scan_bytes(&acme, text.as_bytes()).len(), 1);
        assert_eq!(scan_bytes(&TokenFormat::default(), text.as_bytes()).len(), 1);
    }

    #[test]
    fn long_runs_do_not_grow_memory() {
        let f = TokenFormat::default();
        let mut s = Scanner::new(f.clone());
        let run = vec![b'a'; 10_000];
        for _ in 0..100 {
            s.feed(&run, &mut |_| panic!("nothing to find"));
            assert!(s.carry.capacity() <= f.token_len());
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let f = TokenFormat::default();
        let k = key(&f);
        let found = scan_bytes(&f, k.as_bytes());
        let dbg = format!("{found:?}");
        assert!(!dbg.contains(&k[3..67]), "{dbg}");
        assert!(dbg.contains(found[0].key_id().as_str()));
    }

    #[test]
    fn reader_errors_are_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let e = scan_reader(&TokenFormat::default(), Broken, &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
    }

    /// One piece of generated input: noise, or a real key.
    #[derive(Debug, Clone)]
    enum Piece {
        Noise(Vec<u8>),
        Key,
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Piece::Noise),
            2 => "[A-Za-z0-9_]{60,80}".prop_map(|s| Piece::Noise(s.into_bytes())),
            1 => Just(Piece::Key),
        ]
    }

    proptest! {
        /// Any input built of noise and real keys, each key set off by a
        /// newline, yields exactly those keys at their positions, however
        /// it is chunked.
        #[test]
        fn finds_exactly_the_planted_keys(pieces in proptest::collection::vec(piece(), 0..20),
                                          chunk in 1usize..300) {
            let f = TokenFormat::default();
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for p in pieces {
                input.push(b'\n');
                match p {
                    Piece::Noise(n) => input.extend_from_slice(&n),
                    Piece::Key => {
                        let k = key(&f);
                        expected.push((input.len() as u64, k.clone()));
                        input.extend_from_slice(k.as_bytes());
                    }
                }
                input.push(b'\n');
            }
            let mut found = Vec::new();
            let mut s = Scanner::new(f.clone());
            for c in input.chunks(chunk) {
                s.feed(c, &mut |x| found.push(x));
            }
            s.finish(&mut |x| found.push(x));
            let got: Vec<_> = found.iter().map(|x| (x.offset, x.secret().expose_secret().to_owned())).collect();
            prop_assert_eq!(&got, &expected);
            for x in &found {
                let line = 1 + input[..x.offset as usize].iter().filter(|&&b| b == b'\n').count() as u64;
                prop_assert_eq!(x.line, line);
                prop_assert_eq!(x.column, 1, "every key starts a line");
            }
        }

        /// Random strings of the token's exact shape are not keys.
        #[test]
        fn random_token_shaped_strings_are_not_keys(body in "[a-z0-9]{20}_[A-Za-z0-9]{49}") {
            let text = format!("ak_{body}");
            prop_assert!(scan_bytes(&TokenFormat::default(), text.as_bytes()).is_empty());
        }

        /// Arbitrary bytes never panic, and anything reported parses.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let f = TokenFormat::default();
            for x in scan_bytes(&f, &bytes) {
                prop_assert!(Token::parse(x.secret().expose_secret().as_bytes(), &f).is_ok());
            }
        }
    }
}
