//! Synchronised batch norm's device arithmetic (`--sync-bn`, ops/norm/sync.rs): with a group of
//! one process the global batch is the local one, so a training step must equal the ordinary
//! batch norm's (output, every gradient, running statistics) on the CPU in f64 and on the GPU
//! backend (the simulator) against the f64 CPU reference. Two real ranks are
//! tests/train/train_data_parallel.rs.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::gpu;
use ferronet_test_support::graphs::{batch, labels, residual_block};

use ferronet::cpu::CpuBackend;
use ferronet::dist::ProcessGroup;
use ferronet::element::Element;
use ferronet::exec::{Batch, Executor, StepOptions};
use ferronet::ops::Backend;
use std::sync::Arc;

const N: usize = 3;

/// A training step, then every parameter's gradient and every parameter and buffer (running
/// statistics included), by name.
fn step<E: Element, B: Backend<E>>(ex: &mut Executor<E, B>, x: &[f64], y: &[u32]) -> Vec<(String, Vec<f64>)> {
    let opts = StepOptions { input_grad: true, ..StepOptions::default() };
    let x: Vec<E> = x.iter().map(|&v| E::from_f64(v)).collect();
    let out = ex.train_step_readback(Batch::Host(&x), y, &opts).unwrap();
    let as_f64 = |v: Vec<E>| v.into_iter().map(Element::to_f64).collect::<Vec<f64>>();
    let mut figures = vec![("logits".to_string(), as_f64(out.logits)), ("input grad".into(), as_f64(ex.input_grad_host().unwrap().unwrap()))];
    let names: Vec<String> = ex.params().iter().map(|(_, p)| p.spec.name.clone()).collect();
    for name in names {
        if let Some(grad) = ex.grad_host_by_name(&name).unwrap() {
            figures.push((format!("grad {name}"), as_f64(grad)));
        }
        figures.push((name.clone(), as_f64(ex.param_host(&name).unwrap())));
    }
    figures
}

#[test]
fn sync_bn_alone_equals_batch_norm_on_cpu_and_gpu() {
    let graph = residual_block();
    let (x, y) = (batch(&graph, N, 4), labels(N, graph.num_classes()));
    let alone = Arc::new(ProcessGroup::alone());
    let mut plain = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 7).unwrap();
    let want = step(&mut plain, &x, &y);
    let mut synced = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 7).unwrap();
    synced.synchronise_batch_norms(alone.clone());
    for ((name, got), (_, want)) in step(&mut synced, &x, &y).iter().zip(&want) {
        assert_close(&format!("cpu {name}"), got, want, 1e-10, 1e-9);
    }
    let mut device = Executor::<f32, _>::new(gpu(), graph, 7).unwrap();
    device.synchronise_batch_norms(alone);
    for ((name, got), (_, want)) in step(&mut device, &x, &y).iter().zip(&want) {
        assert_close(&format!("gpu {name}"), got, want, 1e-5, 1e-3);
    }
}
