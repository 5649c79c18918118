//! Built-in entity types that describe the hub itself, for the city
//! overview ("what the hub holds and how fast it changes"). They are made
//! here from the hub's own counts, not stored in it: writing statistics into
//! the hub would change the figures they report.
//!
//! - `HubStatistics` (one, `urn:ngsi-ld:HubStatistics:citybrain`):
//!   `entities`, `entityTypes`, `updatesPerSecond` (entity writes that
//!   changed something, over the last [`RATE_WINDOW_MS`]);
//! - `HubEntityType` (one per type): `name`, `entityCount`;
//! - `HubArea` (one per area): `name`, `entityCount`, where an entity's
//!   area is the id segment after its type when the id has one more
//!   (`urn:ngsi-ld:OffStreetParking:hospital-district:zju1` is in
//!   `hospital-district`), else `city`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use citybrain_hub::Hub;

use crate::CockpitError;
use serde_json::{json, Value};

/// The update rate is measured over this long.
pub const RATE_WINDOW_MS: u64 = 10_000;
/// Areas are recounted at most this often (they need every entity's id).
const AREA_EVERY_MS: u64 = 5_000;
/// Most entities of one type whose ids are read to count areas.
const MAX_AREA_SCAN: usize = 20_000;

pub const BUILT_IN: &[&str] = &["HubStatistics", "HubEntityType", "HubArea"];

#[derive(Default)]
pub struct HubStats {
    /// (ms, entity changes so far)
    samples: Mutex<VecDeque<(u64, u64)>>,
    /// When the areas were last counted, and the entities made then.
    areas: tokio::sync::Mutex<(u64, Vec<Value>)>,
}

/// The area of an entity by its id (see the module's note).
pub fn area_of(id: &str) -> &str {
    let rest = id.strip_prefix("urn:ngsi-ld:").unwrap_or(id);
    let mut parts = rest.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(area), Some(_)) if !area.is_empty() => area,
        _ => "city",
    }
}

fn short(iri: &str) -> &str {
    iri.rsplit(['/', '#']).next().unwrap_or(iri)
}

impl HubStats {
    /// Records the hub's change count (call once per tick).
    pub fn sample(&self, hub: &Hub, now_ms: u64) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back((now_ms, hub.entity_changes()));
        while s.len() > 2 && s.front().is_some_and(|(t, _)| t + RATE_WINDOW_MS < now_ms) {
            s.pop_front();
        }
    }

    /// Entity writes per second over the window (None before two samples).
    pub fn rate(&self) -> Option<f64> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (&(t0, n0), &(t1, n1)) = (s.front()?, s.back()?);
        (t1 > t0).then(|| n1.saturating_sub(n0) as f64 * 1000.0 / (t1 - t0) as f64)
    }

    /// The entities of a built-in type (None: `t` is not one).
    pub async fn read(&self, hub: &Hub, t: &str, now_ms: u64) -> Option<Result<Vec<Value>, CockpitError>> {
        if !BUILT_IN.contains(&t) {
            return None;
        }
        Some(self.read_built_in(hub, t, now_ms).await)
    }

    async fn read_built_in(&self, hub: &Hub, t: &str, now_ms: u64) -> Result<Vec<Value>, CockpitError> {
        let types = hub.types("").await?;
        match t {
            "HubStatistics" => {
                let entities: usize = types.iter().map(|t| t.entity_count).sum();
                let mut e = json!({
                    "id": "urn:ngsi-ld:HubStatistics:citybrain",
                    "type": "HubStatistics",
                    "entities": entities,
                    "entityTypes": types.len(),
                });
                if let Some(r) = self.rate() {
                    e["updatesPerSecond"] = json!((r * 10.0).round() / 10.0);
                }
                Ok(vec![e])
            }
            "HubEntityType" => Ok(types
                .iter()
                .map(|t| {
                    let name = short(&t.type_iri);
                    json!({"id": format!("urn:ngsi-ld:HubEntityType:{name}"), "type": "HubEntityType",
                           "name": name, "entityCount": t.entity_count})
                })
                .collect()),
            _ => {
                let mut cached = self.areas.lock().await;
                if cached.0 == 0 || cached.0 + AREA_EVERY_MS <= now_ms {
                    let mut count: BTreeMap<String, usize> = BTreeMap::new();
                    for ty in &types {
                        let es = hub.entities_of_type("", &ty.type_iri, MAX_AREA_SCAN).await?;
                        for e in es {
                            *count.entry(area_of(&e.id).to_string()).or_default() += 1;
                        }
                    }
                    cached.1 = count
                        .into_iter()
                        .map(|(a, n)| {
                            json!({"id": format!("urn:ngsi-ld:HubArea:{a}"), "type": "HubArea",
                                   "name": a, "entityCount": n})
                        })
                        .collect();
                    cached.0 = now_ms.max(1);
                }
                Ok(cached.1.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::area_of;

    #[test]
    fn the_area_is_the_id_segment_after_the_type() {
        assert_eq!(
            area_of("urn:ngsi-ld:OffStreetParking:hospital-district:zju1"),
            "hospital-district"
        );
        assert_eq!(
            area_of("urn:ngsi-ld:TrafficFlowObserved:signal-corridor:e3_1"),
            "signal-corridor"
        );
        assert_eq!(area_of("urn:ngsi-ld:OffStreetParking:zheyi-qingchun"), "city");
        assert_eq!(area_of("urn:ngsi-ld:Alert::x"), "city");
        assert_eq!(area_of("plain"), "city");
    }
}
