//! An optimistic write handed to JavaScript, to confirm or take back.

use gaesup_state::UnitContext;
use gaesup_state_core::{SharedKey, Write};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use super::js_error;

/// An optimistic write, from [`JsUnit::set_optimistic`](super::JsUnit::set_optimistic).
///
/// Settled once, by [`revert`](Self::revert) or [`confirm`](Self::confirm):
/// a second call of either throws `bad_value` saying so. (The methods
/// once took the handle by value, and a second call threw wasm-bindgen's
/// "null pointer passed to rust", with no code.)
#[wasm_bindgen(js_name = GaesupWrite)]
pub struct JsWrite {
    pub(super) unit: UnitContext,
    pub(super) key: SharedKey<Value>,
    /// `None` once settled.
    pub(super) written: Option<Write>,
}

impl JsWrite {
    /// The write, taken: the error if it was settled already.
    fn settle(&mut self) -> std::result::Result<Write, JsValue> {
        self.written.take().ok_or_else(|| {
            js_error(&gaesup_state::StateError::BadValue {
                reason: String::from("this write was already confirmed or reverted"),
            })
        })
    }
}

#[wasm_bindgen(js_class = GaesupWrite)]
impl JsWrite {
    /// Undoes the write unless someone wrote over it since; `true` when it
    /// was undone.
    pub fn revert(&mut self) -> std::result::Result<bool, JsValue> {
        let written = self.settle()?;
        self.unit
            .manager
            .revert(&self.unit.address, &self.key, &written)
            .map(|undone| undone.is_some())
            .map_err(|e| js_error(&e))
    }

    /// Keeps the write.
    pub fn confirm(&mut self) -> std::result::Result<(), JsValue> {
        self.settle().map(drop)
    }
}
