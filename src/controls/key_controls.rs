//! [`KeyControls`] (the optional controls of one key, together) and
//! [`ControlsPatch`] (a change of some of them), both written by
//! `key_controls!` from the one list of controls in the module front.

use serde::{Deserialize, Deserializer};

/// Reads a present field, `null` included, as `Some` (so a patch tells a
/// removed control, `Some(None)`, from an untouched one, `None`).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Declares every key control once: `name: Type, enforced = BOOL;` with its
/// docs (`enforced`: whether the verifier checks it). Writes `KeyControls`
/// (a field `Option<Type>` and a builder setter per control) and
/// `ControlsPatch` (a field `Option<Option<Type>>` and a setter per
/// control, and what a patch does to controls). Both serialise in camelCase
/// with absent controls left out, which is also how the stores keep the
/// controls that have no column of their own.
macro_rules! key_controls {
    ($($(#[$doc:meta])* $name:ident: $ty:ty, enforced = $enforced:literal;)+) => {
        /// The optional controls of one key. A key without any has none of
        /// this (`KeyRecord::controls` is `None`).
        #[derive(Debug, Clone, Default, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct KeyControls {
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )+
        }

        impl KeyControls {
            /// No control set, as a constant.
            pub const NONE: Self = Self { $($name: None),+ };

            /// No control set.
            #[must_use]
            pub fn new() -> Self {
                Self::default()
            }

            /// Whether no control is set (such a record stores `None` instead).
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self == &Self::NONE
            }

            /// Whether any control is enforced on verify (allow-list,
            /// credits or rate limits); metadata and the external id are not.
            #[must_use]
            pub fn enforces(&self) -> bool {
                false $(|| ($enforced && self.$name.is_some()))+
            }

            /// `Some(self)` unless empty: what a record stores.
            #[must_use]
            pub fn into_option(self) -> Option<std::sync::Arc<Self>> {
                if self.is_empty() { None } else { Some(std::sync::Arc::new(self)) }
            }

            $(
                #[doc = concat!("Sets `", stringify!($name), "`.")]
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = Some(value);
                    self
                }
            )+
        }

        /// A change of some controls: each field left `None` stays as it
        /// is, `Some(Some(v))` sets it and `Some(None)` removes it. The one
        /// shape of a control change, shared by
        /// [`UpdateRequest`](crate::UpdateRequest),
        /// [`KeyUpdate`](crate::KeyUpdate) and
        /// [`OperationChanges`](crate::OperationChanges) (which logs a
        /// removal as JSON `null`).
        #[derive(Debug, Clone, Default, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct ControlsPatch {
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::controls::key_controls::present")]
                pub $name: Option<Option<$ty>>,
            )+
        }

        impl ControlsPatch {
            /// A patch that changes nothing, as a constant.
            pub const NONE: Self = Self { $($name: None),+ };

            /// A patch that changes nothing yet.
            #[must_use]
            pub fn new() -> Self {
                Self::default()
            }

            $(
                #[doc = concat!("Sets (`Some`) or removes (`None`) `", stringify!($name), "`.")]
                #[must_use]
                pub fn $name(mut self, value: Option<$ty>) -> Self {
                    self.$name = Some(value);
                    self
                }
            )+

            /// Whether the patch changes nothing.
            #[must_use]
            pub fn is_empty(&self) -> bool {
                true $(&& self.$name.is_none())+
            }

            /// `controls` with this patch applied.
            #[must_use]
            pub fn apply_to(&self, controls: &KeyControls) -> KeyControls {
                let mut c = controls.clone();
                $(
                    if let Some(v) = &self.$name {
                        c.$name.clone_from(v);
                    }
                )+
                c
            }

            /// The patch that sets every control `controls` sets (what a
            /// new key's log entry records).
            #[must_use]
            pub fn setting(controls: &KeyControls) -> Self {
                let mut p = Self::NONE;
                $(
                    if let Some(v) = &controls.$name {
                        p.$name = Some(Some(v.clone()));
                    }
                )+
                p
            }

            /// The patch without what `keep` says no to, by control name
            /// (`snake_case`, as the field): the parts of a patch a store
            /// writes to different places.
            #[must_use]
            pub fn only(&self, keep: impl Fn(&str) -> bool) -> Self {
                let mut p = Self::NONE;
                $(
                    if keep(stringify!($name)) {
                        p.$name.clone_from(&self.$name);
                    }
                )+
                p
            }
        }

        impl KeyControls {
            /// These controls without what `keep` says no to, by control
            /// name (`snake_case`, as the field).
            #[must_use]
            pub fn only(&self, keep: impl Fn(&str) -> bool) -> Self {
                let mut c = Self::NONE;
                $(
                    if keep(stringify!($name)) {
                        c.$name.clone_from(&self.$name);
                    }
                )+
                c
            }
        }
    };
}

pub(super) use key_controls;

#[cfg(test)]
mod tests {
    use crate::controls::{ControlsPatch, ExternalId, IpAllowList, KeyControls};

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

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let list: IpAllowList = "10.0.0.0/8".parse().unwrap();
        let start =
            KeyControls::new().external_id(ExternalId::new("t-1").unwrap()).rate_limits("api=100/1s".parse().unwrap());
        assert!(ControlsPatch::new().is_empty());
        assert_eq!(ControlsPatch::new().apply_to(&start), start, "an empty patch changes nothing");
        let patch = ControlsPatch::new().allowed_ips(Some(list.clone())).rate_limits(None);
        assert!(!patch.is_empty());
        let after = patch.apply_to(&start);
        assert_eq!(after.allowed_ips, Some(list));
        assert_eq!(after.rate_limits, None, "removed");
        assert_eq!(after.external_id, start.external_id, "untouched");
        assert_eq!(ControlsPatch::setting(&after).apply_to(&KeyControls::NONE), after);
        let split = patch.only(|name| name == "rate_limits");
        assert_eq!(split, ControlsPatch::new().rate_limits(None));
        assert_eq!(
            after.only(|name| name == "external_id"),
            KeyControls::new().external_id(ExternalId::new("t-1").unwrap())
        );
    }

    #[test]
    fn a_patch_logs_a_removal_as_null_and_reads_it_back() {
        let patch = ControlsPatch::new().allowed_ips(None).external_id(Some(ExternalId::new("x").unwrap()));
        let json = serde_json::to_string(&patch).unwrap();
        assert_eq!(json, r#"{"externalId":"x","allowedIps":null}"#);
        assert_eq!(serde_json::from_str::<ControlsPatch>(&json).unwrap(), patch);
        assert_eq!(serde_json::from_str::<ControlsPatch>("{}").unwrap(), ControlsPatch::NONE);
        assert!(serde_json::from_str::<ControlsPatch>(r#"{"allowedIps":["not an address"]}"#).is_err());
    }
}
