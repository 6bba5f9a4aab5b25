//! What an inspector (devtools) reads: every key with its declaration and
//! version, the recent operations, and a revision that moves whenever any
//! of it does.

use std::collections::VecDeque;

use gaesup_state_core::vec_map::VecSet;
use gaesup_state_core::{Change, FullKey, KeyState, Lifetime, Scope, Stamp, Strategy, UnitAddress};
use leptos::prelude::*;

use super::{Shared, StateManager};

/// How many recent operations the manager remembers for inspection.
pub const LOG_CAPACITY: usize = 200;

/// Where an entry of the operation log came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Written in this tab.
    Local,
    /// Received from another tab.
    Remote,
}

/// One entry of the operation log: a value change and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// Local write or remote op.
    pub origin: Origin,
    /// What changed.
    pub change: Change,
}

/// What an inspector shows about one key of this tab's replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The full key (`scope/…/name`).
    pub key: FullKey,
    /// Who shares it.
    pub scope: Scope,
    /// How long it lives.
    pub lifetime: Lifetime,
    /// How concurrent writes combine.
    pub strategy: Strategy,
    /// The declared schema version.
    pub schema: u32,
    /// The newest stamp in the key's state (the current value's version);
    /// `None` while it holds its default.
    pub version: Option<Stamp>,
    /// The unit that wrote the current value (for a sum key, the newest
    /// increment or reset; `None` for keys never written).
    pub last_writer: Option<UnitAddress>,
    /// Live subscriptions in this tab.
    pub subscribers: usize,
}

impl StateManager {
    /// Recent value changes, oldest first (at most [`LOG_CAPACITY`]).
    ///
    /// Kept only from the first call of this or of
    /// [`revision`](Self::revision) on, so an app without an inspector
    /// pays nothing for it (a copy of every change); an inspector calls
    /// one of them when it mounts.
    pub fn log(&self) -> Vec<LogEntry> {
        self.read_log(|log| log.iter().cloned().collect())
    }

    /// The newest `n` entries of the [`log`](Self::log), newest first: what
    /// a view showing the latest few copies, rather than the whole log.
    pub fn recent_log(&self, n: usize) -> Vec<LogEntry> {
        self.read_log(|log| log.iter().rev().take(n).cloned().collect())
    }

    /// Reads the log, keeping it from now on (nothing once disposed).
    fn read_log(&self, read: impl FnOnce(&VecDeque<LogEntry>) -> Vec<LogEntry>) -> Vec<LogEntry> {
        self.shared()
            .map(|s| {
                s.inspected.set(true);
                read(&s.log.borrow())
            })
            .unwrap_or_default()
    }

    /// Counts every change an inspector could show: a local write (even of
    /// the same value: its stamp and writer move), a message from another
    /// tab, a key declared, a subscription that came or went, a
    /// quarantined entry discarded. Read it in a reactive closure and
    /// call [`keys`](Self::keys), [`log`](Self::log) and the like inside it
    /// to stay current. (`0` once the manager is disposed.) Like the
    /// [`log`](Self::log), it counts from the first call of either.
    pub fn revision(&self) -> Signal<u64> {
        self.shared()
            .map(|shared| {
                shared.inspected.set(true);
                shared.revision.clone().into()
            })
            .unwrap_or_else(|_| Signal::stored(0))
    }

    pub(super) fn bump(shared: &Shared) {
        if shared.inspected.get() {
            shared.revision.update(|n| *n = n.wrapping_add(1));
        }
    }

    /// Every key this tab holds a value of or watches, sorted by full key,
    /// with its declaration, current version, last writer and subscriber
    /// count: what a devtools panel lists. Keys only declared (never
    /// written, nobody subscribed) have no full key yet and are left out.
    /// Empty once the manager is disposed, and when called from inside
    /// one of its own calls (see [`StateError::Busy`](crate::StateError::Busy)).
    pub fn keys(&self) -> Vec<KeyInfo> {
        let Ok(shared) = self.shared() else {
            return Vec::new();
        };
        let Ok(replica) = shared.replica() else {
            return Vec::new();
        };
        let subscribers = shared.subscribers.borrow();
        // Two sorted runs, merged and each key once.
        let names: VecSet<&FullKey> = replica.states().keys().chain(subscribers.keys()).collect();
        names
            .into_iter()
            .filter_map(|key| {
                let spec = replica.spec_for(key).ok()?;
                Some(KeyInfo {
                    key: key.clone(),
                    scope: spec.scope(),
                    lifetime: spec.lifetime(),
                    strategy: spec.strategy(),
                    schema: spec.schema().version(),
                    version: replica.state(key).and_then(KeyState::max_stamp),
                    last_writer: replica.last_write(key).map(|(writer, _)| writer),
                    subscribers: Self::watching(&subscribers, key).count(),
                })
            })
            .collect()
    }
}
