//! Output of `keyctl`: YAML, JSON, or the ASCII tables of the `yc` CLI.
//!
//! Nothing here ever sees a digest; the only secret that reaches it is the
//! one-time [`CreatedKey`] of `create` and `reissue`.

use crate::failure::{Failure, OTHER};
use api_keys::controls::{Credits, KeyControls};
use api_keys::{CreatedKey, KeyInfo, KeyStatus, Principal, ScopeInfo, Timestamp};
use clap::ValueEnum;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// YAML, as `yc` prints (`api_key.yaml`).
    Yaml,
    /// Pretty-printed JSON.
    Json,
    /// An ASCII table.
    Table,
}

/// Serialises `value` as YAML or JSON (never called with `Table`).
pub(crate) fn structured<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| e.to_string()),
        Format::Yaml | Format::Table => serde_norway::to_string(value).map_err(|e| e.to_string()),
    }
}

/// A one-time creation or reissue result, with its secret.
pub(crate) fn created(format: Format, key: &CreatedKey) -> Result<String, String> {
    if format != Format::Table {
        return structured(format, key);
    }
    let k = &key.api_key;
    Ok(table(
        &["ID", "SERVICE ACCOUNT ID", "CREATED AT", "SCOPES", "EXPIRES AT", "SECRET"],
        &[vec![
            k.id.to_string(),
            k.service_account_id.to_string(),
            short_time(Some(k.created_at)),
            k.scopes.to_string(),
            short_time(k.expires_at),
            key.secret.expose_secret().to_owned(),
        ]],
    ))
}

/// What `list` prints as YAML or JSON (the shape of the REST API's list
/// response, in snake case).
#[derive(Serialize)]
struct Listing<'a> {
    api_keys: &'a [KeyInfo],
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Keys as listed: masked, never a secret or digest.
pub(crate) fn keys(
    format: Format,
    keys: &[KeyInfo],
    next_page_token: Option<String>,
    now: Timestamp,
) -> Result<String, String> {
    if format != Format::Table {
        return structured(format, &Listing { api_keys: keys, next_page_token });
    }
    // The `yc` columns, and ENABLED and CONTROLS when a listed key is
    // disabled or has controls (a plain listing keeps the `yc` layout).
    let extra = keys.iter().any(|k| !k.enabled || k.controls.is_some());
    let rows = keys
        .iter()
        .map(|k| {
            let mut row = vec![
                k.id.to_string(),
                short_time(Some(k.created_at)),
                short_time(k.last_used_at),
                k.scopes.to_string(),
                short_time(k.expires_at),
                k.masked_key.to_string(),
                status(k, now).to_owned(),
            ];
            if extra {
                row.push(if k.enabled { "yes" } else { "no" }.to_owned());
                row.push(k.controls.as_deref().map(controls_summary).unwrap_or_default());
            }
            row
        })
        .collect::<Vec<_>>();
    let mut headers = vec!["ID", "CREATED AT", "LAST USED AT", "SCOPES", "EXPIRES AT", "MASKED KEY", "STATUS"];
    if extra {
        headers.extend(["ENABLED", "CONTROLS"]);
    }
    Ok(table(&headers, &rows))
}

/// The controls [`controls_summary`] writes in their flag syntax; any other
/// shows as `name=JSON`.
const SUMMARISED: [&str; 5] = ["external_id", "credits", "rate_limits", "allowed_ips", "metadata"];

/// The CONTROLS cell: `external-id=ID credits=N[/daily:AMOUNT@HH:MM]
/// rate-limits=L,… allow-ip=CIDR,… meta=JSON`, then any other control set
/// as `name=JSON` (its camelCase name and value as the library serialises
/// them), the controls set.
pub(crate) fn controls_summary(c: &KeyControls) -> String {
    let mut parts = Vec::new();
    if let Some(id) = &c.external_id {
        parts.push(format!("external-id={id}"));
    }
    if let Some(credits) = &c.credits {
        parts.push(credits_text(credits));
    }
    if let Some(limits) = &c.rate_limits {
        parts.push(format!("rate-limits={limits}"));
    }
    if let Some(ips) = &c.allowed_ips {
        parts.push(format!("allow-ip={ips}"));
    }
    if let Some(m) = &c.metadata {
        parts.push(format!("meta={}", m.to_json()));
    }
    let others = c.only(|name| !SUMMARISED.contains(&name));
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&others) {
        parts.extend(map.iter().map(|(name, value)| format!("{name}={value}")));
    }
    parts.join(" ")
}

/// `credits=N`, with `/daily:AMOUNT@HH:MM` or `/monthly:…` for a refill.
fn credits_text(c: &Credits) -> String {
    match c.refill {
        Some(r) => format!(
            "credits={}/{}:{}@{:02}:{:02}",
            c.remaining,
            r.period,
            r.amount,
            r.at_second / 3600,
            r.at_second / 60 % 60
        ),
        None => format!("credits={}", c.remaining),
    }
}

/// One key: YAML/JSON of every listed field, or a one-row table.
pub(crate) fn key(format: Format, key: &KeyInfo, now: Timestamp) -> Result<String, String> {
    if format == Format::Table { keys(format, std::slice::from_ref(key), None, now) } else { structured(format, key) }
}

/// The STATUS column: `active`, `grace` (reissued, valid until EXPIRES AT),
/// `expired` or `revoked`.
pub(crate) fn status(key: &KeyInfo, now: Timestamp) -> &'static str {
    if key.status == KeyStatus::Revoked {
        "revoked"
    } else if key.expires_at.is_some_and(|e| now >= e) {
        "expired"
    } else if key.links.replaced_by.is_some() {
        "grace"
    } else {
        "active"
    }
}

/// The scope catalog: `- name` lines as YAML (as `yc iam api-key
/// list-scopes` prints), names as JSON, names and descriptions as a table.
pub(crate) fn scopes(format: Format, scopes: &[ScopeInfo]) -> Result<String, String> {
    if format == Format::Table {
        let rows = scopes.iter().map(|s| vec![s.scope.to_string(), s.description.clone()]).collect::<Vec<_>>();
        return Ok(table(&["SCOPE", "DESCRIPTION"], &rows));
    }
    let names: Vec<&str> = scopes.iter().map(|s| s.scope.as_str()).collect();
    structured(format, &names)
}

/// What `verify` prints for an accepted key.
#[derive(Serialize)]
struct Verified<'a> {
    key_id: String,
    service_account_id: &'a str,
    scopes: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credits_remaining: Option<u64>,
}

/// An accepted key: its id, owner and scopes, and the credits it has left
/// if it has credits.
pub(crate) fn principal(format: Format, p: &Principal, credits_remaining: Option<u64>) -> Result<String, String> {
    let v = Verified {
        key_id: p.key_id().to_string(),
        service_account_id: p.service_account_id().as_str(),
        scopes: p.scopes().iter().map(|s| s.as_str()).collect(),
        expires_at: p.expires_at(),
        credits_remaining,
    };
    if format != Format::Table {
        return structured(format, &v);
    }
    let mut headers = vec!["KEY ID", "SERVICE ACCOUNT ID", "SCOPES", "EXPIRES AT"];
    let mut row = vec![v.key_id, v.service_account_id.to_owned(), p.scopes().to_string(), short_time(v.expires_at)];
    if let Some(n) = credits_remaining {
        headers.push("CREDITS REMAINING");
        row.push(n.to_string());
    }
    Ok(table(&headers, &[row]))
}

/// `2025-09-16 16:56:01` (UTC, seconds), or empty.
fn short_time(t: Option<Timestamp>) -> String {
    let Some(t) = t else { return String::new() };
    let dt = t.to_offset_date_time();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Whether `c` must not reach a terminal as it is: control characters (C0,
/// DEL, C1: a line break forges an output line, ESC starts a terminal escape
/// sequence) and the bidirectional formatting characters (U+202A–U+202E,
/// U+2066–U+2069, the marks U+200E, U+200F and U+061C), which reorder what a
/// terminal shows.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `text` with every character of [`needs_escape`] written as an escape
/// (`\n`, `\t`, `\r`, else `\u{…}`), so what is printed is one line of
/// plain text in logical order; borrowed when nothing needs it.
pub(crate) fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An ASCII table in the `yc` CLI's style: centred headers, cells padded by
/// one space, `+---+` rules above and below the header and at the end.
/// Cells are [`escaped`]: a description or metadata value cannot break a
/// row, drive the terminal or reorder what is shown.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<std::borrow::Cow<'_, str>>> =
        rows.iter().map(|r| r.iter().map(|c| escaped(c)).collect()).collect();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().filter_map(|r| r.get(i)).map(|c| width(c)).chain([width(h)]).max().unwrap_or(0) + 2)
        .collect();
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(*w));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let free = w - width(h);
        out.push_str(&" ".repeat(free / 2));
        out.push_str(h);
        out.push_str(&" ".repeat(free - free / 2));
        out.push('|');
    }
    out.push('\n');
    out.push_str(&rule);
    for row in &rows {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", |c| c.as_ref());
            out.push(' ');
            out.push_str(cell);
            out.push_str(&" ".repeat(w - 1 - width(cell)));
            out.push('|');
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}

/// Writes rendered output to stdout.
pub(crate) fn emit(rendered: Result<String, String>) -> Result<(), Failure> {
    let text = rendered.map_err(|e| Failure::new(OTHER, format!("cannot format the output: {e}")))?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(OTHER, format!("cannot write the output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controls_cell_names_each_control_once_in_flag_syntax() {
        let c = KeyControls::new()
            .external_id("cust_1".parse().unwrap())
            .credits(Credits::new(5).unwrap())
            .rate_limits("api=1/1s".parse().unwrap())
            .allowed_ips("10.0.0.0/8".parse().unwrap())
            .metadata(api_keys::controls::Metadata::parse(r#"{"a":1}"#).unwrap());
        assert_eq!(
            controls_summary(&c),
            r#"external-id=cust_1 credits=5 rate-limits=api=1/1s allow-ip=10.0.0.0/8 meta={"a":1}"#,
            "every control in its own syntax, none again as JSON"
        );
        assert_eq!(controls_summary(&KeyControls::new()), "");
    }

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert!(matches!(escaped("plain name é 日本"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(escaped("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escaped("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escaped("x\u{7f}\u{85}y"), "x\\u{7f}\\u{85}y");
        assert_eq!(escaped("abc\u{202E}fdp.exe"), "abc\\u{202e}fdp.exe");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200E}',
            '\u{200F}', '\u{061C}',
        ] {
            assert!(!escaped(&format!("a{c}b")).contains(c), "{c:?}");
        }
    }

    #[test]
    fn table_cells_are_escaped() {
        let t = table(&["DESCRIPTION"], &[vec!["pay\u{202E}fdp.exe\nforged | row".into()]]);
        assert!(!t.contains('\u{202E}') && t.lines().count() == 5, "{t}");
        assert!(t.contains("| pay\\u{202e}fdp.exe\\nforged | row |"), "{t}");
    }

    #[test]
    fn table_matches_the_yc_layout() {
        let t = table(&["ID", "MASKED KEY"], &[vec!["aje5qvnhl67v00000000".into(), "****rCG02w".into()]]);
        assert_eq!(
            t,
            "+----------------------+------------+\n\
             |          ID          | MASKED KEY |\n\
             +----------------------+------------+\n\
             | aje5qvnhl67v00000000 | ****rCG02w |\n\
             +----------------------+------------+\n"
        );
    }
}
