//! The former path of [`store::any`](crate::store::any) and
//! [`store::invalidation::any`](crate::store::invalidation::any), kept so
//! that code written against it still builds.

pub use crate::store::any::*;
#[cfg(all(feature = "cache", any(feature = "postgres", feature = "redis")))]
pub use crate::store::invalidation::any::{AnyBus, AnySubscription};
