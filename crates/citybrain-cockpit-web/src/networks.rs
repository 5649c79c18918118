//! The road geometry a map panel draws, from the scenario networks (no tile
//! server): each normal edge as a polyline, in WGS84 where the network is
//! geo-referenced (else in its own metres), computed once.

use std::sync::{Arc, OnceLock};

use citybrain_net::{EdgeFunction, Network};
use serde_json::{json, Value};

static HOSPITAL: OnceLock<Option<Arc<Value>>> = OnceLock::new();
static CORRIDOR: OnceLock<Option<Arc<Value>>> = OnceLock::new();

/// `{"crs": "wgs84"|"local", "roads": [{"id", "points": [[x, y], ...]}]}`.
pub fn geometry(name: &str) -> Option<Arc<Value>> {
    match name {
        "hospital-district" => HOSPITAL
            .get_or_init(|| {
                citybrain_scenarios::hospital_district::District::load()
                    .ok()
                    .map(|d| Arc::new(roads(&d.net)))
            })
            .clone(),
        "signal-corridor" => CORRIDOR
            .get_or_init(|| {
                citybrain_scenarios::signal_corridor::Corridor::load()
                    .ok()
                    .map(|c| Arc::new(roads(&c.net)))
            })
            .clone(),
        _ => None,
    }
}

fn roads(net: &Network) -> Value {
    let geo = net.location.as_ref().and_then(|l| {
        let [cx0, cy0, cx1, cy1] = l.conv_boundary;
        let [ox0, oy0, ox1, oy1] = l.orig_boundary;
        let ok = (cx1 - cx0).abs() > 1e-9 && (cy1 - cy0).abs() > 1e-9 && ox0.abs() <= 180.0 && oy0.abs() <= 90.0;
        ok.then_some((cx0, cy0, cx1, cy1, ox0, oy0, ox1, oy1))
    });
    let to = |x: f64, y: f64| match geo {
        // Linear between the projected and geographic boxes: good to a metre
        // or two over a few kilometres.
        Some((cx0, cy0, cx1, cy1, ox0, oy0, ox1, oy1)) => [
            ox0 + (x - cx0) / (cx1 - cx0) * (ox1 - ox0),
            oy0 + (y - cy0) / (cy1 - cy0) * (oy1 - oy0),
        ],
        None => [x, y],
    };
    let roads: Vec<Value> = net
        .edges
        .iter()
        .filter(|e| e.function == EdgeFunction::Normal)
        .filter_map(|e| {
            let lane = net.lane(*e.lanes.first()?);
            let pts: Vec<[f64; 2]> = lane.shape.iter().map(|p| to(p.0, p.1)).collect();
            Some(json!({"id": e.id, "points": pts}))
        })
        .collect();
    json!({"crs": if geo.is_some() { "wgs84" } else { "local" }, "roads": roads})
}
