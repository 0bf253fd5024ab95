//! The `rbl` binary: parses the command line and hands it to [`cli::run`]; errors are printed
//! once, and an interrupted run exits 130.

mod cli;

use clap::Parser;

fn main() {
    let _ = rbl_ops::keep_freed_buffers();
    let command = cli::Cli::parse();
    // On a worker of the kernels' thread pool, so that their parallel passes fork from inside it.
    if let Err(e) = rbl_ops::on_kernel_pool(|| cli::run(command)) {
        rbl::note!("error: {e:#}");
        let interrupted =
            matches!(e.downcast_ref::<rbl::RblError>(), Some(rbl::RblError::Interrupted { .. } | rbl::RblError::Stopped { .. }));
        std::process::exit(if interrupted { 130 } else { 1 });
    }
}
