//! Anti-entropy between tabs: a new or re-awakened tab says what it holds
//! (a digest per key), others answer with only what differs and say what
//! they hold, and the asking tab sends back what they lacked. One round
//! trip and one push-back; an up-to-date tab's request gets no answer at
//! all, and one tab's requests are answered at most once per
//! [`SYNC_ANSWER_INTERVAL_MS`].

use super::Replica;
use crate::id::{ApartmentId, TabId};
use crate::limits::{
    FNV_OFFSET, MAX_MESSAGE_BYTES, MAX_SYNC_STATES, encoded_len, split_by_len, text_hash,
};
use crate::message::{Digest, Have, Message, SyncEntry};
use crate::scope::{FullKey, Lifetime};
use crate::strategy::KeyState;
use crate::vec_map::VecMap;

/// A tab's sync requests are answered at most this often (ms); a tab that
/// asks in a loop costs each other tab one answer per interval.
pub const SYNC_ANSWER_INTERVAL_MS: u64 = 1_000;

/// How many tabs' last answers are remembered for the throttle.
const ANSWERED_MEMORY: usize = 64;

/// 64-bit FNV-1a: stable across builds and platforms (the standard
/// library's hashers are not), and enough to tell states apart.
fn digest_of(schema: u32, state: &KeyState) -> u64 {
    // A state that does not serialize hashes as empty text.
    text_hash(&(schema, state)).unwrap_or(FNV_OFFSET)
}

impl Replica {
    /// The keys this replica shares with a tab of `apartment` (`None`:
    /// any), with their states: its own apartment's keys when the other
    /// tab serves the same one, and global keys.
    fn syncing<'s>(
        &'s self,
        apartment: Option<&'s ApartmentId>,
    ) -> impl Iterator<Item = (&'s FullKey, u32, &'s KeyState)> + 's {
        self.states.iter().filter_map(move |(key, state)| {
            let spec = self.spec_for(key).ok()?;
            let shared = match (apartment, key.apartment()) {
                (Some(theirs), Some(ours)) => theirs.as_str() == ours,
                _ => true,
            };
            (spec.lifetime() != Lifetime::Memory && !self.is_foreign(key) && shared)
                .then(|| (key, spec.schema().version(), state))
        })
    }

    /// What this replica holds of the keys it shares with a tab of
    /// `apartment`.
    fn have(&self, apartment: Option<&ApartmentId>) -> Have {
        Have {
            apartment: self.apartment.clone(),
            digests: self
                .syncing(apartment)
                .map(|(key, schema, state)| Digest {
                    key: key.clone(),
                    hash: digest_of(schema, state),
                })
                .collect(),
        }
    }

    /// A digest of every key this replica shares.
    pub fn digests(&self) -> Vec<Digest> {
        self.have(None).digests
    }

    /// The message a new or re-awakened tab sends to ask for what it
    /// missed: every tab answers with what differs.
    pub fn sync_request(&self) -> Message {
        Message::SyncRequest {
            from: self.tab,
            to: None,
            have: listed(self.have(None)),
        }
    }

    /// Answers `from`'s request: the states whose digest differs from (or
    /// is missing in) `have`, and this replica's digests if anything
    /// differs in either direction. Nothing at all when both hold the
    /// same, or when `from` was answered less than
    /// [`SYNC_ANSWER_INTERVAL_MS`] ago.
    pub(super) fn answer(&mut self, from: TabId, have: &Have) -> Vec<Message> {
        let now = self.now();
        if self
            .answered
            .get(&from)
            .is_some_and(|last| now.saturating_sub(*last) < SYNC_ANSWER_INTERVAL_MS)
        {
            return Vec::new();
        }
        // Only keys both sides share count: global ones, and this
        // apartment's when the asker serves it too.
        // A repeated key keeps its last digest, in any order (sorted once).
        let theirs: VecMap<&FullKey, u64> = have
            .digests
            .iter()
            .filter(|d| !self.is_foreign(&d.key))
            .map(|digest| (&digest.key, digest.hash))
            .collect();
        let asker = have.apartment.as_ref();
        let mine = self.have(asker);
        let mut differs = mine.digests.len() != theirs.len();
        let mut states = Vec::new();
        for (digest, (key, schema, state)) in mine.digests.iter().zip(self.syncing(asker)) {
            if theirs.get(key) != Some(&digest.hash) {
                differs = true;
                states.push(entry((key, schema, state)));
            }
        }
        if !differs {
            return Vec::new();
        }
        if self.answered.len() >= ANSWERED_MEMORY {
            let oldest = self
                .answered
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.answered.remove(&oldest);
            }
        }
        self.answered.insert(from, now);
        self.chunk(states, Some(from), Some(listed(mine)))
    }

    /// After merging an answer from `to`: the states `to` lacks or holds
    /// differently (by its digests), sent back without digests so the
    /// exchange ends here.
    pub(super) fn push_back(&self, to: TabId, theirs: &Have) -> Vec<Message> {
        let digests: VecMap<&FullKey, u64> = theirs
            .digests
            .iter()
            .map(|digest| (&digest.key, digest.hash))
            .collect();
        let states: Vec<SyncEntry> = self
            .syncing(theirs.apartment.as_ref())
            .filter(|(key, schema, state)| digests.get(key) != Some(&digest_of(*schema, state)))
            .map(entry)
            .collect();
        if states.is_empty() {
            return Vec::new();
        }
        self.chunk(states, Some(to), None)
    }

    /// This replica's full state of every syncing key, split into messages
    /// that each fit [`MAX_MESSAGE_BYTES`] (every state does: states stay
    /// under [`MAX_STATE_BYTES`](crate::MAX_STATE_BYTES)).
    pub fn sync_messages(&self) -> Vec<Message> {
        let states: Vec<SyncEntry> = self.syncing(None).map(entry).collect();
        if states.is_empty() {
            return Vec::new();
        }
        self.chunk(states, None, None)
    }

    /// Splits states into messages under the size and count limits. The
    /// digests ride on the first message.
    fn chunk(&self, states: Vec<SyncEntry>, to: Option<TabId>, have: Option<Have>) -> Vec<Message> {
        // Room for the envelope (and the digests) around the entries.
        let envelope = 1024
            + have
                .as_ref()
                .map_or(0, |h| encoded_len(h, MAX_MESSAGE_BYTES));
        let budget = MAX_MESSAGE_BYTES.saturating_sub(envelope);
        let sized = states.into_iter().map(|entry| {
            let len = encoded_len(&entry, budget);
            (entry, len)
        });
        let mut chunks = split_by_len(sized, budget, MAX_SYNC_STATES);
        if chunks.is_empty() && have.is_some() {
            chunks.push(Vec::new());
        }
        let mut have = have;
        chunks
            .into_iter()
            .map(|states| Message::SyncState {
                from: self.tab,
                to,
                states,
                have: have.take(),
            })
            .collect()
    }
}

/// `have` as a message carries it: at most [`MAX_SYNC_STATES`] digests,
/// the most every tab takes. A tab holding more keys lists the first ones;
/// the other side counts the rest as missing and sends its states of them,
/// or asks for them in turn, so both still end up with everything, at the
/// cost of sending some states that were already there.
fn listed(mut have: Have) -> Have {
    have.digests.truncate(MAX_SYNC_STATES);
    have
}

/// A syncing key's state (from [`Replica::syncing`]) as it travels.
fn entry((key, schema, state): (&FullKey, u32, &KeyState)) -> SyncEntry {
    SyncEntry {
        key: key.clone(),
        schema,
        state: state.clone(),
    }
}
