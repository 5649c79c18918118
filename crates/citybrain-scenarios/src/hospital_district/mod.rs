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
use citybrain_sim::signals::cabinet_controllers_for;
use citybrain_sim::{
    rng, Additional, Behaviour, Demand, ParkingAreaId, Sim, SimConfig, StopSpec, VType, VehicleHandle, VehicleId,
    VehicleSpec,
};
use serde::{Deserialize, Serialize};

use crate::draw::{profile_at, Stream};
use crate::turn_times::TurnTimes;
use crate::ScenarioError;

mod demand;
mod drivers;
mod measurement;
mod measures;
mod spec;

use demand::point_along;
pub use measurement::{LotSeries, LotState, Outcome, SoFar};
pub use measures::Measures;
pub use spec::*;

const SPEC: &str = include_str!("../../../../scenarios/hospital-district/district.json");
const NET_GZ: &[u8] = include_bytes!("../../../../scenarios/hospital-district/district.net.xml.gz");
const ADD: &str = include_str!("../../../../scenarios/hospital-district/district.add.xml");

/// How often the queue on the roads is counted, s.
const QUEUE_SAMPLE_S: f64 = 60.0;
/// How often the series for the report are sampled, s.
const SERIES_SAMPLE_S: f64 = 300.0;
/// A run stops here even if cars are still parked or queued (30 h).
const HARD_END_S: f64 = 108_000.0;
/// Width of the wait histogram's buckets, min.
const WAIT_BUCKET_MIN: f64 = 15.0;
/// Tags of the draws that decide who is let out at the door and who books.
const DOOR_DRAW: u64 = 0xd00d;
const BOOKING_DRAW: u64 = 0xb00c;

/// A hospital and where its cars go.
#[derive(Debug, Clone)]
pub struct Hospital {
    pub id: String,
    pub name: String,
    /// The visitors' lot (index in `District::lots`).
    pub lot: usize,
    staff_area: ParkingAreaId,
    /// The drop-off bay at the door (parking area index).
    door_area: ParkingAreaId,
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
    /// Its parking area in the simulation.
    pub area: ParkingAreaId,
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
        District::load_scaled(&[])
    }

    /// The district with some inputs of `district.json` multiplied: each
    /// (JSON pointer, factor), `*` matching every array element or key
    /// (`/hospitals/*/visitor_spaces`); whole numbers stay whole. For
    /// sensitivity studies (`scenario run hospital-district --scale`).
    pub fn load_scaled(scales: &[(String, f64)]) -> Result<District, ScenarioError> {
        let mut json: serde_json::Value =
            serde_json::from_str(SPEC).map_err(|e| ScenarioError::Data(format!("district.json: {e}")))?;
        for (pointer, factor) in scales {
            let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
            if scale_json(&mut json, &parts, *factor) == 0 {
                return Err(ScenarioError::Data(format!(
                    "district.json has no number at '{pointer}'"
                )));
            }
        }
        let spec: Spec =
            serde_json::from_value(json).map_err(|e| ScenarioError::Data(format!("district.json: {e}")))?;
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
                .map(|&a| ParkingAreaId(a as u32))
                .ok_or_else(|| ScenarioError::Data(format!("district.add.xml has no parking area '{id}'")))
        };
        let edge = |id: &str| {
            net.edge_id(id)
                .ok_or_else(|| ScenarioError::Data(format!("the network has no edge '{id}'")))
        };
        let area_xy = |a: ParkingAreaId| {
            let p = &add.parking_areas[a.idx()];
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
            let e = add.parking_areas[lot.area.idx()].edge;
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
    fn lot_of_area(&self, area: ParkingAreaId) -> Option<usize> {
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
            let p = &mut add.parking_areas[lot.area.idx()];
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
            time_to_teleport: self.spec.behaviour.time_to_teleport_s,
            behaviour: Behaviour {
                teleport_parking_bound: false,
                // Hospital-bound cars queue in the lane that turns in, several
                // blocks back, and leave the other lane to through traffic.
                lane_lookahead_edges: self.spec.behaviour.lane_lookahead_edges,
                // Cars turning in from both directions take turns at the gate:
                // the access road is the queuing lane (排队入院通道), and its
                // order comes from who reaches its entry, alternately from
                // each side — nothing a driver could not see.
                zipper_merges: true,
                // One who cannot get into the queue's lane goes round the block.
                missed_turn_after: self.spec.behaviour.missed_turn_after_s,
                // A car arriving in the free lane joins the lot's queue at its
                // tail, and a queue reaching beyond the block's edge goes on
                // upstream in its own lane (others pass it).
                join_queues_at_tail: true,
                eager_insert: true,
                rescue_lane: false,
                emergency_red_speed: None,
            },
            ..SimConfig::default()
        };
        let controllers = cabinet_controllers_for(&self.net, "fixed")?;
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
            peak_queue_held_outside: 0,
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

/// What the run knows of one car (visitors only): what the City Brain told
/// it, whether it booked, and how far it has got. The three move
/// independently — a booked car can be dropped off at the door, queue, then
/// be turned away — so they are three states, not one.
#[derive(Debug, Clone, Default)]
struct Car {
    guidance: Guidance,
    booking: Booking,
    progress: Progress,
    /// When it let its patient out at the door.
    dropped_off_at: Option<f64>,
}

/// Where the City Brain (guidance, a booking, a guard) has sent a car.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Guidance {
    /// Not decided yet: guidance will look at it again.
    #[default]
    Undecided,
    /// Its driver ignores guidance and heads for the hospital's own lot.
    Ignores,
    /// Sent by guidance or by its booking to a lot (index in `lots`; the
    /// hospital's own lot too).
    Sent { lot: usize },
    /// Sent on by the guard at a full hospital's gate to a lot.
    TurnedAway { lot: usize },
}

impl Guidance {
    /// The lot it was sent to, if any.
    fn lot(self) -> Option<usize> {
        match self {
            Guidance::Sent { lot } | Guidance::TurnedAway { lot } => Some(lot),
            Guidance::Undecided | Guidance::Ignores => None,
        }
    }
}

/// Reservation with the appointment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Booking {
    #[default]
    NotAsked,
    /// Asked once: it does not book, or nothing had room.
    Declined,
    /// A space is held in the lot it was sent to; `redirect_pending` until
    /// the car could be redirected there (not while heading for the door).
    Booked { redirect_pending: bool },
}

/// How far a car has got with parking.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Progress {
    #[default]
    Driving,
    /// Standing in a queue for a full lot (on a public road, or held
    /// outside the block); a guard turning it away sets it driving again.
    Queued,
    /// Parked, at `at` s, in a lot of `lots` (None: an area that is no lot).
    Parked { at: f64, lot: Option<usize> },
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
    /// How many of the peak queue were held at the block's edge.
    peak_queue_held_outside: u32,
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

    /// Cars the controller has sent to other lots than their hospital's so far.
    pub fn guided(&self) -> usize {
        self.guided
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
        let full = |area: ParkingAreaId| occ[area.idx()].0 >= occ[area.idx()].1;
        // What the controller sees of each visitor on the road.
        struct Seen {
            handle: VehicleHandle,
            vehicle: usize,
            hospital: usize,
            edge: EdgeId,
            next: Option<EdgeId>,
            after: Option<EdgeId>,
            area: Option<ParkingAreaId>,
            speed: f64,
        }
        let net = &self.d.net;
        self.turn_times.observe(
            t,
            self.sim.step_length(),
            self.sim
                .vehicles_on_road()
                .filter(|v| net.edge(v.edge).function == citybrain_net::EdgeFunction::Normal)
                .map(|v| (v.vehicle.idx(), v.edge, v.route.get(v.route_idx + 1).copied())),
        );
        let mut seen = Vec::new();
        // Cars heading for each hospital lot already on its access road or aisle.
        let mut at_gate = vec![0u32; self.d.hospitals.len()];
        for v in self.sim.vehicles_on_road() {
            let Kind::Visitor(h) = self.kinds[v.vehicle.idx()] else {
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
                vehicle: v.vehicle.idx(),
                hospital: h,
                edge: v.edge,
                next: v.route.get(v.route_idx + 1).copied(),
                after: v.route.get(v.route_idx + 2).copied(),
                area: v.parking_area,
                speed: v.speed,
            });
        }
        let mut queue = 0u32;
        // Of those, the ones held at the block's edge: off the modelled network.
        let mut held_outside = 0u32;
        for s in &seen {
            let hosp = &self.d.hospitals[s.hospital];
            let own_area = self.d.lots[hosp.lot].area;
            let on_lot_road = hosp.lot_edges.contains(&s.edge);
            // Heading for the door first: guidance and the guard wait until
            // the patient is out.
            let door_next = s.area == Some(hosp.door_area);
            if self.o.measures.reservation && self.cars[s.vehicle].booking == Booking::NotAsked && !on_lot_road {
                self.book(s.vehicle, s.hospital, s.next.unwrap_or(s.edge), hub);
            }
            if let (Booking::Booked { redirect_pending: true }, false, Some(lot)) = (
                self.cars[s.vehicle].booking,
                door_next,
                self.cars[s.vehicle].guidance.lot(),
            ) {
                if self.sim.redirect_to_parking(s.handle, self.d.lots[lot].area).is_ok() {
                    self.cars[s.vehicle].booking = Booking::Booked {
                        redirect_pending: false,
                    };
                }
            }
            let car = &mut self.cars[s.vehicle];
            if door_next {
                // Standing for a space in the drop-off bay: on the road now,
                // not a queue for a lot.
                if s.speed < self.d.spec.behaviour.halting_mps && full(hosp.door_area) {
                    queue += 1;
                }
            } else if !on_lot_road {
                if car.progress == Progress::Driving
                    && s.speed < self.d.spec.behaviour.halting_mps
                    && s.area.is_some_and(full)
                {
                    car.progress = Progress::Queued;
                }
                if car.progress == Progress::Queued {
                    queue += 1;
                }
            }
            let undecided = self.cars[s.vehicle].guidance == Guidance::Undecided;
            if self.o.measures.guidance && undecided && !on_lot_road && !door_next {
                self.guide(s.handle, s.vehicle, s.hospital, s.edge, s.next, hub);
            }
            let heading_own = s.area == Some(own_area);
            // The guard stands at the gate: cars already in the access road are past him.
            let reaching_gate = s.next == Some(hosp.access_edge) || s.after == Some(hosp.access_edge);
            // One that has let its patient out at the door is sent on from
            // there, through the hospital's grounds (it counts itself in
            // `at_gate`).
            let past_door = self.cars[s.vehicle].dropped_off_at.is_some() && s.edge == hosp.access_edge;
            if self.o.measures.turn_away && heading_own && ((reaching_gate && !door_next) || past_door) {
                let (o, c) = occ[own_area.idx()];
                if o + at_gate[s.hospital] >= c + u32::from(past_door) {
                    self.turn_away(s.handle, s.vehicle, s.hospital, s.edge, s.next, hub);
                }
            }
        }
        // Visitors held at the block's edge behind a full lot are queued too.
        let pending: Vec<usize> = self.sim.waiting_to_enter().map(|v| v.idx()).collect();
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
            let again = self.d.spec.behaviour.held_think_again_s;
            let thinks_again = held >= again && held % again < self.sim.step_length();
            if thinks_again && matches!(self.kinds[v], Kind::Through) {
                held_through.push(v);
            }
            let Kind::Visitor(h) = self.kinds[v] else { continue };
            if thinks_again {
                held_visitors.push((v, h as usize));
            }
            // Held outside, so neither parked nor turned away.
            let car = &mut self.cars[v];
            if car.progress == Progress::Driving && full(self.d.lots[self.d.hospitals[h as usize].lot].area) {
                car.progress = Progress::Queued;
            }
            if car.progress == Progress::Queued {
                queue += 1;
                held_outside += 1;
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
                self.peak_queue_held_outside = held_outside;
            }
            self.next_queue_sample += QUEUE_SAMPLE_S;
        }
        if t >= self.next_series_sample {
            self.queue_series.push((t, queue));
            for (i, l) in self.d.lots.iter().enumerate() {
                let (o, c) = occ[l.area.idx()];
                self.occupancy_series[i].push((t, o, c));
            }
            self.next_series_sample += SERIES_SAMPLE_S;
        }
        self.sim.step();
        for e in self.sim.take_parking_events() {
            if !e.parked {
                continue;
            }
            let vehicle = e.vehicle.idx();
            if let Kind::Visitor(h) = self.kinds[vehicle] {
                if e.area == self.d.hospitals[h as usize].door_area {
                    self.cars[vehicle].dropped_off_at = Some(e.time);
                    continue;
                }
                let lot = self.d.lot_of_area(e.area);
                let car = &mut self.cars[vehicle];
                car.progress = Progress::Parked { at: e.time, lot };
                if let Some(a) = car.guidance.lot() {
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
}

#[cfg(test)]
mod tests {
    use super::demand::{integral, normal, normal_quantile, pick_weighted};
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

/// Multiplies every number at `path` (`*`: any key or index) by `factor`;
/// returns how many it changed.
fn scale_json(v: &mut serde_json::Value, path: &[&str], factor: f64) -> usize {
    use serde_json::Value;
    let Some((head, rest)) = path.split_first() else {
        return match v {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0) * factor;
                *v = if n.is_f64() {
                    serde_json::json!(x)
                } else {
                    serde_json::json!(x.round() as i64)
                };
                1
            }
            Value::Array(items) => items.iter_mut().map(|i| scale_json(i, &[], factor)).sum(),
            _ => 0,
        };
    };
    match v {
        Value::Object(map) if *head == "*" => map.values_mut().map(|x| scale_json(x, rest, factor)).sum(),
        Value::Object(map) => map.get_mut(*head).map_or(0, |x| scale_json(x, rest, factor)),
        Value::Array(items) if *head == "*" => items.iter_mut().map(|x| scale_json(x, rest, factor)).sum(),
        Value::Array(items) => head
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .map_or(0, |x| scale_json(x, rest, factor)),
        _ => 0,
    }
}

#[cfg(test)]
mod scale_tests {
    use super::*;

    #[test]
    fn scaling_multiplies_the_numbers_a_pointer_names_and_keeps_integers_whole() {
        let mut v = serde_json::json!({"h": [{"n": 170, "x": 1.5}, {"n": 150, "x": 2.0}], "p": [[0, 0.5], [10, 1.0]]});
        assert_eq!(scale_json(&mut v, &["h", "*", "n"], 1.2), 2);
        assert_eq!(v["h"][0]["n"], 204);
        assert_eq!(v["h"][1]["n"], 180);
        assert_eq!(scale_json(&mut v, &["p", "1", "1"], 0.8), 1);
        assert_eq!(v["p"][1][1], 0.8);
        assert_eq!(scale_json(&mut v, &["nothing"], 2.0), 0);
    }

    #[test]
    fn a_scaled_district_loads_and_a_wrong_pointer_is_named() {
        let d = District::load_scaled(&[("/hospitals/*/visitor_spaces".into(), 0.8)]).unwrap();
        assert_eq!(d.spec.hospitals[0].visitor_spaces, 136);
        let e = District::load_scaled(&[("/no/such".into(), 1.2)]).err().unwrap();
        assert!(e.to_string().contains("/no/such"), "{e}");
    }
}
