//! The builder setters of the request and update types, written once.

/// Builder methods that each set one field and return `self`.
///
/// `fn name(arg: Type) => field = value;` (a field path such as
/// `controls.metadata` may stand for `field`) becomes a `#[must_use]`
/// `pub fn name(mut self, arg: Type) -> Self` carrying the attributes (docs)
/// written before it; `fn name() => field = value;` takes no argument.
macro_rules! setters {
    ($($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty)?) => $($field:ident).+ = $value:expr;)+) => {
        $(
            $(#[$attr])*
            #[must_use]
            pub fn $name(mut self $(, $arg: $ty)?) -> Self {
                self.$($field).+ = $value;
                self
            }
        )+
    };
}

/// Documented pairs of builder methods for an optional control of an
/// update: `set(arg: Type), clear => field;` becomes `set`, which sets the
/// field to `Some(Some(arg))`, and `clear`, which sets it to `Some(None)`
/// (both `#[must_use]`, each with the attributes written before its name).
macro_rules! set_or_clear {
    ($($(#[$set_attr:meta])* $set:ident($arg:ident: $ty:ty), $(#[$clear_attr:meta])* $clear:ident => $($field:ident).+;)+) => {
        $(
            $crate::setters::setters! {
                $(#[$set_attr])*
                fn $set($arg: $ty) => $($field).+ = Some(Some($arg));
                $(#[$clear_attr])*
                fn $clear() => $($field).+ = Some(None);
            }
        )+
    };
}

/// The `scopes` builder method of a type with a field
/// `scopes: Option<Vec<String>>`: any iterator of names sets the field.
macro_rules! scopes_setter {
    () => {
        /// Sets the scopes.
        #[must_use]
        pub fn scopes<I, S>(mut self, scopes: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.scopes = Some(scopes.into_iter().map(Into::into).collect());
            self
        }
    };
}

pub(crate) use {scopes_setter, set_or_clear, setters};
