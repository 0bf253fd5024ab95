//! The `rbl` binary: parses the command line and hands it to [`cli::run`]; errors are printed
//! once, and an interrupted run exits 130. Started by `mpirun` / `srun` (an `mpi` build), it
//! is one rank of a data-parallel run ([`rbl::distributed`]): an error on any rank ends the
//! whole job, so no rank is left waiting for another.

mod cli;

use clap::Parser;

fn main() {
    let _ = rbl_ops::keep_freed_buffers();
    let command = cli::Cli::parse();
    if let Err(e) = rbl_ops::requested_level() {
        rbl::note!("error: {e}");
        std::process::exit(2);
    }
    let session = match rbl::distributed::init() {
        Ok(session) => session,
        Err(e) => {
            rbl::note!("error: {e}");
            std::process::exit(1);
        }
    };
    let world = rbl::distributed::world();
    // On a worker of the kernels' thread pool, so that their parallel passes fork from inside it.
    if let Err(e) = rbl_ops::on_kernel_pool(|| cli::run(command)) {
        let prefix = if world.size > 1 { format!("rank {} of {}: ", world.rank, world.size) } else { String::new() };
        rbl::note!("{prefix}error: {e:#}");
        let interrupted =
            matches!(e.downcast_ref::<rbl::RblError>(), Some(rbl::RblError::Interrupted { .. } | rbl::RblError::Stopped { .. }));
        let code = if interrupted { 130 } else { 1 };
        if world.size > 1 && !matches!(e.downcast_ref::<rbl::RblError>(), Some(rbl::RblError::Interrupted { .. })) {
            // The other ranks may be waiting in a collective call for this one.
            world.abort(code);
        }
        drop(session);
        std::process::exit(code);
    }
    drop(session);
}
