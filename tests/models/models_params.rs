//! Parameter counts and output shapes of the model zoo, against torchvision's published models.

use ferronet::graph::{Graph, Op};
use ferronet::ops::Flatten;
use ferronet::models::{build, names, summary::summarize, ModelOptions};

fn model(name: &str, classes: usize, input: [usize; 3]) -> Graph {
    build(name, &ModelOptions::new(classes, input)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn trainable(name: &str, classes: usize, input: [usize; 3]) -> usize {
    model(name, classes, input).trainable_params()
}

#[test]
fn torchvision_trainable_counts_for_1000_classes() {
    let expected = [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("alexnet", 61_100_840),
        ("vgg11", 132_863_336),
        ("vgg13", 133_047_848),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
        ("vgg11_bn", 132_868_840),
        ("vgg13_bn", 133_053_736),
        ("vgg16_bn", 138_365_992),
        ("vgg19_bn", 143_678_248),
        ("mobilenet_v2", 3_504_872),
        ("shufflenet_v2_x0_5", 1_366_792),
        ("shufflenet_v2_x1_0", 2_278_604),
        ("googlenet", 13_004_888),
        ("efficientnet_b0", 5_288_548),
    ];
    let mut wrong = vec![];
    for (name, want) in expected {
        let got = trainable(name, 1000, [3, 224, 224]);
        if got != want {
            wrong.push(format!("{name}: {got} != {want}"));
        }
    }
    let got = trainable("inception_v3", 1000, [3, 299, 299]);
    if got != 27_161_264 {
        wrong.push(format!("inception_v3: {got} != 27161264"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn resnet18_for_10_classes() {
    assert_eq!(trainable("resnet18", 10, [3, 224, 224]), 11_181_642);
}

/// Trainable parameters outside the auxiliary heads (the nodes only the aux outputs depend on).
#[test]
fn googlenet_without_aux_heads() {
    let g = model("googlenet", 1000, [3, 224, 224]);
    let aux: usize = g
        .params
        .iter()
        .filter(|p| p.name.starts_with("aux1.") || p.name.starts_with("aux2."))
        .filter(|p| !p.kind.is_state())
        .map(|p| p.numel())
        .sum();
    assert_eq!(g.trainable_params() - aux, 6_624_904);
    assert_eq!(g.outputs.iter().filter(|o| o.auxiliary && o.loss_weight == 0.3).count(), 2);
    let without = build("googlenet", &ModelOptions { aux_logits: false, ..ModelOptions::new(1000, [3, 224, 224]) }).unwrap();
    assert_eq!(without.trainable_params(), 6_624_904);
    assert_eq!(without.outputs.len(), 1);
}

#[test]
fn inception_v3_has_one_aux_head_weighted_0_3() {
    let g = model("inception_v3", 1000, [3, 299, 299]);
    let aux: Vec<_> = g.outputs.iter().filter(|o| o.auxiliary).collect();
    assert_eq!(aux.len(), 1);
    assert_eq!(aux[0].loss_weight, 0.3);
    assert_eq!(g.nodes[aux[0].node].shape, vec![1000]);
    assert_eq!(g.nodes[g.main_output().node].shape, vec![1000]);
}

#[test]
fn alexnet_bn_seed_study_counts() {
    let g = model("alexnet_bn", 5, [3, 227, 227]);
    assert_eq!(g.trainable_params(), 58_304_581);
    assert_eq!(g.non_trainable_params(), 2_752);
    assert_eq!(g.trainable_params() + g.non_trainable_params(), 58_307_333);
    let flatten = g.nodes.iter().find(|n| n.op == Op::Flatten(Flatten)).unwrap();
    assert_eq!(flatten.shape, vec![9216]);
}

/// The shape of the last node named `name`.
fn shape_of(g: &Graph, name: &str) -> Vec<usize> {
    g.nodes.iter().rev().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}")).shape.clone()
}

#[test]
fn output_shapes_before_pooling() {
    let g = model("resnet18", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "layer4.1.relu"), vec![512, 7, 7]);
    assert_eq!(shape_of(&g, "fc"), vec![1000]);
    let g = build("resnet18", &ModelOptions { cifar_stem: true, ..ModelOptions::new(10, [3, 32, 32]) }).unwrap();
    assert_eq!(shape_of(&g, "layer1.0.relu"), vec![64, 32, 32]);
    assert_eq!(shape_of(&g, "layer4.1.relu"), vec![512, 4, 4]);
    let g = model("resnet50", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "layer4.2.relu"), vec![2048, 7, 7]);
    let g = model("vgg16", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "features.30"), vec![512, 7, 7]);
    let g = model("mobilenet_v2", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "features.18.2"), vec![1280, 7, 7]);
    let g = model("shufflenet_v2_x1_0", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "conv5.2"), vec![1024, 7, 7]);
    let g = model("inception_v3", 1000, [3, 299, 299]);
    assert_eq!(shape_of(&g, "Mixed_6e.concat"), vec![768, 17, 17]);
    assert_eq!(shape_of(&g, "Mixed_7c.concat"), vec![2048, 8, 8]);
    let g = model("googlenet", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "inception5b.concat"), vec![1024, 7, 7]);
    let g = model("efficientnet_b0", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "features.8.2"), vec![1280, 7, 7]);
    let g = model("alexnet", 1000, [3, 224, 224]);
    assert_eq!(shape_of(&g, "features.12"), vec![256, 6, 6]);
}

#[test]
fn known_macs() {
    // Conv + dense multiply-accumulates per 224x224 image, as ptflops reports them.
    let macs = |name: &str| summarize(&model(name, 1000, [3, 224, 224]), 1, true).unwrap().macs;
    assert_eq!(macs("resnet18"), 1_814_073_344);
    assert_eq!(macs("alexnet"), 714_188_480);
    assert_eq!(macs("vgg16"), 15_470_264_320);
}

#[test]
fn small_cnn_is_cheap() {
    let g = model("small_cnn", 10, [1, 28, 28]);
    let s = summarize(&g, 1, true).unwrap();
    // conv1 28*28*32*9 + conv2 14*14*64*32*9 + fc1 3136*128 + fc2 128*10
    assert_eq!(s.macs, 225_792 + 3_612_672 + 401_408 + 1_280);
    assert_eq!(s.trainable_params, 288 + 64 + 18_432 + 128 + 401_536 + 1_290);
}

#[test]
fn every_model_builds_and_bad_options_are_clear_errors() {
    for name in names() {
        let input = match name {
            "small_cnn" => [1, 28, 28],
            "inception_v3" => [3, 299, 299],
            _ => [3, 224, 224],
        };
        let g = model(name, 7, input);
        assert_eq!(g.num_classes(), 7, "{name}");
        let mut seen = std::collections::HashSet::new();
        for p in &g.params {
            assert!(seen.insert(&p.name), "{name}: parameter {} appears twice", p.name);
        }
    }
    let err = build("resnet99", &ModelOptions::new(10, [3, 224, 224])).unwrap_err().to_string();
    assert!(err.contains("unknown model `resnet99`") && err.contains("resnet18"), "{err}");
    let err = build("inception_v3", &ModelOptions::new(10, [3, 32, 32])).unwrap_err().to_string();
    assert!(err.starts_with("shape error: inception_v3 cannot take a 3x32x32 input: layer "), "{err}");
    assert_eq!(err.matches("shape error").count(), 1, "{err}");
    let err = build("inception_v3", &ModelOptions::new(10, [3, 224, 224])).unwrap_err().to_string();
    assert!(err.contains("auxiliary classifier needs at least 299x299"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let err = build("resnet18", &ModelOptions::new(0, [3, 32, 32])).unwrap_err().to_string();
    assert!(err.contains("classes"), "{err}");
}

#[test]
fn width_divisor_makes_tiny_variants() {
    for name in names() {
        let input = match name {
            "small_cnn" => [1, 28, 28],
            "inception_v3" => [3, 75, 75],
            "alexnet" | "alexnet_bn" => [3, 67, 67],
            _ => [3, 32, 32],
        };
        let full_opts = ModelOptions { aux_logits: name != "inception_v3", ..ModelOptions::new(10, input) };
        let full = build(name, &full_opts).unwrap().trainable_params();
        let opts = ModelOptions { width_divisor: 8, aux_logits: name != "inception_v3", ..ModelOptions::new(10, input) };
        let tiny = build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(tiny.trainable_params() * 10 < full, "{name}: {} vs {full}", tiny.trainable_params());
        assert_eq!(tiny.num_classes(), 10);
    }
}
