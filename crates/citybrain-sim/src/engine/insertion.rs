//! Insertion: vehicles due to depart released into their lanes' queues, and placed on the road when there is room.

use super::*;

impl Sim {
    /// Vehicles whose departure time has come but that found no room to
    /// enter the network yet.
    pub fn waiting_to_enter(&self) -> impl Iterator<Item = VehicleId> + '_ {
        self.pending_edges
            .iter()
            .flat_map(move |e| self.pending[e.idx()].iter().map(|s| VehicleId(*s)))
    }

    /// Moves vehicles whose departure time has come into their edge's queue.
    pub(super) fn release_due(&mut self) {
        let horizon = self.clock.end_of_step();
        while let Some(spec) = self.demand.vehicles.get(self.next_spec) {
            if spec.depart >= horizon - 1e-9 {
                break;
            }
            if self.cancelled.remove(&self.next_spec) {
                self.totals.cancelled += 1;
                self.next_spec += 1;
                continue;
            }
            let e = spec.route[0];
            if self.pending[e.idx()].is_empty() {
                self.pending_edges.push(e);
            }
            self.pending[e.idx()].push_back(self.next_spec as u32);
            self.totals.waiting_to_insert += 1;
            self.next_spec += 1;
        }
    }

    pub(super) fn insert(&mut self) {
        let edges = std::mem::take(&mut self.pending_edges);
        let mut still = Vec::with_capacity(edges.len());
        let mut blocked: Vec<LaneId> = Vec::new();
        for e in edges {
            blocked.clear();
            let lanes = self.net.edge(e).lanes.len();
            let mut k = 0;
            while let Some(&si) = self.pending[e.idx()].get(k) {
                match self.try_insert(si, &blocked) {
                    Ok(()) => {
                        self.pending[e.idx()].remove(k);
                        self.totals.waiting_to_insert -= 1;
                    }
                    Err(lane) => {
                        if !self.cfg.behaviour.eager_insert {
                            break;
                        }
                        blocked.extend(lane);
                        if blocked.len() >= lanes {
                            break;
                        }
                        k += 1;
                    }
                }
            }
            if !self.pending[e.idx()].is_empty() {
                still.push(e);
            }
        }
        self.pending_edges = still;
    }

    /// Inserts a vehicle, or says which lane it waits for (`blocked`: lanes
    /// already found full this step, where it may not go before the vehicles
    /// waiting for them).
    pub(super) fn try_insert(&mut self, si: u32, blocked: &[LaneId]) -> Result<(), Option<LaneId>> {
        let spec = &self.demand.vehicles[si as usize];
        let t = &self.demand.vtypes[spec.vtype];
        let edge = spec.route[0];
        let lanes: Vec<LaneId> = self
            .net
            .edge(edge)
            .lanes
            .iter()
            .copied()
            .filter(|l| self.net.lane(*l).allows(&t.vclass))
            .collect();
        if lanes.is_empty() {
            return Err(None);
        }
        let next = spec.route.get(1).copied();
        let leads_on = |l: &LaneId| next.is_none_or(|n| self.links[l.idx()].iter().any(|k| k.to_edge == n));
        let lane = match spec.depart_lane {
            DepartLane::First => Some(lanes[0]),
            DepartLane::Index(i) => lanes.iter().copied().find(|l| self.net.lane(*l).index == i),
            DepartLane::Random => {
                Some(lanes[(rng::draw(self.cfg.seed, si as u64, u64::MAX) * lanes.len() as f64) as usize % lanes.len()])
            }
            DepartLane::Free => lanes
                .iter()
                .copied()
                .max_by(|a, b| self.room(*a).total_cmp(&self.room(*b))),
            DepartLane::Best => {
                let mut good: Vec<LaneId> = lanes.iter().copied().filter(leads_on).collect();
                // With a look-ahead, the lanes from which the route goes on furthest.
                if self.cfg.behaviour.lane_lookahead_edges > 1 && good.len() > 1 {
                    let reach: Vec<usize> = good.iter().map(|l| self.route_reach(&spec.route, 0, *l)).collect();
                    let best = reach.iter().copied().max().unwrap_or(0);
                    good = good
                        .into_iter()
                        .zip(reach)
                        .filter(|(_, r)| *r == best)
                        .map(|(l, _)| l)
                        .collect();
                }
                let pool = if good.is_empty() { &lanes } else { &good };
                let open: Vec<LaneId> = pool.iter().copied().filter(|l| !blocked.contains(l)).collect();
                if open.is_empty() {
                    return Err(None);
                }
                open.into_iter().max_by(|a, b| self.room(*a).total_cmp(&self.room(*b)))
            }
        };
        let Some(lane) = lane else { return Err(None) };
        if blocked.contains(&lane) {
            return Err(None);
        }
        let lane_speed = self.net.lane(lane).speed;
        let vmax = (lane_speed * t.speed_factor).min(t.max_speed);
        let speed = match spec.depart_speed {
            DepartSpeed::Zero => 0.0,
            DepartSpeed::Max | DepartSpeed::Desired => vmax,
            DepartSpeed::Value(v) => v.min(vmax),
        };
        let pos = (spec.depart_pos + t.length).min(self.lane_len(lane));
        // Room: the last vehicle must be far enough ahead to brake behind it.
        if let Some(&last) = self.lanes[lane.idx()].last() {
            let l = self.veh(last);
            let gap = l.pos - self.vtype(l).length - pos - t.min_gap;
            if gap < 0.0 || krauss_safe(gap, l.speed, self.vtype(l).decel, t, self.clock.step_length()) < speed {
                return Err(Some(lane));
            }
        }
        // And whoever comes up behind, on the lanes that lead in, must still
        // be able to brake behind it at its own deceleration.
        let dt = self.clock.step_length();
        for &(feeder, extra) in &self.lead_ins[lane.idx()] {
            let Some(&front) = self.lanes[feeder.idx()].first() else {
                continue;
            };
            let f = self.veh(front);
            if f.route.get(f.route_idx as usize + 1) != Some(&edge) && self.is_normal(feeder) {
                continue;
            }
            let ft = self.vtype(f);
            let gap = self.lane_len(feeder) - f.pos + extra + spec.depart_pos - ft.min_gap;
            if gap < 0.0 || krauss_safe(gap, speed, t.decel, ft, dt) < f.speed - ft.decel * dt {
                return Err(Some(lane));
            }
        }
        let v = Veh {
            spec: si,
            vtype: spec.vtype as u32,
            route: spec.route.clone(),
            route_idx: 0,
            lane,
            pos,
            speed,
            depart: spec.depart,
            inserted_at: self.clock.end_of_step(),
            waiting: 0.0,
            time_loss: 0.0,
            route_length: pos - t.length,
            standing: 0.0,
            teleports: 0,
            yielding: None,
            stop_idx: 0,
            stop_pa: spec.stops.first().map(|s| s.parking_area),
            reroutes: 0,
            stop_time: 0.0,
            parked_at: 0.0,
        };
        let vi = match self.free_slots.pop() {
            Some(i) => {
                self.vehs[i as usize] = Some(v);
                i
            }
            None => {
                self.vehs.push(Some(v));
                (self.vehs.len() - 1) as u32
            }
        };
        self.lanes[lane.idx()].push(vi);
        self.touched.push(lane.0);
        if t.vclass == "emergency" {
            self.emergency.push(vi);
        }
        self.totals.running += 1;
        self.totals.inserted += 1;
        self.measure.interval.inserted += 1;
        Ok(())
    }
}
