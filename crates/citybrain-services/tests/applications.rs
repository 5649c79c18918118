//! Applications: consent, the risk gate, approval at once by the rule,
//! incomplete data, and an officer's review.

use std::path::Path;

use chrono::{Duration, TimeZone, Utc};
use citybrain_rules::{Facts, PolicySet, Value as RuleValue};
use citybrain_services::*;
use serde_json::Map;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

const ME: &str = "urn:ngsi-ld:Person:p1";

fn citizen() -> Actor {
    Actor {
        id: "token:p1".into(),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: Some(ME.into()),
    }
}

fn submission(risk: Vec<String>, education: Option<&str>, consent: bool) -> Submission {
    let policies = PolicySet::load(&root().join("policies")).unwrap();
    let p = policies.get("talent-residence-intake").unwrap();
    let mut f = Facts::default();
    f.values.insert(
        "birth".into(),
        RuleValue::Date(chrono::NaiveDate::from_ymd_opt(1999, 5, 1).unwrap()),
    );
    f.values.insert("registered".into(), RuleValue::Bool(false));
    f.values.insert("insured".into(), RuleValue::Bool(true));
    if let Some(e) = education {
        f.values.insert("education".into(), RuleValue::String(e.into()));
    }
    let on = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    Submission {
        id: "urn:ngsi-ld:ServiceApplication:a1".into(),
        subject: ME.into(),
        prefilled: vec![Prefilled {
            name: "birth".into(),
            value: "1999-05-01".into(),
            entity: ME.into(),
            attribute: "birthDate".into(),
        }],
        stated: Map::new(),
        risk,
        decision: Some(p.decide(&f, on, Utc::now())),
        consent,
    }
}

fn service() -> Service {
    let policies = PolicySet::load(&root().join("policies")).unwrap();
    Catalog::load(&root().join("services"), &policies).unwrap().services["talent-residence-intake"].clone()
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

#[test]
fn the_rule_approves_at_once_with_its_explanation_and_the_consent() {
    let a = Application::submit(&service(), submission(vec![], Some("master"), true), &citizen(), now()).unwrap();
    assert_eq!(a.status, ApplicationStatus::Approved);
    assert!(a.automatic);
    assert_eq!(a.seconds_to_decision(), Some(0.0));
    assert_eq!(a.decided_by.as_deref(), Some("rule:talent-residence-intake@1"));
    assert_eq!(a.decision.as_ref().unwrap()["outcome"], "eligible");
    assert_eq!(a.consent.records, [ME]);
    assert_eq!(a.consent.given_by, "token:p1");
    assert!(a.due.is_none());
}

#[test]
fn the_risk_gate_sends_an_eligible_applicant_to_an_officer() {
    let mut a = Application::submit(
        &service(),
        submission(vec!["creditFlag".into()], Some("master"), true),
        &citizen(),
        now(),
    )
    .unwrap();
    assert_eq!(a.status, ApplicationStatus::InReview);
    assert!(!a.automatic);
    assert_eq!(a.routed.as_deref(), Some("risk gate: creditFlag"));
    assert_eq!(a.due, Some(now() + Duration::days(5)));
    // The rule's view is kept for the officer.
    assert_eq!(a.decision.as_ref().unwrap()["outcome"], "eligible");
    let wrong = Actor {
        id: "token:tax".into(),
        kind: ActorKind::Officer,
        departments: vec!["tax".into()],
        subject: None,
    };
    assert!(matches!(
        a.review(true, None, &wrong, now()),
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        a.review(true, None, &citizen(), now()),
        Err(ServiceError::Forbidden(_))
    ));
    let officer = Actor {
        id: "token:ca".into(),
        kind: ActorKind::Officer,
        departments: vec!["civil-affairs".into()],
        subject: None,
    };
    a.review(
        false,
        Some("credit record".into()),
        &officer,
        now() + Duration::hours(3),
    )
    .unwrap();
    assert_eq!(a.status, ApplicationStatus::Rejected);
    assert_eq!(a.seconds_to_decision(), Some(3.0 * 3600.0));
    assert!(matches!(
        a.review(true, None, &officer, now()),
        Err(ServiceError::Conflict(_))
    ));
}

#[test]
fn without_consent_nothing_is_submitted() {
    let e = Application::submit(&service(), submission(vec![], Some("master"), false), &citizen(), now()).unwrap_err();
    assert!(e.to_string().contains("\"consent\": true"), "{e}");
    assert!(e.to_string().contains("birthDate"), "{e}");
}

#[test]
fn data_no_department_holds_makes_it_incomplete() {
    let a = Application::submit(&service(), submission(vec![], None, true), &citizen(), now()).unwrap();
    assert_eq!(a.status, ApplicationStatus::Incomplete);
    assert!(a.note.as_deref().unwrap().contains("education"), "{:?}", a.note);
}

#[test]
fn nobody_applies_in_another_persons_name() {
    let mut s = submission(vec![], Some("master"), true);
    s.subject = "urn:ngsi-ld:Person:p2".into();
    assert!(matches!(
        Application::submit(&service(), s, &citizen(), now()),
        Err(ServiceError::Forbidden(_))
    ));
}
