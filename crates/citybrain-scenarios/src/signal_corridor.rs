//! The signal corridor: a 7 km arterial with 21 signalled intersections and
//! its cross streets at the evening peak, run under fixed-time plans
//! (Webster, as designed), actuated control or City Brain adaptive control,
//! optionally with an ambulance dispatched along the whole arterial.
//!
//! The network and the fixed-time plans come from
//! `scenarios/signal-corridor/generate.py` (netconvert + Webster); the demand
//! is drawn here, per seed, from the rates in `corridor.json`: Poisson
//! arrivals at every entry, shaped by the peak profile, destinations drawn
//! from the shares in the same file. Both files are embedded in the binary.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use citybrain_control::controllers_for;
use citybrain_net::{EdgeId, Network, TlLogic, TlsId};
use citybrain_sim::demand::{DepartLane, DepartSpeed};
use citybrain_sim::router::Router;
use citybrain_sim::signals::{fixed_time_from, Controllers, SignalController};
use citybrain_sim::{Behaviour, Demand, Sim, SimConfig, VType, VehicleSpec};
use serde::Deserialize;

pub use crate::ambulance::{Ambulance, SPEED_FACTOR as AMBULANCE_SPEED_FACTOR};
use crate::coordination::{coordinated_plans, max_bandwidth, Progression, Signal};
use crate::draw::{profile_at, Stream};
use crate::measure;
pub use crate::measure::{Outcome, Policy, AMBULANCE_ID};
use crate::published::PublishedDetectors;
use crate::{ambulance, ScenarioError};

const SPEC: &str = include_str!("../../../scenarios/signal-corridor/corridor.json");
const NET_GZ: &[u8] = include_bytes!("../../../scenarios/signal-corridor/corridor.net.xml.gz");

/// When the ambulance is dispatched (the middle of the peak), s.
pub const AMBULANCE_DEPART: f64 = 1800.0;

#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub arterial: Arterial,
    pub signals: Signals,
    pub coordination: CoordinationSpec,
    pub demand: DemandSpec,
    pub intersections: Vec<Intersection>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Arterial {
    pub lanes: u32,
    pub speed_mps: f64,
    pub spacing_m: Vec<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Signals {
    pub amber_s: f64,
    /// The longest cycle a plan may have, s.
    pub max_cycle_s: f64,
}

/// How the coordinated plans are drawn up (`coordination.rs`).
#[derive(Debug, Clone, Deserialize)]
pub struct CoordinationSpec {
    /// The speed the green wave is laid out for, m/s.
    pub progression_speed_mps: f64,
    /// The band search's resolution, s.
    pub search_step_s: f64,
    /// The common cycle, s: chosen by `citybrain scenario coordinate`
    /// (sources.md says how), at least the longest signal's own.
    pub common_cycle_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemandSpec {
    pub duration_s: f64,
    /// (time s, multiplier) points, linear in between.
    pub profile: Vec<(f64, f64)>,
    pub through_eastbound_veh_h: f64,
    pub through_westbound_veh_h: f64,
    pub from_terminal_to_each_cross_street_veh_h: f64,
    pub cross_share_straight_across: f64,
    /// Vehicles from a cross street that turn onto the arterial leave it
    /// after this many junctions (uniform, inclusive).
    pub cross_turning_travel_junctions: (u32, u32),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Intersection {
    pub cross_veh_h_per_approach: f64,
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub policy: Policy,
    pub seed: u64,
    pub ambulance: Ambulance,
    /// Multiplies every demand rate (1.0: the peak as specified).
    pub demand_scale: f64,
    /// Demand period, s (default: the spec's duration); vehicles already in
    /// the network still run to the end.
    pub duration: Option<f64>,
    /// The controllers read the queues published every this many seconds
    /// (as live mode does through the hub) instead of every step.
    pub detector_period_s: Option<f64>,
}

impl RunOptions {
    pub fn new(policy: Policy, seed: u64) -> Self {
        RunOptions {
            policy,
            seed,
            ambulance: Ambulance::None,
            demand_scale: 1.0,
            duration: None,
            detector_period_s: None,
        }
    }
}

/// The corridor: network and demand rates.
#[derive(Clone)]
pub struct Corridor {
    pub net: Arc<Network>,
    pub spec: Spec,
    router: Router,
    /// The edges whose queues count (the signals' approaches).
    approaches: Vec<EdgeId>,
    /// The coordinated plans, by signal, and the bands they give.
    coordinated: Vec<TlLogic>,
    pub progression: Progression,
}

impl Corridor {
    /// The embedded corridor.
    pub fn load() -> Result<Corridor, ScenarioError> {
        let spec: Spec = serde_json::from_str(SPEC).map_err(|e| ScenarioError::Data(format!("corridor.json: {e}")))?;
        let mut xml = String::new();
        flate2::read::GzDecoder::new(NET_GZ)
            .read_to_string(&mut xml)
            .map_err(|e| ScenarioError::Data(format!("corridor.net.xml.gz: {e}")))?;
        let net = citybrain_net::sumo::read_net_str("corridor.net.xml", &xml)
            .map_err(|e| ScenarioError::Data(e.to_string()))?;
        let (lo, hi) = spec.demand.cross_turning_travel_junctions;
        if lo == 0 || lo > hi {
            return Err(ScenarioError::Data(format!(
                "corridor.json: cross_turning_travel_junctions must be 1 <= from <= to, got [{lo}, {hi}]"
            )));
        }
        if spec.demand.profile.is_empty() || spec.demand.profile.iter().any(|p| p.1.is_nan() || p.1 < 0.0) {
            return Err(ScenarioError::Data(
                "corridor.json: the demand profile needs points with multipliers >= 0".into(),
            ));
        }
        if net.tls.len() != spec.intersections.len() {
            return Err(ScenarioError::Data(format!(
                "the network has {} signals, corridor.json describes {}",
                net.tls.len(),
                spec.intersections.len()
            )));
        }
        let approaches = measure::signal_approaches(&net);
        let router = Router::new(&net);
        let (coordinated, progression) = coordinate(&net, &spec, spec.coordination.common_cycle_s)?;
        Ok(Corridor {
            net: Arc::new(net),
            spec,
            router,
            approaches,
            coordinated,
            progression,
        })
    }

    /// The same corridor with coordinated plans for another common cycle and
    /// progression speed (for choosing them: `citybrain scenario coordinate`).
    pub fn with_coordination(mut self, cycle: f64, speed_mps: f64) -> Result<Corridor, ScenarioError> {
        self.spec.coordination.common_cycle_s = cycle;
        self.spec.coordination.progression_speed_mps = speed_mps;
        let (coordinated, progression) = coordinate(&self.net, &self.spec, cycle)?;
        self.coordinated = coordinated;
        self.progression = progression;
        Ok(self)
    }

    /// The embedded network file as SUMO XML (what `generate.py` wrote).
    pub fn net_xml(&self) -> Result<String, ScenarioError> {
        let mut xml = String::new();
        flate2::read::GzDecoder::new(NET_GZ)
            .read_to_string(&mut xml)
            .map_err(|e| ScenarioError::Data(format!("corridor.net.xml.gz: {e}")))?;
        Ok(xml)
    }

    /// The longest of the signals' own (Webster) cycles: the shortest common cycle.
    pub fn longest_own_cycle_s(&self) -> f64 {
        self.net.tls.iter().map(|t| t.cycle()).fold(0.0, f64::max)
    }

    fn edge(&self, name: &str) -> Result<EdgeId, ScenarioError> {
        self.net
            .edge_id(name)
            .ok_or_else(|| ScenarioError::Data(format!("the network has no edge '{name}'")))
    }

    fn signals(&self) -> usize {
        self.spec.intersections.len()
    }

    /// Free-flow time along the whole arterial at the ambulance's speed, s.
    pub fn ambulance_free_flow_s(&self) -> f64 {
        self.spec.arterial.spacing_m.iter().sum::<f64>() / (self.spec.arterial.speed_mps * AMBULANCE_SPEED_FACTOR)
    }

    /// Draws the demand for one seed.
    pub fn demand(&self, o: &RunOptions) -> Result<Demand, ScenarioError> {
        let d = &self.spec.demand;
        let n = self.signals();
        let duration = o.duration.unwrap_or(d.duration_s);
        let west_in = "e0".to_string();
        let west_out = "w0".to_string();
        let east_in = format!("w{n}");
        let east_out = format!("e{n}");
        let sides_out: Vec<String> = (1..=n).flat_map(|i| [format!("n{i}out"), format!("s{i}out")]).collect();
        // (origin edge, rate veh/h, destination chooser)
        let mut streams: Vec<(String, f64, Destinations)> = Vec::new();
        let per_side = d.from_terminal_to_each_cross_street_veh_h;
        for (origin, through, terminal) in [
            (&west_in, d.through_eastbound_veh_h, &east_out),
            (&east_in, d.through_westbound_veh_h, &west_out),
        ] {
            let side_total = per_side * sides_out.len() as f64;
            streams.push((
                origin.clone(),
                through + side_total,
                Destinations::Terminal {
                    terminal: terminal.clone(),
                    p_terminal: through / (through + side_total),
                    sides: sides_out.clone(),
                },
            ));
        }
        for i in 1..=n {
            let rate = self.spec.intersections[i - 1].cross_veh_h_per_approach;
            for (from, across) in [("n", "s"), ("s", "n")] {
                streams.push((
                    format!("{from}{i}in"),
                    rate,
                    Destinations::Cross {
                        at: i as u32,
                        across: format!("{across}{i}out"),
                    },
                ));
            }
        }
        let car = VType::default();
        let mut routes: HashMap<(String, String), Arc<[EdgeId]>> = HashMap::new();
        let mut vehicles = Vec::new();
        for (origin, rate, dest) in &streams {
            let rate = rate * o.demand_scale;
            if rate <= 0.0 {
                continue;
            }
            let mut draw = Stream::new(o.seed, origin);
            let peak = d.profile.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
            let mut t = 0.0;
            let mut k = 0;
            loop {
                // Poisson arrivals at the peak rate, thinned by the profile.
                t += -(1.0 - draw.uniform()).ln() * 3600.0 / (rate * peak);
                if t >= duration {
                    break;
                }
                if draw.uniform() * peak > profile_at(&d.profile, t) {
                    continue;
                }
                let to = dest.pick(&mut draw, d, n);
                let key = (origin.clone(), to.clone());
                let route = match routes.get(&key) {
                    Some(r) => r.clone(),
                    None => {
                        let (a, b) = (self.edge(origin)?, self.edge(&to)?);
                        let r: Arc<[EdgeId]> = self
                            .router
                            .shortest(&self.net, a, b, "passenger")
                            .ok_or_else(|| ScenarioError::Data(format!("no route from {origin} to {to}")))?
                            .into();
                        routes.insert(key, r.clone());
                        r
                    }
                };
                vehicles.push(VehicleSpec {
                    id: format!("{origin}.{k}"),
                    vtype: 0,
                    depart: t.floor(),
                    route,
                    depart_lane: DepartLane::Best,
                    depart_speed: DepartSpeed::Max,
                    depart_pos: 0.0,
                    stops: Arc::new([]),
                });
                k += 1;
            }
        }
        let mut demand = Demand {
            vtypes: vec![car],
            vehicles,
        };
        if o.ambulance != Ambulance::None {
            let route: Arc<[EdgeId]> = (0..=n)
                .map(|k| self.edge(&format!("e{k}")))
                .collect::<Result<Vec<_>, _>>()?
                .into();
            ambulance::dispatch(&mut demand, route, AMBULANCE_DEPART.min(duration / 2.0).floor());
        }
        // Sorted by departure, ties by id: the engine inserts in this order.
        demand
            .vehicles
            .sort_by(|a, b| a.depart.total_cmp(&b.depart).then_with(|| a.id.cmp(&b.id)));
        Ok(demand)
    }

    /// The controllers for a policy, wrapped with emergency priority if asked.
    pub fn controllers(&self, o: &RunOptions) -> Result<Controllers, ScenarioError> {
        let base = if o.policy == Policy::Coordinated {
            fixed_time_from(&self.coordinated)
        } else {
            controllers_for(&self.net, o.policy.engine_kind())?
        };
        if o.ambulance != Ambulance::WithPriority {
            return Ok(base);
        }
        Ok(ambulance::with_priority(&self.net, base, self.spec.signals.amber_s))
    }

    /// Builds the simulation of one run (for callers that step it themselves).
    pub fn sim(&self, o: &RunOptions) -> Result<Sim, ScenarioError> {
        self.sim_with(o, |_, c| c)
    }

    /// Like `sim`, with each signal's controller passed through `wrap`
    /// (live mode feeds them detector data read back from the hub).
    pub fn sim_with(
        &self,
        o: &RunOptions,
        wrap: impl Fn(TlsId, Box<dyn SignalController>) -> Box<dyn SignalController>,
    ) -> Result<Sim, ScenarioError> {
        let cfg = SimConfig {
            seed: o.seed,
            behaviour: Behaviour {
                // Traffic ahead of the ambulance opens a rescue lane (PRC Road
                // Traffic Safety Law, art. 53: others must give way to it).
                rescue_lane: true,
                // ...and it may pass a red light when the junction is clear.
                emergency_red_speed: Some(ambulance::RED_CROSSING_SPEED_MPS),
                ..Behaviour::default()
            },
            ..SimConfig::default()
        };
        let controllers = self.controllers(o)?.into_iter().map(|(t, c)| (t, wrap(t, c))).collect();
        Ok(Sim::new(self.net.clone(), self.demand(o)?, cfg, controllers))
    }

    /// The signals' approach edges (where queues are measured).
    pub fn approaches(&self) -> &[EdgeId] {
        &self.approaches
    }

    /// Runs to the end; `each_step` sees the simulation after every step.
    pub fn run(&self, o: &RunOptions, mut each_step: impl FnMut(&Sim)) -> Result<Outcome, ScenarioError> {
        let mut published = o
            .detector_period_s
            .map(|p| PublishedDetectors::new(&self.net, p))
            .transpose()?;
        let sim = self.sim_with(o, |_, c| match &published {
            Some(p) => p.feed(c),
            None => c,
        })?;
        let duration = o.duration.unwrap_or(self.spec.demand.duration_s);
        Ok(measure::run(
            sim,
            &self.net,
            &self.approaches,
            o.policy,
            o.seed,
            duration,
            |sim| {
                if let Some(p) = published.as_mut() {
                    p.observe(sim);
                }
                each_step(sim)
            },
        ))
    }
}

/// The coordinated plans (by signal index) and their bands: the signals
/// `J1`..`Jn` in order along the arterial, phase 0 of each its through green
/// (both directions; `generate.py` writes it so), the outbound direction
/// eastbound, `k` the westbound through volume over the eastbound.
fn coordinate(net: &Network, spec: &Spec, cycle: f64) -> Result<(Vec<TlLogic>, Progression), ScenarioError> {
    let n = spec.intersections.len();
    let mut order = Vec::with_capacity(n);
    for i in 1..=n {
        let id = format!("J{i}");
        let t = net
            .tls
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| ScenarioError::Data(format!("the network has no signal '{id}'")))?;
        order.push(t);
    }
    let c = &spec.coordination;
    if c.progression_speed_mps <= 0.0 || c.search_step_s <= 0.0 {
        return Err(ScenarioError::Data(
            "corridor.json: coordination needs progression_speed_mps and search_step_s > 0".into(),
        ));
    }
    let d = &spec.demand;
    let k = d.through_westbound_veh_h / d.through_eastbound_veh_h.max(1.0);
    let shortest = net.tls.iter().map(|t| t.cycle()).fold(0.0, f64::max);
    if cycle + 1e-9 < shortest {
        return Err(ScenarioError::Data(format!(
            "corridor.json: common_cycle_s {cycle} is shorter than the longest signal's own cycle ({shortest} s)"
        )));
    }
    let mut x = 0.0;
    let signals: Vec<Signal> = order
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            x += if i == 0 { 0.0 } else { spec.arterial.spacing_m[i] };
            let logic = &net.tls[t];
            // The signal's extra time in the common cycle goes to the arterial.
            let green = logic.phases.first().map_or(0.0, |p| p.duration) + cycle - logic.cycle();
            Signal {
                position_m: x,
                green_s: green,
            }
        })
        .collect();
    let p = max_bandwidth(&signals, cycle, c.progression_speed_mps, k, c.search_step_s);
    let in_order: Vec<TlLogic> = order.iter().map(|&t| net.tls[t].clone()).collect();
    let plans = coordinated_plans(&in_order, 0, &p);
    let mut by_index = net.tls.clone();
    for (plan, &t) in plans.into_iter().zip(&order) {
        by_index[t] = plan;
    }
    Ok((by_index, p))
}

/// Where the vehicles of one entry go.
enum Destinations {
    /// From an end of the arterial: the other end, or any cross street.
    Terminal {
        terminal: String,
        p_terminal: f64,
        sides: Vec<String>,
    },
    /// From a cross street: straight across, or onto the arterial for a few junctions.
    Cross { at: u32, across: String },
}

impl Destinations {
    fn pick(&self, draw: &mut Stream, d: &DemandSpec, n: usize) -> String {
        match self {
            Destinations::Terminal {
                terminal,
                p_terminal,
                sides,
            } => {
                if draw.uniform() < *p_terminal {
                    terminal.clone()
                } else {
                    sides[((draw.uniform() * sides.len() as f64) as usize).min(sides.len() - 1)].clone()
                }
            }
            Destinations::Cross { at, across } => {
                if draw.uniform() < d.cross_share_straight_across {
                    return across.clone();
                }
                let (lo, hi) = d.cross_turning_travel_junctions;
                let hops = lo + ((draw.uniform() * (hi - lo + 1) as f64) as u32).min(hi - lo);
                let east = draw.uniform() < 0.5;
                let to = if east {
                    *at as i64 + hops as i64
                } else {
                    *at as i64 - hops as i64
                };
                if to < 1 {
                    "w0".into()
                } else if to > n as i64 {
                    format!("e{n}")
                } else if draw.uniform() < 0.5 {
                    format!("n{to}out")
                } else {
                    format!("s{to}out")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_name() {
        assert_eq!("citybrain".parse::<Policy>().unwrap(), Policy::CityBrain);
        assert!("magic".parse::<Policy>().is_err());
    }
}
