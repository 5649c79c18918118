//! What a panel shows, computed from the hub's entities (given here as
//! NGSI-LD key-value objects: `{"id", "type", attr: value, ...}`). Pure: the
//! web layer fetches the entities and sends what changed.

use serde::Serialize;
use serde_json::Value;

use crate::definition::{substitute, Aggregate, Panel, PanelKind, Query};

/// Most rows a bar or table panel sends (the largest values first for bars).
pub const MAX_ROWS: usize = 50;
/// Most points a map panel sends.
pub const MAX_POINTS: usize = 2000;

/// A panel's data at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PanelData {
    /// kpi, gauge, timeseries: one number (None: no entity matched).
    Value {
        value: Option<f64>,
        matched: usize,
    },
    Bars {
        labels: Vec<String>,
        values: Vec<f64>,
    },
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
    },
    Map {
        roads: Vec<(String, f64)>,
        points: Vec<MapPoint>,
    },
    Alerts {
        alerts: Vec<AlertRow>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapPoint {
    pub id: String,
    pub name: String,
    pub lon: f64,
    pub lat: f64,
    pub value: Option<f64>,
    /// Where a click on it leads (the map's `pointLink`, filled in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Percent-encodes a value for a URL's query or path (RFC 3986 unreserved
/// characters stay as they are).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A point's link: `{id}` → the id's last part, `{attr}` → the attribute's
/// value (encoded), `${var}` → the variable's value.
pub fn point_link(template: &str, e: &Value, vars: &[(String, String)]) -> String {
    let with_vars = substitute(template, vars);
    let mut out = String::with_capacity(with_vars.len());
    let mut rest = with_vars.as_str();
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let name = &after[..j];
        let value = if name == "id" {
            let id = e["id"].as_str().unwrap_or_default();
            id.rsplit(':').next().unwrap_or(id).to_string()
        } else {
            text(e.get(name)).unwrap_or_default()
        };
        out.push_str(&url_encode(&value));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub severity: String,
    pub description: String,
    pub status: String,
    pub date: String,
}

/// The entity types a panel reads (what the web layer must fetch).
pub fn types_read(p: &Panel) -> Vec<String> {
    match p.kind {
        PanelKind::Alerts => vec!["Alert".into()],
        PanelKind::Map => {
            let mut t = Vec::new();
            if let Some(m) = &p.map {
                if m.road_attr.is_some() {
                    t.push("TrafficFlowObserved".to_string());
                }
                if let Some(pt) = &m.point_type {
                    t.push(pt.clone());
                }
            }
            t
        }
        _ => p.query.iter().map(|q| q.entity_type.clone()).collect(),
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The entities a query selects (by type, id prefix and `where`).
pub fn matching<'a>(q: &Query, vars: &[(String, String)], entities: &'a [Value]) -> Vec<&'a Value> {
    let prefix = q.id_prefix.as_ref().map(|p| substitute(p, vars));
    entities
        .iter()
        .filter(|e| e["type"].as_str() == Some(q.entity_type.as_str()))
        .filter(|e| {
            prefix
                .as_ref()
                .is_none_or(|p| e["id"].as_str().is_some_and(|id| id.starts_with(p.as_str())))
        })
        .filter(|e| {
            let id = e["id"].as_str().unwrap_or_default();
            (q.any_id_prefix.is_empty() || q.any_id_prefix.iter().any(|p| id.starts_with(p.as_str())))
                && !q.except_id_prefix.iter().any(|p| id.starts_with(p.as_str()))
        })
        .filter(|e| {
            q.where_equal.iter().all(|(attr, want)| match want {
                Value::String(w) => e.get(attr).and_then(Value::as_str) == Some(substitute(w, vars).as_str()),
                w => e.get(attr) == Some(w),
            })
        })
        .collect()
}

/// Reduces values as the query says.
pub fn aggregate(agg: Aggregate, values: &[f64], matched: usize) -> Option<f64> {
    if agg == Aggregate::Count {
        return Some(matched as f64);
    }
    if values.is_empty() {
        return None;
    }
    Some(match agg {
        Aggregate::Sum => values.iter().sum(),
        Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
        Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Count => matched as f64,
    })
}

/// A panel's data from the entities of the types it reads; `vars` are the
/// cockpit's variables as the viewer set them.
pub fn evaluate(p: &Panel, vars: &[(String, String)], entities: &[Value]) -> PanelData {
    match p.kind {
        PanelKind::Alerts => {
            // An optional query narrows the alerts by id (e.g. one family of rules).
            let prefix = p
                .query
                .as_ref()
                .and_then(|q| q.id_prefix.as_ref())
                .map(|x| substitute(x, vars));
            let mut alerts: Vec<AlertRow> = entities
                .iter()
                .filter(|e| e["type"].as_str() == Some("Alert"))
                .filter(|e| {
                    prefix
                        .as_ref()
                        .is_none_or(|pfx| e["id"].as_str().is_some_and(|id| id.starts_with(pfx.as_str())))
                })
                .map(|e| AlertRow {
                    id: e["id"].as_str().unwrap_or_default().to_string(),
                    severity: text(e.get("severity")).unwrap_or_else(|| "informational".into()),
                    description: text(e.get("description")).unwrap_or_default(),
                    status: text(e.get("status")).unwrap_or_else(|| "open".into()),
                    date: text(e.get("dateIssued")).unwrap_or_default(),
                })
                .collect();
            alerts.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.id.cmp(&b.id)));
            alerts.truncate(MAX_ROWS);
            PanelData::Alerts { alerts }
        }
        PanelKind::Map => {
            let Some(m) = &p.map else {
                return PanelData::Map {
                    roads: Vec::new(),
                    points: Vec::new(),
                };
            };
            let mut roads: Vec<(String, f64)> = Vec::new();
            if let Some(attr) = &m.road_attr {
                for e in entities
                    .iter()
                    .filter(|e| e["type"].as_str() == Some("TrafficFlowObserved"))
                {
                    let Some(id) = e["id"].as_str() else { continue };
                    if m.road_id_prefix.as_ref().is_some_and(|p| !id.starts_with(p.as_str())) {
                        continue;
                    }
                    if let Some(v) = number(e.get(attr)) {
                        let edge = id.rsplit(':').next().unwrap_or(id).to_string();
                        roads.push((edge, v));
                    }
                }
            }
            roads.sort_by(|a, b| a.0.cmp(&b.0));
            let mut points = Vec::new();
            if let Some(t) = &m.point_type {
                let prefix = m.point_id_prefix.as_ref().map(|p| substitute(p, vars));
                let wanted = |e: &&Value| {
                    e["type"].as_str() == Some(t.as_str())
                        && prefix
                            .as_ref()
                            .is_none_or(|p| e["id"].as_str().is_some_and(|id| id.starts_with(p.as_str())))
                };
                for e in entities.iter().filter(wanted) {
                    let c = match &m.point_position_attr {
                        Some(a) => e.get(a).unwrap_or(&Value::Null),
                        None => &e["location"]["coordinates"],
                    };
                    let (Some(lon), Some(lat)) = (c[0].as_f64(), c[1].as_f64()) else {
                        continue;
                    };
                    points.push(MapPoint {
                        id: e["id"].as_str().unwrap_or_default().to_string(),
                        name: text(e.get("name")).unwrap_or_default(),
                        lon,
                        lat,
                        value: m.point_attr.as_ref().and_then(|a| number(e.get(a))),
                        link: m.point_link.as_ref().map(|l| point_link(l, e, vars)),
                    });
                }
            }
            points.sort_by(|a, b| a.id.cmp(&b.id));
            roads.truncate(MAX_POINTS);
            points.truncate(MAX_POINTS);
            PanelData::Map { roads, points }
        }
        kind => {
            let Some(q) = &p.query else {
                return PanelData::Value {
                    value: None,
                    matched: 0,
                };
            };
            let found = matching(q, vars, entities);
            let label = |e: &Value| {
                q.label_attr
                    .as_ref()
                    .and_then(|a| text(e.get(a)))
                    // Without a name: the id's last part (…:hospital-district:zju1 → zju1).
                    .unwrap_or_else(|| {
                        let id = e["id"].as_str().unwrap_or_default();
                        id.rsplit(':').next().unwrap_or(id).to_string()
                    })
            };
            match kind {
                PanelKind::Bar => {
                    let attr = q.attr.as_deref().unwrap_or_default();
                    let mut rows: Vec<(String, f64)> = found
                        .iter()
                        .filter_map(|e| number(e.get(attr)).map(|v| (label(e), v)))
                        .collect();
                    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    rows.truncate(MAX_ROWS);
                    PanelData::Bars {
                        labels: rows.iter().map(|r| r.0.clone()).collect(),
                        values: rows.iter().map(|r| r.1).collect(),
                    }
                }
                PanelKind::Table => {
                    let mut rows: Vec<Vec<Value>> = found
                        .iter()
                        .map(|e| {
                            q.columns
                                .iter()
                                .map(|c| {
                                    if c == "id" {
                                        e["id"].clone()
                                    } else {
                                        e.get(c).cloned().unwrap_or(Value::Null)
                                    }
                                })
                                .collect()
                        })
                        .collect();
                    rows.sort_by(|a, b| a.first().map(|v| v.to_string()).cmp(&b.first().map(|v| v.to_string())));
                    rows.truncate(MAX_ROWS);
                    PanelData::Table {
                        columns: q.columns.clone(),
                        rows,
                    }
                }
                _ => {
                    let values: Vec<f64> = match &q.attr {
                        Some(a) => found.iter().filter_map(|e| number(e.get(a))).collect(),
                        None => Vec::new(),
                    };
                    PanelData::Value {
                        value: aggregate(q.aggregate, &values, found.len()),
                        matched: found.len(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod overview_tests {
    use super::*;
    use serde_json::json;

    /// The city overview's "vehicles queued" counts the live scenarios'
    /// road and lane sensors once each: not the static demo record (the
    /// article's 408 cars), not the hospital queue's aggregate of cars the
    /// road sensors already count.
    #[test]
    fn the_overview_queue_counts_live_road_sensors_once() {
        let def = crate::definition::parse(include_str!("../../../dashboards/city-overview.json")).unwrap();
        let q = def
            .panels
            .iter()
            .find(|p| p.id == "queued")
            .and_then(|p| p.query.clone())
            .unwrap();
        let flow = |id: &str, n: u32| json!({"id": id, "type": "TrafficFlowObserved", "queueLength": n});
        let entities = vec![
            flow("urn:ngsi-ld:TrafficFlowObserved:qingchun-road-hospital-gate", 408),
            flow("urn:ngsi-ld:TrafficFlowObserved:signal-corridor:e3_0", 3),
            flow("urn:ngsi-ld:TrafficFlowObserved:hospital-district:qingchun-w", 5),
            flow("urn:ngsi-ld:TrafficFlowObserved:hospital-district:hospital-queue", 7),
        ];
        let ids: Vec<&str> = matching(&q, &[], &entities)
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "urn:ngsi-ld:TrafficFlowObserved:signal-corridor:e3_0",
                "urn:ngsi-ld:TrafficFlowObserved:hospital-district:qingchun-w"
            ]
        );
    }
}
