//! Release notifications for waiters: one hub per client that multiplexes every key being
//! waited on.
//!
//! Each watched key has a generation counter. A waiter takes a [`ReleaseWatch`] *before* its
//! next acquire attempt; a release observed after that bumps the counter, so the waiter's
//! next `released().await` returns at once even if the release came before it started
//! waiting. No wake-up is lost between "busy" and "sleep".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// Called with a key when its last watcher goes away (e.g. to UNSUBSCRIBE).
type OnIdle = Box<dyn Fn(&str) + Send + Sync>;

/// Watchers per key.
#[derive(Default)]
pub(crate) struct ReleaseHub {
    slots: Mutex<HashMap<String, Slot>>,
    on_idle: Option<OnIdle>,
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

struct Slot {
    generation: watch::Sender<u64>,
    watchers: usize,
}

impl ReleaseHub {
    pub(crate) fn with_on_idle(on_idle: OnIdle) -> Self {
        ReleaseHub {
            slots: Mutex::default(),
            on_idle: Some(on_idle),
            closed: AtomicBool::new(false),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `key`. Releases seen from now on wake the returned watch.
    pub(crate) fn watch(self: &Arc<Self>, key: &str) -> ReleaseWatch {
        let mut slots = self.slots();
        let slot = slots.entry(key.to_owned()).or_insert_with(|| Slot {
            generation: watch::Sender::new(0),
            watchers: 0,
        });
        slot.watchers += 1;
        let mut rx = slot.generation.subscribe();
        rx.mark_unchanged();
        ReleaseWatch {
            parts: vec![Part {
                rx,
                hub: Arc::clone(self),
                key: key.to_owned(),
            }],
        }
    }

    /// Whether anyone is watching `key`.
    pub(crate) fn is_watched(&self, key: &str) -> bool {
        self.slots().contains_key(key)
    }

    /// Wakes the watchers of `key`.
    pub(crate) fn notify(&self, key: &str) {
        if let Some(slot) = self.slots().get(key) {
            slot.generation.send_modify(|g| *g += 1);
        }
    }

    /// Marks every watch stale and wakes it: the notification source failed, so its
    /// waiters retry and watch again instead of waiting for news that will not come.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in self.slots().values() {
            slot.generation.send_modify(|g| *g += 1);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn unwatch(&self, key: &str) {
        let mut slots = self.slots();
        let idle = match slots.get_mut(key) {
            Some(slot) => {
                slot.watchers -= 1;
                slot.watchers == 0
            }
            None => false,
        };
        if idle {
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
    rx: watch::Receiver<u64>,
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

    /// Resolves once a release of the key has been seen since the watch began or since the
    /// last call returned, or at once if the watch is stale (any of its sources died).
    pub(crate) async fn released(&mut self) -> Wake {
        if self.is_stale() {
            return Wake::Stale;
        }
        let changes = self.parts.iter_mut().map(|p| Box::pin(p.rx.changed()));
        if futures_util::future::select_all(changes).await.0.is_err() {
            std::future::pending::<()>().await;
        }
        match self.is_stale() {
            true => Wake::Stale,
            false => Wake::Released,
        }
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        for part in &self.parts {
            part.hub.unwatch(&part.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_release_before_the_wait_is_not_lost() {
        let hub = Arc::new(ReleaseHub::default());
        let mut w = hub.watch("k");
        hub.notify("k"); // between the acquire attempt and the wait
        let wake = tokio::time::timeout(Duration::from_secs(1), w.released())
            .await
            .expect("woken");
        assert_eq!(wake, Wake::Released);
    }

    #[tokio::test]
    async fn a_closed_hub_makes_every_watch_stale_at_once() {
        let hub = Arc::new(ReleaseHub::default());
        let mut before = hub.watch("k");
        hub.close();
        let mut after = hub.watch("k");
        for w in [&mut before, &mut after] {
            let wake = tokio::time::timeout(Duration::from_secs(1), w.released())
                .await
                .expect("a stale watch resolves at once");
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

    #[tokio::test]
    async fn other_keys_do_not_wake() {
        let hub = Arc::new(ReleaseHub::default());
        let mut w = hub.watch("a");
        hub.notify("b");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), w.released())
                .await
                .is_err()
        );
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
