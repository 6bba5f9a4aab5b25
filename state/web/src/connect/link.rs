//! A connection's way to other tabs: which transport it opens, the
//! [`Link`] the manager sends through, and what it makes of what comes in.

use std::rc::Weak;

use gaesup_state::StateManager;
use gaesup_state_core::{ApartmentId, Error as CoreError, FullKey, Message, Transport};
use leptos::prelude::Set;

use super::Inner;
use super::options::{TransportChoice, TransportKind};
use super::status::StatusWriter;
use crate::transport::{BroadcastTransport, StorageEventTransport, bus_key, channel_name};

/// A tab asks the others for what it missed at most this often (ms), however
/// often it is hidden and shown again; answers carry only what differs, and
/// each tab answers one asker at most once a second besides.
const SYNC_REQUEST_EVERY_MS: f64 = 5_000.0;

/// The transport a connection opened, and which one it is.
pub(super) struct Opened {
    pub(super) transport: Box<dyn Transport>,
    pub(super) kind: TransportKind,
}

/// What the manager sends through: the connection's transport, while the
/// connection lives (the manager cannot forget a transport, so it holds
/// this rather than the transport itself).
pub(super) struct Link(pub(super) Weak<Inner>);

impl Transport for Link {
    fn send(&self, message: &Message) -> gaesup_state_core::Result<()> {
        match self.0.upgrade() {
            Some(inner) => inner.send(message),
            None => Ok(()),
        }
    }
}

/// Opens the transport `choice` asks for, falling back from the channel
/// to storage events; every failure becomes a notice.
pub(super) fn open_transport(
    choice: TransportChoice,
    apartment: &ApartmentId,
    weak: &Weak<Inner>,
    writer: StatusWriter,
) -> Option<Opened> {
    let on_text = |weak: Weak<Inner>| {
        move |text: String| {
            if let Some(inner) = weak.upgrade() {
                inner.receive_from_tab(&text);
            }
        }
    };
    let on_not_text = move || writer.dropped_one();
    let channel_error = match choice {
        TransportChoice::Off => return None,
        TransportChoice::StorageEvents => None,
        TransportChoice::Auto => {
            match BroadcastTransport::open_with(
                &channel_name(apartment),
                on_text(weak.clone()),
                on_not_text,
            ) {
                Ok(channel) => {
                    return Some(Opened {
                        transport: Box::new(channel),
                        kind: TransportKind::BroadcastChannel,
                    });
                }
                Err(err) => Some(err),
            }
        }
    };
    match StorageEventTransport::open_with(&bus_key(apartment), on_text(weak.clone()), on_not_text)
    {
        Ok(bus) => {
            if let Some(err) = channel_error {
                writer.notice(format!(
                    "{err}; other tabs are reached through storage events instead, which is slower."
                ));
            }
            Some(Opened {
                transport: Box::new(bus),
                kind: TransportKind::StorageEvents,
            })
        }
        Err(err) => {
            let channel = channel_error.map_or_else(String::new, |e| format!("{e}; "));
            writer.notice(format!(
                "Cross-tab sync is off ({channel}storage events: {err}); this tab will not see other tabs' changes until it is reloaded."
            ));
            None
        }
    }
}

impl Inner {
    /// Asks the other tabs for what this one lacks, unless it asked less
    /// than [`SYNC_REQUEST_EVERY_MS`] ago.
    pub(super) fn request_sync(&self) {
        if self.transport.is_none() {
            return;
        }
        let now = js_sys::Date::now();
        if self
            .last_request
            .get()
            .is_some_and(|last| now - last < SYNC_REQUEST_EVERY_MS)
        {
            return;
        }
        self.last_request.set(Some(now));
        let _ = self.manager.request_sync();
    }

    /// Sends through the transport, if one is open; a failure becomes a
    /// notice (and is returned to the manager).
    fn send(&self, message: &Message) -> gaesup_state_core::Result<()> {
        self.relay_outgoing(message);
        let Some(opened) = &self.transport else {
            return Ok(());
        };
        opened.transport.send(message).inspect_err(|err| {
            let reason = match err {
                CoreError::Transport { reason } => reason.clone(),
                other => other.to_string(),
            };
            self.writer.notice(format!(
                "{reason}; other tabs will catch up when they next sync."
            ));
        })
    }

    /// Text from another tab: to the manager, and to the relay link (the
    /// tab that holds it sends what the other tabs queued).
    fn receive_from_tab(&self, text: &str) {
        let stale = self.receive(text).stale;
        // Marked for the relay link, whichever tab holds it (see
        // `gaesup_protocol::mark_refused_stale`).
        self.relay_refused_stale(&stale);
        // The ops' outbox entries may not be readable here yet: their
        // storage events read them again once they are (see `page.rs`).
        // This read finds them if those events come first, or never come.
        if text.contains("\"ops\"") {
            self.relay_outbox_changed();
        }
    }

    /// Hands text to the manager and counts the outcome: a sync, or a
    /// dropped message.
    pub(super) fn receive(&self, text: &str) -> Received {
        let Ok(inbound) = self.manager.receive_text(text) else {
            // Nothing of it applied (the manager is gone or busy).
            return Received {
                stale: Vec::new(),
                unsaved: true,
            };
        };
        // Another apartment's message (all apartments share the channel,
        // for global keys) is neither a sync with another tab nor hostile.
        if inbound.foreign {
            return Received::default();
        }
        if inbound.errors.iter().all(StateManager::is_not_for_this_tab) {
            self.writer.last_sync_ms.try_set(Some(js_sys::Date::now()));
        } else {
            self.writer.dropped_one();
        }
        let unsaved = inbound.held > 0 || inbound.errors.iter().any(Received::for_now);
        // An op refused as stale that this tab would have dropped anyway
        // (a user-resolve op more than 14 days behind the newest write)
        // leaves this tab lacking nothing the relay keeps: it marks
        // nothing. (Its stream marked, the counter's and the cart's stale
        // writes would no longer be re-based.)
        let stale: Vec<FullKey> = inbound
            .errors
            .into_iter()
            .filter_map(|error| match error {
                CoreError::Stale {
                    key,
                    dropped_anyway: false,
                    ..
                } => Some(key),
                _ => None,
            })
            .collect();
        Received { stale, unsaved }
    }
}

/// What this tab made of a message from another tab or the relay.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// Keys of ops refused as stale (this tab's own writes moved a counter's
    /// or a merge key's floor past them).
    pub stale: Vec<FullKey>,
    /// Some of it was not saved: kept in memory only (for a key no unit
    /// here declared yet, or stamped ahead of this clock), refused by this
    /// version or its limits for now, or not taken at all. What the relay
    /// sent must then come again after a reload.
    pub unsaved: bool,
}

impl Received {
    /// A refusal that another page (a unit declaring the key, newer code,
    /// a corrected clock, room freed) may not repeat.
    fn for_now(error: &CoreError) -> bool {
        matches!(
            error,
            CoreError::UnknownKey { .. }
                | CoreError::NewerSchema { .. }
                | CoreError::ClockSkew { .. }
                | CoreError::TooLarge { .. }
                | CoreError::TooManyKeys { .. }
        )
    }
}
