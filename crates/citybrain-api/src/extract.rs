//! Request extractors: tenant, @context (Link header or body), Accept,
//! Content-Type checks, size-limited JSON bodies and query parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use citybrain_hub::{Hub, RequestContext};
use citybrain_ngsild::context::LINK_REL;
use citybrain_ngsild::NgsiError;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// What the client accepts back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    LdJson,
    GeoJson,
}

/// The parts of an NGSI-LD request every handler needs.
#[derive(Debug, Clone)]
pub struct Ngsi {
    pub tenant: String,
    pub link: Option<String>,
    pub accept: Accept,
    pub params: Params,
    pub content_type: Option<String>,
    /// Who is asking (left by `auth::authorize`).
    pub caller: std::sync::Arc<citybrain_trust::Caller>,
}

/// The caller `auth::authorize` left in the request. Missing means the
/// route is not behind the middleware: refuse rather than guess.
pub fn caller_of(parts: &Parts) -> Result<std::sync::Arc<citybrain_trust::Caller>, ApiError> {
    parts
        .extensions
        .get::<std::sync::Arc<citybrain_trust::Caller>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::from(NgsiError::internal(
                "request reached a handler without passing authentication",
            ))
        })
}

impl<S: Send + Sync> FromRequestParts<S> for Ngsi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let tenant = match h.get("NGSILD-Tenant") {
            None => String::new(),
            Some(v) => {
                let t = v
                    .to_str()
                    .map_err(|_| NgsiError::bad_data("NGSILD-Tenant is not valid text"))?
                    .trim()
                    .to_string();
                Hub::check_tenant_name(&t)?;
                t
            }
        };
        let link = link_context(h)?;
        let accept = accept_of(h)?;
        let params = Params::parse(parts.uri.query().unwrap_or(""))?;
        let content_type = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        Ok(Ngsi {
            tenant,
            link,
            accept,
            params,
            content_type,
            caller: caller_of(parts)?,
        })
    }
}

impl Ngsi {
    /// Resolves the request's @context: from the body (ld+json) or the Link header.
    pub async fn context(&self, hub: &Hub, body: Option<&Value>) -> ApiResult<RequestContext> {
        let from_body = body.and_then(|b| match b {
            Value::Object(m) => m.get("@context").cloned(),
            Value::Array(items) => items.iter().find_map(|i| i.get("@context").cloned()),
            _ => None,
        });
        let is_ld = self.content_type.as_deref() == Some("application/ld+json");
        // GS CIM 009 V1.8.1, 6.3.5: with application/ld+json the @context is in
        // the body and a JSON-LD Link header is an error; with application/json
        // the body must not carry one (it would be silently ignored otherwise).
        if is_ld && self.link.is_some() {
            return Err(NgsiError::bad_data(
                "a Link @context header cannot be used with Content-Type application/ld+json",
            )
            .into());
        }
        if !is_ld && from_body.is_some() && self.content_type.is_some() {
            return Err(NgsiError::bad_data(
                "an @context member in the body needs Content-Type application/ld+json (with application/json give it in a Link header)",
            )
            .into());
        }
        if is_ld && body.is_some() && from_body.is_none() {
            return Err(NgsiError::bad_data("application/ld+json bodies must carry an @context").into());
        }
        let value = match (from_body, &self.link) {
            (Some(v), _) if is_ld => Some(v),
            (_, Some(url)) => Some(Value::String(url.clone())),
            _ => None,
        };
        Ok(hub.resolve_context(&self.tenant, value.as_ref()).await?)
    }
}

fn link_context(h: &HeaderMap) -> ApiResult<Option<String>> {
    let mut found = None;
    for v in h.get_all(header::LINK) {
        let s = v
            .to_str()
            .map_err(|_| NgsiError::invalid("Link header is not valid text"))?;
        for link in s.split(',') {
            let link = link.trim();
            if !link.contains(LINK_REL) {
                continue;
            }
            let url = link
                .strip_prefix('<')
                .and_then(|r| r.split_once('>'))
                .map(|(u, _)| u.trim().to_string())
                .ok_or_else(|| NgsiError::invalid(format!("Link header '{link}' is not <url>; rel=...")))?;
            if found.is_some() {
                return Err(NgsiError::invalid("only one JSON-LD context Link header is allowed").into());
            }
            found = Some(url);
        }
    }
    Ok(found)
}

fn accept_of(h: &HeaderMap) -> ApiResult<Accept> {
    let Some(v) = h.get(header::ACCEPT) else {
        return Ok(Accept::Json);
    };
    let s = v.to_str().unwrap_or("*/*");
    // Highest q first; ties keep the client's order.
    let mut options: Vec<(f32, usize, &str)> = s
        .split(',')
        .enumerate()
        .map(|(i, part)| {
            let mut it = part.split(';');
            let mt = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            (q, i, mt)
        })
        .collect();
    options.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    for (q, _, mt) in options {
        if q <= 0.0 {
            continue;
        }
        match mt {
            "application/json" | "*/*" | "application/*" | "" => return Ok(Accept::Json),
            "application/ld+json" => return Ok(Accept::LdJson),
            "application/geo+json" => return Ok(Accept::GeoJson),
            _ => {}
        }
    }
    Err(ApiError::http(
        StatusCode::NOT_ACCEPTABLE,
        format!("cannot produce any of '{s}' (application/json, application/ld+json, application/geo+json)"),
    ))
}

/// A JSON body, size-limited, with its Content-Type checked (415 otherwise).
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let patch = req.method() == Method::PATCH;
        match ct.as_deref() {
            Some("application/json") | Some("application/ld+json") => {}
            Some("application/merge-patch+json") if patch => {}
            Some(other) => {
                return Err(ApiError::http(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Type {other} is not supported (application/json or application/ld+json)"),
                ))
            }
            None => {
                return Err(ApiError::http(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a Content-Type header is required",
                ))
            }
        }
        let limit = state.limits.max_body_bytes;
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
            ApiError::http(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {limit} bytes"),
            )
        })?;
        if bytes.is_empty() {
            return Err(NgsiError::invalid("the request body is empty").into());
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| NgsiError::invalid(format!("request body is not valid JSON: {e}")))?;
        Ok(JsonBody(v))
    }
}

/// Query parameters, decoded once; repeated names keep the first value.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(q: &str) -> ApiResult<Params> {
        if q.len() > 64 * 1024 {
            return Err(NgsiError::invalid("query string longer than 64 KiB").into());
        }
        Ok(Params(
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    pub fn list(&self, k: &str) -> Vec<String> {
        self.get(k)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `options=a,b` — also `format=` for the format names.
    pub fn has_option(&self, o: &str) -> bool {
        self.list("options").iter().any(|x| x == o)
    }

    pub fn bool(&self, k: &str) -> ApiResult<bool> {
        match self.get(k) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(NgsiError::bad_data(format!("{k} must be true or false, not '{v}'")).into()),
        }
    }

    pub fn usize(&self, k: &str) -> ApiResult<Option<usize>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| NgsiError::bad_data(format!("{k} must be a non-negative integer, not '{v}'")).into()),
        }
    }
}
