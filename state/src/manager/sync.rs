//! Other tabs: the transports out, the text that comes in, and the
//! refusals counted.

use std::rc::Rc;

use gaesup_state_core::{Error as CoreError, Inbound, Message, Transport};

use super::{LOG_CAPACITY, Origin, Shared, StateManager};
use crate::error::Result;

impl StateManager {
    /// Adds a way out to other tabs (a BroadcastChannel, a relay, a
    /// [`MemoryBus`](gaesup_state_core::MemoryBus) endpoint in tests).
    /// Every op, sync reply and cross-tab event is handed to each
    /// transport; what a transport receives comes back through
    /// [`receive_text`](Self::receive_text).
    pub fn connect(&self, transport: impl Transport + 'static) -> Result<()> {
        self.shared()?
            .transports
            .borrow_mut()
            .push(Rc::new(transport));
        Ok(())
    }

    /// Asks the other tabs for their state (a new or re-awakened tab).
    pub fn request_sync(&self) -> Result<()> {
        let shared = self.shared()?;
        let request = shared.replica()?.sync_request();
        Self::send(&shared, &request);
        Ok(())
    }

    pub(super) fn send(shared: &Shared, message: &Message) {
        let transports: Vec<Rc<dyn Transport>> = shared.transports.borrow().clone();
        for transport in transports {
            // A failure is the transport's to report (the browser's says so
            // in its status); the message still goes to the others, and
            // the tabs it missed catch up at their next sync.
            let _ = transport.send(message);
        }
    }

    /// Handles text from another tab: applies ops, answers sync requests,
    /// dispatches events. Refused input is counted in
    /// [`dropped`](Self::dropped) and changes nothing.
    pub fn receive_text(&self, text: &str) -> Result<Inbound> {
        let shared = self.shared()?;
        let (inbound, unsaved) = {
            let mut replica = shared.replica_mut()?;
            let before = replica.unsaved();
            let inbound = replica.receive_text(text);
            let unsaved = replica.unsaved() > before;
            (inbound, unsaved)
        };
        self.publish(&shared, &inbound.changes, None, Origin::Remote);
        // Ops that moved only a stamp or a writer change no value, which
        // schedules no save (`publish`), yet leave their keys to save. (A
        // key left unsaved before, by a full storage say, waits for the
        // save that is due for it anyway.)
        if inbound.changes.is_empty() && unsaved {
            self.notify_dirty(&shared);
        }
        for reply in &inbound.replies {
            Self::send(&shared, reply);
        }
        for event in &inbound.events {
            Self::dispatch(&shared, event);
        }
        Self::record_dropped(&shared, &inbound.errors);
        // Applied ops may move stamps and writers without changing a
        // value, and refusals are counted: either way, worth a re-read.
        Self::bump(&shared);
        Ok(inbound)
    }

    /// Whether a refusal of incoming data only means "not for this tab"
    /// rather than bad input: another apartment's data (every apartment's
    /// manager shares one channel, for global keys). Such refusals are not
    /// counted as dropped messages. (Writes to keys this tab has not
    /// declared are not refused: they are held until declared.)
    pub fn is_not_for_this_tab(error: &CoreError) -> bool {
        matches!(error, CoreError::UnknownKey { .. }) || error.is_foreign()
    }

    pub(super) fn record_dropped(shared: &Shared, errors: &[CoreError]) {
        if errors.iter().all(Self::is_not_for_this_tab) {
            return;
        }
        let mut dropped = shared.dropped.borrow_mut();
        dropped.extend(
            errors
                .iter()
                .filter(|e| !Self::is_not_for_this_tab(e))
                .map(ToString::to_string),
        );
        let excess = dropped.len().saturating_sub(LOG_CAPACITY);
        dropped.drain(..excess);
    }

    /// Adds `text` to [`dropped`](Self::dropped) (what was not delivered).
    pub(super) fn record_refusal(shared: &Shared, text: String) {
        let mut dropped = shared.dropped.borrow_mut();
        if dropped.len() == LOG_CAPACITY {
            dropped.remove(0);
        }
        dropped.push(text);
    }

    /// Why recent incoming messages were refused, and deliveries cut short
    /// (see [`MAX_CASCADE_DEPTH`](crate::MAX_CASCADE_DEPTH)), oldest first (at most
    /// [`LOG_CAPACITY`]).
    pub fn dropped(&self) -> Vec<String> {
        self.shared()
            .map(|s| s.dropped.borrow().clone())
            .unwrap_or_default()
    }
}
