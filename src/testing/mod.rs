//! Test helpers (feature `test-util`): the generic [`KeyStore`](crate::KeyStore) conformance
//! suite, [`FaultyStore`], a wrapper that injects store failures, and
//! [`scope_catalog`], a ready-made scope catalog to test with.
//!
//! Every store in this crate — memory, SQLite, PostgreSQL, Redis — passes
//! [`conformance::run_all`], so "works on SQLite" means "works on Redis".
//! Third-party stores can run the same suite from their own tests:
//!
//! ```
//! use api_keys::MemoryStore;
//! use api_keys::testing::conformance;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // In your crate: `#[tokio::test] async fn conformance() { … }` with your store.
//! let store = MemoryStore::new();
//! conformance::run_all(&store).await; // panics, naming the check, on the first violation
//! # });
//! ```
//!
//! Or one check at a time, for a test per check:
//!
//! ```
//! use api_keys::MemoryStore;
//! use api_keys::testing::conformance::{self, Check};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! conformance::run(&store, Check::ReissueIsAtomic).await;
//! for check in Check::ALL {
//!     println!("{}", check.name());
//! }
//! # });
//! ```
//!
//! The suite builds every record with fresh random ids, digests and service
//! account ids, so it can run against a shared backend, several times, and
//! in parallel; it never lists, deletes or changes keys it did not create.
//! The checks are plain futures ([`Check::ReissueRace`](conformance::Check::ReissueRace)
//! joins two with `tokio::join!`, which needs no runtime); your store may
//! need one.

mod catalog;
pub mod conformance;
mod faulty;

pub use catalog::scope_catalog;
pub use faulty::{Fault, FaultyStore, InjectedFault, Op};

#[cfg(test)]
mod tests {
    use super::conformance::{self, Check};
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn the_memory_store_conforms() {
        conformance::run_all(&MemoryStore::new()).await;
    }

    #[test]
    fn check_names_are_unique_snake_case() {
        let mut names: Vec<&str> = Check::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Check::ALL.len());
    }

    /// The suite must be able to fail: a store that drops last-used updates
    /// is caught.
    #[tokio::test]
    #[should_panic(expected = "[touch_last_used]")]
    async fn a_broken_store_fails_the_suite() {
        conformance::run(&ForgetfulTouch(MemoryStore::new()), Check::TouchLastUsed).await;
    }

    /// A store that keeps the trait's default `ids_after` cannot list its
    /// ids: the default answers unavailable, and the suite says so.
    #[tokio::test]
    #[should_panic(expected = "[ids_after]")]
    async fn a_store_without_an_id_listing_fails_the_ids_check() {
        use crate::KeyStore as _;
        let store = NoIdListing(MemoryStore::new());
        let e = store.ids_after(None, 10).await.unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
        conformance::run(&store, Check::IdsAfter).await;
    }

    struct NoIdListing(MemoryStore);

    impl crate::KeyStore for NoIdListing {
        crate::forward_key_store!(self => self.0; all except [ids_after]);
    }

    struct ForgetfulTouch(MemoryStore);

    impl crate::KeyStore for ForgetfulTouch {
        crate::forward_key_store!(self => self.0; all except [touch_last_used]);

        fn touch_last_used(
            &self,
            _: &[(crate::KeyId, crate::Timestamp)],
        ) -> impl std::future::Future<Output = Result<(), crate::StoreError>> + Send {
            std::future::ready(Ok(()))
        }
    }
}
