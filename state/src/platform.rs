//! Time and tab identity from the platform the app runs on.

use gaesup_state_core::{Clock, TabId};

/// Wall-clock time: `Date.now()` in the browser, the system clock natively.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> u64 {
    // Date.now() is a non-negative integer of milliseconds well inside
    // f64's exact range, so the cast loses nothing.
    js_sys::Date::now() as u64
}

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh random tab id. Two tabs picking the same id would treat each
/// other's ops as their own, so 64 random bits are used.
#[cfg(target_arch = "wasm32")]
pub fn random_tab_id() -> TabId {
    // Math.random() gives at least 32 good bits per call in every engine.
    let half = || (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    TabId::new((half() << 32) | half())
}

/// A fresh tab id from the time and the process (native builds and tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn random_tab_id() -> TabId {
    use std::hash::{BuildHasher, RandomState};
    TabId::new(RandomState::new().hash_one(now_ms()))
}
