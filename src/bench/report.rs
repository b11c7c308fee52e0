//! The kernel benchmark report as text tables (one per device) and as JSON.

use super::kernels::{CaseReport, KernelReport, Measured, Outcome, Simulated};
use super::tensor_core::TcReport;
use crate::error::{Error, Result};
use crate::sim::roofline::GPU_MODELS;
use std::fmt::Write;
use std::path::Path;

fn ms(seconds: f64) -> String {
    format!("{:.3}", seconds * 1e3)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// "ok", "FAILED: ..." or "ERROR: ...".
fn check_cell(validation_passed: bool, failure: Option<&str>) -> String {
    if validation_passed {
        "ok".into()
    } else {
        format!("FAILED: {}", failure.unwrap_or("mismatch"))
    }
}

/// Which device a table of measured rows is for.
#[derive(Clone, Copy, PartialEq)]
enum Timed {
    Cpu,
    Gpu,
    /// A device of the emulated driver: its event times are predictions.
    EmulatedGpu,
}

fn measured_rows(cases: &[CaseReport], pick: impl Fn(&CaseReport) -> Option<&Outcome<Measured>>, timed: Timed) -> String {
    let mut out = String::new();
    let gpu = timed != Timed::Cpu;
    let time = if timed == Timed::EmulatedGpu { "PREDICTED ms" } else { "median ms" };
    if gpu {
        let _ = writeln!(out, "| case | check | {time} | GFLOP/s | GB/s | of peak | cuBLAS ms |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    } else {
        let _ = writeln!(out, "| case | check | {time} | GFLOP/s | GB/s |\n| --- | --- | ---: | ---: | ---: |");
    }
    for case in cases {
        let Some(result) = pick(case) else { continue };
        let row = match result {
            Outcome::Error(e) => format!("| {} | ERROR: {e} | | | |", case.name),
            Outcome::Ran(m) => {
                let check = check_cell(m.validation.passed, m.validation.failure.as_deref());
                let time = m.timing.map_or("-".into(), |t| ms(t.median_s));
                let mut row = format!("| {} | {check} | {time} | {} | {}", case.name, opt(m.gflops, 1), opt(m.gbytes_per_s, 1));
                if gpu {
                    let of_peak = match (m.fraction_of_peak, m.peak) {
                        (Some(f), Some(kind)) => format!("{:.0}% {}", 100.0 * f, if kind == "cublas_sgemm" { "cuBLAS" } else { "copy BW" }),
                        _ => "-".into(),
                    };
                    let cublas = m.cublas.map_or("-".into(), |t| ms(t.median_s));
                    let _ = write!(row, " | {of_peak} | {cublas}");
                }
                row + " |"
            }
        };
        out.push_str(&row);
        out.push('\n');
    }
    out
}

fn sim_rows(cases: &[CaseReport]) -> String {
    let mut out = String::from(
        "| case | check | launches | sim s | GFLOP | DRAM MB | coalescing | lanes | bank confl. | longest kernel (regs, smem B, occ. 3090) | RTX 3090 us | RTX 4090 us | H100 us |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n",
    );
    for case in cases {
        let Some(result) = &case.sim else { continue };
        let row = match result {
            Outcome::Error(e) => format!("| {} | ERROR: {e} |||||||||||", case.name),
            Outcome::Ran(s) => sim_row(&case.name, s),
        };
        out.push_str(&row);
        out.push('\n');
    }
    out
}

fn sim_row(name: &str, s: &Simulated) -> String {
    let check = check_cell(s.validation.passed, s.validation.failure.as_deref());
    let sum = |f: fn(&super::kernels::SimLaunch) -> u64| s.launches.iter().map(f).sum::<u64>();
    let (flops, dram) = (sum(|l| l.flops), sum(|l| l.dram_bytes));
    // Totals weighted like the simulator's own ratios: requested over moved bytes, lane-weighted.
    let requested: f64 = s.launches.iter().map(|l| l.coalescing * l.dram_bytes as f64).sum();
    let coalescing = if dram == 0 { 1.0 } else { requested / dram as f64 };
    let insts = sum(|l| l.warp_insts);
    let lanes: f64 = s.launches.iter().map(|l| l.lane_utilisation * l.warp_insts as f64).sum();
    let lanes = if insts == 0 { 0.0 } else { lanes / insts as f64 };
    let longest = s
        .launches
        .iter()
        .max_by_key(|l| l.warp_insts)
        .map(|l| {
            let res = match (l.registers, l.shared_bytes, l.occupancy_rtx3090) {
                (Some(r), Some(b), Some(o)) => format!("{r}, {b}, {:.0}%", 100.0 * o),
                _ => "not in RESOURCES.md".into(),
            };
            format!("{} ({res})", l.kernel)
        })
        .unwrap_or_else(|| "-".into());
    let predicted: Vec<String> = if s.predictions.is_empty() {
        vec!["-".into(); 3]
    } else {
        s.predictions
            .iter()
            .map(|p| {
                format!(
                    "{:.1} {} / {:.1} {}",
                    p.seconds * 1e6,
                    p.limit.label(),
                    p.seconds_ideal_cache * 1e6,
                    p.limit_ideal_cache.label()
                )
            })
            .collect()
    };
    format!(
        "| {name} | {check} | {} | {:.2} | {:.3} | {:.1} | {:.2} | {:.2} | {} | {longest} | {} |",
        s.launches.len(),
        s.sim_seconds,
        flops as f64 / 1e9,
        dram as f64 / 1e6,
        coalescing,
        lanes,
        sum(|l| l.bank_conflicts),
        predicted.join(" | ")
    )
}

fn tensor_core_rows(reports: &[Outcome<TcReport>]) -> String {
    let mut out = String::from(
        "| case | grid | GFLOP | bank confl. | DRAM MB (no cache) | RTX 3090 us (of peak) | RTX 4090 us (of peak) | H100 us (of peak) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for report in reports {
        let row = match report {
            Outcome::Error(e) => format!("| ERROR: {e} |||||||"),
            Outcome::Ran(r) => {
                let gpus: Vec<String> = r
                    .predictions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        // A case predicted for other GPUs than the columns' (Turing's, a T4)
                        // names its GPU.
                        let gpu = if GPU_MODELS.get(i).is_some_and(|m| m.name == p.gpu) { String::new() } else { format!("{}: ", p.gpu) };
                        format!(
                            "{gpu}{:.1} {} ({:.0}%) / {:.1} {} ({:.0}%)",
                            p.seconds * 1e6,
                            p.limit.label(),
                            100.0 * p.fraction_of_tensor_peak,
                            p.seconds_ideal_cache * 1e6,
                            p.limit_ideal_cache.label(),
                            100.0 * p.fraction_of_tensor_peak_ideal_cache
                        )
                    })
                    .collect();
                let (gx, gy, _) = r.grid;
                format!(
                    "| {} | {gx}x{gy} | {:.1} | {} | {:.1} | {} |",
                    r.name,
                    r.tensor_flops as f64 / 1e9,
                    r.bank_conflicts,
                    r.dram_bytes as f64 / 1e6,
                    gpus.join(" | ")
                )
            }
        };
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The report as Markdown tables, one per device that ran.
pub fn tables(report: &KernelReport) -> String {
    let mut out = String::new();
    let cases = &report.cases;
    if cases.iter().any(|c| c.cpu.is_some()) {
        let _ = writeln!(out, "## CPU ({} threads), f32, batch {}, validated against the f64 CPU reference\n", report.cpu_threads, report.batch);
        out.push_str(&measured_rows(cases, |c| c.cpu.as_ref(), Timed::Cpu));
        out.push('\n');
    }
    if let (Some(device), Some(peaks)) = (&report.cuda_device, &report.cuda_peaks) {
        let cublas = peaks.cublas_sgemm_flops.map_or("absent".into(), |f| format!("{:.0} GFLOP/s", f / 1e9));
        let copy = peaks.copy_bytes_per_s / 1e9;
        if report.cuda_predicted {
            let _ = writeln!(
                out,
                "## {device}, batch {}: PREDICTED times, not measurements: the emulated device's events time the PTX \
                 simulator's roofline prediction of each run; predicted peak: copy {copy:.0} GB/s, cuBLAS SGEMM {cublas}\n",
                report.batch,
            );
        } else {
            let _ = writeln!(
                out,
                "## {device}, batch {}: events, L2 flushed before each run; peaks measured now: copy {copy:.0} GB/s, cuBLAS SGEMM {cublas}\n",
                report.batch,
            );
        }
        if let Some(why) = peaks.cublas_absent {
            let _ = writeln!(out, "{why}; the GEMM cases have no cuBLAS reference.\n");
        }
        let timed = if report.cuda_predicted { Timed::EmulatedGpu } else { Timed::Gpu };
        out.push_str(&measured_rows(cases, |c| c.cuda.as_ref(), timed));
        out.push('\n');
    }
    if cases.iter().any(|c| c.sim.is_some()) {
        let _ = writeln!(
            out,
            "## PTX simulator: counters scaled to batch {}; PREDICTED times in us as `no cache / ideal cache` with the \
             limiting roof (fp32, issue, shared, dram); registers and shared memory from ptxas for {}\n",
            report.batch, report.resources_arch
        );
        out.push_str(&sim_rows(cases));
    }
    if !report.tensor_core.is_empty() {
        let _ = writeln!(
            out,
            "\n## Tensor-core GEMM and implicit-GEMM convolution (kernels/gemm_tc.cu, kernels/conv_tc.cu on 16-bit operands; \
             tc_train_*: training's tiles, kernels/tc_gemm_tile.cuh, on f32 storage; bf16 inputs, f16 in the Turing cases, f32 accumulation) on the PTX simulator: PREDICTED times in us as `no cache / ideal cache` with the limiting roof (tensor, issue, shared, dram) and the fraction of the \
             GPU's dense 16-bit tensor-core peak (Turing cases on a T4, named in the cell); 16 blocks simulated with the full K, counters scaled to the grid; tensor \
             FLOPs counted over the padded block tiles\n"
        );
        out.push_str(&tensor_core_rows(&report.tensor_core));
    }
    out
}

/// Writes the report as pretty JSON to `path`, creating its directory.
pub fn write_json(report: &KernelReport, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(|e| Error::config(format!("cannot encode the report: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
