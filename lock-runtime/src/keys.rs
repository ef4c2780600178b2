//! Key naming: namespaces, validation, the fencing side key, and URL redaction.

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

/// The side key that holds the fencing counter, in the same cluster slot as `key`.
///
/// A key with a valid hash tag (`{...}` with something inside) keeps it, so the suffix
/// lands in the same slot. A key without one is wrapped whole in a tag. A key with a stray
/// `}` but no valid tag cannot be wrapped safely, so it is refused.
pub(crate) fn fence_key(key: &str) -> Result<String, LockError> {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
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

/// The shortest TTL we accept. Below this, drift and scheduling jitter eat the whole lease.
pub(crate) const MIN_TTL: Duration = Duration::from_millis(10);

/// The longest TTL we accept (PX takes milliseconds in a signed 64-bit integer; a year is
/// already far past any sensible lease).
pub(crate) const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) fn check_ttl(key: &str, ttl: Duration) -> Result<(), LockError> {
    let reason = if ttl.is_zero() {
        "a zero TTL would expire at once; use at least 10 ms (the default is 30 s)"
    } else if ttl < MIN_TTL {
        "TTLs under 10 ms are eaten by clock drift and scheduling; use at least 10 ms"
    } else if ttl > MAX_TTL {
        "TTLs over a year are surely a mistake; keep the TTL short and let the watchdog renew it"
    } else {
        return Ok(());
    };
    Err(LockError::InvalidTtl {
        key: key.to_owned(),
        ttl,
        reason: reason.into(),
    })
}

/// Masks the password of a `redis://user:password@host/` URL (and `?password=` / `?pass=`
/// query parameters), so URLs can go into `Debug` output, logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{user}:***{}", &authority[at..])
            } else {
                // `redis://secret@host` has a lone password in redis-rs's parser too.
                format!("***{}", &authority[at..])
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let (path, query) = tail.split_at(q + 1);
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") || k == "pass" => {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(check_ttl("k", Duration::from_millis(9)).is_err());
        assert!(check_ttl("k", Duration::from_millis(10)).is_ok());
        assert!(check_ttl("k", Duration::from_secs(400 * 24 * 3600)).is_err());
    }

    #[test]
    fn redact_masks_passwords_everywhere() {
        assert_eq!(
            redact_url("redis://user:s3cret@host:6380/0"),
            "redis://user:***@host:6380/0"
        );
        assert_eq!(redact_url("redis://:s3cret@host/"), "redis://:***@host/");
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redact_url("redis://host/?password=s3cret&protocol=resp3"),
            "redis://host/?password=***&protocol=resp3"
        );
        assert_eq!(redact_url("redis://127.0.0.1:1/"), "redis://127.0.0.1:1/");
        assert_eq!(redact_url("not a url p@ss"), "***@ss");
        assert!(!redact_url("rediss://a:p%40ss@h:1").contains("p%40ss"));
    }
}
