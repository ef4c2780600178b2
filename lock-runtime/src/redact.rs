//! Masking of secrets in Redis URLs, for `Debug` output, logs and errors.

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

/// Removes the URL (and so any password in it) from a parser's message.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let message = message.replace(url, &redact_url(url));
    // A parser may quote only the userinfo; mask anything between "//" and "@" as well.
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => message.replace(&url[s + 3..at], "***"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
