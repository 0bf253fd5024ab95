//! BatchNorm's running statistics made one over the ranks. Each rank normalises with its own
//! batch's moments (PyTorch's DDP default) and so updates its running mean and variance from
//! its own slices; before an evaluation or a checkpoint they are replaced by their average
//! over the ranks, so that every rank holds the same model and the one rank 0 saves is it.
//!
//! (`train.sync_bn`, batch moments all-reduced inside the forward and backward passes as
//! PyTorch's SyncBatchNorm does, is not offered: rbl's CPU kernels fuse the convolution,
//! BatchNorm and their backward into single ops that take the moments from the rows as they
//! compute them, and have no point at which to exchange them.)

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::distributed::World;
use crate::error::{RblError, Result};
use crate::network::Network;

/// Whether a module path names running statistics.
fn is_running_stat(path: &str) -> bool {
    path.ends_with(".running_mean") || path.ends_with(".running_var")
}

/// One running statistic: its module path, shape and values.
type Stat = (String, Vec<usize>, Vec<f32>);

/// Every BatchNorm running statistic of `net`, in the module's order (the same on every rank).
fn running_stats(net: &Network) -> Result<Vec<Stat>> {
    // Fold the pending update of each BatchNorm into its state first (see
    // train::checkpoint::write_checkpoint_files).
    let _ = net.valid();
    let mut named = Vec::new();
    for t in net.collect(None, None, false) {
        if !is_running_stat(&t.name) {
            continue;
        }
        let name = t.name.clone();
        let data = crate::transfer::read_collected(t).map_err(|e| RblError::Model(format!("{name}: {e}")))?.convert::<f32>();
        let shape = data.shape().to_vec();
        named.push((name, shape, data.as_slice::<f32>().expect("f32 after convert").to_vec()));
    }
    Ok(named)
}

/// `net` with its running statistics replaced by `values` (flat, in [`running_stats`]' order).
fn with_running_stats(net: Network, named: &[Stat], values: &[f32]) -> Result<Network> {
    let mut at = 0;
    let mut bytes: Vec<Vec<u8>> = Vec::with_capacity(named.len());
    for (_, _, v) in named {
        bytes.push(values[at..at + v.len()].iter().flat_map(|x| x.to_le_bytes()).collect());
        at += v.len();
    }
    let views = named
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| RblError::Model(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let image = safetensors::serialize(views, None).map_err(|e| RblError::Model(e.to_string()))?;
    let mut net = net;
    let mut store = SafetensorsStore::from_bytes(Some(image)).allow_partial(true).validate(true);
    let result = net.load_from(&mut store).map_err(|e| RblError::Model(format!("setting BatchNorm statistics: {e}")))?;
    if !result.errors.is_empty() || result.applied.len() != named.len() {
        return Err(RblError::Model(format!(
            "setting BatchNorm statistics: {} of {} applied ({:?})",
            result.applied.len(),
            named.len(),
            result.errors.first().map(|e| e.to_string())
        )));
    }
    Ok(net)
}

/// `net` with every BatchNorm's running mean and variance averaged over the ranks.
pub fn average_running_stats(world: &World, net: Network) -> Result<Network> {
    if world.size == 1 {
        return Ok(net);
    }
    let named = running_stats(&net)?;
    let mut buffer: Vec<f32> = named.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
    world.all_reduce_sum(&mut buffer);
    let inverse = 1.0 / world.size as f32;
    buffer.iter_mut().for_each(|x| *x *= inverse);
    with_running_stats(net, &named, &buffer)
}

/// Every rank's running statistics, rank after rank (each rank gets all of them): what a
/// mid-epoch checkpoint keeps so that each rank resumes with its own.
pub fn all_ranks_running_stats(world: &World, net: &Network) -> Result<Vec<f32>> {
    let own: Vec<f32> = running_stats(net)?.into_iter().flat_map(|(_, _, v)| v).collect();
    let len = own.len();
    Ok(world.gather_rows(&own, world.rank..world.rank + 1, world.size, len))
}

/// `net` with this rank's running statistics taken from `all` (as [`all_ranks_running_stats`]
/// gave them, over `ranks` ranks). Under another number of ranks than the checkpoint's, each
/// rank takes their average.
pub fn restore_own_running_stats(world: &World, net: Network, all: &[f32], ranks: usize) -> Result<Network> {
    let named = running_stats(&net)?;
    let len: usize = named.iter().map(|(_, _, v)| v.len()).sum();
    if ranks == 0 || all.len() != ranks * len {
        return Err(RblError::Model(format!("{} saved BatchNorm statistics for {ranks} ranks of {len}", all.len())));
    }
    let values: Vec<f32> = if ranks == world.size {
        all[world.rank * len..(world.rank + 1) * len].to_vec()
    } else {
        (0..len).map(|i| (0..ranks).map(|r| all[r * len + i]).sum::<f32>() / ranks as f32).collect()
    };
    with_running_stats(net, &named, &values)
}
