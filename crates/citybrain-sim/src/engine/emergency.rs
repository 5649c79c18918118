//! Emergency vehicles: priority calls to signals ahead, and the rescue lane moving traffic opens for them.

use super::*;

impl Sim {
    /// The signalled links ahead of each emergency vehicle, up to
    /// `PRIORITY_HORIZON` metres, with arrival estimates at the speed limits.
    pub(super) fn priority_calls(&self) -> Vec<PriorityCall> {
        let mut calls = Vec::new();
        for &vi in &self.emergency {
            let Some(v) = self.vehs[vi as usize].as_ref() else {
                continue;
            };
            if !self.lanes[v.lane.idx()].contains(&vi) {
                continue; // parked
            }
            let mut lane = v.lane;
            let mut dist = self.lane_len(lane) - v.pos;
            let mut eta = dist / self.net.lane(lane).speed.max(1.0);
            for idx in (v.route_idx as usize..).take(16) {
                if dist > PRIORITY_HORIZON {
                    break;
                }
                let link = if self.is_internal(lane) {
                    self.links[lane.idx()].first()
                } else {
                    let Some(&next) = v.route.get(idx + 1) else { break };
                    let edge = self.net.edge(self.net.lane(lane).edge);
                    // Its own lane's link, else any lane of the edge that leads on.
                    std::iter::once(lane)
                        .chain(edge.lanes.iter().copied())
                        .find_map(|l| self.links[l.idx()].iter().find(|k| k.to_edge == next))
                };
                let Some(link) = link else { break };
                if let Some((tls, i)) = link.tls {
                    calls.push(PriorityCall {
                        tls,
                        link: i,
                        distance: dist,
                        eta,
                    });
                }
                let step_len = |l: LaneId| (self.lane_len(l), self.net.lane(l).speed.max(1.0));
                if link.next != link.target {
                    let (len, sp) = step_len(link.next);
                    dist += len;
                    eta += len / sp;
                }
                lane = link.target; // the route's next normal edge (idx + 1)
                let (len, sp) = step_len(lane);
                dist += len;
                eta += len / sp;
            }
        }
        calls
    }

    /// An emergency vehicle close behind `v` in its lane?
    pub(super) fn emergency_behind(&self, v: &Veh, lane_id: LaneId) -> bool {
        self.emergency.iter().any(|&e| {
            self.vehs[e as usize]
                .as_ref()
                .is_some_and(|ev| ev.lane == lane_id && ev.pos < v.pos && v.pos - ev.pos < MAKE_WAY_RANGE)
        })
    }

    /// The rescue lane: an emergency vehicle held behind a moving leader in
    /// its lane, on a normal edge of two or more lanes and clear of the
    /// junctions at both ends, goes on through the corridor the traffic
    /// opens at its own speed. Its progress there is kept apart from its
    /// place in the lane (which follows the leader as usual); when that
    /// progress reaches the leader, the two exchange places within the
    /// footprint they had (the leader's back where the emergency vehicle's
    /// was, the gap between them kept), so no one overlaps and the lane
    /// stays in order. The distance each gained or gave up counts in its
    /// route length. Losing the leader, the lane or the conditions ends the
    /// pass.
    pub(super) fn pass_through_rescue_lanes(&mut self, dt: f64) {
        for k in 0..self.emergency.len() {
            let e = self.emergency[k];
            let Some(ev) = self.vehs[e as usize].as_ref() else {
                continue;
            };
            let lane = ev.lane;
            let edge = self.net.edge(self.net.lane(lane).edge);
            let list = &self.lanes[lane.idx()];
            let leader = list
                .iter()
                .position(|x| *x == e)
                .filter(|i| *i > 0)
                .map(|i| (i, list[i - 1]));
            let passable = leader.filter(|&(_, l)| {
                let lv = self.veh(l);
                let (et, lt) = (self.vtype(ev), self.vtype(lv));
                let gap = lv.pos - lt.length - ev.pos;
                let held = gap < et.min_gap + et.tau.max(1.0) * ev.speed + 5.0;
                edge.function == EdgeFunction::Normal
                    && edge.lanes.len() >= 2
                    && lt.vclass != "emergency"
                    && lv.speed >= RESCUE_LANE_MIN_SPEED
                    && held
                    && ev.pos - et.length > RESCUE_LANE_CLEARANCE
                    && self.lane_len(lane) - lv.pos > RESCUE_LANE_CLEARANCE
            });
            let Some((i, l)) = passable else {
                self.rescue_progress.remove(&e);
                continue;
            };
            let desired = {
                let t = self.vtype(ev);
                (self.net.lane(lane).speed * t.speed_factor).min(t.max_speed)
            };
            let (lane_then, progress) = self.rescue_progress.get(&(e)).copied().unwrap_or((lane, ev.pos));
            let progress = if lane_then == lane {
                progress.max(ev.pos)
            } else {
                ev.pos
            } + desired * dt;
            let lv = self.veh(l);
            if progress < lv.pos {
                self.rescue_progress.insert(e, (lane, progress));
                continue;
            }
            let (et_len, lt_len) = (self.vtype(ev).length, self.vtype(lv).length);
            let (e_front, l_front) = (lv.pos, ev.pos - et_len + lt_len);
            let (e_gain, l_loss) = (e_front - ev.pos, lv.pos - l_front);
            if let Some(v) = self.vehs[e as usize].as_mut() {
                v.pos = e_front;
                v.route_length += e_gain;
            }
            if let Some(v) = self.vehs[l as usize].as_mut() {
                v.pos = l_front;
                v.route_length -= l_loss;
            }
            self.lanes[lane.idx()].swap(i - 1, i);
            self.rescue_progress.insert(e, (lane, e_front));
        }
    }
}
