//! The writable side of the [`SyncStatus`] a connection reports: flags,
//! counters, and the notices (one sentence each) a status panel shows.

use gaesup_state::{RelayStatus, SyncStatus};
use gaesup_state_core::{
    Error as CoreError, LoadReport, PersistReport, Quarantine, Replica, StorageError,
};
use leptos::prelude::*;

/// Most notices kept; older ones give way (a page left open for days must
/// not grow without bound).
const MAX_NOTICES: usize = 50;

/// The writable side of [`SyncStatus`], kept by the adapter.
#[derive(Clone, Copy)]
pub(super) struct StatusWriter {
    pub(super) channel_up: RwSignal<bool>,
    pub(super) last_sync_ms: RwSignal<Option<f64>>,
    dropped: RwSignal<usize>,
    pub(super) quota_used: RwSignal<usize>,
    notices: RwSignal<Vec<String>>,
    pub(super) relay: RwSignal<RelayStatus>,
}

impl StatusWriter {
    pub(super) fn new() -> Self {
        Self {
            channel_up: RwSignal::new(false),
            last_sync_ms: RwSignal::new(None),
            dropped: RwSignal::new(0),
            quota_used: RwSignal::new(0),
            notices: RwSignal::new(Vec::new()),
            relay: RwSignal::new(RelayStatus::off()),
        }
    }

    pub(super) fn status(self) -> SyncStatus {
        SyncStatus {
            channel_up: self.channel_up.into(),
            last_sync_ms: self.last_sync_ms.into(),
            dropped: self.dropped.into(),
            quota_used: self.quota_used.into(),
            notices: self.notices.into(),
            relay: self.relay.into(),
        }
    }

    pub(super) fn dropped_one(self) {
        self.dropped.try_update(|n| *n = n.saturating_add(1));
    }

    /// Adds `notice` unless it is already shown (a save that keeps failing
    /// says so once).
    pub(super) fn notice(self, notice: String) {
        self.notices.try_update(|notices| {
            if !notices.contains(&notice) {
                if notices.len() == MAX_NOTICES {
                    notices.remove(0);
                }
                notices.push(notice);
            }
        });
    }

    pub(super) fn load_reports(self, reports: &[LoadReport]) {
        for report in reports {
            for quarantine in &report.quarantined {
                self.notice(quarantine_notice(quarantine));
            }
            for (storage_key, err) in &report.failed {
                self.notice(format!(
                    "The stored entry \"{storage_key}\" could not be read ({err}); it was left as it is."
                ));
            }
        }
    }

    pub(super) fn persist_reports(self, reports: &[PersistReport]) {
        for report in reports {
            for quarantine in &report.quarantined {
                self.notice(quarantine_notice(quarantine));
            }
            for (key, err) in &report.failed {
                self.notice(match err {
                    CoreError::Storage(StorageError::QuotaExceeded) => format!(
                        "Could not save {key}: browser storage is full. The value is kept in this tab and saving is retried on the next change."
                    ),
                    CoreError::Storage(StorageError::Unavailable) => format!(
                        "Could not save {key}: browser storage is unavailable. The value is kept in this tab only and saving is retried on the next change."
                    ),
                    other => format!(
                        "Could not save {key} ({other}); saving is retried on the next change."
                    ),
                });
            }
        }
    }
}

fn quarantine_notice(quarantine: &Quarantine) -> String {
    let key = &quarantine.key;
    let copy = match &quarantine.copy_error {
        None => format!(
            "a copy was set aside under \"{}\"",
            Replica::quarantine_key(key)
        ),
        Some(err) => format!("setting a copy aside failed ({err}), the entry is left in place"),
    };
    format!(
        "The stored value of {key} could not be used ({}); {copy}, and {key} is not saved again until the entry is discarded.",
        quarantine.error
    )
}
