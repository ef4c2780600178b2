//! Runs the benchmark binary in quick mode and checks that it produced every figure and
//! both plots, so the bench cannot rot unnoticed. Figures are not judged: a debug build on
//! a busy machine says nothing about speed.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Figures that every run must report, as finite positive numbers.
const REQUIRED: &[&str] = &[
    "floor.ping_rs.p50",
    "floor.bare_scripts.mean",
    "floor.set_rs.rps",
    "p4.renewals_per_tick",
    "p4.round_trips_per_100_locks_per_tick",
    "p4.rss_per_lock",
    "p5.manual.mean",
    "p5.run.mean",
    "p5.attribute.mean",
    "p5.ratio",
    "quorum.single.mean",
];

/// Figures reported per library.
const PER_LIB: &[&str] = &[
    "p1.{}.mean",
    "p1.{}.p50",
    "p1.{}.ratio_ping",
    "p1.{}.commands_per_cycle",
    "p1.{}.round_trips_per_cycle",
    "p2.{}.cycles_per_sec",
    "p2.{}.ratio_set",
    "p3.{}.p50",
    "p3.{}.p99",
    "p3.{}.p999",
    "p3.{}.ratio_ping",
    "p6.{}.handoffs_per_sec",
    "p6.{}.commands_per_handoff",
    "p6.{}.jain",
    "quorum.{}.mean",
    "quorum.{}.ratio_single",
];

const LIBS: &[&str] = &["ours", "rslock", "redlock"];

/// Figures that come from redis-benchmark, when it is installed.
const FROM_REDIS_BENCHMARK: &[&str] = &["floor.ping_rb.p50", "floor.set_rb.rps"];

fn redis_benchmark_installed() -> bool {
    Command::new("redis-benchmark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_figures(path: &Path) -> HashMap<String, f64> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut fields = l.split('\t');
            let id = fields.next().expect("an id").to_owned();
            let value = fields
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no number in line {l:?}"));
            (id, value)
        })
        .collect()
}

#[test]
fn quick_run_reports_every_figure_and_writes_the_plots() {
    if !lock_tests::redis_server_available() {
        eprintln!("skipping: redis-server is not installed (scripts/test installs it)");
        return;
    }
    let out = tempfile::tempdir().expect("a temporary directory");
    let run = Command::new(env!("CARGO_BIN_EXE_lock-bench"))
        .args(["--quick", "--out"])
        .arg(out.path())
        .env_remove("LOCK_BENCH_QUICK")
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "lock-bench --quick failed: {}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        run.status
    );

    let figures = read_figures(&out.path().join("bench/results.tsv"));
    let mut required: Vec<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
    for lib in LIBS {
        required.extend(PER_LIB.iter().map(|f| f.replace("{}", lib)));
    }
    if redis_benchmark_installed() {
        required.extend(FROM_REDIS_BENCHMARK.iter().map(|s| s.to_string()));
    }
    let bad: Vec<String> = required
        .iter()
        .filter(|id| !figures.get(*id).is_some_and(|v| v.is_finite() && *v > 0.0))
        .map(|id| format!("{id} = {:?}", figures.get(id)))
        .collect();
    assert!(
        bad.is_empty(),
        "missing or non-positive figures: {bad:?}\n--- stdout:\n{stdout}"
    );

    let md = fs::read_to_string(out.path().join("BENCHMARKS.md")).expect("BENCHMARKS.md");
    for needle in [
        "cargo run --release -p lock-bench",
        "## Goals",
        "P1 uncontended",
        "P2 throughput",
        "P3 contended",
        "P4 renewal",
        "P4 memory",
        "P5",
        "rslock 0.10",
        "redlock 2.0",
        "bench/plots/p3_handoff_cdf.svg",
        "bench/plots/p1_p2_bars.svg",
        "P6 commands per hand-off",
        "P6 fairness",
        "Quorum of 5",
        "bench/plots/p6_acquisitions_per_task.svg",
        "bench/plots/p6_handoff_cdf.svg",
    ] {
        assert!(md.contains(needle), "BENCHMARKS.md lacks {needle:?}");
    }
    assert!(
        md.contains("PASS") || md.contains("MISS"),
        "BENCHMARKS.md has no verdicts"
    );

    for plot in [
        "p3_handoff_cdf.svg",
        "p1_p2_bars.svg",
        "p6_acquisitions_per_task.svg",
        "p6_handoff_cdf.svg",
    ] {
        let path = out.path().join("bench/plots").join(plot);
        let svg = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(svg.starts_with("<svg"), "{plot} is not an SVG");
        assert!(svg.contains("<text"), "{plot} has no text");
        assert!(svg.trim_end().ends_with("</svg>"), "{plot} is cut short");
    }
    let cdf = fs::read_to_string(out.path().join("bench/plots/p3_handoff_cdf.svg")).unwrap();
    for name in ["lock-runtime", "rslock 0.10", "redlock 2.0"] {
        assert!(cdf.contains(name), "the CDF has no {name} line");
    }
}
