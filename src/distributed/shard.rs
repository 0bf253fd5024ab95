//! Which part of a global batch (or an evaluation set) a rank takes: contiguous slices,
//! rank r of N taking ⌊r·n/N⌋ … ⌊(r+1)·n/N⌋, so the slices tile the whole in rank order and
//! differ in size by at most one.

use std::ops::Range;

/// Rank `rank` of `size`'s slice of `n` items.
pub fn slice(rank: usize, size: usize, n: usize) -> Range<usize> {
    (rank * n / size)..((rank + 1) * n / size)
}

impl crate::distributed::World {
    /// This rank's slice of `n` items.
    pub fn shard(&self, n: usize) -> Range<usize> {
        slice(self.rank, self.size, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_tile_the_whole_in_rank_order() {
        for n in [0, 1, 7, 128, 255] {
            for size in 1..=5 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| slice(r, size, n)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
                assert!(parts.iter().all(|p| p.len() == n / size || p.len() == n / size + 1));
            }
        }
    }
}
