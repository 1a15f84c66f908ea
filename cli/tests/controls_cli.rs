//! `keyctl` and key controls (issue 15), end to end as processes: create
//! with every control flag, `get` and `list` showing them, `update` setting,
//! clearing, disabling and enabling, `verify` spending nothing, the
//! cross-account listings (`--external-id`, `--expiring-within`) and what
//! bad values get (harness in `common/`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::*;
use std::time::Duration;

use serde_json::json;

/// Creates a key with every control flag; returns `(id, secret)`.
fn create_with_every_control(k: &Keyctl, sa: &str) -> (String, String) {
    let create = k.keyctl(&[
        "create",
        "--service-account-id",
        sa,
        "--create-service-account",
        "--credits",
        "100",
        "--refill-daily",
        "50",
        "--refill-at",
        "06:30",
        "--rate-limit",
        "api=100/1s:burst=20",
        "--rate-limit",
        "daily=10000/1d",
        "--allow-ip",
        "10.0.0.0/8,2001:db8::/32",
        "--meta",
        r#"{"plan":"pro","seats":3}"#,
        "--external-id",
        "cust_42",
        "--format",
        "json",
    ]);
    create.ok();
    created(&create)
}

#[test]
fn create_get_list_update_and_verify_with_controls() {
    let k = Keyctl::new();
    let (id, secret) = create_with_every_control(&k, "robot");

    // get shows them (YAML and JSON), never the secret.
    let got = k.keyctl(&["get", &id, "--format", "json"]).ok().value();
    assert_eq!(got["enabled"], true);
    let c = &got["controls"];
    assert_eq!(c["metadata"], json!({"plan": "pro", "seats": 3}));
    assert_eq!(c["externalId"], "cust_42");
    assert_eq!(c["allowedIps"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(c["rateLimits"], json!(["api=100/1s:burst=20", "daily=10000/1d"]));
    assert_eq!(c["credits"]["remaining"], 100);
    assert_eq!(c["credits"]["refill"], json!({"amount": 50, "period": "daily", "atSecond": 23_400}));
    assert_eq!(k.keyctl(&["get", &id]).ok().value(), got, "YAML shows the same");

    // The table gains ENABLED and CONTROLS columns.
    let list = k.keyctl(&["list", "--service-account-id", "robot"]);
    for header in ["ENABLED", "CONTROLS"] {
        assert!(list.ok().stdout.contains(&format!(" {header} ")), "{header}: {}", list.stdout);
    }
    let cells = row(&list.stdout, &id);
    assert_eq!(cells[6..8], ["active", "yes"]);
    assert_eq!(
        cells[8],
        "external-id=cust_42 credits=100/daily:50@06:30 rate-limits=api=100/1s:burst=20,daily=10000/1d \
         allow-ip=10.0.0.0/8,2001:db8::/32 meta={\"plan\":\"pro\",\"seats\":3}"
    );
    let listed = k.keyctl(&["list", "--service-account-id", "robot", "--format", "json"]).ok().value();
    assert_eq!(listed["api_keys"][0]["controls"], got["controls"]);

    // verify from an allowed address spends nothing and shows what is left; from elsewhere (or
    // without an address) the allow-list refuses it.
    for _ in 0..3 {
        let v = k.verify(&secret, &["--client-ip", "10.1.2.3", "--format", "json"]).ok().value();
        assert_eq!(v["credits_remaining"], 100, "an operator check spends no credits");
    }
    for outside in [&["--client-ip", "192.0.2.1"][..], &[]] {
        let refused = k.verify(&secret, outside);
        assert!(refused.expect(1).stderr.contains("(403)"), "{outside:?}: {}", refused.stderr);
    }
    let table = k.verify(&secret, &["--client-ip", "2001:db8::1", "--format", "table"]);
    assert!(table.ok().stdout.contains(" CREDITS REMAINING "), "{}", table.stdout);

    // disable → refused as an invalid key; enable → accepted again.
    let off = k.keyctl(&["update", &id, "--disable", "--format", "json"]).ok().value();
    assert_eq!(off["enabled"], false);
    let refused = k.verify(&secret, &[]);
    assert!(refused.expect(1).stderr.contains("invalid_token (401)"), "{}", refused.stderr);
    assert!(refused.stderr.contains("disabled"), "the log-only reason names it: {}", refused.stderr);
    assert_eq!(row(&k.keyctl(&["list", "--service-account-id", "robot"]).ok().stdout, &id)[7], "no");
    assert_eq!(k.keyctl(&["update", &id, "--enable", "--format", "json"]).ok().value()["enabled"], true);
    k.verify(&secret, &["--client-ip", "10.0.0.1"]).ok();

    // Set each control anew, then clear each.
    let set = k
        .keyctl(&[
            "update",
            &id,
            "--credits",
            "7",
            "--refill-monthly",
            "9",
            "--rate-limit",
            "burst=5/1m",
            "--allow-ip",
            "192.0.2.1",
            "--meta",
            r#"{"tier":"free"}"#,
            "--external-id",
            "cust_43",
            "--format",
            "json",
        ])
        .ok()
        .value();
    let c = &set["controls"];
    assert_eq!(c["credits"]["remaining"], 7);
    assert_eq!(c["credits"]["refill"], json!({"amount": 9, "period": "monthly", "atSecond": 0}));
    assert_eq!(c["rateLimits"], json!(["burst=5/1m"]));
    assert_eq!(c["allowedIps"], json!(["192.0.2.1/32"]));
    assert_eq!(c["metadata"], json!({"tier": "free"}));
    assert_eq!(c["externalId"], "cust_43");
    let v = k.verify(&secret, &["--client-ip", "192.0.2.1", "--format", "json"]).ok().value();
    assert_eq!(v["credits_remaining"], 7);

    let mut remaining = ["credits", "rateLimits", "allowedIps", "metadata", "externalId"].to_vec();
    for (flag, field) in [
        ("--no-credits", "credits"),
        ("--no-rate-limits", "rateLimits"),
        ("--no-allow-ip", "allowedIps"),
        ("--no-meta", "metadata"),
        ("--no-external-id", "externalId"),
    ] {
        let v = k.keyctl(&["update", &id, flag, "--format", "json"]).ok().value();
        remaining.retain(|f| *f != field);
        for f in ["credits", "rateLimits", "allowedIps", "metadata", "externalId"] {
            assert_eq!(v["controls"].get(f).is_some(), remaining.contains(&f), "after {flag}: {f} in {v}");
        }
    }
    let plain = k.keyctl(&["get", &id, "--format", "json"]).ok().value();
    assert!(plain.get("controls").is_none(), "no controls left: {plain}");
    assert!(k.verify(&secret, &["--format", "json"]).ok().value().get("credits_remaining").is_none());

    // The log records each change, never the secret.
    let ops = k.keyctl(&["operations", &id, "--format", "json"]).ok().value();
    let changes: Vec<&serde_json::Value> =
        ops["operations"].as_array().unwrap().iter().map(|op| &op["changes"]).collect();
    assert!(changes.iter().any(|c| c["enabled"] == false), "{ops}");
    assert!(changes.iter().any(|c| c["externalId"] == "cust_43"), "{ops}");
    assert!(changes.iter().any(|c| c.get("credits").is_some_and(serde_json::Value::is_null)), "{ops}");
    assert!(k.runs_showing(&secret).len() == 1, "the secret was printed once, by create");
}

#[test]
fn list_by_external_id_and_expiring_within_span_service_accounts() {
    let k = Keyctl::new();
    let mut theirs = Vec::new();
    for sa in ["robot-a", "robot-b"] {
        let run =
            k.keyctl(&["create", "--service-account-id", sa, "--create-service-account", "--external-id", "cust_42"]);
        theirs.push(created(run.ok()).0);
    }
    k.keyctl(&["create", "--service-account-id", "robot-a", "--create-service-account", "--external-id", "other"]).ok();
    theirs.sort();
    let ids = |v: serde_json::Value| -> Vec<String> {
        v["api_keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
    };
    let listed = k.keyctl(&["list", "--external-id", "cust_42", "--format", "json"]).ok().value();
    assert_eq!(ids(listed), theirs);
    let page = k.keyctl(&["list", "--external-id", "cust_42", "--limit", "1", "--format", "json"]).ok().value();
    assert_eq!(page["next_page_token"], theirs[0].as_str());
    let rest = k.keyctl(&["list", "--external-id", "cust_42", "--page-token", &theirs[0], "--format", "json"]);
    assert_eq!(ids(rest.ok().value()), theirs[1..]);
    let table = k.keyctl(&["list", "--external-id", "cust_42"]);
    assert!(table.ok().stdout.contains("external-id=cust_42"), "{}", table.stdout);
    let none = k.keyctl(&["list", "--external-id", "nobody", "--format", "json"]).ok().value();
    assert!(ids(none).is_empty());

    // Expiry warnings: active keys expiring within the window, any account.
    let in_days = |d: u64| api_keys::Timestamp::now().saturating_add(Duration::from_secs(d * 86_400)).to_string();
    let soon = |sa: &str, days: u64| {
        let run = k.keyctl(&[
            "create",
            "--service-account-id",
            sa,
            "--create-service-account",
            "--expires-at",
            &in_days(days),
        ]);
        created(run.ok()).0
    };
    let mut want = vec![soon("robot-a", 2), soon("robot-b", 6)];
    want.sort();
    soon("robot-a", 30);
    let revoked = soon("robot-b", 3);
    k.keyctl(&["revoke", &revoked]).ok();
    let warned = k.keyctl(&["list", "--expiring-within", "7d", "--format", "json"]).ok().value();
    assert_eq!(ids(warned), want);
    let warned = k.keyctl(&["list", "--expiring-within", "1d", "--format", "json"]).ok().value();
    assert!(ids(warned).is_empty());
    let month = k.keyctl(&["list", "--expiring-within", "31d", "--format", "json"]).ok().value();
    assert_eq!(ids(month).len(), 3);
}

#[test]
fn bad_control_values_exit_2_naming_the_flag() {
    let k = Keyctl::new();
    let create = |extra: &[&str]| {
        let mut args = vec!["create", "--service-account-id", "robot", "--create-service-account"];
        args.extend_from_slice(extra);
        k.keyctl(&args)
    };
    let cases: [(&[&str], &str); 12] = [
        (&["--credits=-1"], "--credits"),
        (&["--credits", "9223372036854775808"], "--credits"),
        (&["--refill-daily", "5"], "--credits"),
        (&["--credits", "5", "--refill-daily", "5", "--refill-monthly", "5"], "--refill-monthly"),
        (&["--credits", "5", "--refill-at", "06:30"], "--refill-at"),
        (&["--credits", "5", "--refill-daily", "5", "--refill-at", "24:00"], "HH:MM"),
        (&["--rate-limit", "api=0/1s"], "--rate-limit"),
        (&["--rate-limit", "api=10/1s", "--rate-limit", "api=20/1m"], "distinct names"),
        (&["--allow-ip", "10.0.0.0/33"], "10.0.0.0/33"),
        (&["--meta", "[1,2]"], "--meta"),
        (&["--meta", &format!(r#"{{"x":"{}"}}"#, "a".repeat(5000))], "4096 bytes"),
        (&["--external-id", "has space"], "--external-id"),
    ];
    for (extra, says) in cases {
        let run = create(extra);
        assert!(run.expect(2).stderr.contains(says), "{extra:?}: {}", run.stderr);
    }
    assert!(
        !k.path("api-keys.db").exists() || {
            let list = k.keyctl(&["list", "--service-account-id", "robot", "--format", "json"]);
            list.ok().value()["api_keys"].as_array().unwrap().is_empty()
        }
    );

    let id = created(create(&[]).ok()).0;
    for extra in [
        &["--disable", "--enable"][..],
        &["--credits", "5", "--no-credits"],
        &["--meta", "{}", "--no-meta"],
        &["--allow-ip", "10.0.0.1", "--no-allow-ip"],
        &["--external-id", "a", "--no-external-id"],
        &["--rate-limit", "a=1/1s", "--no-rate-limits"],
        &["--allow-ip", "nonsense"],
    ] {
        let mut args = vec!["update", &id];
        args.extend_from_slice(extra);
        k.keyctl(&args).expect(2);
    }
    let nothing = k.keyctl(&["update", &id]);
    assert!(nothing.expect(2).stderr.contains("nothing to update"), "{}", nothing.stderr);
    for bad in [
        &["list"][..],
        &["list", "--external-id", "a", "--expiring-within", "7d"],
        &["list", "--expiring-within", "7 days"],
    ] {
        k.keyctl(bad).expect(2);
    }
    let got = k.keyctl(&["get", &id, "--format", "json"]).ok().value();
    assert!(got.get("controls").is_none() && got["enabled"] == true, "no bad update wrote anything: {got}");
}
