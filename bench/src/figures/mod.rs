//! The figures of BENCHMARKS.md, one module each. A module measures its figure and
//! describes its own part of the report: its rows of the goals table (each with what
//! bounds it when missed), its section under "Figures" (table and text, the peers beside
//! lock-runtime), its bullet of "Method", its plots, its lines of results.tsv and its rows
//! of the closing note. `report.rs` only places them, in [`Results::figures`] order.

pub mod p1;
pub mod p2;
pub mod p3;
pub mod p4;
pub mod p5;
pub mod p6;
pub mod quorum;

use std::path::{Path, PathBuf};

use crate::format::sig3;
use crate::peers::Lib;
use crate::{Res, Results};

/// One goal from the issue, evaluated.
pub struct Goal {
    /// The goal's name in the Goals table.
    pub name: &'static str,
    /// What it asks for.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Whether it was met.
    pub pass: bool,
    /// What bounds the figure, from the measurements; printed when the goal is missed.
    pub bound: String,
}

impl Goal {
    /// `PASS` or `MISS`.
    pub fn status(&self) -> &'static str {
        if self.pass { "PASS" } else { "MISS" }
    }
}

/// A line of results.tsv: id, value, unit.
pub type TsvLine = (String, f64, &'static str);

/// A row of the closing note's table: figure, ÷ rslock, ÷ redlock, other.
pub type Ratios = [String; 4];

/// What every figure (and the floor) supplies to the report.
pub trait Figure {
    /// Its rows of the goals table.
    fn goals(&self, _r: &Results) -> Vec<Goal> {
        Vec::new()
    }

    /// Things a PASS alone would hide, from the figures.
    fn notes(&self, _r: &Results) -> Vec<String> {
        Vec::new()
    }

    /// Its section under "## Figures": heading, table, the text under it.
    fn section(&self, r: &Results) -> String;

    /// Its bullet of "## Method", when the section itself does not say how it was taken.
    fn method(&self, _r: &Results) -> Option<String> {
        None
    }

    /// Writes its plots into `dir`; returns their paths.
    fn plots(&self, _r: &Results, _dir: &Path) -> Res<Vec<PathBuf>> {
        Ok(Vec::new())
    }

    /// Its lines of results.tsv.
    fn tsv(&self, r: &Results) -> Vec<TsvLine>;

    /// Its rows of the closing note's table.
    fn ratios(&self, _r: &Results) -> Vec<Ratios> {
        Vec::new()
    }
}

/// The peer crates, in table order.
pub const PEERS: [Lib; 2] = [Lib::Rslock, Lib::Redlock];

/// `rslock 0.10 <f(rslock)>, redlock 2.0 <f(redlock)>`.
pub fn peers_list(f: impl Fn(Lib) -> String) -> String {
    PEERS.map(|l| format!("{} {}", l.name(), f(l))).join(", ")
}

/// The "ahead of both peers" goal: `ours` against `theirs(peer)`, shown with `show`;
/// `bound` says why, for each peer lock-runtime is not ahead of.
pub fn ahead_goal(
    name: &'static str,
    target: &str,
    ours: f64,
    theirs: impl Fn(Lib) -> f64,
    lower_is_better: bool,
    show: impl Fn(f64) -> String,
    bound: impl Fn(Lib) -> String,
) -> Goal {
    let behind: Vec<Lib> = PEERS
        .into_iter()
        .filter(|&l| {
            if lower_is_better {
                ours >= theirs(l)
            } else {
                ours <= theirs(l)
            }
        })
        .collect();
    Goal {
        name,
        target: target.to_owned(),
        measured: format!("{} vs {}", show(ours), peers_list(|l| show(theirs(l)))),
        pass: behind.is_empty(),
        bound: behind
            .into_iter()
            .map(bound)
            .collect::<Vec<_>>()
            .join("\n\n- "),
    }
}

/// The rounds goal: at least rslock's figure in at least 15 of 20 interleaved
/// rounds (scaled to the rounds run). `why` says what the figures have in common.
pub fn rounds_goal(
    name: &'static str,
    ours: &[f64],
    rslock: &[f64],
    lower_is_better: bool,
    what: &str,
    why: String,
) -> Goal {
    let n = ours.len().min(rslock.len());
    let won = n - paired_losses(ours, rslock, lower_is_better);
    let need = (n * 3).div_ceil(4);
    let ratios: Vec<f64> = ours.iter().zip(rslock).map(|(o, p)| o / p).collect();
    let (lo, hi) = crate::measure::spread(&ratios);
    Goal {
        name,
        target: format!("at least rslock's figure in ≥ 15 of 20 rounds ({need} of {n})"),
        measured: format!("{won} of {n} rounds ({what})"),
        pass: won >= need,
        bound: format!(
            "**{}: at least rslock's figure in {won} of {n} interleaved rounds**, against {need} \
             needed. lock-runtime ÷ rslock ranged {}-{} between rounds (median {}). {why}",
            &name[..2],
            sig3(lo),
            sig3(hi),
            sig3(crate::stats::median(&ratios)),
        ),
    }
}

/// In how many rounds lock-runtime did worse than the peer, comparing the same round.
pub fn paired_losses(ours: &[f64], peer: &[f64], lower_is_better: bool) -> usize {
    ours.iter()
        .zip(peer)
        .filter(|(o, p)| if lower_is_better { o > p } else { o < p })
        .count()
}

/// A row of the closing note: lock-runtime's figure divided by each peer's.
pub fn ratio_row(figure: &str, ours: f64, theirs: impl Fn(Lib) -> f64, other: String) -> Ratios {
    let [a, b] = PEERS.map(|l| format!("{:.3}", ours / theirs(l)));
    [figure.to_owned(), a, b, other]
}

/// A row of the closing note with no peer to compare.
pub fn own_row(figure: &str, other: String) -> Ratios {
    [figure.to_owned(), "-".to_owned(), "-".to_owned(), other]
}
