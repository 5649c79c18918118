//! Shortest travel-time routes on an empty network (how SUMO routes trips at
//! insertion): edge length over speed, plus the internal lane crossed.
//!
//! A* with two lower bounds, whichever is larger: the straight line at top
//! speed, and landmark bounds (ALT: exact travel times to and from a few
//! far-apart edges, by the triangle inequality). On city grids the straight
//! line underestimates Manhattan routes badly; the landmarks keep the search
//! near the route, which is what makes routing 500k trips affordable.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use citybrain_net::{EdgeFunction, EdgeId, Network};

#[derive(Clone)]
pub struct Router {
    /// For each edge: (next normal edge, cost to traverse the next edge and the junction).
    adj: Vec<Vec<(EdgeId, f64)>>,
    own: Vec<f64>,
    /// Where each edge starts and ends (its junctions), for the A* estimate.
    start: Vec<(f64, f64)>,
    end: Vec<(f64, f64)>,
    /// The fastest lane speed of the network: distance / this never overestimates time.
    vmax: f64,
    /// Per edge, per landmark (edge-major, so one edge's bounds share a cache
    /// line): travel time from the landmark to the edge and from the edge to
    /// it (f32: the bounds need no more; infinity where unreachable).
    landmarks: usize,
    /// Edges with a lane passenger cars may use (the common case, precomputed).
    passenger_ok: Vec<bool>,
    from_landmark: Vec<f32>,
    to_landmark: Vec<f32>,
}

/// Landmarks for networks of at least this many edges (smaller ones search fast anyway).
const LANDMARK_MIN_EDGES: usize = 2_000;
const LANDMARKS: usize = 8;

/// Reused search state, one per thread: no allocation per query.
#[derive(Default)]
struct Scratch {
    dist: Vec<f64>,
    prev: Vec<u32>,
    stamp: Vec<u32>,
    /// The distance an edge was last expanded at (this generation): a heap
    /// entry left behind by a later improvement is skipped, not re-expanded.
    expanded: Vec<f64>,
    expanded_stamp: Vec<u32>,
    generation: u32,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Router {
    pub fn new(net: &Network) -> Self {
        let own: Vec<f64> = (0..net.edges.len())
            .map(|i| travel_time(net, EdgeId(i as u32)))
            .collect();
        let mut adj = vec![Vec::new(); net.edges.len()];
        for c in &net.connections {
            if net.edge(c.from).function != EdgeFunction::Normal || net.edge(c.to).function != EdgeFunction::Normal {
                continue;
            }
            let via = c
                .via
                .map(|l| net.lane(l).length / net.lane(l).speed.max(0.1))
                .unwrap_or(0.0);
            let cost = own[c.to.idx()] + via;
            let list: &mut Vec<(EdgeId, f64)> = &mut adj[c.from.idx()];
            match list.iter_mut().find(|(e, _)| *e == c.to) {
                Some(x) => x.1 = x.1.min(cost),
                None => list.push((c.to, cost)),
            }
        }
        let at = |j: Option<citybrain_net::JunctionId>| j.map(|j| (net.junctions[j.idx()].x, net.junctions[j.idx()].y));
        let start: Vec<(f64, f64)> = net.edges.iter().map(|e| at(e.from).unwrap_or((0.0, 0.0))).collect();
        let end: Vec<(f64, f64)> = net.edges.iter().map(|e| at(e.to).unwrap_or((0.0, 0.0))).collect();
        // Junction coordinates missing (no from/to) would make the estimate wrong: fall back to Dijkstra.
        let coords_ok = net
            .edges
            .iter()
            .all(|e| e.function != EdgeFunction::Normal || (e.from.is_some() && e.to.is_some()));
        let vmax = if coords_ok {
            net.lanes.iter().map(|l| l.speed).fold(0.0, f64::max)
        } else {
            0.0
        };
        let mut r = Router {
            adj,
            own,
            start,
            end,
            vmax,
            landmarks: 0,
            passenger_ok: net
                .edges
                .iter()
                .map(|e| e.lanes.iter().any(|l| net.lane(*l).allows("passenger")))
                .collect(),
            from_landmark: Vec::new(),
            to_landmark: Vec::new(),
        };
        if net.edges.len() >= LANDMARK_MIN_EDGES {
            r.place_landmarks(net);
        }
        r
    }

    /// Farthest-first landmarks: the first far from an arbitrary normal edge,
    /// each next one the edge farthest (by travel time) from those chosen.
    fn place_landmarks(&mut self, net: &Network) {
        let normal: Vec<usize> = (0..net.edges.len())
            .filter(|i| net.edges[*i].function == EdgeFunction::Normal)
            .collect();
        let Some(&seed) = normal.first() else { return };
        let mut rev: Vec<Vec<(EdgeId, f64)>> = vec![Vec::new(); self.adj.len()];
        for (e, list) in self.adj.iter().enumerate() {
            for &(n, c) in list {
                rev[n.idx()].push((EdgeId(e as u32), c));
            }
        }
        let far = |d: &[f64]| {
            normal
                .iter()
                .copied()
                .filter(|i| d[*i].is_finite())
                .max_by(|a, b| d[*a].total_cmp(&d[*b]).then(b.cmp(a)))
        };
        let first = dijkstra_all(&self.adj, seed);
        let Some(mut next) = far(&first) else { return };
        let mut nearest = vec![f64::INFINITY; self.adj.len()];
        let (mut froms, mut tos) = (Vec::new(), Vec::new());
        for _ in 0..LANDMARKS {
            let from = dijkstra_all(&self.adj, next);
            let to = dijkstra_all(&rev, next);
            for i in 0..nearest.len() {
                nearest[i] = nearest[i].min(from[i]);
            }
            froms.push(from);
            tos.push(to);
            match far(&nearest) {
                Some(n) if nearest[n] > 0.0 => next = n,
                _ => break,
            }
        }
        let k = froms.len();
        self.landmarks = k;
        self.from_landmark = (0..self.adj.len())
            .flat_map(|e| froms.iter().map(move |f| f[e] as f32))
            .collect();
        self.to_landmark = (0..self.adj.len())
            .flat_map(|e| tos.iter().map(move |t| t[e] as f32))
            .collect();
    }

    /// Landmark lower bound on the travel time from `e` to `t` (0 if none).
    fn landmark_bound(&self, e: usize, t: usize) -> f64 {
        let k = self.landmarks;
        if k == 0 {
            return 0.0;
        }
        let mut best = 0.0f32;
        let (fe, ft) = (
            &self.from_landmark[e * k..e * k + k],
            &self.from_landmark[t * k..t * k + k],
        );
        let (te, tt) = (&self.to_landmark[e * k..e * k + k], &self.to_landmark[t * k..t * k + k]);
        for i in 0..k {
            let (fe, ft, te, tt) = (fe[i], ft[i], te[i], tt[i]);
            if fe.is_finite() && ft.is_finite() {
                best = best.max(ft - fe);
            }
            if te.is_finite() && tt.is_finite() {
                best = best.max(te - tt);
            }
        }
        // f32 rounding: stay below the true value.
        (best as f64 * (1.0 - 1e-5) - 1e-3).max(0.0)
    }

    /// Lower bound on the time from the end of `e` to the start of `target`.
    fn estimate(&self, e: usize, target: usize) -> f64 {
        if self.vmax <= 0.0 {
            return 0.0;
        }
        if e == target {
            return 0.0;
        }
        let (a, b) = (self.end[e], self.start[target]);
        // Junction centres lie a few metres from where lanes begin and end:
        // keep a margin so the estimate stays below the true time.
        let line = (((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() - 30.0).max(0.0) / self.vmax;
        line.max(self.landmark_bound(e, target))
    }

    /// The fastest route from `from` to `to` (both included) for a vehicle
    /// class: A* over edges with a straight-line, top-speed estimate (exact,
    /// as the estimate never overestimates).
    pub fn shortest(&self, net: &Network, from: EdgeId, to: EdgeId, vclass: &str) -> Option<Vec<EdgeId>> {
        if from == to {
            return Some(vec![from]);
        }
        let allowed = |e: EdgeId| {
            if vclass == "passenger" {
                self.passenger_ok[e.idx()]
            } else {
                net.edge(e).lanes.iter().any(|l| net.lane(*l).allows(vclass))
            }
        };
        let n = self.adj.len();
        SCRATCH.with(|cell| {
            let mut sc = cell.borrow_mut();
            if sc.stamp.len() != n {
                *sc = Scratch {
                    dist: vec![0.0; n],
                    prev: vec![u32::MAX; n],
                    stamp: vec![0; n],
                    expanded: vec![0.0; n],
                    expanded_stamp: vec![0; n],
                    generation: 0,
                };
            }
            sc.generation = sc.generation.wrapping_add(1);
            if sc.generation == 0 {
                sc.stamp.iter_mut().for_each(|s| *s = 0);
                sc.expanded_stamp.iter_mut().for_each(|s| *s = 0);
                sc.generation = 1;
            }
            let g = sc.generation;
            let t = to.idx();
            let mut heap = BinaryHeap::new();
            sc.stamp[from.idx()] = g;
            sc.dist[from.idx()] = self.own[from.idx()];
            sc.prev[from.idx()] = u32::MAX;
            // Keys as integer microseconds keep the heap ordering total and deterministic.
            // Ties on f go to the entry nearest the target (smallest estimate):
            // grids have many equally fast routes, and this follows one of
            // them instead of widening over all of them.
            let key = |d: f64, e: usize| {
                let h = self.estimate(e, t);
                Reverse((((d + h) * 1e6) as u64, (h * 1e6) as u64, e as u32))
            };
            heap.push(key(sc.dist[from.idx()], from.idx()));
            let mut found = false;
            while let Some(Reverse((_, _, e))) = heap.pop() {
                let e = e as usize;
                if e == t {
                    found = true;
                    break;
                }
                let d = sc.dist[e];
                if sc.expanded_stamp[e] == g && sc.expanded[e] <= d {
                    continue;
                }
                sc.expanded_stamp[e] = g;
                sc.expanded[e] = d;
                for &(next, cost) in &self.adj[e] {
                    let ni = next.idx();
                    let nd = d + cost;
                    if sc.stamp[ni] == g && nd >= sc.dist[ni] {
                        continue;
                    }
                    if !allowed(next) {
                        continue;
                    }
                    sc.stamp[ni] = g;
                    sc.dist[ni] = nd;
                    sc.prev[ni] = e as u32;
                    heap.push(key(nd, ni));
                }
            }
            if !found {
                return None;
            }
            let mut path = vec![to];
            let mut cur = t;
            while sc.prev[cur] != u32::MAX {
                cur = sc.prev[cur] as usize;
                path.push(EdgeId(cur as u32));
            }
            path.reverse();
            Some(path)
        })
    }
}

/// Travel times from `src` to every edge over `adj` (Dijkstra, no estimate).
fn dijkstra_all(adj: &[Vec<(EdgeId, f64)>], src: usize) -> Vec<f64> {
    let mut dist = vec![f64::INFINITY; adj.len()];
    let mut heap = BinaryHeap::new();
    dist[src] = 0.0;
    heap.push(Reverse((0u64, src)));
    while let Some(Reverse((k, e))) = heap.pop() {
        let d = dist[e];
        if (d * 1e6) as u64 != k {
            continue; // stale entry
        }
        for &(n, c) in &adj[e] {
            let n = n.idx();
            let nd = d + c;
            if nd < dist[n] {
                dist[n] = nd;
                heap.push(Reverse(((nd * 1e6) as u64, n)));
            }
        }
    }
    dist
}

fn travel_time(net: &Network, e: EdgeId) -> f64 {
    net.edge_length(e) / net.edge_speed(e).max(0.1)
}

/// Total length of a route's edges, m.
pub fn route_length(net: &Network, route: &[EdgeId]) -> f64 {
    route.iter().map(|e| net.edge_length(*e)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(r: &Router, route: &[EdgeId]) -> f64 {
        let mut c = r.own[route[0].idx()];
        for w in route.windows(2) {
            c += r.adj[w[0].idx()]
                .iter()
                .find(|(e, _)| *e == w[1])
                .map(|x| x.1)
                .unwrap_or(f64::INFINITY);
        }
        c
    }

    #[test]
    fn a_star_finds_routes_as_fast_as_dijkstra() {
        let net =
            citybrain_net::sumo::read_net(format!("{}/tests/data/grid3.net.xml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let astar = Router::new(&net);
        let mut landmarks = Router::new(&net);
        landmarks.place_landmarks(&net); // grid3 is below the size that gets them by default
        assert!(!landmarks.from_landmark.is_empty());
        let mut dijkstra = Router::new(&net);
        dijkstra.vmax = 0.0; // no estimate: plain Dijkstra
        let normal: Vec<EdgeId> = (0..net.edges.len())
            .map(|i| EdgeId(i as u32))
            .filter(|e| net.edge(*e).function == EdgeFunction::Normal)
            .collect();
        for &a in &normal {
            for &b in &normal {
                let (x, y) = (
                    astar.shortest(&net, a, b, "passenger"),
                    dijkstra.shortest(&net, a, b, "passenger"),
                );
                let z = landmarks.shortest(&net, a, b, "passenger");
                match (x, y, z) {
                    (Some(x), Some(y), Some(z)) => {
                        assert!((cost(&astar, &x) - cost(&dijkstra, &y)).abs() < 1e-6, "{a} -> {b}");
                        assert!(
                            (cost(&landmarks, &z) - cost(&dijkstra, &y)).abs() < 1e-6,
                            "ALT {a} -> {b}"
                        );
                    }
                    (None, None, None) => {}
                    other => panic!("{a} -> {b}: {other:?}"),
                }
            }
        }
    }
}
