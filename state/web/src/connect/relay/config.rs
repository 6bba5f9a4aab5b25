//! Where the relay is and how to prove the right to use it: read from a
//! file served beside the app (`relay.json`), never compiled in, so one
//! build serves a site with a relay and one without.

use gaesup_protocol::MAX_OUTBOX;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Longest token accepted from the configuration.
const MAX_TOKEN_BYTES: usize = 4_096;

/// A relay to sync with: its base URL and a token it issued.
///
/// `relay.json` holds `{"url": "https://relay.example", "token": "gs1.…"}`
/// and, optionally, `"outbox_limit"` (see
/// [`with_outbox_limit`](Self::with_outbox_limit));
/// `{}` (or `"url": null`) means no relay, and the app then makes no
/// request beyond its own files. The URL may be `http(s)://` or
/// `ws(s)://`: the WebSocket and the HTTP fallback each use their own
/// scheme on the same host.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayConfig {
    base: String,
    secure: bool,
    token: String,
    outbox_limit: usize,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: it ends up in logs.
        f.debug_struct("RelayConfig")
            .field("base", &self.base)
            .field("secure", &self.secure)
            .field("outbox_limit", &self.outbox_limit)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token: Option<String>,
    /// How many writes may wait for the relay (1 to [`MAX_OUTBOX`]).
    #[serde(default)]
    outbox_limit: Option<usize>,
}

impl RelayConfig {
    /// A relay at `url` (`http(s)://host[:port]` or `ws(s)://…`, no path)
    /// with `token`.
    pub fn new(url: &str, token: &str) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            return Err(format!(
                "the relay URL {url:?} must start with http://, https://, ws:// or wss://"
            ));
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
            return Err(format!(
                "the relay URL {url:?} must name a host (and port) only, without a path"
            ));
        }
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES || !token.is_ascii() {
            return Err(format!(
                "the relay token must be 1 to {MAX_TOKEN_BYTES} ASCII characters"
            ));
        }
        Ok(Self {
            base: rest.to_owned(),
            secure,
            token: token.to_owned(),
            outbox_limit: MAX_OUTBOX,
        })
    }

    /// Keeps at most `limit` writes waiting for the relay (1 to
    /// [`MAX_OUTBOX`], the default); past it, writes of persistent keys
    /// are refused with the `outbox_full` error until the relay takes some.
    pub fn with_outbox_limit(mut self, limit: usize) -> Result<Self, String> {
        if !(1..=MAX_OUTBOX).contains(&limit) {
            return Err(format!(
                "the relay outbox limit must be 1 to {MAX_OUTBOX}, not {limit}"
            ));
        }
        self.outbox_limit = limit;
        Ok(self)
    }

    /// How many writes may wait for the relay.
    pub fn outbox_limit(&self) -> usize {
        self.outbox_limit
    }

    /// Parses `relay.json`: `Ok(None)` when it names no relay.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let file: File = serde_json::from_str(text)
            .map_err(|err| format!("relay.json is not a relay configuration ({err})"))?;
        match (file.url, file.token) {
            (None, _) => Ok(None),
            (Some(_), None) => Err("relay.json names a relay URL but no token".to_owned()),
            (Some(url), Some(token)) => {
                let config = Self::new(&url, &token)?;
                match file.outbox_limit {
                    Some(limit) => config.with_outbox_limit(limit).map(Some),
                    None => Ok(Some(config)),
                }
            }
        }
    }

    /// The WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}/v1/ws", self.base)
    }

    /// An HTTP endpoint: `path` starts with `/`.
    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.base)
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Fetches and parses the relay configuration at `path` (relative to the
/// page's base URL). A missing file (404) means no relay; anything else
/// that is not a configuration is an error to show, and the app then
/// syncs between tabs only.
pub async fn fetch_relay_config(path: &str) -> Result<Option<RelayConfig>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(path))
        .await
        .map_err(|err| format!("{path} could not be fetched ({})", describe(&err)))?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| format!("{path}: fetch did not answer a response"))?;
    if response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(format!("{path} answered HTTP {}", response.status()));
    }
    let text = response
        .text()
        .map_err(|err| describe(&err))
        .map(JsFuture::from)?
        .await
        .map_err(|err| format!("{path} could not be read ({})", describe(&err)))?;
    RelayConfig::parse(&text.as_string().unwrap_or_default())
}

/// A thrown JavaScript value in words.
pub(crate) fn describe(value: &wasm_bindgen::JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_relay_and_no_relay() {
        let config = RelayConfig::parse(r#"{"url":"http://127.0.0.1:8787/","token":"gs1.a.b"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(config.ws_url(), "ws://127.0.0.1:8787/v1/ws");
        assert_eq!(config.http_url("/v1/push"), "http://127.0.0.1:8787/v1/push");
        let secure = RelayConfig::new("wss://relay.example", "t").unwrap();
        assert_eq!(secure.http_url("/v1/pull"), "https://relay.example/v1/pull");
        assert_eq!(RelayConfig::parse("{}").unwrap(), None);
        assert_eq!(RelayConfig::parse(r#"{"url":null}"#).unwrap(), None);
        assert_eq!(config.outbox_limit(), MAX_OUTBOX);
        let small = RelayConfig::parse(r#"{"url":"http://a","token":"t","outbox_limit":3}"#)
            .unwrap()
            .unwrap();
        assert_eq!(small.outbox_limit(), 3);
    }

    #[test]
    fn refuses_what_is_not_a_configuration() {
        for text in [
            "<!doctype html>",
            r#"{"url":"http://a"}"#,
            r#"{"url":"ftp://a","token":"t"}"#,
            r#"{"url":"http://a/path","token":"t"}"#,
            r#"{"url":"http://a","token":""}"#,
            r#"{"url":"http://a","token":"t","extra":1}"#,
            r#"{"url":"http://a","token":"t","outbox_limit":0}"#,
            r#"{"url":"http://a","token":"t","outbox_limit":10001}"#,
            r#"{"url":"http://a","token":"t","outbox_limit":-1}"#,
        ] {
            let err = RelayConfig::parse(text).unwrap_err();
            assert!(!err.is_empty(), "{text}");
        }
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(RelayConfig::new("http://a", &long).is_err());
        // The token never shows in Debug.
        let config = RelayConfig::new("http://a", "secret-token").unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }
}
