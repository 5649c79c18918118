//! # citybrain-appeals-hub — the appeals, kept in the hub
//!
//! The use cases of `citybrain-appeals` over a [`Hub`]. Every appeal is an
//! `Appeal` entity and every change of it an `AppealUpdate` entity, written
//! together in one batch, so subscriptions (and the cockpits) see both.
//! The domain record travels in a JsonProperty; the attributes beside it
//! (status, category, department, location, due…) are what queries and
//! subscriptions filter on. `AppealMetrics` entities hold each
//! department's figures for the appeals cockpit and the public board.
//!
//! Public consultations on draft policies live beside them
//! ([`consultations`]): `Consultation` and `ConsultationComment` entities.
//!
//! At start the text index is rebuilt from the hub's appeals and the
//! timers from their states; a scheduler then warns, escalates and closes
//! on time. One server writes the appeals at a time (issue 21 brings
//! several servers on one database).

#![forbid(unsafe_code)]

pub mod consultations;
mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use citybrain_appeals::appeal::{Channel, PublicAppeal};
use citybrain_appeals::intake;
use citybrain_appeals::text::{Indexed, Similar};
use citybrain_appeals::{Actor, Appeal, AppealsConfig, AppealsError, Filing, Status, TextIndex, Update};
use citybrain_hub::{BatchOp, Hub, RequestContext};
use citybrain_ngsild::{Entity, ErrorKind, NgsiError, TermMap};
use serde_json::{json, Value};

pub use consultations::CommentAction;
pub use metrics::DepartmentFigures;

pub const APPEAL: &str = "Appeal";
pub const UPDATE: &str = "AppealUpdate";
pub const METRICS: &str = "AppealMetrics";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Appeal(#[from] AppealsError),
    #[error(transparent)]
    Hub(#[from] NgsiError),
    /// The hub holds something that does not read back as an appeal.
    #[error("{0}")]
    Data(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[derive(Clone)]
pub struct Settings {
    pub tenant: String,
    /// How often the scheduler looks for due timers.
    pub tick: Duration,
    /// How often the metrics entities are recomputed (when anything changed).
    pub metrics_every: Duration,
    /// The most appeals read back at start.
    pub max_appeals: usize,
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tenant: String::new(),
            tick: Duration::from_secs(1),
            metrics_every: Duration::from_secs(10),
            max_appeals: 5_000_000,
            clock: Arc::new(Utc::now),
        }
    }
}

/// What one does to an appeal.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Accept,
    AskCitizen {
        question: String,
    },
    Reply {
        text: String,
    },
    Answer {
        answer: String,
    },
    Confirm,
    Reopen {
        reason: String,
    },
    Rate {
        stars: u8,
        comment: Option<String>,
    },
    Reroute {
        department: String,
        reason: String,
    },
    Merge {
        into: String,
    },
    Follow,
    Report,
    Moderate {
        hide: bool,
        reason: String,
        public_description: Option<String>,
    },
}

/// A filed appeal, with what the requester must keep and what looks like it.
#[derive(Debug, Clone)]
pub struct Filed {
    pub appeal: Appeal,
    /// For a requester who is not signed in: the secret to follow it with (shown once).
    pub secret: Option<String>,
    /// Open appeals like it nearby (possible duplicates).
    pub similar: Vec<Similar>,
}

/// Which appeals to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub ids: Vec<String>,
    pub statuses: Vec<Status>,
    pub categories: Vec<String>,
    pub department: Option<String>,
    pub requester: Option<String>,
    /// Filed at or after / before (unix seconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Leave out appeals hidden from the public.
    pub public_only: bool,
    /// Updated at or after (unix seconds).
    pub updated_since: Option<i64>,
}

const LOCKS: usize = 64;
/// The text index writes a segment after this many appeals…
const COMMIT_EVERY: usize = 10_000;
/// …or this long after the last one (the scheduler's tick commits too).
const COMMIT_AFTER: Duration = Duration::from_secs(1);

type Timers = (BTreeSet<(DateTime<Utc>, String)>, HashMap<String, DateTime<Utc>>);

struct Inner {
    hub: Hub,
    config: AppealsConfig,
    index: TextIndex,
    settings: Settings,
    ctx: RequestContext,
    timers: Mutex<Timers>,
    locks: Vec<tokio::sync::Mutex<()>>,
}

/// The appeals over one hub tenant.
#[derive(Clone)]
pub struct Appeals {
    inner: Arc<Inner>,
}

fn prop(v: impl Into<Value>) -> Value {
    json!({"type": "Property", "value": v.into()})
}

fn time(t: DateTime<Utc>) -> Value {
    json!({"type": "Property", "value": {"@type": "DateTime", "@value": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}})
}

pub fn appeal_entity_id(id: &str) -> String {
    format!("urn:ngsi-ld:{APPEAL}:{id}")
}

fn update_entity_id(u: &Update) -> String {
    format!("urn:ngsi-ld:{UPDATE}:{}-{}", u.appeal, u.seq)
}

/// An appeal as an entity: the record, and what is filtered on.
fn appeal_entity(a: &Appeal) -> Value {
    let mut e = json!({
        "id": appeal_entity_id(&a.id),
        "type": APPEAL,
        "record": {"type": "JsonProperty", "json": serde_json::to_value(a).expect("an appeal serialises")},
        "public": {"type": "JsonProperty", "json": serde_json::to_value(a.public()).expect("serialises")},
        "status": prop(a.status.as_str()),
        "category": prop(a.category.clone()),
        "department": prop(a.department.clone()),
        "filedAt": time(a.filed_at),
        "filedSecs": prop(a.filed_at.timestamp()),
        "updatedSecs": prop(a.updated_at.timestamp()),
        "due": time(a.due),
        "escalation": prop(a.escalation),
        "hidden": prop(a.hidden),
        "reopened": prop(a.reopened),
    });
    if let Some(area) = &a.area {
        e["area"] = prop(area.clone());
    }
    if let Some(r) = &a.requester {
        e["requester"] = json!({"type": "Relationship", "object": r});
    }
    if let Some(l) = &a.location {
        e["location"] = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [l.lon, l.lat]}});
    }
    if let Some(r) = &a.rating {
        e["rating"] = prop(r.stars);
    }
    e
}

fn update_entity(u: &Update, followers: &BTreeSet<String>) -> Value {
    json!({
        "id": update_entity_id(u),
        "type": UPDATE,
        "record": {"type": "JsonProperty", "json": serde_json::to_value(u).expect("an update serialises")},
        "appeal": {"type": "Relationship", "object": appeal_entity_id(&u.appeal)},
        "seq": prop(u.seq),
        "kind": prop(serde_json::to_value(u.kind).expect("serialises")),
        "status": prop(u.status.as_str()),
        "department": prop(u.department.clone()),
        "at": time(u.at),
        "atSecs": prop(u.at.timestamp()),
        // Who is kept informed of it: a subscription on this attribute
        // reaches the requester and every follower (those of merged
        // duplicates included).
        "notify": prop(followers.iter().cloned().collect::<Vec<_>>()),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(e: &Entity, terms: &TermMap, attr: &str) -> Result<T> {
    let v = citybrain_ngsild::render::entity(e, terms, &citybrain_ngsild::render::RenderOptions::default());
    let r = v
        .get(attr)
        .and_then(|r| r.get("json"))
        .ok_or_else(|| Error::Data(format!("{} carries no {attr}", e.id)))?;
    serde_json::from_value(r.clone()).map_err(|err| Error::Data(format!("{}: {attr} does not read back: {err}", e.id)))
}

fn indexed(a: &Appeal) -> Indexed<'_> {
    Indexed {
        id: &a.id,
        category: &a.category,
        text: &a.description,
        lat: a.location.as_ref().map(|l| l.lat),
        lon: a.location.as_ref().map(|l| l.lon),
        open: a.status.is_handling() || a.status == Status::Answered,
        filed: a.filed_at.timestamp(),
        teach: a.classified.is_none() && citybrain_appeals::text::teaches(&a.id),
    }
}

impl Appeals {
    /// Rebuilds the text index and the timers from the hub's appeals.
    pub async fn open(hub: Hub, config: AppealsConfig, settings: Settings) -> Result<Appeals> {
        let index = TextIndex::new(&config)?;
        let a = Appeals {
            inner: Arc::new(Inner {
                hub,
                config,
                index,
                settings,
                ctx: RequestContext::core(),
                timers: Mutex::new(Default::default()),
                locks: (0..LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            }),
        };
        let all = a
            .inner
            .hub
            .entities_of_type(a.tenant(), &a.terms().expand(APPEAL), a.inner.settings.max_appeals)
            .await?;
        for e in &all {
            let appeal: Appeal = read_json(e, a.terms(), "record")?;
            a.inner.index.put(&indexed(&appeal))?;
            a.set_timer(&appeal.id, appeal.next_timer(&a.inner.config));
        }
        a.inner.index.commit()?;
        if !a.inner.config.calendar.covers(a.now()) {
            tracing::warn!("appeals/calendar.yaml lists no holidays for this year: only weekends count as days off");
        }
        Ok(a)
    }

    /// Starts the timer scheduler and the metrics loop.
    pub fn spawn(&self) {
        let s = self.clone();
        tokio::spawn(async move { s.schedule().await });
        let s = self.clone();
        tokio::spawn(async move { s.metrics_loop().await });
    }

    pub fn config(&self) -> &AppealsConfig {
        &self.inner.config
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.settings.clock)()
    }

    fn tenant(&self) -> &str {
        &self.inner.settings.tenant
    }

    fn terms(&self) -> &TermMap {
        &self.inner.ctx.terms
    }

    fn stripe(&self, id: &str) -> usize {
        id.bytes()
            .fold(7usize, |h, b| h.wrapping_mul(131).wrapping_add(b as usize))
            % LOCKS
    }

    /// The lock of one appeal's (or consultation's) stripe.
    async fn lock(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.locks[self.stripe(id)].lock().await
    }

    fn set_timer(&self, id: &str, at: Option<DateTime<Utc>>) {
        let mut t = self.inner.timers.lock().unwrap_or_else(|p| p.into_inner());
        let (queue, by_id) = &mut *t;
        if let Some(old) = by_id.remove(id) {
            queue.remove(&(old, id.to_string()));
        }
        if let Some(at) = at {
            queue.insert((at, id.to_string()));
            by_id.insert(id.to_string(), at);
        }
    }

    /// The appeal and its updates in one batch, then the index and the timer.
    async fn save(&self, a: &Appeal, updates: &[Update]) -> Result<()> {
        let mut items = vec![appeal_entity(a)];
        items.extend(updates.iter().map(|u| update_entity(u, &a.followers)));
        let r = self
            .inner
            .hub
            .batch_write(
                self.tenant(),
                &items,
                &self.inner.ctx,
                BatchOp::Upsert { replace: true },
            )
            .await?;
        if let Some(e) = r.errors.into_iter().next() {
            return Err(Error::Hub(e.error));
        }
        // Searchable at once; written to the index's segments in batches.
        self.inner.index.put(&indexed(a))?;
        self.inner.index.commit_soon(COMMIT_EVERY, COMMIT_AFTER)?;
        self.set_timer(&a.id, a.next_timer(&self.inner.config));
        Ok(())
    }

    /// Files an appeal: classified when it has no category, routed by the
    /// table, checked for duplicates nearby, and stored with its first update.
    pub async fn file(&self, filing: Filing, by: &Actor, channel: Channel) -> Result<Filed> {
        filing.check(&self.inner.config)?;
        let cfg = &self.inner.config;
        let now = self.now();
        let (category, classified, route) = intake::triage(&filing, cfg, &self.inner.index)?;
        let signed_in = by.subject.is_some();
        let secret = (!signed_in || filing.anonymous).then(|| uuid::Uuid::new_v4().simple().to_string());
        let id = format!(
            "{}-{}",
            now.format("%Y%m%d"),
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let similar = match &filing.location {
            Some(l) => intake::duplicates(&self.inner.index, cfg, &filing.description, &category, l, now, None)?,
            None => Vec::new(),
        };
        let (appeal, first) = Appeal::file(
            id,
            filing,
            category,
            classified,
            route,
            by,
            channel,
            secret.as_deref(),
            cfg,
            now,
        )?;
        self.save(&appeal, &[first]).await?;
        Ok(Filed {
            appeal,
            secret,
            similar,
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Appeal>> {
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Ok(None);
        }
        match self
            .inner
            .hub
            .retrieve_entity(self.tenant(), &appeal_entity_id(id))
            .await
        {
            Ok(e) => Ok(Some(read_json(&e, self.terms(), "record")?)),
            Err(e) if e.kind == ErrorKind::ResourceNotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn must(&self, id: &str) -> Result<Appeal> {
        self.get(id)
            .await?
            .ok_or_else(|| AppealsError::NotFound(format!("no appeal {id}")).into())
    }

    /// Does `action` to appeal `id`; returns it as it is now.
    pub async fn act(&self, id: &str, action: Action, by: &Actor, secret: Option<&str>) -> Result<Appeal> {
        let cfg = &self.inner.config;
        // A merge changes two appeals: lock both, in a fixed order.
        let mut stripes = vec![self.stripe(id)];
        if let Action::Merge { into } = &action {
            stripes.push(self.stripe(into));
        }
        stripes.sort_unstable();
        stripes.dedup();
        let mut _guards = Vec::new();
        for s in stripes {
            _guards.push(self.inner.locks[s].lock().await);
        }
        let mut a = self.must(id).await?;
        let now = self.now();
        let updates = match action {
            Action::Accept => vec![a.accept(by, cfg, now)?],
            Action::AskCitizen { question } => vec![a.ask_citizen(by, &question, cfg, now)?],
            Action::Reply { text } => vec![a.citizen_reply(by, secret, &text, now)?],
            Action::Answer { answer } => vec![a.answer(by, &answer, cfg, now)?],
            Action::Confirm => vec![a.confirm(by, secret, now)?],
            Action::Reopen { reason } => vec![a.reopen(by, secret, &reason, cfg, now)?],
            Action::Rate { stars, comment } => a.rate(by, secret, stars, comment.as_deref(), cfg, now)?,
            Action::Reroute { department, reason } => vec![a.reroute(by, &department, &reason, cfg, now)?],
            Action::Follow => {
                let who = by
                    .subject
                    .clone()
                    .ok_or_else(|| AppealsError::Forbidden("sign in to follow an appeal".into()))?;
                a.follow(&who, now).into_iter().collect()
            }
            Action::Report => a.report(by, cfg, now)?.into_iter().collect(),
            Action::Moderate {
                hide,
                reason,
                public_description,
            } => vec![a.moderate(by, hide, &reason, public_description.as_deref(), now)?],
            Action::Merge { into } => {
                let mut master = self.must(&into).await?;
                let (u, followers) = a.merge_into(by, &master, cfg, now)?;
                let m = master.absorb(&a.id, followers, now);
                // The duplicate first: a crash between the two leaves the
                // master without the followers, never followers lost twice.
                self.save(&a, &[u]).await?;
                self.save(&master, &[m]).await?;
                return Ok(a);
            }
        };
        // Saved even without an update (a report only counts).
        self.save(&a, &updates).await?;
        Ok(a)
    }

    /// Open appeals like `id` nearby, for an officer deciding on a merge.
    pub async fn similar_to(&self, id: &str) -> Result<Vec<Similar>> {
        let a = self.must(id).await?;
        let Some(l) = &a.location else { return Ok(Vec::new()) };
        Ok(intake::duplicates(
            &self.inner.index,
            &self.inner.config,
            &a.description,
            &a.category,
            l,
            a.filed_at,
            Some(&a.id),
        )?)
    }

    fn query(&self, ty: &str, clauses: &[String]) -> Result<citybrain_ngsild::selector::EntityQuery> {
        use citybrain_ngsild::selector::{EntityQuery, EntitySelector, TypeExpr};
        Ok(EntityQuery {
            selectors: vec![EntitySelector {
                types: Some(TypeExpr::Type(self.terms().expand(ty))),
                ..EntitySelector::default()
            }],
            q: if clauses.is_empty() {
                None
            } else {
                Some(citybrain_ngsild::q::Query::parse(&clauses.join(";"), self.terms())?)
            },
            ..EntityQuery::default()
        })
    }

    /// Appeals matching `f`, a page of them, with the total.
    pub async fn list(&self, f: &Filter, offset: usize, limit: usize) -> Result<(Vec<Appeal>, usize)> {
        let quote = |s: &str| format!("\"{}\"", s.replace(['"', '\\'], ""));
        let list = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(",");
        let mut clauses = Vec::new();
        if !f.statuses.is_empty() {
            let s: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_string()).collect();
            clauses.push(format!("status=={}", list(&s)));
        }
        if !f.categories.is_empty() {
            clauses.push(format!("category=={}", list(&f.categories)));
        }
        if let Some(d) = &f.department {
            clauses.push(format!("department=={}", quote(d)));
        }
        if let Some(r) = &f.requester {
            clauses.push(format!("requester=={}", quote(r)));
        }
        if let Some(s) = f.since {
            clauses.push(format!("filedSecs>={s}"));
        }
        if let Some(u) = f.until {
            clauses.push(format!("filedSecs<={u}"));
        }
        if let Some(u) = f.updated_since {
            clauses.push(format!("updatedSecs>={u}"));
        }
        if f.public_only {
            clauses.push("hidden==false".into());
        }
        let mut q = self.query(APPEAL, &clauses)?;
        if !f.ids.is_empty() {
            q.selectors[0].ids = f.ids.iter().map(|i| appeal_entity_id(i)).collect();
        }
        let page = citybrain_store::Page {
            offset,
            limit: limit.clamp(1, 1000),
            count: true,
        };
        let r = self.inner.hub.query_entities(self.tenant(), &q, page).await?;
        let total = r.total.unwrap_or(r.entities.len());
        let appeals = r
            .entities
            .iter()
            .map(|e| read_json(e, self.terms(), "record"))
            .collect::<Result<Vec<Appeal>>>()?;
        Ok((appeals, total))
    }

    /// The public view of the appeals matching `f` (hidden ones left out).
    pub async fn public_list(&self, f: &Filter, offset: usize, limit: usize) -> Result<(Vec<PublicAppeal>, usize)> {
        let f = Filter {
            public_only: true,
            ..f.clone()
        };
        let (a, n) = self.list(&f, offset, limit).await?;
        Ok((a.iter().map(Appeal::public).collect(), n))
    }

    /// An appeal's updates in order (internal notes included: the caller
    /// decides what to show).
    pub async fn updates(&self, id: &str) -> Result<Vec<Update>> {
        let q = self.query(UPDATE, &[format!("appeal==\"{}\"", appeal_entity_id(id))])?;
        let mut out = self.read_updates(&q, 0, 1000).await?;
        out.sort_by_key(|u| u.seq);
        Ok(out)
    }

    async fn read_updates(
        &self,
        q: &citybrain_ngsild::selector::EntityQuery,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Update>> {
        let page = citybrain_store::Page {
            offset,
            limit: limit.clamp(1, 1000),
            count: false,
        };
        let r = self.inner.hub.query_entities(self.tenant(), q, page).await?;
        r.entities
            .iter()
            .map(|e| read_json(e, self.terms(), "record"))
            .collect()
    }

    /// Updates made between two instants (unix seconds), in time order, a page.
    pub async fn updates_between(&self, since: i64, until: i64, offset: usize, limit: usize) -> Result<Vec<Update>> {
        let q = self.query(UPDATE, &[format!("atSecs>={since}"), format!("atSecs<={until}")])?;
        let mut out = self.read_updates(&q, offset, limit).await?;
        out.sort_by(|a, b| a.at.cmp(&b.at).then(a.seq.cmp(&b.seq)));
        Ok(out)
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Option<DateTime<Utc>> {
        let t = self.inner.timers.lock().unwrap_or_else(|p| p.into_inner());
        t.0.first().map(|(at, _)| *at)
    }

    /// Runs every timer due by now; returns the appeals that moved.
    pub async fn tick(&self) -> Result<usize> {
        let now = self.now();
        let due: Vec<String> = {
            let t = self.inner.timers.lock().unwrap_or_else(|p| p.into_inner());
            t.0.iter()
                .take_while(|(at, _)| *at <= now)
                .map(|(_, id)| id.clone())
                .collect()
        };
        let mut moved = 0;
        for id in due {
            let _g = self.inner.locks[self.stripe(&id)].lock().await;
            let Some(mut a) = self.get(&id).await? else {
                self.set_timer(&id, None);
                continue;
            };
            let ups = a.on_timer(&self.inner.config, now);
            if ups.is_empty() {
                self.set_timer(&id, a.next_timer(&self.inner.config));
                continue;
            }
            self.save(&a, &ups).await?;
            moved += 1;
        }
        Ok(moved)
    }

    async fn schedule(&self) {
        loop {
            tokio::time::sleep(self.inner.settings.tick).await;
            if self.inner.hub.is_closing() {
                return;
            }
            if let Err(e) = self.tick().await {
                tracing::warn!("appeals timers: {e}");
            }
            if let Err(e) = self.inner.index.commit_soon(COMMIT_EVERY, COMMIT_AFTER) {
                tracing::warn!("appeals index: {e}");
            }
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub(crate) fn ctx(&self) -> &RequestContext {
        &self.inner.ctx
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn tenant_name(&self) -> &str {
        self.tenant()
    }

    pub(crate) fn all_query(&self) -> Result<citybrain_ngsild::selector::EntityQuery> {
        self.query(APPEAL, &[])
    }

    pub(crate) fn read_appeal(&self, e: &Entity) -> Result<Appeal> {
        read_json(e, self.terms(), "record")
    }
}
