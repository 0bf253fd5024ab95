//! The assignment problem: given costs c[i][j] (n × n), the permutation σ minimising
//! Σ_i c[i][σ(i)]. TSC solves it every step to give each class the target nearest its
//! centroid overall (cost −cos(centroid_i, target_j)), as the reference does with SciPy's
//! `linear_sum_assignment`.
//!
//! The Hungarian method with potentials u, v (u_i + v_j ≤ c_ij, equal on the matched pairs):
//! rows are added one at a time, each by a shortest augmenting path over reduced costs
//! c_ij − u_i − v_j (Dijkstra-like, O(n²) per row, O(n³) in all). At the end the matching is
//! optimal because the potentials prove it (complementary slackness).

/// The optimal assignment: `result[i]` is the column given to row `i`. `costs` is n rows of
/// n finite values.
pub fn min_cost_assignment(costs: &[Vec<f64>]) -> Vec<usize> {
    let n = costs.len();
    if n == 0 {
        return Vec::new();
    }
    debug_assert!(costs.iter().all(|r| r.len() == n && r.iter().all(|x| x.is_finite())));
    // 1-based internally: column 0 is the virtual start of each augmenting path.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut row_of = vec![0usize; n + 1]; // row matched to column j (0 = free)
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0usize;
        let mut min_to = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let reduced = costs[i0 - 1][j - 1] - u[i0] - v[j];
                if reduced < min_to[j] {
                    min_to[j] = reduced;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        // Flip the augmenting path.
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut result = vec![0usize; n];
    for j in 1..=n {
        result[row_of[j] - 1] = j - 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn total(costs: &[Vec<f64>], a: &[usize]) -> f64 {
        a.iter().enumerate().map(|(i, &j)| costs[i][j]).sum()
    }

    /// Every permutation of 0..n (Heap's algorithm), for the brute-force optimum.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        fn go(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        go(n, &mut (0..n).collect(), &mut out);
        out
    }

    #[test]
    fn a_case_whose_optimum_is_known() {
        // The cheap entries form the permutation 2, 0, 3, 1; every other cost is 10.
        let want = [2usize, 0, 3, 1];
        let costs: Vec<Vec<f64>> = (0..4).map(|i| (0..4).map(|j| if want[i] == j { 1.0 } else { 10.0 }).collect()).collect();
        assert_eq!(min_cost_assignment(&costs), want);
        // Greedy row by row would be wrong here: row 0 takes column 0 (cost 1), leaving row 1
        // a cost of 100; the optimum gives row 0 column 1 (cost 2) and row 1 column 0 (3).
        let costs = vec![vec![1.0, 2.0], vec![3.0, 100.0]];
        assert_eq!(min_cost_assignment(&costs), vec![1, 0]);
        assert!(min_cost_assignment(&[]).is_empty());
        assert_eq!(min_cost_assignment(&[vec![-4.0]]), vec![0]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let perms = permutations(6);
        assert_eq!(perms.len(), 720);
        for trial in 0..50 {
            let n = 1 + trial % 6;
            // Negative cosines, as TSC passes them; ties on small integers now and then.
            let costs: Vec<Vec<f64>> = (0..n)
                .map(|_| (0..n).map(|_| if trial % 5 == 0 { rng.random_range(0..3) as f64 } else { rng.random_range(-1.0..1.0) }).collect())
                .collect();
            let got = min_cost_assignment(&costs);
            let mut seen = got.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "a permutation");
            let best = permutations(n).iter().map(|p| total(&costs, p)).fold(f64::INFINITY, f64::min);
            assert!((total(&costs, &got) - best).abs() < 1e-12, "trial {trial}: {} vs {best}", total(&costs, &got));
        }
    }
}
