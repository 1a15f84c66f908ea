//! The error type shared by every layer that wraps a driver's error.

/// A boxed error from a backend driver or another library, kept as the
/// `source()` of this crate's errors ([`StoreError::Unavailable`](crate::StoreError::Unavailable),
/// [`BusError::Unavailable`](crate::store::invalidation::BusError::Unavailable), …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
