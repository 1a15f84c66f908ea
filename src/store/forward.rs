//! [`forward_key_store!`](crate::forward_key_store): the [`KeyStore`](crate::KeyStore)
//! methods a wrapper passes on unchanged, written once.
//!
//! A wrapper store (the shield, the cache, the fault injector, a test or
//! metrics wrapper) changes a few methods and hands every other one to the
//! store it wraps. Each of those forwarding methods would repeat the trait's
//! signature; the macro holds one copy of each signature, so a wrapper names
//! only the methods it forwards and writes by hand only the ones it changes.

/// Implements, inside an `impl KeyStore for …` block, the named
/// [`KeyStore`](crate::KeyStore) methods by calling the same method of an
/// inner store with the same arguments (the call's future is returned as it
/// is: nothing is added before, after or around it).
///
/// Two forms:
///
/// - `forward_key_store!(self => self.inner; get_many, list, …);` forwards
///   to the store the expression (`self.inner`, `(**self)`, `self.0`) names;
/// - `forward_key_store!(match self: AnyStore { Memory, Sqlite, … } => insert, …);`
///   forwards to the store held by whichever variant of a one-field enum
///   `self` is (a variant may carry `#[cfg(…)]`).
///
/// A method not named keeps the trait's default or is written by hand next
/// to the call. Attributes (doc comments) before a name apply to that
/// method. Not a stable interface: it follows the trait.
#[doc(hidden)]
#[macro_export]
macro_rules! forward_key_store {
    (match $self:ident : $enum:ident $variants:tt => $($(#[$attr:meta])* $method:ident),+ $(,)?) => {
        $($crate::forward_key_store!(@method [$(#[$attr])*] $method $self (match $self $enum $variants));)+
    };
    ($self:ident => $inner:expr; $($(#[$attr:meta])* $method:ident),+ $(,)?) => {
        $($crate::forward_key_store!(@method [$(#[$attr])*] $method $self (to $inner));)+
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
    (@method $attr:tt insert $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to insert(record: $crate::KeyRecord) -> ());
    };
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
    (@method $attr:tt revoke $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to revoke(id: &$crate::KeyId) -> ());
    };
    (@method $attr:tt delete $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to delete(id: &$crate::KeyId) -> ());
    };
    (@method $attr:tt reissue $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            reissue(old: &$crate::KeyId, new: $crate::KeyRecord, fate: $crate::OldKeyFate) -> ());
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
    (@method $attr:tt operation $self:ident $to:tt) => {
        $crate::forward_key_store!(@fn $attr $self $to
            operation(id: &$crate::OperationId) -> Option<$crate::Operation>);
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
    // The synchronous lend (only to one inner store).
    (@method [$($attr:tt)*] lend_now $self:ident (to $inner:expr)) => {
        $($attr)*
        fn lend_now<R, F>(&$self, id: &$crate::KeyId, visit: F) -> ::core::result::Result<R, F>
        where
            F: for<'v> FnOnce(Option<$crate::RecordView<'v>>) -> R,
        {
            #[allow(unused_imports, reason = "the caller may have the trait in scope already")]
            use $crate::KeyStore as _;
            $inner.lend_now(id, visit)
        }
    };
    (@method $attr:tt $other:ident $self:ident $to:tt) => {
        ::core::compile_error!(::core::concat!(
            "forward_key_store!: `",
            ::core::stringify!($other),
            "` is not a KeyStore method"
        ));
    };
}
