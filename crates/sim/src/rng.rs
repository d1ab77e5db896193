//! The simulation's one source of randomness: a seeded PCG generator (`rand_pcg`), so that the
//! same seed replays the identical run.

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Seeded, deterministic random choices.
pub(crate) struct SimRng(Pcg64Mcg);

impl SimRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(Pcg64Mcg::seed_from_u64(seed))
    }

    /// A uniform value in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-and-reject).
    #[allow(clippy::cast_possible_truncation)] // the high and low halves of a u128 product
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut product = u128::from(self.0.next_u64()) * u128::from(n);
        if (product as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (product as u64) < threshold {
                product = u128::from(self.0.next_u64()) * u128::from(n);
            }
        }
        (product >> 64) as u64
    }

    /// A uniform value in `low..=high`.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.below(high - low + 1)
    }

    /// A uniform index below `n`.
    #[allow(clippy::cast_possible_truncation)] // below(n) < n, which is a usize
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A random byte.
    #[allow(clippy::cast_possible_truncation)] // deliberately the low byte
    pub(crate) fn byte(&mut self) -> u8 {
        self.0.next_u64() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::SimRng;

    #[test]
    fn same_seed_same_sequence_and_in_range() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let mut c = SimRng::new(8);
        let xs: Vec<u64> = (0..64).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..64).map(|_| b.below(10)).collect();
        let zs: Vec<u64> = (0..64).map(|_| c.below(10)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|&x| x < 10));
        // Every value of a small range turns up.
        let mut seen = [false; 10];
        for x in xs {
            seen[usize::try_from(x).unwrap()] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert!((0..1000).all(|_| (3..=5).contains(&a.between(3, 5))));
    }
}
