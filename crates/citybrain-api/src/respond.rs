//! Building responses: media types, the @context Link header, query
//! parameters into hub queries and render options.

use std::collections::HashSet;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_hub::{Hub, RequestContext};
use citybrain_ngsild::context::LINK_REL;
use citybrain_ngsild::geo::{self, GeoQuery, GeoRel};
use citybrain_ngsild::order::OrderBy;
use citybrain_ngsild::q::Query;
use citybrain_ngsild::render::{Format, RenderOptions};
use citybrain_ngsild::scope::ScopeQuery;
use citybrain_ngsild::selector::{id_pattern, EntityQuery, EntitySelector, TypeExpr};
use citybrain_ngsild::{ErrorKind, NgsiError};
use serde_json::{Map, Value};

use crate::error::ApiResult;
use crate::extract::{Accept, Params};

pub fn link_header(ctx: &RequestContext) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "<{}>; rel=\"{LINK_REL}\"; type=\"application/ld+json\"",
        ctx.link_url()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A JSON body in the media type the client asked for.
pub fn body(status: StatusCode, mut v: Value, ctx: &RequestContext, accept: Accept) -> Response {
    let ct = match accept {
        Accept::LdJson => {
            let c = ctx.body_value();
            match &mut v {
                Value::Object(m) => {
                    m.insert("@context".into(), c);
                }
                Value::Array(items) => {
                    for i in items {
                        if let Value::Object(m) = i {
                            m.insert("@context".into(), c.clone());
                        }
                    }
                }
                _ => {}
            }
            "application/ld+json"
        }
        Accept::GeoJson => "application/geo+json",
        Accept::Json => "application/json",
    };
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if accept != Accept::LdJson {
        r.headers_mut().insert(header::LINK, link_header(ctx));
    }
    r
}

/// Plain JSON (no @context involved): discovery lists, batch results.
pub fn plain(status: StatusCode, v: Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// 201 Created with the Location of `id` under `collection` (e.g.
/// `/ngsi-ld/v1/entities`), the id percent-encoded.
pub fn created(collection: &str, id: &str) -> Response {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    with_header(
        StatusCode::CREATED.into_response(),
        "location",
        format!("{collection}/{id}"),
    )
}

/// A query must say which entities it wants, unless it asks for `local=true`.
pub fn require_filter(q: &EntityQuery, p: &Params) -> ApiResult<()> {
    if q.is_unrestricted() && !p.bool("local")? {
        return Err(NgsiError::bad_data(
            "give at least one of id, idPattern, type, attrs, q, geo-query or scopeQ (or local=true)",
        )
        .into());
    }
    Ok(())
}

pub fn with_header(mut r: Response, name: &'static str, value: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(HeaderName::from_static(name), v);
    }
    r
}

/// Render options from `format`, `options`, `attrs`, `pick`, `omit`, `lang`, `datasetId`.
pub fn render_options(p: &Params, ctx: &RequestContext) -> ApiResult<RenderOptions> {
    let mut o = RenderOptions::default();
    let mut formats = Vec::new();
    if let Some(f) = p.get("format") {
        formats.push(Format::parse(f)?);
    }
    for opt in p.list("options") {
        match opt.as_str() {
            "keyValues" | "simplified" | "concise" | "normalized" => formats.push(Format::parse(&opt)?),
            "sysAttrs" => o.sys_attrs = true,
            "noOverwrite" | "replace" | "update" | "temporalValues" | "aggregatedValues" => {}
            other => return Err(NgsiError::bad_data(format!("options: '{other}' is not a known option")).into()),
        }
    }
    formats.dedup();
    if formats.len() > 1 {
        return Err(NgsiError::bad_data("conflicting formats requested (format/options)").into());
    }
    o.format = formats.pop().unwrap_or_default();
    let expand = |names: Vec<String>| -> HashSet<String> { names.iter().map(|n| ctx.terms.expand(n)).collect() };
    if p.get("attrs").is_some() && p.get("pick").is_some() {
        return Err(NgsiError::bad_data("attrs and pick cannot be used together").into());
    }
    let attrs = p.list("attrs");
    if !attrs.is_empty() {
        o.attrs = Some(expand(attrs));
    }
    let pick = p.list("pick");
    if !pick.is_empty() {
        o.hide_id = !pick.iter().any(|x| x == "id");
        o.hide_type = !pick.iter().any(|x| x == "type");
        o.attrs = Some(expand(pick.into_iter().filter(|x| x != "id" && x != "type").collect()));
    }
    let omit = p.list("omit");
    if !omit.is_empty() {
        o.hide_id = omit.iter().any(|x| x == "id");
        o.hide_type = omit.iter().any(|x| x == "type");
        o.omit = expand(omit.into_iter().filter(|x| x != "id" && x != "type").collect());
    }
    o.lang = p.get("lang").map(str::to_string);
    let ds = p.list("datasetId");
    if !ds.is_empty() {
        o.dataset_id = Some(ds);
    }
    Ok(o)
}

/// An entity query from URL parameters (GET /entities, temporal, purge).
pub fn entity_query(p: &Params, ctx: &RequestContext, hub: &Hub) -> ApiResult<EntityQuery> {
    let mut sel = EntitySelector::default();
    for id in p.list("id") {
        if !citybrain_ngsild::context::looks_like_iri(&id) {
            return Err(NgsiError::bad_data(format!("id '{id}' is not a URI")).into());
        }
        sel.ids.push(id);
    }
    if let Some(pat) = p.get("idPattern") {
        sel.id_pattern = Some(id_pattern(pat)?);
    }
    if let Some(t) = p.get("type") {
        sel.types = Some(TypeExpr::parse(t, &ctx.terms)?);
    }
    let mut q = EntityQuery::default();
    if !sel.ids.is_empty() || sel.id_pattern.is_some() || sel.types.is_some() {
        q.selectors.push(sel);
    }
    // attrs and pick select entities too: one without any of the named
    // attributes is not returned (GS CIM 009 V1.8.1, 4.21 / 5.7.2).
    let mut attrs = p.list("attrs");
    attrs.extend(p.list("pick").into_iter().filter(|x| x != "id" && x != "type"));
    q.attrs = attrs.iter().map(|a| ctx.terms.expand(a)).collect();
    let max = hub.limits().max_query_len;
    if let Some(qs) = p.get("q") {
        check_len("q", qs, max)?;
        q.q = Some(Query::parse(qs, &ctx.terms)?);
    }
    if let Some(s) = p.get("scopeQ") {
        check_len("scopeQ", s, max)?;
        q.scope_q = Some(ScopeQuery::parse(s)?);
    }
    q.geo = geo_query(p, ctx, hub)?;
    if let Some(o) = p.get("orderBy") {
        check_len("orderBy", o, max)?;
        q.order = Some(OrderBy::parse(o, &ctx.terms)?);
    }
    Ok(q)
}

fn check_len(name: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.len() > max {
        return Err(NgsiError::new(
            ErrorKind::TooComplexQuery,
            format!("{name} is longer than {max} characters"),
        )
        .into());
    }
    Ok(())
}

fn geo_query(p: &Params, ctx: &RequestContext, hub: &Hub) -> ApiResult<Option<GeoQuery>> {
    let (rel, geom, coords) = (p.get("georel"), p.get("geometry"), p.get("coordinates"));
    if rel.is_none() && geom.is_none() && coords.is_none() {
        return Ok(None);
    }
    let (Some(rel), Some(geom), Some(coords)) = (rel, geom, coords) else {
        return Err(NgsiError::bad_data("a geo-query needs georel, geometry and coordinates together").into());
    };
    let coords: Value = serde_json::from_str(coords)
        .map_err(|_| NgsiError::bad_data(format!("coordinates '{coords}' is not a JSON array")))?;
    let g = geo::build(geom, &coords, hub.limits().input.max_geo_points)?;
    let prop = ctx.terms.expand(p.get("geoproperty").unwrap_or("location"));
    Ok(Some(GeoQuery::new(GeoRel::parse(rel)?, g, prop)?))
}

/// Which operation a `Query` body is for: `temporalQ` belongs to the
/// temporal one only (GS CIM 009 V1.8.1, table 5.2.23-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFor {
    Entities,
    Temporal,
}

/// An entity query from a `Query` body (POST /entityOperations/query), its
/// members checked against the Query data type (GS CIM 009 V1.8.1, 5.2.23).
pub fn entity_query_body(
    b: &Map<String, Value>,
    ctx: &RequestContext,
    hub: &Hub,
    purpose: QueryFor,
) -> ApiResult<(EntityQuery, Params)> {
    if b.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(NgsiError::bad_data("the body's type must be \"Query\" (5.2.23)").into());
    }
    if purpose == QueryFor::Entities && b.contains_key("temporalQ") {
        return Err(NgsiError::bad_data(
            "temporalQ belongs to the temporal query (POST /temporal/entityOperations/query) only",
        )
        .into());
    }
    for k in ["q", "scopeQ", "lang", "geometryProperty", "join", "csf"] {
        if b.get(k).is_some_and(|v| !v.is_string()) {
            return Err(NgsiError::bad_data(format!("Query member '{k}' must be a string")).into());
        }
    }
    if let Some(jl) = b.get("joinLevel") {
        if jl.as_u64().is_none_or(|n| n == 0) {
            return Err(NgsiError::bad_data("Query member 'joinLevel' must be a positive integer").into());
        }
    }
    let mut q = EntityQuery::default();
    if let Some(ents) = b.get("entities") {
        let ents = ents
            .as_array()
            .ok_or_else(|| NgsiError::bad_data("entities must be an array"))?;
        if ents.is_empty() {
            return Err(NgsiError::bad_data("entities must not be an empty array (5.2.23)").into());
        }
        for e in ents {
            let e = e
                .as_object()
                .ok_or_else(|| NgsiError::bad_data("each member of entities must be an EntitySelector object"))?;
            let text = |k: &str| -> ApiResult<Option<&str>> {
                match e.get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.as_str())),
                    Some(_) => Err(NgsiError::bad_data(format!("EntitySelector member '{k}' must be a string")).into()),
                }
            };
            let mut s = EntitySelector::default();
            if let Some(id) = text("id")? {
                if !citybrain_ngsild::context::looks_like_iri(id) {
                    return Err(NgsiError::bad_data(format!("id '{id}' is not a URI")).into());
                }
                s.ids.push(id.to_string());
            }
            if let Some(p) = text("idPattern")? {
                s.id_pattern = Some(id_pattern(p)?);
            }
            match text("type")? {
                Some(t) => s.types = Some(TypeExpr::parse(t, &ctx.terms)?),
                None => return Err(NgsiError::bad_data("each EntitySelector needs a type (5.2.33)").into()),
            }
            q.selectors.push(s);
        }
    }
    for k in ["attrs", "pick", "omit"] {
        match b.get(k) {
            None => {}
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {}
            Some(_) => {
                return Err(
                    NgsiError::bad_data(format!("Query member '{k}' must be a non-empty array of strings")).into(),
                )
            }
        }
    }
    if b.contains_key("attrs") && b.contains_key("pick") {
        return Err(NgsiError::bad_data("attrs and pick cannot be used together").into());
    }
    let names = |k: &str| -> Vec<String> {
        b.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut attrs = names("attrs");
    attrs.extend(names("pick").into_iter().filter(|x| x != "id" && x != "type"));
    q.attrs = attrs.iter().map(|a| ctx.terms.expand(a)).collect();
    let max = hub.limits().max_query_len;
    if let Some(qs) = b.get("q").and_then(Value::as_str) {
        check_len("q", qs, max)?;
        q.q = Some(Query::parse(qs, &ctx.terms)?);
    }
    if let Some(s) = b.get("scopeQ").and_then(Value::as_str) {
        check_len("scopeQ", s, max)?;
        q.scope_q = Some(ScopeQuery::parse(s)?);
    }
    if let Some(o) = b.get("orderBy") {
        let o = o
            .as_str()
            .ok_or_else(|| NgsiError::bad_data("Query member 'orderBy' must be a string"))?;
        q.order = Some(OrderBy::parse(o, &ctx.terms)?);
    }
    if let Some(g) = b.get("geoQ") {
        q.geo = Some(citybrain_ngsild::subscription::compile_geoq(
            g,
            &ctx.terms,
            hub.limits().input.max_geo_points,
        )?);
    }
    // Projection and temporal members travel as parameters to share the rest.
    let mut extra = Vec::new();
    for k in ["attrs", "pick", "omit"] {
        let v = names(k);
        if !v.is_empty() {
            extra.push((k.to_string(), v.join(",")));
        }
    }
    if let Some(l) = b.get("lang").and_then(Value::as_str) {
        extra.push(("lang".into(), l.into()));
    }
    if let Some(j) = b.get("join").and_then(Value::as_str) {
        extra.push(("join".into(), j.into()));
    }
    if let Some(j) = b.get("joinLevel").and_then(Value::as_u64) {
        extra.push(("joinLevel".into(), j.to_string()));
    }
    if let Some(Value::Object(t)) = b.get("temporalQ") {
        for k in ["timerel", "timeAt", "endTimeAt", "timeproperty"] {
            if let Some(v) = t.get(k).and_then(Value::as_str) {
                extra.push((k.into(), v.into()));
            }
        }
        if let Some(n) = t.get("lastN").and_then(Value::as_u64) {
            extra.push(("lastN".into(), n.to_string()));
        }
    }
    Ok((q, Params::from_pairs(extra)))
}

impl Params {
    pub fn from_pairs(v: Vec<(String, String)>) -> Params {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(v)
            .finish();
        Params::parse(&q).unwrap_or_default()
    }

    /// These parameters with another set's on top (the other's win).
    pub fn overlay(&self, other: &Params) -> Params {
        let mut pairs: Vec<(String, String)> = other.pairs().to_vec();
        for (k, v) in self.pairs() {
            if other.get(k).is_none() {
                pairs.push((k.clone(), v.clone()));
            }
        }
        Params::from_pairs(pairs)
    }
}
