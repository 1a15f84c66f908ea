//! `keyctl scan PATH…`: find leaked keys in files, folders and stdin.
//!
//! 1. **walk** — a path named on the command line that is not a folder is
//!    read whatever it is: a symbolic link is followed, and a pipe
//!    (`<(cmd)`, `/dev/stdin`) or device is read to its end; `-` is stdin.
//!    Each folder is walked with the `ignore` crate: `.gitignore` (also
//!    outside a git repository), `.ignore` and the global git excludes are
//!    respected unless `--all`; dotfiles such as `.env` are scanned; `.git/`
//!    is never entered. Inside a folder, symbolic links are not followed
//!    and pipes, sockets and devices are not read: each is skipped with a
//!    warning naming it, and counted (`skipped`).
//! 2. **scan** — each file through [`api_keys::scan::Scanner`], streamed
//!    64 KiB at a time: every byte, binaries included (the checksum keeps
//!    false positives near 2⁻³² per candidate); a file that starts with a
//!    UTF-16 byte-order mark is transcoded to UTF-8 first ([`text`]).
//! 3. **check** (`--check`, `--revoke`) — each distinct key id once through
//!    [`api_keys::KeyManager::leak_statuses`], [`CHECK_BATCH`] keys per
//!    store call: active, expired, revoked or unknown (unknown includes a
//!    real id with a secret that does not match). The store must exist: a
//!    SQLite file that does not is an error (exit 2), never created.
//! 4. **revoke** (`--revoke`) — after printing, every found key of ours not
//!    yet revoked (active or expired: an expiry can be changed, a revocation
//!    cannot) is revoked, after a prompt on a terminal or at once with
//!    `--yes`, through [`api_keys::KeyDirectory::record_leak`]: in the same
//!    commit as the revocation, one `leak` entry per place the key was found
//!    goes into its operations log (`keyctl operations ID`), with the
//!    absolute `path:line:column` (`stdin:line:column` for `-`) as its
//!    source — never the secret. A key of ours already revoked gets the
//!    leak entries only; a place already in a key's log is not logged
//!    again, so scanning the same tree twice records nothing new.
//!
//! Output: `path:line:column  key-id  masked[  status]` per key (byte
//! columns, 1-based; control and bidirectional characters of a name are
//! escaped, so a name cannot forge a line or drive the terminal), or one
//! JSON or YAML document with `--format json|yaml`. Exit 0 when
//! nothing is found, 1 when keys are found, 2 on bad input (a missing path,
//! `--revoke` without `--yes` and no terminal to ask on, a SQLite database
//! that does not exist with `--check` or `--revoke`, or — with nothing
//! found — a file that could not be read), 5 when the store is unavailable.

mod text;

use std::collections::HashMap;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use api_keys::scan::{Finding, LeakCheckError, Liveness, Scanner};
use api_keys::{KeyId, LeakDetails, ManageError, Token, TokenFormat};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::context::Context;
use crate::failure::{BAD_INPUT, Failure, OTHER, UNAVAILABLE, chain};
use crate::render::{Format, escaped};

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;
/// Keys looked up per store call by `--check`.
pub(crate) const CHECK_BATCH: usize = 500;

/// `keyctl scan` arguments.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files and folders to scan; `-` reads stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also scan files that .gitignore/.ignore exclude.
    #[arg(long)]
    all: bool,
    /// Ask the store whether each key is active, expired, revoked or unknown (needs the pepper).
    #[arg(long)]
    check: bool,
    /// Revoke the found keys that are ours and not yet revoked, after printing them (implies --check).
    #[arg(long)]
    revoke: bool,
    /// With --revoke: do not ask for confirmation.
    #[arg(long, requires = "revoke")]
    yes: bool,
}

/// One key found, where.
struct Hit {
    path: String,
    finding: Finding,
}

/// What a scan went through.
#[derive(Default, Serialize)]
struct Totals {
    files_scanned: u64,
    bytes_scanned: u64,
    /// Files transcoded from UTF-16.
    utf16_files: u64,
    /// What a folder walk did not read (`path: why`).
    skipped: Vec<String>,
    unreadable: Vec<String>,
}

/// A found key as printed in JSON.
#[derive(Serialize)]
struct Row<'a> {
    path: &'a str,
    line: u64,
    column: u64,
    key_id: &'a KeyId,
    masked: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Liveness>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revoked_now: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    findings: Vec<Row<'a>>,
    #[serde(flatten)]
    totals: &'a Totals,
}

/// How the run prints.
#[derive(Clone, Copy)]
struct Output {
    /// One JSON or YAML document at the end (`--format json|yaml`), else
    /// text lines.
    document: Option<Format>,
    /// Print each text line as soon as its file is scanned (no --check).
    stream: bool,
}

/// Runs `keyctl scan`.
pub(crate) async fn run(args: ScanArgs, format: Option<Format>, url: &str) -> Result<(), Failure> {
    let checking = args.check || args.revoke;
    let document = format.filter(|f| matches!(f, Format::Json | Format::Yaml));
    let out = Output { document, stream: !checking && document.is_none() };
    preflight(&args)?;
    if checking {
        refuse_missing_database(url)?;
    }
    let (hits, totals) = walk_all(&args, &TokenFormat::default(), out);
    if !checking {
        if out.document.is_some() {
            print_document(out, &hits, None, &HashMap::new(), &totals)?;
        }
        return finish(&hits, &totals);
    }
    let cx = Context::open(url, true).await?;
    let statuses = check_all(&cx, &hits).await?;
    let mut revoked = HashMap::new();
    if args.revoke {
        if out.document.is_none() {
            print_lines(&hits, Some(&statuses), &revoked)?;
        }
        revoked = revoke_all(&cx, &hits, &statuses, args.yes).await?;
        cx.warn_unpublished();
        if out.document.is_some() {
            print_document(out, &hits, Some(&statuses), &revoked, &totals)?;
        }
    } else if out.document.is_some() {
        print_document(out, &hits, Some(&statuses), &revoked, &totals)?;
    } else {
        print_lines(&hits, Some(&statuses), &revoked)?;
    }
    finish(&hits, &totals)
}

/// Refuses what cannot work before anything is read: missing paths, and
/// `--revoke` without `--yes` when there is no terminal to ask on.
fn preflight(args: &ScanArgs) -> Result<(), Failure> {
    let reads_stdin = args.paths.iter().any(|p| p.as_os_str() == "-");
    if args.revoke && !args.yes && (reads_stdin || !io::stdin().is_terminal()) {
        return Err(Failure::new(
            BAD_INPUT,
            "--revoke without --yes needs a terminal on stdin to confirm (stdin is not a terminal, or it is scanned)",
        ));
    }
    match args.paths.iter().find(|p| p.as_os_str() != "-" && !p.exists()) {
        Some(p) => Err(Failure::new(BAD_INPUT, format!("{}: no such file or directory", p.display()))),
        None => Ok(()),
    }
}

/// `--check` and `--revoke` ask the store the keys were made in: a SQLite
/// database file that does not exist is a wrong URL or path (exit 2), and
/// nothing is created for it (no database, no pepper file).
fn refuse_missing_database(url: &str) -> Result<(), Failure> {
    match crate::context::sqlite_database(url)? {
        Some(db) if !crate::files::exists(&db) => Err(Failure::new(
            BAD_INPUT,
            format!(
                "no key database at {} (nothing was created): --check and --revoke ask the store the keys were \
                 made in; point --database-url or {} at it",
                db.display(),
                crate::env::DATABASE_URL_VAR
            ),
        )),
        _ => Ok(()),
    }
}

/// The exit status: 1 with keys, 2 with unreadable files and no keys, else 0.
fn finish(hits: &[Hit], totals: &Totals) -> Result<(), Failure> {
    if !hits.is_empty() {
        let files = hits.iter().map(|h| h.path.as_str()).collect::<std::collections::HashSet<_>>().len();
        return Err(Failure::new(OTHER, format!("{} key(s) found in {files} file(s)", hits.len())));
    }
    if !totals.unreadable.is_empty() {
        let n = totals.unreadable.len();
        return Err(Failure::new(BAD_INPUT, format!("no keys found, but {n} file(s) could not be read")));
    }
    eprintln!(
        "keyctl: no keys found ({} file(s), {} byte(s); {} skipped{})",
        totals.files_scanned,
        totals.bytes_scanned,
        totals.skipped.len(),
        if totals.skipped.is_empty() { "" } else { ", named above" }
    );
    Ok(())
}

/// Walks and scans every path in order.
fn walk_all(args: &ScanArgs, format: &TokenFormat, out: Output) -> (Vec<Hit>, Totals) {
    let mut hits = Vec::new();
    let mut totals = Totals::default();
    let progress = progress_bar();
    let warn = |totals: &mut Totals, shown: &str, why: String, unreadable: bool| {
        progress.suspend(|| eprintln!("keyctl: warning: {}: {why}", escaped(shown)));
        let list = if unreadable { &mut totals.unreadable } else { &mut totals.skipped };
        list.push(format!("{shown}: {why}"));
    };
    let note = |hits: &[Hit], totals: &Totals, shown: &str, before: usize| {
        if out.stream {
            progress.suspend(|| {
                if let Err(e) = print_lines(&hits[before..], None, &HashMap::new()) {
                    eprintln!("keyctl: {}", e.message());
                }
            });
        }
        progress.set_message(format!("{} file(s), {} key(s) — {}", totals.files_scanned, hits.len(), escaped(shown)));
    };
    let scan = |source: Source<'_>, shown: &str, hits: &mut Vec<Hit>, totals: &mut Totals| {
        let before = hits.len();
        if let Err(e) = scan_source(source, shown, format, hits, totals) {
            warn(totals, shown, e.to_string(), true);
        }
        note(hits, totals, shown, before);
    };
    for path in &args.paths {
        if path.as_os_str() == "-" {
            scan(Source::Stdin, "-", &mut hits, &mut totals);
            continue;
        }
        // Named on the command line: read whatever it is (followed if a
        // link), unless it is a folder.
        if !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            scan(Source::File(path), &path.display().to_string(), &mut hits, &mut totals);
            continue;
        }
        for entry in walker(path, args.all) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    progress.suspend(|| eprintln!("keyctl: warning: {}", escaped(&e.to_string())));
                    totals.unreadable.push(e.to_string());
                    continue;
                }
            };
            let shown = entry.path().display().to_string();
            match entry.file_type() {
                Some(t) if t.is_file() => scan(Source::File(entry.path()), &shown, &mut hits, &mut totals),
                Some(t) if t.is_dir() => {}
                Some(t) if t.is_symlink() => {
                    warn(
                        &mut totals,
                        &shown,
                        "skipped: a symbolic link (not followed; name it to scan it)".into(),
                        false,
                    );
                }
                _ => warn(&mut totals, &shown, "skipped: not a regular file (name it to read it)".into(), false),
            }
        }
    }
    progress.finish_and_clear();
    (hits, totals)
}

/// The walk of one path: ignore files respected unless `all`, dotfiles
/// included, `.git/` skipped, names sorted (stable output).
fn walker(path: &Path, all: bool) -> ignore::Walk {
    let mut b = ignore::WalkBuilder::new(path);
    b.standard_filters(!all)
        .hidden(false)
        .require_git(false)
        .sort_by_file_name(std::cmp::Ord::cmp)
        .filter_entry(|e| e.file_name() != ".git");
    b.build()
}

/// A spinner on stderr with the count so far, only when stderr is a
/// terminal.
fn progress_bar() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} scanning {msg:.dim} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

enum Source<'a> {
    Stdin,
    File(&'a Path),
}

/// Scans one file or stdin, every byte ([`text::Decoder`]: UTF-16 by its
/// byte-order mark).
fn scan_source(
    source: Source<'_>,
    shown: &str,
    format: &TokenFormat,
    hits: &mut Vec<Hit>,
    totals: &mut Totals,
) -> io::Result<()> {
    let mut reader: Box<dyn Read> = match source {
        Source::Stdin => Box::new(io::stdin().lock()),
        Source::File(p) => Box::new(std::fs::File::open(p)?),
    };
    let mut scanner = Scanner::new(format.clone());
    let mut sink = |finding| hits.push(Hit { path: shown.to_owned(), finding });
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut decoder = text::Decoder::default();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        totals.bytes_scanned += n as u64;
        decoder.push(&buf[..n], &mut |bytes| scanner.feed(bytes, &mut sink));
    }
    decoder.finish(&mut |bytes| scanner.feed(bytes, &mut sink));
    scanner.finish(&mut sink);
    totals.files_scanned += 1;
    totals.utf16_files += u64::from(decoder.is_utf16());
    Ok(())
}

/// Each distinct key once, [`CHECK_BATCH`] per store call: its status in
/// the store.
async fn check_all(cx: &Context, hits: &[Hit]) -> Result<HashMap<KeyId, Liveness>, Failure> {
    let manager = cx.manager()?;
    let mut seen = std::collections::HashSet::new();
    let mut tokens = Vec::new();
    for hit in hits {
        let id = *hit.finding.key_id();
        if !seen.insert(id) {
            continue;
        }
        let secret = hit.finding.secret().expose_secret().as_bytes();
        let token =
            Token::parse(secret, manager.token_format()).map_err(|e| Failure::new(OTHER, format!("key {id}: {e}")))?;
        tokens.push(token);
    }
    let mut statuses = HashMap::with_capacity(tokens.len());
    for batch in tokens.chunks(CHECK_BATCH) {
        let found = manager.leak_statuses(batch).await.map_err(|e| check_failure(&e))?;
        statuses.extend(batch.iter().map(|t| *t.id()).zip(found));
    }
    Ok(statuses)
}

/// Where a hit was found, as its leak entry records it: the absolute
/// `path:line:column` (`stdin:line:column` for `-`), never the secret.
fn place(hit: &Hit) -> LeakDetails {
    let (line, column) = (hit.finding.line(), hit.finding.column());
    let path = if hit.path == "-" {
        "stdin".to_owned()
    } else {
        std::path::absolute(&hit.path).map_or_else(|_| hit.path.clone(), |p| p.display().to_string())
    };
    LeakDetails::new(Some(&format!("{path}:{line}:{column}")), None, hit.finding.secret().expose_secret())
}

fn check_failure(e: &LeakCheckError) -> Failure {
    let code = match e {
        LeakCheckError::Store(_) => UNAVAILABLE,
        _ => BAD_INPUT,
    };
    Failure::new(code, chain(e))
}

/// Revokes every key of ours not yet revoked, after confirmation unless
/// `yes`, recording where it was found in its operations log in the same
/// commit; a key of ours already revoked gets the leak entries only (a place
/// already logged is not logged again). Returns which ids were revoked now.
async fn revoke_all(
    cx: &Context,
    hits: &[Hit],
    statuses: &HashMap<KeyId, Liveness>,
    yes: bool,
) -> Result<HashMap<KeyId, bool>, Failure> {
    let of = |wanted: fn(&Liveness) -> bool| {
        let mut ids: Vec<KeyId> = statuses.iter().filter(|(_, s)| wanted(s)).map(|(id, _)| *id).collect();
        ids.sort();
        ids
    };
    let targets = of(|s| matches!(s, Liveness::Active | Liveness::Expired));
    let already = of(|s| *s == Liveness::Revoked);
    if targets.is_empty() {
        eprintln!("keyctl: nothing to revoke (no found key is ours and unrevoked)");
    } else if !yes && !confirm(targets.len())? {
        eprintln!("keyctl: nothing revoked");
        return Ok(HashMap::new());
    }
    let manager = cx.manager()?;
    let mut revoked = HashMap::new();
    for (id, revoke) in targets.iter().map(|id| (id, true)).chain(already.iter().map(|id| (id, false))) {
        let places: Vec<LeakDetails> = hits.iter().filter(|h| h.finding.key_id() == id).map(place).collect();
        let done = manager.record_leak(id, &places, revoke).await.map_err(|e| revoke_failure(*id, &e))?;
        let n = done.entries.len();
        let entries = format!("{n} leak entr{} recorded (keyctl operations {id})", if n == 1 { "y" } else { "ies" });
        if revoke {
            eprintln!("keyctl: key {id} revoked; {entries}");
            revoked.insert(*id, true);
        } else if n > 0 {
            eprintln!("keyctl: key {id} was already revoked; {entries}");
        }
    }
    Ok(revoked)
}

fn revoke_failure(id: KeyId, e: &ManageError) -> Failure {
    let code = if matches!(e, ManageError::NotFound(_)) { crate::failure::NOT_FOUND } else { UNAVAILABLE };
    Failure::new(code, format!("revoking {id}: {}", chain(e)))
}

/// Asks on the terminal; only `y` or `yes` confirms.
fn confirm(n: usize) -> Result<bool, Failure> {
    eprint!("keyctl: revoke {n} key(s)? They stop working at once. [y/N] ");
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(OTHER, format!("cannot read stdin: {e}")))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// `path:line:column  key-id  masked[  status]`, one line per key.
fn print_lines(
    hits: &[Hit],
    statuses: Option<&HashMap<KeyId, Liveness>>,
    revoked: &HashMap<KeyId, bool>,
) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    for h in hits {
        let f = &h.finding;
        let mut line = format!("{}:{}:{}  {}  {}", escaped(&h.path), f.line(), f.column(), f.key_id(), f.masked());
        if let Some(s) = statuses.and_then(|m| m.get(f.key_id())) {
            line.push_str("  ");
            line.push_str(s.as_str());
        }
        if revoked.contains_key(f.key_id()) {
            line.push_str("  revoked-now");
        }
        line.push('\n');
        out.write_all(line.as_bytes()).map_err(write_failure)?;
    }
    out.flush().map_err(write_failure)
}

fn print_document(
    out: Output,
    hits: &[Hit],
    statuses: Option<&HashMap<KeyId, Liveness>>,
    revoked: &HashMap<KeyId, bool>,
    totals: &Totals,
) -> Result<(), Failure> {
    let findings = hits
        .iter()
        .map(|h| Row {
            path: &h.path,
            line: h.finding.line(),
            column: h.finding.column(),
            key_id: h.finding.key_id(),
            masked: h.finding.masked().to_string(),
            status: statuses.and_then(|m| m.get(h.finding.key_id()).copied()),
            revoked_now: revoked.contains_key(h.finding.key_id()),
        })
        .collect();
    let report = Report { findings, totals };
    let text = match out.document {
        Some(Format::Yaml) => serde_norway::to_string(&report).map_err(|e| e.to_string()),
        _ => serde_json::to_string_pretty(&report).map(|s| s + "\n").map_err(|e| e.to_string()),
    }
    .map_err(|e| Failure::new(OTHER, format!("cannot format the output: {e}")))?;
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(write_failure)
}

fn write_failure(e: io::Error) -> Failure {
    Failure::new(OTHER, format!("cannot write the output: {e}"))
}
