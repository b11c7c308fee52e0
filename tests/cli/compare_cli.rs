//! `ferronet compare`: a quick study on Fashion-MNIST writes the comparison (CSV, Markdown, a
//! self-contained HTML report with its charts); a study stopped by Ctrl-C and then killed resumes
//! without training a finished run again, its interrupted run continuing from its checkpoint;
//! bad study files are one-line errors.

use ferronet_test_support::cli_run::{ferronet_bin, run, single_error_line, spawn, wait_for_file};
use ferronet_test_support::{fashion_mnist_dir, scratch_dir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn compare(args: &[&str]) -> Command {
    let mut cmd = Command::new(ferronet_bin());
    cmd.arg("compare").args(args).args(["--device", "cpu", "--workers", "1"]).stdin(Stdio::null());
    cmd
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_quick_fashion_mnist_study_writes_the_comparison() {
    fashion_mnist_dir();
    let out = scratch_dir("compare-fmnist");
    let study = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/studies/fashion-mnist-small.toml");
    let done = run(compare(&[path_arg(&study), "--quick", "--limit", "300", "--epochs", "1", "--out", path_arg(&out)]));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    let models = ["small_cnn", "mobilenet_v2", "shufflenet_v2_x0_5"];
    for model in models {
        let dir = out.join("fashion-mnist/default").join(model);
        for file in ["history.csv", "metrics.json", "confusion.csv", "checkpoint.safetensors", "inference.json"] {
            assert!(dir.join(file).is_file(), "{} has {file}", dir.display());
        }
    }

    let csv = read(&out.join("comparison.csv"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for column in [
        "model", "parameters", "macs", "top1", "top5", "macro_precision", "macro_recall", "macro_f1", "best_epoch",
        "seconds_per_epoch", "train_images_per_second", "inference_ms_per_batch16", "inference_ms_per_image",
        "peak_memory_bytes", "device",
    ] {
        assert!(header.contains(&column), "comparison.csv has {column}: {header:?}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), models);
    let cell = |row: &[&str], column: &str| -> f64 {
        row[header.iter().position(|c| *c == column).unwrap()].parse().unwrap_or_else(|_| panic!("{column} is a number: {row:?}"))
    };
    // 300 images teach the small CNN well beyond chance (the batch-normalised models' running
    // statistics need more steps than that).
    assert!(cell(&rows[0], "top1") > 0.3, "{:?}", rows[0]);
    for row in &rows {
        assert_eq!(row.len(), header.len());
        assert!((0.0..=1.0).contains(&cell(row, "top1")) && cell(row, "top5") >= cell(row, "top1"), "{row:?}");
        for column in ["parameters", "macs", "inference_ms_per_batch16", "peak_memory_bytes", "train_images_per_second"] {
            assert!(cell(row, column) > 0.0, "{column}: {row:?}");
        }
        let per_image = cell(row, "inference_ms_per_image") * 16.0;
        assert!((per_image - cell(row, "inference_ms_per_batch16")).abs() < 1e-9 * per_image.max(1.0), "{row:?}");
    }

    let md = read(&out.join("comparison.md"));
    assert!(md.starts_with("# Study fashion-mnist-small (quick scale)"), "{md}");
    assert!(md.contains("| model | parameters | MACs | top-1 | top-5 | macro P | macro R | macro F1 | best epoch |"), "{md}");
    assert_eq!(md.lines().filter(|l| l.starts_with("| ")).count(), 2 + models.len(), "{md}");
    assert_eq!(String::from_utf8_lossy(&done.stdout).trim_end(), format!("{}comparison.csv, comparison.md and report.html in {}", md, out.display()).trim_end());

    let html = read(&out.join("report.html"));
    // Accuracy and loss curves, two scatter charts, a confusion matrix per run.
    assert_eq!(html.matches("<svg").count(), 4 + models.len(), "one <svg> per chart");
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    for title in ["Validation top-1 per epoch", "Validation loss per epoch", "Top-1 against parameters", "Top-1 against inference time"] {
        assert!(html.contains(title), "{title}");
    }
    assert!(models.iter().all(|m| html.contains(&format!("<td>{m}</td>"))));
    // Self-contained: no script, nothing loaded from elsewhere.
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("href=") && !html.contains("@import"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Sends SIGINT (Ctrl-C) to a child process.
fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) with a valid pid of our own child and a standard signal.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
}

#[test]
fn an_interrupted_study_resumes_without_training_a_finished_run_again() {
    let out = scratch_dir("compare-resume");
    let flags = [
        "--models", "small_cnn,shufflenet_v2_x0_5,small_cnn_twin", "--dataset", "synthetic", "--limit", "256", "--batch-size", "32",
        "--epochs", "1", "--out", path_arg(&out),
    ];
    // The third model is misspelt: nothing runs, in one line naming it.
    let refused = single_error_line(&run(compare(&flags)));
    assert!(refused.contains("unknown model `small_cnn_twin`"), "{refused}");
    assert!(!out.join("synthetic").exists(), "a study that cannot run starts nothing");
    let flags: Vec<&str> = flags.iter().map(|f| if *f == flags[1] { "small_cnn,shufflenet_v2_x0_5,mobilenet_v2" } else { f }).collect();
    let run_dir = |model: &str| out.join("synthetic/default").join(model);

    // Ctrl-C once the second run has started: it stops after a step, its checkpoint written.
    let mut first = spawn(compare(&flags));
    assert!(wait_for_file(&mut first, &run_dir("shufflenet_v2_x0_5").join("train.lock"), Duration::from_secs(300)));
    interrupt(&first);
    let stopped = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted in epoch 1 after step"), "{stderr}");
    assert!(run_dir("small_cnn").join("inference.json").is_file());
    assert!(run_dir("shufflenet_v2_x0_5").join("checkpoint.safetensors").is_file());
    assert!(!run_dir("shufflenet_v2_x0_5").join("metrics.json").exists());
    let finished = std::fs::read(run_dir("small_cnn").join("checkpoint.safetensors")).unwrap();

    // Killed outright once the third run has started.
    let mut second = spawn(compare(&flags));
    assert!(wait_for_file(&mut second, &run_dir("mobilenet_v2").join("train.lock"), Duration::from_secs(300)));
    second.kill().unwrap();
    let killed = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(stderr.contains("compare [1/3] small_cnn (synthetic, default): trained already"), "{stderr}");
    assert!(stderr.contains("compare [2/3] shufflenet_v2_x0_5 (synthetic, default): resuming"), "{stderr}");
    assert!(stderr.contains("resuming") && stderr.contains("in epoch 1 after step"), "the trainer continued inside the epoch: {stderr}");

    let last = run(compare(&flags));
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    for model in ["small_cnn", "shufflenet_v2_x0_5"] {
        assert!(stderr.contains(&format!("{model} (synthetic, default): trained already")), "{stderr}");
    }
    assert!(stderr.contains("compare [3/3] mobilenet_v2 (synthetic, default): training in"), "a killed run without a checkpoint starts again: {stderr}");
    assert_eq!(std::fs::read(run_dir("small_cnn").join("checkpoint.safetensors")).unwrap(), finished, "the finished run was not trained again");
    let csv = read(&out.join("comparison.csv"));
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // The same directory with other flags is refused, naming them.
    let other: Vec<&str> = flags.iter().map(|f| if *f == "256" { "128" } else { f }).collect();
    let refused = single_error_line(&run(compare(&other)));
    assert!(refused.contains("with other flags (--limit 256 there, 128 in the study)"), "{refused}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_study_files_are_one_line_errors() {
    let dir = scratch_dir("compare-bad");
    let cases: &[(&str, &str)] = &[
        ("models = [\"small_cnn\"\n[train\n", "not a study file (line 2, column"),
        ("modles = [\"small_cnn\"]\n", "unknown field `modles`"),
        ("name = \"x\"\n", "missing field `models`"),
        ("models = []\n", "`models` is empty"),
        ("models = [\"small_cnn\"]\n[[recipes]]\nlabel = \"a\"\nlearning-rate = 0.1\n", "recipes entry 1: `learning-rate` is not a flag of `ferronet train`"),
        ("models = [\"small_cnn\"]\n[[recipes]]\nlr = 0.1\n", "recipes entry 1: a recipe needs `label = \"NAME\"`"),
        ("models = [\"small_cnn\"]\n[train]\nlr = \"fast\"\n", "invalid value 'fast' for '--lr <LR>'"),
        ("models = [\"small_cnn\"]\n[train]\naugment = 1\n", "[train]: `augment` is a switch: true or false"),
        ("models = [\"small_cnn\"]\n[train]\nout = \"elsewhere\"\n", "[train]: `out` is the study's own"),
        ("models = [\"small_cnn\"]\n[train]\nmodel = \"resnet18\"\n", "`model` belongs in `models`"),
        ("models = [\"lenet\"]\n", "unknown model `lenet`"),
        ("models = [\"small_cnn\", \"small_cnn\"]\n", "two runs are both small_cnn on synthetic with recipe default"),
        ("models = [{ model = \"small_cnn\", label = \"a/b\" }]\n", "the model label `a/b` names a directory"),
        ("models = [\"small_cnn\"]\n[train]\ndataset = \"cifar10\"\ndata-dir = \"/nonexistent/cifar\"\n", "the cifar10 data directory /nonexistent/cifar does not exist"),
        ("models = [{ model = \"small_cnn\", init-from = \"/nonexistent/w.pth\" }]\n", "--init-from /nonexistent/w.pth does not exist"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let err = single_error_line(&run(compare(&[path_arg(&file), "--out", path_arg(&dir.join("out"))])));
        assert!(err.contains(expected), "case {i}: expected {expected:?} in: {err}");
    }
    let quickless = dir.join("bad0.toml");
    std::fs::write(&quickless, "models = [\"small_cnn\"]\n").unwrap();
    let err = single_error_line(&run(compare(&[path_arg(&quickless), "--quick"])));
    assert!(err.contains("has no [quick] table"), "{err}");
    let err = single_error_line(&run(compare(&[path_arg(&dir.join("missing.toml"))])));
    assert!(err.contains("missing.toml"), "{err}");
    let err = single_error_line(&run(compare(&["--models", "small_cnn"])));
    assert!(err.contains("needs --out DIR"), "{err}");
    let err = single_error_line(&run(compare(&["--model", "small_cnn", "--out", "x"])));
    assert!(err.contains("compare takes --models"), "{err}");
    assert!(!dir.join("out").exists(), "no refused study wrote anything");
    let _ = std::fs::remove_dir_all(&dir);
}
