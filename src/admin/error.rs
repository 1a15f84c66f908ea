//! The error body of every failed call: `{code, message, details}` with a
//! `google.rpc.Code` and the matching HTTP status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access_binding::AccessBindingError;
use crate::manager::ManageError;
use crate::resource::ResourceError;
use crate::store::StoreError;

/// The `google.rpc.Code`s this API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// 3: a bad request (bad JSON, wrong type, unknown field or scope, past
    /// expiry, oversized body) — HTTP 400.
    InvalidArgument,
    /// 5: no such key — HTTP 404.
    NotFound,
    /// 6: the thing exists already (an imported secret) — HTTP 409.
    AlreadyExists,
    /// 7: the caller may not do this (another service account, a
    /// creation policy) — HTTP 403.
    PermissionDenied,
    /// 8: too many failed authentications from the client's address —
    /// HTTP 429.
    ResourceExhausted,
    /// 9: the key's state forbids the change (revoked, reissued), or an
    /// `Idempotency-Key` reused with another request — HTTP 400, as
    /// `google.rpc.Code` maps it.
    FailedPrecondition,
    /// 10: a concurrent request with the same `Idempotency-Key` landed its
    /// change first (answered with its replay whenever it can be read) —
    /// HTTP 409.
    Aborted,
    /// 13: an internal failure (the OS random generator) — HTTP 500.
    Internal,
    /// 14: the store is unavailable; retry later — HTTP 503.
    Unavailable,
    /// 16: no or bad credentials — HTTP 401.
    Unauthenticated,
}

impl Code {
    /// The numeric `google.rpc.Code`.
    #[must_use]
    pub fn number(self) -> i32 {
        match self {
            Self::InvalidArgument => 3,
            Self::NotFound => 5,
            Self::AlreadyExists => 6,
            Self::PermissionDenied => 7,
            Self::ResourceExhausted => 8,
            Self::FailedPrecondition => 9,
            Self::Aborted => 10,
            Self::Internal => 13,
            Self::Unavailable => 14,
            Self::Unauthenticated => 16,
        }
    }

    /// The HTTP status that goes with it.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidArgument | Self::FailedPrecondition => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists | Self::Aborted => StatusCode::CONFLICT,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A failed call, rendered as `{code, message, details: []}`. Messages
/// come from this crate's own error texts, which never hold a secret or
/// digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: Code,
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with `code`'s usual status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, status: code.status(), message: message.into() }
    }

    /// A bad request (code 3).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// A body larger than `limit` bytes: code 3 (HTTP 400).
    #[must_use]
    pub fn too_large(limit: usize) -> Self {
        Self::invalid(format!("request body is larger than {limit} bytes"))
    }

    /// The code.
    #[must_use]
    pub fn code(&self) -> Code {
        self.code
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        let code = match &e {
            ManageError::InvalidField(_)
            | ManageError::Scope(_)
            | ManageError::AlreadyExpired(_)
            | ManageError::InvalidImportedSecret(_)
            | ManageError::EmptyUpdate
            | ManageError::InvalidControl(_) => Code::InvalidArgument,
            ManageError::PolicyDenied(_) => Code::PermissionDenied,
            ManageError::NotFound(_) => Code::NotFound,
            ManageError::Conflict { .. } => Code::FailedPrecondition,
            ManageError::AlreadyImported => Code::AlreadyExists,
            ManageError::Store(s) => return Self::from_store(s),
            ManageError::Random(_) => Code::Internal,
            ManageError::AccessPolicy(_) => Code::FailedPrecondition,
            ManageError::Resource(r) => resource_code(r),
        };
        Self::new(code, e.to_string())
    }
}

/// The code of a refused resource change.
fn resource_code(e: &ResourceError) -> Code {
    match e {
        ResourceError::NotFound { .. }
        | ResourceError::ParentNotFound { .. }
        | ResourceError::PolicyNotBound { .. } => Code::NotFound,
        ResourceError::AlreadyExists { .. } | ResourceError::NameTaken { .. } => Code::AlreadyExists,
        ResourceError::HasChildren { .. } => Code::FailedPrecondition,
        ResourceError::AccessBinding(b) => match b {
            AccessBindingError::NotBound { .. } => Code::NotFound,
            AccessBindingError::LastAdmin(_) => Code::FailedPrecondition,
            _ => Code::InvalidArgument,
        },
        ResourceError::Random(_) => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

impl ApiError {
    fn from_store(e: &StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => Self::new(Code::NotFound, format!("key {id} not found")),
            StoreError::Conflict { .. } => Self::new(Code::FailedPrecondition, e.to_string()),
            StoreError::IdempotencyKeyTaken => {
                Self::new(Code::Aborted, "a concurrent request with this Idempotency-Key made its change first")
            }
            // The store's own text may name the backend; the client learns
            // only that it is unavailable.
            _ => Self::new(Code::Unavailable, "the key store is unavailable; retry later"),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { code: self.code.number(), message: &self.message, details: [] };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.code == Code::Unauthenticated {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"iam\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::KeyId;

    #[test]
    fn manage_errors_map_to_codes_and_statuses() {
        let id = KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap();
        let cases = [
            (ManageError::NotFound(id), 5, 404),
            (ManageError::Conflict { id, reason: "the key is revoked" }, 9, 400),
            (ManageError::AlreadyImported, 6, 409),
            (ManageError::EmptyUpdate, 3, 400),
            (ManageError::Store(StoreError::unavailable("pg: password authentication failed")), 14, 503),
            (ManageError::Store(StoreError::IdempotencyKeyTaken), 10, 409),
        ];
        for (e, code, status) in cases {
            let api = ApiError::from(e);
            assert_eq!((api.code().number(), api.status().as_u16()), (code, status), "{api:?}");
            assert!(!api.message().contains("password"));
        }
        assert_eq!(ApiError::too_large(10).status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::new(Code::ResourceExhausted, "slow down").status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
