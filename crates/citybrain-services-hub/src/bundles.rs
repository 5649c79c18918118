//! Bundle instances in the hub: definitions pinned by version, the state
//! and its effects written together, the timers, and the departments'
//! answers (lookups and rule decisions) read from the hub.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use citybrain_rules::{gather, Decision, Facts};
use citybrain_services::{Actor, Bundle, Departments, Effect, Instance, InstanceStatus, ServiceError, StepKind};
use serde_json::{json, Map, Value};

use crate::entity::{self, prop, rel, time, DEFINITION, INSTANCE, NOTIFICATION};
use crate::{facts, Error, Result, Services};

/// What the departments answer one instance, read from the hub before the
/// engine runs (the engine itself is pure and synchronous).
struct HubAnswers<'a> {
    subject: Value,
    facts: HashMap<String, std::result::Result<Facts, String>>,
    policies: &'a citybrain_rules::PolicySet,
    now: DateTime<Utc>,
}

impl Departments for HubAnswers<'_> {
    fn lookup(&self, attributes: &[String]) -> std::result::Result<Map<String, Value>, Vec<String>> {
        let mut found = Map::new();
        let mut missing = Vec::new();
        for a in attributes {
            match gather::attribute(&self.subject, a) {
                Some(v) => {
                    found.insert(a.clone(), v);
                }
                None => missing.push(a.clone()),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(missing)
        }
    }

    fn decide(&self, policy: &str, on: NaiveDate) -> std::result::Result<Decision, String> {
        let p = self
            .policies
            .get(policy)
            .ok_or_else(|| format!("no policy '{policy}' is loaded"))?;
        let f = self
            .facts
            .get(policy)
            .cloned()
            .unwrap_or_else(|| Err("not gathered".into()))?;
        Ok(p.decide(&f, on, self.now))
    }
}

fn definition_id(b: &Bundle) -> String {
    format!("urn:ngsi-ld:{DEFINITION}:{}-v{}", b.id, b.version)
}

impl Services {
    pub(crate) async fn register_definitions(&self) -> Result<()> {
        let terms = self.terms().clone();
        let mut new = Vec::new();
        for b in self.inner.catalog.bundles.values() {
            match self.get(&definition_id(b)).await? {
                Some(e) => {
                    let json = entity::normalized(&e, &terms);
                    let stored = gather::attribute(&json, "source").and_then(|v| v.as_str().map(str::to_string));
                    if stored.as_deref() != Some(b.source.as_str()) {
                        return Err(ServiceError::Catalog(format!(
                            "bundle '{}' version {} is not the text instances were started by; give the changed file a new version",
                            b.id, b.version
                        ))
                        .into());
                    }
                }
                None => new.push(json!({
                    "id": definition_id(b), "type": DEFINITION,
                    "bundle": prop(b.id.clone()), "version": prop(b.version),
                    "title": prop(b.title.clone()), "source": prop(b.source.clone()),
                })),
            }
        }
        self.create_once(new).await?;
        let mut defs = HashMap::new();
        for e in self.all_of(DEFINITION).await? {
            let json = entity::normalized(&e, &terms);
            let Some(Value::String(src)) = gather::attribute(&json, "source") else {
                continue;
            };
            let b = Bundle::parse(std::path::Path::new(&e.id), &src)?;
            defs.insert((b.id.clone(), b.version), Arc::new(b));
        }
        *self.inner.definitions.write().unwrap_or_else(|p| p.into_inner()) = defs;
        Ok(())
    }

    /// The definition an instance runs by.
    pub(crate) fn definition(&self, id: &str, version: u32) -> Result<Arc<Bundle>> {
        self.inner
            .definitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(id.to_string(), version))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no bundle '{id}' version {version}")))
    }

    fn current(&self, id: &str) -> Result<Arc<Bundle>> {
        let b = self
            .inner
            .catalog
            .bundles
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("no bundle '{id}'; GET /api/v1/bundles lists them")))?;
        self.definition(&b.id, b.version)
    }

    pub(crate) async fn rebuild_timers(&self) -> Result<()> {
        for e in self.all_of(INSTANCE).await? {
            let i: Instance = entity::read_record(&e, self.terms()).map_err(Error::Data)?;
            if i.status.is_final() {
                continue;
            }
            let b = self.definition(&i.bundle, i.version)?;
            self.set_timer(&i.id, i.next_timer(&b));
        }
        Ok(())
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

    /// When the next timer is due, if any.
    pub fn next_timer(&self) -> Option<DateTime<Utc>> {
        let t = self.inner.timers.lock().unwrap_or_else(|p| p.into_inner());
        t.0.first().map(|(at, _)| *at)
    }

    /// Runs every timer due by now; returns how many instances moved.
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
            let _g = self.lock_for(&id).lock().await;
            let Some(mut i) = self.load(&id).await? else {
                self.set_timer(&id, None);
                continue;
            };
            let b = self.definition(&i.bundle, i.version)?;
            let answers = self.answers(&i, &b).await?;
            let fx = i.advance(&b, &answers, now);
            self.save(&i, &b, &fx).await?;
            moved += 1;
        }
        Ok(moved)
    }

    pub(crate) async fn schedule(&self) {
        loop {
            tokio::time::sleep(self.inner.settings.tick).await;
            if self.inner.hub.is_closing() {
                return;
            }
            if let Err(e) = self.tick().await {
                tracing::warn!("services timers: {e}");
            }
        }
    }

    /// Reads what the departments need to answer `i`'s steps.
    async fn answers(&self, i: &Instance, b: &Bundle) -> Result<HubAnswers<'_>> {
        let terms = self.terms();
        let subject = self.get(&i.subject).await?;
        let mut facts = HashMap::new();
        if !i.status.is_final() {
            // Only rule steps still to run can ask; a decided one keeps its decision.
            for step in b
                .steps
                .iter()
                .filter(|st| i.steps[&st.id].status == citybrain_services::StepStatus::Pending)
            {
                let StepKind::Rule(p) = &step.kind else { continue };
                let Some(policy) = self.inner.policies.get(p) else {
                    continue;
                };
                let f = match &subject {
                    Some(s) => facts::about(&self.inner.hub, self.tenant(), terms, policy, s)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("the hub holds no {}", i.subject)),
                };
                facts.insert(p.clone(), f);
            }
        }
        Ok(HubAnswers {
            subject: subject.map(|s| entity::normalized(&s, terms)).unwrap_or(Value::Null),
            facts,
            policies: &self.inner.policies,
            now: self.now(),
        })
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<Instance>> {
        match self.get(id).await? {
            Some(e) if e.types.first().map(|t| self.terms().compact(t)) == Some(INSTANCE.to_string()) => {
                Ok(Some(entity::read_record(&e, self.terms()).map_err(Error::Data)?))
            }
            _ => Ok(None),
        }
    }

    /// The instance and its effects, in one commit; then its timer.
    async fn save(&self, i: &Instance, b: &Bundle, fx: &[Effect]) -> Result<()> {
        let mut items = vec![instance_entity(i, b)];
        for e in fx {
            items.extend(effect_entity(i, b, e));
        }
        self.commit(items).await?;
        self.set_timer(&i.id, i.next_timer(b));
        Ok(())
    }

    /// Starts `bundle` for `subject` now; it runs as far as it can at once.
    pub async fn start_bundle(&self, actor: &Actor, bundle: &str, subject: &str) -> Result<Instance> {
        let b = self.current(bundle)?;
        let id = format!("urn:ngsi-ld:{INSTANCE}:{}", uuid::Uuid::new_v4());
        self.start_instance(actor, &b, id, subject, None).await
    }

    pub(crate) async fn start_instance(
        &self,
        actor: &Actor,
        b: &Bundle,
        id: String,
        subject: &str,
        confirm_by: Option<String>,
    ) -> Result<Instance> {
        let s = self
            .get(subject)
            .await?
            .ok_or_else(|| Error::NotFound(format!("the hub holds no {subject}")))?;
        let ty = self
            .terms()
            .compact(s.types.first().map(String::as_str).unwrap_or_default());
        if ty != b.applies_to {
            return Err(ServiceError::Invalid(format!(
                "{subject} is a {ty}; {} is about {} entities",
                b.id, b.applies_to
            ))
            .into());
        }
        let now = self.now();
        let mut i = Instance::new(id, b, subject.to_string(), confirm_by, actor, now)?;
        let _g = self.lock_for(&i.id).lock().await;
        let answers = self.answers(&i, b).await?;
        let fx = i.advance(b, &answers, now);
        drop(answers);
        self.save(&i, b, &fx).await?;
        Ok(i)
    }

    pub async fn instance(&self, id: &str) -> Result<Instance> {
        self.load(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no bundle instance {id}")))
    }

    /// Instances, newest first, filtered by status, subject, or the
    /// department a review step waits on.
    pub async fn instances(&self, f: &InstanceFilter) -> Result<Vec<Instance>> {
        let found = self
            .where_equal(
                INSTANCE,
                &[
                    ("status", f.status.as_deref()),
                    ("subject", f.subject.as_deref()),
                    ("waitingOn", f.waiting_on.as_deref()),
                ],
                f.limit,
            )
            .await?;
        let terms = self.terms();
        let mut out: Vec<Instance> = found
            .iter()
            .map(|e| entity::read_record(e, terms).map_err(Error::Data))
            .collect::<Result<_>>()?;
        out.sort_by_key(|a| std::cmp::Reverse(a.created));
        Ok(out)
    }

    async fn signal(
        &self,
        id: &str,
        act: impl FnOnce(
            &mut Instance,
            &Bundle,
            &HubAnswers<'_>,
            DateTime<Utc>,
        ) -> std::result::Result<Vec<Effect>, ServiceError>,
    ) -> Result<Instance> {
        let _g = self.lock_for(id).lock().await;
        let mut i = self.instance(id).await?;
        let b = self.definition(&i.bundle, i.version)?;
        let answers = self.answers(&i, &b).await?;
        let now = self.now();
        let fx = act(&mut i, &b, &answers, now)?;
        drop(answers);
        self.save(&i, &b, &fx).await?;
        Ok(i)
    }

    /// A parent's confirmation of a bundle a hub record started.
    pub async fn confirm(&self, actor: &Actor, id: &str) -> Result<Instance> {
        self.signal(id, |i, b, w, now| i.confirm(b, w, actor, now)).await
    }

    /// An officer's verdict on a step waiting for review.
    pub async fn review_step(
        &self,
        actor: &Actor,
        id: &str,
        step: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Instance> {
        self.signal(id, |i, b, w, now| i.review(b, w, step, approve, note, actor, now))
            .await
    }

    pub async fn cancel(&self, actor: &Actor, id: &str) -> Result<Instance> {
        self.signal(id, |i, b, _, now| i.cancel(b, actor, now)).await
    }
}

#[derive(Debug, Clone)]
pub struct InstanceFilter {
    pub status: Option<String>,
    pub subject: Option<String>,
    pub waiting_on: Option<String>,
    pub limit: usize,
}

impl Default for InstanceFilter {
    fn default() -> Self {
        InstanceFilter {
            status: None,
            subject: None,
            waiting_on: None,
            limit: 100,
        }
    }
}

fn instance_entity(i: &Instance, b: &Bundle) -> Value {
    let done = i
        .steps
        .values()
        .filter(|s| s.status == citybrain_services::StepStatus::Done)
        .count();
    let mut e = json!({
        "id": i.id, "type": INSTANCE,
        "bundle": prop(i.bundle.clone()),
        "bundleVersion": prop(i.version),
        "title": prop(b.title.clone()),
        "lead": prop(b.lead.clone()),
        "subject": rel(&i.subject),
        "status": prop(i.status.as_str()),
        "stepsDone": prop(done),
        "stepsTotal": prop(b.steps.len()),
        "created": time(i.created),
        "due": time(i.due),
        "breached": prop(i.breached),
        "escalated": prop(i.steps.values().any(|s| s.escalated)),
        "record": entity::record(serde_json::to_value(i).unwrap_or(Value::Null)),
    });
    let waiting = i.waiting_on(b);
    if !waiting.is_empty() {
        e["waitingOn"] = prop(waiting);
    }
    if let Some(w) = &i.confirm_by {
        e["confirmBy"] = rel(w);
    }
    // Whose bundle it is: who confirms a triggered one, else its subject
    // (the data-sharing policy's owner of the record).
    e["applicant"] = rel(i.confirm_by.as_deref().unwrap_or(&i.subject));
    if let Some(f) = i.finished {
        e["finished"] = time(f);
        e["secondsToFinish"] = prop(((f - i.created).num_milliseconds() as f64) / 1000.0);
    }
    e
}

/// A notification to someone, with an id fixed by what it is about so a
/// replay writes it once.
pub(crate) fn notification(id_parts: &[&str], to: &str, about: &str, message: String, at: DateTime<Utc>) -> Value {
    let id = format!("urn:ngsi-ld:{NOTIFICATION}:{}", id_parts.join(":"));
    let recipient = if to.starts_with("urn:") {
        rel(to)
    } else {
        json!({"type": "Property", "value": to})
    };
    json!({"id": id, "type": NOTIFICATION, "recipient": recipient, "about": rel(about),
           "message": prop(message), "sent": time(at)})
}

fn effect_entity(i: &Instance, b: &Bundle, e: &Effect) -> Option<Value> {
    let now = i.log.last().map(|l| l.at).unwrap_or(i.created);
    let tail = entity::tail(&i.id);
    let who = i.confirm_by.as_deref().unwrap_or(&i.subject);
    match e {
        Effect::Issue {
            document,
            document_type,
            step,
            department,
        }
        | Effect::Revoke {
            document,
            document_type,
            step,
            department,
        } => {
            let revoked = matches!(e, Effect::Revoke { .. });
            let issued = i.steps.get(step).and_then(|s| s.finished).unwrap_or(now);
            let mut d = json!({
                "id": document, "type": document_type,
                "holder": rel(&i.subject), "issuedBy": prop(department.clone()),
                "bundleInstance": rel(&i.id), "step": prop(step.clone()),
                "title": prop(b.step(step).map(|s| s.title.clone()).unwrap_or_default()),
                "status": prop(if revoked { "revoked" } else { "valid" }),
                "issued": time(issued),
            });
            if revoked {
                d["revoked"] = time(now);
            }
            Some(d)
        }
        Effect::Task { step, department, due } => Some(notification(
            &[tail, step, "task"],
            department,
            &i.id,
            format!(
                "{}: '{}' waits for your review{}",
                b.title,
                step,
                due.map(|d| format!(" by {d}")).unwrap_or_default()
            ),
            now,
        )),
        Effect::Warn { step, department, due } => Some(notification(
            &[tail, step, "warning"],
            department,
            &i.id,
            format!(
                "{}: '{}' is due {}",
                b.title,
                step,
                due.map(|d| d.to_rfc3339()).unwrap_or_default()
            ),
            now,
        )),
        Effect::Escalate { step, department, to } => Some(notification(
            &[tail, step, "escalation"],
            to,
            &i.id,
            format!("{}: {department} did not decide '{step}' within its SLA", b.title),
            now,
        )),
        Effect::Overdue => Some(notification(
            &[tail, "-", "overdue"],
            &b.lead,
            &i.id,
            format!("{} is past its SLA", b.title),
            now,
        )),
        Effect::Finished { status } => Some(notification(
            &[tail, "-", "result"],
            who,
            &i.id,
            match status {
                InstanceStatus::Completed => format!(
                    "{}: done; {} documents issued",
                    b.title,
                    i.steps.values().filter(|s| s.document.is_some()).count()
                ),
                other => format!("{}: {}; see the steps for why", b.title, other.as_str()),
            },
            now,
        )),
    }
}
