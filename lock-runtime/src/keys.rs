//! Key naming: namespaces, validation, the fencing side key, and TTL bounds.

use std::time::Duration;

use crate::LockError;

/// Joins a namespace and a key as `"<namespace>:<key>"`, and rejects keys that cannot work.
pub(crate) fn full_key(namespace: Option<&str>, key: &str) -> Result<String, LockError> {
    if key.is_empty() {
        return Err(LockError::InvalidKey {
            key: key.to_owned(),
            reason: "the key is empty; build it from what identifies the resource, \
                     e.g. \"order:42\""
                .into(),
        });
    }
    Ok(match namespace {
        Some(ns) => format!("{ns}:{key}"),
        None => key.to_owned(),
    })
}

/// Whether `key` has a valid cluster hash tag: `{...}` with something inside, the first `{`
/// and the first `}` after it.
pub(crate) fn has_hash_tag(key: &str) -> bool {
    hash_tag(key).is_some()
}

/// The part of `key` that decides its cluster slot: the hash tag if valid, else all of it.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hashed part, modulo 16384.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn slot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The side key that holds the fencing counter, in the same cluster slot as `key`.
///
/// A key with a valid hash tag (`{...}` with something inside) keeps it, so the suffix
/// lands in the same slot. A key without one is wrapped whole in a tag. A key with a stray
/// `}` but no valid tag cannot be wrapped safely, so it is refused.
pub(crate) fn fence_key(key: &str) -> Result<String, LockError> {
    if has_hash_tag(key) {
        return Ok(format!("{key}:fence"));
    }
    if key.contains('}') {
        return Err(LockError::InvalidKey {
            key: key.to_owned(),
            reason: "fencing needs a side key in the same cluster slot, and a key with `}` but \
                     no valid hash tag cannot be wrapped in one; remove the `}` or add a tag \
                     such as `{order:42}`"
                .into(),
        });
    }
    Ok(format!("{{{key}}}:fence"))
}

/// The shortest TTL a lock may have: 100 ms.
///
/// The guarantees need room inside one lease. At 100 ms the watchdog renews every 33 ms,
/// retries a failed renewal every 10 ms (about six tries before it gives up), and the body
/// is cancelled two drift allowances (6 ms) before the earliest moment the server can free
/// the key. Below that, timer granularity and scheduling jitter eat the margin.
///
/// `#[distributed_lock]` checks literal TTLs against this same constant at compile time.
pub const MIN_TTL: Duration = Duration::from_millis(100);

/// The longest TTL a lock may have: 365 days. Longer is surely a mistake: keep the TTL short
/// and let the watchdog renew it.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) fn check_ttl(key: &str, ttl: Duration) -> Result<(), LockError> {
    match ttl_problem(ttl) {
        None => Ok(()),
        Some(reason) => Err(LockError::InvalidTtl {
            key: key.to_owned(),
            ttl,
            reason: reason.into(),
        }),
    }
}

/// What is wrong with `ttl`, if anything: the one check behind both the run-time
/// [`LockError::InvalidTtl`] and the attribute's compile-time check.
pub(crate) const fn ttl_problem(ttl: Duration) -> Option<&'static str> {
    if ttl.is_zero() {
        Some("a zero TTL would expire at once; use at least 100 ms (the default is 30 s)")
    } else if ttl.as_nanos() < MIN_TTL.as_nanos() {
        Some(
            "TTLs under 100 ms (lock_runtime::MIN_TTL) leave the watchdog no room to renew \
             and cancel in time; use at least 100 ms",
        )
    } else if ttl.as_nanos() > MAX_TTL.as_nanos() {
        Some(
            "TTLs over 365 days (lock_runtime::MAX_TTL) are surely a mistake; keep the TTL \
             short and let the watchdog renew it",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_rule() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("{foo}:fence"), slot("foo"));
        assert_eq!(slot("x{foo}y"), slot("foo"));
        // An empty tag hashes the whole key.
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
        let key = "orders:order:1";
        assert_eq!(slot(&fence_key(key).unwrap()), slot(key));
        assert_eq!(slot("lock-released:{orders:order:1}"), slot(key));
    }

    #[test]
    fn namespace_is_joined_with_a_colon() {
        assert_eq!(
            full_key(Some("billing"), "order:1").unwrap(),
            "billing:order:1"
        );
        assert_eq!(full_key(None, "order:1").unwrap(), "order:1");
    }

    #[test]
    fn empty_key_is_rejected_with_a_hint() {
        let err = full_key(Some("ns"), "").unwrap_err();
        assert!(matches!(err, LockError::InvalidKey { .. }));
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn fence_key_wraps_untagged_keys() {
        assert_eq!(fence_key("order:42").unwrap(), "{order:42}:fence");
    }

    #[test]
    fn fence_key_keeps_an_existing_tag() {
        assert_eq!(
            fence_key("{tenant}:order:42").unwrap(),
            "{tenant}:order:42:fence"
        );
        assert_eq!(fence_key("a:{t}:b").unwrap(), "a:{t}:b:fence");
    }

    #[test]
    fn fence_key_treats_an_empty_tag_as_no_tag() {
        // `{}` is not a hash tag, so the whole key is hashed, and no wrapping can reproduce
        // that: `{{}order}:fence` would hash `{`. Refuse rather than split the slots.
        assert!(fence_key("{}order").is_err());
        assert_eq!(fence_key("{order").unwrap(), "{{order}:fence");
    }

    #[test]
    fn fence_key_refuses_a_stray_closing_brace() {
        assert!(fence_key("a}b").is_err());
        assert!(fence_key("{}a}b").is_err());
    }

    #[test]
    fn ttl_bounds() {
        assert!(check_ttl("k", Duration::ZERO).is_err());
        assert!(check_ttl("k", Duration::from_millis(99)).is_err());
        assert!(check_ttl("k", MIN_TTL).is_ok());
        assert!(check_ttl("k", MAX_TTL).is_ok());
        assert!(check_ttl("k", MAX_TTL + Duration::from_nanos(1)).is_err());
        assert!(check_ttl("k", Duration::from_secs(400 * 24 * 3600)).is_err());
    }
}
