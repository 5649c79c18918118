//! Car following (the plan half of a step): each vehicle's safe speed behind its leader, the stop line, a queue's tail or a stop.

use super::*;

impl Sim {
    /// Plans for the vehicles of each occupied lane, in `occupied` order and
    /// front to back within a lane: one flat list (no allocation per lane).
    pub(super) fn plan(&self, dt: f64, out: &mut Vec<Plan>) {
        out.clear();
        let lane_plans = |li: u32| {
            let list = &self.lanes[li as usize];
            list.iter()
                .enumerate()
                .map(move |(k, &vi)| self.plan_vehicle(LaneId(li), list, k, vi, dt))
        };
        if self.cfg.threads <= 1 || self.occupied.len() < self.cfg.parallel_min_lanes {
            out.extend(self.occupied.iter().flat_map(|&li| lane_plans(li)));
        } else {
            self.pool.install(|| {
                out.par_extend(self.occupied.par_iter().flat_map_iter(|&li| lane_plans(li)));
            });
        }
    }

    pub(super) fn plan_vehicle(&self, lane_id: LaneId, list: &[u32], k: usize, vi: u32, dt: f64) -> Plan {
        let v = self.veh(vi);
        let t = self.vtype(v);
        let lane = self.net.lane(lane_id);
        let vmax = (lane.speed * t.speed_factor).min(t.max_speed);
        // Distance and speed of whatever limits us ahead.
        let (gap, leader_speed) = if k > 0 {
            let l = self.veh(list[k - 1]);
            (l.pos - self.vtype(l).length - v.pos - t.min_gap, l.speed)
        } else {
            self.look_ahead(v, t, lane.length)
        };
        // Cooperation: slow down behind a vehicle waiting to move into this
        // lane — if it can still stop behind it comfortably. One already
        // closer cannot make room by holding back (waiting there deadlocked
        // both), so it goes first and lets the wisher in behind.
        let can_stop_behind = |back: f64| {
            let g = back - v.pos - t.min_gap;
            g >= 0.0 && krauss_safe(g, 0.0, t) >= v.speed - t.decel * dt
        };
        let (gap, leader_speed) = self.wishers[lane_id.idx()]
            .iter()
            .filter(|(back, w)| *w != vi && *back - v.pos < 60.0 && can_stop_behind(*back))
            .map(|(back, _)| (back - v.pos - t.min_gap, 0.0))
            .fold((gap, leader_speed), |a, b| if b.0 < a.0 { b } else { a });
        // The next stop, if it lies ahead on this lane, is a leader standing still.
        let (gap, leader_speed) = match self.stop_ahead(v, lane_id) {
            Some(d) if d < gap => (d, 0.0),
            _ => (gap, leader_speed),
        };
        let strategic = self.lane_change(v, lane_id);
        // Joining a queue: its tail ahead in the lane wished for is a leader too.
        let tail = strategic
            .filter(|_| self.cfg.behaviour.join_queues_at_tail)
            .and_then(|target| self.queue_tail_ahead(v, t, target));
        let (gap, leader_speed) = match tail {
            Some((g, s)) if g < gap => (g, s),
            _ => (gap, leader_speed),
        };
        let safe = krauss_safe(gap, leader_speed, t);
        let wanted = (v.speed + t.accel * dt).min(vmax).min(safe);
        let dawdle = t.sigma * t.accel * dt * rng::draw(self.cfg.seed, v.spec as u64, self.clock.steps());
        let speed = (wanted - dawdle).max(0.0).min(wanted.max(0.0));
        let change = strategic
            .or_else(|| self.make_way(v, t, lane_id))
            .or_else(|| self.overtake(v, t, lane_id, gap, leader_speed, vmax));
        Plan {
            speed,
            change,
            joining: tail.is_some(),
        }
    }

    /// The nearest vehicle ahead of `v` in `target` (same edge), as (gap to
    /// its back, its speed), when it crawls or stands and goes the same way
    /// for the next two edges: the tail of the queue that `v` must join
    /// rather than pass. Zero gap when it is already alongside: `v` stops
    /// there and waits to be let in. (A queue going elsewhere — a lot's
    /// queue in a lane shared with through traffic — is no reason to stop.)
    pub(super) fn queue_tail_ahead(&self, v: &Veh, t: &VType, target: LaneId) -> Option<(f64, f64)> {
        let list = &self.lanes[target.idx()];
        // Lists run front to back: the last one still ahead of `v` is the nearest.
        let &nearest = list.iter().rev().find(|&&o| self.veh(o).pos > v.pos)?;
        let o = self.veh(nearest);
        fn way(x: &Veh) -> &[EdgeId] {
            let from = (x.route_idx as usize + 1).min(x.route.len());
            &x.route[from..(from + 2).min(x.route.len())]
        }
        (o.speed < QUEUE_CRAWL_MPS && way(o) == way(v))
            .then(|| ((o.pos - self.vtype(o).length - v.pos - t.min_gap).max(0.0), o.speed))
    }

    /// (gap, leader speed) for the front vehicle of a lane.
    pub(super) fn look_ahead(&self, v: &Veh, t: &VType, lane_len: f64) -> (f64, f64) {
        let to_end = lane_len - v.pos;
        let on_last_edge = v.route_idx as usize + 1 >= v.route.len() && self.is_normal(v.lane);
        if on_last_edge {
            return (f64::INFINITY, 0.0);
        }
        let Some(link) = self.link_of(v) else {
            // Wrong lane for the next turn: stop at the end until a lane change.
            return (to_end - 0.1, 0.0);
        };
        let stop_line = (to_end - 0.1, 0.0);
        let open = match self.signal(link) {
            LinkSignal::Go => true,
            LinkSignal::Stop => false,
            LinkSignal::Amber => {
                // Go on only if braking before the line is impossible.
                let brake = v.speed * v.speed / (2.0 * t.decel);
                brake > to_end
            }
            LinkSignal::Yield => {
                !self.foe_busy(link)
                    || self.may_wait_inside(link, t)
                    || (self.my_zipper_turn(link) && !self.crossing_foes_busy(link))
            }
        };
        let internal = self.is_internal(v.lane);
        // The last space beyond the junction was given to another car.
        if open && !internal && self.cfg.behaviour.zipper_merges && link.next != link.target {
            let permit = self.entry_permit[link.target.idx()];
            let can_stop = v.speed * v.speed / (2.0 * t.decel) <= to_end;
            if permit.is_some_and(|p| self.vehs[p as usize].as_ref().map(|pv| pv.spec) != Some(v.spec)) && can_stop {
                return stop_line;
            }
        }
        // A merging link has its zipper turn into this lane: wait for it.
        if open && !internal && self.others_zipper_turn(link) {
            let can_stop = v.speed * v.speed / (2.0 * t.decel) <= to_end;
            if can_stop {
                return stop_line;
            }
        }
        if !open && !internal {
            return stop_line;
        }
        // At the internal waiting point: cross only when the foes are clear.
        if internal && self.is_internal(link.next) {
            if let Some((j, r)) = v.yielding {
                // With the zipper turn into its lane, only crossing traffic holds it.
                let my_turn = self.cfg.behaviour.zipper_merges && self.zipper_turn[link.target.idx()] == Some((j.0, r));
                let held = if my_turn {
                    self.crossing_foes_busy_at(j, r, link.target)
                } else {
                    self.foes_busy_at(j, r)
                };
                if held {
                    return stop_line;
                }
            }
        }
        // Do not block the junction: enter only with room to leave it on the
        // target lane (unless too close to stop, as at amber).
        if !internal && link.next != link.target {
            let can_stop = v.speed * v.speed / (2.0 * t.decel) <= to_end;
            if !self.can_leave(link.target, t) && can_stop {
                return stop_line;
            }
        }
        // Open: follow the last vehicle on the next lane, or the one after it.
        let mut dist = to_end;
        let mut lane = link.next;
        for _ in 0..3 {
            if let Some(&last) = self.lanes[lane.idx()].last() {
                let l = self.veh(last);
                return (dist + l.pos - self.vtype(l).length - t.min_gap, l.speed);
            }
            if lane == link.target {
                break;
            }
            dist += self.lane_len(lane);
            lane = link.target;
        }
        (f64::INFINITY, 0.0)
    }
}
