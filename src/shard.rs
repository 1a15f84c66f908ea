//! The one way this crate spreads keys over shards and stripes (the memory
//! store's locks, the last-used buffer, the cache's generation stripes).
//!
//! The inputs are already uniformly random — key ids come from the OS
//! CSPRNG, digests are HMAC outputs — so no keyed hash is needed to spread
//! them. Attacker-chosen ids can only make unrelated keys share a shard,
//! which costs contention or a spurious cache re-read, never a wrong answer.

/// Maps `bytes` to a shard in `0..shards` (`shards > 0`).
pub(crate) fn shard_of(bytes: &[u8], shards: usize) -> usize {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    // The top bits are the best mixed; truncating to 32 of them is the point.
    ((h >> 32) as usize) % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_stay_in_range_and_spread() {
        for n in [1, 16, 64, 4096] {
            let mut hit = vec![0u32; n];
            for i in 0u32..(n as u32 * 8) {
                let s = shard_of(&i.to_le_bytes(), n);
                assert!(s < n);
                hit[s] += 1;
            }
            let used = hit.iter().filter(|&&c| c > 0).count();
            assert!(used * 10 >= n * 9, "{n} shards, {used} used");
        }
    }
}
