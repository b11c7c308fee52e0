//! The `ferronet` command line. Each subcommand lives in `ferronet::cli::<name>`.

use clap::{Parser, Subcommand};
use ferronet::cli;

/// Every op output and workspace is a fresh host allocation; mimalloc serves them from memory it
/// retains (see `retain_freed_memory`) where glibc's malloc would map and unmap large blocks, each
/// first touch a page fault.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the same index in its v2 and v3); the Rust bindings
/// name only the stable options.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory is never returned to the kernel (purge delay -1): a training step's buffers are
/// the same sizes every step, so the next step reuses them without page faults. The environment
/// (`MIMALLOC_PURGE_DELAY`) still overrides this default.
fn retain_freed_memory() {
    // SAFETY: sets one of mimalloc's documented options to a documented value.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, -1) }
}

#[derive(Parser)]
#[command(name = "ferronet", version, about = "Train and check CNNs on CPU, CUDA GPUs and a PTX simulator")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (with no arguments: a small CNN on the built-in synthetic dataset).
    Train(cli::train::TrainArgs),
    /// Compare models: train each of a study's models x datasets x recipes (a study file or
    /// --models with train flags), resuming where it stopped, and write the comparison table and report.
    Compare(cli::compare::CompareArgs),
    /// Evaluate a checkpoint, or a zoo model with PyTorch/torchvision weights (--weights), on a dataset's test split.
    Eval(cli::eval::EvalArgs),
    /// Top-5 classes of images according to a checkpoint, or a zoo model with PyTorch/torchvision weights (--weights).
    Predict(cli::predict::PredictArgs),
    /// Write a checkpoint's weights for PyTorch (a torchvision state_dict in safetensors).
    Export(cli::export::ExportArgs),
    /// The learning-rate range test: the training loss as the learning rate grows, a plot and a suggested rate.
    LrFind(cli::lr_find::LrFindArgs),
    /// Finite-difference gradient checks (CPU) and device-vs-CPU comparisons (cuda, sim).
    Gradcheck(cli::gradcheck::GradcheckArgs),
    /// List the compute devices available.
    Devices(cli::devices::DevicesArgs),
    /// List the models of the zoo.
    Models,
    /// Layer-by-layer shapes, parameters and MACs of a model.
    Summary(cli::summary::SummaryArgs),
    /// Training and inference throughput of a model on a device.
    Bench(cli::bench::BenchArgs),
}

fn main() {
    // Rust ignores SIGPIPE, which turns `ferronet ... | head` into a panic on the next print;
    // restore the default so a closed pipe ends the process quietly, as for any Unix tool.
    // SAFETY: setting a signal disposition to SIG_DFL before any threads exist is sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    retain_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Train(cli::train::TrainArgs::default_run())) {
        Command::Train(a) => cli::train::run(a),
        Command::Compare(a) => cli::compare::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Predict(a) => cli::predict::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::LrFind(a) => cli::lr_find::run(a),
        Command::Gradcheck(a) => cli::gradcheck::run(a),
        Command::Devices(a) => cli::devices::run(a),
        Command::Models => cli::summary::list_models(),
        Command::Summary(a) => cli::summary::run(a),
        Command::Bench(a) => cli::bench::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(if matches!(e, ferronet::Error::Interrupted) { 130 } else { 2 });
        }
    }
}
