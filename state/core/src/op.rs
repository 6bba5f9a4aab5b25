//! Operations: the envelope every write produces.
//!
//! The same [`Op`] is applied locally, broadcast to other tabs and (later)
//! carried by a remote relay. Receivers never re-read storage: the op is
//! the message.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::clock::Stamp;
use crate::decode::{Fields, FromJson, Why, deserialize_through_tree, variant};
use crate::error::{Error, Result};
use crate::id::{TabId, UnitAddress};
use crate::limits::{
    MAX_FIELD_NAME_BYTES, MAX_GROUP_OPS, MAX_OP_ITEMS, MAX_SUM_SLOTS, check_value, encoded_len,
};
use crate::scope::FullKey;
use crate::strategy::{KeyState, Observed};

/// Unique id of an op: the issuing tab and its per-tab sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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

impl FromJson for Payload {
    /// `{"kind": <variant>, "data": <content>}`, in either order, other
    /// fields ignored.
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        #[derive(Clone, Copy)]
        enum Kind {
            Set,
            Patch,
            Count,
            Reset,
            Resolve,
        }
        let mut tagged = Fields::of(value, "an op payload {\"kind\": …, \"data\": …}")?;
        let kind: String = tagged.req("kind")?;
        let kind = variant(
            &kind,
            &[
                ("set", Kind::Set),
                ("patch", Kind::Patch),
                ("count", Kind::Count),
                ("reset", Kind::Reset),
                ("resolve", Kind::Resolve),
            ],
        )?;
        let data = tagged.node("data")?;
        let mut content = Fields::of(data, "an op payload's data")?;
        Ok(match kind {
            Kind::Set => Self::Set {
                value: content.req("value")?,
            },
            Kind::Patch => Self::Patch {
                set: content.or_default("set")?,
                remove: content.or_default("remove")?,
            },
            Kind::Count => Self::Count {
                slot: content.req("slot")?,
                p: content.req("p")?,
                n: content.req("n")?,
            },
            Kind::Reset => Self::Reset {
                target: content.req("target")?,
                horizon: content.or_default("horizon")?,
                observed: content.or_default("observed")?,
            },
            Kind::Resolve => Self::Resolve {
                value: content.req("value")?,
                supersedes: content.or_default("supersedes")?,
            },
        })
    }
}

impl FromJson for OpId {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "an op id")?;
        Ok(Self {
            tab: fields.req("tab")?,
            seq: fields.req("seq")?,
        })
    }
}

impl FromJson for Op {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "an op")?;
        Ok(Self {
            id: fields.req("id")?,
            key: fields.req("key")?,
            writer: fields.req("writer")?,
            stamp: fields.req("stamp")?,
            schema: fields.req("schema")?,
            payload: fields.req("payload")?,
        })
    }
}

impl FromJson for OpGroup {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "an op group")?;
        Ok(Self {
            ops: fields.req("ops")?,
        })
    }
}

deserialize_through_tree!(Payload, OpId, Op, OpGroup);

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
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Bytes a stored state keeps per item of an op past the op's own text
/// and its writer: a merge key keeps each field's stamp and id beside its
/// writer (the op carries them once), a counter a slot per tab it observed
/// (with its sequence numbers and totals), a user-resolve key what it saw
/// of each entry it supersedes.
pub const ITEM_BYTES: usize = 256;

/// Bytes a merge key's field entry may grow by, past its value and its
/// writer, when a patch replaces it: its stamp and op id written with more
/// digits, a value where it held a removal.
const REPLACED_ITEM_BYTES: usize = 96;

impl Op {
    /// An upper bound of what applying this op (`body` bytes serialized:
    /// the op, or its payload) adds to its key's stored state: its text,
    /// and per item (each field a patch sets or removes, each slot a reset
    /// observed, each entry a resolution supersedes, and one more) the
    /// stamp, id and writer kept beside it.
    ///
    /// A key's size estimate grows by this per op, and the state is
    /// measured whole only once the estimate nears the limit: an estimate
    /// that erred low would let a patch of many tiny fields (each kept
    /// with its own stamp, id and writer, some 200 bytes more than it
    /// takes in the patch) grow a state far past the limit unmeasured.
    pub fn growth_bound(&self, body: usize) -> usize {
        self.growth_bound_over(body, None)
    }

    /// [`growth_bound`](Self::growth_bound) of this op applied to `state`:
    /// a field of a patch that `state` keeps an entry for already only
    /// replaces that entry, so it counts its writer and
    /// `REPLACED_ITEM_BYTES` rather than a whole new entry's overhead.
    /// (An update of a hundred rows of a table then counts some 10 KB
    /// where a hundred new rows count 30.)
    pub fn growth_bound_over(&self, body: usize, state: Option<&KeyState>) -> usize {
        let (items, replaced) = match &self.payload {
            Payload::Patch { set, remove } => {
                let replaced = state.map_or(0, |state| {
                    state.held_fields(set.keys().chain(remove.iter()))
                });
                (set.len().saturating_add(remove.len()) - replaced, replaced)
            }
            Payload::Reset { observed, .. } => (observed.len(), 0),
            Payload::Resolve { supersedes, .. } => (supersedes.len(), 0),
            Payload::Set { .. } | Payload::Count { .. } => (0, 0),
        };
        // Serialized (an id may hold characters JSON escapes), counted
        // without building the text: this runs for every op applied.
        let writer = encoded_len(&self.writer, usize::MAX);
        let per_item = ITEM_BYTES.saturating_add(writer);
        let per_replaced = REPLACED_ITEM_BYTES.saturating_add(writer);
        body.saturating_add((1 + items).saturating_mul(per_item))
            .saturating_add(replaced.saturating_mul(per_replaced))
    }

    /// The newest write this op vouches for: its stamp's wall time, or,
    /// for a sum reset, the write its fold horizon implies when that is
    /// later (the horizon trails its writer's newest write by
    /// [`COMPACT_AFTER_MS`](crate::COMPACT_AFTER_MS)). A replica takes the
    /// op only when its clock would take a write stamped then: a horizon
    /// past the clock would drop every live slot and refuse every count
    /// until then.
    pub fn newest_wall(&self) -> u64 {
        match &self.payload {
            Payload::Reset { horizon, .. } => self
                .stamp
                .wall_ms
                .max(crate::strategy::implied_by(*horizon)),
            _ => self.stamp.wall_ms,
        }
    }

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
            Payload::Reset {
                observed, horizon, ..
            } => {
                // The writer's floor trails its newest write, which this
                // op's stamp follows: a horizon past the stamp would fold
                // away every slot and refuse every count until then.
                if *horizon > self.stamp.wall_ms {
                    return Err(bad("a reset's horizon is after its stamp"));
                }
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
