//! What the tab holding the browser's link does: open the socket, follow
//! the link's state machine, apply what the relay sends.

use std::rc::Rc;

use gaesup_protocol::{
    AckStatus, Link, LinkOutput, LinkStatus, Rebase, Sequenced, Snapshot, SnapshotRefusals,
    StreamId,
};
use gaesup_state_core::{COMPACT_AFTER_MS, FullKey, Message, OpGroup, Storage};
use gloo_timers::callback::{Interval, Timeout};

use super::{Announce, Remote, TICK_MS, is_transient, now_ms, relay_error_notice, wire};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What a tab says of a write the relay refused for good (`None` for an
/// ack that is not such a refusal).
pub(super) fn refusal_notice(ack: &gaesup_protocol::Ack) -> Option<String> {
    let AckStatus::Refused { code, message } = &ack.status else {
        return None;
    };
    if is_transient(code) {
        return None;
    }
    Some(if code == gaesup_protocol::code::STALE {
        format!(
            "The relay refused write {} as stale ({message}): it was made more than {} days before the key's newest write (this device was away that long, or its clock is behind), and this device takes the relay's state of that key instead.",
            ack.op,
            COMPACT_AFTER_MS / DAY_MS
        )
    } else {
        format!(
            "The relay refused write {} ({code}: {message}); it stays on this device only.",
            ack.op
        )
    })
}

impl Remote {
    // ----- the leading tab ----------------------------------------------

    /// This tab now holds the link.
    pub(super) fn lead(self: &Rc<Self>) {
        let streams = vec![
            StreamId::Apartment(self.apartment.clone()),
            StreamId::Global,
        ];
        let link = {
            let storage = self.storage.borrow();
            let empty = gaesup_state_core::MemoryStorage::new();
            let storage: &dyn Storage = match storage.as_ref() {
                Some(storage) => storage,
                None => &empty,
            };
            Link::new(
                self.client.clone(),
                Some(self.config.token().to_owned()),
                streams,
                storage,
            )
        };
        *self.link.borrow_mut() = Some(link);
        // What this tab carried for another one holding the link is its
        // own link's now; the other tabs send theirs again.
        self.take_own_carried();
        self.announce(&Announce::Leading);
        let weak = Rc::downgrade(self);
        *self.ticker.borrow_mut() = Some(Interval::new(TICK_MS, move || {
            if let Some(remote) = weak.upgrade() {
                remote.tick();
            }
        }));
        self.connect();
    }

    /// The ops this tab holds in memory only (storage refused them): in
    /// its link if it leads, else those it carries for the tab that does.
    pub(in crate::connect) fn unsaved(&self) -> Vec<gaesup_state_core::Op> {
        let mut ops = self
            .link
            .borrow()
            .as_ref()
            .map(Link::unsaved)
            .unwrap_or_default();
        ops.extend(self.carried.borrow().values().cloned());
        ops
    }

    pub(super) fn with_link<R>(
        &self,
        f: impl FnOnce(&mut Link, &mut dyn Storage) -> R,
    ) -> Option<R> {
        let mut link = self.link.borrow_mut();
        let link = link.as_mut()?;
        let mut storage = self.storage.borrow_mut();
        let mut memory = gaesup_state_core::MemoryStorage::new();
        let storage: &mut dyn Storage = match storage.as_mut() {
            Some(storage) => storage,
            None => &mut memory,
        };
        Some(f(link, storage))
    }

    pub(super) fn link_status(&self) -> Option<LinkStatus> {
        self.link
            .borrow()
            .as_ref()
            .map(|link| link.status().clone())
    }

    /// Opens a WebSocket (replacing any other).
    pub(super) fn connect(self: &Rc<Self>) {
        self.reconnect.borrow_mut().take();
        if matches!(
            self.link_status(),
            None | Some(LinkStatus::Refused(_) | LinkStatus::Off)
        ) {
            return;
        }
        self.with_link(|link, _| link.connecting());
        let generation = self.bump();
        let weak = Rc::downgrade(self);
        let opened = wire::Socket::open(&self.config.ws_url(), move |event| {
            if let Some(remote) = weak.upgrade()
                && remote.generation.get() == generation
            {
                remote.on_socket(event);
            }
        });
        match opened {
            Ok(socket) => *self.socket.borrow_mut() = Some(socket),
            Err(_) => {
                // No WebSocket at all (removed, blocked): as a socket that
                // never opened, which leads to the HTTP fallback.
                let weak = Rc::downgrade(self);
                *self.reconnect.borrow_mut() = Some(Timeout::new(0, move || {
                    if let Some(remote) = weak.upgrade() {
                        remote.on_socket(wire::SocketEvent::Closed);
                    }
                }));
            }
        }
        self.publish();
    }

    pub(super) fn bump(&self) -> u64 {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        generation
    }

    pub(super) fn on_socket(self: &Rc<Self>, event: wire::SocketEvent) {
        let now = now_ms();
        match event {
            wire::SocketEvent::Open => {
                let frames = self
                    .with_link(|link, _| link.on_open(now))
                    .unwrap_or_default();
                self.send_frames(&frames);
            }
            wire::SocketEvent::Text(text) => {
                if let Some(out) = self.with_link(|link, storage| link.on_text(&text, now, storage))
                {
                    self.handle(out);
                }
            }
            wire::SocketEvent::Closed => {
                self.socket.borrow_mut().take();
                self.closed();
            }
        }
        self.publish();
    }

    /// The socket is gone: retry after the link's delay, or fall back to
    /// HTTP. A socket tried while on HTTP ([`probe_socket`](Self::probe_socket))
    /// leaves the HTTP loops running as they are: started again, the old
    /// loop's long poll would still be held at the relay beside the new
    /// one's (each holds one of the relay's connections). Loops that ended
    /// (this generation's or none) start.
    pub(super) fn closed(self: &Rc<Self>) {
        let delay = self
            .with_link(|link, _| link.on_close(js_sys::Math::random(), now_ms()))
            .flatten();
        let Some(delay) = delay else {
            return;
        };
        if self.link_status() == Some(LinkStatus::HttpFallback) {
            if !self.http_running() {
                self.start_http();
            }
        } else {
            self.retry_in(delay);
        }
    }

    pub(super) fn retry_in(self: &Rc<Self>, delay_ms: u64) {
        let weak = Rc::downgrade(self);
        *self.reconnect.borrow_mut() = Some(Timeout::new(
            u32::try_from(delay_ms).unwrap_or(u32::MAX),
            move || {
                if let Some(remote) = weak.upgrade() {
                    remote.connect();
                }
            },
        ));
    }

    pub(super) fn online(self: &Rc<Self>) {
        self.with_link(|link, _| link.online());
        if self.link_status() == Some(LinkStatus::Offline) {
            self.connect();
        }
    }

    pub(super) fn tick(self: &Rc<Self>) {
        // A clear() made in this tab fires no storage event here: what the
        // link waits on is written back now, not at its next read.
        let gone = match (self.link.borrow().as_ref(), self.storage.borrow().as_ref()) {
            (Some(link), Some(storage)) => link.outbox_gone(storage),
            _ => false,
        };
        if gone {
            self.refresh_outbox();
        }
        let now = now_ms();
        let Some((frames, dead)) = self.with_link(|link, _| link.tick(now)) else {
            return;
        };
        self.send_frames(&frames);
        if dead {
            // Three heartbeats without a word: the socket is dead even if
            // the browser has not noticed.
            self.bump();
            self.socket.borrow_mut().take();
            self.closed();
        } else if self.link.borrow().as_ref().is_some_and(|link| {
            link.status() == &LinkStatus::HttpFallback && link.wants_socket(now)
        }) && self.socket.borrow().is_none()
        {
            // On HTTP: try the WebSocket again now and then.
            self.probe_socket();
        }
        self.publish();
    }

    /// While on HTTP, tries a WebSocket without leaving HTTP until it is
    /// welcomed.
    pub(super) fn probe_socket(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let generation = self.generation.get();
        if let Ok(socket) = wire::Socket::open(&self.config.ws_url(), move |event| {
            if let Some(remote) = weak.upgrade()
                && remote.generation.get() == generation
            {
                remote.on_socket(event);
            }
        }) {
            *self.socket.borrow_mut() = Some(socket);
        } else {
            // Still no WebSocket: wait for the next retry.
            self.with_link(|link, _| link.online());
            self.with_link(|link, _| link.on_close(0.0, now_ms()));
        }
    }

    pub(super) fn send_frames(&self, frames: &[String]) {
        if frames.is_empty() {
            return;
        }
        let socket = self.socket.borrow();
        if let Some(socket) = socket.as_ref() {
            for frame in frames {
                if !socket.send(frame) {
                    // Not open after all: the close event follows and the
                    // ops go again after the next hello.
                    break;
                }
            }
        }
    }

    /// Does what the link says.
    pub(super) fn handle(self: &Rc<Self>, mut out: LinkOutput) {
        self.send_frames(&out.send);
        for (stream, ops) in std::mem::take(&mut out.ops) {
            self.apply_ops(&stream, ops);
        }
        for snapshot in std::mem::take(&mut out.snapshots) {
            self.apply_snapshot(snapshot);
        }
        // Only with what came applied does the link know whether a stale
        // key may be re-based.
        if let Some(settled) = self.with_link(|link, storage| link.settle(storage)) {
            out.absorb(settled);
        }
        if !out.acks.is_empty() {
            self.confirm(&out.acks, &out.keys);
            self.announce(&Announce::Acks {
                acks: out.acks.clone(),
                keys: out.keys.clone(),
            });
        }
        // Every refusal shows here; another tab shows those of its own
        // writes too (see `confirm`).
        for notice in out.acks.iter().filter_map(refusal_notice) {
            self.notice(notice);
        }
        for rebase in &out.rebase {
            self.rebase(rebase);
        }
        // A read past the relay's budget, or a long poll or socket hello
        // refused because the node (or this token's subject on it) holds
        // all the connections it may, is asked again without a word: a
        // busy relay is no problem of this page's, and nothing waits on it
        // for long (a poll is refused only with nothing new to say, and
        // pushes still go; a socket refused so twice sends the link to
        // HTTP, whose pushes hold no connection). Storage trouble or a
        // relay shutting down is said: it may last.
        if let Some((code, message)) = out.error
            && code != gaesup_protocol::code::RATE_LIMITED
            && code != gaesup_protocol::code::TOO_MANY_CONNECTIONS
        {
            self.notice(relay_error_notice(&code, &message));
        }
        if out.close {
            self.bump();
            self.socket.borrow_mut().take();
            self.closed();
        }
    }

    /// The relay refused this browser's old writes to a counter, a merge
    /// or a user-resolve key as stale (it was offline for longer than the
    /// compaction horizon): re-base the key on this tab's state, which
    /// still holds them (a counter's total, or the fields they wrote), or
    /// for a user-resolve key write again what they wrote, so the other
    /// devices get them too. The re-base goes through the outbox like any
    /// write; its ack answers the refused writes.
    fn rebase(self: &Rc<Self>, rebase: &Rebase) {
        let Some(conn) = self.conn.upgrade() else {
            // The page is going: the held writes stay in the outbox for
            // the next one.
            return;
        };
        let written = match &rebase.resolved {
            // A user-resolve key: what the refused writes wrote, which this
            // tab no longer holds.
            #[cfg(feature = "user-resolve")]
            Some(resolved) => conn.manager.rebase_resolve(
                &rebase.writer,
                &rebase.key,
                &resolved.value,
                &resolved.supersedes,
            ),
            _ => conn
                .manager
                .rebase(&rebase.writer, &rebase.key, rebase.fields.as_deref()),
        };
        if let Err(gaesup_state::StateError::Core(gaesup_state_core::Error::UnknownKey {
            ..
        })) = &written
        {
            // Not declared in this tab (a key declared from JavaScript at
            // run time, its unit not shown here: the app declares every
            // unit's keys at start): the held writes wait in the outbox
            // until a tab holding the link can write the key, rather than
            // be refused for good.
            self.with_link(|link, _| link.rebase_later(&rebase.key));
            return;
        }
        let id = written.as_ref().ok().map(|written| written.id);
        let refused = self
            .with_link(|link, storage| link.rebased(&rebase.key, id, storage))
            .unwrap_or_default();
        let days = COMPACT_AFTER_MS / DAY_MS;
        let what = format!(
            "Writes to {} made more than {days} days before the key's newest write (this device was offline that long, or its clock is behind) came back stale from the relay",
            rebase.key
        );
        self.notice(match written {
            Ok(_) if refused.is_empty() => format!(
                "{what}; they were carried over in a new write so the other devices get them too."
            ),
            Ok(_) => format!(
                "{what}, and could not be carried over (the new write could not wait in the outbox); this device takes the relay's state of that key instead."
            ),
            Err(err) => format!(
                "{what}, and could not be carried over ({err}); this device takes the relay's state of that key instead."
            ),
        });
        if !refused.is_empty() {
            self.confirm(&refused, &[]);
            self.announce(&Announce::Acks {
                acks: refused,
                keys: Vec::new(),
            });
        }
        self.publish();
    }

    /// Applies the relay's ops one by one (one hostile op refuses only
    /// itself), passes them to the other tabs, saves, then moves the
    /// cursor: a reload in between fetches them again, never skips them.
    /// An op this tab kept in memory only (its key not declared here yet,
    /// say) or refused for now pins the stored cursor before it for the
    /// rest of the page, so a reload fetches it again too.
    pub(super) fn apply_ops(&self, stream: &StreamId, ops: Vec<Sequenced>) {
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        let (Some(first), Some(last)) = (
            ops.first().map(|sequenced| sequenced.seq),
            ops.last().map(|sequenced| sequenced.seq),
        ) else {
            return;
        };
        let keys: Vec<FullKey> = ops.iter().map(|s| s.op.key.clone()).collect();
        let mut stale = Vec::new();
        let mut unsaved = None;
        for sequenced in ops {
            // This browser's own ops come back. Applied again (harmless, and
            // it restores one a crash kept from being saved), not passed on
            // to the other tabs, and no sign of something missed if refused
            // as stale: writes that span the horizon come back that way.
            let own = self
                .with_link(|link, _| link.is_own(&sequenced.op.id))
                .unwrap_or(false);
            let seq = sequenced.seq;
            let message = Message::Ops(OpGroup {
                ops: vec![sequenced.op],
            });
            let received = conn.receive_relayed(&message, !own);
            if received.unsaved && unsaved.is_none() {
                unsaved = Some(seq);
            }
            if !own {
                stale.extend(received.stale);
            }
        }
        // Storage that could not take what they changed (full, say) keeps
        // the stored cursor before all of them: the page goes on (the save
        // is tried again), a reload fetches them again. Keys they did not
        // touch keep nothing back.
        if conn.save_now().any_of(keys.iter()) {
            unsaved = Some(first);
        }
        self.with_link(|link, storage| {
            // Before the cursor moves past the refused ops.
            for key in &stale {
                link.refused_stale(key, storage);
            }
            if let Some(seq) = unsaved {
                link.pin_cursor(stream, seq.saturating_sub(1));
            }
            link.save_cursor(stream, last, storage);
        });
    }

    /// Merges the relay's states of a stream, passes them to the other
    /// tabs, saves, then moves the cursor. The states go in messages every
    /// tab takes ([`Snapshot::into_tab_groups`]): one this version refuses
    /// is left out and said, rather than the tabs refusing them all while
    /// the cursor moves past them.
    pub(super) fn apply_snapshot(&self, snapshot: Snapshot) {
        // A piece not merged must not let a later one move the stored
        // cursor past it (the link counts it merged), nor leave the sum of
        // what the run left out where a later piece would add to it.
        let skipped = || {
            self.with_link(|link, _| {
                link.pin_here(&snapshot.stream);
                link.snapshot_refusals(&snapshot.stream, snapshot.piece, snapshot.more, &[], 0);
            })
        };
        let Some(conn) = self.conn.upgrade() else {
            skipped();
            return;
        };
        let Ok(from) = conn.manager.tab() else {
            skipped();
            return;
        };
        // The link set `seq` and `more` for a snapshot in pieces: the
        // cursor moves only once the last piece is merged.
        let (stream, seq, more) = (snapshot.stream.clone(), snapshot.seq, snapshot.more);
        let piece = snapshot.piece;
        let keys: Vec<FullKey> = snapshot.states.iter().map(|s| s.key.clone()).collect();
        let (groups, refused) = snapshot.into_tab_groups();
        // Said once the last piece is in, for the whole snapshot.
        let passed = groups.iter().map(Vec::len).sum::<usize>();
        let sum = self
            .with_link(|link, _| link.snapshot_refusals(&stream, piece, more, &refused, passed))
            .flatten();
        if let Some(SnapshotRefusals {
            refused,
            passed,
            first: Some((key, err)),
        }) = sum
        {
            self.notice(format!(
                "The relay's snapshot of {stream} held {refused} state(s) this app refuses, left out ({key}: {err}); the other {passed} were passed on."
            ));
        }
        let mut unsaved = false;
        for states in groups {
            let message = Message::SyncState {
                from,
                to: None,
                states,
                have: None,
            };
            unsaved |= conn.receive_relayed(&message, true).unsaved;
        }
        unsaved |= conn.save_now().any_of(keys.iter());
        self.with_link(|link, storage| {
            if unsaved {
                link.pin_here(&stream);
            }
            if !more {
                link.snapshot_saved(&stream, seq, storage);
            }
        });
    }
}
