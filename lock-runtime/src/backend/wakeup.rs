//! Release notifications for waiters: one hub per client that multiplexes every key being
//! waited on, and hands each release to **one** local waiter.
//!
//! - Each watched key has a FIFO queue of the watches taken on it in this client. A release
//!   wakes the first watch in the queue that does not already hold a wake, so one release
//!   costs at most one acquire attempt per waiting client, not one per waiting task.
//! - A wake stays with its watch until the waiter makes its next attempt
//!   ([`ReleaseWatch::consume`]): a release that lands between an attempt and the wait is
//!   not lost, and a release that lands while the attempt is in flight wakes it again.
//! - A watch dropped while it holds a wake it has not acted on (the waiter gave up or was
//!   cancelled) passes the wake to the next waiter, so no hand-off is lost.
//! - When the notification source dies ([`ReleaseHub::close`]) every watch wakes, stale.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Called with a key when its last watcher goes away (e.g. to UNSUBSCRIBE).
type OnIdle = Box<dyn Fn(&str) + Send + Sync>;

/// Watchers per key.
#[derive(Default)]
pub(crate) struct ReleaseHub {
    slots: Mutex<HashMap<String, Slot>>,
    on_idle: Option<OnIdle>,
    /// Called with a key when this client's waiters have taken it [`ROTATE_EVERY`] times
    /// since the last call: the source should move this client to the back of the order in
    /// which it announces releases (see [`ReleaseWatch::won`]).
    on_rotate: Option<OnIdle>,
    /// Set when the notification source is gone for good: every watch is then stale.
    closed: AtomicBool,
}

/// What woke a [`ReleaseWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A release of the key was announced.
    Released,
    /// The notification source died: no more news will come through this watch, so watch
    /// again (on a new connection).
    Stale,
}

impl std::fmt::Debug for ReleaseHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseHub")
            .field("keys", &self.slots().len())
            .finish()
    }
}

/// One watch's place in a key's queue.
#[derive(Default)]
struct Waiter {
    /// A wake was handed to this watch and its waiter has not made an attempt since.
    woken: AtomicBool,
    /// The waiter's attempt is in flight: if the watch is dropped now (the waiter was
    /// cancelled), that attempt may never have reached the server, so its wake is passed on.
    attempting: AtomicBool,
    /// Wakes the waiter's task. Spurious permits are harmless: `released` re-checks `woken`.
    notify: Notify,
}

impl Waiter {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn is_woken(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Slot {
    /// In the order the watches were taken: the first is woken first.
    queue: VecDeque<Arc<Waiter>>,
    /// The notification source confirmed that it listens for this key (e.g. a SUBSCRIBE
    /// was acknowledged) since the slot was made: later watches need not ask again.
    confirmed: bool,
    /// Locks taken by this client's woken waiters since the slot was made.
    wins: u32,
}

/// How many hand-offs a client's waiters take before the client asks to hear of releases
/// last. Redis announces a release to a channel's subscribers in the order they
/// subscribed, and the first to hear tends to win: without rotating, one client of several
/// took most of the hand-offs (P6). Each rotation costs an UNSUBSCRIBE and a SUBSCRIBE.
pub(crate) const ROTATE_EVERY: u32 = 4;

impl Slot {
    /// Hands one wake to the first waiter that holds none, other than `except`. If every
    /// waiter holds one already, each of them attempts after this release anyway.
    fn wake_one(&self, except: Option<&Arc<Waiter>>) {
        let next = self
            .queue
            .iter()
            .find(|w| !w.is_woken() && except.is_none_or(|e| !Arc::ptr_eq(w, e)));
        if let Some(waiter) = next {
            waiter.wake();
        }
    }
}

impl ReleaseHub {
    /// With an idle hook only (the cluster's subscriber, and tests).
    #[cfg_attr(not(any(test, feature = "cluster")), allow(dead_code))]
    pub(crate) fn with_on_idle(on_idle: OnIdle) -> Self {
        ReleaseHub {
            on_idle: Some(on_idle),
            ..ReleaseHub::default()
        }
    }

    /// With a rotation hook too: see [`ReleaseWatch::won`].
    pub(crate) fn with_hooks(on_idle: OnIdle, on_rotate: OnIdle) -> Self {
        ReleaseHub {
            on_idle: Some(on_idle),
            on_rotate: Some(on_rotate),
            ..ReleaseHub::default()
        }
    }

    /// Counts a lock taken by a woken waiter of this client; every [`ROTATE_EVERY`]th
    /// calls `on_rotate`.
    fn won(&self, key: &str) {
        let rotate = match self.slots().get_mut(key) {
            Some(slot) => {
                slot.wins += 1;
                slot.wins % ROTATE_EVERY == 0
            }
            None => false,
        };
        if rotate && let Some(on_rotate) = &self.on_rotate {
            on_rotate(key);
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `key`, at the back of its queue. Releases seen from now on can wake
    /// the returned watch.
    pub(crate) fn watch(self: &Arc<Self>, key: &str) -> ReleaseWatch {
        self.watch_confirmed(key).0
    }

    /// [`watch`](Self::watch), and whether the source already confirmed that it listens for
    /// `key` (see [`confirm`](Self::confirm)); if not, the caller must make it listen before
    /// relying on the watch.
    pub(crate) fn watch_confirmed(self: &Arc<Self>, key: &str) -> (ReleaseWatch, bool) {
        let waiter = Arc::new(Waiter::default());
        let confirmed = {
            let mut slots = self.slots();
            let slot = slots.entry(key.to_owned()).or_default();
            slot.queue.push_back(Arc::clone(&waiter));
            slot.confirmed
        };
        (self.watch_of(key, waiter), confirmed)
    }

    /// A watch at the back of `key`'s queue, only if others already wait there and the
    /// source confirmed it listens for `key`: then the new waiter can queue behind them
    /// without an attempt or a subscription of its own.
    pub(crate) fn watch_if_queued(self: &Arc<Self>, key: &str) -> Option<ReleaseWatch> {
        if self.is_closed() {
            return None;
        }
        let waiter = Arc::new(Waiter::default());
        {
            let mut slots = self.slots();
            let slot = slots.get_mut(key)?;
            if !slot.confirmed || slot.queue.is_empty() {
                return None;
            }
            slot.queue.push_back(Arc::clone(&waiter));
        }
        Some(self.watch_of(key, waiter))
    }

    /// Notes that the source listens for `key` now, for as long as anyone watches it.
    pub(crate) fn confirm(&self, key: &str) {
        if let Some(slot) = self.slots().get_mut(key) {
            slot.confirmed = true;
        }
    }

    fn watch_of(self: &Arc<Self>, key: &str, waiter: Arc<Waiter>) -> ReleaseWatch {
        ReleaseWatch {
            parts: vec![Part {
                waiter,
                hub: Arc::clone(self),
                key: key.to_owned(),
            }],
        }
    }

    /// Whether anyone is watching `key`.
    pub(crate) fn is_watched(&self, key: &str) -> bool {
        self.slots().contains_key(key)
    }

    /// A release of `key` was announced: wakes its first waiter that holds no wake yet.
    pub(crate) fn notify(&self, key: &str) {
        if let Some(slot) = self.slots().get(key) {
            slot.wake_one(None);
        }
    }

    /// Marks every watch stale and wakes it: the notification source failed, so its
    /// waiters retry and watch again instead of waiting for news that will not come.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in self.slots().values() {
            for waiter in &slot.queue {
                waiter.wake();
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes `waiter` out of `key`'s queue, passing on a wake it held and had not acted on.
    fn unwatch(&self, key: &str, waiter: &Arc<Waiter>) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(key) else {
            return;
        };
        if let Some(at) = slot.queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            slot.queue.remove(at);
        }
        let owed = waiter.is_woken() || waiter.attempting.load(Ordering::Acquire);
        if owed && !self.is_closed() {
            slot.wake_one(Some(waiter));
        }
        if slot.queue.is_empty() {
            slots.remove(key);
            drop(slots);
            if let Some(on_idle) = &self.on_idle {
                on_idle(key);
            }
        }
    }
}

/// One waiter's interest in releases of one key, on one hub or several (a quorum of
/// servers: a release announced by any of them wakes the waiter).
pub(crate) struct ReleaseWatch {
    parts: Vec<Part>,
}

struct Part {
    waiter: Arc<Waiter>,
    hub: Arc<ReleaseHub>,
    key: String,
}

impl ReleaseWatch {
    /// One watch over several: it wakes when any of them would.
    pub(crate) fn merge(watches: impl IntoIterator<Item = ReleaseWatch>) -> ReleaseWatch {
        ReleaseWatch {
            parts: watches
                .into_iter()
                .flat_map(|mut w| std::mem::take(&mut w.parts))
                .collect(),
        }
    }

    fn is_stale(&self) -> bool {
        self.parts.iter().any(|p| p.hub.is_closed())
    }

    fn is_woken(&self) -> bool {
        self.parts.iter().any(|p| p.waiter.is_woken())
    }

    /// The waiter acts on the wakes it holds: call it just before each acquire attempt, and
    /// when the lock is taken. A release announced after this wakes the watch again; a
    /// watch dropped without calling it after a wake passes that wake on.
    pub(crate) fn consume(&mut self) {
        for part in &self.parts {
            part.waiter.attempting.store(true, Ordering::Release);
            part.waiter.woken.store(false, Ordering::Release);
        }
    }

    /// The attempt begun at [`consume`](Self::consume) has its answer: a watch dropped
    /// from now on passes on only a wake that came in since.
    pub(crate) fn settled(&mut self) {
        for part in &self.parts {
            part.waiter.attempting.store(false, Ordering::Release);
        }
    }

    /// The waiter took the lock: like [`consume`](Self::consume), and counts the win for
    /// this client's turn-taking (see [`ROTATE_EVERY`]).
    pub(crate) fn won(&mut self) {
        self.consume();
        self.settled();
        for part in &self.parts {
            part.hub.won(&part.key);
        }
    }

    /// Resolves once this watch holds a wake (a release was handed to it since the watch
    /// began or since the last [`consume`](Self::consume)), or at once if the watch is stale
    /// (any of its sources died). It does not consume the wake.
    pub(crate) async fn released(&mut self) -> Wake {
        loop {
            if self.is_stale() {
                return Wake::Stale;
            }
            if self.is_woken() {
                return Wake::Released;
            }
            if self.parts.is_empty() {
                std::future::pending::<()>().await;
            }
            // A wake between the check above and this registration leaves a permit, so
            // `notified` returns at once; a stale permit only costs one more turn.
            let woken = self
                .parts
                .iter()
                .map(|p| Box::pin(p.waiter.notify.notified()));
            futures_util::future::select_all(woken).await;
        }
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        for part in &self.parts {
            part.hub.unwatch(&part.key, &part.waiter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Whether the watch holds a wake right now (one poll, no waiting).
    fn woken_now(w: &mut ReleaseWatch) -> Option<Wake> {
        w.released().now_or_never()
    }

    #[tokio::test]
    async fn a_release_before_the_wait_is_not_lost() {
        let hub = Arc::new(ReleaseHub::default());
        let mut w = hub.watch("k");
        w.consume(); // the acquire attempt
        hub.notify("k"); // between the acquire attempt and the wait
        let wake = tokio::time::timeout(Duration::from_secs(1), w.released())
            .await
            .expect("woken");
        assert_eq!(wake, Wake::Released);
    }

    #[tokio::test]
    async fn a_release_wakes_a_waiter_that_is_already_waiting() {
        let hub = Arc::new(ReleaseHub::default());
        let mut w = hub.watch("k");
        let notifier = {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                hub.notify("k");
            })
        };
        let wake = tokio::time::timeout(Duration::from_secs(5), w.released())
            .await
            .expect("woken");
        assert_eq!(wake, Wake::Released);
        notifier.await.unwrap();
    }

    #[test]
    fn one_release_wakes_one_waiter_first_come_first_woken() {
        let hub = Arc::new(ReleaseHub::default());
        let mut ws: Vec<_> = (0..4).map(|_| hub.watch("k")).collect();
        hub.notify("k");
        let woken: Vec<bool> = ws.iter_mut().map(|w| woken_now(w).is_some()).collect();
        assert_eq!(woken, [true, false, false, false]);
        // The first waiter attempts and loses (someone else took the lock): it keeps its
        // place, and the next release is handed to it again.
        ws[0].consume();
        hub.notify("k");
        let woken: Vec<bool> = ws.iter_mut().map(|w| woken_now(w).is_some()).collect();
        assert_eq!(woken, [true, false, false, false]);
        // It takes the lock and leaves: the next release goes to the second.
        let mut first = ws.remove(0);
        first.won();
        drop(first);
        hub.notify("k");
        let woken: Vec<bool> = ws.iter_mut().map(|w| woken_now(w).is_some()).collect();
        assert_eq!(woken, [true, false, false]);
    }

    #[test]
    fn a_release_during_the_woken_waiters_attempt_wakes_it_again() {
        let hub = Arc::new(ReleaseHub::default());
        let mut a = hub.watch("k");
        let mut b = hub.watch("k");
        hub.notify("k");
        a.consume(); // its attempt is in flight
        hub.notify("k"); // a release it may have missed
        assert_eq!(woken_now(&mut a), Some(Wake::Released));
        assert_eq!(woken_now(&mut b), None);
    }

    #[test]
    fn a_second_release_before_the_first_is_acted_on_wakes_the_next_waiter() {
        let hub = Arc::new(ReleaseHub::default());
        let mut a = hub.watch("k");
        let mut b = hub.watch("k");
        let mut c = hub.watch("k");
        hub.notify("k");
        hub.notify("k");
        assert!(woken_now(&mut a).is_some());
        assert!(woken_now(&mut b).is_some());
        assert!(woken_now(&mut c).is_none());
    }

    #[test]
    fn a_woken_waiter_that_gives_up_passes_the_wake_on() {
        let hub = Arc::new(ReleaseHub::default());
        let a = hub.watch("k");
        let mut b = hub.watch("k");
        hub.notify("k");
        assert_eq!(woken_now(&mut b), None);
        drop(a); // its wait ran out, or its future was dropped, before it attempted
        assert_eq!(woken_now(&mut b), Some(Wake::Released));
    }

    #[test]
    fn a_waiter_that_took_the_lock_passes_nothing_on() {
        let hub = Arc::new(ReleaseHub::default());
        let mut a = hub.watch("k");
        let mut b = hub.watch("k");
        hub.notify("k");
        a.won(); // it acted on the wake: attempted and took the lock
        drop(a);
        assert_eq!(woken_now(&mut b), None);
    }

    #[test]
    fn a_waiter_cancelled_while_its_attempt_is_in_flight_passes_the_wake_on() {
        let hub = Arc::new(ReleaseHub::default());
        let mut a = hub.watch("k");
        let mut b = hub.watch("k");
        hub.notify("k");
        a.consume(); // the attempt is sent, and may never reach the server
        drop(a);
        assert_eq!(woken_now(&mut b), Some(Wake::Released));
    }

    #[test]
    fn a_waiter_that_lost_its_attempt_and_gave_up_passes_nothing_on() {
        let hub = Arc::new(ReleaseHub::default());
        let mut a = hub.watch("k");
        let mut b = hub.watch("k");
        hub.notify("k");
        a.consume();
        a.settled(); // busy: someone else took the lock, and will announce its release
        drop(a);
        assert_eq!(woken_now(&mut b), None);
    }

    #[test]
    fn a_closed_hub_makes_every_watch_stale_at_once() {
        let hub = Arc::new(ReleaseHub::default());
        let mut before: Vec<_> = (0..3).map(|_| hub.watch("k")).collect();
        hub.close();
        let mut after = hub.watch("k");
        for w in before.iter_mut().chain([&mut after]) {
            assert_eq!(
                woken_now(w),
                Some(Wake::Stale),
                "a stale watch resolves at once"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_hub_wakes_every_waiter_already_waiting() {
        let hub = Arc::new(ReleaseHub::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let mut w = hub.watch("k");
                tokio::spawn(async move { w.released().await })
            })
            .collect();
        tokio::task::yield_now().await;
        hub.close();
        for waiter in waiters {
            let wake = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap();
            assert_eq!(wake, Wake::Stale);
        }
    }

    #[tokio::test]
    async fn a_merged_watch_wakes_on_any_of_its_sources() {
        let hubs: Vec<_> = (0..3).map(|_| Arc::new(ReleaseHub::default())).collect();
        let mut w = ReleaseWatch::merge(hubs.iter().map(|h| h.watch("k")));
        hubs[2].notify("k");
        let wake = tokio::time::timeout(Duration::from_secs(1), w.released())
            .await
            .expect("woken by the third source");
        assert_eq!(wake, Wake::Released);
        hubs[1].close();
        assert_eq!(w.released().await, Wake::Stale);
        drop(w);
        assert!(hubs.iter().all(|h| !h.is_watched("k")));
    }

    #[test]
    fn a_merged_watch_that_gives_up_passes_each_wake_on_where_it_came_from() {
        let hubs: Vec<_> = (0..3).map(|_| Arc::new(ReleaseHub::default())).collect();
        let first = ReleaseWatch::merge(hubs.iter().map(|h| h.watch("k")));
        let mut second = ReleaseWatch::merge(hubs.iter().map(|h| h.watch("k")));
        hubs[0].notify("k");
        hubs[1].notify("k");
        assert_eq!(woken_now(&mut second), None);
        drop(first);
        assert_eq!(woken_now(&mut second), Some(Wake::Released));
        second.consume();
        assert_eq!(
            woken_now(&mut second),
            None,
            "the third hub announced nothing"
        );
    }

    #[test]
    fn a_waiter_queues_behind_others_only_once_the_source_listens() {
        let hub = Arc::new(ReleaseHub::default());
        assert!(hub.watch_if_queued("k").is_none(), "no one waits yet");
        let (mut first, confirmed) = hub.watch_confirmed("k");
        assert!(!confirmed);
        assert!(hub.watch_if_queued("k").is_none(), "not confirmed yet");
        hub.confirm("k");
        let mut second = hub.watch_if_queued("k").expect("queued behind the first");
        hub.notify("k");
        assert!(woken_now(&mut first).is_some());
        assert!(woken_now(&mut second).is_none());
        drop(first);
        drop(second);
        assert!(!hub.is_watched("k"));
        let (_again, confirmed) = hub.watch_confirmed("k");
        assert!(
            !confirmed,
            "a key watched anew needs its subscription again"
        );
    }

    #[test]
    fn every_fourth_win_asks_the_source_to_rotate() {
        let rotations = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&rotations);
        let hub = Arc::new(ReleaseHub::with_hooks(
            Box::new(|_| {}),
            Box::new(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
        ));
        let _queued = hub.watch("k");
        for _ in 0..2 * ROTATE_EVERY {
            hub.watch("k").won();
        }
        assert_eq!(rotations.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn other_keys_do_not_wake() {
        let hub = Arc::new(ReleaseHub::default());
        let mut w = hub.watch("a");
        hub.notify("b");
        assert_eq!(woken_now(&mut w), None);
    }

    #[test]
    fn the_last_watcher_leaving_calls_on_idle_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let hub = Arc::new(ReleaseHub::with_on_idle(Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        })));
        let a = hub.watch("k");
        let b = hub.watch("k");
        drop(a);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(hub.is_watched("k"));
        drop(b);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!hub.is_watched("k"));
    }
}
