//! The one seam every way to other replicas plugs into: BroadcastChannel,
//! the `storage`-event fallback, a relay, and the in-memory bus of tests.
//!
//! **Out** is a call: [`Transport::send`] hands one [`Message`] to the
//! transport, which delivers it to every other replica it reaches (never
//! back to the sender). The state manager keeps its transports as
//! `Rc<dyn Transport>` and hands each of them every op, sync answer and
//! cross-tab event.
//!
//! **In** is a callback given when the transport opens: each transport
//! passes the raw text it receives, untouched, to the replica's
//! [`receive_text`](crate::Replica::receive_text) (in an app, through the
//! state manager's method of that name). Raw text rather than decoded
//! messages crosses the seam so that decoding and all validation happen
//! in one place, the core. [`MemoryBus`], for tests, queues what each
//! endpoint receives instead; a test drains it
//! ([`BusEndpoint::drain`]) when it wants delivery to happen.
//!
//! A closure `Fn(&Message) -> Result<()>` is a transport too (a test that
//! records what was sent).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use crate::error::Result;
use crate::id::TabId;
use crate::message::Message;

/// A way out to other replicas.
pub trait Transport {
    /// Broadcasts `message` to every other replica this transport reaches
    /// (never back to the sender). An error says this message did not go
    /// out; the transport stays usable.
    fn send(&self, message: &Message) -> Result<()>;
}

impl<F: Fn(&Message) -> Result<()>> Transport for F {
    fn send(&self, message: &Message) -> Result<()> {
        self(message)
    }
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

/// One tab's connection to a [`MemoryBus`]: a [`Transport`] out, and a
/// queue in.
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

    /// Takes every message received since the last call, oldest first, as
    /// raw untrusted text (for [`Replica::receive_text`](crate::Replica::receive_text)).
    pub fn drain(&self) -> Vec<String> {
        self.bus
            .borrow_mut()
            .queues
            .get_mut(&self.tab)
            .map(|queue| queue.drain(..).collect())
            .unwrap_or_default()
    }
}

impl Transport for BusEndpoint {
    fn send(&self, message: &Message) -> Result<()> {
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
}
