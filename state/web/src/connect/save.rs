//! When a connection saves and re-reads: at most once per animation frame
//! (a timeout while hidden, when frames do not run), at once when the page
//! is hidden or left, and once per burst of other tabs' storage writes
//! (re-reading only the entries they wrote).

use leptos::prelude::Set;
use wasm_bindgen::JsCast;
use web_sys::Document;

use super::Inner;
use crate::storage::js_message;

/// The save that is scheduled, to cancel it.
#[derive(Clone, Copy)]
pub(super) enum Pending {
    Frame(i32),
    Timeout(i32),
}

impl Inner {
    /// Asks for a save in the next animation frame (a timeout while
    /// hidden, when frames do not run); a burst of changes gets one.
    pub(super) fn schedule(&self) {
        if self.pending.get().is_some() {
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
            None => {}
        }
    }

    pub(super) fn save_now(&self) {
        self.cancel_pending();
        self.save();
    }

    /// Re-reads storage if another tab wrote, then writes what changed.
    pub(super) fn save(&self) {
        let named = std::mem::take(&mut *self.reload_named.borrow_mut());
        if self.reload_due.replace(false) {
            self.reload();
        } else if !named.is_empty() {
            let named: Vec<String> = named.into_iter().collect();
            if let Ok(reports) = self.manager.reload_named(&named) {
                self.writer.load_reports(&reports);
            }
            self.update_quota();
        }
        if let Ok(reports) = self.manager.flush() {
            self.writer.persist_reports(&reports);
            if reports.iter().any(|r| !r.written.is_empty()) {
                self.update_quota();
            }
        }
    }

    /// Storage events come one per key written: a burst re-reads the keys
    /// it named, each once, in the next save.
    pub(super) fn reload_soon_named(&self, storage_key: String) {
        self.reload_named.borrow_mut().insert(storage_key);
        self.schedule();
    }

    /// Re-reads everything stored in the next save (another tab cleared
    /// storage).
    pub(super) fn reload_soon(&self) {
        self.reload_due.set(true);
        self.schedule();
    }

    pub(super) fn reload(&self) {
        if let Ok(reports) = self.manager.reload() {
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
