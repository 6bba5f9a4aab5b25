//! The core's single error type.
//!
//! Every failure the core can report is one variant of [`Error`], with short
//! lowercase messages (the gloo-storage habit). Variants carry the key and the
//! unit involved where there is one, so the UI can say *what* failed and for
//! *whom* without parsing strings. Errors are `Clone + PartialEq` so tests and
//! the reactive layer can match and store them.

use crate::clock::Stamp;
use crate::id::{ApartmentId, IdKind, IdRule, UnitAddress};
use crate::op::OpId;
use crate::permission::Action;
use crate::scope::FullKey;
use crate::storage::StorageError;
use crate::strategy::Strategy;

/// `Result` with the core's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
///
/// Strings inside variants that echo untrusted input are truncated (see
/// [`preview`]) so a 4 MB hostile key name does not become a 4 MB error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An apartment, building or unit id, or a key name, broke the grammar.
    #[error("invalid {kind} {value:?}: {rule}")]
    InvalidId {
        /// Which kind of id was being parsed.
        kind: IdKind,
        /// The offending input (truncated).
        value: String,
        /// The rule it broke.
        rule: IdRule,
    },
    /// A composite name (unit address, full key, tab id, event topic) is
    /// not shaped right, independently of its segments' grammar.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What was being parsed (`"unit address"`, `"full key"`, …).
        what: &'static str,
        /// The offending input (truncated).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A value path such as `items.3.qty` is malformed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path (truncated).
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A key was used (locally or by an incoming op) that this replica has
    /// not declared.
    #[error("unknown key {key}")]
    UnknownKey {
        /// The scope-qualified key name or full key.
        key: String,
    },
    /// A key declaration is invalid on its own (bad migration chain, a
    /// default that does not serialize, a type that cannot be summed…).
    #[error("invalid declaration of key {key}: {reason}")]
    InvalidDeclaration {
        /// The key name.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same scope and key name were declared twice with different rules
    /// or different Rust types.
    #[error("key {key} declared twice with different rules: {reason}")]
    KeyMismatch {
        /// The scope-qualified key name.
        key: String,
        /// Which rule differs.
        reason: String,
    },
    /// The operation does not exist for the key's conflict strategy
    /// (for example `increment` on a last-write-wins key, or a field patch
    /// arriving for a sum key).
    #[error("key {key} uses {strategy}, which does not support {operation}")]
    WrongStrategy {
        /// The key (full key or scope-qualified name).
        key: String,
        /// The key's declared strategy.
        strategy: Strategy,
        /// The operation that was attempted.
        operation: &'static str,
    },
    /// The unit is not on the key's read or write list.
    #[error("unit {unit} may not {action} {key}")]
    PermissionDenied {
        /// The key.
        key: FullKey,
        /// The unit that tried.
        unit: UnitAddress,
        /// What it tried to do.
        action: Action,
    },
    /// An op claims a writer that cannot reach the key at all (another
    /// unit's private key, another building's building key…).
    #[error("unit {unit} is outside the scope of {key}")]
    OutOfScope {
        /// The key.
        key: FullKey,
        /// The claimed writer.
        unit: UnitAddress,
    },
    /// A first-write-wins key already holds a value; the write was refused.
    #[error("{key} already holds its first value (stamp {existing}); first write wins")]
    FirstWriteWins {
        /// The key.
        key: FullKey,
        /// The stamp of the value that won.
        existing: Stamp,
    },
    /// Another tab sent an op or state for a key that lives in memory only
    /// here; memory keys never leave their page.
    #[error("{key} lives in memory only and does not sync between tabs")]
    LocalOnly {
        /// The key.
        key: FullKey,
    },
    /// A value does not decode as the key's Rust type, or is not JSON
    /// representable (maps with non-string keys…).
    #[error("value of {key} does not match its type: {reason}")]
    TypeMismatch {
        /// The key.
        key: String,
        /// The serde error (truncated).
        reason: String,
    },
    /// Stored data could not be decoded.
    #[error("stored data of {key} is corrupt: {reason}")]
    Corrupt {
        /// The key (or storage key) concerned.
        key: String,
        /// Why decoding failed (truncated).
        reason: String,
    },
    /// Data comes from a newer schema version than this code knows.
    #[error("{key} has schema {found}, newer than the supported {supported}")]
    NewerSchema {
        /// The key.
        key: String,
        /// The version found in the data.
        found: u32,
        /// The newest version this code knows.
        supported: u32,
    },
    /// A migration step is missing or failed.
    #[error("migrating {key} from schema {from} failed: {reason}")]
    Migration {
        /// The key.
        key: String,
        /// The version the failing step starts from.
        from: u32,
        /// The migration's own error, or why no step could run.
        reason: String,
    },
    /// Input is over a size limit (message, snapshot, stored entry, value).
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size in bytes (at least this much; counting stops early).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Input nests deeper than allowed. Checked before parsing, so deep
    /// input never reaches a recursive parser.
    #[error("{what} nests deeper than {limit} levels")]
    TooDeep {
        /// What was measured.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A wire message or snapshot is not valid JSON of the expected shape,
    /// or breaks a structural rule.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why (truncated).
        reason: String,
    },
    /// A stamp is too far in the future; accepting it would pin every
    /// replica's clock there.
    #[error("stamp at {wall_ms} ms is more than {max_ahead_ms} ms ahead of local time {now_ms} ms")]
    ClockSkew {
        /// The stamp's wall time.
        wall_ms: u64,
        /// Local wall time.
        now_ms: u64,
        /// The allowed lead.
        max_ahead_ms: u64,
    },
    /// An increment would take a counter further past the `i64` range, or
    /// a delta does not fit `i64`.
    #[error("counter {key} would overflow")]
    Overflow {
        /// The key.
        key: FullKey,
    },
    /// A snapshot is well-formed JSON but not a valid snapshot for this
    /// store (wrong format tag or version, unknown keys…).
    #[error("invalid snapshot: {reason}")]
    InvalidSnapshot {
        /// Why (truncated).
        reason: String,
    },
    /// Data for another apartment reached a replica bound to one apartment
    /// (see [`Replica::bind`](crate::Replica::bind)); it is not applied.
    #[error("{key} belongs to another apartment than {apartment}")]
    ForeignApartment {
        /// The key (or what named another apartment).
        key: String,
        /// The apartment the replica serves.
        apartment: ApartmentId,
    },
    /// An incoming write claims this tab's id with an op id this tab never
    /// issued (forged, or a copy of a tab that shares the id): applying it
    /// would make this tab reuse op ids.
    #[error("op {op} claims this tab's id but was never issued here")]
    ForgedId {
        /// The claimed op id.
        op: OpId,
    },
    /// An op arrived after its key compacted the stretch it was stamped in
    /// (it was held back longer than
    /// [`COMPACT_AFTER_MS`](crate::COMPACT_AFTER_MS) behind newer writes;
    /// see [`KeyState::floor`](crate::KeyState::floor)): a counter op could
    /// count twice, a merge write could end differently on replicas that
    /// folded before it came and on those that did not, so it is refused.
    #[error(
        "a write to {key} stamped at {wall_ms} ms arrived behind the key's floor at {horizon_ms} ms (more than 14 days before its newest write)"
    )]
    Stale {
        /// The key.
        key: FullKey,
        /// The write's wall time.
        wall_ms: u64,
        /// The key's floor (see [`KeyState::floor`](crate::KeyState::floor)).
        horizon_ms: u64,
        /// Whether the key's state would have dropped the write on arrival
        /// anyway: a user-resolve key keeps no write this far behind its
        /// newest, so a replica that refuses one lacks nothing that a
        /// replica which took it holds. `false` for a counter or a merge
        /// key, where a replica that refused the write may lack what
        /// others counted or merged of it (a device's link then takes
        /// the key's stream as the relay holds it, never re-basing it).
        dropped_anyway: bool,
    },
    /// One declaration would get more full keys (units, buildings) than
    /// allowed, in all or (a private declaration) in one building, or
    /// more keys are held for later than allowed.
    #[error("{key} has reached the limit of {limit} keys")]
    TooManyKeys {
        /// The scope-qualified key name (`"<name> in building
        /// <apartment>/<building>"` when that building's share is full).
        key: String,
        /// The limit.
        limit: usize,
    },
    /// A message from a tab that speaks another version of the protocol
    /// (an older or newer build of the app still open somewhere).
    #[error(
        "message from a tab running another version of the app (protocol {found:?}, this tab speaks {supported}); reload that tab"
    )]
    Protocol {
        /// The version the message declares (`None`: version 1, which had
        /// no version field).
        found: Option<u32>,
        /// The version this code speaks.
        supported: u32,
    },
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The transport failed to send.
    #[error("transport: {reason}")]
    Transport {
        /// The transport's own description.
        reason: String,
    },
    /// A local write to a persistent key while the way on to other
    /// devices has no room (see
    /// [`Replica::set_backlog`](crate::Replica::set_backlog)). Nothing
    /// changed: a write that could never reach the other devices is
    /// refused rather than kept only here.
    #[error(
        "{waiting} writes already wait for the relay, as many as this device keeps; this one is refused until they are sent"
    )]
    Backlog {
        /// How many writes wait.
        waiting: usize,
    },
}

impl Error {
    /// Whether this refusal only means the data was for another apartment
    /// (see [`Replica::bind`](crate::Replica::bind)), not that it was bad.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::ForeignApartment { .. })
    }

    /// A stable, machine-readable name of the variant (`"permission_denied"`,
    /// `"first_write_wins"`, …) for callers that cannot match on the enum,
    /// such as JavaScript. Codes never change meaning once published.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId { .. } => "invalid_id",
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidPath { .. } => "invalid_path",
            Self::UnknownKey { .. } => "unknown_key",
            Self::InvalidDeclaration { .. } => "invalid_declaration",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::WrongStrategy { .. } => "wrong_strategy",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::OutOfScope { .. } => "out_of_scope",
            Self::FirstWriteWins { .. } => "first_write_wins",
            Self::LocalOnly { .. } => "local_only",
            Self::TypeMismatch { .. } => "type_mismatch",
            Self::Corrupt { .. } => "corrupt",
            Self::NewerSchema { .. } => "newer_schema",
            Self::Migration { .. } => "migration",
            Self::TooLarge { .. } => "too_large",
            Self::TooDeep { .. } => "too_deep",
            Self::Malformed { .. } => "malformed",
            Self::ClockSkew { .. } => "clock_skew",
            Self::Overflow { .. } => "overflow",
            Self::InvalidSnapshot { .. } => "invalid_snapshot",
            Self::ForeignApartment { .. } => "foreign_apartment",
            Self::ForgedId { .. } => "forged_id",
            Self::Stale { .. } => "stale",
            Self::TooManyKeys { .. } => "too_many_keys",
            Self::Protocol { .. } => "protocol",
            Self::Storage(StorageError::QuotaExceeded) => "quota_exceeded",
            Self::Storage(StorageError::Unavailable) => "storage_unavailable",
            Self::Storage(StorageError::Other(_)) => "storage",
            Self::Transport { .. } => "transport",
            Self::Backlog { .. } => "outbox_full",
        }
    }
}

/// Longest echo of untrusted input kept inside an error, in characters.
pub const PREVIEW_CHARS: usize = 80;

/// Truncates untrusted text for inclusion in an error message.
pub fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let mut short = text[..cut].to_owned();
            short.push('…');
            short
        }
    }
}
