//! Wiring a [`StateManager`] to the page: storages, a way to other tabs,
//! and the page events that decide when to save and re-read.
//!
//! | file | what |
//! |---|---|
//! | `options.rs` | [`ConnectOptions`]: other storages, another transport |
//! | `attach.rs` | the page's storages, one per stored lifetime |
//! | `link.rs` | the transport to other tabs, what goes out and comes in |
//! | `save.rs` | when to save and re-read: frames, timeouts, bursts |
//! | `page.rs` | the page events followed: visibility, pagehide, storage |
//! | `status.rs` | the [`SyncStatus`] written, and its notices |
//! | `relay.rs` | the link to other devices through a relay |

mod attach;
mod link;
mod options;
mod page;
mod relay;
mod save;
mod status;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gaesup_state::{StateManager, SyncStatus};
use gaesup_state_core::{ApartmentId, Lifetime};
use gloo_events::EventListener;
use leptos::prelude::{Set, WithUntracked};
use wasm_bindgen::closure::Closure;
use web_sys::{Document, Window};

use crate::error::{Result, WebError};
use crate::storage::BrowserStorage;

pub use options::{ConnectOptions, TransportChoice, TransportKind};
#[cfg(feature = "js")]
pub(crate) use relay::relay_status;
pub use relay::{RelayConfig, RelayConfigError, fetch_relay_config, follow_relay_config};

/// Connects `manager` to this page's storages and to the other tabs of
/// `apartment`; see [`connect_browser_with_options`].
pub fn connect_browser(manager: StateManager, apartment: &ApartmentId) -> Result<WebSync> {
    connect_browser_with_options(manager, apartment, ConnectOptions::default())
}

/// Connects `manager` to the page:
///
/// - attaches `localStorage` for persistent keys and `sessionStorage` for
///   ephemeral ones (an unavailable one is skipped with a notice, and that
///   lifetime then lives in this tab's memory);
/// - opens the apartment's BroadcastChannel (or the storage-event
///   fallback), hands every outgoing message to it and every incoming text
///   to [`StateManager::receive_text`], then asks open tabs for what this
///   one missed;
/// - saves changed keys at most once per animation frame, and at once when
///   the page is hidden or left;
/// - re-reads storage and asks for missed state when the tab becomes
///   visible, and re-reads storage when another tab writes or clears it.
///
/// Fails only without a `window` or with a disposed manager; everything
/// else degrades and is reported in [`WebSync::status`]. Dropping the
/// returned [`WebSync`] detaches it all.
pub fn connect_browser_with_options(
    manager: StateManager,
    apartment: &ApartmentId,
    options: ConnectOptions,
) -> Result<WebSync> {
    let window = web_sys::window().ok_or(WebError::NoWindow)?;
    manager.bind(apartment)?;
    let writer = status::StatusWriter::new();

    attach::attach(manager, Lifetime::Persistent, options.persistent, writer)?;
    attach::attach(manager, Lifetime::Ephemeral, options.ephemeral, writer)?;

    let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
        let transport = link::open_transport(options.transport, apartment, weak, writer);
        let listeners = page::page_listeners(&window, weak);
        let frame_weak = weak.clone();
        let frame = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = frame_weak.upgrade() {
                inner.pending.set(None);
                inner.save();
            }
        });
        Inner {
            manager,
            document: window.document(),
            window,
            transport,
            local: BrowserStorage::local().ok(),
            frame,
            this: weak.clone(),
            pending: Cell::new(None),
            leaving: Cell::new(false),
            reread: RefCell::new(save::Reread::Nothing),
            last_request: Cell::new(None),
            writer,
            relay: RefCell::new(if options.expect_relay {
                relay::RelayState::Waiting(relay::Early::default())
            } else {
                relay::RelayState::None
            }),
            apartment: apartment.clone(),
            _listeners: listeners,
        }
    });

    // Saves are scheduled through `on_dirty` below; the link only carries
    // messages (and does nothing when no transport could be opened).
    manager.connect(link::Link(Rc::downgrade(&inner)))?;
    let weak = Rc::downgrade(&inner);
    manager.on_dirty(move || {
        if let Some(inner) = weak.upgrade() {
            inner.schedule();
        }
    })?;
    let weak = Rc::downgrade(&inner);
    manager.on_discard(move |key| {
        if let Some(inner) = weak.upgrade() {
            inner.relay_discarded(key);
        }
    })?;
    writer.channel_up.try_set(inner.transport.is_some());
    inner.request_sync();
    inner.update_quota();
    // Loading may have merged entries that need writing back (a migrated
    // schema, another tab's unsaved merge).
    inner.schedule();

    Ok(WebSync {
        status: writer.status(),
        inner,
    })
}

/// One connection: what the page's callbacks reach through a `Weak`.
struct Inner {
    manager: StateManager,
    window: Window,
    document: Option<Document>,
    transport: Option<link::Opened>,
    /// For the quota estimate, whichever storage persistent keys use.
    local: Option<BrowserStorage>,
    frame: Closure<dyn FnMut()>,
    /// Itself, for a save queued as a microtask (see `leaving`).
    this: Weak<Inner>,
    pending: Cell<Option<save::Pending>>,
    /// The page is being left (`pagehide`, until a `pageshow`): a save
    /// is due before the task ends, as no frame or timeout comes again.
    leaving: Cell<bool>,
    /// What other tabs' storage writes ask the next save to re-read.
    reread: RefCell<save::Reread>,
    /// When this tab last asked the others for state (ms since epoch).
    last_request: Cell<Option<f64>>,
    writer: status::StatusWriter,
    /// The link to other devices, once the app says whether there is one.
    relay: RefCell<relay::RelayState>,
    apartment: ApartmentId,
    _listeners: Vec<EventListener>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Before `frame` is freed, so the browser never calls a dropped
        // closure; the listeners and transport detach in their own drops.
        self.cancel_pending();
        self.writer.channel_up.try_set(false);
    }
}

/// A manager connected to the page; dropping it disconnects.
///
/// Holds the transport, the page listeners and the frame callback. It is
/// not `Send`, so keep it in the component that connected it (for example
/// in a `StoredValue::new_local`) and share its [`SyncStatus`] instead.
pub struct WebSync {
    inner: Rc<Inner>,
    status: SyncStatus,
}

impl std::fmt::Debug for WebSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSync")
            .field("transport", &self.transport())
            .finish_non_exhaustive()
    }
}

impl WebSync {
    /// Status signals for a display.
    pub fn status(&self) -> SyncStatus {
        self.status
    }

    /// The way to other tabs, if one is open.
    pub fn transport(&self) -> Option<TransportKind> {
        self.inner.transport.as_ref().map(|opened| opened.kind)
    }

    /// The connected manager.
    pub fn manager(&self) -> StateManager {
        self.inner.manager
    }

    /// Saves now instead of in the next frame (before a navigation the
    /// page itself starts, say).
    pub fn flush_now(&self) {
        self.inner.save_now();
    }

    /// A handle that links this connection to a relay once the app knows
    /// whether one is configured (reading `relay.json` takes a request).
    pub fn relay(&self) -> RelayHandle {
        RelayHandle(Rc::downgrade(&self.inner))
    }
}

/// Links a connection to a relay, or says there is none; see
/// [`WebSync::relay`]. Does nothing once the connection is dropped.
#[derive(Clone)]
pub struct RelayHandle(Weak<Inner>);

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle").finish_non_exhaustive()
    }
}

impl RelayHandle {
    /// Starts syncing with the relay of `config`: ops made since the
    /// connection opened (with [`ConnectOptions::expect_relay`]) go to the
    /// outbox first. A second call replaces the first link.
    pub fn attach(&self, config: RelayConfig) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let early = match inner.relay.replace(relay::RelayState::None) {
            // Those in storage are the outbox's already (and perhaps sent by
            // another tab holding the link): queued again, one answered
            // since would be written back and pushed twice. Only those a
            // clear of storage took are.
            relay::RelayState::Waiting(early) => early.into_ops(),
            // Ops storage refused wait in the old link's memory only: the
            // new one takes them over.
            relay::RelayState::Attached(old) => old.unsaved(),
            relay::RelayState::None => Vec::new(),
        };
        let remote = relay::Remote::start(&inner, &inner.apartment, config, early);
        *inner.relay.borrow_mut() = relay::RelayState::Attached(remote);
    }

    /// No relay: ops waiting for the configuration are forgotten (they are
    /// applied and saved on this device as always), and taken out of the
    /// outbox in `localStorage`; `problem` (a configuration that could not
    /// be read) becomes a notice.
    pub fn none(&self, problem: Option<String>) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        if matches!(&*inner.relay.borrow(), relay::RelayState::Attached(_)) {
            return;
        }
        if let relay::RelayState::Waiting(early) = inner.relay.replace(relay::RelayState::None)
            && let Ok(mut storage) = BrowserStorage::local()
        {
            for op in early.saved {
                gaesup_protocol::remove_outbox_entry(op.id, &mut storage);
            }
        }
        inner.writer.relay.set(gaesup_state::RelayStatus::off());
        let _ = inner.manager.set_backlog(None);
        if let Some(problem) = problem {
            inner.writer.notice(format!(
                "No sync with other devices: {problem}. This device keeps working and syncs between its own tabs."
            ));
        }
    }

    /// The configuration cannot be fetched for now (`problem`), and is
    /// asked for again in `retry_ms`: ops bound for a relay go on
    /// waiting, in the outbox in `localStorage`, and the first time this
    /// is said it becomes a notice.
    pub fn unreachable(&self, problem: &str, retry_ms: u32) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let waiting = match &mut *inner.relay.borrow_mut() {
            relay::RelayState::Attached(_) => return,
            // Connected without `expect_relay`: ops wait from now on.
            state @ relay::RelayState::None => {
                *state = relay::RelayState::Waiting(relay::Early::default());
                0
            }
            relay::RelayState::Waiting(early) => early.len(),
        };
        let first = inner
            .writer
            .relay
            .with_untracked(|status| !status.is_configured());
        inner.writer.relay.set(gaesup_state::RelayStatus {
            link: format!(
                "waiting for the relay's configuration (asked again in {} s)",
                retry_ms.div_ceil(1_000)
            ),
            waiting,
            ..gaesup_state::RelayStatus::default()
        });
        if first {
            inner.writer.notice(format!(
                "The relay's configuration could not be fetched ({problem}); it is asked for again, and changes wait in the outbox meanwhile."
            ));
        }
    }

    /// Whether the connection is still there.
    pub fn is_live(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// Whether the relay refused the connection's token (bad, expired or
    /// revoked), as the tab holding the link said last: only another
    /// configuration links it again.
    pub fn is_refused(&self) -> bool {
        self.0.upgrade().is_some_and(|inner| {
            inner
                .writer
                .relay
                .with_untracked(|status| status.link.starts_with("refused"))
        })
    }
}
