//! Facts from the hub: a policy's inputs read from NGSI-LD entities (the
//! subject and the entities related to it), each with the entity and
//! attribute it came from — "once only": never ask for what the hub holds.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::batch::{buf, days, Column, Table};
use crate::decide::{Facts, Source};
use crate::policy::{InputSource, Policy};
use crate::types::{Ty, Value};

/// An attribute's plain value in an entity, normalized or key-values:
/// a Property's `value` (a typed `@value` unwrapped), a Relationship's
/// `object`.
pub fn attribute(entity: &Json, name: &str) -> Option<Json> {
    let a = entity.get(name)?;
    let inner = match a {
        Json::Object(o) if o.contains_key("value") => o.get("value")?.clone(),
        Json::Object(o) if o.contains_key("object") => o.get("object")?.clone(),
        Json::Object(o) if o.contains_key("@value") => o.get("@value")?.clone(),
        other => other.clone(),
    };
    Some(match inner {
        Json::Object(o) if o.contains_key("@value") => o.get("@value").cloned().unwrap_or(Json::Null),
        v => v,
    })
}

fn id_of(entity: &Json) -> String {
    entity.get("id").and_then(Json::as_str).unwrap_or_default().to_string()
}

/// Whether `entity`'s relationship `via` points at `subject`.
fn points_at(entity: &Json, via: &str, subject: &str) -> bool {
    match attribute(entity, via) {
        Some(Json::String(s)) => s == subject,
        Some(Json::Array(a)) => a.iter().any(|v| v.as_str() == Some(subject)),
        _ => false,
    }
}

/// A policy's inputs about `subject`, from it and the `related` entities.
/// An attribute the hub holds in the wrong shape is an error naming it; one
/// it does not hold is left out (the default applies, or the decision says
/// it is missing).
pub fn facts(policy: &Policy, subject: &Json, related: &[Json]) -> Result<Facts, String> {
    let sid = id_of(subject);
    let mut facts = Facts {
        subject: Some(sid.clone()),
        ..Facts::default()
    };
    for input in &policy.inputs {
        match &input.source {
            InputSource::Stated => {}
            InputSource::Attribute(attr) => {
                if let Some(raw) = attribute(subject, attr) {
                    let v = Value::from_json(&input.ty, &raw).map_err(|e| format!("{sid} {attr}: {e}"))?;
                    facts.values.insert(input.name.clone(), v);
                    facts.sources.insert(
                        input.name.clone(),
                        vec![Source {
                            entity: sid.clone(),
                            attribute: attr.clone(),
                        }],
                    );
                }
            }
            InputSource::Related {
                entity_type,
                via,
                fields,
            } => {
                let Ty::List(record) = &input.ty else { continue };
                let Ty::Record(types) = &**record else { continue };
                let mut records = Vec::new();
                let mut sources = Vec::new();
                for e in related
                    .iter()
                    .filter(|e| e.get("type").and_then(Json::as_str) == Some(entity_type) && points_at(e, via, &sid))
                {
                    let eid = id_of(e);
                    let mut vals = Vec::new();
                    for ((_, attr, default), (_, ty)) in fields.iter().zip(types.iter()) {
                        let v = match (attribute(e, attr), default) {
                            (Some(raw), _) => {
                                Value::from_json(ty, &raw).map_err(|err| format!("{eid} {attr}: {err}"))?
                            }
                            (None, Some(d)) => d.clone(),
                            (None, None) => {
                                return Err(format!(
                                    "{eid} has no {attr}, which {} needs for '{}'",
                                    policy.id, input.name
                                ))
                            }
                        };
                        sources.push(Source {
                            entity: eid.clone(),
                            attribute: attr.clone(),
                        });
                        vals.push(v);
                    }
                    records.push(Value::Record(Arc::new(vals)));
                }
                facts.values.insert(input.name.clone(), Value::List(Arc::new(records)));
                facts.sources.insert(input.name.clone(), sources);
            }
        }
    }
    Ok(facts)
}

/// A column of values of type `ty`; `None` rows are placeholders, marked absent.
pub fn column_of(ty: &Ty, values: &[Option<Value>]) -> (Column, Vec<bool>) {
    let absent: Vec<bool> = values
        .iter()
        .map(|v| v.as_ref().is_none_or(|v| !v.conforms(ty)))
        .collect();
    let get = |i: usize| values[i].as_ref().filter(|v| v.conforms(ty));
    let n = values.len();
    let column = match ty {
        Ty::Bool => Column::Bool(buf((0..n).map(|i| matches!(get(i), Some(Value::Bool(true)))).collect())),
        Ty::Int => Column::Int(buf((0..n)
            .map(|i| if let Some(Value::Int(x)) = get(i) { *x } else { 0 })
            .collect())),
        Ty::Double => Column::Double(buf((0..n)
            .map(|i| if let Some(Value::Double(x)) = get(i) { *x } else { 0.0 })
            .collect())),
        Ty::Date => Column::Date(buf((0..n)
            .map(|i| if let Some(Value::Date(d)) = get(i) { days(*d) } else { 0 })
            .collect())),
        Ty::String => {
            let strings: Vec<Arc<str>> = (0..n)
                .map(|i| {
                    if let Some(Value::String(s)) = get(i) {
                        s.clone()
                    } else {
                        "".into()
                    }
                })
                .collect();
            Column::strings(&strings)
        }
        Ty::List(inner) => {
            let mut offsets = vec![0u32];
            let mut flat: Vec<Option<Value>> = Vec::new();
            for i in 0..n {
                if let Some(Value::List(items)) = get(i) {
                    flat.extend(items.iter().cloned().map(Some));
                }
                offsets.push(flat.len() as u32);
            }
            Column::List(buf(offsets), Box::new(column_of(inner, &flat).0))
        }
        Ty::Record(fields) => Column::Record(Arc::new(
            fields
                .iter()
                .enumerate()
                .map(|(k, (_, t))| {
                    let vals: Vec<Option<Value>> = (0..n)
                        .map(|i| match get(i) {
                            Some(Value::Record(r)) => Some(r[k].clone()),
                            _ => None,
                        })
                        .collect();
                    column_of(t, &vals).0
                })
                .collect(),
        )),
    };
    (column, absent)
}

/// A one-row table of `facts`, for checking the batch against a decision.
pub fn table_of_facts(policy: &Policy, facts: &Facts) -> Table {
    let mut table = Table::new(1);
    for input in &policy.inputs {
        let (column, absent) = column_of(&input.ty, &[facts.values.get(&input.name).cloned()]);
        table = table.with(&input.name, column).expect("one row");
        if absent[0] {
            table = table.with_absent(&input.name, absent).expect("one flag per row");
        }
    }
    table
}
