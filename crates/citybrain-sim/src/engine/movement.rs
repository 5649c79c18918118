//! Movement (the apply half of a step): vehicles moved lane by lane in a fixed order, junction crossings, lane changes carried out, arrivals.

use super::*;

impl Sim {
    pub(super) fn apply(&mut self, plans: &[Plan], dt: f64) {
        // Lane changes are wished now and carried out after the moves.
        let mut changes: Vec<(u32, LaneId, LaneId)> = Vec::new();
        let mut joining: Vec<u32> = Vec::new();
        let mut n = 0;
        for &li in &self.occupied {
            for &vi in &self.lanes[li as usize] {
                let p = plans[n];
                n += 1;
                if let Some(to) = p.change {
                    changes.push((vi, LaneId(li), to));
                    if p.joining {
                        joining.push(vi);
                    }
                }
                if let Some(v) = self.vehs[vi as usize].as_mut() {
                    v.speed = p.speed;
                }
            }
        }
        // Move, lane by lane, front to back; crossings go to a list and are placed after.
        // (vehicle, lane entered, lane it came from, route index before)
        let mut crossings: Vec<(u32, LaneId, LaneId, u32)> = Vec::new();
        let mut entered: Vec<u32> = Vec::new();
        let mut arrivals: Vec<u32> = Vec::new();
        // The vehicle table is moved out for the loop (no method called in it
        // reads it), so each vehicle is updated in place, and each lane list
        // is compacted in place.
        let mut vehs = std::mem::take(&mut self.vehs);
        for oi in 0..self.occupied.len() {
            let li = self.occupied[oi] as usize;
            if self.lanes[li].is_empty() {
                continue;
            }
            let lane_len = self.lane_len(LaneId(li as u32));
            let lane_speed = self.net.lanes[li].speed;
            let mut list = std::mem::take(&mut self.lanes[li]);
            let mut kept = 0;
            for r in 0..list.len() {
                let vi = list[r];
                let Some(v) = vehs[vi as usize].as_mut() else {
                    continue;
                };
                let t = &self.demand.vtypes[v.vtype as usize];
                let vmax = (lane_speed * t.speed_factor).min(t.max_speed);
                v.pos += v.speed * dt;
                v.route_length += v.speed * dt;
                if v.speed < STANDING {
                    v.waiting += dt;
                    v.standing += dt;
                } else {
                    v.standing = 0.0;
                }
                v.time_loss += dt * (1.0 - v.speed / vmax.max(0.1)).max(0.0);
                let mut vacated = false;
                if v.pos >= lane_len {
                    let last_edge = v.route_idx as usize + 1 >= v.route.len() && self.is_normal(LaneId(li as u32));
                    if last_edge {
                        arrivals.push(vi);
                        vacated = true;
                    } else if let Some(link) = self.link_of(v).cloned() {
                        let (mut came_from, mut route_before) = (LaneId(li as u32), v.route_idx);
                        if self.is_normal(LaneId(li as u32)) {
                            // One taking its zipper turn does not wait again inside.
                            v.yielding = match self.signal(&link) {
                                LinkSignal::Yield if !self.my_zipper_turn(&link) => link.junction.zip(link.request),
                                _ => None,
                            };
                            if self.cfg.behaviour.zipper_merges {
                                self.last_into[link.target.idx()] =
                                    link.junction.zip(link.request).map(|(j, r)| (j.0, r));
                            }
                        }
                        v.pos -= lane_len;
                        if self.is_normal(link.next) {
                            v.route_idx += 1;
                        }
                        v.lane = link.next;
                        // Short internal lanes can be crossed within one step.
                        while v.pos >= self.lane_len(v.lane) && self.is_internal(v.lane) {
                            let ll = self.lane_len(v.lane);
                            let Some(nl) = self.links[v.lane.idx()].first().cloned() else {
                                break;
                            };
                            came_from = v.lane;
                            route_before = v.route_idx;
                            v.pos -= ll;
                            v.lane = nl.next;
                            if self.is_normal(nl.next) {
                                v.route_idx += 1;
                            }
                        }
                        if self.is_normal(v.lane) {
                            v.yielding = None;
                        }
                        crossings.push((vi, v.lane, came_from, route_before));
                        vacated = true;
                    } else {
                        // Wrong lane and out of room: hold at the end.
                        v.pos = lane_len - 0.01;
                        v.speed = 0.0;
                    }
                }
                if !vacated {
                    list[kept] = vi;
                    kept += 1;
                }
            }
            list.truncate(kept);
            self.lanes[li] = list;
        }
        self.vehs = vehs;
        // Place the vehicles that crossed onto a new lane, front first. One
        // that would overlap a vehicle already there (two links merging in the
        // same step) stays at the end of the lane it came from.
        crossings.sort_by(|a, b| {
            a.1.cmp(&b.1)
                .then(self.veh(b.0).pos.total_cmp(&self.veh(a.0).pos))
                .then(a.0.cmp(&b.0))
        });
        for (vi, lane, came_from, route_before) in crossings {
            let (pos, len) = {
                let v = self.veh(vi);
                (v.pos, self.vtype(v).length)
            };
            let list = &self.lanes[lane.idx()];
            let at = list
                .iter()
                .rposition(|o| self.veh(*o).pos >= pos)
                .map(|p| p + 1)
                .unwrap_or(0);
            let clash_ahead = at > 0 && {
                let l = self.veh(list[at - 1]);
                l.pos - self.vtype(l).length < pos
            };
            let clash_behind = list.get(at).is_some_and(|f| self.veh(*f).pos > pos - len);
            if clash_ahead || clash_behind {
                let back_len = self.lane_len(came_from);
                if let Some(v) = self.vehs[vi as usize].as_mut() {
                    v.lane = came_from;
                    v.pos = back_len - 0.01;
                    v.speed = 0.0;
                    v.route_idx = route_before;
                }
                self.lanes[came_from.idx()].insert(0, vi);
                self.touched.push(came_from.0);
            } else {
                self.lanes[lane.idx()].insert(at, vi);
                self.touched.push(lane.0);
                if self.is_normal(lane) {
                    entered.push(vi);
                }
            }
        }
        // A rerouter on the edge just entered sends a vehicle whose parking
        // area is full (and visible from here) to an alternative now.
        if !self.add.rerouters.is_empty() {
            for vi in entered {
                let Some(pa) = self.veh(vi).stop_pa else { continue };
                if self.lots.occupancy[pa] < self.add.parking_areas[pa].capacity {
                    continue;
                }
                let edge = self.net.lane(self.veh(vi).lane).edge;
                let visible = self
                    .add
                    .alternatives(edge, self.clock.now(), pa)
                    .iter()
                    .any(|a| a.parking_area == pa && a.visible);
                if visible {
                    if let Some(alt) = self.choose_alternative_from(vi, pa, edge) {
                        self.reroute_to(vi, alt);
                    }
                }
            }
        }
        for vi in arrivals {
            self.arrive(vi);
        }
        // Lane changes after the moves (as SUMO orders them), checked against the new positions.
        // Two vehicles side by side that each need the other's lane swap places
        // (what SUMO's cooperative lane changing achieves); without this they
        // would block each other until a teleport.
        // A vehicle that crossed into the next lane or arrived during the move
        // no longer changes from where it planned to.
        changes.retain(|(vi, from, _)| self.vehs[*vi as usize].as_ref().is_some_and(|v| v.lane == *from));
        let mut swapped = vec![false; changes.len()];
        for w in self.wishers.iter_mut() {
            w.clear();
        }
        let mut new_wishers: Vec<(LaneId, f64, u32)> = Vec::new();
        for a in 0..changes.len() {
            if swapped[a] {
                continue;
            }
            let (va, fa, ta) = changes[a];
            let pa = self.veh(va).pos;
            let partner = (a + 1..changes.len()).find(|&b| {
                let (vb, fb, tb) = changes[b];
                !swapped[b] && fb == ta && tb == fa && (self.veh(vb).pos - pa).abs() < 1.0
            });
            let Some(b) = partner else { continue };
            let vb = changes[b].0;
            // Each takes the other's place: only where it fits between the
            // other's leader and follower (lengths differ, places by up to 1 m).
            let fits = |me: u32, other: u32, lane: LaneId| {
                let v = self.veh(me);
                self.gap_ok(v, self.vtype(v), lane, Some(other))
            };
            if !fits(va, vb, ta) || !fits(vb, va, fa) {
                continue;
            }
            swapped[a] = true;
            swapped[b] = true;
            for (vi, from, to) in [(va, fa, ta), (vb, ta, fa)] {
                if let Some(i) = self.lanes[from.idx()].iter().position(|x| *x == vi) {
                    self.lanes[from.idx()][i] = u32::MAX - vi; // placeholder, replaced below
                }
                if let Some(v) = self.vehs[vi as usize].as_mut() {
                    v.lane = to;
                }
            }
            // Exchange the two slots so both lanes stay in position order.
            for lane in [fa, ta] {
                for x in self.lanes[lane.idx()].iter_mut() {
                    if *x == u32::MAX - va {
                        *x = vb;
                    } else if *x == u32::MAX - vb {
                        *x = va;
                    }
                }
            }
        }
        for (k, (vi, from, to)) in changes.into_iter().enumerate() {
            if swapped[k] {
                continue;
            }
            let (fits, pos) = {
                let v = self.veh(vi);
                (self.gap_ok(v, self.vtype(v), to, None), v.pos)
            };
            if !fits {
                let (back, urgent) = {
                    let v = self.veh(vi);
                    // Urgent near the lane's end, or near the stop it must
                    // reach from the lane next door.
                    let near_stop = v.stop_pa.is_some_and(|pa| {
                        let p = &self.add.parking_areas[pa];
                        p.edge == self.net.lane(from).edge && p.end_pos - v.pos < 50.0
                    });
                    (
                        v.pos - self.vtype(v).length,
                        self.lane_len(from) - v.pos < 50.0 || near_stop || joining.contains(&vi),
                    )
                };
                if urgent {
                    new_wishers.push((to, back, vi));
                }
                continue;
            }
            self.lanes[from.idx()].retain(|x| *x != vi);
            let at = self.lanes[to.idx()]
                .iter()
                .position(|o| self.veh(*o).pos < pos)
                .unwrap_or(self.lanes[to.idx()].len());
            self.lanes[to.idx()].insert(at, vi);
            self.touched.push(to.0);
            if let Some(v) = self.vehs[vi as usize].as_mut() {
                v.lane = to;
            }
        }
        for (lane, back, vi) in new_wishers {
            self.wishers[lane.idx()].push((back, vi));
        }
        if self.cfg.behaviour.rescue_lane && !self.emergency.is_empty() {
            self.pass_through_rescue_lanes(dt);
        }
        if !self.add.parking_areas.is_empty() {
            self.handle_stops();
            self.unpark();
        }
        self.reroute_missed_turns();
        self.come_back_for_missed_stops();
        self.teleport_stuck();
    }

    pub(super) fn arrive(&mut self, vi: u32) {
        let Some(v) = self.vehs[vi as usize].take() else { return };
        if !self.emergency.is_empty() {
            self.emergency.retain(|e| *e != vi);
        }
        self.free_slots.push(vi);
        self.totals.running -= 1;
        self.totals.arrived += 1;
        let spec = &self.demand.vehicles[v.spec as usize];
        let arrival = self.clock.end_of_step();
        let trip = TripInfo {
            id: spec.id.clone(),
            depart: v.inserted_at,
            depart_delay: v.inserted_at - v.depart,
            arrival,
            duration: arrival - v.inserted_at,
            route_length: v.route_length,
            waiting_time: v.waiting,
            time_loss: v.time_loss,
            teleports: v.teleports,
            vtype: self.demand.vtypes[v.vtype as usize].id.clone(),
            stop_time: v.stop_time,
            reroutes: v.reroutes,
        };
        self.measure.interval.arrived += 1;
        self.measure.interval.sum_duration += trip.duration;
        self.measure.interval.sum_waiting += trip.waiting_time;
        self.measure.interval.sum_time_loss += trip.time_loss;
        self.measure.trips.push(trip);
    }
}
