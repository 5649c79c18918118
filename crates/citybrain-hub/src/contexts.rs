//! @context resolution: the core context is embedded; user contexts come
//! inline, from `/jsonldContexts` (hosted per tenant), from the operator's
//! URL → file map, or are fetched once (with a timeout and a size limit) and
//! cached. Resolved term maps are cached by the exact @context value.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use citybrain_ngsild::context::{is_core_context_url, parse_context_value, ContextRef, CORE_CONTEXT_URL};
use citybrain_ngsild::{ErrorKind, NgsiError, TermMap};
use citybrain_store::ContextRecord;
use serde_json::{json, Map, Value};

use crate::{now, Hub, Result};

const MAX_CONTEXT_BYTES: usize = 1 << 20;
const MAX_NESTING: usize = 4;
const TERM_CACHE_CAP: usize = 512;

/// The resolved @context of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub terms: Arc<TermMap>,
    /// The @context as the client gave it (for ld+json responses and Link headers).
    pub value: Value,
    /// When the client's @context is not one URL (inline terms, several
    /// URLs): the local id of the ImplicitlyCreated context that holds it, so
    /// a Link header can name it (GS CIM 009 V1.8.1, 5.13.1).
    pub implicit: Option<String>,
}

impl RequestContext {
    pub fn core() -> Self {
        RequestContext {
            terms: TermMap::core(),
            value: Value::String(CORE_CONTEXT_URL.into()),
            implicit: None,
        }
    }

    /// The URL to put in a Link header: the client's own URL when it gave
    /// exactly one, else the core context.
    pub fn link_url(&self) -> String {
        if let Some(id) = &self.implicit {
            return format!("/ngsi-ld/v1/jsonldContexts/{id}");
        }
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Array(a) => match a.iter().filter_map(Value::as_str).find(|u| !is_core_context_url(u)) {
                Some(u) => u.to_string(),
                None => CORE_CONTEXT_URL.into(),
            },
            _ => CORE_CONTEXT_URL.into(),
        }
    }

    /// The value of `@context` in an ld+json body: the request's own, as it
    /// gave it (a Link URL as a string, a body's member unchanged); the core
    /// context is implied and not appended (GS CIM 009 V1.8.1, 6.3.6).
    pub fn body_value(&self) -> Value {
        self.value.clone()
    }
}

pub(crate) struct Resolver {
    map: HashMap<String, PathBuf>,
    timeout: Duration,
    http: reqwest::Client,
    fetched: Mutex<HashMap<String, Value>>,
    terms: Mutex<HashMap<String, Arc<TermMap>>>,
}

impl Resolver {
    pub(crate) fn new(map: HashMap<String, PathBuf>, timeout: Duration, http: reqwest::Client) -> Self {
        Resolver {
            map,
            timeout,
            http,
            fetched: Mutex::new(HashMap::new()),
            terms: Mutex::new(HashMap::new()),
        }
    }

    fn invalidate(&self) {
        if let Ok(mut t) = self.terms.lock() {
            t.clear();
        }
    }
}

fn not_available(url: &str, why: impl std::fmt::Display) -> NgsiError {
    NgsiError::new(
        ErrorKind::LdContextNotAvailable,
        format!("@context {url} could not be retrieved: {why}"),
    )
}

fn context_of(url: &str, doc: &Value) -> Result<Value> {
    doc.get("@context").cloned().ok_or_else(|| {
        NgsiError::invalid(format!(
            "@context {url} is not a JSON-LD context document (no \"@context\" member)"
        ))
    })
}

impl Hub {
    /// Resolves the @context of a request (None: the core context only).
    pub async fn resolve_context(&self, tenant: &str, value: Option<&Value>) -> Result<RequestContext> {
        let Some(value) = value else {
            return Ok(RequestContext::core());
        };
        let key = format!("{tenant}\u{1}{value}");
        let implicit = implicit_id(tenant, value);
        if let Some(t) = self.inner.contexts.terms.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(RequestContext {
                terms: t,
                value: value.clone(),
                implicit,
            });
        }
        let mut objects: Vec<Map<String, Value>> = Vec::new();
        self.collect(tenant, value, 0, &mut objects).await?;
        let terms = Arc::new(TermMap::build(&objects)?);
        // First sight of an inline or composite @context: keep it as an
        // ImplicitlyCreated context (same id for the same value, so this is
        // an idempotent upsert), unless the tenant does not exist yet.
        let mut implicit = implicit;
        if let Some(id) = &implicit {
            if self.inner.store.tenant_exists(tenant).await? {
                let rec = ContextRecord {
                    id: id.clone(),
                    url: format!("urn:ngsi-ld:context:{id}"),
                    kind: "ImplicitlyCreated".into(),
                    body: json!({"@context": value}),
                    created_at: now(),
                };
                self.inner.store.put_context(tenant, &rec).await?;
            } else {
                implicit = None;
            }
        }
        if let Ok(mut m) = self.inner.contexts.terms.lock() {
            if m.len() >= TERM_CACHE_CAP {
                m.clear();
            }
            m.insert(key, terms.clone());
        }
        Ok(RequestContext {
            terms,
            value: value.clone(),
            implicit,
        })
    }

    fn collect<'a>(
        &'a self,
        tenant: &'a str,
        value: &'a Value,
        depth: usize,
        out: &'a mut Vec<Map<String, Value>>,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if depth > MAX_NESTING {
                return Err(NgsiError::invalid(
                    "@context nests remote contexts more than 4 levels deep",
                ));
            }
            for r in parse_context_value(value).map_err(|e| NgsiError::invalid(e.detail))? {
                match r {
                    ContextRef::Inline(m) => out.push(m),
                    ContextRef::Url(u) if is_core_context_url(&u) => {}
                    ContextRef::Url(u) => {
                        let doc = self.fetch_context(tenant, &u).await?;
                        let inner = context_of(&u, &doc)?;
                        self.collect(tenant, &inner, depth + 1, out).await?;
                    }
                }
            }
            Ok(())
        })
    }

    async fn fetch_context(&self, tenant: &str, url: &str) -> Result<Value> {
        // Hosted here: by id at the end of our own /jsonldContexts/ URL, or by the URL it was cached under.
        let hosted = self.inner.store.contexts(tenant).await?;
        let by_id = url.rsplit_once("/jsonldContexts/").map(|(_, id)| id);
        if let Some(c) = hosted.iter().find(|c| c.url == url || Some(c.id.as_str()) == by_id) {
            return Ok(c.body.clone());
        }
        let r = &self.inner.contexts;
        if let Some(doc) = r.fetched.lock().ok().and_then(|m| m.get(url).cloned()) {
            return Ok(doc);
        }
        let doc = if let Some(path) = r.map.get(url) {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| not_available(url, format!("mapped file {}: {e}", path.display())))?;
            serde_json::from_str::<Value>(&text)
                .map_err(|e| NgsiError::invalid(format!("@context file {} is not JSON: {e}", path.display())))?
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let resp = r
                .http
                .get(url)
                .header("Accept", "application/ld+json, application/json")
                .timeout(r.timeout)
                .send()
                .await
                .map_err(|e| not_available(url, e))?;
            if !resp.status().is_success() {
                return Err(not_available(url, format!("HTTP {}", resp.status())));
            }
            let bytes = resp.bytes().await.map_err(|e| not_available(url, e))?;
            if bytes.len() > MAX_CONTEXT_BYTES {
                return Err(NgsiError::invalid(format!("@context {url} is larger than 1 MiB")));
            }
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| NgsiError::invalid(format!("@context {url} is not JSON: {e}")))?
        } else {
            return Err(not_available(
                url,
                "only http(s) URLs, hosted contexts and mapped files can be resolved",
            ));
        };
        context_of(url, &doc)?;
        if let Ok(mut m) = r.fetched.lock() {
            m.insert(url.to_string(), doc.clone());
        }
        // Remember what we fetched, so /jsonldContexts lists it as Cached.
        let rec = ContextRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            url: url.to_string(),
            kind: "Cached".into(),
            body: doc.clone(),
            created_at: now(),
        };
        self.inner.store.put_context(tenant, &rec).await?;
        Ok(doc)
    }

    /// POST /jsonldContexts: stores a context and returns its record.
    pub async fn add_context(&self, tenant: &str, body: Value) -> Result<ContextRecord> {
        let ctx = body
            .get("@context")
            .ok_or_else(|| NgsiError::bad_data("the body must be a JSON object with an \"@context\" member"))?;
        // Validate by resolving it.
        let mut objs = Vec::new();
        self.collect(tenant, ctx, 0, &mut objs).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let rec = ContextRecord {
            url: format!("urn:ngsi-ld:context:{id}"),
            id,
            kind: "Hosted".into(),
            body,
            created_at: now(),
        };
        self.inner.store.ensure_tenant(tenant).await?;
        self.inner.store.put_context(tenant, &rec).await?;
        Ok(rec)
    }

    /// GET /jsonldContexts (5.13.3): every context held, or those of one
    /// kind (Hosted, Cached or ImplicitlyCreated, any letter case).
    pub async fn list_contexts(&self, tenant: &str, kind: Option<&str>) -> Result<Vec<ContextRecord>> {
        if let Some(k) = kind {
            if !KINDS.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                return Err(NgsiError::bad_data(format!(
                    "kind '{k}' is not Hosted, Cached or ImplicitlyCreated"
                )));
            }
        }
        let mut all = self.inner.store.contexts(tenant).await?;
        if let Some(k) = kind {
            all.retain(|c| c.kind.eq_ignore_ascii_case(k));
        }
        Ok(all)
    }

    /// One held context record by local id or URL (for `details=true`).
    pub async fn context_record(&self, tenant: &str, id: &str) -> Result<ContextRecord> {
        self.inner
            .store
            .contexts(tenant)
            .await?
            .into_iter()
            .find(|c| c.id == id || c.url == id)
            .ok_or_else(|| NgsiError::not_found(format!("@context {id} is not held by this hub")))
    }

    /// A stored context by id, or the core context by its URL.
    pub async fn get_context(&self, tenant: &str, id: &str) -> Result<Value> {
        if is_core_context_url(id) || id == "core" {
            let core: Value = serde_json::from_str(citybrain_ngsild::context::CORE_CONTEXT_V1_8)
                .map_err(|e| NgsiError::internal(e.to_string()))?;
            return Ok(core);
        }
        Ok(self.context_record(tenant, id).await?.body)
    }

    /// DELETE /jsonldContexts/{id} (5.13.5). With `reload`, a Cached
    /// context is fetched again from its URL and replaced (only Cached ones
    /// can be reloaded); the core context cannot be deleted.
    pub async fn delete_context(&self, tenant: &str, id: &str, reload: bool) -> Result<()> {
        if is_core_context_url(id) || id == "core" {
            return Err(NgsiError::bad_data("the core @context cannot be deleted"));
        }
        let c = self.context_record(tenant, id).await?;
        if reload && c.kind != "Cached" {
            return Err(NgsiError::bad_data(format!(
                "reload=true applies to Cached contexts; {id} is {}",
                c.kind
            )));
        }
        self.inner.store.delete_context(tenant, &c.id).await?;
        if let Ok(mut m) = self.inner.contexts.fetched.lock() {
            m.remove(&c.url);
        }
        self.inner.contexts.invalidate();
        if reload {
            // Fetched anew and stored again as Cached; the old copy is gone
            // either way, so a failed fetch leaves nothing stale behind.
            self.fetch_context(tenant, &c.url).await?;
        }
        Ok(())
    }

    /// A context record as `/jsonldContexts?details=true` shows it.
    pub fn context_details(c: &ContextRecord, base: &str) -> Value {
        json!({
            "URL": if c.kind != "Cached" { format!("{base}/ngsi-ld/v1/jsonldContexts/{}", c.id) } else { c.url.clone() },
            "localId": c.id,
            "kind": c.kind,
            "createdAt": citybrain_ngsild::time::format(&c.created_at),
        })
    }
}

const KINDS: [&str; 3] = ["Hosted", "Cached", "ImplicitlyCreated"];

/// The local id of the ImplicitlyCreated context for a @context value that
/// is not one URL (None when it is): a stable hash of tenant and value.
fn implicit_id(tenant: &str, value: &Value) -> Option<String> {
    let single_url = match value {
        Value::String(_) => true,
        Value::Array(a) => {
            a.iter()
                .filter(|v| !v.as_str().is_some_and(is_core_context_url))
                .count()
                <= 1
                && a.iter().all(Value::is_string)
        }
        _ => false,
    };
    if single_url {
        return None;
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tenant.bytes().chain([0u8]).chain(value.to_string().bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    Some(format!("implicit-{h:016x}"))
}
