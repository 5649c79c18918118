//! The physical invariants every test checks after each step.

use super::*;

/// Which physical invariant a state breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// Vehicles on a lane are ordered front to back.
    LaneOrder,
    /// A vehicle's front is behind its leader's rear.
    NoOverlap,
    /// Speeds are between 0 and what the vehicle and the roads allow.
    SpeedLimits,
    /// Vehicles on lanes and parked add up to those running.
    Running,
    /// No parking area holds more than its capacity.
    ParkingCapacity,
    /// Every loaded vehicle is arrived, running, waiting, cancelled or not due yet.
    Conservation,
}

/// One broken invariant, with what broke it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl Sim {
    /// Checks the physical invariants (for tests): ordered lanes, no overlaps,
    /// speeds within limits, vehicles conserved. Returns the first violation.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        match self.invariant_violations().into_iter().next() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// Every violation of the physical invariants in the current state.
    pub fn invariant_violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut broken = |invariant, detail| out.push(Violation { invariant, detail });
        let mut on_lanes = 0;
        let fastest_lane = self.net.lanes.iter().map(|l| l.speed).fold(0.0, f64::max);
        for (li, list) in self.lanes.iter().enumerate() {
            let lane = &self.net.lanes[li];
            for w in list.windows(2) {
                let (a, b) = (self.veh(w[0]), self.veh(w[1]));
                if a.pos < b.pos {
                    broken(
                        Invariant::LaneOrder,
                        format!("lane {} out of order at t={}", lane.id, self.clock.now()),
                    );
                } else if a.pos - self.vtype(a).length < b.pos - 1e-6 {
                    broken(
                        Invariant::NoOverlap,
                        format!(
                            "overlap on lane {} at t={}: {} and {}",
                            lane.id,
                            self.clock.now(),
                            a.pos,
                            b.pos
                        ),
                    );
                }
            }
            for &vi in list {
                let v = self.veh(vi);
                let t = self.vtype(v);
                if v.speed < 0.0 || v.speed > t.max_speed.min(fastest_lane * t.speed_factor) + 1e-6 {
                    broken(
                        Invariant::SpeedLimits,
                        format!("speed {} out of range on {}", v.speed, lane.id),
                    );
                }
            }
            on_lanes += list.len();
        }
        if on_lanes + self.lots.parked.len() != self.totals.running {
            broken(
                Invariant::Running,
                format!(
                    "{} vehicles on lanes and {} parked, {} running",
                    on_lanes,
                    self.lots.parked.len(),
                    self.totals.running
                ),
            );
        }
        for (pa, p) in self.add.parking_areas.iter().enumerate() {
            if self.lots.occupancy[pa] > p.capacity {
                broken(
                    Invariant::ParkingCapacity,
                    format!(
                        "parking area {} holds {} of {}",
                        p.id, self.lots.occupancy[pa], p.capacity
                    ),
                );
            }
        }
        let t = &self.totals;
        let not_yet = self.demand.vehicles.len() - self.next_spec;
        if t.loaded != t.arrived + t.running + t.waiting_to_insert + t.cancelled + not_yet {
            broken(
                Invariant::Conservation,
                format!("vehicles not conserved: {t:?}, not yet due {not_yet}"),
            );
        }
        out
    }
}
