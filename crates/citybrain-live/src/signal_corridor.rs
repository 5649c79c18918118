//! The signal corridor live. The City Brain controller reads the queue
//! lengths back from the hub; each signal cabinet's gap-out stays on its own
//! stop-line loops (see `citybrain_control::Central`).
//!
//! Published (default tenant), every [`PUBLISH_EVERY_S`] simulated seconds:
//! - `TrafficFlowObserved` per signal approach lane
//!   (`urn:ngsi-ld:TrafficFlowObserved:signal-corridor:<lane>`): `intensity`
//!   (vehicles on the lane), `queueLength` (vehicles standing; an extension
//!   attribute), `vehiclesNearStopLine` (in the 40 m detection zone;
//!   extension), `congested`, `laneId`, `refRoadSegment`, `dateObserved`
//!   (the server's clock), `simulatedTime` (s since the scenario started);
//!   `averageVehicleSpeed` (km/h of the vehicles on the lane; the lane's
//!   limit when it is empty, i.e. free flow);
//! - `TrafficSignal` per intersection (`urn:ngsi-ld:TrafficSignal:signal-corridor:<id>`):
//!   `state` (the link states as SUMO letters), `policy`, `dateObserved`;
//! - the ambulance run: every run dispatches an ambulance along the whole
//!   arterial at 30 min, with signal priority; a second twin runs the same
//!   demand beside it with the same policy and no priority (its controllers
//!   read their own detectors) so the cockpit can show what priority saves.
//!   `Vehicle` `urn:ngsi-ld:Vehicle:signal-corridor:ambulance:<priority|no-priority>`:
//!   `vehicleType` (`ambulance`), `name`, `signalPriority`, `tripStatus`
//!   (`waiting`, `en-route`, `arrived`), `tripTime` (s since dispatch, final
//!   once arrived), `speed` (km/h), `networkPosition` (`[x, y]` in the
//!   corridor's own metres: the corridor has no geographic reference).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use citybrain_control::{Fed, SharedDetectors};
use citybrain_hub::Hub;
use citybrain_net::{LaneId, TlsId};
use citybrain_ngsild::model::{main_value, Entity};
use citybrain_scenarios::signal_corridor::{Ambulance, Corridor, Policy, RunOptions, AMBULANCE_ID};
use citybrain_sim::signals::LinkSignal;
use citybrain_sim::Sim;
use serde_json::{json, Value};

use crate::bridge::{self, Day, Pacing, Publication, Scenario, Sensors};
use crate::{LiveError, DEFAULT_CONTEXT, PUBLISH_EVERY_S};

const PREFIX: &str = "urn:ngsi-ld:TrafficFlowObserved:signal-corridor:";

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub policy: Policy,
    pub speedup: f64,
    pub seed: u64,
    /// Simulated time the first day opens at (run ahead to it), s.
    pub start_at_s: Option<f64>,
}

/// Starts the corridor in live mode; it runs until the process ends, the
/// scenario restarting (next seed) when its demand is done.
pub fn start(hub: Hub, opts: LiveOptions) -> Result<(), LiveError> {
    let corridor = Arc::new(Corridor::load()?);
    let lanes: HashMap<String, LaneId> = corridor
        .net
        .lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id.clone(), LaneId(i as u32)))
        .collect();
    let feed: SharedDetectors = Arc::new(RwLock::new(vec![0; lanes.len()]));
    let approach_lanes = corridor
        .approaches()
        .iter()
        .flat_map(|e| corridor.net.edge(*e).lanes.clone())
        .collect();
    let twin = CorridorTwin {
        corridor,
        policy: opts.policy,
        feed: feed.clone(),
        approach_lanes,
    };
    let pacing = Pacing {
        period_s: PUBLISH_EVERY_S,
        speedup: opts.speedup,
        seed: opts.seed,
        start_at_s: opts.start_at_s,
    };
    let sensors = CorridorSensors {
        policy: opts.policy,
        lanes,
    };
    bridge::start(hub, "signal-corridor", pacing, twin, sensors, feed)?;
    Ok(())
}

struct CorridorTwin {
    corridor: Arc<Corridor>,
    policy: Policy,
    /// The queues as read back from the hub: the City Brain controllers' input.
    feed: SharedDetectors,
    approach_lanes: Vec<LaneId>,
}

/// One publication: per approach lane, per signal, the two ambulances.
pub struct Snapshot {
    time: f64,
    lanes: Vec<LaneReading>,
    /// (signal id, link states as SUMO letters)
    signals: Vec<(String, String)>,
    /// With priority, without.
    ambulances: [AmbulanceTrip; 2],
}

struct LaneReading {
    lane: String,
    edge: String,
    on_lane: u32,
    standing: u32,
    near_stop_line: u32,
    /// m/s
    mean_speed: f64,
}

/// A day of the corridor: the live twin with priority, and beside it the
/// same demand without priority.
struct CorridorDay<'a> {
    twin: &'a CorridorTwin,
    sim: Sim,
    without: Sim,
    trips: [AmbulanceTrip; 2],
}

impl Scenario for CorridorTwin {
    type Snapshot = Snapshot;
    type Day<'a> = CorridorDay<'a>;

    fn day(&self, seed: u64) -> Result<CorridorDay<'_>, String> {
        let mut o = RunOptions::new(self.policy, seed);
        o.ambulance = Ambulance::WithPriority;
        // Only the adaptive policy reads detectors; it reads them from the hub.
        let sim = self.corridor.sim_with(&o, |_, c| {
            if self.policy == Policy::CityBrain {
                Box::new(Fed::new(c, self.feed.clone()))
            } else {
                c
            }
        });
        // The same day without priority, for comparison (its own detectors).
        o.ambulance = Ambulance::WithoutPriority;
        let without = self.corridor.sim(&o);
        Ok(CorridorDay {
            twin: self,
            sim: sim.map_err(|e| e.to_string())?,
            without: without.map_err(|e| e.to_string())?,
            trips: [AmbulanceTrip::Waiting; 2],
        })
    }
}

impl Day for CorridorDay<'_> {
    type Snapshot = Snapshot;

    fn time(&self) -> f64 {
        self.sim.time()
    }

    fn finished(&self) -> bool {
        self.sim.finished()
    }

    fn step(&mut self) {
        self.sim.step();
        if !self.without.finished() {
            self.without.step();
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        self.trips = [
            self.trips[0].observe(&mut self.sim),
            self.trips[1].observe(&mut self.without),
        ];
        let net = &self.twin.corridor.net;
        let mut per_lane: HashMap<LaneId, (u32, f64)> = HashMap::new();
        for v in self.sim.vehicles_on_road() {
            let c = per_lane.entry(v.lane).or_default();
            c.0 += 1;
            c.1 += v.speed;
        }
        let (queue, near) = self.sim.detector_readings();
        let lanes = self
            .twin
            .approach_lanes
            .iter()
            .map(|l| {
                let lane = net.lane(*l);
                let (n, speed_sum) = per_lane.get(l).copied().unwrap_or((0, 0.0));
                LaneReading {
                    lane: lane.id.clone(),
                    edge: net.edge(lane.edge).id.clone(),
                    on_lane: n,
                    standing: queue[l.idx()],
                    near_stop_line: near[l.idx()],
                    mean_speed: if n > 0 { speed_sum / n as f64 } else { lane.speed },
                }
            })
            .collect();
        let signals = net
            .tls
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let state = self
                    .sim
                    .signal_state(TlsId(i as u32))
                    .iter()
                    .map(|s| match s {
                        LinkSignal::Go => 'G',
                        LinkSignal::Yield => 'g',
                        LinkSignal::Amber => 'y',
                        LinkSignal::Stop => 'r',
                    })
                    .collect();
                (t.id.clone(), state)
            })
            .collect();
        Snapshot {
            time: self.sim.time(),
            lanes,
            signals,
            ambulances: self.trips,
        }
    }
}

/// Where one run's ambulance is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AmbulanceTrip {
    Waiting,
    EnRoute { since: f64, speed: f64, xy: (f64, f64) },
    Arrived { trip_s: f64 },
}

impl AmbulanceTrip {
    /// Follows the ambulance in `sim`: its trip record once it arrived,
    /// else its place on the road.
    fn observe(self, sim: &mut Sim) -> AmbulanceTrip {
        if matches!(self, AmbulanceTrip::Arrived { .. }) {
            return self;
        }
        if let Some(t) = sim.take_trips().into_iter().find(|t| t.id == AMBULANCE_ID) {
            return AmbulanceTrip::Arrived { trip_s: t.duration };
        }
        let net = sim.network().clone();
        let on_road = sim
            .vehicles_on_road()
            .find(|v| sim.demand().vehicle(v.vehicle).id == AMBULANCE_ID)
            .map(|v| (v.speed, net.lane(v.lane).point_at(v.pos)));
        match (self, on_road) {
            (AmbulanceTrip::Waiting, Some((speed, Some(xy)))) => AmbulanceTrip::EnRoute {
                since: sim.time(),
                speed,
                xy,
            },
            (AmbulanceTrip::EnRoute { since, .. }, Some((speed, Some(xy)))) => {
                AmbulanceTrip::EnRoute { since, speed, xy }
            }
            (other, _) => other,
        }
    }
}

struct CorridorSensors {
    policy: Policy,
    lanes: HashMap<String, LaneId>,
}

impl Sensors for CorridorSensors {
    type Snapshot = Snapshot;
    type View = Vec<u32>;

    /// The detectors and signals first (merged), then the ambulances, each
    /// replaced whole so that a marker goes when its vehicle arrives.
    fn entities(&self, s: &Snapshot, now: DateTime<Utc>) -> Vec<Publication> {
        let (vehicles, sensors) = entities(s, self.policy, now)
            .into_iter()
            .partition(|e| e["type"] == "Vehicle");
        vec![
            Publication {
                entities: sensors,
                replace: false,
            },
            Publication {
                entities: vehicles,
                replace: true,
            },
        ]
    }

    fn read_type(&self) -> String {
        format!("{DEFAULT_CONTEXT}TrafficFlowObserved")
    }

    /// Every approach's `queueLength` as the hub holds it (0 where none).
    fn read(&self, flows: Vec<Entity>) -> Vec<u32> {
        let mut queue = vec![0u32; self.lanes.len()];
        let attr = format!("{DEFAULT_CONTEXT}queueLength");
        for e in flows {
            let Some(lane) = e.id.strip_prefix(PREFIX).and_then(|l| self.lanes.get(l)) else {
                continue;
            };
            queue[lane.idx()] = e
                .attrs
                .get(&attr)
                .and_then(|instances| instances.first())
                .and_then(|a| main_value(a).and_then(Value::as_u64))
                .unwrap_or(0) as u32;
        }
        queue
    }
}

fn entities(s: &Snapshot, policy: Policy, now: DateTime<Utc>) -> Vec<Value> {
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sim = bridge::round1(s.time);
    let mut out = Vec::with_capacity(s.lanes.len() + s.signals.len() + 2);
    for l in &s.lanes {
        let lane_no: u32 = l.lane.rsplit('_').next().and_then(|x| x.parse().ok()).unwrap_or(0);
        out.push(json!({
            "id": format!("{PREFIX}{}", l.lane),
            "type": "TrafficFlowObserved",
            "dateObserved": {"type": "Property", "value": at},
            "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
            "intensity": {"type": "Property", "value": l.on_lane},
            "queueLength": {"type": "Property", "value": l.standing, "unitCode": "E50"},
            "vehiclesNearStopLine": {"type": "Property", "value": l.near_stop_line},
            "averageVehicleSpeed": {"type": "Property", "value": (l.mean_speed * 36.0).round() / 10.0, "unitCode": "KMH"},
            "congested": {"type": "Property", "value": l.standing >= 10},
            "laneId": {"type": "Property", "value": lane_no},
            "refRoadSegment": {"type": "Relationship", "object": format!("urn:ngsi-ld:RoadSegment:signal-corridor:{}", l.edge)},
        }));
    }
    for (id, state) in &s.signals {
        out.push(json!({
            "id": format!("urn:ngsi-ld:TrafficSignal:signal-corridor:{id}"),
            "type": "TrafficSignal",
            "dateObserved": {"type": "Property", "value": at},
            "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
            "state": {"type": "Property", "value": state},
            "policy": {"type": "Property", "value": policy.name()},
        }));
    }
    for (trip, (key, name, priority)) in s.ambulances.iter().zip([
        ("priority", "Ambulance with signal priority", true),
        ("no-priority", "Ambulance without priority", false),
    ]) {
        let (status, trip_s, speed, xy) = match *trip {
            AmbulanceTrip::Waiting => ("waiting", 0.0, 0.0, None),
            AmbulanceTrip::EnRoute { since, speed, xy } => ("en-route", s.time - since, speed, Some(xy)),
            AmbulanceTrip::Arrived { trip_s } => ("arrived", trip_s, 0.0, None),
        };
        let mut e = json!({
            "id": format!("urn:ngsi-ld:Vehicle:signal-corridor:ambulance:{key}"),
            "type": "Vehicle",
            "vehicleType": {"type": "Property", "value": "ambulance"},
            "name": {"type": "Property", "value": name},
            "signalPriority": {"type": "Property", "value": priority},
            "tripStatus": {"type": "Property", "value": status},
            "tripTime": {"type": "Property", "value": trip_s.round(), "unitCode": "SEC"},
            "speed": {"type": "Property", "value": (speed * 3.6).round(), "unitCode": "KMH"},
            "dateObserved": {"type": "Property", "value": at},
            "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
        });
        // Only on the road does it have a place.
        if let Some((x, y)) = xy {
            e["networkPosition"] = json!({"type": "Property", "value": [bridge::round1(x), bridge::round1(y)]});
        }
        out.push(e);
    }
    out
}
