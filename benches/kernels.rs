//! Kernel microbenchmarks: `cargo bench --bench kernels -- [--device cpu,sim,cuda] [--json [PATH]]`
//! (`-- --help` lists every option). Each case is validated against the f64 CPU reference before
//! it is timed; the exit status is 1 when any case failed.

use clap::Parser;
use ferronet::bench::args::KernelBenchArgs;
use ferronet::bench::kernels::run_kernel_bench;
use ferronet::bench::report::{tables, write_json};

fn main() {
    let args = KernelBenchArgs::parse();
    let run = || -> ferronet::Result<bool> {
        let opts = args.options()?;
        let report = run_kernel_bench(&opts, |name| eprintln!("running {name}"))?;
        print!("{}", tables(&report));
        if let Some(path) = args.json_path() {
            write_json(&report, &path)?;
            eprintln!("wrote {}", path.display());
        }
        Ok(report.any_failed())
    };
    match run() {
        Ok(failed) => std::process::exit(failed as i32),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
