//! `keyctl scan` end to end: the real binary over a generated tree with real
//! keys (live, revoked, unknown), near-misses, keys split across lines,
//! binary noise, a `.gitignore`d file and a file larger than the read chunk
//! with a key straddling a chunk boundary; then what a walk used to miss:
//! pipes, `/dev/stdin`, NUL bytes, UTF-16, symbolic links, and names that
//! would forge output lines.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use api_keys::TokenFormat;
use common::*;

struct Tree {
    k: Keyctl,
    live: (String, String),
    revoked: (String, String),
    stranger: String,
    /// `path:line:column  id  masked` lines expected without `--all`.
    expected: BTreeSet<String>,
    /// The line only `--all` adds.
    ignored_line: String,
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn line(path: &str, l: usize, c: usize, id: &str, secret: &str) -> String {
    format!("{path}:{l}:{c}  {id}  {}", masked(secret))
}

fn one_char_changed(secret: &str, at: usize) -> String {
    let mut b = secret.as_bytes().to_vec();
    b[at] = if b[at] == b'x' { b'y' } else { b'x' };
    String::from_utf8(b).unwrap()
}

fn id_of(secret: &str) -> &str {
    &secret[3..23]
}

/// Two keys in a SQLite database (one revoked), one key that is not in it,
/// and a tree mixing them with everything that must not match.
fn tree() -> Tree {
    let k = Keyctl::new();
    let live = created(k.keyctl(&["create", "--service-account-id", "robot", "--create-service-account"]).ok());
    let revoked = created(k.keyctl(&["create", "--service-account-id", "robot", "--create-service-account"]).ok());
    k.keyctl(&["revoke", &revoked.0]).ok();
    let stranger = TokenFormat::default().generate().unwrap().secret.expose_secret().to_owned();
    let other_prefix = TokenFormat::new("zz_").unwrap().generate().unwrap().secret.expose_secret().to_owned();
    let root = k.path("tree");
    let (a, b) = (&live.1, &revoked.1);

    write(&root, ".gitignore", b"ignored/\n*.tmp\n");
    write(&root, "config/.env", format!("API_KEY={a}\n").as_bytes());
    let app = format!(
        "import os\n\
         # near misses: one character changed, wrong checksum, wrong prefix, glued\n\
         A = \"{}\"\n\
         B = \"{}\"\n\
         C = \"{other_prefix}\"\n\
         D = \"x{a}\"\n\
         E = \"{a}_\"\n\
         # split across lines\n\
         F = \"{}\n{}\"\n\
         G = \"{}\\\r\n{}\"\n\
         token = \"{b}\"  # revoked\n",
        one_char_changed(a, 40),
        one_char_changed(a, a.len() - 1),
        &a[..30],
        &a[30..],
        &b[..50],
        &b[50..],
    );
    write(&root, "src/app.py", app.as_bytes());
    write(&root, "notes.md", format!("# Notes\n    {stranger} was posted here\n").as_bytes());
    write(&root, "ignored/secret.txt", format!("{a}\n").as_bytes());
    write(&root, "scratch.tmp", format!("{a}\n").as_bytes());
    let mut blob: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    blob[100] = 0;
    blob.push(b'\n');
    let blob_line = blob.iter().filter(|&&c| c == b'\n').count() + 1;
    blob.extend_from_slice(a.as_bytes());
    write(&root, "blob.bin", &blob);
    // 3 MiB of log lines, a key straddling the 64 KiB read boundary, another at the end.
    let mut big = Vec::new();
    let filler = b"2026-12-01T09:30:00Z INFO request served in 3ms path=/v1/things\n";
    while big.len() + filler.len() < 65_536 - 30 {
        big.extend_from_slice(filler);
    }
    let pad = 65_536 - 30 - big.len();
    big.extend(std::iter::repeat_n(b' ', pad));
    let big_line1 = big.iter().filter(|&&c| c == b'\n').count() + 1;
    let big_col1 = pad + 1;
    big.extend_from_slice(b.as_bytes());
    big.push(b'\n');
    while big.len() < 3 * 1024 * 1024 {
        big.extend_from_slice(filler);
    }
    let big_line2 = big.iter().filter(|&&c| c == b'\n').count() + 1;
    big.extend_from_slice(format!("key={a}").as_bytes());
    write(&root, "logs/big.log", &big);

    let expected = BTreeSet::from([
        // Binaries are scanned too: the checksum keeps noise from matching.
        line("tree/blob.bin", blob_line, 1, &live.0, a),
        line("tree/config/.env", 1, 9, &live.0, a),
        line("tree/logs/big.log", big_line1, big_col1, &revoked.0, b),
        line("tree/logs/big.log", big_line2, 5, &live.0, a),
        line("tree/notes.md", 2, 5, id_of(&stranger), &stranger),
        line("tree/src/app.py", 13, 10, &revoked.0, b),
    ]);
    let ignored_line = line("tree/ignored/secret.txt", 1, 1, &live.0, a);
    Tree { k, live, revoked, stranger, expected, ignored_line }
}

fn lines(run: &Run) -> BTreeSet<String> {
    run.stdout.lines().map(str::to_owned).collect()
}

#[track_caller]
fn no_secret_printed(t: &Tree) {
    assert!(t.k.runs.borrow().iter().filter(|r| r.args.starts_with("scan")).count() >= 2);
    for secret in [&t.live.1, &t.revoked.1, &t.stranger] {
        let shown: Vec<_> = t.k.runs_showing(&secret[23..67]).into_iter().filter(|a| a.starts_with("scan")).collect();
        assert_eq!(shown, Vec::<String>::new(), "a scan printed a secret");
    }
}

#[test]
fn finds_exactly_the_real_keys_and_nothing_else() {
    let t = tree();
    let run = t.k.keyctl(&["scan", "tree"]);
    run.expect(1);
    assert_eq!(lines(&run), t.expected, "stderr: {}", run.stderr);
    assert!(run.stderr.contains("6 key(s) found in 5 file(s)"), "{}", run.stderr);

    // --all adds the .gitignored files (the directory and the pattern).
    let all = t.k.keyctl(&["scan", "--all", "tree"]);
    all.expect(1);
    let mut expected = t.expected.clone();
    expected.insert(t.ignored_line.clone());
    expected.insert(line("tree/scratch.tmp", 1, 1, &t.live.0, &t.live.1));
    assert_eq!(lines(&all), expected);

    // A file named directly, and stdin.
    let file = t.k.keyctl(&["scan", "tree/notes.md"]);
    assert_eq!(lines(file.expect(1)), BTreeSet::from([line("tree/notes.md", 2, 5, id_of(&t.stranger), &t.stranger)]));
    let stdin = t.k.run(&["scan", "-"], Some(&format!("x\n\tkey: {}\n", t.live.1)));
    assert_eq!(lines(stdin.expect(1)), BTreeSet::from([line("-", 2, 7, &t.live.0, &t.live.1)]));
    no_secret_printed(&t);
}

#[test]
fn json_with_check_reports_each_keys_status() {
    let t = tree();
    let run = t.k.keyctl(&["scan", "--check", "--format", "json", "tree"]);
    let v = run.expect(1).value();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 6);
    let status = |id: &str| -> BTreeSet<String> {
        findings.iter().filter(|f| f["key_id"] == id).map(|f| f["status"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(status(&t.live.0), BTreeSet::from(["active".to_owned()]));
    assert_eq!(status(&t.revoked.0), BTreeSet::from(["revoked".to_owned()]));
    assert_eq!(status(id_of(&t.stranger)), BTreeSet::from(["unknown".to_owned()]));
    let env = findings.iter().find(|f| f["path"] == "tree/config/.env").unwrap();
    assert_eq!((env["line"].as_u64(), env["column"].as_u64()), (Some(1), Some(9)));
    assert_eq!(env["masked"], masked(&t.live.1));
    assert_eq!(v["skipped"], serde_json::json!([]));
    assert_eq!(v["files_scanned"], 6, "{v}");
    assert_eq!(v["unreadable"], serde_json::json!([]));

    // Text lines gain the status.
    let text = t.k.keyctl(&["scan", "--check", "tree/config"]);
    assert_eq!(text.expect(1).stdout, format!("{}  active\n", line("tree/config/.env", 1, 9, &t.live.0, &t.live.1)));
    no_secret_printed(&t);
}

#[test]
fn revoke_refuses_without_yes_off_a_terminal_then_revokes_with_it() {
    let t = tree();
    let refused = t.k.keyctl(&["scan", "--revoke", "tree"]);
    refused.expect(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(refused.stdout.is_empty());
    let still = t.k.keyctl(&["get", &t.live.0, "--format", "json"]);
    assert_eq!(still.ok().value()["status"], "active");

    let run = t.k.keyctl(&["scan", "--revoke", "--yes", "tree"]);
    run.expect(1);
    assert!(run.stdout.contains(&format!("{}  active", line("tree/config/.env", 1, 9, &t.live.0, &t.live.1))));
    assert!(run.stderr.contains(&format!("key {} revoked", t.live.0)), "{}", run.stderr);
    assert!(!run.stderr.contains(&format!("key {} revoked", t.revoked.0)), "already revoked: untouched");
    let after = t.k.keyctl(&["get", &t.live.0, "--format", "json"]);
    assert_eq!(after.ok().value()["status"], "revoked");

    // The leak is in each key's history: one entry per place found, in the
    // revocation's commit (newest first: the places, then the revoke), the
    // absolute path:line:column as the source, never the secret.
    let root = t.k.dir.path().canonicalize().unwrap().join("tree");
    let sources = |id: &str| -> Vec<(String, String)> {
        let log = t.k.keyctl(&["operations", id, "--format", "json"]);
        log.ok().value()["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let source = o["changes"]["leak"]["source"].as_str().unwrap_or("").to_owned();
                (o["kind"].as_str().unwrap().to_owned(), source)
            })
            .collect()
    };
    let at = |rel: &str, l: usize, c: usize| format!("{}:{l}:{c}", root.join(rel).display());
    let big = t.expected.iter().find(|l| l.starts_with("tree/logs/big.log") && l.contains(&t.live.0)).unwrap();
    let big_line: usize = big.split(':').nth(1).unwrap().parse().unwrap();
    let blob = t.expected.iter().find(|l| l.starts_with("tree/blob.bin")).unwrap();
    let blob_line: usize = blob.split(':').nth(1).unwrap().parse().unwrap();
    assert_eq!(
        sources(&t.live.0),
        [
            ("leak".to_owned(), at("logs/big.log", big_line, 5)),
            ("leak".to_owned(), at("config/.env", 1, 9)),
            ("leak".to_owned(), at("blob.bin", blob_line, 1)),
            ("revoke".to_owned(), String::new()),
            ("create".to_owned(), String::new()),
        ]
    );
    // The key revoked before the scan: the leak entries only.
    let revoked = sources(&t.revoked.0);
    let kinds: Vec<&str> = revoked.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["leak", "leak", "revoke", "create"]);
    assert_eq!(revoked[0].1, at("src/app.py", 13, 10));
    assert!(revoked[1].1.starts_with(&format!("{}:", root.join("logs/big.log").display())), "{revoked:?}");
    let table = t.k.keyctl(&["operations", &t.live.0]);
    assert!(table.ok().stdout.contains("leak"), "{}", table.stdout);
    assert!(table.stdout.contains("config/.env:1:9"), "{}", table.stdout);

    // Again: every key of ours is revoked now; nothing to do, still exit 1,
    // and nothing more in the history.
    let again = t.k.keyctl(&["scan", "--revoke", "--yes", "--format", "json", "tree"]);
    let v = again.expect(1).value();
    assert!(v["findings"].as_array().unwrap().iter().all(|f| f.get("revoked_now").is_none()));
    assert!(again.stderr.contains("nothing to revoke"), "{}", again.stderr);
    assert_eq!(sources(&t.live.0).len(), 5, "a second scan logs nothing");
    assert_eq!(sources(&t.revoked.0).len(), 4, "a second scan logs nothing");
    no_secret_printed(&t);
    for secret in [&t.live.1, &t.revoked.1] {
        let shown: Vec<String> =
            t.k.runs_showing(&secret[23..67]).into_iter().filter(|a| !a.starts_with("create")).collect();
        assert_eq!(shown, Vec::<String>::new(), "only create prints a secret (operations never)");
    }
}

#[test]
fn check_and_revoke_on_a_missing_sqlite_database_create_nothing() {
    let k = Keyctl::new();
    write(
        &k.path("tree"),
        "a.env",
        format!("KEY={}\n", TokenFormat::default().generate().unwrap().secret.expose_secret()).as_bytes(),
    );
    let before: BTreeSet<_> = std::fs::read_dir(k.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    for url in ["sqlite://missing.db", "sqlite:sub/missing.db?mode=rwc", "sqlite://api-keys.db?mode=rwc"] {
        for flags in [&["--check"][..], &["--revoke", "--yes"]] {
            let mut args = vec!["--database-url", url, "scan"];
            args.extend_from_slice(flags);
            args.push("tree");
            let run = k.keyctl(&args);
            run.expect(2);
            assert!(run.stderr.contains("no key database at"), "{url} {flags:?}: {}", run.stderr);
            assert!(run.stderr.contains("nothing was created"), "{}", run.stderr);
            assert!(run.stdout.is_empty(), "{}", run.stdout);
        }
    }
    // The default URL (api-keys.db in the working directory) too.
    k.keyctl(&["scan", "--check", "tree"]).expect(2);
    let after: BTreeSet<_> = std::fs::read_dir(k.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(after, before, "no database, pepper file or directory was created");
    // Without --check the store is never opened: keys are found, exit 1.
    k.keyctl(&["--database-url", "sqlite://missing.db", "scan", "tree"]).expect(1);
}

#[test]
fn exit_codes_for_nothing_found_and_bad_input() {
    let t = tree();
    write(&t.k.path("clean"), "a.txt", b"nothing to see\nak_short_one\n");
    let clean = t.k.keyctl(&["scan", "clean"]);
    assert_eq!(clean.ok().stdout, "");
    assert!(clean.stderr.contains("no keys found (1 file(s)"), "{}", clean.stderr);
    let json = t.k.keyctl(&["scan", "--format", "json", "clean"]);
    assert_eq!(json.ok().value()["findings"], serde_json::json!([]));
    let yaml = t.k.keyctl(&["scan", "--format", "yaml", "tree/config"]);
    assert!(yaml.stdout.starts_with("findings:\n"), "{}", yaml.stdout);
    assert_eq!(yaml.expect(1).value()["findings"][0]["key_id"], t.live.0.as_str());
    let table = t.k.keyctl(&["scan", "--format", "table", "tree/config"]);
    assert_eq!(lines(table.expect(1)), BTreeSet::from([line("tree/config/.env", 1, 9, &t.live.0, &t.live.1)]));

    let missing = t.k.keyctl(&["scan", "clean", "no-such-dir"]);
    missing.expect(2);
    assert!(missing.stderr.contains("no-such-dir: no such file or directory"), "{}", missing.stderr);
    assert!(missing.stdout.is_empty(), "nothing scanned before the refusal");
    t.k.keyctl(&["scan"]).expect(2);
    t.k.keyctl(&["scan", "--yes", "clean"]).expect(2);
    t.k.keyctl(&["scan", "--revoke", "-"]).expect(2);
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_reported_and_is_bad_input_when_nothing_is_found() {
    use std::os::unix::fs::PermissionsExt;
    let t = tree();
    write(&t.k.path("locked"), "a.txt", b"hello\n");
    let p = t.k.path("locked/a.txt");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&p).is_ok() {
        return; // running as root: permissions do not stop reads
    }
    let run = t.k.keyctl(&["scan", "locked"]);
    run.expect(2);
    assert!(run.stderr.contains("locked/a.txt"), "{}", run.stderr);
}

/// Runs `keyctl scan ARGS` through bash in `k`'s directory (for `<(…)`).
fn scan_in_bash(k: &Keyctl, args: &str) -> Run {
    let out = std::process::Command::new("bash")
        .current_dir(k.dir.path())
        .args(["-c", &format!("exec {KEYCTL} scan {args}")])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Run {
        args: format!("scan {args}"),
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut bytes = if big_endian { vec![0xFE, 0xFF] } else { vec![0xFF, 0xFE] };
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&if big_endian { u.to_be_bytes() } else { u.to_le_bytes() });
    }
    bytes
}

/// Issue 25 finding 9: each of these said "no keys found" (exit 0) with a
/// key there — a process substitution and `/dev/stdin` (not regular files),
/// a NUL in the first 8 KiB, UTF-16, a symbolic link — and a file name
/// printed raw could forge a finding line or drive the terminal.
#[test]
fn what_a_scan_used_to_miss_is_found_or_reported() {
    let k = Keyctl::new();
    let key = TokenFormat::default().generate().unwrap().secret.expose_secret().to_owned();
    let id = id_of(&key).to_owned();
    let found = |path: &str, l: usize, c: usize| line(path, l, c, &id, &key);

    // A pipe named on the command line, and /dev/stdin.
    let piped = scan_in_bash(&k, &format!("<(printf 'x\\n  %s\\n' {key})"));
    piped.expect(1);
    assert!(piped.stdout.ends_with(&format!(":2:3  {id}  {}\n", masked(&key))), "{piped:?}");
    assert!(piped.stdout.starts_with("/dev/fd/"), "{piped:?}");
    let stdin = k.run(&["scan", "/dev/stdin"], Some(&format!("{key}\n")));
    assert_eq!(lines(stdin.expect(1)), BTreeSet::from([found("/dev/stdin", 1, 1)]));

    // NUL bytes, UTF-16 both ways, a symbolic link to a file outside the tree.
    let root = k.path("t");
    write(&root, "nul.txt", format!("\0\0header\0\nkey={key}\n").as_bytes());
    write(&root, "utf16le.txt", &utf16(&format!("token: {key}\r\n"), false));
    write(&root, "utf16be.ps1", &utf16(&format!("$k = \"{key}\"\n"), true));
    write(&k.path("outside"), "real.env", format!("KEY={key}\n").as_bytes());
    std::os::unix::fs::symlink(k.path("outside/real.env"), root.join("link.env")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(root.join("queue")).status().unwrap().success());
    let run = k.keyctl(&["scan", "t"]);
    run.expect(1);
    assert_eq!(
        lines(&run),
        BTreeSet::from([found("t/nul.txt", 2, 5), found("t/utf16be.ps1", 1, 7), found("t/utf16le.txt", 1, 8)]),
        "{}",
        run.stderr
    );
    // What the walk did not read is named, not silently dropped (a pipe
    // inside a folder is not read: it could block the scan forever).
    assert!(run.stderr.contains("t/link.env: skipped: a symbolic link"), "{}", run.stderr);
    assert!(run.stderr.contains("t/queue: skipped: not a regular file"), "{}", run.stderr);
    let json = k.keyctl(&["scan", "--format", "json", "t"]).value();
    assert_eq!(json["skipped"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["utf16_files"], 2, "{json}");
    // A link named on the command line is followed.
    let link = k.keyctl(&["scan", "t/link.env"]);
    assert_eq!(lines(link.expect(1)), BTreeSet::from([found("t/link.env", 1, 5)]));
    // With nothing found, the summary counts what was skipped.
    std::fs::remove_file(root.join("nul.txt")).unwrap();
    std::fs::remove_file(root.join("utf16le.txt")).unwrap();
    std::fs::remove_file(root.join("utf16be.ps1")).unwrap();
    let clean = k.keyctl(&["scan", "t"]);
    assert!(
        clean.ok().stderr.contains("no keys found (0 file(s), 0 byte(s); 2 skipped, named above)"),
        "{}",
        clean.stderr
    );

    // Names are printed with control and bidirectional characters escaped:
    // one finding is one line, and no escape sequence reaches the terminal.
    let forged = format!("evil\n{}:1:1  {id}  {}\n", "x.env", masked(&key));
    let names = [forged.as_str(), "\u{1b}]0;pwned\u{7}\u{1b}[2J.env", "invoice\u{202e}fdp.exe"];
    let dir = k.path("names");
    for n in names {
        write(&dir, n, format!("{key}\n").as_bytes());
    }
    let run = k.keyctl(&["scan", "names"]);
    run.expect(1);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    assert!(!run.stdout.contains(['\u{1b}', '\u{7}', '\u{202e}']), "{:?}", run.stdout);
    assert!(
        run.stdout.contains(&format!("names/evil\\nx.env:1:1  {id}  {}\\n:1:1  {id}", masked(&key))),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("names/\\u{1b}]0;pwned\\u{7}\\u{1b}[2J.env:1:1"), "{}", run.stdout);
    assert!(run.stdout.contains("names/invoice\\u{202e}fdp.exe:1:1"), "{}", run.stdout);
    // JSON carries the name as it is (escaped by JSON itself).
    let v = k.keyctl(&["scan", "--format", "json", "names"]).value();
    let paths: BTreeSet<String> =
        v["findings"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect();
    assert_eq!(paths, names.iter().map(|n| format!("names/{n}")).collect());
}
