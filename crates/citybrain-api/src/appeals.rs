//! Appeals over HTTP (`/api/v1/appeals…`): anyone may file (signed in, or
//! not and given a secret to follow with), the public board lists what the
//! public may see, requesters and departments act through one actions
//! endpoint, and the figures per department are open. The domain decides
//! who may do what; here the caller becomes an actor and the views are
//! narrowed (the public never sees names, contacts or internal notes).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use citybrain_appeals::appeal::Channel;
use citybrain_appeals::{Actor, ActorKind, Appeal, AppealsError, Filing, Status, Update};
use citybrain_appeals_hub::{Action, Appeals, Error as AppealsHubError, Filter};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Ngsi};
use crate::respond::plain;
use crate::services::actor;
use crate::AppState;

/// The header an anonymous requester sends its secret in.
pub const SECRET_HEADER: &str = "citybrain-appeal-secret";

impl From<AppealsHubError> for ApiError {
    fn from(e: AppealsHubError) -> Self {
        match e {
            AppealsHubError::Appeal(a) => a.into(),
            AppealsHubError::Hub(e) => e.into(),
            AppealsHubError::Data(m) => ApiError::http(StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
}

impl From<AppealsError> for ApiError {
    fn from(e: AppealsError) -> Self {
        match e {
            AppealsError::Invalid(m) => ApiError::http(StatusCode::BAD_REQUEST, m),
            AppealsError::Forbidden(m) => ApiError::forbidden(m),
            AppealsError::Conflict(m) => ApiError::http(StatusCode::CONFLICT, m),
            AppealsError::NotFound(m) => ApiError::http(StatusCode::NOT_FOUND, m),
            other => ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

pub(crate) fn appeals(s: &AppState) -> ApiResult<&Appeals> {
    s.appeals.as_ref().ok_or_else(|| {
        ApiError::http(
            StatusCode::NOT_FOUND,
            "the appeals are off: start the server with --appeals DIR (categories.yaml, routing.yaml, calendar.yaml, moderation.yaml)",
        )
    })
}

fn to_value(v: impl serde::Serialize) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::http(StatusCode::BAD_REQUEST, m)
}

/// What this caller may see of an appeal: everything for the requester
/// and the departments handling it (an anonymous requester's identity only
/// for the administrator), the public view for everyone else.
fn view(a: &Appeal, by: &Actor, secret: Option<&str>, svc: &Appeals) -> ApiResult<Value> {
    if by.kind == ActorKind::Administrator || a.is_requester(by, secret) {
        return full(a);
    }
    if a.may_handle(by, svc.config()) {
        let mut v = full(a)?;
        if a.anonymous {
            for k in ["name", "contact", "requester"] {
                v[k] = Value::Null;
            }
        }
        return Ok(v);
    }
    if a.hidden {
        return Err(ApiError::http(StatusCode::NOT_FOUND, format!("no appeal {}", a.id)));
    }
    to_value(a.public())
}

/// The whole record, less the hash of the follow secret.
fn full(a: &Appeal) -> ApiResult<Value> {
    let mut v = to_value(a)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("secret_sha256");
    }
    Ok(v)
}

fn public_update(u: &Update) -> Value {
    json!({
        "seq": u.seq,
        "at": u.at,
        "kind": u.kind,
        "status": u.status,
        "note": u.public_note,
        "by": u.by,
        "department": u.department,
    })
}

fn secret_of(h: &HeaderMap) -> Option<String> {
    h.get(SECRET_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// GET /api/v1/appeal-categories — what can be appealed, with the SLA and the questions each asks.
pub async fn categories(State(s): State<AppState>) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    Ok(plain(StatusCode::OK, to_value(&svc.config().categories)?))
}

/// GET /api/v1/appeal-departments — the departments and areas appeals are routed to.
pub async fn departments(State(s): State<AppState>) -> ApiResult<Response> {
    let c = appeals(&s)?.config();
    // The outlines too, for the public board's map ([longitude, latitude]).
    let areas: Vec<Value> = c
        .areas
        .iter()
        .map(|a| json!({"id": a.id, "name": a.name, "polygon": a.polygon}))
        .collect();
    Ok(plain(
        StatusCode::OK,
        json!({"departments": to_value(&c.departments)?, "areas": areas, "triage": c.triage}),
    ))
}

/// POST /api/v1/appeals — files an appeal (a [`Filing`] as JSON). Signed
/// in, the appeal is the caller's; otherwise (or anonymous) the answer
/// holds a secret, shown once, to follow it with.
pub async fn file(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let filing: Filing = serde_json::from_value(b).map_err(|e| bad(format!("the appeal: {e}")))?;
    let by = actor(&n);
    let f = svc.file(filing, &by, Channel::Portal).await?;
    let appeal = full(&f.appeal)?;
    Ok(plain(
        StatusCode::CREATED,
        json!({"appeal": appeal, "secret": f.secret, "similar": to_value(&f.similar)?}),
    ))
}

fn filter_of(n: &Ngsi) -> ApiResult<Filter> {
    let p = &n.params;
    let statuses = p
        .list("status")
        .iter()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                bad(format!(
                    "status '{s}': one of routed, in_progress, awaiting_citizen, answered, reopened, closed, duplicate"
                ))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let secs = |k: &str| -> ApiResult<Option<i64>> {
        p.get(k)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp())
                    .map_err(|_| bad(format!("{k}: an RFC 3339 date-time like 2026-12-01T00:00:00+08:00")))
            })
            .transpose()
    };
    Ok(Filter {
        statuses,
        categories: p.list("category"),
        department: p.get("department").map(str::to_string),
        since: secs("since")?,
        until: secs("until")?,
        ..Filter::default()
    })
}

pub(crate) fn page_of(n: &Ngsi) -> ApiResult<(usize, usize)> {
    let offset = n.params.usize("offset")?.unwrap_or(0);
    let limit = n.params.usize("limit")?.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit: 1 to 1000"));
    }
    Ok((offset, limit))
}

/// GET /api/v1/appeals — the public board: redacted, hidden ones left out.
pub async fn board(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let (offset, limit) = page_of(&n)?;
    let (items, total) = svc.public_list(&filter_of(&n)?, offset, limit).await?;
    Ok(plain(
        StatusCode::OK,
        json!({"total": total, "appeals": to_value(items)?}),
    ))
}

/// GET /api/v1/appeal-queue — a department's appeals for its officers
/// (`?department=`, default their first), or a requester's own.
pub async fn queue(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let by = actor(&n);
    let (offset, limit) = page_of(&n)?;
    let mut f = filter_of(&n)?;
    match by.kind {
        ActorKind::Citizen | ActorKind::Enterprise => {
            f.requester = Some(
                by.subject
                    .clone()
                    .ok_or_else(|| ApiError::forbidden("sign in to see your appeals"))?,
            );
            f.department = None;
        }
        ActorKind::Officer => {
            let d = f.department.clone().or_else(|| by.departments.first().cloned());
            match &d {
                // Their own department's, or one they supervise.
                Some(d) if by.departments.iter().any(|o| o == "*" || svc.config().supervises(o, d)) => {}
                _ => {
                    return Err(ApiError::forbidden(format!(
                        "{} may not see that department's queue",
                        by.id
                    )))
                }
            }
            f.department = d;
        }
        _ => {}
    }
    let (items, total) = svc.list(&f, offset, limit).await?;
    let views = items
        .iter()
        .map(|a| view(a, &by, None, svc))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(plain(StatusCode::OK, json!({"total": total, "appeals": views})))
}

/// GET /api/v1/appeals/{id} — the appeal as the caller may see it, with its updates.
pub async fn get(State(s): State<AppState>, n: Ngsi, h: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let by = actor(&n);
    let secret = secret_of(&h);
    let a = svc
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::http(StatusCode::NOT_FOUND, format!("no appeal {id}")))?;
    let mut v = view(&a, &by, secret.as_deref(), svc)?;
    let staff = a.may_handle(&by, svc.config());
    let updates: Vec<Value> = svc
        .updates(&id)
        .await?
        .iter()
        .map(|u| {
            let mut x = public_update(u);
            if staff {
                x["internalNote"] = json!(u.internal_note);
            }
            x
        })
        .collect();
    v["updates"] = Value::Array(updates);
    Ok(plain(StatusCode::OK, v))
}

/// POST /api/v1/appeals/{id}/actions — `{"action": "accept" | "ask_citizen"
/// | "reply" | "answer" | "confirm" | "reopen" | "rate" | "reroute" |
/// "merge" | "follow" | "report" | "moderate", …}`.
pub async fn act(
    State(s): State<AppState>,
    n: Ngsi,
    h: HeaderMap,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let action: Action = serde_json::from_value(b).map_err(|e| bad(format!("the action: {e}")))?;
    let by = actor(&n);
    let secret = secret_of(&h);
    let a = svc.act(&id, action, &by, secret.as_deref()).await?;
    Ok(plain(StatusCode::OK, view(&a, &by, secret.as_deref(), svc)?))
}

/// GET /api/v1/appeals/{id}/similar — possible duplicates (signed in).
pub async fn similar(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    // Ids, distances and text overlap only: what the public board shows anyway.
    let svc = appeals(&s)?;
    Ok(plain(StatusCode::OK, to_value(svc.similar_to(&id).await?)?))
}

/// GET /api/v1/appeal-metrics — per department: open, overdue, on time, satisfaction, reopened.
pub async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    Ok(plain(StatusCode::OK, to_value(svc.figures().await?)?))
}

/// GET /api/v1/enterprise-overview — the enterprise one-stop page (深i企):
/// an enterprise's appeals, the policies it matches today (each with its
/// explanation), its applications, its life-event bundles (一件事) and its
/// grants, in one answer. An
/// enterprise (or a citizen) sees its own; officers name `?subject=`.
pub async fn enterprise_overview(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let by = actor(&n);
    let subject = match (by.kind, n.params.get("subject")) {
        // A citizen's page works the same way: its appeals, the policies
        // about persons it matches, its applications and grants.
        (ActorKind::Enterprise | ActorKind::Citizen, None) => by.subject.clone(),
        (ActorKind::Enterprise | ActorKind::Citizen, Some(x)) if by.subject.as_deref() == Some(x) => by.subject.clone(),
        (ActorKind::Enterprise | ActorKind::Citizen, Some(_)) => {
            return Err(ApiError::forbidden("the one-stop page is one's own"))
        }
        (ActorKind::Officer | ActorKind::Administrator | ActorKind::System, Some(x)) => Some(x.to_string()),
        _ => return Err(bad("subject: name the enterprise (?subject=ENTITY-ID)")),
    }
    .ok_or_else(|| ApiError::forbidden("this token acts for no enterprise or person"))?;
    let entity = s.hub.retrieve_entity(&n.tenant, &subject).await?;
    crate::guard::visible(&n, &entity)?;
    let appeals_view = match &s.appeals {
        Some(a) => {
            let (mine, total) = a
                .list(
                    &Filter {
                        requester: Some(subject.clone()),
                        ..Filter::default()
                    },
                    0,
                    100,
                )
                .await?;
            json!({"total": total, "appeals": mine.iter().map(|x| view(x, &by, None, a)).collect::<ApiResult<Vec<_>>>()?})
        }
        None => json!({"total": 0, "appeals": []}),
    };
    let (applications, bundles, grants) = match &s.services {
        Some(svc) => (
            to_value(svc.applications(Some(&subject), None, None, 100).await?)?,
            to_value(
                svc.instances(&citybrain_services_hub::InstanceFilter {
                    subject: Some(subject.clone()),
                    limit: 100,
                    ..Default::default()
                })
                .await?,
            )?,
            to_value(svc.grants(Some(&subject), 100).await?)?,
        ),
        None => (json!([]), json!([]), json!([])),
    };
    // The policies about enterprises decided for it today, from what the hub holds.
    let terms = n.context(&s.hub, None).await?.terms;
    let subject_type = terms.compact(entity.types.first().map(String::as_str).unwrap_or_default());
    let today = chrono::Utc::now().date_naive();
    let mut matches = Vec::new();
    for p in s.policies.active_for(&subject_type, today) {
        let facts = citybrain_services_hub::facts::about(&s.hub, &n.tenant, &terms, p, &entity).await;
        // A policy whose inputs the hub's data does not fit is not a match.
        let Ok(facts) = facts else { continue };
        let d = p.decide(&facts, today, chrono::Utc::now());
        if d.outcome == citybrain_rules::Outcome::Eligible {
            matches.push(to_value(&d)?);
        }
    }
    crate::guard::record(
        &s,
        &n,
        "read",
        "GET /api/v1/enterprise-overview",
        std::slice::from_ref(&entity),
    )
    .await?;
    Ok(plain(
        StatusCode::OK,
        json!({
            "subject": subject,
            "appeals": appeals_view,
            "matchingPolicies": matches,
            "applications": applications,
            "bundles": bundles,
            "grants": grants,
        }),
    ))
}
