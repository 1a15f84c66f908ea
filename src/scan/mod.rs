//! Leaked-key scanning: find this crate's keys in arbitrary bytes, then ask
//! the store what each one is.
//!
//! 1. **find** — [`Scanner`] streams any bytes (files, stdin, a request body)
//!    in bounded memory and reports every token of a [`TokenFormat`](crate::TokenFormat) whose
//!    checksum holds, with its line and column. A token is a *whole* run of
//!    `[A-Za-z0-9_]`: one glued inside a longer run, or broken by a line
//!    break, is not a key. The checksum makes random strings practically
//!    never match (a random run of the right shape passes with probability
//!    about 2⁻³², and it must also have the exact prefix, length and field
//!    alphabets). No store is asked.
//! 2. **classify** — [`KeyManager::leak_status`](crate::KeyManager::leak_status)
//!    looks the id up and checks the secret against the stored digest
//!    (constant time), so a token that only *looks* like one of our keys —
//!    a real id with an invented secret and a recomputed checksum — is
//!    [`Liveness::Unknown`], never a reason to revoke someone's key.
//!
//! With the feature `github`, `github` answers GitHub's secret-scanning
//! partner program: the same classify step over the tokens GitHub reports,
//! then revocation of the real keys.
//!
//! A [`Finding`] prints as its key id and masked form (`****` and the last
//! six characters, which are the public checksum); the secret is held in a
//! [`Secret`](crate::Secret) that only [`Finding::secret`] reaches, for the
//! classify step.
//!
//! ```
//! use api_keys::scan::Scanner;
//! use api_keys::TokenFormat;
//!
//! let format = TokenFormat::default();
//! let key = format.generate()?;
//! let text = format!("# config\nAPI_KEY={}\nother={}x\n", key.secret.expose_secret(), key.secret.expose_secret());
//!
//! let mut found = Vec::new();
//! let mut scanner = Scanner::new(format);
//! // Any chunking gives the same result, even a key split between feeds.
//! for chunk in text.as_bytes().chunks(7) {
//!     scanner.feed(chunk, &mut |f| found.push(f));
//! }
//! scanner.finish(&mut |f| found.push(f));
//!
//! assert_eq!(found.len(), 1); // the glued `…x` on line 3 is not a key
//! assert_eq!((found[0].line(), found[0].column()), (2, 9));
//! assert_eq!(found[0].key_id(), &key.id);
//! assert!(!format!("{:?}", found[0]).contains(key.secret.expose_secret()));
//! # Ok::<(), api_keys::RandomError>(())
//! ```

mod check;
#[cfg(feature = "github")]
#[cfg_attr(docsrs, doc(cfg(feature = "github")))]
pub mod github;
mod scanner;

pub use check::{LeakCheckError, Liveness};
pub(crate) use check::{leak_status, leak_statuses};
pub use scanner::{Finding, ScanStats, Scanner, scan_bytes, scan_reader};
