//! The SVG plots committed beside BENCHMARKS.md, drawn with plotters' SVG backend (text is
//! written as `<text>` elements; no font files are read).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::Res;

/// One line of the CDF plot: a name and ascending samples in microseconds.
pub struct CdfSeries<'a> {
    /// Legend entry.
    pub name: String,
    /// Ascending samples, microseconds.
    pub sorted_us: &'a [f64],
}

/// One bar: a label and a value.
pub struct Bar {
    /// Label on the left of the bar.
    pub label: String,
    /// Length of the bar.
    pub value: f64,
    /// Whether this bar is a floor (drawn grey) rather than a lock library.
    pub floor: bool,
}

/// One panel of horizontal bars.
pub struct BarPanel {
    /// Panel title.
    pub title: String,
    /// Axis description, with the unit.
    pub unit: String,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
}

/// Line colours, in series order.
pub const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];
/// Room the CDF legend needs: width, and height without its lines (22 px each).
const LEGEND_SIZE: (i32, i32) = (330, 18);
const FLOOR_GREY: RGBColor = RGBColor(150, 150, 150);

/// Fraction of samples at or below each latency, log-scaled latency axis in milliseconds,
/// with a dashed vertical marker at `marker_ms` (the goal) when given.
pub fn cdf(
    path: &Path,
    title: &str,
    series: &[CdfSeries<'_>],
    marker: Option<(f64, String)>,
) -> Res<()> {
    let to_ms = |us: f64| (us / 1000.0).max(0.001);
    let all = series.iter().flat_map(|s| s.sorted_us.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0f64), |(lo, hi), us| {
        (lo.min(to_ms(us)), hi.max(to_ms(us)))
    });
    let lo = if lo.is_finite() { lo } else { 0.01 };
    let hi = hi.max(lo * 10.0);
    let lo = marker.as_ref().map_or(lo, |(m, _)| lo.min(*m)) / 1.5;
    let hi = hi * 1.5;

    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("hand-off latency, ms (log scale; samples at or below 0 drawn at 0.001)")
        .y_desc("fraction of hand-offs at or below")
        .x_label_formatter(&|v| format_ms(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let n = s.sorted_us.len() as f64;
        let points = s
            .sorted_us
            .iter()
            .enumerate()
            .map(|(k, us)| (to_ms(*us), (k + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if let Some((ms, label)) = &marker {
        let ms = *ms;
        let dashes = (0..20).map(|k| {
            let y = k as f64 / 20.0;
            PathElement::new(vec![(ms, y), (ms, y + 0.025)], BLACK.stroke_width(1))
        });
        chart
            .draw_series(dashes)?
            .label(label.clone())
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], BLACK)
            });
    }
    // The legend goes in the first stretch along the top that no line crosses.
    let base = chart.plotting_area().get_base_pixel();
    let (x_px, y_px) = chart.plotting_area().get_pixel_range();
    let points: Vec<(i32, i32)> = series
        .iter()
        .flat_map(|s| {
            let n = s.sorted_us.len() as f64;
            s.sorted_us
                .iter()
                .enumerate()
                .map(move |(k, us)| (to_ms(*us), (k + 1) as f64 / n))
        })
        .chain(
            marker
                .iter()
                .flat_map(|(ms, _)| (0..=50).map(move |k| (*ms, k as f64 / 50.0))),
        )
        .map(|p| chart.backend_coord(&p))
        .collect();
    let (width, height) = (
        LEGEND_SIZE.0,
        LEGEND_SIZE.1 + 22 * (series.len() as i32 + 1),
    );
    let top = y_px.start + 8;
    let free = (x_px.start + 8..x_px.end - width - 8)
        .step_by(10)
        .find(|left| {
            !points.iter().any(|&(x, y)| {
                x >= left - 6 && x <= left + width + 6 && y >= top - 6 && y <= top + height + 6
            })
        });
    let position = match free {
        Some(left) => SeriesLabelPosition::Coordinate(left - base.0, top - base.1),
        None => SeriesLabelPosition::LowerRight,
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Panels of horizontal bars, stacked top to bottom, each bar labelled with its value.
pub fn bars(path: &Path, panels: &[BarPanel]) -> Res<()> {
    let height = panels
        .iter()
        .map(|p| 90 + 42 * p.bars.len() as u32)
        .sum::<u32>();
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut area: DrawingArea<SVGBackend<'_>, Shift> = root.clone();
    for panel in panels {
        let panel_height = 90 + 42 * panel.bars.len() as u32;
        let (top, rest) = area.split_vertically(panel_height);
        draw_panel(&top, panel)?;
        area = rest;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &BarPanel) -> Res<()> {
    let n = panel.bars.len();
    let max = panel
        .bars
        .iter()
        .map(|b| b.value)
        .fold(0f64, f64::max)
        .max(1e-9);
    // Segment `row` is drawn bottom-up; bar `i` goes in row `n - 1 - i`, so the first bar
    // is at the top.
    let bar_of_row = |row: usize| &panel.bars[n - 1 - row];
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(row) if *row < n => bar_of_row(*row).label.clone(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(230)
        // `into_segmented` makes one segment per value of the range, both ends included.
        .build_cartesian_2d(0f64..max * 1.25, (0..n.saturating_sub(1)).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .y_label_style(("sans-serif", 13))
        .x_desc(panel.unit.as_str())
        .x_label_formatter(&|v| format_count(*v))
        .draw()?;
    let mut lib = 0;
    for (i, bar) in panel.bars.iter().enumerate() {
        let row = n - 1 - i;
        let color = if bar.floor {
            FLOOR_GREY
        } else {
            lib += 1;
            PALETTE[(lib - 1) % PALETTE.len()]
        };
        let mut rect = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row)),
                (bar.value, SegmentValue::Exact(row + 1)),
            ],
            color.filled(),
        );
        rect.set_margin(7, 7, 0, 0);
        chart.draw_series(std::iter::once(rect))?;
        chart.draw_series(std::iter::once(Text::new(
            format!(" {}", format_value(bar.value)),
            (bar.value, SegmentValue::CenterOf(row)),
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        )))?;
    }
    Ok(())
}

/// `0.05`, `0.5`, `5`, `50`, `500` for a log axis in milliseconds.
fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.1}")
    } else if v >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Axis ticks: `20k` rather than `20000`.
fn format_count(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// Bar values: three significant digits.
fn format_value(v: f64) -> String {
    crate::format::sig3(v)
}
