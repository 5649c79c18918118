//! One run of a bundle: the state of each step, the timers, the log, and
//! the engine that moves it on. The engine is a pure function of the state,
//! the definition, what the departments answer and the clock: it returns
//! the effects (documents to issue or revoke, tasks, warnings) for the
//! caller to commit together with the new state — the outbox.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use citybrain_rules::{Decision, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::bundle::{Breach, Bundle, Step, StepKind};
use crate::error::ServiceError;

/// What the departments answer a running step, for one instance's subject.
pub trait Departments {
    /// The subject's attributes by name, or the names the hub lacks.
    fn lookup(&self, attributes: &[String]) -> Result<Map<String, Value>, Vec<String>>;
    /// The policy's decision about the subject on `on`.
    fn decide(&self, policy: &str, on: NaiveDate) -> Result<Decision, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    AwaitingConfirmation,
    Running,
    Completed,
    /// A step was refused; what was issued has been revoked.
    Rejected,
    /// A step could not run (data missing, a rule error); likewise compensated.
    Failed,
    Cancelled,
}

impl InstanceStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, InstanceStatus::AwaitingConfirmation | InstanceStatus::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::AwaitingConfirmation => "awaiting_confirmation",
            InstanceStatus::Running => "running",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Rejected => "rejected",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// Waiting for an officer's review.
    Waiting,
    Done,
    Rejected,
    Failed,
    /// Never ran: a step it needs did not succeed.
    Skipped,
    /// Done, then undone because a later step failed.
    Compensated,
    /// Was waiting when the bundle ended.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub warned: bool,
    #[serde(default)]
    pub escalated: bool,
    /// Who decided it: an officer's actor id, `rule:<policy>@<version>`, `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What a lookup read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// A rule step's decision with its explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Value>,
    /// The document issued (and, if compensated, revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
}

impl StepState {
    fn new() -> Self {
        StepState {
            status: StepStatus::Pending,
            started: None,
            due: None,
            finished: None,
            warned: false,
            escalated: false,
            by: None,
            note: None,
            output: None,
            decision: None,
            document: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub bundle: String,
    /// The definition version this instance runs by, whatever is newer.
    pub version: u32,
    pub subject: String,
    pub status: InstanceStatus,
    pub created: DateTime<Utc>,
    pub due: DateTime<Utc>,
    #[serde(default)]
    pub breached: bool,
    /// Who must confirm before it runs (a parent, for a triggered bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    pub steps: BTreeMap<String, StepState>,
    pub log: Vec<LogEntry>,
}

/// What the caller must do, in the same commit as the new state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Issue {
        document: String,
        document_type: String,
        step: String,
        department: String,
    },
    Revoke {
        document: String,
        document_type: String,
        step: String,
        department: String,
    },
    /// A review step waits for the department.
    Task {
        step: String,
        department: String,
        due: Option<DateTime<Utc>>,
    },
    Warn {
        step: String,
        department: String,
        due: Option<DateTime<Utc>>,
    },
    Escalate {
        step: String,
        department: String,
        to: String,
    },
    /// The bundle as a whole is past its SLA.
    Overdue,
    Finished {
        status: InstanceStatus,
    },
}

/// The id of the document a step of an instance issues: the same on every
/// retry, so issuing twice (after a crash) writes one document.
pub fn document_id(instance: &str, document_type: &str, step: &str) -> String {
    let tail = instance.rsplit(':').next().unwrap_or(instance);
    format!("urn:ngsi-ld:{document_type}:{tail}:{step}")
}

impl Instance {
    /// A new instance of `b` about `subject`; it waits for `confirm_by` if
    /// given (a triggered bundle), else it is running (call `advance`).
    pub fn new(
        id: String,
        b: &Bundle,
        subject: String,
        confirm_by: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Instance, ServiceError> {
        if confirm_by.is_none() && !actor.speaks_for(&subject) {
            return Err(ServiceError::Forbidden(format!(
                "{} may not start a bundle for {subject}",
                actor.id
            )));
        }
        let status = if confirm_by.is_some() {
            InstanceStatus::AwaitingConfirmation
        } else {
            InstanceStatus::Running
        };
        let event = match &confirm_by {
            Some(who) => format!("started by a hub record, waiting for {who} to confirm"),
            None => "started".to_string(),
        };
        Ok(Instance {
            id,
            bundle: b.id.clone(),
            version: b.version,
            subject,
            status,
            created: now,
            due: now + b.sla,
            breached: false,
            confirm_by,
            finished: None,
            steps: b.steps.iter().map(|s| (s.id.clone(), StepState::new())).collect(),
            log: vec![LogEntry {
                at: now,
                actor: actor.id.clone(),
                step: None,
                event,
            }],
        })
    }

    fn check_definition(&self, b: &Bundle) -> Result<(), ServiceError> {
        if b.id != self.bundle || b.version != self.version {
            return Err(ServiceError::Conflict(format!(
                "{} runs by {} version {}, not {} version {}",
                self.id, self.bundle, self.version, b.id, b.version
            )));
        }
        Ok(())
    }

    fn log(&mut self, now: DateTime<Utc>, actor: &str, step: Option<&str>, event: String) {
        self.log.push(LogEntry {
            at: now,
            actor: actor.to_string(),
            step: step.map(str::to_string),
            event,
        });
    }

    /// The confirmation a triggered bundle waits for; then it runs.
    pub fn confirm(
        &mut self,
        b: &Bundle,
        w: &dyn Departments,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, ServiceError> {
        self.check_definition(b)?;
        if self.status != InstanceStatus::AwaitingConfirmation {
            return Err(ServiceError::Conflict(format!(
                "{} is {}, not waiting for a confirmation",
                self.id,
                self.status.as_str()
            )));
        }
        let who = self.confirm_by.clone().unwrap_or_default();
        if !(actor.speaks_for(&who) && actor.kind != crate::actor::ActorKind::System) {
            return Err(ServiceError::Forbidden(format!(
                "only {who} (or an officer at a counter) confirms {}",
                self.id
            )));
        }
        self.status = InstanceStatus::Running;
        self.log(now, &actor.id, None, format!("confirmed for {who}"));
        Ok(self.advance(b, w, now))
    }

    /// An officer's verdict on a waiting review step.
    #[allow(clippy::too_many_arguments)]
    pub fn review(
        &mut self,
        b: &Bundle,
        w: &dyn Departments,
        step: &str,
        approve: bool,
        note: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, ServiceError> {
        self.check_definition(b)?;
        let def = b
            .step(step)
            .ok_or_else(|| ServiceError::Invalid(format!("{} has no step '{step}'", b.id)))?;
        if !actor.works_for(&def.department) {
            return Err(ServiceError::Forbidden(format!(
                "step '{step}' is reviewed by {}; {} does not work for it",
                def.department, actor.id
            )));
        }
        let st = &self.steps[step];
        if self.status != InstanceStatus::Running || st.status != StepStatus::Waiting {
            return Err(ServiceError::Conflict(format!(
                "step '{step}' of {} is {:?}, not waiting for a review",
                self.id, st.status
            )));
        }
        let mut fx = Vec::new();
        let st = self.steps.get_mut(step).expect("step exists");
        st.by = Some(actor.id.clone());
        st.note = note.clone();
        st.finished = Some(now);
        if approve {
            st.status = StepStatus::Done;
            issue(&self.id, def, st, &mut fx);
        } else {
            st.status = StepStatus::Rejected;
        }
        let verdict = if approve { "approved" } else { "rejected" };
        let event = match &note {
            Some(n) => format!("{verdict}: {n}"),
            None => verdict.to_string(),
        };
        self.log(now, &actor.id, Some(step), event);
        fx.extend(self.advance(b, w, now));
        Ok(fx)
    }

    /// Withdrawn by the applicant (or an officer): what was issued is revoked.
    pub fn cancel(&mut self, b: &Bundle, actor: &Actor, now: DateTime<Utc>) -> Result<Vec<Effect>, ServiceError> {
        self.check_definition(b)?;
        if self.status.is_final() {
            return Err(ServiceError::Conflict(format!(
                "{} is already {}",
                self.id,
                self.status.as_str()
            )));
        }
        let who = self.confirm_by.clone().unwrap_or_else(|| self.subject.clone());
        if !actor.speaks_for(&who) {
            return Err(ServiceError::Forbidden(format!(
                "{} may not cancel {}",
                actor.id, self.id
            )));
        }
        self.log(now, &actor.id, None, "cancelled".into());
        Ok(self.end(b, InstanceStatus::Cancelled, now))
    }

    /// Moves the instance as far as it can go now: timers first (a breached
    /// review may be deemed approved), then every step whose needs are done,
    /// then the outcome. Call it again at [`Instance::next_timer`].
    pub fn advance(&mut self, b: &Bundle, w: &dyn Departments, now: DateTime<Utc>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.status != InstanceStatus::Running || self.check_definition(b).is_err() {
            return fx;
        }
        self.timers(b, now, &mut fx);
        loop {
            let mut moved = false;
            for def in &b.steps {
                if self.steps[&def.id].status != StepStatus::Pending {
                    continue;
                }
                let needs: Vec<StepStatus> = def.needs.iter().map(|n| self.steps[n].status).collect();
                if needs
                    .iter()
                    .any(|s| !matches!(s, StepStatus::Done | StepStatus::Pending | StepStatus::Waiting))
                {
                    self.steps.get_mut(&def.id).expect("step").status = StepStatus::Skipped;
                    moved = true;
                    continue;
                }
                if needs.iter().all(|s| *s == StepStatus::Done) {
                    self.start(def, w, now, &mut fx);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        let refused = self.steps.values().any(|s| s.status == StepStatus::Rejected);
        let failed = self.steps.values().any(|s| s.status == StepStatus::Failed);
        if refused || failed {
            let status = if refused {
                InstanceStatus::Rejected
            } else {
                InstanceStatus::Failed
            };
            fx.extend(self.end(b, status, now));
        } else if self.steps.values().all(|s| s.status == StepStatus::Done) {
            self.status = InstanceStatus::Completed;
            self.finished = Some(now);
            self.log(now, "system", None, "completed".into());
            fx.push(Effect::Finished {
                status: InstanceStatus::Completed,
            });
        }
        fx
    }

    fn timers(&mut self, b: &Bundle, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        if !self.breached && now >= self.due {
            self.breached = true;
            self.log(now, "system", None, "past the bundle's SLA".into());
            fx.push(Effect::Overdue);
        }
        for def in &b.steps {
            let st = self.steps.get_mut(&def.id).expect("step");
            if st.status != StepStatus::Waiting {
                continue;
            }
            let started = st.started.unwrap_or(now);
            let mut events = Vec::new();
            if let Some(wa) = def.warn_after {
                if !st.warned && now >= started + wa {
                    st.warned = true;
                    fx.push(Effect::Warn {
                        step: def.id.clone(),
                        department: def.department.clone(),
                        due: st.due,
                    });
                    events.push("SLA warning sent".to_string());
                }
            }
            if let Some(due) = st.due {
                if !st.escalated && now >= due {
                    st.escalated = true;
                    let to = def.escalate_to.clone().unwrap_or_else(|| b.lead.clone());
                    events.push(format!("SLA breached, escalated to {to}"));
                    fx.push(Effect::Escalate {
                        step: def.id.clone(),
                        department: def.department.clone(),
                        to,
                    });
                    if def.on_breach == Breach::Approve {
                        st.status = StepStatus::Done;
                        st.finished = Some(now);
                        st.by = Some("system".into());
                        st.note = Some("deemed approved: no decision within the SLA".into());
                        issue(&self.id, def, st, fx);
                        events.push("deemed approved".into());
                    }
                }
            }
            for e in events {
                self.log(now, "system", Some(&def.id), e);
            }
        }
    }

    fn start(&mut self, def: &Step, w: &dyn Departments, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let id = self.id.clone();
        let st = self.steps.get_mut(&def.id).expect("step");
        st.started = Some(now);
        st.due = def.sla.map(|d| now + d);
        let event;
        match &def.kind {
            StepKind::Lookup(attrs) => match w.lookup(attrs) {
                Ok(found) => {
                    st.status = StepStatus::Done;
                    st.output = Some(Value::Object(found));
                    event = format!("read {} from the hub", attrs.join(", "));
                }
                Err(missing) => {
                    st.status = StepStatus::Failed;
                    st.note = Some(format!("the hub holds no {}", missing.join(", ")));
                    event = format!("failed: the hub holds no {}", missing.join(", "));
                }
            },
            StepKind::Rule(policy) => match w.decide(policy, now.date_naive()) {
                Ok(d) => {
                    st.by = Some(format!("rule:{}@{}", d.policy, d.policy_version));
                    st.status = match d.outcome {
                        Outcome::Eligible => StepStatus::Done,
                        Outcome::NotEligible | Outcome::NotInForce => StepStatus::Rejected,
                        Outcome::Incomplete | Outcome::Error => StepStatus::Failed,
                    };
                    event = format!("{policy}: {:?}", d.outcome).to_lowercase();
                    if !d.missing.is_empty() {
                        st.note = Some(format!("missing: {}", d.missing.join(", ")));
                    }
                    st.decision = serde_json::to_value(&d).ok();
                }
                Err(e) => {
                    st.status = StepStatus::Failed;
                    st.note = Some(e.clone());
                    event = format!("failed: {e}");
                }
            },
            StepKind::Review => {
                st.status = StepStatus::Waiting;
                fx.push(Effect::Task {
                    step: def.id.clone(),
                    department: def.department.clone(),
                    due: st.due,
                });
                event = format!("waiting for review by {}", def.department);
            }
            StepKind::Issue => {
                st.status = StepStatus::Done;
                st.by = Some("system".into());
                event = "done".into();
            }
        }
        if st.status != StepStatus::Waiting {
            st.finished = Some(now);
        }
        if st.status == StepStatus::Done {
            issue(&id, def, st, fx);
        }
        self.log(now, "system", Some(&def.id), event);
    }

    /// Ends the instance: waiting steps are cancelled, pending ones skipped,
    /// and what was issued is revoked, latest first (the saga's undo).
    fn end(&mut self, b: &Bundle, status: InstanceStatus, now: DateTime<Utc>) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut done: Vec<(DateTime<Utc>, usize)> = Vec::new();
        for (i, def) in b.steps.iter().enumerate() {
            let st = self.steps.get_mut(&def.id).expect("step");
            match st.status {
                StepStatus::Waiting => st.status = StepStatus::Cancelled,
                StepStatus::Pending => st.status = StepStatus::Skipped,
                StepStatus::Done => done.push((st.finished.unwrap_or(now), i)),
                _ => {}
            }
        }
        done.sort();
        for (_, i) in done.into_iter().rev() {
            let def = &b.steps[i];
            let st = self.steps.get_mut(&def.id).expect("step");
            if let (Some(doc), Some(ty)) = (&st.document, &def.issues) {
                fx.push(Effect::Revoke {
                    document: doc.clone(),
                    document_type: ty.clone(),
                    step: def.id.clone(),
                    department: def.department.clone(),
                });
                st.status = StepStatus::Compensated;
                let event = format!("compensated: {ty} revoked");
                self.log(now, "system", Some(&def.id), event);
            }
        }
        self.status = status;
        self.finished = Some(now);
        self.log(now, "system", None, status.as_str().to_string());
        fx.push(Effect::Finished { status });
        fx
    }

    /// When `advance` next has something to do without a signal.
    pub fn next_timer(&self, b: &Bundle) -> Option<DateTime<Utc>> {
        if self.status.is_final() {
            return None;
        }
        let mut next = (!self.breached).then_some(self.due);
        let mut consider = |t: DateTime<Utc>| next = Some(next.map_or(t, |n: DateTime<Utc>| n.min(t)));
        for def in &b.steps {
            let st = &self.steps[&def.id];
            if st.status != StepStatus::Waiting {
                continue;
            }
            if let (Some(s), Some(wa), false) = (st.started, def.warn_after, st.warned) {
                consider(s + wa);
            }
            if let (Some(d), false) = (st.due, st.escalated) {
                consider(d);
            }
        }
        next
    }

    /// The departments with a review step waiting on them.
    pub fn waiting_on(&self, b: &Bundle) -> Vec<String> {
        let mut out: Vec<String> = b
            .steps
            .iter()
            .filter(|d| self.steps[&d.id].status == StepStatus::Waiting)
            .map(|d| d.department.clone())
            .collect();
        out.dedup();
        out
    }
}

fn issue(instance: &str, def: &Step, st: &mut StepState, fx: &mut Vec<Effect>) {
    if let Some(ty) = &def.issues {
        let doc = document_id(instance, ty, &def.id);
        st.document = Some(doc.clone());
        fx.push(Effect::Issue {
            document: doc,
            document_type: ty.clone(),
            step: def.id.clone(),
            department: def.department.clone(),
        });
    }
}
