//! Authentication and the role check, before any handler touches data.
//!
//! A request carries an API token or an OpenID Connect JWT as
//! `Authorization: Bearer …` (or, for cockpit pages, whose EventSource
//! cannot set headers, the `citybrain_token` cookie); with neither it is the
//! public's. The middleware finds the route's [`Action`] in [`RULES`], checks
//! the role and the tenant, applies the caller's rate limit, and leaves a
//! [`Caller`] in the request for the handlers, which narrow every read to
//! the caller's visibility and check every write against the policy.
//!
//! A route missing from [`RULES`] is the administrator's only: forgetting a
//! rule fails closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use citybrain_ngsild::time::Timestamp;
use citybrain_store::audit::AuditEntry;
use citybrain_store::Store;
use citybrain_trust::oidc::{JwtVerifier, OidcConfig};
use citybrain_trust::policy::Policy;
use citybrain_trust::{token, Action, Caller, Principal, Role};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::AppState;

/// The cookie a cockpit page's token travels in.
pub const COOKIE: &str = "citybrain_token";
/// The header a caller names the purpose of an access in (kept in the audit log).
pub const PURPOSE_HEADER: &str = "citybrain-purpose";
/// Longest purpose kept.
pub const MAX_PURPOSE_CHARS: usize = 200;
/// How long a checked token is trusted before its record is read again
/// (a revocation takes effect within this).
const TOKEN_RECHECK: Duration = Duration::from_secs(30);
/// Most checked tokens kept in memory.
const TOKEN_CACHE_MAX: usize = 10_000;
/// Fewest seconds between two fetches of the identity provider's keys.
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(60);

/// Every route, by method (`*`: any) and matched path, and what it does.
pub const RULES: &[(&str, &str, Action)] = &[
    ("GET", "/health", Action::Open),
    ("GET", "/version", Action::Open),
    ("GET", "/metrics", Action::Operate),
    ("GET", "/ngsi-ld/v1/entities", Action::Read),
    ("POST", "/ngsi-ld/v1/entities", Action::Write),
    ("PATCH", "/ngsi-ld/v1/entities", Action::Write),
    ("PUT", "/ngsi-ld/v1/entities", Action::Write),
    ("DELETE", "/ngsi-ld/v1/entities", Action::Operate),
    ("GET", "/ngsi-ld/v1/entities/{id}", Action::Read),
    ("PUT", "/ngsi-ld/v1/entities/{id}", Action::Write),
    ("PATCH", "/ngsi-ld/v1/entities/{id}", Action::Write),
    ("DELETE", "/ngsi-ld/v1/entities/{id}", Action::Write),
    ("POST", "/ngsi-ld/v1/entities/{id}/attrs", Action::Write),
    ("PATCH", "/ngsi-ld/v1/entities/{id}/attrs", Action::Write),
    ("PATCH", "/ngsi-ld/v1/entities/{id}/attrs/{attr}", Action::Write),
    ("PUT", "/ngsi-ld/v1/entities/{id}/attrs/{attr}", Action::Write),
    ("DELETE", "/ngsi-ld/v1/entities/{id}/attrs/{attr}", Action::Write),
    // entityOperations/query is a read: see `action_of`.
    ("POST", "/ngsi-ld/v1/entityOperations/{op}", Action::Write),
    ("GET", "/ngsi-ld/v1/types", Action::Read),
    ("GET", "/ngsi-ld/v1/types/{type}", Action::Read),
    ("GET", "/ngsi-ld/v1/attributes", Action::Read),
    ("GET", "/ngsi-ld/v1/attributes/{attr}", Action::Read),
    ("GET", "/ngsi-ld/v1/temporal/entities", Action::Read),
    ("POST", "/ngsi-ld/v1/temporal/entities", Action::Write),
    ("GET", "/ngsi-ld/v1/temporal/entities/{id}", Action::Read),
    ("DELETE", "/ngsi-ld/v1/temporal/entities/{id}", Action::Write),
    ("POST", "/ngsi-ld/v1/temporal/entities/{id}/attrs", Action::Write),
    (
        "DELETE",
        "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}",
        Action::Write,
    ),
    (
        "PATCH",
        "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instance}",
        Action::Write,
    ),
    (
        "DELETE",
        "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instance}",
        Action::Write,
    ),
    ("POST", "/ngsi-ld/v1/temporal/entityOperations/query", Action::Read),
    ("GET", "/ngsi-ld/v1/subscriptions", Action::Subscribe),
    ("POST", "/ngsi-ld/v1/subscriptions", Action::Subscribe),
    ("GET", "/ngsi-ld/v1/subscriptions/{id}", Action::Subscribe),
    ("PATCH", "/ngsi-ld/v1/subscriptions/{id}", Action::Subscribe),
    ("DELETE", "/ngsi-ld/v1/subscriptions/{id}", Action::Subscribe),
    ("GET", "/ngsi-ld/v1/subscriptions/{id}/stream", Action::Subscribe),
    ("GET", "/ngsi-ld/v1/jsonldContexts", Action::Read),
    ("POST", "/ngsi-ld/v1/jsonldContexts", Action::Write),
    ("GET", "/ngsi-ld/v1/jsonldContexts/{id}", Action::Read),
    ("DELETE", "/ngsi-ld/v1/jsonldContexts/{id}", Action::Operate),
    ("GET", "/api/me/accesses", Action::Own),
    ("GET", "/api/audit", Action::Operate),
    // The policies are public law; a decision reads the subject's records,
    // which the data-sharing policy then narrows like any read.
    ("GET", "/api/v1/policies", Action::Open),
    ("GET", "/api/v1/policies/{id}", Action::Open),
    ("POST", "/api/v1/decisions", Action::Read),
    // The catalog, bundles and figures are open; applying, confirming and
    // one's own records need an account; deciding is an officer's write.
    ("GET", "/api/v1/services", Action::Open),
    ("GET", "/api/v1/services/{id}", Action::Open),
    ("GET", "/api/v1/services/{id}/prefill", Action::Own),
    ("GET", "/api/v1/applications", Action::Own),
    ("POST", "/api/v1/applications", Action::Own),
    ("GET", "/api/v1/applications/{id}", Action::Own),
    ("POST", "/api/v1/applications/{id}/review", Action::Write),
    ("GET", "/api/v1/bundles", Action::Open),
    ("GET", "/api/v1/bundles/{id}", Action::Open),
    ("GET", "/api/v1/bundle-instances", Action::Own),
    ("POST", "/api/v1/bundle-instances", Action::Own),
    ("GET", "/api/v1/bundle-instances/{id}", Action::Own),
    ("POST", "/api/v1/bundle-instances/{id}/confirm", Action::Own),
    ("POST", "/api/v1/bundle-instances/{id}/cancel", Action::Own),
    (
        "POST",
        "/api/v1/bundle-instances/{id}/steps/{step}/review",
        Action::Write,
    ),
    ("GET", "/api/v1/grants", Action::Own),
    ("GET", "/api/v1/review-queue", Action::Own),
    ("GET", "/api/v1/service-metrics", Action::Open),
    ("GET", "/api/v1/openapi.json", Action::Open),
    ("GET", "/api/v1/me", Action::Open),
    // Appeals: anyone may file and read the public board; acting on an
    // appeal is checked by the domain (requester, department, moderator).
    ("GET", "/api/v1/appeal-categories", Action::Open),
    ("GET", "/api/v1/appeal-departments", Action::Open),
    ("GET", "/api/v1/appeals", Action::Open),
    ("POST", "/api/v1/appeals", Action::Open),
    ("GET", "/api/v1/appeals/{id}", Action::Open),
    ("POST", "/api/v1/appeals/{id}/actions", Action::Open),
    ("GET", "/api/v1/appeals/{id}/similar", Action::Own),
    ("GET", "/api/v1/appeal-queue", Action::Own),
    ("GET", "/api/v1/appeal-metrics", Action::Open),
    ("GET", "/api/v1/enterprise-overview", Action::Own),
    // Consultations: drafts and comments are public; commenting, supporting
    // and reporting need an account; publishing and concluding are a
    // department's (answers and moderation are checked by the domain).
    ("GET", "/api/v1/consultations", Action::Open),
    ("POST", "/api/v1/consultations", Action::Write),
    ("GET", "/api/v1/consultations/{id}", Action::Open),
    ("GET", "/api/v1/consultations/{id}/comments", Action::Open),
    ("POST", "/api/v1/consultations/{id}/comments", Action::Own),
    ("POST", "/api/v1/consultations/{id}/comments/{seq}/actions", Action::Own),
    ("POST", "/api/v1/consultations/{id}/conclude", Action::Write),
    // Open311: GETs are public; a POST carries its api_key in the form.
    ("GET", "/open311/v2/{file}", Action::Open),
    ("POST", "/open311/v2/{file}", Action::Open),
    ("GET", "/open311/v2/services/{file}", Action::Open),
    ("GET", "/open311/v2/requests/{file}", Action::Open),
    ("GET", "/open311/v2/tokens/{file}", Action::Open),
    // The cockpits (citybrain-cockpit-web): pages and assets are open; what
    // a cockpit shows is checked against its audience by the handlers.
    ("GET", "/", Action::Open),
    ("GET", "/login", Action::Open),
    ("GET", "/portal", Action::Open),
    ("GET", "/appeals", Action::Open),
    ("GET", "/enterprise", Action::Open),
    ("POST", "/login", Action::Open),
    ("POST", "/logout", Action::Open),
    ("GET", "/cockpit/{uid}", Action::Open),
    ("GET", "/assets/{*path}", Action::Open),
    ("GET", "/favicon.ico", Action::Open),
    ("GET", "/api/networks/{name}", Action::Open),
    ("GET", "/api/cockpits", Action::Read),
    ("GET", "/api/cockpits/{uid}", Action::Read),
    ("GET", "/api/cockpits/{uid}/snapshot", Action::Read),
    ("GET", "/api/cockpits/{uid}/events", Action::Read),
    ("POST", "/api/alerts/{id}/{action}", Action::Write),
];

/// What a request does; None: no rule (then only the administrator passes).
pub fn action_of(method: &Method, matched: Option<&str>, uri_path: &str) -> Option<Action> {
    let Some(route) = matched else {
        // No route matched: the 404 fallback, which touches nothing.
        return Some(Action::Open);
    };
    if route == "/ngsi-ld/v1/entityOperations/{op}" && uri_path.trim_end_matches('/').ends_with("/query") {
        return Some(Action::Read);
    }
    // HEAD is GET without a body.
    let m = if method == Method::HEAD { "GET" } else { method.as_str() };
    RULES
        .iter()
        .find(|(rm, rp, _)| (*rm == m || *rm == "*") && *rp == route)
        .map(|(_, _, a)| *a)
}

/// Where the identity provider's keys come from.
#[derive(Debug, Clone)]
pub enum Jwks {
    File(PathBuf),
    Url(String),
}

/// OpenID Connect settings.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub config: OidcConfig,
    pub jwks: Jwks,
}

/// How the API authenticates and limits callers.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// false: every request acts as an administrator (`--no-auth`).
    pub enabled: bool,
    pub policy: Arc<Policy>,
    pub oidc: Option<OidcSettings>,
    /// Requests per second per caller (None: unlimited), with this burst.
    pub rate_per_second: Option<NonZeroU32>,
    pub burst: NonZeroU32,
}

impl AuthConfig {
    /// No authentication, the shipped policy: for tests and `--no-auth`.
    pub fn disabled(policy: Arc<Policy>) -> Self {
        AuthConfig {
            enabled: false,
            policy,
            oidc: None,
            rate_per_second: None,
            burst: NonZeroU32::new(1).expect("1 is not zero"),
        }
    }
}

struct CheckedToken {
    fingerprint: [u8; 32],
    secret_hash: String,
    principal: Principal,
    expires_at: Option<Timestamp>,
    checked: Instant,
}

/// Why a request was refused before it reached a handler.
#[derive(Debug)]
pub enum Refused {
    /// No or bad credentials where they are needed (401).
    Unauthenticated(String),
    /// Good credentials, not enough rights (403).
    Forbidden(String),
    /// Over the caller's rate limit (429).
    TooMany,
    /// The token store or key set could not be read (503).
    Unavailable(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unauthenticated(d) => {
                let mut r = ApiError::unauthenticated(d).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"citybrain\""),
                );
                r
            }
            Refused::Forbidden(d) => ApiError::forbidden(d).into_response(),
            Refused::TooMany => {
                let mut r =
                    ApiError::too_many("this caller's request rate is over its limit; retry shortly").into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Refused::Unavailable(d) => ApiError::http(StatusCode::SERVICE_UNAVAILABLE, d).into_response(),
        }
    }
}

/// The authenticator: token records, the identity provider's keys, limits.
pub struct Auth {
    config: AuthConfig,
    store: Arc<dyn Store>,
    jwt: RwLock<Option<JwtVerifier>>,
    jwks_fetched: Mutex<Option<Instant>>,
    http: reqwest::Client,
    tokens: Mutex<HashMap<String, CheckedToken>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("enabled", &self.config.enabled).finish()
    }
}

impl Auth {
    /// Builds the authenticator; reads (or fetches) the OpenID keys now, so
    /// a wrong setting stops the server at start rather than at the first login.
    pub async fn new(config: AuthConfig, store: Arc<dyn Store>) -> Result<Arc<Auth>, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let limiter = config
            .rate_per_second
            .map(|r| RateLimiter::keyed(Quota::per_second(r).allow_burst(config.burst)));
        let auth = Auth {
            config,
            store,
            jwt: RwLock::new(None),
            jwks_fetched: Mutex::new(None),
            http,
            tokens: Mutex::new(HashMap::new()),
            limiter,
        };
        if let Some(o) = &auth.config.oidc {
            let v = auth.load_jwks(o).await?;
            *auth.jwt.write().map_err(|e| e.to_string())? = Some(v);
        }
        Ok(Arc::new(auth))
    }

    /// Authentication off, no policy: every request is an administrator's
    /// (tests, benchmarks, embedding).
    pub fn disabled(store: Arc<dyn Store>) -> Arc<Auth> {
        Arc::new(Auth {
            config: AuthConfig::disabled(Arc::new(Policy::empty())),
            store,
            jwt: RwLock::new(None),
            jwks_fetched: Mutex::new(None),
            http: reqwest::Client::new(),
            tokens: Mutex::new(HashMap::new()),
            limiter: None,
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.config.policy
    }

    async fn load_jwks(&self, o: &OidcSettings) -> Result<JwtVerifier, String> {
        let text = match &o.jwks {
            Jwks::File(p) => {
                let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
                if meta.len() as usize > citybrain_trust::oidc::MAX_JWKS_BYTES {
                    return Err(format!(
                        "{}: larger than {} bytes",
                        p.display(),
                        citybrain_trust::oidc::MAX_JWKS_BYTES
                    ));
                }
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?
            }
            Jwks::Url(u) => {
                if let Ok(mut t) = self.jwks_fetched.lock() {
                    *t = Some(Instant::now());
                }
                let r = self.http.get(u).send().await.map_err(|e| format!("{u}: {e}"))?;
                if !r.status().is_success() {
                    return Err(format!("{u}: HTTP {}", r.status()));
                }
                let b = r.bytes().await.map_err(|e| format!("{u}: {e}"))?;
                if b.len() > citybrain_trust::oidc::MAX_JWKS_BYTES {
                    return Err(format!(
                        "{u}: larger than {} bytes",
                        citybrain_trust::oidc::MAX_JWKS_BYTES
                    ));
                }
                String::from_utf8_lossy(&b).into_owned()
            }
        };
        JwtVerifier::new(o.config.clone(), &text).map_err(|e| e.to_string())
    }

    /// Who sent this request (the public when it carries no credentials).
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Principal, Refused> {
        if !self.config.enabled {
            return Ok(Principal::unrestricted("no-auth"));
        }
        let Some(bearer) = credentials(headers) else {
            return Ok(Principal::public());
        };
        if bearer.starts_with(token::PREFIX) {
            return self.api_token(&bearer).await;
        }
        self.oidc_token(&bearer).await
    }

    async fn api_token(&self, plain: &str) -> Result<Principal, Refused> {
        let bad = || Refused::Unauthenticated("the API token is not valid".into());
        let (id, secret) = token::parse(plain).map_err(|_| bad())?;
        let fp = token::fingerprint(secret);
        let now = Instant::now();
        if let Ok(cache) = self.tokens.lock() {
            if let Some(c) = cache.get(id) {
                if now.duration_since(c.checked) < TOKEN_RECHECK
                    && c.fingerprint == fp
                    && c.expires_at.is_none_or(|e| e > chrono::Utc::now())
                {
                    return Ok(c.principal.clone());
                }
            }
        }
        let rec = self
            .store
            .api_token(id)
            .await
            .map_err(|e| Refused::Unavailable(format!("cannot read the token store: {e}")))?
            .ok_or_else(bad)?;
        if rec.revoked_at.is_some() {
            return Err(Refused::Unauthenticated("the API token was revoked".into()));
        }
        if rec.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
            return Err(Refused::Unauthenticated("the API token has expired".into()));
        }
        let known = self.tokens.lock().ok().and_then(|c| {
            c.get(id)
                .map(|x| x.fingerprint == fp && x.secret_hash == rec.secret_hash)
        });
        if known != Some(true) {
            // The memory-hard check, off the async threads.
            let (s, h) = (secret.to_string(), rec.secret_hash.clone());
            let ok = tokio::task::spawn_blocking(move || token::verify_secret(&s, &h))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(bad());
            }
        }
        let role: Role = rec
            .role
            .parse()
            .map_err(|e: String| Refused::Unavailable(format!("token {id}: {e}")))?;
        let principal = Principal {
            actor: format!("token:{id}"),
            role,
            departments: rec.departments.clone(),
            subject: rec.subject.clone(),
            tenants: if rec.tenants.is_empty() {
                vec![String::new()]
            } else {
                rec.tenants.clone()
            },
        };
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                id.to_string(),
                CheckedToken {
                    fingerprint: fp,
                    secret_hash: rec.secret_hash,
                    principal: principal.clone(),
                    expires_at: rec.expires_at,
                    checked: now,
                },
            );
        }
        Ok(principal)
    }

    async fn oidc_token(&self, jwt: &str) -> Result<Principal, Refused> {
        let Some(o) = &self.config.oidc else {
            return Err(Refused::Unauthenticated(
                "the bearer token is not a citybrain API token, and no OpenID Connect issuer is configured".into(),
            ));
        };
        let knows = self
            .jwt
            .read()
            .ok()
            .and_then(|v| v.as_ref().map(|v| v.knows_key_of(jwt)))
            .unwrap_or(false);
        // A key the set lacks may be a rotated-in one: fetch the set again (not too often).
        if !knows && matches!(o.jwks, Jwks::Url(_)) {
            let due = self
                .jwks_fetched
                .lock()
                .ok()
                .is_some_and(|t| t.is_none_or(|t| t.elapsed() >= JWKS_REFETCH_MIN));
            if due {
                match self.load_jwks(o).await {
                    Ok(v) => {
                        if let Ok(mut w) = self.jwt.write() {
                            *w = Some(v);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "refetching the identity provider's keys failed"),
                }
            }
        }
        let guard = self.jwt.read().map_err(|e| Refused::Unavailable(e.to_string()))?;
        let v = guard
            .as_ref()
            .ok_or_else(|| Refused::Unavailable("the identity provider's keys are not loaded".into()))?;
        v.verify(jwt).map_err(|e| Refused::Unauthenticated(e.to_string()))
    }

    fn over_limit(&self, key: &str) -> bool {
        match &self.limiter {
            Some(l) => l.check_key(&key.to_string()).is_err(),
            None => false,
        }
    }
}

/// The bearer token, from the header or the cockpit cookie.
fn credentials(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        return Some(t.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn purpose(headers: &HeaderMap) -> Option<String> {
    headers
        .get(PURPOSE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().chars().take(MAX_PURPOSE_CHARS).collect::<String>())
        .filter(|s| !s.is_empty())
}

/// The middleware: identify, check role, tenant and rate, then hand on.
pub async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let path = req.uri().path().to_string();
    let action = action_of(&method, matched.as_deref(), &path);
    let principal = match s.auth.identify(req.headers()).await {
        Ok(p) => p,
        Err(r) => {
            metrics::counter!("citybrain_auth_refused_total", "status" => "401").increment(1);
            return r.into_response();
        }
    };
    let limit_key = if principal.is_authenticated() {
        principal.actor.clone()
    } else {
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        format!("public:{ip}")
    };
    if s.auth.over_limit(&limit_key) {
        metrics::counter!("citybrain_auth_refused_total", "status" => "429").increment(1);
        return Refused::TooMany.into_response();
    }
    let tenant = req
        .headers()
        .get("NGSILD-Tenant")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    let refusal = match action {
        Some(a) if principal.role.may(a) => {
            if principal.may_use_tenant(&tenant) {
                None
            } else {
                Some(format!("{} may not use tenant '{tenant}'", principal.actor))
            }
        }
        Some(a) => Some(format!("the {} role may not {}", principal.role, describe(a))),
        None if principal.role == Role::Admin => None,
        None => Some(format!("{method} {path} is for administrators only")),
    };
    if let Some(why) = refusal {
        if !principal.is_authenticated() {
            metrics::counter!("citybrain_auth_refused_total", "status" => "401").increment(1);
            return Refused::Unauthenticated(format!("{method} {path} needs credentials (Authorization: Bearer …)"))
                .into_response();
        }
        metrics::counter!("citybrain_auth_refused_total", "status" => "403").increment(1);
        let entry = audit_entry(&principal, "refused", &format!("{method} {path}"), &tenant, "403");
        if let Err(e) = s.hub.audit(vec![entry]).await {
            return ApiError::from(e).into_response();
        }
        return Refused::Forbidden(why).into_response();
    }
    let caller = Arc::new(Caller::new(principal, s.auth.policy().clone(), purpose(req.headers())));
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    // A refusal by the data-sharing policy (inside a handler) is a decision
    // about a known caller too: on the record.
    if resp.status() == StatusCode::FORBIDDEN && caller.principal.is_authenticated() {
        let mut entry = audit_entry(
            &caller.principal,
            "refused",
            &format!("{method} {path}"),
            &tenant,
            "403",
        );
        entry.purpose = caller.purpose.clone();
        if let Err(e) = s.hub.audit(vec![entry]).await {
            return ApiError::from(e).into_response();
        }
    }
    resp
}

fn describe(a: Action) -> &'static str {
    match a {
        Action::Open | Action::Read => "read this",
        Action::Write => "write data",
        Action::Subscribe => "manage subscriptions",
        Action::Own => "see an account's records",
        Action::Operate => "operate the hub",
    }
}

/// An audit entry for this caller.
pub fn audit_entry(p: &Principal, action: &str, resource: &str, tenant: &str, outcome: &str) -> AuditEntry {
    AuditEntry {
        at: chrono::Utc::now(),
        actor: p.actor.clone(),
        role: p.role.to_string(),
        departments: p.departments.clone(),
        action: action.into(),
        resource: resource.into(),
        tenant: tenant.into(),
        entities: vec![],
        subjects: vec![],
        purpose: None,
        outcome: outcome.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_a_method_and_a_route_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, p, _) in RULES {
            assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m), "{m}");
            assert!(p.starts_with('/'), "{p}");
            assert!(seen.insert((m, p)), "{m} {p} twice");
        }
    }

    #[test]
    fn query_operations_read_and_other_batches_write() {
        let r = Some("/ngsi-ld/v1/entityOperations/{op}");
        assert_eq!(
            action_of(&Method::POST, r, "/ngsi-ld/v1/entityOperations/query"),
            Some(Action::Read)
        );
        assert_eq!(
            action_of(&Method::POST, r, "/ngsi-ld/v1/entityOperations/upsert"),
            Some(Action::Write)
        );
        assert_eq!(action_of(&Method::HEAD, Some("/health"), "/health"), Some(Action::Open));
        assert_eq!(action_of(&Method::POST, Some("/health"), "/health"), None);
    }

    #[test]
    fn credentials_come_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(credentials(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; citybrain_token=cbt_x"));
        assert_eq!(credentials(&h).as_deref(), Some("cbt_x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(credentials(&h).as_deref(), Some("abc"));
    }
}
