//! `ferronet gradcheck`: finite-difference gradient checks in f64 on the CPU, or the same ops on
//! a GPU device (CUDA or the simulator) compared with the verified f64 CPU reference; with
//! `--precision` below fp32, every op as a reduced-precision engine runs it (`gradcheck::precision`).

use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::device::{Device, DeviceRequest};
use crate::gradcheck::precision::{check_cpu_at, compare_device_at};
use crate::gradcheck::{compare_device, finite_difference, select_cases, CheckReport, DEVICE_ATOL, DEVICE_RTOL, FD_MAX_REL};
use crate::precision::Precision;
use crate::select::{self, SelectedDevice};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct GradcheckArgs {
    /// The op to check (conv2d, depthwise_conv2d, max_pool2d, ..., flatten) or `all`.
    #[arg(long, default_value = "all")]
    pub op: String,
    /// cpu: finite differences in f64; cuda[:N] or sim: device results vs the f64 CPU reference;
    /// auto: cuda when present, else cpu.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceRequest,
    /// fp32 checks as above. tf32, bf16, fp16: each op with its inputs, output and gradients
    /// rounded to the format as a reduced-precision engine stores them (on the CPU emulated: f32
    /// buffers holding rounded values; on a GPU at bf16/fp16 the activations and dy of the ops
    /// that read them in 16-bit buffers, as training stores them); a GPU device against the CPU
    /// at the same precision, the CPU against the exact (f64) op on the same rounded inputs,
    /// within atol + rtol*|ref| derived from the format's unit roundoff and the reduction length
    /// (src/tolerance.rs).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// One JSON object per check and line (op, config, max_abs_err, max_rel_err, passed).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: GradcheckArgs) -> Result<i32> {
    let cases = select_cases(&args.op)?;
    let cpu = CpuBackend::new();
    let device = select::open(args.device)?;
    let precision = args.precision;
    if let SelectedDevice::Gpu(gpu) = &device {
        gpu.check_precision(precision)?;
    }
    let derived = "|err| <= atol + rtol*|ref| from the format's unit roundoff and the reduction length";
    let (device_name, criterion) = match (&device, precision) {
        (SelectedDevice::Cpu(_), Precision::Fp32) => ("cpu (f64)".to_string(), format!("finite differences, max rel < {FD_MAX_REL:e}")),
        (SelectedDevice::Gpu(gpu), Precision::Fp32) => {
            (gpu.driver().name(), format!("vs f64 CPU reference, |err| <= {DEVICE_ATOL:e} + {DEVICE_RTOL:e}*|ref|"))
        }
        (SelectedDevice::Cpu(_), p) => {
            (format!("cpu (f32, {p} storage emulated)"), format!("vs the exact (f64) op on the same {p}-rounded inputs, {derived}"))
        }
        (SelectedDevice::Gpu(gpu), p) => {
            (format!("{} ({p} storage emulated)", gpu.driver().name()), format!("vs the CPU at {p}, {derived}"))
        }
    };
    if !args.json {
        println!("gradcheck on {device_name}: {criterion}");
    }
    let mut failed = 0;
    let mut kernels: Vec<String> = Vec::new();
    for case in &cases {
        let report = match (&device, precision) {
            (SelectedDevice::Cpu(_), Precision::Fp32) => finite_difference(&cpu, case),
            (SelectedDevice::Gpu(gpu), Precision::Fp32) => compare_device(gpu, &cpu, case),
            (SelectedDevice::Cpu(_), p) => check_cpu_at(&cpu, case, p),
            (SelectedDevice::Gpu(gpu), p) => compare_device_at(gpu, &cpu, case, p),
        }
        .map_err(|e| e.context(format!("checking {} ({})", case.op, case.config)))?;
        failed += usize::from(!report.passed);
        for k in &report.kernels {
            if !kernels.contains(k) {
                kernels.push(k.clone());
            }
        }
        print_report(&report, args.json)?;
    }
    let summary = format!("{} checks: {} passed, {failed} failed", cases.len(), cases.len() - failed);
    if args.json {
        eprintln!("{summary}");
    } else {
        if !kernels.is_empty() {
            println!("kernels exercised ({}): {}", kernels.len(), kernels.join(", "));
        }
        println!("{summary}");
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn print_report(r: &CheckReport, json: bool) -> Result<()> {
    if json {
        let line = serde_json::to_string(r).map_err(|e| Error::config(format!("cannot encode a report as JSON: {e}")))?;
        println!("{line}");
    } else {
        let verdict = if r.passed { "PASS" } else { "FAIL" };
        let kernels = if r.kernels.is_empty() { String::new() } else { format!("  [{}]", r.kernels.join(", ")) };
        println!(
            "{verdict} {:<22} {:<62} max_abs {:.2e}  max_rel {:.2e}{kernels}",
            r.op, r.config, r.max_abs_err, r.max_rel_err
        );
    }
    Ok(())
}
