//! A quorum of independent Redis masters (Redlock), behind the same [`Backend`] trait as one
//! server: waiting, the watchdog, cancellation on loss, re-entry and the attribute work on
//! it unchanged.
//!
//! - Every operation goes to all nodes at once, each bounded by a per-node timeout short
//!   relative to the TTL; a majority (`n/2 + 1`) must agree.
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
use std::time::Duration;

use futures_util::future::join_all;
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
    nodes: Vec<RedisBackend>,
    node_timeout: Duration,
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

impl QuorumBackend {
    pub(crate) fn new(nodes: Vec<RedisBackend>, node_timeout: Duration) -> Self {
        QuorumBackend {
            nodes,
            node_timeout,
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

    /// Runs `call` on every node at once, each bounded by `limit`.
    async fn on_all<'a, T, F>(&'a self, limit: Duration, call: F) -> Answers<T>
    where
        F: Fn(&'a RedisBackend) -> BoxFuture<'a, BackendResult<T>>,
    {
        let calls = self.nodes.iter().map(|node| {
            let call = call(node);
            async move {
                match tokio::time::timeout(limit, call).await {
                    Ok(Ok(answer)) => Some(answer),
                    Ok(Err(e)) => {
                        tracing::debug!(node = ?node, error = ?e, "quorum node failed");
                        None
                    }
                    Err(_) => None,
                }
            }
        });
        join_all(calls).await
    }

    /// Like [`on_all`](Self::on_all), for requests whose outcome matters more than their
    /// speed (release, reads): answers are awaited up to `self.node_timeout`, and past it
    /// only while `decided` says the answers so far settle nothing, up to the backend's
    /// operation timeout. A loaded node that is a little late then still counts, and a
    /// stopped one costs nothing once a majority has answered.
    async fn on_all_until_decided<'a, T, F, D>(&'a self, call: F, decided: D) -> Answers<T>
    where
        F: Fn(&'a RedisBackend) -> BoxFuture<'a, BackendResult<T>>,
        D: Fn(&Answers<T>) -> bool,
    {
        use futures_util::StreamExt;
        use futures_util::stream::FuturesUnordered;
        // A little under the bound `bounded()` puts around the whole call.
        let hard = self.op_timeout().saturating_sub(Duration::from_millis(10));
        let soft_until = Instant::now() + self.node_timeout;
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let call = call(node);
                async move { (i, tokio::time::timeout(hard, call).await) }
            })
            .collect();
        let mut answers: Answers<T> = (0..self.nodes.len()).map(|_| None).collect();
        loop {
            let next = if Instant::now() < soft_until {
                match tokio::time::timeout_at(soft_until, pending.next()).await {
                    Ok(next) => next,
                    Err(_) => continue,
                }
            } else {
                if decided(&answers) {
                    break;
                }
                pending.next().await
            };
            match next {
                Some((i, Ok(Ok(answer)))) => answers[i] = Some(answer),
                Some(_) => {}
                None => break,
            }
        }
        answers
    }

    /// Releases `token` at `key` on every node, best effort and unannounced: after an
    /// attempt that did not win. On a node that did not answer in time the `SET` may still
    /// land; the undo goes down the same connection behind it, so it lands after.
    async fn undo(&self, key: &str, token: &str, limit: Duration) {
        self.on_all(limit, |node| node.release_quietly(key, token))
            .await;
    }

    /// The fencing round: raise each granting node's counter to `max + 1`, owner-checked.
    /// `Some(token)` if a majority took it.
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
        let raised = self
            .on_all(limit, |node| node.raise_fence(key, token, fence_key, next))
            .await;
        let took = raised
            .iter()
            .zip(granted)
            .filter(|(r, g)| matches!(g, Some(Acquired::Yes { .. })) && **r == Some(true))
            .count();
        (took >= self.quorum()).then_some(next)
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
            let answers = self.on_all(limit, |node| node.acquire(node_args)).await;
            let yes = answers
                .iter()
                .filter(|a| matches!(a, Some(Acquired::Yes { .. })))
                .count();
            let answered = answers.iter().filter(|a| a.is_some()).count();
            let valid_until = started + args.ttl.saturating_sub(drift(args.ttl));
            let quorum = self.quorum();
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
                                self.undo(args.key, args.token, limit).await;
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
            if yes > 0 || answered < self.nodes.len() {
                self.undo(args.key, args.token, limit).await;
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
            let busy: Vec<Option<Duration>> = answers
                .iter()
                .filter_map(|a| match a {
                    Some(Acquired::Busy { holder_ttl }) => Some(*holder_ttl),
                    _ => None,
                })
                .collect();
            if answered >= quorum && !busy.is_empty() {
                // A holder exists. Wake no later than the soonest of its keys expires.
                let holder_ttl = busy.iter().map(|t| t.unwrap_or(Duration::MAX)).min();
                return Ok(Acquired::Busy {
                    holder_ttl: holder_ttl.filter(|t| *t != Duration::MAX),
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
            let answers = self
                .on_all_until_decided(
                    |node| node.release(key, token),
                    |answers| answers.iter().flatten().count() >= quorum,
                )
                .await;
            let released = answers.iter().filter(|a| **a == Some(true)).count();
            let not_held = answers.iter().filter(|a| **a == Some(false)).count();
            if released >= quorum {
                Ok(true)
            } else if released + not_held >= quorum {
                // Every node answered that could; a majority no longer had our token.
                Ok(false)
            } else {
                Err(BackendError::NoQuorum {
                    answered: released + not_held,
                    needed: quorum,
                })
            }
        })
    }

    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<Renewed>>> {
        Box::pin(async move {
            let shortest = batch.iter().map(|r| r.ttl).min().unwrap_or_default();
            let limit = self.node_timeout(shortest);
            // One batched call per node, all nodes at once.
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
}
