//! JSON (serde_json) and YAML (serde_norway) deserialisation of
//! `KeyRecord`, `KeyInfo`, `ApiKeySummary` and `CreatedKey` (the
//! `api_key.yaml` shape).
//!
//! Invariant: anything that deserialises re-serialises, deserialises back to
//! an equal value, and re-serialises to the same text (a fixed point after
//! one normalisation). The first input byte picks the type and the format;
//! the rest is the document.
#![no_main]

use std::fmt::Debug;

use api_keys::{ApiKeySummary, CreatedKey, KeyInfo, KeyRecord};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let [selector, doc @ ..] = data else { return };
    let yaml = selector & 1 == 1;
    match (selector >> 1) % 4 {
        0 => round_trip::<KeyRecord>(doc, yaml),
        1 => round_trip::<KeyInfo>(doc, yaml),
        2 => round_trip::<CreatedKey>(doc, yaml),
        _ => round_trip::<ApiKeySummary>(doc, yaml),
    }
});

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(doc: &[u8], yaml: bool) {
    if yaml {
        let Ok(v) = serde_norway::from_slice::<T>(doc) else { return };
        let text = serde_norway::to_string(&v).expect("a deserialised value serialises as YAML");
        let back: T = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("YAML round trip: {e}\n{text}"));
        assert_eq!(back, v, "YAML round trip changed the value:\n{text}");
        assert_eq!(serde_norway::to_string(&back).expect("serialise again"), text, "YAML is not a fixed point");
        // The same value must also survive JSON.
        json_round_trip(&v);
    } else {
        let Ok(v) = serde_json::from_slice::<T>(doc) else { return };
        json_round_trip(&v);
    }
}

fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
    let text = serde_json::to_string(v).expect("a deserialised value serialises as JSON");
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON round trip: {e}\n{text}"));
    assert_eq!(&back, v, "JSON round trip changed the value:\n{text}");
    assert_eq!(serde_json::to_string(&back).expect("serialise again"), text, "JSON is not a fixed point");
}
