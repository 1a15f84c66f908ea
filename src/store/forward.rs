//! [`forward_key_store!`](crate::forward_key_store): the [`KeyStore`](crate::KeyStore)
//! methods a wrapper passes on unchanged, written once.
//!
//! A wrapper store (the shield, the cache, the fault injector, a test or
//! metrics wrapper, [`AnyStore`](crate::store::any::AnyStore), `Arc<S>`)
//! changes a few methods and hands every other one to the store it wraps.
//! The macro holds the one copy of each forwarded signature and the one list
//! of forwarded methods, so a wrapper names only the methods it writes by
//! hand (`all except [...]`), and a new trait method is forwarded by every
//! wrapper once it is added here.
//!
//! # Adding a method to `KeyStore`
//! 1. declare it in the trait (`key_store.rs`), with a default unless every
//!    backend must write it;
//! 2. here: its signature (an `@method` rule), its name in `@list` and one
//!    `@if_same` line.
//!
//! Every wrapper then forwards it, unless the wrapper names it in its
//! `except` list and writes it by hand.

/// Implements, inside an `impl KeyStore for …` block, the
/// [`KeyStore`](crate::KeyStore) methods a wrapper passes on, by calling the
/// same method of an inner store with the same arguments.
///
/// Forms:
///
/// - `forward_key_store!(self => self.inner; all except [get, commit]);`
///   forwards every forwardable method but the ones named (which the
///   wrapper writes by hand, or leaves to the trait's default) to the store
///   the expression (`self.inner`, `(**self)`, `self.0`) names. The call's
///   future is returned as it is: nothing is added before, after or around
///   it;
/// - `forward_key_store!(self => self.inner, around(method, call) => EXPR; all except [...]);`
///   as above, but each forwarded call is handed to `EXPR`, which sees
///   `method` (the method's name, a `&'static str`) and `call` (a closure
///   that starts the inner call) and returns the future (a fault injector
///   or a meter); `lend_now`, which is synchronous, is never wrapped;
/// - `forward_key_store!(match self: AnyStore { Memory, Sqlite, … } => all except [...]);`
///   forwards to the store held by whichever variant of a one-field enum
///   `self` is (a variant may carry `#[cfg(…)]`);
/// - `forward_key_store!(self => self.inner; get_many, list, …);` forwards
///   only the methods named (a wrapper that must see a new method before it
///   forwards it).
///
/// `insert`, `revoke`, `delete` and `reissue` are never forwarded: they are
/// the trait's `commit` calls, so a wrapper sees them in its own `commit`.
/// Attributes (doc comments) before a name of the last form apply to that
/// method. Not a stable interface: it follows the trait.
#[doc(hidden)]
#[macro_export]
macro_rules! forward_key_store {
    // Every method but the named ones.
    ($self:ident => $inner:expr; all except [$($skip:ident),* $(,)?]) => {
        $crate::forward_key_store!(@all $self (to $inner) [$($skip)*]);
    };
    ($self:ident => $inner:expr, around($name:ident, $call:ident) => $wrap:expr; all except [$($skip:ident),* $(,)?]) => {
        $crate::forward_key_store!(@all $self (around $inner, $name, $call, $wrap) [$($skip)*]);
    };
    (match $self:ident : $enum:ident $variants:tt => all except [$($skip:ident),* $(,)?]) => {
        $crate::forward_key_store!(@all $self (match $self $enum $variants) [$($skip)*]);
    };
    // Only the named methods.
    (match $self:ident : $enum:ident $variants:tt => $($(#[$attr:meta])* $method:ident),+ $(,)?) => {
        $($crate::forward_key_store!(@method [$(#[$attr])*] $method $self (match $self $enum $variants));)+
    };
    ($self:ident => $inner:expr; $($(#[$attr:meta])* $method:ident),+ $(,)?) => {
        $($crate::forward_key_store!(@method [$(#[$attr])*] $method $self (to $inner));)+
    };
    () => {};

    // The forwardable methods: the one list.
    (@list $($then:tt)*) => {
        $crate::forward_key_store!($($then)* [
            get get_by_digest get_many list touch_last_used commit operations pepper_fingerprint spend_credits
            list_by_external_id list_expiring ids_after operation with_record lend_now idempotency
            feed_head changes_after prune_feed
            commit_resource resource list_resources find_resource resource_operations
            access_policy_bindings access_bindings resource_head resource_operation
        ]);
    };
    // `$yes` if the two names are the same method, else `$no` (each a
    // bracketed invocation of this macro).
    (@if_same get get $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same get_by_digest get_by_digest $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same get_many get_many $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same list list $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same touch_last_used touch_last_used $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same commit commit $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same operations operations $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same pepper_fingerprint pepper_fingerprint $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same spend_credits spend_credits $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same list_by_external_id list_by_external_id $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same list_expiring list_expiring $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same ids_after ids_after $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same operation operation $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same with_record with_record $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same lend_now lend_now $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same idempotency idempotency $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same feed_head feed_head $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same changes_after changes_after $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same prune_feed prune_feed $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same commit_resource commit_resource $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same resource resource $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same list_resources list_resources $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same find_resource find_resource $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same resource_operations resource_operations $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same access_policy_bindings access_policy_bindings $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same access_bindings access_bindings $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same resource_head resource_head $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same resource_operation resource_operation $yes:tt $no:tt) => { $crate::forward_key_store! $yes; };
    (@if_same $a:ident $b:ident $yes:tt $no:tt) => { $crate::forward_key_store! $no; };

    // `all except`: each name in the list must be a forwardable method;
    // each forwardable method not in the list is forwarded.
    (@all $self:ident $to:tt $skip:tt) => {
        $crate::forward_key_store!(@list @known_all $skip);
        $crate::forward_key_store!(@list @each $self $to $skip);
    };
    (@known_all [$($skip:ident)*] $all:tt) => {
        $($crate::forward_key_store!(@known $skip $all);)*
    };
    (@known $skip:ident []) => {
        ::core::compile_error!(::core::concat!(
            "forward_key_store!: `",
            ::core::stringify!($skip),
            "` is not a forwardable KeyStore method"
        ));
    };
    (@known $skip:ident [$head:ident $($rest:ident)*]) => {
        $crate::forward_key_store!(@if_same $skip $head [] [@known $skip [$($rest)*]]);
    };
    (@each $self:ident $to:tt $skip:tt [$($method:ident)*]) => {
        $($crate::forward_key_store!(@unless $method $skip $self $to);)*
    };
    (@unless $method:ident [] $self:ident $to:tt) => {
        $crate::forward_key_store!(@method [] $method $self $to);
    };
    (@unless $method:ident [$head:ident $($rest:ident)*] $self:ident $to:tt) => {
        $crate::forward_key_store!(@if_same $method $head [] [@unless $method [$($rest)*] $self $to]);
    };

    // A forwarding method: the trait's signature and the call.
    (@fn [$($attr:tt)*] $self:ident $to:tt $method:ident($($arg:ident: $ty:ty),*) -> $out:ty) => {
        $($attr)*
        fn $method(
            &$self,
            $($arg: $ty),*
        ) -> impl ::core::future::Future<Output = ::core::result::Result<$out, $crate::StoreError>> + Send {
            $crate::forward_key_store!(@call $to $method($($arg),*))
        }
    };

    // The call itself, given the method and its arguments.
    (@call (to $inner:expr) $method:ident $args:tt) => {{
        #[allow(unused_imports, reason = "the caller may have the trait in scope already")]
        use $crate::KeyStore as _;
        $inner.$method $args
    }};
    (@call (around $inner:expr, $name:ident, $call:ident, $wrap:expr) $method:ident $args:tt) => {{
        #[allow(unused_imports, reason = "the caller may have the trait in scope already")]
        use $crate::KeyStore as _;
        let $name: &'static str = ::core::stringify!($method);
        let $call = move || $inner.$method $args;
        $wrap
    }};
    (@call (match $self:ident $enum:ident { $($(#[$cfg:meta])* $variant:ident),+ $(,)? }) $method:ident $args:tt) => {
        async move {
            #[allow(unused_imports, reason = "the caller may have the trait in scope already")]
            use $crate::KeyStore as _;
            match $self {
                $($(#[$cfg])* $enum::$variant(store) => store.$method $args.await,)+
            }
        }
    };

    // One signature per method, as the trait declares it: the arguments and
    // what the future's `Ok` holds.
    (@method $attr:tt get $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            get(id: &$crate::KeyId) -> Option<::std::sync::Arc<$crate::KeyRecord>>);
    };
    (@method $attr:tt get_by_digest $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            get_by_digest(digest: &$crate::Digest) -> Option<::std::sync::Arc<$crate::KeyRecord>>);
    };
    (@method $attr:tt get_many $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            get_many(ids: &[$crate::KeyId]) -> Vec<Option<::std::sync::Arc<$crate::KeyRecord>>>);
    };
    (@method $attr:tt list $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            list(service_account: &$crate::ServiceAccountId, page: $crate::PageRequest)
                -> $crate::Page<$crate::KeyRecord>);
    };
    (@method $attr:tt touch_last_used $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            touch_last_used(updates: &[($crate::KeyId, $crate::Timestamp)]) -> ());
    };
    (@method $attr:tt commit $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            commit(change: $crate::Change, log: &[$crate::LogEntry]) -> Option<$crate::KeyRecord>);
    };
    (@method $attr:tt operations $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            operations(key: &$crate::KeyId, page: $crate::PageRequest<$crate::OperationCursor>)
                -> $crate::OperationPage);
    };
    (@method $attr:tt pepper_fingerprint $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            pepper_fingerprint(version: u32, proposed: $crate::Digest) -> $crate::Digest);
    };
    (@method $attr:tt spend_credits $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            spend_credits(id: &$crate::KeyId, cost: u64, due: Option<$crate::Timestamp>)
                -> $crate::controls::CreditSpend);
    };
    (@method $attr:tt list_by_external_id $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            list_by_external_id(external_id: &$crate::controls::ExternalId, page: $crate::PageRequest)
                -> $crate::Page<$crate::KeyRecord>);
    };
    (@method $attr:tt list_expiring $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            list_expiring(window: ::core::ops::Range<$crate::Timestamp>, page: $crate::PageRequest)
                -> $crate::Page<$crate::KeyRecord>);
    };
    (@method $attr:tt ids_after $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            ids_after(after: Option<$crate::KeyId>, limit: u32) -> Vec<$crate::KeyId>);
    };
    (@method $attr:tt feed_head $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            feed_head() -> Option<$crate::store::feed::FeedPosition>);
    };
    (@method $attr:tt changes_after $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            changes_after(at: $crate::store::feed::FeedPosition, limit: u32) -> $crate::store::feed::FeedRead);
    };
    (@method $attr:tt prune_feed $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            prune_feed(before: $crate::Timestamp, limit: u32) -> u64);
    };
    (@method $attr:tt operation $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            operation(id: &$crate::OperationId) -> Option<$crate::Operation>);
    };
    (@method $attr:tt idempotency $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            idempotency(
                actor: &$crate::Actor,
                key: &$crate::store::idempotency::IdempotencyKey,
                now: $crate::Timestamp
            ) -> Option<$crate::store::idempotency::IdempotencyRecord>);
    };
    (@method $attr:tt commit_resource $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            commit_resource(change: $crate::resource::ResourceChange, log: &$crate::resource::ResourceLogEntry)
                -> $crate::resource::ResourceCommit);
    };
    (@method $attr:tt resource $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            resource(target: &$crate::resource::ResourceRef) -> Option<$crate::resource::Resource>);
    };
    (@method $attr:tt list_resources $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            list_resources(
                listing: &$crate::resource::ResourceListing,
                order: $crate::resource::ResourceOrder,
                page: $crate::PageRequest<$crate::resource::ResourceCursor>
            ) -> $crate::resource::ResourcePage);
    };
    (@method $attr:tt find_resource $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            find_resource(listing: &$crate::resource::ResourceListing, name: &$crate::resource::ResourceName)
                -> Option<$crate::resource::Resource>);
    };
    (@method $attr:tt resource_operations $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            resource_operations(
                target: &$crate::resource::ResourceRef,
                page: $crate::PageRequest<$crate::OperationCursor>
            ) -> $crate::resource::ResourceOperationPage);
    };
    (@method $attr:tt access_policy_bindings $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            access_policy_bindings(on: Option<&$crate::resource::ResourceRef>)
                -> Vec<($crate::resource::ResourceRef, $crate::access_policy::AccessPolicyBinding)>);
    };
    (@method $attr:tt access_bindings $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            access_bindings(on: Option<&$crate::resource::ResourceRef>)
                -> Vec<($crate::resource::ResourceRef, $crate::access_binding::AccessBinding)>);
    };
    (@method $attr:tt resource_operation $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            resource_operation(id: &$crate::OperationId) -> Option<$crate::resource::ResourceOperation>);
    };
    (@method $attr:tt resource_head $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to resource_head() -> u64);
    };
    // The one generic method.
    (@method [$($attr:tt)*] with_record $self:ident $to:tt) => {
        $($attr)*
        fn with_record<R, F>(
            &$self,
            id: &$crate::KeyId,
            visit: F,
        ) -> impl ::core::future::Future<Output = ::core::result::Result<R, $crate::StoreError>> + Send
        where
            R: Send,
            F: for<'v> FnOnce(Option<$crate::RecordView<'v>>) -> R + Send,
        {
            $crate::forward_key_store!(@call $to with_record(id, visit))
        }
    };
    // The synchronous lend: never wrapped.
    (@method [$($attr:tt)*] lend_now $self:ident $to:tt) => {
        $($attr)*
        fn lend_now<R, F>(&$self, id: &$crate::KeyId, visit: F) -> ::core::result::Result<R, F>
        where
            F: for<'v> FnOnce(Option<$crate::RecordView<'v>>) -> R,
        {
            #[allow(unused_imports, reason = "the caller may have the trait in scope already")]
            use $crate::KeyStore as _;
            $crate::forward_key_store!(@lend $to id visit)
        }
    };
    (@lend (to $inner:expr) $id:ident $visit:ident) => { $inner.lend_now($id, $visit) };
    (@lend (around $inner:expr, $name:ident, $call:ident, $wrap:expr) $id:ident $visit:ident) => {
        $inner.lend_now($id, $visit)
    };
    (@lend (match $self:ident $enum:ident { $($(#[$cfg:meta])* $variant:ident),+ $(,)? }) $id:ident $visit:ident) => {
        match $self {
            $($(#[$cfg])* $enum::$variant(store) => store.lend_now($id, $visit),)+
        }
    };
    (@method $attr:tt $other:ident $self:ident $to:tt) => {
        ::core::compile_error!(::core::concat!(
            "forward_key_store!: `",
            ::core::stringify!($other),
            "` is not a forwardable KeyStore method"
        ));
    };
}
