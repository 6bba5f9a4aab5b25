//! What a status display shows about storage and cross-tab sync.
//!
//! Written by the browser adapters (`gaesup-state-web`), read by the
//! shell's panel and the inspector unit; plain signals, so it lives here
//! where units (which depend on this crate only) can name it.

use gaesup_state_core::decode::{Fields, FromJson, Node, Why};
use leptos::prelude::*;

/// Read-only signals describing one tab's browser sync.
///
/// `Copy`, `Send` and `Sync`, so it can be handed to components or put in
/// a context; the closures and browser objects behind it stay in the
/// `WebSync` that produced it (`gaesup-state-web`). Plain signals rather
/// than a constructor so native tests of a status component can build one
/// from `Signal::stored`.
#[derive(Clone, Copy, Debug)]
pub struct SyncStatus {
    /// Whether a way to other tabs is open (BroadcastChannel or the
    /// storage-event fallback).
    pub channel_up: Signal<bool>,
    /// When the last message from another tab was accepted, in
    /// milliseconds since the epoch (`Date.now()`); `None` until one is.
    pub last_sync_ms: Signal<Option<f64>>,
    /// Incoming messages refused: text the manager rejected, plus data
    /// that was not text at all.
    pub dropped: Signal<usize>,
    /// Estimated bytes used in `localStorage` by this origin (keys plus
    /// values, two bytes per UTF-16 unit).
    pub quota_used: Signal<usize>,
    /// Specific problems worth showing, oldest first, each one sentence
    /// naming the key or storage concerned (storage full or unavailable,
    /// entries set aside, messages that could not be sent).
    pub notices: Signal<Vec<String>>,
    /// The link to other devices through a relay.
    pub relay: Signal<RelayStatus>,
}

/// The link to a relay, as a status display shows it.
///
/// Written by the tab that holds the link and announced to the browser's
/// other tabs, so every tab shows the same line.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RelayStatus {
    /// `off` (no relay configured), `offline`, `connecting`, `connected`,
    /// `HTTP fallback` or `refused: …` (bad token, token expired).
    pub link: String,
    /// Ops written to the outbox and not yet acknowledged by the relay.
    pub waiting: usize,
    /// When the relay last confirmed a write (ms since the epoch).
    pub last_ack_ms: Option<f64>,
    /// Whether this tab holds the browser's link (another tab does
    /// otherwise).
    pub here: bool,
}

/// Read from the fields of a JSON object (others ignored), as another
/// tab announces it.
impl FromJson for RelayStatus {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let mut fields = Fields::of(node, "a relay status")?;
        Ok(Self {
            link: fields.req("link")?,
            waiting: fields.req("waiting")?,
            last_ack_ms: fields.opt("last_ack_ms")?,
            here: fields.req("here")?,
        })
    }
}
gaesup_state_core::deserialize_through_tree!(RelayStatus);

impl RelayStatus {
    /// No relay configured.
    pub fn off() -> Self {
        Self {
            link: "off".to_owned(),
            ..Self::default()
        }
    }

    /// Whether a relay is configured at all.
    pub fn is_configured(&self) -> bool {
        self.link != "off"
    }
}
