//! The hand-offs between threads: the node's inbox and the one-shot slot each request is
//! answered through. Both are small enough to model-check with loom (`RUSTFLAGS="--cfg loom"`,
//! see `tests/loom.rs`), which is why they are built on a `Mutex` and a `Condvar` and nothing
//! cleverer.
//!
//! The properties the model checks: every request pushed is either taken by the node thread or
//! refused to its sender (never both, never neither), including across a concurrent shutdown; a
//! slot is answered at most once, and a waiter — blocking or async — always sees the answer.

use std::task::{Context, Poll, Waker};
use std::time::Instant;

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks, recovering from poisoning: the data under these locks is plain queues and values that
/// a panicking holder cannot leave half-updated in a way that matters more than losing the node.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Why the inbox refused a request; the request is handed back.
#[derive(Debug)]
pub(crate) enum Refused<R> {
    /// The queue is at its bound.
    Full(R),
    /// The node is shutting down.
    Shutdown(R),
}

struct InboxState<R, M> {
    requests: Vec<R>,
    messages: Vec<M>,
    /// Sum of the sizes given with the queued messages.
    message_bytes: usize,
    shutdown: bool,
}

/// A bounded multi-producer queue into the node thread, of two kinds: requests from clients
/// (refused when full, so the client hears "busy") and messages from peers (dropped when full:
/// Raft retransmits).
pub(crate) struct Inbox<R, M> {
    state: Mutex<InboxState<R, M>>,
    wake: Condvar,
    max_requests: usize,
    max_messages: usize,
    max_message_bytes: usize,
}

/// What [`Inbox::take`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Running; the buffers hold whatever arrived (possibly nothing, on timeout).
    Running,
    /// Shut down: the buffers hold what was queued before the shutdown; nothing more arrives.
    Shutdown,
}

impl<R, M> Inbox<R, M> {
    pub(crate) fn new(max_requests: usize, max_messages: usize, max_message_bytes: usize) -> Self {
        Inbox {
            state: Mutex::new(InboxState {
                requests: Vec::new(),
                messages: Vec::new(),
                message_bytes: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            max_requests,
            max_messages,
            max_message_bytes,
        }
    }

    pub(crate) fn push_request(&self, r: R) -> Result<(), Refused<R>> {
        let mut s = lock(&self.state);
        if s.shutdown {
            return Err(Refused::Shutdown(r));
        }
        if s.requests.len() >= self.max_requests {
            return Err(Refused::Full(r));
        }
        s.requests.push(r);
        let first = s.requests.len() == 1;
        drop(s);
        // Only the push that makes its queue non-empty needs to wake the consumer: it drains a
        // queue whole, and checks for work under the lock before it sleeps. Per queue, not per
        // inbox: a consumer holding requests back sleeps with requests queued, and must still
        // wake for the first message (loom found the lost wake-up the per-inbox rule had).
        if first {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Queues a message of `bytes` bytes; returns false if it was dropped (full in count or
    /// bytes, or shutting down).
    pub(crate) fn push_message(&self, m: M, bytes: usize) -> bool {
        let mut s = lock(&self.state);
        if s.shutdown
            || s.messages.len() >= self.max_messages
            || s.message_bytes.saturating_add(bytes) > self.max_message_bytes
        {
            return false;
        }
        s.message_bytes += bytes;
        s.messages.push(m);
        let first = s.messages.len() == 1;
        drop(s);
        if first {
            self.wake.notify_one();
        }
        true
    }

    /// Stops the inbox: later pushes are refused, and the consumer wakes.
    pub(crate) fn shutdown(&self) {
        lock(&self.state).shutdown = true;
        self.wake.notify_all();
    }

    /// Moves everything queued into `requests` (only if `with_requests`) and `messages` (which
    /// the caller passes in empty, so buffers are reused rather than reallocated), waiting
    /// until something is queued, the inbox shuts down, or `deadline` passes.
    pub(crate) fn take(
        &self,
        requests: &mut Vec<R>,
        messages: &mut Vec<M>,
        with_requests: bool,
        deadline: Option<Instant>,
    ) -> Taken {
        let mut s = lock(&self.state);
        loop {
            if (with_requests && !s.requests.is_empty()) || !s.messages.is_empty() || s.shutdown {
                break;
            }
            match deadline {
                None => {
                    s = match self.wake.wait(s) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    s = match self.wake.wait_timeout(s, d - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                }
            }
        }
        if with_requests || s.shutdown {
            std::mem::swap(requests, &mut s.requests);
        }
        std::mem::swap(messages, &mut s.messages);
        s.message_bytes = 0;
        if s.shutdown {
            Taken::Shutdown
        } else {
            Taken::Running
        }
    }
}

struct SlotState<T> {
    value: Option<T>,
    filled: bool,
    waker: Option<Waker>,
    /// Threads blocked in `wait`: only then is the condvar notified, since a notify is a system
    /// call even with nobody waiting, and async waiters (most, under load) never block on it.
    blocked: u32,
}

/// A one-shot answer: filled once by the node thread, taken once by the requester, who may block
/// on it or poll it as a future.
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                value: None,
                filled: false,
                waker: None,
                blocked: 0,
            }),
            ready: Condvar::new(),
        })
    }

    /// Answers; returns false (and drops `v`) if the slot was answered before.
    pub(crate) fn fill(&self, v: T) -> bool {
        let mut s = lock(&self.state);
        if s.filled {
            return false;
        }
        s.filled = true;
        s.value = Some(v);
        let waker = s.waker.take();
        let blocked = s.blocked > 0;
        drop(s);
        if blocked {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Whether an answer was given (taken or not).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn is_filled(&self) -> bool {
        lock(&self.state).filled
    }

    /// Blocks until answered, or until `deadline` (then `None`; a later answer is dropped).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<T> {
        let mut s = lock(&self.state);
        loop {
            if let Some(v) = s.value.take() {
                return Some(v);
            }
            if s.filled {
                // Taken already: only one waiter per slot exists, so this is not reached.
                return None;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            s.blocked += 1;
            s = match deadline {
                None => match self.ready.wait(s) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                },
                Some(d) => match self.ready.wait_timeout(s, d - now) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                },
            };
            s.blocked -= 1;
        }
    }

    /// Polls for the answer, registering the task's waker if there is none yet.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = lock(&self.state);
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.filled {
            return Poll::Ready(None);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Model checks of the hand-offs, run with `RUSTFLAGS="--cfg loom" cargo test -p raft-std
/// --release --lib loom` (the test command does). Each explores every interleaving of its
/// threads' operations on the Mutex and Condvar.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Two producers and a consumer that shuts the inbox down at an arbitrary point: every
    /// request ends up either taken by the consumer or refused to its producer, exactly once.
    #[test]
    fn loom_every_request_taken_or_refused_across_shutdown() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::<u32, u32>::new(8, 8, 64));
            let producers: Vec<_> = (0..2u32)
                .map(|p| {
                    let inbox = inbox.clone();
                    thread::spawn(move || match inbox.push_request(p) {
                        Ok(()) => 1u32,
                        Err(Refused::Shutdown(r)) => {
                            assert_eq!(r, p);
                            0
                        }
                        Err(Refused::Full(_)) => unreachable!("bound not reached"),
                    })
                })
                .collect();
            let mut taken = Vec::new();
            let mut reqs = Vec::new();
            let mut msgs = Vec::new();
            // One take before and one after the shutdown: the second drains the rest.
            if inbox.take(&mut reqs, &mut msgs, true, None) == Taken::Running {
                taken.append(&mut reqs);
            }
            inbox.shutdown();
            assert_eq!(
                inbox.take(&mut reqs, &mut msgs, true, None),
                Taken::Shutdown
            );
            taken.append(&mut reqs);
            let accepted: u32 = producers
                .into_iter()
                .map(|h| h.join().expect("producer"))
                .sum();
            assert_eq!(taken.len() as u32, accepted);
            taken.sort();
            taken.dedup();
            assert_eq!(taken.len() as u32, accepted, "nothing taken twice");
        });
    }

    /// A consumer waiting with no deadline is always woken by a push: no lost wake-up from the
    /// "notify only the first push" rule.
    #[test]
    fn loom_waiting_consumer_is_woken_by_each_kind_of_push() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::<u32, u32>::new(4, 4, 64));
            let a = {
                let inbox = inbox.clone();
                thread::spawn(move || inbox.push_request(1).is_ok())
            };
            let b = {
                let inbox = inbox.clone();
                thread::spawn(move || inbox.push_message(2, 1))
            };
            let (mut reqs, mut msgs) = (Vec::new(), Vec::new());
            let (mut got_r, mut got_m) = (0, 0);
            while got_r + got_m < 2 {
                assert_eq!(inbox.take(&mut reqs, &mut msgs, true, None), Taken::Running);
                got_r += reqs.drain(..).count();
                got_m += msgs.drain(..).count();
            }
            assert!(a.join().expect("a") && b.join().expect("b"));
        });
    }

    /// With requests held back (the node is at its pending bound), a consumer still wakes for
    /// messages, and the held requests stay queued for later.
    #[test]
    fn loom_held_back_requests_stay_queued() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::<u32, u32>::new(4, 4, 64));
            let p = {
                let inbox = inbox.clone();
                thread::spawn(move || {
                    inbox.push_request(1).expect("room");
                    assert!(inbox.push_message(2, 1));
                })
            };
            let (mut reqs, mut msgs) = (Vec::new(), Vec::new());
            while msgs.is_empty() {
                inbox.take(&mut reqs, &mut msgs, false, None);
                assert!(reqs.is_empty(), "requests were held back");
            }
            p.join().expect("producer");
            inbox.take(&mut reqs, &mut msgs, true, None);
            assert_eq!(reqs, vec![1]);
        });
    }

    /// The node answers while the requester is blocking, or before it starts to wait: the
    /// answer is seen exactly once, and a second answer (a late timeout) is refused.
    #[test]
    fn loom_slot_answer_seen_once() {
        loom::model(|| {
            let slot = Slot::<u32>::new();
            let filler = {
                let slot = slot.clone();
                thread::spawn(move || {
                    let first = slot.fill(7);
                    let second = slot.fill(8);
                    (first, second)
                })
            };
            assert_eq!(slot.wait(None), Some(7));
            let (first, second) = filler.join().expect("filler");
            assert!(first && !second);
            assert!(slot.is_filled());
        });
    }

    /// Two threads race to answer (the apply path and the expiry path): exactly one wins.
    #[test]
    fn loom_slot_racing_answers_one_wins() {
        loom::model(|| {
            let slot = Slot::<u32>::new();
            let racers: Vec<_> = (0..2u32)
                .map(|v| {
                    let slot = slot.clone();
                    thread::spawn(move || slot.fill(v))
                })
                .collect();
            let wins = racers
                .into_iter()
                .map(|h| h.join().expect("racer"))
                .filter(|&w| w)
                .count();
            assert_eq!(wins, 1);
            assert!(slot.wait(None).is_some());
        });
    }

    /// An async waiter registers its waker and is woken by the answer, whichever comes first.
    #[test]
    fn loom_slot_wakes_async_waiter() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::task::Wake;

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }

        loom::model(|| {
            let slot = Slot::<u32>::new();
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            let filler = {
                let slot = slot.clone();
                thread::spawn(move || slot.fill(5))
            };
            match slot.poll_take(&mut cx) {
                Poll::Ready(v) => assert_eq!(v, Some(5)),
                Poll::Pending => {
                    filler.join().expect("filler");
                    // Filled after the waker was registered: it must have been woken.
                    assert!(flag.0.load(Ordering::SeqCst));
                    assert_eq!(slot.poll_take(&mut cx), Poll::Ready(Some(5)));
                    return;
                }
            }
            filler.join().expect("filler");
        });
    }
}
