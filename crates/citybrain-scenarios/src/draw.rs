//! Seeded draws and demand profiles shared by the scenarios.

use citybrain_sim::rng;

/// A seeded stream of uniform draws (one per named stream, so streams are
/// independent of each other and of the order they are used in).
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64, name: &str) -> Stream {
        Stream(rng::mix(seed ^ rng::hash_str(name)))
    }

    /// A uniform number in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = rng::mix(self.0);
        rng::unit(self.0)
    }
}

/// A piecewise-linear profile's value at `t`; it holds its end values
/// before the first and after the last point.
pub fn profile_at(points: &[(f64, f64)], t: f64) -> f64 {
    match points.iter().position(|p| p.0 > t) {
        None => points.last().map_or(1.0, |p| p.1),
        Some(0) => points[0].1,
        Some(i) => {
            let (a, b) = (points[i - 1], points[i]);
            a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0).max(1e-9)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_interpolates_and_holds_at_the_ends() {
        let p = [(0.0, 0.5), (100.0, 1.0), (200.0, 1.0)];
        assert_eq!(profile_at(&p, 0.0), 0.5);
        assert_eq!(profile_at(&p, 50.0), 0.75);
        assert_eq!(profile_at(&p, 150.0), 1.0);
        assert_eq!(profile_at(&p, 500.0), 1.0);
    }

    #[test]
    fn streams_are_repeatable_and_independent() {
        let (mut a, mut b, mut c) = (Stream::new(1, "x"), Stream::new(1, "x"), Stream::new(1, "y"));
        let (x, y, z) = (a.uniform(), b.uniform(), c.uniform());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert!((0.0..1.0).contains(&x));
    }
}
