//! The transport trait the web layer implements (BroadcastChannel, the
//! `storage` event fallback, later a relay), and an in-memory bus for tests.
//!
//! Design: sending is a call; receiving is a queue the owner drains. A
//! browser transport receives in callbacks; it pushes the raw text into a
//! queue and the reactive layer drains it (for example once per animation
//! frame) into [`Replica::receive_text`](crate::Replica::receive_text). Raw text
//! rather than decoded messages crosses the trait so that decoding and all
//! validation happen in one place, the core.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use crate::error::Result;
use crate::id::TabId;
use crate::message::Message;

/// Sends messages to other tabs and collects what they sent.
pub trait Transport {
    /// Broadcasts `message` to every other tab (never back to the sender).
    fn send(&mut self, message: &Message) -> Result<()>;
    /// Takes every message received since the last call, oldest first, as
    /// raw untrusted text.
    fn drain(&mut self) -> Vec<String>;
}

#[derive(Debug, Default)]
struct Bus {
    queues: BTreeMap<TabId, VecDeque<String>>,
    drop_all: bool,
    duplicate_all: bool,
    sent: usize,
}

/// An in-memory broadcast bus: every endpoint receives what the others
/// send, in order, unless told to drop or duplicate messages.
#[derive(Debug, Clone, Default)]
pub struct MemoryBus {
    bus: Rc<RefCell<Bus>>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the bus as `tab`.
    pub fn connect(&self, tab: TabId) -> BusEndpoint {
        self.bus.borrow_mut().queues.entry(tab).or_default();
        BusEndpoint {
            tab,
            bus: Rc::clone(&self.bus),
        }
    }

    /// While set, messages are lost.
    pub fn set_drop_all(&self, drop_all: bool) {
        self.bus.borrow_mut().drop_all = drop_all;
    }

    /// While set, every message arrives twice.
    pub fn set_duplicate_all(&self, duplicate_all: bool) {
        self.bus.borrow_mut().duplicate_all = duplicate_all;
    }

    /// Puts raw (possibly hostile) text into `tab`'s queue.
    pub fn inject(&self, tab: TabId, text: &str) {
        if let Some(queue) = self.bus.borrow_mut().queues.get_mut(&tab) {
            queue.push_back(text.to_owned());
        }
    }

    /// Messages sent so far.
    pub fn sent(&self) -> usize {
        self.bus.borrow().sent
    }
}

/// One tab's connection to a [`MemoryBus`].
#[derive(Debug, Clone)]
pub struct BusEndpoint {
    tab: TabId,
    bus: Rc<RefCell<Bus>>,
}

impl BusEndpoint {
    /// The tab this endpoint belongs to.
    pub fn tab(&self) -> TabId {
        self.tab
    }
}

impl Transport for BusEndpoint {
    fn send(&mut self, message: &Message) -> Result<()> {
        let text = message.encode()?;
        let mut bus = self.bus.borrow_mut();
        bus.sent += 1;
        if bus.drop_all {
            return Ok(());
        }
        let copies = if bus.duplicate_all { 2 } else { 1 };
        for (tab, queue) in bus.queues.iter_mut() {
            if *tab != self.tab {
                for _ in 0..copies {
                    queue.push_back(text.clone());
                }
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Vec<String> {
        self.bus
            .borrow_mut()
            .queues
            .get_mut(&self.tab)
            .map(|queue| queue.drain(..).collect())
            .unwrap_or_default()
    }
}
