//! The history checker of the chaos rig, on hand-made histories: it must flag what it claims
//! to rule out, and must not flag what is fine.

use std::time::Duration;

use lock_tests::history::{Entry, History, Recorder};

fn enter(holder: &str, key: &str, at: u64, fence: Option<u64>) -> Entry {
    Entry::Enter {
        holder: holder.into(),
        key: key.into(),
        at,
        fence,
    }
}

fn leave(holder: &str, key: &str, at: u64) -> Entry {
    Entry::Leave {
        holder: holder.into(),
        key: key.into(),
        at,
        done: true,
    }
}

fn history(entries: Vec<Entry>) -> History {
    History { entries }
}

#[test]
fn two_holders_inside_one_key_at_once_is_an_overlap() {
    let h = history(vec![
        enter("a/0/0", "k", 100, Some(1)),
        enter("b/0/0", "k", 250, Some(2)),
        leave("a/0/0", "k", 300),
        leave("b/0/0", "k", 400),
    ]);
    let report = h.check();
    assert_eq!(report.sections, 2);
    assert_eq!(report.overlaps.len(), 1, "{report}");
    let o = &report.overlaps[0];
    assert_eq!((o.first.as_str(), o.second.as_str()), ("a/0/0", "b/0/0"));
    assert_eq!(o.key, "k");
    assert_eq!(o.length, Duration::from_nanos(50));
    assert_eq!(report.longest_overlap, Duration::from_nanos(50));
}

#[test]
fn a_section_nested_inside_another_overlaps_for_its_whole_length() {
    let h = history(vec![
        enter("a/0/0", "k", 100, None),
        enter("b/1/0", "k", 200, None),
        leave("b/1/0", "k", 220),
        leave("a/0/0", "k", 900),
    ]);
    assert_eq!(h.check().longest_overlap, Duration::from_nanos(20));
}

#[test]
fn tasks_of_one_process_are_different_holders() {
    let h = history(vec![
        enter("a/0/0", "k", 100, None),
        enter("a/1/0", "k", 150, None),
        leave("a/0/0", "k", 200),
        leave("a/1/0", "k", 250),
    ]);
    assert_eq!(h.check().overlaps.len(), 1);
}

#[test]
fn back_to_back_sections_and_other_keys_do_not_overlap() {
    let h = history(vec![
        enter("a/0/0", "k", 100, Some(1)),
        leave("a/0/0", "k", 200),
        enter("b/0/0", "k", 200, Some(2)),
        enter("c/0/0", "other", 150, Some(1)),
        leave("b/0/0", "k", 300),
        leave("c/0/0", "other", 260),
    ]);
    let report = h.check();
    assert!(report.overlaps.is_empty(), "{report}");
    assert_eq!(report.longest_overlap, Duration::ZERO);
    assert_eq!(report.fence_regressions, 0);
}

#[test]
fn every_overlapping_pair_is_counted_and_the_longest_kept() {
    let h = history(vec![
        enter("a/0/0", "k", 0, None),
        enter("b/0/0", "k", 10, None),
        enter("c/0/0", "k", 20, None),
        leave("a/0/0", "k", 100),
        leave("b/0/0", "k", 30),
        leave("c/0/0", "k", 40),
    ]);
    let report = h.check();
    // a-b, a-c, b-c.
    assert_eq!(report.overlaps.len(), 3, "{report}");
    assert_eq!(report.longest_overlap, Duration::from_nanos(20));
}

#[test]
fn a_killed_holder_is_inside_until_its_down_line() {
    let killed = vec![
        enter("a/0/0", "k", 100, Some(1)),
        Entry::Down {
            worker: "a".into(),
            at: 500,
            keys: None,
        },
    ];
    let mut after = killed.clone();
    after.extend([enter("b/0/0", "k", 600, Some(2)), leave("b/0/0", "k", 700)]);
    let report = history(after).check();
    assert!(report.overlaps.is_empty(), "{report}");
    assert_eq!(report.handovers.len(), 1);
    assert_eq!(report.handovers[0].key, "k");
    assert_eq!(report.longest_handover(), Some(Duration::from_nanos(100)));

    let mut before = killed;
    before.extend([enter("b/0/0", "k", 400, Some(2)), leave("b/0/0", "k", 700)]);
    let report = history(before).check();
    assert_eq!(report.overlaps.len(), 1, "{report}");
    assert_eq!(report.longest_overlap, Duration::from_nanos(100));
}

#[test]
fn a_section_never_left_and_never_downed_overlaps_everything_after_it() {
    let h = history(vec![
        enter("a/0/0", "k", 100, None),
        enter("b/0/0", "k", 5_000, None),
        leave("b/0/0", "k", 6_000),
    ]);
    let report = h.check();
    assert_eq!(report.overlaps.len(), 1);
    assert_eq!(report.longest_overlap, Duration::from_nanos(1_000));
}

#[test]
fn a_key_never_taken_again_after_its_holder_went_down_is_a_handover_that_never_ends() {
    let h = history(vec![
        enter("a/0/0", "k", 100, None),
        leave("a/0/0", "k", 200),
        Entry::Down {
            worker: "a".into(),
            at: 300,
            keys: Some(vec!["k".into()]),
        },
    ]);
    let report = h.check();
    assert_eq!(report.handovers.len(), 1);
    assert_eq!(report.handovers[0].gap(), None);
    assert_eq!(report.longest_handover(), Some(Duration::MAX));
}

#[test]
fn a_handover_that_happened_before_the_down_line_counts_as_zero() {
    let h = history(vec![
        enter("a/0/0", "k", 100, None),
        leave("a/0/0", "k", 200),
        enter("b/0/0", "k", 210, None),
        Entry::Down {
            worker: "a".into(),
            at: 300,
            keys: Some(vec!["k".into()]),
        },
        leave("b/0/0", "k", 400),
    ]);
    assert_eq!(h.check().longest_handover(), Some(Duration::ZERO));
}

#[test]
fn a_handover_counts_only_when_another_worker_was_waiting_for_the_key() {
    let down = |at| Entry::Down {
        worker: "a".into(),
        at,
        keys: Some(vec!["k".into()]),
    };
    let attempt = |holder: &str, at| Entry::Try {
        holder: holder.into(),
        key: "k".into(),
        at,
    };
    // b asked for the key at 150, before a went down at 300: a handover of 200.
    let waited = history(vec![
        attempt("a/0/0", 50),
        enter("a/0/0", "k", 100, None),
        attempt("b/0/0", 150),
        down(300),
        enter("b/0/0", "k", 500, None),
        leave("b/0/0", "k", 600),
    ]);
    assert_eq!(
        waited.check().longest_handover(),
        Some(Duration::from_nanos(200))
    );
    // b only asked at 450: no one was waiting when a went down, so there is no handover.
    let unattended = history(vec![
        attempt("a/0/0", 50),
        enter("a/0/0", "k", 100, None),
        down(300),
        attempt("b/0/0", 450),
        enter("b/0/0", "k", 500, None),
        leave("b/0/0", "k", 600),
    ]);
    assert_eq!(unattended.check().longest_handover(), None);
    // A waiter of a's own process does not count, nor one that had given up.
    let own_or_gone = history(vec![
        attempt("a/1/0", 50),
        attempt("b/0/0", 60),
        Entry::Fail {
            holder: "b/0/0".into(),
            key: "k".into(),
            at: 200,
            error: "Busy".into(),
        },
        enter("a/0/0", "k", 100, None),
        down(300),
    ]);
    assert_eq!(own_or_gone.check().longest_handover(), None);
}

#[test]
fn losses_failures_rejected_writes_and_fence_regressions_are_counted() {
    let h = history(vec![
        enter("a/0/0", "k", 100, Some(5)),
        Entry::Write {
            holder: "a/0/0".into(),
            key: "k".into(),
            at: 110,
            fence: 5,
            accepted: true,
        },
        leave("a/0/0", "k", 200),
        Entry::Lost {
            holder: "a/0/0".into(),
            key: "k".into(),
            at: 201,
        },
        // The counter went backwards (a restart without persistence).
        enter("b/0/0", "k", 300, Some(1)),
        Entry::Write {
            holder: "b/0/0".into(),
            key: "k".into(),
            at: 310,
            fence: 1,
            accepted: false,
        },
        leave("b/0/0", "k", 400),
        Entry::Fail {
            holder: "c/0/0".into(),
            key: "k".into(),
            at: 350,
            error: "Busy".into(),
        },
    ]);
    let report = h.check();
    assert_eq!(report.losses, 1);
    assert_eq!(report.failures, 1);
    assert_eq!(report.writes, 2);
    assert_eq!(report.rejected_writes, 1);
    assert_eq!(report.fence_regressions, 1);
    assert!(report.overlaps.is_empty());
}

#[test]
fn every_entry_survives_a_round_trip_through_its_line() {
    let entries = vec![
        Entry::Try {
            holder: "a/0/0".into(),
            key: "chaos:0".into(),
            at: 0,
        },
        enter("a/0/0", "chaos:0", 1, Some(7)),
        enter("a/0/1", "chaos:0", 2, None),
        Entry::Leave {
            holder: "a/0/0".into(),
            key: "chaos:0".into(),
            at: 3,
            done: false,
        },
        Entry::Lost {
            holder: "a/0/0".into(),
            key: "chaos:0".into(),
            at: 4,
        },
        Entry::Fail {
            holder: "a/0/0".into(),
            key: "chaos:0".into(),
            at: 5,
            error: "Timeout".into(),
        },
        Entry::Write {
            holder: "a/0/0".into(),
            key: "chaos:0".into(),
            at: 6,
            fence: 7,
            accepted: false,
        },
        Entry::Down {
            worker: "a".into(),
            at: 7,
            keys: None,
        },
        Entry::Down {
            worker: "a".into(),
            at: 8,
            keys: Some(vec![]),
        },
        Entry::Down {
            worker: "a".into(),
            at: 9,
            keys: Some(vec!["x".into(), "y".into()]),
        },
        Entry::Mark {
            name: "blackhole".into(),
            at: 10,
        },
    ];
    for entry in entries {
        let line = entry.to_string();
        assert_eq!(Entry::parse(&line), Ok(entry), "{line}");
    }
}

#[test]
fn an_unfinished_last_line_is_skipped_and_a_bad_line_is_an_error() {
    let h = History::parse("enter holder=a/0/0 key=k at=1 fence=-\nleave holder=a/0").unwrap();
    assert_eq!(h.entries.len(), 1);
    let err = History::parse("enter holder=a/0/0 key=k at=1\nbogus at=2\n").unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn recorded_files_of_several_processes_merge_into_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let (a, b) = (
        Recorder::create(&pa).unwrap(),
        Recorder::create(&pb).unwrap(),
    );
    a.record(&enter("a/0/0", "k", 100, Some(1))).unwrap();
    b.record(&enter("b/0/0", "k", 150, Some(2))).unwrap();
    a.record(&leave("a/0/0", "k", 200)).unwrap();
    b.record(&leave("b/0/0", "k", 250)).unwrap();
    let h = History::read([&pa, &pb, &dir.path().join("missing.log")]).unwrap();
    assert_eq!(h.entries.len(), 4);
    assert_eq!(h.check().overlaps.len(), 1);
}

#[test]
fn the_monotonic_clock_moves_forward() {
    let a = lock_tests::history::now_ns();
    std::thread::sleep(Duration::from_millis(2));
    let b = lock_tests::history::now_ns();
    assert!(b - a >= 2_000_000, "{a} {b}");
}
