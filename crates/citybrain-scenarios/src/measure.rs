//! What every signal scenario measures, and the policies it compares.

use std::str::FromStr;

use citybrain_net::{EdgeId, Network};
use citybrain_sim::{Sim, TripInfo};
use serde::Serialize;

use crate::ScenarioError;

/// The vehicle the ambulance figures follow (left out of the traffic figures).
pub const AMBULANCE_ID: &str = "ambulance";

/// How the signals are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The Webster plans as designed (the network's `tlLogic`s): each
    /// signal its own cycle, every offset 0 — no green wave.
    Fixed,
    /// The plans a city runs on an arterial: one common cycle and offsets
    /// for a green wave both ways (maximal bandwidth, `coordination.rs`).
    /// The corridor's only: other networks have no arterial to lay it on.
    Coordinated,
    /// Vehicle-actuated: greens extended while vehicles wait, within bounds.
    Actuated,
    /// City Brain adaptive control: pressure-chosen greens held while they
    /// carry traffic, re-decided every second (`citybrain_control::Adaptive`).
    CityBrain,
}

impl Policy {
    pub const ALL: [Policy; 4] = [Policy::Fixed, Policy::Coordinated, Policy::Actuated, Policy::CityBrain];
    /// What runs on any SUMO network.
    pub const ANY_NETWORK: [Policy; 3] = [Policy::Fixed, Policy::Actuated, Policy::CityBrain];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Fixed => "fixed",
            Policy::Coordinated => "coordinated",
            Policy::Actuated => "actuated",
            Policy::CityBrain => "citybrain",
        }
    }

    /// The cabinet or City Brain controller kind (coordinated plans are
    /// fixed-time plans the scenario builds itself).
    pub fn engine_kind(self) -> &'static str {
        match self {
            Policy::Fixed | Policy::Coordinated => "fixed",
            Policy::Actuated => "actuated",
            Policy::CityBrain => "adaptive",
        }
    }
}

impl FromStr for Policy {
    type Err = ScenarioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ScenarioError::Policy(s.to_string()))
    }
}

/// The figures of one run (the ambulance excluded from the traffic figures).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: Policy,
    pub seed: u64,
    pub vehicles: usize,
    pub arrived: usize,
    pub teleports: usize,
    pub mean_travel_time_s: f64,
    pub mean_delay_s: f64,
    pub delay_index: f64,
    pub throughput_veh_per_h: f64,
    pub max_queue_veh: u32,
    /// Where (approach edge) and when the longest queue stood.
    pub max_queue_edge: String,
    pub max_queue_time_s: f64,
    pub ambulance_travel_time_s: Option<f64>,
}

/// The edges that lead into a signal (where queues are measured).
pub fn signal_approaches(net: &Network) -> Vec<EdgeId> {
    net.connections
        .iter()
        .filter(|c| c.tls.is_some())
        .map(|c| c.from)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Runs `sim` to the end and measures it: travel time, delay, delay index,
/// throughput over `duration` (the demand period), and the longest queue
/// standing on one approach edge. `each_step` sees the simulation after every step.
pub fn run(
    mut sim: Sim,
    net: &Network,
    approaches: &[EdgeId],
    policy: Policy,
    seed: u64,
    duration: f64,
    mut each_step: impl FnMut(&Sim),
) -> Outcome {
    let mut is_approach = vec![false; net.edges.len()];
    for e in approaches {
        is_approach[e.idx()] = true;
    }
    let mut trips: Vec<TripInfo> = Vec::new();
    let mut max_queue = (0u32, String::new(), 0.0);
    let mut per_edge = vec![0u32; net.edges.len()];
    while !sim.finished() {
        sim.step();
        let counts = sim.lane_counts();
        for (lane, _, standing) in &counts {
            let e = net.lane(*lane).edge;
            if is_approach[e.idx()] {
                per_edge[e.idx()] += *standing as u32;
            }
        }
        for (lane, _, _) in &counts {
            let e = net.lane(*lane).edge;
            if per_edge[e.idx()] > max_queue.0 {
                max_queue = (per_edge[e.idx()], net.edge(e).id.clone(), sim.time());
            }
            per_edge[e.idx()] = 0;
        }
        trips.extend(sim.take_trips());
        each_step(&sim);
    }
    sim.finish();
    trips.extend(sim.take_trips());
    outcome(
        policy,
        seed,
        &trips,
        sim.totals.teleports,
        sim.totals.loaded,
        max_queue,
        duration,
    )
}

fn outcome(
    policy: Policy,
    seed: u64,
    trips: &[TripInfo],
    teleports: usize,
    loaded: usize,
    max_queue: (u32, String, f64),
    duration: f64,
) -> Outcome {
    let ambulance = trips.iter().find(|t| t.id == AMBULANCE_ID).map(|t| t.duration);
    let traffic: Vec<&TripInfo> = trips.iter().filter(|t| t.id != AMBULANCE_ID).collect();
    let n = traffic.len().max(1) as f64;
    let mean = |f: &dyn Fn(&TripInfo) -> f64| traffic.iter().map(|t| f(t)).sum::<f64>() / n;
    let within = traffic.iter().filter(|t| t.arrival <= duration).count();
    Outcome {
        policy,
        seed,
        vehicles: loaded - usize::from(ambulance.is_some()),
        arrived: traffic.len(),
        teleports,
        mean_travel_time_s: mean(&|t| t.duration),
        mean_delay_s: mean(&|t| t.time_loss),
        delay_index: mean(&|t| t.duration / (t.duration - t.time_loss).max(1.0)),
        throughput_veh_per_h: within as f64 * 3600.0 / duration,
        max_queue_veh: max_queue.0,
        max_queue_edge: max_queue.1,
        max_queue_time_s: max_queue.2,
        ambulance_travel_time_s: ambulance,
    }
}
