//! Service accounts, folders, clouds, organizations and access policies
//! through `keyctl`, run as processes over real stores (harness in
//! `common/`): SQLite files in a temporary directory, a per-test
//! PostgreSQL schema, a per-test Redis prefix.
//!
//! - the documents' flow by name: `service-account create --name my-robot`
//!   in a folder, `create --service-account-name my-robot > api_key.yaml`,
//!   `list --service-account-name my-robot`;
//! - a deny policy on the organization refuses a create two levels down
//!   (exit 4, naming the policy and the organization); unbinding allows it;
//! - a maximum-lifetime policy bound after a key was made fails that key on
//!   a second `keyctl serve` node within 1 s (time printed, `--nocapture`);
//! - deleting a service account fails its keys and keeps their logs;
//! - bad input exits 2, 3 or 4 with a clear message and writes nothing.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const DENY: &str = "iam.denyServiceAccountApiKeysCreation";
const MAX_LIFETIME: &str = "iam.apiKeys.maxLifetime";

/// The PostgreSQL store of one test, dropped at the end.
fn postgres() -> (DropSchema, String) {
    let base = postgres_url();
    let schema = unique("resources_pg");
    let url = with_param(&base, "schema", &schema);
    (DropSchema { url: base, schema }, url)
}

/// keyctl over `url` (the default SQLite file for `None`).
fn keyctl_on(url: Option<&str>) -> Keyctl {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    match url {
        Some(url) => k.with_var("API_KEYS_DATABASE_URL", url),
        None => k,
    }
}

/// Runs `args` with `--format json` and returns the printed document.
fn json(k: &Keyctl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    k.keyctl(&all).ok().value()
}

/// The id in a printed resource.
fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// An organization, a cloud in it and a folder in that; their ids.
fn hierarchy(k: &Keyctl, tag: &str) -> (String, String, String) {
    let org = id_of(&json(k, &["organization", "create", "--name", &format!("acme-{tag}")]));
    let cloud = id_of(&json(k, &["cloud", "create", "--organization-id", &org, "--name", "prod"]));
    let folder = id_of(&json(k, &["folder", "create", "--cloud-id", &cloud, "--name", "web"]));
    (org, cloud, folder)
}

/// How many service accounts `folder` holds.
fn accounts_in(k: &Keyctl, folder: &str) -> usize {
    json(k, &["service-account", "list", "--folder-id", folder]).as_array().map_or(0, Vec::len)
}

/// The arguments as `&str`.
fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Polls `check` until it holds or `bound` passes; how long it took.
fn until(bound: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The documents' flow, by name, in a folder of its own.
fn documents_flow(k: &Keyctl) {
    let folder = id_of(&json(k, &["folder", "create", "--name", "robots", "--description", "CI robots"]));
    let sa = k.keyctl(&[
        "service-account",
        "create",
        "--folder-id",
        &folder,
        "--name",
        "my-robot",
        "--description",
        "deploys the site",
        "--labels",
        "team=web,env=prod",
    ]);
    let sa = sa.ok().value();
    assert_eq!((sa["name"].as_str(), sa["folder_id"].as_str()), (Some("my-robot"), Some(&*folder)), "{sa}");
    assert_eq!(sa["labels"]["team"], "web");
    let sa_id = id_of(&sa);
    assert_eq!(sa_id.len(), 20);

    // `yc iam service-account list`: ID | NAME | DESCRIPTION.
    let table = k.keyctl(&["service-account", "list", "--folder-id", &folder]);
    assert!(table.ok().stdout.lines().nth(1).unwrap().contains("ID") && table.stdout.contains("DESCRIPTION"));
    assert_eq!(row(&table.stdout, &sa_id), [&*sa_id, "my-robot", "deploys the site"]);
    // get prints yaml: id, folder_id, created_at, name, … in that order.
    let get = k.keyctl(&["service-account", "get", "--folder-id", &folder, "--name", "my-robot"]);
    let fields: Vec<&str> = get.ok().stdout.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(fields[..4], ["id", "folder_id", "created_at", "name"], "{}", get.stdout);

    // The folder by name (in the default cloud) works as well as by id.
    let create = k.keyctl(&["create", "--service-account-name", "my-robot", "--folder-name", "robots"]);
    let (key, secret) = created(create.ok());
    std::fs::write(k.path("api_key.yaml"), &create.stdout).unwrap();
    assert_eq!(create.value()["api_key"]["service_account_id"], sa_id.as_str());
    let list = k.keyctl(&["list", "--service-account-name", "my-robot", "--folder-id", &folder]);
    assert_eq!(row(&list.ok().stdout, &key)[0], key);
    assert_eq!(k.verify(&secret, &[]).ok().value()["service_account_id"], sa_id.as_str());

    // API_KEYS_FOLDER_ID stands for --folder-id.
    let mut in_env = Keyctl::new().with_var("API_KEYS_FOLDER_ID", folder.clone());
    in_env.vars.extend(k.vars.iter().cloned());
    if !k.vars.iter().any(|(name, _)| *name == "API_KEYS_DATABASE_URL") {
        in_env = in_env.with_var("API_KEYS_DATABASE_URL", format!("sqlite://{}", k.path("api-keys.db").display()));
    }
    let listed = in_env.keyctl(&["list", "--service-account-name", "my-robot", "--format", "json"]);
    assert_eq!(listed.ok().value()["api_keys"].as_array().map(Vec::len), Some(1));

    // Not in the default folder: the name is unknown there, and the error names the command that makes it.
    let unknown = k.keyctl(&["create", "--service-account-name", "my-robot"]);
    assert!(unknown.expect(3).stderr.contains("keyctl service-account create --name my-robot"), "{}", unknown.stderr);
    let unknown = k.keyctl(&["create", "--service-account-name", "new-robot", "--folder-id", &folder]);
    assert!(unknown.expect(3).stderr.contains(&format!("--folder-id {folder}")), "{}", unknown.stderr);
    // --create-service-account makes it on first use, and uses it afterwards.
    let first = k.keyctl(&[
        "create",
        "--service-account-name",
        "new-robot",
        "--folder-id",
        &folder,
        "--create-service-account",
    ]);
    assert!(first.ok().stderr.contains("created service account new-robot"), "{}", first.stderr);
    let again = k.keyctl(&[
        "create",
        "--service-account-name",
        "new-robot",
        "--folder-id",
        &folder,
        "--create-service-account",
    ]);
    assert!(!again.ok().stderr.contains("created service account"), "{}", again.stderr);
    assert_eq!(first.value()["api_key"]["service_account_id"], again.value()["api_key"]["service_account_id"]);
    assert_eq!(accounts_in(k, &folder), 2);

    // update and the other kinds' tables.
    let updated = json(k, &["service-account", "update", "--id", &sa_id, "--new-name", "my-bot", "--labels", ""]);
    assert_eq!((updated["name"].as_str(), updated.get("labels")), (Some("my-bot"), None), "{updated}");
    let folders = k.keyctl(&["folder", "list"]);
    assert_eq!(row(&folders.ok().stdout, &folder), [&*folder, "robots", "", "ACTIVE"]);
    assert!(k.keyctl(&["cloud", "list"]).ok().stdout.contains("ORGANIZATION ID"));
    assert!(k.keyctl(&["organization", "list"]).ok().stdout.contains("defaultorganization0"));
}

#[test]
fn documents_flow_on_sqlite() {
    documents_flow(&keyctl_on(None));
}

#[test]
fn documents_flow_on_postgres() {
    let (_drop, url) = postgres();
    documents_flow(&keyctl_on(Some(&url)));
}

#[test]
fn documents_flow_on_redis() {
    let base = redis_url();
    let prefix = unique("resources-redis");
    let _purge = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    documents_flow(&keyctl_on(Some(&with_param(&base, "prefix", &prefix))));
}

/// A deny bound on the organization refuses a create in a folder two
/// levels down, naming the policy and the organization; nothing is made.
fn deny_on_the_organization(k: &Keyctl) {
    let (org, _cloud, folder) = hierarchy(k, "deny");
    k.keyctl(&["service-account", "create", "--folder-id", &folder, "--name", "deny-robot"]).ok();
    let by_name = ["create", "--service-account-name", "deny-robot", "--folder-id", &folder];
    created(k.keyctl(&by_name).ok());

    k.keyctl(&["access-policy", "bind", "--organization-id", &org, "--template", DENY]).ok();
    let bound = json(k, &["access-policy", "list", "--organization-id", &org]);
    assert_eq!(bound[0]["access_policy_template_id"], DENY);
    let effective = json(k, &["access-policy", "list", "--service-account-name", "deny-robot", "--folder-id", &folder]);
    assert_eq!(effective[0]["bound_on"], format!("organization {org}"), "{effective}");

    let refused = k.keyctl(&by_name);
    let stderr = &refused.expect(4).stderr;
    assert!(stderr.contains(DENY) && stderr.contains(&format!("organization {org}")), "{stderr}");
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    // With --create-service-account, the account made for the refused key is removed again.
    let fresh = ["create", "--service-account-name", "ghost", "--folder-id", &folder, "--create-service-account"];
    k.keyctl(&fresh).expect(4);
    assert_eq!(accounts_in(k, &folder), 1, "nothing half-written");
    let keys = json(k, &["list", "--service-account-name", "deny-robot", "--folder-id", &folder]);
    assert_eq!(keys["api_keys"].as_array().map(Vec::len), Some(1), "the refused create made no key");

    k.keyctl(&["access-policy", "unbind", "--organization-id", &org, "--template", DENY]).ok();
    created(k.keyctl(&by_name).ok());
    let again = k.keyctl(&["access-policy", "unbind", "--organization-id", &org, "--template", DENY]);
    assert!(again.expect(4).stderr.contains("no access policy"), "{}", again.stderr);
}

#[test]
fn deny_on_the_organization_on_sqlite() {
    deny_on_the_organization(&keyctl_on(None));
}

#[test]
fn deny_on_the_organization_on_postgres() {
    let (_drop, url) = postgres();
    deny_on_the_organization(&keyctl_on(Some(&url)));
}

/// A maximum lifetime bound after a key was made fails it on the second of
/// two nodes within 1 s; the first node agrees.
fn max_lifetime_reaches_a_second_node(k: &Keyctl, url: &str, label: &str) {
    let folder = id_of(&json(k, &["folder", "create", "--name", "limited"]));
    k.keyctl(&["service-account", "create", "--folder-id", &folder, "--name", "old-robot"]).ok();
    let (_, secret) =
        created(k.keyctl(&["create", "--service-account-name", "old-robot", "--folder-id", &folder]).ok());
    let nodes = [Server::start(k, url, &[]), Server::start(k, url, &[])];
    for n in &nodes {
        assert_eq!(n.authorize(Some(&secret), None).status, 200, "{}", n.log());
    }
    // The key is older than the limit about to be bound.
    std::thread::sleep(Duration::from_millis(1100));
    for n in &nodes {
        assert_eq!(n.authorize(Some(&secret), None).status, 200, "no limit yet:\n{}", n.log());
    }
    let bind =
        ["access-policy", "bind", "--folder-id", &folder, "--template", MAX_LIFETIME, "--param", "max_lifetime=1s"];
    k.keyctl(&bind).ok();
    let bound_at = Instant::now();
    let second = until(Duration::from_secs(1), || nodes[1].authorize(Some(&secret), None).status == 401);
    let second =
        second.unwrap_or_else(|| panic!("the second node still accepts the key after 1 s:\n{}", nodes[1].log()));
    let first = until(Duration::from_secs(1), || nodes[0].authorize(Some(&secret), None).status == 401);
    assert!(first.is_some(), "{}", nodes[0].log());
    eprintln!(
        "{label}: a maximum-lifetime policy reached the second node in {second:?} ({:?} in all)",
        bound_at.elapsed()
    );
    let text = nodes[1].request("GET", "/metrics", &[], "").body;
    assert_eq!(metric(&text, "keyctl_lifetime_limited_accounts"), 1.0, "{text}");
    // keyctl verify applies it too; a key made now within the limit works until it is 1 s old.
    assert!(k.verify(&secret, &[]).expect(1).stderr.contains("invalid_token"));
    let unbind = ["access-policy", "unbind", "--folder-id", &folder, "--template", MAX_LIFETIME];
    k.keyctl(&unbind).ok();
    let back = until(Duration::from_secs(1), || nodes[1].authorize(Some(&secret), None).status == 200);
    assert!(back.is_some(), "unbinding did not reach the second node:\n{}", nodes[1].log());
    for n in nodes {
        let log = n.stop();
        assert!(!log.contains(&secret), "a node logged a secret:\n{log}");
    }
}

#[test]
fn max_lifetime_reaches_a_second_postgres_node_within_a_second() {
    let (_drop, url) = postgres();
    let k = keyctl_on(Some(&url));
    max_lifetime_reaches_a_second_node(&k, &url, "PostgreSQL");
}

#[test]
fn max_lifetime_reaches_a_second_sqlite_node_within_a_second() {
    let k = keyctl_on(None);
    // The nodes need the file before they start; the first keyctl run makes it.
    k.keyctl(&["folder", "list"]).expect(3);
    max_lifetime_reaches_a_second_node(&k, SQLITE_DEFAULT_URL, "SQLite");
}

/// Deleting a service account deletes its keys (they fail at once) and
/// keeps their logs.
#[test]
fn deleting_a_service_account_fails_its_keys_and_keeps_their_logs() {
    let (_drop, url) = postgres();
    let k = keyctl_on(Some(&url));
    k.keyctl(&["service-account", "create", "--name", "doomed"]).ok();
    let (key, secret) = created(k.keyctl(&["create", "--service-account-name", "doomed"]).ok());
    let node = Server::start(&k, &url, &[("API_KEYS_CACHE_TTL", "20s")]);
    assert_eq!(node.authorize(Some(&secret), None).status, 200);

    let deleted = k.keyctl(&["service-account", "delete", "--name", "doomed"]);
    assert!(deleted.ok().stderr.contains("with its keys"), "{}", deleted.stderr);
    let gone = until(Duration::from_secs(1), || node.authorize(Some(&secret), None).status == 401);
    assert!(gone.is_some(), "a deleted account's key still works on the node:\n{}", node.log());
    assert!(k.verify(&secret, &[]).expect(1).stderr.contains("invalid_token"));
    k.keyctl(&["get", &key]).expect(3);
    k.keyctl(&["service-account", "get", "--name", "doomed"]).expect(3);
    let log = json(&k, &["operations", &key]);
    let kinds: Vec<&str> = log["operations"].as_array().unwrap().iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, ["delete", "create"], "{log}");
    node.stop();
}

/// Bad input: clear errors, their exit codes, and nothing written.
#[test]
fn bad_input_is_refused_and_nothing_is_half_written() {
    let k = keyctl_on(None);
    let (_, cloud, folder) = hierarchy(&k, "bad");
    k.keyctl(&["service-account", "create", "--folder-id", &folder, "--name", "robot"]).ok();
    let sa = ["service-account", "create", "--folder-id", &folder, "--name"];
    let with = |extra: &[&str]| -> Vec<String> { sa.iter().chain(extra).map(|s| (*s).to_owned()).collect() };

    for name in ["My_Robot", "-robot", "robot-", "1robot", "", &"r".repeat(64)] {
        let flag = format!("--name={name}");
        let run = k.keyctl(&["service-account", "create", "--folder-id", &folder, &flag]);
        assert!(run.expect(2).stderr.contains("a name is 1 to 63 characters"), "{name}: {}", run.stderr);
    }
    let dup = k.keyctl(&refs(&with(&["robot"])));
    assert!(dup.expect(4).stderr.contains("already used"), "{}", dup.stderr);
    // Names are unique in the cloud: the same name in another folder of it is taken too.
    let other = id_of(&json(&k, &["folder", "create", "--cloud-id", &cloud, "--name", "other"]));
    k.keyctl(&["service-account", "create", "--folder-id", &other, "--name", "robot"]).expect(4);
    k.keyctl(&["folder", "create", "--cloud-id", &cloud, "--name", "web"]).expect(4);

    let unknown_parent = k.keyctl(&["service-account", "create", "--folder-id", "nosuchfolder00000000", "--name", "x"]);
    assert!(unknown_parent.expect(3).stderr.contains("nosuchfolder00000000"), "{}", unknown_parent.stderr);
    k.keyctl(&["folder", "create", "--cloud-id", "nosuchcloud000000000", "--name", "x"]).expect(3);
    k.keyctl(&["folder", "list", "--cloud-id", "nosuchcloud000000000"]).expect(3);
    k.keyctl(&["folder", "create", "--cloud-id", "not-an-id", "--name", "x"]).expect(2);
    k.keyctl(&["cloud", "create", "--folder-id", &folder, "--name", "x"]).expect(2);

    let labels: Vec<String> = (0..65).map(|i| format!("k{i}=v")).collect();
    let many = k.keyctl(&refs(&with(&["many", "--labels", &labels.join(",")])));
    assert!(many.expect(2).stderr.contains("at most 64 labels"), "{}", many.stderr);
    let long = format!("team={}", "v".repeat(64));
    k.keyctl(&refs(&with(&["long", "--labels", &long]))).expect(2);
    k.keyctl(&refs(&with(&["upper", "--labels", "Team=web"]))).expect(2);
    k.keyctl(&refs(&with(&["long", "--description", &"d".repeat(257)]))).expect(2);

    let non_empty = k.keyctl(&["folder", "delete", "--id", &folder]);
    assert!(non_empty.expect(4).stderr.contains("not empty"), "{}", non_empty.stderr);
    k.keyctl(&["folder", "get", "--id", &folder]).ok();
    k.keyctl(&["folder", "delete", "--id", "defaultfolder0000000"]).expect(2);
    k.keyctl(&["service-account", "update", "--folder-id", &folder, "--name", "robot"]).expect(2);
    k.keyctl(&["service-account", "get", "--name", "nobody"]).expect(3);

    let bad_template = k.keyctl(&["access-policy", "bind", "--folder-id", &folder, "--template", "iam.nope"]);
    assert!(bad_template.expect(2).stderr.contains("unknown access policy template"), "{}", bad_template.stderr);
    let bad_param =
        ["access-policy", "bind", "--folder-id", &folder, "--template", MAX_LIFETIME, "--param", "max_lifetime=1y"];
    k.keyctl(&bad_param).expect(2);
    k.keyctl(&["access-policy", "bind", "--template", DENY]).expect(2);
    k.keyctl(&["access-policy", "bind", "--folder-id", "nosuchfolder00000000", "--template", DENY]).expect(3);
    assert_eq!(json(&k, &["access-policy", "list", "--folder-id", &folder]), serde_json::json!([]));

    assert_eq!(accounts_in(&k, &folder), 1, "only the first account was written");
    assert_eq!(accounts_in(&k, &other), 0);
    let folders = json(&k, &["folder", "list", "--cloud-id", &cloud]);
    assert_eq!(folders.as_array().map(Vec::len), Some(2), "{folders}");
}
