//! The services' records as NGSI-LD entities: how each is written to the
//! hub and read back. The whole domain record travels in one JsonProperty
//! (`record`); the attributes beside it are what cockpits, subscriptions
//! and queries filter on.

use chrono::{DateTime, Utc};
use citybrain_ngsild::model::Entity;
use citybrain_ngsild::render::{self, RenderOptions};
use citybrain_ngsild::TermMap;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub const APPLICATION: &str = "ServiceApplication";
pub const INSTANCE: &str = "BundleInstance";
pub const DEFINITION: &str = "BundleDefinition";
pub const GRANT: &str = "BenefitGrant";
pub const NOTIFICATION: &str = "ServiceNotification";
pub const METRICS: &str = "ServiceMetrics";

pub fn prop(v: impl Into<Value>) -> Value {
    json!({"type": "Property", "value": v.into()})
}

pub fn time(t: DateTime<Utc>) -> Value {
    json!({"type": "Property", "value": {"@type": "DateTime", "@value": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}})
}

pub fn rel(id: &str) -> Value {
    json!({"type": "Relationship", "object": id})
}

pub fn record(v: Value) -> Value {
    json!({"type": "JsonProperty", "json": v})
}

/// The normalized JSON of an entity with the core terms.
pub fn normalized(e: &Entity, terms: &TermMap) -> Value {
    render::entity(e, terms, &RenderOptions::default())
}

/// The domain record an entity carries.
pub fn read_record<T: DeserializeOwned>(e: &Entity, terms: &TermMap) -> Result<T, String> {
    let v = normalized(e, terms);
    let r = v
        .get("record")
        .and_then(|r| r.get("json"))
        .ok_or_else(|| format!("{} carries no record", e.id))?;
    serde_json::from_value(r.clone()).map_err(|err| format!("{}: the record does not read back: {err}", e.id))
}

/// The last segment of an entity id (`urn:ngsi-ld:Person:p1` → `p1`).
pub fn tail(id: &str) -> &str {
    id.rsplit(':').next().unwrap_or(id)
}
