//! Government services over HTTP (`/api/v1/`): the catalog and bundle
//! definitions (open), applications decided at once, bundle instances,
//! benefits granted without application, the officers' review queue, and
//! the OpenAPI description. Handlers turn the caller into an [`Actor`] and
//! call `citybrain-services-hub`; the domain decides who may do what, and
//! reads are narrowed here: a citizen or enterprise sees its own records,
//! an officer those of their departments, the administrator everything.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_services::{Actor, ActorKind, Application, Instance, ServiceError};
use citybrain_services_hub::{Error as SvcError, InstanceFilter, Services};
use citybrain_trust::Role;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Ngsi};
use crate::guard;
use crate::respond::plain;
use crate::AppState;

/// The OpenAPI 3.1 description of `/api/v1/`.
pub const OPENAPI: &str = include_str!("openapi.json");

impl From<SvcError> for ApiError {
    fn from(e: SvcError) -> Self {
        match e {
            SvcError::Service(ServiceError::Forbidden(m)) => ApiError::forbidden(m),
            SvcError::Service(ServiceError::Conflict(m)) => ApiError::http(StatusCode::CONFLICT, m),
            SvcError::Service(ServiceError::Invalid(m)) => ApiError::http(StatusCode::BAD_REQUEST, m),
            SvcError::Service(other) => ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
            SvcError::NotFound(m) => ApiError::http(StatusCode::NOT_FOUND, m),
            SvcError::Data(m) => ApiError::http(StatusCode::UNPROCESSABLE_ENTITY, m),
            SvcError::Hub(e) => e.into(),
        }
    }
}

fn services(s: &AppState) -> ApiResult<&Services> {
    s.services.as_ref().ok_or_else(|| {
        ApiError::http(
            StatusCode::NOT_FOUND,
            "the services are off: start the server with --services DIR (a folder of services/*.yaml)",
        )
    })
}

/// The caller as the services see it.
pub fn actor(n: &Ngsi) -> Actor {
    let p = &n.caller.principal;
    Actor {
        id: p.actor.clone(),
        kind: match p.role {
            Role::Admin => ActorKind::Administrator,
            Role::Officer => ActorKind::Officer,
            Role::Citizen => ActorKind::Citizen,
            Role::Enterprise => ActorKind::Enterprise,
            // The routes below need credentials; the public never gets here.
            Role::Public => ActorKind::Citizen,
        },
        departments: p.departments.clone(),
        subject: p.subject.clone(),
    }
}

fn ok(v: impl serde::Serialize) -> ApiResult<Response> {
    let v = serde_json::to_value(v).map_err(|e| ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(plain(StatusCode::OK, v))
}

fn created(v: impl serde::Serialize) -> ApiResult<Response> {
    let v = serde_json::to_value(v).map_err(|e| ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(plain(StatusCode::CREATED, v))
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::http(StatusCode::BAD_REQUEST, m)
}

/// The members of a JSON object body, refusing unknown ones.
fn members<'a>(b: &'a Value, allowed: &[&str], shape: &str) -> ApiResult<&'a Map<String, Value>> {
    let o = b
        .as_object()
        .ok_or_else(|| bad(format!("the body is a JSON object: {shape}")))?;
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!("unknown member '{k}'; expected {}", allowed.join(", "))));
    }
    Ok(o)
}

fn text<'a>(o: &'a Map<String, Value>, k: &str, what: &str) -> ApiResult<&'a str> {
    o.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{k}: {what}")))
}

/// The body's `subject`, or the entity the caller acts for.
fn subject_of(o: &Map<String, Value>, a: &Actor, what: &str) -> ApiResult<String> {
    match o.get("subject") {
        Some(Value::String(x)) => Ok(x.clone()),
        None => a.subject.clone().ok_or_else(|| bad(format!("subject: {what}"))),
        Some(_) => Err(bad("subject: an entity id")),
    }
}

fn note(o: &Map<String, Value>) -> ApiResult<Option<String>> {
    match o.get("note") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 4000 => Ok(Some(s.clone())),
        Some(_) => Err(bad("note: text of at most 4000 characters")),
    }
}

/// GET /api/v1/services — the catalog.
pub async fn catalog(State(s): State<AppState>) -> ApiResult<Response> {
    let svc = services(&s)?;
    ok(svc.catalog().services.values().collect::<Vec<_>>())
}

pub async fn service(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    ok(services(&s)?.service(&id)?)
}

/// GET /api/v1/bundles — the life-event bundles and their steps.
pub async fn bundles(State(s): State<AppState>) -> ApiResult<Response> {
    ok(services(&s)?.catalog().bundles.values().collect::<Vec<_>>())
}

pub async fn bundle(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let b = services(&s)?.catalog().bundles.get(&id).ok_or_else(|| {
        ApiError::http(
            StatusCode::NOT_FOUND,
            format!("no bundle '{id}'; GET /api/v1/bundles lists them"),
        )
    })?;
    ok(b)
}

/// Audits the records the services read for the caller.
async fn audit_reads(s: &AppState, n: &Ngsi, resource: &str, ids: &[String]) -> ApiResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found = s.hub.entities_by_id("", ids).await?;
    guard::record(s, n, "read", resource, &found).await
}

/// GET /api/v1/services/{id}/prefill?subject=ID — what the hub holds for
/// the application (shown before the applicant consents).
pub async fn prefill(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let svc = services(&s)?;
    let a = actor(&n);
    let subject = n
        .params
        .get("subject")
        .map(str::to_string)
        .or_else(|| a.subject.clone())
        .ok_or_else(|| bad("subject: the entity applied for"))?;
    if !a.speaks_for(&subject) {
        return Err(ApiError::forbidden(format!(
            "{} may not see what the hub holds about {subject}",
            a.id
        )));
    }
    let p = svc.preview(&id, &subject).await?;
    audit_reads(&s, &n, "GET /api/v1/services/{id}/prefill", &p.records).await?;
    ok(p)
}

/// POST /api/v1/applications — `{"service", "subject" (default: the
/// caller's), "input": {stated}, "consent": true}`: decided at once where
/// the rule may, with its explanation.
pub async fn apply(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let o = members(
        &b,
        &["service", "subject", "input", "consent"],
        "{\"service\": ID, \"consent\": true}",
    )?;
    let service = text(o, "service", "the id of a service (GET /api/v1/services)")?;
    let svc = services(&s)?;
    let a = actor(&n);
    let subject = subject_of(o, &a, "the entity applied for")?;
    let stated = match o.get("input") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad("input: a JSON object of stated inputs")),
    };
    let consent = match o.get("consent") {
        None => false,
        Some(Value::Bool(c)) => *c,
        Some(_) => return Err(bad("consent: true or false")),
    };
    let app = svc.apply(&a, service, &subject, stated, consent).await?;
    audit_reads(&s, &n, "POST /api/v1/applications", &app.consent.records).await?;
    created(app)
}

fn sees_application(a: &Actor, app: &Application) -> bool {
    match a.kind {
        ActorKind::Administrator | ActorKind::System => true,
        ActorKind::Officer => a.works_for(&app.department),
        ActorKind::Citizen | ActorKind::Enterprise => a.subject.as_deref() == Some(app.subject.as_str()),
    }
}

fn limit(n: &Ngsi) -> ApiResult<usize> {
    Ok(n.params.usize("limit")?.unwrap_or(100).min(1000))
}

/// GET /api/v1/applications — one's own; an officer's departments'.
pub async fn applications(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = services(&s)?;
    let a = actor(&n);
    let mut subject = n.params.get("subject").map(str::to_string);
    let department = n.params.get("department").map(str::to_string);
    if matches!(a.kind, ActorKind::Citizen | ActorKind::Enterprise) {
        subject = a.subject.clone();
    }
    if let (ActorKind::Officer, Some(d)) = (a.kind, &department) {
        if !a.works_for(d) {
            return Err(ApiError::forbidden(format!("{} does not work for {d}", a.id)));
        }
    }
    let list = svc
        .applications(
            subject.as_deref(),
            department.as_deref(),
            n.params.get("status"),
            limit(&n)?,
        )
        .await?;
    ok(list.into_iter().filter(|x| sees_application(&a, x)).collect::<Vec<_>>())
}

pub async fn application(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let app = services(&s)?.application(&id).await?;
    if !sees_application(&actor(&n), &app) {
        return Err(ApiError::http(StatusCode::NOT_FOUND, format!("no application {id}")));
    }
    ok(app)
}

fn verdict(b: &Value) -> ApiResult<(bool, Option<String>)> {
    let o = members(b, &["approve", "note"], "{\"approve\": true|false, \"note\": TEXT}")?;
    let approve = o
        .get("approve")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("approve: true or false"))?;
    Ok((approve, note(o)?))
}

/// POST /api/v1/applications/{id}/review — an officer's decision.
pub async fn review_application(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let (approve, note) = verdict(&b)?;
    ok(services(&s)?.review_application(&actor(&n), &id, approve, note).await?)
}

fn sees_instance(s: &Services, a: &Actor, i: &Instance) -> bool {
    match a.kind {
        ActorKind::Administrator | ActorKind::System => true,
        ActorKind::Officer => s
            .catalog()
            .bundles
            .get(&i.bundle)
            .is_some_and(|b| a.works_for(&b.lead) || b.steps.iter().any(|st| a.works_for(&st.department))),
        ActorKind::Citizen | ActorKind::Enterprise => {
            let me = a.subject.as_deref();
            me == Some(i.subject.as_str()) || me == i.confirm_by.as_deref()
        }
    }
}

/// POST /api/v1/bundle-instances — `{"bundle", "subject"}`: one application
/// for a life event; it runs as far as it can at once.
pub async fn start_bundle(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let o = members(&b, &["bundle", "subject"], "{\"bundle\": ID, \"subject\": ENTITY-ID}")?;
    let bundle = text(o, "bundle", "the id of a bundle (GET /api/v1/bundles)")?;
    let a = actor(&n);
    let subject = subject_of(o, &a, "the entity the bundle is for")?;
    let i = services(&s)?.start_bundle(&a, bundle, &subject).await?;
    created(i)
}

/// GET /api/v1/bundle-instances — ?status, ?subject, ?waitingOn=DEPARTMENT.
pub async fn instances(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = services(&s)?;
    let a = actor(&n);
    let f = InstanceFilter {
        status: n.params.get("status").map(str::to_string),
        subject: n.params.get("subject").map(str::to_string),
        waiting_on: n.params.get("waitingOn").map(str::to_string),
        limit: limit(&n)?,
    };
    let list = svc.instances(&f).await?;
    ok(list
        .into_iter()
        .filter(|i| sees_instance(svc, &a, i))
        .collect::<Vec<_>>())
}

pub async fn instance(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let svc = services(&s)?;
    let i = svc.instance(&id).await?;
    if !sees_instance(svc, &actor(&n), &i) {
        return Err(ApiError::http(
            StatusCode::NOT_FOUND,
            format!("no bundle instance {id}"),
        ));
    }
    ok(i)
}

/// POST /api/v1/bundle-instances/{id}/confirm — the parent's confirmation.
pub async fn confirm(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    ok(services(&s)?.confirm(&actor(&n), &id).await?)
}

pub async fn cancel(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    ok(services(&s)?.cancel(&actor(&n), &id).await?)
}

/// POST /api/v1/bundle-instances/{id}/steps/{step}/review
pub async fn review_step(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, step)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let (approve, note) = verdict(&b)?;
    ok(services(&s)?.review_step(&actor(&n), &id, &step, approve, note).await?)
}

/// GET /api/v1/grants — benefits granted without application, with their
/// explanations: one's own (and one's household's), or ?subject for staff.
pub async fn grants(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = services(&s)?;
    let a = actor(&n);
    let limit = limit(&n)?;
    let mut subjects: Vec<Option<String>> = Vec::new();
    match a.kind {
        ActorKind::Citizen | ActorKind::Enterprise => {
            let me = a
                .subject
                .clone()
                .ok_or_else(|| ApiError::forbidden("this token names no person or enterprise"))?;
            if let Ok(e) = s.hub.retrieve_entity("", &me).await {
                let json = citybrain_services_hub::entity::normalized(&e, &citybrain_ngsild::TermMap::core());
                if let Some(Value::String(h)) = citybrain_rules::gather::attribute(&json, "household") {
                    subjects.push(Some(h));
                }
            }
            subjects.insert(0, Some(me));
        }
        ActorKind::Officer => {
            let subject = n
                .params
                .get("subject")
                .ok_or_else(|| bad("subject: whose grants (officers see one subject's at a time)"))?;
            subjects.push(Some(subject.to_string()));
        }
        _ => subjects.push(n.params.get("subject").map(str::to_string)),
    }
    let mut out = Vec::new();
    for sub in subjects {
        out.extend(svc.grants(sub.as_deref(), limit).await?);
    }
    Ok(plain(StatusCode::OK, Value::Array(out)))
}

/// GET /api/v1/review-queue — what waits on the caller's departments:
/// applications in review and bundle steps, most urgent first.
pub async fn review_queue(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = services(&s)?;
    let a = actor(&n);
    let departments: Vec<String> = match a.kind {
        ActorKind::Officer => a.departments.clone(),
        ActorKind::Administrator => {
            let mut d: Vec<String> = svc.catalog().services.values().map(|x| x.department.clone()).collect();
            d.extend(
                svc.catalog()
                    .bundles
                    .values()
                    .flat_map(|b| b.steps.iter().map(|st| st.department.clone())),
            );
            d.sort();
            d.dedup();
            d
        }
        _ => Vec::new(),
    };
    let mut apps = Vec::new();
    let mut steps = Vec::new();
    for d in &departments {
        apps.extend(svc.applications(None, Some(d), Some("in_review"), 1000).await?);
        let f = InstanceFilter {
            waiting_on: Some(d.clone()),
            limit: 1000,
            ..InstanceFilter::default()
        };
        for i in svc.instances(&f).await? {
            let Some(b) = svc.catalog().bundles.get(&i.bundle) else {
                continue;
            };
            for st in b.steps.iter().filter(|st| &st.department == d) {
                let state = &i.steps[&st.id];
                if state.status == citybrain_services::StepStatus::Waiting {
                    steps.push(
                        json!({"instance": i.id, "bundle": b.title, "subject": i.subject, "step": st.id,
                                      "title": st.title, "department": d, "started": state.started, "due": state.due,
                                      "warned": state.warned, "escalated": state.escalated}),
                    );
                }
            }
        }
    }
    apps.sort_by_key(|x| x.due);
    steps.sort_by(|x, y| x["due"].as_str().cmp(&y["due"].as_str()));
    Ok(plain(
        StatusCode::OK,
        json!({"departments": departments, "applications": apps, "steps": steps}),
    ))
}

/// GET /api/v1/service-metrics — the services cockpit's figures.
pub async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    ok(services(&s)?.figures().await?)
}

/// GET /api/v1/me — who the services take the caller for.
/// The public gets `{"kind": "public"}` (the portal then offers to log in).
pub async fn me(n: Ngsi) -> ApiResult<Response> {
    if n.caller.principal.role == Role::Public {
        return ok(json!({"id": "public", "kind": "public"}));
    }
    ok(actor(&n))
}

/// GET /api/v1/openapi.json
pub async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
