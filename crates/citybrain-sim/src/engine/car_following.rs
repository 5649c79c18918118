//! Car following (the plan half of a step): each vehicle's safe speed behind its leader, the stop line, a queue's tail or a stop.

use super::*;

/// What limits a vehicle ahead: (gap, leader speed, leader deceleration).
type Ahead = (f64, f64, f64);

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
        // Distance, speed and braking of whatever limits us ahead.
        let (gap, leader_speed, leader_decel) = if k > 0 {
            let l = self.veh(list[k - 1]);
            let lt = self.vtype(l);
            (l.pos - lt.length - v.pos - t.min_gap, l.speed, lt.decel)
        } else {
            self.look_ahead(v, t, lane.length)
        };
        // Cooperation: slow down behind a vehicle waiting to move into this
        // lane — if it can still stop behind it comfortably. One already
        // closer cannot make room by holding back (waiting there deadlocked
        // both), so it goes first and lets the wisher in behind.
        let can_stop_behind = |back: f64| {
            let g = back - v.pos - t.min_gap;
            g >= 0.0 && krauss_safe(g, 0.0, t.decel, t, self.clock.step_length()) >= v.speed - t.decel * dt
        };
        // (Standing: what limits us is the nearest, whatever its braking.)
        let (gap, leader_speed, leader_decel) = self.wishers[lane_id.idx()]
            .iter()
            .filter(|(back, w)| *w != vi && *back - v.pos < 60.0 && can_stop_behind(*back))
            .map(|(back, _)| (back - v.pos - t.min_gap, 0.0, t.decel))
            .fold((gap, leader_speed, leader_decel), |a, b| self.tighter(a, b, t));
        // The next stop, if it lies ahead on this lane, is a leader standing still.
        let (gap, leader_speed, leader_decel) = match self.stop_ahead(v, lane_id) {
            Some(d) => self.tighter((gap, leader_speed, leader_decel), (d, 0.0, t.decel), t),
            None => (gap, leader_speed, leader_decel),
        };
        let strategic = self.lane_change(v, lane_id);
        // Joining a queue: its tail ahead in the lane wished for is a leader too.
        // Only where it can still stop there braking no harder than `decel`
        // (as for a wisher above): a car already too close goes on.
        let tail = strategic
            .filter(|_| self.cfg.behaviour.join_queues_at_tail)
            .and_then(|target| self.queue_tail_ahead(v, t, target))
            .filter(|&tail| self.safe(tail, t) >= v.speed - t.decel * dt);
        // The tighter of the two (the tail may move: compare safe speeds).
        let (gap, leader_speed, leader_decel) = match tail {
            Some(tail) => self.tighter((gap, leader_speed, leader_decel), tail, t),
            None => (gap, leader_speed, leader_decel),
        };
        let safe = self.safe((gap, leader_speed, leader_decel), t);
        let safe = match self.red_crossing_cap(v, t, lane.length) {
            Some(cap) => safe.min(cap),
            None => safe,
        };
        let wanted = (v.speed + t.accel * dt).min(vmax).min(safe);
        let dawdle = t.sigma * t.accel * dt * rng::draw(self.cfg.seed, v.spec as u64, self.clock.steps());
        // Dawdling never brakes harder than `decel` (SUMO's Krauss bounds it
        // by the slowest speed reachable at `decel`): a leader that did would
        // break the assumption every follower's safe speed rests on.
        let slowest = wanted.min(v.speed - t.decel * dt);
        let speed = (wanted - dawdle).max(slowest).max(0.0).min(wanted.max(0.0));
        let change = strategic
            .or_else(|| self.make_way(v, t, lane_id))
            .or_else(|| self.overtake(v, t, lane_id, gap, leader_speed, vmax));
        Plan {
            speed,
            change,
            joining: tail.is_some(),
        }
    }

    /// When a queue going `v`'s way crawls or stands ahead in `target` (same
    /// edge): the nearest vehicle ahead of `v` in `target`, as (gap to its
    /// back, its speed) — `v` follows it as if already in that lane, so it
    /// comes to the queue's tail braking as a follower does, never passing
    /// those it must queue behind. Zero gap when that vehicle is already
    /// alongside: `v` stops there and waits to be let in. (A queue going
    /// elsewhere — a lot's queue in a lane shared with through traffic — is
    /// no reason to stop.)
    pub(super) fn queue_tail_ahead(&self, v: &Veh, t: &VType, target: LaneId) -> Option<Ahead> {
        let list = &self.lanes[target.idx()];
        fn way(x: &Veh) -> &[EdgeId] {
            let from = (x.route_idx as usize + 1).min(x.route.len());
            &x.route[from..(from + 2).min(x.route.len())]
        }
        // Lists run front to back: from the end, the nearest ahead first.
        let mut ahead = list.iter().rev().map(|&o| self.veh(o)).filter(|o| o.pos > v.pos);
        let nearest = ahead.next()?;
        let queue = std::iter::once(nearest)
            .chain(ahead)
            .any(|o| o.speed < QUEUE_CRAWL_MPS && way(o) == way(v));
        let nt = self.vtype(nearest);
        queue.then(|| {
            (
                (nearest.pos - nt.length - v.pos - t.min_gap).max(0.0),
                nearest.speed,
                nt.decel,
            )
        })
    }

    /// (gap, leader speed, leader deceleration) for the front vehicle of a lane.
    pub(super) fn look_ahead(&self, v: &Veh, t: &VType, lane_len: f64) -> Ahead {
        let ahead = self.look_ahead_on_link(v, t, lane_len);
        match self.overhang(v, t, lane_len) {
            Some(o) => self.tighter(ahead, o, t),
            None => ahead,
        }
    }

    /// The speed an emergency vehicle may pass this red (or amber) light at,
    /// when the rule is on and no crossing link is busy.
    fn red_crossing_speed(&self, t: &VType, link: &Link) -> Option<f64> {
        self.cfg
            .behaviour
            .emergency_red_speed
            .filter(|_| t.vclass == "emergency")
            .filter(|_| matches!(self.signal(link), LinkSignal::Stop | LinkSignal::Amber))
            .filter(|_| !self.any_crosser_busy(link))
    }

    /// Going against red: the fastest speed for this step from which the
    /// vehicle, braking at `decel` a step, is down to the crossing speed by
    /// the time it reaches the line — never less than braking at `decel`
    /// now (a rule, unlike a leader, never forces a harder stop).
    fn red_crossing_cap(&self, v: &Veh, t: &VType, lane_len: f64) -> Option<f64> {
        // Every vehicle asks, every step: the cheap refusals first.
        if self.cfg.behaviour.emergency_red_speed.is_none() || t.vclass != "emergency" || self.is_internal(v.lane) {
            return None;
        }
        let link = self.link_of(v)?;
        let slow = self.red_crossing_speed(t, link)?;
        let dt = self.clock.step_length();
        let to_line = lane_len - v.pos;
        // Distance covered before the speed is down to `slow`, from `x`.
        let reaches = |x: f64| {
            let (mut covered, mut speed) = (0.0, x);
            while speed > slow + 1e-9 {
                covered += speed * dt;
                if covered >= to_line {
                    return false;
                }
                speed -= t.decel * dt;
            }
            true
        };
        let (mut lo, mut hi) = (0.0, v.speed + t.accel * dt + 1.0);
        if reaches(hi) {
            return None;
        }
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if reaches(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo.max(slow.min(to_line / dt)).max(v.speed - t.decel * dt))
    }

    /// Safe speed behind (gap, leader speed, leader deceleration).
    fn safe(&self, (gap, speed, decel): Ahead, t: &VType) -> f64 {
        krauss_safe(gap, speed, decel, t, self.clock.step_length())
    }

    /// The tighter of two limits ahead: the one that leaves the lower safe
    /// speed (`a` on a tie).
    fn tighter(&self, a: Ahead, b: Ahead, t: &VType) -> Ahead {
        if self.safe(b, t) < self.safe(a, t) {
            b
        } else {
            a
        }
    }

    /// Along `link`, through its internal lanes to its target: the first
    /// vehicle found (the last one on its lane) and the length of the lanes
    /// before its own (a turn that waits inside the junction has two).
    fn first_on_link(&self, link: &Link) -> Option<(&Veh, f64)> {
        let (mut lane, mut dist) = (link.next, 0.0);
        for _ in 0..4 {
            if let Some(&last) = self.lanes[lane.idx()].last() {
                return Some((self.veh(last), dist));
            }
            if lane == link.target {
                return None;
            }
            dist += self.lane_len(lane);
            lane = match self.links[lane.idx()].first() {
                Some(k) if self.is_internal(lane) => k.next,
                _ => link.target,
            };
        }
        None
    }

    /// The tightest of the vehicles that have crossed the end of `v`'s lane
    /// on any of its links and whose back still sticks out into it (a long
    /// one turning, a U-turn's short internal lanes): they stand in `v`'s
    /// way whichever link `v` itself takes.
    fn overhang(&self, v: &Veh, t: &VType, lane_len: f64) -> Option<Ahead> {
        let to_end = lane_len - v.pos;
        let edge = self.net.lanes[v.lane.idx()].edge;
        let mut tightest: Option<Ahead> = None;
        for k in &self.links[v.lane.idx()] {
            let Some((o, dist)) = self.first_on_link(k) else {
                continue;
            };
            let ot = self.vtype(o);
            let back = dist + o.pos - ot.length;
            // Only one that came from this edge (internal lanes of other
            // approaches cross or join the same ones).
            if back < 0.0 && o.route.get(o.route_idx as usize) == Some(&edge) {
                let c = (to_end + back - t.min_gap, o.speed, ot.decel);
                tightest = Some(tightest.map_or(c, |x| self.tighter(x, c, t)));
            }
        }
        tightest
    }

    fn look_ahead_on_link(&self, v: &Veh, t: &VType, lane_len: f64) -> Ahead {
        let dt = self.clock.step_length();
        let to_end = lane_len - v.pos;
        let on_last_edge = v.route_idx as usize + 1 >= v.route.len() && self.is_normal(v.lane);
        if on_last_edge {
            return (f64::INFINITY, 0.0, t.decel);
        }
        let stop_line = (to_end - 0.1, 0.0, t.decel);
        let Some(link) = self.link_of(v) else {
            // Wrong lane for the next turn: stop at the end until a lane change.
            return stop_line;
        };
        let open = match self.signal(link) {
            LinkSignal::Go => true,
            // Go on only if braking before the line at `decel` is impossible:
            // at amber, and at red for one that committed at amber (a slow-
            // braking truck, an amber shorter than its stopping time). A
            // harder stop would break the braking its followers count on;
            // SUMO's vehicles, too, run a red they cannot stop for.
            LinkSignal::Amber | LinkSignal::Stop => stepwise_brake_gap(v.speed, t.decel, dt) > to_end,
            LinkSignal::Yield => {
                // One too close to stop with its own deceleration had found
                // the way clear and goes on, as at amber (SUMO: a vehicle
                // that can no longer brake for a link keeps its request).
                stepwise_brake_gap(v.speed, t.decel, dt) > to_end
                    || !self.foe_busy(link)
                    || self.may_wait_inside(link, t)
                    || (self.my_zipper_turn(link) && !self.crossing_foes_busy(link))
            }
        };
        let internal = self.is_internal(v.lane);
        // An emergency vehicle on duty goes against red once the junction is
        // clear (slowly: `red_crossing_cap`).
        let open = open || (!internal && self.red_crossing_speed(t, link).is_some());
        // The last space beyond the junction was given to another car.
        if open && !internal && self.cfg.behaviour.zipper_merges && link.next != link.target {
            let permit = self.entry_permit[link.target.idx()];
            let can_stop = stepwise_brake_gap(v.speed, t.decel, dt) <= to_end;
            if permit.is_some_and(|p| self.vehs[p as usize].as_ref().map(|pv| pv.spec) != Some(v.spec)) && can_stop {
                return stop_line;
            }
        }
        // A merging link has its zipper turn into this lane: wait for it.
        if open && !internal && self.others_zipper_turn(link) {
            let can_stop = stepwise_brake_gap(v.speed, t.decel, dt) <= to_end;
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
            let can_stop = stepwise_brake_gap(v.speed, t.decel, dt) <= to_end;
            if !self.can_leave(link.target, t) && can_stop {
                return stop_line;
            }
        }
        // Open: follow the first vehicle along the link (its internal lanes,
        // then the target lane).
        let follow = self
            .first_on_link(link)
            .map_or((f64::INFINITY, 0.0, t.decel), |(l, dist)| {
                let lt = self.vtype(l);
                (to_end + dist + l.pos - lt.length - t.min_gap, l.speed, lt.decel)
            });
        // A slower next lane (a turn, a lower limit): reach it at its speed,
        // braking no harder than `decel` — as a leader one reaction time
        // past the line driving at that speed would make us (Krauss gives
        // exactly that speed at the line). Entering faster and being cut to
        // the limit there would brake harder than followers count on.
        let next_speed = (self.net.lane(link.next).speed * t.speed_factor).min(t.max_speed);
        let limit = (to_end + next_speed * t.tau, next_speed, t.decel);
        self.tighter(follow, limit, t)
    }
}
