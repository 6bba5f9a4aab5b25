//! A single-value register: last-write-wins keeps the greatest entry,
//! first-write-wins the least. Both are joins of a total order, hence
//! commutative, associative and idempotent.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::Entry;
use crate::decode::{Fields, FromJson, Why};

/// The state of a last-write-wins or first-write-wins key.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Register {
    /// The winning write, if any.
    pub entry: Option<Entry>,
}

impl FromJson for Register {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a register")?;
        Ok(Self {
            entry: fields.opt("entry")?,
        })
    }
}

crate::decode::deserialize_through_tree!(Register);

impl Register {
    /// The winning write's value, shared (not copied), if any.
    pub(crate) fn shared_value(&self) -> Option<Arc<Value>> {
        self.entry.as_ref().map(|entry| Arc::clone(&entry.value))
    }

    pub(crate) fn keep_max(&mut self, candidate: Entry) {
        self.keep(candidate, Ordering::Greater);
    }

    pub(crate) fn keep_min(&mut self, candidate: Entry) {
        self.keep(candidate, Ordering::Less);
    }

    pub(crate) fn merge_max(&mut self, other: &Register) {
        if let Some(entry) = &other.entry {
            self.keep_max(entry.clone());
        }
    }

    pub(crate) fn merge_min(&mut self, other: &Register) {
        if let Some(entry) = &other.entry {
            self.keep_min(entry.clone());
        }
    }

    fn keep(&mut self, candidate: Entry, wins_when: Ordering) {
        let replace = match &self.entry {
            None => true,
            Some(current) => candidate.order(current) == wins_when,
        };
        if replace {
            self.entry = Some(candidate);
        }
    }
}
