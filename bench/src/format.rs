//! How numbers are written in BENCHMARKS.md, and the date of a run.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A duration given in microseconds: `52.1 µs`, `1.23 ms`, `105 ms`, `3.00 s`.
pub fn dur(us: f64) -> String {
    let a = us.abs();
    if a >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if a >= 1e3 {
        format!("{} ms", sig3(us / 1e3))
    } else {
        format!("{} µs", sig3(us))
    }
}

/// [`dur`] of a [`std::time::Duration`].
pub fn dur_of(d: std::time::Duration) -> String {
    dur(d.as_secs_f64() * 1e6)
}

/// `2.31 ×`.
pub fn times(ratio: f64) -> String {
    if ratio.abs() >= 0.1 {
        format!("{ratio:.2} ×")
    } else {
        format!("{} ×", sig3(ratio))
    }
}

/// `part` as a percentage of `whole`: `40 %`, or `-` when `whole` is not positive.
pub fn pct_of(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.0} %", part / whole * 100.0)
    } else {
        "-".to_owned()
    }
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `9 min 05 s`, or `42 s`.
pub fn minutes(secs: u64) -> String {
    if secs >= 60 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{secs} s")
    }
}

/// Three significant digits, no exponent: `0.0123`, `1.23`, `12.3`, `123`, `1,234`.
pub fn sig3(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if v == 0.0 {
        "0".to_owned()
    } else if a >= 1000.0 {
        count(v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// A whole number with thousands separators: `12,345`.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A table's header row, given as `| a | b |`, and the rule under it.
pub fn header(w: &mut String, row: &str) {
    let columns = row.matches('|').count().saturating_sub(1);
    let _ = writeln!(w, "{row}\n|{}", "---|".repeat(columns));
}

/// The current time, UTC, to the minute.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(count(1234567.4), "1,234,567");
        assert_eq!(count(999.0), "999");
        assert_eq!(sig3(0.5), "0.500");
        assert_eq!(sig3(12.34), "12.3");
        assert_eq!(sig3(4321.0), "4,321");
        assert_eq!(dur(52.14), "52.1 µs");
        assert_eq!(dur(1234.0), "1.23 ms");
        assert_eq!(dur(3_000_000.0), "3.00 s");
    }

    #[test]
    fn writes_the_rule_under_a_header() {
        let mut w = String::new();
        header(&mut w, "| a | b | c |");
        assert_eq!(w, "| a | b | c |\n|---|---|---|\n");
    }

    #[test]
    fn converts_days_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
