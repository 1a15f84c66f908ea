//! Why a `keyctl` command failed: the exit codes, [`Failure`] (a message
//! and a code), and the mapping of the library's errors onto them.

use std::error::Error;

use api_keys::resource::ResourceError;
use api_keys::store::any::SetupError;
use api_keys::{ManageError, StoreError};

use crate::pepper::PepperSetupError;

/// Exit code: `verify` rejected the key, or another failure.
pub(crate) const OTHER: u8 = 1;
/// Exit code: bad input or configuration.
pub(crate) const BAD_INPUT: u8 = 2;
/// Exit code: no such key or resource (a service account, folder, …).
pub(crate) const NOT_FOUND: u8 = 3;
/// Exit code: refused by policy (an access policy included), a conflict
/// (a taken name, a folder that is not empty), or a duplicate.
pub(crate) const REFUSED: u8 = 4;
/// Exit code: the store is unavailable.
pub(crate) const UNAVAILABLE: u8 = 5;

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure exiting with `code`, printing `message`.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The exit code.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// What to print.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        // Some drivers repeat their source in their own message.
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

pub(crate) fn store_failure(e: &StoreError) -> Failure {
    let code = match e {
        StoreError::NotFound(_) => NOT_FOUND,
        StoreError::Duplicate(_) | StoreError::Conflict { .. } => REFUSED,
        StoreError::Resource(r) => return resource_failure(r),
        _ => UNAVAILABLE,
    };
    Failure::new(code, chain(e))
}

pub(crate) fn manage_failure(e: &ManageError) -> Failure {
    let code = match e {
        ManageError::InvalidField(_)
        | ManageError::Scope(_)
        | ManageError::AlreadyExpired(_)
        | ManageError::InvalidImportedSecret(_)
        | ManageError::EmptyUpdate
        | ManageError::InvalidControl(_) => BAD_INPUT,
        ManageError::NotFound(_) => NOT_FOUND,
        ManageError::PolicyDenied(_)
        | ManageError::AccessPolicy(_)
        | ManageError::Conflict { .. }
        | ManageError::AlreadyImported => REFUSED,
        ManageError::Resource(r) => return resource_failure(r),
        ManageError::Store(s) => return store_failure(s),
        _ => OTHER,
    };
    Failure::new(code, chain(e))
}

/// A resource change refused: a missing resource or parent is not found
/// (3); a taken name or id, a non-empty resource or an unbound policy is
/// refused (4); anything else is bad input (2).
pub(crate) fn resource_failure(e: &ResourceError) -> Failure {
    let code = match e {
        ResourceError::NotFound { .. } | ResourceError::ParentNotFound { .. } => NOT_FOUND,
        ResourceError::AlreadyExists { .. }
        | ResourceError::NameTaken { .. }
        | ResourceError::HasChildren { .. }
        | ResourceError::PolicyNotBound { .. } => REFUSED,
        ResourceError::Random(_) => OTHER,
        _ => BAD_INPUT,
    };
    Failure::new(code, chain(e))
}

pub(crate) fn setup_failure(e: &SetupError) -> Failure {
    let code = match e {
        SetupError::Store { .. } => UNAVAILABLE,
        _ => BAD_INPUT,
    };
    Failure::new(code, chain(e))
}

pub(crate) fn pepper_failure(e: &PepperSetupError) -> Failure {
    match e {
        PepperSetupError::Url(e) => setup_failure(e),
        PepperSetupError::Random(_) => Failure::new(OTHER, chain(e)),
        _ => Failure::new(BAD_INPUT, chain(e)),
    }
}
