//! Hand-written SVG plots: line charts of per-epoch curves, scatter charts and the
//! confusion-matrix heat map.
//! Plain SVG 1.1 (no scripts, no external fonts) so any viewer or `rsvg-convert` renders it.

use crate::train::metrics::ConfusionMatrix;
use std::fmt::Write;

/// One curve of a line chart: y values for epochs 1, 2, ...
pub struct Series<'a> {
    pub label: &'a str,
    pub values: Vec<f64>,
    pub color: &'a str,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 150.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;

/// Text escaped for XML and HTML (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Tick positions covering [lo, hi] at a 1-2-5 step giving about five ticks.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Formats a tick label without float noise (0.30000000000000004 -> 0.3).
fn tick_label(v: f64) -> String {
    let s = format!("{:.6}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// The y range of a chart of `values` (non-finite ones ignored): padded by 5%, not below 0 for
/// non-negative data, widened when flat.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (if lo >= 0.0 { (lo - pad).max(0.0) } else { lo - pad }, hi + pad)
}

/// The plot area's width and height inside the margins.
const PLOT_W: f64 = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
const PLOT_H: f64 = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;

/// Opens a chart: the SVG element, title, y grid with tick labels over [lo, hi], x ticks at the
/// given (pixel, label) positions, the plot frame and both axis labels. The caller draws the
/// data with `y_of` and closes the element.
fn open_chart(title: &str, x_label: &str, y_label: &str, (lo, hi): (f64, f64), x_ticks: &[(f64, String)]) -> String {
    let y_of = |v: f64| MARGIN_TOP + (hi - v) / (hi - lo) * PLOT_H;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = write!(svg, r#"<text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#, WIDTH / 2.0, escape(title));
    for t in nice_ticks(lo, hi) {
        let y = y_of(t);
        let _ = write!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT + PLOT_W,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            tick_label(t)
        );
    }
    for (x, label) in x_ticks {
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            MARGIN_TOP + PLOT_H,
            MARGIN_TOP + PLOT_H + 5.0,
            MARGIN_TOP + PLOT_H + 18.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r#"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black"/>"#
    );
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        MARGIN_LEFT + PLOT_W / 2.0,
        HEIGHT - 12.0,
        escape(x_label),
        MARGIN_TOP + PLOT_H / 2.0,
        MARGIN_TOP + PLOT_H / 2.0,
        escape(y_label)
    );
    svg
}

/// A line chart over epochs with axes, ticks, a legend and a title. Non-finite values are left
/// out of the curve.
pub fn line_chart(title: &str, y_label: &str, series: &[Series]) -> String {
    let curves: Vec<Curve> = series
        .iter()
        .map(|s| Curve { label: s.label, color: s.color, points: s.values.iter().enumerate().map(|(e, &v)| ((e + 1) as f64, v)).collect() })
        .collect();
    xy_chart(title, XScale::Epochs, "epoch", y_label, &curves, None)
}

/// How x values map onto the horizontal axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XScale {
    /// Epochs 1, 2, ...: linear, whole-number ticks, a dot on every point.
    Epochs,
    /// Logarithmic (learning rates): ticks at powers of ten, no dots.
    Log10,
}

/// One curve of an [`xy_chart`]: (x, y) points.
pub struct Curve<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A line chart of curves with axes, ticks, a legend, a title and, with `marker`, a dashed
/// vertical line at an x value with its label. Points with a non-finite coordinate (or x <= 0
/// on a log scale) are left out.
pub fn xy_chart(title: &str, scale: XScale, x_label: &str, y_label: &str, curves: &[Curve], marker: Option<(f64, &str)>) -> String {
    let to_axis = |x: f64| match scale {
        XScale::Epochs => x,
        XScale::Log10 => x.log10(),
    };
    let shown = |&(x, y): &(f64, f64)| to_axis(x).is_finite() && y.is_finite();
    let points = || curves.iter().flat_map(|c| c.points.iter().copied()).filter(shown);
    let (lo, hi) = y_range(points().map(|(_, y)| y));
    let (x_lo, x_hi) = match scale {
        XScale::Epochs => (1.0, curves.iter().map(|c| c.points.len()).max().unwrap_or(0).max(1) as f64),
        XScale::Log10 => points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| (a.min(x.log10()), b.max(x.log10()))),
    };
    let x_of = |x: f64| {
        if x_hi > x_lo {
            MARGIN_LEFT + (to_axis(x) - x_lo) / (x_hi - x_lo) * PLOT_W
        } else {
            MARGIN_LEFT + PLOT_W / 2.0
        }
    };
    let y_of = |v: f64| MARGIN_TOP + (hi - v) / (hi - lo) * PLOT_H;
    let x_ticks: Vec<(f64, String)> = match scale {
        XScale::Epochs => {
            nice_ticks(x_lo, x_hi).into_iter().filter(|t| t.fract() == 0.0).map(|t| (x_of(t), (t as usize).to_string())).collect()
        }
        XScale::Log10 if x_lo.is_finite() => {
            (x_lo.ceil() as i32..=x_hi.floor() as i32).map(|p| (x_of(10f64.powi(p)), power_label(p))).collect()
        }
        XScale::Log10 => Vec::new(),
    };
    let mut svg = open_chart(title, x_label, y_label, (lo, hi), &x_ticks);
    if let Some((x, label)) = marker.filter(|&(x, _)| to_axis(x).is_finite()) {
        let mx = x_of(x);
        let _ = write!(
            svg,
            r##"<line x1="{mx:.1}" y1="{MARGIN_TOP}" x2="{mx:.1}" y2="{:.1}" stroke="#d62728" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
            MARGIN_TOP + PLOT_H,
            mx + 4.0,
            MARGIN_TOP + 14.0,
            escape(label)
        );
    }
    for (i, c) in curves.iter().enumerate() {
        let points: Vec<String> = c.points.iter().filter(|p| shown(p)).map(|&(x, v)| format!("{:.1},{:.1}", x_of(x), y_of(v))).collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#, c.color, points.join(" "));
        if scale == XScale::Epochs {
            for p in &points {
                let (x, y) = p.split_once(',').expect("point has a comma");
                let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#, c.color);
            }
        }
        let ly = MARGIN_TOP + 10.0 + 20.0 * i as f64;
        let lx = MARGIN_LEFT + PLOT_W + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            c.color,
            lx + 26.0,
            ly + 4.0,
            escape(c.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The label of the tick at 10^p: 0.001 .. 1000 written out, beyond as 1e-7.
fn power_label(p: i32) -> String {
    match p {
        -3..=3 => tick_label(10f64.powi(p)),
        _ => format!("1e{p}"),
    }
}

/// One labelled point of a scatter chart.
pub struct Point<'a> {
    pub label: &'a str,
    pub x: f64,
    pub y: f64,
    pub color: &'a str,
}

/// A tick label with an SI suffix for large values (2M, 500k), plain below 1000.
fn si_label(v: f64) -> String {
    match v.abs() {
        a if a >= 1e9 => format!("{}G", tick_label(v / 1e9)),
        a if a >= 1e6 => format!("{}M", tick_label(v / 1e6)),
        a if a >= 1e3 => format!("{}k", tick_label(v / 1e3)),
        _ => tick_label(v),
    }
}

/// Log-scale ticks in [10^lo, 10^hi]: the powers of ten, with 2x and 5x them when fewer than
/// three powers fit, and every digit when that still gives fewer than two.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |multiples: &[f64]| -> Vec<f64> {
        (lo.floor() as i32..=hi.ceil() as i32)
            .flat_map(|e| multiples.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(&v.log10()))
            .collect()
    };
    [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]]
        .into_iter()
        .map(within)
        .find(|ticks| ticks.len() >= 3)
        .unwrap_or_else(|| within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]))
}

/// A scatter chart of labelled points (each label written beside its point). With `log_x` the
/// x axis is logarithmic, for quantities spanning decades (parameters, times); points whose x
/// is not positive then, or any non-finite coordinate, are left out.
pub fn scatter_chart(title: &str, x_label: &str, y_label: &str, points: &[Point], log_x: bool) -> String {
    let shown: Vec<&Point> =
        points.iter().filter(|p| p.x.is_finite() && p.y.is_finite() && (!log_x || p.x > 0.0)).collect();
    let scale = |x: f64| if log_x { x.log10() } else { x };
    let (mut x_lo, mut x_hi) = shown.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(scale(p.x)), b.max(scale(p.x))));
    if !x_lo.is_finite() {
        (x_lo, x_hi) = (0.0, 1.0);
    }
    // Room for a flat range, and on the right for the labels.
    let span = if x_hi - x_lo < 1e-9 { if log_x { 1.0 } else { x_lo.abs().max(1.0) } } else { x_hi - x_lo };
    let (x_lo, x_hi) = (x_lo - 0.1 * span, x_hi + 0.25 * span);
    let x_of = |x: f64| MARGIN_LEFT + (scale(x) - x_lo) / (x_hi - x_lo) * PLOT_W;
    let ticks = if log_x { log_ticks(x_lo, x_hi) } else { nice_ticks(x_lo, x_hi) };
    let x_ticks: Vec<(f64, String)> = ticks.into_iter().map(|t| (x_of(t), si_label(t))).collect();
    let (lo, hi) = y_range(shown.iter().map(|p| p.y));
    let y_of = |v: f64| MARGIN_TOP + (hi - v) / (hi - lo) * PLOT_H;
    let mut svg = open_chart(title, x_label, y_label, (lo, hi), &x_ticks);
    for p in &shown {
        let (x, y) = (x_of(p.x), y_of(p.y));
        let _ = write!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            p.color,
            x + 8.0,
            y - 6.0,
            escape(p.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The confusion matrix as a heat map: cell colour = row-normalised share (white to dark blue),
/// text = count and percentage; rows are true classes, columns predictions.
pub fn confusion_heatmap(title: &str, matrix: &ConfusionMatrix, class_names: &[String]) -> String {
    let k = matrix.classes().max(1);
    let cell = (480.0 / k as f64).clamp(12.0, 60.0);
    let label_space = 130.0;
    let top = label_space + 30.0;
    let width = label_space + cell * k as f64 + 60.0;
    let height = top + cell * k as f64 + 35.0;
    let normalised = matrix.row_normalised();
    let font = (cell / 4.5).clamp(5.0, 12.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="{font:.1}">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(svg, r#"<text x="{:.1}" y="20" font-size="16" text-anchor="middle">{}</text>"#, width / 2.0, escape(title));
    for t in 0..matrix.classes() {
        for p in 0..matrix.classes() {
            let share = normalised[t * matrix.classes() + p];
            // White (255,255,255) to dark blue (8,48,107).
            let mix = |from: f64, to: f64| (from + (to - from) * share).round() as u8;
            let (x, y) = (label_space + p as f64 * cell, top + t as f64 * cell);
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({},{},{})" stroke="#cccccc"/>"##,
                mix(255.0, 8.0),
                mix(255.0, 48.0),
                mix(255.0, 107.0)
            );
            if cell >= 24.0 {
                let color = if share > 0.5 { "white" } else { "black" };
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{color}">{}<tspan x="{:.1}" dy="{:.1}">{:.0}%</tspan></text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0 - 2.0,
                    matrix.count(t, p),
                    x + cell / 2.0,
                    font + 1.0,
                    share * 100.0
                );
            }
        }
    }
    for (i, name) in class_names.iter().enumerate().take(matrix.classes()) {
        let c = i as f64 * cell + cell / 2.0;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_space - 6.0,
            top + c + font / 3.0,
            escape(name)
        );
        let (x, y) = (label_space + c, top - 6.0);
        let _ = write!(svg, r#"<text x="{x:.1}" y="{y:.1}" transform="rotate(-60 {x:.1} {y:.1})">{}</text>"#, escape(name));
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">predicted</text><text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">true</text>"#,
        label_space + cell * k as f64 / 2.0,
        top + cell * k as f64 + 20.0,
        top + cell * k as f64 / 2.0,
        top + cell * k as f64 / 2.0
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(tick_label(0.6000000000000001), "0.6");
        assert_eq!(nice_ticks(1.0, 3.0), vec![1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(nice_ticks(1.0, 30.0), vec![5.0, 10.0, 15.0, 20.0, 25.0, 30.0]);
    }

    #[test]
    fn log_ticks_are_powers_of_ten_or_their_multiples() {
        assert_eq!(log_ticks(4.9, 8.1), vec![1e5, 1e6, 1e7, 1e8]);
        assert_eq!(log_ticks(0.0, 1.0), vec![1.0, 2.0, 5.0, 10.0]);
        assert_eq!(si_label(2e6), "2M");
        assert_eq!(si_label(0.5), "0.5");
    }

    #[test]
    fn charts_are_well_formed_svg_with_every_point() {
        let svg = line_chart(
            "loss <train & val>",
            "loss",
            &[
                Series { label: "train", values: vec![2.0, 1.0, 0.5], color: "#1f77b4" },
                Series { label: "val", values: vec![2.2, f64::NAN, 0.7], color: "#ff7f0e" },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("loss &lt;train &amp; val&gt;"));
        assert_eq!(svg.matches("<circle").count(), 5, "the NaN point is left out");
        let scatter = scatter_chart(
            "top-1 vs parameters",
            "parameters",
            "top-1",
            &[
                Point { label: "a", x: 1.2e5, y: 0.8, color: "#1f77b4" },
                Point { label: "b<c>", x: 1.1e7, y: 0.9, color: "#ff7f0e" },
                Point { label: "no parameters", x: 0.0, y: 0.5, color: "#2ca02c" },
            ],
            true,
        );
        assert_eq!(scatter.matches("<circle").count(), 2, "x = 0 has no place on a log axis");
        assert!(scatter.contains("b&lt;c&gt;") && scatter.contains(">1M<") && scatter.contains(">100k<"), "{scatter}");
        let m = ConfusionMatrix::from_counts(2, vec![3, 1, 0, 4]);
        let heat = confusion_heatmap("confusion", &m, &["a".into(), "b".into()]);
        assert_eq!(heat.matches("<rect x=").count(), 4);
        assert!(heat.contains("75%") && heat.contains("rgb(8,48,107)"));
    }

    #[test]
    fn log_scale_charts_tick_powers_of_ten_and_mark_a_value() {
        let points = (0..=40).map(|i| (1e-6 * 10f64.powf(i as f64 / 8.0), 2.0 - i as f64 * 0.03)).collect();
        let curves = [Curve { label: "smoothed loss", color: "#1f77b4", points }];
        let svg = xy_chart("range test", XScale::Log10, "learning rate", "loss", &curves, Some((1e-3, "suggested 1e-3")));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for label in [">1e-6<", ">1e-5<", ">1e-4<", ">0.001<", ">0.01<", ">0.1<"] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains("suggested 1e-3") && svg.contains("stroke-dasharray"));
        assert_eq!(svg.matches("<circle").count(), 0);
        let points = svg.split("points=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
        assert_eq!(points.split(' ').count(), 41);
    }
}
