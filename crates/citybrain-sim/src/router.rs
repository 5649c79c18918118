//! Shortest travel-time routes on an empty network (how SUMO routes trips at
//! insertion): edge length over speed, plus the internal lane crossed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use citybrain_net::{EdgeFunction, EdgeId, Network};

pub struct Router {
    /// For each edge: (next normal edge, cost to traverse the next edge and the junction).
    adj: Vec<Vec<(EdgeId, f64)>>,
    own: Vec<f64>,
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
        Router { adj, own }
    }

    /// The fastest route from `from` to `to` (both included) for a vehicle class.
    pub fn shortest(&self, net: &Network, from: EdgeId, to: EdgeId, vclass: &str) -> Option<Vec<EdgeId>> {
        if from == to {
            return Some(vec![from]);
        }
        let allowed = |e: EdgeId| net.edge(e).lanes.iter().any(|l| net.lane(*l).allows(vclass));
        let n = self.adj.len();
        let mut dist = vec![f64::INFINITY; n];
        let mut prev: Vec<Option<EdgeId>> = vec![None; n];
        let mut heap = BinaryHeap::new();
        dist[from.idx()] = self.own[from.idx()];
        // Costs as integer microseconds keep the heap ordering total and deterministic.
        heap.push(Reverse(((dist[from.idx()] * 1e6) as u64, from.0)));
        while let Some(Reverse((_, e))) = heap.pop() {
            let e = EdgeId(e);
            if e == to {
                break;
            }
            let d = dist[e.idx()];
            for &(next, cost) in &self.adj[e.idx()] {
                if !allowed(next) {
                    continue;
                }
                let nd = d + cost;
                if nd < dist[next.idx()] {
                    dist[next.idx()] = nd;
                    prev[next.idx()] = Some(e);
                    heap.push(Reverse(((nd * 1e6) as u64, next.0)));
                }
            }
        }
        if dist[to.idx()].is_infinite() {
            return None;
        }
        let mut path = vec![to];
        let mut cur = to;
        while let Some(p) = prev[cur.idx()] {
            path.push(p);
            cur = p;
        }
        path.reverse();
        Some(path)
    }
}

fn travel_time(net: &Network, e: EdgeId) -> f64 {
    net.edge_length(e) / net.edge_speed(e).max(0.1)
}

/// Total length of a route's edges, m.
pub fn route_length(net: &Network, route: &[EdgeId]) -> f64 {
    route.iter().map(|e| net.edge_length(*e)).sum()
}
