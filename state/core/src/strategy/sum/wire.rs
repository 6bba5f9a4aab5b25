//! A sum state as JSON: slots as a list sorted by slot (op ids are not
//! strings), and the shape older versions stored, read as folded totals.

use serde::{Deserialize, Serialize};

use super::{Folded, Reset, Slot, SumState, Totals};
use crate::id::TabId;
use crate::vec_map::VecMap;

/// JSON shape: slots as a list sorted by slot (op ids are not strings).
/// `tabs` is the shape stored by versions before resets and folding: one
/// `{p, n}` per tab id, read as already folded.
#[derive(Deserialize)]
struct SumWire {
    #[serde(default)]
    reset: Option<Reset>,
    #[serde(default)]
    folded: Folded,
    #[serde(default)]
    slots: Vec<Slot>,
    #[serde(default)]
    tabs: VecMap<TabId, Totals>,
}

impl<'de> Deserialize<'de> for SumState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SumWire::deserialize(deserializer)?;
        let mut state = SumState {
            reset: wire.reset,
            folded: wire.folded,
            slots: VecMap::new(),
        };
        for (_, totals) in wire.tabs {
            state.folded.p = state.folded.p.saturating_add(totals.p);
            state.folded.n = state.folded.n.saturating_add(totals.n);
        }
        state.join_slots(wire.slots);
        state.normalize();
        Ok(state)
    }
}

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
