//! Scopes: validated dotted names, sets of them, and a configurable catalog
//! of known scopes with implications and defaults.
//!
//! A catalog knows which scopes exist, which umbrella scopes imply narrower
//! ones (`yc.ai.foundationModels.execute` covers `yc.ai.translate.execute`),
//! that `….manage` implies `….read`, and which scopes a key gets when it is
//! created without any. Implications are closed transitively when the catalog
//! is built, so checking a key on the hot path is a merge of two short sorted
//! lists.
//!
//! ```
//! use api_keys::ScopeCatalog;
//!
//! let catalog = ScopeCatalog::builder()
//!     .scope("docs.read", "Read documents")
//!     .scope("docs.manage", "Read and write documents")
//!     .scope("all", "Everything")
//!     .implies("all", ["docs.manage"])
//!     .defaults(["docs.read"])
//!     .build()?;
//! let granted = catalog.resolve(Some(&["all"]))?;
//! let need = catalog.requirement("docs.read")?;      // all ⇒ docs.manage ⇒ docs.read
//! assert!(need.is_satisfied_by(&granted));
//! assert_eq!(catalog.resolve::<&str>(None)?.to_string(), "docs.read");
//! # Ok::<(), api_keys::ScopeError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// Longest accepted scope name in bytes.
pub(crate) const MAX_SCOPE_LEN: usize = 256;
// Most scopes one key may hold.
pub(crate) const MAX_SCOPES_PER_KEY: usize = 100;

/// Why a scope name, list or catalog is invalid. Names in errors are scope
/// names, which are public; they are truncated if over-long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// An empty name or an empty item in a list.
    #[error("scope name is empty")]
    Empty,
    /// Longer than [`Scope::MAX_LEN`].
    #[error("scope name is longer than {MAX_SCOPE_LEN} bytes")]
    TooLong,
    /// Not `segment ("." segment)*` with segments of `[A-Za-z0-9][A-Za-z0-9_-]*`.
    #[error("scope name has an invalid character or empty segment at byte {position}")]
    InvalidCharacter {
        /// Zero-based offset of the problem.
        position: usize,
    },
    /// The scope is not in the catalog.
    #[error("unknown scope `{0}`")]
    Unknown(String),
    /// More than [`ScopeSet::MAX_LEN`] scopes.
    #[error("a key may hold at most {MAX_SCOPES_PER_KEY} scopes")]
    TooMany,
    /// A key was given an explicitly empty scope list.
    #[error("scope list is empty; omit it to get the default scopes")]
    EmptyList,
}

/// A validated scope name such as `yc.monitoring.read`.
///
/// Grammar: one or more segments joined by `.`, each segment starting with an
/// ASCII letter or digit followed by letters, digits, `_` or `-`; at most 256
/// bytes. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(Arc<str>);

impl Scope {
    /// Longest accepted scope name in bytes.
    pub const MAX_LEN: usize = MAX_SCOPE_LEN;

    /// Validates a scope name.
    ///
    /// # Errors
    /// [`ScopeError`] describing the first problem.
    pub fn new(name: &str) -> Result<Self, ScopeError> {
        validate(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Parses a comma-separated list (`a.read, b.write`); spaces and tabs
    /// around items are ignored, empty items are errors.
    ///
    /// # Errors
    /// [`ScopeError`] for the first invalid item.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, ScopeError> {
        text.split(',').map(|item| Self::new(item.trim_matches([' ', '\t']))).collect()
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `x.manage` → `x.read`; `None` for other names.
    fn read_of_manage(&self) -> Option<String> {
        self.0.strip_suffix(".manage").map(|base| format!("{base}.read"))
    }
}

fn validate(name: &str) -> Result<(), ScopeError> {
    if name.is_empty() {
        return Err(ScopeError::Empty);
    }
    if name.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    let mut at_segment_start = true;
    for (i, b) in name.bytes().enumerate() {
        let ok = if at_segment_start {
            b.is_ascii_alphanumeric()
        } else {
            b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
        };
        if !ok {
            return Err(ScopeError::InvalidCharacter { position: i });
        }
        at_segment_start = b == b'.';
    }
    if at_segment_start {
        return Err(ScopeError::InvalidCharacter { position: name.len() - 1 });
    }
    Ok(())
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", &*self.0)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// The scopes granted to a key: sorted, without duplicates, shared on clone.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(Arc<[Scope]>);

impl ScopeSet {
    /// Most scopes one key may hold.
    pub const MAX_LEN: usize = MAX_SCOPES_PER_KEY;

    /// Sorts and de-duplicates `scopes`.
    ///
    /// # Errors
    /// [`ScopeError::TooMany`] above [`ScopeSet::MAX_LEN`].
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, ScopeError> {
        let set: BTreeSet<Scope> = scopes.into_iter().collect();
        if set.len() > MAX_SCOPES_PER_KEY {
            return Err(ScopeError::TooMany);
        }
        Ok(Self(set.into_iter().collect()))
    }

    /// The scopes in ascending order.
    #[must_use]
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// Iterates in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    /// Number of scopes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `name` is literally in the set (no implications).
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(name)).is_ok()
    }

    /// Whether two sets share the same allocation (used to intern sets).
    #[must_use]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ScopeSet {
    /// Comma-separated, as the CLI accepts them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(Scope::as_str)).finish()
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Scope>::deserialize(d)?;
        Self::new(v).map_err(serde::de::Error::custom)
    }
}

/// A catalog entry: a scope and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScopeInfo {
    /// The scope.
    pub scope: Scope,
    /// Human-readable purpose.
    pub description: String,
}

/// A scope a route requires, with every granted scope that satisfies it
/// precomputed (the scope itself and everything that implies it).
///
/// Build it once at start-up with [`ScopeCatalog::requirement`].
#[derive(Clone, PartialEq, Eq)]
pub struct RequiredScope {
    scope: Scope,
    satisfied_by: Arc<[Scope]>,
}

impl RequiredScope {
    /// The scope required.
    #[must_use]
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Granted scopes that satisfy this requirement, ascending.
    #[must_use]
    pub fn satisfied_by(&self) -> &[Scope] {
        &self.satisfied_by
    }

    /// Whether `granted` holds the scope or one implying it. Allocation-free:
    /// a merge of two sorted lists.
    #[must_use]
    pub fn is_satisfied_by(&self, granted: &ScopeSet) -> bool {
        let (mut a, mut b) = (granted.as_slice().iter(), self.satisfied_by.iter());
        let (mut x, mut y) = (a.next(), b.next());
        while let (Some(g), Some(s)) = (x, y) {
            match g.as_str().cmp(s.as_str()) {
                std::cmp::Ordering::Less => x = a.next(),
                std::cmp::Ordering::Greater => y = b.next(),
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

impl fmt::Debug for RequiredScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequiredScope({})", self.scope)
    }
}

/// The known scopes, their implications and the default set.
#[derive(Clone, Debug)]
pub struct ScopeCatalog {
    scopes: Vec<ScopeInfo>,
    /// scope → every scope it implies (transitively, excluding itself).
    closure: BTreeMap<Scope, BTreeSet<Scope>>,
    defaults: ScopeSet,
}

/// Builder for [`ScopeCatalog`]; errors are reported by [`build`](Self::build).
#[derive(Debug, Default)]
pub struct ScopeCatalogBuilder {
    scopes: Vec<(String, String)>,
    implies: Vec<(String, Vec<String>)>,
    defaults: Vec<String>,
    no_manage_read: bool,
}

impl ScopeCatalogBuilder {
    /// Adds a scope with a description.
    #[must_use]
    pub fn scope(mut self, name: &str, description: &str) -> Self {
        self.scopes.push((name.to_owned(), description.to_owned()));
        self
    }

    /// Declares that `umbrella` implies each of `narrower`.
    #[must_use]
    pub fn implies<I, S>(mut self, umbrella: &str, narrower: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let v = narrower.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self.implies.push((umbrella.to_owned(), v));
        self
    }

    /// The scopes a key gets when created without any.
    #[must_use]
    pub fn defaults<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.defaults = names.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// Whether `x.manage` implies `x.read` when both are in the catalog.
    /// Defaults to `true`.
    #[must_use]
    pub fn manage_implies_read(mut self, yes: bool) -> Self {
        self.no_manage_read = !yes;
        self
    }

    /// Validates names, checks implications and defaults refer to known
    /// scopes, and computes the transitive closure.
    ///
    /// # Errors
    /// [`ScopeError`] for an invalid name or [`ScopeError::Unknown`] for an
    /// implication or default that names a scope not added.
    pub fn build(self) -> Result<ScopeCatalog, ScopeError> {
        let mut infos: BTreeMap<Scope, String> = BTreeMap::new();
        for (name, desc) in self.scopes {
            infos.insert(Scope::new(&name)?, desc);
        }
        let known = |name: &str| -> Result<Scope, ScopeError> {
            let s = Scope::new(name)?;
            if infos.contains_key(&s) { Ok(s) } else { Err(ScopeError::Unknown(name.to_owned())) }
        };
        let mut direct: BTreeMap<Scope, BTreeSet<Scope>> = infos.keys().map(|s| (s.clone(), BTreeSet::new())).collect();
        for (umbrella, narrower) in &self.implies {
            let u = known(umbrella)?;
            for n in narrower {
                let n = known(n)?;
                direct.entry(u.clone()).or_default().insert(n);
            }
        }
        if !self.no_manage_read {
            for s in infos.keys() {
                if let Some(read) = s.read_of_manage()
                    && let Ok(r) = known(&read)
                {
                    direct.entry(s.clone()).or_default().insert(r);
                }
            }
        }
        let closure = transitive_closure(&direct);
        let defaults = ScopeSet::new(self.defaults.iter().map(|d| known(d)).collect::<Result<Vec<_>, _>>()?)?;
        let scopes = infos.into_iter().map(|(scope, description)| ScopeInfo { scope, description }).collect();
        Ok(ScopeCatalog { scopes, closure, defaults })
    }
}

fn transitive_closure(direct: &BTreeMap<Scope, BTreeSet<Scope>>) -> BTreeMap<Scope, BTreeSet<Scope>> {
    let mut out = BTreeMap::new();
    for start in direct.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&Scope> = direct[start].iter().collect();
        while let Some(s) = stack.pop() {
            if s != start
                && seen.insert(s.clone())
                && let Some(next) = direct.get(s)
            {
                stack.extend(next.iter());
            }
        }
        out.insert(start.clone(), seen);
    }
    out
}

impl ScopeCatalog {
    /// Starts an empty catalog.
    #[must_use]
    pub fn builder() -> ScopeCatalogBuilder {
        ScopeCatalogBuilder::default()
    }

    /// Every known scope, ascending by name (what `list-scopes` prints).
    #[must_use]
    pub fn list(&self) -> &[ScopeInfo] {
        &self.scopes
    }

    /// The default scope set.
    #[must_use]
    pub fn defaults(&self) -> &ScopeSet {
        &self.defaults
    }

    /// Whether `name` is in the catalog.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.scopes.binary_search_by(|i| i.scope.as_str().cmp(name)).is_ok()
    }

    /// The scopes `scope` implies, transitively, excluding itself.
    #[must_use]
    pub fn implied_by(&self, scope: &str) -> Vec<Scope> {
        self.closure
            .iter()
            .find(|(k, _)| k.as_str() == scope)
            .map(|(_, v)| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The scope set for a new key: `None` gives the defaults; otherwise every
    /// name must be valid and known, and the list must not be empty.
    ///
    /// # Errors
    /// [`ScopeError::Unknown`] naming the first unknown scope, or another
    /// [`ScopeError`] for invalid names.
    pub fn resolve<S: AsRef<str>>(&self, requested: Option<&[S]>) -> Result<ScopeSet, ScopeError> {
        let Some(names) = requested else {
            return Ok(self.defaults.clone());
        };
        if names.is_empty() {
            return Err(ScopeError::EmptyList);
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let s = Scope::new(n.as_ref())?;
            if !self.contains(s.as_str()) {
                return Err(ScopeError::Unknown(truncate(n.as_ref())));
            }
            out.push(s);
        }
        ScopeSet::new(out)
    }

    /// Precomputes a route requirement: the scope and every catalog scope that
    /// implies it.
    ///
    /// # Errors
    /// [`ScopeError::Unknown`] if the scope is not in the catalog (a
    /// configuration mistake better caught at start-up).
    pub fn requirement(&self, name: &str) -> Result<RequiredScope, ScopeError> {
        let scope = Scope::new(name)?;
        if !self.contains(name) {
            return Err(ScopeError::Unknown(truncate(name)));
        }
        let mut by: BTreeSet<Scope> =
            self.closure.iter().filter(|(_, implied)| implied.contains(&scope)).map(|(k, _)| k.clone()).collect();
        by.insert(scope.clone());
        Ok(RequiredScope { scope, satisfied_by: by.into_iter().collect() })
    }
}

fn truncate(name: &str) -> String {
    name.chars().take(MAX_SCOPE_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scope_grammar() {
        for ok in ["yc.search-api.execute", "a", "a.b_c.d-e", "yc.ai.speechkitStt.execute"] {
            assert!(Scope::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(Scope::new(""), Err(ScopeError::Empty));
        assert_eq!(Scope::new(".a"), Err(ScopeError::InvalidCharacter { position: 0 }));
        assert_eq!(Scope::new("a..b"), Err(ScopeError::InvalidCharacter { position: 2 }));
        assert_eq!(Scope::new("a."), Err(ScopeError::InvalidCharacter { position: 1 }));
        assert_eq!(Scope::new("a b"), Err(ScopeError::InvalidCharacter { position: 1 }));
        assert_eq!(Scope::new("a.-b"), Err(ScopeError::InvalidCharacter { position: 2 }));
        assert_eq!(Scope::new("é"), Err(ScopeError::InvalidCharacter { position: 0 }));
        assert_eq!(Scope::new(&"a".repeat(257)), Err(ScopeError::TooLong));
    }

    #[test]
    fn list_parsing() {
        let v = Scope::parse_list("yc.monitoring.read, yc.postbox.send").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(Scope::parse_list("a,,b"), Err(ScopeError::Empty));
        assert_eq!(Scope::parse_list(""), Err(ScopeError::Empty));
    }

    #[test]
    fn unknown_scopes_are_named() {
        let c = ScopeCatalog::builder().scope("yc.monitoring.read", "").build().unwrap();
        assert_eq!(
            c.resolve(Some(&["yc.monitoring.read", "yc.nope.read"])),
            Err(ScopeError::Unknown("yc.nope.read".into()))
        );
        assert_eq!(c.requirement("x.y"), Err(ScopeError::Unknown("x.y".into())));
        assert_eq!(c.resolve::<&str>(Some(&[])), Err(ScopeError::EmptyList));
        assert!(matches!(c.resolve(Some(&["bad scope"])), Err(ScopeError::InvalidCharacter { .. })));
    }

    #[test]
    fn builder_rejects_dangling_references() {
        let e = ScopeCatalog::builder().scope("a", "").implies("a", ["b"]).build().unwrap_err();
        assert_eq!(e, ScopeError::Unknown("b".into()));
        let e = ScopeCatalog::builder().scope("a", "").defaults(["c"]).build().unwrap_err();
        assert_eq!(e, ScopeError::Unknown("c".into()));
    }

    #[test]
    fn manage_read_rule_can_be_disabled() {
        let c = ScopeCatalog::builder()
            .scope("x.manage", "")
            .scope("x.read", "")
            .manage_implies_read(false)
            .build()
            .unwrap();
        let r = c.requirement("x.read").unwrap();
        assert!(!r.is_satisfied_by(&c.resolve(Some(&["x.manage"])).unwrap()));
    }

    #[test]
    fn cycles_are_harmless() {
        let c = ScopeCatalog::builder()
            .scope("a", "")
            .scope("b", "")
            .implies("a", ["b"])
            .implies("b", ["a"])
            .build()
            .unwrap();
        assert_eq!(c.implied_by("a"), vec![Scope::new("b").unwrap()]);
    }

    #[test]
    fn scope_set_sorts_dedups_and_serialises() {
        let s = ScopeSet::new(["b", "a", "b"].map(|n| Scope::new(n).unwrap())).unwrap();
        assert_eq!(s.to_string(), "a,b");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["a","b"]"#);
        assert!(serde_json::from_str::<ScopeSet>(r#"["a","bad name"]"#).is_err());
        let many = (0..101).map(|i| Scope::new(&format!("s{i}")).unwrap());
        assert_eq!(ScopeSet::new(many), Err(ScopeError::TooMany));
    }

    proptest! {
        #[test]
        #[allow(clippy::needless_range_loop)]
        fn closure_is_transitive(edges in proptest::collection::vec((0u8..8, 0u8..8), 0..20)) {
            let mut b = ScopeCatalog::builder();
            for i in 0..8 { b = b.scope(&format!("s{i}"), ""); }
            for (u, n) in &edges { b = b.implies(&format!("s{u}"), [format!("s{n}")]); }
            let c = b.build().unwrap();
            // Reference: reachability by repeated relaxation.
            let mut reach = [[false; 8]; 8];
            for (u, n) in &edges { reach[*u as usize][*n as usize] = true; }
            for k in 0..8 { for i in 0..8 { for j in 0..8 {
                if reach[i][k] && reach[k][j] { reach[i][j] = true; }
            }}}
            for i in 0..8 {
                for j in 0..8 {
                    let req = c.requirement(&format!("s{j}")).unwrap();
                    let granted = c.resolve(Some(&[format!("s{i}")])).unwrap();
                    prop_assert_eq!(req.is_satisfied_by(&granted), i == j || reach[i][j]);
                }
            }
        }

        #[test]
        fn scope_parse_never_panics(s in "\\PC{0,140}") {
            let _ = Scope::new(&s);
            let _ = Scope::parse_list(&s);
        }
    }
}
