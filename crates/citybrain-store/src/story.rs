//! The storage story: one behavioural test every backend runs unchanged
//! (`citybrain_store::story::run(&backend).await`). It panics on the first
//! broken promise, naming it.

use citybrain_ngsild::input::{parse_entity, InputLimits, Mode};
use citybrain_ngsild::q::Query;
use citybrain_ngsild::selector::{EntityQuery, EntitySelector, TypeExpr};
use citybrain_ngsild::temporal::{Instance, TimeProperty};
use citybrain_ngsild::{time, Entity, TermMap};
use serde_json::{json, Value};

use crate::{
    ContextRecord, EntityPut, HistoryDelete, HistoryQuery, Page, Store, StoreError, SubscriptionRecord, WriteSet,
};

fn entity(v: Value) -> Entity {
    parse_entity(&v, &TermMap::core(), &InputLimits::default(), Mode::Create)
        .and_then(|f| f.into_entity(time::parse("2026-01-01T00:00:00Z").expect("time")))
        .expect("story entity is valid")
}

fn instance(attr: &str, v: i64, t: &str) -> Instance {
    let ts = time::parse(t).expect("time");
    Instance {
        attr: attr.into(),
        instance_id: format!("urn:ngsi-ld:instance:{attr}:{t}"),
        dataset_id: None,
        observed_at: Some(ts),
        created_at: ts,
        modified_at: ts,
        deleted_at: None,
        value: json!({"type":"Property","value":v})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

/// Runs the whole story against a fresh, empty store.
pub async fn run<S: Store + ?Sized>(s: &S) {
    trust(s).await;
    let ctx = TermMap::core();
    let t = "cityA";
    assert!(!s.tenant_exists(t).await.unwrap(), "a fresh store has no tenant cityA");
    s.ensure_tenant(t).await.unwrap();
    assert!(s.tenant_exists(t).await.unwrap(), "ensure_tenant creates the tenant");

    // Create three entities in one write set, with history and a notification.
    let mut w = WriteSet::default();
    for (i, free) in [(1, 10), (2, 0), (3, 25)] {
        let e = entity(
            json!({"id": format!("urn:ngsi-ld:Parking:{i}"), "type": "Parking", "free": free,
            "location": {"type":"Point","coordinates":[120.0 + i as f64 / 100.0, 30.0]}}),
        );
        w.puts.push(EntityPut {
            entity: e,
            expected_version: None,
        });
    }
    w.history.push((
        "urn:ngsi-ld:Parking:1".into(),
        instance(&ctx.expand("free"), 10, "2026-01-01T00:00:00Z"),
    ));
    w.history.push((
        "urn:ngsi-ld:Parking:1".into(),
        instance(&ctx.expand("free"), 9, "2026-01-01T00:05:00Z"),
    ));
    w.history.push((
        "urn:ngsi-ld:Parking:1".into(),
        instance(&ctx.expand("free"), 8, "2026-01-01T00:10:00Z"),
    ));
    w.outbox.push(("urn:sub:2".into(), "{\"n\":1}".into()));
    let seqs = s.commit(t, w).await.unwrap();
    assert_eq!(seqs.len(), 1, "commit returns one seq per outbox row");

    // Read back, by id and by query.
    let got = s
        .get(t, &["urn:ngsi-ld:Parking:1".into(), "urn:missing".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "get returns only existing entities");
    let v1 = got[0].version;
    assert_eq!(got[0].entity.attrs[&ctx.expand("free")][0]["value"], json!(10));

    let q = EntityQuery {
        selectors: vec![EntitySelector {
            types: Some(TypeExpr::parse("Parking", &ctx).unwrap()),
            ..Default::default()
        }],
        q: Some(Query::parse("free>5", &ctx).unwrap()),
        ..Default::default()
    };
    let r = s
        .query(
            t,
            &q,
            Page {
                offset: 0,
                limit: 10,
                count: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.total, Some(2), "q filters on stored values");
    assert_eq!(r.entities.len(), 2);
    assert!(r.entities[0].id < r.entities[1].id, "results come in id order");
    let r = s
        .query(
            t,
            &q,
            Page {
                offset: 1,
                limit: 10,
                count: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.entities.len(), 1, "offset skips matches");
    assert_eq!(r.total, None);

    // Tenants are isolated.
    let other = s
        .query(
            "",
            &q,
            Page {
                offset: 0,
                limit: 10,
                count: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(other.total, Some(0), "the default tenant sees nothing of cityA");

    // Optimistic concurrency: a stale version is refused and nothing changes.
    let mut e = got[0].entity.clone();
    e.scope = vec!["/hz".into()];
    s.commit(
        t,
        WriteSet {
            puts: vec![EntityPut {
                entity: e.clone(),
                expected_version: Some(v1),
            }],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stale = s
        .commit(
            t,
            WriteSet {
                puts: vec![EntityPut {
                    entity: e.clone(),
                    expected_version: Some(v1),
                }],
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict(_))),
        "a stale version conflicts"
    );
    let dup = s
        .commit(
            t,
            WriteSet {
                puts: vec![EntityPut {
                    entity: e.clone(),
                    expected_version: None,
                }],
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "creating an existing id conflicts"
    );

    // Discovery.
    let types = s.types(t).await.unwrap();
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].entity_count, 3);
    assert!(types[0].attrs.iter().any(|(a, _)| *a == ctx.expand("free")));

    // History: ranges, lastN, counts.
    let hq = HistoryQuery {
        entity_id: "urn:ngsi-ld:Parking:1".into(),
        attrs: None,
        timeproperty: TimeProperty::ObservedAt,
        from: time::parse("2026-01-01T00:01:00Z"),
        to: None,
        last_n: None,
        limit: 100,
    };
    assert_eq!(
        s.history(t, &hq).await.unwrap().len(),
        2,
        "history honours the time range"
    );
    assert_eq!(s.history_count(t, &hq).await.unwrap(), 2);
    let last = s
        .history(
            t,
            &HistoryQuery {
                last_n: Some(1),
                from: None,
                ..hq.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].value["value"], json!(8), "lastN keeps the newest");
    let first2 = s
        .history(
            t,
            &HistoryQuery {
                limit: 2,
                from: None,
                ..hq.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first2[0].value["value"],
        json!(10),
        "history is in ascending time order"
    );
    assert_eq!(first2.len(), 2);

    // Retention: what was observed before the limit goes, the rest stays.
    assert_eq!(
        s.prune_history(time::parse("2026-01-01T00:05:00Z").expect("time"))
            .await
            .unwrap(),
        1,
        "pruning drops the one instance observed before the limit"
    );
    let kept = s
        .history(
            t,
            &HistoryQuery {
                from: None,
                ..hq.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        kept.iter().map(|i| i.value["value"].clone()).collect::<Vec<_>>(),
        vec![json!(9), json!(8)],
        "pruning keeps what was observed since"
    );
    assert_eq!(
        s.get(t, &["urn:ngsi-ld:Parking:1".into()]).await.unwrap().len(),
        1,
        "the entity stays"
    );

    // Deleting an entity and its history together.
    let cur = s.get(t, &["urn:ngsi-ld:Parking:1".into()]).await.unwrap().remove(0);
    s.commit(
        t,
        WriteSet {
            deletes: vec![("urn:ngsi-ld:Parking:1".into(), cur.version)],
            history_deletes: vec![HistoryDelete::Entity("urn:ngsi-ld:Parking:1".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(s.get(t, &["urn:ngsi-ld:Parking:1".into()]).await.unwrap().is_empty());
    assert!(
        s.history(
            t,
            &HistoryQuery {
                from: None,
                ..hq.clone()
            }
        )
        .await
        .unwrap()
        .is_empty(),
        "history goes with the entity"
    );

    // Subscriptions persist per tenant.
    let doc = json!({"id":"urn:sub:1","type":"Subscription"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    s.put_subscription(&SubscriptionRecord {
        tenant: t.into(),
        id: "urn:sub:1".into(),
        doc: doc.clone(),
    })
    .await
    .unwrap();
    let subs = s.subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].tenant, t);
    assert!(s.delete_subscription(t, "urn:sub:1").await.unwrap());
    assert!(!s.delete_subscription(t, "urn:sub:1").await.unwrap());
    // Deleting a subscription drops what was still queued for it.
    s.commit(
        t,
        WriteSet {
            outbox: vec![("urn:sub:1".into(), "{}".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.put_subscription(&SubscriptionRecord {
        tenant: t.into(),
        id: "urn:sub:1".into(),
        doc,
    })
    .await
    .unwrap();
    assert!(s.delete_subscription(t, "urn:sub:1").await.unwrap());

    // The outbox: pending until acked, retries reschedule.
    let pending = s.pending_notifications(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].payload, "{\"n\":1}");
    s.retry_notification(pending[0].seq, 1, 12345).await.unwrap();
    let again = s.pending_notifications(10).await.unwrap();
    assert_eq!((again[0].attempts, again[0].next_attempt_ms), (1, 12345));
    s.ack_notifications(&[pending[0].seq]).await.unwrap();
    assert!(
        s.pending_notifications(10).await.unwrap().is_empty(),
        "acked notifications are gone"
    );

    // Contexts.
    let c = ContextRecord {
        id: "ctx1".into(),
        url: "urn:ctx:1".into(),
        kind: "Hosted".into(),
        body: json!({"@context": {"a": "https://example.org/a"}}),
        created_at: time::parse("2026-01-01T00:00:00Z").unwrap(),
    };
    s.put_context(t, &c).await.unwrap();
    assert_eq!(s.contexts(t).await.unwrap(), vec![c]);
    assert!(s.contexts("").await.unwrap().is_empty(), "contexts are per tenant");
    assert!(s.delete_context(t, "ctx1").await.unwrap());
}

/// Tokens and the audit log: stored as given, the chain linked in order,
/// a citizen's records found by subject.
async fn trust<S: Store + ?Sized>(s: &S) {
    use crate::audit::{AuditEntry, Verifier};
    use crate::ApiTokenRecord;
    let at = time::parse("2026-01-01T00:00:00Z").expect("time");
    assert_eq!(s.api_token("t1").await.unwrap(), None, "no token in a fresh store");
    let mut tok = ApiTokenRecord {
        id: "t1".into(),
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: "officer".into(),
        departments: vec!["health".into()],
        subject: None,
        tenants: vec![],
        label: "clinic".into(),
        created_at: at,
        expires_at: None,
        revoked_at: None,
    };
    s.put_api_token(&tok).await.unwrap();
    assert_eq!(
        s.api_token("t1").await.unwrap().as_ref(),
        Some(&tok),
        "a token reads back as stored"
    );
    tok.revoked_at = Some(at);
    s.put_api_token(&tok).await.unwrap();
    assert_eq!(
        s.api_tokens().await.unwrap(),
        vec![tok],
        "putting a token again replaces it"
    );

    assert!(
        s.audit_records(0, 10).await.unwrap().is_empty(),
        "a fresh audit log is empty"
    );
    let entry = |who: &str, subject: &str| AuditEntry {
        at,
        actor: who.into(),
        role: "officer".into(),
        departments: vec![],
        action: "read".into(),
        resource: "/ngsi-ld/v1/entities".into(),
        tenant: String::new(),
        entities: vec![subject.into()],
        subjects: vec![subject.into()],
        purpose: None,
        outcome: "200".into(),
    };
    let first = s
        .append_audit(vec![entry("a", "urn:p:1"), entry("b", "urn:p:2")])
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2],
        "audit seqs start at 1"
    );
    s.append_audit(vec![entry("c", "urn:p:1")]).await.unwrap();
    let all = s.audit_records(0, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let mut v = Verifier::default();
    for r in &all {
        v.check(r).expect("the stored chain links");
    }
    assert_eq!(
        s.audit_records(2, 10).await.unwrap().len(),
        1,
        "audit_records pages by seq"
    );
    let mine = s.audit_for_subject("urn:p:1", 10).await.unwrap();
    assert_eq!(
        mine.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 1],
        "by subject, newest first"
    );
}
