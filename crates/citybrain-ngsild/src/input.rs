//! Request bodies → expanded, validated entity fragments.
//!
//! Accepts the normalized and the concise forms (a bare value is a Property,
//! `{"object": …}` a Relationship, a GeoJSON geometry a GeoProperty, ...).
//! Every rejection names the attribute and what was wrong.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::context::{looks_like_iri, TermMap};
use crate::error::{NgsiError, Result};
use crate::geo;
use crate::model::{is_null_marker, is_reserved_member, Attr, AttrInput, Entity, ATTR_KINDS, VALUE_MEMBERS};
use crate::time::{self, Timestamp};

/// Size limits on one entity in a request.
#[derive(Debug, Clone)]
pub struct InputLimits {
    pub max_attrs: usize,
    pub max_geo_points: usize,
    pub max_depth: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_attrs: 1000,
            max_geo_points: 10_000,
            max_depth: 16,
        }
    }
}

/// Whether NGSI-LD null (`urn:ngsi-ld:null`) is allowed (it means "delete" in merges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Merge,
}

/// A parsed entity body. `id`/`types` are None where the body had none.
#[derive(Debug, Clone, Default)]
pub struct Fragment {
    pub id: Option<String>,
    pub types: Option<Vec<String>>,
    pub scope: Option<Vec<String>>,
    pub attrs: BTreeMap<String, Vec<AttrInput>>,
}

impl Fragment {
    /// Turns a create body into a new entity (all attributes created at `now`).
    pub fn into_entity(self, now: Timestamp) -> Result<Entity> {
        let id = self.id.ok_or_else(|| NgsiError::bad_data("entity has no 'id'"))?;
        let types = self
            .types
            .ok_or_else(|| NgsiError::bad_data(format!("entity {id} has no 'type'")))?;
        let mut e = Entity::new(id, types, self.scope.unwrap_or_default(), now);
        for (name, list) in self.attrs {
            for input in list {
                if let AttrInput::Set(a) = input {
                    // Cannot fail: fresh entity, overwrite mode.
                    let _ = e.write_attr(&name, AttrInput::Set(a), crate::model::WriteMode::Overwrite, now);
                }
            }
        }
        Ok(e)
    }
}

/// Parses an entity body (compacted with `ctx`).
pub fn parse_entity(v: &Value, ctx: &TermMap, limits: &InputLimits, mode: Mode) -> Result<Fragment> {
    let obj = v
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("an entity must be a JSON object"))?;
    let mut f = Fragment::default();
    if let Some(id) = obj.get("id").or_else(|| obj.get("@id")) {
        f.id = Some(parse_id(id)?);
    }
    if let Some(t) = obj.get("type").or_else(|| obj.get("@type")) {
        f.types = Some(parse_types(t, ctx)?);
    }
    if let Some(s) = obj.get("scope") {
        f.scope = Some(parse_scope(s)?);
    }
    let mut count = 0usize;
    for (k, v) in obj {
        match k.as_str() {
            "id" | "@id" | "type" | "@type" | "scope" | "@context" | "createdAt" | "modifiedAt" | "deletedAt" => {
                continue
            }
            _ => {}
        }
        validate_attr_name(k)?;
        let list = parse_attr(k, v, ctx, limits, mode)?;
        count += list.len();
        if count > limits.max_attrs {
            return Err(NgsiError::bad_data(format!(
                "entity has more than {} attributes (limit)",
                limits.max_attrs
            )));
        }
        f.attrs.insert(ctx.expand(k), list);
    }
    Ok(f)
}

pub fn parse_id(v: &Value) -> Result<String> {
    let s = v
        .as_str()
        .ok_or_else(|| NgsiError::bad_data("entity 'id' must be a string"))?;
    if !looks_like_iri(s) {
        return Err(NgsiError::bad_data(format!(
            "entity id '{s}' is not a URI (e.g. urn:ngsi-ld:Parking:1)"
        )));
    }
    if s.len() > 1024 {
        return Err(NgsiError::bad_data("entity id is longer than 1024 characters"));
    }
    Ok(s.to_string())
}

pub fn parse_types(v: &Value, ctx: &TermMap) -> Result<Vec<String>> {
    let names: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or_else(|| NgsiError::bad_data("entity types must be strings"))
            })
            .collect::<Result<_>>()?,
        _ => {
            return Err(NgsiError::bad_data(
                "entity 'type' must be a string or a non-empty array",
            ))
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        validate_type_name(n)?;
        let iri = ctx.expand(n);
        if !out.contains(&iri) {
            out.push(iri);
        }
    }
    Ok(out)
}

pub fn parse_scope(v: &Value) -> Result<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .map(|s| {
            let s = s
                .as_str()
                .ok_or_else(|| NgsiError::bad_data("scope must be a string or an array of strings"))?;
            let ok = s.starts_with('/')
                && (s == "/"
                    || s[1..]
                        .split('/')
                        .all(|seg| !seg.is_empty() && !seg.contains(['#', '+'])));
            if !ok {
                return Err(NgsiError::bad_data(format!(
                    "scope '{s}' is not a path like /district/street"
                )));
            }
            Ok(s.to_string())
        })
        .collect()
}

const FORBIDDEN: &[char] = &[
    '<', '>', '"', '\'', '=', ';', '(', ')', ' ', '\t', '\n', '\r', '\\', '&', '?', '[', ']',
];

pub fn validate_attr_name(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > 512 || k.contains(FORBIDDEN) || k.chars().any(char::is_control) {
        return Err(NgsiError::bad_data(format!("'{k}' is not a valid attribute name")));
    }
    Ok(())
}

fn validate_type_name(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > 512 || k.contains(FORBIDDEN) || k.contains(',') || k.chars().any(char::is_control) {
        return Err(NgsiError::bad_data(format!("'{k}' is not a valid entity type")));
    }
    Ok(())
}

/// Parses one attribute's value into its instances (several for multi-attributes).
pub fn parse_attr(name: &str, v: &Value, ctx: &TermMap, limits: &InputLimits, mode: Mode) -> Result<Vec<AttrInput>> {
    if let Value::Array(items) = v {
        if !items.is_empty() && items.iter().all(|i| i.as_object().is_some_and(is_attribute_object)) {
            let mut out = Vec::with_capacity(items.len());
            let mut seen: Vec<Option<String>> = Vec::new();
            for i in items {
                let inst = parse_instance(name, i, ctx, limits, mode, 0)?;
                let ds = match &inst {
                    AttrInput::Set(a) => a.get("datasetId").and_then(Value::as_str).map(str::to_string),
                    AttrInput::Delete { dataset_id } => dataset_id.clone(),
                };
                if seen.contains(&ds) {
                    return Err(NgsiError::bad_data(format!(
                        "attribute {name}: two instances with the same datasetId {}",
                        ds.as_deref().unwrap_or("(default)")
                    )));
                }
                seen.push(ds);
                out.push(inst);
            }
            return Ok(out);
        }
    }
    Ok(vec![parse_instance(name, v, ctx, limits, mode, 0)?])
}

fn is_attribute_object(m: &Map<String, Value>) -> bool {
    m.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| ATTR_KINDS.contains(&t) || t.starts_with("https://uri.etsi.org/ngsi-ld/"))
        || VALUE_MEMBERS.iter().any(|k| m.contains_key(*k))
}

fn kind_name(t: &str) -> Option<&'static str> {
    let short = t
        .strip_prefix("https://uri.etsi.org/ngsi-ld/")
        .or_else(|| t.strip_prefix("ngsi-ld:"))
        .unwrap_or(t);
    ATTR_KINDS.iter().copied().find(|k| *k == short)
}

const GEOJSON_TYPES: &[&str] = &[
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
];

fn parse_instance(
    name: &str,
    v: &Value,
    ctx: &TermMap,
    limits: &InputLimits,
    mode: Mode,
    depth: usize,
) -> Result<AttrInput> {
    if depth > limits.max_depth {
        return Err(NgsiError::bad_data(format!(
            "attribute {name}: sub-attributes nest deeper than {}",
            limits.max_depth
        )));
    }
    if is_null_marker(v) {
        if mode == Mode::Create {
            return Err(NgsiError::bad_data(format!(
                "attribute {name}: null (urn:ngsi-ld:null) is only allowed when merging"
            )));
        }
        let dataset_id = v.get("datasetId").and_then(Value::as_str).map(str::to_string);
        return Ok(AttrInput::Delete { dataset_id });
    }
    let obj = match v {
        Value::Object(m) => m,
        // Concise: a bare value (or array of values) is a Property.
        other => {
            let mut a = Attr::new();
            a.insert("type".into(), "Property".into());
            a.insert("value".into(), other.clone());
            return Ok(AttrInput::Set(a));
        }
    };
    let declared = obj.get("type").and_then(Value::as_str);
    let kind = match declared {
        Some(t) if kind_name(t).is_some() => kind_name(t).unwrap_or("Property"),
        Some(t) if GEOJSON_TYPES.contains(&t) && obj.contains_key("coordinates") => {
            // Concise GeoProperty: the geometry itself.
            geo::parse_geometry(v, limits.max_geo_points).map_err(|e| prefix(name, e))?;
            let mut a = Attr::new();
            a.insert("type".into(), "GeoProperty".into());
            a.insert("value".into(), v.clone());
            return Ok(AttrInput::Set(a));
        }
        Some(t) => {
            return Err(NgsiError::bad_data(format!(
                "attribute {name}: unknown attribute type '{t}' (Property, Relationship, GeoProperty, LanguageProperty, VocabProperty, JsonProperty, ListProperty, ListRelationship)"
            )))
        }
        None => {
            if obj.contains_key("value") {
                "Property"
            } else if obj.contains_key("object") {
                "Relationship"
            } else if obj.contains_key("languageMap") {
                "LanguageProperty"
            } else if obj.contains_key("vocab") {
                "VocabProperty"
            } else if obj.contains_key("json") {
                "JsonProperty"
            } else if obj.contains_key("valueList") {
                "ListProperty"
            } else if obj.contains_key("objectList") {
                "ListRelationship"
            } else {
                // Concise compound value.
                let mut a = Attr::new();
                a.insert("type".into(), "Property".into());
                a.insert("value".into(), v.clone());
                return Ok(AttrInput::Set(a));
            }
        }
    };
    let mut a = Attr::new();
    a.insert("type".into(), kind.into());
    let bad = |what: String| NgsiError::bad_data(format!("attribute {name}: {what}"));
    match kind {
        "Property" => {
            let val = obj
                .get("value")
                .ok_or_else(|| bad("a Property needs a 'value'".into()))?;
            if val.is_null() {
                return Err(bad("'value' must not be null".into()));
            }
            a.insert("value".into(), val.clone());
        }
        "GeoProperty" => {
            let val = obj
                .get("value")
                .ok_or_else(|| bad("a GeoProperty needs a 'value'".into()))?;
            geo::parse_geometry(val, limits.max_geo_points).map_err(|e| prefix(name, e))?;
            a.insert("value".into(), val.clone());
        }
        "Relationship" => {
            let o = obj
                .get("object")
                .ok_or_else(|| bad("a Relationship needs an 'object'".into()))?;
            let ok = match o {
                Value::String(s) => looks_like_iri(s),
                Value::Array(items) => {
                    !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(looks_like_iri))
                }
                _ => false,
            };
            if !ok {
                return Err(bad("'object' must be a URI or an array of URIs".into()));
            }
            a.insert("object".into(), o.clone());
            if let Some(t) = obj.get("objectType") {
                a.insert(
                    "objectType".into(),
                    expand_strings(t, ctx)
                        .ok_or_else(|| bad("'objectType' must be a type name or array of names".into()))?,
                );
            }
        }
        "LanguageProperty" => {
            let m = obj
                .get("languageMap")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("a LanguageProperty needs a 'languageMap' object".into()))?;
            for (lang, text) in m {
                let ok = match text {
                    Value::String(_) => true,
                    Value::Array(a) => a.iter().all(Value::is_string),
                    _ => false,
                };
                if !ok || lang.is_empty() {
                    return Err(bad(format!(
                        "languageMap entry '{lang}' must map a language tag to a string"
                    )));
                }
            }
            a.insert("languageMap".into(), Value::Object(m.clone()));
        }
        "VocabProperty" => {
            let voc = obj
                .get("vocab")
                .ok_or_else(|| bad("a VocabProperty needs a 'vocab'".into()))?;
            a.insert(
                "vocab".into(),
                expand_strings(voc, ctx).ok_or_else(|| bad("'vocab' must be a term or array of terms".into()))?,
            );
        }
        "JsonProperty" => {
            let j = obj
                .get("json")
                .ok_or_else(|| bad("a JsonProperty needs a 'json' member".into()))?;
            if !(j.is_object() || j.is_array()) {
                return Err(bad("'json' must be a JSON object or array".into()));
            }
            a.insert("json".into(), j.clone());
        }
        "ListProperty" => {
            let l = obj
                .get("valueList")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("a ListProperty needs a 'valueList' array".into()))?;
            a.insert("valueList".into(), Value::Array(l.clone()));
        }
        "ListRelationship" => {
            let l = obj
                .get("objectList")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("a ListRelationship needs an 'objectList' array".into()))?;
            let mut out = Vec::with_capacity(l.len());
            for i in l {
                let uri = i.as_str().or_else(|| i.get("object").and_then(Value::as_str));
                match uri {
                    Some(u) if looks_like_iri(u) => out.push(Value::String(u.into())),
                    _ => return Err(bad("'objectList' must hold URIs".into())),
                }
            }
            a.insert("objectList".into(), Value::Array(out));
        }
        _ => {}
    }
    for (k, v) in obj {
        match k.as_str() {
            "type" | "value" | "object" | "objectType" | "languageMap" | "vocab" | "json" | "valueList"
            | "objectList" => {}
            "createdAt" | "modifiedAt" | "instanceId" | "deletedAt" => {}
            "observedAt" | "expiresAt" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad(format!("'{k}' must be a date-time string")))?;
                let t = time::parse_field(&format!("{name}.{k}"), s)?;
                // Echoed as given when it is full RFC 3339 (GS CIM 009 V1.8.1
                // 4.6.3: a DateTime is kept in the client's own form); a bare
                // date-time without an offset is read as UTC and written so.
                let kept = if time::is_rfc3339(s) {
                    s.to_string()
                } else {
                    time::format(&t)
                };
                a.insert(k.clone(), Value::String(kept));
            }
            "unitCode" => {
                if !v.is_string() {
                    return Err(bad("'unitCode' must be a string".into()));
                }
                a.insert(k.clone(), v.clone());
            }
            "datasetId" => {
                if !v.as_str().is_some_and(looks_like_iri) {
                    return Err(bad("'datasetId' must be a URI".into()));
                }
                a.insert(k.clone(), v.clone());
            }
            k if is_reserved_member(k) => {}
            sub => {
                validate_attr_name(sub)?;
                match parse_instance(&format!("{name}.{sub}"), v, ctx, limits, mode, depth + 1)? {
                    AttrInput::Set(s) => {
                        a.insert(ctx.expand(sub), Value::Object(s));
                    }
                    AttrInput::Delete { .. } => {
                        a.insert(ctx.expand(sub), Value::String("urn:ngsi-ld:null".into()));
                    }
                }
            }
        }
    }
    Ok(AttrInput::Set(a))
}

/// Parses a partial attribute for PATCH /entities/{id}/attrs/{attr}: the
/// members given replace the stored ones; `type` may be left out.
pub fn parse_attr_patch(name: &str, v: &Value, ctx: &TermMap, limits: &InputLimits) -> Result<Attr> {
    let obj = match v {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other.clone());
            m
        }
    };
    // Reuse the full parser for the members it knows, then drop what the
    // client did not send so a merge keeps the rest.
    let mut probe = obj.clone();
    let declared = probe.contains_key("type");
    if !declared && !is_attribute_object(&probe) {
        // Only sub-attributes or meta-data: still a valid patch.
        probe.insert("value".into(), Value::Bool(true));
    }
    let parsed = match parse_instance(name, &Value::Object(probe), ctx, limits, Mode::Merge, 0)? {
        AttrInput::Set(a) => a,
        AttrInput::Delete { .. } => {
            return Err(NgsiError::bad_data(format!(
                "attribute {name}: use DELETE to remove an attribute"
            )))
        }
    };
    let mut out = Attr::new();
    for (k, v) in parsed {
        let sent = obj.contains_key(&k) || (!is_reserved_member(&k) && obj.keys().any(|ok| ctx.expand(ok) == k));
        if sent || (k == "type" && declared) {
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn expand_strings(v: &Value, ctx: &TermMap) -> Option<Value> {
    match v {
        Value::String(s) => Some(Value::String(ctx.expand(s))),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(|s| Value::String(ctx.expand(s))))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        _ => None,
    }
}

fn prefix(name: &str, e: NgsiError) -> NgsiError {
    NgsiError::new(e.kind, format!("attribute {name}: {}", e.detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Fragment> {
        parse_entity(&v, &TermMap::core(), &InputLimits::default(), Mode::Create)
    }

    #[test]
    fn normalized_and_concise_forms() {
        let f = parse(json!({"id":"urn:ngsi-ld:P:1","type":"Parking",
            "n": 3, "c": {"a": 1}, "r": {"object": "urn:x:1"},
            "location": {"type":"Point","coordinates":[120.1,30.2]},
            "l": {"languageMap": {"en": "x"}},
            "v": {"type":"VocabProperty","vocab":"Open"},
            "m": [{"type":"Property","value":1},{"type":"Property","value":2,"datasetId":"urn:ds:2"}]}))
        .unwrap();
        let k = |n: &str| &f.attrs[&TermMap::core().expand(n)];
        let set = |i: &AttrInput| match i {
            AttrInput::Set(a) => a.clone(),
            _ => panic!(),
        };
        assert_eq!(set(&k("n")[0])["type"], json!("Property"));
        assert_eq!(set(&k("c")[0])["value"], json!({"a":1}));
        assert_eq!(set(&k("r")[0])["type"], json!("Relationship"));
        assert_eq!(set(&k("location")[0])["type"], json!("GeoProperty"));
        assert_eq!(set(&k("l")[0])["type"], json!("LanguageProperty"));
        assert!(set(&k("v")[0])["vocab"].as_str().unwrap().ends_with("/Open"));
        assert_eq!(k("m").len(), 2);
    }

    #[test]
    fn errors_name_the_attribute() {
        let cases = [
            (json!({"id":"nope","type":"T"}), "not a URI"),
            (
                json!({"id":"urn:x:1","type":"T","a":{"type":"Relationship","object":"x"}}),
                "attribute a",
            ),
            (
                json!({"id":"urn:x:1","type":"T","a":{"type":"Magic","value":1}}),
                "unknown attribute type",
            ),
            (
                json!({"id":"urn:x:1","type":"T","a":{"type":"Property"}}),
                "needs a 'value'",
            ),
            (
                json!({"id":"urn:x:1","type":"T","a":{"type":"Property","value":1,"observedAt":"soon"}}),
                "a.observedAt",
            ),
            (
                json!({"id":"urn:x:1","type":"T","location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[500,1]}}}),
                "attribute location",
            ),
            (json!({"id":"urn:x:1","type":"T","a=b":1}), "not a valid attribute name"),
            (
                json!({"id":"urn:x:1","type":"T","a":"urn:ngsi-ld:null"}),
                "only allowed when merging",
            ),
            (json!({"id":"urn:x:1","type":"T","scope":"nope"}), "scope"),
        ];
        for (v, want) in cases {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.detail.contains(want), "{v}: {}", e.detail);
        }
    }

    #[test]
    fn attribute_limit() {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!("urn:x:1"));
        m.insert("type".into(), json!("T"));
        for i in 0..5 {
            m.insert(format!("a{i}"), json!(i));
        }
        let limits = InputLimits {
            max_attrs: 4,
            ..Default::default()
        };
        assert!(parse_entity(&Value::Object(m), &TermMap::core(), &limits, Mode::Create).is_err());
    }

    #[test]
    fn patch_keeps_only_sent_members() {
        let p = parse_attr_patch("a", &json!({"value": 5}), &TermMap::core(), &InputLimits::default()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p["value"], json!(5));
        let p = parse_attr_patch(
            "a",
            &json!({"observedAt": "2026-01-01T00:00:00Z"}),
            &TermMap::core(),
            &InputLimits::default(),
        )
        .unwrap();
        assert!(!p.contains_key("value"));
        assert!(p.contains_key("observedAt"));
    }
}
