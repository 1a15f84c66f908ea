//! Scope names, scope lists and small catalogs built from fuzzed names,
//! implication edges and defaults.
//!
//! Invariants: `Scope::new` accepts exactly the documented grammar (checked
//! against an independent reference); accepted names round-trip through
//! `Display`, JSON and YAML; `Scope::parse_list` accepts a list iff every
//! trimmed item is valid and returns those items in order; building a
//! catalog never panics, succeeds iff every name is valid, and its
//! `requirement`/`resolve` answers match a reference transitive closure.
#![no_main]

use std::collections::BTreeMap;

use api_keys::{Scope, ScopeCatalog, ScopeSet};
use libfuzzer_sys::fuzz_target;

/// The input, one item per line:
/// line 1 a scope name, line 2 a comma-separated list, then catalog lines:
/// `s<name>[|<description>]` adds a scope, `i<u><n>...` says scope number
/// `u` implies scopes `n`... (each a byte, taken modulo the number of
/// scopes), `d<n>...` sets the defaults, `m` turns `manage ⇒ read` off.
#[derive(Debug, Default)]
struct Input<'a> {
    name: String,
    list: String,
    names: Vec<String>,
    descriptions: Vec<String>,
    edges: Vec<(u8, &'a [u8])>,
    defaults: &'a [u8],
    manage_implies_read: bool,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn decode(data: &[u8]) -> Input<'_> {
    let mut lines = data.split(|&b| b == b'\n');
    let mut input = Input {
        name: text(lines.next().unwrap_or_default()),
        list: text(lines.next().unwrap_or_default()),
        manage_implies_read: true,
        ..Input::default()
    };
    for line in lines {
        match line {
            [b's', rest @ ..] if input.names.len() < 12 => {
                let mut parts = rest.splitn(2, |&b| b == b'|');
                input.names.push(text(parts.next().unwrap_or_default()));
                input.descriptions.push(text(parts.next().unwrap_or_default()));
            }
            [b'i', u, rest @ ..] if input.edges.len() < 24 => input.edges.push((*u, rest)),
            [b'd', rest @ ..] => input.defaults = rest,
            [b'm', ..] => input.manage_implies_read = false,
            _ => {}
        }
    }
    input
}

fuzz_target!(|data: &[u8]| {
    let input = decode(data);
    check_name(&input.name);
    check_list(&input.list);
    check_catalog(&input);
});

/// `segment ("." segment)*`, segment = `[A-Za-z0-9][A-Za-z0-9_-]*`, ≤ 128 bytes.
fn valid(name: &str) -> bool {
    name.len() <= Scope::MAX_LEN
        && name.split('.').all(|seg| {
            let mut b = seg.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphanumeric())
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        })
}

fn check_name(name: &str) {
    match Scope::new(name) {
        Ok(s) => {
            assert!(valid(name), "accepted invalid scope {name:?}");
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<Scope>().ok().as_ref(), Some(&s));
            let json = serde_json::to_string(&s).expect("serialise scope");
            assert_eq!(serde_json::from_str::<Scope>(&json).expect("JSON round trip"), s);
            let yaml = serde_norway::to_string(&s).expect("serialise scope as YAML");
            assert_eq!(serde_norway::from_str::<Scope>(&yaml).expect("YAML round trip"), s, "{yaml}");
        }
        Err(_) => assert!(!valid(name), "rejected valid scope {name:?}"),
    }
}

fn check_list(text: &str) {
    let items: Vec<&str> = text.split(',').map(|i| i.trim_matches([' ', '\t'])).collect();
    match Scope::parse_list(text) {
        Ok(v) => {
            assert_eq!(v.len(), items.len());
            for (s, item) in v.iter().zip(&items) {
                assert_eq!(s.as_str(), *item);
            }
            if let Ok(set) = ScopeSet::new(v.iter().cloned()) {
                let json = serde_json::to_string(&set).expect("serialise set");
                assert_eq!(serde_json::from_str::<ScopeSet>(&json).expect("set JSON round trip"), set);
                let yaml = serde_norway::to_string(&set).expect("serialise set as YAML");
                assert_eq!(serde_norway::from_str::<ScopeSet>(&yaml).expect("set YAML round trip"), set, "{yaml}");
                // Display is the comma list, which parses back to the same set.
                let back = Scope::parse_list(&set.to_string()).expect("Display parses back");
                assert_eq!(ScopeSet::new(back).expect("same size"), set);
            }
        }
        Err(_) => assert!(!items.iter().all(|i| valid(i)), "rejected a valid list {text:?}"),
    }
}

fn check_catalog(input: &Input<'_>) {
    let names: Vec<&str> = input.names.iter().map(String::as_str).collect();
    let mut b = ScopeCatalog::builder().manage_implies_read(input.manage_implies_read);
    for (n, d) in names.iter().zip(&input.descriptions) {
        b = b.scope(n, d);
    }
    let at = |i: u8| names.get(usize::from(i) % names.len().max(1)).copied();
    let mut edges: Vec<(&str, &str)> = Vec::new();
    for (u, ns) in &input.edges {
        let Some(u) = at(*u) else { continue };
        let targets: Vec<&str> = ns.iter().take(4).filter_map(|n| at(*n)).collect();
        edges.extend(targets.iter().map(|n| (u, *n)));
        b = b.implies(u, targets);
    }
    let defaults: Vec<&str> = input.defaults.iter().take(8).filter_map(|d| at(*d)).collect();
    b = b.defaults(&defaults);
    let built = b.build();
    let all_valid = names.iter().all(|n| valid(n));
    let catalog = match built {
        Ok(c) => {
            assert!(all_valid, "catalog accepted an invalid name in {names:?}");
            c
        }
        Err(_) => {
            assert!(!all_valid, "catalog refused valid names {names:?}");
            return;
        }
    };

    // Reference closure over the distinct names.
    let mut idx: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &names {
        let next = idx.len();
        idx.entry(n).or_insert(next);
    }
    let k = idx.len();
    let mut reach = vec![vec![false; k]; k];
    for (u, n) in &edges {
        reach[idx[u]][idx[n]] = true;
    }
    if input.manage_implies_read {
        for (n, &i) in &idx {
            if let Some(base) = n.strip_suffix(".manage")
                && let Some(&j) = idx.get(format!("{base}.read").as_str())
            {
                reach[i][j] = true;
            }
        }
    }
    for m in 0..k {
        for i in 0..k {
            for j in 0..k {
                if reach[i][m] && reach[m][j] {
                    reach[i][j] = true;
                }
            }
        }
    }
    assert_eq!(catalog.list().len(), k);
    assert!(catalog.list().windows(2).all(|w| w[0].scope < w[1].scope), "list is sorted and unique");
    for (gi, &i) in &idx {
        assert!(catalog.contains(gi));
        let granted = catalog.resolve(Some(&[*gi])).expect("known scope resolves");
        for (ri, &j) in &idx {
            let need = catalog.requirement(ri).expect("known scope is a requirement");
            assert_eq!(need.is_satisfied_by(&granted), i == j || reach[i][j], "{gi} ⇒ {ri}? edges {edges:?}");
        }
    }
    let d = catalog.defaults();
    assert!(d.iter().all(|s| defaults.contains(&s.as_str())));
    assert_eq!(catalog.resolve::<&str>(None).expect("defaults"), *d);
    for info in catalog.list() {
        let json = serde_json::to_string(info).expect("serialise scope info");
        assert_eq!(&serde_json::from_str::<api_keys::ScopeInfo>(&json).expect("info round trip"), info);
    }
}
