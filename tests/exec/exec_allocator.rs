//! The caching device allocator under the executor: steady-state training steps reach the driver
//! for no allocation and no free, cached bytes are reported apart from live ones, out of memory
//! empties the cache and retries once, and a reused block is still checked by the simulator's
//! sanitizer as a buffer of its own size.

use ferronet_test_support::graphs::{batch, labels, residual_block};

use ferronet::device::{Device, DeviceCounters};
use ferronet::error::Error;
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use ferronet::gpu::GpuBackend;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

fn sim(capacity_bytes: usize) -> GpuBackend {
    GpuBackend::new(Arc::new(SimDriver::new(SimOptions { capacity_bytes, ..SimOptions::default() })))
}

#[test]
fn steady_training_steps_make_no_driver_allocation_or_free() {
    let graph = residual_block();
    let (n, classes) = (2, graph.num_classes());
    let x: Vec<f32> = batch(&graph, n, 5).iter().map(|&v| v as f32).collect();
    let y = labels(n, classes);
    let mut ex = Executor::<f32, _>::new(sim(1 << 30), graph, 3).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false },
        lr: 0.01,
        weight_decay: 0.0,
        decay_weights_only: true,
        clip_grad_norm: None,
    })
    .unwrap();
    let mut step = |ex: &mut Executor<f32, GpuBackend>| -> DeviceCounters {
        let before = ex.backend().counters();
        ex.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
        ex.optimizer_step(&mut opt).unwrap();
        ex.backend().counters().since(&before)
    };
    let first = step(&mut ex);
    assert!(first.allocations > 0 && first.kernel_launches > 0, "{first:?}");
    step(&mut ex);
    for _ in 0..2 {
        let steady = step(&mut ex);
        assert_eq!((steady.allocations, steady.frees), (0, 0), "{steady:?}");
        assert!(steady.kernel_launches > 0 && steady.h2d_bytes > 0, "{steady:?}");
    }
    let memory = ex.backend().memory();
    assert!(memory.cached_bytes > 0, "the step's temporaries stay cached: {memory:?}");
    assert!(memory.peak_reserved_bytes >= memory.current_bytes + memory.cached_bytes, "{memory:?}");
    // Cached blocks count as free memory, and emptying the cache returns them to the driver.
    let free = ex.backend().free_memory().unwrap().unwrap();
    let frees = ex.backend().counters().frees;
    ex.backend().empty_cache().unwrap();
    assert_eq!(ex.backend().memory().cached_bytes, 0);
    assert!(ex.backend().counters().frees > frees);
    assert_eq!(ex.backend().free_memory().unwrap().unwrap(), free);
}

#[test]
fn out_of_memory_empties_the_cache_and_retries_once_then_fails_as_before() {
    let gpu = sim(1 << 20);
    let cached: Vec<_> = (0..3).map(|_| gpu.alloc::<f32>(75 << 10).unwrap()).collect();
    drop(cached);
    assert_eq!(gpu.memory().cached_bytes, 3 * (300 << 10));
    assert_eq!(gpu.memory().current_bytes, 0);
    // 600 KiB is a size nothing cached serves and the driver cannot give next to the cache.
    let before = gpu.counters();
    let big = gpu.alloc::<f32>(150 << 10).unwrap();
    let retried = gpu.counters().since(&before);
    assert_eq!((retried.allocations, retried.frees, retried.synchronizes), (2, 3, 1), "{retried:?}");
    assert_eq!(gpu.memory().cached_bytes, 0);
    drop(big);
    // More than the device holds fails with the driver's own message after the retry.
    let err = gpu.alloc::<f32>(1 << 20).err().expect("4 MiB do not fit in 1 MiB");
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("out of device memory: requested 4 MiB") && text.contains("FERRONET_SIM_MEMORY_MB"), "{text}");
}

#[test]
fn a_reused_block_is_checked_as_a_buffer_of_its_own_size() {
    let gpu = sim(1 << 20);
    let first = gpu.upload(&[1.0f32; 100]).unwrap();
    let block = first.ptr();
    drop(first);
    // 256 bytes round to the same 512-byte block as 400 did.
    let reused = gpu.alloc::<f32>(64).unwrap();
    assert_eq!(reused.ptr(), block);
    let mut host = [0u8; 400];
    let err = gpu.driver().copy_dtoh(&mut host, reused.ptr()).unwrap_err().to_string();
    assert!(err.contains("runs past the end of allocation") && err.contains("(256 bytes"), "{err}");
}
