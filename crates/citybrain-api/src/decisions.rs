//! Rules as code over HTTP: the policies in force (open data, with their
//! dated parameters and clause versions), and a decision about a subject
//! the hub knows, read from the hub itself ("once only": the applicant is
//! not asked for what the government holds), with its explanation.
//!
//! A decision here creates no application and changes nothing; the read of
//! the subject's records is audited like any other read of personal data.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use citybrain_ngsild::render::{self, RenderOptions};
use citybrain_rules::{gather, InputSource, Policy, Source, Value as RuleValue};
use citybrain_store::Page;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Ngsi};
use crate::guard;
use crate::respond::plain;
use crate::AppState;

/// The most related entities (household members, say) one decision reads.
pub const MAX_RELATED: usize = 1000;

const RESOURCE: &str = "POST /api/v1/decisions";

fn summary(p: &Policy) -> Value {
    json!({
        "id": p.id,
        "title": p.title,
        "department": p.department,
        "version": p.version,
        "appliesTo": p.applies_to,
        "reference": p.reference,
        "effective": {"from": p.effective_from, "to": p.effective_to},
    })
}

/// GET /api/v1/policies — every loaded policy, in brief.
pub async fn list(State(s): State<AppState>) -> ApiResult<Response> {
    let all: Vec<Value> = s.policies.policies.iter().map(summary).collect();
    Ok(plain(StatusCode::OK, Value::Array(all)))
}

fn find<'a>(s: &'a AppState, id: &str) -> ApiResult<&'a Policy> {
    s.policies.get(id).ok_or_else(|| {
        ApiError::http(
            StatusCode::NOT_FOUND,
            format!("no policy '{id}'; GET /api/v1/policies lists them"),
        )
    })
}

/// GET /api/v1/policies/{id} — a policy whole: inputs and where the hub
/// holds them, parameters with every dated value, clauses with every version.
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let p = find(&s, &id)?;
    let mut out = summary(p);
    out["description"] = json!(p.description);
    out["inputs"] = p
        .inputs
        .iter()
        .map(|i| {
            let source = match &i.source {
                InputSource::Attribute(a) => json!({"attribute": a}),
                InputSource::Related { entity_type, via, fields } => json!({
                    "related": {"type": entity_type, "via": via,
                                "fields": fields.iter().map(|(f, a, _)| json!({"field": f, "attribute": a})).collect::<Vec<_>>()}
                }),
                InputSource::Stated => json!({"stated": true}),
            };
            json!({"name": i.name, "label": i.label, "type": i.ty.to_string(), "source": source,
                   "default": i.default.as_ref().map(|d| d.to_json(&i.ty))})
        })
        .collect();
    out["parameters"] = p
        .parameters
        .iter()
        .map(|x| {
            json!({"name": x.name, "label": x.label, "type": x.ty.to_string(), "unit": x.unit, "reference": x.reference,
                   "values": x.values.iter().map(|v| json!({"from": v.from, "value": v.value.to_json(&x.ty), "reference": v.reference})).collect::<Vec<_>>()})
        })
        .collect();
    let clause = |c: &citybrain_rules::policy::Clause| {
        json!({"id": c.id, "label": c.label, "reference": c.reference, "type": c.ty.to_string(),
               "versions": c.versions.iter().map(|v| json!({"from": v.from, "cel": v.cel})).collect::<Vec<_>>()})
    };
    out["clauses"] = p.clauses.iter().map(clause).collect();
    out["eligible"] = clause(&p.eligible);
    out["amount"] = p.amount.as_ref().map(clause).unwrap_or(Value::Null);
    Ok(plain(StatusCode::OK, out))
}

/// POST /api/v1/decisions — `{"policy": ID, "subject": ENTITY-ID, "on":
/// "YYYY-MM-DD" (default today), "input": {stated inputs}}`: the decision
/// with its explanation. Stated inputs fill only what the hub does not hold.
pub async fn decide(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let bad = |m: String| ApiError::http(StatusCode::BAD_REQUEST, m);
    let Some(body) = b.as_object() else {
        return Err(bad(
            "the body is a JSON object: {\"policy\": ID, \"subject\": ENTITY-ID}".into(),
        ));
    };
    if let Some(k) = body
        .keys()
        .find(|k| !["policy", "subject", "on", "input"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown member '{k}'; expected policy, subject, on, input"
        )));
    }
    let policy_id = body
        .get("policy")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("policy: the id of a policy".into()))?;
    let subject_id = body
        .get("subject")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("subject: the id of an entity in the hub".into()))?;
    let on = match body.get("on") {
        None => chrono::Utc::now().date_naive(),
        Some(Value::String(d)) => citybrain_rules::types::parse_date(d).map_err(|e| bad(format!("on: {e}")))?,
        Some(other) => return Err(bad(format!("on: a date YYYY-MM-DD, found {other}"))),
    };
    let policy = find(&s, policy_id)?;
    let ctx = n.context(&s.hub, None).await?;
    let mut subject = s.hub.retrieve_entity(&n.tenant, subject_id).await?;
    guard::visible(&n, &subject)?;
    let subject_type = ctx
        .terms
        .compact(subject.types.first().map(String::as_str).unwrap_or_default());
    if subject_type != policy.applies_to {
        return Err(bad(format!(
            "{subject_id} is a {subject_type}; {} decides about {} entities",
            policy.id, policy.applies_to
        )));
    }
    guard::release(&s, &n, RESOURCE, std::slice::from_mut(&mut subject)).await?;
    let o = RenderOptions::default();
    let mut related_json = Vec::new();
    for input in &policy.inputs {
        let InputSource::Related { entity_type, via, .. } = &input.source else {
            continue;
        };
        let mut q = citybrain_services_hub::facts::related_query(entity_type, via, subject_id, &ctx.terms)?;
        guard::restrict(&n, &mut q);
        let page = Page {
            offset: 0,
            limit: MAX_RELATED,
            count: false,
        };
        let mut found = s.hub.query_entities(&n.tenant, &q, page).await?.entities;
        guard::release(&s, &n, RESOURCE, &mut found).await?;
        related_json.extend(found.iter().map(|e| render::entity(e, &ctx.terms, &o)));
    }
    let subject_json = render::entity(&subject, &ctx.terms, &o);
    let mut facts = gather::facts(policy, &subject_json, &related_json).map_err(|e| {
        ApiError::http(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the hub's data does not fit {}: {e}", policy.id),
        )
    })?;
    if let Some(stated) = body.get("input") {
        let Some(stated) = stated.as_object() else {
            return Err(bad("input: a JSON object of input values".into()));
        };
        for (name, v) in stated {
            let input = policy
                .inputs
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| bad(format!("input: '{name}' is not an input of {}", policy.id)))?;
            if facts.values.contains_key(name) {
                // Once only: what the hub holds is not asked for, nor replaced.
                continue;
            }
            let value = RuleValue::from_json(&input.ty, v).map_err(|e| bad(format!("input {name}: {e}")))?;
            facts.values.insert(name.clone(), value);
            facts.sources.insert(
                name.clone(),
                vec![Source {
                    entity: n
                        .caller
                        .principal
                        .subject
                        .clone()
                        .unwrap_or_else(|| n.caller.principal.actor.clone()),
                    attribute: format!("stated by {}", n.caller.principal.actor),
                }],
            );
        }
    }
    let decision = policy.decide(&facts, on, chrono::Utc::now());
    Ok(plain(
        StatusCode::OK,
        serde_json::to_value(&decision)
            .map_err(|e| ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    ))
}
