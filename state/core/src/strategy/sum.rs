//! The sum strategy: a PN-counter.
//!
//! Each tab owns one slot holding its cumulative positive and negative
//! totals. An op carries the writer tab's totals *after* the increment, and
//! applying keeps the per-tab maximum, so a redelivered or reordered op can
//! never count twice or go backwards. The value is Σp − Σn.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::TabId;

/// One tab's cumulative totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of positive increments.
    pub p: u64,
    /// Sum of the magnitudes of negative increments.
    pub n: u64,
}

/// The state of a sum key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SumState {
    /// Per-tab totals.
    pub tabs: BTreeMap<TabId, Totals>,
}

impl SumState {
    pub(crate) fn apply(&mut self, tab: TabId, totals: Totals) {
        let slot = self.tabs.entry(tab).or_default();
        slot.p = slot.p.max(totals.p);
        slot.n = slot.n.max(totals.n);
    }

    pub(crate) fn merge(&mut self, other: &SumState) {
        for (tab, totals) in &other.tabs {
            self.apply(*tab, *totals);
        }
    }

    /// The totals of one tab (zero if it never wrote).
    pub fn totals(&self, tab: TabId) -> Totals {
        self.tabs.get(&tab).copied().unwrap_or_default()
    }

    /// Σp − Σn, clamped to the `i64` range (accumulated in `i128`, so the
    /// clamp only bites on absurd totals).
    pub fn total(&self) -> i64 {
        let sum: i128 = self
            .tabs
            .values()
            .map(|t| i128::from(t.p) - i128::from(t.n))
            .sum();
        i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX })
    }
}
