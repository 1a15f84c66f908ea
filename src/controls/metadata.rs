//! Owner metadata (a small JSON object) and the external owner id.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::ControlError;

/// A small application-defined JSON object kept with a key and returned on
/// the [`Principal`](crate::Principal) and in listings: at most
/// [`Metadata::MAX_BYTES`] bytes as compact JSON, nested at most
/// [`Metadata::MAX_DEPTH`] levels. Not for secrets: it is shown to anyone
/// who may list the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata(Arc<Map<String, Value>>);

impl Metadata {
    /// Largest metadata, in bytes of compact JSON.
    pub const MAX_BYTES: usize = super::error::METADATA_MAX_BYTES;
    /// Deepest nesting (the object itself is level 1).
    pub const MAX_DEPTH: usize = super::error::METADATA_MAX_DEPTH;

    /// Validates a JSON value as metadata.
    ///
    /// # Errors
    /// [`ControlError::Metadata`] unless `value` is an object within the
    /// size and depth caps.
    pub fn new(value: Value) -> Result<Self, ControlError> {
        let Value::Object(map) = value else { return Err(ControlError::Metadata) };
        let fits = depth_within(&map, Self::MAX_DEPTH)
            && serde_json::to_vec(&map).is_ok_and(|bytes| bytes.len() <= Self::MAX_BYTES);
        if fits { Ok(Self(Arc::new(map))) } else { Err(ControlError::Metadata) }
    }

    /// Parses metadata from JSON text (at most [`Metadata::MAX_BYTES`]
    /// bytes are read as JSON; longer text is refused unparsed).
    ///
    /// # Errors
    /// [`ControlError::Metadata`].
    pub fn parse(text: &str) -> Result<Self, ControlError> {
        if text.len() > Self::MAX_BYTES * 2 {
            return Err(ControlError::Metadata);
        }
        let value: Value = serde_json::from_str(text).map_err(|_| ControlError::Metadata)?;
        Self::new(value)
    }

    /// The object.
    #[must_use]
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Compact JSON text.
    #[must_use]
    pub fn to_json(&self) -> String {
        Value::Object((*self.0).clone()).to_string()
    }
}

/// Whether no value in `map` nests deeper than `levels` (counting `map`).
fn depth_within(map: &Map<String, Value>, levels: usize) -> bool {
    levels > 0 && map.values().all(|v| value_depth_within(v, levels - 1))
}

fn value_depth_within(v: &Value, levels: usize) -> bool {
    match v {
        Value::Object(m) => depth_within(m, levels),
        Value::Array(items) => levels > 0 && items.iter().all(|i| value_depth_within(i, levels - 1)),
        _ => true,
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metadata({})", self.to_json())
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The application's own owner id for a key (a customer or tenant id):
/// 1 to [`ExternalId::MAX_LEN`] characters of `[A-Za-z0-9_.:@-]`. Listings
/// can be filtered by it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalId(Arc<str>);

impl ExternalId {
    /// Longest external id, in bytes.
    pub const MAX_LEN: usize = super::error::EXTERNAL_ID_MAX_LEN;

    /// Validates an id.
    ///
    /// # Errors
    /// [`ControlError::ExternalId`].
    pub fn new(id: &str) -> Result<Self, ControlError> {
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'));
        if ok { Ok(Self(Arc::from(id))) } else { Err(ControlError::ExternalId) }
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExternalId({})", &*self.0)
    }
}

impl std::str::FromStr for ExternalId {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ExternalId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_caps_size_and_depth() {
        let m = Metadata::parse(r#"{"plan":"pro","limits":{"seats":5}}"#).unwrap();
        assert_eq!(m.as_map()["plan"], "pro");
        assert_eq!(m.to_json(), r#"{"limits":{"seats":5},"plan":"pro"}"#);
        assert_eq!(Metadata::new(json!([1, 2])), Err(ControlError::Metadata), "not an object");
        assert_eq!(Metadata::parse("{"), Err(ControlError::Metadata));
        let big = json!({ "x": "a".repeat(Metadata::MAX_BYTES) });
        assert_eq!(Metadata::new(big), Err(ControlError::Metadata));
        // Eight levels fit, nine do not.
        let mut v = json!({});
        for _ in 0..7 {
            v = json!({ "a": v });
        }
        assert!(Metadata::new(v.clone()).is_ok());
        assert_eq!(Metadata::new(json!({ "a": v })), Err(ControlError::Metadata));
        assert!(Metadata::new(json!({ "a": [[[[[[[1]]]]]]] })).is_ok());
        assert!(Metadata::new(json!({ "a": [[[[[[[[1]]]]]]]] })).is_err());
    }

    #[test]
    fn metadata_json_round_trip() {
        let m = Metadata::new(json!({"tier": 2})).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Metadata>(&text).unwrap(), m);
        assert!(serde_json::from_str::<Metadata>("\"x\"").is_err());
    }

    #[test]
    fn external_id_alphabet() {
        assert!(ExternalId::new("cust_42").is_ok());
        assert!(ExternalId::new("org:acme@eu-1.v2").is_ok());
        for bad in ["", "a b", "é", "x/y"] {
            assert_eq!(ExternalId::new(bad), Err(ControlError::ExternalId), "{bad:?}");
        }
        assert!(ExternalId::new(&"a".repeat(129)).is_err());
    }
}
