//! The kernel microbenchmark run behind `cargo bench --bench kernels`: every case is first
//! validated against the f64 CPU reference on the same inputs (a case that fails is reported as
//! failed and not timed), then timed on the CPU and on a CUDA device, and run once on the PTX
//! simulator whose counters predict its time on other GPUs.

use super::cases::{kernel_cases, BenchCase};
use super::cuda::{CudaBench, DevicePeaks};
use super::resources::{kernel_resources, KernelResources, ARCH};
use super::tensor_core::{predict_tc, tc_cases, TcReport};
use super::timing::{time_host, Timing};
use super::validate::{compare, reference, results, Validation};
use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::gpu::GpuBackend;
use crate::ops::cases::{CaseBackend, DynKernel, HostOperands, Operands};
use crate::precision::Precision;
use crate::sim::roofline::{slower, LaunchPrediction, Limit, GPU_MODELS};
use crate::sim::{LaunchStats, SimDriver, SimOptions};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct KernelBenchOptions {
    pub cpu: bool,
    pub sim: bool,
    /// The CUDA device to time on, if any.
    pub cuda: Option<usize>,
    /// Images per batch of the batch-dependent shapes.
    pub batch: usize,
    pub warmup: usize,
    /// Timed runs on the CPU, and on the GPU.
    pub cpu_reps: usize,
    pub gpu_reps: usize,
    /// Only cases whose name contains this.
    pub filter: Option<String>,
    pub seed: u64,
}

/// One case on a timed device (the CPU or a GPU).
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub validation: Validation,
    /// None when validation failed (not timed).
    pub timing: Option<Timing>,
    pub gflops: Option<f64>,
    pub gbytes_per_s: Option<f64>,
    /// Achieved rate over the device's measured peak of the kind that bounds this case (GPU only).
    pub fraction_of_peak: Option<f64>,
    /// "cublas_sgemm" or "copy_bandwidth": which peak the fraction is of.
    pub peak: Option<&'static str>,
    /// cuBLAS on the same GEMM shape (GEMM cases on a GPU).
    pub cublas: Option<Timing>,
}

/// The simulator's counters of one launch, scaled to the full shape.
#[derive(Clone, Debug, Serialize)]
pub struct SimLaunch {
    pub kernel: String,
    /// Grid of the simulated (small) launch with its x axis scaled like the counters, and block.
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub flops: u64,
    pub dram_bytes: u64,
    pub warp_insts: u64,
    pub coalescing: f64,
    pub lane_utilisation: f64,
    pub bank_conflicts: u64,
    pub shared_wavefronts: u64,
    /// ptxas registers per thread and static shared bytes on `resources_arch`, when listed.
    pub registers: Option<u32>,
    pub shared_bytes: Option<u32>,
    /// Warp slots filled on an RTX 3090 (from registers, shared memory and the block size).
    pub occupancy_rtx3090: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub gpu: &'static str,
    /// No cache: every sector each launch touches moves through DRAM (pessimistic).
    pub seconds: f64,
    /// The roof of the launch that takes longest.
    pub limit: Limit,
    /// Ideal cache: the launches' on-chip work, or the case's compulsory bytes through DRAM,
    /// whichever is slower (optimistic).
    pub seconds_ideal_cache: f64,
    pub limit_ideal_cache: Limit,
    /// Rates at the no-cache time.
    pub gflops: f64,
    pub gbytes_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Simulated {
    pub validation: Validation,
    /// Counters of the simulated shape times this give the full shape's.
    pub sim_scale: f64,
    /// Host seconds the simulation took.
    pub sim_seconds: f64,
    pub launches: Vec<SimLaunch>,
    /// Empty when validation failed.
    pub predictions: Vec<Prediction>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    pub name: String,
    pub family: &'static str,
    pub shape: String,
    pub sim_shape: String,
    pub flops: f64,
    pub min_bytes: f64,
    pub cpu: Option<Outcome<Measured>>,
    pub cuda: Option<Outcome<Measured>>,
    pub sim: Option<Outcome<Simulated>>,
}

/// A device's result for a case, or the error that stopped it (one line).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Ran(T),
    Error(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelReport {
    pub batch: usize,
    pub cpu_threads: usize,
    pub cuda_device: Option<String>,
    /// True when the CUDA device is emulated (src/libcuda): its event times, and so every CUDA
    /// time, rate and peak here, are the PTX simulator's roofline predictions, not measurements.
    pub cuda_predicted: bool,
    pub cuda_peaks: Option<DevicePeaks>,
    pub resources_arch: &'static str,
    pub cases: Vec<CaseReport>,
    /// The tensor-core GEMM's PREDICTED times (with the simulator only).
    pub tensor_core: Vec<Outcome<TcReport>>,
}

impl KernelReport {
    /// Whether any case failed validation or stopped with an error on any device.
    pub fn any_failed(&self) -> bool {
        let bad = |v: &Validation| !v.passed;
        self.tensor_core.iter().any(|t| matches!(t, Outcome::Error(_))) || self.cases.iter().any(|c| {
            let measured = |o: &Option<Outcome<Measured>>| match o {
                Some(Outcome::Ran(m)) => bad(&m.validation),
                Some(Outcome::Error(_)) => true,
                None => false,
            };
            measured(&c.cpu)
                || measured(&c.cuda)
                || match &c.sim {
                    Some(Outcome::Ran(s)) => bad(&s.validation),
                    Some(Outcome::Error(_)) => true,
                    None => false,
                }
        })
    }
}

fn outcome<T>(r: Result<T>) -> Outcome<T> {
    match r {
        Ok(v) => Outcome::Ran(v),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// Every output of one run on the host, and the operands (kept for timing further runs).
type RunResult<B> = (Vec<Vec<f64>>, Operands<f32, B>);

/// Runs the op once on `backend`, synchronised, and returns every output on the host.
fn run_once<B: CaseBackend<f32>>(op: &dyn DynKernel, backend: &B, host: &HostOperands) -> Result<RunResult<B>> {
    let mut operands = host.upload::<f32, _>(backend)?;
    let created = op.execute(backend, &mut operands)?;
    backend.synchronize()?;
    let got = results(op, backend, &created, &operands)?;
    Ok((got, operands))
}

fn rates(op: &dyn DynKernel, seconds: f64) -> (Option<f64>, Option<f64>) {
    let gflops = (op.flops() > 0.0).then(|| op.flops() / seconds / 1e9);
    (gflops, Some(op.min_bytes() / seconds / 1e9))
}

fn measure_cpu(op: &dyn DynKernel, host: &HostOperands, want: &[Vec<f64>], opts: &KernelBenchOptions) -> Result<Measured> {
    let cpu = CpuBackend::new();
    let (got, mut operands) = run_once(op, &cpu, host)?;
    let validation = compare(op, &got, want);
    let timing = if validation.passed {
        Some(time_host(opts.warmup, opts.cpu_reps, || op.execute(&cpu, &mut operands).map(drop))?)
    } else {
        None
    };
    let (gflops, gbytes_per_s) = timing.map(|t| rates(op, t.median_s)).unwrap_or((None, None));
    Ok(Measured { validation, timing, gflops, gbytes_per_s, fraction_of_peak: None, peak: None, cublas: None })
}

fn measure_cuda(
    op: &dyn DynKernel,
    host: &HostOperands,
    want: &[Vec<f64>],
    bench: &CudaBench,
    peaks: &DevicePeaks,
    opts: &KernelBenchOptions,
) -> Result<Measured> {
    let gpu = &bench.backend;
    let (got, mut operands) = run_once(op, gpu, host)?;
    let validation = compare(op, &got, want);
    if !validation.passed {
        return Ok(Measured { validation, timing: None, gflops: None, gbytes_per_s: None, fraction_of_peak: None, peak: None, cublas: None });
    }
    let timing = bench.time(opts.warmup, opts.gpu_reps, || op.execute(gpu, &mut operands))?;
    let (gflops, gbytes_per_s) = rates(op, timing.median_s);
    // The case's bound on this device: compare its arithmetic intensity with the ridge point.
    let compute_bound = peaks.cublas_sgemm_flops.is_some_and(|f| op.flops() / op.min_bytes() > f / peaks.copy_bytes_per_s);
    // A reduced-precision case runs on the tensor cores, whose rate no fp32 peak bounds: its
    // yardstick is cuBLAS at the same precision (the `cublas` time).
    let (fraction_of_peak, peak) = match (compute_bound, peaks.cublas_sgemm_flops) {
        (true, _) if op.operand_precision() != Precision::Fp32 => (None, None),
        (true, Some(flops)) => (Some(op.flops() / timing.median_s / flops), Some("cublas_sgemm")),
        _ => (Some(op.min_bytes() / timing.median_s / peaks.copy_bytes_per_s), Some("copy_bandwidth")),
    };
    let cublas = match op.as_cublas_gemm() {
        Some(gemm) => bench.cublas_gemm(&gemm)?,
        None => None,
    };
    Ok(Measured { validation, timing: Some(timing), gflops, gbytes_per_s, fraction_of_peak, peak, cublas })
}

fn sim_launch(stats: &LaunchStats, resources: &HashMap<String, KernelResources>) -> SimLaunch {
    let res = resources.get(&stats.kernel);
    let threads = stats.block.0 * stats.block.1 * stats.block.2;
    SimLaunch {
        kernel: stats.kernel.clone(),
        grid: stats.grid,
        block: stats.block,
        flops: stats.flops,
        dram_bytes: stats.dram_bytes(),
        warp_insts: stats.warp_insts,
        coalescing: stats.coalescing_efficiency(),
        lane_utilisation: stats.lane_utilisation(),
        bank_conflicts: stats.bank_conflicts,
        shared_wavefronts: stats.shared_wavefronts,
        registers: res.map(|r| r.registers),
        shared_bytes: res.map(|r| r.shared_bytes),
        occupancy_rtx3090: res.map(|r| GPU_MODELS[0].occupancy(threads, r.registers, r.shared_bytes)),
    }
}

/// The counters of a launch at `factor` times its size (see `super::cases` for why linear). The
/// grid's x axis grows by the same factor: the block count sets the SM fill of the prediction,
/// exact where the blocks grow with the scaled axis and, where they do not, no more optimistic
/// than assuming a full device.
fn scale_stats(stats: &LaunchStats, factor: f64) -> LaunchStats {
    let scaled = stats.combine(stats, |v, _| (v as f64 * factor).round() as u64);
    let (x, y, z) = stats.grid;
    LaunchStats { grid: (((x as f64 * factor).round() as u32).max(1), y, z), ..scaled }
}

/// Predicted time of a case on each modelled GPU: the sum of its launches' predictions, limited
/// by the roof of the longest launch; once with no cache and once with an ideal one.
fn predictions(op: &dyn DynKernel, launches: &[LaunchStats]) -> Vec<Prediction> {
    GPU_MODELS
        .iter()
        .map(|model| {
            let total = |per_launch: Vec<LaunchPrediction>| LaunchPrediction {
                seconds: per_launch.iter().map(|p| p.seconds).sum(),
                limit: per_launch.iter().max_by(|a, b| a.seconds.total_cmp(&b.seconds)).map_or(Limit::Dram, |p| p.limit),
            };
            let no_cache = total(launches.iter().map(|s| model.predict(s)).collect());
            let on_chip = total(launches.iter().map(|s| model.predict_on_chip(s)).collect());
            // A cache never slows a launch down; the compulsory bytes overstate the traffic of
            // a kernel that skips part of an operand (a padded window never reads its padding).
            let ideal_cache = match slower(on_chip, model.dram_time(op.min_bytes())) {
                ideal if ideal.seconds > no_cache.seconds => no_cache,
                ideal => ideal,
            };
            Prediction {
                gpu: model.name,
                seconds: no_cache.seconds,
                limit: no_cache.limit,
                seconds_ideal_cache: ideal_cache.seconds,
                limit_ideal_cache: ideal_cache.limit,
                gflops: op.flops() / no_cache.seconds / 1e9,
                gbytes_per_s: op.min_bytes() / no_cache.seconds / 1e9,
            }
        })
        .collect()
}

fn simulate(case: &BenchCase, seed: u64, resources: &HashMap<String, KernelResources>) -> Result<Simulated> {
    let host = case.sim.host_operands(seed)?;
    let want = reference(case.sim.as_ref(), &host)?;
    // Validation against the reference replaces the sanitizer here; it would triple the time.
    let driver = Arc::new(SimDriver::new(SimOptions { sanitize: false, ..SimOptions::default() }));
    let gpu = GpuBackend::new(driver.clone());
    let (got, _operands) = run_once(case.sim.as_ref(), &gpu, &host)?;
    let stats = driver.take_launch_stats();
    let validation = compare(case.sim.as_ref(), &got, &want);
    let scaled: Vec<LaunchStats> = stats.iter().map(|s| scale_stats(s, case.sim_scale)).collect();
    let predictions = if validation.passed { predictions(case.full.as_ref(), &scaled) } else { Vec::new() };
    Ok(Simulated {
        validation,
        sim_scale: case.sim_scale,
        sim_seconds: stats.iter().map(|s| s.sim_seconds).sum(),
        launches: scaled.iter().map(|s| sim_launch(s, resources)).collect(),
        predictions,
    })
}

/// Runs every selected case on the selected devices; `progress` hears each case's name first.
pub fn run_kernel_bench(opts: &KernelBenchOptions, mut progress: impl FnMut(&str)) -> Result<KernelReport> {
    let cases: Vec<BenchCase> = kernel_cases(opts.batch)?
        .into_iter()
        .filter(|c| opts.filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    let cuda = opts.cuda.map(CudaBench::open).transpose()?;
    let cuda_peaks = cuda.as_ref().map(|b| b.measure_peaks()).transpose()?;
    let resources = kernel_resources();
    let mut reports = Vec::with_capacity(cases.len());
    for case in &cases {
        progress(&case.name);
        let timed_cuda = cuda.as_ref().zip(cuda_peaks.as_ref());
        // The full-shape operands and their f64 reference, shared by the timed devices.
        let full = (opts.cpu || timed_cuda.is_some())
            .then(|| case.full.host_operands(opts.seed).and_then(|host| reference(case.full.as_ref(), &host).map(|want| (host, want))));
        let (cpu, cuda_result) = match &full {
            None => (None, None),
            Some(Err(e)) => {
                let failed = || Outcome::Error(format!("reference: {e}"));
                (opts.cpu.then(failed), timed_cuda.map(|_| failed()))
            }
            Some(Ok((host, want))) => (
                opts.cpu.then(|| outcome(measure_cpu(case.full.as_ref(), host, want, opts))),
                timed_cuda.map(|(bench, peaks)| outcome(measure_cuda(case.full.as_ref(), host, want, bench, peaks, opts))),
            ),
        };
        let sim = opts.sim.then(|| outcome(simulate(case, opts.seed, &resources)));
        reports.push(CaseReport {
            name: case.name.clone(),
            family: case.family,
            shape: case.full.describe(),
            sim_shape: case.sim.describe(),
            flops: case.full.flops(),
            min_bytes: case.full.min_bytes(),
            cpu,
            cuda: cuda_result,
            sim,
        });
    }
    let selected = |name: &str| opts.filter.as_deref().is_none_or(|f| name.contains(f));
    let mut tensor_core = Vec::new();
    for case in tc_cases(opts.batch).into_iter().filter(|c| opts.sim && selected(&c.name)) {
        progress(&case.name);
        tensor_core.push(match predict_tc(&case) {
            Ok(report) => Outcome::Ran(report),
            Err(e) => Outcome::Error(format!("{}: {e}", case.name)),
        });
    }
    Ok(KernelReport {
        tensor_core,
        batch: opts.batch,
        cpu_threads: rayon::current_num_threads(),
        cuda_device: cuda.as_ref().map(|b| b.name()),
        cuda_predicted: cuda.as_ref().is_some_and(|b| b.emulated()),
        cuda_peaks,
        resources_arch: ARCH,
        cases: reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::optim::cases::OptimKernel;

    fn options() -> KernelBenchOptions {
        KernelBenchOptions { cpu: true, sim: false, cuda: None, batch: 1, warmup: 0, cpu_reps: 2, gpu_reps: 1, filter: None, seed: 3 }
    }

    #[test]
    fn a_case_that_fails_validation_is_not_timed() {
        let op: &dyn DynKernel = &OptimKernel::Sgd { len: 40 };
        let host = op.host_operands(3).unwrap();
        let mut want = reference(op, &host).unwrap();
        let passed = measure_cpu(op, &host, &want, &options()).unwrap();
        assert!(passed.validation.passed && passed.timing.is_some_and(|t| t.reps == 2) && passed.gbytes_per_s.is_some());
        want[0][7] += 0.5;
        let failed = measure_cpu(op, &host, &want, &options()).unwrap();
        assert!(!failed.validation.passed && failed.timing.is_none() && failed.gflops.is_none(), "{failed:?}");
        assert!(failed.validation.failure.as_deref().is_some_and(|f| f.contains("output 0 element 7")), "{failed:?}");
    }

    #[test]
    fn scaling_multiplies_every_counter() {
        let s = LaunchStats { flops: 10, global_sectors: 3, warp_insts: 7, grid: (3, 2, 1), ..Default::default() };
        let t = scale_stats(&s, 4.0);
        assert_eq!((t.flops, t.global_sectors, t.warp_insts, t.grid), (40, 12, 28, (12, 2, 1)));
    }
}
