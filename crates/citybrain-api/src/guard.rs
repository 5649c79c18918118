//! The data-level half of access control, used by every handler: reads are
//! narrowed to what the caller may see and redacted to the attributes they
//! may read; writes are checked against the data-sharing policy; accesses to
//! personal records go to the audit log before the answer leaves.

use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::{Entity, NgsiError, TermMap};
use citybrain_trust::Role;
use serde_json::Value;

use crate::auth::audit_entry;
use crate::error::{ApiError, ApiResult};
use crate::extract::Ngsi;
use crate::AppState;

/// Entity members that are not attributes.
const NOT_ATTRIBUTES: &[&str] = &[
    "id",
    "@id",
    "type",
    "@type",
    "@context",
    "scope",
    "createdAt",
    "modifiedAt",
    "deletedAt",
];

/// Narrows a query to what the caller may see.
pub fn restrict(n: &Ngsi, q: &mut EntityQuery) {
    q.visible = n.caller.restriction();
}

/// Redacts what the caller may not read and records accesses to personal
/// records; call on everything a read returns, before rendering it.
pub async fn release(s: &AppState, n: &Ngsi, resource: &str, list: &mut [Entity]) -> ApiResult<()> {
    let v = &n.caller.visibility;
    if !v.is_everything() {
        for e in list.iter_mut() {
            v.redact(e);
        }
    }
    record(s, n, "read", resource, list).await
}

/// Records an access to the personal records among `list` (nothing when
/// none is): one entry per person or enterprise whose records were touched,
/// naming only theirs, so that what a citizen is shown of an entry is about
/// them alone. All entries of one request are committed together.
pub async fn record(s: &AppState, n: &Ngsi, action: &str, resource: &str, list: &[Entity]) -> ApiResult<()> {
    let policy = &n.caller.policy;
    let mut by_owner: std::collections::BTreeMap<Option<String>, Vec<String>> = Default::default();
    for e in list.iter().filter(|e| policy.is_personal(e)) {
        let owners = policy.owners(e);
        if owners.is_empty() {
            by_owner.entry(None).or_default().push(e.id.clone());
        }
        for o in owners {
            by_owner.entry(Some(o)).or_default().push(e.id.clone());
        }
    }
    if by_owner.is_empty() {
        return Ok(());
    }
    let entries = by_owner
        .into_iter()
        .map(|(owner, ids)| {
            let mut entry = audit_entry(&n.caller.principal, action, resource, &n.tenant, "granted");
            entry.entities = ids;
            entry.subjects = owner.into_iter().collect();
            entry.purpose = n.caller.purpose.clone();
            entry
        })
        .collect();
    s.hub.audit(entries).await?;
    Ok(())
}

/// A read of one entity: 404 when the caller may not see it (its existence
/// is not theirs to learn either).
pub fn visible(n: &Ngsi, e: &Entity) -> ApiResult<()> {
    if n.caller.visibility.sees(e) {
        Ok(())
    } else {
        Err(NgsiError::not_found(format!("entity {} not found", e.id)).into())
    }
}

/// The expanded attribute names an entity fragment sets.
pub fn body_attrs(b: &Value, terms: &TermMap) -> Vec<String> {
    b.as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !NOT_ATTRIBUTES.contains(&k.as_str()))
                .map(|k| terms.expand(k))
                .collect()
        })
        .unwrap_or_default()
}

/// The expanded types an entity body names.
pub fn body_types(b: &Value, terms: &TermMap) -> Vec<String> {
    match b.get("type").or_else(|| b.get("@type")) {
        Some(Value::String(t)) => vec![terms.expand(t)],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(|t| terms.expand(t)).collect(),
        _ => vec![],
    }
}

fn refuse(why: String) -> ApiError {
    ApiError::forbidden(why)
}

/// A new entity of these types with these attributes: may the caller write it?
pub fn may_create(n: &Ngsi, types: &[String], attrs: &[String]) -> ApiResult<()> {
    n.caller
        .policy
        .may_write(&n.caller.principal, types, attrs.iter().map(String::as_str))
        .map_err(|r| refuse(r.0))
}

/// A change to an existing entity: it must be visible to the caller (else
/// 404) and these attributes writable (else 403; an empty list means the
/// entity as a whole, e.g. its deletion, which needs every attribute).
/// Personal records are recorded in the audit log before the change.
pub async fn may_change(s: &AppState, n: &Ngsi, id: &str, attrs: &[String], action: &str) -> ApiResult<()> {
    let admin = n.caller.principal.role == Role::Admin;
    // Nothing to check and nothing personal to record: no read on the write path.
    if admin && !n.caller.policy.has_personal_types() {
        return Ok(());
    }
    let e = match s.hub.entities_by_id(&n.tenant, &[id.to_string()]).await?.pop() {
        Some(e) => e,
        // The hub answers a missing entity with its own 404.
        None => return Ok(()),
    };
    if !admin {
        visible(n, &e)?;
        let whole: Vec<String>;
        let names = if attrs.is_empty() {
            whole = e.attrs.keys().cloned().collect();
            &whole
        } else {
            attrs
        };
        n.caller
            .policy
            .may_write(&n.caller.principal, &e.types, names.iter().map(String::as_str))
            .map_err(|r| refuse(r.0))?;
    }
    record(s, n, action, &format!("entity {id}"), std::slice::from_ref(&e)).await
}

/// A subscription must stay within what its creator may read: it names the
/// entity types (each open to the caller as a whole type), and where only
/// some attributes of a type are open, `notification.attributes` lists
/// them. The administrator's subscriptions are not limited.
pub fn may_subscribe(n: &Ngsi, b: &Value, terms: &TermMap, creating: bool) -> ApiResult<()> {
    let v = &n.caller.visibility;
    if v.is_everything() {
        return Ok(());
    }
    let entities = b.get("entities").and_then(Value::as_array);
    let Some(entities) = entities else {
        if creating || b.get("notification").is_some() {
            return Err(refuse(
                "a subscription must name the entity types it watches ('entities' with a 'type' each; a change to 'notification' repeats them)".into(),
            ));
        }
        return Ok(());
    };
    let notified: Option<Vec<String>> = b
        .get("notification")
        .and_then(|x| x.get("attributes"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|x| terms.expand(x)).collect());
    for e in entities {
        let Some(ty) = e.get("type").and_then(Value::as_str) else {
            return Err(refuse("every entry of 'entities' must name a 'type'".into()));
        };
        let iri = terms.expand(ty);
        let Some(open) = v.open_attrs(&iri) else {
            return Err(refuse(format!(
                "this caller may not subscribe to entities of type {ty}"
            )));
        };
        if let citybrain_ngsild::access::AttrSet::Only(allowed) = &open {
            match &notified {
                None => {
                    return Err(refuse(format!(
                        "only some attributes of {ty} are open to this caller: list them in notification.attributes"
                    )))
                }
                Some(list) => {
                    if let Some(a) = list.iter().find(|a| !allowed.contains(*a)) {
                        return Err(refuse(format!(
                            "attribute '{}' of {ty} is not open to this caller",
                            terms.compact(a)
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}
