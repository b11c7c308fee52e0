//! The comparison of a study's runs: comparison.csv (exact values, accuracies as fractions of
//! 1), comparison.md (the table as text) and report.html, one self-contained page (inline CSS
//! and SVG, no scripts, nothing fetched) with the table, the validation accuracy and loss curves
//! of every run in one chart each, accuracy against parameters and against inference time, and
//! the confusion matrices side by side.

use crate::error::Result;
use crate::study::results::{RunResult, INFERENCE_BATCH};
use crate::study::spec::Study;
use crate::train::files::write_atomic;
use crate::train::history::{csv_field, EpochRecord};
use crate::train::plot::{confusion_heatmap, escape, line_chart, scatter_chart, Point, Series};
use std::fmt::Write;

/// Run colours in the charts (matplotlib's tab10), repeating after ten runs.
const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// A column of the comparison: its CSV name, its title in the tables, and both texts of a run.
struct Column {
    csv: &'static str,
    title: &'static str,
    exact: fn(&RunResult) -> String,
    shown: fn(&RunResult) -> String,
}

fn percent(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// 11.69M, 1.82G, 950.0k.
fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn optional(v: Option<usize>) -> String {
    v.map(|b| b.to_string()).unwrap_or_default()
}

const COLUMNS: [Column; 19] = [
    Column { csv: "model", title: "model", exact: |r| r.run.model.clone(), shown: |r| r.run.model.clone() },
    Column { csv: "dataset", title: "dataset", exact: |r| r.run.dataset.clone(), shown: |r| r.run.dataset.clone() },
    Column { csv: "recipe", title: "recipe", exact: |r| r.run.recipe.clone(), shown: |r| r.run.recipe.clone() },
    Column { csv: "parameters", title: "parameters", exact: |r| r.parameters.to_string(), shown: |r| si(r.parameters as f64) },
    Column { csv: "macs", title: "MACs", exact: |r| r.macs.to_string(), shown: |r| si(r.macs as f64) },
    Column { csv: "top1", title: "top-1", exact: |r| r.top1.to_string(), shown: |r| percent(r.top1) },
    Column { csv: "top5", title: "top-5", exact: |r| r.top5.to_string(), shown: |r| percent(r.top5) },
    Column {
        csv: "macro_precision",
        title: "macro P",
        exact: |r| r.macro_precision.to_string(),
        shown: |r| format!("{:.4}", r.macro_precision),
    },
    Column { csv: "macro_recall", title: "macro R", exact: |r| r.macro_recall.to_string(), shown: |r| format!("{:.4}", r.macro_recall) },
    Column { csv: "macro_f1", title: "macro F1", exact: |r| r.macro_f1.to_string(), shown: |r| format!("{:.4}", r.macro_f1) },
    Column { csv: "best_epoch", title: "best epoch", exact: |r| r.best_epoch.to_string(), shown: |r| r.best_epoch.to_string() },
    Column {
        csv: "seconds_per_epoch",
        title: "s/epoch",
        exact: |r| r.seconds_per_epoch().to_string(),
        shown: |r| format!("{:.1}", r.seconds_per_epoch()),
    },
    Column {
        csv: "train_images_per_second",
        title: "train img/s",
        exact: |r| r.train_images_per_second().to_string(),
        shown: |r| format!("{:.0}", r.train_images_per_second()),
    },
    Column {
        csv: "inference_ms_per_batch16",
        title: "ms/batch of 16",
        exact: |r| r.inference.ms_per_batch.to_string(),
        shown: |r| format!("{:.2}", r.inference.ms_per_batch),
    },
    Column {
        csv: "inference_ms_per_image",
        title: "ms/image",
        exact: |r| r.inference.ms_per_image.to_string(),
        shown: |r| format!("{:.3}", r.inference.ms_per_image),
    },
    Column {
        csv: "peak_memory_bytes",
        title: "peak memory",
        exact: |r| optional(r.peak_memory_bytes),
        shown: |r| r.peak_memory_bytes.map(|b| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)).unwrap_or_else(|| "-".into()),
    },
    Column { csv: "device", title: "device", exact: |r| r.device.clone(), shown: |r| r.device.clone() },
    Column { csv: "evaluated_on", title: "evaluated on", exact: |r| r.evaluated_on.clone(), shown: |r| r.evaluated_on.clone() },
    Column {
        csv: "run_dir",
        title: "run directory",
        exact: |r| r.run.dir().display().to_string(),
        shown: |r| r.run.dir().display().to_string(),
    },
];

/// The CSV columns, in order.
pub fn csv_columns() -> Vec<&'static str> {
    COLUMNS.iter().map(|c| c.csv).collect()
}

pub fn comparison_csv(results: &[RunResult]) -> String {
    let mut out = csv_columns().join(",");
    out.push('\n');
    for r in results {
        let cells: Vec<String> = COLUMNS.iter().map(|c| csv_field(&(c.exact)(r))).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The columns of the tables: the dataset and recipe only where the study has several, the
/// run directory only in the CSV.
fn table_columns(results: &[RunResult]) -> Vec<&'static Column> {
    let varies = |f: fn(&RunResult) -> &str| results.iter().any(|r| f(r) != f(&results[0]));
    let dataset_varies = varies(|r| &r.run.dataset);
    let recipe_varies = varies(|r| &r.run.recipe);
    COLUMNS
        .iter()
        .filter(|c| match c.csv {
            "dataset" => dataset_varies,
            "recipe" => recipe_varies,
            "run_dir" => false,
            _ => true,
        })
        .collect()
}

/// How a run is named in charts: its model, and its dataset and recipe where those vary.
fn chart_label(r: &RunResult, results: &[RunResult]) -> String {
    let mut parts = vec![r.run.model.as_str()];
    if results.iter().any(|o| o.run.dataset != r.run.dataset) {
        parts.push(&r.run.dataset);
    }
    if results.iter().any(|o| o.run.recipe != r.run.recipe) {
        parts.push(&r.run.recipe);
    }
    parts.join(" ")
}

/// "Study NAME", with the scale of a study file.
fn title(study: &Study) -> String {
    match study.scale {
        Some(scale) => format!("Study {} ({scale} scale)", study.name),
        None => format!("Study {}", study.name),
    }
}

/// What the numbers are, under each table.
fn notes() -> String {
    format!(
        "Accuracies and macro precision/recall/F1 on the test set (the validation set where the dataset has none; \
         see `evaluated on`); best epoch by validation top-1; s/epoch and train img/s are means over the epochs; \
         inference is the median time of an eval-mode forward pass of a batch of {INFERENCE_BATCH} already on the device; \
         peak memory is the most device memory a training step held."
    )
}

pub fn comparison_md(study: &Study, results: &[RunResult]) -> String {
    let columns = table_columns(results);
    let mut out = format!("# {}\n\n", title(study));
    if let Some(d) = &study.description {
        let _ = writeln!(out, "{d}\n");
    }
    let row = |cells: Vec<String>| format!("| {} |\n", cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
    out += &row(columns.iter().map(|c| c.title.to_string()).collect());
    out += &row(columns.iter().map(|_| "---".to_string()).collect());
    for r in results {
        out += &row(columns.iter().map(|c| (c.shown)(r)).collect());
    }
    let _ = writeln!(out, "\n{}", notes());
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}\
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}\
.charts,.confusions{display:flex;flex-wrap:wrap;gap:16px}\
.charts svg{width:640px;max-width:100%;height:auto}\
figure{margin:0}.confusions svg{width:420px;max-width:100%;height:auto}figcaption{text-align:center}\
p.note{font-size:13px;color:#555;max-width:60em}.table{overflow-x:auto}";

pub fn report_html(study: &Study, results: &[RunResult]) -> String {
    let columns = table_columns(results);
    let labels: Vec<String> = results.iter().map(|r| chart_label(r, results)).collect();
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    let curves = |f: fn(&EpochRecord) -> f64| -> Vec<Series> {
        results
            .iter()
            .enumerate()
            .map(|(i, r)| Series { label: &labels[i], values: r.history.iter().map(f).collect(), color: color(i) })
            .collect()
    };
    let points = |x: fn(&RunResult) -> f64| -> Vec<Point> {
        results.iter().enumerate().map(|(i, r)| Point { label: &labels[i], x: x(r), y: r.top1, color: color(i) }).collect()
    };
    let title = title(study);
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    if let Some(d) = &study.description {
        let _ = writeln!(html, "<p>{}</p>", escape(d));
    }
    let _ = writeln!(html, "<p>{} runs in {}, written by <code>ferronet compare</code>.</p>", results.len(), escape(&study.out.display().to_string()));
    html += "<h2>Results</h2>\n<div class=\"table\"><table>\n<tr>";
    for c in &columns {
        let _ = write!(html, "<th>{}</th>", escape(c.title));
    }
    html += "</tr>\n";
    for r in results {
        html += "<tr>";
        for c in &columns {
            let _ = write!(html, "<td>{}</td>", escape(&(c.shown)(r)));
        }
        html += "</tr>\n";
    }
    let _ = writeln!(html, "</table></div>\n<p class=\"note\">{}</p>", escape(&notes()));
    html += "<h2>Training curves</h2>\n<div class=\"charts\">\n";
    html += &line_chart("Validation top-1 per epoch", "top-1", &curves(|e| e.val_top1));
    html += &line_chart("Validation loss per epoch", "cross-entropy", &curves(|e| e.val_loss));
    html += "</div>\n<h2>Accuracy against cost</h2>\n<div class=\"charts\">\n";
    html += &scatter_chart("Top-1 against parameters", "parameters (log scale)", "top-1", &points(|r| r.parameters as f64), true);
    html += &scatter_chart(
        "Top-1 against inference time",
        &format!("ms per image in batches of {INFERENCE_BATCH} (log scale)"),
        "top-1",
        &points(|r| r.inference.ms_per_image),
        true,
    );
    html += "</div>\n<h2>Confusion matrices</h2>\n<div class=\"confusions\">\n";
    for (r, label) in results.iter().zip(&labels) {
        let heatmap = confusion_heatmap(&format!("{label}: top-1 {}", percent(r.top1)), &r.confusion, &r.class_names);
        let _ = writeln!(html, "<figure>{heatmap}<figcaption>{} ({} set)</figcaption></figure>", escape(label), escape(&r.evaluated_on));
    }
    html += "</div>\n</body>\n</html>\n";
    html
}

/// Writes comparison.csv, comparison.md and report.html into the study's directory.
pub fn write_reports(study: &Study, results: &[RunResult]) -> Result<()> {
    std::fs::create_dir_all(&study.out).map_err(|e| crate::error::Error::io(&study.out, e))?;
    write_atomic(&study.out.join("comparison.csv"), comparison_csv(results).as_bytes())?;
    write_atomic(&study.out.join("comparison.md"), comparison_md(study, results).as_bytes())?;
    write_atomic(&study.out.join("report.html"), report_html(study, results).as_bytes())
}
