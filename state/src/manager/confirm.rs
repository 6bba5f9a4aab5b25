//! Server confirmations: a write can wait until a relay has applied it
//! (or refused it). Whatever holds the link to the relay reports acks
//! through [`StateManager::acknowledge`]; writers wait through
//! [`StateManager::confirmation`].

use std::future::Future;

use futures_channel::oneshot;
use gaesup_state_core::{FullKey, Lifetime, OpId};

use super::{LOG_CAPACITY, StateManager};
use crate::error::{Result, StateError};

/// Most writes waiting for a confirmation at once; past it, the oldest
/// waiter is told the write is unconfirmed (it is not rolled back: the
/// relay still receives it, only nobody waits any more).
const MAX_WAITING: usize = 10_000;

/// A relay's word on one write, as an inspector lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAck {
    /// The write.
    pub op: OpId,
    /// Its key, when the tab that received the ack knew it.
    pub key: Option<FullKey>,
    /// What the relay said.
    pub outcome: Confirmation,
}

/// What a relay said about a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// Applied (or applied before: a duplicate).
    Confirmed,
    /// Refused, with the relay's reason; the write should be rolled back.
    Refused(String),
    /// Nobody will say any more (the waiting list overflowed, or the
    /// manager was disposed): neither confirmed nor refused.
    Unknown,
}

impl StateManager {
    /// Says that a relay link will report acks, so writes may wait for
    /// them ([`confirmation`](Self::confirmation) fails otherwise).
    pub fn enable_confirmations(&self) -> Result<()> {
        self.shared()?.confirmations.borrow_mut().enabled = true;
        Ok(())
    }

    /// Whether [`enable_confirmations`](Self::enable_confirmations) was called.
    pub fn confirmations_enabled(&self) -> bool {
        self.shared()
            .is_ok_and(|shared| shared.confirmations.borrow().enabled)
    }

    /// A future that resolves when the relay confirms or refuses `op`, a
    /// write of `key`. Fails at once when no relay link reports acks, or
    /// when `key` is session or memory state (no relay ever sees it).
    pub fn confirmation(
        &self,
        op: OpId,
        key: &FullKey,
    ) -> Result<impl Future<Output = Confirmation> + use<>> {
        let shared = self.shared()?;
        if !shared.confirmations.borrow().enabled {
            return Err(StateError::NoConfirmer);
        }
        let lifetime = shared
            .replica()?
            .spec_for(key)
            .map(|spec| spec.lifetime())
            .ok();
        let lifetime = match lifetime {
            Some(Lifetime::Ephemeral) => Some("session"),
            Some(Lifetime::Memory) => Some("memory"),
            Some(Lifetime::Persistent) | None => None,
        };
        if let Some(lifetime) = lifetime {
            return Err(StateError::NotRelayed {
                key: key.to_string(),
                lifetime,
            });
        }
        let mut confirmations = shared.confirmations.borrow_mut();
        let (sender, receiver) = oneshot::channel();
        if confirmations.waiting.len() >= MAX_WAITING
            && let Some((_, oldest)) = confirmations.waiting.pop_first()
        {
            let _ = oldest.send(Confirmation::Unknown);
        }
        confirmations.waiting.insert(op, sender);
        Ok(async move { receiver.await.unwrap_or(Confirmation::Unknown) })
    }

    /// The relay link reports on `op`, of `key` if known: a write waiting
    /// for it settles, and the ack joins [`relay_acks`](Self::relay_acks).
    pub fn acknowledge(&self, op: OpId, key: Option<FullKey>, outcome: Confirmation) {
        let Ok(shared) = self.shared() else {
            return;
        };
        let waiter = {
            let mut confirmations = shared.confirmations.borrow_mut();
            if confirmations.log.len() == LOG_CAPACITY {
                confirmations.log.pop_front();
            }
            confirmations.log.push_back(RelayAck {
                op,
                key,
                outcome: outcome.clone(),
            });
            confirmations.waiting.remove(&op)
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
        Self::bump(&shared);
    }

    /// The relay's latest acks, oldest first (at most [`LOG_CAPACITY`]).
    pub fn relay_acks(&self) -> Vec<RelayAck> {
        self.shared()
            .map(|shared| shared.confirmations.borrow().log.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The writes waiting for a relay's word.
#[derive(Default)]
pub(super) struct Confirmations {
    enabled: bool,
    log: std::collections::VecDeque<RelayAck>,
    waiting: std::collections::BTreeMap<OpId, oneshot::Sender<Confirmation>>,
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use gaesup_state_core::{ManualClock, TabId};
    use leptos::prelude::Owner;

    use super::*;

    fn poll<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn op(n: u64) -> OpId {
        OpId {
            tab: TabId::new(7),
            seq: n,
        }
    }

    /// A key nobody declared: only a declared key's lifetime can say no
    /// relay sees it.
    fn key() -> FullKey {
        "global/doc".parse().unwrap()
    }

    #[test]
    fn a_write_waits_for_the_relay_s_word() {
        let owner = Owner::new();
        owner.set();
        let manager = StateManager::new(TabId::new(7), ManualClock::new(0));
        assert!(matches!(
            manager.confirmation(op(1), &key()).err(),
            Some(StateError::NoConfirmer)
        ));
        manager.enable_confirmations().unwrap();
        let mut confirmed = pin!(manager.confirmation(op(1), &key()).unwrap());
        let mut refused = pin!(manager.confirmation(op(2), &key()).unwrap());
        assert!(poll(confirmed.as_mut()).is_pending());
        // Acks of writes nobody waits for change nothing.
        manager.acknowledge(op(9), None, Confirmation::Confirmed);
        manager.acknowledge(op(2), None, Confirmation::Refused("forbidden".into()));
        manager.acknowledge(op(1), None, Confirmation::Confirmed);
        assert_eq!(
            poll(confirmed.as_mut()),
            Poll::Ready(Confirmation::Confirmed)
        );
        assert_eq!(
            poll(refused.as_mut()),
            Poll::Ready(Confirmation::Refused("forbidden".into()))
        );
        // Every ack is listed, awaited or not, oldest first.
        let listed: Vec<_> = manager.relay_acks().iter().map(|ack| ack.op).collect();
        assert_eq!(listed, vec![op(9), op(2), op(1)]);
    }

    /// Session and memory state never leaves the device: no relay will
    /// say anything of its writes, so nothing waits for it.
    #[test]
    fn a_write_no_relay_sees_does_not_wait() {
        use gaesup_state_core::{Scope, SharedKey, UnitAddress};
        let owner = Owner::new();
        owner.set();
        let manager = StateManager::new(TabId::new(7), ManualClock::new(0));
        manager.enable_confirmations().unwrap();
        let unit: UnitAddress = "main/b/u".parse().unwrap();
        for (lifetime, said) in [
            (Lifetime::Ephemeral, Some("session")),
            (Lifetime::Memory, Some("memory")),
            (Lifetime::Persistent, None),
        ] {
            let name = format!("{lifetime:?}").to_lowercase();
            let key = SharedKey::<i64>::builder(&name)
                .scope(Scope::Apartment)
                .lifetime(lifetime)
                .build()
                .unwrap();
            manager.declare(&key).unwrap();
            let full = key.full_key(&unit);
            match (manager.confirmation(op(1), &full), said) {
                (Err(StateError::NotRelayed { key, lifetime }), Some(said)) => {
                    assert_eq!((key, lifetime), (full.to_string(), said));
                }
                (Ok(_), None) => {}
                (other, _) => panic!("{name}: {:?}", other.err()),
            }
        }
    }

    #[test]
    fn the_waiting_list_is_bounded() {
        let owner = Owner::new();
        owner.set();
        let manager = StateManager::new(TabId::new(7), ManualClock::new(0));
        manager.enable_confirmations().unwrap();
        let mut oldest = pin!(manager.confirmation(op(0), &key()).unwrap());
        let rest: Vec<_> = (1..MAX_WAITING as u64)
            .map(|n| manager.confirmation(op(n), &key()).unwrap())
            .collect();
        assert!(poll(oldest.as_mut()).is_pending());
        let _newest = manager
            .confirmation(op(MAX_WAITING as u64), &key())
            .unwrap();
        assert_eq!(poll(oldest.as_mut()), Poll::Ready(Confirmation::Unknown));
        drop(rest);
    }
}
