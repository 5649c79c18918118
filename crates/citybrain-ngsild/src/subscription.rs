//! Subscriptions (clause 5.2.12): validation of the request body, the
//! compiled matcher, and the decision whether one change notifies.
//!
//! A subscription is kept as the document the client sent (compacted with the
//! subscription's own @context) plus broker-managed status members; the
//! matcher is compiled from it with that context whenever it is loaded.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::context::{looks_like_iri, TermMap};
use crate::error::{NgsiError, Result};
use crate::geo::{self, GeoQuery, GeoRel};
use crate::model::{AttrChange, ChangeKind, Entity};
use crate::q::Query;
use crate::render::{Format, RenderOptions};
use crate::scope::ScopeQuery;
use crate::selector::{id_pattern, EntitySelector, TypeExpr};
use crate::time::{self, Timestamp};

pub const TRIGGERS: &[&str] = &[
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
];

/// Members the broker manages; a client's values for them are ignored.
pub const STATUS_MEMBERS: &[&str] = &[
    "status",
    "timesSent",
    "timesFailed",
    "lastNotification",
    "lastSuccess",
    "lastFailure",
    "createdAt",
    "modifiedAt",
];

/// A subscription compiled for matching.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub id: String,
    pub selectors: Vec<EntitySelector>,
    pub watched: HashSet<String>,
    pub triggers: HashSet<String>,
    pub q: Option<Query>,
    pub geo: Option<GeoQuery>,
    pub scope_q: Option<ScopeQuery>,
    pub is_active: bool,
    pub expires_at: Option<Timestamp>,
    pub throttling_s: Option<f64>,
    pub time_interval_s: Option<f64>,
    pub render: RenderOptions,
    pub show_changes: bool,
    pub endpoint: String,
    pub accept_ld: bool,
    /// `endpoint.accept` application/geo+json: entities as GeoJSON features.
    pub accept_geo: bool,
    /// `endpoint.timeout`: how long one delivery may take, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `endpoint.cooldown`: the least wait after a failed delivery, in ms.
    pub cooldown_ms: Option<u64>,
    pub receiver_info: Vec<(String, String)>,
}

/// Validates a subscription document and compiles it with its context.
/// `max_geo_points` limits the geoQ geometry.
pub fn compile(doc: &Map<String, Value>, ctx: &TermMap, max_geo_points: usize) -> Result<Compiled> {
    let bad = |s: String| NgsiError::bad_data(format!("subscription: {s}"));
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(t) = doc.get("type") {
        if t.as_str() != Some("Subscription") {
            return Err(bad("'type' must be \"Subscription\"".into()));
        }
    }
    let mut selectors = Vec::new();
    if let Some(ents) = doc.get("entities") {
        let arr = ents
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("'entities' must be a non-empty array".into()))?;
        for e in arr {
            let o = e
                .as_object()
                .ok_or_else(|| bad("each of 'entities' must be an object".into()))?;
            let mut s = EntitySelector::default();
            if let Some(i) = o.get("id") {
                let i = i
                    .as_str()
                    .filter(|s| looks_like_iri(s))
                    .ok_or_else(|| bad("entities[].id must be a URI".into()))?;
                s.ids.push(i.to_string());
            }
            if let Some(p) = o.get("idPattern") {
                let p = p
                    .as_str()
                    .ok_or_else(|| bad("entities[].idPattern must be a string".into()))?;
                s.id_pattern = Some(id_pattern(p)?);
            }
            let t = o
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("entities[] needs a 'type'".into()))?;
            s.types = Some(TypeExpr::parse(t, ctx)?);
            selectors.push(s);
        }
    }
    let watched: HashSet<String> = match doc.get("watchedAttributes") {
        None => HashSet::new(),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| ctx.expand(s))
                    .ok_or_else(|| bad("watchedAttributes must be attribute names".into()))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad("'watchedAttributes' must be a non-empty array".into())),
    };
    let time_interval_s = match doc.get("timeInterval") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|n| *n > 0.0)
                .ok_or_else(|| bad("'timeInterval' must be a positive number of seconds".into()))?,
        ),
    };
    if selectors.is_empty() && watched.is_empty() {
        return Err(bad("needs 'entities' or 'watchedAttributes'".into()));
    }
    if time_interval_s.is_some() && !watched.is_empty() {
        return Err(bad(
            "'timeInterval' and 'watchedAttributes' cannot be used together".into()
        ));
    }
    let triggers: HashSet<String> = match doc.get("notificationTrigger") {
        None => ["attributeCreated", "attributeUpdated"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| match v.as_str() {
                Some(t) if TRIGGERS.contains(&t) => Ok(t.to_string()),
                _ => Err(bad(format!(
                    "notificationTrigger {v} is not one of {}",
                    TRIGGERS.join(", ")
                ))),
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad("'notificationTrigger' must be a non-empty array".into())),
    };
    let q = match doc.get("q") {
        None => None,
        Some(v) => Some(Query::parse(
            v.as_str().ok_or_else(|| bad("'q' must be a string".into()))?,
            ctx,
        )?),
    };
    let scope_q = match doc.get("scopeQ") {
        None => None,
        Some(v) => Some(ScopeQuery::parse(
            v.as_str().ok_or_else(|| bad("'scopeQ' must be a string".into()))?,
        )?),
    };
    let geo = match doc.get("geoQ") {
        None => None,
        Some(g) => Some(compile_geoq(g, ctx, max_geo_points)?),
    };
    let is_active = match doc.get("isActive") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("'isActive' must be true or false".into()))?,
    };
    let expires_at = match doc.get("expiresAt") {
        None => None,
        Some(v) => Some(time::parse_field(
            "subscription expiresAt",
            v.as_str().unwrap_or_default(),
        )?),
    };
    let throttling_s = match doc.get("throttling") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|n| *n >= 0.0)
                .ok_or_else(|| bad("'throttling' must be a non-negative number of seconds".into()))?,
        ),
    };
    let n = doc
        .get("notification")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("'notification' with an 'endpoint' is required".into()))?;
    let ep = n
        .get("endpoint")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("notification.endpoint is required".into()))?;
    let endpoint = ep.get("uri").and_then(Value::as_str).unwrap_or_default().to_string();
    let scheme_ok = endpoint.starts_with("http://")
        || endpoint.starts_with("https://")
        || endpoint.starts_with("urn:citybrain:sse");
    if !scheme_ok || !looks_like_iri(&endpoint) {
        return Err(bad(format!(
            "notification.endpoint.uri '{endpoint}' must be an http(s) URL (or urn:citybrain:sse for a stream-only subscription)"
        )));
    }
    let (accept_ld, accept_geo) = match ep.get("accept") {
        None => (false, false),
        Some(Value::String(a)) if a == "application/json" => (false, false),
        Some(Value::String(a)) if a == "application/ld+json" => (true, false),
        Some(Value::String(a)) if a == "application/geo+json" => (false, true),
        Some(other) => {
            return Err(bad(format!(
            "notification.endpoint.accept {other} is not application/json, application/ld+json or application/geo+json"
        )))
        }
    };
    let millis = |k: &str| -> Result<Option<u64>> {
        match ep.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| *n > 0.0 && n.is_finite())
                .map(|n| Some(n.ceil() as u64))
                .ok_or_else(|| {
                    bad(format!(
                        "notification.endpoint.{k} must be a positive number of milliseconds"
                    ))
                }),
        }
    };
    let timeout_ms = millis("timeout")?;
    let cooldown_ms = millis("cooldown")?;
    if let Some(j) = doc.get("jsonldContext") {
        if !j.as_str().is_some_and(looks_like_iri) {
            return Err(bad(format!("jsonldContext {j} is not a URI")));
        }
    }
    let mut receiver_info = Vec::new();
    if let Some(ri) = ep.get("receiverInfo") {
        for kv in ri
            .as_array()
            .ok_or_else(|| bad("receiverInfo must be an array of {key, value}".into()))?
        {
            let k = kv.get("key").and_then(Value::as_str);
            let v = kv.get("value").and_then(Value::as_str);
            match (k, v) {
                (Some(k), Some(v)) if valid_header_name(k) && !v.contains(['\r', '\n']) => {
                    receiver_info.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(bad(
                        "receiverInfo entries need a header-safe 'key' and a string 'value'".into(),
                    ))
                }
            }
        }
    }
    let mut render = RenderOptions::default();
    if let Some(f) = n.get("format") {
        render.format = Format::parse(f.as_str().unwrap_or_default())?;
    }
    render.sys_attrs = n.get("sysAttrs").and_then(Value::as_bool).unwrap_or(false);
    let names = |key: &str| -> Result<Option<HashSet<String>>> {
        match n.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(|s| ctx.expand(s))
                            .ok_or_else(|| bad(format!("notification.{key} must be attribute names")))
                    })
                    .collect::<Result<_>>()?,
            )),
            Some(_) => Err(bad(format!("notification.{key} must be an array"))),
        }
    };
    render.attrs = names("attributes")?;
    if let Some(p) = names("pick")? {
        render.hide_id = !p.contains(&ctx.expand("id")) && !p.contains("@id");
        render.hide_type = !p.contains(&ctx.expand("type")) && !p.contains("@type");
        render.attrs = Some(p);
    }
    if let Some(o) = names("omit")? {
        render.hide_id = o.contains("@id");
        render.hide_type = o.contains("@type");
        render.omit = o;
    }
    render.lang = doc.get("lang").and_then(Value::as_str).map(str::to_string);
    let show_changes = n.get("showChanges").and_then(Value::as_bool).unwrap_or(false);
    Ok(Compiled {
        id,
        selectors,
        watched,
        triggers,
        q,
        geo,
        scope_q,
        is_active,
        expires_at,
        throttling_s,
        time_interval_s,
        render,
        show_changes,
        endpoint,
        accept_ld,
        accept_geo,
        timeout_ms,
        cooldown_ms,
        receiver_info,
    })
}

fn valid_header_name(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Compiles a `geoQ` object (`{georel, geometry, coordinates, geoproperty}`).
pub fn compile_geoq(g: &Value, ctx: &TermMap, max_points: usize) -> Result<GeoQuery> {
    let o = g
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("geoQ must be an object"))?;
    let rel = GeoRel::parse(
        o.get("georel")
            .and_then(Value::as_str)
            .ok_or_else(|| NgsiError::bad_data("geoQ.georel is required"))?,
    )?;
    let ty = o
        .get("geometry")
        .and_then(Value::as_str)
        .ok_or_else(|| NgsiError::bad_data("geoQ.geometry is required"))?;
    let coords = match o.get("coordinates") {
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|_| NgsiError::bad_data("geoQ.coordinates is not a JSON array"))?
        }
        Some(v) => v.clone(),
        None => return Err(NgsiError::bad_data("geoQ.coordinates is required")),
    };
    let geometry = geo::build(ty, &coords, max_points)?;
    let prop = o.get("geoproperty").and_then(Value::as_str).unwrap_or("location");
    GeoQuery::new(rel, geometry, ctx.expand(prop))
}

/// One write as the matcher sees it.
#[derive(Debug, Clone, Copy)]
pub struct ChangeEvent<'a> {
    pub before: Option<&'a Entity>,
    pub after: Option<&'a Entity>,
    pub changes: &'a [AttrChange],
}

impl Compiled {
    /// The trigger reason if this change notifies this subscription, ignoring
    /// time-dependent state (isActive/expiry/throttling are checked by the hub).
    pub fn trigger(&self, ev: &ChangeEvent<'_>) -> Option<&'static str> {
        if self.time_interval_s.is_some() {
            return None;
        }
        let state = ev.after.or(ev.before)?;
        if !self.selectors.is_empty() && !self.selectors.iter().any(|s| s.matches(state)) {
            return None;
        }
        if !self.filters_hold(state) {
            return None;
        }
        let watched = |name: &str| self.watched.is_empty() || self.watched.contains(name);
        match (ev.before, ev.after) {
            (None, Some(_)) => {
                if self.triggers.contains("entityCreated") {
                    return Some("entityCreated");
                }
                let created = ev.changes.iter().any(|c| watched(&c.name));
                (self.triggers.contains("attributeCreated") && (created || self.watched.is_empty()))
                    .then_some("attributeCreated")
            }
            (Some(_), None) => self.triggers.contains("entityDeleted").then_some("entityDeleted"),
            (Some(_), Some(_)) => {
                for c in ev.changes {
                    if !watched(&c.name) {
                        continue;
                    }
                    let (t, reason) = match c.kind {
                        ChangeKind::Created => ("attributeCreated", "attributeCreated"),
                        ChangeKind::Updated => ("attributeUpdated", "attributeUpdated"),
                        ChangeKind::Deleted => ("attributeDeleted", "attributeDeleted"),
                    };
                    if self.triggers.contains(t) {
                        return Some(reason);
                    }
                }
                (self.triggers.contains("entityUpdated") && !ev.changes.is_empty()).then_some("entityUpdated")
            }
            (None, None) => None,
        }
    }

    /// q, geoQ and scopeQ on an entity state.
    pub fn filters_hold(&self, e: &Entity) -> bool {
        self.q.as_ref().is_none_or(|q| q.eval(e))
            && self.geo.as_ref().is_none_or(|g| {
                crate::selector::EntityQuery {
                    geo: Some(g.clone()),
                    ..Default::default()
                }
                .matches(e)
            })
            && self.scope_q.as_ref().is_none_or(|s| s.matches(&e.scope))
    }

    /// Whether an entity is in scope of a periodic (timeInterval) subscription.
    pub fn selects(&self, e: &Entity) -> bool {
        (self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(e))) && self.filters_hold(e)
    }

    /// Active now: not paused, not expired.
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.is_active && self.expires_at.is_none_or(|t| t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttrInput, WriteMode};
    use serde_json::json;

    fn sub(v: Value) -> Result<Compiled> {
        compile(v.as_object().unwrap(), &TermMap::core(), 1000)
    }

    fn base() -> Value {
        json!({"type":"Subscription","entities":[{"type":"Parking"}],
               "notification":{"endpoint":{"uri":"http://127.0.0.1:9/n"}}})
    }

    #[test]
    fn validation() {
        assert!(sub(base()).is_ok());
        let mut v = base();
        v.as_object_mut().unwrap().remove("entities");
        assert!(sub(v).unwrap_err().detail.contains("entities"));
        let mut v = base();
        v["notification"]["endpoint"]["uri"] = json!("ftp://x/y");
        assert!(sub(v).is_err());
        let mut v = base();
        v["notificationTrigger"] = json!(["somethingElse"]);
        assert!(sub(v).is_err());
        let mut v = base();
        v["q"] = json!("a==");
        assert!(sub(v).is_err());
        let mut v = base();
        v["watchedAttributes"] = json!(["a"]);
        v["timeInterval"] = json!(10);
        assert!(sub(v).is_err());
    }

    #[test]
    fn triggers_and_watched_attributes() {
        let ctx = TermMap::core();
        let t0 = time::parse("2026-01-01T00:00:00Z").unwrap();
        let mut v = base();
        v["watchedAttributes"] = json!(["free"]);
        v["q"] = json!("free>0");
        let s = sub(v).unwrap();
        let mut before = Entity::new("urn:P:1".into(), vec![ctx.expand("Parking")], vec![], t0);
        let set = |n: i64| AttrInput::Set(json!({"type":"Property","value":n}).as_object().unwrap().clone());
        before
            .write_attr(&ctx.expand("free"), set(1), WriteMode::Overwrite, t0)
            .unwrap();
        let mut after = before.clone();
        let c = after
            .write_attr(&ctx.expand("free"), set(2), WriteMode::Overwrite, t0)
            .unwrap()
            .unwrap();
        let ev = ChangeEvent {
            before: Some(&before),
            after: Some(&after),
            changes: std::slice::from_ref(&c),
        };
        assert_eq!(s.trigger(&ev), Some("attributeUpdated"));
        // An unwatched attribute does not notify.
        let mut other = after.clone();
        let c2 = other
            .write_attr(&ctx.expand("other"), set(2), WriteMode::Overwrite, t0)
            .unwrap()
            .unwrap();
        let ev = ChangeEvent {
            before: Some(&after),
            after: Some(&other),
            changes: std::slice::from_ref(&c2),
        };
        assert_eq!(s.trigger(&ev), None);
        // q is evaluated on the new state.
        let mut zero = after.clone();
        let c3 = zero
            .write_attr(&ctx.expand("free"), set(0), WriteMode::Overwrite, t0)
            .unwrap()
            .unwrap();
        let ev = ChangeEvent {
            before: Some(&after),
            after: Some(&zero),
            changes: std::slice::from_ref(&c3),
        };
        assert_eq!(s.trigger(&ev), None);
        // Deletion only with entityDeleted.
        let ev = ChangeEvent {
            before: Some(&after),
            after: None,
            changes: &[],
        };
        assert_eq!(s.trigger(&ev), None);
    }
}
