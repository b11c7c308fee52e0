//! CUDA graphs: the simulator records a captured stream and replays it in order, refusing
//! anything that would make the host wait while capturing; the caching allocator keeps a
//! graph's blocks for it; and a training loop replaying its captured step trains exactly as
//! the steps queued one by one, with one graph launch and no kernel launch from the host.

use ferronet_test_support::graphs::residual_block;

use ferronet::bench::model::{ModelBenchOptions, TrainLoop};
use ferronet::device::CudaGraphMode;
use ferronet::cpu::CpuBackend;
use ferronet::device::driver::Driver;
use ferronet::gpu::accounting::Accounting;
use ferronet::gpu::allocator::CachingAllocator;
use ferronet::gpu::GpuBackend;
use ferronet::graph::{Graph, GraphBuilder};
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

fn sim() -> GpuBackend {
    GpuBackend::new(Arc::new(SimDriver::new(SimOptions::default())))
}

fn read(driver: &dyn Driver, ptr: ferronet::device::driver::DevPtr, bytes: usize) -> Vec<u8> {
    let mut out = vec![0; bytes];
    driver.copy_dtoh(&mut out, ptr).unwrap();
    out
}

#[test]
fn a_captured_stream_runs_only_when_its_graph_is_launched() {
    let driver = SimDriver::new(SimOptions::default());
    let (a, b) = (driver.alloc(16).unwrap(), driver.alloc(16).unwrap());
    driver.memset(a, 0, 16).unwrap();
    driver.memset(b, 0, 16).unwrap();
    driver.begin_capture().unwrap();
    driver.memset(a, 7, 16).unwrap();
    driver.copy_dtod(b, a, 8).unwrap();
    let waits = [driver.synchronize().err(), driver.copy_dtoh(&mut [0; 4], a).err()];
    for refused in waits {
        assert!(refused.is_some_and(|e| e.to_string().contains("while a graph is being captured")));
    }
    let graph = driver.end_capture().unwrap();
    assert_eq!(read(&driver, a, 16), [0; 16], "capturing does not run the work");
    driver.launch_graph(graph).unwrap();
    assert_eq!(read(&driver, a, 16), [7; 16]);
    assert_eq!(read(&driver, b, 16), [[7; 8], [0; 8]].concat(), "recorded in order: the copy reads the memset");
    // Each launch runs the work again.
    driver.memset(a, 1, 16).unwrap();
    driver.launch_graph(graph).unwrap();
    assert_eq!(read(&driver, a, 16), [7; 16]);
    driver.destroy_graph(graph);
    assert!(driver.launch_graph(graph).is_err_and(|e| e.to_string().contains("unknown or destroyed graph")));
}

#[test]
fn a_graph_keeps_the_blocks_its_capture_used() {
    let driver: Arc<dyn Driver> = Arc::new(SimDriver::new(SimOptions::default()));
    let allocator = CachingAllocator::new(driver.clone(), Arc::new(Accounting::default()));
    let pool = allocator.begin_capture().unwrap();
    let captured = allocator.acquire(1000).unwrap();
    allocator.release(captured, 1000);
    assert_eq!(allocator.acquire(1000).unwrap(), captured, "the capture reuses its own blocks");
    allocator.release(captured, 1000);
    allocator.end_capture().unwrap();
    let outside = allocator.acquire(1000).unwrap();
    assert_ne!(outside, captured, "work outside the graph never gets a block a replay writes");
    allocator.release(outside, 1000);
    allocator.release_graph_pool(pool);
    let a = allocator.acquire(1000).unwrap();
    let b = allocator.acquire(1000).unwrap();
    assert!([a, b].contains(&captured), "a dropped graph's blocks return to the general cache");
}

fn options(cuda_graph: CudaGraphMode) -> ModelBenchOptions {
    ModelBenchOptions { batch: 2, steps: 1, warmup: 1, lr: 0.05, momentum: 0.9, seed: 11, cuda_graph, fusion: true, layout: Default::default(), precision: Default::default() }
}

/// Every parameter of `graph` after `steps` steps, and what the last step sent to the driver.
fn train_graph(graph: Graph, cuda_graph: CudaGraphMode, steps: usize) -> (Vec<Vec<f32>>, ferronet::device::DeviceCounters) {
    let mut train = TrainLoop::new(sim(), graph, 2, &options(cuda_graph)).unwrap();
    let mut last = None;
    for _ in 0..steps {
        last = Some(train.step().unwrap().work);
    }
    assert_eq!(train.replays_graph(), cuda_graph == CudaGraphMode::On);
    let ex = train.executor();
    let params = ex.params().iter().map(|(_, p)| ex.param_host(&p.spec.name).unwrap()).collect();
    (params, last.unwrap())
}

fn train(cuda_graph: CudaGraphMode, steps: usize) -> (Vec<Vec<f32>>, ferronet::device::DeviceCounters) {
    train_graph(residual_block(), cuda_graph, steps)
}

#[test]
fn replaying_the_captured_step_trains_bit_identically_to_queued_steps() {
    let (eager, eager_step) = train(CudaGraphMode::Off, 4);
    let (replayed, graph_step) = train(CudaGraphMode::On, 4);
    assert!(eager_step.kernel_launches > 0 && eager_step.graph_launches == 0, "{eager_step:?}");
    assert_eq!((graph_step.graph_launches, graph_step.kernel_launches, graph_step.memsets, graph_step.h2d_copies), (1, 0, 0, 0), "{graph_step:?}");
    assert_eq!((graph_step.allocations, graph_step.frees, graph_step.host_syncs), (0, 0, 0), "{graph_step:?}");
    assert_eq!(eager.len(), replayed.len());
    for (e, r) in eager.iter().zip(&replayed) {
        let same = e.iter().zip(r).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "a parameter differs between queued and replayed steps");
    }
    let (first, _) = train(CudaGraphMode::Off, 1);
    assert_ne!(first, eager, "the replayed steps did train");
}

fn with_dropout() -> Graph {
    let mut b = GraphBuilder::new("dropout_net", &[4, 1, 1]);
    let flat = b.flatten("flatten", b.input());
    let dropped = b.dropout("drop", flat, 0.5).unwrap();
    let fc = b.linear("fc", dropped, 3, true).unwrap();
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}

#[test]
fn graphs_need_a_gpu() {
    let err = TrainLoop::new(CpuBackend::new(), residual_block(), 2, &options(CudaGraphMode::On)).err();
    assert!(err.map(|e| e.to_string()).unwrap_or_default().contains("--cuda-graph on: it needs a GPU device"));
}

/// Each step's dropout seed is read from the device, written before the step: a replayed
/// graph draws the same fresh masks as queued steps, not the captured step's mask again.
#[test]
fn a_replayed_step_with_dropout_draws_a_fresh_mask() {
    let (eager, _) = train_graph(with_dropout(), CudaGraphMode::Off, 4);
    let (replayed, graph_step) = train_graph(with_dropout(), CudaGraphMode::On, 4);
    assert_eq!((graph_step.graph_launches, graph_step.kernel_launches), (1, 0), "{graph_step:?}");
    for (e, r) in eager.iter().zip(&replayed) {
        assert!(e.iter().zip(r).all(|(a, b)| a.to_bits() == b.to_bits()), "a parameter differs between queued and replayed steps");
    }
}

/// What a trainer-like run ends with: every parameter, the generator's state, the graph
/// launches, and the optimiser's step counts.
type TrainerEnd = (Vec<Vec<f32>>, [u64; 4], usize, Vec<(String, u64)>);

const NESTEROV: ferronet::exec::OptimizerKind = ferronet::exec::OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true };

/// Fills `resident` with the batch `x`, `y` and a fresh dropout seed, then runs a training step
/// and update on it under `replay`, as the trainer's full-size steps go; returns what the step
/// itself (not the filling) sent to the driver.
pub(crate) fn resident_step<B: ferronet::ops::Backend<f32>>(
    ex: &mut ferronet::exec::Executor<f32, B>,
    optimizer: &mut ferronet::exec::Optimizer<f32, B>,
    replay: &mut ferronet::exec::StepReplay,
    resident: &mut ferronet::exec::ResidentBatch<f32, B>,
    x: &[f32],
    y: &[u32],
) -> ferronet::device::DeviceCounters {
    ex.fill_resident_batch(resident, x, y).unwrap();
    ex.queue_step_seed(resident, None).unwrap();
    let before = ex.backend().counters();
    let resident = &*resident;
    replay
        .step(ex, optimizer, |ex, optimizer| {
            ex.train_step_resident(resident, &ferronet::exec::StepOptions::default())?;
            ex.optimizer_step(optimizer)
        })
        .unwrap();
    ex.backend().counters().since(&before)
}

/// Five steps over resident batches of 4, then a partial batch of 3 queued from the host, the
/// learning rate changed after the third step: the trainer's use of `StepReplay`.
fn trainer_like(mode: CudaGraphMode, kind: ferronet::exec::OptimizerKind) -> TrainerEnd {
    use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, StepOptions, StepReplay};
    use ferronet_test_support::graphs::{batch, labels};
    let graph = residual_block();
    let classes = graph.num_classes();
    let mut ex = Executor::<f32, _>::new(sim(), graph.clone(), 5).unwrap();
    let mut optimizer = Optimizer::new(OptimizerConfig {
        kind,
        lr: 0.05,
        weight_decay: 1e-3,
        decay_weights_only: true,
        clip_grad_norm: Some(1.0),
    })
    .unwrap();
    let mut replay = StepReplay::new(mode);
    let mut resident = ex.resident_batch(4).unwrap();
    for step in 0..5u64 {
        if step == 3 {
            optimizer.set_lr(0.02).unwrap();
        }
        let x: Vec<f32> = batch(&graph, 4, 100 + step).iter().map(|&v| v as f32).collect();
        let y: Vec<u32> = labels(4, classes).iter().map(|&l| (l + step as u32) % classes as u32).collect();
        resident_step(&mut ex, &mut optimizer, &mut replay, &mut resident, &x, &y);
    }
    let x: Vec<f32> = batch(&graph, 3, 7).iter().map(|&v| v as f32).collect();
    ex.train_step(Batch::HostF32(&x), &labels(3, classes), &StepOptions::default()).unwrap();
    ex.optimizer_step(&mut optimizer).unwrap();
    let params = ex.params().iter().map(|(_, p)| ex.param_host(&p.spec.name).unwrap()).collect();
    let steps = optimizer.export_state(ex.backend(), ex.params()).unwrap().steps;
    (params, ex.rng_state(), replay.launches(), steps)
}

fn replays_exactly_as_queued_steps(kind: ferronet::exec::OptimizerKind) {
    let (queued, queued_rng, none, queued_steps) = trainer_like(CudaGraphMode::Off, kind);
    let (replayed, replayed_rng, launches, replayed_steps) = trainer_like(CudaGraphMode::On, kind);
    assert_eq!(none, 0);
    // Step 1 is queued; 2 and 3 launch the first graph, 4 and 5 one captured at the new rate.
    assert_eq!(launches, 4);
    assert_eq!(queued_rng, replayed_rng, "replayed steps draw the generator as queued ones");
    assert_eq!(queued_steps, replayed_steps, "replayed steps are counted as queued ones");
    assert!(queued_steps.iter().all(|(_, s)| *s == 6), "{queued_steps:?}");
    for (q, r) in queued.iter().zip(&replayed) {
        assert!(q.iter().zip(r).all(|(a, b)| a.to_bits() == b.to_bits()), "a parameter differs");
    }
}

#[test]
fn resident_batches_replay_through_a_rate_change_exactly_as_queued_steps() {
    replays_exactly_as_queued_steps(NESTEROV);
}

/// Adam's step numbers advance on the device, so replayed steps use the next bias corrections.
#[test]
fn adam_replays_exactly_as_queued_steps() {
    replays_exactly_as_queued_steps(ferronet::exec::OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: true });
}

/// SGD (momentum 0.9, dampening 0.5, clipping) whose first step, queued from the host, is
/// skipped for a non-finite gradient norm (an infinite input), then three steps, captured and
/// replayed under `mode`: the trainable parameters, and the optimiser's state. With
/// `read_back`, the later steps read the gradient norm back, which a capture refuses.
fn sgd_after_a_skipped_first_step(mode: CudaGraphMode, read_back: bool) -> (Vec<Vec<f32>>, ferronet::exec::OptimizerState<f32>, usize) {
    use ferronet::exec::{Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions, StepReplay};
    use ferronet_test_support::graphs::{batch, labels};
    let graph = residual_block();
    let mut ex = Executor::<f32, _>::new(sim(), graph.clone(), 5).unwrap();
    let kind = OptimizerKind::Sgd { momentum: 0.9, dampening: 0.5, nesterov: false };
    let config = OptimizerConfig { kind, lr: 0.05, weight_decay: 1e-3, decay_weights_only: true, clip_grad_norm: Some(1.0) };
    let mut optimizer = Optimizer::new(config).unwrap();
    let mut replay = StepReplay::new(mode);
    let mut resident = ex.resident_batch(4).unwrap();
    for step in 0..4u64 {
        let mut x: Vec<f32> = batch(&graph, 4, 100 + step).iter().map(|&v| v as f32).collect();
        if step == 0 {
            x[0] = f32::INFINITY;
        }
        ex.fill_resident_batch(&mut resident, &x, &labels(4, graph.num_classes())).unwrap();
        ex.queue_step_seed(&mut resident, None).unwrap();
        let resident = &resident;
        replay
            .step(&mut ex, &mut optimizer, |ex, optimizer| {
                ex.train_step_resident(resident, &StepOptions::default())?;
                ex.optimizer_step(optimizer)?;
                if read_back && step > 0 {
                    optimizer.last_grad_norm(ex.backend())?;
                }
                Ok(())
            })
            .unwrap();
    }
    assert_eq!(optimizer.nonfinite_grad_steps(ex.backend()).unwrap(), 1);
    let params = ex.params().iter().filter(|(_, p)| p.spec.trainable).map(|(_, p)| ex.param_host(&p.spec.name).unwrap()).collect();
    (params, optimizer.export_state(ex.backend(), ex.params()).unwrap(), replay.launches())
}

/// SGD's first momentum step is the first step taken, read on the device: a step captured after
/// a skipped first step and replayed trains exactly as the steps queued one by one (which
/// exec_optim and exec_precision check against PyTorch's rule), and counts only the steps taken.
#[test]
fn sgd_replays_after_a_skipped_first_step_exactly_as_queued_steps() {
    let (queued, queued_state, none) = sgd_after_a_skipped_first_step(CudaGraphMode::Off, false);
    let (replayed, replayed_state, launches) = sgd_after_a_skipped_first_step(CudaGraphMode::On, false);
    assert_eq!((none, launches), (0, 3), "step 1 is queued, the other three launch the graph");
    assert!(queued_state.steps.iter().all(|(_, s)| *s == 3), "{:?}", queued_state.steps);
    assert!(queued_state == replayed_state, "the replayed steps' momentum buffers or counts differ");
    for (q, r) in queued.iter().zip(&replayed) {
        assert!(q.iter().zip(r).all(|(a, b)| a.to_bits() == b.to_bits()), "a parameter differs");
    }
}

/// A capture that fails (`auto`) after a skipped step is undone from the counts of the steps
/// taken: the step queued instead is still SGD's first, as in a run that never tried a graph.
#[test]
fn a_failed_capture_after_a_skipped_first_step_trains_as_queued_steps() {
    let (queued, queued_state, _) = sgd_after_a_skipped_first_step(CudaGraphMode::Off, true);
    let (fallen_back, fallen_back_state, launches) = sgd_after_a_skipped_first_step(CudaGraphMode::Auto, true);
    assert_eq!(launches, 0, "the capture fails on the read-back");
    assert!(queued_state == fallen_back_state, "{:?} vs {:?}", queued_state.steps, fallen_back_state.steps);
    assert_eq!(queued, fallen_back);
}
