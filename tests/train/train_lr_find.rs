//! `ferronet lr-find` on the synthetic dataset: the learning rate grows exponentially step by
//! step, the smoothed loss is recorded until it diverges, and the suggested rate, the CSV and
//! the plot agree.

use ferronet_test_support::cli_run::{ferronet_bin, run, single_error_line};
use ferronet_test_support::scratch_dir;
use std::process::Command;

fn lr_find(extra: &[&str]) -> Command {
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["lr-find", "--device", "cpu", "--workers", "1", "--limit", "512", "--batch-size", "32"]).args(extra);
    cmd
}

#[test]
fn the_range_test_suggests_a_rate_before_the_loss_diverges() {
    let dir = scratch_dir("lr-find");
    let out = run(lr_find(&["--steps", "60", "--start-lr", "1e-5", "--end-lr", "100", "--quiet", "--out", dir.join("sweep").to_str().unwrap()]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let suggested: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("suggested learning rate: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no suggestion in: {stdout}"));

    let csv = std::fs::read_to_string(dir.join("sweep/lr_find.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("step,lr,loss,smoothed_loss"));
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    assert!((first[1] - 1e-5).abs() < 1e-12, "the sweep starts at --start-lr: {first:?}");
    // Each step multiplies the rate by (100 / 1e-5)^(1/59).
    let factor = (1e7f64).powf(1.0 / 59.0);
    assert!(rows.windows(2).all(|w| (w[1][1] / w[0][1] / factor - 1.0).abs() < 1e-9), "exponential growth");
    // SGD at learning rates above a few units diverges on this model (fused or not, how far
    // past 1 depends on f32 rounding): the sweep stops early at a loss above four times the
    // smallest smoothed loss.
    let lowest = rows.iter().map(|r| r[3]).fold(f64::INFINITY, f64::min);
    assert!(rows.len() < 60 && last[3] > 4.0 * lowest, "{} steps, last {last:?}, lowest {lowest}", rows.len());
    let lowest_raw = rows.iter().map(|r| r[2]).fold(f64::INFINITY, f64::min);
    assert!(first[2] > 2.0 && lowest_raw < 0.8 * first[2] && lowest < first[3], "the loss falls from about ln(10) first: {first:?}, lowest {lowest_raw}");
    // The suggestion is a rate of the sweep where the smoothed loss was still falling.
    let at = rows.iter().position(|r| (r[1] - suggested).abs() <= 0.01 * suggested).expect("the suggestion is a swept rate");
    let best = rows.iter().position(|r| r[3] == lowest).unwrap();
    assert!(at > 0 && at <= best && rows[at + 1][3] < rows[at - 1][3], "suggested {suggested} at step {} (lowest at {})", at + 1, best + 1);
    assert!((1e-3..1.0).contains(&suggested), "{suggested}");

    let svg = std::fs::read_to_string(dir.join("sweep/lr_find.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("learning rate") && svg.contains(&format!("suggested {suggested:.2e}")), "{svg}");

    let line = single_error_line(&run(lr_find(&["--lr", "0.1", "--epochs", "2"])));
    assert!(line.contains("lr-find does not take --epochs, --lr"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}
