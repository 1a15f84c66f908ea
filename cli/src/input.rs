//! What `keyctl` reads from its user besides flags: durations and secret
//! values from stdin.

use std::io::{BufRead, IsTerminal, Read};

use zeroize::Zeroizing;

use crate::failure::{Failure, OTHER};

/// Most bytes read from stdin (a header or a secret is far shorter).
const MAX_STDIN: u64 = 64 * 1024;

pub(crate) use api_keys::parse_duration;

/// Reads a secret value from stdin: one line from a terminal, otherwise
/// everything up to [`MAX_STDIN`]; one trailing newline (`\n` or `\r\n`) is
/// removed. The buffer is zeroized when dropped.
pub(crate) fn read_stdin(what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let stdin = std::io::stdin();
    let mut buf = Zeroizing::new(Vec::new());
    let read = if stdin.is_terminal() {
        eprint!("{what}, then Enter (your terminal shows what you type; prefer `< file` or a pipe): ");
        stdin.lock().read_until(b'\n', &mut buf)
    } else {
        stdin.lock().take(MAX_STDIN).read_to_end(&mut buf)
    };
    read.map_err(|e| Failure::new(OTHER, format!("cannot read stdin: {e}")))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(buf)
}
