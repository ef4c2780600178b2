//! Durations written as strings (`"10s"`, `"500ms"`, `"1m 30s"`), parsed at
//! compile time so a typo is a build error rather than a runtime panic.

use std::time::Duration;

/// The longest `wait` we accept. Waiting longer than this for a lock is
/// almost always a unit typo (`"30m"` meant as `"30s"`), and a caller that
/// really wants it can take the lock by hand with the runtime's builder.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60 * 60);

/// Parses a human-readable duration. Pure: the caller attaches the span.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(
            "expected a duration such as \"10s\" or \"500ms\", found an empty string".into(),
        );
    }
    if trimmed.starts_with('-') {
        return Err(format!("durations cannot be negative, found {text:?}"));
    }
    humantime::parse_duration(trimmed).map_err(|err| {
        format!("invalid duration {text:?}: {err}; write e.g. \"10s\", \"500ms\" or \"1m 30s\"")
    })
}

/// Parses a `ttl`: a duration of at least one millisecond, the resolution
/// Redis expiries have.
pub(crate) fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse(text)?;
    if ttl.is_zero() {
        return Err(
            "`ttl` must be greater than zero: a lock that expires at once protects nothing".into(),
        );
    }
    if ttl < Duration::from_millis(1) {
        return Err(format!(
            "`ttl` must be at least 1ms (Redis expiries have millisecond resolution), found {text:?}"
        ));
    }
    Ok(ttl)
}

/// Parses a `wait`: zero means "try once", and anything over [`MAX_WAIT`]
/// is rejected as a probable typo.
pub(crate) fn parse_wait(text: &str) -> Result<Duration, String> {
    let wait = parse(text)?;
    if wait > MAX_WAIT {
        return Err(format!(
            "`wait = {text:?}` is longer than one hour, which is almost surely a typo \
             (did you mean seconds?); take the lock by hand if you really need to wait that long"
        ));
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_forms() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(parse("  10s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn empty_is_an_error() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("   ").unwrap_err().contains("empty"));
    }

    #[test]
    fn negative_is_an_error() {
        assert!(parse("-5s").unwrap_err().contains("negative"));
        assert!(parse(" -1ms").unwrap_err().contains("negative"));
    }

    #[test]
    fn missing_unit_is_an_error() {
        let err = parse("10").unwrap_err();
        assert!(err.contains("time unit needed"), "{err}");
    }

    #[test]
    fn unknown_unit_is_an_error() {
        let err = parse("10 parsecs").unwrap_err();
        assert!(err.contains("unknown time unit"), "{err}");
        assert!(err.contains("\"10 parsecs\""), "{err}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("ten seconds").is_err());
        assert!(parse("10s!").is_err());
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(parse("99999999999999999999999s").is_err());
    }

    #[test]
    fn ttl_must_be_positive() {
        assert!(parse_ttl("0s").unwrap_err().contains("greater than zero"));
        assert!(parse_ttl("0").unwrap_err().contains("greater than zero"));
        assert!(parse_ttl("999us").unwrap_err().contains("at least 1ms"));
        assert_eq!(parse_ttl("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn wait_may_be_zero() {
        assert_eq!(parse_wait("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn wait_over_an_hour_is_a_typo() {
        assert_eq!(parse_wait("1h"), Ok(MAX_WAIT));
        let err = parse_wait("61m").unwrap_err();
        assert!(err.contains("almost surely a typo"), "{err}");
        assert!(parse_wait("2days").is_err());
    }
}
