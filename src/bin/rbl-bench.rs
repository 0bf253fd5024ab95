//! `rbl-bench`: throughput of rbl's own training step and eval forward on random data, the
//! Rust half of `bench/run.sh` (the PyTorch half is `bench/torch_step.py`, the same step).
//!
//! The model is the paper's: ResNet-32 (16/32/64), a 256-d projection, the RBL head (ETF behind
//! R = B0·exp(A − Aᵀ)), cross-entropy, SGD-Nesterov with weight decay. Prints one JSON line per
//! (batch, input) with train and eval images/s and the process's peak resident memory.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use rbl::ExperimentConfig;
use rbl::head::HeadKind;
use rbl::loss::Criterion;
use rbl::model::precision::Precision;
use rbl::network::Network;
use rbl::train::device::{DeviceKind, device_for};
use rbl::train::optimizer::build_optimizer;
use rbl::train::step::{StepBatch, StepSettings, train_step};

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
}

fn main() -> Result<()> {
    let _ = rbl_ops::keep_freed_buffers();
    let args = Args::parse();
    for input in &args.input {
        let dims: Vec<usize> = input.split('x').map(|d| d.parse()).collect::<std::result::Result<_, _>>()?;
        let [c, h, w] = dims[..] else { bail!("--input {input}: expected CxHxW") };
        for &batch in &args.batch {
            let (train, eval) = measure(&args, batch, [c, h, w])?;
            println!(
                "{{\"impl\":\"rbl\",\"device\":\"{}\",\"head\":\"{}\",\"precision\":\"{}\",\"batch\":{batch},\"input\":\"{input}\",\"train_img_s\":{train:.2},\"eval_img_s\":{eval:.2},\"peak_rss_mb\":{:.1}}}",
                args.device,
                args.head,
                rbl::config::variant_name(&args.precision),
                peak_rss_mb()
            );
        }
    }
    Ok(())
}

/// Train and eval images per second for one batch size and input shape.
fn measure(args: &Args, batch: usize, [c, h, w]: [usize; 3]) -> Result<(f64, f64)> {
    let mut cfg = ExperimentConfig { device: args.device, ..Default::default() };
    cfg.model.head = args.head;
    cfg.model.widths = [16, 32, 64];
    cfg.model.feature_dim = 256;
    cfg.train.precision = args.precision;
    let device = device_for(&cfg)?;
    let train_device = device.clone().autodiff();
    train_device.seed(0);
    let mut net = Network::from_config(&cfg, c, args.classes, &train_device)?;
    let mut optim = build_optimizer(&cfg.train);
    let criterion = Criterion::new(&cfg.loss, &vec![1; args.classes])?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let images: Vec<f32> = (0..batch * c * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels: Vec<i64> = (0..batch).map(|_| rng.random_range(0..args.classes as i64)).collect();

    let settings = StepSettings { criterion: &criterion, epoch: 0, lr: 0.01, loss_scale: cfg.loss_scale() };
    let mut timed = 0.0;
    for step in 0..args.warmup + args.steps {
        let t0 = Instant::now();
        let x = Tensor::<4>::from_data(TensorData::new(images.clone(), [batch, c, h, w]), &train_device);
        let (updated, stats) = train_step(net, &mut optim, StepBatch { images: x, labels: &labels, mix: None }, &settings);
        net = updated;
        if !stats.loss.is_finite() {
            bail!("loss became {} at step {step}", stats.loss);
        }
        if step >= args.warmup {
            timed += t0.elapsed().as_secs_f64();
        }
    }
    let train = (args.steps * batch) as f64 / timed.max(1e-9);

    // Eval: the frozen network as `forward_all` runs it: BatchNorms folded, directions computed
    // once per pass.
    let eval_net = net.valid().fold_batch_norms();
    let directions = eval_net.head.class_directions();
    let mut timed = 0.0;
    for step in 0..args.warmup + args.steps {
        let t0 = Instant::now();
        let x = Tensor::<4>::from_data(TensorData::new(images.clone(), [batch, c, h, w]), &device);
        let logits = eval_net.head.logits_with(eval_net.features(x), directions.clone());
        let host: Vec<f32> = logits.into_data().try_to_vec().expect("f32 logits");
        std::hint::black_box(host);
        if step >= args.warmup {
            timed += t0.elapsed().as_secs_f64();
        }
    }
    let eval = (args.steps * batch) as f64 / timed.max(1e-9);
    Ok((train, eval))
}

/// The process's peak resident set (VmHWM) in MiB; 0 where /proc is missing.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
