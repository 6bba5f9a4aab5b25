//! Atomic batches of local writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::at_path::{Typing, check_kept, item_writes, json_writes, put_paths};
use super::declare::KeyCounts;
use super::intent::{Intent, Sink, payload_for, put_delta, put_value};
use super::write::Stamping;
use super::{BatchWrite, Replica};
use crate::error::{Error, Result};
use crate::id::UnitAddress;
use crate::key::{KeySpec, SharedKey};
use crate::limits::MAX_GROUP_OPS;
use crate::message::Message;
use crate::op::{Op, OpGroup};
use crate::permission::Action;
use crate::scope::{FullKey, Lifetime};
use crate::strategy::KeyState;

/// Writes staged inside [`Replica::batch`].
///
/// Each write sees the batch's earlier writes (two sets of the same merge
/// key diff against each other), but the replica itself is untouched until
/// the closure returns `Ok`. A write refused inside the batch fails the
/// whole batch, even when the closure goes on past its error.
pub struct Batch<'s> {
    replica: &'s mut Replica,
    overlay: BTreeMap<FullKey, (Arc<KeySpec>, KeyState)>,
    /// The keys the overlay creates (no state in the replica), counted
    /// against the declarations' bounds with the replica's own.
    created: KeyCounts,
    ops: Vec<Op>,
    /// The first write refused: the batch fails with it.
    refused: Option<Error>,
}

/// A finished batch, not yet committed.
pub(super) struct Staged {
    overlay: BTreeMap<FullKey, (Arc<KeySpec>, KeyState)>,
    ops: Vec<Op>,
}

impl<'s> Batch<'s> {
    pub(super) fn new(replica: &'s mut Replica) -> Self {
        Self {
            replica,
            overlay: BTreeMap::new(),
            created: KeyCounts::default(),
            ops: Vec::new(),
            refused: None,
        }
    }

    /// The staged writes, or the first write refused.
    pub(super) fn finish(self) -> Result<Staged> {
        match self.refused {
            Some(err) => Err(err),
            None => Ok(Staged {
                overlay: self.overlay,
                ops: self.ops,
            }),
        }
    }

    /// `result` of a write, the first error kept to fail the batch.
    fn noted(&mut self, result: Result<()>) -> Result<()> {
        if let Err(err) = &result {
            self.refused.get_or_insert_with(|| err.clone());
        }
        result
    }

    /// Stages [`Replica::set`].
    pub fn set<T: Serialize + 'static>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<()> {
        let result = put_value(self, unit, key, value, Intent::Set);
        self.noted(result)
    }

    /// Stages [`Replica::set_path`]: a set of the batch's current value
    /// with `path` replaced (not in place: the batch keeps its writes
    /// apart from the replica until it commits).
    pub fn set_path<T: serde::de::DeserializeOwned>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        path: &crate::path::Path,
        value: serde_json::Value,
    ) -> Result<()> {
        let writes = vec![(path.clone(), Ok(value))];
        let result = put_paths(self, unit, key, writes, Typing::Decode(check_kept::<T>));
        self.noted(result)
    }

    /// Stages [`Replica::set_paths`] (not in place, as
    /// [`set_path`](Self::set_path)).
    pub fn set_paths<T: serde::de::DeserializeOwned>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        writes: impl IntoIterator<Item = (crate::path::Path, serde_json::Value)>,
    ) -> Result<()> {
        let writes = json_writes(writes);
        let result = put_paths(self, unit, key, writes, Typing::Decode(check_kept::<T>));
        self.noted(result)
    }

    /// Stages [`Replica::set_items`] (not in place, as
    /// [`set_path`](Self::set_path)).
    pub fn set_items<E: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<Vec<E>>,
        items: impl IntoIterator<Item = (usize, E)>,
    ) -> Result<()> {
        let result = put_paths(
            self,
            unit,
            key,
            item_writes(items),
            Typing::Proven(crate::key::check_type::<E>),
        );
        self.noted(result)
    }

    /// Stages [`Replica::increment`].
    pub fn increment<T>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        delta: i64,
    ) -> Result<()> {
        let result = put_delta(self, unit, key, delta);
        self.noted(result)
    }

    /// Stages [`Replica::resolve`].
    pub fn resolve<T: Serialize + 'static>(
        &mut self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        value: T,
    ) -> Result<()> {
        let result = put_value(self, unit, key, value, Intent::Resolve);
        self.noted(result)
    }

    /// Stages a write through a type-erased declaration (used by restore).
    pub(crate) fn write(
        &mut self,
        unit: &UnitAddress,
        spec: &Arc<KeySpec>,
        intent: Intent,
    ) -> Result<()> {
        let full = spec.full_key(unit);
        let result = self
            .replica
            .check_apartment(&full)
            .and_then(|()| Replica::check_access(spec, &full, unit, Action::Write))
            .and_then(|()| self.stage(spec, full, unit, intent, None));
        self.noted(result)
    }

    /// `value_len`: as for [`Sink::put`].
    fn stage(
        &mut self,
        spec: &Arc<KeySpec>,
        full: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
    ) -> Result<()> {
        if self.ops.len() >= MAX_GROUP_OPS {
            return Err(Error::Malformed {
                what: "batch",
                reason: format!("more than {MAX_GROUP_OPS} writes"),
            });
        }
        let creates = !self.overlay.contains_key(&full) && !self.replica.states.contains_key(&full);
        if creates {
            self.replica.counts.room(Some(&self.created), spec, &full)?;
        }
        let current = match self.overlay.get(&full) {
            Some((_, state)) => Some(state),
            None => self.replica.states.get(&full),
        };
        let context = self.replica.context();
        let payload = payload_for(&context, spec, &full, current, intent)?;
        let how = Stamping {
            now: context.now,
            reuse: None,
            value_len,
        };
        let op = self
            .replica
            .stamp_op(spec, full.clone(), unit, payload, &how)?;
        if creates {
            self.created.add(spec, &full);
        }
        let replica = &*self.replica;
        let (_, state) = self.overlay.entry(full).or_insert_with_key(|full| {
            let state = replica
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

impl Sink for Batch<'_> {
    type Done = ();

    fn replica(&self) -> &Replica {
        self.replica
    }

    fn put(
        &mut self,
        spec: &Arc<KeySpec>,
        full: FullKey,
        unit: &UnitAddress,
        intent: Intent,
        value_len: Option<usize>,
    ) -> Result<()> {
        self.stage(spec, full, unit, intent, value_len)
    }

    fn current(&self, spec: &KeySpec, full: &FullKey) -> Arc<serde_json::Value> {
        match self.overlay.get(full) {
            Some((_, state)) => state
                .shared_value()
                .unwrap_or_else(|| Arc::new(spec.default_value().clone())),
            None => self.replica.current(spec, full),
        }
    }
}

impl Staged {
    /// Whether the batch staged `key` and it leaves the page.
    fn syncs(&self, key: &FullKey) -> bool {
        self.overlay
            .get(key)
            .is_some_and(|(spec, _)| spec.lifetime() != Lifetime::Memory)
    }

    fn message(&self) -> Option<Message> {
        let ops: Vec<Op> = self
            .ops
            .iter()
            .filter(|op| self.syncs(&op.key))
            .cloned()
            .collect();
        (!ops.is_empty()).then_some(Message::Ops(OpGroup { ops }))
    }
}

impl Replica {
    /// Refuses a batch whose message other tabs would refuse as too large,
    /// or that would grow a state past the limit, before anything is
    /// committed.
    pub(super) fn check_staged(&self, staged: &Staged) -> Result<()> {
        if let Some(message) = staged.message() {
            message.encode()?;
        }
        for state in staged.overlay.values().map(|(_, state)| state) {
            Self::fits_under(state, crate::limits::MAX_LOCAL_STATE_BYTES)?;
        }
        Ok(())
    }

    pub(super) fn commit(&mut self, staged: Staged) -> BatchWrite {
        let message = staged.message();
        let mut changes = Vec::new();
        for (key, (spec, state)) in staged.overlay {
            let before = self.before(&spec, &key);
            self.count_key(&spec, &key);
            self.sizes.remove(&key);
            self.states.insert(key.clone(), state);
            self.touch(&spec, &key);
            changes.extend(self.changed(&spec, &key, before));
        }
        BatchWrite {
            group: OpGroup { ops: staged.ops },
            changes,
            message,
            held: Vec::new(),
        }
    }
}
