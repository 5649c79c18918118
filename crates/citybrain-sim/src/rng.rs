//! Counter-based randomness: a value is a pure function of (seed, vehicle,
//! step), so results do not depend on the order threads run in.

/// SplitMix64's finaliser: a well-mixed 64-bit hash of a 64-bit input.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The draw for one vehicle at one step.
pub fn draw(seed: u64, vehicle: u64, step: u64) -> f64 {
    unit(mix(mix(seed ^ mix(vehicle)) ^ step))
}

/// FNV-1a of a string, for seeding streams by name.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_repeatable() {
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| draw(42, i, 7)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 2, 4));
        assert!((0..1000).all(|i| (0.0..1.0).contains(&draw(9, i, i))));
    }
}
