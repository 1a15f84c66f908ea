//! Which local files `keyctl` trusts.
//!
//! A SQLite key store is two files an attacker with write access to their
//! directory could plant or swap: the pepper file (whoever chose the pepper
//! can mint keys that verify) and the database (whoever can write it can
//! insert a record or set a revoked key active again). So:
//!
//! - the pepper file is opened without following a symbolic link and must be
//!   a regular file, owned by the effective user, with one link and no
//!   permission bits for group or others;
//! - the database and its `-wal` / `-shm` files, where they exist, must be
//!   regular files owned by the effective user and not writable by group or
//!   others;
//! - a new database is created owner-only (`0600`) before SQLite opens it,
//!   and SQLite gives its `-wal` and `-shm` files the database's mode;
//! - a world-writable directory is warned about (others can plant files
//!   there even when they cannot replace ours).
//!
//! `keyctl serve` reads two more files the same way ([`read_secret`],
//! [`read_protected`]): the admin-token file is a secret like the pepper
//! file (whoever wrote it can manage every key; whoever reads it can too),
//! and GitHub's signing-keys file decides whose reports revoke keys, so it
//! gets the database's rules. Each is checked on the open file, every time
//! it is read.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Distrust {
    /// A symbolic link where a pepper file was expected.
    Symlink,
    /// Not a regular file.
    NotRegular,
    /// Owned by another user.
    Owner {
        /// The file's owner.
        uid: u32,
    },
    /// More than one hard link: another name for it may be someone else's.
    Links {
        /// The link count.
        count: u64,
    },
    /// Writable by group or others.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// A secret readable or writable by group or others.
    Readable {
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Symlink => f.write_str("is a symbolic link"),
            Self::NotRegular => f.write_str("is not a regular file"),
            Self::Owner { uid } => {
                write!(f, "is owned by uid {uid}, not by the user running keyctl (uid {})", effective_uid())
            }
            Self::Links { count } => write!(f, "has {count} hard links (expected 1)"),
            Self::Writable { mode } => write!(f, "has mode {mode:o}, writable by group or others"),
            Self::Readable { mode } => {
                write!(f, "has mode {mode:o}, open to group or others; run `chmod 600` on it")
            }
        }
    }
}

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Opens a pepper file for reading without following a symbolic link;
/// `Ok(None)` if it does not exist. The caller checks the open file with
/// [`pepper_file_distrust`] (so the checks and the read see the same file).
///
/// # Errors
/// `Err(Ok(Distrust::Symlink))` for a link, `Err(Err(io))` for other errors.
pub(crate) fn open_no_follow(path: &Path) -> Result<Option<File>, Result<Distrust, io::Error>> {
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() | rustix::fs::OFlags::CLOEXEC.bits();
    let flags = i32::try_from(nofollow).unwrap_or(i32::MAX);
    match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // O_NOFOLLOW on a link fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => Err(Ok(Distrust::Symlink)),
        Err(e) => Err(Err(e)),
    }
}

/// What is wrong with an open pepper file, if anything but its mode (which
/// the caller reports with its own message).
pub(crate) fn pepper_file_distrust(meta: &Metadata) -> Option<Distrust> {
    if !meta.file_type().is_file() {
        return Some(Distrust::NotRegular);
    }
    if meta.uid() != effective_uid() {
        return Some(Distrust::Owner { uid: meta.uid() });
    }
    if meta.nlink() != 1 {
        return Some(Distrust::Links { count: meta.nlink() });
    }
    None
}

/// A file `keyctl` refused or could not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FileError {
    /// The file is not trusted.
    #[error("{} {why}", path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Why.
        why: Distrust,
    },
    /// The file could not be read (or is not text).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Longest file [`read_secret`] and [`read_protected`] read.
const MAX_READ: u64 = 1024 * 1024;

/// Reads a secret file (the admin tokens) under the pepper file's rules:
/// opened without following a symbolic link, a regular file owned by the
/// effective user with one link and no permission bits for group or others.
///
/// # Errors
/// [`FileError::Untrusted`] naming the rule broken; [`FileError::Read`] if
/// it is missing, unreadable or not UTF-8.
pub(crate) fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<String>, FileError> {
    let read_error = |source| FileError::Read { path: path.to_owned(), source };
    let untrusted = |why| FileError::Untrusted { path: path.to_owned(), why };
    let file = match open_no_follow(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(read_error(io::ErrorKind::NotFound.into())),
        Err(Ok(why)) => return Err(untrusted(why)),
        Err(Err(e)) => return Err(read_error(e)),
    };
    let meta = file.metadata().map_err(read_error)?;
    if let Some(why) = pepper_file_distrust(&meta) {
        return Err(untrusted(why));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(untrusted(Distrust::Readable { mode: meta.mode() & 0o7777 }));
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    io::Read::read_to_string(&mut io::Read::take(file, MAX_READ), &mut text).map_err(read_error)?;
    Ok(text)
}

/// Reads a file whose contents decide what is trusted (GitHub's signing
/// keys) under the database's rules: a regular file (a symbolic link is
/// followed) owned by the effective user and not writable by group or
/// others.
///
/// # Errors
/// As [`read_secret`].
pub(crate) fn read_protected(path: &Path) -> Result<Vec<u8>, FileError> {
    let read_error = |source| FileError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if let Some(why) = database_rules(&meta) {
        return Err(FileError::Untrusted { path: path.to_owned(), why });
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_READ), &mut bytes).map_err(read_error)?;
    Ok(bytes)
}

/// Why a file fails the database's rules (a regular file owned by the
/// effective user, not writable by group or others), or `None`.
fn database_rules(meta: &std::fs::Metadata) -> Option<Distrust> {
    if !meta.file_type().is_file() {
        Some(Distrust::NotRegular)
    } else if meta.uid() != effective_uid() {
        Some(Distrust::Owner { uid: meta.uid() })
    } else if meta.mode() & 0o022 != 0 {
        Some(Distrust::Writable { mode: meta.mode() & 0o7777 })
    } else {
        None
    }
}

/// The database file and the two files SQLite keeps beside it in WAL mode.
pub(crate) fn database_files(database: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = database.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    [database.to_owned(), with("-wal"), with("-shm")]
}

/// Checks the database and its `-wal`/`-shm` files that exist: each must be
/// a regular file owned by the effective user and not writable by group or
/// others. Returns the first file that fails and why.
///
/// # Errors
/// I/O errors other than "not found" while reading the files' metadata.
pub(crate) fn database_distrust(database: &Path) -> io::Result<Option<(PathBuf, Distrust)>> {
    for path in database_files(database) {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(why) = database_rules(&meta) {
            return Ok(Some((path, why)));
        }
    }
    Ok(None)
}

/// A warning if the directory holding `database` is writable by everyone.
pub(crate) fn directory_warning(database: &Path) -> Option<String> {
    let dir = match database.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mode = std::fs::metadata(&dir).ok()?.mode();
    (mode & 0o002 != 0).then(|| {
        format!(
            "the directory {} is writable by every user (mode {:o}): others can plant files beside the key database; \
             keep the database and its pepper file in a directory only you can write",
            dir.display(),
            mode & 0o7777
        )
    })
}

/// Creates an empty database file with owner-only permissions if there is
/// none, so SQLite (which gives `-wal` and `-shm` the database's mode) never
/// makes it world-readable. An existing file is left alone.
///
/// # Errors
/// I/O errors other than "already exists".
pub(crate) fn create_private(database: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(database) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether anything exists at `path` (a dangling link counts).
pub(crate) fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn links_and_others_files_are_distrusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(open_no_follow(&link), Err(Ok(Distrust::Symlink))));
        assert!(open_no_follow(&dir.path().join("absent")).unwrap().is_none());
        let f = open_no_follow(&file).unwrap().unwrap();
        assert_eq!(pepper_file_distrust(&f.metadata().unwrap()), None);
        std::fs::hard_link(&file, dir.path().join("second")).unwrap();
        assert_eq!(pepper_file_distrust(&f.metadata().unwrap()), Some(Distrust::Links { count: 2 }));

        let db = dir.path().join("keys.db");
        assert_eq!(database_distrust(&db).unwrap(), None, "nothing there yet");
        create_private(&db).unwrap();
        assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(database_distrust(&db).unwrap(), None);
        let wal = dir.path().join("keys.db-wal");
        std::fs::write(&wal, "").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(database_distrust(&db).unwrap(), Some((wal, Distrust::Writable { mode: 0o666 })));
    }

    #[test]
    fn secret_and_protected_files_are_checked_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "t1\n").unwrap();
        let mode = |m| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        fn why<T>(r: Result<T, FileError>) -> Option<Distrust> {
            match r {
                Err(FileError::Untrusted { why, .. }) => Some(why),
                Err(e) => panic!("{e}"),
                Ok(_) => None,
            }
        }
        mode(0o600);
        assert_eq!(read_secret(&file).unwrap().as_str(), "t1\n");
        assert_eq!(read_protected(&file).unwrap(), b"t1\n");
        mode(0o640);
        assert_eq!(why(read_secret(&file)), Some(Distrust::Readable { mode: 0o640 }));
        assert_eq!(why(read_protected(&file)), None, "a public file may be readable");
        mode(0o620);
        assert_eq!(why(read_protected(&file)), Some(Distrust::Writable { mode: 0o620 }));
        mode(0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(why(read_secret(&link)), Some(Distrust::Symlink));
        assert_eq!(read_protected(&link).unwrap(), b"t1\n", "a link to a trusted file is followed");
        assert!(matches!(read_secret(&dir.path().join("absent")), Err(FileError::Read { .. })));
        assert!(matches!(read_protected(dir.path()), Err(FileError::Untrusted { why: Distrust::NotRegular, .. })));
    }
}
