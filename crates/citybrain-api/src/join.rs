//! Linked entity retrieval (GS CIM 009 V1.8.1, 4.5.23 / 5.7.1 / 5.7.2):
//! `join=inline` puts each Relationship's target entity inside it as
//! `entity` (`entityList` for a ListRelationship); `join=flat` appends the
//! targets to the result, once each; `joinLevel` (default 1, at most
//! [`MAX_JOIN_LEVEL`]) follows relationships of relationships.

use std::collections::{HashMap, HashSet};

use citybrain_hub::RequestContext;

use crate::extract::Ngsi;
use crate::AppState;
use citybrain_ngsild::model::kind_of;
use citybrain_ngsild::render::{self, RenderOptions};
use citybrain_ngsild::{Entity, NgsiError};
use serde_json::Value;

use crate::error::ApiResult;
use crate::extract::Params;

pub const MAX_JOIN_LEVEL: usize = 10;
/// At most this many linked entities are read for one response.
const MAX_LINKED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    pub flat: bool,
    pub level: usize,
}

/// `join` and `joinLevel` from the parameters (None: no join).
pub fn join_params(p: &Params) -> ApiResult<Option<Join>> {
    let level = match p.get("joinLevel") {
        None => 1,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_JOIN_LEVEL).contains(n))
            .ok_or_else(|| {
                NgsiError::bad_data(format!("joinLevel '{v}' is not an integer from 1 to {MAX_JOIN_LEVEL}"))
            })?,
    };
    for k in ["pick", "omit"] {
        if p.get(k).is_some_and(|v| v.contains('{') || v.contains('}')) {
            return Err(NgsiError::bad_data(format!(
                "{k}: nested projections of linked entities ('a{{b}}') are not supported"
            ))
            .into());
        }
    }
    match p.get("join") {
        None => Ok(None),
        Some("inline") => Ok(Some(Join { flat: false, level })),
        Some("flat") => Ok(Some(Join { flat: true, level })),
        Some(other) => Err(NgsiError::bad_data(format!("join '{other}' is not inline or flat")).into()),
    }
}

/// The ids an entity's relationships point at.
fn targets(e: &Entity) -> Vec<String> {
    let mut out = Vec::new();
    for list in e.attrs.values() {
        for a in list {
            match kind_of(a) {
                "Relationship" => match a.get("object") {
                    Some(Value::String(s)) => out.push(s.clone()),
                    Some(Value::Array(xs)) => out.extend(xs.iter().filter_map(Value::as_str).map(str::to_string)),
                    _ => {}
                },
                "ListRelationship" => {
                    if let Some(Value::Array(xs)) = a.get("objectList") {
                        for x in xs {
                            match x {
                                Value::String(s) => out.push(s.clone()),
                                Value::Object(o) => {
                                    if let Some(s) = o.get("object").and_then(Value::as_str) {
                                        out.push(s.to_string())
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Reads the entities linked from `roots`, `level` hops deep.
/// Linked entities the caller may not see are left out, as if missing; the
/// rest are redacted and their personal records audited like any read.
async fn linked(s: &AppState, n: &Ngsi, roots: &[Entity], level: usize) -> ApiResult<HashMap<String, Entity>> {
    let (hub, tenant) = (&s.hub, n.tenant.as_str());
    let mut known: HashMap<String, Entity> = HashMap::new();
    let mut seen: HashSet<String> = roots.iter().map(|e| e.id.clone()).collect();
    let mut frontier: Vec<Entity> = roots.to_vec();
    for _ in 0..level {
        let mut want: Vec<String> = frontier
            .iter()
            .flat_map(targets)
            .filter(|t| seen.insert(t.clone()))
            .collect();
        want.truncate(MAX_LINKED.saturating_sub(known.len()));
        if want.is_empty() {
            break;
        }
        frontier = hub.entities_by_id(tenant, &want).await?;
        frontier.retain(|e| n.caller.visibility.sees(e));
        crate::guard::release(s, n, "join", &mut frontier).await?;
        for e in &frontier {
            known.insert(e.id.clone(), e.clone());
        }
    }
    // Roots can be linked too (inline shows them under the relationship).
    for e in roots {
        known.entry(e.id.clone()).or_insert_with(|| e.clone());
    }
    Ok(known)
}

fn inline(e: &Entity, ctx: &RequestContext, o: &RenderOptions, known: &HashMap<String, Entity>, depth: usize) -> Value {
    let mut v = render::entity(e, &ctx.terms, o);
    if depth == 0 {
        return v;
    }
    if let Value::Object(m) = &mut v {
        for (_, attr) in m.iter_mut() {
            match attr {
                Value::Array(instances) => {
                    for i in instances {
                        put_entity(i, ctx, o, known, depth);
                    }
                }
                other => put_entity(other, ctx, o, known, depth),
            }
        }
    }
    v
}

fn put_entity(
    attr: &mut Value,
    ctx: &RequestContext,
    o: &RenderOptions,
    known: &HashMap<String, Entity>,
    depth: usize,
) {
    let Value::Object(a) = attr else { return };
    let render = |id: &str| known.get(id).map(|t| inline(t, ctx, o, known, depth - 1));
    match a.get("type").and_then(Value::as_str) {
        Some("Relationship") | None if a.contains_key("object") => {
            if let Some(Value::String(id)) = a.get("object").cloned() {
                if let Some(t) = render(&id) {
                    a.insert("entity".into(), t);
                }
            }
        }
        Some("ListRelationship") | None if a.contains_key("objectList") => {
            let ids: Vec<String> = a
                .get("objectList")
                .and_then(Value::as_array)
                .map(|xs| {
                    xs.iter()
                        .filter_map(|x| x.as_str().or_else(|| x.get("object").and_then(Value::as_str)))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let list: Vec<Value> = ids.iter().filter_map(|id| render(id)).collect();
            a.insert("entityList".into(), Value::Array(list));
        }
        _ => {}
    }
}

/// Renders `list` with its linked entities joined in as asked.
pub async fn render_joined(
    s: &AppState,
    n: &Ngsi,
    list: &[Entity],
    ctx: &RequestContext,
    o: &RenderOptions,
    j: Join,
) -> ApiResult<Vec<Value>> {
    let known = linked(s, n, list, j.level).await?;
    if j.flat {
        let mut out: Vec<Value> = list.iter().map(|e| render::entity(e, &ctx.terms, o)).collect();
        let roots: HashSet<&str> = list.iter().map(|e| e.id.as_str()).collect();
        let mut extra: Vec<&Entity> = known.values().filter(|e| !roots.contains(e.id.as_str())).collect();
        extra.sort_by(|a, b| a.id.cmp(&b.id));
        out.extend(extra.into_iter().map(|e| render::entity(e, &ctx.terms, o)));
        return Ok(out);
    }
    Ok(list.iter().map(|e| inline(e, ctx, o, &known, j.level)).collect())
}
