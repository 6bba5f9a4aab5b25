//! `localStorage` and `sessionStorage` behind the core's [`Storage`] trait.
//!
//! The storage is probed once, when it is opened, without throwing:
//! `Window::local_storage()` is a `Result<Option<Storage>>`, and reading
//! `window.localStorage` throws a `SecurityError` in a sandboxed iframe or
//! with storage blocked. That becomes [`StorageError::Unavailable`] (the
//! app then keeps the lifetime in memory), never a trap.
//!
//! Reads and writes go through web-sys too, not `gloo-storage` (0.4),
//! whose API does not fit an adapter that must store the core's text
//! byte for byte:
//!
//! - its `get` and `set` are typed: `set` JSON-encodes the value, so an
//!   entry (already JSON text) would be stored encoded twice, and `get`
//!   decodes, so a corrupt entry, which quarantine must copy and export
//!   as raw text, could not be read at all; `serde_json`'s `RawValue`
//!   avoids the double encoding only for valid JSON, and the copies of
//!   corrupt entries and the storage-event transport's `nonce\ntext`
//!   posts are not;
//! - its `raw()` panics (`expect_throw`) where storage is blocked, so it
//!   could only follow a probe like the one here;
//! - its error conversion panics (`unreachable!`) when the thrown value
//!   is not an `Error` of this window's realm, which is what a storage of
//!   another window (the same-origin iframe the transport tests use)
//!   throws.
//!
//! Every failure is mapped to the same specific faults instead:
//! `QuotaExceededError` to [`StorageError::QuotaExceeded`], `SecurityError`
//! or a missing storage to [`StorageError::Unavailable`].

use gaesup_state_core::{Lifetime, Storage, StorageError};
use js_sys::{Function, JsString, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{DomException, Window};

/// Which of the page's two storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageArea {
    /// `localStorage`: shared by the origin's tabs, survives restarts.
    Local,
    /// `sessionStorage`: this tab's session only.
    Session,
}

impl StorageArea {
    /// The storage that holds keys of `lifetime`; `None` for memory keys,
    /// which are never stored.
    pub fn for_lifetime(lifetime: Lifetime) -> Option<Self> {
        match lifetime {
            Lifetime::Persistent => Some(Self::Local),
            Lifetime::Ephemeral => Some(Self::Session),
            Lifetime::Memory => None,
        }
    }

    /// The JavaScript name, for messages (`localStorage`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "localStorage",
            Self::Session => "sessionStorage",
        }
    }
}

/// A browser storage area as a [`Storage`].
///
/// Every call maps the browser's exception: `QuotaExceededError` to
/// [`StorageError::QuotaExceeded`], a missing storage or `SecurityError` to
/// [`StorageError::Unavailable`], anything else to [`StorageError::Other`]
/// with the browser's message.
#[derive(Clone, Debug)]
pub struct BrowserStorage {
    raw: web_sys::Storage,
    area: StorageArea,
}

impl BrowserStorage {
    /// The page's `localStorage`.
    pub fn local() -> Result<Self, StorageError> {
        Self::open(StorageArea::Local)
    }

    /// The page's `sessionStorage`.
    pub fn session() -> Result<Self, StorageError> {
        Self::open(StorageArea::Session)
    }

    /// The page's storage for `area`.
    pub fn open(area: StorageArea) -> Result<Self, StorageError> {
        let window = web_sys::window().ok_or(StorageError::Unavailable)?;
        Self::open_in(&window, area)
    }

    /// The storage for `area` of another window (a same-origin iframe).
    pub fn open_in(window: &Window, area: StorageArea) -> Result<Self, StorageError> {
        let raw = match area {
            StorageArea::Local => window.local_storage(),
            StorageArea::Session => window.session_storage(),
        }
        .map_err(storage_error)?
        .ok_or(StorageError::Unavailable)?;
        Ok(Self { raw, area })
    }

    /// Which storage this is.
    pub fn area(&self) -> StorageArea {
        self.area
    }

    /// The underlying `web_sys::Storage`.
    pub fn raw(&self) -> &web_sys::Storage {
        &self.raw
    }

    /// Estimated bytes in use: every key and value, two bytes per UTF-16
    /// unit (how browsers count towards the quota). Covers the whole
    /// origin, not only this crate's keys, since the quota does too.
    pub fn quota_used(&self) -> Result<usize, StorageError> {
        // Values are measured as JS strings (their `length` is in UTF-16
        // units) instead of being copied into Rust: a full storage holds
        // megabytes and this runs after flushes.
        let get_item: Function = Reflect::get(&self.raw, &JsValue::from_str("getItem"))
            .map_err(storage_error)?
            .dyn_into()
            .map_err(|_| StorageError::Other("Storage.getItem is not a function".to_owned()))?;
        let mut units = 0usize;
        for index in 0..self.raw.length().map_err(storage_error)? {
            let Some(key) = self.raw.key(index).map_err(storage_error)? else {
                continue;
            };
            let key = JsString::from(key.as_str());
            let value = get_item.call1(&self.raw, &key).map_err(storage_error)?;
            let value_units = value.dyn_ref::<JsString>().map_or(0, JsString::length);
            units = units
                .saturating_add(key.length() as usize)
                .saturating_add(value_units as usize);
        }
        Ok(units.saturating_mul(2))
    }
}

impl Storage for BrowserStorage {
    fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.raw.get_item(key).map_err(storage_error)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
        self.raw.set_item(key, value).map_err(storage_error)
    }

    fn remove(&mut self, key: &str) -> Result<(), StorageError> {
        self.raw.remove_item(key).map_err(storage_error)
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        let length = self.raw.length().map_err(storage_error)?;
        // Capped: the length is the browser's word, not a promise worth
        // reserving gigabytes for.
        let mut keys = Vec::with_capacity((length as usize).min(1 << 12));
        for index in 0..length {
            // `None` only if the storage shrank under us; skip rather than
            // fail the whole listing.
            if let Some(key) = self.raw.key(index).map_err(storage_error)? {
                keys.push(key);
            }
        }
        Ok(keys)
    }
}

/// Turns an exception thrown by a storage call into a [`StorageError`].
pub(crate) fn storage_error(error: JsValue) -> StorageError {
    if let Some(exception) = error.dyn_ref::<DomException>() {
        let name = exception.name();
        // Code 22 and Firefox's old name cover engines that predate the
        // standard name.
        if name == "QuotaExceededError"
            || name == "NS_ERROR_DOM_QUOTA_REACHED"
            || exception.code() == DomException::QUOTA_EXCEEDED_ERR
        {
            return StorageError::QuotaExceeded;
        }
        if name == "SecurityError" {
            return StorageError::Unavailable;
        }
        return StorageError::Other(format!("{name}: {}", exception.message()));
    }
    StorageError::Other(js_message(&error))
}

/// A readable description of any thrown value.
pub(crate) fn js_message(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return format!(
            "{}: {}",
            String::from(error.name()),
            String::from(error.message())
        );
    }
    if let Some(text) = error.as_string() {
        return text;
    }
    format!("{error:?}")
}
