//! The ambulance the corridor and any SUMO network can dispatch: its type,
//! its trip, and signal priority for it over any set of controllers.

use std::sync::Arc;

use citybrain_control::Priority;
use citybrain_net::{EdgeId, Network};
use citybrain_sim::demand::{DepartLane, DepartSpeed};
use citybrain_sim::signals::{Controllers, SignalController};
use citybrain_sim::{Demand, VType, VehicleSpec};

pub use crate::measure::AMBULANCE_ID;

/// The ambulance, if any, and whether the signals give it priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambulance {
    None,
    WithoutPriority,
    WithPriority,
}

/// On an urgent call an ambulance is not bound by the speed limit (PRC Road
/// Traffic Safety Law, art. 53): 1.3 × the limit, 65 km/h on 50 km/h roads.
pub const SPEED_FACTOR: f64 = 1.3;

/// On an urgent call it may also pass a red light when that is safe (art.
/// 53): once no vehicle on a crossing link is in the junction or about to
/// enter it, it crosses at no more than this speed, 20 km/h — slow enough to
/// stop for what it finds (an assumption; SUMO's bluelight device ignores
/// red lights at any speed).
pub const RED_CROSSING_SPEED_MPS: f64 = 5.56;

/// Its vehicle type. With or without signal priority it may cross on red
/// (`RED_CROSSING_SPEED_MPS`): the scenarios turn that on with the rescue lane.
pub fn vtype() -> VType {
    VType {
        id: "ambulance".into(),
        vclass: "emergency".into(),
        length: 6.5,
        sigma: 0.0,
        speed_factor: SPEED_FACTOR,
        ..VType::default()
    }
}

/// Adds the ambulance (type and trip) to a demand, after the vehicles
/// departing up to the same second (the engine inserts them in list order).
/// The demand must not have a vehicle called `ambulance` already.
pub fn dispatch(demand: &mut Demand, route: Arc<[EdgeId]>, depart: f64) {
    let vtype = demand.vtypes.len();
    demand.vtypes.push(self::vtype());
    let at = demand.vehicles.partition_point(|v| v.depart <= depart);
    demand.vehicles.insert(
        at,
        VehicleSpec {
            id: AMBULANCE_ID.into(),
            vtype,
            depart,
            route,
            depart_lane: DepartLane::Best,
            depart_speed: DepartSpeed::Max,
            depart_pos: 0.0,
            stops: Arc::new([]),
        },
    );
}

/// Its time along a route with nobody in the way, s (the edges' lengths at
/// its speed over their limits; junction interiors left out).
pub fn free_flow_s(net: &Network, route: &[EdgeId]) -> f64 {
    route
        .iter()
        .map(|&e| net.edge_length(e) / (net.edge_speed(e).max(1.0) * SPEED_FACTOR))
        .sum()
}

/// Every controller wrapped with emergency priority (`amber`: the transition
/// shown on links that lose their green, s).
pub fn with_priority(net: &Network, controllers: Controllers, amber: f64) -> Controllers {
    controllers
        .into_iter()
        .map(|(tls, c)| {
            (
                tls,
                Box::new(Priority::new(net, tls, c, amber)) as Box<dyn SignalController>,
            )
        })
        .collect()
}

/// The amber a network's programs show: their shortest phase with an amber
/// light (3 s if none has one), kept within 2–6 s.
pub fn network_amber(net: &Network) -> f64 {
    net.tls
        .iter()
        .flat_map(|l| l.phases.iter())
        .filter(|p| p.state.contains(['y', 'Y']))
        .map(|p| p.duration)
        .min_by(f64::total_cmp)
        .unwrap_or(3.0)
        .clamp(2.0, 6.0)
}
