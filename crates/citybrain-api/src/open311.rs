//! The Open311 GeoReport v2 facade at `/open311/v2/`, over the appeals:
//! discovery, `services`, service definitions, `requests` (GET with its
//! filters, POST with an `api_key`), `requests/{id}`, `tokens/{token}`,
//! and mySociety's `servicerequestupdates` extension, in JSON and XML,
//! with the `page`/`page_size` pagination extension. Shapes and error
//! codes follow the specification (wiki.open311.org/GeoReport_v2): errors
//! are a list of `{code, description}` with HTTP 400, 403 or 404.
//!
//! Every request is realtime: a POST returns the `service_request_id` at
//! once (its token resolves to itself). Open311 knows two states; ours map
//! to `open` and `closed`, and `status_notes` carries the latest public note.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use citybrain_appeals::appeal::Channel;
use citybrain_appeals::config::Datatype;
use citybrain_appeals::{Actor, ActorKind, Appeal, Filing, Location, Status};
use citybrain_appeals_hub::{Appeals, Filter};
use citybrain_trust::Role;
use serde_json::{json, Value};

use crate::appeals::appeals;
use crate::AppState;

/// The longest span a `requests` search may cover (the specification's 90 days).
const MAX_SPAN_DAYS: i64 = 90;
const DEFAULT_PAGE_SIZE: usize = 1000;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Xml,
}

/// An Open311 error: its HTTP status and its description.
struct Fail(StatusCode, String);

type R<T> = Result<T, Fail>;

fn fail(status: StatusCode, m: impl Into<String>) -> Fail {
    Fail(status, m.into())
}

/// `name.json` or `name.xml` → (name, format).
fn split_format(file: &str) -> Option<(&str, Format)> {
    if let Some(n) = file.strip_suffix(".json") {
        Some((n, Format::Json))
    } else {
        file.strip_suffix(".xml").map(|n| (n, Format::Xml))
    }
}

/// The element name of each list's items in XML.
fn item_name(list: &str) -> &'static str {
    match list {
        "services" => "service",
        "attributes" => "attribute",
        "values" => "value",
        "errors" => "error",
        "endpoints" => "endpoint",
        "formats" => "format",
        "service_request_updates" => "request_update",
        _ => "request",
    }
}

fn xml_value(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for i in items {
                xml_value(out, item_name(name), i);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(m) => {
            out.push_str(&format!("<{name}>"));
            for (k, x) in m {
                xml_value(out, k, x);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", quick_xml::escape::escape(s.as_str()))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

/// The response: JSON as it is, or XML with `root` around a list.
fn respond(status: StatusCode, fmt: Format, root: &str, v: Value) -> Response {
    let (body, ct) = match fmt {
        Format::Json => (v.to_string(), "application/json; charset=utf-8"),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            xml_value(&mut out, root, &v);
            (out, "text/xml; charset=utf-8")
        }
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn error_response(fmt: Format, f: Fail) -> Response {
    let Fail(status, description) = f;
    respond(
        status,
        fmt,
        "errors",
        json!([{"code": status.as_u16(), "description": description}]),
    )
}

fn finish(fmt: Format, root: &str, r: R<Value>) -> Response {
    match r {
        Ok(v) => respond(StatusCode::OK, fmt, root, v),
        Err(f) => error_response(fmt, f),
    }
}

fn from_appeals(e: citybrain_appeals_hub::Error) -> Fail {
    use citybrain_appeals::AppealsError as E;
    match e {
        citybrain_appeals_hub::Error::Appeal(E::Invalid(m)) => fail(StatusCode::BAD_REQUEST, m),
        citybrain_appeals_hub::Error::Appeal(E::Forbidden(m)) => fail(StatusCode::FORBIDDEN, m),
        citybrain_appeals_hub::Error::Appeal(E::NotFound(m)) => fail(StatusCode::NOT_FOUND, m),
        citybrain_appeals_hub::Error::Appeal(E::Conflict(m)) => fail(StatusCode::BAD_REQUEST, m),
        other => {
            tracing::error!("open311: {other}");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "the request could not be completed")
        }
    }
}

fn service_of(s: &AppState) -> R<&Appeals> {
    appeals(s).map_err(|_| fail(StatusCode::NOT_FOUND, "this server runs no appeals (--appeals DIR)"))
}

fn params(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .find(|(x, _)| x == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A `jurisdiction_id` must be ours when given (404 otherwise).
fn check_jurisdiction(svc: &Appeals, p: &[(String, String)]) -> R<()> {
    match (param(p, "jurisdiction_id"), &svc.config().jurisdiction) {
        (Some(j), Some(ours)) if j != ours => Err(fail(
            StatusCode::NOT_FOUND,
            format!("jurisdiction_id '{j}' is not served here (this endpoint serves {ours})"),
        )),
        (Some(j), None) => Err(fail(
            StatusCode::NOT_FOUND,
            format!("jurisdiction_id '{j}' is not served here"),
        )),
        _ => Ok(()),
    }
}

fn local(svc: &Appeals) -> FixedOffset {
    svc.config().calendar.offset
}

fn stamp(t: DateTime<Utc>, off: FixedOffset) -> String {
    t.with_timezone(&off)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn department_name(svc: &Appeals, id: &str) -> String {
    svc.config().department(id).map_or(id.to_string(), |d| d.name.clone())
}

/// A request as GeoReport v2 describes it (public data only).
async fn request_json(svc: &Appeals, a: &Appeal) -> R<Value> {
    let off = local(svc);
    let p = a.public();
    let notes = svc.updates(&a.id).await.map_err(from_appeals)?;
    let cat = svc.config().category(&a.category);
    Ok(json!({
        "service_request_id": a.id,
        "status": a.status.open311(),
        "status_notes": notes.last().map(|u| u.public_note.clone()),
        "service_name": cat.map(|c| c.name.clone()),
        "service_code": a.category,
        "description": p.description,
        "agency_responsible": department_name(svc, &a.department),
        "service_notice": format!("Answered within {}", cat.map_or("the SLA".to_string(), |c| c.sla.to_string())),
        "requested_datetime": stamp(a.filed_at, off),
        "updated_datetime": stamp(a.updated_at, off),
        "expected_datetime": stamp(a.due, off),
        "address": p.location.as_ref().and_then(|l| l.address.clone()),
        "address_id": Value::Null,
        "zipcode": Value::Null,
        "lat": p.location.as_ref().map(|l| l.lat),
        "long": p.location.as_ref().map(|l| l.lon),
        "media_url": a.attachments.first(),
    }))
}

fn discovery_json(base: &str) -> Value {
    json!({
        "changeset": "2026-12-07T00:00:00+08:00",
        "contact": "The city's 12345 hotline",
        "key_service": "An api_key is a citybrain API token (citybrain token create); GETs need none.",
        "endpoints": [{
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": format!("{base}/open311/v2"),
            "changeset": "2026-12-07T00:00:00+08:00",
            "type": "production",
            "formats": ["application/json", "text/xml"],
        }],
    })
}

fn base_url(h: &HeaderMap) -> String {
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// GET /open311/v2/{file}: discovery, services, requests, servicerequestupdates.
pub async fn top(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(file): Path<String>,
    q: axum::extract::RawQuery,
) -> Response {
    let Some((name, fmt)) = split_format(&file) else {
        return error_response(
            Format::Json,
            fail(
                StatusCode::NOT_FOUND,
                format!("no resource {file}: name.json or name.xml"),
            ),
        );
    };
    let p = params(q.0.as_deref());
    match name {
        "discovery" => finish(fmt, "discovery", Ok(discovery_json(&base_url(&h)))),
        "services" => finish(fmt, "services", services(&s, &p)),
        "requests" => finish(fmt, "service_requests", requests(&s, &p).await),
        "servicerequestupdates" => finish(fmt, "service_request_updates", updates(&s, &p).await),
        _ => error_response(fmt, fail(StatusCode::NOT_FOUND, format!("no resource {name}"))),
    }
}

fn services(s: &AppState, p: &[(String, String)]) -> R<Value> {
    let svc = service_of(s)?;
    check_jurisdiction(svc, p)?;
    Ok(Value::Array(
        svc.config()
            .categories
            .iter()
            .map(|c| {
                json!({
                    "service_code": c.code,
                    "service_name": c.name,
                    "description": c.description,
                    "metadata": !c.attributes.is_empty(),
                    "type": "realtime",
                    "keywords": c.keywords.join(","),
                    "group": c.group,
                })
            })
            .collect(),
    ))
}

/// GET /open311/v2/services/{code}.{fmt} — a service definition.
pub async fn definition(State(s): State<AppState>, Path(file): Path<String>, q: axum::extract::RawQuery) -> Response {
    let Some((code, fmt)) = split_format(&file) else {
        return error_response(
            Format::Json,
            fail(StatusCode::NOT_FOUND, "services/{service_code}.json or .xml"),
        );
    };
    let p = params(q.0.as_deref());
    let r = (|| {
        let svc = service_of(&s)?;
        check_jurisdiction(svc, &p)?;
        let c = svc.config().category(code).ok_or_else(|| {
            fail(
                StatusCode::NOT_FOUND,
                format!("service_code '{code}' is not a service here"),
            )
        })?;
        let attributes: Vec<Value> = c
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({
                    "variable": a.variable,
                    "code": a.code,
                    "datatype": serde_json::to_value(a.datatype).unwrap_or(Value::Null),
                    "required": a.required,
                    "datatype_description": a.datatype_description,
                    "order": i + 1,
                    "description": a.description,
                    "values": a.values.iter().map(|v| json!({"key": v.key, "name": v.name})).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({"service_code": c.code, "attributes": attributes}))
    })();
    finish(fmt, "service_definition", r)
}

fn time_param(p: &[(String, String)], k: &str) -> R<Option<DateTime<Utc>>> {
    param(p, k)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    fail(
                        StatusCode::BAD_REQUEST,
                        format!("{k} '{v}' is not a W3C date-time like 2026-12-01T00:00:00+08:00"),
                    )
                })
        })
        .transpose()
}

/// (start, end) of a search: the last 90 days by default, at most 90 days.
fn window(svc: &Appeals, p: &[(String, String)]) -> R<(DateTime<Utc>, DateTime<Utc>)> {
    let now = svc.now();
    let end = time_param(p, "end_date")?;
    let start = time_param(p, "start_date")?;
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, (s + Duration::days(MAX_SPAN_DAYS)).min(now.max(s))),
        (None, Some(e)) => (e - Duration::days(MAX_SPAN_DAYS), e),
        (None, None) => (now - Duration::days(MAX_SPAN_DAYS), now),
    };
    if end < start {
        return Err(fail(StatusCode::BAD_REQUEST, "end_date is before start_date"));
    }
    if end - start > Duration::days(MAX_SPAN_DAYS) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("start_date to end_date spans more than {MAX_SPAN_DAYS} days"),
        ));
    }
    Ok((start, end))
}

fn paging(p: &[(String, String)]) -> R<(usize, usize)> {
    let num = |k: &str, d: usize| -> R<usize> {
        param(p, k)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| fail(StatusCode::BAD_REQUEST, format!("{k} '{v}' is not a whole number")))
            })
            .transpose()
            .map(|x| x.unwrap_or(d))
    };
    let page = num("page", 1)?;
    let size = num("page_size", DEFAULT_PAGE_SIZE)?;
    if page == 0 || !(1..=DEFAULT_PAGE_SIZE).contains(&size) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("page from 1, page_size from 1 to {DEFAULT_PAGE_SIZE}"),
        ));
    }
    Ok(((page - 1) * size, size))
}

async fn requests(s: &AppState, p: &[(String, String)]) -> R<Value> {
    let svc = service_of(s)?;
    check_jurisdiction(svc, p)?;
    let (offset, size) = paging(p)?;
    let list = |k: &str| -> Vec<String> {
        param(p, k)
            .map(|v| {
                v.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ids = list("service_request_id");
    let mut f = Filter {
        public_only: true,
        ..Filter::default()
    };
    if !ids.is_empty() {
        // The ids override every other filter (the specification's rule).
        f.ids = ids;
    } else {
        let (start, end) = window(svc, p)?;
        f.since = Some(start.timestamp());
        f.until = Some(end.timestamp());
        f.categories = list("service_code");
        if let Some(unknown) = f.categories.iter().find(|c| svc.config().category(c).is_none()) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("service_code '{unknown}' is not a service here"),
            ));
        }
        let statuses = list("status");
        if !statuses.is_empty() {
            let mut want = Vec::new();
            for st in &statuses {
                match st.as_str() {
                    "open" => want.extend([
                        Status::Routed,
                        Status::InProgress,
                        Status::AwaitingCitizen,
                        Status::Answered,
                        Status::Reopened,
                    ]),
                    "closed" => want.extend([Status::Closed, Status::Duplicate]),
                    other => {
                        return Err(fail(
                            StatusCode::BAD_REQUEST,
                            format!("status '{other}': open or closed"),
                        ))
                    }
                }
            }
            f.statuses = want;
        }
    }
    let (items, _) = svc.list(&f, offset, size).await.map_err(from_appeals)?;
    let mut out = Vec::with_capacity(items.len());
    for a in &items {
        out.push(request_json(svc, a).await?);
    }
    Ok(Value::Array(out))
}

/// GET /open311/v2/requests/{id}.{fmt} and /tokens/{token}.{fmt}.
pub async fn request(State(s): State<AppState>, Path(file): Path<String>, q: axum::extract::RawQuery) -> Response {
    one(s, file, q, false).await
}

pub async fn token(State(s): State<AppState>, Path(file): Path<String>, q: axum::extract::RawQuery) -> Response {
    one(s, file, q, true).await
}

async fn one(s: AppState, file: String, q: axum::extract::RawQuery, token: bool) -> Response {
    let Some((id, fmt)) = split_format(&file) else {
        return error_response(Format::Json, fail(StatusCode::NOT_FOUND, "{id}.json or {id}.xml"));
    };
    let p = params(q.0.as_deref());
    let r = async {
        let svc = service_of(&s)?;
        check_jurisdiction(svc, &p)?;
        let a = svc
            .get(id)
            .await
            .map_err(from_appeals)?
            .filter(|a| !a.hidden)
            .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no service request {id}")))?;
        if token {
            // Every request here is realtime: its token is its id.
            return Ok(json!([{"service_request_id": a.id, "token": a.id}]));
        }
        Ok(Value::Array(vec![request_json(svc, &a).await?]))
    }
    .await;
    finish(fmt, "service_requests", r)
}

/// The caller of a POST, from its `api_key` (403 without a valid one).
async fn api_caller(s: &AppState, key: Option<&str>) -> R<Actor> {
    let key = key.ok_or_else(|| fail(StatusCode::FORBIDDEN, "api_key is required to create a request"))?;
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| fail(StatusCode::FORBIDDEN, "api_key is not valid"))?;
    h.insert(header::AUTHORIZATION, v);
    let p = s
        .auth
        .identify(&h)
        .await
        .map_err(|_| fail(StatusCode::FORBIDDEN, "api_key is not valid"))?;
    if p.role == Role::Public {
        return Err(fail(StatusCode::FORBIDDEN, "api_key is not valid"));
    }
    Ok(Actor {
        id: p.actor.clone(),
        kind: match p.role {
            Role::Admin => ActorKind::Administrator,
            Role::Officer => ActorKind::Officer,
            Role::Enterprise => ActorKind::Enterprise,
            _ => ActorKind::Citizen,
        },
        departments: p.departments.clone(),
        subject: p.subject.clone(),
    })
}

/// POST /open311/v2/requests.{fmt} — form-encoded, with an api_key.
pub async fn create(State(s): State<AppState>, h: HeaderMap, Path(file): Path<String>, body: Bytes) -> Response {
    let Some(("requests", fmt)) = split_format(&file) else {
        return error_response(
            Format::Json,
            fail(StatusCode::NOT_FOUND, "POST requests.json or requests.xml"),
        );
    };
    let r = async {
        if body.len() > s.limits.max_body_bytes {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("the body is over {} bytes", s.limits.max_body_bytes),
            ));
        }
        let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "the body is application/x-www-form-urlencoded",
            ));
        }
        let p: Vec<(String, String)> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let svc = service_of(&s)?;
        check_jurisdiction(svc, &p)?;
        let by = api_caller(&s, param(&p, "api_key")).await?;
        let code =
            param(&p, "service_code").ok_or_else(|| fail(StatusCode::BAD_REQUEST, "service_code is required"))?;
        let cat = svc.config().category(code).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("service_code '{code}' is not a service here"),
            )
        })?;
        let num = |k: &str| -> R<Option<f64>> {
            param(&p, k)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| fail(StatusCode::BAD_REQUEST, format!("{k} '{v}' is not a number")))
                })
                .transpose()
        };
        let (lat, lon) = (num("lat")?, num("long")?);
        let address = param(&p, "address_string").map(str::to_string);
        let location = match (lat, lon) {
            (Some(lat), Some(lon)) => Some(Location {
                lat,
                lon,
                address: address.clone(),
            }),
            (None, None) => None,
            _ => return Err(fail(StatusCode::BAD_REQUEST, "lat and long come together")),
        };
        if location.is_none() && address.is_none() && param(&p, "address_id").is_none() {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "a location is required: lat and long, address_string or address_id",
            ));
        }
        // attribute[code]=v and attribute[code][]=v (multi-value lists).
        let mut attributes = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (k, v) in &p {
            if let Some(rest) = k.strip_prefix("attribute[") {
                let code = rest.trim_end_matches("[]").trim_end_matches(']');
                attributes.entry(code.to_string()).or_default().push(v.clone());
            }
        }
        for a in &cat.attributes {
            if matches!(a.datatype, Datatype::Datetime) {
                if let Some(bad) = attributes
                    .get(&a.code)
                    .and_then(|v| v.iter().find(|x| DateTime::parse_from_rfc3339(x).is_err()))
                {
                    return Err(fail(
                        StatusCode::BAD_REQUEST,
                        format!("attribute[{}] '{bad}' is not a date-time", a.code),
                    ));
                }
            }
        }
        let name = [param(&p, "first_name"), param(&p, "last_name")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let contact = [param(&p, "email"), param(&p, "phone")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let mut description = param(&p, "description").unwrap_or(cat.name.as_str()).to_string();
        if location.is_none() {
            // No point to route or search by: the address travels in the text.
            for (k, label) in [("address_string", "Address"), ("address_id", "Address id")] {
                if let Some(a) = param(&p, k) {
                    description.push_str(&format!("\n{label}: {a}"));
                }
            }
        }
        let filing = Filing {
            category: Some(code.to_string()),
            description,
            location,
            attachments: param(&p, "media_url").map(|m| vec![m.to_string()]).unwrap_or_default(),
            name: (!name.is_empty()).then_some(name),
            contact: (!contact.is_empty()).then_some(contact),
            attributes,
            ..Filing::default()
        };
        let filed = svc.file(filing, &by, Channel::Open311).await.map_err(from_appeals)?;
        let dept = department_name(svc, &filed.appeal.department);
        Ok(json!([{
            "service_request_id": filed.appeal.id,
            "service_notice": format!("Sent to {dept}; expected by {}", stamp(filed.appeal.due, local(svc))),
            "account_id": param(&p, "account_id"),
        }]))
    }
    .await;
    match r {
        Ok(v) => respond(StatusCode::CREATED, fmt, "service_requests", v),
        Err(f) => error_response(fmt, f),
    }
}

/// mySociety's extension: the updates made between two dates, public notes only.
async fn updates(s: &AppState, p: &[(String, String)]) -> R<Value> {
    let svc = service_of(s)?;
    check_jurisdiction(svc, p)?;
    let (offset, size) = paging(p)?;
    let (start, end) = window(svc, p)?;
    let off = local(svc);
    let mut ups = svc
        .updates_between(start.timestamp(), end.timestamp(), offset, size)
        .await
        .map_err(from_appeals)?;
    // Nothing of an appeal hidden from the public.
    let ids: std::collections::BTreeSet<String> = ups.iter().map(|u| u.appeal.clone()).collect();
    let shown: std::collections::BTreeSet<String> = if ids.is_empty() {
        Default::default()
    } else {
        let f = Filter {
            ids: ids.into_iter().collect(),
            public_only: true,
            ..Filter::default()
        };
        let (a, _) = svc.list(&f, 0, 1000).await.map_err(from_appeals)?;
        a.into_iter().map(|a| a.id).collect()
    };
    ups.retain(|u| shown.contains(&u.appeal));
    Ok(Value::Array(
        ups.iter()
            .map(|u| {
                json!({
                    "update_id": format!("{}-{}", u.appeal, u.seq),
                    "service_request_id": u.appeal,
                    "status": u.status.open311(),
                    "updated_datetime": stamp(u.at, off),
                    "description": u.public_note,
                    "media_url": Value::Null,
                })
            })
            .collect(),
    ))
}
