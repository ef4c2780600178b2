//! Renewal scheduling: every lease a client holds is kept alive with batched, owner-checked
//! renewals, and declared lost when it runs out.
//!
//! There is no task per held lock. Each tokio runtime that registers leases gets one
//! [`Scheduler`]: a queue of each lease's next event and one task that sleeps until the
//! earliest. A lease is looked after on the runtime that registered it, so a client shared by
//! several runtimes (one per `#[tokio::test]`, one per thread) keeps renewing on each of them,
//! and a runtime that is dropped takes only its own scheduler with it: the next registration
//! elsewhere adopts the leases it left.
//!
//! Each renewal event has a window: it may go out from `due - ttl/6` and must go out by
//! `due`. The task wakes at the earliest *must*, and then sends every lease whose window has
//! opened, so that after one period renewals travel in full batches of [`MAX_BATCH`] keys.
//! Two queues keep that exact: one ordered by when an event may run (what to take), one by
//! when it must (when to wake). Only events whose window is open are processed.
//!
//! One renewal per lease is in flight at a time, and `extend` goes through the same queue,
//! reading the TTL when the request is sent: a renewal built before an extend can never land
//! after it. Each attempt is bounded by `min(op timeout, ttl/3, time left before the loss
//! deadline)`, so a hung attempt never uses up the whole lease and leaves room for a retry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;
use tokio::time::{Instant, sleep_until};

use crate::backend::{Backend, Renewal, Renewed};
use crate::lease::{Lease, retry_interval};
use crate::{LockError, LostReason};

/// The most keys one renewal call carries.
pub(crate) const MAX_BATCH: usize = 100;

/// The most renewal calls one wake of a scheduler has in flight at once. Enough to keep the
/// connection busy; sending every batch at once (100 calls for 10,000 locks) allocated all
/// their requests and replies together, and the process kept that peak as resident memory.
const MAX_CALLS_IN_FLIGHT: usize = 8;

/// Identifies a lease registered with a [`Renewer`].
pub(crate) type LeaseId = u64;

/// What an `extend` gets back from the scheduler.
pub(crate) type ExtendReply = oneshot::Receiver<Result<(), LockError>>;

/// The schedulers of one lock store, one per tokio runtime that registered a lease.
pub(crate) struct Renewer {
    backend: Arc<dyn Backend>,
    schedulers: Mutex<Vec<Arc<Scheduler>>>,
    next_id: AtomicU64,
}

impl fmt::Debug for Renewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let schedulers = self.schedulers();
        f.debug_struct("Renewer")
            .field("runtimes", &schedulers.len())
            .field(
                "leases",
                &schedulers
                    .iter()
                    .map(|s| s.state().entries.len())
                    .sum::<usize>(),
            )
            .finish()
    }
}

/// Where a scheduler's task is: the state machine that makes a registration always reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No task: the next registration spawns one.
    Idle,
    /// The task is processing events; it will look at the queue again before it sleeps.
    Working,
    /// The task sleeps until this instant; an earlier event must wake it.
    Sleeping(Instant),
}

struct Scheduler {
    runtime: tokio::runtime::Id,
    backend: Arc<dyn Backend>,
    state: Mutex<State>,
    /// Wakes the task. `notify_one` keeps a permit, so a wake between the task's last look
    /// at the queue and its wait is not lost.
    wake: Notify,
}

#[derive(Default)]
struct State {
    entries: HashMap<LeaseId, Entry>,
    /// `(may run from, id, generation)`: what is due (or within its window) now.
    by_start: BinaryHeap<Reverse<(Instant, LeaseId, u32)>>,
    /// `(must run by, id, generation)`: when the task has to wake.
    by_end: BinaryHeap<Reverse<(Instant, LeaseId, u32)>>,
    phase: Option<Phase>,
    task: Option<AbortHandle>,
    /// Events processed, for the tests of "only what is due".
    #[cfg(test)]
    processed: usize,
}

struct Entry {
    lease: Arc<Lease>,
    renew: bool,
    /// Bumped at each rescheduling; queued events of older generations are stale. (32 bits:
    /// an entry is kept by the ten thousand, and no stale event outlives 2^32 reschedules.)
    generation: u32,
    in_flight: bool,
    /// Set after a failed renewal: try again then rather than at `ttl/3`.
    retry_at: Option<Instant>,
    /// Bumped by each `extend`; a renewal answers the extends up to the value it was sent at.
    extend_seq: u64,
    /// The extends waiting for an answer, by sequence number; `None` when there are none
    /// (boxed: one word in every entry rather than three; extends are rare).
    extend_waiters: Option<Box<ExtendWaiters>>,
}

#[derive(Default)]
struct ExtendWaiters(Vec<(u64, oneshot::Sender<Result<(), LockError>>)>);

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("lease", &self.lease)
            .field("renew", &self.renew)
            .field("in_flight", &self.in_flight)
            .field("retry_at", &self.retry_at)
            .field(
                "extends_waiting",
                &self.extend_waiters.as_ref().map_or(0, |w| w.0.len()),
            )
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The window of this lease's next event: `(may run from, must run by)`.
    fn next_event(&self, now: Instant) -> (Instant, Instant) {
        let times = self.lease.times();
        let lost_at = times.lost_at();
        if self.in_flight {
            return (lost_at, lost_at);
        }
        if self.extend_waiters.is_some() {
            return (now, now);
        }
        if !self.renew {
            return (lost_at, lost_at);
        }
        if let Some(retry_at) = self.retry_at {
            let at = retry_at.min(lost_at);
            return (at, at);
        }
        let due = times.renew_due().min(lost_at);
        (due.checked_sub(window(times.ttl)).unwrap_or(due), due)
    }

    fn answer_extends(&mut self, upto: u64, answer: impl Fn() -> Result<(), LockError>) {
        let Some(waiters) = self.extend_waiters.take() else {
            return;
        };
        let (answered, waiting): (Vec<_>, Vec<_>) =
            waiters.0.into_iter().partition(|(seq, _)| *seq <= upto);
        if !waiting.is_empty() {
            self.extend_waiters = Some(Box::new(ExtendWaiters(waiting)));
        }
        for (_, tx) in answered {
            let _ = tx.send(answer());
        }
    }
}

/// How early a lease's renewal may go out to join a batch: half its renewal period.
fn window(ttl: Duration) -> Duration {
    ttl / 6
}

fn not_held(key: &str) -> LockError {
    LockError::NotHeld {
        key: key.to_owned(),
    }
}

impl State {
    /// Queues `id`'s next event; returns when it must run, if the lease is still held.
    fn schedule(&mut self, id: LeaseId, now: Instant) -> Option<Instant> {
        let entry = self.entries.get_mut(&id)?;
        entry.generation = entry.generation.wrapping_add(1);
        let (start, end) = entry.next_event(now);
        let generation = entry.generation;
        self.by_start.push(Reverse((start, id, generation)));
        self.by_end.push(Reverse((end, id, generation)));
        Some(end)
    }

    fn is_current(&self, id: LeaseId, generation: u32) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| e.generation == generation)
    }

    /// When the task must next wake, dropping superseded queue heads on the way.
    fn next_wake(&mut self) -> Option<Instant> {
        while let Some(&Reverse((when, id, generation))) = self.by_end.peek() {
            if self.is_current(id, generation) {
                return Some(when);
            }
            self.by_end.pop();
        }
        None
    }

    /// Rescheduling leaves superseded events in the queues, and released leases leave
    /// theirs. Sweep them when they reach half the live ones, so the queues stay close to
    /// the locks held (each event is 32 bytes, in two queues); amortised, this costs O(1)
    /// per event. The queues' memory is kept for the next events, and only given back when
    /// far more than needed (after many locks were released): shrinking and growing again
    /// every sweep made the allocator's heap grow with each renewal period.
    fn sweep_if_sparse(&mut self) {
        let live = self.entries.len();
        let limit = live + live / 2 + 64;
        if self.by_start.len() > limit || self.by_end.len() > limit {
            let entries = &self.entries;
            let current = |Reverse((_, id, generation)): &Reverse<(Instant, LeaseId, u32)>| {
                entries.get(id).is_some_and(|e| e.generation == *generation)
            };
            self.by_start.retain(current);
            self.by_end.retain(current);
            for queue in [&mut self.by_start, &mut self.by_end] {
                if queue.capacity() > 4 * limit {
                    queue.shrink_to(2 * limit);
                }
            }
        }
    }

    /// Whether the task must be woken (or started) to see an event that must run by `when`.
    fn needs_wake(&self, when: Instant) -> bool {
        match self.phase {
            Some(Phase::Sleeping(until)) => when < until,
            Some(Phase::Working) => false,
            Some(Phase::Idle) | None => true,
        }
    }

    fn remove(&mut self, id: LeaseId) -> Option<Entry> {
        let entry = self.entries.remove(&id);
        self.sweep_if_sparse();
        entry
    }
}

impl Renewer {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Renewer {
            backend,
            schedulers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn schedulers(&self) -> MutexGuard<'_, Vec<Arc<Scheduler>>> {
        // Every critical section leaves the list consistent, so a poisoned lock is usable.
        self.schedulers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current runtime's scheduler, made on first use. Leases left by schedulers whose
    /// runtime is gone are moved to it, so they are renewed (or time out) again.
    fn local(&self) -> Arc<Scheduler> {
        let runtime = tokio::runtime::Handle::current().id();
        let mut schedulers = self.schedulers();
        let mut orphans = Vec::new();
        schedulers.retain(|s| {
            if s.runtime == runtime {
                return true;
            }
            let mut state = s.state();
            if !state.runtime_gone() {
                return true;
            }
            orphans.extend(state.entries.drain());
            false
        });
        let scheduler = match schedulers.iter().find(|s| s.runtime == runtime) {
            Some(s) => Arc::clone(s),
            None => {
                let s = Arc::new(Scheduler {
                    runtime,
                    backend: Arc::clone(&self.backend),
                    state: Mutex::new(State::default()),
                    wake: Notify::new(),
                });
                schedulers.push(Arc::clone(&s));
                s
            }
        };
        drop(schedulers);
        if !orphans.is_empty() {
            tracing::debug!(
                leases = orphans.len(),
                "adopting leases whose runtime was dropped"
            );
            let now = Instant::now();
            let mut state = scheduler.state();
            for (id, mut entry) in orphans {
                entry.in_flight = false;
                state.entries.insert(id, entry);
                state.schedule(id, now);
            }
            drop(state);
            scheduler.ensure_running(Instant::now());
        }
        scheduler
    }

    /// A fresh id, unique within this store.
    pub(crate) fn next_id(&self) -> LeaseId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts keeping `lease` alive (or, with `renew == false`, only timing it out). Must be
    /// called within a tokio runtime.
    pub(crate) fn register(&self, lease: Arc<Lease>, renew: bool) -> LeaseId {
        let id = self.next_id();
        let scheduler = self.local();
        let when = {
            let mut state = scheduler.state();
            state.entries.insert(
                id,
                Entry {
                    lease,
                    renew,
                    generation: 0,
                    in_flight: false,
                    retry_at: None,
                    extend_seq: 0,
                    extend_waiters: None,
                },
            );
            state.schedule(id, Instant::now())
        };
        if let Some(when) = when {
            scheduler.ensure_running(when);
        }
        id
    }

    /// Stops looking after a lease (it was released, dropped or given up). Returns it.
    pub(crate) fn unregister(&self, id: LeaseId) -> Option<Arc<Lease>> {
        let schedulers = self.schedulers().clone();
        schedulers.iter().find_map(|s| {
            let mut state = s.state();
            let mut entry = state.remove(id)?;
            let key = entry.lease.key.clone();
            entry.answer_extends(u64::MAX, || Err(not_held(&key)));
            Some(entry.lease)
        })
    }

    /// Every lease still registered, for `close`.
    pub(crate) fn ids(&self) -> Vec<LeaseId> {
        let schedulers = self.schedulers().clone();
        schedulers
            .iter()
            .flat_map(|s| s.state().entries.keys().copied().collect::<Vec<_>>())
            .collect()
    }

    /// Asks for an owner-checked renewal of lease `id` to `ttl`, sent after any renewal
    /// already in flight, and makes `ttl` the TTL of every renewal after it. `None` if the
    /// lease is no longer registered.
    pub(crate) fn extend(&self, id: LeaseId, ttl: Duration) -> Option<ExtendReply> {
        let schedulers = self.schedulers().clone();
        for scheduler in schedulers {
            let (tx, rx) = oneshot::channel();
            let when = {
                let mut state = scheduler.state();
                let Some(entry) = state.entries.get_mut(&id) else {
                    continue;
                };
                entry.lease.set_target_ttl(ttl);
                entry.extend_seq += 1;
                let seq = entry.extend_seq;
                entry
                    .extend_waiters
                    .get_or_insert_with(Box::default)
                    .0
                    .push((seq, tx));
                entry.retry_at = None;
                state.schedule(id, Instant::now())
            };
            if let Some(when) = when {
                scheduler.ensure_running(when);
            }
            return Some(rx);
        }
        None
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Scheduler")
            .field("runtime", &self.runtime)
            .field("phase", &state.phase)
            .field("leases", &state.entries.len())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Whether the task died without emptying its queue: its runtime was dropped.
    fn runtime_gone(&self) -> bool {
        !self.entries.is_empty() && self.task.as_ref().is_none_or(AbortHandle::is_finished)
    }
}

impl Scheduler {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure the task will see an event that must run by `when`: starts it if there is
    /// none (or it died with a runtime), wakes it if it sleeps past `when`.
    fn ensure_running(self: &Arc<Self>, when: Instant) {
        let mut state = self.state();
        if state.task.as_ref().is_none_or(AbortHandle::is_finished) {
            state.phase = Some(Phase::Working);
            let task = tokio::spawn(Arc::clone(self).run());
            state.task = Some(task.abort_handle());
        } else if state.needs_wake(when) {
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
                    state.phase = Some(Phase::Idle);
                    return;
                }
                state.phase = Some(Phase::Working);
                let batch = self.collect_due(&mut state);
                if !batch.is_empty() {
                    tokio::spawn(Arc::clone(&self).renew_all(batch));
                }
                let next = state.next_wake();
                // A queue with no event (every lease in flight has a loss deadline, so this
                // is only momentary) still sleeps with a bound, never parks for good.
                let until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                state.phase = Some(Phase::Sleeping(until));
                until
            };
            tokio::select! {
                () = sleep_until(next_wake) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Fires due loss deadlines and gathers the leases whose renewal window is open.
    fn collect_due(&self, state: &mut State) -> Vec<Pending> {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(&Reverse((start, id, generation))) = state.by_start.peek() {
            if start > now {
                break;
            }
            state.by_start.pop();
            if state.is_current(id, generation) {
                due.push(id);
            }
        }
        let mut batch = Vec::new();
        for id in due {
            #[cfg(test)]
            {
                state.processed += 1;
            }
            let Some(entry) = state.entries.get_mut(&id) else {
                continue;
            };
            let lease = Arc::clone(&entry.lease);
            let times = lease.times();
            if lease.lost_reason().is_some() || times.lost_at() <= now {
                lease.declare_lost(lease.expiry_reason());
                if let Some(mut entry) = state.remove(id) {
                    entry.answer_extends(u64::MAX, || Err(not_held(&lease.key)));
                }
                continue;
            }
            let wants =
                entry.extend_waiters.is_some() || (entry.renew && entry.next_event(now).0 <= now);
            if !entry.in_flight && wants {
                match lease.renewal_ttl(now) {
                    Some(ttl) => {
                        entry.in_flight = true;
                        batch.push(Pending {
                            id,
                            lease,
                            ttl,
                            extend_seq: entry.extend_seq,
                        });
                    }
                    None => {
                        // max_hold reached: no renewal may move the lease past it.
                        entry.renew = false;
                        entry.answer_extends(u64::MAX, || {
                            Err(LockError::InvalidOption {
                                key: lease.key.clone(),
                                option: "max_hold",
                                reason: "the lock cannot be extended past its max_hold".into(),
                            })
                        });
                    }
                }
            }
            state.schedule(id, now);
        }
        batch
    }

    /// Sends the renewals due, [`MAX_BATCH`] per call and [`MAX_CALLS_IN_FLIGHT`] calls at
    /// a time.
    async fn renew_all(self: Arc<Self>, due: Vec<Pending>) {
        use futures_util::StreamExt;
        futures_util::stream::iter(due.chunks(MAX_BATCH))
            .for_each_concurrent(MAX_CALLS_IN_FLIGHT, |batch| self.renew(batch))
            .await;
    }

    /// Sends one batch of renewals and records what came back.
    async fn renew(&self, batch: &[Pending]) {
        let renewals: Vec<Renewal<'_>> = batch
            .iter()
            .map(|p| Renewal {
                key: &p.lease.key,
                token: &p.lease.token,
                ttl: p.ttl,
            })
            .collect();
        let sent_at = Instant::now();
        let limit = attempt_limit(self.backend.op_timeout(), batch, sent_at);
        // Loss deadlines fire independently meanwhile, on the scheduler's clock.
        let outcome = tokio::time::timeout(limit, self.backend.renew(&renewals)).await;
        let outcome = match outcome {
            Ok(Ok(renewed)) if renewed.len() == batch.len() => Ok(renewed),
            Ok(Ok(_)) => Err(LockError::Backend {
                key: batch[0].lease.key.clone(),
                operation: "renew",
                source: Arc::new(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "a renewal reply of the wrong length",
                ))),
            }),
            Ok(Err(e)) => Err(e.into_lock_error(&batch[0].lease.key, "renew")),
            Err(_) => Err(LockError::Timeout {
                key: batch[0].lease.key.clone(),
                operation: "renew",
                after: limit,
            }),
        };
        let mut state = self.state();
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        for (i, p) in batch.iter().enumerate() {
            let Some(entry) = state.entries.get_mut(&p.id) else {
                continue; // released meanwhile
            };
            entry.in_flight = false;
            let outcome = match &outcome {
                Ok(renewed) => match renewed[i] {
                    Renewed::Unknown { answered, needed } => Err(LockError::NoQuorum {
                        key: p.lease.key.clone(),
                        operation: "renew",
                        answered,
                        needed,
                    }),
                    other => Ok(other),
                },
                Err(e) => Err(e.clone()),
            };
            match &outcome {
                Ok(Renewed::Yes) => {
                    p.lease.renewed(sent_at, p.ttl);
                    entry.retry_at = None;
                    entry.answer_extends(p.extend_seq, || Ok(()));
                    tracing::trace!(key = %p.lease.key, ttl_ms = p.ttl.as_millis() as u64, "lock renewed");
                }
                Ok(_) => {
                    p.lease.declare_lost(LostReason::Taken);
                    if let Some(mut entry) = state.remove(p.id) {
                        entry.answer_extends(u64::MAX, || Err(not_held(&p.lease.key)));
                    }
                    continue;
                }
                Err(error) => {
                    crate::metrics::renewal_failed(&p.lease.held);
                    entry.retry_at = Some(now + retry_interval(p.ttl));
                    // An extend reports the failure; the watchdog keeps retrying.
                    let error = error.clone();
                    entry.answer_extends(p.extend_seq, || Err(error.clone()));
                    tracing::warn!(key = %p.lease.key, %error, "lock renewal failed; retrying until the lease deadline");
                }
            }
            if let Some(when) = state.schedule(p.id, now) {
                earliest = Some(earliest.map_or(when, |e| e.min(when)));
            }
        }
        state.sweep_if_sparse();
        let wake = earliest.is_some_and(|when| state.needs_wake(when));
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// One lease in a renewal batch.
#[derive(Clone)]
struct Pending {
    id: LeaseId,
    lease: Arc<Lease>,
    /// The TTL this renewal sends, read when it was sent.
    ttl: Duration,
    /// The extends this renewal answers.
    extend_seq: u64,
}

/// How long one renewal attempt may take: `min(op timeout, time left before the batch's
/// first loss deadline)`. An answer after that deadline is useless (the lease is declared
/// lost then), and until it, a slow answer is still in time: a round trip longer than
/// `ttl/3` must not lose the lock. A failed attempt is retried after [`retry_interval`].
fn attempt_limit(op_timeout: Duration, batch: &[Pending], now: Instant) -> Duration {
    let mut limit = op_timeout;
    for p in batch {
        limit = limit.min(p.lease.times().lost_at().saturating_duration_since(now));
    }
    limit.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::lease::Holds;

    fn lease(backend: &Arc<dyn Backend>, key: &str, ttl: Duration) -> Arc<Lease> {
        Arc::new(Lease::new(
            Arc::clone(backend),
            key.to_owned(),
            "t".to_owned(),
            ttl,
            Instant::now(),
            Holds::default(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn one_long_ttl_lease_does_not_make_every_wake_process_every_lease() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let renewer = Renewer::new(Arc::clone(&backend));
        renewer.register(lease(&backend, "year", crate::MAX_TTL), true);
        // 200 leases with nothing due for ten minutes...
        for i in 0..200 {
            renewer.register(
                lease(&backend, &format!("idle{i}"), Duration::from_secs(600)),
                false,
            );
        }
        // ...and one that renews every second, so the task wakes every second.
        renewer.register(lease(&backend, "busy", Duration::from_secs(3)), true);
        tokio::time::sleep(Duration::from_secs(100)).await;
        let processed = renewer.local().state().processed;
        // Before the fix the year-long lease widened every wake's horizon to 61 days, so each
        // of the ~100 wakes processed all 202 leases: about 20,000 events.
        assert!(
            processed < 1_000,
            "processed {processed} events for ~100 renewals"
        );
    }

    #[test]
    fn an_attempt_ends_by_the_loss_deadline_and_waits_out_a_slow_round_trip() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
            let ttl = crate::MIN_TTL;
            let p = Pending {
                id: 0,
                lease: lease(&backend, "k", ttl),
                ttl,
                extend_seq: 0,
            };
            let now = Instant::now() + ttl / 3;
            let limit = attempt_limit(Duration::from_secs(3), std::slice::from_ref(&p), now);
            let lost_at = p.lease.times().lost_at();
            // A hung attempt ends by the loss deadline, not after the 3 s op timeout.
            assert!(now + limit <= lost_at, "{limit:?}");
            // And a slow answer, over a round trip longer than ttl/3, is still waited for.
            let ttl = Duration::from_millis(500);
            let p = Pending {
                id: 0,
                lease: lease(&backend, "k", ttl),
                ttl,
                extend_seq: 0,
            };
            let now = Instant::now() + ttl / 3;
            let limit = attempt_limit(Duration::from_secs(3), std::slice::from_ref(&p), now);
            assert!(limit > Duration::from_millis(300), "{limit:?}");
        });
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
            let renewer = Renewer::new(Arc::clone(&backend));
            let l = Arc::new(Lease::new(
                Arc::clone(&backend),
                "k".into(),
                "s3cret-token".into(),
                Duration::from_secs(1),
                Instant::now(),
                Holds::default(),
            ));
            renewer.register(Arc::clone(&l), true);
            let scheduler = renewer.local();
            let entry = format!("{:?}", scheduler.state().entries.values().next().unwrap());
            for shown in [
                format!("{l:?}"),
                format!("{renewer:?}"),
                format!("{scheduler:?}"),
                entry,
            ] {
                assert!(!shown.contains("s3cret"), "{shown}");
            }
        });
    }
}
