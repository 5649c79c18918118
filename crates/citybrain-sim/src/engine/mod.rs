//! The time-stepped microscopic engine.
//!
//! Each step has two phases. **Plan** reads the state left by the previous
//! step and decides, for every vehicle, its new speed (Krauss car following
//! against the leader, the stop line or the next lane's last vehicle) and
//! whether it changes lane; lanes are planned in parallel, and every random
//! draw is a pure function of (seed, vehicle, step), so the plan does not
//! depend on the thread count. **Apply** then moves vehicles in a fixed
//! order (lane by lane, front to back), inserts waiting vehicles, records
//! arrivals and teleports. Same seed, same input → byte-identical outputs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use citybrain_net::{EdgeFunction, EdgeId, JunctionId, LaneId, Network, TlsId};
use rayon::prelude::*;

use crate::additional::Additional;
use crate::demand::{Demand, DepartLane, DepartSpeed, VType};
use crate::ids::{DetectorId, ParkingAreaId, VehicleHandle, VehicleId};
use crate::output::{IntervalSummary, TripInfo};
use crate::rng;
use crate::router::Router;
use crate::signals::{LinkSignal, PriorityCall, SignalController, SignalInput};

mod car_following;
mod clock;
use clock::Clock;
mod emergency;
mod insertion;
mod invariants;
pub use invariants::{Invariant, Violation};
mod junctions;
mod lane_changing;
mod measurement;
mod movement;
mod parking;
mod route_repair;
mod teleports;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// s
    pub begin: f64,
    /// s; None: until every vehicle has arrived.
    pub end: Option<f64>,
    /// s, kept to the millisecond (time is whole ms inside, as in SUMO).
    pub step_length: f64,
    pub seed: u64,
    /// Worker threads for planning (1 = sequential).
    pub threads: usize,
    /// Plan in parallel only in steps with at least this many occupied
    /// lanes: below it, handing work to threads costs more than it saves
    /// (a 30×30 grid ran 1.4× slower on 2 threads without this).
    pub parallel_min_lanes: usize,
    /// A vehicle standing this long at the front of a lane jumps ahead (s; 0 = never).
    pub time_to_teleport: f64,
    /// Summary interval (s).
    pub summary_interval: f64,
    /// How drivers behave where the twin goes beyond SUMO's defaults; the
    /// default is SUMO's behaviour, the one the twin's goldens and its SUMO
    /// comparison hold.
    pub behaviour: Behaviour,
}

/// Behaviour switches, each off (SUMO's behaviour) by default. The hospital
/// district turns most on (congested hospital queues need them); the signal
/// corridor the rescue lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Whether a vehicle on its way to a parking area may be teleported
    /// (false: cars queueing for a lot wait as long as it takes, while a
    /// gridlock elsewhere is still broken by teleporting the others).
    pub teleport_parking_bound: bool,
    /// Zipper merging at congested junctions: where a yielding link merges
    /// into the same lane as a prior one whose queue stands at the line, the
    /// two take turns (one car each) instead of the yielding one waiting for
    /// the queue to clear, which at a lot's gate can be never.
    /// (With it, the room beyond a junction also counts the cars already
    /// inside the junction bound for the same lane, so that two merging
    /// cars never both enter for one space.)
    pub zipper_merges: bool,
    /// Moving traffic on a road of two or more lanes opens a rescue lane
    /// for an emergency vehicle close behind it (the corridor between lanes
    /// that drivers must leave; SUMO's bluelight device builds it on
    /// sub-lanes): the emergency vehicle passes a moving leader it has
    /// caught up with, away from the junctions, instead of following it.
    /// Standing queues do not open (there is no room to pull aside).
    pub rescue_lane: bool,
    /// A vehicle standing this long at the end of a lane that does not lead
    /// on along its route (it could not get into the lane it needs) takes
    /// one of the turns its lane offers and is routed from there, as a
    /// driver who missed the turn goes round the block (s; 0 = never: it
    /// waits, or is teleported).
    pub missed_turn_after: f64,
    /// Strategic look-ahead, in edges: drivers pick early, among the lanes
    /// that lead on, one from which the next few edges of their route can be
    /// driven without another change (as SUMO's best lanes do), so that a
    /// queue for a turn forms in the lane that turns. 1: only the next edge
    /// matters (the default, the behaviour the twin's goldens hold).
    pub lane_lookahead_edges: usize,
    /// Queue discipline: a driver who must change into a lane where traffic
    /// going its way crawls or stands (a queue for a turn or a lot) joins that queue at
    /// its tail, instead of driving past it in the free lane and cutting in
    /// at its head; while it waits for the gap, the queue lets it in.
    /// (Off: SUMO's behaviour, cars change lanes wherever they find a gap,
    /// so those arriving in the free lane overtake the queue.)
    pub join_queues_at_tail: bool,
    /// Insertion lane by lane (SUMO's `--eager-insert`): a vehicle that
    /// cannot enter its lane at the network's edge holds up only those
    /// behind it bound for the same lane, as a queue that reaches beyond the
    /// network goes on upstream in its own lane. (Off: one blocked vehicle
    /// holds up its whole edge, SUMO's default.)
    pub eager_insert: bool,
    /// An emergency vehicle (vClass `emergency`) on duty may pass a red
    /// light — or an amber it would stop at — at no more than this speed
    /// (m/s) once no vehicle on a crossing link is in the junction or about
    /// to enter it (PRC Road Traffic Safety Law, art. 53; SUMO's bluelight
    /// device ignores red lights). None: it waits for green like anyone.
    pub emergency_red_speed: Option<f64>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            teleport_parking_bound: true,
            zipper_merges: false,
            rescue_lane: false,
            missed_turn_after: 0.0,
            lane_lookahead_edges: 1,
            join_queues_at_tail: false,
            eager_insert: false,
            emergency_red_speed: None,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            begin: 0.0,
            end: None,
            step_length: 1.0,
            seed: 42,
            threads: 1,
            parallel_min_lanes: 4096,
            time_to_teleport: 300.0,
            summary_interval: 300.0,
            behaviour: Behaviour::default(),
        }
    }
}

/// One outgoing link of a lane.
#[derive(Debug, Clone)]
struct Link {
    to_edge: EdgeId,
    /// The lane entered next: the internal lane if any, else the target lane.
    next: LaneId,
    /// The target (normal) lane.
    target: LaneId,
    tls: Option<(TlsId, u32)>,
    junction: Option<JunctionId>,
    /// Index of this link in its junction's request table.
    request: Option<u32>,
    major: bool,
}

#[derive(Debug, Clone)]
struct Veh {
    spec: u32,
    vtype: u32,
    route: Arc<[EdgeId]>,
    /// Index of the current (or last passed) normal edge in the route.
    route_idx: u32,
    lane: LaneId,
    /// Front position on the lane, m.
    pos: f64,
    speed: f64,
    depart: f64,
    inserted_at: f64,
    waiting: f64,
    time_loss: f64,
    route_length: f64,
    standing: f64,
    teleports: u32,
    /// Entered its junction on a yielding link: waits inside, at the
    /// junction's internal waiting point, for the foes of this link.
    yielding: Option<(JunctionId, u32)>,
    /// Index of the next stop in the vehicle's spec.
    stop_idx: u32,
    /// The parking area of the next stop (it changes when rerouted).
    stop_pa: Option<usize>,
    reroutes: u32,
    stop_time: f64,
    parked_at: f64,
}

#[derive(Debug, Clone, Copy)]
struct LaneInfo {
    length: f64,
    function: EdgeFunction,
}

/// What the plan decided for one vehicle.
#[derive(Debug, Clone, Copy)]
struct Plan {
    speed: f64,
    change: Option<LaneId>,
    /// Held at the tail of the queue in the lane it changes into.
    joining: bool,
}

/// Queue and occupancy of one edge over one interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EdgeStat {
    pub edge: String,
    /// Mean number of standing vehicles (speed < 0.1 m/s).
    pub mean_queue: f64,
    pub max_queue: u32,
    /// Mean fraction of the edge's lane length covered by vehicles.
    pub mean_occupancy: f64,
    /// Mean number of vehicles on the edge.
    pub mean_vehicles: f64,
}

/// Per-edge figures of one interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EdgeInterval {
    pub begin: f64,
    pub end: f64,
    pub edges: Vec<EdgeStat>,
}

#[derive(Debug, Clone, Copy, Default)]
struct EdgeAcc {
    queue_sum: u64,
    queue_max: u32,
    cover_sum: f64,
    veh_sum: u64,
}

/// One detector's figures for one period (SUMO's E1/E2 interval records).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DetectorRecord {
    pub id: String,
    pub begin: f64,
    pub end: f64,
    /// Vehicles whose front passed the loop (E1) or entered the area (E2).
    pub vehicles: u32,
    /// Vehicles per hour.
    pub flow: f64,
    /// % of the period the loop was covered (E1) / mean % of the area covered (E2).
    pub occupancy: f64,
    /// Mean speed of the vehicles measured, m/s (-1 when none).
    pub mean_speed: f64,
    /// E2: vehicle-seconds inside the area.
    pub sampled_seconds: f64,
    /// E2: largest number of halting vehicles (< 1.39 m/s) in the area at once.
    pub max_jam_vehicles: u32,
    /// E2: mean number of vehicles in the area.
    pub mean_vehicles: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct DetAcc {
    begin: f64,
    passed: u32,
    speed_sum: f64,
    speed_weight: f64,
    covered: f64,
    sampled: f64,
    max_jam: u32,
    steps: u64,
}

/// What happened at parking areas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParkingTotals {
    /// Vehicles that parked.
    pub parked: usize,
    /// Times a vehicle found its parking area full and was sent to another.
    pub rerouted: usize,
}

/// Why a vehicle stood long enough to be teleported (SUMO's warning names
/// the same causes: jam, yield, wrongLane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeleportCause {
    /// Held at a red light.
    Red,
    /// Waiting for a foe stream on a yielding link (outside or inside the junction).
    Yield,
    /// No room on the lane beyond the junction, or a jam ahead.
    Jam,
    /// On a lane that does not lead on along its route, unable to change.
    WrongLane,
}

/// One teleport: who, where from, why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TeleportEvent {
    pub time: f64,
    pub vehicle: String,
    pub lane: String,
    pub cause: TeleportCause,
    /// The vehicle landed further along its route; false: it jumped past
    /// the end of its route and arrived there.
    pub continued: bool,
}

/// A car entering or leaving a parking area (when the log is on: `with_parking_events`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParkingEvent {
    /// s
    pub time: f64,
    pub vehicle: VehicleId,
    pub area: ParkingAreaId,
    /// true: it parked; false: it left through the exit gate.
    pub parked: bool,
}

/// A vehicle on the road, as a scenario's controller sees it.
#[derive(Debug, Clone, Copy)]
pub struct VehicleView<'a> {
    /// Handle for `redirect_to_parking`; valid until the vehicle arrives.
    pub handle: VehicleHandle,
    pub vehicle: VehicleId,
    pub lane: LaneId,
    pub edge: EdgeId,
    /// Front position on the lane, m.
    pub pos: f64,
    /// m/s
    pub speed: f64,
    /// The parking area it heads for next, if any.
    pub parking_area: Option<ParkingAreaId>,
    /// Its route, and the index of its current (or last passed) normal edge in it.
    pub route: &'a [EdgeId],
    pub route_idx: usize,
}

/// Why a vehicle could not be sent to another parking area.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("no such vehicle on the road")]
    NoVehicle,
    #[error("no such parking area")]
    NoArea,
    #[error("no route to the parking area and on to the destination")]
    NoRoute,
}

/// Why a vehicle's route could not be changed before its departure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplanError {
    #[error("no such vehicle in the demand")]
    NoVehicle,
    #[error("the vehicle has already departed")]
    Departed,
    #[error("the route is empty, not connected, or misses one of the vehicle's stops")]
    BadRoute,
}

/// Counts and timings of a run so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub loaded: usize,
    pub inserted: usize,
    pub arrived: usize,
    pub running: usize,
    pub waiting_to_insert: usize,
    /// Trips called off before they entered the network.
    pub cancelled: usize,
    pub teleports: usize,
    pub vehicle_steps: u64,
}

/// A running simulation.
pub struct Sim {
    net: Arc<Network>,
    demand: Demand,
    cfg: SimConfig,
    links: Vec<Vec<Link>>,
    /// The lanes that lead into each lane, with the distance from their end
    /// to its start (internal lanes between): where a vehicle inserted at
    /// the lane's start may find a follower.
    lead_ins: Vec<Vec<(LaneId, f64)>>,
    /// Vehicles on each lane, front (largest position) first.
    lanes: Vec<Vec<u32>>,
    vehs: Vec<Option<Veh>>,
    free_slots: Vec<u32>,
    /// Next demand entry to consider.
    next_spec: usize,
    /// Vehicles due but not yet inserted, per first edge (SUMO keeps order per edge).
    pending: Vec<VecDeque<u32>>,
    pending_edges: Vec<EdgeId>,
    /// Trips called off before their departure (indices in the demand).
    cancelled: std::collections::HashSet<usize>,
    controllers: Vec<(TlsId, Box<dyn SignalController>)>,
    signal_states: Vec<Vec<LinkSignal>>,
    /// Junction link requests (yield rows) per junction: (request index, yields-to mask as indices).
    yields: Vec<Vec<Vec<u32>>>,
    /// The same by the `foes` bits: every link whose path crosses or merges
    /// with this one, whatever the right of way (for an emergency vehicle
    /// going against a red light).
    crossers: Vec<Vec<Vec<u32>>>,
    /// Per junction and request index: is a vehicle approaching or inside the link this step?
    busy: Vec<Vec<bool>>,
    /// Lanes holding vehicles at the start of this step (every pass walks these only).
    occupied: Vec<u32>,
    /// Lanes that received a vehicle since `occupied` was computed.
    touched: Vec<u32>,
    /// Standing vehicles per lane, kept for the signal controllers.
    queue: Vec<u32>,
    /// Vehicles within `DETECTION_RANGE` of each lane's end (moving or not),
    /// what a stop-line detector zone would see.
    near_stop_line: Vec<u32>,
    /// Parking areas, rerouters and detectors (from additional files).
    add: Additional,
    /// What is parked where, and the gates.
    lots: parking::ParkingState,
    router: Option<Router>,
    pub parking: ParkingTotals,
    /// What is being measured, and what has been.
    measure: measurement::Measurement,
    /// Per lane: vehicles on a neighbouring lane that must move into it and
    /// could not last step (back position, vehicle); followers make room.
    wishers: Vec<Vec<(f64, u32)>>,
    /// Busy flags set last step, to clear them cheaply.
    busy_set: Vec<(u32, u32)>,
    /// For each internal lane: the junction links that drive through it.
    via_links: Vec<Vec<(Option<JunctionId>, Option<u32>)>>,
    clock: Clock,
    pool: rayon::ThreadPool,
    /// What the hot loops read of each lane, packed (the network's lanes
    /// carry names and shapes that would crowd the cache).
    lane_info: Vec<LaneInfo>,
    /// The plan list, kept between steps to reuse its allocation.
    plan_buf: Vec<Plan>,
    pub totals: Totals,
    /// Running vehicles of vClass `emergency` (their signals get priority calls).
    emergency: Vec<u32>,
    /// Per emergency vehicle in a rescue lane: the lane and how far along
    /// it its pass has got, m.
    rescue_progress: HashMap<u32, (LaneId, f64)>,
    /// Zipper merging: the target lane of each junction request, the link
    /// (junction, request) the last car entered each lane by, and this
    /// step's turn taken by a yielding link per lane.
    request_target: Vec<Vec<Option<LaneId>>>,
    last_into: Vec<Option<(u32, u32)>>,
    zipper_turn: Vec<Option<(u32, u32)>>,
    zipper_set: Vec<u32>,
    /// For each normal lane, the internal lanes whose cars end up on it.
    feeders: Vec<Vec<LaneId>>,
    /// Zipper merging: where the room beyond a junction is down to about one
    /// car, the one vehicle allowed to enter for it this step (by lane).
    entry_permit: Vec<Option<u32>>,
    permit_set: Vec<u32>,
}

const STANDING: f64 = 0.1;
/// How far past its stopping point a car heading for a parking area may
/// roll and still stop there, m.
const STOP_TOLERANCE: f64 = 1.0;
/// The stop-line detection zone signal controllers see, m.
const DETECTION_RANGE: f64 = 40.0;
/// How far ahead of an emergency vehicle drivers make way for it, m.
const MAKE_WAY_RANGE: f64 = 60.0;
/// Traffic slower than this (m/s) in the lane a driver needs is a queue to
/// join at its tail (with `join_queues_at_tail`).
const QUEUE_CRAWL_MPS: f64 = 3.0;
/// How far ahead of an emergency vehicle signals are told it is coming, m.
const PRIORITY_HORIZON: f64 = 1000.0;
/// A rescue lane opens only this far (m) from both ends of a lane: near a
/// junction the lanes lead to different turns and queues stand.
const RESCUE_LANE_CLEARANCE: f64 = 30.0;
/// Traffic slower than this (m/s) is a standing queue, with no room to pull aside.
const RESCUE_LANE_MIN_SPEED: f64 = 2.0;

impl Sim {
    pub fn new(
        net: Arc<Network>,
        demand: Demand,
        cfg: SimConfig,
        controllers: Vec<(TlsId, Box<dyn SignalController>)>,
    ) -> Sim {
        let links = build_links(&net);
        // Per junction, per request: the links it yields to, and every link
        // it crosses or merges with.
        let rows = |bits: fn(&citybrain_net::Request, u32) -> bool| {
            net.junctions
                .iter()
                .map(|j| {
                    let mut rows = vec![Vec::new(); j.requests.iter().map(|r| r.index as usize + 1).max().unwrap_or(0)];
                    for r in &j.requests {
                        rows[r.index as usize] = (0..r.response.len().max(r.foes.len()) as u32)
                            .filter(|&i| bits(r, i))
                            .collect();
                    }
                    rows
                })
                .collect::<Vec<Vec<Vec<u32>>>>()
        };
        let yields = rows(citybrain_net::Request::yields_to);
        let crossers = rows(citybrain_net::Request::conflicts_with);
        let busy = yields.iter().map(|r| vec![false; r.len()]).collect();
        let lead_ins = build_lead_ins(&net, &links);
        let mut via_links = vec![Vec::new(); net.lanes.len()];
        for list in &links {
            for l in list {
                if l.next != l.target {
                    via_links[l.next.idx()].push((l.junction, l.request));
                }
            }
        }
        let n_lanes = net.lanes.len();
        let mut request_target: Vec<Vec<Option<LaneId>>> = yields.iter().map(|r| vec![None; r.len()]).collect();
        for list in &links {
            for l in list {
                if let (Some(j), Some(r)) = (l.junction, l.request) {
                    if let Some(slot) = request_target[j.idx()].get_mut(r as usize) {
                        *slot = Some(l.target);
                    }
                }
            }
        }
        let mut feeders: Vec<Vec<LaneId>> = vec![Vec::new(); n_lanes];
        for list in &links {
            for l in list {
                let mut lane = l.next;
                // Walk the internal lanes of this link to its target.
                let mut guard = 0;
                while lane != l.target && guard < 8 {
                    if !feeders[l.target.idx()].contains(&lane) {
                        feeders[l.target.idx()].push(lane);
                    }
                    match links[lane.idx()].first() {
                        Some(n) => lane = n.next,
                        None => break,
                    }
                    guard += 1;
                }
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads.max(1))
            .build()
            .unwrap_or_else(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool can always be built")
            });
        let lane_info: Vec<LaneInfo> = net
            .lanes
            .iter()
            .map(|l| LaneInfo {
                length: l.length,
                function: net.edge(l.edge).function,
            })
            .collect();
        let loaded = demand.vehicles.len();
        let time = cfg.begin;
        Sim {
            signal_states: vec![Vec::new(); net.tls.len()],
            pending: vec![VecDeque::new(); net.edges.len()],
            net,
            demand,
            links,
            lead_ins,
            lanes: vec![Vec::new(); n_lanes],
            vehs: Vec::new(),
            free_slots: Vec::new(),
            next_spec: 0,
            pending_edges: Vec::new(),
            cancelled: std::collections::HashSet::new(),
            controllers,
            yields,
            crossers,
            busy,
            via_links,
            occupied: Vec::new(),
            touched: Vec::new(),
            queue: vec![0; n_lanes],
            near_stop_line: vec![0; n_lanes],
            wishers: vec![Vec::new(); n_lanes],
            add: Additional::default(),
            measure: measurement::Measurement::new(time),
            lots: parking::ParkingState::default(),
            router: None,
            parking: ParkingTotals::default(),
            busy_set: Vec::new(),
            clock: Clock::new(cfg.begin, cfg.step_length),
            pool,
            plan_buf: Vec::new(),
            lane_info,
            totals: Totals {
                loaded,
                ..Totals::default()
            },
            emergency: Vec::new(),
            rescue_progress: HashMap::new(),
            request_target,
            last_into: vec![None; n_lanes],
            zipper_turn: vec![None; n_lanes],
            zipper_set: Vec::new(),
            feeders,
            entry_permit: vec![None; n_lanes],
            permit_set: Vec::new(),
            cfg,
        }
    }

    /// The start of the current step, s.
    pub fn time(&self) -> f64 {
        self.clock.now()
    }

    /// The length of one step, s.
    pub fn step_length(&self) -> f64 {
        self.clock.step_length()
    }

    /// The demand being run (vehicle specs by index).
    pub fn demand(&self) -> &Demand {
        &self.demand
    }

    /// Every vehicle on the road (not parked, not waiting to enter), lane by lane.
    pub fn vehicles_on_road(&self) -> impl Iterator<Item = VehicleView<'_>> + '_ {
        self.lanes.iter().enumerate().flat_map(move |(li, list)| {
            list.iter().map(move |&vi| {
                let v = self.veh(vi);
                VehicleView {
                    handle: VehicleHandle(vi),
                    vehicle: VehicleId(v.spec),
                    lane: LaneId(li as u32),
                    edge: self.net.lanes[li].edge,
                    pos: v.pos,
                    speed: v.speed,
                    parking_area: v.stop_pa.map(|a| ParkingAreaId(a as u32)),
                    route: &v.route,
                    route_idx: v.route_idx as usize,
                }
            })
        })
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    /// True when nothing is left to do (or the end time is reached).
    pub fn finished(&self) -> bool {
        if let Some(end) = self.cfg.end {
            if self.clock.now() >= end {
                return true;
            }
        }
        self.next_spec >= self.demand.vehicles.len() && self.totals.running == 0 && self.totals.waiting_to_insert == 0
    }

    fn is_internal(&self, l: LaneId) -> bool {
        self.lane_info[l.idx()].function == EdgeFunction::Internal
    }

    fn is_normal(&self, l: LaneId) -> bool {
        self.lane_info[l.idx()].function == EdgeFunction::Normal
    }

    fn lane_len(&self, l: LaneId) -> f64 {
        self.lane_info[l.idx()].length
    }

    fn veh(&self, i: u32) -> &Veh {
        self.vehs[i as usize]
            .as_ref()
            .expect("lane lists hold live vehicles only")
    }

    fn vtype(&self, v: &Veh) -> &VType {
        &self.demand.vtypes[v.vtype as usize]
    }

    /// Lanes holding vehicles now, in lane order.
    fn live_lanes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.occupied.iter().chain(self.touched.iter()).copied().collect();
        v.sort_unstable();
        v.dedup();
        v.retain(|l| !self.lanes[*l as usize].is_empty());
        v
    }

    /// Advances one step.
    pub fn step(&mut self) {
        let dt = self.clock.step_length();
        // Occupied lanes now: those occupied at the last step plus those that
        // received a vehicle since (never a scan of every lane: city networks
        // have hundreds of thousands), in lane order as before.
        for &li in &self.occupied {
            self.queue[li as usize] = 0;
            self.near_stop_line[li as usize] = 0;
        }
        self.occupied = self.live_lanes();
        self.touched.clear();
        self.update_signals();
        self.mark_busy_links();
        let mut plans = std::mem::take(&mut self.plan_buf);
        self.plan(dt, &mut plans);
        self.apply(&plans, dt);
        self.plan_buf = plans;
        self.sample_edges();
        self.sample_detectors(dt);
        self.release_due();
        self.insert();
        self.clock.tick();
        self.totals.vehicle_steps += self.totals.running as u64;
        self.measure.interval.vehicle_steps += self.totals.running as u64;
        if self.clock.now() - self.measure.interval.begin >= self.cfg.summary_interval - 1e-9 {
            self.close_interval();
        }
    }

    /// Runs until finished; calls `each_interval` after every summary interval.
    pub fn run(&mut self, mut each_interval: impl FnMut(&Sim)) {
        while !self.finished() {
            let before = self.measure.summaries.len();
            self.step();
            if self.measure.summaries.len() > before {
                each_interval(self);
            }
        }
        self.close_interval();
    }

    /// Closes the last, partial interval (call once the run is over).
    pub fn finish(&mut self) {
        self.close_interval();
        for d in 0..self.measure.det_acc.len() {
            if self.clock.now() > self.measure.det_acc[d].begin {
                self.close_detector(d);
            }
        }
    }
}

/// The safe speed: the fastest speed for this step from which the follower
/// can still stop behind a leader that brakes at `leader_decel` (m/s²) from
/// now on, itself reacting after `tau` and braking at `decel` — both
/// counted step by step as the engine moves them (speeds held for `dt`,
/// cut by `decel·dt` each step), not in continuous time. The continuous
/// Krauss formula is not safe at 1-s steps when the two brake differently
/// (SUMO's Krauss uses the same stepwise reckoning for this reason).
///
/// It is also never more than keeps the two apart at the end of this step
/// should the leader brake that hard now.
fn krauss_safe(gap: f64, leader_speed: f64, leader_decel: f64, t: &VType, dt: f64) -> f64 {
    if gap.is_infinite() {
        return f64::INFINITY;
    }
    let apart = (gap + t.min_gap) / dt + (leader_speed - leader_decel * dt).max(0.0);
    let room = gap.max(0.0) + stepwise_brake_gap(leader_speed, leader_decel, dt);
    safe_stop_speed(room, t.decel, dt, t.tau.max(dt)).min(apart)
}

/// Distance a vehicle at `speed` covers while braking at `decel` in steps
/// of `dt` (each step's speed held for the step, the first one cut already).
fn stepwise_brake_gap(speed: f64, decel: f64, dt: f64) -> f64 {
    let cut = decel * dt;
    if speed <= 0.0 || cut <= 0.0 {
        return 0.0;
    }
    let steps = (speed / cut).floor();
    dt * (steps * speed - cut * steps * (steps + 1.0) / 2.0)
}

/// The largest speed `x` for this step such that reacting for `tau` at `x`,
/// then braking by `decel·dt` a step, covers no more than `room`: with `x`
/// = n·decel·dt + r (0 <= r < decel·dt), the distance is
/// r·(n·dt + tau) + n(n−1)/2·decel·dt² + n·decel·dt·tau.
fn safe_stop_speed(room: f64, decel: f64, dt: f64, tau: f64) -> f64 {
    if room <= 0.0 {
        return 0.0;
    }
    let cut = decel * dt;
    // Full braking steps: the largest n with the fixed part within `room`.
    let (qa, qb) = (0.5 * cut * dt, cut * tau - 0.5 * cut * dt);
    let n = ((-qb + (qb * qb + 4.0 * qa * room).sqrt()) / (2.0 * qa))
        .floor()
        .max(0.0);
    let fixed = |n: f64| qa * n * n + qb * n;
    // Guard the floor against rounding either way.
    let n = if fixed(n) > room { (n - 1.0).max(0.0) } else { n };
    let n = if fixed(n + 1.0) <= room { n + 1.0 } else { n };
    let r = (room - fixed(n)) / (n * dt + tau);
    n * cut + r.max(0.0)
}

fn build_lead_ins(net: &Network, links: &[Vec<Link>]) -> Vec<Vec<(LaneId, f64)>> {
    let mut lead_ins = vec![Vec::new(); net.lanes.len()];
    for (from, list) in links.iter().enumerate() {
        if net.edge(net.lanes[from].edge).function == EdgeFunction::Internal {
            continue;
        }
        for l in list {
            // The chain of internal lanes from `from` to the target, then back.
            let mut chain = vec![LaneId(from as u32)];
            let mut lane = l.next;
            while lane != l.target && chain.len() < 5 {
                chain.push(lane);
                lane = links[lane.idx()].first().map_or(l.target, |k| k.next);
            }
            let mut dist = 0.0;
            for &f in chain.iter().rev() {
                if !lead_ins[l.target.idx()].iter().any(|(g, _)| *g == f) {
                    lead_ins[l.target.idx()].push((f, dist));
                }
                dist += net.lane(f).length;
            }
        }
    }
    lead_ins
}

fn build_links(net: &Network) -> Vec<Vec<Link>> {
    // Request index of each connection at its junction: the traffic-light link
    // index where there is one, else SUMO's order (incoming lanes, then connections).
    let mut request_of = vec![None; net.connections.len()];
    for j in &net.junctions {
        // An internal junction (a left turn's waiting point) lists the
        // normal lanes whose traffic it yields to among its incoming lanes;
        // their links are numbered by the junction they end at, not by it.
        if j.kind == "internal" {
            continue;
        }
        let mut idx = 0u32;
        for inc in &j.inc_lanes {
            let lane = net.lane(*inc);
            for &ci in &net.outgoing[lane.edge.idx()] {
                let c = &net.connections[ci];
                if c.from_lane == lane.index {
                    request_of[ci] = Some(c.link_index.unwrap_or(idx));
                    idx += 1;
                }
            }
        }
    }
    let mut links = vec![Vec::new(); net.lanes.len()];
    for (ci, c) in net.connections.iter().enumerate() {
        let from_edge = net.edge(c.from);
        let Some(&from_lane) = from_edge.lanes.get(c.from_lane as usize) else {
            continue;
        };
        let Some(&target) = net.edge(c.to).lanes.get(c.to_lane as usize) else {
            continue;
        };
        let junction = if from_edge.function == EdgeFunction::Normal {
            from_edge.to
        } else {
            None
        };
        links[from_lane.idx()].push(Link {
            to_edge: c.to,
            next: c.via.unwrap_or(target),
            target,
            tls: c.tls.zip(c.link_index),
            junction,
            request: if from_edge.function == EdgeFunction::Normal {
                request_of[ci]
            } else {
                None
            },
            major: c.state == "M" || c.state == "O",
        });
    }
    links
}
