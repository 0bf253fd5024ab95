//! `rbl-bench`: throughput of rbl's own training step and eval forward on random data, the
//! Rust half of `bench/run.sh` (the PyTorch half is `bench/torch_step.py`, the same step).
//!
//! The model is the paper's: ResNet-32 (16/32/64), a 256-d projection, the RBL head (ETF behind
//! R = B0·exp(A − Aᵀ)), cross-entropy, SGD-Nesterov with weight decay; or, with `--backbone`,
//! ResNet-50 / ResNeXt-50 (the ImageNet-LT path). Prints one JSON line per (batch, input) with
//! train and eval images/s and the process's peak resident memory. `--mode loader` measures
//! the input pipeline instead: images/s the loader crops, flips, AutoAugments, Cutouts and
//! normalises per thread count (what a GPU run needs it to keep up with).

use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Tensor;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use rbl::ExperimentConfig;
use rbl::data::ImageSet;
use rbl::data::augment::Augmenter;
use rbl::data::loader::{Loader, LoaderPlan};
use rbl::head::HeadKind;
use rbl::loss::Criterion;
use rbl::model::backbone::BackboneKind;
use rbl::model::precision::Precision;
use rbl::network::Network;
use rbl::train::device::{DeviceKind, device_for};
use rbl::train::kernel_count::KernelCount;
use rbl::train::optimizer::build_optimizer;
use rbl::train::step::{StepBatch, StepSettings, train_step};
use rbl::train::step_log::{StepLog, read_every};
use rbl::transfer;

/// Step benchmark of rbl (see bench/README.md).
#[derive(Parser)]
#[command(name = "rbl-bench", version, about)]
struct Args {
    /// cpu (flex) or gpu (wgpu; a --features gpu build).
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Batch sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "128")]
    batch: Vec<usize>,
    /// Input shapes CxHxW (comma-separated), e.g. 3x32x32,1x28x28.
    #[arg(long, value_delimiter = ',', default_value = "3x32x32")]
    input: Vec<String>,
    /// Untimed steps first (allocations, caches, GPU autotuning).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed training steps, and timed eval batches.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Classes of the head (10: CIFAR-10).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Head: rbl, etf or linear.
    #[arg(long, value_enum, default_value = "rbl")]
    head: HeadKind,
    /// Convolution arithmetic (mixed precision, train.precision).
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Backbone (resnet32 at model.widths 16/32/64, or the 224-px ImageNet networks).
    #[arg(long, value_enum, default_value = "resnet32")]
    backbone: BackboneKind,
    /// What to measure: the training step and eval forward, or the input pipeline.
    #[arg(long, value_enum, default_value = "step")]
    mode: Mode,
    /// `--mode loader`: loader thread counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    workers: Vec<usize>,
    /// `--mode loader`: the full CIFAR recipe (crop, flip, AutoAugment, Cutout 16) rather than
    /// crop and flip.
    #[arg(long)]
    full_augment: bool,
    /// A contrastive method's step (two views per image, the projection and its loss; images/s
    /// count images, not views): none, kcl, tsc or hcl.
    #[arg(long, value_enum, default_value = "none")]
    contrastive: rbl::config::ContrastiveKind,
    /// Also list, on stderr, the GPU kernels a training step launches, by name and count.
    #[arg(long)]
    kernels: bool,
}

/// What `rbl-bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Training step and eval forward.
    Step,
    /// The loader: augmentation and normalisation of batches.
    Loader,
}

fn main() -> Result<()> {
    let _ = rbl_ops::keep_freed_buffers();
    let args = Args::parse();
    rbl_ops::requested_level().map_err(anyhow::Error::msg)?;
    // Under `mpirun -np N` (an `mpi` build) the training step runs data-parallel: each rank a
    // slice of the global batch, gradients averaged, and rank 0 prints.
    let _session = rbl::distributed::init().map_err(anyhow::Error::msg)?;
    // As `rbl` runs its commands: on a worker of the kernels' pool (rbl_ops::on_kernel_pool).
    rbl_ops::on_kernel_pool(|| run(args))
}

fn run(args: Args) -> Result<()> {
    for input in &args.input {
        let dims: Vec<usize> = input.split('x').map(|d| d.parse()).collect::<std::result::Result<_, _>>()?;
        let [c, h, w] = dims[..] else { bail!("--input {input}: expected CxHxW") };
        for &batch in &args.batch {
            if args.mode == Mode::Loader {
                for &workers in &args.workers {
                    let rate = measure_loader(&args, batch, [c, h, w], workers);
                    println!(
                        "{{\"impl\":\"rbl\",\"bench\":\"loader\",\"batch\":{batch},\"input\":\"{input}\",\"workers\":{workers},\"full_augment\":{},\"images_per_s\":{rate:.1}}}",
                        args.full_augment
                    );
                }
                continue;
            }
            let Measured { train, eval, kernels_per_step, transfers } = measure(&args, batch, [c, h, w])?;
            let world = rbl::distributed::world();
            if !world.is_root() {
                continue;
            }
            println!(
                "{{\"impl\":\"rbl\",\"device\":\"{}\",\"backbone\":\"{}\",\"head\":\"{}\",\"precision\":\"{}\",\"contrastive\":\"{}\",\"batch\":{batch},\"input\":\"{input}\",\"threads\":{},\"cpu_kernels\":\"{}\",\"cpu_features\":\"{}\",\"ranks\":{},\"train_img_s\":{train:.2},\"eval_img_s\":{eval:.2},\"kernels_per_step\":{kernels_per_step:.1},{},\"peak_rss_mb\":{:.1}}}",
                args.device,
                args.backbone,
                args.head,
                rbl::config::variant_name(&args.precision),
                args.contrastive,
                cpu_threads(),
                rbl_ops::kernel_path(),
                rbl_ops::cpu_features().names(),
                world.size,
                transfers.json(),
                peak_rss_mb()
            );
        }
    }
    Ok(())
}

/// Train and eval images per second, and kernels per training step, for one batch size and
/// input shape.
fn measure(args: &Args, batch: usize, [c, h, w]: [usize; 3]) -> Result<Measured> {
    let mut cfg = ExperimentConfig { device: args.device, ..Default::default() };
    cfg.model.head = args.head;
    cfg.model.backbone = args.backbone;
    if args.backbone == BackboneKind::Resnet32 {
        cfg.model.widths = [16, 32, 64];
        cfg.model.feature_dim = 256;
    }
    cfg.train.precision = args.precision;
    cfg.contrastive.method = args.contrastive;
    if args.contrastive != rbl::config::ContrastiveKind::None && rbl::distributed::world().size > 1 {
        bail!("--contrastive runs on one process (rbl refuses contrastive methods over several ranks)");
    }
    let device = device_for(&cfg)?;
    let train_device = device.clone().autodiff();
    cfg.seed = 0;
    train_device.seed(cfg.seed);
    let mut net = Network::seeded(&cfg, c, args.classes, &train_device)?;
    let mut optim = build_optimizer(&cfg.train);
    let criterion = Criterion::new(&cfg.loss, &vec![1; args.classes])?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let all_images: Vec<f32> = (0..batch * c * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
    let all_labels: Vec<i64> = (0..batch).map(|_| rng.random_range(0..args.classes as i64)).collect();
    // This rank's slice of the global batch (all of it on one process).
    let world = rbl::distributed::world();
    let mine = world.shard(batch);
    let local = mine.len();
    let images = all_images[mine.start * c * h * w..mine.end * c * h * w].to_vec();
    let labels = all_labels[mine.clone()].to_vec();

    let contrast = rbl::contrastive::ContrastiveTraining::new(&cfg.contrastive, args.classes, 0, 2, &train_device)?;
    let second: Vec<f32> = (0..images.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    // HCL at its second epoch of two: both branches weighted (at epoch 0 the classifier's is 0).
    let settings = StepSettings { criterion: &criterion, epoch: 1, lr: 0.01, loss_scale: cfg.loss_scale(), contrast: contrast.as_ref() };
    // As the training loop does: the losses are read a window of steps at a time (every step
    // on the CPU), and the clock stops after the last read, so queued GPU work is counted.
    let step_once = |net: Network, optim: &mut _, log: &mut StepLog| -> Result<Network> {
        let x: Tensor<4> = transfer::upload_vec(images.clone(), [local, c, h, w], &train_device);
        let second_view = contrast.as_ref().map(|_| (transfer::upload_vec(second.clone(), [local, c, h, w], &train_device), 7));
        let (net, readings) =
            train_step(net, optim, StepBatch { images: x, labels: &labels, mix: None, global: batch, seen: None, second_view }, &settings);
        log.push(readings)?;
        Ok(net)
    };
    let mut log = StepLog::new(Default::default(), read_every(args.device));
    for _ in 0..args.warmup {
        net = step_once(net, &mut optim, &mut log)?;
    }
    log.read()?;
    let t0 = Instant::now();
    let counting = KernelCount::start();
    let transfers_before = transfer::totals();
    for _ in 0..args.steps {
        net = step_once(net, &mut optim, &mut log)?;
    }
    log.read()?;
    let transfers = PerStep::of(transfer::totals() - transfers_before, args.steps);
    let kernels = counting.finish();
    let timed = t0.elapsed().as_secs_f64();
    let train = (args.steps * batch) as f64 / timed.max(1e-9);
    let launched: usize = kernels.values().sum();
    let kernels_per_step = launched as f64 / args.steps.max(1) as f64;
    if args.kernels {
        let mut by_count: Vec<_> = kernels.into_iter().collect();
        by_count.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        for (name, n) in by_count {
            eprintln!("{:>8.1} per step  {}", n as f64 / args.steps.max(1) as f64, short_kernel_name(name));
        }
    }
    if world.size > 1 {
        // The data-parallel measurement is the training step; evaluation is not timed.
        return Ok(Measured { train, eval: 0.0, kernels_per_step, transfers });
    }

    // Eval: the frozen network as `forward_all` runs it: BatchNorms folded, directions computed
    // once per pass.
    let eval_net = net.valid().fold_batch_norms();
    let directions = eval_net.head.class_directions();
    let mut timed = 0.0;
    for step in 0..args.warmup + args.steps {
        let t0 = Instant::now();
        let x: Tensor<4> = transfer::upload_vec(all_images.clone(), [batch, c, h, w], &device);
        let logits = eval_net.head.logits_with(eval_net.features(x), directions.clone());
        let host: Vec<f32> = transfer::read_f32(logits);
        std::hint::black_box(host);
        if step >= args.warmup {
            timed += t0.elapsed().as_secs_f64();
        }
    }
    let eval = (args.steps * batch) as f64 / timed.max(1e-9);
    Ok(Measured { train, eval, kernels_per_step, transfers })
}

/// A kernel's type name without its module paths (`KernelBinop<MulOp>`), cut at 120
/// characters: the matmuls' names run to kilobytes of generic parameters.
fn short_kernel_name(name: &str) -> String {
    let mut short = String::new();
    for (i, part) in name.split("::").enumerate() {
        if i > 0 {
            // What precedes a `::` is a module name: drop it.
            let module_start = short.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |j| j + 1);
            short.truncate(module_start);
        }
        short.push_str(part);
    }
    if short.chars().count() > 120 {
        short = short.chars().take(119).collect::<String>() + "…";
    }
    short
}

/// What one (batch, input) measurement gives.
struct Measured {
    /// Training images per second.
    train: f64,
    /// Evaluation images per second (0 under several ranks: not timed).
    eval: f64,
    /// GPU kernels launched per timed training step (0 on the CPU).
    kernels_per_step: f64,
    /// Host↔device transfers of the timed training steps.
    transfers: PerStep,
}

/// The transfers of `steps` training steps (`rbl::transfer`), in total and per step. The
/// reads include the step log's, one per 32 steps on a GPU and one at the end: the host waits
/// the training loop has.
struct PerStep {
    total: transfer::Transfers,
    steps: usize,
}

impl PerStep {
    fn of(total: transfer::Transfers, steps: usize) -> PerStep {
        PerStep { total, steps: steps.max(1) }
    }

    /// The JSON fields: totals over the timed steps and their per-step means.
    fn json(&self) -> String {
        let t = &self.total;
        let per = |v: u64| v as f64 / self.steps as f64;
        format!(
            "\"timed_steps\":{},\"reads\":{},\"uploads\":{},\"reads_per_step\":{:.3},\"read_bytes_per_step\":{:.0},\"uploads_per_step\":{:.2},\"upload_bytes_per_step\":{:.0}",
            self.steps,
            t.reads,
            t.uploads,
            per(t.reads),
            per(t.read_bytes),
            per(t.uploads),
            per(t.upload_bytes)
        )
    }
}

/// Images per second the loader delivers for an epoch-like pass over 4,096 random images of
/// `[c, h, w]` in batches of `batch` on `workers` threads, nobody consuming them (one warm-up
/// pass first).
fn measure_loader(args: &Args, batch: usize, [c, h, w]: [usize; 3], workers: usize) -> f64 {
    let n = 4096;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let set = std::sync::Arc::new(ImageSet {
        pixels: (0..n * c * h * w).map(|_| rng.random()).collect(),
        labels: (0..n).map(|i| (i % args.classes) as u32).collect(),
        num_classes: args.classes,
        channels: c,
        height: h,
        width: w,
        files: None,
    });
    let full = args.full_augment;
    let aug = std::sync::Arc::new(Augmenter {
        mean: vec![0.5; c],
        std: vec![0.25; c],
        crop_padding: 4,
        flip: true,
        autoaugment: full,
        cutout: if full { 16 } else { 0 },
    });
    let pass = |seed| {
        let plan = LoaderPlan {
            batch_size: batch,
            seed: Some(seed),
            drop_last: false,
            sampler: Default::default(),
            skip: 0,
            mixup_alpha: 0.0,
            unimix_tau: None,
            workers,
            shard: (0, 1),
            two_views: false,
        };
        let t0 = Instant::now();
        let images: usize = Loader::start(set.clone(), aug.clone(), plan).map(|b| b.len()).sum();
        images as f64 / t0.elapsed().as_secs_f64()
    };
    pass(0);
    pass(1)
}

/// The CPU threads the kernels use: RAYON_NUM_THREADS, else the cores available.
fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process's peak resident set (VmHWM) in MiB; 0 where /proc is missing.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::short_kernel_name;

    #[test]
    fn kernel_names_lose_their_module_paths() {
        assert_eq!(
            short_kernel_name("burn_cubecl::kernel::binary::kernel_binop::KernelBinop<burn_cubecl::kernel::binary::MulOp>"),
            "KernelBinop<MulOp>"
        );
        assert_eq!(short_kernel_name("a::B<c::D, e::F<g::H>>"), "B<D, F<H>>");
        assert_eq!(short_kernel_name("Plain"), "Plain");
        assert_eq!(short_kernel_name(&format!("m::{}", "X".repeat(200))).chars().count(), 120);
    }
}
