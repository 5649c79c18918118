//! Applications in the hub: the preview of what the hub holds (what the
//! applicant consents to), submission decided at once, the officers' queue.

use citybrain_rules::{gather, Facts, Source, Value as RuleValue};
use citybrain_services::{Actor, Application, ApplicationStatus, Prefilled, Service, ServiceError, Submission};
use serde_json::{json, Map, Value};

use crate::bundles::notification;
use crate::entity::{self, prop, rel, time, APPLICATION};
use crate::{facts, Error, Result, Services};

/// What the hub holds for one service about one subject: shown to the
/// applicant before consenting, and what the application is decided on.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub service: String,
    pub subject: String,
    pub prefilled: Vec<Prefilled>,
    /// Inputs no department holds: the applicant states them.
    pub to_state: Vec<String>,
    /// The entities that would be read.
    pub records: Vec<String>,
    #[serde(skip)]
    pub facts: Option<Facts>,
    #[serde(skip)]
    pub risk: Vec<String>,
}

impl Services {
    pub fn service(&self, id: &str) -> Result<&Service> {
        self.inner
            .catalog
            .services
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("no service '{id}'; GET /api/v1/services lists them")))
    }

    /// What the hub already holds about `subject` for `service`.
    pub async fn preview(&self, service: &str, subject: &str) -> Result<Preview> {
        let svc = self.service(service)?;
        let terms = self.terms();
        let s = self
            .get(subject)
            .await?
            .ok_or_else(|| Error::NotFound(format!("the hub holds no {subject}")))?;
        let ty = terms.compact(s.types.first().map(String::as_str).unwrap_or_default());
        if ty != svc.applies_to {
            return Err(ServiceError::Invalid(format!(
                "{subject} is a {ty}; {} is for {} entities",
                svc.id, svc.applies_to
            ))
            .into());
        }
        let json = entity::normalized(&s, terms);
        let mut prefilled = Vec::new();
        let mut to_state = Vec::new();
        let mut facts_out = None;
        if let Some(pid) = svc.policy() {
            let policy = self
                .inner
                .policies
                .get(pid)
                .ok_or_else(|| Error::NotFound(format!("no policy '{pid}'")))?;
            let f = facts::about(&self.inner.hub, self.tenant(), terms, policy, &s).await?;
            for input in &policy.inputs {
                match (f.values.get(&input.name), f.sources.get(&input.name)) {
                    (Some(v), Some(src)) => {
                        for Source { entity, attribute } in src.iter().take(1) {
                            prefilled.push(Prefilled {
                                name: input.name.clone(),
                                value: v.to_json(&input.ty),
                                entity: entity.clone(),
                                attribute: attribute.clone(),
                            });
                        }
                    }
                    _ if input.default.is_none() => to_state.push(input.name.clone()),
                    _ => {}
                }
            }
            facts_out = Some(f);
        }
        for a in &svc.data_required {
            match gather::attribute(&json, a) {
                Some(v) => prefilled.push(Prefilled {
                    name: a.clone(),
                    value: v,
                    entity: subject.to_string(),
                    attribute: a.clone(),
                }),
                None => to_state.push(a.clone()),
            }
        }
        let risk = svc
            .risk_gate
            .iter()
            .filter(|a| gather::attribute(&json, a) == Some(Value::Bool(true)))
            .cloned()
            .collect();
        let mut records: Vec<String> = facts_out
            .iter()
            .flat_map(|f| f.sources.values().flatten().map(|s| s.entity.clone()))
            .chain(prefilled.iter().map(|p| p.entity.clone()))
            .collect();
        records.sort();
        records.dedup();
        Ok(Preview {
            service: svc.id.clone(),
            subject: subject.to_string(),
            prefilled,
            to_state,
            records,
            facts: facts_out,
            risk,
        })
    }

    /// Submits an application: pre-filled from the hub, stated inputs only
    /// for what no department holds, decided at once where the rule may.
    pub async fn apply(
        &self,
        actor: &Actor,
        service: &str,
        subject: &str,
        stated: Map<String, Value>,
        consent: bool,
    ) -> Result<Application> {
        if !actor.speaks_for(subject) {
            return Err(ServiceError::Forbidden(format!("{} may not apply in the name of {subject}", actor.id)).into());
        }
        let svc = self.service(service)?.clone();
        let mut p = self.preview(service, subject).await?;
        let now = self.now();
        let mut kept = Map::new();
        let decision = match (svc.policy(), p.facts.take()) {
            (Some(pid), Some(mut f)) => {
                let policy = self.inner.policies.get(pid).expect("previewed");
                for (name, v) in stated {
                    let input =
                        policy.inputs.iter().find(|i| i.name == name).ok_or_else(|| {
                            ServiceError::Invalid(format!("input: '{name}' is not an input of {pid}"))
                        })?;
                    if f.values.contains_key(&name) {
                        // Once only: what the hub holds is neither asked for nor replaced.
                        continue;
                    }
                    let value = RuleValue::from_json(&input.ty, &v)
                        .map_err(|e| ServiceError::Invalid(format!("input {name}: {e}")))?;
                    f.values.insert(name.clone(), value);
                    f.sources.insert(
                        name.clone(),
                        vec![Source {
                            entity: subject.to_string(),
                            attribute: format!("stated by {}", actor.id),
                        }],
                    );
                    kept.insert(name, v);
                }
                Some(policy.decide(&f, now.date_naive(), now))
            }
            _ => {
                for (name, v) in stated {
                    if !svc.data_required.contains(&name) {
                        return Err(
                            ServiceError::Invalid(format!("input: '{name}' is not data {} asks for", svc.id)).into(),
                        );
                    }
                    if !p.prefilled.iter().any(|x| x.name == name) {
                        kept.insert(name, v);
                    }
                }
                None
            }
        };
        let id = format!("urn:ngsi-ld:{APPLICATION}:{}", uuid::Uuid::new_v4());
        let a = Application::submit(
            &svc,
            Submission {
                id,
                subject: subject.to_string(),
                prefilled: p.prefilled,
                stated: kept,
                risk: p.risk,
                decision,
                consent,
            },
            actor,
            now,
        )?;
        self.save_application(&a, &svc).await?;
        Ok(a)
    }

    async fn save_application(&self, a: &Application, svc: &Service) -> Result<()> {
        let mut e = json!({
            "id": a.id, "type": APPLICATION,
            "service": prop(a.service.clone()),
            "title": prop(svc.title.clone()),
            "department": prop(a.department.clone()),
            "subject": rel(&a.subject),
            "applicant": prop(a.applicant.clone()),
            "status": prop(a.status.as_str()),
            "automatic": prop(a.automatic),
            "submitted": time(a.submitted),
            "record": entity::record(serde_json::to_value(a).unwrap_or(Value::Null)),
        });
        if let Some(d) = a.decided {
            e["decided"] = time(d);
        }
        if let Some(s) = a.seconds_to_decision() {
            e["secondsToDecision"] = prop(s);
        }
        if let Some(d) = a.due {
            e["due"] = time(d);
        }
        let message = match a.status {
            ApplicationStatus::Approved => format!("{}: approved", svc.title),
            ApplicationStatus::Rejected => format!("{}: not approved; the decision explains why", svc.title),
            ApplicationStatus::InReview => format!("{}: with an officer of {}", svc.title, svc.department),
            ApplicationStatus::Incomplete => format!("{}: {}", svc.title, a.note.clone().unwrap_or_default()),
        };
        let n = notification(
            &[entity::tail(&a.id), a.status.as_str()],
            &a.subject,
            &a.id,
            message,
            a.decided.unwrap_or(a.submitted),
        );
        self.commit(vec![e, n]).await
    }

    pub async fn application(&self, id: &str) -> Result<Application> {
        match self.get(id).await? {
            Some(e)
                if self
                    .terms()
                    .compact(e.types.first().map(String::as_str).unwrap_or_default())
                    == APPLICATION =>
            {
                entity::read_record(&e, self.terms()).map_err(Error::Data)
            }
            _ => Err(Error::NotFound(format!("no application {id}"))),
        }
    }

    /// Applications, newest first, by subject, department and status.
    pub async fn applications(
        &self,
        subject: Option<&str>,
        department: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Application>> {
        let found = self
            .where_equal(
                APPLICATION,
                &[("subject", subject), ("department", department), ("status", status)],
                limit,
            )
            .await?;
        let terms = self.terms();
        let mut out: Vec<Application> = found
            .iter()
            .map(|e| entity::read_record(e, terms).map_err(Error::Data))
            .collect::<Result<_>>()?;
        out.sort_by_key(|a| std::cmp::Reverse(a.submitted));
        Ok(out)
    }

    /// An officer's decision on an application in review.
    pub async fn review_application(
        &self,
        actor: &Actor,
        id: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Application> {
        let _g = self.lock_for(id).lock().await;
        let mut a = self.application(id).await?;
        let svc = self.service(&a.service)?.clone();
        a.review(approve, note, actor, self.now())?;
        self.save_application(&a, &svc).await?;
        Ok(a)
    }
}
