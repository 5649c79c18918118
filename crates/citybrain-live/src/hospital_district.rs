//! The hospital district live: the weekday publishes what a city's sensors
//! would — lot availability and road flows — and the City Brain's guidance
//! reads lot availability back from the hub.
//!
//! Published (default tenant) every [`PUBLISH_EVERY_S`] simulated seconds,
//! only what changed:
//! - `OffStreetParking` per lot (`urn:ngsi-ld:OffStreetParking:hospital-district:<lot>`):
//!   `name`, `availableSpotNumber`, `totalSpotNumber` (spaces offered to
//!   hospital visitors now), `occupiedSpotNumber`, `category`
//!   (`hospital` or `shared`), `street` (the road it is entered from),
//!   `location` (WGS84 point), `dateObserved`, `simulatedTime`;
//! - `TrafficFlowObserved` per public road (`urn:ngsi-ld:TrafficFlowObserved:hospital-district:<edge>`):
//!   `intensity` (vehicles on it), `queueLength` (standing), `congested`,
//!   `refRoadSegment`, `street` (the road it is part of), `dateObserved`,
//!   `simulatedTime`;
//! - one `TrafficFlowObserved` for the whole block
//!   (`urn:ngsi-ld:TrafficFlowObserved:hospital-district:hospital-queue`) whose
//!   `queueLength` is the number of hospital-bound cars queued on public roads;
//! - `KeyPerformanceIndicator` per figure and policy
//!   (`urn:ngsi-ld:KeyPerformanceIndicator:hospital-district:<figure>:<live|baseline>`):
//!   `kpiValue`, `policy`, `name`, `unit`; figures `mean-wait` (min, cars
//!   parked in the last hour), `waiting-now`, `longest-wait-now` (min),
//!   `queue-on-road`, `cars-diverted`. When the live policy is not the
//!   baseline, a baseline twin runs beside it on the same demand (it reads
//!   nothing from the hub) so a cockpit can show before and after.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use citybrain_hub::Hub;
use citybrain_net::{EdgeFunction, Network};
use citybrain_ngsild::model::{main_value, Entity};
use citybrain_scenarios::hospital_district::{Availability, District, LotState, Measures, Run, RunOptions, SoFar};
use serde_json::{json, Value};

use crate::bridge::{self, round1, Day, Pacing, Publication, Scenario, Sensors};
use crate::{LiveError, DEFAULT_CONTEXT, PUBLISH_EVERY_S};

const LOT_PREFIX: &str = "urn:ngsi-ld:OffStreetParking:hospital-district:";
const FLOW_PREFIX: &str = "urn:ngsi-ld:TrafficFlowObserved:hospital-district:";
const KPI_PREFIX: &str = "urn:ngsi-ld:KeyPerformanceIndicator:hospital-district:";

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub measures: Measures,
    pub speedup: f64,
    pub seed: u64,
    /// Simulated time the first day opens at (run ahead to it), s.
    pub start_at_s: Option<f64>,
}

/// One publication.
pub struct Snapshot {
    time: f64,
    lots: Vec<LotState>,
    /// (edge, its street, vehicles, standing)
    roads: Vec<(String, String, u32, u32)>,
    queue_on_road: u32,
    /// The live policy's figures, and the baseline's beside it.
    live: (String, SoFar),
    before: Option<SoFar>,
}

/// Starts the district in live mode; it runs until the process ends, the
/// day starting again (next seed) when it is done.
pub fn start(hub: Hub, opts: LiveOptions) -> Result<(), LiveError> {
    let district = Arc::new(District::load()?);
    let told: Arc<RwLock<Availability>> = Arc::new(RwLock::new(Availability::new()));
    let public = district
        .net
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| e.function == EdgeFunction::Normal && !district.is_lot_road(&e.id))
        .map(|(i, e)| (i, e.id.clone(), district.street_of_edge(&e.id).unwrap_or_default()))
        .collect();
    let pacing = Pacing {
        period_s: PUBLISH_EVERY_S,
        speedup: opts.speedup,
        seed: opts.seed,
        start_at_s: opts.start_at_s,
    };
    let sensors = DistrictSensors {
        net: district.net.clone(),
    };
    let twin = DistrictTwin {
        district,
        measures: opts.measures,
        told: told.clone(),
        public,
    };
    bridge::start(hub, "hospital district", pacing, twin, sensors, told)?;
    Ok(())
}

struct DistrictTwin {
    district: Arc<District>,
    measures: Measures,
    /// Lot availability as read back from the hub: the guidance's input.
    told: Arc<RwLock<Availability>>,
    /// Public roads: (edge index, id, street).
    public: Vec<(usize, String, String)>,
}

struct DistrictDay<'a> {
    twin: &'a DistrictTwin,
    run: Run<'a>,
    /// The "before" of a before/after view: the same demand, no measures.
    before: Option<Run<'a>>,
}

impl Scenario for DistrictTwin {
    type Snapshot = Snapshot;
    type Day<'a> = DistrictDay<'a>;

    fn day(&self, seed: u64) -> Result<DistrictDay<'_>, String> {
        let run = self
            .district
            .start(&RunOptions::new(self.measures, seed))
            .map_err(|e| e.to_string())?;
        let before = if self.measures == Measures::BASELINE {
            None
        } else {
            self.district.start(&RunOptions::new(Measures::BASELINE, seed)).ok()
        };
        Ok(DistrictDay {
            twin: self,
            run,
            before,
        })
    }
}

impl Day for DistrictDay<'_> {
    type Snapshot = Snapshot;

    fn time(&self) -> f64 {
        self.run.time()
    }

    fn finished(&self) -> bool {
        self.run.finished()
    }

    fn step(&mut self) {
        // The controller sees what the hub says (nothing until the first read).
        let hub_view = self.twin.told.read().map(|a| a.clone()).unwrap_or_default();
        self.run.step(if hub_view.is_empty() { None } else { Some(&hub_view) });
        if let Some(b) = self.before.as_mut().filter(|b| !b.finished()) {
            b.step(None);
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let net = &self.twin.district.net;
        let mut per_edge: HashMap<usize, (u32, u32)> = HashMap::new();
        for (lane, n, standing) in self.run.sim.lane_counts() {
            let c = per_edge.entry(net.lane(lane).edge.idx()).or_default();
            c.0 += n as u32;
            c.1 += standing as u32;
        }
        let roads = self
            .twin
            .public
            .iter()
            .map(|(i, id, street)| {
                let (n, s) = per_edge.get(i).copied().unwrap_or((0, 0));
                (id.clone(), street.clone(), n, s)
            })
            .collect();
        Snapshot {
            time: self.run.time(),
            lots: self.run.lots(),
            roads,
            queue_on_road: self.run.queue_on_road(),
            live: (self.twin.measures.name(), self.run.so_far()),
            before: self.before.as_mut().map(|b| b.so_far()),
        }
    }
}

struct DistrictSensors {
    net: Arc<Network>,
}

impl Sensors for DistrictSensors {
    type Snapshot = Snapshot;
    type View = Availability;

    fn entities(&self, s: &Snapshot, now: DateTime<Utc>) -> Vec<Publication> {
        vec![Publication {
            entities: entities(&self.net, s, now),
            replace: false,
        }]
    }

    fn read_type(&self) -> String {
        format!("{DEFAULT_CONTEXT}OffStreetParking")
    }

    /// Every district lot's `availableSpotNumber` as the hub holds it.
    fn read(&self, lots: Vec<Entity>) -> Availability {
        let mut out = Availability::new();
        let attr = format!("{DEFAULT_CONTEXT}availableSpotNumber");
        for e in lots {
            let Some(lot) = e.id.strip_prefix(LOT_PREFIX) else {
                continue;
            };
            let free = e
                .attrs
                .get(&attr)
                .and_then(|instances| instances.first())
                .and_then(|a| main_value(a).and_then(Value::as_u64));
            if let Some(free) = free {
                out.insert(lot.to_string(), free.min(u32::MAX as u64) as u32);
            }
        }
        out
    }
}

/// WGS84 (lon, lat) of a network point: the network keeps its projected and
/// geographic bounding boxes; over a block of 2 km a linear map between them
/// is good to a metre or two.
fn lon_lat(net: &Network, xy: (f64, f64)) -> Option<(f64, f64)> {
    let loc = net.location.as_ref()?;
    let [cx0, cy0, cx1, cy1] = loc.conv_boundary;
    let [ox0, oy0, ox1, oy1] = loc.orig_boundary;
    if (cx1 - cx0).abs() < 1e-9 || (cy1 - cy0).abs() < 1e-9 || !(ox0.abs() <= 180.0 && oy0.abs() <= 90.0) {
        return None;
    }
    Some((
        ox0 + (xy.0 - cx0) / (cx1 - cx0) * (ox1 - ox0),
        oy0 + (xy.1 - cy0) / (cy1 - cy0) * (oy1 - oy0),
    ))
}

fn entities(net: &Network, s: &Snapshot, now: DateTime<Utc>) -> Vec<Value> {
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sim = round1(s.time);
    let mut out = Vec::with_capacity(s.lots.len() + s.roads.len() + 1);
    for lot in &s.lots {
        let mut e = json!({
            "id": format!("{LOT_PREFIX}{}", lot.id),
            "type": "OffStreetParking",
            "name": {"type": "Property", "value": lot.name},
            "availableSpotNumber": {"type": "Property", "value": lot.free, "observedAt": at},
            "totalSpotNumber": {"type": "Property", "value": lot.offered},
            "occupiedSpotNumber": {"type": "Property", "value": lot.occupied},
            "category": {"type": "Property", "value": [if lot.hospital.is_some() { "hospital" } else { "shared" }]},
            "street": {"type": "Property", "value": lot.street},
            "dateObserved": {"type": "Property", "value": at},
            "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
        });
        if let Some((lon, lat)) = lon_lat(net, lot.xy) {
            e["location"] = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}});
        }
        out.push(e);
    }
    for (edge, street, n, standing) in &s.roads {
        out.push(json!({
            "id": format!("{FLOW_PREFIX}{edge}"),
            "type": "TrafficFlowObserved",
            "dateObserved": {"type": "Property", "value": at},
            "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
            "intensity": {"type": "Property", "value": n},
            "queueLength": {"type": "Property", "value": standing, "unitCode": "E50"},
            "congested": {"type": "Property", "value": *standing >= 10},
            "refRoadSegment": {"type": "Relationship", "object": format!("urn:ngsi-ld:RoadSegment:hospital-district:{edge}")},
            "street": {"type": "Property", "value": street},
        }));
    }
    out.push(json!({
        "id": format!("{FLOW_PREFIX}hospital-queue"),
        "type": "TrafficFlowObserved",
        "name": {"type": "Property", "value": "hospital-bound cars queued on public roads"},
        "dateObserved": {"type": "Property", "value": at},
        "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
        "queueLength": {"type": "Property", "value": s.queue_on_road, "unitCode": "E50"},
        "congested": {"type": "Property", "value": s.queue_on_road > 10},
    }));
    let figures = [
        ("live", Some(&s.live.1), s.live.0.as_str()),
        ("baseline", s.before.as_ref(), "baseline"),
    ];
    for (which, f, policy) in figures {
        let Some(f) = f else { continue };
        let kpis: [(&str, &str, Option<f64>, &str); 5] = [
            (
                "mean-wait",
                "Mean wait to park, cars parked in the last hour",
                f.mean_wait_last_hour_min.map(round1),
                "min",
            ),
            (
                "waiting-now",
                "Visitors on their way or queuing, not parked yet",
                Some(f.waiting_now as f64),
                "cars",
            ),
            (
                "longest-wait-now",
                "Longest wait of a visitor not parked yet",
                Some(round1(f.longest_wait_now_min)),
                "min",
            ),
            (
                "queue-on-road",
                "Hospital-bound cars queued on public roads",
                Some(f.queue_on_road as f64),
                "cars",
            ),
            (
                "cars-diverted",
                "Visitors parked in another lot than their hospital's",
                Some(f.cars_diverted as f64),
                "cars",
            ),
        ];
        for (kpi, name, value, unit) in kpis {
            let Some(value) = value else { continue };
            out.push(json!({
                "id": format!("{KPI_PREFIX}{kpi}:{which}"),
                "type": "KeyPerformanceIndicator",
                "name": {"type": "Property", "value": name},
                "policy": {"type": "Property", "value": policy},
                "kpiValue": {"type": "Property", "value": value, "observedAt": at},
                "unit": {"type": "Property", "value": unit},
                "category": {"type": "Property", "value": ["quantitative"]},
                "process": {"type": "Property", "value": "hospital-district parking"},
                "simulatedTime": {"type": "Property", "value": sim, "unitCode": "SEC"},
            }));
        }
    }
    out
}
