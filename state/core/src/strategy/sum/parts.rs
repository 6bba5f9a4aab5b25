//! What a sum state is made of: per-writer slots of cumulative totals,
//! the resets that set the counter, and the totals folded away.

use serde::Serialize;

use crate::decode::{Fields, FromJson, Why};

use crate::clock::Stamp;
use crate::id::UnitAddress;
use crate::limits::MAX_OP_ITEMS;
use crate::op::OpId;

/// Cumulative totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Sum of positive increments.
    pub p: u64,
    /// Sum of the magnitudes of negative increments.
    pub n: u64,
}

impl Totals {
    /// What these totals add above `floor`, per direction (never negative:
    /// a slot seen behind what a reset observed has not caught up yet).
    pub(super) fn above(self, floor: Totals) -> Totals {
        Totals {
            p: self.p.saturating_sub(floor.p),
            n: self.n.saturating_sub(floor.n),
        }
    }

    pub(super) fn net(self) -> i128 {
        i128::from(self.p) - i128::from(self.n)
    }
}

/// One writer's slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// The slot: its owner tab and the sequence number of its first op.
    pub slot: OpId,
    /// Sequence number of the latest op applied.
    pub seq: u64,
    /// Stamp of the latest op applied.
    pub last: Stamp,
    /// Writer of the latest op applied.
    pub writer: UnitAddress,
    /// Cumulative positive total.
    pub p: u64,
    /// Cumulative negative total.
    pub n: u64,
}

impl Slot {
    /// The slot's totals.
    pub fn totals(&self) -> Totals {
        Totals {
            p: self.p,
            n: self.n,
        }
    }

    /// Componentwise join: totals and the latest op are maxima; the writer
    /// follows the latest op (ties broken by writer), so the join is
    /// commutative, associative and idempotent.
    pub(super) fn join(&mut self, other: &Slot) {
        self.p = self.p.max(other.p);
        self.n = self.n.max(other.n);
        if (other.seq, other.last, &other.writer) > (self.seq, self.last, &self.writer) {
            self.seq = other.seq;
            self.last = other.last;
            self.writer = other.writer.clone();
        }
    }
}

/// A slot's totals as a reset saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The slot.
    pub slot: OpId,
    /// Its positive total then.
    pub p: u64,
    /// Its negative total then.
    pub n: u64,
    /// Wall time (ms) of the slot's latest op then, so what a reset tells
    /// about a slot is compacted when the slot itself would be.
    #[serde(default)]
    pub last: u64,
}

/// A write that sets the counter to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reset {
    /// The write's stamp.
    pub stamp: Stamp,
    /// The write's op id.
    pub id: OpId,
    /// Who reset.
    pub writer: UnitAddress,
    /// The value set.
    pub target: i64,
    /// The writer's fold horizon: slots last written before it were already
    /// part of the value the writer replaced.
    pub horizon: u64,
    /// Every slot the writer held, with its totals then; sorted by slot.
    pub observed: Vec<Observed>,
}

impl Reset {
    pub(super) fn observed(&self, slot: &OpId) -> Totals {
        self.observed
            .binary_search_by(|o| o.slot.cmp(slot))
            .ok()
            .and_then(|i| self.observed.get(i))
            .map_or_else(Totals::default, |o| Totals { p: o.p, n: o.n })
    }

    /// Total order of resets: (stamp, id), then content for forged twins.
    pub(super) fn beats(&self, other: &Reset) -> bool {
        (self.stamp, self.id)
            .cmp(&(other.stamp, other.id))
            .then_with(|| canonical_reset(self).cmp(&canonical_reset(other)))
            .is_gt()
    }
}

fn canonical_reset(reset: &Reset) -> String {
    crate::limits::to_text(reset).unwrap_or_default()
}

/// Slots folded away: what they added on top of the winning reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Folded {
    /// The reset these totals are relative to (`None`: no reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<OpId>,
    /// Every slot last written before this wall time (ms) is folded here.
    #[serde(default)]
    pub horizon: u64,
    /// Folded positive total.
    #[serde(default)]
    pub p: u64,
    /// Folded negative total.
    #[serde(default)]
    pub n: u64,
    /// The writers of the folded slots, sorted and unique (so folded
    /// totals stay attributable and permission checks still apply): the
    /// first [`MAX_OP_ITEMS`] in that order, which is all a state from
    /// outside may list. Keeping the smallest makes the list a function of
    /// the writers folded, whatever order they were folded in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<UnitAddress>,
}

impl Folded {
    pub(super) fn fresh(after: Option<OpId>, horizon: u64) -> Self {
        Self {
            after,
            horizon,
            ..Self::default()
        }
    }

    pub(super) fn key(&self) -> (u64, u64, u64, &[UnitAddress]) {
        (self.horizon, self.p, self.n, &self.writers)
    }

    pub(super) fn add(&mut self, totals: Totals, writer: &UnitAddress) {
        self.p = self.p.saturating_add(totals.p);
        self.n = self.n.saturating_add(totals.n);
        if let Err(at) = self.writers.binary_search(writer)
            && at < MAX_OP_ITEMS
        {
            self.writers.insert(at, writer.clone());
            self.writers.truncate(MAX_OP_ITEMS);
        }
    }
}

impl FromJson for Totals {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "totals")?;
        Ok(Self {
            p: fields.req("p")?,
            n: fields.req("n")?,
        })
    }
}

impl FromJson for Slot {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a slot")?;
        Ok(Self {
            slot: fields.req("slot")?,
            seq: fields.req("seq")?,
            last: fields.req("last")?,
            writer: fields.req("writer")?,
            p: fields.req("p")?,
            n: fields.req("n")?,
        })
    }
}

impl FromJson for Observed {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "an observed slot")?;
        Ok(Self {
            slot: fields.req("slot")?,
            p: fields.req("p")?,
            n: fields.req("n")?,
            last: fields.or_default("last")?,
        })
    }
}

impl FromJson for Reset {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a reset")?;
        Ok(Self {
            stamp: fields.req("stamp")?,
            id: fields.req("id")?,
            writer: fields.req("writer")?,
            target: fields.req("target")?,
            horizon: fields.req("horizon")?,
            observed: fields.req("observed")?,
        })
    }
}

impl FromJson for Folded {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "folded totals")?;
        Ok(Self {
            after: fields.opt("after")?,
            horizon: fields.or_default("horizon")?,
            p: fields.or_default("p")?,
            n: fields.or_default("n")?,
            writers: fields.or_default("writers")?,
        })
    }
}

crate::decode::deserialize_through_tree!(Totals, Slot, Observed, Reset, Folded);
