//! A socket's send queue: what waits to be written to one device, bounded
//! by messages and by bytes.
//!
//! A count alone bounds little: a message may be as large as a frame
//! (1 MiB), so a device that never reads could hold `--send-queue` frames
//! of the relay's memory, and a few dozen such devices following a busy
//! apartment, gigabytes. Each queued message holds its length of the
//! queue's byte budget (`--send-queue-bytes`) until it is written or
//! dropped: the permit travels with it, so what was written is released
//! whatever path it took. A message that finds no room, by count or by
//! bytes, is refused, and the hub cuts the device off as too slow (it
//! resyncs from its cursor). One message larger than the whole budget
//! still goes, alone.
//!
//! Messages are queued encoded: a fan-out encodes each message once and
//! every socket it goes to holds the same text ([`Utf8Bytes`] clones
//! share it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use gaesup_protocol::ServerMessage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// A message waiting to be written.
pub struct Queued {
    /// The message, encoded.
    pub text: Utf8Bytes,
    /// Whether it is an error (errors still go when a socket closes
    /// after a catch-up was cut short; nothing else does).
    pub error: bool,
    /// Its place in the order messages were queued (see [`Cut`]).
    position: u64,
    /// Its bytes of the budget, given back when it is dropped.
    _bytes: OwnedSemaphorePermit,
}

/// Where a fan-out to the socket was cut short, if it was: messages
/// queued from then on come after a gap in what the device was sent.
#[derive(Clone)]
pub struct Cut {
    /// The position of the next message to be queued.
    next: Arc<AtomicU64>,
    /// The first position after the gap (`u64::MAX`: no gap).
    at: Arc<AtomicU64>,
}

impl Cut {
    /// A fan-out to the socket was cut short now: everything queued from
    /// now on follows the gap.
    pub fn mark(&self) {
        self.at
            .fetch_min(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Whether `queued` was queued after a cut (only errors may still be
    /// written then: an ack or a pong would tell the device it caught
    /// up). What was queued before it precedes the gap, and goes.
    pub fn follows(&self, queued: &Queued) -> bool {
        queued.position >= self.at.load(Ordering::SeqCst)
    }

    /// Whether a fan-out was cut short at all.
    pub fn is_marked(&self) -> bool {
        self.at.load(Ordering::SeqCst) != u64::MAX
    }
}

/// The queue had no room (by count or by bytes), or its socket is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// The sending side of a socket's queue (cheap to clone).
#[derive(Clone)]
pub struct SendQueue {
    messages: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    budget: u32,
    cut: Cut,
}

impl SendQueue {
    /// A queue of at most `messages` messages holding at most `bytes`
    /// bytes between them (one larger message goes alone), and its
    /// receiving side.
    pub fn new(messages: usize, bytes: usize) -> (Self, mpsc::Receiver<Queued>) {
        let budget = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        let (messages, receiver) = mpsc::channel(messages.max(1));
        let queue = Self {
            messages,
            bytes: Arc::new(Semaphore::new(
                usize::try_from(budget).unwrap_or(Semaphore::MAX_PERMITS),
            )),
            budget,
            cut: Cut {
                next: Arc::new(AtomicU64::new(0)),
                at: Arc::new(AtomicU64::new(u64::MAX)),
            },
        };
        (queue, receiver)
    }

    /// Where a fan-out to this queue's socket was cut short.
    pub fn cut(&self) -> &Cut {
        &self.cut
    }

    /// The next position, taken once a message has its room.
    fn position(&self) -> u64 {
        self.cut.next.fetch_add(1, Ordering::SeqCst)
    }

    /// What `text` takes of the budget: its length, or all of it.
    fn cost(&self, text: &Utf8Bytes) -> u32 {
        u32::try_from(text.len())
            .unwrap_or(u32::MAX)
            .min(self.budget)
    }

    /// Queues encoded text if there is room now.
    pub fn try_send_text(&self, text: Utf8Bytes, error: bool) -> Result<(), Full> {
        let slot = self.messages.try_reserve().map_err(|_| Full)?;
        let bytes = Arc::clone(&self.bytes)
            .try_acquire_many_owned(self.cost(&text))
            .map_err(|_| Full)?;
        slot.send(Queued {
            text,
            error,
            position: self.position(),
            _bytes: bytes,
        });
        Ok(())
    }

    /// Queues `message` if there is room now. A message that does not
    /// encode is not sent (and is no fault of the device's).
    pub fn try_send(&self, message: &ServerMessage) -> Result<(), Full> {
        match encode(message) {
            Some(text) => self.try_send_text(text, is_error(message)),
            None => Ok(()),
        }
    }

    /// Queues `message`, waiting for room (bound it with a timeout).
    pub async fn send(&self, message: &ServerMessage) -> Result<(), Full> {
        let Some(text) = encode(message) else {
            return Ok(());
        };
        let slot = self.messages.reserve().await.map_err(|_| Full)?;
        let bytes = Arc::clone(&self.bytes)
            .acquire_many_owned(self.cost(&text))
            .await
            .map_err(|_| Full)?;
        slot.send(Queued {
            text,
            error: is_error(message),
            position: self.position(),
            _bytes: bytes,
        });
        Ok(())
    }
}

/// `message` as the text of a frame (`None` if it does not encode).
pub fn encode(message: &ServerMessage) -> Option<Utf8Bytes> {
    match message.encode() {
        Ok(text) => Some(Utf8Bytes::from(text)),
        Err(error) => {
            tracing::warn!(code = error.code, "a message did not encode");
            None
        }
    }
}

fn is_error(message: &ServerMessage) -> bool {
    matches!(message, ServerMessage::Error(_))
}

#[cfg(test)]
mod tests {
    use gaesup_protocol::{Ping, code};

    use super::*;

    fn text(len: usize) -> Utf8Bytes {
        Utf8Bytes::from("x".repeat(len))
    }

    #[test]
    fn a_queue_is_full_once_its_bytes_would_pass_the_budget_whatever_its_count() {
        let (queue, _receiver) = SendQueue::new(100, 1000);
        queue.try_send_text(text(600), false).unwrap();
        assert_eq!(queue.try_send_text(text(600), false), Err(Full));
        queue.try_send_text(text(400), false).unwrap();
        assert_eq!(queue.try_send_text(text(1), false), Err(Full));
    }

    #[test]
    fn a_queue_is_full_at_its_count_whatever_its_bytes() {
        let (queue, _receiver) = SendQueue::new(2, 1 << 20);
        queue.try_send_text(text(1), false).unwrap();
        queue.try_send_text(text(1), false).unwrap();
        assert_eq!(queue.try_send_text(text(1), false), Err(Full));
    }

    #[test]
    fn bytes_come_back_when_a_message_is_taken_and_dropped() {
        let (queue, mut receiver) = SendQueue::new(100, 1000);
        queue.try_send_text(text(900), false).unwrap();
        assert_eq!(queue.try_send_text(text(200), false), Err(Full));
        let taken = receiver.try_recv().unwrap();
        // Taken but not yet written: still held.
        assert_eq!(queue.try_send_text(text(200), false), Err(Full));
        drop(taken);
        queue.try_send_text(text(200), false).unwrap();
    }

    #[test]
    fn a_message_larger_than_the_budget_goes_alone() {
        let (queue, mut receiver) = SendQueue::new(100, 1000);
        queue.try_send_text(text(5000), false).unwrap();
        assert_eq!(queue.try_send_text(text(1), false), Err(Full));
        drop(receiver.try_recv().unwrap());
        queue.try_send_text(text(1), false).unwrap();
        assert_eq!(queue.try_send_text(text(5000), false), Err(Full));
    }

    #[tokio::test]
    async fn what_was_queued_before_a_cut_goes_and_what_came_after_does_not() {
        let (queue, mut receiver) = SendQueue::new(100, 1000);
        queue.try_send_text(text(10), false).unwrap();
        // An ack waiting for room when the cut comes is queued after it.
        queue.try_send_text(text(985), false).unwrap();
        let ack = ServerMessage::Ping(Ping { at: 1 });
        let mut waiting = Box::pin(queue.send(&ack));
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        assert!(!queue.cut().is_marked());
        queue.cut().mark();
        let cut = queue.cut().clone();
        let before = [receiver.try_recv().unwrap(), receiver.try_recv().unwrap()];
        assert!(before.iter().all(|queued| !cut.follows(queued)));
        drop(before);
        waiting.await.unwrap();
        assert!(cut.follows(&receiver.try_recv().unwrap()));
        // A second cut moves nothing back.
        queue.cut().mark();
        queue.try_send_text(text(1), false).unwrap();
        assert!(cut.follows(&receiver.try_recv().unwrap()));
    }

    #[test]
    fn a_queue_whose_socket_is_gone_takes_nothing() {
        let (queue, receiver) = SendQueue::new(100, 1000);
        drop(receiver);
        assert_eq!(queue.try_send_text(text(1), false), Err(Full));
    }

    #[tokio::test]
    async fn a_waiting_send_goes_once_bytes_are_given_back() {
        let (queue, mut receiver) = SendQueue::new(100, 1000);
        queue.try_send_text(text(990), false).unwrap();
        let ping = ServerMessage::Ping(Ping { at: 1 });
        let mut waiting = Box::pin(queue.send(&ping));
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        drop(receiver.try_recv().unwrap());
        waiting.await.unwrap();
        let queued = receiver.try_recv().unwrap();
        assert!(!queued.error);
        let error = ServerMessage::Error(gaesup_protocol::ErrorBody {
            code: code::SLOW_CONSUMER.to_owned(),
            message: String::new(),
        });
        queue.try_send(&error).unwrap();
        assert!(receiver.try_recv().unwrap().error);
    }
}
