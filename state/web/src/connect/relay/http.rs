//! The HTTP fallback: pushes and long polls, while WebSockets fail.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use gaesup_protocol::{LinkStatus, StreamId};

use super::{Remote, now_ms, wire};

/// Longest long poll on the HTTP fallback (of the apartment's stream;
/// global keys are looked at between two, so they arrive within this).
const PULL_WAIT_MS: u64 = 10_000;
/// How often the HTTP fallback's push loop looks for ops to push when
/// nothing woke it: new ops of this browser wake it at once (see
/// [`Wake`]), so this is only a safety net (a wake-up taken by a loop of
/// an older generation on its way out, say).
const PUSH_EVERY_MS: u32 = 200;
/// Pause after a refused or unreadable answer (a rate limit, a relay in
/// trouble), so a loop never hammers it.
const RETRY_AFTER_MS: u32 = 2_000;
/// While long polls are refused because the node (or this token's subject
/// on it) holds all the connections it may, the pause between them
/// doubles from [`RETRY_AFTER_MS`] up to this, the length of a poll the
/// relay would have held: past its share a link then costs the subject's
/// read budget what a held poll costs, not a read every second.
const FULL_RETRY_MAX_MS: u32 = PULL_WAIT_MS as u32;
/// A stream whose pulls keep being answered with what this version
/// cannot read at all is asked again after [`RETRY_AFTER_MS`], then twice
/// as long each time in a row, up to this; the other streams are pulled
/// meanwhile. A relay that always answers one stream with something
/// unreadable then costs a request a minute, not one every 2 s for as
/// long as the page is open.
const FAILING_RETRY_MAX_MS: u64 = 60_000;
/// Longest wait for a relay's whole answer past what a long poll asks it
/// to wait: a request held open longer counts as the relay unreachable.
const ANSWER_WITHIN_MS: u32 = 20_000;

impl Remote {
    // ----- HTTP fallback ------------------------------------------------

    pub(super) fn start_http(self: &Rc<Self>) {
        let generation = self.bump();
        self.http_loops.set(Some(generation));
        let streams = self
            .link
            .borrow()
            .as_ref()
            .map(|link| link.streams().to_vec())
            .unwrap_or_default();
        wasm_bindgen_futures::spawn_local(push_loop(Rc::downgrade(self), generation));
        wasm_bindgen_futures::spawn_local(pull_loop(Rc::downgrade(self), generation, streams));
    }

    /// Whether an HTTP loop of `generation` should go on.
    pub(super) fn on_http(&self, generation: u64) -> bool {
        self.generation.get() == generation && self.link_status() == Some(LinkStatus::HttpFallback)
    }

    /// Whether both HTTP loops of the current generation run.
    pub(super) fn http_running(&self) -> bool {
        self.http_loops.get() == Some(self.generation.get())
    }

    /// A request could not reach the relay: back to trying the socket.
    pub(super) fn http_failed(self: &Rc<Self>) {
        self.bump();
        if let Some(delay) = self.with_link(|link, _| link.on_http_failed(js_sys::Math::random())) {
            self.retry_in(delay);
        }
        self.publish();
    }
}

/// A wake-up call for the push loop: [`notify`](Self::notify) makes the
/// loop's current (or next) wait end at once. Notifications while the loop
/// is busy pushing are not lost, and several count as one.
#[derive(Default)]
pub(super) struct Wake {
    /// Notified since the loop last looked, and the loop's waker if it
    /// waits.
    state: RefCell<(bool, Option<Waker>)>,
}

impl Wake {
    /// Something may be ready to push.
    pub(super) fn notify(&self) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether it was notified since the last call (clearing it), or else
    /// registers `cx`'s waker.
    fn take(&self, cx: &Context<'_>) -> bool {
        let mut state = self.state.borrow_mut();
        if std::mem::take(&mut state.0) {
            state.1 = None;
            true
        } else {
            state.1 = Some(cx.waker().clone());
            false
        }
    }

    /// Until notified, or `PUSH_EVERY_MS` at most.
    async fn wait(&self) {
        self.wait_or(gloo_timers::future::TimeoutFuture::new(PUSH_EVERY_MS))
            .await;
    }

    /// Until notified or `timer` ends. The timer is polled first: a loop
    /// whose timer ended leaves the notification (and the waker slot) to
    /// whichever loop waits next, which matters when a loop of an older
    /// generation wakes on its way out.
    async fn wait_or(&self, mut timer: impl Future<Output = ()> + Unpin) {
        std::future::poll_fn(|cx| {
            if Pin::new(&mut timer).poll(cx).is_ready() || self.take(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

pub(super) async fn push_loop(weak: Weak<Remote>, generation: u64) {
    let wake = match weak.upgrade() {
        Some(remote) => Rc::clone(&remote.push_wake),
        None => return,
    };
    loop {
        // A link that never had a socket asks the relay's limits first (it
        // heard no welcome), so its pushes keep within them.
        let ask = {
            let Some(remote) = weak.upgrade() else {
                return;
            };
            // A loop of an older connection (woken on its way out) must
            // not make the ask the new one's loop would make.
            if !remote.on_http(generation) {
                return;
            }
            let ask = remote
                .with_link(|link, _| link.http_limits(now_ms()))
                .flatten();
            ask.map(|ask| {
                (
                    ask,
                    remote.config.http_url(ask.path()),
                    remote.config.token().to_owned(),
                )
            })
        };
        if let Some((ask, url, token)) = ask {
            let answer = wire::request("GET", &url, &token, None, ANSWER_WITHIN_MS).await;
            if let Some(remote) = weak.upgrade() {
                let answer = answer
                    .as_ref()
                    .ok()
                    .map(|(status, text)| (*status, text.as_str()));
                remote.with_link(|link, _| link.on_http_limits(ask, answer, now_ms()));
            }
        }
        let request = {
            let Some(remote) = weak.upgrade() else {
                return;
            };
            if !remote.on_http(generation) {
                return;
            }
            remote
                .link
                .borrow_mut()
                .as_mut()
                .and_then(|link| link.http_push(now_ms()))
                .map(|body| {
                    (
                        remote.config.http_url("/v1/push"),
                        remote.config.token().to_owned(),
                        body,
                    )
                })
        };
        if let Some((url, token, body)) = request {
            let answer = wire::request("POST", &url, &token, Some(&body), ANSWER_WITHIN_MS).await;
            match take_answer(&weak, generation, answer) {
                Next::Stop => return,
                Next::Go => {}
                Next::Wait | Next::Broken | Next::Full => {
                    gloo_timers::future::TimeoutFuture::new(RETRY_AFTER_MS).await;
                }
            }
        } else {
            wake.wait().await;
        }
    }
}

/// Pulls each stream in turn: a long poll on the first (the apartment's),
/// a quick look at the others. One request at a time per link, because a
/// browser opens at most six HTTP/1.1 connections to a host and every
/// apartment's link shares them (pushes must still get through).
pub(super) async fn pull_loop(weak: Weak<Remote>, generation: u64, streams: Vec<StreamId>) {
    let mut full = FullBackoff::default();
    let mut failing = Failing::default();
    for stream in streams.iter().cycle() {
        let now = now_ms();
        // What to ask, or how long to wait first.
        let asked = {
            let Some(remote) = weak.upgrade() else {
                return;
            };
            if !remote.on_http(generation) {
                return;
            }
            let mut link = remote.link.borrow_mut();
            let Some(link) = link.as_mut() else {
                return;
            };
            // Streams the token may not read are not asked for, nor those
            // put off after unreadable answers; the first of the others
            // waits for news (a long poll), the rest answer at once.
            if !streams.iter().any(|s| link.may_pull(s)) {
                // Started again (with the push loop) once a socket tried
                // meanwhile closes: a stream may be allowed again by then.
                remote.http_loops.set(None);
                return;
            }
            if !link.may_pull(stream) {
                continue;
            }
            let ready = |s: &&StreamId| link.may_pull(s) && failing.ready(s, now);
            match streams.iter().find(ready) {
                // Every stream is put off: until the first may be asked
                // again.
                None => Err(failing.next_ready(now)),
                Some(_) if !failing.ready(stream, now) => continue,
                Some(first) => {
                    let wait = if stream == first { PULL_WAIT_MS } else { 0 };
                    let path = link.http_pull(stream, wait);
                    Ok((
                        remote.config.http_url(&path),
                        remote.config.token().to_owned(),
                        wait,
                    ))
                }
            }
        };
        let (url, token, wait) = match asked {
            Ok(asked) => asked,
            Err(pause) => {
                gloo_timers::future::TimeoutFuture::new(pause).await;
                continue;
            }
        };
        let within =
            u32::try_from(wait).map_or(u32::MAX, |wait| wait.saturating_add(ANSWER_WITHIN_MS));
        let answer = wire::request("GET", &url, &token, None, within).await;
        if let Ok((403, text)) = &answer
            && let Some(remote) = weak.upgrade()
        {
            remote.with_link(|link, _| link.forbid(stream, text));
        }
        let next = take_answer(&weak, generation, answer);
        if matches!(next, Next::Stop) {
            return;
        }
        failing.after(stream, &next, now_ms());
        if let Some(pause) = full.pause_after(&next, wait > 0) {
            gloo_timers::future::TimeoutFuture::new(pause).await;
        }
    }
}

/// The pause after each long poll refused for want of connections
/// ([`FULL_RETRY_MAX_MS`]), until one is answered.
#[derive(Debug, Default)]
struct FullBackoff {
    refusals: u32,
}

impl FullBackoff {
    /// One more refusal: how long to wait before the next poll.
    fn refused(&mut self) -> u32 {
        let pause = RETRY_AFTER_MS
            .saturating_mul(1 << self.refusals.min(8))
            .min(FULL_RETRY_MAX_MS);
        self.refusals = self.refusals.saturating_add(1);
        pause
    }

    /// A long poll was answered (it waited, or had news).
    fn answered(&mut self) {
        self.refusals = 0;
    }

    /// The pause before the pull loop's next request, after `next` for a
    /// request that was a long poll (`long`) or a quick look at another
    /// stream: a refusal for want of connections waits longer each time,
    /// other refusals 2 s; only an answered long poll starts over (a
    /// quick look is never refused so, and says nothing of the poll).
    fn pause_after(&mut self, next: &Next, long: bool) -> Option<u32> {
        match next {
            Next::Stop => None,
            Next::Go => {
                if long {
                    self.answered();
                }
                None
            }
            Next::Wait => Some(RETRY_AFTER_MS),
            // The stream is put off ([`Failing`]): the others go on.
            Next::Broken => None,
            Next::Full => Some(self.refused()),
        }
    }
}

/// The streams whose last pull was answered with what this version cannot
/// read, each with how many times in a row and when it may be asked again
/// (see [`FAILING_RETRY_MAX_MS`]).
#[derive(Debug, Default)]
struct Failing(Vec<(StreamId, u32, u64)>);

impl Failing {
    /// What the pull of `stream` came to, at `now`: an answer that could
    /// not be read puts it off, longer each time in a row; one that went
    /// through starts over. (A refusal is the relay's word on the moment,
    /// not on the stream: it waits [`RETRY_AFTER_MS`], or
    /// [`FullBackoff`]'s pause, as before.)
    fn after(&mut self, stream: &StreamId, next: &Next, now: u64) {
        let at = self.0.iter().position(|(failed, ..)| failed == stream);
        match (next, at) {
            (Next::Broken, Some(at)) => {
                let (_, times, until) = &mut self.0[at];
                *times = times.saturating_add(1);
                *until = now.saturating_add(Self::pause(*times));
            }
            (Next::Broken, None) => {
                self.0
                    .push((stream.clone(), 1, now.saturating_add(Self::pause(1))));
            }
            (Next::Go, Some(at)) => {
                self.0.swap_remove(at);
            }
            _ => {}
        }
    }

    /// The wait after the `times`-th failure in a row.
    fn pause(times: u32) -> u64 {
        u64::from(RETRY_AFTER_MS)
            .saturating_mul(1 << times.saturating_sub(1).min(16))
            .min(FAILING_RETRY_MAX_MS)
    }

    /// How long a stream put off until `until` still waits at `now`:
    /// never more than [`FAILING_RETRY_MAX_MS`], so a clock set back
    /// (the wall clock, which `now` is) holds no stream longer than that.
    fn left(until: u64, now: u64) -> u64 {
        match until.saturating_sub(now) {
            left if left > FAILING_RETRY_MAX_MS => 0,
            left => left,
        }
    }

    /// Whether `stream` may be asked at `now`.
    fn ready(&self, stream: &StreamId, now: u64) -> bool {
        self.0
            .iter()
            .all(|(failed, _, until)| failed != stream || Self::left(*until, now) == 0)
    }

    /// How long until the first stream still put off may be asked again
    /// (streams whose wait has passed, such as one the token may no
    /// longer read, do not count); [`RETRY_AFTER_MS`] if none is, so the
    /// loop never spins.
    fn next_ready(&self, now: u64) -> u32 {
        let first = self
            .0
            .iter()
            .map(|(_, _, until)| Self::left(*until, now))
            .filter(|left| *left > 0)
            .min();
        let wait = first.unwrap_or(u64::from(RETRY_AFTER_MS));
        u32::try_from(wait).unwrap_or(RETRY_AFTER_MS)
    }
}

/// What an HTTP loop does after an answer.
enum Next {
    /// The link left HTTP, the relay is unreachable, or the page is gone.
    Stop,
    /// Go on at once.
    Go,
    /// Refused: wait before asking again.
    Wait,
    /// Answered with what this version cannot read at all: wait before
    /// asking again, and put the stream off longer each time in a row
    /// ([`Failing`]).
    Broken,
    /// Refused because the node, or this token's subject on it, holds all
    /// the connections it may: wait, longer each time in a row.
    Full,
}

/// Feeds an HTTP answer (or the failure to get one) to the link.
fn take_answer(
    weak: &Weak<Remote>,
    generation: u64,
    answer: Result<(u16, String), String>,
) -> Next {
    let Some(remote) = weak.upgrade() else {
        return Next::Stop;
    };
    if !remote.on_http(generation) {
        return Next::Stop;
    }
    let Ok((status, text)) = answer else {
        remote.http_failed();
        return Next::Stop;
    };
    let mut next = Next::Go;
    if let Some(out) =
        remote.with_link(|link, storage| link.on_http(status, &text, now_ms(), storage))
    {
        if out
            .error
            .as_ref()
            .is_some_and(|(code, _)| code == gaesup_protocol::code::TOO_MANY_CONNECTIONS)
        {
            next = Next::Full;
        } else if out.close || status >= 400 {
            next = Next::Wait;
        } else if out
            .error
            .as_ref()
            // Ops this version cannot read were passed, the rest taken:
            // the next pull goes on at once.
            .is_some_and(|(code, _)| code != gaesup_protocol::code::UNREADABLE)
        {
            next = Next::Broken;
        }
        remote.handle(out);
    }
    remote.publish();
    next
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Waker};

    use super::Wake;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A stream whose pulls keep being answered with what this version
    /// cannot read is put off 2 s, then twice as long each time in a row
    /// up to a minute, while the others are asked; one that goes through
    /// starts it over, and refusals are not the stream's.
    #[test]
    fn a_stream_whose_pulls_keep_failing_is_asked_less_and_less_often() {
        use super::{Failing, Next};
        let (main, global): (gaesup_protocol::StreamId, gaesup_protocol::StreamId) =
            ("apartment:main".parse().unwrap(), "global".parse().unwrap());
        let mut failing = Failing::default();
        let mut now = 1_700_000_000_000;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(failing.ready(&main, now));
            failing.after(&main, &Next::Broken, now);
            assert!(!failing.ready(&main, now + 1));
            assert!(failing.ready(&global, now + 1), "the others are asked");
            let wait = failing.next_ready(now);
            waits.push(wait);
            assert!(!failing.ready(&main, now + u64::from(wait) - 1));
            now += u64::from(wait);
        }
        assert_eq!(
            waits,
            [2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        failing.after(&main, &Next::Broken, now);
        // Refusals are not the stream's: no change.
        failing.after(&main, &Next::Full, now);
        failing.after(&main, &Next::Wait, now);
        failing.after(&global, &Next::Go, now);
        assert_eq!(failing.next_ready(now), 60_000);
        // Through: from the start again.
        failing.after(&main, &Next::Go, now);
        assert!(failing.ready(&main, now));
        assert_eq!(failing.next_ready(now), 2_000, "nothing put off");
        failing.after(&main, &Next::Broken, now);
        assert_eq!(failing.next_ready(now), 2_000);
        for _ in 0..100 {
            failing.after(&main, &Next::Broken, now);
        }
        assert_eq!(failing.next_ready(now), 60_000, "no overflow after many");
        // A stream whose wait has passed (one the token may no longer
        // read, say) does not make the loop wake at once for the others.
        failing.after(&global, &Next::Broken, now);
        let later = now + 30_000;
        assert!(failing.ready(&global, later));
        assert_eq!(failing.next_ready(later), 30_000);
        // The wall clock set back an hour: no stream waits past a minute.
        let before = now - 3_600_000;
        assert!(failing.ready(&main, before));
        assert_eq!(failing.next_ready(before), 2_000);
    }

    /// Long polls refused for want of connections wait 2 s, then twice
    /// as long each time up to a poll's length; an answered poll starts
    /// over.
    #[test]
    fn refused_long_polls_wait_longer_each_time_up_to_a_polls_length() {
        let mut full = super::FullBackoff::default();
        let pauses: Vec<u32> = (0..5).map(|_| full.refused()).collect();
        assert_eq!(pauses, [2_000, 4_000, 8_000, 10_000, 10_000]);
        full.answered();
        let pauses: Vec<u32> = (0..3).map(|_| full.refused()).collect();
        assert_eq!(pauses, [2_000, 4_000, 8_000], "from the start again");
        for _ in 0..100 {
            assert_eq!(full.refused(), 10_000, "no overflow after many");
        }
    }

    /// The pull loop's pauses over a run of answers: its long poll
    /// refused for want of connections, quick looks at the global stream
    /// between, another refusal; only the long poll's answer starts over.
    #[test]
    fn the_pull_loop_pauses_longer_while_its_long_poll_is_refused_for_connections() {
        use super::Next;
        let mut full = super::FullBackoff::default();
        let run = [
            (Next::Full, true),
            (Next::Go, false),
            (Next::Full, true),
            (Next::Go, false),
            (Next::Wait, true),
            (Next::Full, true),
            (Next::Go, true),
            (Next::Full, true),
            (Next::Broken, true),
        ];
        let pauses: Vec<Option<u32>> = run
            .iter()
            .map(|(next, long)| full.pause_after(next, *long))
            .collect();
        assert_eq!(
            pauses,
            [
                Some(2_000),
                None,
                Some(4_000),
                None,
                Some(2_000),
                Some(8_000),
                None,
                Some(2_000),
                None
            ]
        );
    }

    #[test]
    fn a_notification_before_the_loop_waits_is_kept_once() {
        let wake = Wake::default();
        let cx = Context::from_waker(Waker::noop());
        assert!(!wake.take(&cx), "nothing notified yet");
        wake.notify();
        wake.notify();
        assert!(wake.take(&cx), "a notification made while busy is kept");
        assert!(!wake.take(&cx), "several notifications count as one");
    }

    /// Polls `future` once.
    fn poll_once<F: std::future::Future>(future: F) -> std::task::Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_wait_ends_on_a_notification_or_its_timer_and_a_timer_leaves_the_notification() {
        let wake = Wake::default();
        assert!(poll_once(wake.wait_or(std::future::pending())).is_pending());
        wake.notify();
        assert!(poll_once(wake.wait_or(std::future::pending())).is_ready());
        assert!(poll_once(wake.wait_or(std::future::pending())).is_pending());
        // A wait whose timer ended (an old loop leaving) does not take a
        // notification meant for the next loop.
        wake.notify();
        assert!(poll_once(wake.wait_or(std::future::ready(()))).is_ready());
        assert!(poll_once(wake.wait_or(std::future::pending())).is_ready());
    }

    #[test]
    fn a_notification_wakes_the_waiting_loop_once() {
        let wake = Wake::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        assert!(!wake.take(&Context::from_waker(&waker)));
        wake.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // The waker was used up: a second notification only sets the flag.
        wake.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(wake.take(&Context::from_waker(&waker)));
    }
}
