//! Gradient buckets, as PyTorch's DDP reduces gradients: backward hands over each parameter's
//! gradient as soon as it is final; they fill a bucket in that order, and a bucket that reaches
//! its capacity starts its sum over the ranks at once, while backward goes on. Every rank runs
//! the same graph, so every rank fills the same buckets in the same order. The sums are f64
//! and element-wise, so how the gradients are cut into buckets changes no result.

use super::{PendingSum, ProcessGroup};
use crate::error::Result;

/// What backward tells data parallelism, generic over the gradient buffer type `G` (so the
/// executor does not depend on how the ranks communicate).
pub trait GradientHook<G> {
    /// Parameter `param`'s gradient is final: no later node of backward adds to it.
    fn gradient_final(&mut self, param: usize, grad: &G) -> Result<()>;
    /// Between two nodes' backward: lets the sums in flight progress.
    fn between_nodes(&mut self);
}

/// Buckets whose sums run on the device itself (NCCL between GPUs), queued on a stream beside
/// the one backward runs on.
pub trait DeviceBuckets<G>: GradientHook<G> {
    /// After backward: starts the last bucket and makes the device's later work wait for every
    /// sum (the host does not wait). The gradients then hold the sums over the ranks.
    fn finish(self: Box<Self>) -> Result<BucketCounts>;
}

/// How one step's gradients went over the ranks (`Executor::last_bucket_counts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Gradients summed.
    pub gradients: usize,
    /// Buckets the step's gradients were summed in.
    pub buckets: usize,
    /// Of those, the buckets whose sum started before backward ended.
    pub started_during_backward: usize,
}

/// The parameters of one bucket and how many values each holds, in bucket order.
type Members = Vec<(usize, usize)>;

/// Each parameter's gradient summed over the ranks, by parameter id.
pub type SummedGradients = Vec<(usize, Vec<f64>)>;

/// One step's gradient buckets: the one filling and those in flight.
pub struct GradientBuckets<'g> {
    group: &'g ProcessGroup,
    /// Values after which a bucket starts (at least one gradient per bucket).
    capacity: usize,
    members: Members,
    values: Vec<f64>,
    in_flight: Vec<(Members, PendingSum)>,
}

impl<'g> GradientBuckets<'g> {
    /// Buckets of `capacity` values (a gradient larger than that is a bucket of its own).
    pub fn new(group: &'g ProcessGroup, capacity: usize) -> GradientBuckets<'g> {
        GradientBuckets { group, capacity: capacity.max(1), members: Vec::new(), values: Vec::new(), in_flight: Vec::new() }
    }

    /// Adds a final gradient to the bucket filling; starts the bucket's sum once it is full.
    pub fn add(&mut self, param: usize, gradient: impl IntoIterator<Item = f64>) -> Result<()> {
        let before = self.values.len();
        self.values.extend(gradient);
        self.members.push((param, self.values.len() - before));
        if self.values.len() >= self.capacity {
            self.start_filling()?;
        }
        Ok(())
    }

    /// Lets the sums in flight progress (Open MPI moves them on only inside MPI calls).
    pub fn poll(&mut self) {
        for (_, sum) in &mut self.in_flight {
            sum.test();
        }
    }

    fn start_filling(&mut self) -> Result<()> {
        let values = std::mem::take(&mut self.values);
        let sum = self.group.start_sum(values)?;
        self.in_flight.push((std::mem::take(&mut self.members), sum));
        Ok(())
    }

    /// After backward: starts the last, partly filled bucket, waits for every sum (at most the
    /// group's timeout) and returns each parameter's gradient summed over the ranks.
    pub fn finish(mut self) -> Result<(SummedGradients, BucketCounts)> {
        let started_during_backward = self.in_flight.len();
        if !self.members.is_empty() {
            self.start_filling()?;
        }
        let gradients = self.in_flight.iter().map(|(members, _)| members.len()).sum();
        let counts = BucketCounts { gradients, buckets: self.in_flight.len(), started_during_backward };
        let (members, mut sums): (Vec<Members>, Vec<PendingSum>) = self.in_flight.drain(..).unzip();
        self.group.wait_all(&mut sums)?;
        let mut gradients = Vec::new();
        for (members, sum) in members.into_iter().zip(sums) {
            let sum = sum.into_result();
            let mut at = 0;
            for (param, len) in members {
                gradients.push((param, sum[at..at + len].to_vec()));
                at += len;
            }
        }
        Ok((gradients, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_buckets_start_as_they_fill_and_the_rest_starts_at_the_end() {
        let group = ProcessGroup::alone();
        let mut buckets = GradientBuckets::new(&group, 3);
        buckets.add(4, [1.0, 2.0]).unwrap();
        buckets.add(2, [3.0, 4.0]).unwrap(); // 4 values: the first bucket starts
        buckets.add(0, [5.0]).unwrap();
        buckets.poll();
        let (gradients, counts) = buckets.finish().unwrap();
        assert_eq!(counts, BucketCounts { gradients: 3, buckets: 2, started_during_backward: 1 });
        assert_eq!(gradients, [(4, vec![1.0, 2.0]), (2, vec![3.0, 4.0]), (0, vec![5.0])]);
    }
}
