//! What a navigation app knows of the roads right now: how long vehicles
//! recently took for each turn (an edge and the edge they leave it for),
//! and how long those still on it have been there — in a jam that nobody
//! leaves, the second is what shows it.

use std::collections::HashMap;

use citybrain_net::EdgeId;

/// Weight of one new observation in a turn's recent time.
const RECENT_WEIGHT: f64 = 0.1;
/// How often the longest time of those on each turn now is taken anew (s).
const REFRESH_S: f64 = 30.0;

/// Live travel times per turn, fed with every vehicle on the road each step.
#[derive(Debug, Clone)]
pub struct TurnTimes {
    /// Per vehicle (index in the demand): the normal edge it is on, the edge
    /// it leaves it for, when it came onto it, and the step it was last seen.
    at: Vec<Option<Seen>>,
    recent: HashMap<(EdgeId, EdgeId), f64>,
    longest_now: HashMap<(EdgeId, EdgeId), f64>,
    next_refresh: f64,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    edge: EdgeId,
    next: EdgeId,
    since: f64,
    last_seen: f64,
}

impl TurnTimes {
    pub fn new(vehicles: usize) -> TurnTimes {
        TurnTimes {
            at: vec![None; vehicles],
            recent: HashMap::new(),
            longest_now: HashMap::new(),
            next_refresh: f64::NEG_INFINITY,
        }
    }

    /// One step's look at the road (`dt` after the last): each vehicle on a
    /// normal edge, with the edge its route takes next (None on its last
    /// edge: nothing to learn). A vehicle that was off the road meanwhile
    /// (parked) starts its time on the edge afresh: a stay is no travel time.
    pub fn observe(&mut self, t: f64, dt: f64, on_road: impl Iterator<Item = (usize, EdgeId, Option<EdgeId>)>) {
        for (vehicle, edge, next) in on_road {
            let Some(slot) = self.at.get_mut(vehicle) else { continue };
            if slot.is_some_and(|s| t - s.last_seen > dt * 1.5) {
                *slot = None;
            }
            match slot {
                Some(s) if s.edge == edge => s.last_seen = t,
                _ => {
                    if let Some(s) = slot.take() {
                        // It left `s.edge` for the edge it is on now.
                        let took = t - s.since;
                        let r = self.recent.entry((s.edge, s.next)).or_insert(took);
                        *r += RECENT_WEIGHT * (took - *r);
                    }
                    *slot = next.map(|next| Seen {
                        edge,
                        next,
                        since: t,
                        last_seen: t,
                    });
                }
            }
        }
        if t >= self.next_refresh {
            self.longest_now.clear();
            for s in self.at.iter().flatten().filter(|s| s.last_seen >= t) {
                let l = self.longest_now.entry((s.edge, s.next)).or_insert(0.0);
                *l = l.max(t - s.since);
            }
            self.next_refresh = t + REFRESH_S;
        }
    }

    /// The time to drive `edge` and turn into `next` now: what recent
    /// vehicles took (or `free_flow` before any has), and at least as long as
    /// the one longest on it now has been there.
    pub fn estimate(&self, edge: EdgeId, next: EdgeId, free_flow: f64) -> f64 {
        let recent = self.recent.get(&(edge, next)).copied().unwrap_or(free_flow);
        recent.max(self.longest_now.get(&(edge, next)).copied().unwrap_or(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_learns_from_those_who_left_it_and_sees_those_stuck_on_it() {
        let (a, b, c) = (EdgeId(0), EdgeId(1), EdgeId(2));
        let mut tt = TurnTimes::new(3);
        assert_eq!(tt.estimate(a, b, 20.0), 20.0, "free flow before anything is known");
        // Vehicle 0 drives a in 50 s, then b.
        for t in 0..50 {
            tt.observe(f64::from(t), 1.0, [(0, a, Some(b))].into_iter());
        }
        tt.observe(50.0, 1.0, [(0, b, Some(c))].into_iter());
        assert_eq!(tt.estimate(a, b, 20.0), 50.0);
        // Vehicle 1 stands on a for 400 s and has not left it.
        for t in 100..=500 {
            tt.observe(f64::from(t), 1.0, [(1, a, Some(b))].into_iter());
        }
        // (taken anew every REFRESH_S)
        let stuck = tt.estimate(a, b, 20.0);
        assert!(
            (400.0 - REFRESH_S..=400.0).contains(&stuck),
            "the one stuck now shows the jam: {stuck}"
        );
        // When it leaves, its time counts in the recent mean, a tenth at a time.
        for t in 501..=540 {
            tt.observe(f64::from(t), 1.0, [(1, b, Some(c))].into_iter());
        }
        assert!((tt.estimate(a, b, 20.0) - (50.0 + 0.1 * (401.0 - 50.0))).abs() < 1e-9);
        // Vehicle 2 drives onto b, parks there an hour, then drives on to c:
        // only its driving counts.
        tt.observe(600.0, 1.0, [(2, b, Some(c))].into_iter());
        for t in 4200..4210 {
            tt.observe(f64::from(t), 1.0, [(2, b, Some(c))].into_iter());
        }
        tt.observe(4210.0, 1.0, [(2, c, None)].into_iter());
        assert_eq!(tt.estimate(b, c, 20.0), 10.0);
    }
}
