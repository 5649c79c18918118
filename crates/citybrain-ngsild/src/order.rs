//! Entity ordering: the `orderBy` query parameter.
//!
//! `orderBy=key[;asc|;desc],key...` — a key is `id`, `type`, `createdAt`,
//! `modifiedAt` or an attribute path (`speed`, `address.city` for a member
//! of a structured value; `speed.observedAt` for a sub-property). Values
//! compare by JSON kind first (numbers, then strings, then booleans, then
//! anything else by its JSON text), numbers numerically, strings by code
//! point (so ISO 8601 timestamps sort in time order). An entity without the
//! key sorts after every entity that has it, whichever the direction; ties
//! fall to the next key and finally to the entity id, ascending, so paging
//! through an ordered result is stable.

use std::cmp::Ordering;

use serde_json::Value;

use crate::context::TermMap;
use crate::error::{NgsiError, Result};
use crate::model::{main_value, Entity};
use crate::time;

const MAX_KEYS: usize = 8;

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Id,
    Type,
    CreatedAt,
    ModifiedAt,
    /// An attribute (expanded) and a path inside it: members of its value,
    /// or a sub-attribute / metadata member when the first segment names one.
    Attr {
        name: String,
        path: Vec<String>,
    },
}

/// A parsed `orderBy`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    keys: Vec<(Key, bool)>,
}

impl OrderBy {
    pub fn parse(src: &str, ctx: &TermMap) -> Result<OrderBy> {
        let mut keys = Vec::new();
        for part in src.split(',') {
            let part = part.trim();
            let (path, dir) = match part.split_once(';') {
                None => (part, "asc"),
                Some((p, d)) => (p.trim(), d.trim()),
            };
            let descending = match dir {
                "asc" => false,
                "desc" => true,
                other => {
                    return Err(NgsiError::bad_data(format!(
                        "orderBy: '{other}' is not a direction (asc or desc) in '{src}'"
                    )))
                }
            };
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(NgsiError::bad_data(format!("orderBy: empty key in '{src}'")));
            }
            if path
                .chars()
                .any(|c| c.is_whitespace() || "()[]{}<>=!~\"'|&".contains(c))
            {
                return Err(NgsiError::bad_data(format!(
                    "orderBy: '{path}' is not an attribute path"
                )));
            }
            let key = match path {
                "id" => Key::Id,
                "type" => Key::Type,
                "createdAt" => Key::CreatedAt,
                "modifiedAt" => Key::ModifiedAt,
                _ => {
                    let mut segs = path.split('.');
                    let name = ctx.expand(segs.next().unwrap_or_default());
                    Key::Attr {
                        name,
                        path: segs.map(str::to_string).collect(),
                    }
                }
            };
            keys.push((key, descending));
        }
        if keys.len() > MAX_KEYS {
            return Err(NgsiError::bad_data(format!("orderBy: at most {MAX_KEYS} keys")));
        }
        Ok(OrderBy { keys })
    }

    /// Sorts entities in place (stable; id breaks ties).
    pub fn sort(&self, entities: &mut [Entity]) {
        entities.sort_by(|a, b| self.compare(a, b));
    }

    pub fn compare(&self, a: &Entity, b: &Entity) -> Ordering {
        for (key, descending) in &self.keys {
            let (x, y) = (key_value(key, a), key_value(key, b));
            let o = match (&x, &y) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => {
                    let o = compare_values(x, y);
                    if *descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    }
}

fn key_value(key: &Key, e: &Entity) -> Option<Value> {
    match key {
        Key::Id => Some(Value::String(e.id.clone())),
        Key::Type => e.types.first().map(|t| Value::String(t.clone())),
        Key::CreatedAt => Some(Value::String(time::format(&e.created_at))),
        Key::ModifiedAt => Some(Value::String(time::format(&e.modified_at))),
        Key::Attr { name, path } => {
            // The default instance if there is one, else the first.
            let list = e.attrs.get(name)?;
            let inst = list
                .iter()
                .find(|i| !i.contains_key("datasetId"))
                .or_else(|| list.first())?;
            let mut segs = path.iter();
            let mut v: &Value = match segs.next() {
                None => return main_value(inst).cloned(),
                Some(first) => match inst.get(first.as_str()) {
                    // A sub-attribute or a member such as observedAt.
                    Some(Value::Object(sub)) if sub.contains_key("type") => main_value(sub)?,
                    Some(member) => member,
                    None => main_value(inst)?.get(first.as_str())?,
                },
            };
            for s in segs {
                v = v.get(s.as_str())?;
            }
            Some(v.clone())
        }
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        _ => 3,
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ if rank(a) != rank(b) => rank(a).cmp(&rank(b)),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ent(id: &str, speed: Option<Value>) -> Entity {
        let mut e = Entity::new(id.into(), vec!["T".into()], vec![], chrono::Utc::now());
        if let Some(v) = speed {
            let a = json!({"type": "Property", "value": v});
            e.attrs
                .insert(TermMap::core().expand("speed"), vec![a.as_object().unwrap().clone()]);
        }
        e
    }

    #[test]
    fn orders_numbers_absent_last_and_breaks_ties_by_id() {
        let ctx = TermMap::core();
        let mut v = vec![
            ent("urn:c", Some(json!(5))),
            ent("urn:a", None),
            ent("urn:b", Some(json!(10))),
            ent("urn:d", Some(json!(5))),
        ];
        OrderBy::parse("speed;desc", &ctx).unwrap().sort(&mut v);
        let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["urn:b", "urn:c", "urn:d", "urn:a"]);
        OrderBy::parse("speed", &ctx).unwrap().sort(&mut v);
        let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["urn:c", "urn:d", "urn:b", "urn:a"]);
    }

    #[test]
    fn refuses_bad_syntax() {
        let ctx = TermMap::core();
        for bad in ["", "speed;up", "a,,b", "sp eed", "a..b", "speed>3"] {
            assert!(OrderBy::parse(bad, &ctx).is_err(), "{bad}");
        }
    }
}
