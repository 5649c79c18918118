//! Routes repaired: another way in before departure, cancellation, going round after a missed turn.

use super::*;

impl Sim {
    /// Gives a vehicle that is not on the road yet another route — a driver
    /// who picks the way in at the last moment, or one held outside the
    /// network who tries another way in (it queues there behind those
    /// already waiting). The route must be connected and pass the edges of
    /// the vehicle's stops in order.
    pub fn replan_before_departure(&mut self, vehicle: VehicleId, route: Arc<[EdgeId]>) -> Result<(), ReplanError> {
        let vehicle = vehicle.idx();
        let spec = self.demand.vehicles.get(vehicle).ok_or(ReplanError::NoVehicle)?;
        let held_at = if vehicle < self.next_spec {
            Some(self.held_at(vehicle).ok_or(ReplanError::Departed)?)
        } else {
            None
        };
        let connected = route.windows(2).all(|w| {
            self.net
                .edge(w[0])
                .lanes
                .iter()
                .any(|l| self.links[l.idx()].iter().any(|k| k.to_edge == w[1]))
        });
        let mut at = 0;
        let stops_on_route = spec.stops.iter().all(|st| {
            let Some(p) = self.add.parking_areas.get(st.parking_area) else {
                return false;
            };
            match route[at..].iter().position(|e| *e == p.edge) {
                Some(i) => {
                    at += i;
                    true
                }
                None => false,
            }
        });
        if route.is_empty() || !connected || !stops_on_route {
            return Err(ReplanError::BadRoute);
        }
        let first = route[0];
        self.demand.vehicles[vehicle].route = route;
        if let Some((old, at)) = held_at {
            self.pending[old.idx()].remove(at);
            if self.pending[first.idx()].is_empty() && !self.pending_edges.contains(&first) {
                self.pending_edges.push(first);
            }
            self.pending[first.idx()].push_back(vehicle as u32);
        }
        Ok(())
    }

    /// Where a vehicle whose departure has come waits to enter: its first
    /// edge and its place in that edge's queue (None once it is on the road).
    pub(super) fn held_at(&self, vehicle: usize) -> Option<(EdgeId, usize)> {
        let first = self.demand.vehicles.get(vehicle)?.route[0];
        let at = self.pending[first.idx()].iter().position(|s| *s as usize == vehicle)?;
        Some((first, at))
    }

    /// Calls off the trip of a vehicle that is not on the road yet — one
    /// still to depart, or one held at the network's edge (a driver who
    /// takes a way that avoids the network).
    pub fn cancel_before_departure(&mut self, vehicle: VehicleId) -> Result<(), ReplanError> {
        let vehicle = vehicle.idx();
        if vehicle >= self.demand.vehicles.len() {
            return Err(ReplanError::NoVehicle);
        }
        if vehicle >= self.next_spec {
            self.cancelled.insert(vehicle);
            return Ok(());
        }
        let (first, at) = self.held_at(vehicle).ok_or(ReplanError::Departed)?;
        self.pending[first.idx()].remove(at);
        self.totals.waiting_to_insert -= 1;
        self.totals.cancelled += 1;
        Ok(())
    }

    /// Vehicles held at the end of a lane that does not lead on along their
    /// route take a turn their lane offers and are routed on from there.
    pub(super) fn reroute_missed_turns(&mut self) {
        if self.cfg.behaviour.missed_turn_after <= 0.0 {
            return;
        }
        let mut missed = Vec::new();
        for &li in &self.occupied {
            let Some(&front) = self.lanes[li as usize].first() else {
                continue;
            };
            let v = self.veh(front);
            if v.standing >= self.cfg.behaviour.missed_turn_after
                && self.is_normal(v.lane)
                && v.route_idx as usize + 1 < v.route.len()
                && self.link_of(v).is_none()
                && self.lane_len(v.lane) - v.pos < 5.0
            {
                missed.push(front);
            }
        }
        if missed.is_empty() {
            return;
        }
        if self.router.is_none() {
            self.router = Some(Router::new(&self.net));
        }
        for vi in missed {
            let Some(router) = self.router.as_ref() else { return };
            let v = self.veh(vi);
            let vclass = &self.vtype(v).vclass;
            let here = self.net.lane(v.lane).edge;
            // Where it is going next: its parking area, else the route's end.
            let (goal, dest) = (
                v.stop_pa.map(|pa| self.add.parking_areas[pa].edge),
                *v.route.last().unwrap_or(&here),
            );
            let mut best: Option<(f64, Vec<EdgeId>)> = None;
            for link in &self.links[v.lane.idx()] {
                let to = link.to_edge;
                let path = match goal {
                    Some(g) => router.shortest(&self.net, to, g, vclass).and_then(|mut a| {
                        let b = router.shortest(&self.net, g, dest, vclass)?;
                        a.extend(b.into_iter().skip(1));
                        Some(a)
                    }),
                    None => router.shortest(&self.net, to, dest, vclass),
                };
                let Some(path) = path else { continue };
                let len = crate::router::route_length(&self.net, &path);
                if best.as_ref().is_none_or(|(l, _)| len < *l) {
                    best = Some((len, path));
                }
            }
            let Some((_, path)) = best else { continue };
            let mut route = vec![here];
            route.extend(path);
            if let Some(v) = self.vehs[vi as usize].as_mut() {
                v.route = route.into();
                v.route_idx = 0;
                v.reroutes += 1;
                v.standing = 0.0;
            }
        }
    }
}
