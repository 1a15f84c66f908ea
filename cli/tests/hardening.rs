//! Regression tests for the adversarial review (issue 17) that need real
//! processes and real files: planted SQLite files, the WAL checkpoint, the
//! pepper fingerprint, misspelt URL parameters, and read-only commands on a
//! database that does not exist.
//!
//! The planted-file tests play "another user" with uid 65534 (nobody), so
//! they run as root, as this project's machines and CI do; as another user
//! they skip, saying so.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{DropSchema, Keyctl, Server, created, postgres_url, random_pepper, redis_url, unique, with_param};

const NOBODY: u32 = 65_534;

fn chown_to_nobody(path: &Path) -> bool {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED: planting files owned by another user needs root");
        return false;
    }
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    true
}

fn create_in(k: &Keyctl, url: &str) -> (String, String) {
    let run = k.keyctl(&[
        "--database-url",
        url,
        "create",
        "--service-account-id",
        "victim",
        "--create-service-account",
        "--format",
        "json",
    ]);
    created(run.ok())
}

/// Finding 1, first variant: another user plants a pepper file of their own
/// (0600, their pepper) and an empty world-writable database in a shared
/// directory. keyctl refuses both instead of creating keys under the
/// attacker's pepper.
#[test]
fn a_planted_pepper_file_and_database_are_refused() {
    let k = Keyctl::new();
    let shared = k.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let db = shared.join("keys.db");
    let pepper = shared.join("keys.db.pepper");
    std::fs::write(&pepper, format!("{}\n", random_pepper())).unwrap();
    std::fs::set_permissions(&pepper, std::fs::Permissions::from_mode(0o600)).unwrap();
    if !chown_to_nobody(&pepper) {
        return;
    }
    let url = format!("sqlite://{}", db.display());
    let run =
        k.keyctl(&["--database-url", &url, "create", "--service-account-id", "victim", "--create-service-account"]);
    run.expect(2);
    assert!(run.stderr.contains("keys.db.pepper") && run.stderr.contains("owned by uid 65534"), "{}", run.stderr);
    assert!(run.stderr.contains("writable by every user"), "the shared directory is warned about: {}", run.stderr);
    assert!(!db.exists(), "nothing was created");

    // The attacker's pepper file as a symbolic link to a file of ours is
    // refused too (never followed).
    std::fs::remove_file(&pepper).unwrap();
    let ours = k.path("ours.pepper");
    std::fs::write(&ours, format!("{}\n", random_pepper())).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&ours, &pepper).unwrap();
    let run =
        k.keyctl(&["--database-url", &url, "create", "--service-account-id", "victim", "--create-service-account"]);
    run.expect(2);
    assert!(run.stderr.contains("is a symbolic link"), "{}", run.stderr);
    std::fs::remove_file(&pepper).unwrap();

    // An empty, world-writable database of someone else's: refused.
    std::fs::write(&db, "").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    chown_to_nobody(&db);
    let run =
        k.keyctl(&["--database-url", &url, "create", "--service-account-id", "victim", "--create-service-account"]);
    run.expect(2);
    assert!(run.stderr.contains("keys.db") && run.stderr.contains("owned by uid 65534"), "{}", run.stderr);
    assert!(!pepper.exists(), "no pepper file was made for a planted database");
}

/// Finding 1, second variant: only an empty world-writable database is
/// planted. It is not "new" (an existing file never is), and a database
/// writable by others is refused even when the owner is us.
#[test]
fn an_existing_empty_or_writable_database_is_never_new() {
    let k = Keyctl::new();
    let db = k.path("keys.db");
    let url = format!("sqlite://{}", db.display());
    std::fs::write(&db, "").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run =
        k.keyctl(&["--database-url", &url, "create", "--service-account-id", "victim", "--create-service-account"]);
    run.expect(2);
    assert!(run.stderr.contains("exists but its pepper file"), "{}", run.stderr);

    std::fs::remove_file(&db).unwrap();
    let (id, _) = create_in(&k, &url);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = k.keyctl(&["--database-url", &url, "revoke", &id]);
    run.expect(2);
    assert!(run.stderr.contains("writable by group or others"), "{}", run.stderr);
}

/// New files are owner-only: the database, its WAL and shared-memory files,
/// and the pepper file.
#[test]
fn new_files_are_private() {
    let k = Keyctl::new();
    let (id, _) = create_in(&k, "sqlite://api-keys.db");
    assert_eq!(std::fs::metadata(k.path("api-keys.db")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(k.path("api-keys.db.pepper")).unwrap().mode() & 0o777, 0o600);
    // While a server holds the database open, SQLite keeps -wal and -shm;
    // they get the database's mode.
    let node = Server::start(&k, "sqlite://api-keys.db", &[]);
    k.keyctl(&["--database-url", "sqlite://api-keys.db", "revoke", &id]).ok();
    for name in ["api-keys.db-wal", "api-keys.db-shm"] {
        let meta = std::fs::metadata(k.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(meta.mode() & 0o777, 0o600, "{name}");
    }
    drop(node);
}

/// Finding 3: a revocation reaches the database file itself before keyctl
/// exits, so a copy of the file and its pepper (a backup) shows it.
#[test]
fn a_revocation_is_in_the_database_file_when_keyctl_exits() {
    let k = Keyctl::new();
    let (id, secret) = create_in(&k, "sqlite://api-keys.db");
    k.keyctl(&["--database-url", "sqlite://api-keys.db", "revoke", &id]).ok();
    assert!(!k.path("api-keys.db-wal").exists(), "the write-ahead log was checkpointed and removed");

    let copy = Keyctl::new();
    std::fs::copy(k.path("api-keys.db"), copy.path("api-keys.db")).unwrap();
    std::fs::copy(k.path("api-keys.db.pepper"), copy.path("api-keys.db.pepper")).unwrap();
    let got = copy.keyctl(&["get", &id, "--format", "json"]);
    assert_eq!(got.ok().value()["status"], "revoked");
    copy.verify(&secret, &[]).expect(1);
}

/// Finding 4: a different pepper under a version the store has seen is
/// refused at start (exit 2), for the commands and for `serve`, and nothing
/// is written under it.
#[test]
fn a_wrong_pepper_is_refused_at_start() {
    let right = random_pepper();
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", right.clone());
    let (id, secret) = create_in(&k, "sqlite://api-keys.db");
    let wrong = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    std::fs::copy(k.path("api-keys.db"), wrong.path("api-keys.db")).unwrap();
    for args in [
        vec!["create", "--service-account-id", "victim", "--create-service-account"],
        vec!["get", &id],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let run = wrong.keyctl(&args);
        run.expect(2);
        assert!(run.stderr.contains("pepper version 1 is not the pepper"), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains(&right), "the pepper is never printed");
    }
    let run = wrong.verify(&secret, &[]);
    run.expect(2);
    // A new version (a rotation) is recorded and then pinned as well.
    let v2 = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_PEPPER_VERSION", "2");
    std::fs::copy(k.path("api-keys.db"), v2.path("api-keys.db")).unwrap();
    v2.keyctl(&["get", &id]).ok();
    std::fs::copy(v2.path("api-keys.db"), wrong.path("api-keys.db")).unwrap();
    let wrong2 = wrong.with_var("API_KEYS_PEPPER_VERSION", "2");
    wrong2.keyctl(&["get", &id]).expect(2);
}

/// Finding 10: a misspelt or percent-encoded namespace parameter is refused
/// (exit 2) instead of putting a tenant into the shared default namespace.
#[test]
fn misspelt_namespace_parameters_are_refused() {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let schema = unique("t_a");
    let pg = postgres_url();
    let _cleanup = DropSchema { url: pg.clone(), schema: schema.clone() };
    for (url, name) in [
        (with_param(&pg, "Schema", &schema), "Schema"),
        (with_param(&pg, "schema_", &schema), "schema_"),
        (with_param(&redis_url(), "Prefix", "tenant_a"), "Prefix"),
        (with_param(&redis_url(), "pre%66ix_", "tenant_a"), "prefix_"),
    ] {
        let run =
            k.keyctl(&["--database-url", &url, "create", "--service-account-id", "sa", "--create-service-account"]);
        run.expect(2);
        assert!(run.stderr.contains(&format!("unknown query parameter `{name}`")), "{url}: {}", run.stderr);
    }
    // Spelt right (here percent-encoded), the parameter is read.
    let url = with_param(&pg, "sch%65ma", &schema);
    create_in(&k, &url);
    let listed = k.keyctl(&[
        "--database-url",
        &with_param(&pg, "schema", &schema),
        "list",
        "--service-account-id",
        "victim",
        "--format",
        "json",
    ]);
    assert_eq!(listed.ok().value()["api_keys"].as_array().map(Vec::len), Some(1), "{}", listed.stdout);
}

/// Read-only commands in an empty directory say there is nothing and create
/// neither a database nor a pepper file.
#[test]
fn read_only_commands_create_nothing() {
    let k = Keyctl::new();
    let list = k.keyctl(&["list", "--service-account-id", "sa"]);
    assert!(list.ok().stderr.contains("no key database at"), "{}", list.stderr);
    let id = "aaaaaaaaaaaaaaaaaaaa";
    k.keyctl(&["get", id]).expect(3);
    k.keyctl(&["revoke", id]).expect(3);
    k.keyctl(&["delete", id]).expect(3);
    k.verify("ak_whatever", &[]).expect(1);
    assert_eq!(std::fs::read_dir(k.dir.path()).unwrap().count(), 0, "nothing was created");
    // The first create makes both.
    create_in(&k, "sqlite://api-keys.db?mode=rwc");
    assert!(k.path("api-keys.db").exists() && k.path("api-keys.db.pepper").exists());
}

/// Finding 5 at the service: `keyctl serve` looks unprefixed values up as
/// imported keys only with `API_KEYS_ACCEPT_IMPORTED=on`.
#[test]
fn serve_accepts_imported_keys_only_when_told_to() {
    let k = Keyctl::new();
    create_in(&k, "sqlite://api-keys.db");
    let legacy = "AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    k.run(&["import", "--service-account-id", "legacy", "--create-service-account"], Some(legacy)).ok();
    let off = Server::start(&k, "sqlite://api-keys.db", &[]);
    assert_eq!(off.authorize(Some(legacy), None).status, 401);
    drop(off);
    let on = Server::start(&k, "sqlite://api-keys.db", &[("API_KEYS_ACCEPT_IMPORTED", "on")]);
    assert_eq!(on.authorize(Some(legacy), None).status, 200);
    drop(on);
    let bad = Keyctl::new().with_var("API_KEYS_ACCEPT_IMPORTED", "maybe");
    let run = bad.keyctl(&["serve", "--listen", "127.0.0.1:0"]);
    run.expect(2);
    assert!(run.stderr.contains("API_KEYS_ACCEPT_IMPORTED must be on or off"), "{}", run.stderr);
}
