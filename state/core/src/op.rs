//! Operations: the envelope every write produces.
//!
//! The same [`Op`] is applied locally, broadcast to other tabs and (later)
//! carried by a remote relay. Receivers never re-read storage: the op is
//! the message.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Stamp;
use crate::error::{Error, Result};
use crate::id::{TabId, UnitAddress};
use crate::limits::{
    MAX_FIELD_NAME_BYTES, MAX_GROUP_OPS, MAX_OP_ITEMS, MAX_SUM_SLOTS, check_value,
};
use crate::scope::FullKey;
use crate::strategy::Observed;

/// Unique id of an op: the issuing tab and its per-tab sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    /// The issuing tab.
    pub tab: TabId,
    /// Increments with every op the tab issues.
    pub seq: u64,
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tab, self.seq)
    }
}

/// What an op does; which variants a key accepts depends on its strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
// Adjacently tagged, tag first; decoded by `crate::tagged` (no second,
// buffering decoder per input type).
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Payload {
    /// Replace the whole value (last-write-wins, first-write-wins, and
    /// non-object values of merge keys).
    Set {
        /// The new value (shared, not copied, by the op, the key's state
        /// and the change it makes).
        value: Arc<Value>,
    },
    /// Change some top-level fields of an object (merge keys). Only the
    /// fields the writer changed travel, so concurrent edits of different
    /// fields both survive.
    Patch {
        /// Fields set to a value (possibly `null`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        set: BTreeMap<String, Value>,
        /// Fields removed.
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        remove: BTreeSet<String>,
    },
    /// A sum key's increment: the writer's slot and its cumulative
    /// positive and negative totals after this increment (a PN-counter).
    /// Receivers keep the per-slot maximum, so redelivery and reordering
    /// are harmless.
    Count {
        /// The slot: the writer tab and the sequence number of the slot's
        /// first op (this op's own id for a new slot).
        slot: OpId,
        /// Cumulative sum of positive increments.
        p: u64,
        /// Cumulative sum of the magnitudes of negative increments.
        n: u64,
    },
    /// A sum key set to a value: the newest reset wins, and only what slots
    /// gained beyond `observed` counts on top of it.
    Reset {
        /// The value set.
        target: i64,
        /// The writer's fold horizon (wall ms).
        #[serde(default)]
        horizon: u64,
        /// Every slot the writer held and its totals then, sorted by slot.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        observed: Vec<Observed>,
    },
    /// A user-resolve write: a new value that supersedes every entry the
    /// writer had seen (a multi-value register).
    Resolve {
        /// The new value (shared like [`Payload::Set`]'s).
        value: Arc<Value>,
        /// Ids of the entries this write replaces.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        supersedes: Vec<OpId>,
    },
}

/// [`Payload`]'s variant names.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PayloadKind {
    Set,
    Patch,
    Count,
    Reset,
    Resolve,
}

/// The content of each [`Payload`] variant, as it is encoded.
mod content {
    use super::{BTreeMap, BTreeSet, Deserialize, Observed, OpId, Value};

    #[derive(Deserialize)]
    pub(super) struct Set {
        pub value: Value,
    }

    #[derive(Deserialize)]
    pub(super) struct Patch {
        #[serde(default)]
        pub set: BTreeMap<String, Value>,
        #[serde(default)]
        pub remove: BTreeSet<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct Count {
        pub slot: OpId,
        pub p: u64,
        pub n: u64,
    }

    #[derive(Deserialize)]
    pub(super) struct Reset {
        pub target: i64,
        #[serde(default)]
        pub horizon: u64,
        #[serde(default)]
        pub observed: Vec<Observed>,
    }

    #[derive(Deserialize)]
    pub(super) struct Resolve {
        pub value: Value,
        #[serde(default)]
        pub supersedes: Vec<OpId>,
    }
}

impl crate::tagged::TagFirst for Payload {
    const TAG: &'static str = "kind";
    const EXPECTING: &'static str = "an op payload {\"kind\": …, \"data\": …}";
    type Tag = PayloadKind;

    fn content<'de, A: serde::de::MapAccess<'de>>(
        tag: PayloadKind,
        content: crate::tagged::Content<'_, A>,
    ) -> Result<Self, A::Error> {
        Ok(match tag {
            PayloadKind::Set => {
                let c: content::Set = content.read()?;
                Self::Set {
                    value: Arc::new(c.value),
                }
            }
            PayloadKind::Patch => {
                let c: content::Patch = content.read()?;
                Self::Patch {
                    set: c.set,
                    remove: c.remove,
                }
            }
            PayloadKind::Count => {
                let c: content::Count = content.read()?;
                Self::Count {
                    slot: c.slot,
                    p: c.p,
                    n: c.n,
                }
            }
            PayloadKind::Reset => {
                let c: content::Reset = content.read()?;
                Self::Reset {
                    target: c.target,
                    horizon: c.horizon,
                    observed: c.observed,
                }
            }
            PayloadKind::Resolve => {
                let c: content::Resolve = content.read()?;
                Self::Resolve {
                    value: Arc::new(c.value),
                    supersedes: c.supersedes,
                }
            }
        })
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::tagged::deserialize(deserializer)
    }
}

impl Payload {
    /// The kind of every payload of this version, as an op names it
    /// (`"kind"`): an op of another kind was written by a newer version.
    pub const KINDS: [&'static str; 5] = ["set", "patch", "count", "reset", "resolve"];

    /// A short name for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Set { .. } => "set",
            Self::Patch { .. } => "patch",
            Self::Count { .. } => "count",
            Self::Reset { .. } => "reset",
            Self::Resolve { .. } => "resolve",
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique id.
    pub id: OpId,
    /// The key written.
    pub key: FullKey,
    /// The unit on whose behalf the write was made.
    pub writer: UnitAddress,
    /// Version stamp; its tab must equal `id.tab`.
    pub stamp: Stamp,
    /// Schema version of the value(s) in the payload.
    pub schema: u32,
    /// The change.
    pub payload: Payload,
}

impl Op {
    /// Structural checks that need no key declaration: stamp and id agree,
    /// values within size and depth limits, bounded lists, no op that
    /// supersedes itself or a later write of its own tab. Permission,
    /// scope and strategy checks happen in the replica.
    pub fn validate(&self) -> Result<()> {
        self.check_built(false)
    }

    /// [`validate`](Self::validate) for an op this replica built. With
    /// `value_checked` the value it came from was measured by
    /// [`check_value`] already (a set's or resolve's value, or the object
    /// a merge patch was taken from), so it is not walked twice.
    pub(crate) fn check_built(&self, value_checked: bool) -> Result<()> {
        let bad = |reason: &str| Error::Malformed {
            what: "op",
            reason: format!("{reason} (op {})", self.id),
        };
        if self.stamp.tab != self.id.tab {
            return Err(bad("stamp tab differs from op tab"));
        }
        match &self.payload {
            Payload::Set { value } => {
                if !value_checked {
                    check_value(value, "op value")?;
                }
            }
            Payload::Patch { set, remove } => {
                // The name first: a write too wide for a patch goes whole
                // unless a name is too long, and that is then the reason.
                if set
                    .keys()
                    .chain(remove)
                    .any(|name| name.len() > MAX_FIELD_NAME_BYTES)
                {
                    return Err(bad("field name too long"));
                }
                if set.len() + remove.len() > MAX_OP_ITEMS {
                    return Err(bad("too many fields in patch"));
                }
                if set.keys().any(|name| remove.contains(name)) {
                    return Err(bad("field both set and removed"));
                }
                // Fields of a measured value are no larger or deeper.
                if !value_checked {
                    for value in set.values() {
                        check_value(value, "op value")?;
                    }
                }
            }
            Payload::Count { slot, .. } => {
                if slot.tab != self.id.tab || slot.seq > self.id.seq {
                    return Err(bad(
                        "a slot belongs to the tab that opened it, before this op",
                    ));
                }
            }
            Payload::Reset { observed, .. } => {
                if observed.len() > MAX_SUM_SLOTS {
                    return Err(bad("reset observes too many slots"));
                }
                if !observed.windows(2).all(|w| w[0].slot < w[1].slot) {
                    return Err(bad("observed slots must be sorted and unique"));
                }
                if observed.iter().any(|o| o.last > self.stamp.wall_ms) {
                    return Err(bad("a reset observes slots written after it"));
                }
            }
            Payload::Resolve { value, supersedes } => {
                if !value_checked {
                    check_value(value, "op value")?;
                }
                if supersedes.len() > MAX_OP_ITEMS {
                    return Err(bad("supersedes too many entries"));
                }
                // A tab's writes form a chain: a write can only have seen
                // earlier writes of its own tab.
                if supersedes
                    .iter()
                    .any(|id| id.tab == self.id.tab && id.seq >= self.id.seq)
                {
                    return Err(bad("op supersedes itself or a later write of its own tab"));
                }
            }
        }
        Ok(())
    }
}

/// Ops that apply atomically (a batch): a receiver validates all of them
/// before applying any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroup {
    /// The ops, in the order they were made.
    pub ops: Vec<Op>,
}

impl OpGroup {
    /// Validates the group's size and every op's structure.
    pub fn validate(&self) -> Result<()> {
        if self.ops.is_empty() || self.ops.len() > MAX_GROUP_OPS {
            return Err(Error::Malformed {
                what: "op group",
                reason: format!("must hold 1 to {MAX_GROUP_OPS} ops"),
            });
        }
        self.ops.iter().try_for_each(Op::validate)
    }

    /// Whether the group holds no ops (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
