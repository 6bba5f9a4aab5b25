//! Wiring a [`StateManager`] to the page: storages, a way to other tabs,
//! and the page events that decide when to save and re-read.

use std::cell::Cell;
use std::rc::{Rc, Weak};

use gaesup_state_core::{
    ApartmentId, Error as CoreError, Lifetime, LoadReport, MemoryStorage, Message, PersistReport,
    Quarantine, Replica, STATE_PREFIX, Storage, StorageError,
};
use gloo_events::EventListener;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Document, VisibilityState, Window};

use super::channel::{
    BroadcastTransport, StorageEventTransport, bus_key, channel_name, storage_event,
};
use super::status::SyncStatus;
use super::storage::{BrowserStorage, StorageArea, js_message};
use super::{Result, WebError};
use crate::error::StateError;
use crate::manager::StateManager;

/// Most notices kept; older ones give way (a page left open for days must
/// not grow without bound).
const MAX_NOTICES: usize = 50;

/// A tab asks the others for what it missed at most this often (ms), however
/// often it is hidden and shown again; answers carry only what differs, and
/// each tab answers one asker at most once a second besides.
const SYNC_REQUEST_EVERY_MS: f64 = 5_000.0;

/// How [`connect_browser_with_options`] reaches other tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportChoice {
    /// BroadcastChannel, or the storage-event fallback where it is missing.
    #[default]
    Auto,
    /// The storage-event fallback even where BroadcastChannel exists.
    StorageEvents,
    /// No cross-tab sync (storage only).
    Off,
}

/// The transport a [`WebSync`] ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// `BroadcastChannel`.
    BroadcastChannel,
    /// The `storage` event fallback.
    StorageEvents,
}

/// Options of [`connect_browser_with_options`]; the defaults are what
/// [`connect_browser`] uses.
#[derive(Default)]
pub struct ConnectOptions {
    persistent: Option<Box<dyn Storage>>,
    ephemeral: Option<Box<dyn Storage>>,
    transport: TransportChoice,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("custom_persistent", &self.persistent.is_some())
            .field("custom_ephemeral", &self.ephemeral.is_some())
            .field("transport", &self.transport)
            .finish()
    }
}

impl ConnectOptions {
    /// Uses `storage` for persistent keys instead of `localStorage` (a
    /// wrapper that injects faults, or a storage that counts writes).
    pub fn persistent_storage(mut self, storage: impl Storage + 'static) -> Self {
        self.persistent = Some(Box::new(storage));
        self
    }

    /// Uses `storage` for ephemeral keys instead of `sessionStorage`.
    pub fn ephemeral_storage(mut self, storage: impl Storage + 'static) -> Self {
        self.ephemeral = Some(Box::new(storage));
        self
    }

    /// How to reach other tabs.
    pub fn transport(mut self, transport: TransportChoice) -> Self {
        self.transport = transport;
        self
    }
}

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
    let writer = StatusWriter::new();

    attach(manager, Lifetime::Persistent, options.persistent, writer)?;
    attach(manager, Lifetime::Ephemeral, options.ephemeral, writer)?;

    let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
        let transport = open_transport(options.transport, apartment, weak, writer);
        let listeners = page_listeners(&window, weak);
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
            pending: Cell::new(None),
            reload_due: Cell::new(false),
            last_request: Cell::new(None),
            writer,
            _listeners: listeners,
        }
    });

    // Saves are scheduled through `on_dirty` below; this only carries
    // messages (and does nothing when no transport could be opened).
    let weak = Rc::downgrade(&inner);
    manager.connect(move |message: &Message| {
        if let Some(inner) = weak.upgrade() {
            inner.send(message);
        }
        Ok(())
    })?;
    let weak = Rc::downgrade(&inner);
    manager.on_dirty(move || {
        if let Some(inner) = weak.upgrade() {
            inner.schedule();
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

/// Attaches the storage for `lifetime`: `custom`, or the browser's.
fn attach(
    manager: StateManager,
    lifetime: Lifetime,
    custom: Option<Box<dyn Storage>>,
    writer: StatusWriter,
) -> Result<()> {
    let Some(area) = StorageArea::for_lifetime(lifetime) else {
        return Ok(());
    };
    let storage: Box<dyn Storage> = match custom {
        Some(storage) => storage,
        None => match BrowserStorage::open(area) {
            Ok(storage) => Box::new(storage),
            Err(err) => {
                writer.notice(format!(
                    "{} is unavailable ({err}); {lifetime} values are kept in this tab's memory only and will not survive a reload.",
                    area.name()
                ));
                return Ok(());
            }
        },
    };
    match manager.attach_storage(lifetime, storage) {
        Ok(reports) => {
            writer.load_reports(&reports);
            Ok(())
        }
        Err(StateError::Disposed) => Err(StateError::Disposed.into()),
        Err(err) => {
            // A storage that cannot even list its keys would also fail every
            // later `declare` (each loads from it). The manager has no way
            // to detach a storage, so an in-memory one takes its place:
            // the same outcome as a storage that was never there.
            manager.attach_storage(lifetime, Box::new(MemoryStorage::new()))?;
            writer.notice(format!(
                "{} could not be read ({err}); {lifetime} values are kept in this tab's memory only and will not survive a reload.",
                area.name()
            ));
            Ok(())
        }
    }
}

enum Transport {
    Broadcast(BroadcastTransport),
    StorageEvents(StorageEventTransport),
}

impl Transport {
    fn send(&self, message: &Message) -> Result<()> {
        match self {
            Self::Broadcast(channel) => channel.send(message),
            Self::StorageEvents(bus) => bus.send(message),
        }
    }

    fn kind(&self) -> TransportKind {
        match self {
            Self::Broadcast(_) => TransportKind::BroadcastChannel,
            Self::StorageEvents(_) => TransportKind::StorageEvents,
        }
    }
}

fn open_transport(
    choice: TransportChoice,
    apartment: &ApartmentId,
    weak: &Weak<Inner>,
    writer: StatusWriter,
) -> Option<Transport> {
    let on_text = |weak: Weak<Inner>| {
        move |text: String| {
            if let Some(inner) = weak.upgrade() {
                inner.receive(&text);
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
                Ok(channel) => return Some(Transport::Broadcast(channel)),
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
            Some(Transport::StorageEvents(bus))
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

/// Page events: re-read when visible, save when hidden or left, re-read
/// when another tab writes state or clears storage.
fn page_listeners(window: &Window, weak: &Weak<Inner>) -> Vec<EventListener> {
    let mut listeners = Vec::with_capacity(3);
    if let Some(document) = window.document() {
        let weak = weak.clone();
        let watched = document.clone();
        listeners.push(EventListener::new(
            &document,
            "visibilitychange",
            move |_| {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if watched.visibility_state() == VisibilityState::Visible {
                    // Background tabs are throttled and may have missed
                    // messages: merge what storage holds, then ask the others.
                    inner.reload();
                    inner.request_sync();
                } else {
                    // A hidden page may be discarded without another event, and
                    // animation frames stop while hidden.
                    inner.save_now();
                }
            },
        ));
    }
    let save_weak = weak.clone();
    listeners.push(EventListener::new(window, "pagehide", move |_| {
        if let Some(inner) = save_weak.upgrade() {
            inner.save_now();
        }
    }));
    let storage_weak = weak.clone();
    listeners.push(EventListener::new(window, "storage", move |event| {
        let Some(inner) = storage_weak.upgrade() else {
            return;
        };
        let Some((event, _)) = storage_event(event) else {
            return;
        };
        match event.key() {
            // `clear()` in another tab.
            None => {
                inner.writer.notice(
                    "Another tab cleared the browser storage; this tab keeps its values and saves them again.".to_owned(),
                );
                inner.manager.mark_all_dirty();
                inner.reload_soon();
            }
            Some(key) if key.starts_with(STATE_PREFIX) => inner.reload_soon(),
            Some(_) => {}
        }
    }));
    listeners
}

#[derive(Clone, Copy)]
enum Pending {
    Frame(i32),
    Timeout(i32),
}

struct Inner {
    manager: StateManager,
    window: Window,
    document: Option<Document>,
    transport: Option<Transport>,
    /// For the quota estimate, whichever storage persistent keys use.
    local: Option<BrowserStorage>,
    frame: Closure<dyn FnMut()>,
    pending: Cell<Option<Pending>>,
    reload_due: Cell<bool>,
    /// When this tab last asked the others for state (ms since epoch).
    last_request: Cell<Option<f64>>,
    writer: StatusWriter,
    _listeners: Vec<EventListener>,
}

impl Inner {
    /// Asks the other tabs for what this one lacks, unless it asked less
    /// than [`SYNC_REQUEST_EVERY_MS`] ago.
    fn request_sync(&self) {
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

    fn send(&self, message: &Message) {
        if let Some(transport) = &self.transport
            && let Err(err) = transport.send(message)
        {
            self.writer.notice(format!(
                "{err}; other tabs will catch up when they next sync."
            ));
        }
    }

    fn receive(&self, text: &str) {
        let Ok(inbound) = self.manager.receive_text(text) else {
            return;
        };
        // Another apartment's message (all apartments share the channel,
        // for global keys) is neither a sync with another tab nor hostile.
        if inbound.foreign {
            return;
        }
        if inbound.errors.iter().all(StateManager::is_not_for_this_tab) {
            self.writer.last_sync_ms.try_set(Some(js_sys::Date::now()));
        } else {
            self.writer.dropped_one();
        }
    }

    /// Asks for a save in the next animation frame (a timeout while
    /// hidden, when frames do not run); a burst of changes gets one.
    fn schedule(&self) {
        if self.pending.get().is_some() {
            return;
        }
        let callback = self.frame.as_ref().unchecked_ref();
        let hidden = self.document.as_ref().is_some_and(Document::hidden);
        let scheduled = if hidden {
            self.window
                .set_timeout_with_callback(callback)
                .map(Pending::Timeout)
        } else {
            self.window
                .request_animation_frame(callback)
                .map(Pending::Frame)
        };
        match scheduled {
            Ok(pending) => self.pending.set(Some(pending)),
            Err(err) => self.writer.notice(format!(
                "Saving could not be scheduled ({}); changes are saved when the page is hidden.",
                js_message(&err)
            )),
        }
    }

    fn cancel_pending(&self) {
        match self.pending.take() {
            Some(Pending::Frame(id)) => {
                let _ = self.window.cancel_animation_frame(id);
            }
            Some(Pending::Timeout(id)) => self.window.clear_timeout_with_handle(id),
            None => {}
        }
    }

    fn save_now(&self) {
        self.cancel_pending();
        self.save();
    }

    /// Re-reads storage if another tab wrote, then writes what changed.
    fn save(&self) {
        if self.reload_due.replace(false) {
            self.reload();
        }
        if let Ok(reports) = self.manager.flush() {
            self.writer.persist_reports(&reports);
            if reports.iter().any(|r| !r.written.is_empty()) {
                self.update_quota();
            }
        }
    }

    /// Storage events come one per key written; a burst is merged once.
    fn reload_soon(&self) {
        self.reload_due.set(true);
        self.schedule();
    }

    fn reload(&self) {
        if let Ok(reports) = self.manager.reload() {
            // Changed values make the manager call `on_dirty`, which
            // schedules their save.
            self.writer.load_reports(&reports);
        }
        self.update_quota();
    }

    fn update_quota(&self) {
        if let Some(local) = &self.local
            && let Ok(used) = local.quota_used()
        {
            self.writer.quota_used.try_set(used);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Before `frame` is freed, so the browser never calls a dropped
        // closure; the listeners and transport detach in their own drops.
        self.cancel_pending();
        self.writer.channel_up.try_set(false);
    }
}

/// The writable side of [`SyncStatus`], kept by the adapter.
#[derive(Clone, Copy)]
struct StatusWriter {
    channel_up: RwSignal<bool>,
    last_sync_ms: RwSignal<Option<f64>>,
    dropped: RwSignal<usize>,
    quota_used: RwSignal<usize>,
    notices: RwSignal<Vec<String>>,
}

impl StatusWriter {
    fn new() -> Self {
        Self {
            channel_up: RwSignal::new(false),
            last_sync_ms: RwSignal::new(None),
            dropped: RwSignal::new(0),
            quota_used: RwSignal::new(0),
            notices: RwSignal::new(Vec::new()),
        }
    }

    fn status(self) -> SyncStatus {
        SyncStatus {
            channel_up: self.channel_up.into(),
            last_sync_ms: self.last_sync_ms.into(),
            dropped: self.dropped.into(),
            quota_used: self.quota_used.into(),
            notices: self.notices.into(),
        }
    }

    fn dropped_one(self) {
        self.dropped.try_update(|n| *n = n.saturating_add(1));
    }

    /// Adds `notice` unless it is already shown (a save that keeps failing
    /// says so once).
    fn notice(self, notice: String) {
        self.notices.try_update(|notices| {
            if !notices.contains(&notice) {
                if notices.len() == MAX_NOTICES {
                    notices.remove(0);
                }
                notices.push(notice);
            }
        });
    }

    fn load_reports(self, reports: &[LoadReport]) {
        for report in reports {
            for quarantine in &report.quarantined {
                self.notice(quarantine_notice(quarantine));
            }
            for (storage_key, err) in &report.failed {
                self.notice(format!(
                    "The stored entry \"{storage_key}\" could not be read ({err}); it was left as it is."
                ));
            }
        }
    }

    fn persist_reports(self, reports: &[PersistReport]) {
        for report in reports {
            for quarantine in &report.quarantined {
                self.notice(quarantine_notice(quarantine));
            }
            for (key, err) in &report.failed {
                self.notice(match err {
                    CoreError::Storage(StorageError::QuotaExceeded) => format!(
                        "Could not save {key}: browser storage is full. The value is kept in this tab and saving is retried on the next change."
                    ),
                    CoreError::Storage(StorageError::Unavailable) => format!(
                        "Could not save {key}: browser storage is unavailable. The value is kept in this tab only and saving is retried on the next change."
                    ),
                    other => format!(
                        "Could not save {key} ({other}); saving is retried on the next change."
                    ),
                });
            }
        }
    }
}

fn quarantine_notice(quarantine: &Quarantine) -> String {
    let key = &quarantine.key;
    let copy = match &quarantine.copy_error {
        None => format!(
            "a copy was set aside under \"{}\"",
            Replica::quarantine_key(key)
        ),
        Some(err) => format!("setting a copy aside failed ({err}), the entry is left in place"),
    };
    format!(
        "The stored value of {key} could not be used ({}); {copy}, and {key} is not saved again until the entry is discarded.",
        quarantine.error
    )
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
        self.inner.transport.as_ref().map(Transport::kind)
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
}
