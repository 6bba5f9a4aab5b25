//! Applying what other tabs (or a relay) send: op groups, states, events.
//!
//! Nothing here fails as a whole: each refused item is listed in
//! [`Inbound::errors`] and changes nothing, and the rest still applies. A
//! group's ops for keys this replica knows apply atomically (one refused op
//! refuses them all); ops for undeclared keys, or stamped ahead of the
//! local clock, are held for later (see `held.rs`) and do not spoil it.

use std::sync::Arc;

use super::admit::{Admitted, OpVerdict, Source, StateVerdict};
use super::held::HeldItem;
use super::{Change, Inbound, Replica};
use crate::error::{Error, Result};
use crate::key::KeySpec;
use crate::limits::{MAX_STATE_BYTES, encoded_len};
use crate::message::{Message, SyncEntry};
use crate::op::{Op, OpGroup};
use crate::scope::FullKey;
use crate::strategy::{KeyState, SumState};
use crate::vec_map::in_key_order;

impl Replica {
    /// Applies one op from another tab (or a relay). Duplicates and
    /// reordering are harmless. Refused ops change nothing; an op held for
    /// later (undeclared key, clock ahead) returns `Ok(None)`.
    pub fn apply_remote(&mut self, op: &Op) -> Result<Option<Change>> {
        op.validate()?;
        let mut inbound = Inbound::default();
        self.apply_ops(std::slice::from_ref(op), &mut inbound);
        match inbound.errors.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(inbound.changes.into_iter().next()),
        }
    }

    /// Applies an op group: the ops for declared keys atomically (if any is
    /// refused, none applies), the rest held for later.
    pub fn apply_group(&mut self, group: &OpGroup) -> Result<Vec<Change>> {
        group.validate()?;
        let mut inbound = Inbound::default();
        self.apply_ops(&group.ops, &mut inbound);
        match inbound.errors.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(inbound.changes),
        }
    }

    fn apply_ops(&mut self, ops: &[Op], inbound: &mut Inbound) {
        let mut admitted = Vec::new();
        let mut held = Vec::new();
        let mut refusal = None;
        for op in ops {
            match self.admit_op(op) {
                OpVerdict::Apply(spec, op) => admitted.push((spec, op)),
                OpVerdict::Hold(due) => held.push((op.clone(), due)),
                OpVerdict::Foreign(err) => inbound.errors.push(err),
                OpVerdict::Refuse(err) => {
                    refusal.get_or_insert(err);
                }
            }
        }
        if let Some(err) = refusal {
            inbound.errors.push(err);
            return;
        }
        for (op, due) in held {
            let key = op.key.clone();
            match self.hold(&key, HeldItem::Op(op), due, false) {
                Ok(()) => inbound.held += 1,
                Err(err) => inbound.errors.push(err),
            }
        }
        match self.apply_admitted(admitted) {
            Ok(changes) => inbound.changes.extend(changes),
            Err(err) => inbound.errors.push(err),
        }
    }

    /// Applies admitted ops atomically: every touched state is checked
    /// against [`MAX_STATE_BYTES`] before any is changed.
    fn apply_admitted(&mut self, admitted: Vec<(Arc<KeySpec>, Op)>) -> Result<Vec<Change>> {
        // The ops by key, in key order; each key's in the order they came.
        let mut by_key: Vec<KeyOps> = Vec::new();
        for (spec, op) in in_key_order(admitted, |(_, op)| &op.key) {
            match by_key.last_mut() {
                Some(last) if last.key == op.key => last.ops.push(op),
                _ => by_key.push(KeyOps {
                    key: op.key.clone(),
                    spec,
                    ops: vec![op],
                }),
            }
        }
        // Count the keys the group would create, and measure the states it
        // would grow, first: a group over a limit changes nothing.
        let mut created = super::declare::KeyCounts::default();
        for KeyOps { key, spec, .. } in &by_key {
            if !self.states.contains_key(key) {
                self.counts.room(Some(&created), spec, key)?;
                created.add(spec, key);
            }
        }
        // A sum key's slots, bounded as a state from outside is: a group
        // of counts from many tabs, or a reset observing many slots, must
        // not leave a state every replica would refuse.
        for KeyOps { key, ops, .. } in &by_key {
            let empty = SumState::default();
            let sum = match self.states.get(key) {
                Some(KeyState::Sum(sum)) => sum,
                Some(_) => continue,
                None => &empty,
            };
            let after = sum.slots_after(ops);
            if after > sum.slot_count() && SumState::check_slots(after).is_err() {
                // That count keeps every slot: the ops may fold old ones
                // (a later stamp, a reset's horizon). The state they leave
                // decides.
                let mut trial = KeyState::Sum(sum.clone());
                for op in ops {
                    trial.apply(op)?;
                }
                if let KeyState::Sum(tried) = &trial
                    && tried.slot_count() > sum.slot_count()
                {
                    SumState::check_slots(tried.slot_count())?;
                }
            }
        }
        // Per key of `by_key`, what it grows to: the state tried and
        // measured where its size estimate, grown by the ops, may pass the
        // limit; that estimate otherwise.
        let mut grown: Vec<(Option<KeyState>, usize)> = Vec::with_capacity(by_key.len());
        for KeyOps { key, spec, ops } in &by_key {
            let held = self.states.get(key);
            let added: usize = ops
                .iter()
                .map(|op| op.growth_bound_over(encoded_len(&op.payload, MAX_STATE_BYTES), held))
                .sum();
            let estimate = self.size_estimate(key).saturating_add(added);
            if estimate > MAX_STATE_BYTES {
                let mut trial = held
                    .cloned()
                    .unwrap_or_else(|| KeyState::empty(spec.strategy()));
                for op in ops {
                    trial.apply(op)?;
                }
                let size = Self::fits(&trial)?;
                grown.push((Some(trial), size));
            } else {
                grown.push((None, estimate));
            }
        }
        let mut changes = Vec::new();
        for (KeyOps { key, spec, ops }, (trial, size)) in by_key.into_iter().zip(grown) {
            let before = self.before(&spec, &key);
            for op in &ops {
                self.observe_op(op);
            }
            match trial {
                Some(trial) => {
                    self.count_key(&spec, &key);
                    self.states.insert(key.clone(), trial);
                }
                None => {
                    let state = self.state_mut(&spec, &key);
                    for op in &ops {
                        state.apply(op)?;
                    }
                }
            }
            self.sizes.insert(key.clone(), size);
            self.touch(&spec, &key);
            changes.extend(self.changed(&spec, &key, before));
        }
        Ok(changes)
    }

    /// Records what a remote op says about time (admission bounded it).
    fn observe_op(&mut self, op: &Op) {
        let _ = self.hlc.observe(&op.stamp, self.now());
    }

    /// Merges another tab's state of a key (anti-entropy), as far as its
    /// items are admitted; the first refused item's error is returned
    /// (after the rest was merged).
    pub fn merge_state(&mut self, entry: &SyncEntry) -> Result<Option<Change>> {
        entry.state.validate()?;
        let mut inbound = Inbound::default();
        self.merge_entry(entry, Source::Wire, &mut inbound);
        match inbound.errors.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(inbound.changes.into_iter().next()),
        }
    }

    pub(super) fn merge_entry(&mut self, entry: &SyncEntry, source: Source, inbound: &mut Inbound) {
        match self.admit_state(entry, source) {
            StateVerdict::Apply(admitted) => {
                let Admitted {
                    spec,
                    state,
                    ahead,
                    errors,
                } = *admitted;
                inbound.errors.extend(errors);
                if let Some(ahead) = ahead {
                    let due = super::held::due_of(&ahead.state);
                    let key = ahead.key.clone();
                    match self.hold(&key, HeldItem::State(ahead), due, false) {
                        Ok(()) => inbound.held += 1,
                        Err(err) => inbound.errors.push(err),
                    }
                }
                // Nothing admissible is left: nothing to join. (A state
                // that arrived empty is joined, so the key exists here as
                // it does at the sender.)
                if state.is_empty() && !entry.state.is_empty() {
                    return;
                }
                match self.join_state(&spec, &entry.key, &state, source) {
                    Ok(change) => inbound.changes.extend(change),
                    Err(err) => inbound.errors.push(err),
                }
            }
            StateVerdict::Hold => {
                let key = entry.key.clone();
                match self.hold(&key, HeldItem::State(entry.clone()), None, false) {
                    Ok(()) => inbound.held += 1,
                    Err(err) => inbound.errors.push(err),
                }
            }
            StateVerdict::Foreign(err) | StateVerdict::Refuse(err) => inbound.errors.push(err),
        }
    }

    /// Joins an admitted state into the replica, refusing it whole if the
    /// result would pass [`MAX_STATE_BYTES`].
    pub(super) fn join_state(
        &mut self,
        spec: &KeySpec,
        key: &FullKey,
        state: &KeyState,
        source: Source,
    ) -> Result<Option<Change>> {
        let before = self.before(spec, key);
        let estimate = self
            .size_estimate(key)
            .saturating_add(encoded_len(state, MAX_STATE_BYTES + 1));
        let mut joined = self
            .states
            .get(key)
            .cloned()
            .unwrap_or_else(|| KeyState::empty(spec.strategy()));
        let old = self.states.get(key).cloned();
        // Joining into an existing or empty state (rather than inserting
        // the state as received) normalizes it, so every replica serializes
        // the same bytes.
        joined.merge(state)?;
        // Two states each within the slot bound may join past it (slots
        // from tabs the other never heard of): refused whole, as a group
        // of ops would be, rather than kept and refused by every reader.
        if let KeyState::Sum(sum) = &joined {
            let had = match &old {
                Some(KeyState::Sum(had)) => had.slot_count(),
                _ => 0,
            };
            if sum.slot_count() > had {
                SumState::check_slots(sum.slot_count())?;
            }
        }
        let size = if estimate > MAX_STATE_BYTES {
            Self::fits(&joined)?
        } else {
            estimate
        };
        if let Some(stamp) = state.max_stamp() {
            let _ = self.hlc.observe(&stamp, self.now());
        }
        if source == Source::Storage {
            // This tab's own writes, stored before a reload that kept its
            // id: never reissue their op ids.
            self.seq = self.seq.max(state.max_seq(self.tab).min(u64::MAX / 2));
        }
        let changed = old.as_ref() != Some(&joined);
        self.count_key(spec, key);
        self.states.insert(key.clone(), joined);
        self.sizes.insert(key.clone(), size);
        if changed {
            self.touch(spec, key);
        }
        Ok(self.changed(spec, key, before))
    }

    /// Handles a decoded message. Nothing here fails as a whole: refusals
    /// are listed in [`Inbound::errors`] and change nothing.
    pub fn receive(&mut self, message: &Message) -> Inbound {
        match message.validate() {
            Ok(()) => self.receive_valid(message),
            Err(err) => Inbound {
                errors: vec![err],
                ..Inbound::default()
            },
        }
    }

    /// Decodes untrusted text ([`Message::decode`]) and handles it.
    pub fn receive_text(&mut self, text: &str) -> Inbound {
        match Message::decode(text) {
            Ok(message) => self.receive_valid(&message),
            Err(err) => Inbound {
                errors: vec![err],
                ..Inbound::default()
            },
        }
    }

    fn receive_valid(&mut self, message: &Message) -> Inbound {
        let mut inbound = Inbound {
            changes: self.poll(),
            ..Inbound::default()
        };
        match message {
            Message::Ops(group) => self.apply_ops(&group.ops, &mut inbound),
            Message::SyncRequest { from, to, have } => {
                inbound.foreign = have.apartment.as_ref().is_some_and(|theirs| {
                    self.apartment.as_ref().is_some_and(|ours| ours != theirs)
                });
                if *from != self.tab && to.is_none_or(|to| to == self.tab) {
                    inbound.replies = self.answer(*from, have);
                }
            }
            Message::SyncState {
                from,
                to,
                states,
                have,
            } => {
                for entry in states {
                    self.merge_entry(entry, Source::Wire, &mut inbound);
                }
                if let (Some(have), true) = (have, *to == Some(self.tab)) {
                    inbound.replies.extend(self.push_back(*from, have));
                }
            }
            Message::Event(event) => match self.check_apartment(&event.topic) {
                Ok(()) => inbound.events.push(event.clone()),
                Err(err) => inbound.errors.push(err),
            },
        }
        if !inbound.errors.is_empty() && inbound.errors.iter().all(Error::is_foreign) {
            inbound.foreign = true;
        }
        inbound
    }

    /// Admits held items again (their key was declared, or their time came).
    pub(super) fn readmit(&mut self, items: Vec<HeldItem>) -> Inbound {
        let mut inbound = Inbound::default();
        for item in items {
            match item {
                HeldItem::Op(op) => self.apply_ops(std::slice::from_ref(&op), &mut inbound),
                HeldItem::State(entry) => self.merge_entry(&entry, Source::Wire, &mut inbound),
            }
        }
        inbound
    }
}

/// The admitted ops of one key, in the order they came.
struct KeyOps {
    key: FullKey,
    spec: Arc<KeySpec>,
    ops: Vec<Op>,
}
