//! Data parallelism's gradient buckets inside a training step (`Executor::average_gradients_over`,
//! exec/grad_average.rs): with a group of one process the mean over the ranks is each gradient
//! itself, so a bucketed step must give exactly the plain step's gradients, with every gradient
//! handed over by backward, and small buckets must start while backward still runs. Two real
//! ranks are tests/train/train_data_parallel.rs.

use ferronet_test_support::gpu::gpu;
use ferronet_test_support::graphs::{batch, labels, op_zoo, residual_block};

use ferronet::cpu::CpuBackend;
use ferronet::dist::{BucketCounts, ProcessGroup};
use ferronet::element::Element;
use ferronet::exec::{Batch, Executor, StepOptions};
use ferronet::graph::Graph;
use ferronet::ops::Backend;
use std::sync::Arc;

const N: usize = 3;

/// Gradients by parameter id.
type Gradients<E> = Vec<(usize, Vec<E>)>;

/// A training step's gradients, by parameter id.
fn gradients<E: Element, B: Backend<E>>(ex: &mut Executor<E, B>, graph: &Graph) -> Gradients<E> {
    let x: Vec<E> = batch(graph, N, 4).iter().map(|&v| E::from_f64(v)).collect();
    ex.train_step(Batch::Host(&x), &labels(N, graph.num_classes()), &StepOptions { dropout_seed: Some(3), ..StepOptions::default() })
        .unwrap();
    let ids: Vec<usize> = ex.grads().ids().collect();
    ids.into_iter().map(|id| (id, ex.grad_host(id).unwrap().unwrap())).collect()
}

/// The plain step's gradients and a bucketed step's with `bucket_bytes`, and its bucket counts.
fn plain_and_bucketed<E: Element, B: Backend<E>>(
    backend: impl Fn() -> B,
    graph: &Graph,
    bucket_bytes: usize,
) -> (Gradients<E>, Gradients<E>, BucketCounts) {
    let mut plain = Executor::<E, B>::new(backend(), graph.clone(), 7).unwrap();
    assert_eq!(plain.last_bucket_counts(), None);
    let want = gradients(&mut plain, graph);
    let mut bucketed = Executor::<E, B>::new(backend(), graph.clone(), 7).unwrap();
    bucketed.average_gradients_over(Arc::new(ProcessGroup::alone()), None, bucket_bytes);
    let got = gradients(&mut bucketed, graph);
    (want, got, bucketed.last_bucket_counts().expect("a bucketed step counts its buckets"))
}

#[test]
fn small_buckets_start_during_backward_and_change_no_gradient() {
    for graph in [residual_block(), op_zoo()] {
        let (want, got, counts) = plain_and_bucketed::<f64, _>(CpuBackend::new, &graph, 64);
        assert_eq!(got, want, "{}", graph.name);
        assert_eq!(counts.gradients, want.len(), "{}: every gradient went into a bucket", graph.name);
        assert!(counts.started_during_backward > 1, "{}: {counts:?}", graph.name);
    }
}

#[test]
fn one_default_bucket_holds_a_small_model() {
    let graph = residual_block();
    let (want, got, counts) = plain_and_bucketed::<f64, _>(CpuBackend::new, &graph, 25_000_000);
    assert_eq!(got, want);
    assert_eq!(counts, BucketCounts { gradients: want.len(), buckets: 1, started_during_backward: 0 });
}

#[test]
fn gpu_gradients_go_through_the_host_buckets_unchanged() {
    let graph = residual_block();
    let (want, got, counts) = plain_and_bucketed::<f32, _>(gpu, &graph, 64);
    assert_eq!(got, want);
    assert!(counts.started_during_backward > 1, "{counts:?}");
}
