//! What `keyctl` reads from its user besides flags: durations and secret
//! values from stdin.

use std::io::{BufRead, IsTerminal, Read};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::failure::{Failure, OTHER};

/// Most bytes read from stdin (a header or a secret is far shorter).
const MAX_STDIN: u64 = 64 * 1024;

/// `0`, or a whole number with `s`, `m`, `h` or `d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const HELP: &str = "expected 0 or a whole number with s, m, h or d (e.g. 30s, 10m, 1h, 2d)";
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or(HELP)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| HELP)?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(HELP.to_owned()),
    };
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(|| "duration is too long".to_owned())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1", "1x", "-1h", "1.5h", "1h30m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
