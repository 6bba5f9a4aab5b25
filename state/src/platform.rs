//! Time and tab identity from the platform the app runs on.

use gaesup_state_core::{Clock, TabId};

/// Wall-clock time: `Date.now()` in the browser, the system clock natively.
///
/// In the browser a read is a call out to JavaScript, which cost a quarter
/// of a whole write of the core (`cargo xtask bench`, "where a write
/// goes"); so one reading serves the rest of the current task, for at most
/// 64 reads, and a queued microtask forgets it when the
/// task ends. Time then stands still within a burst of writes (the hybrid
/// logical clock's counter orders them), never across tasks: a write after
/// an idle moment reads the clock afresh.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// How many reads one reading of the browser's clock serves at most, in
/// one task: time stands still for no longer than that many writes take
/// (tens of microseconds).
const READS_PER_READING: u8 = 64;

/// One reading of a clock kept for the rest of a task (see
/// [`SystemClock`]): the platform-free part, tested natively.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct TaskReading {
    /// The reading, while the task that made it runs.
    time: Option<u64>,
    /// Reads it has served.
    reads: u8,
    /// A microtask to forget the reading is queued.
    queued: bool,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl TaskReading {
    /// The time: the kept reading, or a `fresh` one kept only once a
    /// microtask to forget it is queued (`queue` says whether it could be:
    /// with none queued, nothing is kept, and every read is fresh).
    fn read(&mut self, fresh: impl FnOnce() -> u64, queue: impl FnOnce() -> bool) -> u64 {
        if let Some(time) = self.time
            && self.reads < READS_PER_READING
        {
            self.reads += 1;
            return time;
        }
        let time = fresh();
        if !self.queued {
            self.queued = queue();
        }
        self.time = self.queued.then_some(time);
        self.reads = 1;
        time
    }

    /// The task ended: the next read is fresh.
    fn forget(&mut self) {
        *self = Self::default();
    }
}

#[cfg(target_arch = "wasm32")]
mod browser {
    use std::cell::{Cell, OnceCell};

    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;

    use super::TaskReading;

    #[wasm_bindgen]
    unsafe extern "C" {
        /// The global `queueMicrotask` (windows and workers alike).
        #[wasm_bindgen(catch, js_name = queueMicrotask)]
        fn queue_microtask(callback: &js_sys::Function) -> Result<(), JsValue>;
    }

    thread_local! {
        static READING: Cell<TaskReading> = Cell::new(TaskReading::default());
        /// The microtask that forgets the reading, made once.
        static FORGET: OnceCell<js_sys::Function> = const { OnceCell::new() };
    }

    fn forget() {
        READING.with(|reading| {
            let mut kept = reading.get();
            kept.forget();
            reading.set(kept);
        });
    }

    fn queue_forget() -> bool {
        FORGET.with(|callback| {
            let callback = callback.get_or_init(|| {
                Closure::<dyn FnMut()>::new(forget)
                    .into_js_value()
                    .unchecked_into()
            });
            queue_microtask(callback).is_ok()
        })
    }

    pub(super) fn now_ms() -> u64 {
        READING.with(|reading| {
            let mut kept = reading.get();
            // Date.now() is a non-negative integer of milliseconds well
            // inside f64's exact range, so the cast loses nothing.
            let time = kept.read(|| js_sys::Date::now() as u64, queue_forget);
            reading.set(kept);
            time
        })
    }
}

#[cfg(target_arch = "wasm32")]
use browser::now_ms;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_serves_its_task_for_a_bounded_number_of_reads() {
        let mut reading = TaskReading::default();
        let mut clock = 100;
        let mut queued = 0;
        let mut read = |reading: &mut TaskReading, clock: u64| {
            reading.read(
                || clock,
                || {
                    queued += 1;
                    true
                },
            )
        };
        assert_eq!(read(&mut reading, clock), 100);
        clock = 105;
        // The rest of the first reading's reads: time stands still.
        for _ in 1..READS_PER_READING {
            assert_eq!(read(&mut reading, clock), 100);
        }
        // Then a fresh reading, with no second microtask queued.
        assert_eq!(read(&mut reading, clock), 105);
        reading.forget();
        clock = 200;
        assert_eq!(read(&mut reading, clock), 200);
        assert_eq!(queued, 2, "one microtask per task");
    }

    #[test]
    fn without_a_microtask_every_read_is_fresh() {
        let mut reading = TaskReading::default();
        for clock in [1, 2, 3] {
            assert_eq!(reading.read(|| clock, || false), clock);
        }
    }
}
