//! The prefetching loader: batches of one epoch, prepared by worker threads ahead of the
//! consumer. Worker w prepares batches w, w + W, w + 2W, ... into its own bounded channel, and the
//! consumer takes batch k from channel k mod W: batches arrive in order and at most
//! W * (PREFETCH + 1) are in memory. Each batch's augmentation draws from a generator seeded by
//! the loader's seed and the batch index, so the result does not depend on the number of workers.

use super::augment::Augment;
use super::transform::normalise_image;
use super::ImageSet;
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Batches each worker may have ready ahead of the consumer.
const PREFETCH: usize = 2;

/// One batch: normalised images N*C*H*W and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    pub n: usize,
}

/// What every worker shares: the images, the epoch's order and how to prepare a batch.
struct Plan {
    set: Arc<ImageSet>,
    order: Vec<usize>,
    mean: Vec<f32>,
    std: Vec<f32>,
    batch_size: usize,
    augment: Option<Augment>,
    augment_seed: u64,
}

impl Plan {
    fn batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    fn batch(&self, k: usize) -> Batch {
        let indices = &self.order[k * self.batch_size..((k + 1) * self.batch_size).min(self.order.len())];
        let set = &self.set;
        let (c, h, w) = (set.channels, set.height, set.width);
        // Splitting by batch index keeps the draws independent of which worker runs the batch.
        let mut rng = Rng::new(self.augment_seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut x = Vec::with_capacity(indices.len() * set.image_len());
        for &i in indices {
            match &self.augment {
                Some(augment) => {
                    let mut image: Vec<f32> = set.image(i).iter().map(|&v| v as f32 / 255.0).collect();
                    augment.apply(&mut image, c, h, w, &mut rng);
                    let plane = h * w;
                    x.extend(image.iter().enumerate().map(|(j, v)| (v - self.mean[j / plane]) / self.std[j / plane]));
                }
                None => x.extend(normalise_image(set.image(i), c, &self.mean, &self.std)),
            }
        }
        Batch { x, labels: indices.iter().map(|&i| set.labels[i]).collect(), n: indices.len() }
    }
}

/// Which slice of each epoch a loader gives: rank `rank` of `world` data-parallel processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    rank: usize,
    world: usize,
    /// Whether every rank gets as many images (training, whose steps the ranks take together).
    padded: bool,
}

impl Shard {
    /// The whole epoch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1, padded: false };

    /// Training's slice: every rank as many images, the order first padded to a multiple of
    /// `world` by repeating its start (as DistributedSampler).
    pub fn training(rank: usize, world: usize) -> Shard {
        Shard { rank, world, padded: true }
    }

    /// Evaluation's slice: every image exactly once over the ranks.
    pub fn evaluation(rank: usize, world: usize) -> Shard {
        Shard { rank, world, padded: false }
    }

    /// This shard's images of `order`: every `world`-th from `rank` on.
    fn slice(self, mut order: Vec<usize>) -> Vec<usize> {
        if self.world <= 1 || order.is_empty() {
            return order;
        }
        if self.padded {
            let total = order.len().div_ceil(self.world) * self.world;
            let mut pad = 0;
            while order.len() < total {
                order.push(order[pad]);
                pad += 1;
            }
        }
        order.into_iter().skip(self.rank).step_by(self.world).collect()
    }
}

/// Batches of one epoch, prepared by `workers` threads that prefetch ahead (none: prepared on
/// the consumer's thread); order and augmentation fixed by `seed`; the last partial batch is kept.
pub struct Loader {
    plan: Arc<Plan>,
    next: usize,
    receivers: Vec<Receiver<Batch>>,
    workers: Vec<JoinHandle<()>>,
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        set: Arc<ImageSet>,
        mean: &[f32],
        std: &[f32],
        batch_size: usize,
        shuffle: bool,
        augment: Option<Augment>,
        seed: u64,
        workers: usize,
    ) -> Result<Self> {
        Self::sharded(set, mean, std, batch_size, shuffle, augment, seed, workers, Shard::WHOLE)
    }

    /// A loader of `shard`'s slice of the epoch: every rank shuffles with the same `seed`, and
    /// takes every `world`-th image of that order from its rank on, as PyTorch's
    /// DistributedSampler.
    #[allow(clippy::too_many_arguments)]
    pub fn sharded(
        set: Arc<ImageSet>,
        mean: &[f32],
        std: &[f32],
        batch_size: usize,
        shuffle: bool,
        augment: Option<Augment>,
        seed: u64,
        workers: usize,
        shard: Shard,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::config("the batch size must be at least 1"));
        }
        if mean.len() != set.channels || std.len() != set.channels {
            return Err(Error::config(format!(
                "normalisation has {} means and {} deviations for {}-channel images",
                mean.len(),
                std.len(),
                set.channels
            )));
        }
        if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::config(format!("normalisation deviation {bad} must be a positive number")));
        }
        if let Some(augment) = &augment {
            augment.validate()?;
        }
        let mut rng = Rng::new(seed);
        let mut order: Vec<usize> = (0..set.len()).collect();
        if shuffle {
            rng.shuffle(&mut order);
        }
        let order = shard.slice(order);
        let plan = Arc::new(Plan {
            set,
            order,
            mean: mean.to_vec(),
            std: std.to_vec(),
            batch_size,
            augment,
            augment_seed: rng.next_u64(),
        });
        let workers = workers.min(plan.batches());
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (sender, receiver) = sync_channel(PREFETCH);
            let plan = Arc::clone(&plan);
            let handle = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || {
                    for k in (w..plan.batches()).step_by(workers) {
                        // A closed channel means the loader was dropped: stop early.
                        if sender.send(plan.batch(k)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::config(format!("cannot start a data-loading thread: {e}")))?;
            receivers.push(receiver);
            handles.push(handle);
        }
        Ok(Loader { plan, next: 0, receivers, workers: handles })
    }

    /// Number of batches in the epoch.
    pub fn batches(&self) -> usize {
        self.plan.batches()
    }
}

impl Iterator for Loader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.plan.batches() {
            return None;
        }
        let k = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(self.plan.batch(k));
        }
        // A worker only stops early when the loader is dropped, or by panicking (a bug): then
        // the batch is prepared here, which re-raises that panic on the consumer's thread.
        match self.receivers[k % self.receivers.len()].recv() {
            Ok(batch) => Some(batch),
            Err(_) => Some(self.plan.batch(k)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.plan.batches() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Loader {}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channels unblocks workers waiting to send; then they exit.
        self.receivers.clear();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_are_disjoint_interleaved_slices_padded_to_equal_length() {
        let order = vec![7, 3, 9, 1, 4];
        let shards: Vec<Vec<usize>> = (0..2).map(|rank| Shard::training(rank, 2).slice(order.clone())).collect();
        assert_eq!(shards[0], [7, 9, 4]);
        // Padded with the order's first image, as DistributedSampler does.
        assert_eq!(shards[1], [3, 1, 7]);
        // Evaluation sees each image once.
        assert_eq!(Shard::evaluation(1, 2).slice(order.clone()), [3, 1]);
        assert_eq!(Shard::WHOLE.slice(order.clone()), order);
        // Batch k of every shard together is batch k of the whole order at world times the size.
        let even = vec![5, 0, 2, 8, 6, 1];
        let halves: Vec<Vec<usize>> = (0..2).map(|rank| Shard::training(rank, 2).slice(even.clone())).collect();
        let mut first: Vec<usize> = [&halves[0][..2], &halves[1][..2]].concat();
        first.sort();
        let mut whole = even[..4].to_vec();
        whole.sort();
        assert_eq!(first, whole);
    }
}
