//! Subscriptions: CRUD, matching a committed change against them, building
//! notification payloads, in-process streams (SSE), periodic notifications
//! and status bookkeeping.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use citybrain_ngsild::model::{value_member, ChangeKind};
use citybrain_ngsild::render;
use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::subscription::{compile, ChangeEvent, Compiled, STATUS_MEMBERS};
use citybrain_ngsild::time::{self, Timestamp};
use citybrain_ngsild::{Entity, ErrorKind, NgsiError};
use citybrain_store::{Page, SubscriptionRecord};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::contexts::RequestContext;
use crate::delivery::Job;
use crate::entities::Slot;
use crate::{now, Hub, Result};

/// Outbox rows to commit: (subscription id, envelope JSON).
pub(crate) type Outbox = Vec<(String, String)>;
/// Stream events to publish once the commit succeeded.
pub(crate) type StreamOut = Vec<(Arc<SubEntry>, Arc<str>)>;

/// Events a stream keeps for resumption with Last-Event-ID.
const BACKLOG: usize = 1024;
/// Subscriptions per tenant.
const MAX_SUBSCRIPTIONS: usize = 10_000;

/// One notification on a subscription's stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub id: u64,
    pub data: Arc<str>,
}

/// A consumer's view of a stream: what it missed, then live events.
pub struct StreamSubscription {
    pub backlog: Vec<StreamEvent>,
    /// The requested Last-Event-ID was older than the backlog: the consumer
    /// must re-read current state (resync).
    pub gap: bool,
    pub rx: broadcast::Receiver<StreamEvent>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Status {
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_notification: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    pub failed: bool,
    pub dirty: bool,
}

pub(crate) struct SubEntry {
    pub tenant: String,
    pub id: String,
    pub doc: Map<String, Value>,
    pub compiled: Compiled,
    pub ctx: RequestContext,
    /// The @context notifications are compacted with: the subscription's
    /// `jsonldContext` when it names one (5.2.12), else `ctx`.
    pub notify_ctx: RequestContext,
    pub status: Mutex<Status>,
    last_sent: Mutex<Option<Instant>>,
    next_periodic: Mutex<Option<Instant>>,
    stream: broadcast::Sender<StreamEvent>,
    backlog: Mutex<VecDeque<StreamEvent>>,
    next_event: AtomicU64,
}

impl SubEntry {
    fn publish(&self, data: Arc<str>) {
        let ev = StreamEvent {
            id: self.next_event.fetch_add(1, Ordering::SeqCst) + 1,
            data,
        };
        if let Ok(mut b) = self.backlog.lock() {
            if b.len() >= BACKLOG {
                b.pop_front();
            }
            b.push_back(ev.clone());
        }
        // No receiver is fine: nobody is watching the stream right now.
        let _ = self.stream.send(ev);
    }

    pub(crate) fn record(&self, ok: bool, at: Timestamp) {
        if let Ok(mut s) = self.status.lock() {
            s.last_notification = Some(at);
            if ok {
                s.times_sent += 1;
                s.last_success = Some(at);
                s.failed = false;
            } else {
                s.times_failed += 1;
                s.last_failure = Some(at);
                s.failed = true;
            }
            s.dirty = true;
        }
    }

    fn is_http(&self) -> bool {
        self.compiled.endpoint.starts_with("http")
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    by_tenant: RwLock<HashMap<String, Vec<Arc<SubEntry>>>>,
}

impl Registry {
    fn list(&self, tenant: &str) -> Vec<Arc<SubEntry>> {
        self.by_tenant
            .read()
            .ok()
            .and_then(|m| m.get(tenant).cloned())
            .unwrap_or_default()
    }
    pub(crate) fn get(&self, tenant: &str, id: &str) -> Option<Arc<SubEntry>> {
        self.list(tenant).into_iter().find(|s| s.id == id)
    }
    fn put(&self, e: Arc<SubEntry>) {
        if let Ok(mut m) = self.by_tenant.write() {
            let list = m.entry(e.tenant.clone()).or_default();
            list.retain(|s| s.id != e.id);
            list.push(e);
        }
    }
    fn remove(&self, tenant: &str, id: &str) -> Option<Arc<SubEntry>> {
        let mut m = self.by_tenant.write().ok()?;
        let list = m.get_mut(tenant)?;
        let pos = list.iter().position(|s| s.id == id)?;
        Some(list.remove(pos))
    }
    fn all(&self) -> Vec<Arc<SubEntry>> {
        self.by_tenant
            .read()
            .map(|m| m.values().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

fn parse_ts(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str).and_then(time::parse)
}

impl Hub {
    fn build_entry(
        &self,
        tenant: &str,
        doc: Map<String, Value>,
        ctx: RequestContext,
        notify_ctx: RequestContext,
        previous: Option<&SubEntry>,
    ) -> Result<Arc<SubEntry>> {
        let compiled = compile(&doc, &ctx.terms, self.limits().input.max_geo_points)?;
        let n = doc.get("notification");
        let status = match previous {
            Some(p) => p.status.lock().map(|s| s.clone()).unwrap_or_default(),
            None => Status {
                times_sent: n.and_then(|n| n.get("timesSent")).and_then(Value::as_u64).unwrap_or(0),
                times_failed: n
                    .and_then(|n| n.get("timesFailed"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                last_notification: parse_ts(n.and_then(|n| n.get("lastNotification"))),
                last_success: parse_ts(n.and_then(|n| n.get("lastSuccess"))),
                last_failure: parse_ts(n.and_then(|n| n.get("lastFailure"))),
                failed: n.and_then(|n| n.get("status")).and_then(Value::as_str) == Some("failed"),
                dirty: false,
            },
        };
        let (stream, backlog, next) = match previous {
            Some(p) => (
                p.stream.clone(),
                p.backlog.lock().map(|b| b.clone()).unwrap_or_default(),
                p.next_event.load(Ordering::SeqCst),
            ),
            None => (broadcast::channel(BACKLOG).0, VecDeque::new(), 0),
        };
        Ok(Arc::new(SubEntry {
            tenant: tenant.to_string(),
            id: compiled.id.clone(),
            doc,
            compiled,
            ctx,
            notify_ctx,
            status: Mutex::new(status),
            last_sent: Mutex::new(None),
            next_periodic: Mutex::new(None),
            stream,
            backlog: Mutex::new(backlog),
            next_event: AtomicU64::new(next),
        }))
    }

    pub(crate) async fn load_subscriptions(&self) -> Result<()> {
        for rec in self.inner.store.subscriptions().await? {
            let ctx = match self.resolve_context(&rec.tenant, rec.doc.get("@context")).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(subscription = %rec.id, error = %e, "cannot resolve the subscription's @context; using the core context");
                    RequestContext::core()
                }
            };
            let notify_ctx = match self.notify_context(&rec.tenant, &rec.doc, &ctx).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(subscription = %rec.id, error = %e, "cannot resolve the subscription's jsonldContext; notifying with its @context");
                    ctx.clone()
                }
            };
            match self.build_entry(&rec.tenant, rec.doc.clone(), ctx, notify_ctx, None) {
                Ok(e) => self.inner.subs.put(e),
                Err(error) => {
                    tracing::warn!(subscription = %rec.id, %error, "stored subscription no longer valid; skipped")
                }
            }
        }
        Ok(())
    }

    /// The context notifications use: `jsonldContext` (a URI, resolved like
    /// a Link header) or the subscription's own.
    async fn notify_context(
        &self,
        tenant: &str,
        doc: &Map<String, Value>,
        ctx: &RequestContext,
    ) -> Result<RequestContext> {
        match doc.get("jsonldContext") {
            None => Ok(ctx.clone()),
            Some(Value::String(u)) if citybrain_ngsild::context::looks_like_iri(u) => {
                self.resolve_context(tenant, Some(&Value::String(u.clone()))).await
            }
            Some(other) => Err(NgsiError::bad_data(format!("jsonldContext {other} is not a URI"))),
        }
    }

    /// POST /subscriptions
    pub async fn create_subscription(&self, tenant: &str, body: &Value, ctx: &RequestContext) -> Result<String> {
        let mut doc = body
            .as_object()
            .cloned()
            .ok_or_else(|| NgsiError::bad_data("a subscription must be a JSON object"))?;
        let id = match doc.get("id") {
            Some(Value::String(s)) if citybrain_ngsild::context::looks_like_iri(s) => s.clone(),
            Some(_) => return Err(NgsiError::bad_data("subscription id must be a URI")),
            None => format!("urn:ngsi-ld:Subscription:{}", uuid::Uuid::new_v4()),
        };
        if self.inner.subs.get(tenant, &id).is_some() {
            return Err(NgsiError::new(
                ErrorKind::AlreadyExists,
                format!("subscription {id} already exists"),
            ));
        }
        if self.inner.subs.list(tenant).len() >= MAX_SUBSCRIPTIONS {
            return Err(NgsiError::new(
                ErrorKind::OperationNotSupported,
                format!("tenant already has {MAX_SUBSCRIPTIONS} subscriptions"),
            ));
        }
        for k in STATUS_MEMBERS {
            doc.remove(*k);
        }
        doc.insert("id".into(), Value::String(id.clone()));
        doc.insert("type".into(), Value::String("Subscription".into()));
        if body.get("@context").is_none() && ctx.value != RequestContext::core().value {
            doc.insert("@context".into(), ctx.value.clone());
        }
        let stamp = Value::String(time::format(&now()));
        doc.insert("createdAt".into(), stamp.clone());
        doc.insert("modifiedAt".into(), stamp);
        let notify_ctx = self.notify_context(tenant, &doc, ctx).await?;
        let entry = self.build_entry(tenant, doc.clone(), ctx.clone(), notify_ctx, None)?;
        self.inner
            .store
            .put_subscription(&SubscriptionRecord {
                tenant: tenant.into(),
                id: id.clone(),
                doc,
            })
            .await?;
        self.inner.subs.put(entry);
        Ok(id)
    }

    /// GET /subscriptions
    pub async fn list_subscriptions(&self, tenant: &str, page: Page) -> Result<(Vec<Value>, usize)> {
        self.require_tenant(tenant).await?;
        let mut all = self.inner.subs.list(tenant);
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let total = all.len();
        Ok((
            all.iter()
                .skip(page.offset)
                .take(page.limit)
                .map(|s| self.render_subscription(s))
                .collect(),
            total,
        ))
    }

    /// GET /subscriptions/{id}
    pub async fn get_subscription(&self, tenant: &str, id: &str) -> Result<Value> {
        self.require_tenant(tenant).await?;
        let s = self.inner.subs.get(tenant, id).ok_or_else(|| sub_not_found(id))?;
        Ok(self.render_subscription(&s))
    }

    fn render_subscription(&self, s: &SubEntry) -> Value {
        let mut doc = s.doc.clone();
        doc.remove("@context");
        let st = s.status.lock().map(|s| s.clone()).unwrap_or_default();
        let state = if !s.compiled.is_active {
            "paused"
        } else if !s.compiled.active_at(now()) {
            "expired"
        } else {
            "active"
        };
        doc.insert("status".into(), Value::String(state.into()));
        doc.insert("isActive".into(), Value::Bool(s.compiled.is_active));
        if let Some(Value::Object(n)) = doc.get_mut("notification") {
            n.insert(
                "status".into(),
                Value::String(if st.failed { "failed" } else { "ok" }.into()),
            );
            n.insert("timesSent".into(), json!(st.times_sent));
            n.insert("timesFailed".into(), json!(st.times_failed));
            for (k, v) in [
                ("lastNotification", st.last_notification),
                ("lastSuccess", st.last_success),
                ("lastFailure", st.last_failure),
            ] {
                if let Some(t) = v {
                    n.insert(k.into(), Value::String(time::format(&t)));
                }
            }
        }
        Value::Object(doc)
    }

    /// PATCH /subscriptions/{id}: merges the fragment (notification and its
    /// endpoint one level deep) and re-validates the whole.
    pub async fn update_subscription(&self, tenant: &str, id: &str, patch: &Value, ctx: &RequestContext) -> Result<()> {
        self.require_tenant(tenant).await?;
        let old = self.inner.subs.get(tenant, id).ok_or_else(|| sub_not_found(id))?;
        let patch = patch
            .as_object()
            .ok_or_else(|| NgsiError::bad_data("a subscription fragment must be a JSON object"))?;
        if let Some(pid) = patch.get("id") {
            if pid.as_str() != Some(id) {
                return Err(NgsiError::bad_data("a subscription's id cannot be changed"));
            }
        }
        let mut doc = old.doc.clone();
        for (k, v) in patch {
            if STATUS_MEMBERS.contains(&k.as_str()) || k == "@context" {
                continue;
            }
            match (doc.get_mut(k), v) {
                (Some(Value::Object(cur)), Value::Object(new)) if k == "notification" => {
                    for (nk, nv) in new {
                        match (cur.get_mut(nk), nv) {
                            (Some(Value::Object(ep)), Value::Object(newep)) if nk == "endpoint" => {
                                for (ek, ev) in newep {
                                    ep.insert(ek.clone(), ev.clone());
                                }
                            }
                            _ => {
                                cur.insert(nk.clone(), nv.clone());
                            }
                        }
                    }
                }
                _ if v.is_null() => {
                    doc.remove(k);
                }
                _ => {
                    doc.insert(k.clone(), v.clone());
                }
            }
        }
        // Terms in the fragment are read with the fragment's context when it has one.
        let ctx = if ctx.value != RequestContext::core().value {
            ctx.clone()
        } else {
            old.ctx.clone()
        };
        if ctx.value != RequestContext::core().value {
            doc.insert("@context".into(), ctx.value.clone());
        }
        doc.insert("modifiedAt".into(), Value::String(time::format(&now())));
        let notify_ctx = self.notify_context(tenant, &doc, &ctx).await?;
        let entry = self.build_entry(tenant, doc.clone(), ctx, notify_ctx, Some(&old))?;
        self.inner
            .store
            .put_subscription(&SubscriptionRecord {
                tenant: tenant.into(),
                id: id.into(),
                doc,
            })
            .await?;
        self.inner.subs.put(entry);
        Ok(())
    }

    /// DELETE /subscriptions/{id}
    pub async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<()> {
        self.require_tenant(tenant).await?;
        if self.inner.subs.get(tenant, id).is_none() {
            return Err(sub_not_found(id));
        }
        self.inner.store.delete_subscription(tenant, id).await?;
        self.inner.subs.remove(tenant, id);
        Ok(())
    }

    /// Opens the in-process stream of a subscription's notifications.
    pub async fn stream(&self, tenant: &str, id: &str, last_event_id: Option<u64>) -> Result<StreamSubscription> {
        self.require_tenant(tenant).await?;
        let s = self.inner.subs.get(tenant, id).ok_or_else(|| sub_not_found(id))?;
        // Subscribe before reading the backlog so nothing falls between them.
        let rx = s.stream.subscribe();
        let backlog = s
            .backlog
            .lock()
            .map(|b| b.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let (backlog, gap) = match last_event_id {
            None => (Vec::new(), false),
            Some(last) => {
                let oldest = backlog.first().map(|e| e.id).unwrap_or(u64::MAX);
                let newest = s.next_event.load(Ordering::SeqCst);
                let gap = last < newest && last + 1 < oldest;
                (backlog.into_iter().filter(|e| e.id > last).collect(), gap)
            }
        };
        Ok(StreamSubscription { backlog, gap, rx })
    }

    /// Payloads for every subscription one changed entity notifies:
    /// (outbox rows, stream events to publish after the commit).
    pub(crate) fn notifications_for(&self, tenant: &str, slot: &Slot, at: Timestamp) -> (Outbox, StreamOut) {
        let mut outbox = Vec::new();
        let mut streams = Vec::new();
        let subs = self.inner.subs.list(tenant);
        if subs.is_empty() || (slot.changes.is_empty() && slot.before.is_some() == slot.after.is_some()) {
            return (outbox, streams);
        }
        let ev = ChangeEvent {
            before: slot.before.as_ref(),
            after: slot.after.as_ref(),
            changes: &slot.changes,
        };
        for s in subs {
            if !s.compiled.active_at(at) {
                continue;
            }
            let Some(reason) = s.compiled.trigger(&ev) else {
                continue;
            };
            if let Some(th) = s.compiled.throttling_s {
                let mut last = s.last_sent.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|l| l.elapsed() < Duration::from_secs_f64(th)) {
                    continue;
                }
                *last = Some(Instant::now());
            }
            let data = match (&slot.after, &slot.before) {
                (Some(e), _) => self.render_for(&s, e, Some(slot)),
                (None, Some(e)) => {
                    let mut m = Map::new();
                    m.insert("id".into(), Value::String(e.id.clone()));
                    let types: Vec<Value> = e
                        .types
                        .iter()
                        .map(|t| Value::String(s.notify_ctx.terms.compact(t)))
                        .collect();
                    m.insert(
                        "type".into(),
                        if types.len() == 1 {
                            types[0].clone()
                        } else {
                            Value::Array(types)
                        },
                    );
                    m.insert("deletedAt".into(), Value::String(time::format(&at)));
                    Value::Object(m)
                }
                (None, None) => continue,
            };
            let (body, envelope) = self.envelope(tenant, &s, vec![data], Some(reason), at);
            if s.is_http() {
                outbox.push((s.id.clone(), envelope));
            }
            streams.push((s.clone(), body));
        }
        (outbox, streams)
    }

    fn render_for(&self, s: &SubEntry, e: &Entity, slot: Option<&Slot>) -> Value {
        let terms = &s.notify_ctx.terms;
        let o = &s.compiled.render;
        let mut data = if s.compiled.accept_geo {
            let geo = terms.expand("location");
            render::feature(e, terms, o, &geo)
        } else {
            render::entity(e, terms, o)
        };
        let normalized = o.format == render::Format::Normalized;
        let target = match &mut data {
            Value::Object(m) if s.compiled.accept_geo => m.get_mut("properties").and_then(Value::as_object_mut),
            Value::Object(m) => Some(m),
            _ => None,
        };
        if let (Some(slot), Some(m), true) = (slot, target, normalized) {
            for c in &slot.changes {
                let wanted = o.attrs.as_ref().is_none_or(|a| a.contains(&c.name)) && !o.omit.contains(&c.name);
                let (Some(prev), true) = (&c.previous, wanted) else {
                    continue;
                };
                let kind = citybrain_ngsild::model::kind_of(prev);
                let member = value_member(kind);
                let prev_name = format!("previous{}{}", member[..1].to_uppercase(), &member[1..]);
                // A vocab is stored expanded and shown compacted, like the attribute itself.
                let shown = |v: &Value| -> Value {
                    match (member, v) {
                        ("vocab", Value::String(x)) => Value::String(terms.compact(x)),
                        ("vocab", Value::Array(xs)) => Value::Array(
                            xs.iter()
                                .map(|x| x.as_str().map(|x| Value::String(terms.compact(x))).unwrap_or(x.clone()))
                                .collect(),
                        ),
                        _ => v.clone(),
                    }
                };
                match c.kind {
                    // showChanges: the value before this change (4.5.x, 5.2.14).
                    ChangeKind::Updated if s.compiled.show_changes => {
                        if let (Some(Value::Object(attr)), Some(pv)) =
                            (m.get_mut(&terms.compact(&c.name)), prev.get(member))
                        {
                            attr.insert(prev_name, shown(pv));
                        }
                    }
                    // A deleted attribute is notified as the NGSI-LD Null of
                    // its kind, with its last value under showChanges.
                    ChangeKind::Deleted if c.dataset_id.is_none() || !m.contains_key(&terms.compact(&c.name)) => {
                        let mut attr = Map::new();
                        attr.insert("type".into(), Value::String(kind.to_string()));
                        attr.insert(member.into(), Value::String("urn:ngsi-ld:null".into()));
                        if let Some(ds) = &c.dataset_id {
                            attr.insert("datasetId".into(), Value::String(ds.clone()));
                        }
                        if s.compiled.show_changes {
                            if let Some(pv) = prev.get(member) {
                                attr.insert(prev_name, shown(pv));
                            }
                        }
                        m.insert(terms.compact(&c.name), Value::Object(attr));
                    }
                    _ => {}
                }
            }
        }
        data
    }

    /// The notification body and the outbox envelope (endpoint, headers, body).
    fn envelope(
        &self,
        tenant: &str,
        s: &SubEntry,
        data: Vec<Value>,
        reason: Option<&str>,
        at: Timestamp,
    ) -> (Arc<str>, String) {
        let mut body = Map::new();
        body.insert(
            "id".into(),
            Value::String(format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4())),
        );
        body.insert("type".into(), Value::String("Notification".into()));
        body.insert("subscriptionId".into(), Value::String(s.id.clone()));
        body.insert("notifiedAt".into(), Value::String(time::format(&at)));
        body.insert("data".into(), Value::Array(data));
        if let Some(r) = reason {
            body.insert("triggerReason".into(), Value::String(r.into()));
        }
        let mut headers = Map::new();
        if s.compiled.accept_ld {
            body.insert("@context".into(), s.notify_ctx.body_value());
            headers.insert("Content-Type".into(), "application/ld+json".into());
        } else {
            headers.insert("Content-Type".into(), "application/json".into());
            headers.insert(
                "Link".into(),
                Value::String(format!(
                    "<{}>; rel=\"{}\"; type=\"application/ld+json\"",
                    s.notify_ctx.link_url(),
                    citybrain_ngsild::context::LINK_REL
                )),
            );
        }
        if !tenant.is_empty() {
            headers.insert("NGSILD-Tenant".into(), Value::String(tenant.into()));
        }
        for (k, v) in &s.compiled.receiver_info {
            headers.insert(k.clone(), Value::String(v.clone()));
        }
        let body = Value::Object(body);
        let text: Arc<str> = Arc::from(body.to_string());
        let env = json!({"endpoint": s.compiled.endpoint, "headers": headers, "body": body}).to_string();
        (text, env)
    }

    /// After a commit: hand queued notifications to the deliverer, publish streams.
    pub(crate) fn after_commit(
        &self,
        tenant: &str,
        outbox: Vec<(String, String)>,
        seqs: Vec<i64>,
        streams: Vec<(Arc<SubEntry>, Arc<str>)>,
    ) {
        for ((sub, payload), seq) in outbox.into_iter().zip(seqs) {
            let job = Job::new(seq, tenant.to_string(), sub, Arc::from(payload), 0);
            if self.inner.deliver_tx.send(job).is_err() {
                tracing::warn!(seq, "deliverer stopped; notification stays queued for the next start");
            }
        }
        for (s, body) in streams {
            if !s.is_http() {
                s.record(true, now());
            }
            s.publish(body);
        }
        metrics::counter!("citybrain_hub_notifications_queued_total").increment(1);
    }

    pub(crate) fn subscription(&self, tenant: &str, id: &str) -> Option<Arc<SubEntry>> {
        self.inner.subs.get(tenant, id)
    }

    /// Periodic (timeInterval) notifications that are due; returns how many.
    async fn periodic_tick(&self) -> Result<usize> {
        let mut sent = 0;
        let at = now();
        for s in self.inner.subs.all() {
            let Some(every) = s.compiled.time_interval_s else {
                continue;
            };
            if !s.compiled.active_at(at) {
                continue;
            }
            {
                let mut next = s.next_periodic.lock().unwrap_or_else(|p| p.into_inner());
                if next.is_some_and(|n| Instant::now() < n) {
                    continue;
                }
                *next = Some(Instant::now() + Duration::from_secs_f64(every));
            }
            let q = EntityQuery {
                selectors: s.compiled.selectors.clone(),
                q: s.compiled.q.clone(),
                geo: s.compiled.geo.clone(),
                scope_q: s.compiled.scope_q.clone(),
                ..Default::default()
            };
            let r = self
                .inner
                .store
                .query(
                    &s.tenant,
                    &q,
                    Page {
                        offset: 0,
                        limit: self.limits().max_page,
                        count: false,
                    },
                )
                .await?;
            if r.entities.is_empty() {
                continue;
            }
            let data = r.entities.iter().map(|e| self.render_for(&s, e, None)).collect();
            let (body, envelope) = self.envelope(&s.tenant, &s, data, None, at);
            let outbox = if s.is_http() {
                vec![(s.id.clone(), envelope)]
            } else {
                vec![]
            };
            let seqs = self
                .inner
                .store
                .commit(
                    &s.tenant,
                    citybrain_store::WriteSet {
                        outbox: outbox.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            self.after_commit(&s.tenant, outbox, seqs, vec![(s.clone(), body)]);
            sent += 1;
        }
        Ok(sent)
    }

    /// Writes changed delivery counters back to the store.
    pub(crate) async fn flush_status(&self) -> Result<()> {
        for s in self.inner.subs.all() {
            {
                let mut st = s.status.lock().unwrap_or_else(|p| p.into_inner());
                if !st.dirty {
                    continue;
                }
                st.dirty = false;
            }
            if let Value::Object(mut doc) = self.render_subscription(&s) {
                doc.remove("status");
                if let Some(c) = s.doc.get("@context") {
                    doc.insert("@context".into(), c.clone());
                }
                self.inner
                    .store
                    .put_subscription(&SubscriptionRecord {
                        tenant: s.tenant.clone(),
                        id: s.id.clone(),
                        doc,
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

fn sub_not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("subscription {id} does not exist"))
}

/// Starts the once-a-second task: periodic notifications and status flushes.
pub(crate) fn spawn_periodic(hub: Hub) {
    let weak = Arc::downgrade(&hub.inner);
    drop(hub);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            let hub = Hub { inner };
            if let Err(error) = hub.periodic_tick().await {
                tracing::warn!(%error, "periodic notifications failed");
            }
            if let Err(error) = hub.flush_status().await {
                tracing::warn!(%error, "saving subscription status failed");
            }
        }
    });
}
