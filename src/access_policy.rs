//! Access policies: rules bound on an organization, a cloud or a folder that
//! forbid or limit the API keys of every service account below, in the
//! cloud's shape (an [`AccessPolicyBinding`] is a template id with string
//! parameters).
//!
//! | template id | parameters | what it does |
//! |---|---|---|
//! | `iam.denyServiceAccountApiKeysCreation` | none | refuses creating (and importing) keys |
//! | `iam.apiKeys.maxLifetime` | `max_lifetime`: `<n>s`, `m`, `h` or `d` | refuses a new, reissued or re-dated key whose expiry is absent or later than now plus the maximum, and refuses **at use** any key older than the maximum, also keys created before the binding |
//! | `iam.apiKeys.allowedScopes` | `scopes`: names joined by `,` | refuses keys holding another scope |
//! | `iam.apiKeys.requireExpiry` | none | refuses new and reissued keys without an expiry |
//!
//! A service account's [`EffectivePolicy`] is every binding on its path
//! (its folder, cloud and organization); each binding is checked, so the
//! most restrictive wins, and a refusal names the binding and where it is
//! bound. A reissue is not a creation: the deny template lets a key be
//! rotated.
//!
//! ```
//! use std::time::Duration;
//! use api_keys::access_policy::{AccessPolicyBinding, EffectivePolicy, KeyAction};
//! use api_keys::resource::{ResourceId, ResourceRef};
//! use api_keys::Timestamp;
//!
//! let ninety_days = AccessPolicyBinding::new("iam.apiKeys.maxLifetime").with_parameter("max_lifetime", "90d");
//! let folder = ResourceRef::Folder(ResourceId::default_folder());
//! let policy = EffectivePolicy::from_bindings([(folder, ninety_days)])?;
//! let now = Timestamp::now();
//! // A key without an expiry is refused, one within 90 days is not.
//! assert!(policy.check(KeyAction::Create, &[], None, now).is_err());
//! let soon = now.checked_add(Duration::from_secs(86_400)).ok_or("overflow")?;
//! assert!(policy.check(KeyAction::Create, &[], Some(soon), now).is_ok());
//! assert_eq!(policy.max_lifetime(), Some(Duration::from_secs(90 * 86_400)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::resource::ResourceRef;

mod lifetimes;
pub use lifetimes::LifetimeLimits;

/// The template refusing key creation.
pub const DENY_KEY_CREATION: &str = "iam.denyServiceAccountApiKeysCreation";
/// The template limiting a key's lifetime (parameter [`MAX_LIFETIME`]).
pub const MAX_KEY_LIFETIME: &str = "iam.apiKeys.maxLifetime";
/// The template limiting a key's scopes (parameter [`SCOPES`]).
pub const ALLOWED_SCOPES: &str = "iam.apiKeys.allowedScopes";
/// The template requiring an expiry on new keys.
pub const REQUIRE_EXPIRY: &str = "iam.apiKeys.requireExpiry";
/// The parameter of [`MAX_KEY_LIFETIME`]: `<n>s`, `m`, `h` or `d`.
pub const MAX_LIFETIME: &str = "max_lifetime";
/// The parameter of [`ALLOWED_SCOPES`]: scope names joined by `,`.
pub const SCOPES: &str = "scopes";

/// Most parameters one binding may carry, and most bytes in one.
const MAX_PARAMETERS: usize = 16;
const MAX_PARAMETER_LEN: usize = 4096;

/// A template an access policy is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AccessPolicyTemplate {
    /// Its id.
    pub id: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The parameters it takes (all required).
    pub parameters: &'static [&'static str],
}

/// Every template this library enforces.
pub const TEMPLATES: &[AccessPolicyTemplate] = &[
    AccessPolicyTemplate {
        id: DENY_KEY_CREATION,
        description: "Forbids creating API keys for service accounts below.",
        parameters: &[],
    },
    AccessPolicyTemplate {
        id: MAX_KEY_LIFETIME,
        description: "Limits the lifetime of API keys below: keys must expire within max_lifetime, and older keys \
                      are refused when used.",
        parameters: &[MAX_LIFETIME],
    },
    AccessPolicyTemplate {
        id: ALLOWED_SCOPES,
        description: "API keys below may hold only these scopes (comma-separated).",
        parameters: &[SCOPES],
    },
    AccessPolicyTemplate {
        id: REQUIRE_EXPIRY,
        description: "New API keys below must have an expiry.",
        parameters: &[],
    },
];

/// Why a binding is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessPolicyError {
    /// No such template.
    #[error("unknown access policy template `{0}`")]
    UnknownTemplate(String),
    /// A parameter the template needs is missing.
    #[error("access policy template `{template}` needs parameter `{parameter}`")]
    MissingParameter {
        /// The template.
        template: &'static str,
        /// The parameter.
        parameter: &'static str,
    },
    /// A parameter the template does not take, too many parameters, or a
    /// value over 4096 bytes.
    #[error("access policy template `{template}`: parameter `{parameter}` is not taken or its value is too long")]
    UnknownParameter {
        /// The template.
        template: &'static str,
        /// The parameter (cut to 64 characters).
        parameter: String,
    },
    /// A parameter's value is invalid.
    #[error("parameter `{parameter}` of access policy template `{template}`: {reason}")]
    InvalidParameter {
        /// The template.
        template: &'static str,
        /// The parameter.
        parameter: &'static str,
        /// Why.
        reason: String,
    },
    /// Access policies bind on organizations, clouds and folders only.
    #[error("access policies bind on organizations, clouds and folders, not on {0}")]
    NotBindable(crate::resource::ResourceKind),
}

/// One access policy as bound: a template id and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccessPolicyBinding {
    /// The template's id.
    pub access_policy_template_id: String,
    /// Its parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

impl AccessPolicyBinding {
    /// A binding of `template` with no parameters.
    #[must_use]
    pub fn new(template: impl Into<String>) -> Self {
        Self { access_policy_template_id: template.into(), parameters: BTreeMap::new() }
    }

    /// Adds a parameter.
    #[must_use]
    pub fn with_parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.insert(name.into(), value.into());
        self
    }

    /// The rule it stands for.
    ///
    /// # Errors
    /// [`AccessPolicyError`] for an unknown template or a missing, unknown
    /// or invalid parameter.
    pub fn rule(&self) -> Result<PolicyRule, AccessPolicyError> {
        let template = TEMPLATES
            .iter()
            .find(|t| t.id == self.access_policy_template_id)
            .ok_or_else(|| AccessPolicyError::UnknownTemplate(cut(&self.access_policy_template_id)))?;
        if self.parameters.len() > MAX_PARAMETERS {
            return Err(AccessPolicyError::UnknownParameter { template: template.id, parameter: "(too many)".into() });
        }
        for (name, value) in &self.parameters {
            if !template.parameters.contains(&name.as_str()) || value.len() > MAX_PARAMETER_LEN {
                return Err(AccessPolicyError::UnknownParameter { template: template.id, parameter: cut(name) });
            }
        }
        let param = |parameter: &'static str| {
            self.parameters
                .get(parameter)
                .map(String::as_str)
                .ok_or(AccessPolicyError::MissingParameter { template: template.id, parameter })
        };
        Ok(match template.id {
            DENY_KEY_CREATION => PolicyRule::DenyKeyCreation,
            REQUIRE_EXPIRY => PolicyRule::RequireExpiry,
            MAX_KEY_LIFETIME => {
                let d = crate::parse_duration(param(MAX_LIFETIME)?).map_err(|reason| {
                    AccessPolicyError::InvalidParameter { template: template.id, parameter: MAX_LIFETIME, reason }
                })?;
                if d.is_zero() {
                    let reason = "must be longer than zero".to_owned();
                    return Err(AccessPolicyError::InvalidParameter {
                        template: template.id,
                        parameter: MAX_LIFETIME,
                        reason,
                    });
                }
                PolicyRule::MaxLifetime(d)
            }
            _ => {
                let scopes: BTreeSet<String> =
                    param(SCOPES)?.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if scopes.is_empty() {
                    let reason = "names no scope".to_owned();
                    return Err(AccessPolicyError::InvalidParameter {
                        template: template.id,
                        parameter: SCOPES,
                        reason,
                    });
                }
                PolicyRule::AllowedScopes(scopes)
            }
        })
    }
}

/// At most 64 characters of untrusted text, for an error message.
fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

/// What one binding enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRule {
    /// No new keys.
    DenyKeyCreation,
    /// Keys live at most this long.
    MaxLifetime(Duration),
    /// Keys hold only these scopes.
    AllowedScopes(BTreeSet<String>),
    /// New keys must expire.
    RequireExpiry,
}

/// What is being done to a key, as policies tell actions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAction {
    /// A new key (created or imported).
    Create,
    /// A key reissued (a new secret for an existing key).
    Reissue,
    /// A key's expiry or scopes changed.
    Update,
}

/// A refusal by an access policy: names the template and where it is bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by access policy `{template}` bound on {resource}: {reason}")]
#[non_exhaustive]
pub struct AccessPolicyDenied {
    /// The template.
    pub template: String,
    /// The resource it is bound on.
    pub resource: ResourceRef,
    /// Why.
    pub reason: String,
}

/// Every binding on a service account's path, each as its rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectivePolicy {
    rules: Vec<(ResourceRef, String, PolicyRule)>,
}

impl EffectivePolicy {
    /// The policy of `bindings` (each with the resource it is bound on).
    ///
    /// # Errors
    /// [`AccessPolicyError`] for a binding that is not valid (never stored
    /// by this library: a store holding one is refused as corrupt by its
    /// caller).
    pub fn from_bindings(
        bindings: impl IntoIterator<Item = (ResourceRef, AccessPolicyBinding)>,
    ) -> Result<Self, AccessPolicyError> {
        let rules = bindings
            .into_iter()
            .map(|(on, b)| Ok((on, b.access_policy_template_id.clone(), b.rule()?)))
            .collect::<Result<_, AccessPolicyError>>()?;
        Ok(Self { rules })
    }

    /// Whether no binding applies.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The shortest maximum lifetime bound, if any.
    #[must_use]
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.rules
            .iter()
            .filter_map(|(_, _, r)| match r {
                PolicyRule::MaxLifetime(d) => Some(*d),
                _ => None,
            })
            .min()
    }

    /// Checks an `action` leaving a key with `scopes` and `expires_at` at
    /// `now` against every binding (for [`KeyAction::Update`], pass the
    /// scopes and expiry only when the update sets them).
    ///
    /// # Errors
    /// [`AccessPolicyDenied`] naming the first binding that refuses.
    pub fn check(
        &self,
        action: KeyAction,
        scopes: &[&str],
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), AccessPolicyDenied> {
        for (on, template, rule) in &self.rules {
            let deny = |reason: String| AccessPolicyDenied { template: template.clone(), resource: on.clone(), reason };
            match rule {
                PolicyRule::DenyKeyCreation if action == KeyAction::Create => {
                    return Err(deny("creating API keys is forbidden".to_owned()));
                }
                PolicyRule::RequireExpiry if action != KeyAction::Update && expires_at.is_none() => {
                    return Err(deny("a new API key must have an expiry".to_owned()));
                }
                PolicyRule::MaxLifetime(max) => {
                    let latest = now.saturating_add(*max);
                    match expires_at {
                        None if action != KeyAction::Update => {
                            return Err(deny(format!("keys must expire within {}", Lifetime(*max))));
                        }
                        Some(e) if e > latest => {
                            return Err(deny(format!("keys must expire within {} (by {latest})", Lifetime(*max))));
                        }
                        _ => {}
                    }
                }
                PolicyRule::AllowedScopes(allowed) => {
                    if let Some(s) = scopes.iter().find(|s| !allowed.contains(**s)) {
                        return Err(deny(format!("scope `{s}` is not allowed")));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A duration as policies write it (`90d`, `12h`, `30m`, `45s`).
struct Lifetime(Duration);

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            _ if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceId;

    fn folder() -> ResourceRef {
        ResourceRef::Folder(ResourceId::default_folder())
    }

    fn org() -> ResourceRef {
        ResourceRef::Organization(ResourceId::default_organization())
    }

    #[test]
    fn every_template_parses_and_bad_parameters_are_refused() {
        assert_eq!(AccessPolicyBinding::new(DENY_KEY_CREATION).rule(), Ok(PolicyRule::DenyKeyCreation));
        assert_eq!(
            AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter(MAX_LIFETIME, "2h").rule(),
            Ok(PolicyRule::MaxLifetime(Duration::from_secs(7200)))
        );
        let scopes = AccessPolicyBinding::new(ALLOWED_SCOPES).with_parameter(SCOPES, "a.b, c.d").rule();
        assert_eq!(scopes, Ok(PolicyRule::AllowedScopes(["a.b".to_owned(), "c.d".to_owned()].into())));
        assert!(matches!(AccessPolicyBinding::new("nope").rule(), Err(AccessPolicyError::UnknownTemplate(_))));
        assert!(matches!(
            AccessPolicyBinding::new(MAX_KEY_LIFETIME).rule(),
            Err(AccessPolicyError::MissingParameter { .. })
        ));
        for bad in ["0", "-1d", "d", "1y", "99999999999999999999d"] {
            let b = AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter(MAX_LIFETIME, bad);
            assert!(matches!(b.rule(), Err(AccessPolicyError::InvalidParameter { .. })), "{bad}");
        }
        let extra = AccessPolicyBinding::new(DENY_KEY_CREATION).with_parameter("x", "1");
        assert!(matches!(extra.rule(), Err(AccessPolicyError::UnknownParameter { .. })));
        let empty = AccessPolicyBinding::new(ALLOWED_SCOPES).with_parameter(SCOPES, " , ");
        assert!(matches!(empty.rule(), Err(AccessPolicyError::InvalidParameter { .. })));
    }

    #[test]
    fn the_most_restrictive_binding_wins_and_is_named() {
        let now = Timestamp::from_unix_nanos(1_000_000_000_000_000_000);
        let day = Duration::from_secs(86_400);
        let policy = EffectivePolicy::from_bindings([
            (org(), AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter(MAX_LIFETIME, "30d")),
            (folder(), AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter(MAX_LIFETIME, "7d")),
            (folder(), AccessPolicyBinding::new(ALLOWED_SCOPES).with_parameter(SCOPES, "a,b")),
        ])
        .unwrap();
        assert_eq!(policy.max_lifetime(), Some(7 * day));
        let in_10_days = now.checked_add(10 * day);
        let refused = policy.check(KeyAction::Create, &["a"], in_10_days, now).unwrap_err();
        assert_eq!(refused.resource, folder());
        assert!(refused.to_string().contains("7d"), "{refused}");
        assert!(policy.check(KeyAction::Create, &["a"], now.checked_add(day), now).is_ok());
        let scope = policy.check(KeyAction::Create, &["a", "c"], now.checked_add(day), now).unwrap_err();
        assert!(scope.reason.contains("`c`"));
        // An update that leaves the expiry alone is not refused for it.
        assert!(policy.check(KeyAction::Update, &[], None, now).is_ok());
        assert!(policy.check(KeyAction::Update, &[], in_10_days, now).is_err());
    }

    #[test]
    fn deny_refuses_creation_but_not_rotation() {
        let now = Timestamp::from_unix_nanos(1);
        let policy = EffectivePolicy::from_bindings([(org(), AccessPolicyBinding::new(DENY_KEY_CREATION))]).unwrap();
        let refused = policy.check(KeyAction::Create, &[], None, now).unwrap_err();
        assert_eq!(refused.template, DENY_KEY_CREATION);
        assert!(refused.to_string().contains("organization defaultorganization0"), "{refused}");
        assert!(policy.check(KeyAction::Reissue, &[], None, now).is_ok());
        let expiry = EffectivePolicy::from_bindings([(org(), AccessPolicyBinding::new(REQUIRE_EXPIRY))]).unwrap();
        assert!(expiry.check(KeyAction::Reissue, &[], None, now).is_err());
        assert!(expiry.check(KeyAction::Create, &[], Some(Timestamp::from_unix_nanos(2)), now).is_ok());
        assert!(EffectivePolicy::default().is_empty());
    }
}
