//! Handlers for the temporal API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use citybrain_hub::{RequestContext, TemporalEntity, TemporalRequest};
use citybrain_ngsild::temporal::{render_entity, AggrMethod, TemporalFormat, TemporalQuery};
use citybrain_ngsild::{time, NgsiError};
use serde_json::Value;

use crate::entities::page;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Ngsi, Params};
use crate::guard;
use crate::respond::{
    body, created, entity_query, entity_query_body, no_content, render_options, require_filter, with_header, QueryFor,
};
use crate::AppState;

fn request(p: &Params, ctx: &RequestContext) -> ApiResult<(TemporalRequest, TemporalFormat)> {
    let tq = TemporalQuery::new(
        p.get("timerel"),
        p.get("timeAt"),
        p.get("endTimeAt"),
        p.get("timeproperty"),
        p.get("lastN"),
    )?;
    let attrs = p.list("attrs");
    let mut req = TemporalRequest {
        attrs: if attrs.is_empty() {
            None
        } else {
            Some(attrs.iter().map(|a| ctx.terms.expand(a)).collect())
        },
        tq,
        limit: None,
        aggregate: false,
    };
    let fmt = if p.has_option("aggregatedValues") || p.get("format") == Some("aggregatedValues") {
        let methods = match p.get("aggrMethods") {
            Some(m) => AggrMethod::parse_list(m)?,
            None => return Err(NgsiError::bad_data("aggregatedValues needs aggrMethods (e.g. avg,max)").into()),
        };
        let period_s = match p.get("aggrPeriodDuration") {
            None => None,
            Some(d) => Some(time::parse_duration_secs(d).filter(|s| *s > 0.0).ok_or_else(|| {
                NgsiError::bad_data(format!(
                    "aggrPeriodDuration '{d}' is not an ISO 8601 duration such as PT1H"
                ))
            })?),
        };
        req.aggregate = true;
        TemporalFormat::Aggregated { methods, period_s }
    } else if p.has_option("temporalValues") || p.get("format") == Some("temporalValues") {
        TemporalFormat::TemporalValues
    } else {
        TemporalFormat::Normalized
    };
    Ok((req, fmt))
}

fn render_one(
    t: &TemporalEntity,
    ctx: &RequestContext,
    p: &Params,
    fmt: &TemporalFormat,
    req: &TemporalRequest,
) -> ApiResult<Value> {
    let mut o = render_options(
        &Params::from_pairs(
            p.pairs()
                .iter()
                .filter(|(k, _)| k != "options" && k != "format")
                .cloned()
                .collect(),
        ),
        ctx,
    )?;
    o.sys_attrs = p.has_option("sysAttrs");
    Ok(render_entity(&t.id, &t.types, &t.attrs, &ctx.terms, &o, fmt, &req.tq))
}

/// `Content-Range: date-time <first>-<last>/<total>` over the instances
/// returned; with lastN the range reads from the newest back (6.3.17).
fn content_range(status_list: &[&TemporalEntity], newest_first: bool) -> Option<String> {
    let (from, to, total) = status_list.iter().filter_map(|t| t.truncated).fold(
        None,
        |acc: Option<(_, _, usize)>, (a, b, n)| match acc {
            None => Some((a, b, n)),
            Some((x, y, m)) => Some((x.min(a), y.max(b), m.max(n))),
        },
    )?;
    let (a, b) = if newest_first { (to, from) } else { (from, to) };
    Some(format!("date-time {}-{}/{}", time::format(&a), time::format(&b), total))
}

/// The history of entities the caller may see, cut to the attributes they
/// may read (judged on each entity as it is now), its reading audited.
async fn release(s: &AppState, n: &Ngsi, list: &mut [TemporalEntity]) -> ApiResult<()> {
    let ids: Vec<String> = list.iter().map(|t| t.id.clone()).collect();
    let current = s.hub.entities_by_id(&n.tenant, &ids).await?;
    let v = &n.caller.visibility;
    for t in list.iter_mut() {
        match current.iter().find(|e| e.id == t.id) {
            Some(e) => {
                guard::visible(n, e)?;
                if let Some(allowed) = v.readable_attrs(e) {
                    t.attrs.retain(|a, _| allowed.contains(a));
                }
            }
            // History of a deleted entity: the administrator's only.
            None if v.is_everything() => {}
            None => return Err(NgsiError::not_found(format!("entity {} not found", t.id)).into()),
        }
    }
    guard::record(s, n, "read", "temporal", &current).await
}

pub async fn retrieve(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let (req, fmt) = request(&n.params, &ctx)?;
    let mut t = s.hub.temporal_retrieve(&n.tenant, &id, &req).await?;
    release(&s, &n, std::slice::from_mut(&mut t)).await?;
    let v = render_one(&t, &ctx, &n.params, &fmt, &req)?;
    Ok(match content_range(&[&t], req.tq.last_n.is_some()) {
        Some(cr) => with_header(
            body(StatusCode::PARTIAL_CONTENT, v, &ctx, n.accept),
            "content-range",
            cr,
        ),
        None => body(StatusCode::OK, v, &ctx, n.accept),
    })
}

async fn run_query(
    s: &AppState,
    n: &Ngsi,
    ctx: &RequestContext,
    q: citybrain_ngsild::selector::EntityQuery,
    params: &Params,
) -> ApiResult<Response> {
    let (req, fmt) = request(params, ctx)?;
    let page = page(params, &s.hub)?;
    let mut q = q;
    guard::restrict(n, &mut q);
    let (mut list, total) = s.hub.temporal_query(&n.tenant, &q, &req, page).await?;
    release(s, n, &mut list).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|t| render_one(t, ctx, params, &fmt, &req))
        .collect::<ApiResult<_>>()?;
    let refs: Vec<&TemporalEntity> = list.iter().collect();
    let mut r = match content_range(&refs, req.tq.last_n.is_some()) {
        Some(cr) => with_header(
            body(StatusCode::PARTIAL_CONTENT, Value::Array(items), ctx, n.accept),
            "content-range",
            cr,
        ),
        None => body(StatusCode::OK, Value::Array(items), ctx, n.accept),
    };
    if let Some(t) = total {
        r = with_header(r, "ngsild-results-count", t.to_string());
    }
    Ok(r)
}

pub async fn query(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let q = entity_query(&n.params, &ctx, &s.hub)?;
    require_filter(&q, &n.params)?;
    let params = n.params.clone();
    run_query(&s, &n, &ctx, q, &params).await
}

pub async fn query_post(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    let obj = b
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("a Query body must be a JSON object"))?;
    let (q, extra) = entity_query_body(obj, &ctx, &s.hub, QueryFor::Temporal)?;
    let params = n.params.overlay(&extra);
    run_query(&s, &n, &ctx, q, &params).await
}

pub async fn create(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    guard::may_create(
        &n,
        &guard::body_types(&b, &ctx.terms),
        &guard::body_attrs(&b, &ctx.terms),
    )?;
    if let Some(id) = b.get("id").and_then(Value::as_str) {
        guard::may_change(&s, &n, id, &guard::body_attrs(&b, &ctx.terms), "write").await?;
    }
    let is_new = s.hub.temporal_create(&n.tenant, &b, &ctx).await?;
    if is_new {
        let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
        Ok(created("/ngsi-ld/v1/temporal/entities", id))
    } else {
        Ok(no_content())
    }
}

pub async fn delete(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    guard::may_change(&s, &n, &id, &[], "delete").await?;
    s.hub.delete_entity(&n.tenant, &id).await?;
    Ok(no_content())
}

pub async fn add_attrs(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    guard::may_change(&s, &n, &id, &guard::body_attrs(&b, &ctx.terms), "write").await?;
    s.hub.temporal_add_attrs(&n.tenant, &id, &b, &ctx).await?;
    Ok(no_content())
}

pub async fn delete_attr(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, attr)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    guard::may_change(&s, &n, &id, &[ctx.terms.expand(&attr)], "write").await?;
    s.hub
        .temporal_delete_attr(
            &n.tenant,
            &id,
            &attr,
            &ctx,
            n.params.get("datasetId"),
            n.params.bool("deleteAll")?,
        )
        .await?;
    Ok(no_content())
}

pub async fn patch_instance(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, attr, instance)): Path<(String, String, String)>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    guard::may_change(&s, &n, &id, &[ctx.terms.expand(&attr)], "write").await?;
    s.hub
        .temporal_patch_instance(&n.tenant, &id, &attr, &instance, &b, &ctx)
        .await?;
    Ok(no_content())
}

pub async fn delete_instance(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, attr, instance)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    guard::may_change(&s, &n, &id, &[ctx.terms.expand(&attr)], "write").await?;
    s.hub
        .temporal_delete_instance(&n.tenant, &id, &attr, &instance, &ctx)
        .await?;
    Ok(no_content())
}
