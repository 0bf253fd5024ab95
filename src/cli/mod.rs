//! The `rbl` command line: one file per subcommand, each with its arguments and a `run`.
//! Adding a subcommand: a file here with an `Args` struct and `run`, a variant of [`Command`],
//! and its arm in [`run`].

mod compare;
mod config;
mod data;
mod eval;
mod experiment;
mod export;
mod features;
mod plot;
mod posthoc;
mod predict;
mod report;
mod stage2;
mod table;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Long-tailed image classification with Rotated Balanced Learning.
#[derive(Parser)]
#[command(name = "rbl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a config file, or resume an interrupted run.
    Train(train::Args),
    /// Evaluate a saved checkpoint (a checkpoint folder or a run folder).
    Eval(eval::Args),
    /// Two-stage methods on a trained run (frozen backbone): cRT, LWS, MARC. Writes
    /// stage2-<method>.json into the run folder.
    Stage2(stage2::Args),
    /// Plots of a run (learning curves, per-class accuracy, neural-collapse metrics when
    /// logged) as PNG and SVG into RUN_DIR/plots.
    Plot(plot::Args),
    /// Overlays runs (e.g. Fixed vs RBL): train/test accuracy and cross-entropy per epoch.
    Compare(compare::Args),
    /// A Markdown table of finished runs: rows = methods, columns = dataset / imbalance ratio.
    Table(table::Args),
    /// Experiments of the paper that train several runs and compare them.
    Experiment {
        #[command(subcommand)]
        which: experiment::Experiment,
    },
    /// PCA pictures of the train and test features with the class directions, from a
    /// checkpoint (or a run's latest), into RUN_DIR/features/epoch_NNN.{png,svg}.
    Features(features::Args),
    /// A commented config to start from (`init`), or the effective config with every default
    /// and what rbl would choose from the data (`show`).
    Config {
        #[command(subcommand)]
        which: config::ConfigCommand,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        which: data::DataCommand,
    },
    /// One self-contained HTML page for a run (config, results, plots, feature pictures,
    /// epoch log), written to RUN_DIR/report.html.
    Report(report::Args),
    /// Post-hoc correction of a trained model, its τ chosen on the validation split. Writes
    /// posthoc-<method>.json into the run folder.
    Posthoc(posthoc::Args),
    /// Classifies image files (or folders of them) with a trained run: top-k classes with
    /// names, raw and logit-adjusted probabilities, as a table or JSON Lines (--json).
    Predict(predict::Args),
    /// Writes a trained model's weights as safetensors under the state-dict names of the
    /// equivalent PyTorch module (torchvision's for ResNet-50 / ResNeXt-50), head included.
    Export(export::Args),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    let world = rbl::distributed::world();
    if world.size > 1 && !matches!(cli.command, Command::Train(_)) {
        anyhow::bail!("started as one of {} ranks: only `rbl train` runs over several ranks; run this command as one process", world.size);
    }
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Stage2(args) => stage2::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Table(args) => table::run(args),
        Command::Experiment { which } => experiment::run(which),
        Command::Features(args) => features::run(args),
        Command::Data { which } => data::run(which),
        Command::Config { which } => config::run(which),
        Command::Report(args) => report::run(args),
        Command::Posthoc(args) => posthoc::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Export(args) => export::run(args),
    }
}
