//! Damaged checkpoints never panic the reader, and a checkpoint whose tensors do not fit the
//! model names the tensor: missing, misshapen or of the wrong dtype.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::fuzz::{apply, config, corpus, mutation};

use ferronet::cpu::CpuBackend;
use ferronet::train::checkpoint::{self, NamedTensor};
use ferronet::train::pretrained::RunnableModel;
use ferronet::train::session::build_model;
use proptest::prelude::*;
use std::path::Path;

#[test]
fn the_seed_checkpoint_loads() {
    let dir = scratch_dir("ckpt-seed");
    let path = dir.join("checkpoint.safetensors");
    std::fs::write(&path, corpus("checkpoint/tiny.safetensors")).unwrap();
    let (mut tensors, meta) = checkpoint::load(&path).unwrap();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(meta.model, "small_cnn");
    assert_eq!(tensors[0], NamedTensor { name: "fc.bias".into(), shape: vec![3], data: vec![0.5, -1.0, 2.0] });
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn damaged_checkpoints_are_errors_not_panics(m in mutation()) {
        let dir = scratch_dir("ckpt");
        let path = dir.join("checkpoint.safetensors");
        let seed = corpus("checkpoint/tiny.safetensors");
        // Little-endian header length first: overwriting it with a huge value must not allocate.
        std::fs::write(&path, apply(&seed, &m)).unwrap();
        let loaded = checkpoint::load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        match loaded {
            Ok((tensors, _)) => {
                for t in tensors {
                    prop_assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.contains("checkpoint.safetensors"), "one line naming the file: {}", msg);
            }
        }
    }
}

fn write<'a>(path: &'a Path, bytes: &[u8]) -> &'a Path {
    std::fs::write(path, bytes).unwrap();
    path
}

#[test]
fn mismatched_tensors_are_named() {
    let dir = scratch_dir("ckpt-mismatch");
    let path = dir.join("checkpoint.safetensors");
    let msg = checkpoint::load(write(&path, &corpus("checkpoint/bad-dtype.safetensors"))).unwrap_err().to_string();
    assert_eq!(msg, format!("{}: tensor fc.bias is F16, expected F32", path.display()));

    let (_, meta) = checkpoint::load(write(&path, &corpus("checkpoint/tiny.safetensors"))).unwrap();
    let graph = build_model(&meta.model, meta.class_names.len(), meta.input, false).unwrap();
    let full: Vec<NamedTensor> = graph
        .params
        .iter()
        .map(|p| NamedTensor { name: p.name.clone(), shape: p.shape.clone(), data: vec![0.25; p.shape.iter().product()] })
        .collect();
    let restore_model = |tensors: &[NamedTensor]| RunnableModel::from_checkpoint(&meta, tensors.to_vec()).restore(CpuBackend::new());
    restore_model(&full).expect("every tensor present and well shaped");

    let missing: Vec<NamedTensor> = full.iter().filter(|t| t.name != "fc2.bias").cloned().collect();
    let msg = restore_model(&missing).err().expect("fc2.bias is missing").to_string();
    assert_eq!(msg, "invalid configuration: the checkpoint has no tensor fc2.bias for model small_cnn");

    let mut misshapen = full.clone();
    let conv = misshapen.iter_mut().find(|t| t.name == "conv1.weight").unwrap();
    conv.shape = vec![32, 3, 3, 1];
    let msg = restore_model(&misshapen).err().expect("conv1.weight is misshapen").to_string();
    assert_eq!(msg, "shape error: checkpoint tensor conv1.weight is [32, 3, 3, 1], model small_cnn needs [32, 1, 3, 3]");
    std::fs::remove_dir_all(&dir).unwrap();
}
