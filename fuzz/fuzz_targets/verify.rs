//! Arbitrary `Authorization` bytes through the full `Verifier` over a memory
//! store seeded with a few keys: an active native key, a revoked one, an
//! expired one, and an imported opaque secret.
//!
//! Invariants: `verify` returns a typed result and never panics; it accepts
//! **only** a seeded, active secret, presented as `Api-Key` (any ASCII case),
//! one or more spaces and exactly that secret, with only spaces and tabs
//! around the whole value (the documented trimming); and such a value is
//! always accepted when the key holds the required scope. Revoked and
//! expired keys are refused with their own variant. No error's text contains
//! a seeded secret.
//!
//! Input: byte 0 picks the required scope and whether imported keys are
//! accepted; the rest is the header, except that `0xFF` expands to the
//! seeded secret named by the next byte, and `0xFE s p v` to that secret
//! with byte `p` replaced by `v` — so the fuzzer can build near-misses of
//! real keys, which it could never guess.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use api_keys::{
    Clock, CreateRequest, KeyManager, KeyStore, ManualClock, MemoryStore, Pepper, Peppers, RequiredScope, ScopeCatalog,
    Secret, Timestamp, Verifier, VerifyError,
};
use libfuzzer_sys::fuzz_target;

const IMPORTED: &str = "AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
const MAX: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Active,
    Revoked,
    Expired,
}

struct Seeded {
    secret: Vec<u8>,
    id: api_keys::KeyId,
    state: State,
    imported: bool,
    /// Whether it satisfies each requirement of `World::required`.
    satisfies: [bool; 3],
}

struct World {
    keys: Vec<Seeded>,
    verifier: Verifier<MemoryStore>,
    strict: Verifier<MemoryStore>,
    required: [RequiredScope; 3],
}

fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory-store future was pending"),
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).expect("in range")));
        let manager = KeyManager::builder(
            Arc::new(MemoryStore::new()),
            Peppers::single(Pepper::new(1, [7u8; 32]).expect("pepper")),
            ScopeCatalog::builder()
                .scope("yc.logging.write", "")
                .scope("yc.monitoring.manage", "")
                .scope("yc.monitoring.read", "")
                .scope("yc.postbox.send", "")
                .build()
                .expect("catalog"),
        )
        .clock(clock.clone())
        .build();
        let catalog = manager.catalog();
        let required = ["yc.monitoring.read", "yc.postbox.send", "yc.logging.write"]
            .map(|s| catalog.requirement(s).expect("catalog scope"));
        let mut keys = Vec::new();
        let mut native = |scopes: &[&str], expires: Option<Timestamp>, state: State| {
            let mut req = CreateRequest::new("fuzz-robot").scopes(scopes.iter().copied());
            if let Some(t) = expires {
                req = req.expires_at(t);
            }
            let created = now(manager.create(req)).expect("create");
            let granted = catalog.resolve(Some(scopes)).expect("scopes");
            keys.push(Seeded {
                secret: created.secret.expose_secret().as_bytes().to_vec(),
                id: created.api_key.id,
                state,
                imported: false,
                satisfies: required.clone().map(|r| r.is_satisfied_by(&granted)),
            });
        };
        native(&["yc.monitoring.manage", "yc.postbox.send"], None, State::Active);
        native(&["yc.logging.write"], None, State::Revoked);
        native(&["yc.monitoring.read"], Some(clock.now().saturating_add(Duration::from_secs(3600))), State::Expired);
        let info = now(manager.import(
            CreateRequest::new("fuzz-importer").scopes(["yc.monitoring.read"]),
            &Secret::from(IMPORTED.to_owned()),
        ))
        .expect("import");
        let granted = catalog.resolve(Some(&["yc.monitoring.read"])).expect("scopes");
        keys.push(Seeded {
            secret: IMPORTED.as_bytes().to_vec(),
            id: info.id,
            state: State::Active,
            imported: true,
            satisfies: required.clone().map(|r| r.is_satisfied_by(&granted)),
        });
        now(manager.store().revoke(&keys[1].id)).expect("revoke");
        clock.advance(Duration::from_secs(7200));
        let verifier = manager.verifier().accept_imported(true).build();
        let strict = manager.verifier().accept_imported(false).build();
        World { keys, verifier, strict, required }
    })
}

/// Expands the `0xFF` / `0xFE` markers into seeded secrets.
fn build_header(w: &World, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 80);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            0xFF if i + 1 < body.len() => {
                out.extend_from_slice(&w.keys[usize::from(body[i + 1]) % w.keys.len()].secret);
                i += 2;
            }
            0xFE if i + 3 < body.len() => {
                let mut s = w.keys[usize::from(body[i + 1]) % w.keys.len()].secret.clone();
                let p = usize::from(body[i + 2]) % s.len();
                s[p] = body[i + 3];
                out.extend_from_slice(&s);
                i += 4;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The seeded key this value presents per the documented grammar, if any:
/// `OWS "Api-Key" 1*SP secret OWS` with OWS = spaces and tabs, scheme in any
/// ASCII case. Written independently of the crate's parser.
fn presented<'w>(w: &'w World, header: &[u8]) -> Option<&'w Seeded> {
    if header.len() > MAX {
        return None;
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = header.iter().position(|b| !is_ows(b))?;
    let end = header.iter().rposition(|b| !is_ows(b))? + 1;
    let v = &header[start..end];
    if v.len() < 8 || !v[..7].eq_ignore_ascii_case(b"api-key") {
        return None;
    }
    let rest = &v[7..];
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    if spaces == 0 {
        return None;
    }
    let key = &rest[spaces..];
    w.keys.iter().find(|k| k.secret == key)
}

fuzz_target!(|data: &[u8]| {
    let [mode, body @ ..] = data else { return };
    let w = world();
    let header = build_header(w, body);
    let scope = usize::from(mode & 3);
    let required = w.required.get(scope);
    let strict = mode & 4 != 0;
    let verifier = if strict { &w.strict } else { &w.verifier };
    let result = now(verifier.verify(&header, required));
    let expected = presented(w, &header);
    match (&result, expected) {
        (Ok(p), Some(k)) => {
            assert_eq!(k.state, State::Active, "accepted a {:?} key", k.state);
            assert!(!(strict && k.imported), "accepted an imported key with accept_imported(false)");
            assert_eq!(p.key_id(), &k.id, "principal is the presented key");
            if let Some(i) = required.map(|_| scope) {
                assert!(k.satisfies[i], "accepted without the required scope");
            }
        }
        (Ok(p), None) => panic!(
            "accepted a header that does not present a seeded secret exactly: {:?} → {:?}",
            String::from_utf8_lossy(&header),
            p.key_id()
        ),
        (Err(e), Some(k)) => {
            let scope_ok = required.is_none() || k.satisfies[scope];
            match (k.state, e) {
                (State::Revoked, VerifyError::Revoked(id)) | (State::Expired, VerifyError::Expired(id)) => {
                    assert_eq!(id, &k.id);
                }
                (State::Active, VerifyError::InsufficientScope { key, .. }) if !scope_ok => assert_eq!(key, &k.id),
                (State::Active, VerifyError::UnknownKey(None) | VerifyError::MalformedKey(_))
                    if strict && k.imported => {}
                (state, e) => {
                    panic!("a well-formed {state:?} seeded key was refused with {e:?} (scope ok: {scope_ok})")
                }
            }
        }
        (Err(_), None) => {}
    }
    if let Err(e) = &result {
        let text = format!("{e} {e:?}");
        for k in &w.keys {
            let secret = std::str::from_utf8(&k.secret).unwrap_or_default();
            let hidden = if k.imported { secret } else { &secret[24..67] };
            assert!(!text.contains(hidden), "error text leaks a secret: {text}");
        }
        let _ = e.client_class().status();
    }
});
