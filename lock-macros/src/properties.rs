//! Property tests of the two string parsers the attribute runs on user
//! input, the key template and the duration: no input may panic (a panic
//! takes the user's function out of the build), and what they return must
//! be consistent with the input.
//!
//! Each test runs 1,000,000 generated inputs by default (a few seconds in a
//! debug build). For a long run, set `LOCK_MACROS_PROPERTY_CASES`:
//!
//! ```text
//! LOCK_MACROS_PROPERTY_CASES=10000000 cargo test -p lock-macros --release properties
//! ```
//!
//! `LOCK_MACROS_PROPERTY_SEED` picks another input sequence; a failure
//! prints the input, the seed and the case number.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{duration, template};

fn cases() -> u64 {
    std::env::var("LOCK_MACROS_PROPERTY_CASES")
        .ok()
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

fn seed() -> u64 {
    std::env::var("LOCK_MACROS_PROPERTY_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x5EED_CAFE)
}

/// SplitMix64: small, fast, and good enough to spread inputs; no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A string of up to `max` pieces, each from `pieces`.
    fn string(&mut self, pieces: &[&str], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len).map(|_| pieces[self.below(pieces.len())]).collect()
    }
}

/// Runs `check` on `cases()` inputs from `generate`, failing on the first
/// panic or broken property with the input that caused it.
fn for_all(name: &str, generate: impl Fn(&mut Rng) -> String, check: impl Fn(&str)) {
    let seed = seed();
    let mut rng = Rng(seed);
    for case in 0..cases() {
        let input = generate(&mut rng);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!("{name}: {message}\n  input: {input:?}\n  seed {seed}, case {case}");
        }
    }
}

const TEMPLATE_PIECES: &[&str] = &[
    "{",
    "{",
    "}",
    "}",
    "<",
    "<",
    ">",
    ">",
    "{{",
    "}}",
    ".",
    ".",
    " ",
    "\t",
    "a",
    "b",
    "id",
    "self",
    "r#",
    "r#type",
    "0",
    "1",
    "01",
    "_",
    "é",
    "e\u{301}",
    "\u{301}",
    "\u{200d}",
    ":",
    "?",
    "(",
    ")",
    "[",
    "]",
    "::",
    "#",
    "-",
    "🔒",
    "заказ",
    "\u{2028}",
    "\"",
    "\\",
];

const DURATION_PIECES: &[&str] = &[
    "0",
    "1",
    "5",
    "9",
    "10",
    "999",
    "1000",
    "999999999",
    "1000000000",
    "18446744073709551615",
    "18446744073709551614",
    "4294967295",
    ".",
    ".5",
    " ",
    "  ",
    "ns",
    "us",
    "µs",
    "ms",
    "s",
    "sec",
    "m",
    "min",
    "h",
    "d",
    "w",
    "M",
    "y",
    "years",
    "x",
    "-",
    "+",
    "e",
    "_",
    "\t",
];

#[test]
fn template_parser_never_panics_and_reports_consistently() {
    for_all(
        "template::parse",
        |rng| rng.string(TEMPLATE_PIECES, 16),
        |input| match template::parse(input) {
            Ok(parsed) => {
                let mut last_end = 0;
                for segment in &parsed.segments {
                    if let template::Segment::Placeholder(p) = segment {
                        assert!(p.bytes.start >= last_end, "placeholders out of order");
                        assert!(p.bytes.end <= input.len(), "placeholder out of bounds");
                        assert!(
                            input.is_char_boundary(p.bytes.start)
                                && input.is_char_boundary(p.bytes.end),
                            "placeholder not on char boundaries"
                        );
                        assert!(!p.root.is_empty(), "empty root");
                        last_end = p.bytes.end;
                    }
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "an error with no errors");
                let mut last_start = 0;
                for error in &errors {
                    let bytes = &error.bytes;
                    assert!(bytes.start <= bytes.end && bytes.end <= input.len());
                    assert!(
                        input.is_char_boundary(bytes.start) && input.is_char_boundary(bytes.end)
                    );
                    assert!(bytes.start >= last_start, "errors out of order");
                    assert_eq!(error.column, input[..bytes.start].chars().count() + 1);
                    last_start = bytes.start;
                    // Rendering the message must not panic either.
                    let _ = error.to_string();
                }
            }
        },
    );
}

#[test]
fn duration_parser_never_panics() {
    for_all(
        "duration::parse",
        |rng| rng.string(DURATION_PIECES, 8),
        |input| {
            let parsed = duration::parse(input);
            let waited = duration::parse_wait(input);
            match (&parsed, &waited) {
                (Ok(d), Ok(w)) => assert_eq!(d, w),
                (Ok(d), Err(_)) => assert!(*d > duration::MAX_WAIT),
                (Err(_), Ok(_)) => panic!("`wait` accepted what `parse` refused"),
                (Err(_), Err(_)) => {}
            }
        },
    );
}

#[test]
fn the_generators_reach_both_outcomes() {
    // A generator that only ever produced errors (or only successes) would
    // make the properties above vacuous.
    let mut rng = Rng(seed());
    let (mut templates_ok, mut durations_ok) = (0, 0);
    for _ in 0..10_000 {
        templates_ok += usize::from(template::parse(&rng.string(TEMPLATE_PIECES, 16)).is_ok());
        durations_ok += usize::from(duration::parse(&rng.string(DURATION_PIECES, 8)).is_ok());
    }
    assert!((100..9_900).contains(&templates_ok), "{templates_ok}");
    assert!((100..9_900).contains(&durations_ok), "{durations_ok}");
}
