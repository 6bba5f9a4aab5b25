//! The inspector: devtools for the apartment it sits in.
//!
//! When state is shared across units and tabs, "why does this show that?"
//! needs answers a page cannot give: which keys exist, who shares them,
//! how they merge, who wrote last, who is listening, whether the other
//! tabs are reachable, what just happened. The inspector shows all of it,
//! live, for its own apartment:
//!
//! - **Keys**: every key the apartment's manager holds or watches, with its
//!   scope, lifetime, strategy, schema, version (the stamp of the current
//!   value), last writer and subscriber count ([`StateManager::keys`]).
//! - **Sync**: link to other tabs, last sync, dropped messages and storage
//!   used (the shell's [`SyncStatus`] for this apartment).
//! - **Operation log**: the latest value changes, local and remote
//!   ([`StateManager::log`]), and what the relay said about this tab's
//!   writes when a relay is configured ([`StateManager::relay_acks`]).
//! - **Snapshot**: export the values of a scope (apartment, global, or the
//!   inspector's building) as JSON, and restore one; a bad snapshot changes
//!   nothing and says why ([`StateManager::snapshot`],
//!   [`StateManager::restore`]).
//! - **Failure drill**: break and repair the flaky unit, to watch a failure
//!   stay inside one unit's frame.
//!
//! Everything is read from the manager, re-read in the next animation
//! frame after its [`revision`](StateManager::revision) moves, and at most
//! every [`REFRESH_INTERVAL`] while changes keep coming. Values are shown
//! as text.
//!
//! ```no_run
//! use gaesup_state::prelude::*;
//! use leptos::prelude::*;
//! use unit_inspector::Inspector;
//!
//! # fn app() -> impl IntoView {
//! view! {
//!     <Apartment id="main">
//!         <Building id="devtools">
//!             <Unit id="inspector"><Inspector /></Unit>
//!         </Building>
//!     </Apartment>
//! }
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use gaesup_state::core::{Scope, UnitAddress};
use gaesup_state::display::{byte_size, clock_time, data_url};
use gaesup_state::prelude::*;
use gaesup_state::{
    Confirmation, KeyInfo, LogEntry, Origin, RelayAck, StateManager, SyncStatus, use_apartment,
    use_unit,
};
use leptos::prelude::*;
use serde_json::Value;

/// How many operations the log shows, newest first.
pub const LOG_SHOWN: usize = 20;

/// The scopes a snapshot can cover from the inspector's address. Private
/// is left out: the inspector's own private scope holds nothing, and a
/// snapshot reads and restores with the inspector's own permissions, which
/// do not reach other units' private keys. (The key table and the log are
/// devtools views of the whole manager and do show every key.)
pub const SNAPSHOT_SCOPES: [Scope; 3] = [Scope::Apartment, Scope::Building, Scope::Global];

/// Devtools for the enclosing apartment. Must sit inside a `<Unit>`.
#[component]
pub fn Inspector() -> impl IntoView {
    let Some(unit) = use_unit() else {
        let error = StateError::NoUnit { hook: "Inspector" };
        return view! { <p role="alert">{error.to_string()}</p> }.into_any();
    };
    let sync = use_apartment().and_then(|apartment| apartment.sync);
    let manager = unit.manager;
    let revision = throttled(manager.revision());
    view! {
        <div class="inspector">
            <FailureDrill />
            <SyncSection sync />
            <KeysSection manager revision apartment=unit.address.apartment().to_string() />
            <LogSection manager revision />
            <SnapshotSection manager address=unit.address />
        </div>
    }
    .into_any()
}

/// How long the inspector waits, after showing a change, before it shows
/// the next ones: during a burst of writes it refreshes five times a
/// second, the way browser devtools refresh their own live panels.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// Where [`throttled`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refresh {
    /// Nothing waiting: the next change is shown in the next frame.
    Idle,
    /// A frame is asked for; changes until then are shown in it.
    Frame,
    /// A change was just shown; `dirty` if another came since.
    Cooling { dirty: bool },
}

impl Refresh {
    /// The revision moved: the next state, and whether to ask for a frame.
    fn changed(self) -> (Self, bool) {
        match self {
            Self::Idle => (Self::Frame, true),
            Self::Frame => (Self::Frame, false),
            Self::Cooling { .. } => (Self::Cooling { dirty: true }, false),
        }
    }

    /// The frame showed the revision: cool down for [`REFRESH_INTERVAL`].
    fn shown(self) -> Self {
        Self::Cooling { dirty: false }
    }

    /// The cool-down ended: the next state, and whether to ask for a frame
    /// (for the changes that came during it).
    fn cooled(self) -> (Self, bool) {
        match self {
            Self::Cooling { dirty: true } => (Self::Frame, true),
            _ => (Self::Idle, false),
        }
    }
}

/// `revision`, followed in the next animation frame after it moves, then
/// at most once per [`REFRESH_INTERVAL`] while it keeps moving.
///
/// The manager's revision moves on every change. Each refresh rebuilds
/// rows and has the browser lay out and paint the page again (about
/// 5 ms a frame for the main apartment in headless Chromium). Followed
/// change by change, a tab receiving a write from another tab every
/// millisecond spends most frames on it, and the messages that arrive
/// meanwhile wait: the cross-tab latency bench's 95th percentile was 4 to
/// 5 ms with the inspector on the page and under 2 ms without it. A first
/// change still shows in the next frame; a hidden page, which gets no
/// frames, shows nothing until it is visible again.
fn throttled(revision: Signal<u64>) -> Signal<u64> {
    let shown = RwSignal::new(revision.get_untracked());
    let state = Rc::new(Cell::new(Refresh::Idle));
    Effect::new(move || {
        revision.track();
        let (next, ask) = state.get().changed();
        state.set(next);
        if ask {
            show_next_frame(revision, shown, Rc::clone(&state));
        }
    });
    shown.into()
}

/// Asks for a frame that shows the revision, then cools down.
fn show_next_frame(revision: Signal<u64>, shown: RwSignal<u64>, state: Rc<Cell<Refresh>>) {
    request_animation_frame(move || {
        // The inspector may have gone since the frame was asked for.
        let Some(now) = revision.try_get_untracked() else {
            return;
        };
        let _ = shown.try_set(now);
        state.set(state.get().shown());
        set_timeout(
            move || {
                let (next, ask) = state.get().cooled();
                state.set(next);
                if ask {
                    show_next_frame(revision, shown, state);
                }
            },
            REFRESH_INTERVAL,
        );
    });
}

/// One row of the keys table, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    /// Full key.
    pub key: String,
    /// Scope.
    pub scope: String,
    /// Lifetime.
    pub lifetime: String,
    /// Strategy.
    pub strategy: String,
    /// Declared schema version.
    pub schema: String,
    /// Stamp of the current value (of a sum key: of its newest increment
    /// or reset), or "default".
    pub version: String,
    /// Who wrote the current value (of a sum key: who added or reset
    /// last), or "nobody".
    pub last_writer: String,
    /// Live subscriptions in this tab.
    pub subscribers: String,
}

impl From<&KeyInfo> for KeyRow {
    fn from(info: &KeyInfo) -> Self {
        Self {
            key: info.key.to_string(),
            scope: info.scope.to_string(),
            lifetime: info.lifetime.to_string(),
            strategy: info.strategy.to_string(),
            schema: format!("v{}", info.schema),
            version: info
                .version
                .map_or_else(|| "default".to_owned(), |stamp| stamp.to_string()),
            last_writer: info
                .last_writer
                .as_ref()
                .map_or_else(|| "nobody".to_owned(), ToString::to_string),
            subscribers: info.subscribers.to_string(),
        }
    }
}

/// A log entry as one line: where it came from, the key, old → new.
pub fn describe(entry: &LogEntry) -> String {
    let origin = match entry.origin {
        Origin::Local => "local",
        Origin::Remote => "remote",
    };
    format!(
        "{origin} {}: {} → {}",
        entry.change.key,
        preview(&entry.change.old()),
        preview(&entry.change.new)
    )
}

/// A relay's ack as one line: confirmed or refused, the key, the op.
pub fn describe_ack(ack: &RelayAck) -> String {
    let key = ack
        .key
        .as_ref()
        .map_or_else(|| "a write".to_owned(), ToString::to_string);
    match &ack.outcome {
        Confirmation::Confirmed => format!("confirmed by the relay: {key} (op {})", ack.op),
        Confirmation::Refused(reason) => {
            format!("refused by the relay: {key} (op {}): {reason}", ack.op)
        }
        Confirmation::Unknown => format!("unconfirmed: {key} (op {})", ack.op),
    }
}

/// A JSON value as compact text, cut to
/// [`PREVIEW_CHARS`](gaesup_state::core::PREVIEW_CHARS) characters.
pub fn preview(value: &Value) -> String {
    gaesup_state::core::preview(&value.to_string())
}

/// Break or repair the flaky unit of this apartment.
#[component]
fn FailureDrill() -> impl IntoView {
    let key = match unit_flaky::broken_key() {
        Ok(key) => key,
        Err(err) => {
            return view! { <p role="alert">{format!("failure drill unavailable: {err}")}</p> }
                .into_any();
        }
    };
    let broken = use_shared_state(&key);
    let (value, set, error) = (broken.value, broken.set, broken.meta.error);
    view! {
        <section class="inspector-section" aria-label="Failure drill">
            <h4>"Failure drill"</h4>
            <p>
                "The flaky unit is "
                <strong>{move || if value.get() { "broken" } else { "working" }}</strong>
                "."
            </p>
            <button type="button" on:click=move |_| set.set(!value.get_untracked())>
                {move || if value.get() { "Repair the flaky unit" } else { "Break the flaky unit" }}
            </button>
            <ErrorAlert error />
        </section>
    }
    .into_any()
}

/// The shell's sync status of this apartment.
#[component]
fn SyncSection(sync: Option<SyncStatus>) -> impl IntoView {
    let body = match sync {
        None => view! { <p>"Not connected to the browser: state lives in this page only."</p> }
            .into_any(),
        Some(status) => view! {
            <dl class="inspector-facts">
                <dt>"Other tabs"</dt>
                <dd>{move || if status.channel_up.get() { "linked" } else { "not linked" }}</dd>
                <dt>"Last sync"</dt>
                <dd>{move || status.last_sync_ms.get().map_or_else(|| "never".to_owned(), clock_time)}</dd>
                <dt>"Dropped messages"</dt>
                <dd>{move || status.dropped.get()}</dd>
                <dt>"Storage used"</dt>
                <dd>{move || byte_size(status.quota_used.get())}</dd>
            </dl>
        }
        .into_any(),
    };
    view! {
        <section class="inspector-section" aria-label="Sync status">
            <h4>"Sync"</h4>
            {body}
        </section>
    }
}

/// Every key of the apartment's manager: its own apartment's and global
/// ones (storage is shared by the origin, so entries of other apartments
/// can be loaded too; they are not this apartment's business).
#[component]
fn KeysSection(manager: StateManager, revision: Signal<u64>, apartment: String) -> impl IntoView {
    let rows = Memo::new(move |_| {
        revision.track();
        manager
            .keys()
            .iter()
            .filter(|info| info.key.apartment().is_none_or(|a| a == apartment))
            .map(KeyRow::from)
            .collect::<Vec<_>>()
    });
    let body = move || {
        rows.get()
            .into_iter()
            .map(|row| {
                view! {
                    <tr>
                        <th scope="row">{row.key}</th>
                        <td>{row.scope}</td>
                        <td>{row.lifetime}</td>
                        <td>{row.strategy}</td>
                        <td>{row.schema}</td>
                        <td>{row.version}</td>
                        <td>{row.last_writer}</td>
                        <td>{row.subscribers}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section class="inspector-section" aria-label="Keys">
            <h4>"Keys"</h4>
            <div class="table-scroll" role="region" aria-label="Keys table" tabindex="0">
                <table class="inspector-keys">
                    <caption>{move || format!("{} keys", rows.read().len())}</caption>
                    <thead>
                        <tr>
                            <th scope="col">"Key"</th>
                            <th scope="col">"Scope"</th>
                            <th scope="col">"Lifetime"</th>
                            <th scope="col">"Strategy"</th>
                            <th scope="col">"Schema"</th>
                            <th scope="col">"Version"</th>
                            <th scope="col">"Last writer"</th>
                            <th scope="col">"Subscribers"</th>
                        </tr>
                    </thead>
                    <tbody>{body}</tbody>
                </table>
            </div>
        </section>
    }
}

/// The latest value changes, newest first.
#[component]
fn LogSection(manager: StateManager, revision: Signal<u64>) -> impl IntoView {
    let lines = Memo::new(move |_| {
        revision.track();
        manager
            .recent_log(LOG_SHOWN)
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
    });
    let acks = Memo::new(move |_| {
        revision.track();
        manager
            .relay_acks()
            .iter()
            .rev()
            .take(LOG_SHOWN)
            .map(describe_ack)
            .collect::<Vec<_>>()
    });
    let relay_acks = move || {
        let acks = acks.get();
        (!acks.is_empty()).then(|| {
            view! {
                <div class="inspector-logbox" role="region" aria-label="Relay confirmations" tabindex="0">
                    <ol class="inspector-log">
                        {acks.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}
                    </ol>
                </div>
            }
        })
    };
    view! {
        <section class="inspector-section" aria-label="Operation log">
            <h4>"Operation log"</h4>
            <div class="inspector-logbox" role="region" aria-label="Latest operations" tabindex="0">
                {move || {
                    let lines = lines.get();
                    if lines.is_empty() {
                        view! { <p>"No operations yet."</p> }.into_any()
                    } else {
                        view! {
                            <ol class="inspector-log">
                                {lines.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}
                            </ol>
                        }
                        .into_any()
                    }
                }}
            </div>
            {relay_acks}
        </section>
    }
}

/// What the last snapshot action did.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Done(String),
    Failed(String),
}

/// Export and restore the values of a scope.
#[component]
fn SnapshotSection(manager: StateManager, address: UnitAddress) -> impl IntoView {
    let address = StoredValue::new(address);
    let scope = RwSignal::new(Scope::Apartment);
    let exported = RwSignal::new(None::<String>);
    let to_restore = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Outcome>);

    let export = move |_| {
        let result = address.with_value(|address| manager.snapshot(address, scope.get_untracked()));
        match result {
            Ok(text) => {
                outcome.set(Some(Outcome::Done(format!(
                    "Exported the {} scope.",
                    scope.get_untracked()
                ))));
                exported.set(Some(text));
            }
            Err(err) => outcome.set(Some(Outcome::Failed(format!("Export failed: {err}")))),
        }
    };
    let restore = move |_| {
        let text = to_restore.get_untracked();
        if text.trim().is_empty() {
            outcome.set(Some(Outcome::Failed(
                "Paste a snapshot into “Snapshot to restore” first.".to_owned(),
            )));
            return;
        }
        let result = address.with_value(|address| manager.restore(address, &text));
        outcome.set(Some(match result {
            Ok(batch) => {
                let restored = match batch.changes.len() {
                    0 => "Restored: every value already matched the snapshot.".to_owned(),
                    1 => "Restored 1 key.".to_owned(),
                    n => format!("Restored {n} keys."),
                };
                Outcome::Done(match batch.held.len() {
                    0 => restored,
                    1 => format!(
                        "{restored} 1 key no unit has declared yet is kept and restored when one does."
                    ),
                    n => format!(
                        "{restored} {n} keys no unit has declared yet are kept and restored when one does."
                    ),
                })
            }
            Err(err) => Outcome::Failed(format!("Nothing was restored: {err}")),
        }));
    };
    let options = SNAPSHOT_SCOPES
        .iter()
        .map(|scope| {
            let name = scope.as_str();
            view! { <option value=name>{name}</option> }
        })
        .collect_view();
    let on_scope = move |ev| {
        if let Ok(chosen) = event_target_value(&ev).parse::<Scope>() {
            scope.set(chosen);
        }
    };
    view! {
        <section class="inspector-section" aria-label="Snapshot">
            <h4>"Snapshot"</h4>
            <div class="inspector-row">
                <label>
                    "Scope "
                    <select
                        on:change=on_scope
                        prop:value=move || scope.get().as_str()
                    >
                        {options}
                    </select>
                </label>
                <button type="button" on:click=export>"Export snapshot"</button>
            </div>
            {move || {
                exported
                    .get()
                    .map(|text| {
                        let file = format!("gaesup-{}-snapshot.json", scope.get_untracked());
                        view! {
                            <label class="inspector-block">
                                "Exported snapshot"
                                <textarea readonly rows="4" prop:value=text.clone()></textarea>
                            </label>
                            <a href=data_url(&text) download=file>"Download snapshot"</a>
                        }
                    })
            }}
            <label class="inspector-block">
                "Snapshot to restore"
                <textarea
                    rows="4"
                    prop:value=move || to_restore.get()
                    on:input=move |ev| to_restore.set(event_target_value(&ev))
                ></textarea>
            </label>
            <button type="button" on:click=restore>"Restore snapshot"</button>
            // Both regions exist from the start and only their text changes,
            // so screen readers announce each outcome.
            <p role="status">
                {move || match outcome.get() {
                    Some(Outcome::Done(text)) => text,
                    _ => String::new(),
                }}
            </p>
            <p role="alert">
                {move || match outcome.get() {
                    Some(Outcome::Failed(text)) => text,
                    _ => String::new(),
                }}
            </p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_state::core::{Change, FullKey, PREVIEW_CHARS};
    use serde_json::json;

    fn entry(origin: Origin, old: Value, new: Value) -> LogEntry {
        LogEntry {
            origin,
            change: Change::new(
                FullKey::parse("apartment/main/cart").unwrap(),
                old.into(),
                new.into(),
            ),
        }
    }

    #[test]
    fn a_log_line_names_origin_key_and_values() {
        let line = describe(&entry(Origin::Remote, json!(1), json!({"a": "<b>"})));
        assert_eq!(line, r#"remote apartment/main/cart: 1 → {"a":"<b>"}"#);
        let line = describe(&entry(Origin::Local, Value::Null, json!(true)));
        assert_eq!(line, "local apartment/main/cart: null → true");
    }

    #[test]
    fn an_ack_line_says_what_the_relay_said_about_which_key() {
        let op = gaesup_state::core::OpId {
            tab: gaesup_state::core::TabId::new(3),
            seq: 9,
        };
        let key = Some(FullKey::parse("apartment/main/cart").unwrap());
        let confirmed = RelayAck {
            op,
            key: key.clone(),
            outcome: Confirmation::Confirmed,
        };
        assert_eq!(
            describe_ack(&confirmed),
            format!("confirmed by the relay: apartment/main/cart (op {op})")
        );
        let refused = RelayAck {
            op,
            key: None,
            outcome: Confirmation::Refused("forbidden: read only".into()),
        };
        assert_eq!(
            describe_ack(&refused),
            format!("refused by the relay: a write (op {op}): forbidden: read only")
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::String("x".repeat(PREVIEW_CHARS * 2));
        let text = preview(&long);
        assert_eq!(text.chars().count(), PREVIEW_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(preview(&json!("short")), "\"short\"");
    }

    #[test]
    fn a_burst_of_changes_is_shown_at_once_then_once_per_cool_down() {
        // The first change asks for a frame; more before it is drawn ride
        // along.
        let (state, ask) = Refresh::Idle.changed();
        assert!(ask);
        let (state, ask) = state.changed();
        assert!(!ask);
        assert_eq!(state, Refresh::Frame);
        // Drawn: changes during the cool-down wait for its end, then get
        // one frame together.
        let state = state.shown();
        let (state, ask) = state.changed();
        assert!(!ask);
        let (state, ask) = state.changed();
        assert!(!ask);
        let (state, ask) = state.cooled();
        assert!(ask, "the changes of the cool-down are shown");
        assert_eq!(state, Refresh::Frame);
        // A quiet cool-down ends idle: the next change is shown at once.
        let (state, ask) = state.shown().cooled();
        assert!(!ask);
        assert_eq!(state, Refresh::Idle);
        assert!(state.changed().1);
    }

    #[test]
    fn snapshot_scopes_parse_back() {
        for scope in SNAPSHOT_SCOPES {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
    }
}
