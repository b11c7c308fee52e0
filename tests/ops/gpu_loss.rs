//! GPU softmax and fused softmax cross-entropy against the f64 CPU reference; the loss cases'
//! reduced-precision checks over many draws of their inputs.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::loss::{eval_words, train_words, word_f64};
use ferronet::ops::LossOps;
use ferronet::rng::Rng;

/// (N, K) pairs: one sample, one class, odd sizes, and rows wider than one block.
const SHAPES: [(usize, usize); 5] = [(1, 10), (5, 3), (4, 1), (3, 37), (2, 1000)];

fn labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(classes as u64) as u32).collect()
}

#[test]
fn cross_entropy_matches_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let seed = seed as u64;
        // Large logits: without max subtraction exp() would overflow f32.
        let logits = random_f32(n * k, seed, -60.0, 120.0);
        let y = labels(n, k, seed + 50);
        for smoothing in [0.0, 0.1] {
            let what = format!("N={n} K={k} smoothing={smoothing}");
            let (loss, dlogits) = gpu
                .softmax_cross_entropy(&gpu.upload(&logits).unwrap(), &gpu.upload_idx(&y).unwrap(), n, k, smoothing)
                .unwrap();
            let (want_loss, want_d) = cpu
                .softmax_cross_entropy(
                    &cpu.upload(&widen(&logits)).unwrap(),
                    &Device::<f64>::upload_idx(&cpu, &y).unwrap(),
                    n,
                    k,
                    smoothing,
                )
                .unwrap();
            assert_close(&format!("loss {what}"), &gpu.download(&loss).unwrap(), &want_loss, 1e-4, 1e-5);
            assert_close(&format!("dlogits {what}"), &gpu.download(&dlogits).unwrap(), &want_d, 1e-6, 1e-4);
        }
    }
}

#[test]
fn softmax_matches_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let logits = random_f32(n * k, seed as u64 + 9, -60.0, 120.0);
        let got = gpu.download(&gpu.softmax(&gpu.upload(&logits).unwrap(), n, k).unwrap()).unwrap();
        let want = cpu.softmax(&cpu.upload(&widen(&logits)).unwrap(), n, k).unwrap();
        assert_close(&format!("softmax N={n} K={k}"), &got, &want, 1e-7, 1e-4);
    }
}

/// Logits whose rows exercise the metric rules: random rows, a row of ties (top-1 is the first,
/// the label's rank counts equal logits at lower indices above it), and a NaN row.
fn metric_logits(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut logits = random_f32(n * k, seed, -4.0, 4.0);
    if n > 2 {
        logits[k..2 * k].fill(1.5);
        logits[2 * k + k / 2] = f32::NAN;
    }
    logits
}

/// Training metrics over several steps on the GPU and the CPU: the words agree exactly (counts,
/// the f64 loss sums, the first non-finite step and the first bad label).
#[test]
fn training_metrics_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let mut gpu_words = gpu.upload_idx(&[0; train_words::LEN]).unwrap();
    let mut cpu_words = Device::<f32>::upload_idx(&cpu, &[0; train_words::LEN]).unwrap();
    // (N, K, loss values of the step's two weighted outputs, a bad label at sample 1)
    let steps: [(usize, usize, [f32; 2], bool); 5] = [
        (5, 3, [0.75, 0.125], false),
        (3, 37, [2.5, 1.0], false),
        (300, 10, [f32::NAN, 1.0], false),
        (4, 1000, [0.1, f32::INFINITY], true),
        (6, 7, [1.0 / 3.0, 0.2], true),
    ];
    for (step, &(n, k, losses, bad)) in steps.iter().enumerate() {
        let logits = metric_logits(n, k, step as u64);
        let mut y = labels(n, k, step as u64 + 7);
        if bad {
            y[1] = k as u32 + step as u32;
        }
        for (loss, weight) in losses.iter().zip([1.0, 0.3]) {
            gpu.accumulate_step_loss(&gpu.upload(&[*loss]).unwrap(), weight, &mut gpu_words).unwrap();
            cpu.accumulate_step_loss(&cpu.upload(&[*loss]).unwrap(), weight, &mut cpu_words).unwrap();
        }
        gpu.finish_train_step(&gpu.upload(&logits).unwrap(), &gpu.upload_idx(&y).unwrap(), n, k, &mut gpu_words).unwrap();
        let cpu_labels = Device::<f32>::upload_idx(&cpu, &y).unwrap();
        cpu.finish_train_step(&cpu.upload(&logits).unwrap(), &cpu_labels, n, k, &mut cpu_words).unwrap();
        assert_eq!(gpu.download_idx(&gpu_words).unwrap(), cpu_words.to_vec(), "after step {} (N={n} K={k})", step + 1);
    }
    let words = cpu_words.to_vec();
    assert_eq!((words[train_words::STEPS], words[train_words::SKIPPED], words[train_words::NONFINITE_STEP]), (5, 2, 3));
    assert_eq!((words[train_words::BAD_STEP], words[train_words::BAD_SAMPLE], words[train_words::BAD_LABEL]), (4, 1, 1003));
    assert_eq!(words[train_words::SEEN], 5 + 3 + 6);
    assert_eq!(word_f64(&words, train_words::LOSS_SUM), (0.75 + 0.3 * 0.125f64) * 5.0 + (2.5 + 0.3) * 3.0 + ((1.0f32 / 3.0) as f64 + 0.3 * 0.2f32 as f64) * 6.0);
}

/// Evaluation metrics of a few batches: counts agree exactly, the f64 loss sum to rounding (the
/// device's exp and log are not the host's).
#[test]
fn evaluation_metrics_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let k = 7;
    let len = eval_words::len(k);
    let mut gpu_words = gpu.upload_idx(&vec![0; len]).unwrap();
    let mut cpu_words = Device::<f32>::upload_idx(&cpu, &vec![0; len]).unwrap();
    // A batch over one block's rows, then smaller ones.
    for (batch, n) in [300, 5, 1].into_iter().enumerate() {
        let logits = metric_logits(n, k, batch as u64 + 30);
        let y = labels(n, k, batch as u64 + 40);
        gpu.accumulate_eval(&gpu.upload(&logits).unwrap(), &gpu.upload_idx(&y).unwrap(), n, k, &mut gpu_words).unwrap();
        let cpu_labels = Device::<f32>::upload_idx(&cpu, &y).unwrap();
        cpu.accumulate_eval(&cpu.upload(&logits).unwrap(), &cpu_labels, n, k, &mut cpu_words).unwrap();
    }
    let (got, want) = (gpu.download_idx(&gpu_words).unwrap(), cpu_words.to_vec());
    assert_eq!(got[eval_words::SAMPLES..], want[eval_words::SAMPLES..], "sample, top-5 and confusion counts");
    assert_eq!(want[eval_words::SAMPLES], 306);
    assert!(want[eval_words::TOP5] < 306, "the NaN rows are never in the top 5");
    // The NaN row makes the sum NaN: compare a batch of finite rows for the loss.
    let n = 40;
    let logits = random_f32(n * k, 50, -60.0, 120.0);
    let y = labels(n, k, 51);
    let mut gpu_words = gpu.upload_idx(&vec![0; len]).unwrap();
    let mut cpu_words = Device::<f32>::upload_idx(&cpu, &vec![0; len]).unwrap();
    gpu.accumulate_eval(&gpu.upload(&logits).unwrap(), &gpu.upload_idx(&y).unwrap(), n, k, &mut gpu_words).unwrap();
    let cpu_labels = Device::<f32>::upload_idx(&cpu, &y).unwrap();
    cpu.accumulate_eval(&cpu.upload(&logits).unwrap(), &cpu_labels, n, k, &mut cpu_words).unwrap();
    let got = word_f64(&gpu.download_idx(&gpu_words).unwrap(), eval_words::LOSS_SUM);
    let want = word_f64(&cpu_words, eval_words::LOSS_SUM);
    assert_close("eval loss sum", &[got], &[want], 0.0, 1e-13);
}

/// The GPU does not stop to check labels: a row with an out-of-range label gets a NaN loss and
/// is never indexed by it, and finish_train_step records it (the executor's read names it).
#[test]
fn a_label_out_of_range_gives_a_nan_row_and_is_recorded() {
    let gpu = gpu();
    let logits = gpu.upload(&[0.0f32; 6]).unwrap();
    let labels = gpu.upload_idx(&[1, 3]).unwrap();
    let (loss, dlogits) = gpu.softmax_cross_entropy(&logits, &labels, 2, 3, 0.0).unwrap();
    assert!(gpu.download(&loss).unwrap()[0].is_nan());
    let d = gpu.download(&dlogits).unwrap();
    assert!(d[3..].iter().all(|&g| (g - 1.0 / 6.0).abs() < 1e-7), "no target in the bad row: {d:?}");
    let mut words = gpu.upload_idx(&[0; train_words::LEN]).unwrap();
    gpu.accumulate_step_loss(&loss, 1.0, &mut words).unwrap();
    gpu.finish_train_step(&logits, &labels, 2, 3, &mut words).unwrap();
    let words = gpu.download_idx(&words).unwrap();
    assert_eq!((words[train_words::BAD_STEP], words[train_words::BAD_SAMPLE], words[train_words::BAD_LABEL]), (1, 1, 3));
    assert_eq!(words[train_words::NONFINITE_STEP], 1);
}

/// The loss cases of `ferronet gradcheck` drawn from 120 seeds pass their reduced-precision
/// checks on the device at tf32, bf16 and fp16 (one drawn set is the suite's). A loss of a few
/// thousandths (one logit far above the other) is log-sum-exp minus that logit, and its gradient
/// a probability near 1 minus 1: both cancel, so their tolerance scales with the terms
/// (`GradOp::term_scales`); scaled by the result alone about one draw in ten failed.
#[test]
fn loss_cases_pass_their_reduced_precision_checks_over_many_draws() {
    use ferronet::gradcheck::precision::compare_device_at;
    use ferronet::ops::cases::{FamilyCases, GradCases};
    use ferronet::precision::Precision;
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let mut failures = Vec::new();
    for seed in 0..120 {
        let mut cases = GradCases::new(seed);
        ferronet::ops::loss::cases::Cases.grad_cases(&mut cases);
        for case in cases.into_cases() {
            for p in [Precision::Tf32, Precision::Bf16, Precision::Fp16] {
                let r = compare_device_at(&gpu, &cpu, &case, p).unwrap();
                if !r.passed {
                    failures.push(format!("seed {seed} {p} {}: abs {:.3e} logits {:?}", case.config, r.max_abs_err, case.inputs[0]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
