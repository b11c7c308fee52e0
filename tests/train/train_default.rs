//! `ferronet train` with its defaults (small_cnn on the synthetic dataset) reaches high accuracy
//! quickly and writes every output; `eval` and `predict` on its checkpoint agree with it.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::train::{cpu_config, shared_training};

use ferronet::cli::eval::{eval, EvalArgs};
use ferronet::cli::predict::{predict, PredictArgs};
use ferronet::data::{self, DatasetKind, DatasetOptions};
use ferronet::train::checkpoint;
use ferronet::train::history::HISTORY_COLUMNS;
use ferronet::train::trainer::{checkpoint_path, train, TrainOutcome};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// The default run, trained once for all tests of this file.
fn default_run() -> &'static TrainOutcome {
    static RUN: OnceLock<TrainOutcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let _training = shared_training();
        let mut config = cpu_config(scratch_dir("default").join("run"));
        config.log_json = Some(config.out.clone().unwrap().with_file_name("epochs.jsonl"));
        let start = Instant::now();
        let outcome = train(config).unwrap();
        eprintln!("default run: {:.1} s, test top-1 {:.4}", start.elapsed().as_secs_f64(), outcome.final_metrics.top1);
        outcome
    })
}

#[test]
fn default_run_reaches_high_accuracy() {
    let run = default_run();
    assert_eq!(run.history.len(), 3);
    assert!(run.final_metrics.top1 >= 0.95, "test top-1 {}", run.final_metrics.top1);
    assert!(run.history.last().unwrap().val_top1 >= 0.95);
    assert!(run.best_epoch >= 1 && run.best_val_top1 >= run.history[0].val_top1);
}

#[test]
fn every_output_file_is_written_and_parses() {
    let run = default_run();
    let dir = &run.out_dir;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));

    let history = read("history.csv");
    let mut lines = history.lines();
    assert_eq!(lines.next().unwrap().split(',').collect::<Vec<_>>(), HISTORY_COLUMNS);
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1) as f64);
        // train_acc, then val_top1 .. val_macro_f1: fractions of 1.
        assert!([3, 5, 6, 7, 8, 9].iter().all(|&c| (0.0..=1.0).contains(&row[c])), "{row:?}");
    }

    let metrics: serde_json::Value = serde_json::from_str(&read("metrics.json")).unwrap();
    for field in ["val_top1", "val_top5", "val_loss", "macro_precision", "macro_recall", "macro_f1", "best_val_top1"] {
        let v = metrics[field].as_f64().unwrap_or_else(|| panic!("metrics.json lacks {field}"));
        assert!(v.is_finite() && v >= 0.0, "{field} = {v}");
    }
    assert!(metrics["val_top1"].as_f64().unwrap() <= 1.0);
    assert!(metrics["best_epoch"].as_u64().unwrap() >= 1);
    assert!(metrics["train_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(metrics["config"]["model"], "small_cnn");
    assert!(metrics["model_summary"]["trainable_params"].as_u64().unwrap() > 0);
    assert!(metrics["device"].as_str().unwrap().starts_with("cpu"));
    assert_eq!(metrics["confusion_matrix_normalised"].as_array().unwrap().len(), 10);

    let confusion = read("confusion.csv");
    let counts: u64 = confusion.lines().skip(1).flat_map(|l| l.split(',').skip(1).map(|v| v.parse::<u64>().unwrap())).sum();
    assert_eq!(counts as usize, run.final_metrics.samples);
    assert_eq!(confusion.lines().count(), 11);

    for svg in ["loss.svg", "accuracy.svg", "confusion.svg"] {
        let text = read(svg);
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{svg}");
    }
    let jsonl = std::fs::read_to_string(dir.with_file_name("epochs.jsonl")).unwrap();
    assert_eq!(jsonl.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).count(), 3);

    let (tensors, meta) = checkpoint::load(&checkpoint_path(dir)).unwrap();
    assert_eq!((meta.epochs_done, meta.class_names.len(), meta.input), (3, 10, [1, 28, 28]));
    assert_eq!(meta.mean.len(), 1);
    assert!(tensors.iter().any(|t| t.name == "conv1.weight"));
    assert!(tensors.iter().any(|t| t.name == "bn1.running_var"));
    assert!(!dir.join("train.lock").exists(), "the lock is released");
}

/// With its batch norms folded into the convolutions (the default) and as trained.
#[test]
fn eval_on_the_checkpoint_reproduces_the_final_metrics() {
    let run = default_run();
    for no_fusion in [false, true] {
        let args = EvalArgs {
            checkpoint: Some(checkpoint_path(&run.out_dir)),
            weights: Default::default(),
            resize: Default::default(),
            dataset: None,
            data_dir: None,
            batch_size: 100,
            device: "cpu".parse().unwrap(),
            workers: 1,
            json: false,
            no_fusion,
            no_aux: false,
            layout: Default::default(),
            precision: Default::default(),
        };
        let out = eval(&args).unwrap();
        assert_eq!(out.evaluated_on, run.evaluated_on);
        assert_eq!(out.metrics.confusion, run.final_metrics.confusion, "no_fusion {no_fusion}");
        assert!((out.metrics.loss - run.final_metrics.loss).abs() < 1e-6, "no_fusion {no_fusion}");
    }
}

#[test]
fn predict_ranks_the_true_class_of_synthetic_images_first() {
    let run = default_run();
    let opts = DatasetOptions::new(DatasetKind::Synthetic);
    let test = data::load(&opts).unwrap().test.unwrap();
    let dir = scratch_dir("predict");
    let mut images: Vec<PathBuf> = vec![];
    for i in 0..4 {
        let path = dir.join(format!("image{i}.png"));
        image::GrayImage::from_raw(28, 28, test.image(i).to_vec()).unwrap().save(&path).unwrap();
        images.push(path);
    }
    let args = PredictArgs {
        checkpoint: Some(checkpoint_path(&run.out_dir)),
        weights: Default::default(),
        resize: Default::default(),
        images,
        top: 5,
        device: "cpu".parse().unwrap(),
        json: false,
        no_fusion: false,
        no_aux: false,
        layout: Default::default(),
    };
    let predictions = predict(args).unwrap();
    assert_eq!(predictions.len(), 4);
    let (_, meta) = checkpoint::load(&checkpoint_path(&run.out_dir)).unwrap();
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p.top.len(), 5);
        assert!(p.top.windows(2).all(|w| w[0].probability >= w[1].probability), "sorted: {p:?}");
        let total: f64 = p.top.iter().map(|c| c.probability).sum();
        assert!(total > 0.0 && total <= 1.0 + 1e-9, "{total}");
        assert_eq!(p.top[0].class, meta.class_names[test.labels[i] as usize], "image {i}: {p:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
