//! Handlers for subscriptions, their SSE streams, and `/jsonldContexts`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use citybrain_hub::Hub;
use citybrain_ngsild::NgsiError;
use futures::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tokio_stream::wrappers::BroadcastStream;

use crate::entities::page;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Ngsi};
use crate::respond::{body, created, no_content, plain, with_header};
use crate::AppState;

/// The member naming who made a subscription; set by the server, never by a client.
const OWNER: &str = "citybrainOwner";

fn is_admin(n: &Ngsi) -> bool {
    n.caller.principal.role == citybrain_trust::Role::Admin
}

/// Only its creator (and an administrator) may see, change, stream or
/// delete a subscription: others are told it does not exist.
async fn owned(s: &AppState, n: &Ngsi, id: &str) -> ApiResult<()> {
    if is_admin(n) {
        return Ok(());
    }
    let doc = s.hub.get_subscription(&n.tenant, id).await?;
    if doc.get(OWNER).and_then(Value::as_str) == Some(n.caller.principal.actor.as_str()) {
        Ok(())
    } else {
        Err(NgsiError::not_found(format!("subscription {id} not found")).into())
    }
}

pub async fn create(State(s): State<AppState>, n: Ngsi, JsonBody(mut b): JsonBody) -> ApiResult<Response> {
    if let Some(m) = b.as_object_mut() {
        m.insert(OWNER.into(), Value::String(n.caller.principal.actor.clone()));
    }
    let ctx = n.context(&s.hub, Some(&b)).await?;
    crate::guard::may_subscribe(&n, &b, &ctx.terms, true)?;
    let id = s.hub.create_subscription(&n.tenant, &b, &ctx).await?;
    Ok(created("/ngsi-ld/v1/subscriptions", &id))
}

pub async fn list(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let p = page(&n.params, &s.hub)?;
    if p.limit > s.hub.limits().max_page {
        return Err(NgsiError::new(
            citybrain_ngsild::ErrorKind::TooManyResults,
            format!("limit is above {}", s.hub.limits().max_page),
        )
        .into());
    }
    let (items, total) = if is_admin(&n) {
        s.hub.list_subscriptions(&n.tenant, p).await?
    } else {
        // Each caller lists their own (a tenant has a bounded number of subscriptions).
        let all = citybrain_store::Page {
            offset: 0,
            limit: usize::MAX,
            count: false,
        };
        let me = n.caller.principal.actor.as_str();
        let mine: Vec<Value> = s
            .hub
            .list_subscriptions(&n.tenant, all)
            .await?
            .0
            .into_iter()
            .filter(|d| d.get(OWNER).and_then(Value::as_str) == Some(me))
            .collect();
        let total = mine.len();
        (mine.into_iter().skip(p.offset).take(p.limit).collect(), total)
    };
    let mut r = body(StatusCode::OK, Value::Array(items), &ctx, n.accept);
    if p.count {
        r = with_header(r, "ngsild-results-count", total.to_string());
    }
    Ok(r)
}

pub async fn get(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    owned(&s, &n, &id).await?;
    Ok(body(
        StatusCode::OK,
        s.hub.get_subscription(&n.tenant, &id).await?,
        &ctx,
        n.accept,
    ))
}

pub async fn update(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(mut b): JsonBody,
) -> ApiResult<Response> {
    owned(&s, &n, &id).await?;
    if let Some(m) = b.as_object_mut() {
        m.remove(OWNER);
    }
    let ctx = n.context(&s.hub, Some(&b)).await?;
    crate::guard::may_subscribe(&n, &b, &ctx.terms, false)?;
    s.hub.update_subscription(&n.tenant, &id, &b, &ctx).await?;
    Ok(no_content())
}

pub async fn delete(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    owned(&s, &n, &id).await?;
    s.hub.delete_subscription(&n.tenant, &id).await?;
    Ok(no_content())
}

/// GET /ngsi-ld/v1/subscriptions/{id}/stream — Server-Sent Events, one
/// `notification` event per notification (data: the Notification JSON, id: a
/// per-subscription sequence). Send `Last-Event-ID` to resume; when the gap
/// is older than the server keeps, a `resync` event tells the client to
/// re-read current state first.
pub async fn stream(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    owned(&s, &n, &id).await?;
    let sub = s.hub.stream(&n.tenant, &id, last).await?;
    Ok(sse(sub, s.hub.streams_closed()).into_response())
}

/// The stream ends when `closed` resolves (the server shuts down).
fn sse(
    sub: citybrain_hub::StreamSubscription,
    closed: impl std::future::Future<Output = ()> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut first = Vec::new();
    if sub.gap {
        first.push(Event::default().event("resync").data("{}"));
    }
    let newest_backlog = sub.backlog.last().map(|e| e.id).unwrap_or(0);
    first.extend(sub.backlog.into_iter().map(|e| {
        Event::default()
            .event("notification")
            .id(e.id.to_string())
            .data(e.data.as_ref())
    }));
    let live = BroadcastStream::new(sub.rx).filter_map(move |r| async move {
        match r {
            Ok(e) if e.id > newest_backlog => Some(
                Event::default()
                    .event("notification")
                    .id(e.id.to_string())
                    .data(e.data.as_ref()),
            ),
            Ok(_) => None,
            // The consumer fell behind the broadcast buffer: tell it to resync.
            Err(_) => Some(Event::default().event("resync").data("{}")),
        }
    });
    let events = stream::iter(first)
        .chain(live)
        .take_until(closed)
        .map(Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
}

/// This server as the client reached it, for the URLs of hosted contexts.
fn base_url(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default()
}

pub async fn add_context(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let rec = s.hub.add_context(&n.tenant, b).await?;
    Ok(created("/ngsi-ld/v1/jsonldContexts", &rec.id))
}

pub async fn list_contexts(State(s): State<AppState>, n: Ngsi, headers: HeaderMap) -> ApiResult<Response> {
    let all = s.hub.list_contexts(&n.tenant, n.params.get("kind")).await?;
    let base = base_url(&headers);
    let v: Vec<Value> = if n.params.bool("details")? {
        all.iter().map(|c| Hub::context_details(c, &base)).collect()
    } else {
        all.iter()
            .map(|c| {
                if c.kind != "Cached" {
                    json!(format!("{base}/ngsi-ld/v1/jsonldContexts/{}", c.id))
                } else {
                    json!(c.url)
                }
            })
            .collect()
    };
    Ok(plain(StatusCode::OK, Value::Array(v)))
}

pub async fn get_context(
    State(s): State<AppState>,
    n: Ngsi,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    // details=true: the record, not the document (5.13.4).
    if n.params.bool("details")? {
        let rec = s.hub.context_record(&n.tenant, &id).await?;
        return Ok(plain(StatusCode::OK, Hub::context_details(&rec, &base_url(&headers))));
    }
    let v = s.hub.get_context(&n.tenant, &id).await?;
    let mut r = plain(StatusCode::OK, v);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/ld+json"),
    );
    Ok(r)
}

pub async fn delete_context(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    s.hub.delete_context(&n.tenant, &id, n.params.bool("reload")?).await?;
    Ok(no_content())
}
