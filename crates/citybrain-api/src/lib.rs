//! # citybrain-api — the only HTTP crate
//!
//! axum routers over a [`citybrain_hub::Hub`]: the NGSI-LD API under
//! `/ngsi-ld/v1` (entities, batch operations, discovery, temporal,
//! subscriptions with SSE streams, @contexts), `/health` and `/metrics`.
//! Handlers are thin: parse the request, call the hub, shape the response.
//! Errors become ProblemDetails in one place (`error.rs`).
//!
//! What it deliberately does **not** do: NGSI-LD semantics (the hub and the
//! ngsild crate own those) or storage.

#![forbid(unsafe_code)]

mod account;
pub mod appeals;
pub mod auth;
pub mod consultations;
mod decisions;
mod entities;
pub mod error;
mod extract;
mod guard;
mod join;
pub mod open311;
mod respond;
pub mod services;
mod subscriptions;
mod temporal;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use citybrain_hub::Hub;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::error::ApiError;

/// HTTP-level limits.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_body_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 1 << 20,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub limits: ApiLimits,
    pub metrics: Option<PrometheusHandle>,
    /// Who may do what; with `AuthConfig::disabled` every caller is an administrator.
    pub auth: std::sync::Arc<auth::Auth>,
    /// The policies decisions are made by (`--policies DIR`); may be empty.
    pub policies: std::sync::Arc<citybrain_rules::PolicySet>,
    /// The government services (`--services DIR`); None when off.
    pub services: Option<citybrain_services_hub::Services>,
    /// The appeals (`--appeals DIR`); None when off.
    pub appeals: Option<citybrain_appeals_hub::Appeals>,
}

/// The NGSI-LD routes, `/health`, `/metrics`, as a service that also accepts
/// trailing slashes (real clients send them).
pub fn app(state: AppState) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router(state))
}

/// Like `app`, with more routes beside the NGSI-LD ones (the cockpits);
/// they pass the same authentication (`auth::RULES` lists them too).
pub fn app_with(state: AppState, extra: Router) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router_with(state, extra))
}

/// The router alone (no trailing-slash normalisation), for embedding.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The router with more routes, every one behind the authentication.
pub fn router_with(state: AppState, extra: Router) -> Router {
    use entities as e;
    use subscriptions as s;
    use temporal as t;
    let ngsi = Router::new()
        .route(
            "/entities",
            get(e::query)
                .post(e::create)
                .delete(e::purge)
                .patch(e::missing_id)
                .put(e::missing_id),
        )
        .route(
            "/entities/{id}",
            get(e::retrieve).put(e::replace).patch(e::merge).delete(e::delete),
        )
        .route("/entities/{id}/attrs", post(e::append_attrs).patch(e::update_attrs))
        .route(
            "/entities/{id}/attrs/{attr}",
            axum::routing::patch(e::patch_attr)
                .put(e::replace_attr)
                .delete(e::delete_attr),
        )
        .route("/entityOperations/{op}", post(e::batch))
        .route("/types", get(e::types))
        .route("/types/{type}", get(e::type_info))
        .route("/attributes", get(e::attributes))
        .route("/attributes/{attr}", get(e::attribute_info))
        .route("/temporal/entities", get(t::query).post(t::create))
        .route("/temporal/entities/{id}", get(t::retrieve).delete(t::delete))
        .route("/temporal/entities/{id}/attrs", post(t::add_attrs))
        .route(
            "/temporal/entities/{id}/attrs/{attr}",
            axum::routing::delete(t::delete_attr),
        )
        .route(
            "/temporal/entities/{id}/attrs/{attr}/{instance}",
            axum::routing::patch(t::patch_instance).delete(t::delete_instance),
        )
        .route("/temporal/entityOperations/query", post(t::query_post))
        .route("/subscriptions", get(s::list).post(s::create))
        .route("/subscriptions/{id}", get(s::get).patch(s::update).delete(s::delete))
        .route("/subscriptions/{id}/stream", get(s::stream))
        .route("/jsonldContexts", get(s::list_contexts).post(s::add_context))
        .route("/jsonldContexts/{id}", get(s::get_context).delete(s::delete_context));
    Router::new()
        .nest("/ngsi-ld/v1", ngsi)
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics_text))
        .route("/api/me/accesses", get(account::my_accesses))
        .route("/api/audit", get(account::audit_log))
        .route("/api/v1/policies", get(decisions::list))
        .route("/api/v1/policies/{id}", get(decisions::get))
        .route("/api/v1/decisions", post(decisions::decide))
        .route("/api/v1/services", get(services::catalog))
        .route("/api/v1/services/{id}", get(services::service))
        .route("/api/v1/services/{id}/prefill", get(services::prefill))
        .route(
            "/api/v1/applications",
            get(services::applications).post(services::apply),
        )
        .route("/api/v1/applications/{id}", get(services::application))
        .route("/api/v1/applications/{id}/review", post(services::review_application))
        .route("/api/v1/bundles", get(services::bundles))
        .route("/api/v1/bundles/{id}", get(services::bundle))
        .route(
            "/api/v1/bundle-instances",
            get(services::instances).post(services::start_bundle),
        )
        .route("/api/v1/bundle-instances/{id}", get(services::instance))
        .route("/api/v1/bundle-instances/{id}/confirm", post(services::confirm))
        .route("/api/v1/bundle-instances/{id}/cancel", post(services::cancel))
        .route(
            "/api/v1/bundle-instances/{id}/steps/{step}/review",
            post(services::review_step),
        )
        .route("/api/v1/grants", get(services::grants))
        .route("/api/v1/review-queue", get(services::review_queue))
        .route("/api/v1/service-metrics", get(services::metrics))
        .route("/api/v1/openapi.json", get(services::openapi))
        .route("/api/v1/appeal-categories", get(appeals::categories))
        .route("/api/v1/appeal-departments", get(appeals::departments))
        .route("/api/v1/appeals", get(appeals::board).post(appeals::file))
        .route("/api/v1/appeals/{id}", get(appeals::get))
        .route("/api/v1/appeals/{id}/actions", post(appeals::act))
        .route("/api/v1/appeals/{id}/similar", get(appeals::similar))
        .route("/api/v1/appeal-queue", get(appeals::queue))
        .route("/api/v1/appeal-metrics", get(appeals::metrics))
        .route("/api/v1/enterprise-overview", get(appeals::enterprise_overview))
        .route(
            "/api/v1/consultations",
            get(consultations::list).post(consultations::publish),
        )
        .route("/api/v1/consultations/{id}", get(consultations::get))
        .route(
            "/api/v1/consultations/{id}/comments",
            get(consultations::comments).post(consultations::comment),
        )
        .route(
            "/api/v1/consultations/{id}/comments/{seq}/actions",
            post(consultations::comment_action),
        )
        .route("/api/v1/consultations/{id}/conclude", post(consultations::conclude))
        .route("/open311/v2/{file}", get(open311::top).post(open311::create))
        .route("/open311/v2/services/{file}", get(open311::definition))
        .route("/open311/v2/requests/{file}", get(open311::request))
        .route("/open311/v2/tokens/{file}", get(open311::token))
        .route("/api/v1/me", get(services::me))
        .with_state(state.clone())
        .merge(extra)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state, auth::authorize))
        .layer(middleware::from_fn(observe))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::http(StatusCode::NOT_FOUND, format!("no resource at {}", req.uri().path()))
}

/// Request metrics, tracing, and ProblemDetails for the bare 405s axum produces.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let elapsed = started.elapsed();
    metrics::counter!("citybrain_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.as_u16().to_string()).increment(1);
    metrics::histogram!("citybrain_http_request_seconds", "method" => method.to_string(), "route" => route)
        .record(elapsed.as_secs_f64());
    tracing::debug!(%method, %path, status = status.as_u16(), micros = elapsed.as_micros() as u64, "request");
    if status == StatusCode::METHOD_NOT_ALLOWED && resp.headers().get(header::CONTENT_TYPE).is_none() {
        let allow = resp.headers().get(header::ALLOW).cloned();
        let mut r = ApiError::http(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )
        .into_response();
        if let Some(a) = allow {
            r.headers_mut().insert(header::ALLOW, a);
        }
        return r;
    }
    // Rejections produced by axum itself (a path that is not valid UTF-8, ...)
    // come as plain text: give them the same ProblemDetails shape as ours.
    let plain_text = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    if (status.is_client_error() || status.is_server_error()) && plain_text {
        let (parts, body) = resp.into_parts();
        let detail = match axum::body::to_bytes(body, 64 * 1024).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => String::new(),
        };
        let mut e = ApiError::http(parts.status, detail);
        if parts.status == StatusCode::BAD_REQUEST {
            e.type_uri = "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest";
            e.title = "Invalid request";
        }
        return e.into_response();
    }
    resp
}

async fn health(State(s): State<AppState>) -> Response {
    let ok = s.hub.store().tenant_exists("").await.is_ok();
    let body = json!({"status": if ok { "ok" } else { "degraded" }, "backend": s.hub.store().backend(), "version": env!("CARGO_PKG_VERSION")});
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    respond::plain(status, body)
}

async fn version() -> Response {
    respond::plain(
        StatusCode::OK,
        json!({"name": "citybrain", "version": env!("CARGO_PKG_VERSION"), "ngsi-ld": "1.8"}),
    )
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let text = match &s.metrics {
        Some(h) => h.render(),
        None => "# metrics recorder not installed\n".to_string(),
    };
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
