//! A training run whose batch cannot fit the GPU's memory stops before its first step with one
//! line giving the memory requested and free and the largest batch size that fits. Checked on
//! the PTX simulator with its memory cut to a few MiB by FERRONET_SIM_MEMORY_MB; `ferronet
//! bench` is refused the same way.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::cli_run::{run, single_error_line};

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Executor, Mode};
use ferronet::device::ConvWorkspace;
use ferronet::sim::DEFAULT_SIM_MULTIPROCESSORS;
use ferronet::train::session::build_model;
use std::process::Command;

const SIM_MEMORY_MB: usize = 8;
const BATCH: usize = 64;

#[test]
fn a_batch_too_large_for_the_gpu_is_refused_before_the_first_step() {
    // What a step of small_cnn with SGD momentum needs on the simulator at fp32 (the run asks for
    // it: the simulator's default is bf16), from the executor's plan (the GPU's convolution
    // workspace).
    let graph = build_model("small_cnn", 10, [1, 28, 28], false).unwrap();
    let momentum_bytes: usize = graph.params.iter().filter(|p| p.trainable).map(|p| p.numel() * 4).sum();
    // Training fuses its batch norm -> activation chains (train's default).
    let (ex, _) = Executor::<f32, _>::new(CpuBackend::new(), graph, 0).unwrap().fuse_batch_norm_activations();
    let gpu_workspace = ConvWorkspace::ImplicitGemm { gemm_sms: DEFAULT_SIM_MULTIPROCESSORS };
    let need = |batch: usize| ex.planned_peak_bytes(batch, Mode::Train, gpu_workspace).unwrap() + momentum_bytes;
    let capacity = SIM_MEMORY_MB << 20;
    let fits = (1..BATCH).take_while(|&b| need(b) <= capacity).last().expect("a small batch fits in the test's memory");
    assert!(need(BATCH) > capacity, "the test's batch must not fit");

    let root = scratch_dir("oom");
    let out = root.join("run");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferronet"));
    cmd.env("FERRONET_SIM_MEMORY_MB", SIM_MEMORY_MB.to_string())
        .args(["train", "--device", "sim", "--precision", "fp32", "--quiet", "--limit", "128", "--epochs", "1"])
        .args(["--batch-size", &BATCH.to_string(), "--out"])
        .arg(&out);
    let line = single_error_line(&run(cmd));
    assert_eq!(
        line,
        format!(
            "error: out of device memory: requested {} MiB with {SIM_MEMORY_MB} MiB free; a batch size of at most {fits} fits; lower the batch size",
            need(BATCH) >> 20
        )
    );
    for file in ["checkpoint.safetensors", "history.csv", "train.lock"] {
        assert!(!out.join(file).exists(), "no step ran, so there is no {file}");
    }

    // `ferronet bench` checks the same plan (plus its resident batch and each step's copy).
    let mut bench = Command::new(env!("CARGO_BIN_EXE_ferronet"));
    bench
        .env("FERRONET_SIM_MEMORY_MB", SIM_MEMORY_MB.to_string())
        .args(["bench", "--device", "sim", "--model", "small_cnn", "--input", "1,28,28", "--classes", "10"])
        .args(["--batch", &BATCH.to_string()]);
    let line = single_error_line(&run(bench));
    assert!(line.starts_with("error: out of device memory: requested ") && line.ends_with("fits; lower the batch size"), "{line}");

    let mut bad = Command::new(env!("CARGO_BIN_EXE_ferronet"));
    bad.env("FERRONET_SIM_MEMORY_MB", "lots").args(["train", "--device", "sim", "--quiet", "--out"]).arg(root.join("bad"));
    assert_eq!(
        single_error_line(&run(bad)),
        "error: invalid configuration: FERRONET_SIM_MEMORY_MB=lots: give the simulated device memory as a whole number of MiB"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
