//! Impossible requests fail with one clear line before any work: nothing is trained and no run
//! directory is created.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::train::{cpu_config, shared_training};

use ferronet::train::config::DatasetChoice;
use ferronet::train::trainer::train;

fn one_line_error(config: ferronet::train::config::TrainConfig, needle: &str) {
    let out = config.out.clone().unwrap();
    let err = train(config).expect_err("must fail").to_string();
    assert!(err.contains(needle) && !err.contains('\n'), "expected `{needle}` in: {err}");
    assert!(!out.exists(), "no run directory for a refused run ({err})");
}

#[test]
fn impossible_runs_are_refused_before_any_work() {
    let _training = shared_training();
    let root = scratch_dir("errors");
    let out = root.join("run");

    let mut c = cpu_config(out.clone());
    c.model = "alexnet".into();
    one_line_error(c, "alexnet cannot take a 1x28x28 input");

    let mut c = cpu_config(out.clone());
    c.model = "lenet9000".into();
    one_line_error(c, "known models: small_cnn");

    let mut c = cpu_config(out.clone());
    c.batch_size = 0;
    one_line_error(c, "--batch-size");

    // An unknown device cannot reach train(): the flag's type refuses it, in one line.
    let err = "tpu".parse::<ferronet::device::DeviceRequest>().expect_err("tpu is no device").to_string();
    assert!(err.contains("unknown device `tpu`") && !err.contains('\n'), "{err}");

    let mut c = cpu_config(out.clone());
    c.data.dataset = DatasetChoice::Cifar10;
    c.data.input = Some([1, 32, 32]);
    one_line_error(c, "3 channels");

    let mut c = cpu_config(out.clone());
    c.resume = true;
    one_line_error(c, "no checkpoint");

    let mut c = cpu_config(out.clone());
    c.freeze_all_but = Some(7);
    one_line_error(c, "only 6 layers");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_second_run_in_the_same_directory_is_refused() {
    let _training = shared_training();
    let root = scratch_dir("second-run");
    let out = root.join("run");
    let mut c = cpu_config(out.clone());
    c.data.limit = Some(64);
    c.epochs = 1;
    train(c.clone()).unwrap();
    let err = train(c).expect_err("the directory holds a run").to_string();
    assert!(err.contains("already holds a run") && err.contains("--resume"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
