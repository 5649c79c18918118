//! Parking guidance: a visitor is sent to the lot with room that gets them
//! to their destination soonest (drive there, then walk), by what the
//! sensors say about free spaces — the twin's own counts in batch runs, the
//! hub's `OffStreetParking` entities in live mode.

/// What parking guidance reads: free spaces per lot.
pub trait ParkingObservation {
    /// Free spaces in `lot` now; None where this source does not know it.
    fn free_spaces(&self, lot: usize) -> Option<u32>;
}

/// The first source that knows a lot answers for it (the hub's view, with
/// the twin's count where the hub has none yet).
pub struct FirstKnown<A, B>(pub A, pub B);

impl<A: ParkingObservation, B: ParkingObservation> ParkingObservation for FirstKnown<A, B> {
    fn free_spaces(&self, lot: usize) -> Option<u32> {
        self.0.free_spaces(lot).or_else(|| self.1.free_spaces(lot))
    }
}

/// A lot a visitor may be sent to, with what it costs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LotChoice {
    pub lot: usize,
    /// Driving time from where the visitor is to the lot, s.
    pub drive_s: f64,
    /// Walking time from the lot to the destination, s.
    pub walk_s: f64,
}

/// The lot with room — more free spaces than `promised[lot]`, the cars
/// already sent there — with the least drive plus walk; the first of equals.
pub fn best_lot(
    choices: impl IntoIterator<Item = LotChoice>,
    obs: &dyn ParkingObservation,
    promised: &[u32],
) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for c in choices {
        let free = obs.free_spaces(c.lot).unwrap_or(0);
        if free <= promised.get(c.lot).copied().unwrap_or(0) {
            continue;
        }
        let cost = c.drive_s + c.walk_s;
        if best.is_none_or(|(b, _)| cost < b) {
            best = Some((cost, c.lot));
        }
    }
    best.map(|(_, lot)| lot)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counts(Vec<Option<u32>>);
    impl ParkingObservation for Counts {
        fn free_spaces(&self, lot: usize) -> Option<u32> {
            self.0.get(lot).copied().flatten()
        }
    }

    fn choice(lot: usize, drive_s: f64, walk_s: f64) -> LotChoice {
        LotChoice { lot, drive_s, walk_s }
    }

    #[test]
    fn the_quickest_lot_with_room_beyond_the_promised_spaces_wins() {
        let obs = Counts(vec![Some(5), Some(2), Some(9)]);
        let choices = [choice(0, 100.0, 300.0), choice(1, 60.0, 60.0), choice(2, 200.0, 0.0)];
        assert_eq!(best_lot(choices, &obs, &[0, 0, 0]), Some(1));
        // Lot 1's two spaces are promised: the next quickest.
        assert_eq!(best_lot(choices, &obs, &[0, 2, 0]), Some(2));
        // Equal cost: the first.
        assert_eq!(
            best_lot([choice(2, 50.0, 0.0), choice(0, 0.0, 50.0)], &obs, &[0; 3]),
            Some(2)
        );
        assert_eq!(best_lot(choices, &Counts(vec![Some(0); 3]), &[0; 3]), None);
    }

    #[test]
    fn the_hub_answers_first_and_the_twin_where_the_hub_knows_nothing() {
        let hub = Counts(vec![Some(0), None]);
        let twin = Counts(vec![Some(7), Some(3)]);
        let both = FirstKnown(hub, twin);
        assert_eq!(both.free_spaces(0), Some(0));
        assert_eq!(both.free_spaces(1), Some(3));
        assert_eq!(both.free_spaces(2), None);
        assert_eq!(
            best_lot([choice(0, 1.0, 1.0), choice(1, 9.0, 9.0)], &both, &[0, 0]),
            Some(1)
        );
    }
}
