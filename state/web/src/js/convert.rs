//! Values and options crossing between JavaScript and Rust: through
//! `JSON.stringify` and `JSON.parse`, so the rules are the ones JavaScript
//! developers know. One exception: an integer past what a JavaScript
//! number holds exactly (±(2^53 − 1)) crosses as a `BigInt`, both ways,
//! where the engine can say which digits a number was parsed from
//! (`JSON.parse`'s source text, `JSON.rawJSON`: every current engine).
//! Elsewhere it is rounded on its way to JavaScript, as before.

use gaesup_state::Result;
use gaesup_state_core::decode::{Fields, FromJson, Node, Why, parse_tree_bounded};
use gaesup_state_core::{Lifetime, MAX_LOCAL_STATE_BYTES, Scope, Strategy};
use js_sys::JSON;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};

use super::{bad, exception_message};

/// JavaScript value → JSON, through `JSON.stringify` (so the rules are the
/// ones JavaScript developers know: `undefined` and functions have none).
pub(super) fn from_js(value: &JsValue) -> Result<Value> {
    parse(&json_text(value)?)
}

/// What is left of [`MAX_LOCAL_STATE_BYTES`] of JSON for values converted
/// together (the values of one write): many values that all name one
/// large object are large only once in JavaScript, once per value here.
pub(super) struct JsonBudget {
    left: usize,
}

impl JsonBudget {
    pub(super) fn new() -> Self {
        Self {
            left: MAX_LOCAL_STATE_BYTES,
        }
    }

    /// [`from_js`], refused with `too_large` once the values converted
    /// with this budget pass it.
    pub(super) fn convert(&mut self, value: &JsValue) -> Result<Value> {
        let text = json_text(value)?;
        let Some(left) = self.left.checked_sub(text.len()) else {
            let limit = MAX_LOCAL_STATE_BYTES;
            return Err(gaesup_state_core::Error::TooLarge {
                what: "the values of one write, as JSON",
                size: (limit - self.left).saturating_add(text.len()),
                limit,
            }
            .into());
        };
        self.left = left;
        parse(&text)
    }
}

/// The JSON text of `value`, measured before it is copied into the wasm:
/// a text longer than any write may hold is refused by its length alone
/// (each UTF-16 unit is at least one byte of UTF-8), so a string of a
/// billion characters never grows the wasm's memory, which never
/// shrinks.
fn json_text(value: &JsValue) -> Result<String> {
    let text = match JSON::stringify(value) {
        Ok(text) => text,
        // A BigInt (the exact form of a large integer, see the module's
        // docs), a cycle, a getter or `toJSON` that throws.
        Err(exception) => stringify_bigints(value).map_err(|exception_again| {
            // Without JSON.rawJSON a BigInt has no JSON here: say what
            // the first attempt said.
            let exception = exception_again.unwrap_or(exception);
            let why = exception_message(&exception, "it threw");
            bad(format!("the value cannot be turned into JSON: {why}"))
        })??,
    };
    let no_json = || bad("undefined (and functions, symbols) have no JSON form");
    if !text.is_string() {
        return Err(no_json());
    }
    let units = text.length() as usize;
    if units > MAX_LOCAL_STATE_BYTES {
        return Err(gaesup_state_core::Error::TooLarge {
            what: "a value from JavaScript, as JSON",
            size: units,
            limit: MAX_LOCAL_STATE_BYTES,
        }
        .into());
    }
    let text: js_sys::JsString = text.unchecked_into();
    // `JSON.stringify` writes NaN and ±Infinity as null, silently: only a
    // text with a null in it where a value goes can hold one, so only such
    // a text is looked at again, number by number (a string holding
    // ":null" costs that look too, and nothing more).
    if text == "null"
        || [":null", "[null", ",null"]
            .iter()
            .any(|token| text.includes(token, 0))
    {
        refuse_numbers_without_json(value)?;
    }
    text.as_string().ok_or_else(no_json)
}

/// `JSON.stringify` of `value` with each `BigInt` in it written as its
/// digits (`JSON.rawJSON`), refused with `bad_value` if one lies outside
/// what a JSON integer here holds exactly (an `i64` or a `u64`: past it,
/// the parser would round it to a float). `Err(None)` where the engine
/// has no `JSON.rawJSON`, `Err(Some(exception))` when it threw anyway (a
/// cycle, a getter that threw).
fn stringify_bigints(
    value: &JsValue,
) -> std::result::Result<Result<js_sys::JsString>, Option<JsValue>> {
    use std::cell::RefCell;
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;

    if JSON::raw_json("0").is_err() {
        return Err(None);
    }
    let refused: Rc<RefCell<Option<String>>> = Rc::default();
    let seen = Rc::clone(&refused);
    let replacer = Closure::<dyn FnMut(JsValue, JsValue) -> JsValue>::new(
        move |_key: JsValue, value: JsValue| {
            if !value.is_bigint() {
                return value;
            }
            let big: js_sys::BigInt = value.unchecked_into();
            let digits = String::from(big.to_string(10).unwrap_or_default());
            let exact = i64::try_from(big.clone()).is_ok() || u64::try_from(big).is_ok();
            match JSON::raw_json(&digits) {
                Ok(raw) if exact => raw.into(),
                _ => {
                    seen.borrow_mut().get_or_insert(digits);
                    JsValue::NULL
                }
            }
        },
    );
    let text = JSON::stringify_with_replacer(value, replacer.as_ref()).map_err(Some)?;
    Ok(match refused.borrow_mut().take() {
        Some(digits) => Err(bad(format!(
            "the integer {}n lies past what a value holds exactly (-2^63 to 2^64 - 1)",
            gaesup_state_core::preview(&digits)
        ))),
        None => Ok(text),
    })
}

/// Refuses `value` if it holds a number JSON has no form for (NaN,
/// ±Infinity), naming it and where it is: `JSON.stringify` would have
/// written null in its place, and the write would have stored a null the
/// unit never wrote.
fn refuse_numbers_without_json(value: &JsValue) -> Result<()> {
    use std::cell::RefCell;
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;

    let found: Rc<RefCell<Option<(String, f64)>>> = Rc::default();
    let seen = Rc::clone(&found);
    let replacer = Closure::<dyn FnMut(JsValue, JsValue) -> JsValue>::new(
        move |key: JsValue, value: JsValue| {
            // A BigInt would stop the walk (it throws): it is no NaN.
            if value.is_bigint() {
                return JsValue::NULL;
            }
            // A number, or a Number object (`new Number(NaN)`), which
            // JSON turns into its number after this sees it.
            let number = value.as_f64().or_else(|| {
                value
                    .is_instance_of::<js_sys::Number>()
                    .then(|| value.unchecked_ref::<js_sys::Number>().value_of())
            });
            if let Some(number) = number
                && !number.is_finite()
            {
                let mut seen = seen.borrow_mut();
                if seen.is_none() {
                    *seen = Some((key.as_string().unwrap_or_default(), number));
                }
            }
            value
        },
    );
    // It threw the first time, or not at all: the same again.
    let _ = JSON::stringify_with_replacer(value, replacer.as_ref());
    match found.borrow_mut().take() {
        Some((key, number)) => {
            let number = if number.is_nan() {
                "NaN"
            } else if number > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            let place = if key.is_empty() {
                String::from("the value itself")
            } else {
                format!("`{}`", gaesup_state_core::preview(&key))
            };
            Err(bad(format!(
                "{number} has no JSON form (JSON would store null in its place): at {place}"
            )))
        }
        None => Ok(()),
    }
}

/// Parses the text as any outside text is parsed (size, depth, then
/// the parser): a value nested too deep is `too_deep`, not a parser's
/// error.
fn parse(text: &str) -> Result<Value> {
    Ok(parse_tree_bounded(text, MAX_LOCAL_STATE_BYTES, "a value from JavaScript")?.into_value())
}

/// JSON → JavaScript value, through `JSON.parse`; an integer past
/// ±(2^53 − 1) comes as a `BigInt` (see the module's docs).
pub(super) fn to_js(value: &Value) -> JsValue {
    let Ok(text) = gaesup_state_core::to_text(value) else {
        return JsValue::NULL;
    };
    let parsed = if has_long_digit_run(&text) {
        parse_exact(&text)
    } else {
        JSON::parse(&text)
    };
    parsed.unwrap_or(JsValue::NULL)
}

/// Whether `text` holds an integer of 16 digits or more: every JSON
/// integer past 2^53 (a 16-digit number) is one. A float's digits (after
/// its point, or before a point or an exponent) are not: serde_json
/// writes the shortest float text, often 16 or 17 digits long (1/3),
/// and such a value reads as fast as any. A string holding such digits
/// costs the slower exact parse, and changes nothing.
fn has_long_digit_run(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|byte| !byte.is_ascii_digit())
            .map_or(bytes.len(), |len| start + len);
        let after_point = start > 0 && bytes[start - 1] == b'.';
        let before_fraction = matches!(bytes.get(end), Some(b'.' | b'e' | b'E'));
        if end - start >= 16 && !after_point && !before_fraction {
            return true;
        }
        start = end;
    }
    false
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `JSON.parse(text, reviver)`.
    #[wasm_bindgen(catch, js_namespace = JSON, js_name = parse)]
    fn parse_with_reviver(
        text: &str,
        reviver: &js_sys::Function,
    ) -> std::result::Result<JsValue, JsValue>;
}

/// `JSON.parse` that gives each integer a number cannot hold exactly as
/// a `BigInt` of the digits it was parsed from: the reviver's third
/// argument holds them (`context.source`). An engine without it passes
/// none, and such integers are rounded as `JSON.parse` rounds them.
fn parse_exact(text: &str) -> std::result::Result<JsValue, JsValue> {
    use wasm_bindgen::closure::Closure;

    let reviver = Closure::<dyn FnMut(JsValue, JsValue, JsValue) -> JsValue>::new(
        |_key: JsValue, value: JsValue, context: JsValue| {
            exact_integer(&value, &context).unwrap_or(value)
        },
    );
    parse_with_reviver(text, reviver.as_ref().unchecked_ref())
}

/// The `BigInt` of a number `JSON.parse` rounded: one that is no safe
/// integer, parsed from digits alone (a float's text has a `.` or an
/// exponent and stays a number).
fn exact_integer(value: &JsValue, context: &JsValue) -> Option<JsValue> {
    value.as_f64()?;
    if js_sys::Number::is_safe_integer(value) {
        return None;
    }
    let source = js_sys::Reflect::get(context, &JsValue::from_str("source"))
        .ok()?
        .as_string()?;
    let digits = source.strip_prefix('-').unwrap_or(&source);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    js_sys::BigInt::new(&JsValue::from_str(&source))
        .ok()
        .map(Into::into)
}

/// Options given from JavaScript (`undefined` or `null`: the defaults),
/// read through `JSON.stringify` into the core's tree: a field this
/// version does not know is refused, naming it.
pub(super) fn options<T: FromJson + Default>(value: &JsValue) -> Result<T> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    let text = json_text(value)?;
    let tree = parse_tree_bounded(&text, MAX_LOCAL_STATE_BYTES, "options")?;
    T::from_json(tree).map_err(|why| bad(format!("options: {why}")))
}

#[derive(Default)]
pub(super) struct DeclareOptions {
    pub(super) scope: Option<Scope>,
    pub(super) lifetime: Option<Lifetime>,
    pub(super) strategy: Option<Strategy>,
    pub(super) default: Option<Value>,
}

impl FromJson for DeclareOptions {
    fn from_json(node: Node<'_>) -> std::result::Result<Self, Why> {
        let names = ["scope", "lifetime", "strategy", "default"];
        Fields::read_only(node, "declare options", &names, |fields| {
            Ok(Self {
                scope: fields.opt("scope")?,
                lifetime: fields.opt("lifetime")?,
                strategy: fields.opt("strategy")?,
                default: fields.opt("default")?,
            })
        })
    }
}

#[derive(Default)]
pub(super) struct SubscribeOptions {
    /// Watch only this path inside the value (`"items.0.qty"`).
    pub(super) path: Option<String>,
}

impl FromJson for SubscribeOptions {
    fn from_json(node: Node<'_>) -> std::result::Result<Self, Why> {
        Fields::read_only(node, "subscribe options", &["path"], |fields| {
            Ok(Self {
                path: fields.opt("path")?,
            })
        })
    }
}

#[derive(Default)]
pub(super) struct EventOptions {
    pub(super) scope: Option<Scope>,
    pub(super) cross_tab: Option<bool>,
}

impl FromJson for EventOptions {
    fn from_json(node: Node<'_>) -> std::result::Result<Self, Why> {
        Fields::read_only(node, "event options", &["scope", "crossTab"], |fields| {
            Ok(Self {
                scope: fields.opt("scope")?,
                cross_tab: fields.opt("crossTab")?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::has_long_digit_run;

    #[test]
    fn only_a_long_integer_asks_for_the_exact_parse() {
        for integer in [
            "9007199254740993",
            "[-9223372036854775808]",
            r#"{"id":18446744073709551615}"#,
            r#""12345678901234567890""#,
        ] {
            assert!(has_long_digit_run(integer), "{integer}");
        }
        for other in [
            "0.30000000000000004",
            "0.3333333333333333",
            "1.2345678901234567e-5",
            "12345678901234567e3",
            "1234567890123456.5",
            r#"{"n":123456789012345,"f":0.1}"#,
            "",
        ] {
            assert!(!has_long_digit_run(other), "{other}");
        }
    }
}
