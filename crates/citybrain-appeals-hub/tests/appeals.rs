//! The appeals over a real hub (SQLite in a temporary directory) on a
//! controllable clock: filing with classification and routing, updates as
//! entities, duplicates suggested and merged, timers that escalate, the
//! metrics, and a second start over the same database finding the index
//! and the timers again.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use citybrain_appeals::appeal::Channel;
use citybrain_appeals::{Actor, ActorKind, AppealsConfig, Filing, Location, Status, UpdateKind};
use citybrain_appeals_hub::{Action, Appeals, Filter, Settings};
use citybrain_hub::{Hub, HubConfig};
use citybrain_store_sqlite::{Durability, SqliteStore};

fn config() -> AppealsConfig {
    AppealsConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../appeals")).unwrap()
}

fn t0() -> DateTime<Utc> {
    // Tuesday 1 Dec 2026, 10:00 in Hangzhou.
    Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap()
}

async fn open(db: &Path, clock: Arc<AtomicI64>) -> (Hub, Appeals) {
    let store = SqliteStore::open(db, Durability::Normal).unwrap();
    let hub = Hub::start(Arc::new(store), HubConfig::default()).await.unwrap();
    let c = clock.clone();
    let settings = Settings {
        clock: Arc::new(move || Utc.timestamp_millis_opt(c.load(Ordering::SeqCst)).unwrap()),
        ..Settings::default()
    };
    let appeals = Appeals::open(hub.clone(), config(), settings).await.unwrap();
    (hub, appeals)
}

fn citizen(s: &str) -> Actor {
    Actor {
        id: format!("token:{s}"),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: Some(s.into()),
    }
}

fn officer(d: &str) -> Actor {
    Actor {
        id: format!("token:{d}"),
        kind: ActorKind::Officer,
        departments: vec![d.into()],
        subject: None,
    }
}

fn near_qingchun(text: &str, north_m: f64) -> Filing {
    Filing {
        description: text.into(),
        location: Some(Location {
            lat: 30.2610 + north_m / 111_320.0,
            lon: 120.1790,
            address: Some("庆春路".into()),
        }),
        ..Filing::default()
    }
}

#[tokio::test]
async fn appeals_are_filed_routed_merged_escalated_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = Arc::new(AtomicI64::new(t0().timestamp_millis()));
    let (hub, appeals) = open(&db, clock.clone()).await;
    let dept = officer("shangcheng-urban-management");

    // No category given: the classifier chooses, the table routes by area.
    let first = appeals
        .file(
            near_qingchun("公交站旁边的路灯不亮了，晚上很黑", 0.0),
            &citizen("urn:ngsi-ld:Person:p1"),
            Channel::Portal,
        )
        .await
        .unwrap();
    let a = &first.appeal;
    assert_eq!(a.category, "streetlight");
    assert!(a.classified.is_some());
    assert_eq!(a.area.as_deref(), Some("hospital-district"));
    assert_eq!(a.department, "shangcheng-urban-management");
    assert!(first.secret.is_none(), "signed in: no secret needed");
    assert!(first.similar.is_empty());
    let ups = appeals.updates(&a.id).await.unwrap();
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].kind, UpdateKind::Filed);

    // The same lamp, 30 m further, by someone not signed in: a duplicate is suggested.
    let public = Actor {
        id: "public".into(),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: None,
    };
    let second = appeals
        .file(
            Filing {
                category: Some("streetlight".into()),
                ..near_qingchun("公交站旁的路灯不亮", 30.0)
            },
            &public,
            Channel::Open311,
        )
        .await
        .unwrap();
    assert_eq!(
        second.similar.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str()]
    );
    let secret = second
        .secret
        .clone()
        .expect("a secret for a requester without an account");
    assert_eq!(appeals.similar_to(&second.appeal.id).await.unwrap()[0].id, a.id);

    // The department merges it; the first appeal's updates now reach both.
    appeals
        .act(&second.appeal.id, Action::Merge { into: a.id.clone() }, &dept, None)
        .await
        .unwrap();
    let dup = appeals.get(&second.appeal.id).await.unwrap().unwrap();
    assert_eq!(dup.status, Status::Duplicate);
    let master = appeals.get(&a.id).await.unwrap().unwrap();
    assert!(master.followers.contains("urn:ngsi-ld:Person:p1"));

    // Late: warned, then escalated to the city bureau, each an entity.
    clock.store((master.due + Duration::minutes(1)).timestamp_millis(), Ordering::SeqCst);
    assert_eq!(appeals.tick().await.unwrap(), 1);
    let late = appeals.get(&a.id).await.unwrap().unwrap();
    assert_eq!(late.escalated_to, ["urban-management"]);
    let kinds: Vec<UpdateKind> = appeals.updates(&a.id).await.unwrap().iter().map(|u| u.kind).collect();
    assert_eq!(
        kinds,
        [
            UpdateKind::Filed,
            UpdateKind::Followed,
            UpdateKind::Warned,
            UpdateKind::Escalated
        ]
    );

    // The anonymous requester of the duplicate cannot act on the master without its own secret.
    assert!(appeals
        .act(&a.id, Action::Confirm, &public, Some(&secret))
        .await
        .is_err());

    // Lists: by status and department, the public view without hidden ones.
    let (routed, n) = appeals
        .list(
            &Filter {
                statuses: vec![Status::Routed],
                department: Some("shangcheng-urban-management".into()),
                ..Filter::default()
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!((routed.len(), n), (1, 1));
    let figures = appeals.refresh_metrics().await.unwrap();
    let city = figures.iter().find(|f| f.department == "city").unwrap();
    assert_eq!((city.appeals, city.open, city.overdue, city.escalated), (2, 1, 1, 1));

    // Restart over the same database: the index and the timers come back.
    drop(appeals);
    hub.close_streams();
    drop(hub);
    let (_hub, again) = open(&db, clock.clone()).await;
    let third = again
        .file(
            near_qingchun("公交站旁边路灯坏了", 10.0),
            &citizen("urn:ngsi-ld:Person:p3"),
            Channel::Portal,
        )
        .await
        .unwrap();
    assert_eq!(
        third.similar.first().map(|s| s.id.as_str()),
        Some(a.id.as_str()),
        "{:?}",
        third.similar
    );
    let span = late.due - late.sla_start;
    clock.store(
        (late.due + span + Duration::minutes(1)).timestamp_millis(),
        Ordering::SeqCst,
    );
    again.tick().await.unwrap();
    let later = again.get(&a.id).await.unwrap().unwrap();
    assert_eq!(later.escalated_to, ["urban-management", "city-supervision"]);

    // Answered and rated by the requester.
    again
        .act(
            &a.id,
            Action::Answer {
                answer: "Lamp replaced on 3 Dec.".into(),
            },
            &officer("city-supervision"),
            None,
        )
        .await
        .unwrap();
    let rated = again
        .act(
            &a.id,
            Action::Rate {
                stars: 4,
                comment: None,
            },
            &citizen("urn:ngsi-ld:Person:p1"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rated.status, Status::Closed);
    assert!(rated.late);
}
