//! What drivers do on their own: the way in chosen by live travel times (again while held outside the block), going round a jammed block.

use super::*;

impl Run<'_> {
    pub(super) fn drive_s(&mut self, from: EdgeId, lot: usize) -> f64 {
        let edge = self.d.add.parking_areas[self.d.lots[lot].area.idx()].edge;
        *self
            .drive_cache
            .entry((from, lot))
            .or_insert_with(|| self.d.free_flow_s(from, edge))
    }

    /// Drivers choose their way into the block as they set off, as a
    /// navigation app's live traffic would have them: among the road ends
    /// on the side they come from, the one with the least time to their lot
    /// by the live travel times of each turn on the way, plus how long
    /// traffic has been held outside that road end. A driver keeps the way
    /// drawn unless another saves over `behaviour.way_in_margin_s`; one held outside
    /// the block (`held`) thinks again.
    pub(super) fn choose_ways_in(&mut self, t: f64, held_since: &HashMap<EdgeId, f64>, held: Vec<(usize, usize)>) {
        let horizon = t + self.sim.step_length();
        let mut deciding = held;
        while self.next_departure < self.departs.len() && self.departs[self.next_departure] < horizon {
            let v = self.next_departure;
            match self.kinds[v] {
                Kind::Visitor(h) => deciding.push((v, h as usize)),
                Kind::Through => self.maybe_go_round(t, v, held_since),
                Kind::Staff => {}
            }
            self.next_departure += 1;
        }
        for (v, h) in deciding {
            let (now_in, exit) = {
                let r = &self.sim.demand().vehicles[v].route;
                (r[0], r[r.len() - 1])
            };
            let Some(side) = self.d.entries.iter().find(|e| e.0 == now_in).map(|e| e.2) else {
                continue;
            };
            let candidates: Vec<EdgeId> = self.d.entries.iter().filter(|e| e.2 == side).map(|e| e.0).collect();
            let mut cost_now_in = f64::INFINITY;
            let mut best: Option<(f64, EdgeId, Arc<[EdgeId]>)> = None;
            for entry in candidates {
                let Some((cost, route)) = self.way_in(entry, h, exit) else {
                    continue;
                };
                let cost = cost + held_since.get(&entry).map_or(0.0, |since| t - since);
                if entry == now_in {
                    cost_now_in = cost;
                }
                if best.as_ref().is_none_or(|b| cost < b.0) {
                    best = Some((cost, entry, route));
                }
            }
            let Some((cost, entry, route)) = best else { continue };
            if entry == now_in || cost >= cost_now_in - self.d.spec.behaviour.way_in_margin_s {
                continue;
            }
            if self.sim.replan_before_departure(VehicleId(v as u32), route).is_ok() {
                self.origins[v] = entry;
                self.other_way_in += 1;
            }
        }
    }

    /// A through driver whose way across the block is jammed goes round it
    /// instead, as its app would offer: when the live time across (turn
    /// times on its route, plus how long traffic has been held at its road
    /// end) is over `behaviour.through_detour_s` longer than at free flow. The trip
    /// then counts as its free-flow time plus that detour (plus any time it
    /// already stood outside), so that going round is never free.
    pub(super) fn maybe_go_round(&mut self, t: f64, v: usize, held_since: &HashMap<EdgeId, f64>) {
        let route = self.sim.demand().vehicles[v].route.clone();
        let mut free = 0.0;
        let mut live = held_since.get(&route[0]).map_or(0.0, |since| t - since);
        for w in route.windows(2) {
            let ff = self.d.edge_free_flow_s(w[0]);
            free += ff;
            live += self.turn_times.estimate(w[0], w[1], ff);
        }
        if live - free > self.d.spec.behaviour.through_detour_s
            && self.sim.cancel_before_departure(VehicleId(v as u32)).is_ok()
        {
            let stood = (t - self.departs[v]).max(0.0);
            self.through_tt
                .push(stood + free + self.d.spec.behaviour.through_detour_s);
            self.through_round += 1;
        }
    }

    /// (live time to the lot's gate, route) for a visitor of hospital `h`
    /// coming in at `entry` and leaving by `exit`: the quickest way to the
    /// lot by the live turn times, then the usual way on.
    pub(super) fn way_in(&mut self, entry: EdgeId, h: usize, exit: EdgeId) -> Option<(f64, Arc<[EdgeId]>)> {
        let hosp = &self.d.hospitals[h];
        let (aisle, access) = (hosp.lot_edges[0], hosp.access_edge);
        let (cost, mut route) = self.live_route(entry, access)?;
        route.push(aisle);
        let d = self.d;
        let on = self
            .way_on
            .entry((aisle, exit))
            .or_insert_with(|| d.route(aisle, exit).ok())
            .clone()?;
        route.extend(on.into_iter().skip(1));
        Some((cost, route.into()))
    }

    /// The quickest route from `from` to `to` (both included) by the live
    /// turn times (Dijkstra: the block has a few dozen edges), with its time.
    pub(super) fn live_route(&self, from: EdgeId, to: EdgeId) -> Option<(f64, Vec<EdgeId>)> {
        let n = self.d.net.edges.len();
        let mut dist = vec![f64::INFINITY; n];
        let mut prev = vec![usize::MAX; n];
        let mut heap = std::collections::BinaryHeap::new();
        dist[from.idx()] = 0.0;
        // Keys in integer milliseconds: a total, deterministic order.
        heap.push(std::cmp::Reverse((0u64, from.idx())));
        while let Some(std::cmp::Reverse((k, e))) = heap.pop() {
            if e == to.idx() {
                break;
            }
            if (dist[e] * 1e3) as u64 != k {
                continue;
            }
            let ee = EdgeId(e as u32);
            let free_flow = self.d.edge_free_flow_s(ee);
            for &next in &self.d.next_edges[e] {
                let nd = dist[e] + self.turn_times.estimate(ee, next, free_flow);
                if nd < dist[next.idx()] {
                    dist[next.idx()] = nd;
                    prev[next.idx()] = e;
                    heap.push(std::cmp::Reverse(((nd * 1e3) as u64, next.idx())));
                }
            }
        }
        if !dist[to.idx()].is_finite() {
            return None;
        }
        let mut route = vec![to];
        let mut cur = to.idx();
        while prev[cur] != usize::MAX {
            cur = prev[cur];
            route.push(EdgeId(cur as u32));
        }
        route.reverse();
        Some((dist[to.idx()], route))
    }
}
