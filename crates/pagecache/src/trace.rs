//! The `tracing` feature: events and spans on slow paths only (throttle
//! waits, writeback errors, readahead windows), never on the hit path.
//! Without the feature the macros expand to nothing.

/// An event through `tracing` when the feature is on: `slow!(level, ...)`
/// with `tracing`'s own arguments.
macro_rules! slow {
    ($level:ident, $($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        ::tracing::$level!(target: "pagecache", $($arg)*);
    };
}

/// Enters a span for the rest of the enclosing block (feature on only).
macro_rules! slow_span {
    ($name:literal $(, $($field:tt)*)?) => {
        #[cfg(feature = "tracing")]
        let _span = ::tracing::debug_span!(target: "pagecache", $name $(, $($field)*)?).entered();
    };
}

pub(crate) use {slow, slow_span};
