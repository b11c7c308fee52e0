//! The process group of data-parallel training: which rank this process is among how many, and
//! the collectives the trainer needs (a sum all-reduce, a broadcast from rank 0), over MPI when
//! `mpirun` launched the process (`--features mpi`), over NCCL alone when torchrun's variables
//! launched ranks on CUDA devices (nccl_group.rs). One process alone is a group of one whose
//! collectives change nothing.
//!
//! Every collective waits at most the group's timeout for the other ranks, and gives up early
//! when this process is asked to terminate (mpirun sends SIGTERM to the survivors when a rank
//! dies), so a dead or hung rank ends the job with an error instead of a hang.

mod buckets;
#[cfg(feature = "mpi")]
mod mpi_group;
pub mod nccl;
mod nccl_group;
mod rendezvous;
mod store;

pub use buckets::{BucketCounts, DeviceBuckets, GradientBuckets, GradientHook};

use crate::error::{Error, Result};
use nccl::NcclComm;
use nccl_group::{NcclGroup, TorchrunRank};
pub use rendezvous::Master;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `--dist-backend`: how the ranks of a data-parallel run all-reduce their gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DistBackend {
    /// NCCL when the ranks train on CUDA devices, MPI through the host otherwise.
    #[default]
    Auto,
    /// NCCL between the ranks' GPUs, on the device buffers.
    Nccl,
    /// MPI through the host (any device).
    Mpi,
}

/// The all-reduce a data-parallel run's gradients go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mpi,
    Nccl,
}

impl DistBackend {
    /// The all-reduce for ranks whose device is `device` (`cuda` true for a CUDA device).
    pub fn resolve(self, device: &str, cuda: bool) -> Result<Reduction> {
        match (self, cuda) {
            (DistBackend::Auto, true) | (DistBackend::Nccl, true) => Ok(Reduction::Nccl),
            (DistBackend::Auto, false) | (DistBackend::Mpi, _) => Ok(Reduction::Mpi),
            (DistBackend::Nccl, false) => Err(Error::config(format!(
                "--dist-backend nccl reduces gradients between CUDA devices, but the ranks train on {device}; \
                 give --device cuda or --dist-backend mpi"
            ))),
        }
    }
}

/// The launch this process is part of, read from the environment a launcher sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// No launcher, or a job of one process.
    Alone,
    /// `mpirun -np N` (Open MPI or MPICH): rank, world size and rank on this machine.
    Mpi { rank: usize, world: usize, local_rank: usize, local_world: usize },
    /// `torchrun`'s variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
    /// MASTER_PORT) without an MPI launcher; `master` None when MASTER_ADDR or MASTER_PORT is
    /// missing.
    Torchrun { rank: usize, world: usize, local_rank: usize, local_world: usize, master: Option<Master> },
}

impl Launch {
    /// Reads the launcher's variables: Open MPI's OMPI_COMM_WORLD_*, MPICH's PMI_*, torchrun's
    /// RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT.
    pub fn from_environment() -> Result<Launch> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Launch> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::config(format!("the launcher's variable {name}={v} is not a number; launch with mpirun -np N"))
                }),
            }
        };
        let mpi = [
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
            ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ];
        for (rank, size, local_rank, local_size) in mpi {
            if let (Some(rank), Some(world)) = (number(rank)?, number(size)?) {
                if world <= 1 {
                    return Ok(Launch::Alone);
                }
                let local_rank = number(local_rank)?.unwrap_or(rank);
                let local_world = number(local_size)?.unwrap_or(world);
                return Ok(Launch::Mpi { rank, world, local_rank, local_world });
            }
        }
        let world = match number("WORLD_SIZE")? {
            Some(world) if world > 1 => world,
            _ => return Ok(Launch::Alone),
        };
        let rank = number("RANK")?.ok_or_else(|| Error::config("WORLD_SIZE is set but RANK is not: launch with torchrun, which sets both"))?;
        if rank >= world {
            return Err(Error::config(format!("RANK={rank} is not below WORLD_SIZE={world}: launch with torchrun")));
        }
        let local_rank = number("LOCAL_RANK")?.unwrap_or(rank);
        let local_world = number("LOCAL_WORLD_SIZE")?.unwrap_or(world);
        let port = number("MASTER_PORT")?.map(|p| u16::try_from(p).map_err(|_| Error::config(format!("MASTER_PORT={p} is not a port"))));
        let master = match (var("MASTER_ADDR"), port) {
            (Some(addr), Some(port)) => {
                // The agent's restarts each draw a new communicator.
                let restart = var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into());
                let agent_store_key = (var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"))
                    .then(|| format!("ferronet/nccl_unique_id/{restart}"));
                Some(Master { addr, port: port?, agent_store_key })
            }
            _ => None,
        };
        Ok(Launch::Torchrun { rank, world, local_rank, local_world, master })
    }

    /// This process's index among the processes of its machine (0 alone): the GPU it takes.
    pub fn local_rank(&self) -> usize {
        match self {
            Launch::Mpi { local_rank, .. } | Launch::Torchrun { local_rank, .. } => *local_rank,
            Launch::Alone => 0,
        }
    }

    /// How many processes of the job share this machine (1 alone).
    pub fn local_world(&self) -> usize {
        match self {
            Launch::Mpi { local_world, .. } | Launch::Torchrun { local_world, .. } => *local_world,
            Launch::Alone => 1,
        }
    }
}

/// A sum over the ranks that may still be in flight. Its buffers stay alive until the sum
/// completes: dropped before that (a timeout, an error), it leaks them instead of freeing memory
/// MPI may still write to.
pub struct PendingSum(PendingInner);

enum PendingInner {
    Done(Vec<f64>),
    #[cfg(feature = "mpi")]
    Mpi(mpi_group::Pending),
}

impl PendingSum {
    /// Whether the sum has completed; lets MPI move it on (call it between pieces of other work).
    pub fn test(&mut self) -> bool {
        match &mut self.0 {
            PendingInner::Done(_) => true,
            #[cfg(feature = "mpi")]
            PendingInner::Mpi(op) => op.test(),
        }
    }

    /// The sum, once `ProcessGroup::wait_all` (or `test`) has seen it complete.
    pub fn into_result(self) -> Vec<f64> {
        match self.0 {
            PendingInner::Done(values) => values,
            #[cfg(feature = "mpi")]
            PendingInner::Mpi(op) => op.into_result(),
        }
    }
}

/// The processes training one model together.
pub struct ProcessGroup {
    inner: Inner,
}

enum Inner {
    Alone,
    #[cfg(feature = "mpi")]
    Mpi(mpi_group::MpiGroup),
    Nccl(NcclGroup),
}

impl ProcessGroup {
    /// A group of this process alone.
    pub fn alone() -> ProcessGroup {
        ProcessGroup { inner: Inner::Alone }
    }

    /// Joins the job `launch` describes (initialising MPI when mpirun started it, NCCL on CUDA
    /// device `cuda` when torchrun did: `cuda` is the device a CUDA rank trains on, None for
    /// other devices, which torchrun does not launch); collectives wait at most `timeout` for
    /// the other ranks.
    pub fn join(launch: &Launch, timeout: Duration, cuda: Option<usize>) -> Result<ProcessGroup> {
        match launch {
            Launch::Alone => Ok(Self::alone()),
            Launch::Torchrun { world, .. } if cuda.is_none() => Err(Error::config(format!(
                "WORLD_SIZE={world} (a torchrun launch) with ranks that do not train on CUDA devices: torchrun launches \
                 ferronet's CUDA ranks (--device cuda, over NCCL); CPU ranks are launched with mpirun: \
                 run `mpirun -np {world} ferronet train ...` instead"
            ))),
            Launch::Torchrun { master: None, .. } => Err(Error::config(
                "a torchrun launch needs MASTER_ADDR and MASTER_PORT (rank 0's host and a free port there), which torchrun sets; set both",
            )),
            &Launch::Torchrun { rank, world, master: Some(ref master), .. } => {
                let me = TorchrunRank { rank, world, device: cuda.unwrap_or_default(), master };
                Ok(ProcessGroup { inner: Inner::Nccl(NcclGroup::join(&me, timeout)?) })
            }
            #[cfg(feature = "mpi")]
            Launch::Mpi { .. } => Ok(ProcessGroup { inner: Inner::Mpi(mpi_group::MpiGroup::init(timeout)?) }),
            #[cfg(not(feature = "mpi"))]
            Launch::Mpi { world, .. } => {
                let _ = timeout;
                Err(Error::config(format!(
                    "mpirun started this ferronet as one of {world} processes, but it was built without MPI; \
                     rebuild it with `cargo build --release --features mpi` (see README, Data-parallel training)"
                )))
            }
        }
    }

    /// This process's rank, 0 to world_size - 1.
    pub fn rank(&self) -> usize {
        match &self.inner {
            Inner::Alone => 0,
            #[cfg(feature = "mpi")]
            Inner::Mpi(g) => g.rank(),
            Inner::Nccl(g) => g.rank(),
        }
    }

    /// How many processes train together.
    pub fn world_size(&self) -> usize {
        match &self.inner {
            Inner::Alone => 1,
            #[cfg(feature = "mpi")]
            Inner::Mpi(g) => g.world_size(),
            Inner::Nccl(g) => g.world_size(),
        }
    }

    /// The NCCL communicator of a torchrun group, which the gradient buckets share.
    pub fn nccl_comm(&self) -> Option<&NcclComm> {
        match &self.inner {
            Inner::Nccl(g) => Some(g.comm()),
            _ => None,
        }
    }

    /// `e`, a failure of this rank, restated with its cause when the group knows it better
    /// (NCCL lost a rank, which the trainer's CUDA calls see only as a failed launch).
    pub fn explain(&self, e: Error) -> Error {
        match &self.inner {
            Inner::Nccl(g) => g.explain(e),
            _ => e,
        }
    }

    /// Whether this process is rank 0, the one that writes the run's files and reports.
    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    /// Replaces `values` on every rank by their element-wise sum over the ranks.
    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        let mut pending = [self.start_sum(values.to_vec())?];
        self.wait_all(&mut pending)?;
        let [sum] = pending;
        values.copy_from_slice(&sum.into_result());
        Ok(())
    }

    /// Starts the element-wise sum of `values` over the ranks without waiting for it (every rank
    /// starts its sums in the same order); `wait_all` completes it.
    pub fn start_sum(&self, mut values: Vec<f64>) -> Result<PendingSum> {
        match &self.inner {
            Inner::Alone => Ok(PendingSum(PendingInner::Done(values))),
            // NCCL's sum of host values waits for itself; gradients take the device buckets.
            Inner::Nccl(g) => {
                g.all_reduce_sum(&mut values)?;
                Ok(PendingSum(PendingInner::Done(values)))
            }
            #[cfg(feature = "mpi")]
            Inner::Mpi(g) => Ok(PendingSum(PendingInner::Mpi(g.start_sum(values)?))),
        }
    }

    /// Waits until every sum of `pending` has completed, at most the group's timeout.
    pub fn wait_all(&self, pending: &mut [PendingSum]) -> Result<()> {
        match &self.inner {
            Inner::Alone | Inner::Nccl(_) => {
                let _ = pending;
                Ok(())
            }
            #[cfg(feature = "mpi")]
            Inner::Mpi(g) => {
                let mut operations: Vec<&mut mpi_group::Pending> = pending
                    .iter_mut()
                    .filter_map(|p| match &mut p.0 {
                        PendingInner::Mpi(op) => Some(op),
                        PendingInner::Done(_) => None,
                    })
                    .collect();
                g.wait_all(&mut operations, "an all-reduce")
            }
        }
    }

    /// Replaces `values` on every rank by rank 0's (every rank passes the same length).
    pub fn broadcast(&self, values: &mut [f64]) -> Result<()> {
        match &self.inner {
            Inner::Alone => {
                let _ = values;
                Ok(())
            }
            #[cfg(feature = "mpi")]
            Inner::Mpi(g) => g.broadcast(values),
            Inner::Nccl(g) => g.broadcast(values),
        }
    }

    /// Every rank's `mine` (all of one length), concatenated in rank order, on every rank.
    pub fn all_gather(&self, mine: &[f64]) -> Result<Vec<f64>> {
        let len = mine.len();
        let mut all = vec![0.0; len * self.world_size()];
        all[self.rank() * len..(self.rank() + 1) * len].copy_from_slice(mine);
        // Each slot holds one rank's values and zeros from the others: the sum is a gather.
        self.all_reduce_sum(&mut all)?;
        Ok(all)
    }

    /// Rank 0's `text` on every rank (other ranks' text is ignored).
    pub fn broadcast_text(&self, text: &str) -> Result<String> {
        if self.world_size() == 1 {
            return Ok(text.to_string());
        }
        let mut len = [text.len() as f64];
        self.broadcast(&mut len)?;
        let mut bytes: Vec<f64> = text.bytes().map(f64::from).collect();
        bytes.resize(len[0] as usize, 0.0);
        self.broadcast(&mut bytes)?;
        String::from_utf8(bytes.iter().map(|&b| b as u8).collect())
            .map_err(|_| Error::config("rank 0 sent a run directory that is not UTF-8; give --out"))
    }

    /// Whether any rank passes true (every rank must call it at the same point).
    pub fn any(&self, flag: bool) -> Result<bool> {
        let mut v = [f64::from(u8::from(flag))];
        self.all_reduce_sum(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// Ends every process of the job at once (after a failure on this rank, so the others do
    /// not wait for it); alone, exits with `code`. Under torchrun this rank exits: torchrun ends
    /// the others, and without it their collectives fail on the lost rank or at the timeout.
    pub fn abort(&self, code: i32) -> ! {
        match &self.inner {
            Inner::Alone | Inner::Nccl(_) => std::process::exit(code),
            #[cfg(feature = "mpi")]
            Inner::Mpi(g) => g.abort(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn launchers_are_read_from_their_variables() {
        assert_eq!(launch(&[]).unwrap(), Launch::Alone);
        let ompi = [
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ];
        assert_eq!(launch(&ompi).unwrap(), Launch::Mpi { rank: 1, world: 4, local_rank: 1, local_world: 2 });
        let mpich = [("PMI_RANK", "2"), ("PMI_SIZE", "3")];
        assert_eq!(launch(&mpich).unwrap(), Launch::Mpi { rank: 2, world: 3, local_rank: 2, local_world: 3 });
        assert_eq!(launch(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "1")]).unwrap(), Launch::Alone);
        let torchrun = [("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500")];
        let master = Some(Master { addr: "node0".into(), port: 29500, agent_store_key: None });
        assert_eq!(launch(&torchrun).unwrap(), Launch::Torchrun { rank: 1, world: 2, local_rank: 1, local_world: 2, master });
        let agent = [("TORCHELASTIC_USE_AGENT_STORE", "True"), ("TORCHELASTIC_RESTART_COUNT", "2")];
        let Launch::Torchrun { master: Some(master), .. } = launch(&[&torchrun[..], &agent].concat()).unwrap() else { panic!("a torchrun launch") };
        assert_eq!(master.agent_store_key.as_deref(), Some("ferronet/nccl_unique_id/2"));
        let unaddressed = Launch::Torchrun { rank: 0, world: 2, local_rank: 0, local_world: 2, master: None };
        assert_eq!(launch(&[("RANK", "0"), ("WORLD_SIZE", "2")]).unwrap(), unaddressed);
        let err = launch(&[("RANK", "2"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(err.contains("RANK=2"), "{err}");
        let bad = launch(&[("OMPI_COMM_WORLD_RANK", "x"), ("OMPI_COMM_WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(bad.contains("OMPI_COMM_WORLD_RANK=x"), "{bad}");
    }

    #[test]
    fn auto_takes_nccl_between_cuda_devices_and_mpi_on_the_cpu() {
        assert_eq!(DistBackend::Auto.resolve("cuda:1", true).unwrap(), Reduction::Nccl);
        assert_eq!(DistBackend::Auto.resolve("cpu", false).unwrap(), Reduction::Mpi);
        assert_eq!(DistBackend::Mpi.resolve("cuda:0", true).unwrap(), Reduction::Mpi);
        assert_eq!(DistBackend::Nccl.resolve("cuda:0", true).unwrap(), Reduction::Nccl);
        let err = DistBackend::Nccl.resolve("sim", false).unwrap_err().to_string();
        assert!(err.contains("--dist-backend mpi") && err.contains("sim"), "{err}");
    }

    #[test]
    fn a_torchrun_launch_of_cpu_ranks_is_refused_with_the_mpirun_command() {
        let master = Some(Master { addr: "localhost".into(), port: 29500, agent_store_key: None });
        let launch = Launch::Torchrun { rank: 0, world: 2, local_rank: 0, local_world: 2, master };
        let err = ProcessGroup::join(&launch, Duration::from_secs(1), None).err().unwrap().to_string();
        assert!(err.contains("mpirun -np 2") && err.contains("--device cuda"), "{err}");
        let launch = Launch::Torchrun { rank: 0, world: 2, local_rank: 0, local_world: 2, master: None };
        let err = ProcessGroup::join(&launch, Duration::from_secs(1), Some(0)).err().unwrap().to_string();
        assert!(err.contains("MASTER_ADDR and MASTER_PORT"), "{err}");
    }

    #[test]
    fn a_group_of_one_leaves_values_unchanged() {
        let group = ProcessGroup::alone();
        let mut v = [1.5, -2.0];
        group.all_reduce_sum(&mut v).unwrap();
        group.broadcast(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);
        assert_eq!((group.rank(), group.world_size(), group.is_leader()), (0, 1, true));
        assert_eq!(group.broadcast_text("runs/7").unwrap(), "runs/7");
        assert!(group.any(true).unwrap() && !group.any(false).unwrap());
        assert_eq!(group.all_gather(&[3.0, 4.0]).unwrap(), [3.0, 4.0]);
    }
}
