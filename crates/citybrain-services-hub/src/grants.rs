//! Benefits without application (免申即享): a proactive service's policy
//! runs over every entity of its type when the services start (a newly
//! published policy version matches everyone) and over each entity whose
//! data changes; every eligible subject is granted once per policy
//! version, with the decision as its explanation, and notified.

use std::time::Instant;

use citybrain_rules::{Decision, Outcome};
use citybrain_services::Service;
use serde_json::{json, Value};

use crate::bundles::notification;
use crate::entity::{self, prop, rel, time, GRANT};
use crate::{facts, Error, Result, Services};

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchReport {
    pub service: String,
    pub policy: String,
    pub policy_version: u32,
    pub checked: usize,
    pub eligible: usize,
    /// Granted by this run (the others were granted before).
    pub granted: usize,
    pub seconds: f64,
}

fn grant_id(d: &Decision, subject: &str) -> String {
    format!(
        "urn:ngsi-ld:{GRANT}:{}-v{}-{}",
        d.policy,
        d.policy_version,
        entity::tail(subject)
    )
}

fn grant_entities(svc: &Service, d: &Decision, subject: &str) -> [Value; 2] {
    let id = grant_id(d, subject);
    let amount = d.amount.unwrap_or(0.0);
    let g = json!({
        "id": id, "type": GRANT,
        "service": prop(svc.id.clone()), "title": prop(svc.title.clone()),
        "department": prop(svc.department.clone()),
        "policy": prop(d.policy.clone()), "policyVersion": prop(d.policy_version),
        "subject": rel(subject), "amount": prop(amount), "status": prop("granted"),
        "granted": time(d.decided_at),
        "record": entity::record(serde_json::to_value(d).unwrap_or(Value::Null)),
    });
    let message = if d.amount.is_some() {
        format!(
            "{}: {amount:.2} granted without application; the decision explains why",
            svc.title
        )
    } else {
        format!("{}: granted without application; the decision explains why", svc.title)
    };
    let n = notification(&[entity::tail(&id), "granted"], subject, &id, message, d.decided_at);
    [g, n]
}

impl Services {
    fn proactive(&self) -> impl Iterator<Item = &Service> {
        self.inner.catalog.services.values().filter(|s| s.proactive)
    }

    /// Matches every proactive service's policy against all its subjects.
    pub async fn match_all(&self) -> Result<Vec<MatchReport>> {
        let ids: Vec<String> = self.proactive().map(|s| s.id.clone()).collect();
        let mut out = Vec::new();
        for id in ids {
            out.push(self.match_service(&id).await?);
        }
        Ok(out)
    }

    pub async fn match_service(&self, service: &str) -> Result<MatchReport> {
        let t0 = Instant::now();
        let svc = self.service(service)?.clone();
        let pid = svc
            .policy()
            .ok_or_else(|| Error::Data(format!("{service} is decided by an officer")))?;
        let policy = self
            .inner
            .policies
            .get(pid)
            .ok_or_else(|| Error::NotFound(format!("no policy '{pid}'")))?;
        let all = facts::all(
            &self.inner.hub,
            self.tenant(),
            self.terms(),
            policy,
            self.inner.settings.max_subjects,
        )
        .await?;
        let now = self.now();
        let mut items = Vec::new();
        let mut eligible = 0;
        for (subject, f) in &all {
            let Ok(f) = f else {
                continue;
            };
            let d = policy.decide(f, now.date_naive(), now);
            if d.outcome == Outcome::Eligible {
                eligible += 1;
                items.extend(grant_entities(&svc, &d, subject));
            }
        }
        let created = self.create_once(items).await?;
        let granted = created.iter().filter(|id| id.contains(GRANT)).count();
        Ok(MatchReport {
            service: svc.id.clone(),
            policy: policy.id.clone(),
            policy_version: policy.version,
            checked: all.len(),
            eligible,
            granted,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Decides one subject whose data changed; grants it if newly eligible.
    pub async fn grant_one(&self, service: &str, subject: &str) -> Result<bool> {
        let svc = self.service(service)?.clone();
        let Some(pid) = svc.policy() else { return Ok(false) };
        let Some(policy) = self.inner.policies.get(pid) else {
            return Ok(false);
        };
        let Some(s) = self.get(subject).await? else {
            return Ok(false);
        };
        let f = facts::about(&self.inner.hub, self.tenant(), self.terms(), policy, &s).await?;
        let now = self.now();
        let d = policy.decide(&f, now.date_naive(), now);
        if d.outcome != Outcome::Eligible {
            return Ok(false);
        }
        let created = self.create_once(grant_entities(&svc, &d, subject).to_vec()).await?;
        Ok(created.iter().any(|id| id.contains(GRANT)))
    }

    /// Grants, by subject, each with its explanation.
    pub async fn grants(&self, subject: Option<&str>, limit: usize) -> Result<Vec<Value>> {
        let terms = self.terms();
        let found = self.where_equal(GRANT, &[("subject", subject)], limit).await?;
        found
            .iter()
            .map(|e| {
                let n = entity::normalized(e, terms);
                let explanation: Value = entity::read_record(e, terms).map_err(Error::Data)?;
                let get = |k: &str| citybrain_rules::gather::attribute(&n, k).unwrap_or(Value::Null);
                Ok(json!({"id": e.id, "service": get("service"), "title": get("title"), "department": get("department"),
                          "subject": get("subject"), "amount": get("amount"), "granted": get("granted"),
                          "status": get("status"), "explanation": explanation}))
            })
            .collect()
    }
}
