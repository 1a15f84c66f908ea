//! [`KeyControls`]: the optional controls of one key, together.

use serde::{Deserialize, Serialize};

use super::credits::Credits;
use super::ip::IpAllowList;
use super::metadata::{ExternalId, Metadata};
use super::rate::RateLimits;

/// The optional controls of one key. A key without any has none of this
/// (`KeyRecord::controls` is `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KeyControls {
    /// Application-defined JSON object, returned on the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The application's own owner (customer, tenant) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    /// Client addresses the key may be used from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<IpAllowList>,
    /// Usage credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// Named rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
}

impl KeyControls {
    /// No control set, as a constant.
    pub const NONE: Self =
        Self { metadata: None, external_id: None, allowed_ips: None, credits: None, rate_limits: None };

    /// No control set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no control is set (such a record stores `None` instead).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether any control is enforced on verify (allow-list, credits or
    /// rate limits); metadata and the external id are not.
    #[must_use]
    pub fn enforces(&self) -> bool {
        self.allowed_ips.is_some() || self.credits.is_some() || self.rate_limits.is_some()
    }

    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, m: Metadata) -> Self {
        self.metadata = Some(m);
        self
    }

    /// Sets the external owner id.
    #[must_use]
    pub fn external_id(mut self, id: ExternalId) -> Self {
        self.external_id = Some(id);
        self
    }

    /// Sets the IP allow-list.
    #[must_use]
    pub fn allowed_ips(mut self, list: IpAllowList) -> Self {
        self.allowed_ips = Some(list);
        self
    }

    /// Sets the usage credits.
    #[must_use]
    pub fn credits(mut self, c: Credits) -> Self {
        self.credits = Some(c);
        self
    }

    /// Sets the rate limits.
    #[must_use]
    pub fn rate_limits(mut self, l: RateLimits) -> Self {
        self.rate_limits = Some(l);
        self
    }

    /// `Some(self)` unless empty: what a record stores.
    #[must_use]
    pub fn into_option(self) -> Option<std::sync::Arc<Self>> {
        if self.is_empty() { None } else { Some(std::sync::Arc::new(self)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_controls_are_stored_as_none() {
        assert!(KeyControls::new().is_empty());
        assert!(KeyControls::new().into_option().is_none());
        let c = KeyControls::new().external_id(ExternalId::new("cust_42").unwrap());
        assert!(!c.enforces(), "an external id is not enforced");
        assert!(c.into_option().is_some());
    }

    #[test]
    fn json_shape_is_camel_case_and_omits_absent_controls() {
        let c = KeyControls::new()
            .external_id(ExternalId::new("t-1").unwrap())
            .allowed_ips("10.0.0.0/8,2001:db8::/32".parse().unwrap())
            .rate_limits("api=100/1s:burst=20".parse().unwrap());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["externalId"], "t-1");
        assert_eq!(v["allowedIps"], serde_json::json!(["10.0.0.0/8", "2001:db8::/32"]));
        assert_eq!(v["rateLimits"], serde_json::json!(["api=100/1s:burst=20"]));
        assert!(v.get("credits").is_none() && v.get("metadata").is_none());
        assert_eq!(serde_json::from_value::<KeyControls>(v).unwrap(), c);
    }
}
