//! P5: the `#[distributed_lock]` attribute against the manual guard. Everything about the
//! figure is here.
//!
//! **Workload.** P1's uncontended acquire + release of one key on one task, in three forms
//! ([`Form`]): the manual guard, `LockRequest::run` (what the attribute's expansion calls)
//! and the attribute itself, each on an empty body. Rounds of one block per form, the order
//! rotating every round; the ratios are medians over rounds of the per-round ratio.

use std::fmt::Write as _;
use std::time::Instant;

use lock_runtime::{LockClient, LockError, distributed_lock};

use super::{Figure, Goal, Ratios, TsvLine, own_row};
use crate::format::{dur, header, pct_of};
use crate::measure::{Bench, rotated};
use crate::stats::median;
use crate::workload::TTL;
use crate::{Res, Results, step};

/// Goal: attribute / manual, at most.
const MAX_RATIO: f64 = 1.05;

/// P5's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Rounds; each times one block of each form, rotating which goes first.
    pub rounds: usize,
    /// Cycles per block (one untimed block of each form comes first).
    pub block: usize,
}

/// The full run.
pub const FULL: Config = Config {
    rounds: 20,
    block: 500,
};

/// The quick run.
pub const QUICK: Config = Config {
    rounds: 4,
    block: 50,
};

/// The attribute form: an empty body under `#[distributed_lock]`.
#[distributed_lock(key = "bench:p5:{id}", ttl = "10s", client = client)]
async fn attributed(client: &LockClient, id: u64) -> Result<(), LockError> {
    Ok(())
}

/// What the attribute's expansion calls, written out: `LockRequest::run` on an empty body.
async fn run_form(client: &LockClient, id: u64) -> Result<(), LockError> {
    client
        .lock(format!("bench:p5:{id}"))
        .ttl(TTL)
        .run(async { Ok(()) })
        .await?
}

/// The same work by hand: build the key, acquire, (empty body), release.
async fn manual(client: &LockClient, id: u64) -> Result<(), LockError> {
    let guard = client
        .lock(format!("bench:p5:{id}"))
        .ttl(TTL)
        .acquire()
        .await?;
    guard.release().await
}

/// The forms P5 compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `acquire()` + `release()`.
    Manual,
    /// `LockRequest::run`.
    Run,
    /// `#[distributed_lock]`.
    Attribute,
}

impl Form {
    const ALL: [Form; 3] = [Form::Manual, Form::Run, Form::Attribute];

    async fn cycle(self, client: &LockClient, id: u64) -> Result<(), LockError> {
        match self {
            Form::Manual => manual(client, id).await,
            Form::Run => run_form(client, id).await,
            Form::Attribute => attributed(client, id).await,
        }
    }
}

/// P5's figures.
#[derive(Debug, Clone)]
pub struct P5 {
    /// The shape measured.
    pub config: Config,
    /// Median over rounds of each form's mean cycle time, in microseconds, in
    /// [`Form::ALL`] order: manual, run, attribute.
    pub mean_us: [f64; 3],
    /// Median over rounds of attribute / manual.
    pub ratio: f64,
    /// Median over rounds of run / manual.
    pub run_ratio: f64,
}

impl P5 {
    /// The median mean cycle time of `form`, microseconds.
    pub fn mean(&self, form: Form) -> f64 {
        let i = Form::ALL.iter().position(|f| *f == form).unwrap_or(0);
        self.mean_us[i]
    }
}

/// Measures P5 on a fresh client.
pub fn measure(b: &mut Bench, config: Config) -> Res<P5> {
    step("P5: attribute vs manual guard");
    let url = b.server.url();
    b.rt.block_on(async {
        let client = LockClient::connect(&url).await?;
        let id = 1;
        for form in Form::ALL {
            for _ in 0..config.block {
                form.cycle(&client, id).await?;
            }
        }
        let mut per_form: [Vec<f64>; 3] = Default::default();
        let (mut ratios, mut run_ratios) = (Vec::new(), Vec::new());
        for round in 0..config.rounds {
            let mut us = [0.0; 3];
            for i in rotated(round, Form::ALL.len()) {
                let started = Instant::now();
                for _ in 0..config.block {
                    Form::ALL[i].cycle(&client, id).await?;
                }
                us[i] = started.elapsed().as_secs_f64() * 1e6 / config.block as f64;
            }
            for (all, one) in per_form.iter_mut().zip(us) {
                all.push(one);
            }
            ratios.push(us[2] / us[0]);
            run_ratios.push(us[1] / us[0]);
        }
        Ok(P5 {
            config,
            mean_us: per_form.map(|v| median(&v)),
            ratio: median(&ratios),
            run_ratio: median(&run_ratios),
        })
    })
}

impl Figure for P5 {
    fn goals(&self, _r: &Results) -> Vec<Goal> {
        vec![Goal {
            name: "P5 `#[distributed_lock]` / manual guard",
            target: format!("≤ {MAX_RATIO}"),
            measured: format!(
                "{:.3} ({} / {} per cycle)",
                self.ratio,
                dur(self.mean(Form::Attribute)),
                dur(self.mean(Form::Manual))
            ),
            pass: self.ratio <= MAX_RATIO,
            bound: format!(
                "**P5: attribute / manual = {:.3}.** `LockRequest::run` alone is {:.3} × manual, so {} \
                 of the gap is in `run` (re-entry check, the current-lock scope, watching for loss while \
                 the body runs) and the rest in what the attribute adds around it.",
                self.ratio,
                self.run_ratio,
                if self.run_ratio >= self.ratio {
                    "all".to_owned()
                } else {
                    pct_of(self.run_ratio - 1.0, self.ratio - 1.0)
                },
            ),
        }]
    }

    fn section(&self, _r: &Results) -> String {
        let mut w = String::new();
        let _ = writeln!(
            w,
            "### P5: `#[distributed_lock]` against the manual guard\n"
        );
        header(
            &mut w,
            "| Form | mean per cycle (median of rounds) | ÷ manual (median of per-round ratios) |",
        );
        let _ = writeln!(
            w,
            "| manual: `client.lock(format!(\"bench:p5:{{id}}\")).ttl(10s).acquire()`, then `release()` | {} | 1 |",
            dur(self.mean(Form::Manual))
        );
        let _ = writeln!(
            w,
            "| `client.lock(..).ttl(10s).run(async {{ Ok(()) }})` (what the attribute calls) | {} | {:.3} |",
            dur(self.mean(Form::Run)),
            self.run_ratio
        );
        let _ = writeln!(
            w,
            "| `#[distributed_lock(key = \"bench:p5:{{id}}\", ttl = \"10s\", client = client)]` on an empty body | {} | **{:.3}** |\n",
            dur(self.mean(Form::Attribute)),
            self.ratio
        );
        let _ = writeln!(
            w,
            "{} rounds of {} cycles of each form; the order of the forms rotates every round.\n",
            self.config.rounds, self.config.block
        );
        w
    }

    fn method(&self, _r: &Results) -> Option<String> {
        Some(format!(
            "- **P5.** The P1 workload in three forms, {} rounds × {} cycles each, the order of the \
             forms rotating every round; ratios are medians over rounds of the per-round ratio.",
            self.config.rounds, self.config.block
        ))
    }

    fn tsv(&self, _r: &Results) -> Vec<TsvLine> {
        vec![
            ("p5.manual.mean".into(), self.mean(Form::Manual), "us"),
            ("p5.run.mean".into(), self.mean(Form::Run), "us"),
            ("p5.attribute.mean".into(), self.mean(Form::Attribute), "us"),
            ("p5.ratio".into(), self.ratio, "x"),
        ]
    }

    fn ratios(&self, _r: &Results) -> Vec<Ratios> {
        vec![own_row(
            "P5 attribute ÷ manual",
            format!("{:.3}", self.ratio),
        )]
    }
}
