//! Durations written as strings (`"10s"`, `"500ms"`, `"1m 30s"`), parsed at
//! compile time so a typo is a build error rather than a runtime panic.

use std::time::Duration;

/// The longest `wait` we accept. Waiting longer than this for a lock is
/// almost always a unit typo (`"30m"` meant as `"30s"`), and a caller that
/// really wants it can take the lock by hand with the runtime's builder.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60 * 60);

/// Parses a human-readable duration. Pure: the caller attaches the span.
///
/// The range of a `ttl` is not checked here: the expansion checks a literal
/// TTL in a `const` against the runtime's own limits, so there is one copy
/// of them.
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
    // humantime 2.4.0 panics instead of reporting an overflow when the
    // nanoseconds carry into a full `u64::MAX` seconds (it tests
    // `nsec > 1_000_000_000` where `>=` is needed, then calls
    // `Duration::new`). A panic would take the whole function out of the
    // build, so it is contained and reported like any other overflow.
    let parsed = std::panic::catch_unwind(|| humantime::parse_duration(trimmed));
    match parsed {
        Ok(Ok(duration)) => Ok(duration),
        Ok(Err(err)) => Err(format!(
            "invalid duration {text:?}: {err}; write e.g. \"10s\", \"500ms\" or \"1m 30s\""
        )),
        Err(_) => Err(format!(
            "invalid duration {text:?}: the total is too large for a `Duration`"
        )),
    }
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
    fn humantime_carry_overflow_is_an_error_not_a_panic() {
        for text in [
            "18446744073709551615s 1000ms",
            "18446744073709551615s 999ms 1000us",
            "18446744073709551614s 1000ms 1000ms",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("too large"), "{text}: {err}");
        }
        assert_eq!(
            parse("18446744073709551614s 1000ms"),
            Ok(Duration::new(u64::MAX, 0))
        );
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
