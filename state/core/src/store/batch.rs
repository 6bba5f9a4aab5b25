//! Atomic batches of local writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::{BatchWrite, Change, Intent, Store, payload_for};
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::{KeySpec, SharedKey};
use crate::limits::MAX_GROUP_OPS;
use crate::message::Message;
use crate::op::{Op, OpGroup};
use crate::permission::Action;
use crate::scope::{FullKey, Lifetime};
use crate::strategy::KeyState;

/// Writes staged inside [`Store::batch`].
///
/// Each write sees the batch's earlier writes (two sets of the same merge
/// key diff against each other), but the store itself is untouched until
/// the closure returns `Ok`.
pub struct Batch<'s> {
    store: &'s mut Store,
    overlay: BTreeMap<FullKey, (Arc<KeySpec>, KeyState)>,
    ops: Vec<Op>,
}

/// A finished batch, not yet committed.
pub(super) struct Staged {
    overlay: BTreeMap<FullKey, (Arc<KeySpec>, KeyState)>,
    ops: Vec<Op>,
}

impl<'s> Batch<'s> {
    pub(super) fn new(store: &'s mut Store) -> Self {
        Self {
            store,
            overlay: BTreeMap::new(),
            ops: Vec::new(),
        }
    }

    pub(super) fn finish(self) -> Staged {
        Staged {
            overlay: self.overlay,
            ops: self.ops,
        }
    }

    /// Stages [`Store::set`].
    pub fn set<T: Serialize>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<()> {
        let (spec, full) = self.store.open(unit, key, Action::Write)?;
        let value = Store::to_json(key, &full, &value)?;
        self.stage(&spec, full, unit, Intent::Set(value))
    }

    /// Stages [`Store::increment`].
    pub fn increment<T>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<()> {
        let (spec, full) = self.store.open(unit, key, Action::Write)?;
        self.stage(&spec, full, unit, Intent::Add(delta))
    }

    /// Stages [`Store::resolve`].
    pub fn resolve<T: Serialize>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<()> {
        let (spec, full) = self.store.open(unit, key, Action::Write)?;
        let value = Store::to_json(key, &full, &value)?;
        self.stage(&spec, full, unit, Intent::Resolve(value))
    }

    /// Stages a write through a type-erased declaration (used by restore).
    pub(crate) fn write(
        &mut self,
        unit: &UnitAddress,
        spec: &Arc<KeySpec>,
        intent: Intent,
    ) -> Result<()> {
        let full = spec.full_key(unit);
        Store::check_access(spec, &full, unit, Action::Write)?;
        self.stage(spec, full, unit, intent)
    }

    fn stage(
        &mut self,
        spec: &Arc<KeySpec>,
        full: FullKey,
        unit: &UnitAddress,
        intent: Intent,
    ) -> Result<()> {
        if self.ops.len() >= MAX_GROUP_OPS {
            return Err(Error::Malformed {
                what: "batch",
                reason: format!("more than {MAX_GROUP_OPS} writes"),
            });
        }
        let current = match self.overlay.get(&full) {
            Some((_, state)) => Some(state),
            None => self.store.states.get(&full),
        };
        let payload = payload_for(self.store.tab, spec, &full, current, intent)?;
        let op = self.store.stamp_op(spec, full.clone(), unit, payload);
        let store = &*self.store;
        let (_, state) = self.overlay.entry(full).or_insert_with_key(|full| {
            let state = store
                .states
                .get(full)
                .cloned()
                .unwrap_or_else(|| KeyState::empty(spec.strategy()));
            (Arc::clone(spec), state)
        });
        state.apply(&op)?;
        self.ops.push(op);
        Ok(())
    }
}

impl Staged {
    fn syncing(&self) -> BTreeSet<&FullKey> {
        self.overlay
            .iter()
            .filter(|(_, (spec, _))| spec.lifetime() != Lifetime::Memory)
            .map(|(key, _)| key)
            .collect()
    }

    fn message(&self) -> Option<Message> {
        let syncing = self.syncing();
        let ops: Vec<Op> = self
            .ops
            .iter()
            .filter(|op| syncing.contains(&op.key))
            .cloned()
            .collect();
        (!ops.is_empty()).then_some(Message::Ops(OpGroup { ops }))
    }

    /// Refuses a batch whose message other tabs would refuse as too large,
    /// before anything is committed.
    pub(super) fn check(&self) -> Result<()> {
        match self.message() {
            Some(message) => message.encode().map(drop),
            None => Ok(()),
        }
    }
}

impl Store {
    pub(super) fn commit(&mut self, staged: Staged) -> BatchWrite {
        let message = staged.message();
        let mut changes = Vec::new();
        for (key, (spec, state)) in staged.overlay {
            let old = self.current(&spec, &key);
            let old_conflicts = self.conflict_ids(&key);
            let new = Store::value_or_default(&spec, Some(&state));
            self.states.insert(key.clone(), state);
            self.touch(&spec, &key);
            if old != new || old_conflicts != self.conflict_ids(&key) {
                changes.push(Change { key, old, new });
            }
        }
        BatchWrite {
            group: OpGroup { ops: staged.ops },
            changes,
            message,
        }
    }
}
