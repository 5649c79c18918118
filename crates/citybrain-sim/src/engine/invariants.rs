//! The physical invariants every test checks after each step.

use super::*;

impl Sim {
    /// Checks the physical invariants (for tests): ordered lanes, no overlaps,
    /// speeds within limits, vehicles conserved. Returns the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut on_lanes = 0;
        for (li, list) in self.lanes.iter().enumerate() {
            let lane = &self.net.lanes[li];
            for w in list.windows(2) {
                let (a, b) = (self.veh(w[0]), self.veh(w[1]));
                if a.pos < b.pos {
                    return Err(format!("lane {} out of order at t={}", lane.id, self.time));
                }
                if a.pos - self.vtype(a).length < b.pos - 1e-6 {
                    return Err(format!(
                        "overlap on lane {} at t={}: {} and {}",
                        lane.id, self.time, a.pos, b.pos
                    ));
                }
            }
            for &vi in list {
                let v = self.veh(vi);
                let t = self.vtype(v);
                let prev_lane_speed = self.net.lanes.iter().map(|l| l.speed).fold(0.0, f64::max);
                if v.speed < 0.0 || v.speed > t.max_speed.min(prev_lane_speed * t.speed_factor) + 1e-6 {
                    return Err(format!("speed {} out of range on {}", v.speed, lane.id));
                }
            }
            on_lanes += list.len();
        }
        if on_lanes + self.parked.len() != self.totals.running {
            return Err(format!(
                "{} vehicles on lanes and {} parked, {} running",
                on_lanes,
                self.parked.len(),
                self.totals.running
            ));
        }
        for (pa, p) in self.add.parking_areas.iter().enumerate() {
            if self.occupancy[pa] > p.capacity {
                return Err(format!(
                    "parking area {} holds {} of {}",
                    p.id, self.occupancy[pa], p.capacity
                ));
            }
        }
        let t = &self.totals;
        let not_yet = self.demand.vehicles.len() - self.next_spec;
        if t.loaded != t.arrived + t.running + t.waiting_to_insert + t.cancelled + not_yet {
            return Err(format!("vehicles not conserved: {t:?}, not yet due {not_yet}"));
        }
        Ok(())
    }
}
