//! CRC-32 (ISO-HDLC, the zlib/PNG polynomial) and its 6-character base62 form.
//!
//! The checksum is public: it lets people, secret scanners and the verifier
//! reject mistyped or made-up keys without touching a store or running HMAC.
//! It is written here (slice-by-16, tables built at compile time) rather than
//! pulled in as a dependency to keep the core's dependency list to the crates
//! named in the crate docs; the known-answer tests below pin it to the standard.

const POLY: u32 = 0xEDB8_8320;

const SLICES: usize = 16;

const fn make_tables() -> [[u32; 256]; SLICES] {
    let mut t = [[0u32; 256]; SLICES];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < SLICES {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; SLICES] = make_tables();

#[inline(always)]
fn lookup4(t: &[[u32; 256]; SLICES], base: usize, w: u32) -> u32 {
    t[base + 3][(w & 0xFF) as usize]
        ^ t[base + 2][((w >> 8) & 0xFF) as usize]
        ^ t[base + 1][((w >> 16) & 0xFF) as usize]
        ^ t[base][(w >> 24) as usize]
}

/// CRC-32/ISO-HDLC of `data` (`crc32(b"123456789") == 0xCBF4_3926`),
/// slice-by-16.
#[must_use]
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let w0 = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let w1 = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        let w2 = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
        let w3 = u32::from_le_bytes([c[12], c[13], c[14], c[15]]);
        crc = lookup4(t, 12, w0) ^ lookup4(t, 8, w1) ^ lookup4(t, 4, w2) ^ lookup4(t, 0, w3);
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xFF) as usize];
    }
    !crc
}

/// Base62 alphabet in ASCII order: digits, upper case, lower case.
pub(crate) const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Number of characters of an encoded checksum (62^6 > 2^32).
pub(crate) const CHECKSUM_LEN: usize = 6;

/// Encodes a 32-bit value as six base62 digits, most significant first.
///
/// Split into two independent halves of three digits (62³ = 238 328) so the
/// divisions do not form one long dependency chain.
#[must_use]
#[inline]
pub(crate) fn encode_base62_u32(v: u32) -> [u8; CHECKSUM_LEN] {
    const CUBE: u32 = 62 * 62 * 62;
    let (hi, lo) = (v / CUBE, v % CUBE);
    let d = |x: u32| BASE62[(x % 62) as usize];
    [d(hi / 3844), d(hi / 62), d(hi), d(lo / 3844), d(lo / 62), d(lo)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { POLY ^ (crc >> 1) } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn known_answers() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }

    #[test]
    fn slice_by_16_matches_bitwise_for_every_length() {
        let data: Vec<u8> = (0u16..300).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(crc32(&data[..n]), crc32_bitwise(&data[..n]), "length {n}");
        }
    }

    #[test]
    fn base62_encoding_is_fixed_width_and_ordered() {
        assert_eq!(&encode_base62_u32(0), b"000000");
        assert_eq!(&encode_base62_u32(61), b"00000z");
        assert_eq!(&encode_base62_u32(62), b"000010");
        assert_eq!(&encode_base62_u32(u32::MAX), b"4gfFC3");
    }
}
