//! For operators: who holds a lock ([`LockClient::inspect`]), every lock matching a
//! pattern ([`LockClient::list`]), and freeing a stuck one ([`LockClient::force_release`]).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::backend::{ScanFrom, Stored, bounded};
use crate::holder;
use crate::keys::{fence_key, full_key};
use crate::{LockClient, LockError};

/// What is known about one lock key: from [`LockClient::inspect`], [`LockClient::list`]
/// and [`LockClient::force_release`].
///
/// The holder label and acquisition time are known only when the holder's client set a
/// label ([`ClientBuilder::holder`](crate::ClientBuilder::holder)); the lock's value is
/// otherwise an opaque token (ours, or another library's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The key, as given to [`LockClient::lock`] (without the client's namespace).
    pub key: String,
    /// The key with the namespace in front: the name in Redis.
    pub full_key: String,
    /// Whether the lock is held (on a quorum: whether a majority of nodes holds one token).
    pub locked: bool,
    /// The holder's remaining TTL. `None` when the lock is free, or when the key has no
    /// expiry (no lock sets one like that: something else wrote the key).
    pub ttl: Option<Duration>,
    /// The holder's label, when its client set one.
    pub holder: Option<String>,
    /// When the holder acquired the lock, by its own clock, when its client set a label.
    pub acquired_at: Option<SystemTime>,
    /// The fencing counter for this key (the last fencing token handed out), when locks
    /// with fencing were ever taken on it. It survives releases: it only goes up.
    pub fencing_counter: Option<u64>,
}

impl LockInfo {
    fn new(key: String, full_key: String, stored: Stored) -> LockInfo {
        let holder = stored.value.as_deref().and_then(holder::parse);
        LockInfo {
            key,
            full_key,
            locked: stored.value.is_some(),
            ttl: stored.ttl,
            holder: holder.as_ref().map(|h| h.label.clone()),
            acquired_at: holder.map(|h| h.acquired_at),
            fencing_counter: stored.fence,
        }
    }
}

/// How many keys one `SCAN` step asks each server to look at.
const SCAN_COUNT: usize = 500;

/// The locks matching a pattern, page by page: from [`LockClient::list`].
///
/// It walks the keyspace with `SCAN` (never `KEYS`, which blocks the server), on every
/// master of a cluster and every node of a quorum, and skips fencing counters and keys
/// that are not strings. As with `SCAN`, a lock taken or released during the walk may or
/// may not be listed; no key is listed twice.
#[derive(Debug)]
#[must_use = "a listing does nothing until `next_page().await`"]
pub struct Listing {
    client: LockClient,
    pattern: String,
    next: Option<ScanFrom>,
    seen: HashSet<String>,
}

impl Listing {
    /// The next page of locks held right now, or `None` after the last one. A page has at
    /// least one lock.
    pub async fn next_page(&mut self) -> Result<Option<Vec<LockInfo>>, LockError> {
        let backend = &*self.client.store.backend;
        while let Some(from) = self.next {
            let page = bounded(
                backend,
                &self.pattern,
                "list",
                backend.scan(from, &self.pattern, SCAN_COUNT),
            )
            .await?;
            self.next = page.next;
            let fresh: Vec<String> = page
                .keys
                .into_iter()
                .filter(|k| !is_fence_key(k) && self.seen.insert(k.clone()))
                .collect();
            let inspected =
                futures_util::future::join_all(fresh.iter().map(|k| inspect_full(&self.client, k)))
                    .await;
            let mut locks = Vec::with_capacity(inspected.len());
            for result in inspected {
                match result {
                    Ok(info) if info.locked => locks.push(info),
                    // Released since the scan saw it.
                    Ok(_) => {}
                    // Turned into another type since: not a lock.
                    Err(LockError::WrongType { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if !locks.is_empty() {
                locks.sort_unstable_by(|a, b| a.key.cmp(&b.key));
                return Ok(Some(locks));
            }
        }
        Ok(None)
    }

    /// Every remaining page, as one list sorted by key.
    pub async fn all(mut self) -> Result<Vec<LockInfo>, LockError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }
}

impl LockClient {
    /// Who holds `key` (the namespace is added in front), for how much longer, since when,
    /// and its fencing counter. See [`LockInfo`]; a free key gives `locked: false`.
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory().with_holder("billing@host-3")?;
    /// let guard = client.lock("invoice:42").fencing(true).acquire().await?;
    /// let info = client.inspect("invoice:42").await?;
    /// assert!(info.locked);
    /// assert_eq!(info.holder.as_deref(), Some("billing@host-3"));
    /// assert_eq!(info.fencing_counter, guard.fencing_token());
    /// guard.release().await?;
    /// assert!(!client.inspect("invoice:42").await?.locked);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn inspect(&self, key: impl AsRef<str>) -> Result<LockInfo, LockError> {
        let full = full_key(self.namespace(), key.as_ref())?;
        inspect_full(self, &full).await
    }

    /// Deletes the lock at `key` whatever its token, and wakes its waiters: for a lock whose
    /// holder is stuck. Returns the lock as it was just before (`None`: it was free), and
    /// logs a warning naming the key and the former holder's label.
    ///
    /// The former holder is not told at once: it learns at its next renewal (within a
    /// third of its TTL), and then its [`run`](crate::LockRequest::run) is cancelled with
    /// [`LockError::Lost`] ([`LostReason::Taken`](crate::LostReason::Taken)). Until then it
    /// may still be working while the next holder starts: this is a last resort, for a
    /// holder that is wedged, and fencing tokens are what make it safe for the data.
    ///
    /// It refuses (with [`LockError::WrongType`]) a key that is not a string or has no
    /// expiry, which no lock is, and (with [`LockError::InvalidKey`]) a fencing counter,
    /// whose loss would let tokens go backwards.
    pub async fn force_release(&self, key: impl AsRef<str>) -> Result<Option<LockInfo>, LockError> {
        let key = key.as_ref();
        let full = full_key(self.namespace(), key)?;
        if is_fence_key(&full) {
            return Err(LockError::InvalidKey {
                key: full,
                reason: "this is the fencing counter of a lock, not a lock; deleting it would \
                         let fencing tokens go backwards"
                    .into(),
            });
        }
        let backend = &*self.store.backend;
        let stored = bounded(
            backend,
            &full,
            "force_release",
            backend.force_release(&full),
        )
        .await?;
        if stored.value.is_none() {
            return Ok(None);
        }
        let info = LockInfo::new(key.to_owned(), full, stored);
        tracing::warn!(
            key = %info.full_key,
            holder = info.holder.as_deref().unwrap_or("(no label)"),
            remaining_ttl_ms = info.ttl.map(|t| t.as_millis() as u64),
            "lock force-released; its holder loses it at its next renewal"
        );
        Ok(Some(info))
    }

    /// The locks whose keys match the glob `pattern` (`*`, `?`, `[a-z]`, `\` escapes, as
    /// Redis `SCAN MATCH`), within this client's namespace; see [`Listing`].
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory().with_namespace("billing");
    /// let _a = client.lock("invoice:1").acquire().await?;
    /// let _b = client.lock("invoice:2").acquire().await?;
    /// let locks = client.list("invoice:*").all().await?;
    /// let keys: Vec<_> = locks.iter().map(|l| l.key.as_str()).collect();
    /// assert_eq!(keys, ["invoice:1", "invoice:2"]);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn list(&self, pattern: impl AsRef<str>) -> Listing {
        let pattern = match self.namespace() {
            Some(ns) => format!("{}:{}", glob_escape(ns), pattern.as_ref()),
            None => pattern.as_ref().to_owned(),
        };
        Listing {
            client: self.clone(),
            pattern,
            next: Some(ScanFrom::default()),
            seen: HashSet::new(),
        }
    }
}

/// Inspects the key named `full` in Redis, reporting its key relative to the namespace.
async fn inspect_full(client: &LockClient, full: &str) -> Result<LockInfo, LockError> {
    let fence = fence_key(full).ok();
    let backend = &*client.store.backend;
    let stored = bounded(
        backend,
        full,
        "inspect",
        backend.inspect(full, fence.as_deref()),
    )
    .await?;
    let key = match client.namespace() {
        Some(ns) => full
            .strip_prefix(ns)
            .and_then(|k| k.strip_prefix(':'))
            .unwrap_or(full),
        None => full,
    };
    Ok(LockInfo::new(key.to_owned(), full.to_owned(), stored))
}

/// Whether `key` is the fencing side key of some lock (see `keys::fence_key`).
pub(crate) fn is_fence_key(key: &str) -> bool {
    key.strip_suffix(":fence")
        .and_then(|lock| fence_key(lock).ok())
        .is_some_and(|fk| fk == key)
}

/// Escapes the glob characters of `literal` for `SCAN MATCH`.
fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `text` matches the glob `pattern` as Redis matches `SCAN MATCH` patterns: `*`,
/// `?`, classes `[abc]`, `[a-z]`, `[^a]`, and `\` escapes. For the in-memory store.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    let Some((&first, rest)) = p.split_first() else {
        return t.is_empty();
    };
    match first {
        '*' => (0..=t.len()).any(|skip| glob_at(rest, &t[skip..])),
        '?' => !t.is_empty() && glob_at(rest, &t[1..]),
        '[' => {
            let Some((&c, t_rest)) = t.split_first() else {
                return false;
            };
            let (matched, after) = class(rest, c);
            matched && glob_at(after, t_rest)
        }
        '\\' if !rest.is_empty() => t.first() == Some(&rest[0]) && glob_at(&rest[1..], &t[1..]),
        lit => t.first() == Some(&lit) && glob_at(rest, &t[1..]),
    }
}

/// Matches `c` against the class that `p` starts just after its `[`; returns whether it
/// matched and the pattern after the closing `]` (or the end, if there is none).
fn class(p: &[char], c: char) -> (bool, &[char]) {
    let (negated, mut i) = match p.first() {
        Some('^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    while i < p.len() && p[i] != ']' {
        if p[i] == '\\' && i + 1 < p.len() {
            matched |= p[i + 1] == c;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            let (lo, hi) = if p[i] <= p[i + 2] {
                (p[i], p[i + 2])
            } else {
                (p[i + 2], p[i])
            };
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    let after = if i < p.len() { &p[i + 1..] } else { &p[i..] };
    (matched != negated, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_does() {
        let cases = [
            ("*", "anything", true),
            ("order:*", "order:42", true),
            ("order:*", "orders:42", false),
            ("order:?", "order:4", true),
            ("order:?", "order:42", false),
            ("order:[0-9]*", "order:42", true),
            ("order:[^0-9]*", "order:42", false),
            ("order:[ab]", "order:b", true),
            ("order:[ab]", "order:c", false),
            (r"a\*b", "a*b", true),
            (r"a\*b", "axb", false),
            ("*:fence", "{order:42}:fence", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_match(pattern, text), want, "{pattern:?} ~ {text:?}");
        }
    }

    #[test]
    fn escaped_namespaces_match_only_themselves() {
        let ns = glob_escape("team[*]?");
        assert!(glob_match(&format!("{ns}:*"), "team[*]?:order:1"));
        assert!(!glob_match(&format!("{ns}:*"), "teamx:order:1"));
    }

    #[test]
    fn fence_keys_are_recognised() {
        for lock in ["order:42", "{order}:42", "billing:{tenant-1}:invoice"] {
            let fk = fence_key(lock).unwrap();
            assert!(is_fence_key(&fk), "{fk}");
            assert!(!is_fence_key(lock), "{lock}");
        }
        assert!(!is_fence_key("order:fence"));
        assert!(!is_fence_key("fence"));
    }
}
