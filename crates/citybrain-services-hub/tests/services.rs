//! The services over a real hub (SQLite in a temporary directory) on a
//! controllable clock: approval at once with the explanation and the
//! consent, the risk gate and the officer's review, a bundle with reviews,
//! SLA escalation, deemed approval and compensation written as entities, a
//! bundle started by a birth record, proactive grants, the metrics, and a
//! second start over the same database finding everything where it was.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use citybrain_hub::{BatchOp, Hub, HubConfig, RequestContext};
use citybrain_rules::PolicySet;
use citybrain_services::{Actor, ActorKind, ApplicationStatus, Catalog, InstanceStatus, StepStatus};
use citybrain_services_hub::{Services, Settings};
use citybrain_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Map, Value};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

struct World {
    hub: Hub,
    services: Services,
    clock: Arc<AtomicI64>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

async fn open(db: &Path, clock: Arc<AtomicI64>) -> World {
    let store = SqliteStore::open(db, Durability::Normal).unwrap();
    let hub = Hub::start(Arc::new(store), HubConfig::default()).await.unwrap();
    let policies = Arc::new(PolicySet::load(&root().join("policies")).unwrap());
    let catalog = Catalog::load(&root().join("services"), &policies).unwrap();
    let c = clock.clone();
    let settings = Settings {
        clock: Arc::new(move || Utc.timestamp_millis_opt(c.load(Ordering::SeqCst)).unwrap()),
        ..Settings::default()
    };
    let services = Services::open(hub.clone(), catalog, policies, settings).await.unwrap();
    World { hub, services, clock }
}

impl World {
    fn advance(&self, d: Duration) {
        self.clock.fetch_add(d.num_milliseconds(), Ordering::SeqCst);
    }
    async fn put(&self, entities: Vec<Value>) {
        let r = self
            .hub
            .batch_write(
                "",
                &entities,
                &RequestContext::core(),
                BatchOp::Upsert { replace: true },
            )
            .await
            .unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    async fn entity(&self, id: &str) -> Value {
        let e = self.hub.retrieve_entity("", id).await.unwrap();
        citybrain_services_hub::entity::normalized(&e, &citybrain_ngsild::TermMap::core())
    }
}

fn p(v: Value) -> Value {
    json!({"type": "Property", "value": v})
}

fn person(id: &str, household: &str, role: &str, extra: Value) -> Value {
    let mut e = json!({"id": id, "type": "Person", "birthDate": p(json!("1998-04-01")),
        "householdRole": p(json!(role)), "registeredResident": p(json!(false)),
        "socialInsurance": p(json!(true)), "creditFlag": p(json!(false)), "monthlySalary": p(json!(9000.0)),
        "household": {"type": "Relationship", "object": household}});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = p(v.clone());
    }
    e
}

fn firm(id: &str, employees: i64, arrears: bool) -> Value {
    json!({"id": id, "type": "Organization", "name": p(json!("Noodle house")), "district": p(json!("Futian")),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [114.05, 22.54]}},
        "taxArrears": p(json!(arrears)), "employees": p(json!(employees)), "annualRevenue": p(json!(3.0e6)),
        "sizeClass": p(json!("small")), "industry": p(json!("catering")), "foundingDate": p(json!("2015-05-01")),
        "insuredEmployees": p(json!(employees)), "highTech": p(json!(false)), "rentedArea": p(json!(120.0))})
}

fn citizen(id: &str) -> Actor {
    Actor {
        id: format!("token:{}", id.rsplit(':').next().unwrap()),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: Some(id.into()),
    }
}

fn officer(dept: &str) -> Actor {
    Actor {
        id: format!("token:{dept}"),
        kind: ActorKind::Officer,
        departments: vec![dept.into()],
        subject: None,
    }
}

fn stated(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn world(dir: &tempfile::TempDir) -> World {
    open(
        &dir.path().join("c.db"),
        Arc::new(AtomicI64::new(t0().timestamp_millis())),
    )
    .await
}

#[tokio::test]
async fn an_application_is_approved_at_once_from_what_the_hub_holds() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir).await;
    let me = "urn:ngsi-ld:Person:p1";
    w.put(vec![person(
        me,
        "urn:ngsi-ld:Household:h1",
        "head",
        json!({"educationLevel": "master"}),
    )])
    .await;
    let preview = w.services.preview("talent-residence-intake", me).await.unwrap();
    let names: Vec<&str> = preview.prefilled.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["birth", "education", "insured", "registered"]);
    assert!(
        preview.to_state.is_empty(),
        "the hub holds it all: {:?}",
        preview.to_state
    );
    assert_eq!(preview.records, [me]);
    // Stated inputs do not replace what the hub holds (once only).
    let a = w
        .services
        .apply(
            &citizen(me),
            "talent-residence-intake",
            me,
            stated(json!({"education": "doctorate"})),
            true,
        )
        .await
        .unwrap();
    assert_eq!(a.status, ApplicationStatus::Approved);
    assert!(a.automatic);
    assert!(a.stated.is_empty());
    let d = a.decision.as_ref().unwrap();
    assert_eq!(
        d["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "education")
            .unwrap()["value"],
        "master"
    );
    // The application is a hub entity, and so is the notification.
    let e = w.entity(&a.id).await;
    assert_eq!(e["status"]["value"], "approved");
    assert_eq!(e["secondsToDecision"]["value"], 0.0);
    let listed = w.services.applications(Some(me), None, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], a);
    // Another person's application is refused.
    let other = "urn:ngsi-ld:Person:p2";
    w.put(vec![person(other, "urn:ngsi-ld:Household:h2", "head", json!({}))])
        .await;
    let e = w
        .services
        .apply(&citizen(me), "talent-residence-intake", other, Map::new(), true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("may not apply"), "{e}");
    // Missing education: incomplete, it says what to state; stating it decides.
    let a = w
        .services
        .apply(&citizen(other), "talent-residence-intake", other, Map::new(), true)
        .await
        .unwrap();
    assert_eq!(a.status, ApplicationStatus::Incomplete);
    let a = w
        .services
        .apply(
            &citizen(other),
            "talent-residence-intake",
            other,
            stated(json!({"education": "bachelor"})),
            true,
        )
        .await
        .unwrap();
    assert_eq!(a.status, ApplicationStatus::Approved);
    assert_eq!(a.stated["education"], "bachelor");
}

#[tokio::test]
async fn the_risk_gate_routes_to_the_officers_queue() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir).await;
    let me = "urn:ngsi-ld:Person:p1";
    w.put(vec![person(
        me,
        "urn:ngsi-ld:Household:h1",
        "head",
        json!({"educationLevel": "master", "creditFlag": true}),
    )])
    .await;
    let a = w
        .services
        .apply(&citizen(me), "talent-residence-intake", me, Map::new(), true)
        .await
        .unwrap();
    assert_eq!(a.status, ApplicationStatus::InReview);
    assert_eq!(a.routed.as_deref(), Some("risk gate: creditFlag"));
    let queue = w
        .services
        .applications(None, Some("civil-affairs"), Some("in_review"), 10)
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    w.advance(Duration::hours(2));
    let e = w
        .services
        .review_application(&officer("tax"), &a.id, true, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not work for it"), "{e}");
    let a = w
        .services
        .review_application(&officer("civil-affairs"), &a.id, true, Some("checked".into()))
        .await
        .unwrap();
    assert_eq!(a.status, ApplicationStatus::Approved);
    assert_eq!(w.entity(&a.id).await["secondsToDecision"]["value"], 7200.0);
    assert!(w
        .services
        .applications(None, Some("civil-affairs"), Some("in_review"), 10)
        .await
        .unwrap()
        .is_empty());
}

const FIRM: &str = "urn:ngsi-ld:Organization:e1";

fn owner() -> Actor {
    Actor {
        id: "token:owner".into(),
        kind: ActorKind::Enterprise,
        departments: vec![],
        subject: Some(FIRM.into()),
    }
}

#[tokio::test]
async fn a_bundle_escalates_is_deemed_approved_and_completes_across_departments() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir).await;
    w.put(vec![firm(FIRM, 12, false)]).await;
    let i = w
        .services
        .start_bundle(&owner(), "opening-a-restaurant", FIRM)
        .await
        .unwrap();
    assert_eq!(i.steps["food-permit"].status, StepStatus::Waiting);
    let licence = i.steps["business-licence"].document.clone().unwrap();
    assert_eq!(w.entity(&licence).await["status"]["value"], "valid");
    assert_eq!(
        w.entity(&i.id).await["waitingOn"]["value"],
        json!(["market-regulation", "fire-rescue"])
    );
    assert_eq!(w.services.next_timer(), Some(t0() + Duration::days(2)));
    // Two days: the food permit's warning; three: its escalation.
    w.advance(Duration::days(3));
    assert_eq!(w.services.tick().await.unwrap(), 1);
    let tail = i.id.rsplit(':').next().unwrap();
    let esc = w
        .entity(&format!(
            "urn:ngsi-ld:ServiceNotification:{tail}:food-permit:escalation"
        ))
        .await;
    assert_eq!(esc["recipient"]["value"], "market-regulation-supervision");
    w.entity(&format!("urn:ngsi-ld:ServiceNotification:{tail}:food-permit:warning"))
        .await;
    // Five days: fire safety deemed approved.
    w.advance(Duration::days(2));
    w.services.tick().await.unwrap();
    let now = w.services.instance(&i.id).await.unwrap();
    assert_eq!(now.steps["fire-safety"].status, StepStatus::Done);
    let queue = w
        .services
        .instances(&citybrain_services_hub::InstanceFilter {
            waiting_on: Some("market-regulation".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    let done = w
        .services
        .review_step(&officer("market-regulation"), &i.id, "food-permit", true, None)
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    let e = w.entity(&i.id).await;
    assert_eq!(e["status"]["value"], "completed");
    assert_eq!(e["stepsDone"]["value"], 4);
    let result = w
        .entity(&format!("urn:ngsi-ld:ServiceNotification:{tail}:-:result"))
        .await;
    assert_eq!(result["recipient"]["object"], FIRM);
    assert_eq!(w.services.next_timer(), None);
}

#[tokio::test]
async fn a_refused_step_revokes_the_documents_in_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir).await;
    w.put(vec![firm(FIRM, 12, false)]).await;
    let i = w
        .services
        .start_bundle(&owner(), "opening-a-restaurant", FIRM)
        .await
        .unwrap();
    let i = w
        .services
        .review_step(
            &officer("fire-rescue"),
            &i.id,
            "fire-safety",
            false,
            Some("no exit".into()),
        )
        .await
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Rejected);
    for step in ["business-licence", "tax-registration"] {
        let doc = w.entity(i.steps[step].document.as_ref().unwrap()).await;
        assert_eq!(doc["status"]["value"], "revoked", "{step}");
        assert!(doc.get("revoked").is_some());
    }
    let e = w
        .services
        .review_step(&officer("market-regulation"), &i.id, "food-permit", true, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not waiting"), "{e}");
}

#[tokio::test]
async fn a_birth_record_starts_the_newborn_bundle_which_waits_for_the_mother() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir).await;
    let (hh, mother) = ("urn:ngsi-ld:Household:h1", "urn:ngsi-ld:Person:m1");
    w.put(vec![
        json!({"id": hh, "type": "Household", "district": p(json!("Futian"))}),
        person(mother, hh, "head", json!({"registeredResident": true})),
        json!({"id": "urn:ngsi-ld:BirthRecord:b1", "type": "BirthRecord", "birthDate": p(json!("2026-03-01")),
               "household": {"type": "Relationship", "object": hh}, "mother": {"type": "Relationship", "object": mother}}),
    ])
    .await;
    w.services.full_pass().await.unwrap();
    let id = "urn:ngsi-ld:BundleInstance:newborn-b1";
    let i = w.services.instance(id).await.unwrap();
    assert_eq!(i.status, InstanceStatus::AwaitingConfirmation);
    assert_eq!(i.confirm_by.as_deref(), Some(mother));
    // A second pass starts nothing new.
    w.services.full_pass().await.unwrap();
    assert_eq!(w.services.instances(&Default::default()).await.unwrap().len(), 1);
    let e = w
        .services
        .confirm(&citizen("urn:ngsi-ld:Person:x"), id)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("only"), "{e}");
    w.advance(Duration::minutes(10));
    let i = w.services.confirm(&citizen(mother), id).await.unwrap();
    assert_eq!(i.status, InstanceStatus::Completed, "{:#?}", i.steps);
    let reg = w
        .entity(i.steps["residence-registration"].document.as_ref().unwrap())
        .await;
    assert_eq!(reg["type"], "ResidenceRegistration");
    assert_eq!(reg["holder"]["object"], hh);
    let d = &i.steps["residence-registration"].decision.as_ref().unwrap();
    assert_eq!(d["outcome"], "eligible");
    let figures = w.services.figures().await.unwrap();
    assert_eq!(figures["newborn"].bundles_completed, 1);
    assert_eq!(figures["newborn"].visits_avoided, 5);
}

#[tokio::test]
async fn eligible_enterprises_are_granted_without_applying_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir).await;
    let firms: Vec<Value> = (0..30)
        .map(|i| firm(&format!("urn:ngsi-ld:Organization:e{i}"), 5 + i, i % 3 == 0))
        .collect();
    w.put(firms).await;
    let r = w.services.match_service("sme-stabilisation-subsidy").await.unwrap();
    assert_eq!(r.checked, 30);
    assert!(r.eligible > 0 && r.eligible < 30, "{r:?}");
    assert_eq!(r.granted, r.eligible);
    let again = w.services.match_service("sme-stabilisation-subsidy").await.unwrap();
    assert_eq!((again.eligible, again.granted), (r.eligible, 0), "granted once");
    let grants = w.services.grants(None, 100).await.unwrap();
    assert_eq!(grants.len(), r.eligible);
    let g = &grants[0];
    assert_eq!(g["explanation"]["outcome"], "eligible");
    assert!(g["explanation"]["clauses"].as_array().unwrap().len() > 1);
    // An enterprise whose arrears are cleared is granted when its data changes.
    let cleared = "urn:ngsi-ld:Organization:e3";
    assert!(w.services.grants(Some(cleared), 10).await.unwrap().is_empty());
    w.put(vec![firm(cleared, 8, false)]).await;
    assert!(w
        .services
        .grant_one("sme-stabilisation-subsidy", cleared)
        .await
        .unwrap());
    assert_eq!(w.services.grants(Some(cleared), 10).await.unwrap().len(), 1);
    w.services.refresh_metrics().await.unwrap();
    let m = w.entity("urn:ngsi-ld:ServiceMetrics:sme-stabilisation-subsidy").await;
    assert_eq!(m["benefitsGranted"]["value"], r.eligible + 1);
}

#[tokio::test]
async fn a_second_start_over_the_database_resumes_timers_and_pins_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let clock = Arc::new(AtomicI64::new(t0().timestamp_millis()));
    let id = {
        let w = open(&db, clock.clone()).await;
        w.put(vec![firm(FIRM, 12, false)]).await;
        let i = w
            .services
            .start_bundle(&owner(), "opening-a-restaurant", FIRM)
            .await
            .unwrap();
        w.hub.close_streams();
        i.id
    };
    let w = open(&db, clock).await;
    assert_eq!(
        w.services.next_timer(),
        Some(t0() + Duration::days(2)),
        "timers come back from the hub"
    );
    w.advance(Duration::days(5));
    w.services.tick().await.unwrap();
    let i = w.services.instance(&id).await.unwrap();
    assert!(i.steps["food-permit"].escalated);
    assert_eq!(i.steps["fire-safety"].status, StepStatus::Done);
    let i = w
        .services
        .review_step(&officer("market-regulation"), &id, "food-permit", true, None)
        .await
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Completed);
}
