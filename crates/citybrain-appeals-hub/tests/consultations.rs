//! Consultations over a real hub (SQLite in a temporary directory) on a
//! controllable clock: the shipped draft published once, comments as
//! entities in order, the author's limit, answers, the stage filters, the
//! conclusion with its tally, and everything found again after a restart.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use citybrain_appeals::consultation::{Adoption, Stage, MAX_COMMENTS_EACH};
use citybrain_appeals::{Actor, ActorKind, AppealsConfig, AppealsError};
use citybrain_appeals_hub::{Appeals, CommentAction, Error, Settings};
use citybrain_hub::{Hub, HubConfig};
use citybrain_store_sqlite::{Durability, SqliteStore};

fn config() -> AppealsConfig {
    AppealsConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../appeals")).unwrap()
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

#[tokio::test]
async fn a_shipped_draft_is_consulted_on_answered_and_concluded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
    let clock = Arc::new(AtomicI64::new(t0.timestamp_millis()));
    let (hub, appeals) = open(&db, clock.clone()).await;
    let id = "elderly-allowance-2027";

    assert_eq!(appeals.publish_shipped().await.unwrap(), 1);
    assert_eq!(appeals.publish_shipped().await.unwrap(), 0, "published once");
    let c = appeals.consultation(id).await.unwrap().unwrap();
    assert_eq!(c.draft.opens, t0);
    assert_eq!(c.stage(t0), Stage::Open);
    let (listed, n) = appeals.consultations(Some(Stage::Open), None, 0, 10).await.unwrap();
    assert_eq!((listed.len(), n), (1, 1));
    assert_eq!(
        appeals.consultations(Some(Stage::Closed), None, 0, 10).await.unwrap().1,
        0
    );

    // Twelve comments by three people, in order, one of them on article 2.
    for i in 0..12u32 {
        clock.fetch_add(60_000, Ordering::SeqCst);
        let who = citizen(&format!("urn:ngsi-ld:Person:p{}", i % 3));
        let section = (i == 5).then_some("art-2");
        let c = appeals
            .comment(id, section, &format!("comment number {i}"), &who)
            .await
            .unwrap();
        assert_eq!(c.seq, i + 1);
    }
    let (page, total) = appeals.comments(id, None, false, 0, 5).await.unwrap();
    assert_eq!(total, 12);
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let (page, _) = appeals.comments(id, None, false, 10, 5).await.unwrap();
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![11, 12]);
    let (art2, n) = appeals.comments(id, Some("art-2"), false, 0, 50).await.unwrap();
    assert_eq!((n, art2[0].seq), (1, 6));
    // The consultation counts them.
    assert_eq!(appeals.consultation(id).await.unwrap().unwrap().comments, 12);

    // The limit per author counts what the hub holds.
    let busy = citizen("urn:ngsi-ld:Person:busy");
    for _ in 0..MAX_COMMENTS_EACH {
        appeals.comment(id, None, "again", &busy).await.unwrap();
    }
    match appeals.comment(id, None, "one too many", &busy).await {
        Err(Error::Appeal(AppealsError::Conflict(m))) => assert!(m.contains("at most"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Support and answers through the actions.
    let c1 = appeals
        .comment_action(id, 1, CommentAction::Support, &citizen("urn:ngsi-ld:Person:p2"))
        .await
        .unwrap();
    assert_eq!(c1.supporters.len(), 1);
    let dept = officer("civil-affairs");
    match appeals
        .comment_action(
            id,
            1,
            CommentAction::Answer {
                text: "x".into(),
                adoption: Adoption::Noted,
            },
            &officer("transport"),
        )
        .await
    {
        Err(Error::Appeal(AppealsError::Forbidden(_))) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        appeals.comment_action(id, 999, CommentAction::Support, &busy).await,
        Err(Error::Appeal(AppealsError::NotFound(_)))
    ));

    // A restart finds it all again.
    drop(appeals);
    hub.close_streams();
    drop(hub);
    let (hub, appeals) = open(&db, clock.clone()).await;
    assert_eq!(appeals.publish_shipped().await.unwrap(), 0);
    assert_eq!(appeals.tally(id).await.unwrap().comments, 32);

    // After the period: closed; the conclusion waits for every answer.
    clock.fetch_add(Duration::days(31).num_milliseconds(), Ordering::SeqCst);
    assert_eq!(
        appeals.consultations(Some(Stage::Closed), None, 0, 10).await.unwrap().1,
        1
    );
    match appeals.conclude(id, "Adopted in part.", &dept).await {
        Err(Error::Appeal(AppealsError::Conflict(m))) => assert!(m.contains("32 comments"), "{m}"),
        other => panic!("{other:?}"),
    }
    for seq in 1..=32 {
        let adoption = if seq == 6 {
            Adoption::PartlyAdopted
        } else {
            Adoption::Noted
        };
        appeals
            .comment_action(
                id,
                seq,
                CommentAction::Answer {
                    text: "Thank you; see the conclusion.".into(),
                    adoption,
                },
                &dept,
            )
            .await
            .unwrap();
    }
    let done = appeals
        .conclude(id, "Article 2 raised to 150 yuan; the rest stays.", &dept)
        .await
        .unwrap();
    let t = done.conclusion.unwrap().tally;
    assert_eq!((t.comments, t.partly_adopted, t.noted, t.unanswered), (32, 1, 31, 0));
    assert_eq!(
        appeals
            .consultations(Some(Stage::Concluded), None, 0, 10)
            .await
            .unwrap()
            .1,
        1
    );
    // Comments and the consultation are entities subscriptions can see.
    let e = hub
        .retrieve_entity("", "urn:ngsi-ld:ConsultationComment:elderly-allowance-2027-000006")
        .await
        .unwrap();
    assert!(e.id.ends_with("000006"));
}
