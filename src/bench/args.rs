//! Command-line arguments of `cargo bench --bench kernels -- [ARGS]`.

use super::kernels::KernelBenchOptions;
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::gpu::cuda_driver;
use clap::Parser;
use std::path::PathBuf;

/// Where the JSON report goes when `--json` names no path.
pub const DEFAULT_JSON: &str = "target/bench-kernels.json";
/// Setting this to a path writes the JSON report there too (for scripts that cannot pass flags).
pub const JSON_ENV: &str = "FERRONET_BENCH_JSON";

#[derive(Parser, Debug, Clone)]
#[command(name = "kernels", about = "Validated kernel microbenchmarks: CPU and CUDA timings, simulator predictions")]
pub struct KernelBenchArgs {
    /// Devices, comma-separated: cpu, sim, cuda, cuda:N or auto (cuda:0 when a CUDA device exists,
    /// else cpu). Default: cpu, sim and cuda:0 when a CUDA device exists.
    #[arg(long, value_delimiter = ',')]
    pub device: Vec<DeviceRequest>,
    /// Images per batch of the convolution, pooling, batch-norm and loss shapes.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed runs on the CPU (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Timed runs on a GPU, each after an L2 flush (the median is reported).
    #[arg(long, default_value_t = 50)]
    pub gpu_reps: usize,
    /// Only the cases whose name contains this text (e.g. conv_fwd, resnet18, gemm).
    #[arg(long)]
    pub filter: Option<String>,
    /// Seed of the random operands.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report as JSON (to target/bench-kernels.json, or the path given).
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_JSON)]
    pub json: Option<PathBuf>,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl KernelBenchArgs {
    /// The run's options, after checking every value.
    pub fn options(&self) -> Result<KernelBenchOptions> {
        if self.reps == 0 || self.gpu_reps == 0 {
            return Err(Error::config("--reps and --gpu-reps must be at least 1"));
        }
        let mut opts = KernelBenchOptions {
            cpu: false,
            sim: false,
            cuda: None,
            batch: self.batch,
            warmup: self.warmup,
            cpu_reps: self.reps,
            gpu_reps: self.gpu_reps,
            filter: self.filter.clone(),
            seed: self.seed,
        };
        let cuda_present = || matches!(cuda_driver::list_devices(), Ok(Some(d)) if !d.is_empty());
        if self.device.is_empty() {
            opts.cpu = true;
            opts.sim = true;
            opts.cuda = cuda_present().then_some(0);
        }
        for device in &self.device {
            match device {
                DeviceRequest::Cpu => opts.cpu = true,
                DeviceRequest::Sim => opts.sim = true,
                DeviceRequest::Cuda(n) => opts.cuda = Some(*n),
                DeviceRequest::Auto if cuda_present() => opts.cuda = Some(0),
                DeviceRequest::Auto => opts.cpu = true,
            }
        }
        Ok(opts)
    }

    /// The JSON report's path: --json, else $FERRONET_BENCH_JSON, else none.
    pub fn json_path(&self) -> Option<PathBuf> {
        self.json.clone().or_else(|| std::env::var_os(JSON_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_parse(args: &[&str]) -> std::result::Result<KernelBenchArgs, clap::Error> {
        KernelBenchArgs::try_parse_from(std::iter::once("kernels").chain(args.iter().copied()))
    }

    fn parse(args: &[&str]) -> KernelBenchArgs {
        try_parse(args).unwrap()
    }

    #[test]
    fn devices_combine_and_unknown_ones_are_refused() {
        let o = parse(&["--device", "cpu,cuda:1", "--bench"]).options().unwrap();
        assert!(o.cpu && !o.sim && o.cuda == Some(1));
        let o = parse(&["--device", "sim"]).options().unwrap();
        assert!(!o.cpu && o.sim && o.cuda.is_none());
        let o = parse(&[]).options().unwrap();
        assert!(o.cpu && o.sim);
        let err = try_parse(&["--device", "cpu,tpu"]).err().expect("tpu is no device").to_string();
        assert!(err.contains("unknown device `tpu`"), "{err}");
        assert!(parse(&["--reps", "0"]).options().is_err());
    }

    #[test]
    fn json_without_a_path_goes_to_the_target_directory() {
        assert_eq!(parse(&["--json"]).json, Some(PathBuf::from(DEFAULT_JSON)));
        assert_eq!(parse(&["--json", "out.json"]).json, Some(PathBuf::from("out.json")));
        assert_eq!(parse(&[]).json, None);
    }
}
