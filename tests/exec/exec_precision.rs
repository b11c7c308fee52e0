//! Training at reduced precision (emulated storage, `exec::precision`): a few steps on the GPU
//! backend (a real GPU when present, else the PTX simulator) equal the CPU's emulation of the
//! same precision within the derived tolerance, with the convolutions' and linear layers' GEMMs
//! on the tensor cores at bf16/fp16 (fp16 on Turing too), and fp16's loss scaling skips an
//! overflowing step and recovers.

use ferronet::tolerance::{assert_close, between_rounded};
use ferronet_test_support::gpu::gpu;
use ferronet_test_support::graphs::{batch, labels, op_zoo, residual_block};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use crate::exec_graph::resident_step;
use ferronet::device::CudaGraphMode;
use ferronet::exec::executor::LossScaleState;
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions, StepReplay};
use ferronet::gpu::GpuBackend;
use ferronet::graph::Graph;
use ferronet::shape::Layout;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;
use ferronet::ops::precision::LossScaleFactor;
use ferronet::ops::{Backend, ElementwiseOps, PrecisionOps};
use ferronet::ops::gemm::tc::TcInput;
use ferronet::precision::{Precision, StoredFormat};
use ferronet::train::loss_scale::LossScaler;

const N: usize = 4;
const STEPS: usize = 3;

fn sgd() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false },
        lr: 0.05,
        weight_decay: 0.0,
        decay_weights_only: true,
        clip_grad_norm: None,
    }
}

fn fused_if<B: Backend<f32>>(fused: bool, ex: Executor<f32, B>) -> Executor<f32, B> {
    if fused {
        ex.fuse_batch_norm_activations().0
    } else {
        ex
    }
}

/// STEPS training steps of `graph` at `precision` on the device and on the CPU (both f32) from
/// one seed: the losses and logits of every step agree within the rule of `tolerance` for
/// values stored in the format, widened by the number of nodes that store one (each may land one
/// format step apart on the two devices and carry that difference forward; the normalised
/// layers of these graphs do not amplify it), and by the steps taken; the GEMMs ran on the
/// engine `assert_gemm_engine` expects.
fn steps_match(graph: Graph, precision: Precision, fused: bool) {
    steps_match_on(gpu(), Layout::Nchw, graph, precision, fused)
}

/// `steps_match` on `device` with image tensors in `layout`.
fn steps_match_on(device: GpuBackend, layout: Layout, graph: Graph, precision: Precision, fused: bool) {
    let x: Vec<f32> = batch(&graph, N, 5).iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let opts = StepOptions { dropout_seed: Some(3), ..StepOptions::default() };
    let name = format!("{} at {precision} {layout:?}{}", graph.name, if fused { " fused" } else { "" });
    let mut cpu = fused_if(fused, Executor::new(CpuBackend::new(), graph.clone(), 7).unwrap().in_layout(layout));
    let mut dev = fused_if(fused, Executor::new(device, graph.clone(), 7).unwrap().in_layout(layout));
    let (mut opt_cpu, mut opt_dev) = (Optimizer::new(sgd()).unwrap(), Optimizer::new(sgd()).unwrap());
    cpu.set_precision(precision);
    dev.set_precision(precision);
    let stores = graph.nodes.len() as f64;
    Device::<f32>::take_kernel_log(dev.backend());
    let mut launched = Vec::new();
    for step in 1..=STEPS {
        let want = cpu.train_step_readback(Batch::HostF32(&x), &y, &opts).unwrap();
        let got = dev.train_step_readback(Batch::HostF32(&x), &y, &opts).unwrap();
        let want_logits: Vec<f64> = want.logits.iter().map(|&v| v as f64).collect();
        let scale = want_logits.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let k = graph.params.iter().map(|p| p.numel()).sum::<usize>() + x.len();
        let (u, tiny) = if precision.stores_activations() { (precision.unit_roundoff(), precision.smallest_subnormal()) } else { (0.0, 0.0) };
        let rule = between_rounded(u, tiny, k, scale);
        let widen = stores * step as f64;
        let (atol, rtol) = (rule.atol * widen, rule.rtol * widen);
        assert_close(&format!("{name} step {step} logits"), &got.logits, &want_logits, atol, rtol);
        assert!((got.loss - want.loss).abs() <= atol + rtol * want.loss.abs(), "{name} step {step}: loss {} vs {}", got.loss, want.loss);
        cpu.optimizer_step(&mut opt_cpu).unwrap();
        dev.optimizer_step(&mut opt_dev).unwrap();
        launched.extend(Device::<f32>::take_kernel_log(dev.backend()));
    }
    assert_gemm_engine(&name, precision, layout, dev.backend(), &launched);
}

/// The launch record of a few steps: on a device whose tensor cores take the format (bf16 and
/// tf32 from compute capability 8.0, fp16 from 7.5) every convolution and linear GEMM ran on the
/// tensor-core tiles of that format, none on the fp32 SGEMM kernels, in either layout; at fp32,
/// or without such tensor cores, none on the tensor cores.
fn assert_gemm_engine(name: &str, precision: Precision, layout: Layout, gpu: &GpuBackend, launched: &[String]) {
    let ran = |prefix: &str| launched.iter().any(|k| k.starts_with(prefix));
    let cc = gpu.driver().compute_capability();
    let input = TcInput::for_precision(precision).filter(|input| input.runs_on(cc));
    let format = input.map_or("fp32", TcInput::name);
    let conv = match layout {
        Layout::Nchw => format!("conv_tc::conv_forward_gemm_tc_{format}"),
        Layout::Nhwc => format!("conv_tc::conv_nhwc_gemm_tc_{format}"),
    };
    assert_eq!(ran(&conv), input.is_some(), "{name}: {conv} launched? {launched:?}");
    let linear = format!("gemm_tc::sgemm_nt_tc_{format}");
    assert_eq!(ran(&linear), input.is_some(), "{name}: {linear} launched? {launched:?}");
    if input.is_some() {
        assert!(!ran("gemm::sgemm") && !ran("precision::pack"), "{name}: an fp32 linear GEMM ran: {launched:?}");
        assert!(!ran("conv::conv_"), "{name}: an fp32 convolution GEMM ran: {launched:?}");
    }
}

#[test]
fn reduced_precision_steps_on_the_device_match_the_cpu_emulation() {
    for precision in [Precision::Bf16, Precision::Fp16, Precision::Tf32] {
        steps_match(residual_block(), precision, false);
        steps_match(residual_block(), precision, true);
        steps_match(op_zoo(), precision, false);
    }
}

/// Turing (compute capability 7.5): fp16, its default, on its own tensor-core module
/// (convolutions of both layouts and linear layers) equals the CPU emulation in both layouts, and
/// bf16 and tf32 are refused in one line naming fp16.
#[test]
fn turing_trains_in_fp16_on_its_tensor_cores() {
    let turing = || GpuBackend::new(Arc::new(SimDriver::new(SimOptions { compute_capability: (7, 5), ..SimOptions::default() })));
    assert_eq!(Device::<f32>::default_precision(&turing()), Precision::Fp16);
    for layout in [Layout::Nhwc, Layout::Nchw] {
        steps_match_on(turing(), layout, residual_block(), Precision::Fp16, false);
    }
    steps_match_on(turing(), Layout::Nhwc, op_zoo(), Precision::Fp16, true);
    for refused in [Precision::Bf16, Precision::Tf32] {
        let mut ex = Executor::<f32, _>::new(turing(), residual_block(), 7).unwrap();
        let err = ex.set_chosen_precision(Some(refused)).unwrap_err().to_string();
        assert!(err.contains("needs a GPU of compute capability 8.0") && err.contains("choose --precision fp16 or fp32"), "{err}");
    }
}

#[test]
fn bf16_rounds_what_it_stores_and_keeps_fp32_master_weights() {
    let graph = residual_block();
    let x: Vec<f32> = batch(&graph, N, 5).iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph.clone(), 7).unwrap();
    ex.set_precision(Precision::Bf16);
    let out = ex.train_step_readback(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
    let in_bf16 = |v: &[f32]| v.iter().all(|&x| Precision::Bf16.round(x) == x);
    assert!(in_bf16(&out.logits), "the logits are stored in bf16");
    let conv = ex.grad_host_by_name("conv1.weight").unwrap().unwrap();
    assert!(in_bf16(&conv), "a convolution's weight gradient is produced in bf16");
    let master = ex.param_host("conv1.weight").unwrap();
    assert!(!in_bf16(&master), "the master weights keep f32 values");
    let mut fp32 = Executor::<f32, _>::new(CpuBackend::new(), graph, 7).unwrap();
    let reference = fp32.train_step_readback(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
    assert!(!in_bf16(&reference.logits), "fp32 stores f32 values");
}

/// What a run of fp16 steps with dynamic loss scaling on the device leaves after each step.
type ScaleTrajectory = Vec<LossScaleState>;

/// fp16 steps with the loss scale on the device (`Executor::start_dynamic_loss_scale`) from
/// 2^40, which overflows, with a growth interval of 2, until the scale has grown twice: after
/// every step the device's state {scale, good steps, overflow skips} is `LossScaler`'s host
/// arithmetic fed with that step's overflow (the optimiser's non-finite count), an overflowing
/// step left the parameters alone and a finite one updated them. Returns the states.
fn the_device_loss_scale_follows_the_host_scaler_on<B: Backend<f32>>(backend: B) -> ScaleTrajectory {
    let graph = residual_block();
    let x: Vec<f32> = batch(&graph, N, 5).iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f32, _>::new(backend, graph, 7).unwrap();
    ex.set_precision(Precision::Fp16);
    let mut optimizer = Optimizer::new(sgd()).unwrap();
    let mut scaler = LossScaler::new(2f64.powi(40), 2);
    ex.start_dynamic_loss_scale(scaler.state(), scaler.growth_interval()).unwrap();
    let (mut seen_skips, mut growths, mut trajectory) = (0, 0, Vec::new());
    while growths < 2 {
        assert!(trajectory.len() < 48, "the scale did not grow twice in 48 steps: {trajectory:?}");
        let before = ex.param_host("conv1.weight").unwrap();
        ex.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
        ex.optimizer_step(&mut optimizer).unwrap();
        let skips = optimizer.nonfinite_grad_steps(ex.backend()).unwrap();
        let overflow = skips > seen_skips;
        seen_skips = skips;
        let host_scale = scaler.scale();
        scaler.update(overflow);
        growths += usize::from(scaler.scale() > host_scale);
        let device = ex.read_loss_scale().unwrap().expect("dynamic loss scaling holds a state");
        assert_eq!(device, scaler.state(), "step {}: the device's state against the host's arithmetic", trajectory.len() + 1);
        let after = ex.param_host("conv1.weight").unwrap();
        if overflow {
            assert_eq!(before, after, "an overflowing step leaves the parameters alone");
        } else {
            assert_ne!(before, after, "a finite step updates");
        }
        trajectory.push(device);
    }
    let last = trajectory.last().unwrap();
    assert!(last.overflow_skips > 0 && last.scale < 2f64.powi(40), "a scale of 2^40 overflows fp16: {trajectory:?}");
    assert!(ex.read_train_metrics().unwrap().loss_sum.is_finite(), "the loss itself is f32 and unscaled");
    trajectory
}

#[test]
fn the_device_loss_scale_follows_the_host_scaler_through_overflows_and_growth_on_every_device() {
    let cpu = the_device_loss_scale_follows_the_host_scaler_on(CpuBackend::new());
    let sim = the_device_loss_scale_follows_the_host_scaler_on(sim());
    eprintln!("loss scale trajectory, CPU: {cpu:?}\nsimulator: {sim:?}");
}

/// `scale_by_loss_scale` multiplies by the factor of the scale held on the device exactly as
/// `scale` multiplies by that factor passed from the host (what the executor did before the
/// scale moved to the device): a backward seed ((weight * scale) / ranks) and an unscaling
/// (1 / scale) of a scale that is not a power of two, so the factors round; on the CPU and on
/// the simulator, f32 buffers and fp16 ones (the product rounded once to fp16), a whole number of
/// aligned groups, which move 4 values per lane in one access each way, and a length ending in
/// a partial group.
#[test]
fn scaling_by_the_device_loss_scale_equals_scaling_by_the_host_factor() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let scale = 3.0 * 2f64.powi(9);
    let words = [scale as f32, 0.0, 0.0];
    let (cpu_state, gpu_state) = (cpu.upload(&words).unwrap(), gpu.upload(&words).unwrap());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    for n in [256, 257] {
        let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        for factor in [LossScaleFactor::Seed { weight: 0.4, ranks: 3.0 }, LossScaleFactor::Unscale] {
            let alpha = factor.of(scale) as f32;
            let what = format!("{n} values, {factor:?}");
            let want: Vec<f32> = x.iter().map(|&v| v * alpha).collect();
            let mut on_cpu = cpu.upload(&x).unwrap();
            cpu.scale_by_loss_scale(&mut on_cpu, &cpu_state, factor).unwrap();
            assert_eq!(bits(&on_cpu), bits(&want), "{what}: the CPU");
            let mut host_factor = gpu.upload(&x).unwrap();
            gpu.scale(alpha, &mut host_factor).unwrap();
            assert_eq!(bits(&gpu.download(&host_factor).unwrap()), bits(&want), "{what}: the GPU's scale");
            for format in [StoredFormat::F32, StoredFormat::F16] {
                let mut on_gpu = gpu.convert_stored(&gpu.upload(&x).unwrap(), format).unwrap();
                driver.take_launch_stats();
                gpu.scale_by_loss_scale(&mut on_gpu, &gpu_state, factor).unwrap();
                let stats = driver.take_launch_stats();
                let launch = stats.iter().find(|s| s.kernel == "precision::scale_by_loss_scale").expect("the scaling ran");
                assert_eq!(gpu.stored_format(&on_gpu), format);
                let stored: Vec<f32> = match format {
                    StoredFormat::F32 => want.clone(),
                    _ => want.iter().map(|&v| Precision::Fp16.round(v)).collect(),
                };
                assert_eq!(bits(&gpu.download(&on_gpu).unwrap()), bits(&stored), "{what}, {format:?}: the GPU");
                if n % 4 == 0 {
                    // Per warp of 32 lanes x 4 values: the scale, one load and one store.
                    assert_eq!(launch.global_accesses, 3 * (n / 128) as u64, "{what}, {format:?}: one access per 4 values per lane");
                }
            }
        }
    }
}

/// The simulator GPU backend, whatever device the machine has (graph captures included).
fn sim() -> GpuBackend {
    GpuBackend::new(Arc::new(SimDriver::new(SimOptions::default())))
}

/// What an fp16 run of `fp16_steps_with_an_overflow` ends with.
#[derive(Debug, PartialEq)]
struct Fp16Run {
    /// Every parameter and buffer (batch norm's running statistics, which a forward pass with
    /// an infinite input fills with NaN whatever the update does, as PyTorch's does).
    params: Vec<Vec<f32>>,
    trainable: Vec<Vec<f32>>,
    scale: LossScaleState,
    optimizer: ferronet::exec::OptimizerState<f32>,
}

/// Step (0-based) of `fp16_steps_with_an_overflow` whose input holds an infinity.
const OVERFLOW_STEP: u64 = 3;

/// Six fp16 SGD steps on the simulator over resident batches, queued or replayed from a CUDA
/// graph (`mode`; step 0 queued, step 1 captured, every step then one graph launch), with the
/// loss scale on the device from 1024, growing after 2 finite steps; step `OVERFLOW_STEP`'s
/// input holds an infinity, so its gradients overflow. Queued, the host reads around the
/// overflowing step: parameters and optimiser state stay as they were, the scale halves and
/// the skip is counted. Replayed, nothing is read until the end and every launched step
/// reaches the driver as one graph launch: no kernel launch, copy or host synchronisation.
fn fp16_steps_with_an_overflow(mode: CudaGraphMode) -> (Fp16Run, usize) {
    let graph = residual_block();
    let mut ex = Executor::<f32, _>::new(sim(), graph.clone(), 5).unwrap();
    ex.set_precision(Precision::Fp16);
    let mut optimizer = Optimizer::new(damped_sgd()).unwrap();
    let start = LossScaleState { scale: 1024.0, good_steps: 0, overflow_skips: 0 };
    ex.start_dynamic_loss_scale(start, 2).unwrap();
    let mut replay = StepReplay::new(mode);
    let mut resident = ex.resident_batch(N).unwrap();
    let observe = |ex: &Executor<f32, GpuBackend>, optimizer: &Optimizer<f32, GpuBackend>| {
        let params: Vec<Vec<f32>> = ex.params().iter().map(|(_, p)| ex.param_host(&p.spec.name).unwrap()).collect();
        let trainable = ex.params().iter().filter(|(_, p)| p.spec.trainable).map(|(_, p)| ex.param_host(&p.spec.name).unwrap()).collect();
        let scale = ex.read_loss_scale().unwrap().unwrap();
        Fp16Run { params, trainable, scale, optimizer: optimizer.export_state(ex.backend(), ex.params()).unwrap() }
    };
    for step in 0..6u64 {
        let mut x: Vec<f32> = batch(&graph, N, 100 + step).iter().map(|&v| v as f32).collect();
        if step == OVERFLOW_STEP {
            x[0] = f32::INFINITY;
        }
        let before = (mode == CudaGraphMode::Off && step == OVERFLOW_STEP).then(|| observe(&ex, &optimizer));
        let work = resident_step(&mut ex, &mut optimizer, &mut replay, &mut resident, &x, &labels(N, graph.num_classes()));
        if mode == CudaGraphMode::On && step >= 2 {
            let sent = (work.graph_launches, work.kernel_launches, work.memsets, work.h2d_copies, work.host_syncs);
            assert_eq!(sent, (1, 0, 0, 0, 0), "step {step}: {work:?}");
        }
        if let Some(before) = before {
            let after = observe(&ex, &optimizer);
            assert_eq!(after.trainable, before.trainable, "the overflowing step left the trainable parameters alone");
            assert_eq!(after.optimizer, before.optimizer, "and the optimiser's state");
            let halved = LossScaleState { scale: before.scale.scale / 2.0, good_steps: 0, overflow_skips: before.scale.overflow_skips + 1 };
            assert_eq!(after.scale, halved, "the scale halved and the skip counted");
        }
    }
    (observe(&ex, &optimizer), replay.launches())
}

/// fp16 needs no host read per step: with the loss scale on the device, a CUDA graph replays
/// each step, an overflowing one included, exactly as the steps queued one by one.
#[test]
fn fp16_steps_replay_a_graph_with_the_loss_scale_on_the_device() {
    let (queued, none) = fp16_steps_with_an_overflow(CudaGraphMode::Off);
    let (replayed, launches) = fp16_steps_with_an_overflow(CudaGraphMode::On);
    assert_eq!((none, launches), (0, 5));
    assert_eq!(queued.scale.overflow_skips, 1, "only the infinite input overflows: {:?}", queued.scale);
    assert!(queued.scale.scale > 1024.0, "finite steps grew the scale after the overflow: {:?}", queued.scale);
    assert_eq!(replayed.scale, queued.scale, "the replayed steps updated the scale as the queued ones");
    assert_eq!(replayed.optimizer, queued.optimizer);
    for (q, r) in queued.params.iter().zip(&replayed.params) {
        assert!(q.iter().zip(r).all(|(a, b)| a.to_bits() == b.to_bits()), "a parameter differs between queued and replayed steps");
    }
}

fn adam() -> OptimizerConfig {
    OptimizerConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: false }, lr: 0.01, ..sgd() }
}

/// The parameters after fp16 Adam steps at the given loss scales (2^40 overflows fp16), with the
/// optimiser's state (step counts and moments) read after every step.
fn adam_at_scales<B: Backend<f32>>(backend: B, scales: &[f64]) -> (Vec<f32>, Vec<ferronet::exec::OptimizerState<f32>>) {
    let graph = residual_block();
    let x: Vec<f32> = batch(&graph, N, 5).iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f32, _>::new(backend, graph, 7).unwrap();
    ex.set_precision(Precision::Fp16);
    let mut optimizer = Optimizer::new(adam()).unwrap();
    optimizer.skip_nonfinite_updates();
    let mut states = Vec::new();
    for &scale in scales {
        ex.set_loss_scale(scale).unwrap();
        ex.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
        ex.optimizer_step(&mut optimizer).unwrap();
        states.push(optimizer.export_state(ex.backend(), ex.params()).unwrap());
    }
    let skips = optimizer.nonfinite_grad_steps(ex.backend()).unwrap();
    assert_eq!(skips, scales.iter().filter(|&&s| s > 1e6).count() as u64, "the 2^40 steps overflow, the others do not");
    (ex.param_host("conv1.weight").unwrap(), states)
}

/// A step skipped for an fp16 overflow leaves Adam whole, as PyTorch's GradScaler skips
/// `optimizer.step()`: the step counts and moments stay as they were, and the next finite step
/// updates exactly as if the skipped one had never been attempted (the bias corrections of step
/// 2, not 3), on the CPU and on the GPU backend.
fn a_skipped_step_leaves_adam_whole_on<B: Backend<f32>>(backend: impl Fn() -> B) {
    let overflow = 2f64.powi(40);
    let (skipping, states) = adam_at_scales(backend(), &[1024.0, overflow, 1024.0]);
    assert_eq!(states[1], states[0], "the skipped step changed no step count and no moment");
    assert!(states[0].steps.iter().all(|(_, step)| *step == 1) && states[2].steps.iter().all(|(_, step)| *step == 2), "{:?}", states[2].steps);
    let (uninterrupted, _) = adam_at_scales(backend(), &[1024.0, 1024.0]);
    assert_eq!(skipping, uninterrupted, "the step after a skipped one is the uninterrupted run's second step");
}

#[test]
fn a_skipped_fp16_step_leaves_adam_whole_on_every_device() {
    a_skipped_step_leaves_adam_whole_on(CpuBackend::new);
    a_skipped_step_leaves_adam_whole_on(gpu);
}

/// SGD with momentum 0.9, dampening 0.5 and weight decay, the dampening making a wrongly
/// continued buffer visible (0.5 g instead of g).
fn damped_sgd() -> OptimizerConfig {
    OptimizerConfig { kind: OptimizerKind::Sgd { momentum: 0.9, dampening: 0.5, nesterov: false }, weight_decay: 1e-2, ..sgd() }
}

/// What fp16 SGD steps at the given loss scales leave of conv1.weight: its values after all
/// the steps, and per step its values and gradient before the update and the optimiser's
/// state after it.
struct SgdRun {
    param: Vec<f32>,
    before: Vec<(Vec<f32>, Vec<f32>)>,
    states: Vec<ferronet::exec::OptimizerState<f32>>,
}

fn sgd_at_scales<B: Backend<f32>>(backend: B, scales: &[f64]) -> SgdRun {
    let graph = residual_block();
    let x: Vec<f32> = batch(&graph, N, 5).iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f32, _>::new(backend, graph, 7).unwrap();
    ex.set_precision(Precision::Fp16);
    let mut optimizer = Optimizer::new(damped_sgd()).unwrap();
    optimizer.skip_nonfinite_updates();
    let (mut before, mut states) = (Vec::new(), Vec::new());
    for &scale in scales {
        ex.set_loss_scale(scale).unwrap();
        ex.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
        before.push((ex.param_host("conv1.weight").unwrap(), ex.grad_host_by_name("conv1.weight").unwrap().unwrap()));
        ex.optimizer_step(&mut optimizer).unwrap();
        states.push(optimizer.export_state(ex.backend(), ex.params()).unwrap());
    }
    let skips = optimizer.nonfinite_grad_steps(ex.backend()).unwrap();
    assert_eq!(skips, scales.iter().filter(|&&s| s > 1e6).count() as u64, "the 2^40 steps overflow, the others do not");
    SgdRun { param: ex.param_host("conv1.weight").unwrap(), before, states }
}

/// conv1.weight's momentum buffer in an exported state.
fn momentum_buffer(state: &ferronet::exec::OptimizerState<f32>) -> &[f32] {
    &state.buffers.iter().find(|(key, _)| key == "conv1.weight.momentum_buffer").expect("SGD with momentum exports its buffer").1
}

/// A skipped first step leaves SGD as if it had never been attempted, as PyTorch's GradScaler
/// skips `optimizer.step()`: the step counts stay 0, and the first step taken starts the
/// momentum buffer as that step's gradient with its weight decay (not 0.9 * 0 + 0.5 * g). The
/// run then goes on as one whose first step was taken.
fn a_skipped_first_step_leaves_sgd_unstarted_on<B: Backend<f32>>(backend: impl Fn() -> B) -> SgdRun {
    let overflow = 2f64.powi(40);
    let skipping = sgd_at_scales(backend(), &[overflow, 1024.0, 1024.0]);
    assert!(skipping.states[0].steps.iter().all(|(_, step)| *step == 0), "{:?}", skipping.states[0].steps);
    assert!(skipping.states[1].steps.iter().all(|(_, step)| *step == 1), "{:?}", skipping.states[1].steps);
    let (param, grad) = &skipping.before[1];
    let decayed: Vec<f64> = grad.iter().zip(param).map(|(&g, &p)| g as f64 + 1e-2 * p as f64).collect();
    assert_close("the momentum buffer after the first step taken", momentum_buffer(&skipping.states[1]), &decayed, 1e-7, 1e-5);
    let uninterrupted = sgd_at_scales(backend(), &[1024.0, 1024.0]);
    assert_eq!(skipping.states[1], uninterrupted.states[0], "the first step taken is the uninterrupted run's first");
    assert_eq!(skipping.param, uninterrupted.param, "the step after it is the uninterrupted run's second step");
    skipping
}

#[test]
fn a_skipped_first_fp16_step_leaves_sgd_unstarted_on_every_device() {
    let cpu = a_skipped_first_step_leaves_sgd_unstarted_on(CpuBackend::new);
    let gpu = a_skipped_first_step_leaves_sgd_unstarted_on(gpu);
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    assert_close("the GPU's momentum buffer against the CPU's", momentum_buffer(&gpu.states[2]), &widen(momentum_buffer(&cpu.states[2])), 1e-6, 1e-4);
    assert_close("the GPU's parameters against the CPU's", &gpu.param, &widen(&cpu.param), 1e-6, 1e-4);
}
