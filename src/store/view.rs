//! The borrowed view of a record that [`KeyStore::with_record`] lends to
//! the verifier.
//!
//! [`KeyStore::with_record`]: super::KeyStore::with_record

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use internment::Intern;

use crate::clock::Timestamp;
use crate::controls::KeyControls;
use crate::digest::Digest;
use crate::record::{KeyKind, KeyRecord, KeyStatus, ServiceAccountId};
use crate::scope::ScopeSet;
use crate::token::KeyId;

/// The fields of one record that verification reads, lent by a store for
/// the duration of a [`KeyStore::with_record`] call.
///
/// The scope set and the service account id are interned (`&'static`):
/// every distinct value is stored once for the life of the process and
/// never freed, so a [`crate::Principal`] can carry them without a
/// reference count. Their number is bounded by the distinct scope sets and
/// service accounts of the records ever verified or stored, which operators
/// choose (a request cannot add any).
///
/// [`KeyStore::with_record`]: super::KeyStore::with_record
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub(crate) id: KeyId,
    pub(crate) pepper_version: u32,
    pub(crate) digest: &'a Digest,
    pub(crate) status: KeyStatus,
    pub(crate) enabled: bool,
    pub(crate) kind: KeyKind,
    pub(crate) controls: Option<&'a Arc<KeyControls>>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) created_at: Timestamp,
    pub(crate) last_used_at: Option<Timestamp>,
    pub(crate) scopes: &'static ScopeSet,
    pub(crate) service_account_id: &'static ServiceAccountId,
    /// The store's "use noted at" cell for this record, if it keeps one
    /// (unix nanoseconds, `i64::MIN` for never): lets the verifier note a
    /// use of a key that is not flushed yet without a lock.
    pub(crate) seen: Option<&'a AtomicI64>,
}

impl<'a> RecordView<'a> {
    /// The view of a whole record (what the default
    /// [`KeyStore::with_record`] lends). Interns the record's scope set and
    /// service account id: one lookup in a global table each.
    ///
    /// [`KeyStore::with_record`]: super::KeyStore::with_record
    #[must_use]
    pub fn of(record: &'a KeyRecord) -> Self {
        Self::of_interned(record, intern_scopes(&record.scopes), intern_account(&record.service_account_id))
    }

    /// The view of a record whose scope set and service account were
    /// interned already (the cache interns them once, when it fills).
    pub(crate) fn of_interned(
        record: &'a KeyRecord,
        scopes: &'static ScopeSet,
        service_account_id: &'static ServiceAccountId,
    ) -> Self {
        Self {
            id: record.id,
            pepper_version: record.pepper_version,
            digest: &record.digest,
            status: record.status,
            enabled: record.enabled,
            kind: record.kind,
            controls: record.controls.as_ref(),
            expires_at: record.expires_at,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            scopes,
            service_account_id,
            seen: None,
        }
    }

    /// The record's id.
    #[must_use]
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The record's status.
    #[must_use]
    pub fn status(&self) -> KeyStatus {
        self.status
    }

    /// Whether the record is native or imported.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether the key is enabled.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The record's controls, if any is set.
    #[must_use]
    pub fn controls(&self) -> Option<&'a Arc<KeyControls>> {
        self.controls
    }

    /// The record's scopes (interned).
    #[must_use]
    pub fn scopes(&self) -> &'static ScopeSet {
        self.scopes
    }

    /// The record's service account (interned).
    #[must_use]
    pub fn service_account_id(&self) -> &'static ServiceAccountId {
        self.service_account_id
    }
}

/// The process-wide copy of a scope set (see [`RecordView`]).
pub(crate) fn intern_scopes(scopes: &ScopeSet) -> &'static ScopeSet {
    Intern::new(scopes.clone()).as_ref()
}

/// The process-wide copy of a service account id (see [`RecordView`]).
pub(crate) fn intern_account(id: &ServiceAccountId) -> &'static ServiceAccountId {
    Intern::new(id.clone()).as_ref()
}
