//! When a connection saves and re-reads: at most once per animation frame
//! (a timeout while hidden, when frames do not run), at once when the page
//! is hidden or left, and once per burst of other tabs' storage writes
//! (re-reading only the entries they wrote).

use gaesup_state_core::vec_map::VecSet;

use gaesup_state_core::FullKey;
use leptos::prelude::Set;
use wasm_bindgen::JsCast;
use web_sys::Document;

use super::Inner;
use crate::storage::js_message;

/// What a save could not write.
pub(super) enum Unsaved {
    /// These keys (storage full, say): they stay dirty, and the next save
    /// tries them again.
    Keys(Vec<FullKey>),
    /// Nothing: the manager could not flush at all.
    All,
}

impl Unsaved {
    /// Whether any of `keys` may not be saved.
    pub(super) fn any_of<'k>(&self, mut keys: impl Iterator<Item = &'k FullKey>) -> bool {
        match self {
            Self::Keys(failed) => keys.any(|key| failed.contains(key)),
            Self::All => true,
        }
    }
}

/// What the next save re-reads from storage because other tabs wrote it.
#[derive(Debug, Default)]
pub(super) enum Reread {
    /// Nothing: no other tab wrote.
    #[default]
    Nothing,
    /// These state entries, each named by a `storage` event.
    Named(VecSet<String>),
    /// Everything stored (another tab cleared storage).
    All,
}

/// The save that is scheduled, to cancel it.
#[derive(Clone, Copy)]
pub(super) enum Pending {
    Frame(i32),
    Timeout(i32),
    /// A microtask, while the page is being left (not cancelled: it saves
    /// only if still pending).
    Microtask,
}

impl Inner {
    /// Asks for a save in the next animation frame (a timeout while
    /// hidden, when frames do not run); a burst of changes gets one.
    pub(super) fn schedule(&self) {
        if self.pending.get().is_some() {
            return;
        }
        if self.leaving.get() {
            // Written after the page's own save on `pagehide` (a unit's
            // handler of it, or of the `visibilitychange` that follows):
            // saved before this task ends, as nothing runs after it.
            self.pending.set(Some(Pending::Microtask));
            let this = self.this.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(inner) = this.upgrade()
                    && matches!(inner.pending.get(), Some(Pending::Microtask))
                {
                    inner.pending.set(None);
                    inner.save();
                }
            });
            return;
        }
        let callback = self.frame.as_ref().unchecked_ref();
        let hidden = self.document.as_ref().is_some_and(Document::hidden);
        let scheduled = if hidden {
            self.window
                .set_timeout_with_callback(callback)
                .map(Pending::Timeout)
        } else {
            self.window
                .request_animation_frame(callback)
                .map(Pending::Frame)
        };
        match scheduled {
            Ok(pending) => self.pending.set(Some(pending)),
            Err(err) => self.writer.notice(format!(
                "Saving could not be scheduled ({}); changes are saved when the page is hidden.",
                js_message(&err)
            )),
        }
    }

    pub(super) fn cancel_pending(&self) {
        match self.pending.take() {
            Some(Pending::Frame(id)) => {
                let _ = self.window.cancel_animation_frame(id);
            }
            Some(Pending::Timeout(id)) => self.window.clear_timeout_with_handle(id),
            Some(Pending::Microtask) | None => {}
        }
    }

    /// Saves at once; what could not be written (see
    /// [`save`](Self::save)).
    pub(super) fn save_now(&self) -> Unsaved {
        self.cancel_pending();
        self.save()
    }

    /// Re-reads storage if another tab wrote, then writes what changed;
    /// says what could not be written.
    pub(super) fn save(&self) -> Unsaved {
        let reread = std::mem::take(&mut *self.reread.borrow_mut());
        match reread {
            Reread::Nothing => {}
            Reread::Named(named) => {
                let named: Vec<String> = named.into_iter().collect();
                self.reloaded(self.manager.reload_named(&named));
            }
            Reread::All => self.reload(),
        }
        let Ok(reports) = self.manager.flush() else {
            return Unsaved::All;
        };
        self.writer.persist_reports(&reports);
        if reports.iter().any(|r| !r.written.is_empty()) {
            self.update_quota();
        }
        Unsaved::Keys(
            reports
                .into_iter()
                .flat_map(|report| report.failed)
                .map(|(key, _)| key)
                .collect(),
        )
    }

    /// Storage events come one per key written: a burst re-reads the keys
    /// it named, each once, in the next save.
    pub(super) fn reload_soon_named(&self, storage_key: String) {
        let mut reread = self.reread.borrow_mut();
        match &mut *reread {
            Reread::Nothing => *reread = Reread::Named(VecSet::from_iter([storage_key])),
            Reread::Named(named) => {
                named.insert(storage_key);
            }
            // Everything is re-read already.
            Reread::All => {}
        }
        drop(reread);
        self.schedule();
    }

    /// Re-reads everything stored in the next save (another tab cleared
    /// storage).
    pub(super) fn reload_soon(&self) {
        *self.reread.borrow_mut() = Reread::All;
        self.schedule();
    }

    /// Re-reads everything stored now.
    pub(super) fn reload(&self) {
        self.reloaded(self.manager.reload());
    }

    /// Reports what a re-read found and refreshes the quota estimate.
    fn reloaded(&self, reports: gaesup_state::Result<Vec<gaesup_state_core::LoadReport>>) {
        if let Ok(reports) = reports {
            // Changed values make the manager call `on_dirty`, which
            // schedules their save.
            self.writer.load_reports(&reports);
        }
        self.update_quota();
    }

    pub(super) fn update_quota(&self) {
        if let Some(local) = &self.local
            && let Ok(used) = local.quota_used()
        {
            self.writer.quota_used.try_set(used);
        }
    }
}
