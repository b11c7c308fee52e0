//! `--cuda-graph`: on the simulator a run whose full-size steps replay a captured CUDA graph
//! ends exactly where the same run queued from the host ends — history, confusion matrix,
//! weights, optimiser state and generator state — through a learning-rate change (the graph is
//! captured again) and a partial last batch (queued from the host); an fp16 run, its loss scale
//! living on the device, replays a graph per step likewise; runs a graph cannot replay
//! faithfully are refused under `on` (`auto` runs them without one: exec_graph).

use ferronet_test_support::mnist_files::write_mnist;
use ferronet_test_support::scratch_dir;
use ferronet_test_support::train::{cpu_config, deterministic, shared_training};

use ferronet::data::{load, DatasetKind, DatasetOptions};
use ferronet::device::CudaGraphMode;
use ferronet::precision::Precision;
use ferronet::train::history::parse_history_csv;
use ferronet::train::checkpoint;
use ferronet::train::config::{DatasetChoice, SchedulerChoice, TrainConfig};
use ferronet::train::trainer::{checkpoint_path, train};
use std::path::Path;

/// The training images of the small_cnn runs.
const TRAIN_IMAGES: usize = 56;

/// small_cnn without its dropout on `mnist_dir` (tiny_synthetic_mnist's, TRAIN_IMAGES), 2 epochs
/// of 3 full batches and a partial one, the learning rate halved after the first epoch.
fn config(out: &Path, mnist_dir: &Path, cuda_graph: CudaGraphMode) -> TrainConfig {
    let mut c = cpu_config(out.to_path_buf());
    c.device = "sim".parse().unwrap();
    c.data.dataset = DatasetChoice::Mnist;
    c.data.data_dir = Some(mnist_dir.to_path_buf());
    c.batch_size = 16;
    c.epochs = 2;
    c.dropout = Some(0.0);
    c.augment = true;
    c.scheduler = SchedulerChoice::Step;
    c.step_size = 1;
    c.gamma = 0.5;
    c.clip_grad_norm = Some(5.0);
    c.cuda_graph = cuda_graph;
    c
}


#[test]
#[ignore = "two runs of 16 small_cnn steps on the simulator take over a minute and a half; exec_graph checks the same steps quickly"]
fn replayed_steps_train_exactly_as_queued_steps() {
    let _training = shared_training();
    let root = scratch_dir("graph");
    tiny_synthetic_mnist(&root, TRAIN_IMAGES);
    let queued = train(config(&root.join("queued"), &root, CudaGraphMode::Off)).unwrap();
    let replayed = train(config(&root.join("replayed"), &root, CudaGraphMode::On)).unwrap();
    assert_eq!(queued.graph_replayed_steps, 0);
    // The very first step is queued from the host (it makes the optimiser's state), and so is
    // each epoch's partial last batch; the other full batches are launches of a graph captured
    // in each epoch (the rate changes).
    assert_eq!(replayed.graph_replayed_steps, 2 * (TRAIN_IMAGES / 16) - 1);
    assert_eq!(deterministic(&replayed.history), deterministic(&queued.history));
    assert_eq!(replayed.final_metrics.confusion, queued.final_metrics.confusion);
    let (mut a, meta_a) = checkpoint::load(&checkpoint_path(&root.join("queued"))).unwrap();
    let (mut b, meta_b) = checkpoint::load(&checkpoint_path(&root.join("replayed"))).unwrap();
    assert_eq!((meta_a.rng_state, meta_a.executor_rng_state), (meta_b.rng_state, meta_b.executor_rng_state), "replayed steps draw the generators as queued ones");
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let same_bits = x.data.len() == y.data.len() && x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same_bits, "{} differs between queued and replayed steps", x.name);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// One fp16 epoch of lenet5 on 3 full batches of 16 on the simulator under `cuda_graph`, over
/// `mnist_dir` (tiny_synthetic_mnist's).
fn fp16_config(out: &Path, mnist_dir: &Path, cuda_graph: CudaGraphMode) -> TrainConfig {
    let mut c = cpu_config(out.to_path_buf());
    c.device = "sim".parse().unwrap();
    c.model = "lenet5".into();
    c.data.dataset = DatasetChoice::Mnist;
    c.data.data_dir = Some(mnist_dir.to_path_buf());
    c.batch_size = 16;
    c.epochs = 1;
    c.precision = Some(Precision::Fp16);
    c.cuda_graph = cuda_graph;
    c
}

/// The synthetic set's first `train_images` training and 16 test images as MNIST files in `dir`:
/// a run validates on 16 images instead of the synthetic set's 1000 (minutes on the simulator).
fn tiny_synthetic_mnist(dir: &Path, train_images: usize) {
    let mut synthetic = load(&DatasetOptions { val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::Synthetic) }).unwrap();
    let mut test = synthetic.test.take().expect("the synthetic set has a test split");
    synthetic.train.truncate(train_images);
    test.truncate(16);
    write_mnist(dir, &synthetic.train, &test, false);
}

/// fp16 keeps its dynamic loss scale on the device, so `--cuda-graph on` replays its steps (no
/// host read per step): the run ends exactly where the same run queued from the host ends, and
/// history.csv's loss_scale and overflow_skips are the device's (PyTorch's 65536, halved per
/// overflow, no growth within 2000 steps), as the checkpoint's scaler is.
#[test]
fn an_fp16_run_replays_a_graph_per_step_with_its_loss_scale_on_the_device() {
    let _training = shared_training();
    let root = scratch_dir("graph_fp16");
    tiny_synthetic_mnist(&root, 48);
    let queued = train(fp16_config(&root.join("queued"), &root, CudaGraphMode::Off)).unwrap();
    let replayed = train(fp16_config(&root.join("replayed"), &root, CudaGraphMode::On)).unwrap();
    // Step 1 is queued from the host; steps 2 and 3 launch the graph captured at step 2.
    assert_eq!((queued.graph_replayed_steps, replayed.graph_replayed_steps), (0, 2));
    assert_eq!(deterministic(&replayed.history), deterministic(&queued.history));
    let history = parse_history_csv(&std::fs::read_to_string(root.join("replayed").join("history.csv")).unwrap()).unwrap();
    let r = &history[0];
    assert_eq!(r.loss_scale, 65536.0 * 0.5f64.powi(r.overflow_skips as i32), "{r:?}");
    let (_, meta) = checkpoint::load(&checkpoint_path(&root.join("replayed"))).unwrap();
    let (_, queued_meta) = checkpoint::load(&checkpoint_path(&root.join("queued"))).unwrap();
    let scaler = meta.loss_scaler.expect("an fp16 run checkpoints its loss scale");
    assert_eq!(Some(&scaler), queued_meta.loss_scaler.as_ref());
    assert_eq!((scaler.scale(), scaler.overflow_skips()), (r.loss_scale, r.overflow_skips));
    eprintln!("fp16 on the simulator, 3 steps: loss scale {}, {} overflow skips", r.loss_scale, r.overflow_skips);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn runs_a_graph_cannot_replay_are_refused_before_any_work() {
    let _training = shared_training();
    let root = scratch_dir("graph_refused");
    tiny_synthetic_mnist(&root, TRAIN_IMAGES);
    for (change, why) in [
        (&(|c: &mut TrainConfig| c.skip_nonfinite = true) as &dyn Fn(&mut TrainConfig), "--skip-nonfinite"),
        (&|c: &mut TrainConfig| c.device = "cpu".parse().unwrap(), "needs a GPU device"),
    ] {
        let mut c = config(&root.join("on"), &root, CudaGraphMode::On);
        change(&mut c);
        let err = train(c).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--cuda-graph on") && err.contains(why), "{why}: {err}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}
