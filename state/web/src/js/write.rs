//! An optimistic write handed to JavaScript, to confirm or take back.

use gaesup_state::UnitContext;
use gaesup_state_core::{SharedKey, Write};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use super::js_error;

/// An optimistic write, from [`JsUnit::set_optimistic`](super::JsUnit::set_optimistic).
#[wasm_bindgen(js_name = GaesupWrite)]
pub struct JsWrite {
    pub(super) unit: UnitContext,
    pub(super) key: SharedKey<Value>,
    pub(super) written: Write,
}

#[wasm_bindgen(js_class = GaesupWrite)]
impl JsWrite {
    /// Undoes the write unless someone wrote over it since; `true` when it
    /// was undone.
    pub fn revert(self) -> std::result::Result<bool, JsValue> {
        self.unit
            .manager
            .revert(&self.unit.address, &self.key, &self.written)
            .map(|undone| undone.is_some())
            .map_err(|e| js_error(&e))
    }

    /// Keeps the write.
    pub fn confirm(self) {}
}
