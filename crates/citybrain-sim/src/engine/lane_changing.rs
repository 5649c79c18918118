//! Lane changing: strategic changes toward the next turn, look-ahead over several edges, making way for an emergency vehicle, overtaking, gap acceptance.

use super::*;

impl Sim {
    /// Strategic lane change: move toward a lane that continues along the route.
    pub(super) fn lane_change(&self, v: &Veh, lane_id: LaneId) -> Option<LaneId> {
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        if edge.function != EdgeFunction::Normal || edge.lanes.len() < 2 {
            return None;
        }
        // A stop on this edge: its lane first.
        if let Some(pa) = v.stop_pa {
            let p = &self.add.parking_areas[pa];
            if p.edge == lane.edge && v.pos <= p.end_pos + STOP_TOLERANCE {
                let target = self.net.lane(p.lane).index;
                if target == lane.index {
                    return None;
                }
                let step = if target > lane.index {
                    lane.index + 1
                } else {
                    lane.index - 1
                };
                return edge.lanes.get(step as usize).copied();
            }
        }
        let next = *v.route.get(v.route_idx as usize + 1)?;
        if self.links[lane_id.idx()].iter().any(|l| l.to_edge == next) {
            return self.lookahead_change(v, lane_id);
        }
        let good: Vec<u32> = edge
            .lanes
            .iter()
            .filter(|l| self.links[l.idx()].iter().any(|k| k.to_edge == next))
            .map(|l| self.net.lane(*l).index)
            .collect();
        let target_index = *good.iter().min_by_key(|i| (**i as i64 - lane.index as i64).abs())?;
        let step = if target_index > lane.index {
            lane.index + 1
        } else {
            lane.index.checked_sub(1)?
        };
        // The wish only: apply() checks the gap, or swaps with a neighbour wishing the opposite.
        edge.lanes.get(step as usize).copied()
    }

    /// With a look-ahead beyond the next edge: the neighbouring lane, if the
    /// route can be followed further from it without changing lanes than from
    /// this one (ties keep the lane).
    pub(super) fn lookahead_change(&self, v: &Veh, lane_id: LaneId) -> Option<LaneId> {
        let depth = self.cfg.behaviour.lane_lookahead_edges;
        if depth <= 1 {
            return None;
        }
        let reach = |start: LaneId| self.route_reach(&v.route, v.route_idx as usize, start);
        let here = reach(lane_id);
        if here >= depth {
            return None;
        }
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        let vclass = &self.demand.vtypes[v.vtype as usize].vclass;
        [lane.index.checked_sub(1), Some(lane.index + 1)]
            .into_iter()
            .flatten()
            .filter_map(|i| edge.lanes.get(i as usize).copied())
            .filter(|l| self.net.lane(*l).allows(vclass))
            .map(|l| (reach(l), l))
            .filter(|(r, _)| *r > here)
            .max_by_key(|(r, l)| (*r, std::cmp::Reverse(self.net.lane(*l).index)))
            .map(|(_, l)| l)
    }

    /// How many of the next `lane_lookahead_edges` edges of a route (after
    /// `route[idx]`) can be driven from `start` without changing lanes.
    pub(super) fn route_reach(&self, route: &[EdgeId], idx: usize, start: LaneId) -> usize {
        let depth = self.cfg.behaviour.lane_lookahead_edges;
        let mut lane = start;
        for j in 1..=depth {
            let Some(next) = route.get(idx + j) else {
                return depth;
            };
            match self.links[lane.idx()].iter().find(|k| k.to_edge == *next) {
                Some(k) => lane = k.target,
                None => return j - 1,
            }
        }
        depth
    }

    /// Drivers who hear an emergency vehicle close behind them in their lane
    /// move to a neighbouring lane that also leads on along their route (the
    /// right one first), gap permitting — the rescue lane SUMO's bluelight
    /// device builds, on whole lanes.
    pub(super) fn make_way(&self, v: &Veh, t: &VType, lane_id: LaneId) -> Option<LaneId> {
        if self.emergency.is_empty() || t.vclass == "emergency" {
            return None;
        }
        if !self.emergency_behind(v, lane_id) {
            return None;
        }
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        if edge.function != EdgeFunction::Normal {
            return None;
        }
        let next = v.route.get(v.route_idx as usize + 1).copied();
        let leads_on = |l: LaneId| next.is_none_or(|n| self.links[l.idx()].iter().any(|k| k.to_edge == n));
        [lane.index.checked_sub(1), Some(lane.index + 1)]
            .into_iter()
            .flatten()
            .filter_map(|i| edge.lanes.get(i as usize).copied())
            .find(|&l| leads_on(l) && self.net.lane(l).allows(&t.vclass))
    }

    /// Simple overtaking: a vehicle held behind a slow or standing leader
    /// moves to a neighbouring lane that also leads on along its route and
    /// offers clearly more room and speed ahead.
    pub(super) fn overtake(
        &self,
        v: &Veh,
        t: &VType,
        lane_id: LaneId,
        gap: f64,
        leader_speed: f64,
        vmax: f64,
    ) -> Option<LaneId> {
        // Emergency vehicles pass anything slower than they may drive.
        let slow = if t.vclass == "emergency" {
            leader_speed < vmax - 1.0
        } else {
            leader_speed < 0.7 * vmax
        };
        if !(gap < 40.0 && slow) {
            return None;
        }
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        if edge.function != EdgeFunction::Normal
            || edge.lanes.len() < 2
            || v.stop_pa.is_some_and(|pa| self.add.parking_areas[pa].edge == lane.edge)
        {
            return None;
        }
        let next = v.route.get(v.route_idx as usize + 1).copied();
        let leads_on = |l: LaneId| next.is_none_or(|n| self.links[l.idx()].iter().any(|k| k.to_edge == n));
        let ahead = |l: LaneId| -> (f64, f64) {
            // The nearest vehicle ahead in lane l: (gap, speed).
            let list = &self.lanes[l.idx()];
            let mut best = (self.lane_len(l) - v.pos, vmax);
            for &o in list.iter().rev() {
                let ov = self.veh(o);
                if ov.pos > v.pos {
                    best = (ov.pos - self.vtype(ov).length - v.pos - t.min_gap, ov.speed);
                    break;
                }
            }
            best
        };
        let mut choice: Option<(f64, LaneId)> = None;
        for idx in [lane.index.checked_sub(1), Some(lane.index + 1)].into_iter().flatten() {
            let Some(&other) = edge.lanes.get(idx as usize) else {
                continue;
            };
            // Never into a lane the route does not go on from (a turn bay),
            // an emergency vehicle neither: one that passed that way got
            // stuck at the bay's end beside the moving platoon it had passed
            // (the rescue lane is its way past moving traffic).
            if !leads_on(other) || !self.net.lane(other).allows(&t.vclass) {
                continue;
            }
            let (g, sp) = ahead(other);
            let better = g > gap + 15.0 && (sp > leader_speed + 2.0 || g > 2.0 * gap + 20.0);
            if better && choice.is_none_or(|(cg, _)| g > cg) {
                choice = Some((g, other));
            }
        }
        choice.map(|(_, l)| l)
    }

    /// Room in `target` beside `v`: no overlap, and gaps that neither the
    /// changer (behind its new leader) nor its new follower can close without
    /// braking harder than their `decel` — the bound every Krauss safe speed
    /// assumes of its leader.
    ///
    /// `instead_of`: the vehicle in `target` that `v` swaps places with
    /// (left out: it moves to `v`'s lane).
    pub(super) fn gap_ok(&self, v: &Veh, t: &VType, target: LaneId, instead_of: Option<u32>) -> bool {
        let dt = self.clock.step_length();
        let list = || {
            self.lanes[target.idx()]
                .iter()
                .copied()
                .filter(move |o| Some(*o) != instead_of)
        };
        let back = v.pos - t.length;
        // Near the end of the lane a change is urgent: the follower need only
        // be able to brake behind us, not keep a full headway.
        // So is making way for an emergency vehicle.
        let urgent = self.lane_len(v.lane) - v.pos < 50.0 || self.emergency_behind(v, v.lane);
        // No leader in the target lane: what lies beyond its end (the stop
        // line, the last car past the junction) must not make the changer
        // brake harder than its followers count on.
        if list().all(|o| self.veh(o).pos < v.pos) {
            let mut there = v.clone();
            there.lane = target;
            let (gap, leader_speed, leader_decel) = self.look_ahead(&there, t, self.lane_len(target));
            if krauss_safe(gap, leader_speed, leader_decel, t, self.clock.step_length()) < v.speed - t.decel * dt {
                return false;
            }
        }
        for o in list() {
            let ov = self.veh(o);
            let ot = self.vtype(ov);
            if ov.pos >= v.pos {
                // Leader in the target lane.
                let gap = ov.pos - ot.length - v.pos - t.min_gap;
                if gap < 0.0
                    || krauss_safe(gap, ov.speed, ot.decel, t, self.clock.step_length()) < v.speed - t.decel * dt
                {
                    return false;
                }
                if !urgent && gap < v.speed * 0.5 {
                    return false;
                }
            } else {
                // Follower: must be able to keep its distance.
                let gap = back - ov.pos - ot.min_gap;
                if gap < 0.0
                    || krauss_safe(gap, v.speed, t.decel, ot, self.clock.step_length()) < ov.speed - ot.decel * dt
                {
                    return false;
                }
                if !urgent && gap < ov.speed * ot.tau {
                    return false;
                }
                break;
            }
        }
        true
    }
}
