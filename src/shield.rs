//! The former path of [`store::shielded`](crate::store::shielded), kept so
//! that code written against it still builds.

pub use crate::store::shielded::{ShieldConfig, ShieldStats, ShieldedStore};
