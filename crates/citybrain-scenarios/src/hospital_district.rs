//! The hospital district: a weekday around ZJU First and Second Affiliated
//! Hospitals (Qingchun Road / Jiefang Road, Hangzhou), where cars queued for
//! hours to enter hospital parking, run under the baseline (everyone heads for
//! their hospital's lot and queues on the road when it is full; pay at the
//! exit gate) or with the City Brain measures, each switchable on its own:
//!
//! - `guidance`: live availability of every lot (the hospitals' and the shared
//!   lots nearby, in the hours they share) guides each arriving car to a lot
//!   with free space, weighing the walk to the hospital; drivers comply with
//!   a configurable probability;
//! - `turn-away`: no queuing lane — a car reaching a full hospital lot is
//!   turned away at the gate to the best lot with room;
//! - `fast-gates`: pay after leaving, so the exit gate takes a few seconds.
//!
//! Network and lots come from `scenarios/hospital-district/generate.py`; the
//! demand is drawn here per seed from `district.json`. The controller reads
//! lot availability through [`Availability`]: the twin's own counts in batch
//! runs, the hub's `OffStreetParking` entities in live mode.

use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;
use std::sync::Arc;

use citybrain_net::{EdgeId, Network};
use citybrain_sim::demand::{DepartLane, DepartSpeed};
use citybrain_sim::router::Router;
use citybrain_sim::signals::controllers_for;
use citybrain_sim::{rng, Additional, Demand, Sim, SimConfig, StopSpec, VType, VehicleSpec};
use serde::{Deserialize, Serialize};

use crate::draw::{profile_at, Stream};
use crate::turn_times::TurnTimes;
use crate::ScenarioError;

const SPEC: &str = include_str!("../../../scenarios/hospital-district/district.json");
const NET_GZ: &[u8] = include_bytes!("../../../scenarios/hospital-district/district.net.xml.gz");
const ADD: &str = include_str!("../../../scenarios/hospital-district/district.add.xml");

/// A car moving slower than this is in a queue (SUMO's halting speed, 5 km/h).
const HALTING_MS: f64 = 1.39;
/// How often the queue on the roads is counted, s.
const QUEUE_SAMPLE_S: f64 = 60.0;
/// How often the series for the report are sampled, s.
const SERIES_SAMPLE_S: f64 = 300.0;
/// A run stops here even if cars are still parked or queued (30 h).
const HARD_END_S: f64 = 108_000.0;
/// Drivers keep to the lane their route needs this many edges ahead.
const LANE_LOOKAHEAD_EDGES: usize = 4;
/// A driver held this long in a lane that does not turn where they need
/// (beside a standing queue that does not let them in) drives on and is
/// routed round, s.
const MISSED_TURN_AFTER_S: f64 = 300.0;
/// A driver takes another way into the block than the one it would take
/// anyway only if that saves more than this (s).
const WAY_IN_MARGIN_S: f64 = 120.0;
/// A visitor held outside the block (its way in jammed) looks at the other
/// ways in again this often (s).
const HELD_THINK_AGAIN_S: f64 = 600.0;
/// A through driver goes round the block when crossing it would take this
/// much longer than at free flow (s): about what the roads round it add.
const THROUGH_DETOUR_S: f64 = 600.0;
/// Visitor stays are drawn within these bounds, s (a lognormal's far tails
/// are not hospital visits).
const MIN_DWELL_S: f64 = 600.0;
const MAX_DWELL_S: f64 = 8.0 * 3600.0;
/// Width of the wait histogram's buckets, min.
const WAIT_BUCKET_MIN: f64 = 15.0;
/// Tags of the draws that decide who is let out at the door and who books.
const DOOR_DRAW: u64 = 0xd00d;
const BOOKING_DRAW: u64 = 0xb00c;

#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub hospitals: Vec<HospitalSpec>,
    pub shared_lots: Vec<SharedLotSpec>,
    pub demand: DemandSpec,
    pub gates: Gates,
    pub guidance: GuidanceSpec,
    pub door: DoorSpec,
    pub reservation: ReservationSpec,
    pub roads: Roads,
}

/// The door as drop-off only: who is let out there and for how long.
#[derive(Debug, Clone, Deserialize)]
pub struct DoorSpec {
    /// Share of visitor cars that bring a patient to be let out at the door.
    pub drop_off_share: f64,
    /// How long letting the patient out takes, s (uniform between; the
    /// camera-enforced limit is the upper bound).
    pub drop_off_s: (f64, f64),
    /// Cars the drop-off bay holds at once.
    pub bay_spaces: u32,
}

/// Reservation of a space with the medical appointment.
#[derive(Debug, Clone, Deserialize)]
pub struct ReservationSpec {
    /// Share of visitors who book a space when they book the appointment.
    pub share: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Roads {
    pub east_west: Vec<RoadSpec>,
    pub north_south: Vec<RoadSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoadSpec {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HospitalSpec {
    pub id: String,
    pub name: String,
    /// The road its gate is on.
    pub gate_on: String,
    pub visitor_spaces: u32,
    pub staff_spaces: u32,
    pub visitor_cars_per_day: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SharedLotSpec {
    pub id: String,
    pub name: String,
    /// The road it is entered from.
    pub on: String,
    pub spaces: u32,
    /// (time s, spaces offered to hospital visitors), linear in between.
    pub offered: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemandSpec {
    pub begin_s: f64,
    /// Through traffic runs until here; visitors follow their profile.
    pub end_s: f64,
    pub visitor_profile: Vec<(f64, f64)>,
    pub visitor_dwell_median_s: f64,
    pub visitor_dwell_share_under_3h: f64,
    pub staff_arrive_s: (f64, f64),
    pub staff_leave_s: (f64, f64),
    pub through_veh_h_per_direction: ThroughRates,
    pub through_profile: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ThroughRates {
    pub east_west: f64,
    pub north_south: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Gates {
    pub pay_at_exit_s: f64,
    pub pay_after_leaving_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GuidanceSpec {
    pub compliance: f64,
    pub walk_speed_ms: f64,
    pub walk_detour: f64,
}

/// Which City Brain measures are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Measures {
    pub guidance: bool,
    pub turn_away: bool,
    pub fast_gates: bool,
    /// The door is drop-off only: patients are let out there (3 min at
    /// most) and the car goes on to park.
    pub drop_off: bool,
    /// Some visitors book a space in a shared lot with their appointment.
    pub reservation: bool,
}

impl Measures {
    pub const BASELINE: Measures = Measures {
        guidance: false,
        turn_away: false,
        fast_gates: false,
        drop_off: false,
        reservation: false,
    };
    /// Every documented measure; reservation (not documented for these
    /// hospitals) is added by name: `citybrain+reservation`.
    pub const CITYBRAIN: Measures = Measures {
        guidance: true,
        turn_away: true,
        fast_gates: true,
        drop_off: true,
        reservation: false,
    };
    /// The measures' names, in the order they are written.
    pub const NAMES: [&'static str; 5] = ["guidance", "turn-away", "fast-gates", "drop-off", "reservation"];

    fn flags(self) -> [bool; 5] {
        [
            self.guidance,
            self.turn_away,
            self.fast_gates,
            self.drop_off,
            self.reservation,
        ]
    }

    /// `baseline`, `citybrain`, `citybrain+reservation` or `baseline+guidance+…`.
    pub fn name(self) -> String {
        let all = Measures::CITYBRAIN.flags();
        let city_brain = self.flags().iter().zip(all).all(|(on, in_all)| *on || !in_all);
        let mut s = String::from(if city_brain { "citybrain" } else { "baseline" });
        for ((on, in_all), n) in self.flags().into_iter().zip(all).zip(Measures::NAMES) {
            if on && !(city_brain && in_all) {
                s.push('+');
                s.push_str(n);
            }
        }
        s
    }

    /// Baseline, each measure alone, and all of them (the City Brain).
    pub fn each_alone() -> Vec<Measures> {
        vec![
            Measures::BASELINE,
            Measures {
                guidance: true,
                ..Measures::BASELINE
            },
            Measures {
                turn_away: true,
                ..Measures::BASELINE
            },
            Measures {
                fast_gates: true,
                ..Measures::BASELINE
            },
            Measures {
                drop_off: true,
                ..Measures::BASELINE
            },
            Measures {
                reservation: true,
                ..Measures::BASELINE
            },
            Measures::CITYBRAIN,
            Measures {
                reservation: true,
                ..Measures::CITYBRAIN
            },
        ]
    }
}

impl FromStr for Measures {
    type Err = ScenarioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ScenarioError::Data(format!(
                "unknown policy '{s}': baseline or citybrain, optionally followed by +measure (guidance, turn-away, fast-gates, drop-off, reservation), e.g. baseline+guidance"
            ))
        };
        let mut parts = s.split('+');
        let mut m = match parts.next() {
            Some("baseline") => Measures::BASELINE,
            Some("citybrain") => Measures::CITYBRAIN,
            _ => return Err(bad()),
        };
        for p in parts {
            match p {
                "guidance" => m.guidance = true,
                "turn-away" => m.turn_away = true,
                "fast-gates" => m.fast_gates = true,
                "drop-off" => m.drop_off = true,
                "reservation" => m.reservation = true,
                _ => return Err(bad()),
            }
        }
        Ok(m)
    }
}

/// A hospital and where its cars go.
#[derive(Debug, Clone)]
pub struct Hospital {
    pub id: String,
    pub name: String,
    /// The visitors' lot (index in `District::lots`).
    pub lot: usize,
    staff_area: usize,
    /// The drop-off bay at the door (parking area index).
    door_area: usize,
    /// The access road from the gate to the lot: the queuing lane.
    pub access_edge: EdgeId,
    /// The lot's own roads (its aisle and the way out), not public roads.
    lot_edges: [EdgeId; 2],
    /// Gate position in network coordinates, m.
    pub gate_xy: (f64, f64),
}

/// A lot hospital visitors may park in.
#[derive(Debug, Clone)]
pub struct Lot {
    pub id: String,
    pub name: String,
    /// Index of its parking area in the simulation.
    pub area: usize,
    /// The hospital it belongs to (None: a shared lot).
    pub hospital: Option<usize>,
    /// The road it is entered from (a hospital's lot: its gate's).
    pub street: String,
    pub spaces: u32,
    /// (time s, spaces offered to visitors); empty: all, all day.
    offered: Vec<(f64, f64)>,
    /// Position in network coordinates, m.
    pub xy: (f64, f64),
    /// Walking distance to each hospital's gate, m (0 for its own lot).
    pub walk_m: Vec<f64>,
}

impl Lot {
    /// Spaces it offers hospital visitors at `t`.
    pub fn offered_at(&self, t: f64) -> u32 {
        if self.offered.is_empty() {
            self.spaces
        } else {
            (profile_at(&self.offered, t).round().max(0.0) as u32).min(self.spaces)
        }
    }
}

/// Free spaces per lot as the controller is told them (lot id → free).
/// Lots not named are read from the twin.
pub type Availability = HashMap<String, u32>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Visitor(u8),
    Staff,
    Through,
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub measures: Measures,
    pub seed: u64,
    /// Multiplies every demand rate.
    pub demand_scale: f64,
    /// Overrides the spec's compliance with guidance (0..1).
    pub compliance: Option<f64>,
    /// Stop demand (visitors and through traffic) from here, s after midnight
    /// (reduced runs in tests); the run goes on until the cars are done.
    pub demand_until: Option<f64>,
}

impl RunOptions {
    pub fn new(measures: Measures, seed: u64) -> Self {
        RunOptions {
            measures,
            seed,
            demand_scale: 1.0,
            compliance: None,
            demand_until: None,
        }
    }
}

/// The scenario: network, lots, demand rates.
pub struct District {
    pub net: Arc<Network>,
    add: Additional,
    pub spec: Spec,
    router: Router,
    pub hospitals: Vec<Hospital>,
    pub lots: Vec<Lot>,
    /// Entries: (edge, road name, end letter, east-west road?).
    entries: Vec<(EdgeId, String, char, bool)>,
    /// The normal edges each normal edge leads to.
    next_edges: Vec<Vec<EdgeId>>,
    /// Exits: (edge, road name, end letter).
    exits: Vec<(EdgeId, String, char)>,
}

impl District {
    /// The embedded scenario.
    pub fn load() -> Result<District, ScenarioError> {
        let spec: Spec = serde_json::from_str(SPEC).map_err(|e| ScenarioError::Data(format!("district.json: {e}")))?;
        validate(&spec)?;
        let mut xml = String::new();
        flate2::read::GzDecoder::new(NET_GZ)
            .read_to_string(&mut xml)
            .map_err(|e| ScenarioError::Data(format!("district.net.xml.gz: {e}")))?;
        let net = citybrain_net::sumo::read_net_str("district.net.xml", &xml)
            .map_err(|e| ScenarioError::Data(e.to_string()))?;
        let add =
            Additional::read_str(&net, "district.add.xml", ADD).map_err(|e| ScenarioError::Data(e.to_string()))?;
        let area = |id: &str| {
            add.parking_by_name
                .get(id)
                .copied()
                .ok_or_else(|| ScenarioError::Data(format!("district.add.xml has no parking area '{id}'")))
        };
        let edge = |id: &str| {
            net.edge_id(id)
                .ok_or_else(|| ScenarioError::Data(format!("the network has no edge '{id}'")))
        };
        let area_xy = |a: usize| {
            let p = &add.parking_areas[a];
            point_along(&net.lane(p.lane).shape, (p.start_pos + p.end_pos) / 2.0)
        };
        let mut hospitals = Vec::new();
        let mut lots = Vec::new();
        for (i, h) in spec.hospitals.iter().enumerate() {
            let a = area(&h.id)?;
            let gate = net
                .junction_by_name
                .get(&format!("{}_gate", h.id))
                .map(|j| &net.junctions[j.idx()])
                .ok_or_else(|| ScenarioError::Data(format!("the network has no junction '{}_gate'", h.id)))?;
            hospitals.push(Hospital {
                id: h.id.clone(),
                name: h.name.clone(),
                lot: lots.len(),
                staff_area: area(&format!("{}_staff", h.id))?,
                door_area: area(&format!("{}_door", h.id))?,
                access_edge: edge(&format!("{}_in", h.id))?,
                lot_edges: [edge(&format!("{}_aisle", h.id))?, edge(&format!("{}_out", h.id))?],
                gate_xy: (gate.x, gate.y),
            });
            lots.push(Lot {
                id: h.id.clone(),
                name: h.name.clone(),
                area: a,
                hospital: Some(i),
                street: h.gate_on.clone(),
                spaces: h.visitor_spaces,
                offered: Vec::new(),
                xy: area_xy(a),
                walk_m: Vec::new(),
            });
        }
        for s in &spec.shared_lots {
            let a = area(&s.id)?;
            lots.push(Lot {
                id: s.id.clone(),
                name: s.name.clone(),
                area: a,
                hospital: None,
                street: s.on.clone(),
                spaces: s.spaces,
                offered: s.offered.clone(),
                xy: area_xy(a),
                walk_m: Vec::new(),
            });
        }
        for lot in &mut lots {
            lot.walk_m = hospitals
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    if lot.hospital == Some(i) {
                        0.0
                    } else {
                        spec.guidance.walk_detour * ((lot.xy.0 - h.gate_xy.0).hypot(lot.xy.1 - h.gate_xy.1))
                    }
                })
                .collect();
        }
        // The roads' ends: junctions named road_w/e/n/s.
        let ew: Vec<&str> = spec.roads.east_west.iter().map(|r| r.name.as_str()).collect();
        let ns: Vec<&str> = spec.roads.north_south.iter().map(|r| r.name.as_str()).collect();
        let end_of = |j: Option<citybrain_net::JunctionId>| -> Option<(String, char, bool)> {
            let id = &net.junctions[j?.idx()].id;
            let (road, end) = id.rsplit_once('_')?;
            let end = match end {
                "w" | "e" | "n" | "s" => end.chars().next()?,
                _ => return None,
            };
            if ew.contains(&road) {
                Some((road.to_string(), end, true))
            } else if ns.contains(&road) {
                Some((road.to_string(), end, false))
            } else {
                None
            }
        };
        let mut entries = Vec::new();
        let mut exits = Vec::new();
        for (i, e) in net.edges.iter().enumerate() {
            if e.function != citybrain_net::EdgeFunction::Normal {
                continue;
            }
            let id = EdgeId(i as u32);
            if let Some((road, end, is_ew)) = end_of(e.from) {
                entries.push((id, road, end, is_ew));
            }
            if let Some((road, end, _)) = end_of(e.to) {
                exits.push((id, road, end));
            }
        }
        if entries.is_empty() || exits.len() < 2 {
            return Err(ScenarioError::Data(
                "the network has no road ends to enter and leave by".into(),
            ));
        }
        let router = Router::new(&net);
        // Every lot must be reachable from a road end and lead back out.
        for lot in &lots {
            let e = add.parking_areas[lot.area].edge;
            let reach_in = entries
                .iter()
                .any(|(x, ..)| router.shortest(&net, *x, e, "passenger").is_some());
            let reach_out = exits
                .iter()
                .any(|(x, ..)| router.shortest(&net, e, *x, "passenger").is_some());
            if !reach_in || !reach_out {
                return Err(ScenarioError::Data(format!(
                    "lot '{}' on edge {} cannot be driven to and away from",
                    lot.id,
                    net.edge(e).id
                )));
            }
        }
        let mut next_edges = vec![Vec::new(); net.edges.len()];
        for c in &net.connections {
            let normal = |e: EdgeId| net.edge(e).function == citybrain_net::EdgeFunction::Normal;
            if normal(c.from) && normal(c.to) && !next_edges[c.from.idx()].contains(&c.to) {
                next_edges[c.from.idx()].push(c.to);
            }
        }
        Ok(District {
            next_edges,
            net: Arc::new(net),
            add,
            spec,
            router,
            hospitals,
            lots,
            entries,
            exits,
        })
    }

    /// Whether an edge is a lot's own road (its aisle or its way out), not a public road.
    /// The road a public edge belongs to, by the generator's names: edges
    /// are `<from>__<to>` (`-` in front for the other direction), junctions
    /// `<road>_<road>` where two roads cross, `<road>_<w|e|n|s>` at the
    /// block's edge and `<hospital>_gate`; a gate's stretch and the access
    /// road `<hospital>_in` belong to the road the gate is on. None for an
    /// edge of no road (a lot's own roads).
    pub fn street_of_edge(&self, edge: &str) -> Option<String> {
        // A hospital's access road (its queuing lane) is off its gate's road.
        if let Some(h) = self.spec.hospitals.iter().find(|h| edge == format!("{}_in", h.id)) {
            return Some(h.gate_on.clone());
        }
        let (from, to) = edge.trim_start_matches('-').split_once("__")?;
        let roads: Vec<&str> = self
            .spec
            .roads
            .east_west
            .iter()
            .chain(&self.spec.roads.north_south)
            .map(|r| r.name.as_str())
            .collect();
        let road_tokens = |node: &str| -> Vec<String> {
            if let Some(h) = node.strip_suffix("_gate") {
                return self
                    .spec
                    .hospitals
                    .iter()
                    .filter(|x| x.id == h)
                    .map(|x| x.gate_on.clone())
                    .collect();
            }
            node.split('_')
                .filter(|t| roads.contains(t))
                .map(str::to_string)
                .collect()
        };
        let (a, b) = (road_tokens(from), road_tokens(to));
        a.into_iter().find(|t| b.contains(t))
    }

    pub fn is_lot_road(&self, edge: &str) -> bool {
        self.net
            .edge_id(edge)
            .is_some_and(|e| self.hospitals.iter().any(|h| h.lot_edges.contains(&e)))
    }

    /// The hospital lot index (in `lots`) of a parking area, if any.
    fn lot_of_area(&self, area: usize) -> Option<usize> {
        self.lots.iter().position(|l| l.area == area)
    }

    fn route(&self, from: EdgeId, to: EdgeId) -> Result<Vec<EdgeId>, ScenarioError> {
        self.router.shortest(&self.net, from, to, "passenger").ok_or_else(|| {
            ScenarioError::Data(format!(
                "no route from {} to {}",
                self.net.edge(from).id,
                self.net.edge(to).id
            ))
        })
    }

    /// Free-flow driving time along one edge, s.
    fn edge_free_flow_s(&self, e: EdgeId) -> f64 {
        self.net.edge_length(e) / self.net.edge_speed(e).max(0.1)
    }

    /// Free-flow driving time along the fastest route, s.
    fn free_flow_s(&self, from: EdgeId, to: EdgeId) -> f64 {
        self.router
            .shortest(&self.net, from, to, "passenger")
            .map_or(f64::INFINITY, |r| r.iter().map(|e| self.edge_free_flow_s(*e)).sum())
    }

    /// Draws one weekday's demand for a seed; returns it with each vehicle's kind.
    fn demand(&self, o: &RunOptions) -> Result<(Demand, Vec<Kind>), ScenarioError> {
        let d = &self.spec.demand;
        let door = &self.spec.door;
        let until = o.demand_until.unwrap_or(f64::INFINITY);
        let mut out: Vec<(VehicleSpec, Kind)> = Vec::new();
        let mut routes: HashMap<(EdgeId, EdgeId, Option<EdgeId>), Arc<[EdgeId]>> = HashMap::new();
        let mut route_via = |from: EdgeId, via: Option<EdgeId>, to: EdgeId| -> Result<Arc<[EdgeId]>, ScenarioError> {
            if let Some(r) = routes.get(&(from, to, via)) {
                return Ok(r.clone());
            }
            let r: Vec<EdgeId> = match via {
                None => self.route(from, to)?,
                Some(v) => {
                    let mut a = self.route(from, v)?;
                    a.extend(self.route(v, to)?.into_iter().skip(1));
                    a
                }
            };
            let r: Arc<[EdgeId]> = r.into();
            routes.insert((from, to, via), r.clone());
            Ok(r)
        };
        let weights: Vec<f64> = self
            .entries
            .iter()
            .map(|e| {
                if e.3 {
                    d.through_veh_h_per_direction.east_west
                } else {
                    d.through_veh_h_per_direction.north_south
                }
            })
            .collect();
        let total_w: f64 = weights.iter().sum();
        // A destination other than where the car came in.
        let pick_exit = |s: &mut Stream, entry: usize| -> EdgeId {
            let (_, road, end, _) = &self.entries[entry];
            let choices: Vec<EdgeId> = self
                .exits
                .iter()
                .filter(|x| !(&x.1 == road && x.2 == *end))
                .map(|x| x.0)
                .collect();
            choices[((s.uniform() * choices.len() as f64) as usize).min(choices.len() - 1)]
        };
        // Visitors: Poisson arrivals shaped by the profile, lognormal dwell.
        let sigma = dwell_sigma(d);
        let profile_area = integral(&d.visitor_profile);
        let peak = d.visitor_profile.iter().map(|p| p.1).fold(0.0, f64::max);
        for (hi, h) in self.spec.hospitals.iter().enumerate() {
            let hosp = &self.hospitals[hi];
            let area = self.lots[hosp.lot].area;
            let aisle = hosp.lot_edges[0];
            let per_s = h.visitor_cars_per_day * o.demand_scale / profile_area.max(1e-9);
            if per_s <= 0.0 || peak <= 0.0 {
                continue;
            }
            let mut s = Stream::new(o.seed, &format!("visitors.{}", h.id));
            let mut t = d.visitor_profile[0].0;
            let end = d.visitor_profile.last().map_or(t, |p| p.0).min(until);
            let mut k = 0;
            loop {
                t += -(1.0 - s.uniform()).ln() / (per_s * peak);
                if t >= end {
                    break;
                }
                if s.uniform() * peak > profile_at(&d.visitor_profile, t) {
                    continue;
                }
                let entry = pick_weighted(&weights, total_w, s.uniform());
                let exit = pick_exit(&mut s, entry);
                let dwell = d.visitor_dwell_median_s * (sigma * normal(&mut s)).exp();
                let park = StopSpec {
                    parking_area: area,
                    duration: Some(dwell.clamp(MIN_DWELL_S, MAX_DWELL_S).round()),
                    until: None,
                };
                // Its own draws, so that the rest of the day is the same
                // whether the door is drop-off only or not.
                let key = ((hi as u64) << 32) | k as u64;
                let drop_off =
                    (o.measures.drop_off && rng::draw(o.seed, key, DOOR_DRAW) < door.drop_off_share).then(|| {
                        let u = rng::draw(o.seed, key, DOOR_DRAW + 1);
                        (door.drop_off_s.0 + u * (door.drop_off_s.1 - door.drop_off_s.0)).round()
                    });
                let stops: Arc<[StopSpec]> = match drop_off {
                    Some(secs) => Arc::new([
                        StopSpec {
                            parking_area: hosp.door_area,
                            duration: Some(secs),
                            until: None,
                        },
                        park,
                    ]),
                    None => Arc::new([park]),
                };
                out.push((
                    car(
                        format!("{}.visitor.{k}", h.id),
                        t.floor(),
                        route_via(self.entries[entry].0, Some(aisle), exit)?,
                        stops,
                    ),
                    Kind::Visitor(hi as u8),
                ));
                k += 1;
            }
            // Staff: one car per staff space, early, all day.
            let mut s = Stream::new(o.seed, &format!("staff.{}", h.id));
            let out_edge = hosp.lot_edges[1];
            for k in 0..h.staff_spaces {
                let arrive = d.staff_arrive_s.0 + s.uniform() * (d.staff_arrive_s.1 - d.staff_arrive_s.0);
                let leave = d.staff_leave_s.0 + s.uniform() * (d.staff_leave_s.1 - d.staff_leave_s.0);
                let entry = pick_weighted(&weights, total_w, s.uniform());
                let exit = pick_exit(&mut s, entry);
                out.push((
                    car(
                        format!("{}.staff.{k}", h.id),
                        arrive.floor(),
                        route_via(self.entries[entry].0, Some(out_edge), exit)?,
                        Arc::new([StopSpec {
                            parking_area: hosp.staff_area,
                            duration: None,
                            until: Some(leave.floor()),
                        }]),
                    ),
                    Kind::Staff,
                ));
            }
        }
        // Through traffic at every road end, mostly straight on.
        let through_peak = d.through_profile.iter().map(|p| p.1).fold(0.0, f64::max);
        for (i, (edge, road, end, is_ew)) in self.entries.iter().enumerate() {
            let rate = weights[i] * o.demand_scale / 3600.0;
            if rate <= 0.0 || through_peak <= 0.0 {
                continue;
            }
            let straight = self
                .exits
                .iter()
                .find(|x| &x.1 == road && x.2 == opposite(*end) && (*is_ew == matches!(x.2, 'w' | 'e')));
            let mut s = Stream::new(o.seed, &format!("through.{}", self.net.edge(*edge).id));
            let mut t = d.begin_s;
            let end_t = d.end_s.min(until);
            let mut k = 0;
            loop {
                t += -(1.0 - s.uniform()).ln() / (rate * through_peak);
                if t >= end_t {
                    break;
                }
                if s.uniform() * through_peak > profile_at(&d.through_profile, t) {
                    continue;
                }
                let exit = match straight {
                    Some(x) if s.uniform() < 0.7 => x.0,
                    _ => pick_exit(&mut s, i),
                };
                out.push((
                    car(
                        format!("through.{}.{k}", self.net.edge(*edge).id),
                        t.floor(),
                        route_via(*edge, None, exit)?,
                        Arc::new([]),
                    ),
                    Kind::Through,
                ));
                k += 1;
            }
        }
        out.sort_by(|a, b| a.0.depart.total_cmp(&b.0.depart).then_with(|| a.0.id.cmp(&b.0.id)));
        let kinds = out.iter().map(|(_, k)| *k).collect();
        let vehicles = out.into_iter().map(|(v, _)| v).collect();
        Ok((
            Demand {
                vtypes: vec![VType::default()],
                vehicles,
            },
            kinds,
        ))
    }

    /// Starts a run (step it with [`Run::step`], or call [`District::run`]).
    pub fn start(&self, o: &RunOptions) -> Result<Run<'_>, ScenarioError> {
        if !(o.demand_scale > 0.0 && o.demand_scale.is_finite()) {
            return Err(ScenarioError::Data("the demand scale must be > 0".into()));
        }
        if o.compliance.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            return Err(ScenarioError::Data("compliance must be between 0 and 1".into()));
        }
        let (demand, kinds) = self.demand(o)?;
        let mut add = self.add.clone();
        // Gates: hospital lots pay at the exit unless pay-after-leaving is on;
        // shared lots read plates (a few seconds) in every policy.
        for lot in &self.lots {
            let p = &mut add.parking_areas[lot.area];
            p.exit_service = if lot.hospital.is_none() || o.measures.fast_gates {
                self.spec.gates.pay_after_leaving_s
            } else {
                self.spec.gates.pay_at_exit_s
            };
        }
        let cfg = SimConfig {
            seed: o.seed,
            begin: self.spec.demand.begin_s,
            end: Some(HARD_END_S),
            // Hospital queues last hours: nobody is teleported out of them;
            // a gridlock elsewhere is broken as SUMO does (a car stuck at
            // the front of a lane for 5 minutes jumps ahead; counted).
            time_to_teleport: 300.0,
            teleport_parking_bound: false,
            // Hospital-bound cars queue in the lane that turns in, several
            // blocks back, and leave the other lane to through traffic.
            lane_lookahead_edges: LANE_LOOKAHEAD_EDGES,
            // Cars turning in from both directions take turns at the gate.
            zipper_merges: true,
            // ...and the queue keeps the order of arrival where streams
            // merge into it (a car held at red keeps its place).
            first_come_merges: true,
            // One who cannot get into the queue's lane goes round the block.
            missed_turn_after: MISSED_TURN_AFTER_S,
            // A car arriving in the free lane joins the lot's queue at its
            // tail, and a queue reaching beyond the block's edge goes on
            // upstream in its own lane (others pass it).
            join_queues_at_tail: true,
            eager_insert: true,
            ..SimConfig::default()
        };
        let controllers = controllers_for(&self.net, "fixed").map_err(ScenarioError::Data)?;
        let mut sim = Sim::new(self.net.clone(), demand, cfg, controllers)
            .with_parking(add)
            .with_parking_events();
        for lot in &self.lots {
            sim.set_parking_capacity(lot.area, lot.offered_at(self.spec.demand.begin_s));
        }
        let n = kinds.len();
        let origins = sim.demand().vehicles.iter().map(|v| v.route[0]).collect();
        let departs = sim.demand().vehicles.iter().map(|v| v.depart).collect();
        Ok(Run {
            d: self,
            compliance: o.compliance.unwrap_or(self.spec.guidance.compliance),
            o: o.clone(),
            sim,
            kinds,
            origins,
            departs,
            cars: vec![Car::default(); n],
            assigned: vec![0; self.lots.len()],
            drive_cache: HashMap::new(),
            next_queue_sample: self.spec.demand.begin_s,
            next_series_sample: self.spec.demand.begin_s,
            queue_now: 0,
            peak_queue: (0, self.spec.demand.begin_s),
            queue_series: Vec::new(),
            occupancy_series: vec![Vec::new(); self.lots.len()],
            through_tt: Vec::new(),
            guided: 0,
            turned_away: 0,
            next_departure: 0,
            turn_times: TurnTimes::new(n),
            way_on: HashMap::new(),
            other_way_in: 0,
            through_round: 0,
        })
    }

    /// Runs a whole day; `each_step` sees the run after every step.
    pub fn run(&self, o: &RunOptions, mut each_step: impl FnMut(&Run)) -> Result<Outcome, ScenarioError> {
        let started = std::time::Instant::now();
        let mut run = self.start(o)?;
        while !run.finished() {
            run.step(None);
            each_step(&run);
        }
        let mut out = run.outcome();
        out.wall_s = started.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// What the run knows of one car (visitors only).
#[derive(Debug, Clone, Default)]
struct Car {
    /// Guidance has decided for it (or it ignores guidance).
    decided: bool,
    /// The lot guidance or a guard sent it to (index in `lots`).
    assigned: Option<usize>,
    turned_away: bool,
    /// A space booked with the appointment (the lot is in `assigned`), to
    /// be driven to once the car can be redirected.
    booked: bool,
    booking_asked: bool,
    redirect_pending: bool,
    /// When it let its patient out at the door.
    at_door: Option<f64>,
    /// It has stood in a queue for a full lot (on a public road).
    queued: bool,
    parked_at: Option<f64>,
    parked_lot: Option<usize>,
}

/// A run in progress.
pub struct Run<'d> {
    d: &'d District,
    o: RunOptions,
    compliance: f64,
    pub sim: Sim,
    kinds: Vec<Kind>,
    origins: Vec<EdgeId>,
    departs: Vec<f64>,
    cars: Vec<Car>,
    /// Cars the controller has sent to each lot that have not parked yet.
    assigned: Vec<u32>,
    drive_cache: HashMap<(EdgeId, usize), f64>,
    next_queue_sample: f64,
    next_series_sample: f64,
    queue_now: u32,
    peak_queue: (u32, f64),
    queue_series: Vec<(f64, u32)>,
    occupancy_series: Vec<Vec<(f64, u32, u32)>>,
    through_tt: Vec<f64>,
    guided: usize,
    turned_away: usize,
    /// The next vehicle (by departure) whose way in is still to be chosen.
    next_departure: usize,
    /// Live travel times per turn, as a navigation app has them.
    turn_times: TurnTimes,
    /// The usual way from a lot's aisle to a road end.
    way_on: HashMap<(EdgeId, EdgeId), Option<Vec<EdgeId>>>,
    other_way_in: usize,
    through_round: usize,
}

/// A run's figures so far (see [`Run::so_far`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoFar {
    pub time_s: f64,
    /// Mean wait to park of the cars that parked in the last hour (None: none did).
    pub mean_wait_last_hour_min: Option<f64>,
    pub parked_last_hour: usize,
    /// Visitors on their way or queuing who have not parked yet.
    pub waiting_now: usize,
    /// The longest of their waits so far.
    pub longest_wait_now_min: f64,
    pub queue_on_road: u32,
    pub peak_queue_on_road: u32,
    /// Visitors parked in another lot than their hospital's.
    pub cars_diverted: usize,
    /// Guidance decisions that sent a car elsewhere, and guards' turn-aways.
    pub guided: usize,
    pub turned_away: usize,
}

/// A lot's state now, as published to the hub.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LotState {
    pub id: String,
    pub name: String,
    /// Spaces offered to hospital visitors now.
    pub offered: u32,
    pub occupied: u32,
    pub free: u32,
    /// Position in network coordinates, m.
    pub xy: (f64, f64),
    pub hospital: Option<String>,
    /// The road it is entered from.
    pub street: String,
}

impl Run<'_> {
    pub fn finished(&self) -> bool {
        self.sim.finished()
    }

    pub fn time(&self) -> f64 {
        self.sim.time()
    }

    /// Cars waiting for hospital parking on public roads at the last count.
    pub fn queue_on_road(&self) -> u32 {
        self.queue_now
    }

    /// Every lot's state now.
    pub fn lots(&self) -> Vec<LotState> {
        let occ = self.sim.parking_occupancy();
        self.d
            .lots
            .iter()
            .map(|l| {
                let (_, occupied, offered) = occ[l.area];
                LotState {
                    id: l.id.clone(),
                    name: l.name.clone(),
                    offered,
                    occupied,
                    free: offered.saturating_sub(occupied),
                    xy: l.xy,
                    hospital: l.hospital.map(|h| self.d.hospitals[h].id.clone()),
                    street: l.street.clone(),
                }
            })
            .collect()
    }

    /// Cars the controller has sent to other lots than their hospital's so far.
    pub fn guided(&self) -> usize {
        self.guided
    }

    /// The figures a live view shows now: waits of the cars that parked in
    /// the last hour, the cars still waiting, what guidance has done.
    pub fn so_far(&mut self) -> SoFar {
        let now = self.sim.time();
        let (mut waits, mut waiting_now, mut longest_now, mut diverted) = (Vec::new(), 0usize, 0.0f64, 0usize);
        for v in 0..self.cars.len() {
            let Kind::Visitor(h) = self.kinds[v] else { continue };
            let depart = self.departs[v];
            if depart > now {
                continue;
            }
            match (self.cars[v].parked_at, self.cars[v].parked_lot) {
                (Some(at), Some(lot)) => {
                    if self.d.lots[lot].hospital != Some(h as usize) {
                        diverted += 1;
                    }
                    if at + 3600.0 >= now {
                        waits.push((self.wait_to_park_s(v, at, lot) / 60.0).max(0.0));
                    }
                }
                _ => {
                    waiting_now += 1;
                    longest_now = longest_now.max((now - depart) / 60.0);
                }
            }
        }
        SoFar {
            time_s: now,
            mean_wait_last_hour_min: (!waits.is_empty()).then(|| waits.iter().sum::<f64>() / waits.len() as f64),
            parked_last_hour: waits.len(),
            waiting_now,
            longest_wait_now_min: longest_now,
            queue_on_road: self.queue_now,
            peak_queue_on_road: self.peak_queue.0,
            cars_diverted: diverted,
            guided: self.guided,
            turned_away: self.turned_away,
        }
    }

    fn free_in(&self, lot: usize, hub: Option<&Availability>) -> u32 {
        let l = &self.d.lots[lot];
        match hub.and_then(|h| h.get(&l.id)) {
            Some(f) => *f,
            None => {
                let (_, occ, cap) = self.sim.parking_occupancy()[l.area];
                cap.saturating_sub(occ)
            }
        }
    }

    /// A visitor's wait to park, s: from arriving to parked, less the
    /// free-flow drive to the lot and the stop at the door, if it made one.
    fn wait_to_park_s(&mut self, v: usize, parked_at: f64, lot: usize) -> f64 {
        // The door stop, when made, is the first of the vehicle's stops.
        let door = match self.cars[v].at_door {
            Some(_) => self.sim.demand().vehicles[v].stops[0].duration.unwrap_or(0.0),
            None => 0.0,
        };
        parked_at - self.departs[v] - self.drive_s(self.origins[v], lot) - door
    }

    fn drive_s(&mut self, from: EdgeId, lot: usize) -> f64 {
        let edge = self.d.add.parking_areas[self.d.lots[lot].area].edge;
        *self
            .drive_cache
            .entry((from, lot))
            .or_insert_with(|| self.d.free_flow_s(from, edge))
    }

    /// The best lot with room for a visitor of hospital `h` coming from
    /// `from`: driving time plus walking time to the hospital.
    fn best_lot(&mut self, h: usize, from: EdgeId, hub: Option<&Availability>, own_ok: bool) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for lot in 0..self.d.lots.len() {
            let l = &self.d.lots[lot];
            let own = l.hospital == Some(h);
            if (l.hospital.is_some() && !own) || (own && !own_ok) {
                continue;
            }
            if self.free_in(lot, hub) <= self.assigned[lot] {
                continue;
            }
            let walk = l.walk_m[h] / self.d.spec.guidance.walk_speed_ms;
            let cost = self.drive_s(from, lot) + walk;
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, lot));
            }
        }
        best.map(|(_, l)| l)
    }

    /// Advances one second: the controller acts on what it sees (lot
    /// availability from `hub` where given, else from the twin), then the
    /// twin steps.
    pub fn step(&mut self, hub: Option<&Availability>) {
        let t = self.sim.time();
        if (t % 60.0).abs() < 1e-9 {
            for l in &self.d.lots {
                if !l.offered.is_empty() {
                    self.sim.set_parking_capacity(l.area, l.offered_at(t));
                }
            }
        }
        let occ: Vec<(u32, u32)> = self.sim.parking_occupancy().iter().map(|(_, o, c)| (*o, *c)).collect();
        let full = |area: usize| occ[area].0 >= occ[area].1;
        // What the controller sees of each visitor on the road.
        struct Seen {
            handle: u32,
            vehicle: usize,
            hospital: usize,
            edge: EdgeId,
            next: Option<EdgeId>,
            after: Option<EdgeId>,
            area: Option<usize>,
            speed: f64,
        }
        let net = &self.d.net;
        self.turn_times.observe(
            t,
            self.sim.step_length(),
            self.sim
                .vehicles_on_road()
                .filter(|v| net.edge(v.edge).function == citybrain_net::EdgeFunction::Normal)
                .map(|v| (v.vehicle, v.edge, v.route.get(v.route_idx + 1).copied())),
        );
        let mut seen = Vec::new();
        // Cars heading for each hospital lot already on its access road or aisle.
        let mut at_gate = vec![0u32; self.d.hospitals.len()];
        for v in self.sim.vehicles_on_road() {
            let Kind::Visitor(h) = self.kinds[v.vehicle] else {
                continue;
            };
            let h = h as usize;
            let hosp = &self.d.hospitals[h];
            if (v.edge == hosp.access_edge || v.edge == hosp.lot_edges[0])
                && v.parking_area == Some(self.d.lots[hosp.lot].area)
            {
                at_gate[h] += 1;
            }
            seen.push(Seen {
                handle: v.handle,
                vehicle: v.vehicle,
                hospital: h,
                edge: v.edge,
                next: v.route.get(v.route_idx + 1).copied(),
                after: v.route.get(v.route_idx + 2).copied(),
                area: v.parking_area,
                speed: v.speed,
            });
        }
        let mut queue = 0u32;
        for s in &seen {
            let hosp = &self.d.hospitals[s.hospital];
            let own_area = self.d.lots[hosp.lot].area;
            let on_lot_road = hosp.lot_edges.contains(&s.edge);
            // Heading for the door first: guidance and the guard wait until
            // the patient is out.
            let door_next = s.area == Some(hosp.door_area);
            if self.o.measures.reservation && !self.cars[s.vehicle].booking_asked && !on_lot_road {
                self.book(s.vehicle, s.hospital, s.next.unwrap_or(s.edge), hub);
            }
            if let (true, false, Some(lot)) = (
                self.cars[s.vehicle].redirect_pending,
                door_next,
                self.cars[s.vehicle].assigned,
            ) {
                if self.sim.redirect_to_parking(s.handle, self.d.lots[lot].area).is_ok() {
                    self.cars[s.vehicle].redirect_pending = false;
                }
            }
            let car = &mut self.cars[s.vehicle];
            if door_next {
                // Standing for a space in the drop-off bay: on the road now,
                // not a queue for a lot.
                if s.speed < HALTING_MS && full(hosp.door_area) {
                    queue += 1;
                }
            } else if car.parked_at.is_none() && !on_lot_road {
                if !car.queued && s.speed < HALTING_MS && s.area.is_some_and(full) {
                    car.queued = true;
                }
                if car.queued {
                    queue += 1;
                }
            }
            if self.o.measures.guidance && !self.cars[s.vehicle].decided && !on_lot_road && !door_next {
                self.guide(s.handle, s.vehicle, s.hospital, s.edge, s.next, hub);
            }
            let heading_own = s.area == Some(own_area);
            // The guard stands at the gate: cars already in the access road are past him.
            let reaching_gate = s.next == Some(hosp.access_edge) || s.after == Some(hosp.access_edge);
            // One that has let its patient out at the door is sent on from
            // there, through the hospital's grounds (it counts itself in
            // `at_gate`).
            let past_door = self.cars[s.vehicle].at_door.is_some() && s.edge == hosp.access_edge;
            if self.o.measures.turn_away && heading_own && ((reaching_gate && !door_next) || past_door) {
                let (o, c) = occ[own_area];
                if o + at_gate[s.hospital] >= c + u32::from(past_door) {
                    self.turn_away(s.handle, s.vehicle, s.hospital, s.edge, s.next, hub);
                }
            }
        }
        // Visitors held at the block's edge behind a full lot are queued too.
        let pending: Vec<usize> = self.sim.waiting_to_enter().collect();
        // How long the car longest held at each road end has waited to enter.
        let mut held_since: HashMap<EdgeId, f64> = HashMap::new();
        for &v in &pending {
            let since = held_since.entry(self.sim.demand().vehicles[v].route[0]).or_insert(t);
            *since = since.min(self.departs[v]);
        }
        // Visitors held outside the block think again every few minutes.
        let mut held_visitors = Vec::new();
        let mut held_through = Vec::new();
        for v in pending {
            let held = t - self.departs[v];
            let thinks_again = held >= HELD_THINK_AGAIN_S && held % HELD_THINK_AGAIN_S < self.sim.step_length();
            if thinks_again && matches!(self.kinds[v], Kind::Through) {
                held_through.push(v);
            }
            let Kind::Visitor(h) = self.kinds[v] else { continue };
            if thinks_again {
                held_visitors.push((v, h as usize));
            }
            let car = &mut self.cars[v];
            if !car.queued && full(self.d.lots[self.d.hospitals[h as usize].lot].area) {
                car.queued = true;
            }
            if car.queued {
                queue += 1;
            }
        }
        self.choose_ways_in(t, &held_since, held_visitors);
        for v in held_through {
            self.maybe_go_round(t, v, &held_since);
        }
        if t >= self.next_queue_sample {
            self.queue_now = queue;
            if self.queue_now > self.peak_queue.0 {
                self.peak_queue = (self.queue_now, t);
            }
            self.next_queue_sample += QUEUE_SAMPLE_S;
        }
        if t >= self.next_series_sample {
            self.queue_series.push((t, queue));
            for (i, l) in self.d.lots.iter().enumerate() {
                let (o, c) = occ[l.area];
                self.occupancy_series[i].push((t, o, c));
            }
            self.next_series_sample += SERIES_SAMPLE_S;
        }
        self.sim.step();
        for e in self.sim.take_parking_events() {
            if !e.parked {
                continue;
            }
            if let Kind::Visitor(h) = self.kinds[e.vehicle] {
                if e.area == self.d.hospitals[h as usize].door_area {
                    self.cars[e.vehicle].at_door = Some(e.time);
                    continue;
                }
                let lot = self.d.lot_of_area(e.area);
                let car = &mut self.cars[e.vehicle];
                car.parked_at = Some(e.time);
                car.parked_lot = lot;
                if let Some(a) = car.assigned {
                    self.assigned[a] = self.assigned[a].saturating_sub(1);
                }
            }
        }
        for trip in self.sim.take_trips() {
            if trip.id.starts_with("through.") {
                self.through_tt.push(trip.duration + trip.depart_delay);
            }
        }
    }

    /// Drivers choose their way into the block as they set off, as a
    /// navigation app's live traffic would have them: among the road ends
    /// on the side they come from, the one with the least time to their lot
    /// by the live travel times of each turn on the way, plus how long
    /// traffic has been held outside that road end. A driver keeps the way
    /// drawn unless another saves over [`WAY_IN_MARGIN_S`]; one held outside
    /// the block (`held`) thinks again.
    fn choose_ways_in(&mut self, t: f64, held_since: &HashMap<EdgeId, f64>, held: Vec<(usize, usize)>) {
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
            if entry == now_in || cost >= cost_now_in - WAY_IN_MARGIN_S {
                continue;
            }
            if self.sim.replan_before_departure(v, route).is_ok() {
                self.origins[v] = entry;
                self.other_way_in += 1;
            }
        }
    }

    /// A through driver whose way across the block is jammed goes round it
    /// instead, as its app would offer: when the live time across (turn
    /// times on its route, plus how long traffic has been held at its road
    /// end) is over [`THROUGH_DETOUR_S`] longer than at free flow. The trip
    /// then counts as its free-flow time plus that detour (plus any time it
    /// already stood outside), so that going round is never free.
    fn maybe_go_round(&mut self, t: f64, v: usize, held_since: &HashMap<EdgeId, f64>) {
        let route = self.sim.demand().vehicles[v].route.clone();
        let mut free = 0.0;
        let mut live = held_since.get(&route[0]).map_or(0.0, |since| t - since);
        for w in route.windows(2) {
            let ff = self.d.edge_free_flow_s(w[0]);
            free += ff;
            live += self.turn_times.estimate(w[0], w[1], ff);
        }
        if live - free > THROUGH_DETOUR_S && self.sim.cancel_before_departure(v).is_ok() {
            let stood = (t - self.departs[v]).max(0.0);
            self.through_tt.push(stood + free + THROUGH_DETOUR_S);
            self.through_round += 1;
        }
    }

    /// (live time to the lot's gate, route) for a visitor of hospital `h`
    /// coming in at `entry` and leaving by `exit`: the quickest way to the
    /// lot by the live turn times, then the usual way on.
    fn way_in(&mut self, entry: EdgeId, h: usize, exit: EdgeId) -> Option<(f64, Arc<[EdgeId]>)> {
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
    fn live_route(&self, from: EdgeId, to: EdgeId) -> Option<(f64, Vec<EdgeId>)> {
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

    /// Reservation with the appointment: a visitor who books (a share of
    /// them) gets a space held in the best shared lot with room, as the
    /// partner lots of the pilots offered; the hospital's own spaces are
    /// not booked (they serve whoever arrives). Asked once, when the car
    /// first shows on the road; with no room anywhere it books nothing.
    fn book(&mut self, vehicle: usize, h: usize, from: EdgeId, hub: Option<&Availability>) {
        self.cars[vehicle].booking_asked = true;
        if self.cars[vehicle].decided
            || rng::draw(self.o.seed, vehicle as u64, BOOKING_DRAW) >= self.d.spec.reservation.share
        {
            return;
        }
        let Some(lot) = self.best_lot(h, from, hub, false) else {
            return;
        };
        let car = &mut self.cars[vehicle];
        car.decided = true;
        car.booked = true;
        car.assigned = Some(lot);
        car.redirect_pending = true;
        self.assigned[lot] += 1;
    }

    /// Guidance (screens, the door, the app): sends a complying driver to
    /// the best lot with room; one that ignores it keeps heading for the
    /// hospital's own lot.
    fn guide(
        &mut self,
        handle: u32,
        vehicle: usize,
        h: usize,
        edge: EdgeId,
        next: Option<EdgeId>,
        hub: Option<&Availability>,
    ) {
        let complies = rng::draw(self.o.seed, vehicle as u64, 0x6d1d) < self.compliance;
        if !complies {
            self.cars[vehicle].decided = true;
            return;
        }
        let from = next.unwrap_or(edge);
        let Some(lot) = self.best_lot(h, from, hub, true) else {
            return; // nowhere has room: ask again further on
        };
        let own = self.d.hospitals[h].lot;
        if lot != own && self.sim.redirect_to_parking(handle, self.d.lots[lot].area).is_err() {
            return; // mid-junction: ask again next step
        }
        let car = &mut self.cars[vehicle];
        car.decided = true;
        car.assigned = Some(lot);
        self.assigned[lot] += 1;
        if lot != own {
            self.guided += 1;
        }
    }

    /// A guard at a full hospital's gate sends the car to the best lot with
    /// room (by the same availability the screens show).
    fn turn_away(
        &mut self,
        handle: u32,
        vehicle: usize,
        h: usize,
        edge: EdgeId,
        next: Option<EdgeId>,
        hub: Option<&Availability>,
    ) {
        let from = next.unwrap_or(edge);
        let Some(lot) = self.best_lot(h, from, hub, false) else {
            return; // nowhere has room: it waits for its hospital's lot
        };
        let gate = Some(self.d.hospitals[h].access_edge);
        if self
            .sim
            .redirect_to_parking_avoiding(handle, self.d.lots[lot].area, gate)
            .is_err()
        {
            return;
        }
        let car = &mut self.cars[vehicle];
        if let Some(a) = car.assigned.replace(lot) {
            self.assigned[a] = self.assigned[a].saturating_sub(1);
        }
        self.assigned[lot] += 1;
        car.decided = true;
        car.queued = false;
        if !car.turned_away {
            car.turned_away = true;
            self.turned_away += 1;
        }
    }

    /// Each visitor's wait to park so far, min, with the vehicle's id (those
    /// not parked yet count their wait until now).
    pub fn visitor_waits(&mut self) -> Vec<(String, f64)> {
        let now = self.sim.time();
        let visitors: Vec<usize> = (0..self.cars.len())
            .filter(|v| matches!(self.kinds[*v], Kind::Visitor(_)))
            .collect();
        visitors
            .into_iter()
            .map(|v| {
                let car = self.cars[v].clone();
                let wait = match (car.parked_at, car.parked_lot) {
                    (Some(at), Some(lot)) => self.wait_to_park_s(v, at, lot),
                    _ => now - self.departs[v],
                };
                (self.sim.demand().vehicles[v].id.clone(), (wait / 60.0).max(0.0))
            })
            .collect()
    }

    /// The figures of the run so far (call when finished).
    pub fn outcome(&mut self) -> Outcome {
        let end = self.sim.time();
        let mut waits = Vec::new();
        let mut never_parked = 0;
        let (mut diverted, mut walk_sum, mut walk_div_sum, mut parked) = (0usize, 0.0, 0.0, 0usize);
        let mut admitted_peak = 0usize;
        let mut visitors = 0usize;
        let mut to_door = Vec::new();
        for v in 0..self.cars.len() {
            let Kind::Visitor(h) = self.kinds[v] else { continue };
            visitors += 1;
            let h = h as usize;
            let car = self.cars[v].clone();
            let depart = self.departs[v];
            match (car.parked_at, car.parked_lot) {
                (Some(at), Some(lot)) => {
                    waits.push((self.wait_to_park_s(v, at, lot) / 60.0).max(0.0));
                    parked += 1;
                    let extra = self.d.lots[lot].walk_m[h];
                    to_door.push(
                        match car.at_door {
                            Some(door) => door - depart,
                            None => at - depart + extra / self.d.spec.guidance.walk_speed_ms,
                        } / 60.0,
                    );
                    walk_sum += extra;
                    if self.d.lots[lot].hospital != Some(h) {
                        diverted += 1;
                        walk_div_sum += extra;
                    }
                    if (7.0 * 3600.0..11.0 * 3600.0).contains(&at) {
                        admitted_peak += 1;
                    }
                }
                _ => {
                    never_parked += 1;
                    waits.push(((end - depart) / 60.0).max(0.0));
                    to_door.push(car.at_door.unwrap_or(end).min(end) / 60.0 - depart / 60.0);
                }
            }
        }
        let mean = |xs: &[f64]| {
            if xs.is_empty() {
                0.0
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let buckets = waits
            .iter()
            .map(|w| (w / WAIT_BUCKET_MIN) as usize)
            .max()
            .map_or(0, |m| m + 1);
        let mut histogram = vec![0u32; buckets];
        for w in &waits {
            histogram[(w / WAIT_BUCKET_MIN) as usize] += 1;
        }
        let lots = self
            .d
            .lots
            .iter()
            .zip(&self.occupancy_series)
            .map(|(l, s)| LotSeries {
                id: l.id.clone(),
                name: l.name.clone(),
                spaces: l.spaces,
                xy: l.xy,
                series: s.clone(),
            })
            .collect();
        Outcome {
            policy: self.o.measures.name(),
            seed: self.o.seed,
            mean_wait_min: mean(&waits),
            max_wait_min: waits.iter().copied().fold(0.0, f64::max),
            peak_queue_on_road: self.peak_queue.0,
            peak_queue_time_s: self.peak_queue.1,
            cars_diverted: diverted,
            mean_extra_walk_m: if parked > 0 { walk_sum / parked as f64 } else { 0.0 },
            mean_extra_walk_diverted_m: if diverted > 0 {
                walk_div_sum / diverted as f64
            } else {
                0.0
            },
            through_traffic_mean_travel_time_s: mean(&self.through_tt),
            gate_throughput_per_h: admitted_peak as f64 / 4.0,
            mean_time_to_door_min: mean(&to_door),
            dropped_at_door: self.cars.iter().filter(|c| c.at_door.is_some()).count(),
            booked: self.cars.iter().filter(|c| c.booked).count(),
            visitor_cars: visitors,
            parked,
            never_parked,
            guided: self.guided,
            turned_away: self.turned_away,
            other_way_in: self.other_way_in,
            through_trips: self.through_tt.len(),
            through_round_block: self.through_round,
            end_s: end,
            wait_histogram_15min: histogram,
            queue_series: self.queue_series.clone(),
            lots,
            wall_s: 0.0,
        }
    }
}

/// One lot's occupancy over the day: (time s, occupied, spaces offered).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LotSeries {
    pub id: String,
    pub name: String,
    pub spaces: u32,
    pub xy: (f64, f64),
    pub series: Vec<(f64, u32, u32)>,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub seed: u64,
    /// Mean over hospital visitors of the time from arriving in the district
    /// to parking, less the free-flow drive to the lot they parked in, min.
    pub mean_wait_min: f64,
    pub max_wait_min: f64,
    /// Most hospital-bound cars held in a queue for parking on public roads
    /// (the access roads included, and those held at the block's edge),
    /// counted every minute.
    pub peak_queue_on_road: u32,
    pub peak_queue_time_s: f64,
    /// Visitors who parked elsewhere than their hospital's lot.
    pub cars_diverted: usize,
    /// Extra walk to the hospital gate over all visitors who parked, m.
    pub mean_extra_walk_m: f64,
    /// The same over the diverted visitors only, m.
    pub mean_extra_walk_diverted_m: f64,
    /// Mean travel time of through traffic (insertion delay included), s;
    /// a trip that went round the jammed block counts its free-flow time
    /// across plus the detour.
    pub through_traffic_mean_travel_time_s: f64,
    /// Hospital visitors admitted into a lot per hour, 07:00-11:00.
    pub gate_throughput_per_h: f64,
    /// Mean time from arriving in the district to the hospital's door, min:
    /// at the drop-off bay for a patient let out there, else parked plus
    /// the walk from the lot.
    pub mean_time_to_door_min: f64,
    /// Visitor cars that let a patient out at the door (drop-off).
    pub dropped_at_door: usize,
    /// Visitors who booked a space with their appointment.
    pub booked: usize,
    pub visitor_cars: usize,
    pub parked: usize,
    /// Visitors still queued when the run ended (their wait counts to the end).
    pub never_parked: usize,
    pub guided: usize,
    pub turned_away: usize,
    /// Visitors who came in by another way than the one they would take on
    /// empty roads (their live navigation, see `Run::choose_ways_in`).
    pub other_way_in: usize,
    pub through_trips: usize,
    /// Through trips that went round the block instead (in `through_trips`).
    pub through_round_block: usize,
    pub end_s: f64,
    /// Visitors per 15-minute wait bucket.
    pub wait_histogram_15min: Vec<u32>,
    /// (time s, cars queued on the roads), every 5 minutes.
    pub queue_series: Vec<(f64, u32)>,
    pub lots: Vec<LotSeries>,
    pub wall_s: f64,
}

fn validate(spec: &Spec) -> Result<(), ScenarioError> {
    let bad = |m: String| Err(ScenarioError::Data(format!("district.json: {m}")));
    let d = &spec.demand;
    for (name, p) in [
        ("visitor_profile", &d.visitor_profile),
        ("through_profile", &d.through_profile),
    ] {
        if p.is_empty() || p.iter().any(|x| !(x.1 >= 0.0 && x.0.is_finite())) || p.windows(2).any(|w| w[1].0 < w[0].0) {
            return bad(format!("{name} needs time-ordered points with multipliers >= 0"));
        }
    }
    if !(0.5..1.0).contains(&d.visitor_dwell_share_under_3h)
        || d.visitor_dwell_median_s.is_nan()
        || d.visitor_dwell_median_s <= 0.0
    {
        return bad("visitor dwell: median > 0 and a share under 3 h in [0.5, 1)".into());
    }
    if !(0.0..=1.0).contains(&spec.guidance.compliance)
        || spec.guidance.walk_speed_ms.is_nan()
        || spec.guidance.walk_speed_ms <= 0.0
    {
        return bad("guidance: compliance in [0, 1], walk speed > 0".into());
    }
    if d.staff_arrive_s.0 > d.staff_arrive_s.1 || d.staff_leave_s.0 > d.staff_leave_s.1 {
        return bad("staff windows must be [from, to]".into());
    }
    let door = &spec.door;
    let (from, to) = door.drop_off_s;
    let door_ok = (0.0..=1.0).contains(&door.drop_off_share) && from >= 0.0 && from <= to && to <= 3600.0;
    if !door_ok || door.bay_spaces == 0 {
        return bad("door: drop_off_share in [0, 1], drop_off_s [from, to] within an hour, bay_spaces > 0".into());
    }
    if !(0.0..=1.0).contains(&spec.reservation.share) {
        return bad("reservation: share in [0, 1]".into());
    }
    if spec.hospitals.is_empty() || spec.hospitals.len() > 200 {
        return bad("one or more hospitals".into());
    }
    Ok(())
}

/// A car entering at the start of its route at full speed, in the lane that leads on.
/// The spread (sigma) of the visitors' lognormal stay: the median and the
/// share under 3 h fix it.
fn dwell_sigma(d: &DemandSpec) -> f64 {
    (10_800.0 / d.visitor_dwell_median_s).ln() / normal_quantile(d.visitor_dwell_share_under_3h)
}

fn car(id: String, depart: f64, route: Arc<[EdgeId]>, stops: Arc<[StopSpec]>) -> VehicleSpec {
    VehicleSpec {
        id,
        vtype: 0,
        depart,
        route,
        depart_lane: DepartLane::Best,
        depart_speed: DepartSpeed::Max,
        depart_pos: 0.0,
        stops,
    }
}

fn opposite(end: char) -> char {
    match end {
        'w' => 'e',
        'e' => 'w',
        'n' => 's',
        _ => 'n',
    }
}

fn pick_weighted(weights: &[f64], total: f64, u: f64) -> usize {
    let mut x = u * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// A point at distance `s` along a polyline.
fn point_along(shape: &[(f64, f64)], s: f64) -> (f64, f64) {
    let mut left = s;
    for w in shape.windows(2) {
        let len = (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1);
        if left <= len && len > 0.0 {
            let f = left / len;
            return (w[0].0 + f * (w[1].0 - w[0].0), w[0].1 + f * (w[1].1 - w[0].1));
        }
        left -= len;
    }
    shape.last().copied().unwrap_or((0.0, 0.0))
}

/// A standard normal draw (Box–Muller).
fn normal(s: &mut Stream) -> f64 {
    let u1 = 1.0 - s.uniform();
    let u2 = s.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The standard normal quantile, by bisection on the CDF (erf after
/// Abramowitz & Stegun 7.1.26, error < 1.5e-7).
fn normal_quantile(p: f64) -> f64 {
    let cdf = |x: f64| {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let poly =
            t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        if x >= 0.0 {
            0.5 * (1.0 + erf)
        } else {
            0.5 * (1.0 - erf)
        }
    };
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The area under a piecewise-linear profile, s.
fn integral(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_name_themselves() {
        assert_eq!("baseline".parse::<Measures>().unwrap(), Measures::BASELINE);
        assert_eq!("citybrain".parse::<Measures>().unwrap(), Measures::CITYBRAIN);
        let g: Measures = "baseline+guidance+fast-gates".parse().unwrap();
        assert!(g.guidance && g.fast_gates && !g.turn_away);
        assert_eq!(g.name(), "baseline+guidance+fast-gates");
        assert_eq!(
            "baseline+guidance+turn-away+fast-gates+drop-off"
                .parse::<Measures>()
                .unwrap()
                .name(),
            "citybrain"
        );
        let r: Measures = "citybrain+reservation".parse().unwrap();
        assert!(r.reservation && r.drop_off && r.guidance);
        assert_eq!(r.name(), "citybrain+reservation");
        assert_eq!(
            "baseline+drop-off".parse::<Measures>().unwrap().name(),
            "baseline+drop-off"
        );
        assert!("baseline+magic".parse::<Measures>().is_err());
        assert!("fixed".parse::<Measures>().is_err());
        for m in Measures::each_alone() {
            assert_eq!(m.name().parse::<Measures>().unwrap(), m);
        }
    }

    #[test]
    fn the_normal_quantile_and_dwell_spread() {
        assert!(normal_quantile(0.5).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_96).abs() < 1e-4);
        assert!((normal_quantile(0.81) - 0.877_9).abs() < 1e-3);
        // Lognormal dwell with median 90 min: 81 % of draws under 3 h.
        let sigma = 2.0f64.ln() / normal_quantile(0.81);
        let mut s = Stream::new(3, "x");
        let n = 20_000;
        let under = (0..n)
            .filter(|_| 5400.0 * (sigma * normal(&mut s)).exp() < 10_800.0)
            .count();
        let share = under as f64 / n as f64;
        assert!((share - 0.81).abs() < 0.01, "{share}");
    }

    #[test]
    fn profiles_integrate() {
        assert_eq!(integral(&[(0.0, 0.0), (10.0, 1.0), (20.0, 1.0)]), 15.0);
        assert_eq!(pick_weighted(&[1.0, 3.0], 4.0, 0.5), 1);
        assert_eq!(pick_weighted(&[1.0, 3.0], 4.0, 0.1), 0);
    }
}
