//! Pure-Rust core of the gaesup state manager.
//!
//! # The problem
//!
//! Several micro-frontends ("units") share one page, grouped into
//! buildings inside an apartment, and the same app runs in several tabs.
//! They share state: a cart, a counter, a draft. Done naively, two units
//! that both call their key `"count"` overwrite each other, a message
//! delivered twice double-counts, tabs with skewed clocks disagree about
//! which write was last, a hand-edited localStorage entry crashes the app
//! and a buggy unit writes another unit's data.
//!
//! This crate is the part that can be gotten right without a browser:
//! validated ids and scoped keys, a hybrid logical clock, operations,
//! convergent conflict strategies, schema migration with quarantine,
//! permissions, batches, snapshots, path selection, and the storage and
//! transport traits the web layer implements. It imports no leptos,
//! web-sys or js-sys and builds for `wasm32-unknown-unknown`.
//!
//! # Example
//!
//! ```
//! use gaesup_state_core::{
//!     Access, Lifetime, ManualClock, Scope, SharedKey, Replica, Strategy, TabId, UnitAddress,
//! };
//!
//! # fn main() -> gaesup_state_core::Result<()> {
//! // Declared once, passed around typed.
//! let clicks = SharedKey::<i64>::builder("clicks")
//!     .scope(Scope::Apartment)
//!     .lifetime(Lifetime::Persistent)
//!     .strategy(Strategy::Sum)
//!     .write(Access::units(["counter"])?)
//!     .build()?;
//!
//! let clock = ManualClock::new(1_000);
//! let mut tab_a = Replica::new(TabId::new(1), clock.clone());
//! let mut tab_b = Replica::new(TabId::new(2), clock);
//! tab_a.declare(&clicks)?;
//! tab_b.declare(&clicks)?;
//!
//! let counter: UnitAddress = "shop/main/counter".parse()?;
//! let a = tab_a.increment(&counter, &clicks, 2)?;
//! let b = tab_b.increment(&counter, &clicks, 3)?;
//!
//! // Each tab broadcasts its op; delivering one twice changes nothing.
//! let text = a.message.expect("persistent keys sync").encode()?;
//! tab_b.receive_text(&text);
//! tab_b.receive_text(&text);
//! tab_a.receive_text(&b.message.expect("persistent keys sync").encode()?);
//!
//! assert_eq!(tab_a.get(&counter, &clicks)?, 5);
//! assert_eq!(tab_b.get(&counter, &clicks)?, 5);
//!
//! // Only the counter unit may write.
//! let header: UnitAddress = "shop/top/header".parse()?;
//! assert!(tab_a.increment(&header, &clicks, 1).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Identity and keys
//!
//! [`ApartmentId`], [`BuildingId`], [`UnitId`] and [`KeyName`] follow one
//! grammar (non-empty, at most 64 bytes, no `/`, no `..`, no control
//! characters, no surrounding whitespace, not `__proto__`), checked on
//! construction and on deserialization. A [`UnitAddress`] is
//! `apartment/building/unit`; a [`TabId`] identifies one replica.
//!
//! # Scope and lifetime
//!
//! Two independent axes per key: [`Scope`] (private, building, apartment,
//! global) decides who shares it and therefore its [`FullKey`]
//! (`private/{apartment}/{building}/{unit}/{key}`, …, `global/{key}`), so
//! equal names in different places never collide; [`Lifetime`] (memory,
//! ephemeral, persistent) decides where it is stored and whether it syncs.
//! Memory keys never leave their page.
//!
//! # Declarations
//!
//! [`SharedKey<T>`] is built once with scope, lifetime, strategy, schema
//! version, migrations, permissions and default, and validated by
//! [`SharedKeyBuilder::build`]. The replica works with its type-erased
//! [`KeySpec`].
//!
//! # Clock and operations
//!
//! Time comes through the [`Clock`] trait ([`ManualClock`] in tests). The
//! [`Hlc`] issues totally ordered [`Stamp`]s (wall ms, counter, tab) and
//! refuses remote stamps more than [`MAX_CLOCK_AHEAD_MS`] ahead. Every write
//! is an [`Op`] (id, key, writer, stamp, schema, [`Payload`]); batches are
//! [`OpGroup`]s applied all-or-nothing.
//!
//! # Strategies
//!
//! Each [`Strategy`] is a state-based CRDT ([`KeyState`]): applying ops in
//! any order with any duplicates, or merging states, converges to the same
//! bytes. Last-write-wins, first-write-wins, field-wise merge, a PN-counter
//! sum, and a multi-value register for user-resolve (see
//! [`Replica::conflicts`] and [`Replica::resolve`]).
//!
//! # Schema and quarantine
//!
//! Each key has a [`Schema`] version and migration chain run on load and on
//! receipt. Undecodable data, newer versions and failed migrations are
//! errors; [`Replica::load`] copies such entries aside ([`Quarantine`]) and
//! never overwrites them until [`Replica::discard_quarantine`].
//!
//! # Permissions
//!
//! [`Permissions`] hold read and write [`Access`] lists by unit or by
//! building, enforced on get, set, subscribe and every incoming op or
//! state, on top of scope. They contain bugs; they are not a security
//! boundary on a shared origin (keep no secrets in storage).
//!
//! # Batch, revert, snapshot, restore
//!
//! [`Replica::batch`] applies several writes atomically as one op group.
//! [`Replica::revert`] rolls back an optimistic write without erasing anyone's
//! later write.
//! [`Replica::snapshot`] exports a scope as versioned JSON ([`Snapshot`]);
//! [`Replica::restore`] validates everything before writing anything.
//!
//! # Paths
//!
//! [`Path`] selects inside a value (`items.3.qty`); [`Change::touches`] /
//! [`Path::changed`] tell cheaply whether a change is visible there.
//! [`Replica::set_path`] writes one place: for an untyped last-write-wins
//! key it changes the stored value in place, so updating one field of a
//! 10,000-field document costs what the field costs.
//!
//! # Seams: storage, transport, clock
//!
//! Everything from outside comes through three small traits, so the core
//! runs the same in a tab, in a test and on a server:
//!
//! - [`Storage`], where entries persist: localStorage and sessionStorage
//!   in `gaesup-state-web`; [`MemoryStorage`] and [`FaultyStorage`] here.
//! - [`Transport`], the way out to other replicas: BroadcastChannel and
//!   the storage-event fallback in `gaesup-state-web` (a relay joins them
//!   there); [`MemoryBus`] here. What comes in is raw text for
//!   [`Replica::receive_text`], which goes through [`Message::decode`]:
//!   size cap, depth limit, full validation.
//! - [`Clock`], wall time: the browser's or the system's in the layers
//!   above, [`ManualClock`] here.
//!
//! # Errors
//!
//! One [`Error`] enum; nothing that comes from storage, another tab or a
//! user can make the core panic.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
pub mod decode;
mod error;
mod id;
mod key;
mod limits;
mod message;
mod op;
mod path;
mod permission;
mod replica;
mod schema;
mod scope;
mod snapshot;
mod storage;
mod strategy;
mod transport;
pub mod vec_map;

pub use clock::{Clock, Hlc, MAX_CLOCK_AHEAD_MS, MAX_HOLD_AHEAD_MS, ManualClock, Stamp};
pub use error::{Error, PREVIEW_CHARS, Result, preview};
pub use id::{
    ApartmentId, BuildingId, IdKind, IdRule, KeyName, MAX_ID_LEN, TabId, UnitAddress, UnitId,
    validate as validate_id,
};
pub use key::{KeySpec, SharedKey, SharedKeyBuilder};
pub use limits::{
    COMPACT_AFTER_MS, FOLD_STEP_MS, MAX_FIELD_NAME_BYTES, MAX_GROUP_OPS, MAX_HELD_BYTES,
    MAX_JSON_DEPTH, MAX_KEYS_PER_DECLARATION, MAX_LOCAL_STATE_BYTES, MAX_MESSAGE_BYTES,
    MAX_OP_ITEMS, MAX_PARKED_KEYS, MAX_PATH_WRITES, MAX_PRIVATE_KEYS_PER_BUILDING,
    MAX_SNAPSHOT_BYTES, MAX_STATE_BYTES, MAX_STORED_BYTES, MAX_SUM_SLOTS, MAX_SYNC_STATES,
    MAX_VALUE_BYTES, MAX_VALUE_DEPTH, ROTATE_SLOT_AFTER_MS,
};
pub use limits::{
    encoded_len, first_groups_by_len, parse_bounded as parse_untrusted, split_by_len, to_text,
};
pub use message::{
    Digest, Event, Have, Message, PROTOCOL_VERSION, SyncEntry, sync_entries,
    sync_entries_and_left_out,
};
pub use op::{ITEM_BYTES, Op, OpGroup, OpId, Payload};
pub use path::{MAX_PATH_DEPTH, MAX_SEGMENT_LEN, Path};
pub use permission::{Access, Action, Permissions, Principal};
pub use replica::{
    Batch, BatchWrite, Change, Declared, Head, Inbound, LoadReport, PersistReport, Quarantine,
    Replica, SYNC_ANSWER_INTERVAL_MS, Write,
};
pub use schema::{MigrateFn, Schema, StoredState};
pub use scope::{FullKey, Lifetime, Scope};
pub use snapshot::{SNAPSHOT_FORMAT, SNAPSHOT_VERSION, Snapshot, SnapshotEntry};
pub use storage::{
    FaultyStorage, MemoryStorage, QUARANTINE_PREFIX, STATE_PREFIX, Storage, StorageError,
};
pub use strategy::{
    Conflict, Entry, Folded, KeyState, Observed, Register, Reset, Slot, Strategy, SumState, Totals,
};
#[cfg(feature = "merge")]
pub use strategy::{FieldEntry, MergeState};
#[cfg(feature = "user-resolve")]
pub use strategy::{ResolveState, Seen};
pub use transport::{BusEndpoint, MemoryBus, Transport};

/// A decoding error's message without the line and column it names: for
/// a part of the input decoded on its own (an item of a list read raw),
/// whose position counts in the part, not in the input.
pub fn decode_error_text(err: &serde_json::Error) -> String {
    decode::without_position(err)
}
