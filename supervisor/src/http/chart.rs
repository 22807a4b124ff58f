//! The last hour of power as chart geometry for an inline SVG, computed on the server (no
//! script needed). Pure: minutes in, coordinates and words out; the template draws it.
//!
//! The power axis starts at 0 W: a Pi draws 3 W give or take a few tenths, and an axis from
//! 0 shows that calmly and truthfully instead of magnifying noise. Minutes without a
//! measurement break the line.

use super::i18n::{fill, Lang};
use crate::meter::recent::MinutePower;
use std::fmt::Write as _;

/// The SVG's coordinate system (`viewBox`). It scales to the page's width; sized for a phone
/// (about 1:1 at 360 px), so its 11-unit labels stay readable there.
pub const WIDTH: f64 = 360.0;
pub const HEIGHT: f64 = 180.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub width: f64,
    pub height: f64,
    /// The plot area's left, right, top and bottom edges.
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    /// Where the power labels end (right-aligned) and the time labels sit.
    pub y_label_x: f64,
    pub x_label_y: f64,
    /// `points` attributes of polylines, one per run of measured minutes.
    pub lines: Vec<String>,
    /// `d` attributes of the areas under those runs.
    pub areas: Vec<String>,
    /// Runs of a single minute, drawn as dots: `(x, y)`.
    pub dots: Vec<(f64, f64)>,
    /// The newest measured point, marked.
    pub latest: Option<(f64, f64)>,
    /// Horizontal grid lines (power) and their labels.
    pub y_ticks: Vec<Tick>,
    /// Time labels under the plot.
    pub x_ticks: Vec<Tick>,
    /// The text alternative (also shown under the chart).
    pub summary: String,
    /// Measured minutes among the last 60 (the running one included).
    pub measured: usize,
}

/// A step of 1, 2, 2.5 or 5 × 10ⁿ that gives about four intervals up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Decimals that show every tick of `step` exactly (0.25 needs two).
fn decimals(step: f64) -> usize {
    (0..3)
        .find(|&d| {
            let f = 10f64.powi(d);
            ((step * f).round() - step * f).abs() < 1e-9
        })
        .map_or(2, |d| d as usize)
}

/// `minutes`: oldest first, the last one the running minute (as `RecentMinutes::last_hour`).
pub fn chart(minutes: &[MinutePower], lang: Lang) -> Chart {
    let t = lang.t();
    let (left, right, top, bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let values: Vec<f64> = minutes.iter().filter_map(|m| m.mean_w).collect();
    let max = values.iter().copied().fold(0.0, f64::max).max(1.0);
    let step = nice_step(max);
    let top_w = (max / step).ceil() * step;
    let span = minutes.len().saturating_sub(1).max(1) as f64;
    // Coordinates to a tenth of a unit keep the markup short.
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    let x = |i: usize| r1(left + (right - left) * i as f64 / span);
    let y = |w: f64| r1(bottom - (bottom - top) * (w / top_w).clamp(0.0, 1.0));

    let mut lines = Vec::new();
    let mut areas = Vec::new();
    let mut dots = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut flush = |run: &mut Vec<(f64, f64)>| {
        match run.len() {
            0 => {}
            1 => dots.push(run[0]),
            _ => {
                let mut pts = String::new();
                let mut d = format!("M{:.1},{:.1}", run[0].0, bottom);
                for (px, py) in run.iter() {
                    let _ = write!(pts, "{px:.1},{py:.1} ");
                    let _ = write!(d, " L{px:.1},{py:.1}");
                }
                let _ = write!(d, " L{:.1},{bottom:.1} Z", run[run.len() - 1].0);
                lines.push(pts.trim_end().to_string());
                areas.push(d);
            }
        }
        run.clear();
    };
    let mut latest = None;
    for (i, m) in minutes.iter().enumerate() {
        match m.mean_w {
            Some(w) => {
                let p = (x(i), y(w));
                run.push(p);
                latest = Some(p);
            }
            None => flush(&mut run),
        }
    }
    flush(&mut run);

    let digits = decimals(step);
    let n_ticks = (top_w / step).round() as usize;
    let y_ticks = (0..=n_ticks)
        .map(|k| {
            let w = step * k as f64;
            Tick {
                at: y(w),
                label: format!("{}\u{a0}W", lang.num(w, digits)),
            }
        })
        .collect();
    let last = minutes.len().saturating_sub(1);
    let x_ticks = [60usize, 45, 30, 15]
        .into_iter()
        .filter(|&ago| ago <= last && ago > 0)
        .map(|ago| Tick {
            at: x(last - ago),
            label: fill(t.chart_ago, &[&ago.to_string()]),
        })
        .chain(std::iter::once(Tick {
            at: x(last),
            label: t.chart_now.to_string(),
        }))
        .collect();

    // Coverage over the last 60 slots: the running minute and the 59 before it, so a full
    // hour reads "60 of 60" from the first minute on.
    let window = &minutes[minutes.len().saturating_sub(60)..];
    let measured = window.iter().filter(|m| m.mean_w.is_some()).count();
    let summary = if values.is_empty() {
        t.chart_empty.to_string()
    } else {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w = |v: f64| format!("{}\u{a0}W", lang.num(v, 2));
        fill(
            t.chart_summary,
            &[
                &w(mean),
                &w(lo),
                &w(hi),
                &measured.to_string(),
                &window.len().to_string(),
            ],
        )
    };
    Chart {
        width: WIDTH,
        height: HEIGHT,
        left,
        right,
        top,
        bottom,
        y_label_x: left - 5.0,
        x_label_y: HEIGHT - 6.0,
        lines,
        areas,
        dots,
        latest,
        y_ticks,
        x_ticks,
        summary,
        measured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(f: impl Fn(usize) -> Option<f64>) -> Vec<MinutePower> {
        (0..=60)
            .map(|i| MinutePower {
                minute_s: i as i64 * 60,
                mean_w: f(i),
            })
            .collect()
    }

    #[test]
    fn a_full_hour_is_one_line_from_edge_to_edge_with_an_axis_from_zero() {
        let c = chart(&hour(|i| Some(3.0 + (i % 7) as f64 * 0.1)), Lang::En);
        assert_eq!(c.lines.len(), 1);
        let pts: Vec<&str> = c.lines[0].split(' ').collect();
        assert_eq!(pts.len(), 61);
        assert!(pts[0].starts_with("40.0,"), "{}", pts[0]);
        assert!(pts[60].starts_with("346.0,"), "{}", pts[60]);
        assert_eq!(c.y_ticks[0].label, "0\u{a0}W");
        assert_eq!(c.y_ticks[0].at, c.bottom);
        // 3.6 W at most: ticks of 1 W up to 4 W.
        let labels: Vec<&str> = c.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["0\u{a0}W", "1\u{a0}W", "2\u{a0}W", "3\u{a0}W", "4\u{a0}W"]
        );
        assert_eq!(c.measured, 60);
        assert!(c.summary.contains("60 of 60 minutes"), "{}", c.summary);
        assert!(c.summary.contains("highest 3.60\u{a0}W"), "{}", c.summary);
        let xl: Vec<&str> = c.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(xl, ["−60 min", "−45 min", "−30 min", "−15 min", "now"]);
    }

    #[test]
    fn missing_minutes_break_the_line_and_lone_minutes_are_dots() {
        // Measured 0–19, a gap 20–29, minute 40 alone, 55–60.
        let c = chart(
            &hour(|i| (i < 20 || i == 40 || i >= 55).then_some(2.8)),
            Lang::De,
        );
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.areas.len(), 2);
        assert_eq!(c.dots.len(), 1);
        // Of the last 60 slots (1–60): 1–19, 40, 55–60.
        assert_eq!(c.measured, 19 + 1 + 6);
        assert!(c.summary.contains("26 von 60 Minuten"), "{}", c.summary);
        assert!(c.summary.contains("2,80\u{a0}W"), "{}", c.summary);
        assert_eq!(c.x_ticks.last().unwrap().label, "jetzt");
    }

    #[test]
    fn an_empty_hour_says_so_instead_of_drawing_nothing_silently() {
        let c = chart(&hour(|_| None), Lang::En);
        assert!(c.lines.is_empty() && c.dots.is_empty() && c.latest.is_none());
        assert!(c.summary.starts_with("No measurements"), "{}", c.summary);
        assert!(!c.y_ticks.is_empty(), "the axis is still drawn");
    }

    #[test]
    fn small_powers_get_decimal_ticks() {
        let c = chart(&hour(|_| Some(0.3)), Lang::En);
        // max(1 W) keeps the axis at least 1 W tall: 0, 0.25, …, 1.
        assert_eq!(c.y_ticks.last().unwrap().label, "1.00\u{a0}W");
        assert!((nice_step(6.4) - 2.0).abs() < 1e-12);
        assert!((nice_step(10.0) - 2.5).abs() < 1e-12);
    }
}
