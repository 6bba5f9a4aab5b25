//! What [`connect_browser_with_options`](super::connect_browser_with_options)
//! can be told: other storages, another way to other tabs.

use gaesup_state_core::Storage;

/// How [`connect_browser_with_options`](super::connect_browser_with_options)
/// reaches other tabs.
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

/// The transport a [`WebSync`](super::WebSync) ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// `BroadcastChannel`.
    BroadcastChannel,
    /// The `storage` event fallback.
    StorageEvents,
}

/// Options of [`connect_browser_with_options`](super::connect_browser_with_options);
/// the defaults are what [`connect_browser`](super::connect_browser) uses.
#[derive(Default)]
pub struct ConnectOptions {
    pub(super) persistent: Option<Box<dyn Storage>>,
    pub(super) ephemeral: Option<Box<dyn Storage>>,
    pub(super) transport: TransportChoice,
    pub(super) expect_relay: bool,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("custom_persistent", &self.persistent.is_some())
            .field("custom_ephemeral", &self.ephemeral.is_some())
            .field("transport", &self.transport)
            .field("expect_relay", &self.expect_relay)
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

    /// A relay may be configured (the app is reading its configuration):
    /// ops bound for it wait until [`RelayHandle::attach`] or
    /// [`RelayHandle::none`](super::RelayHandle::none) says.
    ///
    /// [`RelayHandle::attach`]: super::RelayHandle::attach
    pub fn expect_relay(mut self) -> Self {
        self.expect_relay = true;
        self
    }
}
