//! The pepper rules of `keyctl` (moved here from the library's
//! `api_keys::store::any`, which no longer reads the environment or makes
//! files): which pepper digests the keys of a store, and the pepper file
//! kept beside a SQLite database.
//!
//! `API_KEYS_PEPPER` (base64, at least 32 bytes; version
//! `API_KEYS_PEPPER_VERSION`, default 1) always wins. Without it, a SQLite
//! database gets a pepper file beside it (`api-keys.db` →
//! `api-keys.db.pepper`, base64, mode 0600), created on first use
//! ([`PepperSource::Created`]: tell the operator) and read after. A
//! PostgreSQL or Redis URL has no "beside the database", so it needs
//! `API_KEYS_PEPPER`. Losing the pepper makes every stored key unverifiable;
//! [`load_peppers`] therefore refuses to make a new pepper file for a SQLite
//! database that already exists without one.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use api_keys::store::any::{self, Backend, SetupError};
use api_keys::{KeyId, Pepper, PepperError, Peppers, RandomError};
use zeroize::Zeroizing;

use crate::env::{self, PEPPER_VAR, PEPPER_VERSION_VAR};
use crate::files::{self, Distrust};

/// Appended to a SQLite database's path to name its pepper file.
pub(crate) const PEPPER_FILE_SUFFIX: &str = ".pepper";

/// Why the pepper could not be set up. Never contains a pepper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PepperSetupError {
    /// The database URL could not be read.
    #[error(transparent)]
    Url(#[from] SetupError),
    /// `API_KEYS_PEPPER` is not a usable pepper.
    #[error("{PEPPER_VAR} is unusable")]
    Pepper(#[source] PepperError),
    /// `API_KEYS_PEPPER_VERSION` is not a number in `0..=4294967295`.
    #[error("{PEPPER_VERSION_VAR} must be a whole number from 0 to 4294967295")]
    PepperVersion,
    /// A PostgreSQL or Redis URL without `API_KEYS_PEPPER`.
    #[error(
        "{PEPPER_VAR} is not set; a {backend} store has no place for a pepper file, so set {PEPPER_VAR} \
         (base64 of at least 32 random bytes, e.g. `openssl rand -base64 32`) the same for every program using it"
    )]
    PepperRequired {
        /// The backend.
        backend: Backend,
    },
    /// An in-memory SQLite database without `API_KEYS_PEPPER`.
    #[error("{PEPPER_VAR} is not set and an in-memory SQLite database has no place for a pepper file")]
    NoPepperLocation,
    /// The SQLite database exists but its pepper file does not: a new pepper
    /// would make every key in it unverifiable.
    #[error(
        "{database} exists but its pepper file {pepper_file} does not; restore the pepper file or set {PEPPER_VAR} \
         to the pepper its keys were made with"
    )]
    PepperLost {
        /// The database file.
        database: PathBuf,
        /// The missing pepper file.
        pepper_file: PathBuf,
    },
    /// The pepper file could not be created or read.
    #[error("pepper file {path}")]
    PepperFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A pepper file or key database another user could have planted or may
    /// change: refused, never used.
    #[error("{path} {why}; refusing to use it (keep the key database and its pepper file private to one user)")]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: Distrust,
    },
    /// The pepper file may be read by other users.
    #[error("pepper file {path} has mode {mode:o}, readable by others; run `chmod 600` on it")]
    PepperFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The pepper file does not hold a usable pepper.
    #[error("pepper file {path} does not hold a pepper")]
    PepperFileContents {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PepperError,
    },
    /// The OS random generator failed while making a pepper.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Where the pepper comes from: the values of `API_KEYS_PEPPER` and
/// `API_KEYS_PEPPER_VERSION`. `Debug` hides the pepper.
#[derive(Default)]
pub(crate) struct PepperSettings {
    pepper: Option<Zeroizing<String>>,
    version: Option<String>,
}

impl fmt::Debug for PepperSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PepperSettings")
            .field("pepper", &self.pepper.as_ref().map(|_| "[REDACTED]"))
            .field("version", &self.version)
            .finish()
    }
}

impl PepperSettings {
    /// Reads `API_KEYS_PEPPER` and `API_KEYS_PEPPER_VERSION`; an unset or
    /// empty variable counts as absent. A value that is not UTF-8 is kept as
    /// text that fails validation later.
    #[must_use]
    pub(crate) fn from_env() -> Self {
        Self { pepper: env::var(PEPPER_VAR).map(Zeroizing::new), version: env::var(PEPPER_VERSION_VAR) }
    }

    /// Explicit values (for tests).
    #[cfg(test)]
    pub(crate) fn new(pepper: Option<String>, version: Option<String>) -> Self {
        Self { pepper: pepper.map(Zeroizing::new), version }
    }

    fn version(&self) -> Result<u32, PepperSetupError> {
        match &self.version {
            None => Ok(1),
            Some(v) => v.trim().parse().map_err(|_| PepperSetupError::PepperVersion),
        }
    }
}

/// Where [`load_peppers`] found the pepper.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum PepperSource {
    /// `API_KEYS_PEPPER`.
    Environment,
    /// An existing pepper file.
    File(PathBuf),
    /// A pepper file created just now: tell the operator to keep it safe.
    Created(PathBuf),
    /// Made for a `memory:` store, which has nothing to keep it beside.
    Ephemeral,
}

/// The pepper set for a store, and where it came from.
#[derive(Debug)]
pub(crate) struct LoadedPeppers {
    /// The peppers (one, with the configured version).
    pub(crate) peppers: Peppers,
    /// Where the pepper came from.
    pub(crate) source: PepperSource,
}

/// The pepper for the store at `database_url`: `API_KEYS_PEPPER` if set,
/// otherwise a new one for a `memory:` store, otherwise (SQLite only) the
/// pepper file beside the database, created
/// with mode 0600 if neither exists yet. Call it before [`api_keys::store::any::open_store`], which
/// creates the SQLite file.
///
/// # Errors
/// [`PepperSetupError::Pepper`] / [`PepperSetupError::PepperVersion`] for bad
/// variables; [`PepperSetupError::PepperRequired`] for PostgreSQL and Redis without
/// `API_KEYS_PEPPER`; [`PepperSetupError::NoPepperLocation`] for an in-memory
/// SQLite database; [`PepperSetupError::PepperLost`] when the database exists
/// without its pepper file; the `PepperFile*` errors for file trouble.
pub(crate) fn load_peppers(database_url: &str, settings: &PepperSettings) -> Result<LoadedPeppers, PepperSetupError> {
    let version = settings.version()?;
    if let Some(text) = &settings.pepper {
        let pepper = Pepper::from_base64(version, text).map_err(PepperSetupError::Pepper)?;
        return Ok(LoadedPeppers { peppers: Peppers::single(pepper), source: PepperSource::Environment });
    }
    let backend = Backend::of(database_url)?;
    if backend == Backend::Memory {
        // The keys live and die with the process: so may the pepper.
        let pepper = Pepper::generate(version)?;
        return Ok(LoadedPeppers { peppers: Peppers::single(pepper), source: PepperSource::Ephemeral });
    }
    if backend != Backend::Sqlite {
        return Err(PepperSetupError::PepperRequired { backend });
    }
    let database = any::sqlite_path(database_url)?.ok_or(PepperSetupError::NoPepperLocation)?;
    if let Some((path, why)) = files::database_distrust(&database)
        .map_err(|source| PepperSetupError::PepperFile { path: database.clone(), source })?
    {
        return Err(PepperSetupError::Untrusted { path, why });
    }
    let mut pepper_file = database.clone().into_os_string();
    pepper_file.push(PEPPER_FILE_SUFFIX);
    let pepper_file = PathBuf::from(pepper_file);
    let (pepper, source) = match read_pepper_file(&pepper_file, version)? {
        Some(pepper) => (pepper, PepperSource::File(pepper_file)),
        None => {
            // An existing database is never new, whatever its size: an empty
            // file someone planted must not get a fresh pepper.
            if files::exists(&database) {
                return Err(PepperSetupError::PepperLost { database, pepper_file });
            }
            create_pepper_file(&pepper_file, version)?
        }
    };
    Ok(LoadedPeppers { peppers: Peppers::single(pepper), source })
}

/// Reads an existing pepper file; `Ok(None)` if there is none.
fn read_pepper_file(path: &Path, version: u32) -> Result<Option<Pepper>, PepperSetupError> {
    let file_error = |source| PepperSetupError::PepperFile { path: path.to_owned(), source };
    let untrusted = |why| PepperSetupError::Untrusted { path: path.to_owned(), why };
    let mut file = match files::open_no_follow(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(Ok(why)) => return Err(untrusted(why)),
        Err(Err(e)) => return Err(file_error(e)),
    };
    // Checked on the open file: what is checked is what is read.
    let meta = file.metadata().map_err(file_error)?;
    if let Some(why) = files::pepper_file_distrust(&meta) {
        return Err(untrusted(why));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PepperSetupError::PepperFileMode { path: path.to_owned(), mode });
        }
    }
    let mut text = Zeroizing::new(String::new());
    // A pepper file is a few dozen bytes; refuse to read a huge one.
    Read::by_ref(&mut file).take(4096).read_to_string(&mut text).map_err(file_error)?;
    Pepper::from_base64(version, &text)
        .map(Some)
        .map_err(|source| PepperSetupError::PepperFileContents { path: path.to_owned(), source })
}

/// Makes a new pepper and publishes it at `path` without ever exposing a
/// half-written file: written to a private temporary file first, then
/// hard-linked into place, which fails if another process got there first
/// (whose pepper is then used).
fn create_pepper_file(path: &Path, version: u32) -> Result<(Pepper, PepperSource), PepperSetupError> {
    let file_error = |source| PepperSetupError::PepperFile { path: path.to_owned(), source };
    let pepper = Pepper::generate(version)?;
    let mut tmp = path.to_owned().into_os_string();
    tmp.push(format!(".tmp-{}-{}", std::process::id(), KeyId::generate()?));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        let mut text = pepper.to_base64();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok((pepper, PepperSource::Created(path.to_owned()))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_pepper_file(path, version)? {
            Some(theirs) => Ok((theirs, PepperSource::File(path.to_owned()))),
            None => Err(file_error(e)),
        },
        Err(e) => Err(file_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn pepper_from_settings_and_version() {
        let s = PepperSettings::new(Some(PEPPER_B64.to_owned()), Some("7".to_owned()));
        let loaded = load_peppers("postgres://h/db", &s).unwrap();
        assert_eq!(loaded.source, PepperSource::Environment);
        assert_eq!(loaded.peppers.current().version(), 7);
        assert!(!format!("{s:?}").contains(PEPPER_B64));
        let bad = PepperSettings::new(Some(PEPPER_B64.to_owned()), Some("x".to_owned()));
        assert!(matches!(load_peppers("sqlite:a.db", &bad), Err(PepperSetupError::PepperVersion)));
        let short = PepperSettings::new(Some("c2hvcnQ=".to_owned()), None);
        assert!(matches!(load_peppers("sqlite:a.db", &short), Err(PepperSetupError::Pepper(PepperError::TooShort(5)))));
    }

    #[test]
    fn network_stores_need_the_variable_and_memory_has_no_file() {
        let none = PepperSettings::default();
        for (url, backend) in [("postgres://h/db", Backend::Postgres), ("redis://h", Backend::Redis)] {
            match load_peppers(url, &none) {
                Err(PepperSetupError::PepperRequired { backend: b }) => assert_eq!(b, backend),
                other => panic!("{url}: {other:?}"),
            }
        }
        for url in ["sqlite::memory:", "sqlite://?mode=memory", "sqlite://"] {
            assert!(matches!(load_peppers(url, &none), Err(PepperSetupError::NoPepperLocation)), "{url}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn pepper_file_is_created_private_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keys.db");
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let none = PepperSettings::default();
        let first = load_peppers(&url, &none).unwrap();
        let file = dir.path().join("keys.db.pepper");
        assert_eq!(first.source, PepperSource::Created(file.clone()));
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let second = load_peppers(&url, &none).unwrap();
        assert_eq!(second.source, PepperSource::File(file.clone()));
        assert_eq!(first.peppers.current().digest(b"x"), second.peppers.current().digest(b"x"));
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_peppers(&url, &none), Err(PepperSetupError::PepperFileMode { mode: 0o644, .. })));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&file, "not base64!").unwrap();
        assert!(matches!(load_peppers(&url, &none), Err(PepperSetupError::PepperFileContents { .. })));

        // A database without its pepper file is refused, not re-peppered.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&db, b"SQLite format 3\0").unwrap();
        assert!(matches!(load_peppers(&url, &none), Err(PepperSetupError::PepperLost { .. })));
        assert!(!file.exists());
    }
}
