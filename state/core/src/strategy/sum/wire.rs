//! A sum state as JSON: slots as a list sorted by slot (op ids are not
//! strings), and the shape older versions stored, read as folded totals.

use serde::Serialize;

use super::{Folded, Reset, Slot, SumState, Totals};
use crate::decode::{Fields, FromJson, Why};
use crate::id::TabId;
use crate::vec_map::VecMap;

/// Reads the JSON shape: slots as a list (in any order), and `tabs`, the
/// shape stored by versions before resets and folding: one `{p, n}` per
/// tab id, read as already folded.
impl FromJson for SumState {
    fn from_json(value: crate::decode::Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(value, "a sum state")?;
        let mut state = SumState {
            reset: fields.opt::<Reset>("reset")?,
            folded: fields.or_default::<Folded>("folded")?,
            slots: VecMap::new(),
        };
        let slots: Vec<Slot> = fields.or_default("slots")?;
        let tabs: VecMap<TabId, Totals> = fields.or_default("tabs")?;
        for (_, totals) in tabs {
            state.folded.p = state.folded.p.saturating_add(totals.p);
            state.folded.n = state.folded.n.saturating_add(totals.n);
        }
        state.join_slots(slots);
        state.normalize();
        Ok(state)
    }
}

crate::decode::deserialize_through_tree!(SumState);

impl Serialize for SumState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            reset: &'a Option<Reset>,
            folded: &'a Folded,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            slots: Vec<&'a Slot>,
        }
        Wire {
            reset: &self.reset,
            folded: &self.folded,
            slots: self.slots.values().collect(),
        }
        .serialize(serializer)
    }
}
