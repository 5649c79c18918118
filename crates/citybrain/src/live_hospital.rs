//! Live mode for the hospital district: the weekday runs on the twin at a
//! speed-up of real time and publishes what a city's sensors would — lot
//! availability and road flows — to the hub; the City Brain controller reads
//! lot availability back **from the hub** (not from the twin's internals),
//! so the same loop could run on real parking sensors.
//!
//! Published (default tenant) every `PUBLISH_EVERY` simulated seconds, only
//! what changed:
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
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use citybrain_hub::Hub;
use citybrain_net::{EdgeFunction, Network};
use citybrain_ngsild::model::main_value;
use citybrain_scenarios::hospital_district::{Availability, District, LotState, Measures, RunOptions, SoFar};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Simulated seconds between two publications (and two reads back).
const PUBLISH_EVERY: f64 = 30.0;
const LOT_PREFIX: &str = "urn:ngsi-ld:OffStreetParking:hospital-district:";
const FLOW_PREFIX: &str = "urn:ngsi-ld:TrafficFlowObserved:hospital-district:";
const KPI_PREFIX: &str = "urn:ngsi-ld:KeyPerformanceIndicator:hospital-district:";
const DEFAULT_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub measures: Measures,
    pub speedup: f64,
    pub seed: u64,
}

struct Snapshot {
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
pub fn start(hub: Hub, opts: LiveOptions) -> Result<()> {
    let district = Arc::new(District::load()?);
    let told: Arc<RwLock<Availability>> = Arc::new(RwLock::new(Availability::new()));
    let (tx, mut rx) = mpsc::channel::<Snapshot>(4);
    {
        let district = district.clone();
        let told = told.clone();
        let opts = opts.clone();
        std::thread::Builder::new()
            .name("twin-hospital".into())
            .spawn(move || run_twin(&district, &opts, told, tx))?;
    }
    let net = district.net.clone();
    tokio::spawn(async move {
        let mut last: HashMap<String, Value> = HashMap::new();
        while let Some(snap) = rx.recv().await {
            crate::live::publish_changed(
                &hub,
                &mut last,
                entities(&net, &snap, citybrain_hub::clock::now()),
                false,
                "live hospital district",
            )
            .await;
            match read_availability(&hub).await {
                Ok(a) => *told.write().unwrap_or_else(|e| e.into_inner()) = a,
                Err(e) if !hub.is_closing() => {
                    tracing::warn!(error = %e, "live hospital district: reading lots from the hub failed")
                }
                Err(_) => {}
            }
        }
    });
    Ok(())
}

fn run_twin(district: &District, opts: &LiveOptions, told: Arc<RwLock<Availability>>, tx: mpsc::Sender<Snapshot>) {
    let public: Vec<(usize, String, String)> = district
        .net
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| e.function == EdgeFunction::Normal && !district.is_lot_road(&e.id))
        .map(|(i, e)| (i, e.id.clone(), district.street_of_edge(&e.id).unwrap_or_default()))
        .collect();
    let mut seed = opts.seed;
    loop {
        let mut run = match district.start(&RunOptions::new(opts.measures, seed)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "live hospital district cannot start");
                return;
            }
        };
        // The "before" of a before/after view: the same demand, no measures.
        let mut before = if opts.measures == Measures::BASELINE {
            None
        } else {
            district.start(&RunOptions::new(Measures::BASELINE, seed)).ok()
        };
        let started = Instant::now();
        let t0 = run.time();
        let mut next_publish = t0;
        while !run.finished() {
            // The controller sees what the hub says (empty until the first read).
            let hub_view = told.read().map(|a| a.clone()).unwrap_or_default();
            run.step(if hub_view.is_empty() { None } else { Some(&hub_view) });
            if let Some(b) = before.as_mut().filter(|b| !b.finished()) {
                b.step(None);
            }
            if run.time() >= next_publish {
                next_publish += PUBLISH_EVERY;
                let mut per_edge: HashMap<usize, (u32, u32)> = HashMap::new();
                for (lane, n, standing) in run.sim.lane_counts() {
                    let e = district.net.lane(lane).edge.idx();
                    let c = per_edge.entry(e).or_default();
                    c.0 += n as u32;
                    c.1 += standing as u32;
                }
                let roads = public
                    .iter()
                    .map(|(i, id, street)| {
                        let (n, s) = per_edge.get(i).copied().unwrap_or((0, 0));
                        (id.clone(), street.clone(), n, s)
                    })
                    .collect();
                let snap = Snapshot {
                    time: run.time(),
                    lots: run.lots(),
                    roads,
                    queue_on_road: run.queue_on_road(),
                    live: (opts.measures.name(), run.so_far()),
                    before: before.as_mut().map(|b| b.so_far()),
                };
                if tx.blocking_send(snap).is_err() {
                    return; // the server is shutting down
                }
            }
            let due = Duration::from_secs_f64((run.time() - t0) / opts.speedup.max(1e-3));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        seed += 1;
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
    let sim = (s.time * 10.0).round() / 10.0;
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
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
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

/// Every district lot's `availableSpotNumber` as the hub holds it.
async fn read_availability(hub: &Hub) -> Result<Availability> {
    let mut out = Availability::new();
    let lots = hub
        .entities_of_type("", &format!("{DEFAULT_CONTEXT}OffStreetParking"), usize::MAX)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for e in lots {
        let Some(lot) = e.id.strip_prefix(LOT_PREFIX) else {
            continue;
        };
        let free = e
            .attrs
            .get(&format!("{DEFAULT_CONTEXT}availableSpotNumber"))
            .and_then(|instances| instances.first())
            .and_then(|a| main_value(a).and_then(Value::as_u64));
        if let Some(free) = free {
            out.insert(lot.to_string(), free.min(u32::MAX as u64) as u32);
        }
    }
    Ok(out)
}
