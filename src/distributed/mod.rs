//! Data-parallel training over MPI: one process (a *rank*) per device, started by `mpirun` or
//! `srun` as every MPI program is. This module owns every MPI call; the rest of rbl sees a
//! [`World`] (this rank, how many, which on its node) and a handful of collective operations
//! on plain slices, which are no-ops on a single process.
//!
//! What a run over N ranks does, and why it means the same as one process:
//! - `train.batch_size` is the *global* batch. Every rank draws the same epoch order and the
//!   same augmentation for the whole global batch, and renders only its slice
//!   ([`shard`]); so the images a step sees, and how they were augmented, do not depend on N.
//! - After the backward pass the gradients are averaged over the ranks, weighted by each
//!   rank's share of the batch ([`gradients`]), packed into one buffer (one all-reduce per step,
//!   not one per tensor); every rank then takes the same SGD step and the weights stay equal.
//! - BatchNorm uses each rank's own batch statistics (as PyTorch's DDP does by default); the
//!   running statistics are averaged over the ranks before any evaluation or checkpoint
//!   ([`batch_norm`]), so the saved model is one model.
//! - Evaluation is sharded: each rank scores its slice of the set and the logits are summed
//!   into the full array ([`World::gather_rows`]), so every rank computes the same metrics.
//! - Only rank 0 writes the run folder and holds its lock. An interrupt on any rank is agreed
//!   at the next step ([`World::any`]), so all stop together and rank 0 writes the checkpoint; an
//!   error on any rank aborts the job ([`World::abort`]) rather than leave the others waiting.

pub mod batch_norm;
pub mod gradients;
pub mod shard;

use std::sync::OnceLock;

/// This process's place in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct World {
    /// This rank, 0 … size − 1.
    pub rank: usize,
    /// Ranks in the job.
    pub size: usize,
    /// This rank among the ranks on its machine (picks the GPU of a multi-GPU node).
    pub local_rank: usize,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The job this process is part of: one rank of one unless [`init`] found an MPI job.
pub fn world() -> &'static World {
    WORLD.get_or_init(|| World { rank: 0, size: 1, local_rank: 0 })
}

/// Ranks a launcher says the job has, from the variables `mpirun` (Open MPI, MPICH's Hydra),
/// PMIx and Slurm set; `None` outside a launcher.
pub fn launcher_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.trim().parse::<usize>().ok()))
}

/// What keeps MPI initialised: dropped at the end of `main`, which finalises it.
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl Drop for Session {
    /// Ends this process's part in the job (MPI_Finalize, through the universe it holds): called
    /// explicitly before `std::process::exit`, which runs no destructors.
    fn drop(&mut self) {}
}

/// Joins the MPI job this process was started in, if any. Without the `mpi` feature a process
/// started as one of several ranks is refused (it would train N independent copies that all
/// write the same run folder).
pub fn init() -> Result<Session, String> {
    let ranks = launcher_ranks().unwrap_or(1);
    #[cfg(not(feature = "mpi"))]
    {
        if ranks > 1 {
            return Err(format!(
                "started as one of {ranks} ranks (mpirun / srun), but this rbl was built without MPI: build it with \
                 `cargo build --release --features mpi` (needs Open MPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev), \
                 or run a single process"
            ));
        }
        let _ = WORLD.set(World { rank: 0, size: 1, local_rank: 0 });
        Ok(Session {})
    }
    #[cfg(feature = "mpi")]
    {
        use mpi::traits::Communicator;
        if ranks <= 1 && !mpi::environment::is_initialized() && std::env::var_os("OMPI_COMM_WORLD_SIZE").is_none() {
            // Not under a launcher: no MPI at all (a plain `rbl train` needs no mpirun).
            let _ = WORLD.set(World { rank: 0, size: 1, local_rank: 0 });
            return Ok(Session { _universe: None });
        }
        // Collective calls come from the kernels' pool thread, not the main thread: one thread
        // at a time, which MPI calls "serialized".
        let (universe, threading) =
            mpi::initialize_with_threading(mpi::Threading::Serialized).ok_or_else(|| "MPI was already initialised".to_string())?;
        if threading < mpi::Threading::Serialized {
            return Err(format!("the MPI library offers only {threading:?} threading; rbl needs Serialized"));
        }
        let comm = universe.world();
        let local = comm.split_shared(comm.rank());
        let _ = WORLD.set(World { rank: comm.rank() as usize, size: comm.size() as usize, local_rank: local.rank() as usize });
        Ok(Session { _universe: Some(universe) })
    }
}

impl World {
    /// Whether this rank writes the run folder (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Element-wise sum over the ranks, in place (every rank gets the sum).
    pub fn all_reduce_sum(&self, values: &mut [f32]) {
        if self.size > 1 {
            self.reduce_f32(values);
        }
    }

    /// As [`Self::all_reduce_sum`], in f64 (the log's sums).
    pub fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        if self.size > 1 {
            self.reduce_f64(values);
        }
    }

    /// Waits until every rank gets here (rank 0 has finished writing what the others read).
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            use mpi::collective::CommunicatorCollectives;
            mpi::topology::SimpleCommunicator::world().barrier();
        }
    }

    /// Whether `flag` holds on any rank: how the ranks agree to stop at the same step.
    pub fn any(&self, flag: bool) -> bool {
        if self.size == 1 {
            return flag;
        }
        let mut v = [flag as u8 as f64];
        self.reduce_f64(&mut v);
        v[0] > 0.0
    }

    /// The rows `range` of a `total`-row array of `width` values, computed here from this
    /// rank's slice (`local`), completed from every rank's: each rank fills its rows of a
    /// zero array and the arrays are summed (x + 0 is exact, so every rank gets the very
    /// values each slice's owner computed).
    pub fn gather_rows(&self, local: &[f32], range: std::ops::Range<usize>, total: usize, width: usize) -> Vec<f32> {
        if self.size == 1 {
            return local.to_vec();
        }
        let mut all = vec![0f32; total * width];
        all[range.start * width..range.end * width].copy_from_slice(local);
        self.reduce_f32(&mut all);
        all
    }

    /// Ends the whole job with `code`: a rank that cannot go on must not leave the others
    /// waiting in a collective call. Outside a job, exits the process.
    pub fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            use mpi::traits::Communicator;
            mpi::topology::SimpleCommunicator::world().abort(code);
        }
        std::process::exit(code)
    }

    #[cfg(feature = "mpi")]
    fn reduce_f32(&self, values: &mut [f32]) {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        // Large buffers in pieces, so a count never overflows MPI's int.
        for chunk in values.chunks_mut(1 << 28) {
            let send = chunk.to_vec();
            mpi::topology::SimpleCommunicator::world().all_reduce_into(&send[..], chunk, SystemOperation::sum());
        }
    }

    #[cfg(feature = "mpi")]
    fn reduce_f64(&self, values: &mut [f64]) {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        let send = values.to_vec();
        mpi::topology::SimpleCommunicator::world().all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    #[cfg(not(feature = "mpi"))]
    fn reduce_f32(&self, _values: &mut [f32]) {
        unreachable!("a job of several ranks needs the mpi feature (init refuses it otherwise)")
    }

    #[cfg(not(feature = "mpi"))]
    fn reduce_f64(&self, _values: &mut [f64]) {
        unreachable!("a job of several ranks needs the mpi feature (init refuses it otherwise)")
    }
}
