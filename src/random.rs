//! The OS random number generator, and its one error.

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the OS random number generator failed")]
pub struct RandomError;

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}

/// Fills `out` with characters drawn uniformly from `alphabet` by rejection
/// sampling OS random bytes (no modulo bias).
pub(crate) fn random_chars(out: &mut [u8], alphabet: &[u8]) -> Result<(), RandomError> {
    // Largest multiple of the alphabet size that fits in a byte.
    let limit = 256 - (256 % alphabet.len());
    let mut pool = zeroize::Zeroizing::new([0u8; 96]);
    let mut filled = 0;
    while filled < out.len() {
        fill_random(pool.as_mut())?;
        for &b in pool.iter() {
            if usize::from(b) < limit {
                out[filled] = alphabet[usize::from(b) % alphabet.len()];
                filled += 1;
                if filled == out.len() {
                    break;
                }
            }
        }
    }
    Ok(())
}
