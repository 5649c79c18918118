//! Handlers for entities, attributes, batch operations, purge and discovery.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_hub::{BatchOp, BatchResult, Hub, Purge, RequestContext, UpdateResult};
use citybrain_ngsild::render::{self, RenderOptions};
use citybrain_ngsild::{Entity, NgsiError};
use citybrain_store::Page;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Accept, JsonBody, Ngsi, Params};
use crate::join::{join_params, render_joined};
use crate::respond::{
    body, created, entity_query, entity_query_body, no_content, plain, render_options, require_filter, with_header,
    QueryFor,
};
use crate::AppState;

/// Pagination (GS CIM 009 V1.8.1, 5.5.9): `limit=0` only asks for the
/// count, so it needs `count=true`.
pub fn page(p: &Params, hub: &Hub) -> ApiResult<Page> {
    let page = Page {
        offset: p.usize("offset")?.unwrap_or(0),
        limit: p.usize("limit")?.unwrap_or(hub.limits().default_page),
        count: p.bool("count")?,
    };
    if page.limit == 0 && !page.count {
        return Err(NgsiError::bad_data("limit=0 is only allowed with count=true").into());
    }
    Ok(page)
}

/// Renders entities for the client, as a list or a GeoJSON FeatureCollection,
/// with linked entities joined in when `join` asks for it.
async fn entities_response(
    hub: &Hub,
    list: &[Entity],
    ctx: &RequestContext,
    n: &Ngsi,
    o: &RenderOptions,
) -> ApiResult<Response> {
    if let (Some(j), false) = (join_params(&n.params)?, n.accept == Accept::GeoJson) {
        let items = render_joined(hub, &n.tenant, list, ctx, o, j).await?;
        return Ok(body(StatusCode::OK, Value::Array(items), ctx, n.accept));
    }
    Ok(entities_plain(list, ctx, n, o))
}

fn entities_plain(list: &[Entity], ctx: &RequestContext, n: &Ngsi, o: &RenderOptions) -> Response {
    if n.accept == Accept::GeoJson {
        let geo = ctx.terms.expand(n.params.get("geometryProperty").unwrap_or("location"));
        let features: Vec<Value> = list.iter().map(|e| render::feature(e, &ctx.terms, o, &geo)).collect();
        return body(
            StatusCode::OK,
            json!({"type": "FeatureCollection", "features": features}),
            ctx,
            Accept::GeoJson,
        );
    }
    let items: Vec<Value> = list.iter().map(|e| render::entity(e, &ctx.terms, o)).collect();
    body(StatusCode::OK, Value::Array(items), ctx, n.accept)
}

fn paging_headers(
    mut r: Response,
    page: Page,
    returned: usize,
    total: Option<usize>,
    base: &str,
    p: &Params,
) -> Response {
    if let Some(t) = total {
        r = with_header(r, "ngsild-results-count", t.to_string());
    }
    let link = |offset: usize, rel: &str| {
        let mut pairs: Vec<(String, String)> = p.pairs().iter().filter(|(k, _)| k != "offset").cloned().collect();
        pairs.push(("offset".into(), offset.to_string()));
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("<{base}?{q}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    let more = match total {
        Some(t) => page.offset + returned < t,
        None => returned == page.limit && page.limit > 0,
    };
    if more {
        links.push(link(page.offset + page.limit, "next"));
    }
    if page.offset > 0 {
        links.push(link(page.offset.saturating_sub(page.limit), "prev"));
    }
    for l in links {
        if let Ok(v) = HeaderValue::from_str(&l) {
            r.headers_mut().append(header::LINK, v);
        }
    }
    r
}

pub async fn query(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let q = entity_query(&n.params, &ctx, &s.hub)?;
    require_filter(&q, &n.params)?;
    let page = page(&n.params, &s.hub)?;
    let o = render_options(&n.params, &ctx)?;
    join_params(&n.params)?;
    let r = s.hub.query_entities(&n.tenant, &q, page).await?;
    let resp = entities_response(&s.hub, &r.entities, &ctx, &n, &o).await?;
    Ok(paging_headers(
        resp,
        page,
        r.entities.len(),
        r.total,
        "/ngsi-ld/v1/entities",
        &n.params,
    ))
}

pub async fn query_post(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    let obj = b
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("a Query body must be a JSON object"))?;
    let (q, extra) = entity_query_body(obj, &ctx, &s.hub, QueryFor::Entities)?;
    let params = n.params.overlay(&extra);
    let page = page(&params, &s.hub)?;
    let o = render_options(&params, &ctx)?;
    join_params(&params)?;
    let r = s.hub.query_entities(&n.tenant, &q, page).await?;
    let resp = entities_response(
        &s.hub,
        &r.entities,
        &ctx,
        &Ngsi {
            params: params.clone(),
            ..n.clone()
        },
        &o,
    )
    .await?;
    Ok(paging_headers(
        resp,
        page,
        r.entities.len(),
        r.total,
        "/ngsi-ld/v1/entityOperations/query",
        &n.params,
    ))
}

pub async fn create(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    let id = s.hub.create_entity(&n.tenant, &b, &ctx).await?;
    Ok(created("/ngsi-ld/v1/entities", &id))
}

pub async fn retrieve(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let o = render_options(&n.params, &ctx)?;
    let join = join_params(&n.params)?;
    let e = s.hub.retrieve_entity(&n.tenant, &id).await?;
    if let (Some(j), false) = (join, n.accept == Accept::GeoJson) {
        let mut items = render_joined(&s.hub, &n.tenant, std::slice::from_ref(&e), &ctx, &o, j).await?;
        // flat: the entity and its linked entities, as a list.
        let v = if j.flat { Value::Array(items) } else { items.remove(0) };
        return Ok(body(StatusCode::OK, v, &ctx, n.accept));
    }
    if n.accept == Accept::GeoJson {
        let geo = ctx.terms.expand(n.params.get("geometryProperty").unwrap_or("location"));
        return Ok(body(
            StatusCode::OK,
            render::feature(&e, &ctx.terms, &o, &geo),
            &ctx,
            Accept::GeoJson,
        ));
    }
    Ok(body(StatusCode::OK, render::entity(&e, &ctx.terms, &o), &ctx, n.accept))
}

pub async fn replace(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    s.hub.replace_entity(&n.tenant, &id, &b, &ctx).await?;
    Ok(no_content())
}

pub async fn merge(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    s.hub.merge_entity(&n.tenant, &id, &b, &ctx).await?;
    Ok(no_content())
}

/// PATCH or PUT /entities (no id in the path): the id is missing, a
/// BadRequestData (GS CIM 009 V1.8.1, 5.6.17 / 6.5.3.4), not a 405.
pub async fn missing_id() -> ApiResult<Response> {
    Err(NgsiError::bad_data("the entity id is missing from the path (/entities/{entityId})").into())
}

pub async fn delete(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    s.hub.delete_entity(&n.tenant, &id).await?;
    Ok(no_content())
}

fn update_response(r: UpdateResult, ctx: &RequestContext) -> Response {
    if r.not_updated.is_empty() {
        return no_content();
    }
    let v = json!({
        "updated": r.updated.iter().map(|a| ctx.terms.compact(a)).collect::<Vec<_>>(),
        "notUpdated": r.not_updated.iter().map(|nu| json!({"attributeName": ctx.terms.compact(&nu.name), "reason": nu.reason})).collect::<Vec<_>>(),
    });
    plain(StatusCode::MULTI_STATUS, v)
}

pub async fn append_attrs(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    let r = s
        .hub
        .append_attrs(&n.tenant, &id, &b, &ctx, n.params.has_option("noOverwrite"))
        .await?;
    Ok(update_response(r, &ctx))
}

pub async fn update_attrs(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    let r = s.hub.update_attrs(&n.tenant, &id, &b, &ctx).await?;
    if r.updated.is_empty() && !r.not_updated.is_empty() {
        let names: Vec<String> = r.not_updated.iter().map(|x| ctx.terms.compact(&x.name)).collect();
        return Err(
            NgsiError::not_found(format!("entity {id} has none of the attributes {}", names.join(", "))).into(),
        );
    }
    Ok(update_response(r, &ctx))
}

pub async fn patch_attr(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, attr)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    s.hub.patch_attr(&n.tenant, &id, &attr, &b, &ctx).await?;
    Ok(no_content())
}

pub async fn replace_attr(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, attr)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, Some(&b)).await?;
    s.hub.replace_attr(&n.tenant, &id, &attr, &b, &ctx).await?;
    Ok(no_content())
}

pub async fn delete_attr(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, attr)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let all = n.params.bool("deleteAll")?;
    s.hub
        .delete_attr(&n.tenant, &id, &attr, &ctx, n.params.get("datasetId"), all)
        .await?;
    Ok(no_content())
}

pub async fn purge(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let q = entity_query(&n.params, &ctx, &s.hub)?;
    if q.is_unrestricted() {
        return Err(NgsiError::bad_data(
            "purge needs at least one of id, idPattern, type, attrs, q, geo-query or scopeQ",
        )
        .into());
    }
    let names = |k: &str| -> Vec<String> { n.params.list(k).iter().map(|a| ctx.terms.expand(a)).collect() };
    let what = match (n.params.get("drop"), n.params.get("keep")) {
        (Some(_), Some(_)) => return Err(NgsiError::bad_data("purge takes drop or keep, not both").into()),
        (Some(_), None) => Purge::Drop(names("drop")),
        (None, Some(_)) => Purge::Keep(names("keep")),
        (None, None) => Purge::Entities,
    };
    s.hub.purge(&n.tenant, &q, &what).await?;
    Ok(no_content())
}

fn batch_response(r: BatchResult, ok_status: StatusCode, ok_body: Option<Value>) -> Response {
    if r.errors.is_empty() {
        return match ok_body {
            Some(b) => plain(ok_status, b),
            None => ok_status.into_response(),
        };
    }
    let errors: Vec<Value> = r
        .errors
        .iter()
        .map(|e| {
            let pd = ApiError::from(e.error.clone());
            json!({"entityId": e.entity_id, "error": {"type": pd.type_uri, "title": pd.title, "detail": pd.detail, "status": pd.status.as_u16()}})
        })
        .collect();
    plain(
        StatusCode::MULTI_STATUS,
        json!({"success": r.success, "errors": errors}),
    )
}

fn batch_items(b: &Value) -> ApiResult<&Vec<Value>> {
    b.as_array()
        .ok_or_else(|| NgsiError::bad_data("a batch body must be a JSON array").into())
}

pub async fn batch(
    State(s): State<AppState>,
    n: Ngsi,
    Path(op): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    if op == "query" {
        return query_post(State(s), n, JsonBody(b)).await;
    }
    let items = batch_items(&b)?;
    if op == "delete" {
        let r = s.hub.batch_delete(&n.tenant, items).await?;
        return Ok(batch_response(r, StatusCode::NO_CONTENT, None));
    }
    let ctx = n.context(&s.hub, Some(&b)).await?;
    let kind = match op.as_str() {
        "create" => BatchOp::Create,
        "upsert" => BatchOp::Upsert {
            replace: !n.params.has_option("update"),
        },
        "update" => BatchOp::Update {
            no_overwrite: n.params.has_option("noOverwrite"),
        },
        "merge" => BatchOp::Merge,
        other => {
            return Err(ApiError::http(
                StatusCode::NOT_FOUND,
                format!("no batch operation '{other}' (create, upsert, update, merge, delete, query)"),
            ))
        }
    };
    let r = s.hub.batch_write(&n.tenant, items, &ctx, kind).await?;
    Ok(match kind {
        BatchOp::Create => {
            let ids = json!(r.success);
            batch_response(r, StatusCode::CREATED, Some(ids))
        }
        BatchOp::Upsert { .. } if !r.created.is_empty() => {
            let ids = json!(r.created);
            batch_response(r, StatusCode::CREATED, Some(ids))
        }
        _ => batch_response(r, StatusCode::NO_CONTENT, None),
    })
}

pub async fn types(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let infos = s.hub.types(&n.tenant).await?;
    let v = if n.params.bool("details")? {
        Value::Array(
            infos
                .iter()
                .map(|t| {
                    json!({"id": t.type_iri, "type": "EntityType", "typeName": ctx.terms.compact(&t.type_iri),
                    "attributeNames": t.attrs.iter().map(|(a, _)| ctx.terms.compact(a)).collect::<Vec<_>>()})
                })
                .collect(),
        )
    } else {
        json!({"id": format!("urn:ngsi-ld:EntityTypeList:{}", uuid_like(&n.tenant)), "type": "EntityTypeList",
               "typeList": infos.iter().map(|t| ctx.terms.compact(&t.type_iri)).collect::<Vec<_>>()})
    };
    Ok(body(StatusCode::OK, v, &ctx, n.accept))
}

pub async fn type_info(State(s): State<AppState>, n: Ngsi, Path(ty): Path<String>) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let iri = ctx.terms.expand(&ty);
    let infos = s.hub.types(&n.tenant).await?;
    let t = infos
        .iter()
        .find(|t| t.type_iri == iri)
        .ok_or_else(|| NgsiError::not_found(format!("no entity of type {ty}")))?;
    let v = json!({"id": t.type_iri, "type": "EntityTypeInfo", "typeName": ctx.terms.compact(&t.type_iri), "entityCount": t.entity_count,
        "attributeDetails": t.attrs.iter().map(|(a, kinds)| json!({"id": a, "type": "Attribute", "attributeName": ctx.terms.compact(a), "attributeTypes": kinds})).collect::<Vec<_>>()});
    Ok(body(StatusCode::OK, v, &ctx, n.accept))
}

/// (attribute IRI → (count of entities, kinds, type IRIs))
fn attribute_index(
    infos: &[citybrain_store::TypeInfo],
) -> std::collections::BTreeMap<String, (usize, Vec<String>, Vec<String>)> {
    let mut m: std::collections::BTreeMap<String, (usize, Vec<String>, Vec<String>)> = Default::default();
    for t in infos {
        for (a, kinds) in &t.attrs {
            let e = m.entry(a.clone()).or_default();
            e.0 += t.entity_count;
            for k in kinds {
                if !e.1.contains(k) {
                    e.1.push(k.clone());
                }
            }
            e.2.push(t.type_iri.clone());
        }
    }
    m
}

pub async fn attributes(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let idx = attribute_index(&s.hub.types(&n.tenant).await?);
    let v = if n.params.bool("details")? {
        Value::Array(
            idx.iter()
                .map(|(a, (_, _, types))| {
                    json!({"id": a, "type": "Attribute", "attributeName": ctx.terms.compact(a),
                    "typeNames": types.iter().map(|t| ctx.terms.compact(t)).collect::<Vec<_>>()})
                })
                .collect(),
        )
    } else {
        json!({"id": format!("urn:ngsi-ld:AttributeList:{}", uuid_like(&n.tenant)), "type": "AttributeList",
               "attributeList": idx.keys().map(|a| ctx.terms.compact(a)).collect::<Vec<_>>()})
    };
    Ok(body(StatusCode::OK, v, &ctx, n.accept))
}

pub async fn attribute_info(State(s): State<AppState>, n: Ngsi, Path(attr): Path<String>) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let iri = ctx.terms.expand(&attr);
    let idx = attribute_index(&s.hub.types(&n.tenant).await?);
    let (count, kinds, types) = idx
        .get(&iri)
        .ok_or_else(|| NgsiError::not_found(format!("no entity has attribute {attr}")))?;
    let v = json!({"id": iri, "type": "Attribute", "attributeName": ctx.terms.compact(&iri), "attributeCount": count,
        "attributeTypes": kinds, "typeNames": types.iter().map(|t| ctx.terms.compact(t)).collect::<Vec<_>>()});
    Ok(body(StatusCode::OK, v, &ctx, n.accept))
}

/// A stable id for the per-tenant discovery lists.
fn uuid_like(tenant: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tenant.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}
