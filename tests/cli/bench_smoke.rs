//! Smoke tests of the benchmarks (the benchmarks themselves are not run by `cargo test`): one
//! validated kernel case on the simulator with its predictions, one tensor-core GEMM prediction,
//! and one `ferronet bench` step on the CPU with its flag errors.

use ferronet::bench::kernels::{run_kernel_bench, KernelBenchOptions, Outcome};
use ferronet::bench::report::tables;
use ferronet_test_support::bench::kernel_bench_options;
use std::process::Command;

#[test]
fn a_kernel_case_is_validated_on_the_simulator_and_predicted_for_every_gpu() {
    let opts = KernelBenchOptions { sim: true, ..kernel_bench_options("softmax_ce") };
    let report = run_kernel_bench(&opts, |_| {}).unwrap();
    assert_eq!(report.cases.len(), 1);
    let case = &report.cases[0];
    let Some(Outcome::Ran(sim)) = &case.sim else { panic!("the simulator did not run: {:?}", case.sim) };
    assert!(sim.validation.passed, "{:?}", sim.validation);
    assert!(sim.launches.iter().any(|l| l.kernel == "loss::softmax_cross_entropy" && l.flops > 0 && l.dram_bytes > 0));
    assert_eq!(sim.predictions.len(), 3);
    assert!(sim.predictions.iter().all(|p| p.seconds > 0.0 && p.seconds < 1e-2), "{:?}", sim.predictions);
    assert!(!report.any_failed());
    let text = tables(&report);
    assert!(text.contains("| softmax_ce 8x1000 | ok |"), "{text}");
}

/// The bf16 linear-layer case (the one timed against cuBLAS's GemmEx on a GPU) runs its sliced
/// shape on the simulator's tensor-core training tiles and equals the f64 reference of its
/// bf16-drawn operands.
#[test]
fn a_bf16_linear_case_runs_on_the_tensor_core_tiles_and_is_validated() {
    let opts = KernelBenchOptions { sim: true, ..kernel_bench_options("linear_fwd bf16 tensor cores batch 2") };
    let report = run_kernel_bench(&opts, |_| {}).unwrap();
    let [case] = report.cases.as_slice() else { panic!("{} cases", report.cases.len()) };
    let Some(Outcome::Ran(sim)) = &case.sim else { panic!("the simulator did not run: {:?}", case.sim) };
    assert!(sim.validation.passed, "{:?}", sim.validation);
    let kernels: Vec<&str> = sim.launches.iter().map(|l| l.kernel.as_str()).collect();
    assert!(kernels.iter().any(|k| k.starts_with("gemm_tc::sgemm_nt_tc_bf16")) && !kernels.iter().any(|k| k.starts_with("gemm::sgemm")), "{kernels:?}");
    assert!(case.shape.contains("bf16"), "{}", case.shape);
    assert!(!report.any_failed());
}

#[test]
fn a_tensor_core_gemm_is_predicted_for_every_gpu() {
    let opts = KernelBenchOptions { sim: true, ..kernel_bench_options("tc_gemm bf16 conv_fwd resnet18 512x4x4") };
    let report = run_kernel_bench(&opts, |_| {}).unwrap();
    assert!(report.cases.is_empty());
    let [Outcome::Ran(tc)] = report.tensor_core.as_slice() else { panic!("{:?}", report.tensor_core) };
    assert_eq!((tc.m, tc.n, tc.k, tc.grid), (512, 32, 4608, (1, 8, 1)), "64-row tiles for a grid of few blocks");
    assert_eq!(tc.bank_conflicts, 0);
    assert_eq!(tc.tensor_flops, 2 * 512 * 128 * 4608, "eight blocks of 64x128 over the whole K");
    assert_eq!(tc.predictions.len(), 3);
    assert!(tc.predictions.iter().all(|p| p.fraction_of_tensor_peak > 0.0 && p.fraction_of_tensor_peak <= 1.0), "{:?}", tc.predictions);
    assert!(!report.any_failed());
    let text = tables(&report);
    assert!(text.contains("Tensor-core GEMM") && text.contains("PREDICTED") && text.contains("| tc_gemm bf16 conv_fwd resnet18 512x4x4"), "{text}");
}

fn ferronet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferronet")).arg("bench").args(args).output().expect("run ferronet")
}

#[test]
fn one_training_step_on_the_cpu_reports_throughput_and_memory() {
    let out = ferronet(&["--model", "small_cnn", "--batch", "2", "--classes", "10", "--steps", "1", "--warmup", "0", "--device", "cpu", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["model"], "small_cnn");
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["input"], serde_json::json!([1, 28, 28]));
    for key in ["train_images_per_s", "inference_images_per_s", "peak_train_bytes", "peak_inference_bytes", "parameters"] {
        assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {}", report[key]);
    }
    assert!(report["peak_train_bytes"].as_f64() > report["peak_inference_bytes"].as_f64());
}

#[test]
fn bad_flags_are_one_line_errors() {
    for (args, expect) in [
        (&["--model", "small_cnn", "--batch", "0", "--device", "cpu"][..], "--batch must be at least 1"),
        (&["--model", "small_cnn", "--steps", "0", "--device", "cpu"][..], "--steps must be at least 1"),
        (&["--model", "nonet", "--device", "cpu"][..], "unknown model `nonet`"),
        (&["--model", "small_cnn", "--input", "1,28", "--device", "cpu"][..], "three positive numbers"),
        (&["--model", "small_cnn", "--device", "tpu"][..], "unknown device `tpu`"),
    ] {
        let out = ferronet(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        // The error is the first line (clap adds a hint line after its own parse errors).
        assert!(stderr.lines().next().is_some_and(|l| l.starts_with("error: ") && l.contains(expect)), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_takes_the_model_options_of_summary() {
    let args = ["--model", "resnet18", "--cifar-stem", "--width-divisor", "8", "--input", "3,32,32", "--classes", "10"];
    let out = ferronet(&[&args[..], &["--batch", "2", "--steps", "1", "--warmup", "0", "--device", "cpu", "--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let summary = Command::new(env!("CARGO_BIN_EXE_ferronet")).arg("summary").args(args).arg("--json").output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&summary.stdout).expect("summary JSON");
    assert_eq!(report["parameters"], summary["trainable_params"]);
    // The CPU has no driver: nothing is counted, and nothing is predicted.
    assert_eq!(report["per_step"]["kernel_launches"], 0);
    assert!(report.get("predicted").is_none());
    let out = ferronet(&["--model", "small_cnn", "--device", "cpu", "--predict-batch", "8"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--predict-batch needs --device sim"));
}

#[test]
fn on_the_simulator_steady_steps_allocate_nothing_and_the_step_is_predicted() {
    let out = ferronet(&[
        "--model", "small_cnn", "--batch", "2", "--classes", "10", "--steps", "1", "--warmup", "2", "--device", "sim",
        "--predict-batch", "16", "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let step = &r["per_step"];
    // small_cnn has dropout, whose step seed the device reads: `--cuda-graph auto` replays it.
    assert_eq!(r["cuda_graph"], true);
    assert_eq!((step["kernel_launches"].as_u64(), step["graph_launches"].as_u64()), (Some(0), Some(1)), "{step}");
    assert_eq!((step["allocations"].as_u64(), step["frees"].as_u64()), (Some(0), Some(0)), "{step}");
    // Metrics stay on the device: the host never waits.
    assert_eq!((step["host_syncs"].as_u64(), step["d2h_bytes"].as_u64()), (Some(0), Some(0)), "{step}");
    // The step's dropout seed is queued from pinned staging before the launch.
    assert_eq!(r["bench_per_step"]["h2d_copies"], 1, "{}", r["bench_per_step"]);
    // The bench's own timing synchronisation is reported apart from the step's.
    assert_eq!(r["bench_per_step"]["synchronizes"], 1, "{}", r["bench_per_step"]);
    assert!(r["cached_bytes"].as_u64().is_some_and(|b| b > 0));
    // Its timings are the simulator's host time, and say so.
    assert_eq!(r["simulator_host_time"], true);
    let p = &r["predicted"];
    // The prediction ran a step at batch 16 itself, at most 16 blocks of each launch, replayed
    // from a graph as the measured one (its GEMMs tiled and split for 16 images).
    assert_eq!((p["batch"].as_u64(), p["sampled_blocks"].as_u64()), (Some(16), Some(16)));
    assert_eq!((p["per_step"]["kernel_launches"].as_u64(), p["per_step"]["graph_launches"].as_u64()), (Some(0), Some(1)), "{p}");
    assert_eq!((p["per_step"]["host_syncs"].as_u64(), p["per_step"]["allocations"].as_u64()), (Some(0), Some(0)), "{p}");
    // The batch and its labels are resident: nothing is uploaded inside the step.
    assert_eq!(p["per_step"]["h2d_bytes"].as_u64(), Some(0), "{p}");
    let gpus = p["gpus"].as_array().unwrap();
    assert_eq!(gpus.iter().map(|g| g["gpu"].as_str().unwrap()).collect::<Vec<_>>(), ["RTX 3090", "RTX 4090", "H100 SXM"]);
    for g in gpus {
        let ms = |k: &str| g[k].as_f64().unwrap();
        let parts: f64 = ["kernels", "transfers", "launch_gaps", "syncs", "allocs"].iter().map(|k| ms(&format!("predicted_{k}_ms"))).sum();
        assert!(ms("predicted_step_ms") > 0.0 && (parts - ms("predicted_step_ms")).abs() < 1e-9, "{g}");
        assert_eq!(ms("predicted_allocs_ms"), 0.0, "{g}");
    }
}

/// The judged bench, at a smaller width and image so it stays quick. Of the two warm-up
/// steps, the first is queued from the host and the second captures the graph.
const RESNET_ARGS: [&str; 17] = [
    "--model", "resnet18", "--cifar-stem", "--width-divisor", "16", "--input", "3,16,16", "--classes", "10", "--batch", "2",
    "--steps", "2", "--warmup", "2", "--device", "sim",
];

#[test]
fn on_the_simulator_a_step_is_one_graph_launch_from_the_host() {
    let out = ferronet(&[&RESNET_ARGS[..], &["--json", "--predict-batch", "8"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!((r["cuda_graph"].as_bool(), r["per_step_uniform"].as_bool()), (Some(true), Some(true)), "{r}");
    // The prediction replays the graph's nodes: one host call, the kernels still timed.
    let p = &r["predicted"];
    assert_eq!((p["per_step"]["graph_launches"].as_u64(), p["per_step"]["kernel_launches"].as_u64()), (Some(1), Some(0)), "{p}");
    for g in p["gpus"].as_array().unwrap() {
        assert!(g["predicted_kernels_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{g}");
        assert!(g["predicted_launch_gaps_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{g}");
    }
    let step = &r["per_step"];
    let counts: Vec<u64> = ["graph_launches", "kernel_launches", "memsets", "allocations", "frees", "host_syncs", "d2h_bytes", "h2d_copies"]
        .iter()
        .map(|k| step[k].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 0, 0, 0, 0, 0, 0, 0], "{step}");
    let text = ferronet(&RESNET_ARGS);
    assert!(String::from_utf8_lossy(&text.stdout).contains("(each step replays a captured CUDA graph)"));
}

#[test]
fn a_failed_capture_is_one_line_then_steps_without_a_graph_or_an_error_when_asked_for() {
    let run = |mode: &str| {
        Command::new(env!("CARGO_BIN_EXE_ferronet"))
            .arg("bench")
            .args(RESNET_ARGS)
            .args(["--json", "--cuda-graph", mode])
            .env("FERRONET_NO_MEMORY_CACHING", "1")
            .output()
            .unwrap()
    };
    let auto = run("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("running without a CUDA graph") && stderr.contains("FERRONET_NO_MEMORY_CACHING"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&auto.stdout).unwrap();
    assert_eq!((r["cuda_graph"].as_bool(), r["per_step"]["graph_launches"].as_u64()), (Some(false), Some(0)));
    let on = run("on");
    let stderr = String::from_utf8_lossy(&on.stderr);
    assert_eq!(on.status.code(), Some(2), "{stderr}");
    assert!(stderr.lines().next().is_some_and(|l| l.starts_with("error: ") && l.contains("CUDA graphs need the caching allocator")), "{stderr}");
    let cpu = ferronet(&["--model", "small_cnn", "--device", "cpu", "--cuda-graph", "on"]);
    assert!(String::from_utf8_lossy(&cpu.stderr).contains("--cuda-graph on: it needs a GPU device"));
}
