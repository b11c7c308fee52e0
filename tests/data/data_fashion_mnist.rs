//! The real Fashion-MNIST files (`apt-get install dataset-fashion-mnist` puts them in
//! /usr/share/datasets/fashion-mnist; CI installs them). Without them the test fails, naming the
//! package.

use ferronet::data::{load, DatasetKind, DatasetOptions};
use ferronet_test_support::fashion_mnist_dir;

#[test]
fn real_fashion_mnist_files() {
    fashion_mnist_dir();
    let opts = DatasetOptions { val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::FashionMnist) };
    let data = load(&opts).unwrap();
    assert_eq!((data.train.len(), data.test.as_ref().unwrap().len()), (60_000, 10_000));
    assert_eq!((data.train.channels, data.train.height, data.train.width), (1, 28, 28));
    for class in 0..10 {
        assert_eq!(data.train.labels.iter().filter(|&&l| l == class).count(), 6_000);
    }
    assert_eq!(data.classes[9], "Ankle boot");
    // The well-known statistics of the training images.
    assert!((data.mean[0] - 0.2860).abs() < 1e-3, "mean {}", data.mean[0]);
    assert!((data.std[0] - 0.3530).abs() < 1e-3, "std {}", data.std[0]);
    let split = load(&DatasetOptions { val_fraction: 0.1, seed: 3, ..opts }).unwrap();
    assert_eq!((split.train.len(), split.val.len()), (54_000, 6_000));
}
