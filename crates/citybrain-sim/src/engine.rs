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
use crate::output::{IntervalSummary, TripInfo};
use crate::rng;
use crate::router::Router;
use crate::signals::{LinkSignal, PriorityCall, SignalController, SignalInput};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// s
    pub begin: f64,
    /// s; None: until every vehicle has arrived.
    pub end: Option<f64>,
    /// s
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
    /// Whether a vehicle on its way to a parking area may be teleported
    /// (false: cars queueing for a lot wait as long as it takes, while a
    /// gridlock elsewhere is still broken by teleporting the others).
    pub teleport_parking_bound: bool,
    /// Summary interval (s).
    pub summary_interval: f64,
    /// Zipper merging at congested junctions: where a yielding link merges
    /// into the same lane as a prior one whose queue stands at the line, the
    /// two take turns (one car each) instead of the yielding one waiting for
    /// the queue to clear, which at a lot's gate can be never.
    /// (With it, the room beyond a junction also counts the cars already
    /// inside the junction bound for the same lane, so that two merging
    /// cars never both enter for one space.)
    pub zipper_merges: bool,
    /// With `zipper_merges`: of two merging queues, the one whose front car
    /// arrived (departed) first goes next, instead of strict turns — the
    /// order of a single queuing lane, where those who came first are let
    /// in first whichever way they came.
    pub first_come_merges: bool,
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
            teleport_parking_bound: true,
            summary_interval: 300.0,
            lane_lookahead_edges: 1,
            zipper_merges: false,
            first_come_merges: false,
            rescue_lane: false,
            missed_turn_after: 0.0,
            join_queues_at_tail: false,
            eager_insert: false,
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
    /// Index of the vehicle in the demand's list.
    pub vehicle: usize,
    /// Index of the parking area.
    pub area: usize,
    /// true: it parked; false: it left through the exit gate.
    pub parked: bool,
}

/// A vehicle on the road, as a scenario's controller sees it.
#[derive(Debug, Clone, Copy)]
pub struct VehicleView<'a> {
    /// Handle for `redirect_to_parking`; valid until the vehicle arrives.
    pub handle: u32,
    /// Index of the vehicle in the demand's list.
    pub vehicle: usize,
    pub lane: LaneId,
    pub edge: EdgeId,
    /// Front position on the lane, m.
    pub pos: f64,
    /// m/s
    pub speed: f64,
    /// The parking area it heads for next, if any.
    pub parking_area: Option<usize>,
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
    /// Parking areas, rerouters, and the state of the parking.
    add: Additional,
    occupancy: Vec<u32>,
    /// When each parking area's entry and exit gates are free again (s).
    gate_free: Vec<(f64, f64)>,
    /// Parked vehicles by the time they want to leave (ms) and index.
    parked: std::collections::BTreeSet<(i64, u32)>,
    router: Option<Router>,
    pub parking: ParkingTotals,
    /// Detector accumulators and the records of finished periods.
    det_acc: Vec<DetAcc>,
    det_records: Vec<(usize, DetectorRecord)>,
    /// Per-edge accumulators (when edge statistics are on) and the edges touched.
    edge_acc: Vec<EdgeAcc>,
    edge_touched: Vec<u32>,
    edge_steps: u64,
    edge_stats: Vec<EdgeInterval>,
    /// Per lane: vehicles on a neighbouring lane that must move into it and
    /// could not last step (back position, vehicle); followers make room.
    wishers: Vec<Vec<(f64, u32)>>,
    /// Busy flags set last step, to clear them cheaply.
    busy_set: Vec<(u32, u32)>,
    /// For each internal lane: the junction links that drive through it.
    via_links: Vec<Vec<(Option<JunctionId>, Option<u32>)>>,
    time: f64,
    step_no: u64,
    pool: rayon::ThreadPool,
    /// What the hot loops read of each lane, packed (the network's lanes
    /// carry names and shapes that would crowd the cache).
    lane_info: Vec<LaneInfo>,
    /// The plan list, kept between steps to reuse its allocation.
    plan_buf: Vec<Plan>,
    pub totals: Totals,
    trips: Vec<TripInfo>,
    interval: IntervalSummary,
    summaries: Vec<IntervalSummary>,
    teleport_log: Vec<TeleportEvent>,
    /// Running vehicles of vClass `emergency` (their signals get priority calls).
    emergency: Vec<u32>,
    /// Per emergency vehicle in a rescue lane: the lane and how far along
    /// it its pass has got, m.
    rescue_progress: HashMap<u32, (LaneId, f64)>,
    /// Parking entries and exits since the last `take_parking_events` (None: not logged).
    parking_events: Option<Vec<ParkingEvent>>,
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
const QUEUE_CRAWL_MS: f64 = 3.0;
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
        let yields = net
            .junctions
            .iter()
            .map(|j| {
                let mut rows = vec![Vec::new(); j.requests.iter().map(|r| r.index as usize + 1).max().unwrap_or(0)];
                for r in &j.requests {
                    rows[r.index as usize] = (0..r.response.len() as u32).filter(|i| r.yields_to(*i)).collect();
                }
                rows
            })
            .collect::<Vec<Vec<Vec<u32>>>>();
        let busy = yields.iter().map(|r| vec![false; r.len()]).collect();
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
            lanes: vec![Vec::new(); n_lanes],
            vehs: Vec::new(),
            free_slots: Vec::new(),
            next_spec: 0,
            pending_edges: Vec::new(),
            cancelled: std::collections::HashSet::new(),
            controllers,
            yields,
            busy,
            via_links,
            occupied: Vec::new(),
            touched: Vec::new(),
            queue: vec![0; n_lanes],
            near_stop_line: vec![0; n_lanes],
            wishers: vec![Vec::new(); n_lanes],
            add: Additional::default(),
            det_acc: Vec::new(),
            det_records: Vec::new(),
            edge_acc: Vec::new(),
            edge_touched: Vec::new(),
            edge_steps: 0,
            edge_stats: Vec::new(),
            occupancy: Vec::new(),
            gate_free: Vec::new(),
            parked: Default::default(),
            router: None,
            parking: ParkingTotals::default(),
            busy_set: Vec::new(),
            time,
            step_no: 0,
            pool,
            plan_buf: Vec::new(),
            lane_info,
            totals: Totals {
                loaded,
                ..Totals::default()
            },
            trips: Vec::new(),
            interval: IntervalSummary {
                begin: time,
                ..IntervalSummary::default()
            },
            summaries: Vec::new(),
            teleport_log: Vec::new(),
            emergency: Vec::new(),
            rescue_progress: HashMap::new(),
            parking_events: None,
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

    pub fn time(&self) -> f64 {
        self.time
    }

    /// The length of one step, s.
    pub fn step_length(&self) -> f64 {
        self.cfg.step_length
    }

    /// Collects queue length and occupancy per edge for every interval.
    pub fn with_edge_stats(mut self) -> Sim {
        self.edge_acc = vec![EdgeAcc::default(); self.net.edges.len()];
        self
    }

    /// Per-edge figures of the intervals closed so far (drained).
    pub fn take_edge_stats(&mut self) -> Vec<EdgeInterval> {
        std::mem::take(&mut self.edge_stats)
    }

    fn sample_edges(&mut self) {
        if self.edge_acc.is_empty() {
            return;
        }
        self.edge_steps += 1;
        for li in self.live_lanes() {
            let li = li as usize;
            let list = &self.lanes[li];
            if list.is_empty() {
                continue;
            }
            let lane = &self.net.lanes[li];
            let e = lane.edge.idx();
            if self.net.edges[e].function != EdgeFunction::Normal {
                continue;
            }
            let (mut standing, mut cover) = (0u32, 0.0);
            for &vi in list {
                let v = self.veh(vi);
                if v.speed < STANDING {
                    standing += 1;
                }
                cover += self.vtype(v).length;
            }
            let lanes_len: f64 = self.net.edges[e].lanes.len() as f64 * lane.length.max(0.1);
            let acc = &mut self.edge_acc[e];
            if acc.veh_sum == 0 && acc.cover_sum == 0.0 {
                self.edge_touched.push(e as u32);
            }
            acc.queue_sum += standing as u64;
            acc.queue_max = acc.queue_max.max(standing);
            acc.cover_sum += cover / lanes_len;
            acc.veh_sum += list.len() as u64;
        }
    }

    fn close_edge_interval(&mut self, begin: f64, end: f64) {
        if self.edge_acc.is_empty() {
            return;
        }
        let n = self.edge_steps.max(1) as f64;
        let mut touched = std::mem::take(&mut self.edge_touched);
        touched.sort_unstable();
        let edges = touched
            .into_iter()
            .map(|e| {
                let a = std::mem::take(&mut self.edge_acc[e as usize]);
                EdgeStat {
                    edge: self.net.edges[e as usize].id.clone(),
                    mean_queue: a.queue_sum as f64 / n,
                    max_queue: a.queue_max,
                    mean_occupancy: a.cover_sum / n,
                    mean_vehicles: a.veh_sum as f64 / n,
                }
            })
            .collect();
        self.edge_steps = 0;
        self.edge_stats.push(EdgeInterval { begin, end, edges });
    }

    /// Adds parking areas and rerouters (from additional files).
    pub fn with_parking(mut self, add: Additional) -> Sim {
        self.occupancy = vec![0; add.parking_areas.len()];
        self.gate_free = vec![(f64::NEG_INFINITY, f64::NEG_INFINITY); add.parking_areas.len()];
        self.det_acc = vec![
            DetAcc {
                begin: self.time,
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
        self.parking_events = Some(Vec::new());
        self
    }

    /// Parking entries and exits since the last call (empty unless logged).
    pub fn take_parking_events(&mut self) -> Vec<ParkingEvent> {
        self.parking_events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Changes how many cars a parking area admits from now on (a lot that
    /// shares its spaces for some hours of the day). Cars already parked
    /// stay; while more are parked than the new capacity, nobody enters.
    pub fn set_parking_capacity(&mut self, area: usize, capacity: u32) {
        if let Some(p) = self.add.parking_areas.get_mut(area) {
            p.capacity = capacity;
        }
    }

    /// The parking areas (with their current capacities).
    pub fn parking_areas(&self) -> &[crate::additional::ParkingArea] {
        &self.add.parking_areas
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
                    handle: vi,
                    vehicle: v.spec as usize,
                    lane: LaneId(li as u32),
                    edge: self.net.lanes[li].edge,
                    pos: v.pos,
                    speed: v.speed,
                    parking_area: v.stop_pa,
                    route: &v.route,
                    route_idx: v.route_idx as usize,
                }
            })
        })
    }

    /// Vehicles whose departure time has come but that found no room to
    /// enter the network yet (indices in the demand's list).
    pub fn waiting_to_enter(&self) -> impl Iterator<Item = usize> + '_ {
        self.pending_edges
            .iter()
            .flat_map(move |e| self.pending[e.idx()].iter().map(|s| *s as usize))
    }

    /// Gives a vehicle that is not on the road yet another route — a driver
    /// who picks the way in at the last moment, or one held outside the
    /// network who tries another way in (it queues there behind those
    /// already waiting). The route must be connected and pass the edges of
    /// the vehicle's stops in order.
    pub fn replan_before_departure(&mut self, vehicle: usize, route: Arc<[EdgeId]>) -> Result<(), ReplanError> {
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
    fn held_at(&self, vehicle: usize) -> Option<(EdgeId, usize)> {
        let first = self.demand.vehicles.get(vehicle)?.route[0];
        let at = self.pending[first.idx()].iter().position(|s| *s as usize == vehicle)?;
        Some((first, at))
    }

    /// Calls off the trip of a vehicle that is not on the road yet — one
    /// still to depart, or one held at the network's edge (a driver who
    /// takes a way that avoids the network).
    pub fn cancel_before_departure(&mut self, vehicle: usize) -> Result<(), ReplanError> {
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

    /// Sends a vehicle on the road to another parking area for its next stop
    /// (guidance, or a guard turning it away). The new route keeps the
    /// vehicle's next edge, so that it is never caught in a lane that does
    /// not lead on; from there it takes the fastest way to the area and then
    /// on to its destination.
    pub fn redirect_to_parking(&mut self, handle: u32, area: usize) -> Result<(), RedirectError> {
        self.redirect_to_parking_avoiding(handle, area, None)
    }

    /// As `redirect_to_parking`, but not by way of `avoid` as its next edge
    /// (a guard waving a car past the gate it was about to turn into): the
    /// vehicle then takes another turn its lane offers.
    pub fn redirect_to_parking_avoiding(
        &mut self,
        handle: u32,
        area: usize,
        avoid: Option<EdgeId>,
    ) -> Result<(), RedirectError> {
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
            .zip(&self.occupancy)
            .map(|(p, o)| (p.id.as_str(), *o, p.capacity))
            .collect()
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    /// True when nothing is left to do (or the end time is reached).
    pub fn finished(&self) -> bool {
        if let Some(end) = self.cfg.end {
            if self.time >= end {
                return true;
            }
        }
        self.next_spec >= self.demand.vehicles.len() && self.totals.running == 0 && self.totals.waiting_to_insert == 0
    }

    /// Trips completed so far (drained).
    pub fn take_trips(&mut self) -> Vec<TripInfo> {
        std::mem::take(&mut self.trips)
    }

    pub fn take_summaries(&mut self) -> Vec<IntervalSummary> {
        std::mem::take(&mut self.summaries)
    }

    /// The teleports since the last call, in the order they happened.
    pub fn take_teleports(&mut self) -> Vec<TeleportEvent> {
        std::mem::take(&mut self.teleport_log)
    }

    /// What holds the front vehicle of its lane.
    fn hold_cause(&self, v: &Veh) -> TeleportCause {
        let lane = self.net.lane(v.lane);
        let internal = self.net.edge(lane.edge).function == EdgeFunction::Internal;
        let Some(link) = self.link_of(v) else {
            return TeleportCause::WrongLane;
        };
        if internal {
            return match v.yielding {
                Some((j, r)) if self.foes_busy_at(j, r) => TeleportCause::Yield,
                _ => TeleportCause::Jam,
            };
        }
        match self.signal(link) {
            LinkSignal::Stop => TeleportCause::Red,
            LinkSignal::Yield if self.foe_busy(link) => TeleportCause::Yield,
            _ => TeleportCause::Jam,
        }
    }

    /// What the signals' detectors saw at the start of the last step, by lane
    /// index: (vehicles standing, vehicles within the detection zone).
    pub fn detector_readings(&self) -> (&[u32], &[u32]) {
        (&self.queue, &self.near_stop_line)
    }

    /// The state each link of a signal shows now.
    pub fn signal_state(&self, tls: TlsId) -> &[LinkSignal] {
        self.signal_states.get(tls.idx()).map_or(&[], |s| s.as_slice())
    }

    /// Vehicles on each lane (for queue and occupancy outputs and the scenario hook).
    pub fn lane_counts(&self) -> Vec<(LaneId, usize, usize)> {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| {
                let standing = l.iter().filter(|v| self.veh(**v).speed < STANDING).count();
                (LaneId(i as u32), l.len(), standing)
            })
            .collect()
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
        let dt = self.cfg.step_length;
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
        self.time += dt;
        self.step_no += 1;
        self.totals.vehicle_steps += self.totals.running as u64;
        self.interval.vehicle_steps += self.totals.running as u64;
        if self.time - self.interval.begin >= self.cfg.summary_interval - 1e-9 {
            self.close_interval();
        }
    }

    /// Runs until finished; calls `each_interval` after every summary interval.
    pub fn run(&mut self, mut each_interval: impl FnMut(&Sim)) {
        while !self.finished() {
            let before = self.summaries.len();
            self.step();
            if self.summaries.len() > before {
                each_interval(self);
            }
        }
        self.close_interval();
    }

    /// Closes the last, partial interval (call once the run is over).
    pub fn finish(&mut self) {
        self.close_interval();
        for d in 0..self.det_acc.len() {
            if self.time > self.det_acc[d].begin {
                self.close_detector(d);
            }
        }
    }

    /// Detector records of the periods finished so far (drained), with the
    /// detector's index in the additional files.
    pub fn take_detector_records(&mut self) -> Vec<(usize, DetectorRecord)> {
        std::mem::take(&mut self.det_records)
    }

    /// The detectors being measured.
    pub fn detectors(&self) -> &[crate::additional::Detector] {
        &self.add.detectors
    }

    fn sample_detectors(&mut self, dt: f64) {
        use crate::additional::DetectorKind;
        for d in 0..self.det_acc.len() {
            let det = &self.add.detectors[d];
            let mut acc = self.det_acc[d];
            acc.steps += 1;
            let mut covered_now = 0.0f64;
            let mut halting = 0u32;
            for &vi in &self.lanes[det.lane.idx()] {
                let v = self.veh(vi);
                let len = self.vtype(v).length;
                let (front, back, before) = (v.pos, v.pos - len, v.pos - v.speed * dt);
                match det.kind {
                    DetectorKind::Loop { pos } => {
                        if before < pos && pos <= front {
                            acc.passed += 1;
                            acc.speed_sum += v.speed;
                            acc.speed_weight += 1.0;
                        }
                        // Time the vehicle covered the loop during the step: its front
                        // moved linearly from `before` to `front`, covering while in [pos, pos+len].
                        let cover = if v.speed > 0.0 {
                            let moved = (front.min(pos + len) - before.max(pos)).max(0.0);
                            moved / v.speed
                        } else if back <= pos && pos <= front {
                            dt
                        } else {
                            0.0
                        };
                        covered_now = (covered_now + cover).min(dt);
                    }
                    DetectorKind::Area { start, end } => {
                        if before < start && start <= front {
                            acc.passed += 1;
                        }
                        let inside = front.min(end) - back.max(start);
                        if inside > 0.0 {
                            acc.sampled += dt;
                            acc.speed_sum += v.speed * dt;
                            acc.speed_weight += dt;
                            covered_now += inside / (end - start) * dt;
                            if v.speed < 1.39 {
                                halting += 1;
                            }
                        }
                    }
                }
            }
            acc.covered += covered_now;
            acc.max_jam = acc.max_jam.max(halting);
            self.det_acc[d] = acc;
            if self.time + dt - acc.begin >= det.period - 1e-9 {
                self.close_detector(d);
            }
        }
    }

    fn close_detector(&mut self, d: usize) {
        let acc = std::mem::take(&mut self.det_acc[d]);
        let end = self.time + self.cfg.step_length;
        let span = (end - acc.begin).max(1e-9);
        let det = &self.add.detectors[d];
        let record = DetectorRecord {
            id: det.id.clone(),
            begin: acc.begin,
            end,
            vehicles: acc.passed,
            flow: acc.passed as f64 * 3600.0 / span,
            occupancy: 100.0 * acc.covered / span,
            mean_speed: if acc.speed_weight > 0.0 {
                acc.speed_sum / acc.speed_weight
            } else {
                -1.0
            },
            sampled_seconds: acc.sampled,
            max_jam_vehicles: acc.max_jam,
            mean_vehicles: acc.sampled / span,
        };
        self.det_acc[d] = DetAcc {
            begin: end,
            ..DetAcc::default()
        };
        self.det_records.push((d, record));
    }

    fn close_interval(&mut self) {
        if self.time <= self.interval.begin && self.interval.inserted == 0 && self.interval.arrived == 0 {
            return;
        }
        let mut s = std::mem::take(&mut self.interval);
        s.end = self.time;
        self.close_edge_interval(s.begin, s.end);
        s.running = self.totals.running;
        s.waiting_to_insert = self.totals.waiting_to_insert;
        self.interval = IntervalSummary {
            begin: self.time,
            ..IntervalSummary::default()
        };
        self.summaries.push(s);
    }

    fn update_signals(&mut self) {
        for &li in &self.occupied {
            let len = self.lane_info[li as usize].length;
            let (mut standing, mut near) = (0, 0);
            for &vi in &self.lanes[li as usize] {
                let v = self.veh(vi);
                if v.speed < STANDING {
                    standing += 1;
                }
                if len - v.pos <= DETECTION_RANGE {
                    near += 1;
                }
            }
            self.queue[li as usize] = standing;
            self.near_stop_line[li as usize] = near;
        }
        let calls = self.priority_calls();
        let input = SignalInput {
            time: self.time,
            queue_by_lane: &self.queue,
            near_stop_line: &self.near_stop_line,
            priority: &calls,
        };
        for (tls, c) in self.controllers.iter_mut() {
            c.states(&input, &mut self.signal_states[tls.idx()]);
        }
    }

    /// The signalled links ahead of each emergency vehicle, up to
    /// `PRIORITY_HORIZON` metres, with arrival estimates at the speed limits.
    fn priority_calls(&self) -> Vec<PriorityCall> {
        let mut calls = Vec::new();
        for &vi in &self.emergency {
            let Some(v) = self.vehs[vi as usize].as_ref() else {
                continue;
            };
            if !self.lanes[v.lane.idx()].contains(&vi) {
                continue; // parked
            }
            let mut lane = v.lane;
            let mut dist = self.lane_len(lane) - v.pos;
            let mut eta = dist / self.net.lane(lane).speed.max(1.0);
            for idx in (v.route_idx as usize..).take(16) {
                if dist > PRIORITY_HORIZON {
                    break;
                }
                let link = if self.is_internal(lane) {
                    self.links[lane.idx()].first()
                } else {
                    let Some(&next) = v.route.get(idx + 1) else { break };
                    let edge = self.net.edge(self.net.lane(lane).edge);
                    // Its own lane's link, else any lane of the edge that leads on.
                    std::iter::once(lane)
                        .chain(edge.lanes.iter().copied())
                        .find_map(|l| self.links[l.idx()].iter().find(|k| k.to_edge == next))
                };
                let Some(link) = link else { break };
                if let Some((tls, i)) = link.tls {
                    calls.push(PriorityCall {
                        tls,
                        link: i,
                        distance: dist,
                        eta,
                    });
                }
                let step_len = |l: LaneId| (self.lane_len(l), self.net.lane(l).speed.max(1.0));
                if link.next != link.target {
                    let (len, sp) = step_len(link.next);
                    dist += len;
                    eta += len / sp;
                }
                lane = link.target; // the route's next normal edge (idx + 1)
                let (len, sp) = step_len(lane);
                dist += len;
                eta += len / sp;
            }
        }
        calls
    }

    fn signal(&self, link: &Link) -> LinkSignal {
        match link.tls {
            Some((t, i)) => self.signal_states[t.idx()]
                .get(i as usize)
                .copied()
                .unwrap_or(LinkSignal::Stop),
            None if link.major => LinkSignal::Go,
            None => LinkSignal::Yield,
        }
    }

    /// The link a vehicle takes at the end of its lane, if any.
    fn link_of(&self, v: &Veh) -> Option<&Link> {
        let links = &self.links[v.lane.idx()];
        if self.is_internal(v.lane) {
            return links.first();
        }
        let next = *v.route.get(v.route_idx as usize + 1)?;
        links.iter().find(|l| l.to_edge == next)
    }

    /// Marks, per junction link, whether a vehicle is crossing or about to.
    fn mark_busy_links(&mut self) {
        for (j, r) in self.busy_set.drain(..) {
            self.busy[j as usize][r as usize] = false;
        }
        let mut set = Vec::new();
        let mut moving: Vec<(u32, u32)> = Vec::new();
        let mut at_line: Vec<(u32, u32, LaneId, bool, f64)> = Vec::new();
        let mut entrants: Vec<(LaneId, u8, u32, u32, f64)> = Vec::new();
        for &li in &self.occupied {
            let lane_id = LaneId(li);
            let list = &self.lanes[li as usize];
            let Some(&front) = list.first() else { continue };
            let v = self.veh(front);
            let lane = self.net.lane(lane_id);
            let internal = self.net.edge(lane.edge).function == EdgeFunction::Internal;
            if internal {
                // A vehicle inside a junction keeps the links it drives busy,
                // except one standing at the internal waiting point, yielding.
                let waiting = v.yielding.is_some()
                    && v.speed < STANDING
                    && self.links[li as usize]
                        .first()
                        .is_some_and(|l| self.is_internal(l.next));
                if waiting {
                    continue;
                }
                for &(j, r) in &self.via_links[li as usize] {
                    if let (Some(j), Some(r)) = (j, r) {
                        set.push((j.0, r));
                    }
                }
                continue;
            }
            let Some(link) = self.link_of(v) else { continue };
            let dist = lane.length - v.pos;
            // Only a vehicle that will really enter reserves its link: one
            // held at the line (no room beyond the junction) must not make
            // the crossing traffic wait for it.
            let t = self.vtype(v);
            let room_ok = link.next == link.target || self.can_leave(link.target, t);
            let moving_in = v.speed > 0.5 && dist / v.speed < 4.0;
            let starting = dist < 2.0 && room_ok;
            if (moving_in || starting) && room_ok && !matches!(self.signal(link), LinkSignal::Stop) {
                if let (Some(j), Some(r)) = (link.junction, link.request) {
                    set.push((j.0, r));
                    if moving_in {
                        moving.push((j.0, r));
                    }
                }
            }
            // First come: a car held at a red light still holds its place
            // for the last space (the room waits for its green).
            let may_enter_now = self.signal(link) != LinkSignal::Stop || self.cfg.first_come_merges;
            if self.cfg.zipper_merges
                && link.next != link.target
                && dist < v.speed + 2.0
                && may_enter_now
                && self.room_left(link.target) < 2.0 * (t.length + t.min_gap)
            {
                // Who goes first for the last space: the link with the zipper
                // turn, then priority links, then by lane order.
                let rank = match link.junction.zip(link.request) {
                    Some((j, r)) if self.zipper_turn[link.target.idx()] == Some((j.0, r)) => 0u8,
                    _ if link.major => 1,
                    _ => 2,
                };
                let rank = if self.cfg.first_come_merges { 0 } else { rank };
                entrants.push((link.target, rank, li, front, v.depart));
            }
            if self.cfg.zipper_merges && dist < 2.0 && v.speed < STANDING && self.signal(link) != LinkSignal::Stop {
                if let (Some(j), Some(r)) = (link.junction, link.request) {
                    at_line.push((
                        j.0,
                        r,
                        link.target,
                        matches!(self.signal(link), LinkSignal::Yield),
                        v.depart,
                    ));
                }
            }
        }
        for (j, r) in set {
            if let Some(slot) = self.busy[j as usize].get_mut(r as usize) {
                if !*slot {
                    *slot = true;
                    self.busy_set.push((j, r));
                }
            }
        }
        if self.cfg.zipper_merges {
            self.update_zipper_turns(&at_line, &moving);
            for l in self.permit_set.drain(..) {
                self.entry_permit[l as usize] = None;
            }
            // Under first come, the rank is the same for all: by arrival.
            entrants.sort_by(|a, b| {
                (a.0 .0, a.1)
                    .cmp(&(b.0 .0, b.1))
                    .then(if self.cfg.first_come_merges {
                        a.4.total_cmp(&b.4)
                    } else {
                        std::cmp::Ordering::Equal
                    })
                    .then(a.2.cmp(&b.2))
            });
            for (target, _, _, vi, _) in entrants {
                if self.entry_permit[target.idx()].is_none() {
                    self.entry_permit[target.idx()] = Some(vi);
                    self.permit_set.push(target.0);
                }
            }
        }
    }

    /// Room beyond a junction on `target`, less what the cars already
    /// inside the junction bound for it will take, m.
    fn room_left(&self, target: LaneId) -> f64 {
        let inside: f64 = self.feeders[target.idx()]
            .iter()
            .flat_map(|l| self.lanes[l.idx()].iter())
            .map(|v| {
                let vt = self.vtype(self.veh(*v));
                vt.length + vt.min_gap
            })
            .sum();
        self.room(target) - inside
    }

    /// Zipper merging: a yielding link whose car waits at the line while
    /// cars of a prior link merging into the same lane stand at theirs gets
    /// the next turn into that lane, unless the last car in came by it; the
    /// turn holds until its car has entered (crossing traffic permitting),
    /// and the merging links wait for it.
    fn update_zipper_turns(&mut self, at_line: &[(u32, u32, LaneId, bool, f64)], moving: &[(u32, u32)]) {
        let mut kept = Vec::new();
        for l in self.zipper_set.drain(..) {
            let turn = self.zipper_turn[l as usize];
            let still_waiting = turn.is_some_and(|(j, r)| at_line.iter().any(|a| (a.0, a.1) == (j, r) && a.2 .0 == l));
            if still_waiting && self.last_into[l as usize] != turn {
                kept.push(l);
            } else {
                self.zipper_turn[l as usize] = None;
            }
        }
        self.zipper_set = kept;
        let first_come = self.cfg.first_come_merges;
        for &(j, r, target, yielding, depart) in at_line {
            if !yielding
                || self.zipper_turn[target.idx()].is_some()
                || (!first_come && self.last_into[target.idx()] == Some((j, r)))
            {
                continue;
            }
            let Some(row) = self.yields[j as usize].get(r as usize) else {
                continue;
            };
            let merging = |f: u32| self.request_target[j as usize].get(f as usize).copied().flatten() == Some(target);
            // The earliest arrival at the front of a merging queue.
            let foe_front = row
                .iter()
                .filter(|&&f| merging(f))
                .flat_map(|&f| at_line.iter().filter(move |a| (a.0, a.1) == (j, f)).map(|a| a.4))
                .min_by(f64::total_cmp);
            let foe_waiting = foe_front.is_some_and(|d| !first_come || depart < d);
            let foe_moving = row.iter().any(|&f| merging(f) && moving.contains(&(j, f)));
            if foe_waiting && !foe_moving {
                self.zipper_turn[target.idx()] = Some((j, r));
                self.zipper_set.push(target.0);
            }
        }
    }

    /// Crossing (not merging) foes of a link are busy.
    fn crossing_foes_busy(&self, link: &Link) -> bool {
        let (Some(j), Some(r)) = (link.junction, link.request) else {
            return false;
        };
        self.crossing_foes_busy_at(j, r, link.target)
    }

    fn crossing_foes_busy_at(&self, j: JunctionId, r: u32, target: LaneId) -> bool {
        let Some(row) = self.yields[j.idx()].get(r as usize) else {
            return false;
        };
        row.iter().any(|&f| {
            self.busy[j.idx()].get(f as usize).copied().unwrap_or(false)
                && self.request_target[j.idx()].get(f as usize).copied().flatten() != Some(target)
        })
    }

    /// Plans for the vehicles of each occupied lane, in `occupied` order and
    /// front to back within a lane: one flat list (no allocation per lane).
    fn plan(&self, dt: f64, out: &mut Vec<Plan>) {
        out.clear();
        let lane_plans = |li: u32| {
            let list = &self.lanes[li as usize];
            list.iter()
                .enumerate()
                .map(move |(k, &vi)| self.plan_vehicle(LaneId(li), list, k, vi, dt))
        };
        if self.cfg.threads <= 1 || self.occupied.len() < self.cfg.parallel_min_lanes {
            out.extend(self.occupied.iter().flat_map(|&li| lane_plans(li)));
        } else {
            self.pool.install(|| {
                out.par_extend(self.occupied.par_iter().flat_map_iter(|&li| lane_plans(li)));
            });
        }
    }

    fn plan_vehicle(&self, lane_id: LaneId, list: &[u32], k: usize, vi: u32, dt: f64) -> Plan {
        let v = self.veh(vi);
        let t = self.vtype(v);
        let lane = self.net.lane(lane_id);
        let vmax = (lane.speed * t.speed_factor).min(t.max_speed);
        // Distance and speed of whatever limits us ahead.
        let (gap, leader_speed) = if k > 0 {
            let l = self.veh(list[k - 1]);
            (l.pos - self.vtype(l).length - v.pos - t.min_gap, l.speed)
        } else {
            self.look_ahead(v, t, lane.length)
        };
        // Cooperation: slow down behind a vehicle waiting to move into this
        // lane — if it can still stop behind it comfortably. One already
        // closer cannot make room by holding back (waiting there deadlocked
        // both), so it goes first and lets the wisher in behind.
        let can_stop_behind = |back: f64| {
            let g = back - v.pos - t.min_gap;
            g >= 0.0 && krauss_safe(g, 0.0, t) >= v.speed - t.decel * dt
        };
        let (gap, leader_speed) = self.wishers[lane_id.idx()]
            .iter()
            .filter(|(back, w)| *w != vi && *back - v.pos < 60.0 && can_stop_behind(*back))
            .map(|(back, _)| (back - v.pos - t.min_gap, 0.0))
            .fold((gap, leader_speed), |a, b| if b.0 < a.0 { b } else { a });
        // The next stop, if it lies ahead on this lane, is a leader standing still.
        let (gap, leader_speed) = match self.stop_ahead(v, lane_id) {
            Some(d) if d < gap => (d, 0.0),
            _ => (gap, leader_speed),
        };
        let strategic = self.lane_change(v, lane_id);
        // Joining a queue: its tail ahead in the lane wished for is a leader too.
        let tail = strategic
            .filter(|_| self.cfg.join_queues_at_tail)
            .and_then(|target| self.queue_tail_ahead(v, t, target));
        let (gap, leader_speed) = match tail {
            Some((g, s)) if g < gap => (g, s),
            _ => (gap, leader_speed),
        };
        let safe = krauss_safe(gap, leader_speed, t);
        let wanted = (v.speed + t.accel * dt).min(vmax).min(safe);
        let dawdle = t.sigma * t.accel * dt * rng::draw(self.cfg.seed, v.spec as u64, self.step_no);
        let speed = (wanted - dawdle).max(0.0).min(wanted.max(0.0));
        let change = strategic
            .or_else(|| self.make_way(v, t, lane_id))
            .or_else(|| self.overtake(v, t, lane_id, gap, leader_speed, vmax));
        Plan {
            speed,
            change,
            joining: tail.is_some(),
        }
    }

    /// The nearest vehicle ahead of `v` in `target` (same edge), as (gap to
    /// its back, its speed), when it crawls or stands and goes the same way
    /// for the next two edges: the tail of the queue that `v` must join
    /// rather than pass. Zero gap when it is already alongside: `v` stops
    /// there and waits to be let in. (A queue going elsewhere — a lot's
    /// queue in a lane shared with through traffic — is no reason to stop.)
    fn queue_tail_ahead(&self, v: &Veh, t: &VType, target: LaneId) -> Option<(f64, f64)> {
        let list = &self.lanes[target.idx()];
        // Lists run front to back: the last one still ahead of `v` is the nearest.
        let &nearest = list.iter().rev().find(|&&o| self.veh(o).pos > v.pos)?;
        let o = self.veh(nearest);
        fn way(x: &Veh) -> &[EdgeId] {
            let from = (x.route_idx as usize + 1).min(x.route.len());
            &x.route[from..(from + 2).min(x.route.len())]
        }
        (o.speed < QUEUE_CRAWL_MS && way(o) == way(v))
            .then(|| ((o.pos - self.vtype(o).length - v.pos - t.min_gap).max(0.0), o.speed))
    }

    /// Distance to the stop position of the vehicle's next parking area, when
    /// that lies ahead on this lane's edge.
    fn stop_ahead(&self, v: &Veh, lane: LaneId) -> Option<f64> {
        let pa = v.stop_pa?;
        let p = &self.add.parking_areas[pa];
        // One already alongside the area when it filled up waits at its end
        // (a leaving car pulls out ahead of it).
        let full = self.occupancy[pa] >= p.capacity;
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
    fn stop_position(&self, pa: usize) -> f64 {
        let p = &self.add.parking_areas[pa];
        if self.occupancy[pa] < p.capacity {
            p.end_pos
        } else {
            p.start_pos
        }
    }

    /// (gap, leader speed) for the front vehicle of a lane.
    fn look_ahead(&self, v: &Veh, t: &VType, lane_len: f64) -> (f64, f64) {
        let to_end = lane_len - v.pos;
        let on_last_edge = v.route_idx as usize + 1 >= v.route.len() && self.is_normal(v.lane);
        if on_last_edge {
            return (f64::INFINITY, 0.0);
        }
        let Some(link) = self.link_of(v) else {
            // Wrong lane for the next turn: stop at the end until a lane change.
            return (to_end - 0.1, 0.0);
        };
        let stop_line = (to_end - 0.1, 0.0);
        let open = match self.signal(link) {
            LinkSignal::Go => true,
            LinkSignal::Stop => false,
            LinkSignal::Amber => {
                // Go on only if braking before the line is impossible.
                let brake = v.speed * v.speed / (2.0 * t.decel);
                brake > to_end
            }
            LinkSignal::Yield => {
                !self.foe_busy(link)
                    || self.may_wait_inside(link, t)
                    || (self.my_zipper_turn(link) && !self.crossing_foes_busy(link))
            }
        };
        let internal = self.is_internal(v.lane);
        // The last space beyond the junction was given to another car.
        if open && !internal && self.cfg.zipper_merges && link.next != link.target {
            let permit = self.entry_permit[link.target.idx()];
            let can_stop = v.speed * v.speed / (2.0 * t.decel) <= to_end;
            if permit.is_some_and(|p| self.vehs[p as usize].as_ref().map(|pv| pv.spec) != Some(v.spec)) && can_stop {
                return stop_line;
            }
        }
        // A merging link has its zipper turn into this lane: wait for it.
        if open && !internal && self.others_zipper_turn(link) {
            let can_stop = v.speed * v.speed / (2.0 * t.decel) <= to_end;
            if can_stop {
                return stop_line;
            }
        }
        if !open && !internal {
            return stop_line;
        }
        // At the internal waiting point: cross only when the foes are clear.
        if internal && self.is_internal(link.next) {
            if let Some((j, r)) = v.yielding {
                // With the zipper turn into its lane, only crossing traffic holds it.
                let my_turn = self.cfg.zipper_merges && self.zipper_turn[link.target.idx()] == Some((j.0, r));
                let held = if my_turn {
                    self.crossing_foes_busy_at(j, r, link.target)
                } else {
                    self.foes_busy_at(j, r)
                };
                if held {
                    return stop_line;
                }
            }
        }
        // Do not block the junction: enter only with room to leave it on the
        // target lane (unless too close to stop, as at amber).
        if !internal && link.next != link.target {
            let can_stop = v.speed * v.speed / (2.0 * t.decel) <= to_end;
            if !self.can_leave(link.target, t) && can_stop {
                return stop_line;
            }
        }
        // Open: follow the last vehicle on the next lane, or the one after it.
        let mut dist = to_end;
        let mut lane = link.next;
        for _ in 0..3 {
            if let Some(&last) = self.lanes[lane.idx()].last() {
                let l = self.veh(last);
                return (dist + l.pos - self.vtype(l).length - t.min_gap, l.speed);
            }
            if lane == link.target {
                break;
            }
            dist += self.lane_len(lane);
            lane = link.target;
        }
        (f64::INFINITY, 0.0)
    }

    fn foe_busy(&self, link: &Link) -> bool {
        let (Some(j), Some(r)) = (link.junction, link.request) else {
            return false;
        };
        self.foes_busy_at(j, r)
    }

    /// Zipper merging: this yielding link has its turn into its target lane.
    fn my_zipper_turn(&self, link: &Link) -> bool {
        self.cfg.zipper_merges
            && link.junction.zip(link.request).map(|(j, r)| (j.0, r)) == self.zipper_turn[link.target.idx()]
    }

    /// Zipper merging: another link has the turn into this link's target lane.
    fn others_zipper_turn(&self, link: &Link) -> bool {
        self.cfg.zipper_merges
            && self.zipper_turn[link.target.idx()]
                .is_some_and(|turn| link.junction.zip(link.request).map(|(j, r)| (j.0, r)) != Some(turn))
    }

    fn foes_busy_at(&self, j: JunctionId, r: u32) -> bool {
        let Some(row) = self.yields[j.idx()].get(r as usize) else {
            return false;
        };
        row.iter()
            .any(|f| self.busy[j.idx()].get(*f as usize).copied().unwrap_or(false))
    }

    /// A yielding link with an internal waiting point (a left turn in SUMO
    /// nets) may be entered to wait inside the junction, as drivers do, if
    /// the first internal lane is free.
    fn may_wait_inside(&self, link: &Link, t: &VType) -> bool {
        if link.next == link.target {
            return false;
        }
        let has_waiting_point = self.links[link.next.idx()]
            .first()
            .is_some_and(|l| self.is_internal(l.next));
        has_waiting_point && self.lanes[link.next.idx()].is_empty() && self.can_leave(link.target, t)
    }

    /// Strategic lane change: move toward a lane that continues along the route.
    fn lane_change(&self, v: &Veh, lane_id: LaneId) -> Option<LaneId> {
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        if edge.function != EdgeFunction::Normal || edge.lanes.len() < 2 {
            return None;
        }
        // A stop on this edge: its lane first.
        if let Some(pa) = v.stop_pa {
            let p = &self.add.parking_areas[pa];
            if p.edge == lane.edge && v.pos <= p.end_pos + STOP_TOLERANCE {
                let target = self.net.lane(p.lane).index;
                if target == lane.index {
                    return None;
                }
                let step = if target > lane.index {
                    lane.index + 1
                } else {
                    lane.index - 1
                };
                return edge.lanes.get(step as usize).copied();
            }
        }
        let next = *v.route.get(v.route_idx as usize + 1)?;
        if self.links[lane_id.idx()].iter().any(|l| l.to_edge == next) {
            return self.lookahead_change(v, lane_id);
        }
        let good: Vec<u32> = edge
            .lanes
            .iter()
            .filter(|l| self.links[l.idx()].iter().any(|k| k.to_edge == next))
            .map(|l| self.net.lane(*l).index)
            .collect();
        let target_index = *good.iter().min_by_key(|i| (**i as i64 - lane.index as i64).abs())?;
        let step = if target_index > lane.index {
            lane.index + 1
        } else {
            lane.index.checked_sub(1)?
        };
        // The wish only: apply() checks the gap, or swaps with a neighbour wishing the opposite.
        edge.lanes.get(step as usize).copied()
    }

    /// With a look-ahead beyond the next edge: the neighbouring lane, if the
    /// route can be followed further from it without changing lanes than from
    /// this one (ties keep the lane).
    fn lookahead_change(&self, v: &Veh, lane_id: LaneId) -> Option<LaneId> {
        let depth = self.cfg.lane_lookahead_edges;
        if depth <= 1 {
            return None;
        }
        let reach = |start: LaneId| self.route_reach(&v.route, v.route_idx as usize, start);
        let here = reach(lane_id);
        if here >= depth {
            return None;
        }
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        let vclass = &self.demand.vtypes[v.vtype as usize].vclass;
        [lane.index.checked_sub(1), Some(lane.index + 1)]
            .into_iter()
            .flatten()
            .filter_map(|i| edge.lanes.get(i as usize).copied())
            .filter(|l| self.net.lane(*l).allows(vclass))
            .map(|l| (reach(l), l))
            .filter(|(r, _)| *r > here)
            .max_by_key(|(r, l)| (*r, std::cmp::Reverse(self.net.lane(*l).index)))
            .map(|(_, l)| l)
    }

    /// How many of the next `lane_lookahead_edges` edges of a route (after
    /// `route[idx]`) can be driven from `start` without changing lanes.
    fn route_reach(&self, route: &[EdgeId], idx: usize, start: LaneId) -> usize {
        let depth = self.cfg.lane_lookahead_edges;
        let mut lane = start;
        for j in 1..=depth {
            let Some(next) = route.get(idx + j) else {
                return depth;
            };
            match self.links[lane.idx()].iter().find(|k| k.to_edge == *next) {
                Some(k) => lane = k.target,
                None => return j - 1,
            }
        }
        depth
    }

    /// Drivers who hear an emergency vehicle close behind them in their lane
    /// move to a neighbouring lane that also leads on along their route (the
    /// right one first), gap permitting — the rescue lane SUMO's bluelight
    /// device builds, on whole lanes.
    fn make_way(&self, v: &Veh, t: &VType, lane_id: LaneId) -> Option<LaneId> {
        if self.emergency.is_empty() || t.vclass == "emergency" {
            return None;
        }
        if !self.emergency_behind(v, lane_id) {
            return None;
        }
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        if edge.function != EdgeFunction::Normal {
            return None;
        }
        let next = v.route.get(v.route_idx as usize + 1).copied();
        let leads_on = |l: LaneId| next.is_none_or(|n| self.links[l.idx()].iter().any(|k| k.to_edge == n));
        [lane.index.checked_sub(1), Some(lane.index + 1)]
            .into_iter()
            .flatten()
            .filter_map(|i| edge.lanes.get(i as usize).copied())
            .find(|&l| leads_on(l) && self.net.lane(l).allows(&t.vclass))
    }

    /// An emergency vehicle close behind `v` in its lane?
    fn emergency_behind(&self, v: &Veh, lane_id: LaneId) -> bool {
        self.emergency.iter().any(|&e| {
            self.vehs[e as usize]
                .as_ref()
                .is_some_and(|ev| ev.lane == lane_id && ev.pos < v.pos && v.pos - ev.pos < MAKE_WAY_RANGE)
        })
    }

    /// Simple overtaking: a vehicle held behind a slow or standing leader
    /// moves to a neighbouring lane that also leads on along its route and
    /// offers clearly more room and speed ahead.
    fn overtake(&self, v: &Veh, t: &VType, lane_id: LaneId, gap: f64, leader_speed: f64, vmax: f64) -> Option<LaneId> {
        // Emergency vehicles pass anything slower than they may drive.
        let slow = if t.vclass == "emergency" {
            leader_speed < vmax - 1.0
        } else {
            leader_speed < 0.7 * vmax
        };
        if !(gap < 40.0 && slow) {
            return None;
        }
        let lane = self.net.lane(lane_id);
        let edge = self.net.edge(lane.edge);
        if edge.function != EdgeFunction::Normal
            || edge.lanes.len() < 2
            || v.stop_pa.is_some_and(|pa| self.add.parking_areas[pa].edge == lane.edge)
        {
            return None;
        }
        let next = v.route.get(v.route_idx as usize + 1).copied();
        let leads_on = |l: LaneId| next.is_none_or(|n| self.links[l.idx()].iter().any(|k| k.to_edge == n));
        let ahead = |l: LaneId| -> (f64, f64) {
            // The nearest vehicle ahead in lane l: (gap, speed).
            let list = &self.lanes[l.idx()];
            let mut best = (self.lane_len(l) - v.pos, vmax);
            for &o in list.iter().rev() {
                let ov = self.veh(o);
                if ov.pos > v.pos {
                    best = (ov.pos - self.vtype(ov).length - v.pos - t.min_gap, ov.speed);
                    break;
                }
            }
            best
        };
        let mut choice: Option<(f64, LaneId)> = None;
        for idx in [lane.index.checked_sub(1), Some(lane.index + 1)].into_iter().flatten() {
            let Some(&other) = edge.lanes.get(idx as usize) else {
                continue;
            };
            // Never into a lane the route does not go on from (a turn bay),
            // an emergency vehicle neither: one that passed that way got
            // stuck at the bay's end beside the moving platoon it had passed
            // (the rescue lane is its way past moving traffic).
            if !leads_on(other) || !self.net.lane(other).allows(&t.vclass) {
                continue;
            }
            let (g, sp) = ahead(other);
            let better = g > gap + 15.0 && (sp > leader_speed + 2.0 || g > 2.0 * gap + 20.0);
            if better && choice.is_none_or(|(cg, _)| g > cg) {
                choice = Some((g, other));
            }
        }
        choice.map(|(_, l)| l)
    }

    /// Room in `target` beside `v`: no overlap, and gaps that neither the
    /// changer (behind its new leader) nor its new follower can close without
    /// braking harder than their `decel` — the bound every Krauss safe speed
    /// assumes of its leader.
    fn gap_ok(&self, v: &Veh, t: &VType, target: LaneId) -> bool {
        let dt = self.cfg.step_length;
        let list = &self.lanes[target.idx()];
        let back = v.pos - t.length;
        // Near the end of the lane a change is urgent: the follower need only
        // be able to brake behind us, not keep a full headway.
        // So is making way for an emergency vehicle.
        let urgent = self.lane_len(v.lane) - v.pos < 50.0 || self.emergency_behind(v, v.lane);
        for &o in list {
            let ov = self.veh(o);
            let ot = self.vtype(ov);
            if ov.pos >= v.pos {
                // Leader in the target lane.
                let gap = ov.pos - ot.length - v.pos - t.min_gap;
                if gap < 0.0 || krauss_safe(gap, ov.speed, t) < v.speed - t.decel * dt {
                    return false;
                }
                if !urgent && gap < v.speed * 0.5 {
                    return false;
                }
            } else {
                // Follower: must be able to keep its distance.
                let gap = back - ov.pos - ot.min_gap;
                if gap < 0.0 || krauss_safe(gap, v.speed, ot) < ov.speed - ot.decel * dt {
                    return false;
                }
                if !urgent && gap < ov.speed * ot.tau {
                    return false;
                }
                break;
            }
        }
        true
    }

    fn apply(&mut self, plans: &[Plan], dt: f64) {
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
                            if self.cfg.zipper_merges {
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
                if self.occupancy[pa] < self.add.parking_areas[pa].capacity {
                    continue;
                }
                let edge = self.net.lane(self.veh(vi).lane).edge;
                let visible = self
                    .add
                    .alternatives(edge, self.time, pa)
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
                (self.gap_ok(v, self.vtype(v), to), v.pos)
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
        if self.cfg.rescue_lane && !self.emergency.is_empty() {
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

    /// The rescue lane: an emergency vehicle held behind a moving leader in
    /// its lane, on a normal edge of two or more lanes and clear of the
    /// junctions at both ends, goes on through the corridor the traffic
    /// opens at its own speed. Its progress there is kept apart from its
    /// place in the lane (which follows the leader as usual); when that
    /// progress reaches the leader, the two exchange places within the
    /// footprint they had (the leader's back where the emergency vehicle's
    /// was, the gap between them kept), so no one overlaps and the lane
    /// stays in order. The distance each gained or gave up counts in its
    /// route length. Losing the leader, the lane or the conditions ends the
    /// pass.
    fn pass_through_rescue_lanes(&mut self, dt: f64) {
        for k in 0..self.emergency.len() {
            let e = self.emergency[k];
            let Some(ev) = self.vehs[e as usize].as_ref() else {
                continue;
            };
            let lane = ev.lane;
            let edge = self.net.edge(self.net.lane(lane).edge);
            let list = &self.lanes[lane.idx()];
            let leader = list
                .iter()
                .position(|x| *x == e)
                .filter(|i| *i > 0)
                .map(|i| (i, list[i - 1]));
            let passable = leader.filter(|&(_, l)| {
                let lv = self.veh(l);
                let (et, lt) = (self.vtype(ev), self.vtype(lv));
                let gap = lv.pos - lt.length - ev.pos;
                let held = gap < et.min_gap + et.tau.max(1.0) * ev.speed + 5.0;
                edge.function == EdgeFunction::Normal
                    && edge.lanes.len() >= 2
                    && lt.vclass != "emergency"
                    && lv.speed >= RESCUE_LANE_MIN_SPEED
                    && held
                    && ev.pos - et.length > RESCUE_LANE_CLEARANCE
                    && self.lane_len(lane) - lv.pos > RESCUE_LANE_CLEARANCE
            });
            let Some((i, l)) = passable else {
                self.rescue_progress.remove(&e);
                continue;
            };
            let desired = {
                let t = self.vtype(ev);
                (self.net.lane(lane).speed * t.speed_factor).min(t.max_speed)
            };
            let (lane_then, progress) = self.rescue_progress.get(&(e)).copied().unwrap_or((lane, ev.pos));
            let progress = if lane_then == lane {
                progress.max(ev.pos)
            } else {
                ev.pos
            } + desired * dt;
            let lv = self.veh(l);
            if progress < lv.pos {
                self.rescue_progress.insert(e, (lane, progress));
                continue;
            }
            let (et_len, lt_len) = (self.vtype(ev).length, self.vtype(lv).length);
            let (e_front, l_front) = (lv.pos, ev.pos - et_len + lt_len);
            let (e_gain, l_loss) = (e_front - ev.pos, lv.pos - l_front);
            if let Some(v) = self.vehs[e as usize].as_mut() {
                v.pos = e_front;
                v.route_length += e_gain;
            }
            if let Some(v) = self.vehs[l as usize].as_mut() {
                v.pos = l_front;
                v.route_length -= l_loss;
            }
            self.lanes[lane.idx()].swap(i - 1, i);
            self.rescue_progress.insert(e, (lane, e_front));
        }
    }

    /// A vehicle that drove past the parking area it was heading for (it
    /// could not reach its lane in time) goes round and comes back to it.
    fn come_back_for_missed_stops(&mut self) {
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
            if self.redirect_to_parking(vi, pa).is_err() {
                // Its next edge leads nowhere back (the network's edge): any other turn.
                let next = {
                    let v = self.veh(vi);
                    v.route.get(v.route_idx as usize + 1).copied()
                };
                let _ = self.redirect_to_parking_avoiding(vi, pa, next);
            }
        }
    }

    /// Vehicles held at the end of a lane that does not lead on along their
    /// route take a turn their lane offers and are routed on from there.
    fn reroute_missed_turns(&mut self) {
        if self.cfg.missed_turn_after <= 0.0 {
            return;
        }
        let mut missed = Vec::new();
        for &li in &self.occupied {
            let Some(&front) = self.lanes[li as usize].first() else {
                continue;
            };
            let v = self.veh(front);
            if v.standing >= self.cfg.missed_turn_after
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

    fn teleport_stuck(&mut self) {
        if self.cfg.time_to_teleport <= 0.0 {
            return;
        }
        let mut stuck = Vec::new();
        for list in self.occupied.iter().map(|li| &self.lanes[*li as usize]) {
            if let Some(&front) = list.first() {
                let v = self.veh(front);
                if v.standing >= self.cfg.time_to_teleport && (self.cfg.teleport_parking_bound || v.stop_pa.is_none()) {
                    stuck.push(front);
                }
            }
        }
        for vi in stuck {
            let (lane, route_idx) = {
                let v = self.veh(vi);
                (v.lane, v.route_idx as usize)
            };
            let cause = self.hold_cause(self.veh(vi));
            self.lanes[lane.idx()].retain(|x| *x != vi);
            self.totals.teleports += 1;
            // A stop on the edge it jumps away from is skipped.
            let left_edge = self.net.lane(lane).edge;
            let skip = self
                .veh(vi)
                .stop_pa
                .is_some_and(|pa| self.add.parking_areas[pa].edge == left_edge);
            if skip {
                self.advance_stop(vi);
            }
            self.interval.teleports += 1;
            if let Some(v) = self.vehs[vi as usize].as_mut() {
                v.teleports += 1;
            }
            // Like SUMO: jump along the route to the first edge with room at
            // its start; past the end of the route the vehicle arrives.
            let internal = self.is_internal(lane);
            let first = if internal { route_idx } else { route_idx + 1 };
            let need = self.vtype(self.veh(vi)).length + self.vtype(self.veh(vi)).min_gap;
            let route = self.veh(vi).route.clone();
            let landing = route.iter().enumerate().skip(first).find_map(|(i, e)| {
                let best = self
                    .net
                    .edge(*e)
                    .lanes
                    .iter()
                    .copied()
                    .filter(|l| self.net.lane(*l).allows(&self.vtype(self.veh(vi)).vclass))
                    .max_by(|a, b| self.room(*a).total_cmp(&self.room(*b)))?;
                (self.room(best) > need).then_some((i, best))
            });
            self.teleport_log.push(TeleportEvent {
                time: self.time,
                vehicle: self.demand.vehicles[self.veh(vi).spec as usize].id.clone(),
                lane: self.net.lane(lane).id.clone(),
                cause,
                continued: landing.is_some(),
            });
            match landing {
                Some((i, l)) => {
                    let skipped: f64 = route[first..i]
                        .iter()
                        .filter_map(|e| self.net.edge(*e).lanes.first())
                        .map(|l| self.lane_len(*l))
                        .sum();
                    if let Some(v) = self.vehs[vi as usize].as_mut() {
                        v.lane = l;
                        v.pos = 0.0;
                        v.speed = 0.0;
                        v.standing = 0.0;
                        v.route_idx = i as u32;
                        v.route_length += skipped;
                    }
                    self.lanes[l.idx()].push(vi);
                    self.touched.push(l.0);
                }
                None => self.arrive(vi),
            }
        }
    }

    /// Whether a vehicle entering the junction now will find room on its
    /// target lane: room there already, or a last vehicle driving away.
    fn can_leave(&self, target: LaneId, t: &VType) -> bool {
        if self.cfg.zipper_merges {
            let left = self.room_left(target);
            if left < t.length + t.min_gap {
                return left >= self.room(target)
                    && self.lanes[target.idx()]
                        .last()
                        .is_some_and(|l| self.veh(*l).speed > 2.0);
            }
            return true;
        }
        if self.room(target) >= t.length + t.min_gap {
            return true;
        }
        self.lanes[target.idx()]
            .last()
            .is_some_and(|l| self.veh(*l).speed > 2.0)
    }

    /// Free space at the start of a lane, m.
    fn room(&self, lane: LaneId) -> f64 {
        match self.lanes[lane.idx()].last() {
            Some(&last) => {
                let v = self.veh(last);
                v.pos - self.vtype(v).length
            }
            None => self.lane_len(lane),
        }
    }

    fn advance_stop(&mut self, vi: u32) {
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
    fn handle_stops(&mut self) {
        let mut arrived: Vec<(u32, usize)> = Vec::new();
        for (pa, p) in self.add.parking_areas.iter().enumerate() {
            for &vi in &self.lanes[p.lane.idx()] {
                let v = self.veh(vi);
                if v.stop_pa == Some(pa) && v.pos >= self.stop_position(pa) - 1.0 && v.speed < 0.5 {
                    arrived.push((vi, pa));
                }
            }
        }
        let now = self.time + self.cfg.step_length;
        for (vi, pa) in arrived {
            let p = self.add.parking_areas[pa].clone();
            if self.occupancy[pa] < p.capacity {
                if now < self.gate_free[pa].0 {
                    continue; // the entry gate is busy with the car before
                }
                self.gate_free[pa].0 = now + p.entry_service;
                self.lanes[p.lane.idx()].retain(|x| *x != vi);
                self.occupancy[pa] += 1;
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
                    if let Some(log) = self.parking_events.as_mut() {
                        log.push(ParkingEvent {
                            time: now,
                            vehicle: v.spec as usize,
                            area: pa,
                            parked: true,
                        });
                    }
                }
                self.parked.insert(((leave * 1000.0).round() as i64, vi));
            } else if let Some(alt) = self.choose_alternative(vi, pa) {
                self.reroute_to(vi, alt);
            }
        }
    }

    /// The alternative parking area with room that is nearest by route, if a
    /// rerouter offers one for this full area.
    fn choose_alternative(&self, vi: u32, full: usize) -> Option<usize> {
        self.choose_alternative_from(vi, full, self.add.parking_areas[full].edge)
    }

    /// As `choose_alternative`, for a vehicle on `from` (a rerouter's edge).
    fn choose_alternative_from(&self, vi: u32, full: usize, from: EdgeId) -> Option<usize> {
        let router = self.router.as_ref()?;
        let v = self.veh(vi);
        let vclass = &self.vtype(v).vclass;
        let mut best: Option<(f64, usize)> = None;
        for alt in self.add.alternatives(from, self.time, full) {
            let a = alt.parking_area;
            let q = &self.add.parking_areas[a];
            if a == full || self.occupancy[a] >= q.capacity || (q.edge == from && q.end_pos <= v.pos) {
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

    fn reroute_to(&mut self, vi: u32, alt: usize) {
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
    fn unpark(&mut self) {
        let now_ms = ((self.time + self.cfg.step_length) * 1000.0).round() as i64;
        let due: Vec<(i64, u32)> = self.parked.iter().take_while(|(t, _)| *t <= now_ms).copied().collect();
        let now = self.time + self.cfg.step_length;
        for (t, vi) in due {
            let Some(pa) = self.veh(vi).stop_pa else { continue };
            let p = self.add.parking_areas[pa].clone();
            if now < self.gate_free[pa].1 {
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
            self.parked.remove(&(t, vi));
            self.gate_free[pa].1 = now + p.exit_service;
            self.occupancy[pa] -= 1;
            self.lanes[p.lane.idx()].insert(at, vi);
            self.touched.push(p.lane.0);
            if let Some(v) = self.vehs[vi as usize].as_mut() {
                v.lane = p.lane;
                v.pos = reentry;
                v.speed = 0.0;
                v.standing = 0.0;
                v.stop_time += now - v.parked_at;
                if let Some(log) = self.parking_events.as_mut() {
                    log.push(ParkingEvent {
                        time: now,
                        vehicle: v.spec as usize,
                        area: pa,
                        parked: false,
                    });
                }
            }
            self.advance_stop(vi);
        }
    }

    fn arrive(&mut self, vi: u32) {
        let Some(v) = self.vehs[vi as usize].take() else { return };
        if !self.emergency.is_empty() {
            self.emergency.retain(|e| *e != vi);
        }
        self.free_slots.push(vi);
        self.totals.running -= 1;
        self.totals.arrived += 1;
        let spec = &self.demand.vehicles[v.spec as usize];
        let arrival = self.time + self.cfg.step_length;
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
        self.interval.arrived += 1;
        self.interval.sum_duration += trip.duration;
        self.interval.sum_waiting += trip.waiting_time;
        self.interval.sum_time_loss += trip.time_loss;
        self.trips.push(trip);
    }

    /// Moves vehicles whose departure time has come into their edge's queue.
    fn release_due(&mut self) {
        let horizon = self.time + self.cfg.step_length;
        while let Some(spec) = self.demand.vehicles.get(self.next_spec) {
            if spec.depart >= horizon - 1e-9 {
                break;
            }
            if self.cancelled.remove(&self.next_spec) {
                self.totals.cancelled += 1;
                self.next_spec += 1;
                continue;
            }
            let e = spec.route[0];
            if self.pending[e.idx()].is_empty() {
                self.pending_edges.push(e);
            }
            self.pending[e.idx()].push_back(self.next_spec as u32);
            self.totals.waiting_to_insert += 1;
            self.next_spec += 1;
        }
    }

    fn insert(&mut self) {
        let edges = std::mem::take(&mut self.pending_edges);
        let mut still = Vec::with_capacity(edges.len());
        let mut blocked: Vec<LaneId> = Vec::new();
        for e in edges {
            blocked.clear();
            let lanes = self.net.edge(e).lanes.len();
            let mut k = 0;
            while let Some(&si) = self.pending[e.idx()].get(k) {
                match self.try_insert(si, &blocked) {
                    Ok(()) => {
                        self.pending[e.idx()].remove(k);
                        self.totals.waiting_to_insert -= 1;
                    }
                    Err(lane) => {
                        if !self.cfg.eager_insert {
                            break;
                        }
                        blocked.extend(lane);
                        if blocked.len() >= lanes {
                            break;
                        }
                        k += 1;
                    }
                }
            }
            if !self.pending[e.idx()].is_empty() {
                still.push(e);
            }
        }
        self.pending_edges = still;
    }

    /// Inserts a vehicle, or says which lane it waits for (`blocked`: lanes
    /// already found full this step, where it may not go before the vehicles
    /// waiting for them).
    fn try_insert(&mut self, si: u32, blocked: &[LaneId]) -> Result<(), Option<LaneId>> {
        let spec = &self.demand.vehicles[si as usize];
        let t = &self.demand.vtypes[spec.vtype];
        let edge = spec.route[0];
        let lanes: Vec<LaneId> = self
            .net
            .edge(edge)
            .lanes
            .iter()
            .copied()
            .filter(|l| self.net.lane(*l).allows(&t.vclass))
            .collect();
        if lanes.is_empty() {
            return Err(None);
        }
        let next = spec.route.get(1).copied();
        let leads_on = |l: &LaneId| next.is_none_or(|n| self.links[l.idx()].iter().any(|k| k.to_edge == n));
        let lane = match spec.depart_lane {
            DepartLane::First => Some(lanes[0]),
            DepartLane::Index(i) => lanes.iter().copied().find(|l| self.net.lane(*l).index == i),
            DepartLane::Random => {
                Some(lanes[(rng::draw(self.cfg.seed, si as u64, u64::MAX) * lanes.len() as f64) as usize % lanes.len()])
            }
            DepartLane::Free => lanes
                .iter()
                .copied()
                .max_by(|a, b| self.room(*a).total_cmp(&self.room(*b))),
            DepartLane::Best => {
                let mut good: Vec<LaneId> = lanes.iter().copied().filter(leads_on).collect();
                // With a look-ahead, the lanes from which the route goes on furthest.
                if self.cfg.lane_lookahead_edges > 1 && good.len() > 1 {
                    let reach: Vec<usize> = good.iter().map(|l| self.route_reach(&spec.route, 0, *l)).collect();
                    let best = reach.iter().copied().max().unwrap_or(0);
                    good = good
                        .into_iter()
                        .zip(reach)
                        .filter(|(_, r)| *r == best)
                        .map(|(l, _)| l)
                        .collect();
                }
                let pool = if good.is_empty() { &lanes } else { &good };
                let open: Vec<LaneId> = pool.iter().copied().filter(|l| !blocked.contains(l)).collect();
                if open.is_empty() {
                    return Err(None);
                }
                open.into_iter().max_by(|a, b| self.room(*a).total_cmp(&self.room(*b)))
            }
        };
        let Some(lane) = lane else { return Err(None) };
        if blocked.contains(&lane) {
            return Err(None);
        }
        let lane_speed = self.net.lane(lane).speed;
        let vmax = (lane_speed * t.speed_factor).min(t.max_speed);
        let speed = match spec.depart_speed {
            DepartSpeed::Zero => 0.0,
            DepartSpeed::Max | DepartSpeed::Desired => vmax,
            DepartSpeed::Value(v) => v.min(vmax),
        };
        let pos = (spec.depart_pos + t.length).min(self.lane_len(lane));
        // Room: the last vehicle must be far enough ahead to brake behind it.
        if let Some(&last) = self.lanes[lane.idx()].last() {
            let l = self.veh(last);
            let gap = l.pos - self.vtype(l).length - pos - t.min_gap;
            if gap < 0.0 || krauss_safe(gap, l.speed, t) < speed {
                return Err(Some(lane));
            }
        }
        let v = Veh {
            spec: si,
            vtype: spec.vtype as u32,
            route: spec.route.clone(),
            route_idx: 0,
            lane,
            pos,
            speed,
            depart: spec.depart,
            inserted_at: self.time + self.cfg.step_length,
            waiting: 0.0,
            time_loss: 0.0,
            route_length: pos - t.length,
            standing: 0.0,
            teleports: 0,
            yielding: None,
            stop_idx: 0,
            stop_pa: spec.stops.first().map(|s| s.parking_area),
            reroutes: 0,
            stop_time: 0.0,
            parked_at: 0.0,
        };
        let vi = match self.free_slots.pop() {
            Some(i) => {
                self.vehs[i as usize] = Some(v);
                i
            }
            None => {
                self.vehs.push(Some(v));
                (self.vehs.len() - 1) as u32
            }
        };
        self.lanes[lane.idx()].push(vi);
        self.touched.push(lane.0);
        if t.vclass == "emergency" {
            self.emergency.push(vi);
        }
        self.totals.running += 1;
        self.totals.inserted += 1;
        self.interval.inserted += 1;
        Ok(())
    }

    /// Checks the physical invariants (for tests): ordered lanes, no overlaps,
    /// speeds within limits, vehicles conserved. Returns the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut on_lanes = 0;
        for (li, list) in self.lanes.iter().enumerate() {
            let lane = &self.net.lanes[li];
            for w in list.windows(2) {
                let (a, b) = (self.veh(w[0]), self.veh(w[1]));
                if a.pos < b.pos {
                    return Err(format!("lane {} out of order at t={}", lane.id, self.time));
                }
                if a.pos - self.vtype(a).length < b.pos - 1e-6 {
                    return Err(format!(
                        "overlap on lane {} at t={}: {} and {}",
                        lane.id, self.time, a.pos, b.pos
                    ));
                }
            }
            for &vi in list {
                let v = self.veh(vi);
                let t = self.vtype(v);
                let prev_lane_speed = self.net.lanes.iter().map(|l| l.speed).fold(0.0, f64::max);
                if v.speed < 0.0 || v.speed > t.max_speed.min(prev_lane_speed * t.speed_factor) + 1e-6 {
                    return Err(format!("speed {} out of range on {}", v.speed, lane.id));
                }
            }
            on_lanes += list.len();
        }
        if on_lanes + self.parked.len() != self.totals.running {
            return Err(format!(
                "{} vehicles on lanes and {} parked, {} running",
                on_lanes,
                self.parked.len(),
                self.totals.running
            ));
        }
        for (pa, p) in self.add.parking_areas.iter().enumerate() {
            if self.occupancy[pa] > p.capacity {
                return Err(format!(
                    "parking area {} holds {} of {}",
                    p.id, self.occupancy[pa], p.capacity
                ));
            }
        }
        let t = &self.totals;
        let not_yet = self.demand.vehicles.len() - self.next_spec;
        if t.loaded != t.arrived + t.running + t.waiting_to_insert + t.cancelled + not_yet {
            return Err(format!("vehicles not conserved: {t:?}, not yet due {not_yet}"));
        }
        Ok(())
    }
}

/// The Krauss safe speed: the fastest speed from which the follower can still
/// stop behind a leader braking at the follower's own deceleration.
fn krauss_safe(gap: f64, leader_speed: f64, t: &VType) -> f64 {
    if gap.is_infinite() {
        return f64::INFINITY;
    }
    let gap = gap.max(0.0);
    let bt = t.decel * t.tau;
    -bt + (bt * bt + leader_speed * leader_speed + 2.0 * t.decel * gap).sqrt()
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
