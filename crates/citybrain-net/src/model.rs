//! The network model: dense ids, resolved references, lookups by name.

use std::collections::HashMap;

/// Declares a dense index newtype (`pub struct Name(pub u32)`) with `idx()`
/// and a prefixed `Display`; the twin declares its own with it.
#[macro_export]
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub fn idx(self) -> usize {
                self.0 as usize
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A dense index into the network's edges.
    EdgeId, "e"
);
id_type!(
    /// A dense index into the network's lanes.
    LaneId, "l"
);
id_type!(
    /// A dense index into the network's junctions.
    JunctionId, "j"
);
id_type!(
    /// A dense index into the network's traffic light systems.
    TlsId, "t"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeFunction {
    Normal,
    Internal,
    Crossing,
    WalkingArea,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub id: String,
    pub function: EdgeFunction,
    pub from: Option<JunctionId>,
    pub to: Option<JunctionId>,
    pub priority: i32,
    /// Lanes by index (0 = rightmost).
    pub lanes: Vec<LaneId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub id: String,
    pub edge: EdgeId,
    pub index: u32,
    /// m/s
    pub speed: f64,
    /// m
    pub length: f64,
    pub shape: Vec<(f64, f64)>,
    /// Vehicle classes allowed (empty: all, unless `disallow` says otherwise).
    pub allow: Vec<String>,
    pub disallow: Vec<String>,
}

impl Lane {
    /// Whether a vehicle class may use this lane.
    pub fn allows(&self, vclass: &str) -> bool {
        if !self.allow.is_empty() {
            return self.allow.iter().any(|c| c == vclass || c == "all");
        }
        !self.disallow.iter().any(|c| c == vclass || c == "all")
    }

    /// The point `pos` metres along the lane (clamped to its ends). The
    /// shape's drawn length may differ from `length` (SUMO keeps both), so
    /// `pos` is scaled to the shape.
    pub fn point_at(&self, pos: f64) -> Option<(f64, f64)> {
        let (first, rest) = self.shape.split_first()?;
        let drawn: f64 = self.shape.windows(2).map(|w| dist(w[0], w[1])).sum();
        if rest.is_empty() || drawn <= 0.0 {
            return Some(*first);
        }
        let mut left = if self.length > 0.0 {
            pos.clamp(0.0, self.length) / self.length * drawn
        } else {
            0.0
        };
        for w in self.shape.windows(2) {
            let d = dist(w[0], w[1]);
            if left <= d && d > 0.0 {
                let f = left / d;
                return Some((w[0].0 + f * (w[1].0 - w[0].0), w[0].1 + f * (w[1].1 - w[0].1)));
            }
            left -= d;
        }
        self.shape.last().copied()
    }
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
}

#[cfg(test)]
mod lane_tests {
    use super::*;

    fn lane(shape: Vec<(f64, f64)>, length: f64) -> Lane {
        Lane {
            id: "a_0".into(),
            edge: EdgeId(0),
            index: 0,
            speed: 13.9,
            length,
            shape,
            allow: Vec::new(),
            disallow: Vec::new(),
        }
    }

    #[test]
    fn a_point_along_a_bent_lane() {
        let l = lane(vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)], 20.0);
        assert_eq!(l.point_at(5.0), Some((5.0, 0.0)));
        assert_eq!(l.point_at(15.0), Some((10.0, 5.0)));
        assert_eq!(l.point_at(-3.0), Some((0.0, 0.0)));
        assert_eq!(l.point_at(99.0), Some((10.0, 10.0)));
        // A lane longer than drawn: positions scale to the drawing.
        let l = lane(vec![(0.0, 0.0), (10.0, 0.0)], 20.0);
        assert_eq!(l.point_at(10.0), Some((5.0, 0.0)));
        assert_eq!(lane(Vec::new(), 5.0).point_at(1.0), None);
    }
}

/// One row of a junction's right-of-way table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub index: u32,
    /// Bit i set: this link must yield to link i (read right to left).
    pub response: String,
    /// Bit i set: link i crosses this one.
    pub foes: String,
    pub cont: bool,
}

impl Request {
    fn bit(s: &str, i: u32) -> bool {
        let b = s.as_bytes();
        (i as usize) < b.len() && b[b.len() - 1 - i as usize] == b'1'
    }
    pub fn yields_to(&self, link: u32) -> bool {
        Self::bit(&self.response, link)
    }
    pub fn conflicts_with(&self, link: u32) -> bool {
        Self::bit(&self.foes, link)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Junction {
    pub id: String,
    /// SUMO junction type: traffic_light, priority, right_before_left, internal, dead_end, ...
    pub kind: String,
    pub x: f64,
    pub y: f64,
    pub inc_lanes: Vec<LaneId>,
    pub int_lanes: Vec<LaneId>,
    pub requests: Vec<Request>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub from: EdgeId,
    pub from_lane: u32,
    pub to: EdgeId,
    pub to_lane: u32,
    pub via: Option<LaneId>,
    pub tls: Option<TlsId>,
    pub link_index: Option<u32>,
    /// s straight, l left, r right, t turn, L/R partially
    pub dir: String,
    /// M major, m minor, = zipper, s stop, w allway, o dead, O on, ...
    pub state: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// s
    pub duration: f64,
    pub state: String,
    pub min_dur: Option<f64>,
    pub max_dur: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlLogic {
    pub id: String,
    pub program_id: String,
    /// static, actuated, delay_based
    pub kind: String,
    pub offset: f64,
    pub phases: Vec<Phase>,
}

impl TlLogic {
    pub fn cycle(&self) -> f64 {
        self.phases.iter().map(|p| p.duration).sum()
    }
}

/// Where the network sits on Earth (for lon/lat output).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Location {
    pub net_offset: (f64, f64),
    pub conv_boundary: [f64; 4],
    pub orig_boundary: [f64; 4],
    pub proj_parameter: String,
}

/// A whole network with its lookups.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub location: Option<Location>,
    pub edges: Vec<Edge>,
    pub lanes: Vec<Lane>,
    pub junctions: Vec<Junction>,
    pub connections: Vec<Connection>,
    pub tls: Vec<TlLogic>,
    pub edge_by_name: HashMap<String, EdgeId>,
    pub lane_by_name: HashMap<String, LaneId>,
    pub junction_by_name: HashMap<String, JunctionId>,
    pub tls_by_name: HashMap<String, TlsId>,
    /// Connections leaving each edge (indices into `connections`).
    pub outgoing: Vec<Vec<usize>>,
}

impl Network {
    pub fn edge(&self, id: EdgeId) -> &Edge {
        &self.edges[id.idx()]
    }
    pub fn lane(&self, id: LaneId) -> &Lane {
        &self.lanes[id.idx()]
    }
    pub fn edge_id(&self, name: &str) -> Option<EdgeId> {
        self.edge_by_name.get(name).copied()
    }
    /// Length of an edge (its first lane's; SUMO lanes of one edge share a length).
    pub fn edge_length(&self, e: EdgeId) -> f64 {
        self.edge(e).lanes.first().map(|l| self.lane(*l).length).unwrap_or(0.0)
    }
    /// Highest lane speed of an edge.
    pub fn edge_speed(&self, e: EdgeId) -> f64 {
        self.edge(e)
            .lanes
            .iter()
            .map(|l| self.lane(*l).speed)
            .fold(0.0, f64::max)
    }
    /// Connections from edge `from` to edge `to`.
    pub fn connections_between(&self, from: EdgeId, to: EdgeId) -> impl Iterator<Item = &Connection> {
        self.outgoing[from.idx()]
            .iter()
            .map(|i| &self.connections[*i])
            .filter(move |c| c.to == to)
    }
    /// Normal edges reachable from `from` by one connection.
    pub fn successors(&self, from: EdgeId) -> impl Iterator<Item = EdgeId> + '_ {
        let mut seen: Vec<EdgeId> = Vec::new();
        self.outgoing[from.idx()].iter().filter_map(move |i| {
            let to = self.connections[*i].to;
            if seen.contains(&to) {
                None
            } else {
                seen.push(to);
                Some(to)
            }
        })
    }
    /// Counts for summaries and logs.
    pub fn stats(&self) -> NetworkStats {
        NetworkStats {
            normal_edges: self.edges.iter().filter(|e| e.function == EdgeFunction::Normal).count(),
            internal_edges: self
                .edges
                .iter()
                .filter(|e| e.function == EdgeFunction::Internal)
                .count(),
            lanes: self.lanes.len(),
            junctions: self.junctions.len(),
            connections: self.connections.len(),
            traffic_lights: self.tls.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkStats {
    pub normal_edges: usize,
    pub internal_edges: usize,
    pub lanes: usize,
    pub junctions: usize,
    pub connections: usize,
    pub traffic_lights: usize,
}
