//! What every tab does: queue its ops, hear the tab holding the link,
//! show the status, settle writes waiting on acks.

use std::rc::Rc;

use gaesup_protocol::{Ack, AckStatus, MAX_OUTBOX, StreamId, write_outbox_entry};
use gaesup_state::{Confirmation, RelayStatus};
use gaesup_state_core::{
    FullKey, Lifetime, Message, Op, OpId, Storage, StorageError, encoded_len, split_by_len,
};
use gloo_timers::callback::Timeout;
use leptos::prelude::{GetUntracked, Set, Update, WithUntracked};

use super::super::Inner;
use super::super::link::Received;
use super::{Announce, RelayState, Remote, STATUSES, is_transient};
use crate::storage::BrowserStorage;

/// The most one message carrying ops to the tab that holds the link takes
/// (an op larger than that goes alone).
const CARRY_BYTES: usize = 1 << 20;

impl Remote {
    // ----- every tab --------------------------------------------------

    /// An op of this tab bound for the relay: into the outbox (and out, if
    /// this tab leads and is connected).
    ///
    /// Never dropped: the op is applied on this device already, so one
    /// left out would never reach the others. The outbox's limit is kept
    /// before writes apply ([`hold_back`](Self::hold_back)). Where storage
    /// refuses the op's entry (full, say), it waits in this page's memory:
    /// in the link if this tab holds it, else carried to the tab that does
    /// ([`carry`](Self::carry)).
    pub(super) fn queue(&self, op: Op) {
        if let Some(err) = self.take(op) {
            self.notice(format!(
                "A write could not be saved for the relay ({err}): it is sent while this page is open, and lost if the page closes first."
            ));
        }
        self.publish();
    }

    /// [`queue`](Self::queue) without a word: what storage said, if it
    /// refused the op's entry.
    fn take(&self, op: Op) -> Option<StorageError> {
        let mut storage = self.storage.borrow_mut();
        let mut link = self.link.borrow_mut();
        let leading = link.is_some();
        let (frames, refused) = match (link.as_mut(), storage.as_mut()) {
            (Some(link), Some(storage)) => match link.queue(op.clone(), storage) {
                Ok(frames) => (frames, None),
                Err(err) => (link.queue_unsaved(op.clone()), Some(err)),
            },
            // No storage: the outbox lives in this page only.
            (Some(link), None) => (link.queue_unsaved(op.clone()), None),
            (None, Some(storage)) => (Vec::new(), write_outbox_entry(&op, storage).err()),
            (None, None) => (Vec::new(), Some(StorageError::Unavailable)),
        };
        drop((link, storage));
        if leading {
            self.send_frames(&frames);
            self.push_wake.notify();
        } else {
            if refused.is_some() {
                self.carry(op);
            }
            self.status
                .update(|status| status.waiting = status.waiting.saturating_add(1));
            self.hold_back(self.status.with_untracked(|s| s.waiting));
        }
        refused
    }

    /// An op of this tab that storage refused while another tab holds the
    /// link: kept in this page until the relay answers it, and handed to
    /// the tab holding the link now and to each tab that takes it later
    /// ([`Announce::Leading`]), or to this tab's link if it leads.
    fn carry(&self, op: Op) {
        self.announce(&Announce::Carry {
            ops: vec![op.clone()],
        });
        self.carried.borrow_mut().insert(op.id, op);
    }

    /// Hands every op this tab carries to the tab that holds the link, in
    /// messages of [`CARRY_BYTES`] at most (one larger op alone).
    fn carry_again(&self) {
        let groups = {
            let carried = self.carried.borrow();
            split_by_len(
                carried
                    .values()
                    .map(|op| (op, encoded_len(op, CARRY_BYTES))),
                CARRY_BYTES,
                usize::MAX,
            )
            .into_iter()
            .map(|ops| ops.into_iter().cloned().collect::<Vec<Op>>())
            .collect::<Vec<_>>()
        };
        for ops in groups {
            self.announce(&Announce::Carry { ops });
        }
    }

    /// What another tab carried here, into this tab's link (see
    /// [`carry`](Self::carry)), taken as the link takes the outbox's
    /// entries: valid ops of the streams it follows, whether or not this
    /// tab declared their keys (a unit this page does not show, a key
    /// declared from JavaScript in the other tab). Ops it holds or was
    /// answered already are left out, and so are those of keys this tab
    /// knows never leave the device.
    fn take_carried(&self, ops: Vec<Op>) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        for op in ops {
            let wanted = self.link.borrow().as_ref().is_some_and(|link| {
                !link.is_own(&op.id) && link.streams().contains(&StreamId::of(&op.key))
            });
            if wanted && op.validate().is_ok() && !conn.stays_here(&op.key) {
                self.take(op);
            }
        }
        self.publish();
    }

    /// The relay answered these ops for good: this tab carries them no
    /// longer.
    fn answered(&self, acks: &[Ack]) {
        let mut carried = self.carried.borrow_mut();
        for ack in acks {
            let transient =
                matches!(&ack.status, AckStatus::Refused { code, .. } if is_transient(code));
            if !transient {
                carried.remove(&ack.op);
            }
        }
    }

    /// This tab now holds the link: what it carried goes into it.
    pub(super) fn take_own_carried(&self) {
        let carried = std::mem::take(&mut *self.carried.borrow_mut());
        for (_, op) in carried {
            self.take(op);
        }
    }

    /// Another tab of this browser added to the outbox (or cleared it):
    /// the leader soon reads it again (once per burst), sending what the
    /// others queued and writing back what it waits on that is gone.
    pub(super) fn outbox_changed(self: &Rc<Self>) {
        if self.link.borrow().is_none() || self.refresh.borrow().is_some() {
            return;
        }
        let weak = Rc::downgrade(self);
        *self.refresh.borrow_mut() = Some(Timeout::new(20, move || {
            if let Some(remote) = weak.upgrade() {
                remote.refresh.borrow_mut().take();
                remote.refresh_outbox();
            }
        }));
    }

    pub(super) fn refresh_outbox(&self) {
        let frames = {
            let mut link = self.link.borrow_mut();
            let mut storage = self.storage.borrow_mut();
            match (link.as_mut(), storage.as_mut()) {
                (Some(link), Some(storage)) => link.refresh_outbox(storage),
                _ => return,
            }
        };
        self.send_frames(&frames);
        self.push_wake.notify();
        self.publish();
    }

    pub(super) fn notice(&self, text: String) {
        if let Some(conn) = self.conn.upgrade() {
            conn.writer.notice(text);
        }
    }

    /// A word from the tab holding the link (or a tab asking for it).
    pub(super) fn on_status_message(&self, text: &str) {
        let Some(announce) = Announce::decode(text) else {
            return;
        };
        let leading = self.link.borrow().is_some();
        match announce {
            Announce::Ask if leading => self.announce_status(),
            Announce::Status(status) if !leading => self.show(RelayStatus {
                here: false,
                ..status
            }),
            Announce::Acks { acks, keys } if !leading => {
                self.answered(&acks);
                self.confirm(&acks, &keys);
            }
            Announce::Carry { ops } if leading => self.take_carried(ops),
            Announce::Leading if !leading => self.carry_again(),
            _ => {}
        }
    }

    pub(super) fn announce(&self, announce: &Announce) {
        if let (Some(channel), Ok(text)) = (&self.channel, gaesup_state_core::to_text(announce)) {
            let _ = channel.post_message(&text.into());
        }
    }

    /// Once the outbox is full, the manager refuses writes of persistent
    /// keys (`outbox_full`) until the relay takes some: a write that
    /// could not be queued would never reach the other devices.
    fn hold_back(&self, waiting: usize) {
        // What this tab carries counts even where the tab holding the link
        // does not count it (yet, or at all: one of an older version).
        let waiting = waiting.max(self.carried.borrow().len());
        if let Some(conn) = self.conn.upgrade() {
            let full = (waiting >= self.config.outbox_limit()).then_some(waiting);
            let _ = conn.manager.set_backlog(full);
        }
    }

    /// Writes the status signal (and what `gaesup.relay()` reads).
    pub(super) fn show(&self, status: RelayStatus) {
        self.hold_back(status.waiting);
        STATUSES.with(|statuses| {
            statuses
                .borrow_mut()
                .insert(self.apartment.as_str().to_owned(), status.clone());
        });
        self.status.set(status);
    }

    /// Tells writes waiting on these acks; a tab that does not hold the
    /// link also shows the refusals of its own writes (the one holding it
    /// shows every refusal, but the user may be looking at this one).
    pub(super) fn confirm(&self, acks: &[Ack], keys: &[(OpId, FullKey)]) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        if self.link.borrow().is_none()
            && let Ok(tab) = conn.manager.tab()
        {
            let own = acks.iter().filter(|ack| ack.op.tab == tab);
            for notice in own.filter_map(super::lead::refusal_notice) {
                self.notice(notice);
            }
        }
        for ack in acks {
            let outcome = match &ack.status {
                AckStatus::Applied { .. } | AckStatus::Duplicate { .. } => Confirmation::Confirmed,
                AckStatus::Refused { code, .. } if is_transient(code) => continue,
                AckStatus::Refused { code, message } => {
                    Confirmation::Refused(format!("{code}: {message}"))
                }
            };
            let key = keys
                .iter()
                .find(|(op, _)| *op == ack.op)
                .map(|(_, key)| key.clone());
            conn.manager.acknowledge(ack.op, key, outcome);
        }
    }

    // ----- status ---------------------------------------------------------

    /// Writes this tab's status and, if it leads, tells the other tabs.
    pub(super) fn publish(&self) {
        let status = {
            let link = self.link.borrow();
            let Some(link) = link.as_ref() else {
                return;
            };
            RelayStatus {
                link: link.status().describe(),
                waiting: link.waiting(),
                last_ack_ms: link.last_ack_ms().map(|ms| ms as f64),
                here: true,
            }
        };
        if self.status.with_untracked(|current| current != &status) {
            self.announce(&Announce::Status(status.clone()));
            self.show(status);
        }
    }

    /// Tells the other tabs the status as it is.
    pub(super) fn announce_status(&self) {
        let status = self.status.get_untracked();
        self.announce(&Announce::Status(status));
    }
}

impl Inner {
    /// Whether `op` is bound for a relay: its key persists (memory and
    /// session state stay on this device).
    fn relayable(&self, op: &Op) -> bool {
        self.persists(&op.key)
    }

    /// Whether `key` is declared here as memory or session state, which
    /// never leaves the device.
    fn stays_here(&self, key: &FullKey) -> bool {
        self.lifetime_of(key)
            .is_some_and(|lifetime| lifetime != Lifetime::Persistent)
    }

    /// Whether `key` persists: only such keys go to a relay (memory and
    /// session state stay on this device).
    fn persists(&self, key: &FullKey) -> bool {
        self.lifetime_of(key) == Some(Lifetime::Persistent)
    }

    /// `key`'s lifetime, if this tab declared it.
    fn lifetime_of(&self, key: &FullKey) -> Option<Lifetime> {
        self.manager
            .with_replica(|replica| replica.spec_for(key).map(|spec| spec.lifetime()).ok())
            .ok()
            .flatten()
    }

    /// Ops this tab made: to the relay's outbox (or to wait for the
    /// configuration).
    pub(in crate::connect) fn relay_outgoing(&self, message: &Message) {
        let Message::Ops(group) = message else {
            return;
        };
        let mut state = self.relay.borrow_mut();
        match &mut *state {
            RelayState::None => {}
            RelayState::Waiting(early) => {
                // Into the outbox in localStorage as well, as every tab's
                // ops go once a relay is attached: a page closed before
                // the configuration comes (or while it cannot be fetched)
                // loses none, and the tab holding the link (if another
                // has one) takes them. Taken out again if no relay comes.
                let mut storage = BrowserStorage::local().ok();
                for op in group.ops.iter().filter(|op| self.relayable(op)) {
                    let saved = storage
                        .as_mut()
                        .is_some_and(|storage| write_outbox_entry(op, storage).is_ok());
                    if saved {
                        early.saved.push(op.clone());
                    } else {
                        // Refused (full, say), or no storage: in this page.
                        early.unsaved.push(op.clone());
                    }
                }
                // Bounded like the outbox they are bound for.
                if early.len() >= MAX_OUTBOX {
                    let _ = self.manager.set_backlog(Some(early.len()));
                }
            }
            RelayState::Attached(remote) => {
                let remote = Rc::clone(remote);
                drop(state);
                for op in group.ops.iter().filter(|op| self.relayable(op)) {
                    remote.queue(op.clone());
                }
            }
        }
    }

    /// Another tab put ops in the outbox in localStorage (or cleared
    /// storage): the leader soon reads it again.
    pub(in crate::connect) fn relay_outbox_changed(&self) {
        let remote = match &*self.relay.borrow() {
            RelayState::Attached(remote) => Rc::clone(remote),
            _ => return,
        };
        remote.outbox_changed();
    }

    /// Applies a message from the relay and, unless it is this browser's
    /// own op coming back (`forward: false`: the other tabs have it), passes
    /// it on to the other tabs (not to the relay again).
    pub(super) fn receive_relayed(&self, message: &Message, forward: bool) -> Received {
        let Ok(text) = message.encode() else {
            return Received {
                stale: Vec::new(),
                unsaved: true,
            };
        };
        let received = self.receive(&text);
        if forward && let Some(opened) = &self.transport {
            let _ = opened.transport.send(message);
        }
        received
    }

    /// This tab refused ops of these keys as stale: with a relay, mark
    /// their streams in the storage every tab shares, before any cursor
    /// moves past them.
    pub(in crate::connect) fn relay_refused_stale(&self, keys: &[FullKey]) {
        self.mark_streams(keys, gaesup_protocol::mark_refused_stale);
    }

    /// The set-aside entry of `key` is being discarded: with a relay, and
    /// if the key goes to it (it persists), mark its stream to be taken
    /// whole, which brings back what the entry held from the relay's
    /// state (the ops behind the stored cursor are not sent again).
    pub(in crate::connect) fn relay_discarded(&self, key: &FullKey) {
        if self.persists(key) {
            self.mark_streams(std::slice::from_ref(key), gaesup_protocol::mark_resync);
        }
    }

    /// Marks the streams of `keys` with `mark`, unless no relay is
    /// configured.
    fn mark_streams(&self, keys: &[FullKey], mark: fn(&FullKey, &mut dyn Storage)) {
        if keys.is_empty() {
            return;
        }
        if self
            .relay
            .try_borrow()
            .is_ok_and(|state| matches!(*state, RelayState::None))
        {
            return;
        }
        let Ok(mut storage) = BrowserStorage::local() else {
            return;
        };
        for key in keys {
            mark(key, &mut storage);
        }
    }
}
