//! Seeded replica simulator.
//!
//! Each case runs 2 to 8 replicas (tabs) with skewed clocks that write to
//! one key per strategy (single writes and batches) and exchange ops, as
//! encoded text, through a bus that reorders, duplicates, delays and drops.
//! Replicas also ask for anti-entropy mid-run, revert their last write
//! (optimistic rollback) and sometimes reload from their storage. After the
//! random phase every message still in flight is delivered, then a full
//! state exchange runs (anti-entropy: replica 0 gathers every state, then
//! every replica fetches replica 0's; no drops).
//! Then, for every case:
//!
//! - every replica's serialized state is byte-equal;
//! - every replica reads the same values and the same conflicts;
//! - the sum key equals the sum of every increment ever accepted
//!   (0 lost, 0 double);
//! - no legitimate message was ever refused.
//!
//! `SIM_SEED=n` runs one seed; `SIM_SEEDS=a..b` runs a range. A failure
//! prints its seed.

// Test and bench code: a panic here is a failed test, and clippy.toml's
// allow-unwrap-in-tests does not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ops::Range;

use gaesup_state_core::{
    Error, Lifetime, ManualClock, MemoryStorage, Message, SYNC_ANSWER_INTERVAL_MS, Scope,
    SharedKey, Store, Strategy, TabId, UnitAddress, Write,
};

const DEFAULT_SEEDS: Range<u64> = 0..2000;

/// splitmix64: tiny, seedable, good enough to shuffle a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn range_i64(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }
}

type Cart = BTreeMap<String, i64>;

struct Keys {
    lww: SharedKey<i64>,
    fww: SharedKey<i64>,
    merge: SharedKey<Cart>,
    sum: SharedKey<i64>,
    resolve: SharedKey<i64>,
}

impl Keys {
    fn new() -> Self {
        fn key<T>(name: &str, strategy: Strategy) -> SharedKey<T>
        where
            T: serde::Serialize + serde::de::DeserializeOwned + Default + 'static,
        {
            SharedKey::<T>::builder(name)
                .scope(Scope::Apartment)
                .lifetime(Lifetime::Ephemeral)
                .strategy(strategy)
                .build()
                .unwrap()
        }
        Self {
            lww: key("lww", Strategy::LastWriteWins),
            fww: key("fww", Strategy::FirstWriteWins),
            merge: key("merge", Strategy::Merge),
            sum: key("sum", Strategy::Sum),
            resolve: key("resolve", Strategy::UserResolve),
        }
    }

    fn declare(&self, store: &mut Store) {
        store.declare(&self.lww).unwrap();
        store.declare(&self.fww).unwrap();
        store.declare(&self.merge).unwrap();
        store.declare(&self.sum).unwrap();
        store.declare(&self.resolve).unwrap();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lww,
    Merge,
    Sum,
    Resolve,
}

struct Replica {
    /// The last write made here, for an optimistic rollback.
    last: Option<(Kind, UnitAddress, Write)>,
    tab: TabId,
    clock: ManualClock,
    store: Store,
    storage: MemoryStorage,
}

struct InFlight {
    to: usize,
    text: String,
    /// Step before which the message is not delivered (delay).
    due: u64,
}

#[derive(Default)]
struct Stats {
    sent: u64,
    delivered: u64,
    dropped: u64,
    duplicated: u64,
    reverted: u64,
    reloaded: u64,
}

struct Sim {
    rng: Rng,
    keys: Keys,
    replicas: Vec<Replica>,
    units: Vec<UnitAddress>,
    bus: Vec<InFlight>,
    step: u64,
    expected_sum: i64,
    stats: Stats,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let keys = Keys::new();
        let count = 2 + rng.below(7) as usize;
        let base = 1_700_000_000_000u64;
        let replicas = (0..count)
            .map(|i| {
                // Distinct by construction, random-looking like real ids.
                let tab = TabId::new(((i as u64 + 1) << 48) | (rng.next() >> 16));
                // Clocks skewed by up to ±3 s.
                let clock = ManualClock::new(base + rng.below(6_000) - 3_000);
                let mut store = Store::new(tab, clock.clone());
                keys.declare(&mut store);
                Replica {
                    last: None,
                    tab,
                    clock,
                    store,
                    storage: MemoryStorage::new(),
                }
            })
            .collect();
        let units = ["apt/b0/u0", "apt/b0/u1", "apt/b1/u2", "apt/b2/u3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        Self {
            rng,
            keys,
            replicas,
            units,
            bus: Vec::new(),
            step: 0,
            expected_sum: 0,
            stats: Stats::default(),
        }
    }

    /// Queues `message` from replica `from` to `targets`, with faults when
    /// `lossy`.
    fn post(&mut self, from: usize, targets: &[usize], message: &Message, lossy: bool) {
        let text = message.encode().unwrap();
        for &to in targets {
            if to == from {
                continue;
            }
            self.stats.sent += 1;
            if lossy && self.rng.percent(10) {
                self.stats.dropped += 1;
                continue;
            }
            let copies = if self.rng.percent(10) { 2 } else { 1 };
            self.stats.duplicated += copies - 1;
            for _ in 0..copies {
                let due = self.step.saturating_add(self.rng.below(6));
                self.bus.push(InFlight {
                    to,
                    text: text.clone(),
                    due,
                });
            }
        }
    }

    fn broadcast(&mut self, from: usize, message: &Message) {
        let everyone: Vec<usize> = (0..self.replicas.len()).collect();
        self.post(from, &everyone, message, true);
    }

    /// Delivers one random in-flight message whose delay has passed.
    fn deliver_one(&mut self, ignore_delay: bool) -> Result<bool, String> {
        let ready: Vec<usize> = (0..self.bus.len())
            .filter(|&i| ignore_delay || self.bus[i].due <= self.step)
            .collect();
        if ready.is_empty() {
            return Ok(false);
        }
        let pick = ready[self.rng.below(ready.len() as u64) as usize];
        let message = self.bus.swap_remove(pick);
        self.stats.delivered += 1;
        let inbound = self.replicas[message.to].store.receive_text(&message.text);
        if let Some(err) = inbound.errors.first() {
            return Err(format!(
                "replica {} refused a legitimate message: {err}\n{}",
                message.to, message.text
            ));
        }
        // Replies (answers and push-backs) go to the tab they name.
        for reply in inbound.replies {
            let to = match &reply {
                Message::SyncState { to: Some(to), .. } => {
                    self.replicas.iter().position(|r| r.tab == *to)
                }
                _ => None,
            };
            if let Some(to) = to {
                let lossy = !ignore_delay;
                self.post(message.to, &[to], &reply, lossy);
            }
        }
        Ok(true)
    }

    fn write(&mut self, r: usize) -> Result<(), String> {
        let unit = self.units[self.rng.below(self.units.len() as u64) as usize].clone();
        let value = self.rng.range_i64(-3, 9);
        let keys = &self.keys;
        let Replica { store, last, .. } = &mut self.replicas[r];
        let mut remember = |kind: Kind, write: Write| {
            *last = Some((kind, unit.clone(), write.clone()));
            write.message
        };
        let message = match self.rng.below(6) {
            0 => store
                .set(&unit, &keys.lww, value)
                .map(|w| remember(Kind::Lww, w)),
            1 => match store.set(&unit, &keys.fww, value) {
                Err(Error::FirstWriteWins { .. }) => return Ok(()),
                other => other.map(|w| w.message),
            },
            2 => {
                let mut cart = store.get(&unit, &keys.merge).map_err(|e| e.to_string())?;
                let field = format!("f{}", self.rng.below(4));
                if self.rng.percent(25) {
                    cart.remove(&field);
                } else {
                    cart.insert(field, value);
                }
                store
                    .set(&unit, &keys.merge, cart)
                    .map(|w| remember(Kind::Merge, w))
            }
            3 => {
                let delta = self.rng.range_i64(-5, 5);
                let write = store.increment(&unit, &keys.sum, delta);
                if write.is_ok() {
                    self.expected_sum += delta;
                }
                write.map(|w| remember(Kind::Sum, w))
            }
            4 => store
                .set(&unit, &keys.resolve, value)
                .map(|w| remember(Kind::Resolve, w)),
            _ => {
                let delta = self.rng.range_i64(-5, 5);
                let other = self.rng.range_i64(0, 9);
                let batch = store.batch(|b| {
                    b.increment(&unit, &keys.sum, delta)?;
                    b.set(&unit, &keys.lww, other)?;
                    b.increment(&unit, &keys.sum, 1)?;
                    b.resolve(&unit, &keys.resolve, other)
                });
                if batch.is_ok() {
                    self.expected_sum += delta + 1;
                }
                batch.map(|b| b.message)
            }
        }
        .map_err(|err| format!("local write on replica {r} failed: {err}"))?;
        if let Some(message) = message {
            self.broadcast(r, &message);
        }
        Ok(())
    }

    /// Reverts the replica's last remembered write (an optimistic update
    /// rolled back).
    fn revert(&mut self, r: usize) -> Result<(), String> {
        let Some((kind, unit, write)) = self.replicas[r].last.take() else {
            return Ok(());
        };
        let keys = &self.keys;
        let store = &mut self.replicas[r].store;
        let reverted = match kind {
            Kind::Lww => store.revert(&unit, &keys.lww, &write),
            Kind::Merge => store.revert(&unit, &keys.merge, &write),
            Kind::Sum => store.revert(&unit, &keys.sum, &write),
            Kind::Resolve => store.revert(&unit, &keys.resolve, &write),
        }
        .map_err(|err| format!("revert on replica {r} failed: {err}"))?;
        if let Some(reverted) = reverted {
            self.stats.reverted += 1;
            if kind == Kind::Sum
                && let Some(change) = &reverted.change
            {
                let delta = change.new.as_i64().unwrap() - change.old.as_i64().unwrap();
                self.expected_sum += delta;
            }
            if let Some(message) = &reverted.message {
                self.broadcast(r, message);
            }
        }
        Ok(())
    }

    /// Persists, then replaces the store by a fresh one that loads from
    /// storage (same tab id: a reload that kept its session).
    fn reload(&mut self, r: usize) -> Result<(), String> {
        let replica = &mut self.replicas[r];
        let report = replica
            .store
            .persist(Lifetime::Ephemeral, &mut replica.storage);
        if !report.failed.is_empty() || !report.quarantined.is_empty() {
            return Err(format!(
                "persist on replica {r} failed: {:?}",
                report.failed
            ));
        }
        let mut store = Store::new(replica.tab, replica.clock.clone());
        self.keys.declare(&mut store);
        let report = store
            .load(Lifetime::Ephemeral, &mut replica.storage)
            .map_err(|e| e.to_string())?;
        if !report.failed.is_empty() || !report.quarantined.is_empty() {
            return Err(format!("load on replica {r} failed: {report:?}"));
        }
        if serde_json::to_string(store.states()).ok()
            != serde_json::to_string(replica.store.states()).ok()
        {
            return Err(format!("replica {r} reloaded a different state"));
        }
        replica.store = store;
        self.stats.reloaded += 1;
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        let steps = 15 + self.rng.below(45);
        for step in 0..steps {
            self.step = step;
            for replica in &self.replicas {
                replica.clock.advance(self.rng.below(3));
            }
            let r = self.rng.below(self.replicas.len() as u64) as usize;
            match self.rng.below(100) {
                0..=49 => self.write(r)?,
                50..=86 => {
                    for _ in 0..1 + self.rng.below(3) {
                        self.deliver_one(false)?;
                    }
                }
                87..=89 => {
                    let request = self.replicas[r].store.sync_request();
                    self.broadcast(r, &request);
                }
                90..=92 => self.reload(r)?,
                93..=96 => self.revert(r)?,
                _ => {
                    // A tab's clock jumps (sleep, NTP correction).
                    let jump = self.rng.below(2_000);
                    self.replicas[r].clock.advance(jump);
                }
            }
        }
        // Quiescence: everything still in flight arrives (no more drops).
        self.step = u64::MAX;
        while self.deliver_one(true)? {}
        // Anti-entropy, as a newly opened tab does it: replica 0 asks
        // everyone for their full state, then everyone asks replica 0
        // (which by then holds the union). Duplicates and reordering still
        // apply; drops do not.
        let everyone: Vec<usize> = (0..self.replicas.len()).collect();
        self.let_answers_through();
        let request = self.replicas[0].store.sync_request();
        self.post(0, &everyone, &request, false);
        while self.deliver_one(true)? {}
        self.let_answers_through();
        for r in 1..self.replicas.len() {
            let request = self.replicas[r].store.sync_request();
            self.post(r, &[0], &request, false);
        }
        while self.deliver_one(true)? {}
        self.check()
    }

    /// Lets time pass past the sync-answer throttle, so every request of
    /// the final exchange is answered.
    fn let_answers_through(&mut self) {
        for replica in &self.replicas {
            replica.clock.advance(SYNC_ANSWER_INTERVAL_MS);
        }
    }

    fn check(&self) -> Result<(), String> {
        let first = &self.replicas[0].store;
        let reference = serde_json::to_string(first.states()).map_err(|e| e.to_string())?;
        let unit = &self.units[0];
        let keys = &self.keys;
        for (i, replica) in self.replicas.iter().enumerate() {
            let store = &replica.store;
            let state = serde_json::to_string(store.states()).map_err(|e| e.to_string())?;
            if state != reference {
                return Err(format!(
                    "replica {i} diverged:\n  replica 0: {reference}\n  replica {i}: {state}"
                ));
            }
            let sum = store.get(unit, &keys.sum).map_err(|e| e.to_string())?;
            if sum != self.expected_sum {
                return Err(format!(
                    "replica {i}: sum {sum}, expected {} (increments lost or doubled)",
                    self.expected_sum
                ));
            }
            let read = |s: &Store| {
                (
                    s.get(unit, &keys.lww).ok(),
                    s.get(unit, &keys.fww).ok(),
                    s.get(unit, &keys.merge).ok(),
                    s.get(unit, &keys.resolve).ok(),
                    s.conflicts(unit, &keys.resolve).ok(),
                )
            };
            if read(store) != read(first) {
                return Err(format!("replica {i} reads different values"));
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut sim = Sim::new(seed);
    sim.run()?;
    Ok(sim.stats)
}

fn seeds(default: Range<u64>) -> Range<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed: u64 = seed.parse().expect("SIM_SEED must be a number");
        return seed..seed + 1;
    }
    if let Ok(range) = std::env::var("SIM_SEEDS") {
        let (a, b) = range.split_once("..").expect("SIM_SEEDS looks like 0..500");
        return a.parse().expect("range start")..b.parse().expect("range end");
    }
    default
}

fn run_seeds(seeds: Range<u64>) {
    let mut totals = Stats::default();
    let count = seeds.end.saturating_sub(seeds.start);
    for seed in seeds {
        match run_seed(seed) {
            Ok(stats) => {
                totals.sent += stats.sent;
                totals.delivered += stats.delivered;
                totals.dropped += stats.dropped;
                totals.duplicated += stats.duplicated;
                totals.reverted += stats.reverted;
                totals.reloaded += stats.reloaded;
            }
            Err(why) => panic!("simulator seed {seed} failed (rerun: SIM_SEED={seed}): {why}"),
        }
    }
    println!(
        "{count} cases: {} messages sent, {} delivered, {} dropped, {} duplicated; \
         {} writes reverted, {} reloads",
        totals.sent,
        totals.delivered,
        totals.dropped,
        totals.duplicated,
        totals.reverted,
        totals.reloaded
    );
}

// Two halves so the default run uses both cores.
#[test]
fn replicas_converge_first_half() {
    let all = seeds(DEFAULT_SEEDS);
    let mid = all.start + (all.end - all.start) / 2;
    run_seeds(all.start..mid);
}

#[test]
fn replicas_converge_second_half() {
    let all = seeds(DEFAULT_SEEDS);
    let mid = all.start + (all.end - all.start) / 2;
    run_seeds(mid..all.end);
}
