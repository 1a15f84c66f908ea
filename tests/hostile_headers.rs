//! The hostile `Authorization` table at the parser and verifier level. The
//! same table runs over HTTP in the middleware tests.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;

use api_keys::header::{Credentials, DEFAULT_MAX_HEADER_LEN, HeaderError, parse_authorization};
use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers};
use common::hostile::{CASES, Outcome, Parse, render};

fn parse_kind(r: Result<Credentials<'_>, HeaderError>) -> Parse {
    match r {
        Ok(Credentials::ApiKey(_)) => Parse::ApiKey,
        Ok(Credentials::Bearer(_)) => Parse::Bearer,
        Err(HeaderError::Empty) => Parse::Empty,
        Err(HeaderError::TooLong { .. }) => Parse::TooLong,
        Err(HeaderError::InvalidByte { .. }) => Parse::InvalidByte,
        Err(HeaderError::InvalidScheme) => Parse::InvalidScheme,
        Err(HeaderError::UnsupportedScheme) => Parse::UnsupportedScheme,
        Err(HeaderError::MissingCredentials) => Parse::MissingCredentials,
        Err(HeaderError::InvalidCredentials) => Parse::InvalidCredentials,
        Err(other) => panic!("unexpected header error {other:?}"),
    }
}

#[tokio::test]
async fn every_hostile_value_gets_its_documented_outcome() {
    assert!(CASES.len() >= 40, "the table must hold at least 40 values");
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [3u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    let verifier = manager.verifier().build();
    let key = manager.create(CreateRequest::new("sa")).await.unwrap();
    let secret = key.secret.expose_secret();

    let mut failures = Vec::new();
    for case in CASES {
        let value = render(case.value, secret);
        let parsed = parse_kind(parse_authorization(&value, DEFAULT_MAX_HEADER_LEN));
        if parsed != case.parse {
            failures.push(format!("{}: parser gave {parsed:?}, table says {:?}", case.name, case.parse));
        }
        let got = match verifier.verify(&value, None).await {
            Ok(p) => {
                assert_eq!(p.key_id(), &key.api_key.id);
                Outcome::Accept
            }
            Err(e) => {
                // Error text never carries the presented key.
                assert!(!e.to_string().contains(&secret[24..67]), "{}: error echoes the secret", case.name);
                Outcome::Reject(e.client_class())
            }
        };
        if got != case.outcome {
            failures.push(format!("{}: verifier gave {got:?}, table says {:?}", case.name, case.outcome));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
