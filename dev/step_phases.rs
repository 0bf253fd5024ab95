//! Wall-clock split of one training step into phases (development aid).
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use rbl::config::ExperimentConfig;
use rbl::loss::Criterion;
use rbl::network::Network;
use rbl::train::device::device_for;
use rbl::train::optimizer::build_optimizer;
use std::time::Instant;
fn main() {
    rbl_ops::keep_freed_buffers();
    let args: Vec<String> = std::env::args().collect();
    let (c, h, w) = if args.iter().any(|a| a == "28") { (1, 28, 28) } else { (3, 32, 32) };
    let batch = if args.iter().any(|a| a == "256") { 256 } else { 128 };
    let mut cfg = ExperimentConfig::default();
    cfg.model.widths = [16, 32, 64];
    cfg.model.feature_dim = 256;
    let device = device_for(&cfg).unwrap().autodiff();
    let mut net = Network::from_config(&cfg, c, 10, &device).unwrap();
    let mut optim = build_optimizer(&cfg.train);
    let criterion = Criterion::new(&cfg.loss, &[1; 10]).unwrap();
    let images: Vec<f32> = (0..batch * c * h * w).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect();
    let labels: Vec<i64> = (0..batch).map(|i| (i % 10) as i64).collect();
    let mut acc = [0.0f64; 5];
    for step in 0..7 {
        let t0 = Instant::now();
        let x = Tensor::<4>::from_data(TensorData::new(images.clone(), [batch, c, h, w]), &device);
        let features = net.features(x);
        let f: Vec<f32> = features.clone().detach().slice([0..1, 0..1]).into_data().try_to_vec().unwrap();
        let t1 = Instant::now();
        let directions = net.head.class_directions();
        let logits = net.head.logits_with(features, directions);
        let loss = criterion.forward(&rbl::loss::LossInputs::logits(logits), &labels, 0);
        let l: Vec<f32> = loss.clone().detach().into_data().try_to_vec().unwrap();
        let t2 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let t3 = Instant::now();
        net = optim.step(0.01, net, grads);
        let _ = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64], [1]), &device);
        let t4 = Instant::now();
        if step >= 2 {
            for (a, d) in acc.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]) {
                *a += d.as_secs_f64() * 1e3 / 5.0;
            }
        }
        std::hint::black_box((f, l));
    }
    println!(
        "backbone fwd {:.1} ms | head+loss fwd {:.1} | backward {:.1} | optimizer {:.1} | total {:.1}",
        acc[0], acc[1], acc[2], acc[3], acc[4]
    );
}
