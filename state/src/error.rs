//! Errors of the reactive layer.

use gaesup_state_core::Error as CoreError;

/// Why a state operation failed. Shown to the user through
/// [`StateMeta::error`](crate::StateMeta::error); never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The core refused: bad id, permission, first-write-wins, type, …
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A hook ran outside a `<Unit>`, so it has no scope to resolve keys in.
    #[error("{hook} was used outside a <Unit>; wrap the component in <Unit id=…>")]
    NoUnit {
        /// The hook's name.
        hook: &'static str,
    },
    /// The apartment that owned the state manager was unmounted.
    #[error("the state manager is gone (its apartment was unmounted)")]
    Disposed,
    /// The state manager was called from inside one of its own calls: a
    /// batch's closure, `with_replica`'s, a schema migration, or a value's
    /// `Serialize` or `Deserialize` calling back in. Make the call after
    /// the outer one returns (in a batch, write through its `Batch`).
    #[error(
        "the state manager was called from inside one of its own calls (a batch, with_replica, a migration or a value's serde); call it after that returns"
    )]
    Busy,
    /// An optimistic write was rejected by its confirmation and rolled back.
    #[error("write to {key} was rejected and rolled back: {reason}")]
    Rejected {
        /// The full key.
        key: String,
        /// What the confirmation said.
        reason: String,
    },
    /// A write waited for a relay's word and nobody will give it: more
    /// writes than the manager keeps waiting (10,000) were made since, or
    /// the manager went away. The write is kept (the relay still
    /// receives it); whether the relay applied it is not known.
    #[error(
        "nobody will say whether the relay applied the write to {key} (too many writes wait, or the page's state manager went away); the write is kept"
    )]
    Unconfirmed {
        /// The full key.
        key: String,
    },
    /// A write was to wait for a relay's confirmation, but no relay is
    /// configured.
    #[error("no relay is configured to confirm writes")]
    NoConfirmer,
    /// A write was to wait for a relay's confirmation, but its key is
    /// session or memory state, which never leaves this device. The write
    /// is kept.
    #[error(
        "{key} is {lifetime} state, which never leaves this device: no relay confirms its writes (the write is kept)"
    )]
    NotRelayed {
        /// The full key.
        key: String,
        /// Its lifetime: `session` or `memory`.
        lifetime: &'static str,
    },
    /// A JavaScript value that has no JSON form (undefined, a function, a
    /// BigInt, a cycle), or JSON this layer could not read.
    #[error("bad value: {reason}")]
    BadValue {
        /// What was wrong with it.
        reason: String,
    },
    /// No apartment with that id has a state manager on this page.
    #[error("no apartment {id:?} on this page")]
    UnknownApartment {
        /// The apartment id asked for.
        id: String,
    },
    /// A key name matches declarations in several scopes; say which.
    #[error("key {name:?} is declared in several scopes ({scopes}); declare it with a scope first")]
    AmbiguousKey {
        /// The key name.
        name: String,
        /// The scopes it exists in.
        scopes: String,
    },
    /// A container was given an id that breaks the id grammar.
    #[error("invalid {what} id {id:?}: {reason}")]
    InvalidContainer {
        /// apartment, building or unit.
        what: &'static str,
        /// The id as given.
        id: String,
        /// Which rule it breaks.
        reason: String,
    },
}

impl StateError {
    /// A stable, machine-readable name of the error (`"permission_denied"`,
    /// `"no_unit"`, …): the core's [`code`](CoreError::code) for core
    /// errors. JavaScript callers get it as the `code` of a thrown `Error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Core(err) => err.code(),
            Self::NoUnit { .. } => "no_unit",
            Self::Disposed => "disposed",
            Self::Busy => "busy",
            Self::Rejected { .. } => "rejected",
            Self::Unconfirmed { .. } => "unconfirmed",
            Self::NoConfirmer => "no_confirmer",
            Self::NotRelayed { .. } => "not_relayed",
            Self::BadValue { .. } => "bad_value",
            Self::UnknownApartment { .. } => "unknown_apartment",
            Self::AmbiguousKey { .. } => "ambiguous_key",
            Self::InvalidContainer { .. } => "invalid_container",
        }
    }
}

/// Result of the reactive layer.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
