//! An application for one service: pre-filled from what the hub holds
//! (once only — the applicant is asked only for what no department has),
//! with the applicant's consent to that use, decided at once by the rule
//! (秒批) unless the risk gate or the service sends it to an officer.

use chrono::{DateTime, Utc};
use citybrain_rules::{Decision, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actor::{Actor, ActorKind};
use crate::catalog::{DecidedBy, Service};
use crate::error::ServiceError;

/// One value taken from the hub instead of asking the applicant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prefilled {
    pub name: String,
    pub value: Value,
    /// The hub entity and attribute it came from (the evidence).
    pub entity: String,
    pub attribute: String,
}

/// The applicant's consent to the use of records other departments hold
/// (the once-only principle's preview and consent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub given_by: String,
    pub at: DateTime<Utc>,
    pub purpose: String,
    pub legal_basis: String,
    /// The entities read.
    pub records: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    Approved,
    Rejected,
    /// With an officer of the service's department.
    InReview,
    /// The rule lacks inputs no department holds; the applicant states them.
    Incomplete,
}

impl ApplicationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::Approved => "approved",
            ApplicationStatus::Rejected => "rejected",
            ApplicationStatus::InReview => "in_review",
            ApplicationStatus::Incomplete => "incomplete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    pub service: String,
    pub department: String,
    pub subject: String,
    pub applicant: String,
    pub submitted: DateTime<Utc>,
    pub status: ApplicationStatus,
    /// Decided by the rule alone, without an officer.
    pub automatic: bool,
    /// Why it went to an officer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed: Option<String>,
    pub prefilled: Vec<Prefilled>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub stated: Map<String, Value>,
    pub consent: Consent,
    /// The rule's decision with its explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When an officer's decision is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
}

/// What the caller gathered for one application.
pub struct Submission {
    pub id: String,
    pub subject: String,
    pub prefilled: Vec<Prefilled>,
    pub stated: Map<String, Value>,
    /// The risk-gate attributes that are true for the applicant.
    pub risk: Vec<String>,
    /// The rule's decision, for a service a policy decides.
    pub decision: Option<Decision>,
    pub consent: bool,
}

impl Application {
    pub fn submit(
        service: &Service,
        s: Submission,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Application, ServiceError> {
        if !actor.speaks_for(&s.subject) || actor.kind == ActorKind::System {
            return Err(ServiceError::Forbidden(format!(
                "{} may not apply in the name of {}",
                actor.id, s.subject
            )));
        }
        if !s.consent {
            return Err(ServiceError::Invalid(format!(
                "{} reads records other departments hold about {} ({}); the application needs \"consent\": true",
                service.title,
                s.subject,
                s.prefilled
                    .iter()
                    .map(|p| p.attribute.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut records: Vec<String> = s.prefilled.iter().map(|p| p.entity.clone()).collect();
        records.sort();
        records.dedup();
        let legal_basis = match (&service.decided_by, &s.decision) {
            (_, Some(d)) => d.reference.clone(),
            _ => format!("service {}", service.id),
        };
        let consent = Consent {
            given_by: actor.id.clone(),
            at: now,
            purpose: service.title.clone(),
            legal_basis,
            records,
        };
        let mut a = Application {
            id: s.id,
            service: service.id.clone(),
            department: service.department.clone(),
            subject: s.subject,
            applicant: actor.id.clone(),
            submitted: now,
            status: ApplicationStatus::InReview,
            automatic: false,
            routed: None,
            prefilled: s.prefilled,
            stated: s.stated,
            consent,
            decision: s.decision.as_ref().and_then(|d| serde_json::to_value(d).ok()),
            decided: None,
            decided_by: None,
            note: None,
            due: None,
        };
        let by_rule = |a: &mut Application, status, note: Option<String>| {
            a.status = status;
            a.automatic = true;
            a.decided = Some(now);
            a.decided_by = s
                .decision
                .as_ref()
                .map(|d| format!("rule:{}@{}", d.policy, d.policy_version));
            a.note = note;
        };
        match (&service.decided_by, &s.decision) {
            _ if !s.risk.is_empty() => {
                a.routed = Some(format!("risk gate: {}", s.risk.join(", ")));
            }
            (DecidedBy::Manual, _) => a.routed = Some("decided by an officer".into()),
            (DecidedBy::Policy(_), None) => a.routed = Some("the rule could not be run".into()),
            (DecidedBy::Policy(_), Some(d)) => match d.outcome {
                Outcome::Eligible => by_rule(&mut a, ApplicationStatus::Approved, None),
                Outcome::NotEligible => by_rule(&mut a, ApplicationStatus::Rejected, None),
                Outcome::NotInForce => by_rule(
                    &mut a,
                    ApplicationStatus::Rejected,
                    Some(format!("{} is not in force on {}", d.policy, d.on)),
                ),
                Outcome::Incomplete => {
                    a.status = ApplicationStatus::Incomplete;
                    a.note = Some(format!(
                        "no department holds {}; state them and apply again",
                        d.missing.join(", ")
                    ));
                }
                Outcome::Error => a.routed = Some("the rule failed on this data".into()),
            },
        }
        if a.status == ApplicationStatus::InReview {
            a.due = Some(now + service.sla);
        }
        Ok(a)
    }

    /// An officer's decision on an application in review.
    pub fn review(
        &mut self,
        approve: bool,
        note: Option<String>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if !actor.works_for(&self.department) {
            return Err(ServiceError::Forbidden(format!(
                "{} is decided by {}; {} does not work for it",
                self.id, self.department, actor.id
            )));
        }
        if self.status != ApplicationStatus::InReview {
            return Err(ServiceError::Conflict(format!(
                "{} is {}, not in review",
                self.id,
                self.status.as_str()
            )));
        }
        self.status = if approve {
            ApplicationStatus::Approved
        } else {
            ApplicationStatus::Rejected
        };
        self.decided = Some(now);
        self.decided_by = Some(actor.id.clone());
        self.note = note;
        Ok(())
    }

    /// Seconds from submission to decision, once decided.
    pub fn seconds_to_decision(&self) -> Option<f64> {
        self.decided
            .map(|d| (d - self.submitted).num_milliseconds() as f64 / 1000.0)
    }
}
