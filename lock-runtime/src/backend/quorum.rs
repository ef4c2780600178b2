//! A quorum of independent Redis masters (Redlock), behind the same [`Backend`] trait as one
//! server: waiting, the watchdog, cancellation on loss, re-entry and the attribute work on
//! it unchanged.
//!
//! - Every operation goes to all nodes at once, bounded by a per-node timeout short
//!   relative to the TTL; a majority (`n/2 + 1`) must agree. An operation returns as soon as
//!   its outcome is settled (a majority granted, say), not when the slowest node answers.
//!   Acquires still running then are abandoned (a late grant is part of the lock, or undone
//!   by token); releases still running finish in the background, and `close` waits for them.
//! - **Acquire** counts only if a majority said yes *and* the lease is still valid
//!   (`ttl - elapsed - drift > 0`). Otherwise the token is released on every node, and the
//!   answer is `Busy` (a holder exists) or `NoQuorum` (too few nodes answered).
//! - **Renewal** needs a majority too. A renewal that fails never deletes anything (rslock
//!   deletes the lock when an extend fails); when no majority renews before the deadline,
//!   the lock is lost and the body cancelled, as on one node.
//! - **Fencing tokens** strictly increase across holders even when they reach different
//!   majorities: the counter is a max-register over a quorum. The acquire reads each node's
//!   counter atomically with its `SET NX`; then `max + 1` is written, owner-checked, with a
//!   set-if-greater script to the nodes that granted the lock, and the guard exists only if
//!   a majority took it while the lease was valid. Any later holder's majority shares a node
//!   with that one, on which its `SET NX` (and so its read) came after our write: it reads at
//!   least our value. That costs one more round trip, only with fencing on.
//! - **Restarts:** a node that restarts empty forgets both locks and counters, as for every
//!   Redlock. Delay its restart beyond the longest TTL, or run it with `appendfsync always`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::redis::RedisBackend;
use super::wakeup::ReleaseWatch;
use super::{
    AcquireArgs, Acquired, Backend, BackendResult, BoxFuture, Renewal, Renewed, ScanFrom, ScanPage,
    Stored,
};
use crate::error::BackendError;
use crate::lease::drift;

/// The per-node timeout when none is configured: generous for one data centre, and short
/// against the default 30 s TTL.
pub(crate) const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(50);

pub(crate) struct QuorumBackend {
    /// Shared, so that a release can leave its last nodes to a background task.
    nodes: Vec<Arc<RedisBackend>>,
    node_timeout: Duration,
    /// Releases still reaching their last nodes after their answer was decided.
    stragglers: Arc<Stragglers>,
}

impl fmt::Debug for QuorumBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quorum")
            .field("nodes", &self.nodes)
            .field("quorum", &self.quorum())
            .field("node_timeout", &self.node_timeout)
            .finish()
    }
}

/// One node's answer, or `None` if it failed or did not answer in time.
type Answers<T> = Vec<Option<T>>;

/// Counts background tasks finishing releases; [`Backend::settle`] waits for them.
#[derive(Default)]
struct Stragglers {
    running: AtomicUsize,
    done: Notify,
}

/// One background task counted in [`Stragglers`] until dropped.
struct Straggling(Arc<Stragglers>);

impl Straggling {
    fn new(stragglers: &Arc<Stragglers>) -> Self {
        stragglers.running.fetch_add(1, Ordering::AcqRel);
        Straggling(Arc::clone(stragglers))
    }
}

impl Drop for Straggling {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

/// One request sent to every node at once, and the answers as they come in. Polled by
/// whoever awaits it, with a single timer for the whole round: no task or timer per node.
struct Round<T, F> {
    /// The calls still running, by node; `None` once answered, failed, or not asked.
    calls: Vec<Option<F>>,
    /// Each node's answer; `None` while running, after a failure, or if not asked.
    answers: Vec<Option<T>>,
    /// Calls still running.
    pending: usize,
}

impl<T, F> Round<T, F>
where
    F: Future<Output = BackendResult<T>> + Unpin,
{
    /// Starts a round; `None` for a node that is not asked. Nothing is sent until the round
    /// is first polled.
    fn new(calls: impl IntoIterator<Item = Option<F>>) -> Self {
        let calls: Vec<Option<F>> = calls.into_iter().collect();
        let pending = calls.iter().filter(|c| c.is_some()).count();
        let answers = calls.iter().map(|_| None).collect();
        Round {
            calls,
            answers,
            pending,
        }
    }

    /// Nodes that answered.
    fn answered(&self) -> usize {
        self.answers.iter().filter(|a| a.is_some()).count()
    }

    /// Nodes whose answer satisfies `which`.
    fn count(&self, which: impl Fn(&T) -> bool) -> usize {
        self.answers.iter().flatten().filter(|a| which(a)).count()
    }

    /// Runs the round until every call has finished, `deadline` passes, or `decided` says
    /// the answers so far settle the outcome (whatever the rest would say). Calls still
    /// running stay in the round: dropping it abandons them, [`take_running`] keeps them.
    ///
    /// [`take_running`]: Self::take_running
    async fn until(&mut self, deadline: Instant, decided: impl Fn(&Self) -> bool) {
        if self.pending == 0 {
            return;
        }
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        poll_fn(|cx| {
            self.poll_calls(cx);
            if self.pending == 0 || decided(self) {
                return Poll::Ready(());
            }
            timer.as_mut().poll(cx)
        })
        .await;
    }

    fn poll_calls(&mut self, cx: &mut Context<'_>) {
        for (node, slot) in self.calls.iter_mut().enumerate() {
            let Some(call) = slot else { continue };
            let Poll::Ready(result) = Pin::new(call).poll(cx) else {
                continue;
            };
            *slot = None;
            self.pending -= 1;
            match result {
                Ok(answer) => self.answers[node] = Some(answer),
                Err(e) => tracing::debug!(node, error = ?e, "quorum node failed"),
            }
        }
    }

    /// The calls still running, by node; the round keeps none of them.
    fn take_running(&mut self) -> Vec<Option<F>> {
        self.pending = 0;
        std::mem::take(&mut self.calls)
    }
}

/// A key and a token in one allocation, owned, for calls that may outlive the request.
#[derive(Clone)]
struct KeyToken {
    both: Arc<str>,
    split: usize,
}

impl KeyToken {
    fn new(key: &str, token: &str) -> Self {
        let mut both = String::with_capacity(key.len() + token.len());
        both.push_str(key);
        both.push_str(token);
        KeyToken {
            both: both.into(),
            split: key.len(),
        }
    }

    fn key(&self) -> &str {
        &self.both[..self.split]
    }

    fn token(&self) -> &str {
        &self.both[self.split..]
    }
}

impl QuorumBackend {
    pub(crate) fn new(nodes: Vec<RedisBackend>, node_timeout: Duration) -> Self {
        QuorumBackend {
            nodes: nodes.into_iter().map(Arc::new).collect(),
            node_timeout,
            stragglers: Arc::default(),
        }
    }

    /// How many nodes answered the connect.
    pub(crate) fn reachable(&self) -> usize {
        self.nodes.iter().filter(|n| n.reachable_at_start()).count()
    }

    /// A majority of the nodes.
    pub(crate) fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// The per-node timeout for a lock of `ttl`: the configured one, and never more than a
    /// tenth of the TTL, so that slow nodes cannot use up the lease.
    fn node_timeout(&self, ttl: Duration) -> Duration {
        self.node_timeout
            .min(ttl / 10)
            .max(Duration::from_millis(1))
    }

    /// A little under the bound `bounded()` puts around a whole call: how long a request
    /// whose outcome matters more than its speed (release, reads) may wait for answers.
    fn hard_limit(&self) -> Duration {
        self.op_timeout().saturating_sub(Duration::from_millis(10))
    }

    /// Starts a round of `call` on every node.
    fn round<'a, T>(
        &'a self,
        call: impl Fn(&'a RedisBackend) -> BoxFuture<'a, BackendResult<T>>,
    ) -> Round<T, BoxFuture<'a, BackendResult<T>>> {
        Round::new(self.nodes.iter().map(|node| Some(call(node))))
    }

    /// Runs `call` on every node at once, each bounded by `limit`, and waits for them all.
    async fn on_all<'a, T>(
        &'a self,
        limit: Duration,
        call: impl Fn(&'a RedisBackend) -> BoxFuture<'a, BackendResult<T>>,
    ) -> Answers<T> {
        let mut round = self.round(call);
        round.until(Instant::now() + limit, |_| false).await;
        round.answers
    }

    /// Like [`on_all`](Self::on_all), for requests whose outcome matters more than their
    /// speed (reads, operator calls): answers are awaited up to `self.node_timeout`, and
    /// past it only while `decided` says the answers so far settle nothing, up to the
    /// backend's operation timeout. A loaded node that is a little late then still counts,
    /// and a stopped one costs nothing once a majority has answered.
    async fn on_all_until_decided<'a, T>(
        &'a self,
        call: impl Fn(&'a RedisBackend) -> BoxFuture<'a, BackendResult<T>>,
        decided: impl Fn(&Answers<T>) -> bool,
    ) -> Answers<T> {
        let started = Instant::now();
        let mut round = self.round(call);
        round.until(started + self.node_timeout, |_| false).await;
        round
            .until(started + self.hard_limit(), |r| decided(&r.answers))
            .await;
        round.answers
    }

    /// Releases `token` at `key`, best effort and unannounced, on the nodes `on` marks:
    /// after an attempt that did not win. On a node whose acquire was still running, the
    /// undo goes down the same connection behind the `SET`, so it lands after it; the
    /// caller drops that acquire first, so a `SET` not yet sent never goes out.
    async fn undo(&self, key: &str, token: &str, limit: Duration, on: &[bool]) {
        let mut round = Round::new(
            self.nodes
                .iter()
                .zip(on)
                .map(|(node, &on)| on.then(|| node.release_quietly(key, token))),
        );
        round.until(Instant::now() + limit, |_| false).await;
    }

    /// The fencing round: raise each node's counter to `max + 1`, owner-checked, where `max`
    /// is the highest counter the granting nodes read. `Some(token)` once a majority took
    /// it.
    ///
    /// A node counts if its owner check passed, including one whose grant came too late to
    /// be read: it holds our key, so our write applied there (or its counter was already
    /// higher), and every node counted ends at `max + 1` or above. The value is above every
    /// earlier holder's because the grants read come from a majority.
    async fn raise_fence(
        &self,
        key: &str,
        token: &str,
        fence_key: &str,
        granted: &[Option<Acquired>],
        limit: Duration,
    ) -> Option<u64> {
        let max = granted
            .iter()
            .filter_map(|a| match a {
                Some(Acquired::Yes { fence }) => *fence,
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let next = max + 1;
        let quorum = self.quorum();
        let mut round = self.round(|node| node.raise_fence(key, token, fence_key, next));
        round
            .until(Instant::now() + limit, |r| {
                let took = r.count(|&ours| ours);
                took >= quorum || took + r.pending < quorum
            })
            .await;
        (round.count(|&ours| ours) >= quorum).then_some(next)
    }

    /// Finishes `calls` in a background task counted until it ends, so that
    /// [`settle`](Backend::settle) (and so `close`) waits for them; inline without a runtime.
    async fn finish_in_background(
        &self,
        calls: Vec<Option<BoxFuture<'static, BackendResult<bool>>>>,
        until: Instant,
    ) {
        let mut round = Round::new(calls);
        if round.pending == 0 {
            return;
        }
        let counted = Straggling::new(&self.stragglers);
        let finish = async move {
            round.until(until, |_| false).await;
            if round.pending > 0 {
                tracing::debug!(
                    nodes = round.pending,
                    "a release did not reach every node in time; the lock expires there with its TTL"
                );
            }
            drop(counted);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(finish)),
            Err(_) => finish.await,
        }
    }
}

/// For the operator calls (`inspect`, `force_release`): what a quorum of nodes said.
impl QuorumBackend {
    /// The answers, if a majority of nodes gave one; `NoQuorum` otherwise.
    fn enough<T>(&self, answers: Answers<T>) -> BackendResult<Vec<T>> {
        let answers: Vec<T> = answers.into_iter().flatten().collect();
        let needed = self.quorum();
        if answers.len() < needed {
            return Err(BackendError::NoQuorum {
                answered: answers.len(),
                needed,
            });
        }
        Ok(answers)
    }

    /// The value a majority of all nodes hold, if one does.
    fn majority_value(&self, answers: &[Stored]) -> Option<String> {
        answers.iter().find_map(|a| {
            let v = a.value.as_deref()?;
            let holders = answers
                .iter()
                .filter(|b| b.value.as_deref() == Some(v))
                .count();
            (holders >= self.quorum()).then(|| v.to_owned())
        })
    }
}

impl Backend for QuorumBackend {
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>> {
        Box::pin(async move {
            let started = Instant::now();
            let limit = self.node_timeout(args.ttl);
            let node_args = AcquireArgs {
                read_fence: true,
                ..args
            };
            let n = self.nodes.len();
            let quorum = self.quorum();
            let is_yes = |a: &Acquired| matches!(a, Acquired::Yes { .. });
            let is_busy = |a: &Acquired| matches!(a, Acquired::Busy { .. });
            let mut round = self.round(|node| node.acquire(node_args));
            // Done as soon as the outcome is settled: a majority granted, or enough nodes
            // answered busy that none can (then `holder_ttl` below, the soonest expiry among
            // more than `n - quorum` holders' keys, is no later than the lock frees), or too
            // few nodes are left to answer at all.
            round
                .until(started + limit, |r| {
                    let (yes, busy, answered) = (r.count(is_yes), r.count(is_busy), r.answered());
                    yes >= quorum
                        || (yes + r.pending < quorum
                            && ((busy > n - quorum && answered >= quorum)
                                || answered + r.pending < quorum))
                })
                .await;
            // The calls still running are abandoned: a grant that lands later is part of
            // the lock if it is ours (the release goes to every node), and undone below if
            // not. A request not yet sent never goes out.
            let running: Vec<bool> = round.take_running().iter().map(Option::is_some).collect();
            let answers = round.answers;
            let yes = answers.iter().flatten().filter(|a| is_yes(a)).count();
            let answered = answers.iter().filter(|a| a.is_some()).count();
            // Where to undo an attempt that did not win: every node that did not answer busy
            // (a failed or abandoned call may have landed).
            let undo_on: Vec<bool> = answers
                .iter()
                .zip(&running)
                .map(|(a, &running)| running || !a.as_ref().is_some_and(is_busy))
                .collect();
            let valid_until = started + args.ttl.saturating_sub(drift(args.ttl));
            if yes >= quorum && Instant::now() < valid_until {
                let fence = match args.fence_key {
                    None => None,
                    Some(fence_key) => {
                        let raised = self
                            .raise_fence(args.key, args.token, fence_key, &answers, limit)
                            .await;
                        match raised {
                            Some(token) if Instant::now() < valid_until => Some(token),
                            _ => {
                                self.undo(args.key, args.token, limit, &vec![true; n]).await;
                                return Err(BackendError::NoQuorum {
                                    answered: yes,
                                    needed: quorum,
                                });
                            }
                        }
                    }
                };
                return Ok(Acquired::Yes { fence });
            }
            // Not ours: give back what we took anywhere, so that no minority stays locked. A
            // node that did not answer may have taken it too.
            if undo_on.contains(&true) {
                self.undo(args.key, args.token, limit, &undo_on).await;
            }
            if yes >= quorum {
                // A majority said yes, but too late to leave any validity.
                return Err(BackendError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "timed out",
                    format!(
                        "{yes} nodes granted the lock, but its validity ran out before they \
                         answered; raise the TTL or look at the nodes' latency"
                    ),
                ))));
            }
            let holder_ttl = answers
                .iter()
                .filter_map(|a| match a {
                    Some(Acquired::Busy { holder_ttl }) => {
                        Some(holder_ttl.unwrap_or(Duration::MAX))
                    }
                    _ => None,
                })
                .min();
            if let Some(holder_ttl) = holder_ttl
                && answered >= quorum
            {
                // A holder exists. Wake no later than the soonest of its keys expires.
                return Ok(Acquired::Busy {
                    holder_ttl: Some(holder_ttl).filter(|t| *t != Duration::MAX),
                });
            }
            Err(BackendError::NoQuorum {
                answered,
                needed: quorum,
            })
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let quorum = self.quorum();
            let until = Instant::now() + self.hard_limit();
            // Owned calls: those still running once the answer is decided are finished in the
            // background. A release must reach every node, not only a majority.
            let both = KeyToken::new(key, token);
            let mut round = Round::new(self.nodes.iter().map(|node| {
                let node = Arc::clone(node);
                let both = both.clone();
                let call: BoxFuture<'static, BackendResult<bool>> =
                    Box::pin(async move { node.release(both.key(), both.token()).await });
                Some(call)
            }));
            // Decided once the rest cannot change the answer below.
            round
                .until(until, |r| {
                    let released = r.count(|&r| r);
                    let answered = r.answered();
                    released >= quorum
                        || (released + r.pending < quorum
                            && (answered >= quorum || answered + r.pending < quorum))
                })
                .await;
            let released = round.count(|&r| r);
            let answered = round.answered();
            self.finish_in_background(round.take_running(), until).await;
            if released >= quorum {
                Ok(true)
            } else if answered >= quorum {
                // A majority answered, and no longer had our token.
                Ok(false)
            } else {
                Err(BackendError::NoQuorum {
                    answered,
                    needed: quorum,
                })
            }
        })
    }

    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<Renewed>>> {
        Box::pin(async move {
            let shortest = batch.iter().map(|r| r.ttl).min().unwrap_or_default();
            let limit = self.node_timeout(shortest);
            // One batched call per node, all nodes at once, and every answer waited for up
            // to the limit: an abandoned call that was not yet written is never sent, and a
            // renewal (or a `min_hold` release, which is one) must reach every node it can.
            let answers = self.on_all(limit, |node| node.renew(batch)).await;
            let quorum = self.quorum();
            let n = self.nodes.len();
            let outcome = (0..batch.len())
                .map(|i| {
                    let at = |want: Renewed| {
                        answers
                            .iter()
                            .filter(|a| a.as_ref().is_some_and(|v| v.get(i) == Some(&want)))
                            .count()
                    };
                    let (yes, no) = (at(Renewed::Yes), at(Renewed::No));
                    if yes >= quorum {
                        Renewed::Yes
                    } else if no > n - quorum {
                        // A majority can no longer be ours: the lock is lost.
                        Renewed::No
                    } else {
                        // Too few answers to decide. Never delete anything: retry until the
                        // lease deadline, as after a network error on one node.
                        Renewed::Unknown {
                            answered: yes + no,
                            needed: quorum,
                        }
                    }
                })
                .collect();
            Ok(outcome)
        })
    }

    fn ttl_if_held<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<Duration>>> {
        Box::pin(async move {
            let quorum = self.quorum();
            let answers = self
                .on_all_until_decided(
                    |node| node.ttl_if_held(key, token),
                    |answers| answers.iter().flatten().count() >= quorum,
                )
                .await;
            let answered = answers.iter().filter(|a| a.is_some()).count();
            let mut held: Vec<Duration> = answers.into_iter().flatten().flatten().collect();
            if held.len() >= quorum {
                // The lock lasts while a majority keeps it: the quorum-th longest TTL.
                held.sort_unstable_by(|a, b| b.cmp(a));
                return Ok(Some(held[quorum - 1]));
            }
            if answered >= quorum {
                return Ok(None);
            }
            Err(BackendError::NoQuorum {
                answered,
                needed: quorum,
            })
        })
    }

    fn is_held<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move { Ok(self.ttl_if_held(key, token).await?.is_some()) })
    }

    fn watch_releases<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<ReleaseWatch>> {
        Box::pin(async move {
            // Any node announcing a release wakes the waiter: its next attempt decides.
            // A stopped node must not hold up the others' subscriptions.
            let limit = self.op_timeout() / 2;
            let watches = self
                .on_all(limit, |node| node.watch_releases(key))
                .await
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            if watches.is_empty() {
                return Err(BackendError::NoQuorum {
                    answered: 0,
                    needed: 1,
                });
            }
            Ok(ReleaseWatch::merge(watches))
        })
    }

    fn watch_if_queued(&self, key: &str) -> Option<ReleaseWatch> {
        // Only if this client already listens on every node: a release may be announced
        // by any of them.
        let watches: Option<Vec<ReleaseWatch>> = self
            .nodes
            .iter()
            .map(|node| node.watch_if_queued(key))
            .collect();
        watches.map(ReleaseWatch::merge)
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
        fence_key: Option<&'a str>,
    ) -> BoxFuture<'a, BackendResult<Stored>> {
        Box::pin(async move {
            let answers = self
                .on_all_until_decided(|node| node.inspect(key, fence_key), |_| false)
                .await;
            let answers = self.enough(answers)?;
            // The counter as a max-register: the highest any node has.
            let fence = answers.iter().filter_map(|a| a.fence).max();
            // Locked if a majority holds one value; it stays so while a majority keeps it.
            let Some(value) = self.majority_value(&answers) else {
                return Ok(Stored {
                    fence,
                    ..Stored::default()
                });
            };
            let mut ttls: Vec<Duration> = answers
                .iter()
                .filter(|a| a.value.as_deref() == Some(value.as_str()))
                .map(|a| a.ttl.unwrap_or(Duration::MAX))
                .collect();
            ttls.sort_unstable_by(|a, b| b.cmp(a));
            let ttl = ttls
                .get(self.quorum() - 1)
                .copied()
                .filter(|t| *t != Duration::MAX);
            Ok(Stored {
                value: Some(value),
                ttl,
                fence,
            })
        })
    }

    fn force_release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<Stored>> {
        Box::pin(async move {
            // Every node deletes what it has; the former holder is what most nodes held.
            let answers = self
                .on_all_until_decided(|node| node.force_release(key), |_| false)
                .await;
            let answers = self.enough(answers)?;
            let mut counts: Vec<(&str, usize, Option<Duration>)> = Vec::new();
            for a in &answers {
                let Some(v) = a.value.as_deref() else {
                    continue;
                };
                match counts.iter_mut().find(|(seen, _, _)| *seen == v) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 = entry.2.max(a.ttl);
                    }
                    None => counts.push((v, 1, a.ttl)),
                }
            }
            Ok(counts
                .into_iter()
                .max_by_key(|(_, n, _)| *n)
                .map(|(v, _, ttl)| Stored {
                    value: Some(v.to_owned()),
                    ttl,
                    fence: None,
                })
                .unwrap_or_default())
        })
    }

    fn scan<'a>(
        &'a self,
        from: ScanFrom,
        pattern: &'a str,
        count: usize,
    ) -> BoxFuture<'a, BackendResult<ScanPage>> {
        Box::pin(async move {
            // Node by node: a key held by a majority is on every reachable node of it, and
            // the listing drops repeats. A node that fails is passed over, with a warning.
            let Some(node) = self.nodes.get(from.node) else {
                return Ok(ScanPage::default());
            };
            let next_node = (from.node + 1 < self.nodes.len()).then_some(ScanFrom {
                node: from.node + 1,
                cursor: 0,
            });
            let step = ScanFrom {
                node: 0,
                cursor: from.cursor,
            };
            let limit = self.op_timeout();
            match tokio::time::timeout(limit, node.scan(step, pattern, count)).await {
                Ok(Ok(page)) => Ok(ScanPage {
                    keys: page.keys,
                    next: match page.next {
                        Some(more) => Some(ScanFrom {
                            node: from.node,
                            cursor: more.cursor,
                        }),
                        None => next_node,
                    },
                }),
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => format!("{e:?}"),
                        _ => format!("no answer within {limit:?}"),
                    };
                    tracing::warn!(node = %node.url(), %error, "listing skips a quorum node that failed");
                    Ok(ScanPage {
                        keys: Vec::new(),
                        next: next_node,
                    })
                }
            }
        })
    }

    fn op_timeout(&self) -> Duration {
        // Nodes are asked at once; up to two more rounds (fencing, undo) may follow.
        3 * self.node_timeout + Duration::from_millis(100)
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let done = self.stragglers.done.notified();
                if self.stragglers.running.load(Ordering::Acquire) == 0 {
                    return;
                }
                done.await;
            }
        })
    }
}
