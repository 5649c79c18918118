//! The bundle engine on a controllable clock: fan-out and join, review,
//! SLA warnings, escalation and deemed approval, compensation, and who may
//! do what. The shipped catalog loads and checks against the policies.

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use citybrain_rules::{Decision, Facts, PolicySet, Value as RuleValue};
use citybrain_services::instance::document_id;
use citybrain_services::*;
use serde_json::{json, Map, Value};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn policies() -> PolicySet {
    PolicySet::load(&root().join("policies")).expect("policies load")
}

fn catalog() -> Catalog {
    Catalog::load(&root().join("services"), &policies()).expect("catalog loads")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// Departments answering from fixed data: attributes and the policies' facts.
struct Fixed {
    attrs: Map<String, Value>,
    facts: Vec<(&'static str, Facts)>,
    policies: PolicySet,
}

impl Departments for Fixed {
    fn lookup(&self, attributes: &[String]) -> Result<Map<String, Value>, Vec<String>> {
        let missing: Vec<String> = attributes
            .iter()
            .filter(|a| !self.attrs.contains_key(*a))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(attributes.iter().map(|a| (a.clone(), self.attrs[a].clone())).collect())
    }
    fn decide(&self, policy: &str, on: NaiveDate) -> Result<Decision, String> {
        let p = self.policies.get(policy).ok_or("no such policy")?;
        let facts = self
            .facts
            .iter()
            .find(|(id, _)| *id == policy)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        Ok(p.decide(&facts, on, t0()))
    }
}

fn facts(pairs: &[(&str, RuleValue)]) -> Facts {
    let mut f = Facts::default();
    for (k, v) in pairs {
        f.values.insert(k.to_string(), v.clone());
    }
    f
}

fn restaurant_departments(arrears: bool) -> Fixed {
    Fixed {
        attrs: json!({"name": "Noodle house", "district": "Futian", "location": {"type": "Point", "coordinates": [114.05, 22.54]}})
            .as_object()
            .unwrap()
            .clone(),
        facts: vec![("tax-registration", facts(&[("arrears", RuleValue::Bool(arrears))]))],
        policies: policies(),
    }
}

fn officer(dept: &str) -> Actor {
    Actor {
        id: format!("token:{dept}-officer"),
        kind: ActorKind::Officer,
        departments: vec![dept.into()],
        subject: None,
    }
}

fn enterprise(id: &str) -> Actor {
    Actor {
        id: "token:owner".into(),
        kind: ActorKind::Enterprise,
        departments: vec![],
        subject: Some(id.into()),
    }
}

const FIRM: &str = "urn:ngsi-ld:Organization:e1";

fn start_restaurant(w: &Fixed) -> (Bundle, Instance, Vec<Effect>) {
    let b = catalog().bundles["opening-a-restaurant"].clone();
    let mut i = Instance::new(
        "urn:ngsi-ld:BundleInstance:r1".into(),
        &b,
        FIRM.into(),
        None,
        &enterprise(FIRM),
        t0(),
    )
    .unwrap();
    let fx = i.advance(&b, w, t0());
    (b, i, fx)
}

fn status(i: &Instance, step: &str) -> StepStatus {
    i.steps[step].status
}

#[test]
fn the_shipped_catalog_loads() {
    let c = catalog();
    assert!(c.services.len() >= 6, "{:?}", c.services.keys());
    assert_eq!(c.bundles["newborn"].steps.len(), 5);
    assert!(c.services["sme-stabilisation-subsidy"].proactive);
    assert_eq!(c.services["talent-residence-intake"].risk_gate, vec!["creditFlag"]);
}

#[test]
fn steps_fan_out_after_their_needs_and_reviews_wait() {
    let w = restaurant_departments(false);
    let (_, i, fx) = start_restaurant(&w);
    assert_eq!(i.status, InstanceStatus::Running);
    assert_eq!(status(&i, "business-licence"), StepStatus::Done);
    // Three steps need the licence: two reviews wait in parallel, the rule is done at once.
    assert_eq!(status(&i, "food-permit"), StepStatus::Waiting);
    assert_eq!(status(&i, "fire-safety"), StepStatus::Waiting);
    assert_eq!(status(&i, "tax-registration"), StepStatus::Done);
    let issued: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Issue { document_type, .. } => Some(document_type.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(issued, ["BusinessLicence", "TaxRegistration"]);
    let tasks = fx.iter().filter(|e| matches!(e, Effect::Task { .. })).count();
    assert_eq!(tasks, 2);
    assert_eq!(i.steps["food-permit"].due, Some(t0() + Duration::days(3)));
    // The rule step keeps its decision with the explanation.
    let d = i.steps["tax-registration"].decision.as_ref().unwrap();
    assert_eq!(d["outcome"], "eligible");
    assert_eq!(
        i.steps["tax-registration"].by.as_deref(),
        Some("rule:tax-registration@1")
    );
    assert_eq!(
        i.waiting_on(&catalog().bundles["opening-a-restaurant"]),
        ["market-regulation", "fire-rescue"]
    );
}

#[test]
fn the_join_completes_when_every_branch_is_done() {
    let w = restaurant_departments(false);
    let (b, mut i, _) = start_restaurant(&w);
    let later = t0() + Duration::hours(5);
    let fx = i
        .review(&b, &w, "food-permit", true, None, &officer("market-regulation"), later)
        .unwrap();
    assert!(matches!(&fx[..], [Effect::Issue { document_type, .. }] if document_type == "FoodBusinessPermit"));
    assert_eq!(i.status, InstanceStatus::Running, "fire safety still waits");
    let fx = i
        .review(
            &b,
            &w,
            "fire-safety",
            true,
            Some("exits fine".into()),
            &officer("fire-rescue"),
            later,
        )
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Completed);
    assert!(fx.contains(&Effect::Finished {
        status: InstanceStatus::Completed
    }));
    assert_eq!(i.finished, Some(later));
    assert_eq!(i.next_timer(&b), None);
    assert_eq!(
        i.steps["fire-safety"].document.as_deref(),
        Some(document_id(&i.id, "FireSafetyApproval", "fire-safety").as_str())
    );
}

#[test]
fn a_refusal_revokes_what_was_issued_latest_first() {
    let w = restaurant_departments(false);
    let (b, mut i, _) = start_restaurant(&w);
    let t1 = t0() + Duration::hours(1);
    i.review(&b, &w, "food-permit", true, None, &officer("market-regulation"), t1)
        .unwrap();
    let t2 = t0() + Duration::hours(2);
    let fx = i
        .review(
            &b,
            &w,
            "fire-safety",
            false,
            Some("no emergency exit".into()),
            &officer("fire-rescue"),
            t2,
        )
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Rejected);
    let revoked: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Revoke { document_type, .. } => Some(document_type.as_str()),
            _ => None,
        })
        .collect();
    // The food permit (t1) was issued after the licence and the tax registration (t0).
    assert_eq!(revoked, ["FoodBusinessPermit", "TaxRegistration", "BusinessLicence"]);
    for s in ["business-licence", "food-permit", "tax-registration"] {
        assert_eq!(status(&i, s), StepStatus::Compensated, "{s}");
    }
    assert_eq!(status(&i, "fire-safety"), StepStatus::Rejected);
    assert!(i.log.iter().any(|l| l.event == "rejected: no emergency exit"));
}

#[test]
fn a_rule_refusal_cancels_the_waiting_reviews_and_compensates() {
    let w = restaurant_departments(true);
    let (_, i, fx) = start_restaurant(&w);
    assert_eq!(i.status, InstanceStatus::Rejected);
    assert_eq!(status(&i, "tax-registration"), StepStatus::Rejected);
    assert_eq!(status(&i, "food-permit"), StepStatus::Cancelled);
    assert_eq!(status(&i, "business-licence"), StepStatus::Compensated);
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Revoke { document_type, .. } if document_type == "BusinessLicence")));
    let d = i.steps["tax-registration"].decision.as_ref().unwrap();
    assert_eq!(d["clauses"][0]["value"], false);
}

#[test]
fn missing_data_fails_the_step_and_skips_what_needs_it() {
    let mut w = restaurant_departments(false);
    w.attrs.remove("location");
    let (_, i, fx) = start_restaurant(&w);
    assert_eq!(i.status, InstanceStatus::Failed);
    assert_eq!(status(&i, "business-licence"), StepStatus::Failed);
    assert_eq!(
        i.steps["business-licence"].note.as_deref(),
        Some("the hub holds no location")
    );
    for s in ["food-permit", "fire-safety", "tax-registration"] {
        assert_eq!(status(&i, s), StepStatus::Skipped, "{s}");
    }
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::Issue { .. } | Effect::Revoke { .. })));
}

#[test]
fn sla_timers_warn_escalate_and_deem_approved() {
    let w = restaurant_departments(false);
    let (b, mut i, _) = start_restaurant(&w);
    assert_eq!(
        i.next_timer(&b),
        Some(t0() + Duration::days(2)),
        "the food permit's warning"
    );
    assert!(
        i.advance(&b, &w, t0() + Duration::days(1)).is_empty(),
        "nothing is due yet"
    );
    let fx = i.advance(&b, &w, t0() + Duration::days(2));
    assert!(matches!(&fx[..], [Effect::Warn { step, .. }] if step == "food-permit"));
    assert!(
        i.advance(&b, &w, t0() + Duration::days(2)).is_empty(),
        "a warning is sent once"
    );
    let fx = i.advance(&b, &w, t0() + Duration::days(3));
    assert!(
        matches!(&fx[..], [Effect::Escalate { step, to, .. }] if step == "food-permit" && to == "market-regulation-supervision")
    );
    assert!(i.steps["food-permit"].escalated);
    assert_eq!(
        status(&i, "food-permit"),
        StepStatus::Waiting,
        "escalation does not decide"
    );
    assert_eq!(
        i.next_timer(&b),
        Some(t0() + Duration::days(4)),
        "fire safety's warning"
    );
    i.advance(&b, &w, t0() + Duration::days(4));
    // Fire safety is deemed approved when its 5 days pass without a decision.
    let fx = i.advance(&b, &w, t0() + Duration::days(5));
    assert_eq!(status(&i, "fire-safety"), StepStatus::Done);
    assert_eq!(i.steps["fire-safety"].by.as_deref(), Some("system"));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Issue { document_type, .. } if document_type == "FireSafetyApproval")));
    i.review(
        &b,
        &w,
        "food-permit",
        true,
        None,
        &officer("market-regulation"),
        t0() + Duration::days(6),
    )
    .unwrap();
    assert_eq!(i.status, InstanceStatus::Completed);
    // The bundle's own 10-day SLA was not reached.
    assert!(!i.breached);
}

#[test]
fn only_the_departments_officers_review_and_only_once() {
    let w = restaurant_departments(false);
    let (b, mut i, _) = start_restaurant(&w);
    let e = i
        .review(&b, &w, "food-permit", true, None, &officer("fire-rescue"), t0())
        .unwrap_err();
    assert!(matches!(e, ServiceError::Forbidden(_)), "{e}");
    let e = i
        .review(&b, &w, "food-permit", true, None, &enterprise(FIRM), t0())
        .unwrap_err();
    assert!(matches!(e, ServiceError::Forbidden(_)), "{e}");
    i.review(&b, &w, "food-permit", true, None, &officer("market-regulation"), t0())
        .unwrap();
    let e = i
        .review(&b, &w, "food-permit", false, None, &officer("market-regulation"), t0())
        .unwrap_err();
    assert!(matches!(e, ServiceError::Conflict(_)), "{e}");
    let e = i
        .review(&b, &w, "tax-registration", true, None, &officer("tax"), t0())
        .unwrap_err();
    assert!(
        matches!(e, ServiceError::Conflict(_)),
        "a rule step is not reviewed: {e}"
    );
}

#[test]
fn a_triggered_bundle_waits_for_the_parent_then_runs_to_the_end() {
    let b = catalog().bundles["newborn"].clone();
    let household = "urn:ngsi-ld:Household:h1";
    let mother = "urn:ngsi-ld:Person:p1";
    let mut i = Instance::new(
        "urn:ngsi-ld:BundleInstance:n1".into(),
        &b,
        household.into(),
        Some(mother.into()),
        &Actor::system(),
        t0(),
    )
    .unwrap();
    let member = |registered: bool, role: &str| {
        RuleValue::Record(vec![RuleValue::Bool(registered), RuleValue::String(role.into())].into())
    };
    let w = Fixed {
        attrs: json!({"district": "Futian"}).as_object().unwrap().clone(),
        facts: vec![(
            "newborn-residence-registration",
            facts(&[(
                "household_members",
                RuleValue::List(vec![member(true, "head"), member(false, "child")].into()),
            )]),
        )],
        policies: policies(),
    };
    assert!(
        i.advance(&b, &w, t0()).is_empty(),
        "nothing runs before the confirmation"
    );
    assert_eq!(i.status, InstanceStatus::AwaitingConfirmation);
    let stranger = Actor {
        id: "token:other".into(),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: Some("urn:ngsi-ld:Person:p9".into()),
    };
    assert!(matches!(
        i.confirm(&b, &w, &stranger, t0()),
        Err(ServiceError::Forbidden(_))
    ));
    let parent = Actor {
        id: "token:mother".into(),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: Some(mother.into()),
    };
    let fx = i.confirm(&b, &w, &parent, t0() + Duration::minutes(3)).unwrap();
    assert_eq!(i.status, InstanceStatus::Completed, "{:?}", i.steps);
    let issued = fx.iter().filter(|e| matches!(e, Effect::Issue { .. })).count();
    assert_eq!(issued, 5, "one document per department");
    assert!(matches!(
        i.confirm(&b, &w, &parent, t0()),
        Err(ServiceError::Conflict(_))
    ));
}

#[test]
fn an_instance_runs_only_by_its_own_definition_version() {
    let w = restaurant_departments(false);
    let (mut b, mut i, _) = start_restaurant(&w);
    b.version = 2;
    let e = i
        .review(&b, &w, "food-permit", true, None, &officer("market-regulation"), t0())
        .unwrap_err();
    assert!(e.to_string().contains("version 1"), "{e}");
    assert!(i.advance(&b, &w, t0()).is_empty());
}

#[test]
fn a_bundle_started_for_someone_else_is_refused() {
    let b = catalog().bundles["opening-a-restaurant"].clone();
    let e = Instance::new(
        "x".into(),
        &b,
        "urn:ngsi-ld:Organization:e2".into(),
        None,
        &enterprise(FIRM),
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, ServiceError::Forbidden(_)));
}

fn parse_err(text: &str) -> String {
    Bundle::parse(Path::new("bundles/t.yaml"), text)
        .unwrap_err()
        .to_string()
}

const HEAD: &str = "id: t\nversion: 1\ntitle: T\nlead: a\napplies_to: Person\nsla: 1d\nsteps:\n";

#[test]
fn bad_bundles_are_refused_with_file_and_line() {
    let e = parse_err(&format!("{HEAD}  - id: a\n    title: A\n    department: d\n    needs: [b]\n    issues: X\n  - id: b\n    title: B\n    department: d\n    needs: [a]\n    issues: Y\n"));
    assert!(e.starts_with("bundles/t.yaml:8: step 'a': is in a cycle"), "{e}");
    let e = parse_err(&format!(
        "{HEAD}  - id: a\n    title: A\n    department: d\n    needs: [zz]\n    issues: X\n"
    ));
    assert_eq!(
        e,
        "bundles/t.yaml:8: step 'a': needs 'zz', which is no step of this bundle"
    );
    let e = parse_err(&format!(
        "{HEAD}  - id: a\n    title: A\n    department: d\n    review: true\n    rule: p\n"
    ));
    assert!(e.contains("step 'a': one of lookup, rule and review"), "{e}");
    let e = parse_err(&format!(
        "{HEAD}  - id: a\n    title: A\n    department: d\n    review: true\n    sla: soon\n"
    ));
    assert!(e.contains("sla: 'soon' is not a duration"), "{e}");
    let e = parse_err(&format!(
        "{HEAD}  - id: a\n    title: A\n    department: d\n    review: true\n    sla: 1d\n    warn_after: 2d\n"
    ));
    assert!(e.contains("warn_after must come before the sla"), "{e}");
    let e = parse_err(&format!(
        "{HEAD}  - id: a\n    title: A\n    department: d\n    rule: p\n    sla: 1d\n    on_breach: approve\n"
    ));
    assert!(e.contains("on_breach: approve is for review steps"), "{e}");
    let e = parse_err(&format!(
        "{HEAD}  - id: a\n    title: A\n    department: d\n    colour: red\n"
    ));
    assert!(e.starts_with("bundles/t.yaml:"), "{e}");
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn a_catalog_naming_an_unknown_or_mismatched_policy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        "id: s\ntitle: S\ndepartment: d\napplies_to: Person\ndecided_by: {policy: rent-subsidy}\nsla: 1d\n",
    )
    .unwrap();
    let e = Catalog::load(dir.path(), &policies()).unwrap_err().to_string();
    assert_eq!(
        e,
        "service 's': policy 'rent-subsidy' decides about Household, not Person"
    );
    std::fs::write(
        dir.path().join("s.yaml"),
        "id: s\ntitle: S\ndepartment: d\napplies_to: Person\ndecided_by: {policy: nope}\nsla: 1d\n",
    )
    .unwrap();
    let e = Catalog::load(dir.path(), &policies()).unwrap_err().to_string();
    assert_eq!(e, "service 's': no policy 'nope' is loaded");
    std::fs::write(
        dir.path().join("s.yaml"),
        "id: s\ntitle: S\ndepartment: d\napplies_to: Person\ndecided_by: manual\nsla: 1d\nproactive: true\n",
    )
    .unwrap();
    let e = Catalog::load(dir.path(), &policies()).unwrap_err().to_string();
    assert!(
        e.ends_with("s.yaml:7: a proactive service grants by its rule; it needs decided_by: {policy: ID}"),
        "{e}"
    );
}
