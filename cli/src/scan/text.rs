//! What `keyctl scan` feeds the scanner: a file's bytes as they are, or,
//! for a file that starts with a UTF-16 byte-order mark, its text
//! transcoded to UTF-8 (a key written by a UTF-16 editor or PowerShell is
//! every other byte NUL, which no byte scan would find).
//!
//! Everything else — UTF-8, ASCII, binaries with NUL bytes — is scanned
//! byte for byte: the key's checksum keeps false positives in binary data
//! near 2⁻³² per candidate. Lines and columns of a UTF-16 file count the
//! bytes of its UTF-8 transcoding (for ASCII text, characters).

use zeroize::Zeroizing;

/// The byte-order marks of UTF-16: little-endian, big-endian.
const BOM_LE: [u8; 2] = [0xFF, 0xFE];
const BOM_BE: [u8; 2] = [0xFE, 0xFF];

/// Turns a stream's chunks into the bytes to scan.
pub(super) enum Decoder {
    /// Fewer than two bytes seen yet: the encoding is not known.
    Sniffing(Vec<u8>),
    /// Scanned as they are.
    Bytes,
    /// UTF-16 after its byte-order mark.
    Utf16(Utf16),
}

impl Default for Decoder {
    fn default() -> Self {
        Self::Sniffing(Vec::with_capacity(2))
    }
}

impl Decoder {
    /// Whether the input turned out to be UTF-16.
    pub(super) fn is_utf16(&self) -> bool {
        matches!(self, Self::Utf16(_))
    }

    /// Hands `chunk`'s bytes to scan to `feed` (nothing while the encoding
    /// is still unknown).
    pub(super) fn push(&mut self, chunk: &[u8], feed: &mut dyn FnMut(&[u8])) {
        match self {
            Self::Bytes => feed(chunk),
            Self::Utf16(u) => u.push(chunk, feed),
            Self::Sniffing(seen) => {
                let take = chunk.len().min(2 - seen.len());
                seen.extend_from_slice(&chunk[..take]);
                if seen.len() < 2 {
                    return;
                }
                let head = [seen[0], seen[1]];
                *self = match head {
                    BOM_LE => Self::Utf16(Utf16::new(false)),
                    BOM_BE => Self::Utf16(Utf16::new(true)),
                    _ => {
                        feed(&head);
                        Self::Bytes
                    }
                };
                self.push(&chunk[take..], feed);
            }
        }
    }

    /// The end of the input: what is still held back.
    pub(super) fn finish(&mut self, feed: &mut dyn FnMut(&[u8])) {
        match self {
            Self::Sniffing(seen) => feed(seen),
            Self::Bytes => {}
            Self::Utf16(u) => u.finish(feed),
        }
    }
}

/// A streaming UTF-16 to UTF-8 transcoder; invalid units become U+FFFD.
pub(super) struct Utf16 {
    big_endian: bool,
    /// The first byte of a unit split between chunks.
    odd: Option<u8>,
    /// A high surrogate whose low half is in the next chunk.
    high: Option<u16>,
    /// The transcoded text of one chunk (it may hold a key: zeroized).
    out: Zeroizing<Vec<u8>>,
}

impl Utf16 {
    fn new(big_endian: bool) -> Self {
        Self { big_endian, odd: None, high: None, out: Zeroizing::new(Vec::new()) }
    }

    fn push(&mut self, chunk: &[u8], feed: &mut dyn FnMut(&[u8])) {
        let mut bytes = chunk;
        let mut units = Vec::with_capacity(chunk.len() / 2 + 2);
        units.extend(self.high.take());
        if let (Some(first), Some((&second, rest))) = (self.odd, bytes.split_first()) {
            units.push(self.unit([first, second]));
            self.odd = None;
            bytes = rest;
        }
        let pairs = bytes.chunks_exact(2);
        self.odd = pairs.remainder().first().copied();
        units.extend(pairs.map(|p| self.unit([p[0], p[1]])));
        if units.last().is_some_and(|u| (0xD800..0xDC00).contains(u)) {
            self.high = units.pop();
        }
        self.emit(&units, feed);
    }

    fn finish(&mut self, feed: &mut dyn FnMut(&[u8])) {
        let mut units: Vec<u16> = self.high.take().into_iter().collect();
        if self.odd.take().is_some() {
            units.push(0xFFFD);
        }
        self.emit(&units, feed);
    }

    fn unit(&self, b: [u8; 2]) -> u16 {
        if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
    }

    fn emit(&mut self, units: &[u16], feed: &mut dyn FnMut(&[u8])) {
        self.out.clear();
        let mut utf8 = [0u8; 4];
        for c in char::decode_utf16(units.iter().copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            self.out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        feed(&self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in chunks of `size`.
    fn decode(input: &[u8], size: usize) -> (Vec<u8>, bool) {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for chunk in input.chunks(size) {
            d.push(chunk, &mut |b| out.extend_from_slice(b));
        }
        d.finish(&mut |b| out.extend_from_slice(b));
        (out, d.is_utf16())
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut bytes = if big_endian { BOM_BE.to_vec() } else { BOM_LE.to_vec() };
        for u in text.encode_utf16() {
            bytes.extend_from_slice(&if big_endian { u.to_be_bytes() } else { u.to_le_bytes() });
        }
        bytes
    }

    #[test]
    fn utf16_with_a_bom_is_transcoded_in_any_chunking() {
        let text = "key = ak_x\n€ and 𝄞 (a surrogate pair)\n";
        for big_endian in [false, true] {
            let bytes = utf16(text, big_endian);
            for size in [1, 2, 3, 5, 7, 64] {
                assert_eq!(decode(&bytes, size), (text.as_bytes().to_vec(), true), "{big_endian} {size}");
            }
        }
    }

    #[test]
    fn other_bytes_pass_through_including_nul_and_short_inputs() {
        for input in [&b"plain\0text\xff"[..], b"", b"a", b"\xff", b"\xef\xbb\xbfutf8 bom"] {
            for size in [1, 2, 4] {
                assert_eq!(decode(input, size), (input.to_vec(), false), "{input:?} {size}");
            }
        }
    }

    #[test]
    fn broken_utf16_becomes_replacement_characters() {
        // A lone low surrogate, then a truncated final unit.
        let (out, _) = decode(&[0xFF, 0xFE, 0x00, 0xDC, b'a', 0, b'b'], 3);
        assert_eq!(String::from_utf8(out).unwrap(), "\u{FFFD}a\u{FFFD}");
    }
}
