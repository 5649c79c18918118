//! Teleports: SUMO's way out of a deadlock, with the cause each is logged with.

use super::*;

impl Sim {
    /// What holds the front vehicle of its lane.
    pub(super) fn hold_cause(&self, v: &Veh) -> TeleportCause {
        let lane = self.net.lane(v.lane);
        let internal = self.net.edge(lane.edge).function == EdgeFunction::Internal;
        let Some(link) = self.link_of(v) else {
            return TeleportCause::WrongLane;
        };
        if internal {
            return match v.yielding {
                Some((j, r)) if self.foes_busy_at(j, r) => TeleportCause::Yield,
                _ => TeleportCause::Jam,
            };
        }
        match self.signal(link) {
            LinkSignal::Stop => TeleportCause::Red,
            LinkSignal::Yield if self.foe_busy(link) => TeleportCause::Yield,
            _ => TeleportCause::Jam,
        }
    }

    pub(super) fn teleport_stuck(&mut self) {
        if self.cfg.time_to_teleport <= 0.0 {
            return;
        }
        let mut stuck = Vec::new();
        for list in self.occupied.iter().map(|li| &self.lanes[*li as usize]) {
            if let Some(&front) = list.first() {
                let v = self.veh(front);
                if v.standing >= self.cfg.time_to_teleport
                    && (self.cfg.behaviour.teleport_parking_bound || v.stop_pa.is_none())
                {
                    stuck.push(front);
                }
            }
        }
        for vi in stuck {
            let (lane, route_idx) = {
                let v = self.veh(vi);
                (v.lane, v.route_idx as usize)
            };
            let cause = self.hold_cause(self.veh(vi));
            self.lanes[lane.idx()].retain(|x| *x != vi);
            self.totals.teleports += 1;
            // A stop on the edge it jumps away from is skipped.
            let left_edge = self.net.lane(lane).edge;
            let skip = self
                .veh(vi)
                .stop_pa
                .is_some_and(|pa| self.add.parking_areas[pa].edge == left_edge);
            if skip {
                self.advance_stop(vi);
            }
            self.measure.interval.teleports += 1;
            if let Some(v) = self.vehs[vi as usize].as_mut() {
                v.teleports += 1;
            }
            // Like SUMO: jump along the route to the first edge with room at
            // its start; past the end of the route the vehicle arrives.
            let internal = self.is_internal(lane);
            let first = if internal { route_idx } else { route_idx + 1 };
            let need = self.vtype(self.veh(vi)).length + self.vtype(self.veh(vi)).min_gap;
            let route = self.veh(vi).route.clone();
            let landing = route.iter().enumerate().skip(first).find_map(|(i, e)| {
                let best = self
                    .net
                    .edge(*e)
                    .lanes
                    .iter()
                    .copied()
                    .filter(|l| self.net.lane(*l).allows(&self.vtype(self.veh(vi)).vclass))
                    .max_by(|a, b| self.room(*a).total_cmp(&self.room(*b)))?;
                (self.room(best) > need).then_some((i, best))
            });
            self.measure.teleport_log.push(TeleportEvent {
                time: self.clock.now(),
                vehicle: self.demand.vehicles[self.veh(vi).spec as usize].id.clone(),
                lane: self.net.lane(lane).id.clone(),
                cause,
                continued: landing.is_some(),
            });
            match landing {
                Some((i, l)) => {
                    let skipped: f64 = route[first..i]
                        .iter()
                        .filter_map(|e| self.net.edge(*e).lanes.first())
                        .map(|l| self.lane_len(*l))
                        .sum();
                    if let Some(v) = self.vehs[vi as usize].as_mut() {
                        v.lane = l;
                        v.pos = 0.0;
                        v.speed = 0.0;
                        v.standing = 0.0;
                        v.route_idx = i as u32;
                        v.route_length += skipped;
                    }
                    self.lanes[l.idx()].push(vi);
                    self.touched.push(l.0);
                }
                None => self.arrive(vi),
            }
        }
    }
}
