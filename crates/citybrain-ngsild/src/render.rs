//! Expanded entities → response bodies: normalized, concise or keyValues,
//! compacted with the request's @context, projected (attrs / pick / omit),
//! with or without system attributes, language-filtered, or as GeoJSON.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::context::TermMap;
use crate::error::{NgsiError, Result};
use crate::model::{is_reserved_member, kind_of, main_value, Attr, Entity};
use crate::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    KeyValues,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "normalized" => Ok(Format::Normalized),
            "concise" => Ok(Format::Concise),
            "keyValues" | "simplified" => Ok(Format::KeyValues),
            other => Err(NgsiError::bad_data(format!(
                "format '{other}' is not one of normalized, concise, keyValues"
            ))),
        }
    }
}

/// How to render: format, projection, system attributes, language.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub format: Format,
    pub sys_attrs: bool,
    /// Only these attributes (expanded); None means all.
    pub attrs: Option<HashSet<String>>,
    /// Never these attributes (expanded).
    pub omit: HashSet<String>,
    pub hide_id: bool,
    pub hide_type: bool,
    /// `lang=` : a language tag, or `*` for all.
    pub lang: Option<String>,
    /// Only instances with one of these datasetIds (`@none`: the default instance).
    pub dataset_id: Option<Vec<String>>,
}

/// Renders one entity.
pub fn entity(e: &Entity, ctx: &TermMap, o: &RenderOptions) -> Value {
    let mut out = Map::new();
    if !o.hide_id {
        out.insert("id".into(), Value::String(e.id.clone()));
    }
    if !o.hide_type {
        out.insert("type".into(), compact_list(&e.types, ctx));
    }
    if !e.scope.is_empty() && wanted(o, "scope") {
        let s = if e.scope.len() == 1 {
            Value::String(e.scope[0].clone())
        } else {
            json!(e.scope)
        };
        out.insert("scope".into(), s);
    }
    if o.sys_attrs && o.format != Format::KeyValues {
        out.insert("createdAt".into(), Value::String(time::format(&e.created_at)));
        out.insert("modifiedAt".into(), Value::String(time::format(&e.modified_at)));
    }
    for (name, instances) in &e.attrs {
        if !wanted(o, name) {
            continue;
        }
        let selected: Vec<&Attr> = instances
            .iter()
            .filter(|a| match o.dataset_id.as_deref() {
                None => true,
                Some(wanted) => {
                    let ds = a.get("datasetId").and_then(Value::as_str).unwrap_or("@none");
                    wanted.iter().any(|w| w == ds)
                }
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        let mut rendered: Vec<Value> = selected.iter().map(|a| instance(a, ctx, o)).collect();
        let v = if rendered.len() == 1 {
            rendered.remove(0)
        } else {
            Value::Array(rendered)
        };
        out.insert(ctx.compact(name), v);
    }
    Value::Object(out)
}

fn wanted(o: &RenderOptions, name: &str) -> bool {
    !o.omit.contains(name) && o.attrs.as_ref().is_none_or(|a| a.contains(name))
}

fn compact_list(types: &[String], ctx: &TermMap) -> Value {
    if types.len() == 1 {
        Value::String(ctx.compact(&types[0]))
    } else {
        Value::Array(types.iter().map(|t| Value::String(ctx.compact(t))).collect())
    }
}

/// Renders one attribute instance in the requested format.
pub fn instance(a: &Attr, ctx: &TermMap, o: &RenderOptions) -> Value {
    match o.format {
        Format::KeyValues => key_value(a, ctx, o),
        Format::Normalized => Value::Object(normalized(a, ctx, o)),
        Format::Concise => concise(normalized(a, ctx, o)),
    }
}

fn key_value(a: &Attr, ctx: &TermMap, o: &RenderOptions) -> Value {
    let kind = kind_of(a);
    let v = main_value(a).cloned().unwrap_or(Value::Null);
    match kind {
        "LanguageProperty" => match (&o.lang, &v) {
            (Some(l), Value::Object(m)) if l != "*" => pick_language(m, l).map(|(_, s)| s).unwrap_or(Value::Null),
            _ => v,
        },
        "VocabProperty" => compact_values(&v, ctx),
        _ => v,
    }
}

fn pick_language(m: &Map<String, Value>, lang: &str) -> Option<(String, Value)> {
    let wanted: Vec<&str> = lang.split(',').map(str::trim).collect();
    for w in &wanted {
        if let Some(v) = m.get(*w) {
            return Some((w.to_string(), v.clone()));
        }
    }
    m.get("@none")
        .map(|v| ("@none".to_string(), v.clone()))
        .or_else(|| m.iter().next().map(|(k, v)| (k.clone(), v.clone())))
}

fn compact_values(v: &Value, ctx: &TermMap) -> Value {
    match v {
        Value::String(s) => Value::String(ctx.compact(s)),
        Value::Array(items) => Value::Array(items.iter().map(|i| compact_values(i, ctx)).collect()),
        other => other.clone(),
    }
}

fn normalized(a: &Attr, ctx: &TermMap, o: &RenderOptions) -> Map<String, Value> {
    let mut out = Map::new();
    let kind = kind_of(a);
    for (k, v) in a {
        match k.as_str() {
            "createdAt" | "modifiedAt" if !o.sys_attrs => {}
            "vocab" | "objectType" => {
                out.insert(k.clone(), compact_values(v, ctx));
            }
            "languageMap" if kind == "LanguageProperty" => match (&o.lang, v) {
                (Some(l), Value::Object(m)) if l != "*" => {
                    out.insert("type".into(), "Property".into());
                    if let Some((tag, text)) = pick_language(m, l) {
                        out.insert("value".into(), text);
                        out.insert("lang".into(), Value::String(tag));
                    }
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
            "type" if kind == "LanguageProperty" && o.lang.as_deref().is_some_and(|l| l != "*") => {}
            k if is_reserved_member(k) => {
                out.insert(k.to_string(), v.clone());
            }
            sub => match v {
                Value::Object(s) => {
                    out.insert(ctx.compact(sub), Value::Object(normalized(s, ctx, o)));
                }
                other => {
                    out.insert(ctx.compact(sub), other.clone());
                }
            },
        }
    }
    out
}

/// Concise form: `type` dropped where the other members imply it; a lone
/// value collapses to the bare value.
fn concise(mut m: Map<String, Value>) -> Value {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("Property").to_string();
    if kind == "Property"
        || kind == "Relationship"
        || kind == "LanguageProperty"
        || kind == "VocabProperty"
        || kind == "JsonProperty"
        || kind == "ListProperty"
        || kind == "ListRelationship"
        || kind == "GeoProperty"
    {
        m.remove("type");
    }
    let subs: Vec<String> = m.keys().filter(|k| !is_reserved_member(k)).cloned().collect();
    for k in subs {
        if let Some(Value::Object(s)) = m.remove(&k) {
            m.insert(k, concise(s));
        }
    }
    if m.len() == 1 {
        if let Some(v) = m.get("value") {
            let bare_ok = match kind.as_str() {
                // A bare object would read back as a compound Property, so only
                // GeoJSON geometries and scalars collapse.
                "GeoProperty" => true,
                "Property" => !v.is_object(),
                _ => false,
            };
            if bare_ok {
                return v.clone();
            }
        }
    }
    if kind == "GeoProperty" && m.contains_key("value") && m.len() > 1 {
        m.insert("type".into(), "GeoProperty".into());
    }
    Value::Object(m)
}

/// GeoJSON Feature of an entity: the geometry from `geometry_property`
/// (expanded; usually `location`), the rest as properties.
pub fn feature(e: &Entity, ctx: &TermMap, o: &RenderOptions, geometry_property: &str) -> Value {
    let geometry = e
        .attrs
        .get(geometry_property)
        .and_then(|l| l.first())
        .and_then(|a| a.get("value"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut props = match entity(e, ctx, o) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    props.remove("id");
    json!({"id": e.id, "type": "Feature", "geometry": geometry, "properties": props})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{parse_entity, InputLimits, Mode};

    fn sample() -> Entity {
        let v = json!({"id":"urn:ngsi-ld:P:1","type":"Parking","free":{"type":"Property","value":5,"unitCode":"C62"},
            "n": 3, "location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[1,2]}},
            "r":{"type":"Relationship","object":"urn:x:1"},
            "label":{"type":"LanguageProperty","languageMap":{"en":"Gate","zh":"门"}}});
        parse_entity(&v, &TermMap::core(), &InputLimits::default(), Mode::Create)
            .unwrap()
            .into_entity(time::parse("2026-01-01T00:00:00Z").unwrap())
            .unwrap()
    }

    #[test]
    fn formats() {
        let e = sample();
        let ctx = TermMap::core();
        let n = entity(&e, &ctx, &RenderOptions::default());
        assert_eq!(n["free"], json!({"type":"Property","value":5,"unitCode":"C62"}));
        assert_eq!(n["type"], json!("Parking"));
        assert!(n.get("createdAt").is_none());
        let c = entity(
            &e,
            &ctx,
            &RenderOptions {
                format: Format::Concise,
                ..Default::default()
            },
        );
        assert_eq!(c["n"], json!(3));
        assert_eq!(c["free"], json!({"value":5,"unitCode":"C62"}));
        assert_eq!(c["location"], json!({"type":"Point","coordinates":[1,2]}));
        assert_eq!(c["r"], json!({"object":"urn:x:1"}));
        let k = entity(
            &e,
            &ctx,
            &RenderOptions {
                format: Format::KeyValues,
                ..Default::default()
            },
        );
        assert_eq!(k["free"], json!(5));
        assert_eq!(k["r"], json!("urn:x:1"));
        let l = entity(
            &e,
            &ctx,
            &RenderOptions {
                lang: Some("zh".into()),
                ..Default::default()
            },
        );
        assert_eq!(l["label"], json!({"type":"Property","value":"门","lang":"zh"}));
        let s = entity(
            &e,
            &ctx,
            &RenderOptions {
                sys_attrs: true,
                ..Default::default()
            },
        );
        assert_eq!(s["createdAt"], json!("2026-01-01T00:00:00Z"));
        assert!(s["free"].get("modifiedAt").is_some());
    }

    #[test]
    fn projection() {
        let e = sample();
        let ctx = TermMap::core();
        let only: HashSet<String> = [ctx.expand("free")].into();
        let p = entity(
            &e,
            &ctx,
            &RenderOptions {
                attrs: Some(only),
                ..Default::default()
            },
        );
        assert_eq!(p.as_object().unwrap().len(), 3);
        let omit: HashSet<String> = [ctx.expand("free")].into();
        let p = entity(
            &e,
            &ctx,
            &RenderOptions {
                omit,
                hide_type: true,
                ..Default::default()
            },
        );
        assert!(p.get("free").is_none() && p.get("type").is_none() && p.get("n").is_some());
        let f = feature(&e, &ctx, &RenderOptions::default(), &ctx.expand("location"));
        assert_eq!(f["geometry"]["type"], json!("Point"));
        assert_eq!(f["properties"]["type"], json!("Parking"));
    }
}
