//! What every measurement shares: the clock, the stage element, addresses,
//! keys and error conversion.

use gaesup_state::core::{ApartmentId, BuildingId, UnitAddress, UnitId};
use gaesup_state::{Lifetime, Scope, SharedKey};
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::HtmlElement;

/// Milliseconds from `performance.now()`.
pub fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// Any error as a JS exception with its message.
pub fn js(error: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&error.to_string())
}

/// The empty element the views are mounted into.
pub fn stage() -> Result<HtmlElement, JsValue> {
    let element = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("stage"))
        .ok_or_else(|| js("no #stage element"))?;
    element.set_inner_html("");
    element
        .dyn_into::<HtmlElement>()
        .map_err(|_| js("#stage is not an HTML element"))
}

/// The text of the first element matching `selector`, if any.
pub fn text_of(selector: &str) -> Option<String> {
    web_sys::window()?
        .document()?
        .query_selector(selector)
        .ok()??
        .text_content()
}

/// The address every fixture writes as: `{apartment}/b/u`.
pub fn address(apartment: &str) -> Result<UnitAddress, JsValue> {
    Ok(UnitAddress::new(
        ApartmentId::new(apartment).map_err(js)?,
        BuildingId::new("b").map_err(js)?,
        UnitId::new("u").map_err(js)?,
    ))
}

/// An apartment-scoped key of `lifetime` (last-write-wins).
pub fn key<T: Default + serde::Serialize + serde::de::DeserializeOwned + 'static>(
    name: &str,
    lifetime: Lifetime,
) -> Result<SharedKey<T>, JsValue> {
    SharedKey::builder(name)
        .scope(Scope::Apartment)
        .lifetime(lifetime)
        .build()
        .map_err(js)
}

/// A JSON object as the text the spec parses.
pub fn report(value: Value) -> String {
    value.to_string()
}
