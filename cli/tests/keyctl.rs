//! `keyctl` end to end: the binary run as a process in a temporary
//! directory, the way an operator runs it (harness in `common/`).
//!
//! SQLite runs use the default URL (`api-keys.db` in the working directory)
//! and its pepper file; the PostgreSQL and Redis runs work in a fresh schema
//! or key prefix.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::cell::RefCell;
use std::net::{Ipv4Addr, TcpListener};

use common::*;

#[test]
fn sqlite_lifecycle_with_the_default_database() {
    let k = Keyctl::new();
    let create = k.keyctl(&[
        "create",
        "--service-account-id",
        "my-robot",
        "--create-service-account",
        "--description",
        "this API-key is for my-robot",
        "--scopes",
        "yc.monitoring.read,yc.postbox.send",
        "--expires-at",
        "2030-01-01T00:00:00Z",
    ]);
    create.ok();
    let (id, secret) = created(&create);
    let v = create.value();
    assert_eq!(v["api_key"]["service_account_id"], "my-robot");
    assert_eq!(v["api_key"]["scopes"], serde_json::json!(["yc.monitoring.read", "yc.postbox.send"]));
    assert_eq!(v["api_key"]["expires_at"], "2030-01-01T00:00:00Z");
    assert!(create.stdout.starts_with("api_key:\n  id: "), "{}", create.stdout);
    assert!(k.path("api-keys.db").exists());

    // The table: masked key and status, never the secret.
    let list = k.keyctl(&["list", "--service-account-id", "my-robot"]);
    list.ok();
    for header in ["ID", "CREATED AT", "LAST USED AT", "SCOPES", "EXPIRES AT", "MASKED KEY", "STATUS"] {
        assert!(list.stdout.contains(&format!(" {header} ")), "{header}: {}", list.stdout);
    }
    let cells = row(&list.stdout, &id);
    assert_eq!(cells[0], id);
    assert_eq!(cells[2], "", "never used");
    assert_eq!(cells[3], "yc.monitoring.read,yc.postbox.send");
    assert_eq!(cells[4..], ["2030-01-01 00:00:00", &masked(&secret), "active"]);
    assert!(list.stdout.starts_with("+-") && list.stdout.lines().count() == 5, "{}", list.stdout);

    let json = k.keyctl(&["list", "--service-account-id", "my-robot", "--format", "json"]);
    let keys = json.ok().value()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["masked_key"], masked(&secret));
    assert!(keys[0].get("digest").is_none() && keys[0].get("pepper_version").is_none());

    let get = k.keyctl(&["get", &id]);
    let got = get.ok().value();
    assert_eq!((got["id"].as_str(), got["description"].as_str()), (Some(&*id), Some("this API-key is for my-robot")));
    assert_eq!(got["status"], "active");

    // verify: the header value from stdin.
    let ok = k.verify(&secret, &[]);
    let principal = ok.ok().value();
    assert_eq!(
        (principal["key_id"].as_str(), principal["service_account_id"].as_str()),
        (Some(&*id), Some("my-robot"))
    );
    k.verify(&secret, &["--scope", "yc.monitoring.read"]).ok();
    let wrong_scope = k.verify(&secret, &["--scope", "yc.ai.translate.execute"]);
    assert!(wrong_scope.expect(1).stderr.contains("insufficient_scope"), "{}", wrong_scope.stderr);
    let bad = k.verify(&tampered(&secret), &[]);
    assert!(bad.expect(1).stderr.contains("invalid_token"), "{}", bad.stderr);
    let bare = k.run(&["verify"], Some(&format!("{secret}\n")));
    assert!(bare.expect(1).stderr.contains("Api-Key <key>"), "{}", bare.stderr);
    k.keyctl(&["verify", "--header", &format!("Api-Key {secret}"), "--format", "json"]).ok();

    // reissue with a grace period: both secrets work until it ends.
    let reissue = k.keyctl(&["reissue", &id, "--grace", "1h"]);
    reissue.ok();
    let (new_id, new_secret) = created(&reissue);
    assert_ne!(new_id, id);
    assert!(reissue.stderr.contains(&format!("the old key {id} stays valid until ")), "{}", reissue.stderr);
    k.verify(&secret, &[]).ok();
    k.verify(&new_secret, &["--scope", "yc.postbox.send"]).ok();
    let list = k.keyctl(&["list", "--service-account-id", "my-robot"]);
    assert_eq!(row(&list.ok().stdout, &id)[6], "grace");
    assert_eq!(row(&list.stdout, &new_id)[6], "active");
    let again = k.keyctl(&["reissue", &id]);
    assert!(again.expect(4).stderr.contains("already reissued"), "{}", again.stderr);

    // revoke, then delete.
    k.keyctl(&["revoke", &id]).ok();
    assert!(k.verify(&secret, &[]).expect(1).stderr.contains("invalid_token"));
    k.verify(&new_secret, &[]).ok();
    assert_eq!(k.keyctl(&["get", &id]).ok().value()["status"], "revoked");
    let list = k.keyctl(&["list", "--service-account-id", "my-robot"]);
    assert_eq!(row(&list.ok().stdout, &id)[6], "revoked");
    k.keyctl(&["delete", &id]).ok();
    assert!(k.keyctl(&["get", &id]).expect(3).stderr.contains("not found"));
    k.keyctl(&["delete", &id]).expect(3);
    k.keyctl(&["revoke", &id]).expect(3);
    k.keyctl(&["reissue", &id]).expect(3);
    assert!(k.verify(&secret, &[]).expect(1).stderr.contains("invalid_token"));

    // Each secret was printed once, by the command that made it; the
    // pepper never.
    assert_eq!(k.runs_showing(&secret), std::slice::from_ref(&create.args));
    assert_eq!(k.runs_showing(&new_secret), std::slice::from_ref(&reissue.args));
    let pepper = std::fs::read_to_string(k.path("api-keys.db.pepper")).unwrap();
    assert!(k.runs_showing(pepper.trim()).is_empty());
}

#[test]
fn import_reads_the_secret_from_stdin() {
    let k = Keyctl::new();
    let legacy = "AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    let import = k.run(
        &["import", "--service-account-id", "legacy-robot", "--create-service-account", "--scopes", "yc.postbox.send"],
        Some(&format!("{legacy}\n")),
    );
    let info = import.ok().value();
    // Six hex digits of the digest, never the end of the imported secret
    // (issue 17 finding 9).
    let masked = info["masked_key"].as_str().unwrap().to_owned();
    let masked = masked.as_str();
    assert!(masked.starts_with("****") && masked.len() == 10 && !masked.ends_with("rCG02w"), "{masked}");
    assert!(masked[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{masked}");
    assert_eq!(info["kind"], "imported");
    let id = info["id"].as_str().unwrap().to_owned();
    // The trailing newline was trimmed: the exact secret verifies.
    let v = k.verify(legacy, &["--scope", "yc.postbox.send"]);
    assert_eq!(v.ok().value()["key_id"].as_str(), Some(&*id));
    k.verify(&format!("{legacy}x"), &[]).expect(1);
    // Without a newline, too; a second import of the same secret is refused.
    let dup = k.run(&["import", "--service-account-id", "legacy-robot", "--create-service-account"], Some(legacy));
    assert!(dup.expect(4).stderr.contains("already imported"), "{}", dup.stderr);
    let short = k.run(&["import", "--service-account-id", "legacy-robot", "--create-service-account"], Some("short\n"));
    assert!(short.expect(2).stderr.contains("imported secret rejected"), "{}", short.stderr);
    let list = k.keyctl(&["list", "--service-account-id", "legacy-robot"]);
    assert!(list.ok().stdout.contains(masked) && !list.stdout.contains("rCG02w"), "{}", list.stdout);
    assert!(k.runs_showing(legacy).is_empty(), "the imported secret was echoed");
}

#[test]
fn bad_input_and_missing_keys_have_their_exit_codes() {
    let k = Keyctl::new();
    let unknown = k.keyctl(&[
        "create",
        "--service-account-id",
        "r",
        "--create-service-account",
        "--scopes",
        "yc.monitoring.read,yc.bogus.scope",
    ]);
    assert!(unknown.expect(2).stderr.contains("unknown scope `yc.bogus.scope`"), "{}", unknown.stderr);
    let date =
        k.keyctl(&["create", "--service-account-id", "r", "--create-service-account", "--expires-at", "2030-01-01"]);
    assert!(date.expect(2).stderr.contains("--expires-at"), "{}", date.stderr);
    let past = k.keyctl(&[
        "create",
        "--service-account-id",
        "r",
        "--create-service-account",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(past.expect(2).stderr.contains("not in the future"), "{}", past.stderr);
    k.keyctl(&["create", "--service-account-id", "not valid!"]).expect(2);
    k.keyctl(&["create", "--service-account-id", "r", "--create-service-account", "--scopes", ""]).expect(2);
    k.keyctl(&["get", "not-a-key-id"]).expect(2);
    k.keyctl(&["reissue", "aaaaaaaaaaaaaaaaaaaa", "--grace", "1 hour"]).expect(2);
    k.keyctl(&["list", "--service-account-id", "r", "--limit", "0"]).expect(2);
    k.keyctl(&["list-scopes", "--format", "xml"]).expect(2);
    k.keyctl(&["frobnicate"]).expect(2);
    k.verify("ak_x", &["--scope", "no.such.scope"]).expect(2);
    assert!(k.keyctl(&["get", "aaaaaaaaaaaaaaaaaaaa"]).expect(3).stderr.contains("not found"));
    assert!(k.keyctl(&["reissue", "aaaaaaaaaaaaaaaaaaaa"]).expect(3).stderr.contains("not found"));

    let scheme = k.keyctl(&["--database-url", "mysql://root:hunter2@db/keys", "list", "--service-account-id", "r"]);
    assert!(scheme.expect(2).stderr.contains("`mysql`") && !scheme.stderr.contains("hunter2"), "{}", scheme.stderr);
    let no_pepper = k.keyctl(&[
        "--database-url",
        POSTGRES_DEFAULT,
        "create",
        "--service-account-id",
        "r",
        "--create-service-account",
    ]);
    assert!(no_pepper.expect(2).stderr.contains("API_KEYS_PEPPER is not set"), "{}", no_pepper.stderr);
    let k2 = Keyctl::new().with_var("API_KEYS_PEPPER", "c2hvcnQ=");
    let short = k2.keyctl(&["create", "--service-account-id", "r", "--create-service-account"]);
    assert!(short.expect(2).stderr.contains("API_KEYS_PEPPER is unusable"), "{}", short.stderr);
    let k3 = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_PEPPER_VERSION", "v2");
    k3.keyctl(&["create", "--service-account-id", "r", "--create-service-account"]).expect(2);

    // A store that is down: 5.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let down = k.keyctl(&["--database-url", &format!("redis://127.0.0.1:{closed}"), "get", "aaaaaaaaaaaaaaaaaaaa"]);
    assert!(down.expect(5).stderr.contains("cannot open the Redis store"), "{}", down.stderr);

    // The scope catalog, as the seeds print it.
    let scopes = k.keyctl(&["list-scopes"]);
    assert!(scopes.ok().stdout.starts_with("- yc.ai.foundationModels.execute\n- yc.ai.imageGeneration.execute\n"));
    assert_eq!(scopes.stdout.lines().count(), 20);
    let json = k.keyctl(&["list-scopes", "--format", "json"]).ok().value();
    assert_eq!(json.as_array().unwrap().len(), 20);

    let help = k.keyctl(&["--help"]);
    assert!(help.ok().stdout.contains("Exit codes:") && help.stdout.contains("5  the store is unavailable"));
}

#[cfg(unix)]
#[test]
fn the_pepper_file_is_made_once_with_mode_0600() {
    let k = Keyctl::new();
    let file = k.path("api-keys.db.pepper");
    // Commands that open no store make no pepper.
    k.keyctl(&["list-scopes"]).ok();
    assert!(!file.exists());

    // Nor do read-only commands on a database that does not exist yet
    // (issue 17): the first write makes both.
    k.keyctl(&["list", "--service-account-id", "r"]).ok();
    assert!(!file.exists());
    let first = k.keyctl(&["create", "--service-account-id", "r", "--create-service-account"]);
    assert!(first.ok().stderr.contains("created a new pepper in api-keys.db.pepper (mode 0600)"), "{}", first.stderr);
    assert_eq!(mode(&file), 0o600);
    let pepper = std::fs::read_to_string(&file).unwrap();
    let (_, secret) = created(k.keyctl(&["create", "--service-account-id", "r", "--create-service-account"]).ok());
    k.verify(&secret, &[]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), pepper, "the pepper file was rewritten");
    assert_eq!(k.runs_showing("created a new pepper").len(), 1, "the warning was printed more than once");

    // The key only verifies with that pepper.
    let same =
        Keyctl { dir: k.dir, vars: vec![("API_KEYS_PEPPER", pepper.trim().to_owned())], runs: RefCell::default() };
    same.verify(&secret, &[]).ok();
    let other = Keyctl { dir: same.dir, vars: vec![("API_KEYS_PEPPER", random_pepper())], runs: RefCell::default() };
    // Another pepper is refused at start (issue 17 finding 4), before any
    // key is checked under it.
    let refused = other.verify(&secret, &[]);
    assert!(refused.expect(2).stderr.contains("is not the pepper this key store was used with"), "{}", refused.stderr);

    // A database whose pepper file is gone is not silently re-peppered.
    std::fs::remove_file(&file).unwrap();
    let k = Keyctl { dir: other.dir, vars: Vec::new(), runs: RefCell::default() };
    let lost = k.keyctl(&["create", "--service-account-id", "r", "--create-service-account"]);
    assert!(lost.expect(2).stderr.contains("does not; restore the pepper file"), "{}", lost.stderr);
    assert!(!file.exists());

    // With API_KEYS_PEPPER set, no file is made.
    let env = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    env.keyctl(&["create", "--service-account-id", "r", "--create-service-account"]).ok();
    assert!(env.path("api-keys.db").exists() && !env.path("api-keys.db.pepper").exists());
}

/// The lifecycle every backend must support, through `--database-url`.
fn network_lifecycle(k: &Keyctl, url: &str) {
    let sa = unique("robot").replace('_', "-");
    let create = k.keyctl(&[
        "--database-url",
        url,
        "create",
        "--service-account-id",
        &sa,
        "--create-service-account",
        "--scopes",
        "yc.postbox.send",
    ]);
    let (id, secret) = created(create.ok());
    k.verify(&secret, &["--database-url", url, "--scope", "yc.postbox.send"]).ok();
    k.verify(&secret, &["--database-url", url, "--scope", "yc.monitoring.read"]).expect(1);
    let list = k.keyctl(&["--database-url", url, "list", "--service-account-id", &sa]);
    assert!(list.ok().stdout.contains(&masked(&secret)) && !list.stdout.contains(&secret), "{}", list.stdout);
    let (new_id, new_secret) = created(k.keyctl(&["--database-url", url, "reissue", &id]).ok());
    k.verify(&secret, &["--database-url", url]).expect(1);
    k.verify(&new_secret, &["--database-url", url]).ok();
    let legacy = format!("LEGACY{}", unique("secret").replace('_', ""));
    k.run(&["--database-url", url, "import", "--service-account-id", &sa, "--create-service-account"], Some(&legacy))
        .ok();
    k.verify(&legacy, &["--database-url", url]).ok();
    let json = k.keyctl(&["--database-url", url, "list", "--service-account-id", &sa, "--format", "json"]);
    let keys = json.ok().value()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let id = key["id"].as_str().unwrap();
        k.keyctl(&["--database-url", url, "delete", id]).ok();
    }
    k.keyctl(&["--database-url", url, "get", &new_id]).expect(3);
    k.verify(&new_secret, &["--database-url", url]).expect(1);
    k.verify(&legacy, &["--database-url", url]).expect(1);
    assert!(k.keyctl(&["--database-url", url, "list", "--service-account-id", &sa]).ok().stdout.lines().count() == 3);
}

#[test]
fn postgres_end_to_end() {
    let base = postgres_url();
    let schema = unique("keyctl_test");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    network_lifecycle(&k, &with_param(&base, "schema", &schema));
    // The tables are in the test's schema and nothing was left in them.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rows: i64 = rt.block_on(async {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        let sql = format!("SELECT count(*) FROM \"{schema}\".api_keys");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.unwrap()
    });
    assert_eq!(rows, 0);
    assert!(!k.path("api-keys.db").exists(), "a SQLite file was made for a PostgreSQL URL");
}

#[test]
fn redis_end_to_end() {
    let base = redis_url();
    let prefix = unique("keyctl-test");
    let cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    network_lifecycle(&k, &with_param(&base, "prefix", &prefix));
    // Deleting every key left nothing under the prefix but the operations
    // log, which outlives the keys by design (each key's `ops:` set, the
    // entry-id index and the sequence counter).
    let left: Vec<String> = {
        let client = redis::Client::open(base.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query(&mut conn).unwrap()
    };
    // (and the store's pepper fingerprints, `{prefix}:peppers`, the change
    // feed, pruned by age, with its epoch and pruned mark, the marks of
    // the expiry and id indexes, and the resources — the default
    // organization, cloud and folder, the service account the keys were
    // made for — with their indexes and log, which deleting keys leaves).
    let log_only = |k: &String| {
        k.contains("}:ops:")
            || ["}:res:", "}:resix:", "}:resops:"].iter().any(|part| k.contains(part))
            || [
                "}:opids",
                "}:opseq",
                "}:peppers",
                "}:feed",
                "}:feed:epoch",
                "}:feed:pruned",
                "}:expiry:built",
                "}:ids:built",
                "}:resseq",
                "}:resopids",
                "}:resources:built",
            ]
            .iter()
            .any(|end| k.ends_with(end))
    };
    assert!(left.iter().all(log_only), "{left:?}");
    assert_eq!(left.iter().filter(|k| k.contains("}:ops:")).count(), 3, "the three deleted keys' logs: {left:?}");
    cleanup.purge().unwrap();
}
