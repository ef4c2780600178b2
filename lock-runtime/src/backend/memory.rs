//! An in-process lock store with the same semantics as Redis: tokens, TTL expiry, fencing
//! counters and the holder's remaining TTL. It is for users' unit tests, so it runs on
//! tokio's clock: tests with a paused clock (`#[tokio::test(start_paused = true)]`) see
//! leases expire as they advance time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::wakeup::{ReleaseHub, ReleaseWatch};
use super::{
    AcquireArgs, Acquired, Backend, BackendResult, BoxFuture, Renewal, Renewed, ScanFrom, ScanPage,
    Stored,
};
use crate::inspect::glob_match;

#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    state: Mutex<State>,
    releases: Arc<ReleaseHub>,
}

#[derive(Debug, Default)]
struct State {
    locks: HashMap<String, Entry>,
    /// Fencing counters never expire, as in Redis.
    fences: HashMap<String, u64>,
}

#[derive(Debug)]
struct Entry {
    token: String,
    expires_at: Instant,
}

impl State {
    /// The live entry at `key`, dropping it first if it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.locks.get(key).is_some_and(|e| e.expires_at <= now) {
            self.locks.remove(key);
        }
        self.locks.get_mut(key)
    }
}

impl MemoryBackend {
    fn with_state<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        // A panic while the lock is held cannot leave the map half-updated (every update is
        // a single insert or remove), so a poisoned mutex is safe to keep using.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state, Instant::now())
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, BackendResult<T>> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Backend for MemoryBackend {
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>> {
        ready(self.with_state(|state, now| {
            if let Some(holder) = state.live(args.key, now) {
                return Acquired::Busy {
                    holder_ttl: Some(holder.expires_at - now),
                };
            }
            state.locks.insert(
                args.key.to_owned(),
                Entry {
                    token: args.token.to_owned(),
                    expires_at: now + args.ttl,
                },
            );
            let fence = args.fence_key.map(|fk| {
                let counter = state.fences.entry(fk.to_owned()).or_insert(0);
                if !args.read_fence {
                    *counter += 1;
                }
                *counter
            });
            Acquired::Yes { fence }
        }))
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        let released = self.with_state(|state, now| {
            let ours = state.live(key, now).is_some_and(|e| e.token == token);
            if ours {
                state.locks.remove(key);
            }
            ours
        });
        if released {
            self.releases.notify(key);
        }
        ready(released)
    }

    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<Renewed>>> {
        ready(self.with_state(|state, now| {
            batch
                .iter()
                .map(|r| match state.live(r.key, now) {
                    Some(e) if e.token == r.token => {
                        e.expires_at = now + r.ttl;
                        Renewed::Yes
                    }
                    _ => Renewed::No,
                })
                .collect()
        }))
    }

    fn ttl_if_held<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<Duration>>> {
        ready(self.with_state(|state, now| {
            state
                .live(key, now)
                .filter(|e| e.token == token)
                .map(|e| e.expires_at - now)
        }))
    }

    fn is_held<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        ready(self.with_state(|state, now| state.live(key, now).is_some_and(|e| e.token == token)))
    }

    fn watch_releases<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<ReleaseWatch>> {
        let watch = ReleaseHub::watch(&self.releases, key);
        // Releases are announced in process: the watch listens as soon as it exists.
        self.releases.confirm(key);
        ready(watch)
    }

    fn watch_if_queued(&self, key: &str) -> Option<ReleaseWatch> {
        self.releases.watch_if_queued(key)
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
        fence_key: Option<&'a str>,
    ) -> BoxFuture<'a, BackendResult<Stored>> {
        ready(self.with_state(|state, now| {
            let fence = fence_key.and_then(|fk| state.fences.get(fk).copied());
            match state.live(key, now) {
                Some(e) => Stored {
                    value: Some(e.token.clone()),
                    ttl: Some(e.expires_at - now),
                    fence,
                },
                None => Stored {
                    fence,
                    ..Stored::default()
                },
            }
        }))
    }

    fn force_release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<Stored>> {
        let found = self.with_state(|state, now| {
            state.live(key, now)?;
            let e = state.locks.remove(key)?;
            Some(Stored {
                value: Some(e.token),
                ttl: Some(e.expires_at - now),
                fence: None,
            })
        });
        if found.is_some() {
            self.releases.notify(key);
        }
        ready(found.unwrap_or_default())
    }

    fn scan<'a>(
        &'a self,
        _from: ScanFrom,
        pattern: &'a str,
        _count: usize,
    ) -> BoxFuture<'a, BackendResult<ScanPage>> {
        // Everything in one step: the map is in memory, and a test's maps are small.
        ready(self.with_state(|state, now| {
            let mut keys: Vec<String> = state
                .locks
                .iter()
                .filter(|(k, e)| e.expires_at > now && glob_match(pattern, k))
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort_unstable();
            ScanPage { keys, next: None }
        }))
    }

    fn op_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
}
