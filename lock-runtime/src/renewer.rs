//! One renewal scheduler per client: it keeps every lease the client holds alive with
//! batched, owner-checked renewals, and declares leases lost when they run out.
//!
//! There is no task per held lock. The scheduler keeps a heap of the next event of each
//! lease (its renewal falling due, or its loss deadline) and one task that sleeps until the
//! earliest. When it wakes for a renewal it also takes every lease whose renewal falls due
//! within the next half period (`ttl/6`): renewing a little early is harmless, and it pulls
//! the renewal times of all leases together, so that after one period they go out in full
//! batches of [`MAX_BATCH`] keys per round trip.
//!
//! Renewal calls run in tasks of their own, so a slow or dead server never delays the loss
//! deadlines, which the scheduler fires on its own clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{Instant, sleep_until};

use crate::LostReason;
use crate::backend::{Backend, Renewal};
use crate::lease::{Lease, retry_interval};

/// The most keys one renewal call carries.
pub(crate) const MAX_BATCH: usize = 100;

/// Identifies a lease registered with a [`Renewer`].
pub(crate) type LeaseId = u64;

#[derive(Debug)]
pub(crate) struct Renewer {
    backend: Arc<dyn Backend>,
    state: Mutex<State>,
    /// Wakes the scheduler task when an earlier event may have been queued.
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<LeaseId, Entry>,
    /// `(when, id, generation)`. An entry whose generation no longer matches is stale.
    queue: BinaryHeap<Reverse<(Instant, LeaseId, u64)>>,
    next_id: LeaseId,
    /// The largest early-renewal window among the leases held.
    max_window: Duration,
    task: Option<AbortHandle>,
    /// When the sleeping task will wake on its own; `None` while it works. A new event
    /// later than this needs no wake-up, which spares the task one wake per acquire.
    sleeping_until: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    lease: Arc<Lease>,
    renew: bool,
    generation: u64,
    in_flight: bool,
    /// Set after a failed renewal: try again then rather than at `ttl/3`.
    retry_at: Option<Instant>,
}

impl Entry {
    /// The next instant something must happen to this lease.
    fn next_event(&self) -> Instant {
        let times = self.lease.times();
        let lost_at = times.lost_at();
        if !self.renew || self.in_flight {
            return lost_at;
        }
        self.retry_at.unwrap_or(times.renew_due()).min(lost_at)
    }
}

/// How early a lease's renewal may go out to join a batch: half its renewal period.
fn window(ttl: Duration) -> Duration {
    ttl / 6
}

impl State {
    /// Pops queue entries of leases that are gone or were rescheduled since.
    fn drop_stale_heads(&mut self) {
        while let Some(&Reverse((_, id, generation))) = self.queue.peek() {
            match self.entries.get(&id) {
                Some(e) if e.generation == generation => break,
                _ => {
                    self.queue.pop();
                }
            }
        }
    }

    /// Rescheduling leaves the superseded events in the heap until their time comes (a
    /// lease's loss-deadline event outlives several renewals), and released leases leave
    /// theirs. Sweep them when they outnumber the live ones, so the heap stays proportional
    /// to the locks held; amortised, this costs O(1) per event.
    fn sweep_if_sparse(&mut self) {
        if self.queue.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.queue.retain(|Reverse((_, id, generation))| {
                entries.get(id).is_some_and(|e| e.generation == *generation)
            });
            self.queue.shrink_to(2 * self.queue.len() + 64);
        }
    }

    /// Queues `id`'s next event; returns it, if the lease is still held.
    fn schedule(&mut self, id: LeaseId) -> Option<Instant> {
        let entry = self.entries.get_mut(&id)?;
        entry.generation += 1;
        let when = entry.next_event();
        self.queue.push(Reverse((when, id, entry.generation)));
        Some(when)
    }

    /// Whether the task must be woken to see an event at `when`.
    fn needs_wake(&self, when: Option<Instant>) -> bool {
        match (when, self.sleeping_until) {
            (Some(when), Some(until)) => when < until,
            _ => false,
        }
    }
}

impl Renewer {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Renewer {
            backend,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts keeping `lease` alive (or, with `renew == false`, only timing it out). Must be
    /// called within a tokio runtime.
    pub(crate) fn register(self: &Arc<Self>, lease: Arc<Lease>, renew: bool) -> LeaseId {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let ttl = lease.ttl();
        state.max_window = state.max_window.max(window(ttl));
        state.entries.insert(
            id,
            Entry {
                lease,
                renew,
                generation: 0,
                in_flight: false,
                retry_at: None,
            },
        );
        let when = state.schedule(id);
        // The task exits when it has nothing to do, and dies with its runtime: start one if
        // none is running.
        if state.task.as_ref().is_none_or(AbortHandle::is_finished) {
            state.sleeping_until = None;
            state.task = Some(tokio::spawn(Arc::clone(self).run()).abort_handle());
        } else if state.needs_wake(when) {
            drop(state);
            self.wake.notify_one();
        }
        id
    }

    /// Stops looking after a lease (it was released or dropped).
    pub(crate) fn unregister(&self, id: LeaseId) {
        let mut state = self.state();
        state.entries.remove(&id);
        state.sweep_if_sparse();
    }

    /// Re-reads a lease's times after `extend` changed them.
    pub(crate) fn reschedule(&self, id: LeaseId) {
        let mut state = self.state();
        if let Some(entry) = state.entries.get_mut(&id) {
            entry.retry_at = None;
            let ttl = entry.lease.ttl();
            state.max_window = state.max_window.max(window(ttl));
        }
        let when = state.schedule(id);
        if state.needs_wake(when) {
            drop(state);
            self.wake.notify_one();
        }
    }

    /// The scheduler loop. Returns when no lease is left.
    async fn run(self: Arc<Self>) {
        loop {
            let next_wake = {
                let mut state = self.state();
                if state.entries.is_empty() {
                    state.task = None;
                    state.max_window = Duration::ZERO;
                    return;
                }
                state.sleeping_until = None;
                state.drop_stale_heads();
                let batch = self.collect_due(&mut state);
                for chunk in batch.chunks(MAX_BATCH) {
                    tokio::spawn(Arc::clone(&self).renew(chunk.to_vec()));
                }
                state.drop_stale_heads();
                let next = state.queue.peek().map(|Reverse((when, _, _))| *when);
                state.sleeping_until = next;
                next
            };
            let notified = self.wake.notified();
            match next_wake {
                Some(when) => tokio::select! {
                    () = sleep_until(when) => {}
                    () = notified => {}
                },
                None => notified.await,
            }
        }
    }

    /// Fires due loss deadlines and gathers the leases whose renewal is due (or nearly).
    fn collect_due(&self, state: &mut State) -> Vec<(LeaseId, Arc<Lease>, Duration)> {
        let now = Instant::now();
        // Woken early (a registration, an extend, a finished batch): nothing to do yet.
        // The caller dropped stale heads, so the head is a live event.
        if state
            .queue
            .peek()
            .is_none_or(|Reverse((when, _, _))| *when > now)
        {
            return Vec::new();
        }
        let horizon = now + state.max_window;
        let mut popped = Vec::new();
        while let Some(&Reverse((when, id, generation))) = state.queue.peek() {
            if when > horizon {
                break;
            }
            state.queue.pop();
            if state
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                popped.push(id);
            }
        }
        let mut batch = Vec::new();
        for id in popped {
            let Some(entry) = state.entries.get_mut(&id) else {
                continue;
            };
            let times = entry.lease.times();
            if times.lost_at() <= now {
                entry.lease.declare_lost(LostReason::Expired);
                state.entries.remove(&id);
                continue;
            }
            let due = entry.retry_at.unwrap_or(times.renew_due());
            if entry.renew && !entry.in_flight && due <= now + window(times.ttl) {
                entry.in_flight = true;
                batch.push((id, Arc::clone(&entry.lease), times.ttl));
            }
            state.schedule(id);
        }
        batch
    }

    /// Sends one batch of renewals and records what came back.
    async fn renew(self: Arc<Self>, batch: Vec<(LeaseId, Arc<Lease>, Duration)>) {
        let renewals: Vec<Renewal<'_>> = batch
            .iter()
            .map(|(_, lease, ttl)| Renewal {
                key: &lease.key,
                token: &lease.token,
                ttl: *ttl,
            })
            .collect();
        let sent_at = Instant::now();
        // Bounded by the client's timeout; loss deadlines fire independently meanwhile.
        let outcome =
            tokio::time::timeout(self.backend.op_timeout(), self.backend.renew(&renewals)).await;
        let outcome = match outcome {
            Ok(Ok(renewed)) if renewed.len() == batch.len() => Ok(renewed),
            Ok(Ok(_)) => Err("a reply of the wrong length".to_owned()),
            Ok(Err(e)) => Err(e.into_lock_error(&batch[0].1.key, "renew").to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.backend.op_timeout())),
        };
        let mut state = self.state();
        let retry_from = Instant::now();
        let mut earliest: Option<Instant> = None;
        for (i, (id, lease, ttl)) in batch.iter().enumerate() {
            let Some(entry) = state.entries.get_mut(id) else {
                continue; // released meanwhile
            };
            entry.in_flight = false;
            match &outcome {
                Ok(renewed) if renewed[i] => {
                    lease.renewed(sent_at, *ttl);
                    entry.retry_at = None;
                    tracing::trace!(key = %lease.key, ttl_ms = ttl.as_millis() as u64, "lock renewed");
                }
                Ok(_) => {
                    lease.declare_lost(LostReason::Taken);
                    state.entries.remove(id);
                    continue;
                }
                Err(error) => {
                    entry.retry_at = Some(retry_from + retry_interval(*ttl));
                    tracing::warn!(key = %lease.key, %error, "lock renewal failed; retrying until the lease deadline");
                }
            }
            if let Some(when) = state.schedule(*id) {
                earliest = Some(earliest.map_or(when, |e| e.min(when)));
            }
        }
        state.sweep_if_sparse();
        if state.needs_wake(earliest) {
            drop(state);
            self.wake.notify_one();
        }
    }
}
