//! Parking: areas and their capacity, stops, rerouting to another area when one is full, leaving a space, the parking event log.

use super::*;

/// The state of the parking: what is parked where, and the gates.
#[derive(Debug, Default)]
pub(super) struct ParkingState {
    /// Cars parked in each area.
    pub(super) occupancy: Vec<u32>,
    /// When each parking area's entry and exit gates are free again (s).
    pub(super) gate_free: Vec<(f64, f64)>,
    /// Parked vehicles by the time they want to leave (ms) and index.
    pub(super) parked: std::collections::BTreeSet<(i64, u32)>,
    /// Parking entries and exits since the last `take_parking_events` (None: not logged).
    pub(super) events: Option<Vec<ParkingEvent>>,
}

impl Sim {
    /// Adds parking areas and rerouters (from additional files).
    pub fn with_parking(mut self, add: Additional) -> Sim {
        self.lots.occupancy = vec![0; add.parking_areas.len()];
        self.lots.gate_free = vec![(f64::NEG_INFINITY, f64::NEG_INFINITY); add.parking_areas.len()];
        self.measure.det_acc = vec![
            DetAcc {
                begin: self.clock.now(),
                ..DetAcc::default()
            };
            add.detectors.len()
        ];
        if !add.rerouters.is_empty() {
            self.router = Some(Router::new(&self.net));
        }
        self.add = add;
        self
    }

    /// Logs every car that parks or leaves (drain with `take_parking_events`).
    pub fn with_parking_events(mut self) -> Sim {
        self.lots.events = Some(Vec::new());
        self
    }

    /// Parking entries and exits since the last call (empty unless logged).
    pub fn take_parking_events(&mut self) -> Vec<ParkingEvent> {
        self.lots.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Changes how many cars a parking area admits from now on (a lot that
    /// shares its spaces for some hours of the day). Cars already parked
    /// stay; while more are parked than the new capacity, nobody enters.
    pub fn set_parking_capacity(&mut self, area: ParkingAreaId, capacity: u32) {
        if let Some(p) = self.add.parking_areas.get_mut(area.idx()) {
            p.capacity = capacity;
        }
    }

    /// The parking areas (with their current capacities).
    pub fn parking_areas(&self) -> &[crate::additional::ParkingArea] {
        &self.add.parking_areas
    }

    /// Sends a vehicle on the road to another parking area for its next stop
    /// (guidance, or a guard turning it away). The new route keeps the
    /// vehicle's next edge, so that it is never caught in a lane that does
    /// not lead on; from there it takes the fastest way to the area and then
    /// on to its destination.
    pub fn redirect_to_parking(&mut self, handle: VehicleHandle, area: ParkingAreaId) -> Result<(), RedirectError> {
        self.redirect_to_parking_avoiding(handle, area, None)
    }

    /// As `redirect_to_parking`, but not by way of `avoid` as its next edge
    /// (a guard waving a car past the gate it was about to turn into): the
    /// vehicle then takes another turn its lane offers.
    pub fn redirect_to_parking_avoiding(
        &mut self,
        handle: VehicleHandle,
        area: ParkingAreaId,
        avoid: Option<EdgeId>,
    ) -> Result<(), RedirectError> {
        let (handle, area) = (handle.0, area.idx());
        let Some(Some(v)) = self.vehs.get(handle as usize) else {
            return Err(RedirectError::NoVehicle);
        };
        if v.stop_pa.is_none() || !self.lanes[v.lane.idx()].contains(&handle) {
            return Err(RedirectError::NoVehicle);
        }
        let p = self.add.parking_areas.get(area).ok_or(RedirectError::NoArea)?;
        if self.router.is_none() {
            self.router = Some(Router::new(&self.net));
        }
        let router = self.router.as_ref().ok_or(RedirectError::NoRoute)?;
        let vclass = self.demand.vtypes[v.vtype as usize].vclass.clone();
        let idx = v.route_idx as usize;
        let here = self.net.lane(v.lane).edge;
        let dest = *v.route.last().ok_or(RedirectError::NoRoute)?;
        let on_normal = self.is_normal(v.lane);
        let mut route: Vec<EdgeId> = Vec::new();
        if on_normal && here == p.edge && p.end_pos > v.pos {
            route.push(here);
        } else {
            // Keep the edge it is on (or just left) and the next one.
            route.push(v.route[idx]);
            let next = *v.route.get(idx + 1).ok_or(RedirectError::NoRoute)?;
            let anchors: Vec<EdgeId> = if avoid == Some(next) && on_normal {
                self.links[v.lane.idx()]
                    .iter()
                    .map(|l| l.to_edge)
                    .filter(|e| Some(*e) != avoid)
                    .collect()
            } else {
                vec![next]
            };
            let to_area = anchors
                .into_iter()
                .filter_map(|a| router.shortest(&self.net, a, p.edge, &vclass))
                .min_by(|a, b| {
                    crate::router::route_length(&self.net, a).total_cmp(&crate::router::route_length(&self.net, b))
                })
                .ok_or(RedirectError::NoRoute)?;
            route.extend(to_area);
        }
        let on = router
            .shortest(&self.net, p.edge, dest, &vclass)
            .ok_or(RedirectError::NoRoute)?;
        route.extend(on.into_iter().skip(1));
        self.parking.rerouted += 1;
        if let Some(v) = self.vehs[handle as usize].as_mut() {
            v.route = route.into();
            v.route_idx = 0;
            v.stop_pa = Some(area);
            v.reroutes += 1;
        }
        Ok(())
    }

    /// Occupied spaces of each parking area (the scenario layer publishes these).
    pub fn parking_occupancy(&self) -> Vec<(&str, u32, u32)> {
        self.add
            .parking_areas
            .iter()
            .zip(&self.lots.occupancy)
            .map(|(p, o)| (p.id.as_str(), *o, p.capacity))
            .collect()
    }

    /// Distance to the stop position of the vehicle's next parking area, when
    /// that lies ahead on this lane's edge.
    pub(super) fn stop_ahead(&self, v: &Veh, lane: LaneId) -> Option<f64> {
        let pa = v.stop_pa?;
        let p = &self.add.parking_areas[pa];
        // One already alongside the area when it filled up waits at its end
        // (a leaving car pulls out ahead of it).
        let full = self.lots.occupancy[pa] >= p.capacity;
        let at = if full && v.pos > p.start_pos + 0.01 {
            p.end_pos
        } else {
            self.stop_position(pa)
        };
        // A car that rolled a little past the point (discrete steps) still stops.
        (self.net.lane(lane).edge == p.edge && v.pos <= at + STOP_TOLERANCE).then(|| (at - v.pos).max(0.0))
    }

    /// Where a vehicle heading for a parking area stops: its end when there
    /// is a free space, its start while it is full (so that cars leaving at
    /// the end are not blocked by the cars waiting for their spaces).
    pub(super) fn stop_position(&self, pa: usize) -> f64 {
        let p = &self.add.parking_areas[pa];
        if self.lots.occupancy[pa] < p.capacity {
            p.end_pos
        } else {
            p.start_pos
        }
    }

    /// A vehicle that drove past the parking area it was heading for (it
    /// could not reach its lane in time) goes round and comes back to it.
    pub(super) fn come_back_for_missed_stops(&mut self) {
        if self.add.parking_areas.is_empty() {
            return;
        }
        let mut missed = Vec::new();
        for &li in &self.occupied {
            let lane = LaneId(li);
            if !self.is_normal(lane) {
                continue;
            }
            let edge = self.net.lane(lane).edge;
            for &vi in &self.lanes[li as usize] {
                let v = self.veh(vi);
                if let Some(pa) = v.stop_pa {
                    let p = &self.add.parking_areas[pa];
                    if p.edge == edge && v.pos > p.end_pos + STOP_TOLERANCE + 0.5 && self.lane_len(lane) - v.pos > 1.0 {
                        missed.push((vi, pa));
                    }
                }
            }
        }
        for (vi, pa) in missed {
            if self
                .redirect_to_parking(VehicleHandle(vi), ParkingAreaId(pa as u32))
                .is_err()
            {
                // Its next edge leads nowhere back (the network's edge): any other turn.
                let next = {
                    let v = self.veh(vi);
                    v.route.get(v.route_idx as usize + 1).copied()
                };
                let _ = self.redirect_to_parking_avoiding(VehicleHandle(vi), ParkingAreaId(pa as u32), next);
            }
        }
    }

    pub(super) fn advance_stop(&mut self, vi: u32) {
        let spec_stops = {
            let v = self.veh(vi);
            self.demand.vehicles[v.spec as usize].stops.clone()
        };
        if let Some(v) = self.vehs[vi as usize].as_mut() {
            v.stop_idx += 1;
            v.stop_pa = spec_stops.get(v.stop_idx as usize).map(|s| s.parking_area);
        }
    }

    /// Vehicles standing at their parking area park, or, if it is full, are
    /// rerouted to an alternative (rerouter) or wait on the lane.
    pub(super) fn handle_stops(&mut self) {
        let mut arrived: Vec<(u32, usize)> = Vec::new();
        for (pa, p) in self.add.parking_areas.iter().enumerate() {
            for &vi in &self.lanes[p.lane.idx()] {
                let v = self.veh(vi);
                if v.stop_pa == Some(pa) && v.pos >= self.stop_position(pa) - 1.0 && v.speed < 0.5 {
                    arrived.push((vi, pa));
                }
            }
        }
        let now = self.clock.end_of_step();
        for (vi, pa) in arrived {
            let p = self.add.parking_areas[pa].clone();
            if self.lots.occupancy[pa] < p.capacity {
                if now < self.lots.gate_free[pa].0 {
                    continue; // the entry gate is busy with the car before
                }
                self.lots.gate_free[pa].0 = now + p.entry_service;
                self.lanes[p.lane.idx()].retain(|x| *x != vi);
                self.lots.occupancy[pa] += 1;
                self.parking.parked += 1;
                let spec_stop = {
                    let v = self.veh(vi);
                    self.demand.vehicles[v.spec as usize]
                        .stops
                        .get(v.stop_idx as usize)
                        .cloned()
                };
                let leave = match spec_stop {
                    Some(s) => match (s.duration, s.until) {
                        (Some(d), Some(u)) => (now + d).max(u),
                        (Some(d), None) => now + d,
                        (None, Some(u)) => u.max(now),
                        (None, None) => now,
                    },
                    None => now,
                };
                if let Some(v) = self.vehs[vi as usize].as_mut() {
                    v.speed = 0.0;
                    v.standing = 0.0;
                    v.parked_at = now;
                    if let Some(log) = self.lots.events.as_mut() {
                        log.push(ParkingEvent {
                            time: now,
                            vehicle: VehicleId(v.spec),
                            area: ParkingAreaId(pa as u32),
                            parked: true,
                        });
                    }
                }
                self.lots.parked.insert(((leave * 1000.0).round() as i64, vi));
            } else if let Some(alt) = self.choose_alternative(vi, pa) {
                self.reroute_to(vi, alt);
            }
        }
    }

    /// The alternative parking area with room that is nearest by route, if a
    /// rerouter offers one for this full area.
    pub(super) fn choose_alternative(&self, vi: u32, full: usize) -> Option<usize> {
        self.choose_alternative_from(vi, full, self.add.parking_areas[full].edge)
    }

    /// As `choose_alternative`, for a vehicle on `from` (a rerouter's edge).
    pub(super) fn choose_alternative_from(&self, vi: u32, full: usize, from: EdgeId) -> Option<usize> {
        let router = self.router.as_ref()?;
        let v = self.veh(vi);
        let vclass = &self.vtype(v).vclass;
        let mut best: Option<(f64, usize)> = None;
        for alt in self.add.alternatives(from, self.clock.now(), full) {
            let a = alt.parking_area;
            let q = &self.add.parking_areas[a];
            if a == full || self.lots.occupancy[a] >= q.capacity || (q.edge == from && q.end_pos <= v.pos) {
                continue;
            }
            let Some(path) = router.shortest(&self.net, from, q.edge, vclass) else {
                continue;
            };
            let dist = crate::router::route_length(&self.net, &path[1..]) + q.end_pos - v.pos;
            if best.is_none_or(|(d, i)| dist < d || (dist == d && a < i)) {
                best = Some((dist, a));
            }
        }
        best.map(|(_, a)| a)
    }

    pub(super) fn reroute_to(&mut self, vi: u32, alt: usize) {
        let Some(router) = self.router.as_ref() else { return };
        let (cur, dest, vclass) = {
            let v = self.veh(vi);
            (
                self.net.lane(v.lane).edge,
                *v.route.last().unwrap_or(&self.net.lane(v.lane).edge),
                self.vtype(v).vclass.clone(),
            )
        };
        let target = self.add.parking_areas[alt].edge;
        let Some(mut path) = router.shortest(&self.net, cur, target, &vclass) else {
            return;
        };
        let Some(rest) = router.shortest(&self.net, target, dest, &vclass) else {
            return;
        };
        path.extend(rest.into_iter().skip(1));
        self.parking.rerouted += 1;
        if let Some(v) = self.vehs[vi as usize].as_mut() {
            v.route = path.into();
            v.route_idx = 0;
            v.stop_pa = Some(alt);
            v.reroutes += 1;
        }
    }

    /// Parked vehicles whose time is up re-enter their lane when there is room.
    pub(super) fn unpark(&mut self) {
        let now_ms = self.clock.end_of_step_ms();
        let due: Vec<(i64, u32)> = self
            .lots
            .parked
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .copied()
            .collect();
        let now = self.clock.end_of_step();
        for (t, vi) in due {
            let Some(pa) = self.veh(vi).stop_pa else { continue };
            let p = self.add.parking_areas[pa].clone();
            if now < self.lots.gate_free[pa].1 {
                continue; // the exit gate is busy: the car waits inside, its space still taken
            }
            let (len, gap) = {
                let v = self.veh(vi);
                let vt = self.vtype(v);
                (vt.length, vt.min_gap)
            };
            let list = &self.lanes[p.lane.idx()];
            let at = list
                .iter()
                .position(|o| self.veh(*o).pos <= p.end_pos + 0.01)
                .unwrap_or(list.len());
            // Back onto the road at the area's end; a car standing there (one
            // waiting for a space) is passed: the leaving car pulls out ahead of it.
            let reentry = match list.get(at).map(|f| self.veh(*f)) {
                Some(f) if f.pos > p.end_pos - len - gap => f.pos + self.vtype(f).min_gap + len,
                _ => p.end_pos,
            };
            let ahead_ok = at == 0 || {
                let l = self.veh(list[at - 1]);
                l.pos - self.vtype(l).length >= reentry + gap
            };
            if !ahead_ok || reentry > self.lane_len(p.lane) {
                continue;
            }
            self.lots.parked.remove(&(t, vi));
            self.lots.gate_free[pa].1 = now + p.exit_service;
            self.lots.occupancy[pa] -= 1;
            self.lanes[p.lane.idx()].insert(at, vi);
            self.touched.push(p.lane.0);
            if let Some(v) = self.vehs[vi as usize].as_mut() {
                v.lane = p.lane;
                v.pos = reentry;
                v.speed = 0.0;
                v.standing = 0.0;
                v.stop_time += now - v.parked_at;
                if let Some(log) = self.lots.events.as_mut() {
                    log.push(ParkingEvent {
                        time: now,
                        vehicle: VehicleId(v.spec),
                        area: ParkingAreaId(pa as u32),
                        parked: false,
                    });
                }
            }
            self.advance_stop(vi);
        }
    }
}
