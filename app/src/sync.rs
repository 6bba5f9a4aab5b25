//! Storage and cross-tab sync for every apartment, and the panel that shows
//! how it is going.
//!
//! In the browser each apartment's manager is connected to localStorage,
//! sessionStorage and a BroadcastChannel (`gaesup_state_web::connect_browser`).
//! Problems never stop the app: each becomes a specific notice in the
//! panel, which the user can dismiss; entries set aside because they could
//! not be read can be exported (their raw text is kept) or discarded.

use std::sync::Arc;

use gaesup_state::core::vec_map::{VecMap, VecSet};
use gaesup_state::core::{FullKey, Quarantine};
use gaesup_state::display::{byte_size, clock_time, data_url};
use gaesup_state::{StateManager, SyncStatus};
use leptos::prelude::*;

use crate::managers::Managers;

/// The relay configuration, served beside the app (`public/relay.json`
/// names none; a deployment or `cargo xtask dev` replaces it).
#[cfg(target_arch = "wasm32")]
const RELAY_CONFIG: &str = "relay.json";

/// Each apartment's sync status, by apartment id.
#[derive(Clone, Debug, Default)]
pub struct SyncStatuses(Arc<VecMap<String, SyncStatus>>);

impl SyncStatuses {
    /// The status of `apartment`.
    pub fn get(&self, apartment: &str) -> Option<SyncStatus> {
        self.0.get(apartment).copied()
    }
}

/// Connects every apartment's manager to the browser and returns their
/// statuses. The connections live as long as the calling owner (the app's
/// root). A manager that cannot connect at all keeps working in memory and
/// says so in its status.
#[cfg(target_arch = "wasm32")]
pub fn connect_all(managers: &Managers) -> SyncStatuses {
    use gaesup_state::core::ApartmentId;

    use gaesup_state_web::{ConnectOptions, connect_browser_with_options};

    let mut statuses = VecMap::new();
    let mut live = Vec::new();
    let mut relays = Vec::new();
    for (id, manager) in managers.iter() {
        let connected = ApartmentId::new(id.as_str())
            .map_err(|err| err.to_string())
            .and_then(|apartment| {
                // Writes made before relay.json is read wait for it.
                let options = ConnectOptions::default().expect_relay();
                connect_browser_with_options(manager, &apartment, options)
                    .map_err(|err| err.to_string())
            });
        let status = match connected {
            Ok(sync) => {
                let status = sync.status();
                relays.push(sync.relay());
                live.push(sync);
                status
            }
            Err(reason) => offline(format!(
                "Apartment {id:?} keeps its state in this tab's memory only: {reason}."
            )),
        };
        statuses.insert(id, status);
    }
    // The connections detach when dropped; keep them for the app's life.
    StoredValue::new_local(live);
    // Other devices: the relay named by relay.json beside the app, if any
    // (the deployment's choice, not the build's), asked for again while it
    // cannot be fetched. With none, the app makes no request beyond this
    // one file.
    leptos::task::spawn_local(gaesup_state_web::follow_relay_config(RELAY_CONFIG, relays));
    SyncStatuses(Arc::new(statuses))
}

/// Outside the browser there is nothing to connect to.
#[cfg(not(target_arch = "wasm32"))]
pub fn connect_all(managers: &Managers) -> SyncStatuses {
    let statuses = managers
        .iter()
        .map(|(id, _)| (id, offline("Not running in a browser.".to_owned())))
        .collect();
    SyncStatuses(Arc::new(statuses))
}

fn offline(reason: String) -> SyncStatus {
    SyncStatus {
        channel_up: Signal::stored(false),
        last_sync_ms: Signal::stored(None),
        dropped: Signal::stored(0),
        quota_used: Signal::stored(0),
        notices: Signal::stored(vec![reason]),
        relay: Signal::stored(gaesup_state::RelayStatus::off()),
    }
}

/// The storage and sync panel of one apartment: link to other tabs, last
/// sync, refused messages, storage used, notices and set-aside entries.
#[component]
pub fn SyncPanel(
    /// The apartment's title, for the panel's label.
    title: String,
    /// Its sync status.
    status: SyncStatus,
    /// Its state manager (for the set-aside entries).
    manager: StateManager,
) -> impl IntoView {
    let dismissed = RwSignal::new(VecSet::<usize>::default());
    let quarantined = manager.quarantine_signal();
    let notices = move || {
        status
            .notices
            .get()
            .into_iter()
            .enumerate()
            .filter(|(index, _)| !dismissed.with(|d| d.contains(index)))
            .map(|(index, text)| {
                view! {
                    <li class="notice" role="alert">
                        <span>{text}</span>
                        <button type="button" on:click=move |_| dismissed.update(|d| { d.insert(index); })>
                            "Dismiss"
                        </button>
                    </li>
                }
            })
            .collect_view()
    };
    let set_aside = move || {
        quarantined
            .get()
            .into_iter()
            .map(|entry| view! { <QuarantineItem entry manager /> })
            .collect_view()
    };
    view! {
        <section class="sync-panel" aria-label=format!("Storage and sync: {title}")>
            <p class="sync-line">
                <strong>{title.clone()}</strong>
                ": "
                <span>
                    {move || if status.channel_up.get() { "Linked to other tabs" } else { "Not linked to other tabs" }}
                </span>
                " · last sync "
                <output aria-label="Last sync">
                    {move || status.last_sync_ms.get().map_or_else(|| "never".to_owned(), clock_time)}
                </output>
                " · dropped messages "
                <output aria-label="Dropped messages">{move || status.dropped.get()}</output>
                " · storage used "
                <output aria-label="Storage used">{move || byte_size(status.quota_used.get())}</output>
            </p>
            <RelayLine status />
            <ul class="notices">{notices}</ul>
            <ul class="quarantine">{set_aside}</ul>
        </section>
    }
}

/// The link to other devices: shown once a relay is configured.
#[component]
fn RelayLine(
    /// The apartment's sync status.
    status: SyncStatus,
) -> impl IntoView {
    let relay = status.relay;
    move || {
        let relay = relay.get();
        relay.is_configured().then(|| {
            let holder = if relay.here {
                "this tab"
            } else {
                "another tab"
            };
            view! {
                <p class="sync-line relay-line" role="status" aria-live="polite">
                    "Other devices: "
                    <output aria-label="Relay link">{relay.link.clone()}</output>
                    {format!(" (held by {holder})")}
                    " · waiting to send "
                    <output aria-label="Waiting to send">{relay.waiting}</output>
                    " · last confirmation "
                    <output aria-label="Last confirmation">
                        {relay.last_ack_ms.map_or_else(|| "never".to_owned(), clock_time)}
                    </output>
                </p>
            }
        })
    }
}

/// One set-aside entry with its export and discard actions.
#[component]
fn QuarantineItem(
    /// The entry.
    entry: Quarantine,
    /// Its manager.
    manager: StateManager,
) -> impl IntoView {
    let key: FullKey = entry.key.clone();
    let text = format!(
        "{} was set aside and reads its default: {}",
        entry.key, entry.error
    );
    let raw = manager.quarantined_raw(&key).ok().flatten();
    let file = format!("{}.json", key.as_str().replace('/', "_"));
    let failure = RwSignal::new(None::<String>);
    let discard = move |_| {
        if let Err(err) = manager.discard_quarantine(&key) {
            failure.set(Some(err.to_string()));
        }
    };
    view! {
        <li class="notice quarantined">
            <span role="alert">{text}</span>
            {raw.map(|raw| view! { <a href=data_url(&raw) download=file>"Export raw value"</a> })}
            <button type="button" on:click=discard>"Discard stored value"</button>
            <span>{move || failure.get()}</span>
        </li>
    }
}
