//! Training recipes: the values `ferronet train` (and `lr-find`) take for the flags the user did
//! not give, by model family and dataset, so a first run with no flags trains well. The table is
//! printed by `train --help` and copied in the README; flags given on the command line win.

use crate::train::config::{DatasetChoice, GivenFlags, OptimizerChoice, SchedulerChoice, TrainConfig};
use crate::train::pretrained::NormalizeChoice;

/// The optimisation settings of a recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    pub optimizer: OptimizerChoice,
    pub lr: f64,
    pub weight_decay: f64,
    pub scheduler: SchedulerChoice,
    pub batch_size: usize,
    pub dropout: Option<f64>,
}

/// Models that train alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    SmallCnn,
    /// LeNet-5, AlexNet and VGG without batch norm: large learning rates diverge.
    Plain,
    /// Depthwise-separable models (MobileNetV2, ShuffleNetV2, EfficientNet): little weight decay.
    Mobile,
    /// Every other model has batch norm after its convolutions (ResNet, *_bn, GoogLeNet, Inception).
    BatchNorm,
}

fn family(model: &str) -> Family {
    match model {
        "small_cnn" => Family::SmallCnn,
        "lenet5" | "alexnet" | "vgg11" | "vgg13" | "vgg16" | "vgg19" => Family::Plain,
        m if m.starts_with("mobilenet") || m.starts_with("shufflenet") || m.starts_with("efficientnet") => Family::Mobile,
        _ => Family::BatchNorm,
    }
}

/// The synthetic dataset (a smoke test) trains with the flags' own defaults.
const FLAG_DEFAULTS: Recipe = Recipe {
    optimizer: OptimizerChoice::Sgd,
    lr: 0.05,
    weight_decay: 5e-4,
    scheduler: SchedulerChoice::None,
    batch_size: 64,
    dropout: None,
};

/// small_cnn: Adam with cosine annealing and light dropout (91.26% test top-1 on Fashion-MNIST
/// in 3 epochs on the CPU, against 86.5% with the flags' own defaults; see README).
const SMALL_CNN: Recipe = Recipe {
    optimizer: OptimizerChoice::Adam,
    lr: 0.002,
    weight_decay: 0.0,
    scheduler: SchedulerChoice::Cosine,
    batch_size: 64,
    dropout: Some(0.1),
};

/// The usual CIFAR/ImageNet recipes: SGD with momentum 0.9, cosine annealing, batch 128.
const fn sgd(lr: f64, weight_decay: f64) -> Recipe {
    Recipe { optimizer: OptimizerChoice::Sgd, lr, weight_decay, scheduler: SchedulerChoice::Cosine, batch_size: 128, dropout: None }
}

/// Fine-tuning from --init-from divides the recipe's learning rate by this.
const FINE_TUNE_LR_DIVISOR: f64 = 10.0;

/// The recipe for `model` on `dataset`.
pub fn recipe(model: &str, dataset: DatasetChoice) -> Recipe {
    if dataset == DatasetChoice::Synthetic {
        return FLAG_DEFAULTS;
    }
    match family(model) {
        Family::SmallCnn => SMALL_CNN,
        Family::Plain => sgd(0.01, 5e-4),
        Family::Mobile => sgd(0.05, 4e-5),
        Family::BatchNorm => sgd(0.1, 5e-4),
    }
}

/// The learning rate and weight decay for an optimiser the recipe did not choose (the user's
/// --optimizer): PyTorch's defaults for Adam and AdamW, the flags' for SGD.
fn optimizer_defaults(optimizer: OptimizerChoice) -> (f64, f64) {
    match optimizer {
        OptimizerChoice::Sgd => (FLAG_DEFAULTS.lr, FLAG_DEFAULTS.weight_decay),
        OptimizerChoice::Adam => (1e-3, 0.0),
        OptimizerChoice::Adamw => (1e-3, 1e-2),
    }
}

/// Sets every recipe flag the user did not give to the recipe for the configuration's model
/// and dataset, and returns those that differ from the flags' own defaults, as flags
/// (`--optimizer adam`), for the line that announces them.
pub fn apply(config: &mut TrainConfig, given: &GivenFlags) -> Vec<String> {
    let before = config.clone();
    let r = recipe(&config.model, config.data.dataset);
    let fine_tune = config.init_from.is_some();
    let unset = |id: &str| !given.contains(id);
    if unset("optimizer") {
        config.optimizer = r.optimizer;
    }
    let (lr, weight_decay) = match config.optimizer == r.optimizer {
        true => (r.lr, r.weight_decay),
        false => optimizer_defaults(config.optimizer),
    };
    if unset("lr") {
        config.lr = if fine_tune { lr / FINE_TUNE_LR_DIVISOR } else { lr };
    }
    if unset("weight_decay") {
        config.weight_decay = weight_decay;
    }
    if unset("scheduler") {
        config.scheduler = r.scheduler;
    }
    if unset("batch_size") {
        config.batch_size = r.batch_size;
    }
    if unset("dropout") {
        config.dropout = r.dropout;
    }
    let dataset = config.data.dataset;
    if unset("augment") {
        config.augment = matches!(dataset, DatasetChoice::Cifar10 | DatasetChoice::Cifar100 | DatasetChoice::TinyImagenet);
    }
    if unset("hflip") {
        config.hflip = dataset == DatasetChoice::Folder;
    }
    // The CIFAR stem suits 32x32 images, but not weights trained with the ImageNet stem.
    if unset("cifar_stem") {
        config.cifar_stem = matches!(dataset, DatasetChoice::Cifar10 | DatasetChoice::Cifar100) && !fine_tune;
    }
    let three_channels = config.data.model_input().is_ok_and(|[c, _, _]| c == 3);
    if unset("normalize") && fine_tune && three_channels {
        config.normalize = NormalizeChoice::Imagenet;
    }
    changed_flags(&before, config)
}

/// The line saying which defaults a run took from its recipe; None when it took none.
pub fn announcement(config: &TrainConfig, chosen: &[String]) -> Option<String> {
    (!chosen.is_empty()).then(|| {
        format!(
            "defaults for {} on {}: {} (flags you give override them; `ferronet train --help` lists the defaults)",
            config.model,
            config.data.dataset.name(),
            chosen.join(" ")
        )
    })
}

/// The recipe flags whose value differs between `before` and `after`, as `--flag value`.
fn changed_flags(before: &TrainConfig, after: &TrainConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |differs: bool, text: String| {
        if differs {
            out.push(text);
        }
    };
    note(before.optimizer != after.optimizer, format!("--optimizer {}", value_name(after.optimizer)));
    note(before.lr != after.lr, format!("--lr {}", after.lr));
    note(before.weight_decay != after.weight_decay, format!("--weight-decay {}", after.weight_decay));
    note(before.scheduler != after.scheduler, format!("--scheduler {}", value_name(after.scheduler)));
    note(before.batch_size != after.batch_size, format!("--batch-size {}", after.batch_size));
    let dropout = after.dropout.map_or("unset".to_string(), |p| p.to_string());
    note(before.dropout != after.dropout, format!("--dropout {dropout}"));
    note(before.augment != after.augment, format!("--augment={}", after.augment));
    note(before.hflip != after.hflip, format!("--hflip={}", after.hflip));
    note(before.cifar_stem != after.cifar_stem, format!("--cifar-stem={}", after.cifar_stem));
    note(before.normalize != after.normalize, format!("--normalize {}", value_name(after.normalize)));
    out
}

/// The command-line spelling of a value of a flag's enum.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// The table of recipes for `train --help` and the README.
pub fn help_table() -> String {
    let row = |who: &str, r: Recipe| {
        let dropout = r.dropout.map_or("model's".to_string(), |p| p.to_string());
        let (optimizer, scheduler) = (value_name(r.optimizer), value_name(r.scheduler));
        format!("  {who:<52} {optimizer:<9} {:<6} {:<12} {scheduler:<9} {:<5} {dropout}\n", r.lr, r.weight_decay, r.batch_size)
    };
    let mut text = String::from("Defaults by model and dataset (flags given on the command line win):\n");
    text += &format!("  {:<52} {:<9} {:<6} {:<12} {:<9} {:<5} {}\n", "model", "optimizer", "lr", "weight decay", "scheduler", "batch", "dropout");
    text += &row("any model on the synthetic dataset", FLAG_DEFAULTS);
    text += &row("small_cnn", SMALL_CNN);
    text += &row("alexnet, vgg11..vgg19 (no batch norm)", sgd(0.01, 5e-4));
    text += &row("mobilenet_v2, shufflenet_v2_*, efficientnet_b0", sgd(0.05, 4e-5));
    text += &row("every other model (batch norm: resnet*, *_bn, ...)", sgd(0.1, 5e-4));
    text += "SGD uses momentum 0.9. On cifar10, cifar100 and tiny-imagenet also --augment (random crop with\n";
    text += "padding 4, horizontal flip), on cifar10 and cifar100 --cifar-stem, on image folders --hflip.\n";
    text += "With --init-from: a tenth of the learning rate, no CIFAR stem, --normalize imagenet for RGB inputs.\n";
    text += "An --optimizer other than the recipe's takes lr 0.05 and weight decay 5e-4 (sgd), lr 1e-3 and\n";
    text += "weight decay 0 (adam) or 1e-2 (adamw). Switches turn off as --augment=false.\n";
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(ids: &[&str]) -> GivenFlags {
        GivenFlags::from_ids(ids.iter().map(|s| s.to_string()))
    }

    fn on(model: &str, dataset: DatasetChoice) -> TrainConfig {
        let defaults = TrainConfig::default();
        TrainConfig { model: model.into(), data: crate::train::config::DataConfig { dataset, ..defaults.data.clone() }, ..defaults }
    }

    #[test]
    fn recipes_fill_what_the_user_left_unset() {
        let mut c = on("small_cnn", DatasetChoice::FashionMnist);
        let announced = apply(&mut c, &given(&["dataset"]));
        assert_eq!((c.optimizer, c.lr, c.weight_decay, c.scheduler, c.dropout), (OptimizerChoice::Adam, 0.002, 0.0, SchedulerChoice::Cosine, Some(0.1)));
        assert!(!c.augment && !c.cifar_stem);
        assert_eq!(announced, ["--optimizer adam", "--lr 0.002", "--weight-decay 0", "--scheduler cosine", "--dropout 0.1"]);

        // Given flags win; an optimiser other than the recipe's takes its own learning rate.
        let mut c = on("small_cnn", DatasetChoice::FashionMnist);
        c.optimizer = OptimizerChoice::Sgd;
        c.dropout = Some(0.3);
        apply(&mut c, &given(&["optimizer", "dropout"]));
        assert_eq!((c.optimizer, c.lr, c.weight_decay, c.dropout), (OptimizerChoice::Sgd, 0.05, 5e-4, Some(0.3)));

        let mut c = on("resnet18", DatasetChoice::Cifar10);
        c.lr = 0.02;
        apply(&mut c, &given(&["lr"]));
        assert_eq!((c.optimizer, c.lr, c.batch_size, c.augment, c.cifar_stem), (OptimizerChoice::Sgd, 0.02, 128, true, true));

        // Fine-tuning: a tenth of the rate, the ImageNet stem and statistics.
        let mut c = on("mobilenet_v2", DatasetChoice::Cifar100);
        c.init_from = Some("w.pth".into());
        apply(&mut c, &given(&[]));
        assert_eq!((c.lr, c.weight_decay, c.cifar_stem, c.normalize), (0.005, 4e-5, false, NormalizeChoice::Imagenet));

        // The synthetic dataset keeps the flags' defaults.
        let mut c = TrainConfig::default();
        assert!(apply(&mut c, &given(&[])).is_empty());
        assert_eq!(c, TrainConfig::default());
    }

    #[test]
    fn families() {
        assert_eq!(recipe("vgg16", DatasetChoice::Cifar10).lr, 0.01);
        assert_eq!(recipe("vgg16_bn", DatasetChoice::Cifar10).lr, 0.1);
        assert_eq!(recipe("shufflenet_v2_x0_5", DatasetChoice::Folder).weight_decay, 4e-5);
        assert_eq!(recipe("inception_v3", DatasetChoice::TinyImagenet).lr, 0.1);
        assert!(help_table().lines().all(|l| l.len() <= 110), "{}", help_table());
    }
}
