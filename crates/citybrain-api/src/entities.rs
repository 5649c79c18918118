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
use crate::guard;
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
    s: &AppState,
    list: &[Entity],
    ctx: &RequestContext,
    n: &Ngsi,
    o: &RenderOptions,
) -> ApiResult<Response> {
    if let (Some(j), false) = (join_params(&n.params)?, n.accept == Accept::GeoJson) {
        let items = render_joined(s, n, list, ctx, o, j).await?;
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
    let mut q = entity_query(&n.params, &ctx, &s.hub)?;
    require_filter(&q, &n.params)?;
    guard::restrict(&n, &mut q);
    let page = page(&n.params, &s.hub)?;
    let o = render_options(&n.params, &ctx)?;
    join_params(&n.params)?;
    let mut r = s.hub.query_entities(&n.tenant, &q, page).await?;
    guard::release(&s, &n, "GET /ngsi-ld/v1/entities", &mut r.entities).await?;
    let resp = entities_response(&s, &r.entities, &ctx, &n, &o).await?;
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
    let (mut q, extra) = entity_query_body(obj, &ctx, &s.hub, QueryFor::Entities)?;
    guard::restrict(&n, &mut q);
    let params = n.params.overlay(&extra);
    let page = page(&params, &s.hub)?;
    let o = render_options(&params, &ctx)?;
    join_params(&params)?;
    let mut r = s.hub.query_entities(&n.tenant, &q, page).await?;
    guard::release(&s, &n, "POST /ngsi-ld/v1/entityOperations/query", &mut r.entities).await?;
    let resp = entities_response(
        &s,
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
    guard::may_create(
        &n,
        &guard::body_types(&b, &ctx.terms),
        &guard::body_attrs(&b, &ctx.terms),
    )?;
    let id = s.hub.create_entity(&n.tenant, &b, &ctx).await?;
    Ok(created("/ngsi-ld/v1/entities", &id))
}

pub async fn retrieve(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let o = render_options(&n.params, &ctx)?;
    let join = join_params(&n.params)?;
    let mut e = s.hub.retrieve_entity(&n.tenant, &id).await?;
    guard::visible(&n, &e)?;
    guard::release(&s, &n, "GET /ngsi-ld/v1/entities/{id}", std::slice::from_mut(&mut e)).await?;
    if let (Some(j), false) = (join, n.accept == Accept::GeoJson) {
        let mut items = render_joined(&s, &n, std::slice::from_ref(&e), &ctx, &o, j).await?;
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
    guard::may_change(&s, &n, &id, &[], "write").await?;
    guard::may_create(
        &n,
        &guard::body_types(&b, &ctx.terms),
        &guard::body_attrs(&b, &ctx.terms),
    )?;
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
    guard::may_change(&s, &n, &id, &guard::body_attrs(&b, &ctx.terms), "write").await?;
    s.hub.merge_entity(&n.tenant, &id, &b, &ctx).await?;
    Ok(no_content())
}

/// PATCH or PUT /entities (no id in the path): the id is missing, a
/// BadRequestData (GS CIM 009 V1.8.1, 5.6.17 / 6.5.3.4), not a 405.
pub async fn missing_id() -> ApiResult<Response> {
    Err(NgsiError::bad_data("the entity id is missing from the path (/entities/{entityId})").into())
}

pub async fn delete(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    guard::may_change(&s, &n, &id, &[], "delete").await?;
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
    guard::may_change(&s, &n, &id, &guard::body_attrs(&b, &ctx.terms), "write").await?;
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
    guard::may_change(&s, &n, &id, &guard::body_attrs(&b, &ctx.terms), "write").await?;
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
    guard::may_change(&s, &n, &id, &[ctx.terms.expand(&attr)], "write").await?;
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
    guard::may_change(&s, &n, &id, &[ctx.terms.expand(&attr)], "write").await?;
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
    guard::may_change(&s, &n, &id, &[ctx.terms.expand(&attr)], "write").await?;
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
        for id in items.iter().filter_map(Value::as_str) {
            guard::may_change(&s, &n, id, &[], "delete").await?;
        }
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
    batch_allowed(&s, &n, items, &ctx).await?;
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

/// Every entity of a batch write must be the caller's to write: the types
/// and attributes it names, and the stored entity it would change.
async fn batch_allowed(s: &AppState, n: &Ngsi, items: &[Value], ctx: &RequestContext) -> ApiResult<()> {
    if n.caller.principal.role == citybrain_trust::Role::Admin && !n.caller.policy.has_personal_types() {
        return Ok(());
    }
    let ids: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    let stored = s.hub.entities_by_id(&n.tenant, &ids).await?;
    let by_id: std::collections::HashMap<&str, &Entity> = stored.iter().map(|e| (e.id.as_str(), e)).collect();
    for item in items {
        let types = guard::body_types(item, &ctx.terms);
        let attrs = guard::body_attrs(item, &ctx.terms);
        guard::may_create(n, &types, &attrs)?;
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        if let Some(e) = by_id.get(id) {
            guard::visible(n, e)?;
            n.caller
                .policy
                .may_write(&n.caller.principal, &e.types, attrs.iter().map(String::as_str))
                .map_err(|r| ApiError::forbidden(r.0))?;
        }
    }
    guard::record(s, n, "write", "batch", &stored).await?;
    // New personal records are recorded by their body's types too.
    let new_personal: Vec<String> = items
        .iter()
        .filter(|i| {
            guard::body_types(i, &ctx.terms)
                .iter()
                .any(|t| n.caller.policy.is_personal_type(t))
        })
        .filter_map(|i| i.get("id").and_then(Value::as_str))
        .filter(|id| !by_id.contains_key(id))
        .map(str::to_string)
        .collect();
    if !new_personal.is_empty() {
        let mut entry = crate::auth::audit_entry(
            &n.caller.principal,
            "write",
            "batch (new records)",
            &n.tenant,
            "granted",
        );
        entry.entities = new_personal;
        entry.purpose = n.caller.purpose.clone();
        s.hub.audit(vec![entry]).await?;
    }
    Ok(())
}

/// Discovery lists the types the caller may see without an owner condition
/// (a citizen learns nothing of how many records of others exist).
fn discoverable(n: &Ngsi, infos: Vec<citybrain_store::TypeInfo>) -> Vec<citybrain_store::TypeInfo> {
    let v = &n.caller.visibility;
    if v.is_everything() {
        return infos;
    }
    infos.into_iter().filter(|t| v.opens_type_openly(&t.type_iri)).collect()
}

pub async fn types(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let ctx = n.context(&s.hub, None).await?;
    let infos = discoverable(&n, s.hub.types(&n.tenant).await?);
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
    let infos = discoverable(&n, s.hub.types(&n.tenant).await?);
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
    let idx = attribute_index(&discoverable(&n, s.hub.types(&n.tenant).await?));
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
    let idx = attribute_index(&discoverable(&n, s.hub.types(&n.tenant).await?));
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
