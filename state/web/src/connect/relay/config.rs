//! Where the relay is and how to prove the right to use it: read from a
//! file served beside the app (`relay.json`), never compiled in, so one
//! build serves a site with a relay and one without.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use gaesup_protocol::MAX_OUTBOX;
use gaesup_state_core::decode::{Fields, FromJson, Node, Why, read_bounded};
use gloo_events::EventListener;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::BroadcastChannel;

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

/// `relay.json` as it is read.
struct File {
    url: Option<String>,
    token: Option<String>,
    /// How many writes may wait for the relay (1 to [`MAX_OUTBOX`]).
    outbox_limit: Option<usize>,
}

/// Longest `relay.json` read: a URL, a token and a number.
const MAX_FILE_BYTES: usize = 16 * 1024;

impl FromJson for File {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let names = ["url", "token", "outbox_limit"];
        Fields::read_only(node, "a relay configuration", &names, |fields| {
            Ok(Self {
                url: fields.opt("url")?,
                token: fields.opt("token")?,
                outbox_limit: fields.opt("outbox_limit")?,
            })
        })
    }
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
        let file: File = read_bounded(text, MAX_FILE_BYTES, "relay.json")
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

    /// The whole configuration as text, which two tabs compare to know
    /// whether they hold the same one.
    fn identity(&self) -> String {
        format!(
            "{} {} {} {}",
            self.secure, self.outbox_limit, self.base, self.token
        )
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Why `relay.json` gave no configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayConfigError {
    /// It could not be fetched now: the network failed, the server
    /// answered that it is busy or broken (408, 429, 5xx), or it did not
    /// come whole in time (10 s at first). Asking again later may bring
    /// it.
    Unreachable(String),
    /// It answered with something that is not a configuration (or an
    /// error status that asking again does not change).
    Invalid(String),
}

impl std::fmt::Display for RelayConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(problem) | Self::Invalid(problem) => f.write_str(problem),
        }
    }
}

impl std::error::Error for RelayConfigError {}

impl RelayConfigError {
    /// What an HTTP status other than 2xx and 404 says of the file at
    /// `path`: worth asking again, or not.
    fn of_status(path: &str, status: u16) -> Self {
        let problem = format!("{path} answered HTTP {status}");
        if matches!(status, 408 | 429 | 500..=599) {
            Self::Unreachable(problem)
        } else {
            Self::Invalid(problem)
        }
    }
}

/// Fetches and parses the relay configuration at `path` (relative to the
/// page's base URL). A missing file (404) means no relay; a network
/// failure or a server that is busy or broken is
/// [`RelayConfigError::Unreachable`] (see [`follow_relay_config`], which
/// asks again); anything else that is not a configuration is
/// [`RelayConfigError::Invalid`], an error to show, and the app then syncs
/// between tabs only.
pub async fn fetch_relay_config(path: &str) -> Result<Option<RelayConfig>, RelayConfigError> {
    fetch_within(path, CONFIG_WITHIN_MS).await
}

/// [`fetch_relay_config`], given up after `within_ms`.
async fn fetch_within(path: &str, within_ms: u32) -> Result<Option<RelayConfig>, RelayConfigError> {
    let window = web_sys::window().ok_or(RelayConfigError::Invalid("no window".to_owned()))?;
    // Given up (and so asked again) if it has not come whole in time: a
    // server or proxy that holds the request open would hold the relay
    // off for the page's life.
    let init = web_sys::RequestInit::new();
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(within_ms)));
    let response = JsFuture::from(window.fetch_with_str_and_init(path, &init))
        .await
        .map_err(|err| {
            RelayConfigError::Unreachable(format!(
                "{path} could not be fetched ({})",
                describe(&err)
            ))
        })?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| {
        RelayConfigError::Invalid(format!("{path}: fetch did not answer a response"))
    })?;
    if response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(RelayConfigError::of_status(path, response.status()));
    }
    let text = response
        .text()
        .map_err(|err| RelayConfigError::Invalid(describe(&err)))
        .map(JsFuture::from)?
        .await
        .map_err(|err| {
            RelayConfigError::Unreachable(format!("{path} could not be read ({})", describe(&err)))
        })?;
    RelayConfig::parse(&text.as_string().unwrap_or_default()).map_err(RelayConfigError::Invalid)
}

/// How long `relay.json` may take to come whole, at first; after
/// failures, twice the wait before the next ask, up to a minute (a slow
/// network that takes longer still gets it).
const CONFIG_WITHIN_MS: u32 = 10_000;
const CONFIG_WITHIN_MAX_MS: u32 = 60_000;

/// The first wait before `relay.json` is asked for again, doubled after
/// each failure up to [`CONFIG_RETRY_MAX_MS`].
const CONFIG_RETRY_MS: u32 = 1_000;
const CONFIG_RETRY_MAX_MS: u32 = 30_000;
/// How often linked connections are looked at for a token the relay
/// refused.
const REFUSED_LOOK_MS: u32 = 5_000;
/// The first wait before `relay.json` is read again for a refused token,
/// doubled each time it holds the same one, up to
/// [`REFUSED_RETRY_MAX_MS`].
const REFUSED_RETRY_MS: u32 = 5_000;
const REFUSED_RETRY_MAX_MS: u32 = 60_000;

/// The channel on which a tab says which configuration it linked with
/// (the one it read at load, or a change it read first). Another tab
/// holding a different one reads `relay.json` again at once instead of
/// at its next turn (up to a minute away, while its token is refused):
/// the tab holding the link may be one with the old token, and every
/// other tab waits for it.
const CONFIG_CHANNEL: &str = "gaesup-relay-config";

/// The least time between two reads of `relay.json` that other tabs'
/// words started (a script of the site posting in a loop costs a read a
/// second, no more).
const TOLD_GAP_MS: u32 = 1_000;

/// What other tabs said on [`CONFIG_CHANNEL`]: the configurations they
/// linked with since this tab last looked (each once, the latest
/// [`SAID_KEPT`]), and the task to wake for them.
#[derive(Default)]
struct Said {
    linked: RefCell<Vec<String>>,
    waker: RefCell<Option<Waker>>,
}

/// Most configurations [`Said`] keeps between two looks: a tab linking
/// with this tab's own configuration must not hide an earlier one that
/// differs, and a script posting many must not grow the list.
const SAID_KEPT: usize = 4;

impl Said {
    /// Another tab linked with `text`.
    fn heard(&self, text: String) {
        let mut linked = self.linked.borrow_mut();
        linked.retain(|kept| *kept != text);
        if linked.len() == SAID_KEPT {
            linked.remove(0);
        }
        linked.push(text);
    }

    /// Whether another tab linked with a configuration other than `ours`
    /// since this was last asked (what they said is then forgotten).
    fn other_than(&self, ours: &str) -> bool {
        std::mem::take(&mut *self.linked.borrow_mut())
            .iter()
            .any(|theirs| theirs != ours)
    }
}

/// This tab's end of [`CONFIG_CHANNEL`] (nothing without
/// BroadcastChannel: each tab then keeps its own turns).
struct ConfigChannel {
    said: Rc<Said>,
    channel: Option<BroadcastChannel>,
    _listener: Option<EventListener>,
}

impl ConfigChannel {
    fn open() -> Self {
        let said = Rc::new(Said::default());
        let channel = BroadcastChannel::new(CONFIG_CHANNEL).ok();
        let listener = channel.as_ref().map(|channel| {
            let said = Rc::clone(&said);
            EventListener::new(channel, "message", move |event| {
                let Some(text) = event
                    .dyn_ref::<web_sys::MessageEvent>()
                    .and_then(|event| event.data().as_string())
                else {
                    return;
                };
                said.heard(text);
                let waker = said.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            })
        });
        Self {
            said,
            channel,
            _listener: listener,
        }
    }

    /// Tells the other tabs this one linked with `config`.
    fn linked(&self, config: &RelayConfig) {
        if let Some(channel) = &self.channel {
            let _ = channel.post_message(&config.identity().into());
        }
    }

    /// Waits `ms`, or less if another tab links with a configuration other
    /// than `ours` meanwhile (or did since this was last asked): whether
    /// one did.
    async fn wait(&self, ms: u32, ours: &str) -> bool {
        let mut sleep = pin!(gloo_timers::future::TimeoutFuture::new(ms));
        std::future::poll_fn(|cx| {
            if self.said.other_than(ours) {
                return Poll::Ready(true);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            *self.said.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Reads the relay configuration at `path` for every connection of
/// `relays` and tells each what it says ([`RelayHandle::attach`], or
/// [`RelayHandle::none`]), for as long as one of them is live:
///
/// - While it cannot be fetched ([`RelayConfigError::Unreachable`]: the
///   network or the server failed for now), each is told so
///   ([`RelayHandle::unreachable`]: writes wait in the outbox in
///   `localStorage`, not only in this page) and it is asked again, a
///   second later and then twice as long each time, up to 30 s.
/// - Once linked, while the relay refuses a connection's token (expired,
///   revoked: [`RelayHandle::is_refused`]) it is read again, 5 s later and
///   then twice as long each time up to a minute, and a configuration
///   that changed (a deployment that rotated the token) links every
///   connection again with it; what waited in the outbox then goes.
///   It is read again at once (whether or not the token is refused) when
///   another tab of the browser links with a configuration other than
///   this one's (opened since, or it read the change first): the tab
///   holding the link may be this one, with the old token, and every
///   other tab waits for it.
///
/// ```no_run
/// # async fn f(sync: gaesup_state_web::WebSync) {
/// gaesup_state_web::follow_relay_config("relay.json", vec![sync.relay()]).await;
/// # }
/// ```
///
/// [`RelayHandle::attach`]: crate::RelayHandle::attach
/// [`RelayHandle::none`]: crate::RelayHandle::none
/// [`RelayHandle::unreachable`]: crate::RelayHandle::unreachable
/// [`RelayHandle::is_refused`]: crate::RelayHandle::is_refused
pub async fn follow_relay_config(path: &str, relays: Vec<crate::RelayHandle>) {
    let live = || relays.iter().filter(|relay| relay.is_live());
    let sleep = |ms: u32| gloo_timers::future::TimeoutFuture::new(ms);
    let mut wait = CONFIG_RETRY_MS;
    let mut linked = loop {
        if live().next().is_none() {
            return;
        }
        let within = CONFIG_WITHIN_MS
            .max(wait.saturating_mul(2))
            .min(CONFIG_WITHIN_MAX_MS);
        match fetch_within(path, within).await {
            Ok(Some(config)) => {
                live().for_each(|relay| relay.attach(config.clone()));
                break config;
            }
            Ok(None) => return live().for_each(|relay| relay.none(None)),
            Err(RelayConfigError::Invalid(problem)) => {
                return live().for_each(|relay| relay.none(Some(problem.clone())));
            }
            Err(RelayConfigError::Unreachable(problem)) => {
                live().for_each(|relay| relay.unreachable(&problem, wait));
                sleep(wait).await;
                wait = wait.saturating_mul(2).min(CONFIG_RETRY_MAX_MS);
            }
        }
    };
    let others = ConfigChannel::open();
    others.linked(&linked);
    let mut wait = REFUSED_RETRY_MS;
    loop {
        if live().next().is_none() {
            return;
        }
        let refused = live().any(crate::RelayHandle::is_refused);
        if !refused {
            wait = REFUSED_RETRY_MS;
        }
        // A refused token is read again at its turn; any configuration,
        // once another tab links with a different one.
        let told = others
            .wait(
                if refused { wait } else { REFUSED_LOOK_MS },
                &linked.identity(),
            )
            .await;
        if !told {
            if !refused {
                continue;
            }
            wait = wait.saturating_mul(2).min(REFUSED_RETRY_MAX_MS);
        }
        if let Ok(Some(config)) = fetch_relay_config(path).await
            && config != linked
        {
            live().for_each(|relay| relay.attach(config.clone()));
            others.linked(&config);
            linked = config;
            wait = REFUSED_RETRY_MS;
        }
        if told {
            sleep(TOLD_GAP_MS).await;
        }
    }
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
    fn a_different_configuration_said_is_not_hidden_by_a_later_one_like_ours() {
        let said = Said::default();
        said.heard("new token".to_owned());
        said.heard("ours".to_owned());
        assert!(said.other_than("ours"), "the new token was said first");
        assert!(!said.other_than("ours"), "forgotten once looked at");
        said.heard("ours".to_owned());
        assert!(!said.other_than("ours"));
        // Many said: the latest kept, each once.
        for n in 0..10 {
            said.heard(format!("config {n}"));
            said.heard("ours".to_owned());
        }
        assert!(said.linked.borrow().len() <= SAID_KEPT);
        assert!(said.other_than("ours"));
    }

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
    fn a_busy_or_broken_server_is_asked_again_and_other_statuses_are_not() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    RelayConfigError::of_status("relay.json", status),
                    RelayConfigError::Unreachable(_)
                ),
                "{status}"
            );
        }
        for status in [301, 400, 401, 403, 405, 410, 418] {
            assert!(
                matches!(
                    RelayConfigError::of_status("relay.json", status),
                    RelayConfigError::Invalid(_)
                ),
                "{status}"
            );
        }
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
            r#"{"url":"http://a","token":"t","token":"u"}"#,
            r#"["http://a","t"]"#,
        ] {
            let err = RelayConfig::parse(text).unwrap_err();
            assert!(!err.is_empty(), "{text}");
        }
        let err = RelayConfig::parse(r#"{"url":"http://a","token":"t","extra":1}"#).unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
        // What names no relay, and what does.
        for nothing in ["{}", r#"{"url":null}"#, r#"{"url":null,"token":"t"}"#] {
            assert_eq!(RelayConfig::parse(nothing), Ok(None), "{nothing}");
        }
        let config = RelayConfig::parse(r#"{"token":"t","outbox_limit":7,"url":"ws://a:1"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(config.outbox_limit(), 7);
        assert_eq!(config.ws_url(), "ws://a:1/v1/ws");
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(RelayConfig::new("http://a", &long).is_err());
        // The token never shows in Debug.
        let config = RelayConfig::new("http://a", "secret-token").unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }
}
