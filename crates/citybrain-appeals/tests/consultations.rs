//! Public consultations on the shipped configuration: who may publish, the
//! period, comments only while open, answers with their adoption,
//! supports, reports and moderation, the conclusion only when every
//! visible comment is answered.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use citybrain_appeals::consultation::{Adoption, Consultation, Draft, Section, Stage, Tally};
use citybrain_appeals::{Actor, ActorKind, AppealsConfig, AppealsError};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../appeals")
}

fn config() -> AppealsConfig {
    AppealsConfig::load(&dir()).expect("the shipped appeals configuration loads")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn person(kind: ActorKind, subject: &str) -> Actor {
    Actor {
        id: format!("token:{subject}"),
        kind,
        departments: vec![],
        subject: Some(subject.into()),
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

fn draft(opens: DateTime<Utc>, days: i64) -> Draft {
    Draft {
        title: "Draft: longer opening hours of the civil affairs counters".into(),
        summary: "Counters open until 20:00 on Thursdays.".into(),
        department: "civil-affairs".into(),
        policy: None,
        sections: vec![
            Section {
                id: "art-1".into(),
                title: "Article 1".into(),
                text: "Counters open 9:00–20:00 on Thursdays.".into(),
            },
            Section {
                id: "art-2".into(),
                title: "Article 2".into(),
                text: "From 1 March.".into(),
            },
        ],
        opens,
        closes: opens + Duration::days(days),
    }
}

#[test]
fn the_shipped_draft_loads_and_meets_the_rules() {
    let cfg = config();
    let d = cfg
        .drafts
        .iter()
        .find(|d| d.id == "elderly-allowance-2027")
        .expect("the shipped draft");
    assert_eq!(d.department, "civil-affairs");
    assert_eq!(d.policy.as_deref(), Some("elderly-allowance"));
    let now = at("2026-12-08T02:00:00Z");
    let published = d.draft(now);
    assert_eq!(published.closes - published.opens, Duration::days(30));
    published.check(&cfg).unwrap();
    assert_eq!(cfg.moderation.consultation_min_period.as_secs(), 30 * 86_400);
}

#[test]
fn only_the_department_publishes_and_the_period_is_at_least_thirty_days() {
    let cfg = config();
    let t0 = at("2026-12-01T00:00:00Z");
    let citizen = person(ActorKind::Citizen, "urn:ngsi-ld:Person:p1");
    assert!(matches!(
        Consultation::publish("counters", draft(t0, 30), &citizen, &cfg, t0),
        Err(AppealsError::Forbidden(_))
    ));
    assert!(matches!(
        Consultation::publish("counters", draft(t0, 30), &officer("transport"), &cfg, t0),
        Err(AppealsError::Forbidden(_))
    ));
    // The supervision office is above every department.
    Consultation::publish("counters", draft(t0, 30), &officer("city-supervision"), &cfg, t0).unwrap();
    match Consultation::publish("counters", draft(t0, 10), &officer("civil-affairs"), &cfg, t0) {
        Err(AppealsError::Invalid(m)) => assert!(m.contains("at least 30"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut bad = draft(t0, 30);
    bad.sections[1].id = "art-1".into();
    assert!(matches!(
        Consultation::publish("counters", bad, &officer("civil-affairs"), &cfg, t0),
        Err(AppealsError::Invalid(m)) if m.contains("twice")
    ));
    let mut bad = draft(t0, 30);
    bad.department = "nowhere".into();
    assert!(matches!(
        Consultation::publish("counters", bad, &officer("civil-affairs"), &cfg, t0),
        Err(AppealsError::Invalid(m)) if m.contains("nowhere")
    ));
    assert!(matches!(
        Consultation::publish("a b", draft(t0, 30), &officer("civil-affairs"), &cfg, t0),
        Err(AppealsError::Invalid(_))
    ));
}

#[test]
fn a_consultation_from_comments_to_conclusion() {
    let cfg = config();
    let t0 = at("2026-12-01T00:00:00Z");
    let dept = officer("civil-affairs");
    let mut c = Consultation::publish("counters", draft(t0 + Duration::days(1), 30), &dept, &cfg, t0).unwrap();
    let alice = person(ActorKind::Citizen, "urn:ngsi-ld:Person:alice");
    let shop = person(ActorKind::Enterprise, "urn:ngsi-ld:Organization:shop");

    // Not yet open.
    assert_eq!(c.stage(t0), Stage::Upcoming);
    assert!(matches!(
        c.comment(&alice, None, "Good idea", 0, &cfg, t0),
        Err(AppealsError::Conflict(_))
    ));
    let open = t0 + Duration::days(2);
    assert_eq!(c.stage(open), Stage::Open);

    // The public: sign in; known sections; redacted text.
    let public = Actor {
        id: "public".into(),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: None,
    };
    assert!(matches!(
        c.comment(&public, None, "x", 0, &cfg, open),
        Err(AppealsError::Forbidden(_))
    ));
    assert!(matches!(
        c.comment(&alice, Some("art-9"), "x", 0, &cfg, open),
        Err(AppealsError::Invalid(m)) if m.contains("art-9")
    ));
    let mut first = c
        .comment(
            &alice,
            Some("art-1"),
            "Please open until 21:00; call me on 13812345678.",
            0,
            &cfg,
            open,
        )
        .unwrap();
    assert_eq!(first.seq, 1);
    assert!(first.public_text.contains("[phone]"), "{}", first.public_text);
    assert!(!first.public_text.contains("13812345678"));
    assert_eq!(first.public().author_kind, "citizen");
    let mut held = c.comment(&shop, None, "傻逼 rules", 0, &cfg, open).unwrap();
    assert!(held.held);
    assert_eq!(held.public().text, "[held for moderation]");
    assert_eq!(held.public().author_kind, "enterprise");
    assert!(matches!(
        c.comment(&alice, None, "again", 20, &cfg, open),
        Err(AppealsError::Conflict(m)) if m.contains("20")
    ));
    assert_eq!(c.comments, 2);

    // Support: once each, never one's own.
    assert!(first.support(&shop, &c, open).unwrap());
    assert!(!first.support(&shop, &c, open).unwrap());
    assert!(matches!(
        first.support(&alice, &c, open),
        Err(AppealsError::Conflict(_))
    ));
    assert_eq!(first.public().supports, 1);

    // Reports: distinct reporters hide it.
    for i in 0..cfg.moderation.hide_after_reports {
        let r = person(ActorKind::Citizen, &format!("urn:ngsi-ld:Person:r{i}"));
        assert!(held.report(&r, &cfg).unwrap());
        assert!(!held.report(&r, &cfg).unwrap(), "a reporter counts once");
    }
    assert!(held.hidden);
    assert!(matches!(
        held.moderate(&alice, false, "fine"),
        Err(AppealsError::Forbidden(_))
    ));

    // Answers: the department only.
    assert!(matches!(
        first.answer(&officer("transport"), &c, "no", Adoption::NotAdopted, &cfg, open),
        Err(AppealsError::Forbidden(_))
    ));
    first
        .answer(
            &dept,
            &c,
            "Adopted: until 21:00 in art. 1.",
            Adoption::Adopted,
            &cfg,
            open,
        )
        .unwrap();
    assert_eq!(first.public().answer.as_ref().unwrap().adoption, Adoption::Adopted);

    // The conclusion waits for the close, then for every visible answer.
    let closed = t0 + Duration::days(40);
    assert_eq!(c.stage(closed), Stage::Closed);
    assert!(matches!(
        c.comment(&alice, None, "late", 1, &cfg, closed),
        Err(AppealsError::Conflict(_))
    ));
    assert!(matches!(
        c.conclude(&dept, "done", Tally::count(&[first.clone(), held.clone()]), &cfg, open),
        Err(AppealsError::Conflict(m)) if m.contains("open")
    ));
    // A moderator shows the held comment again: now it needs an answer.
    held.moderate(&dept, false, "a strong word about the rules, not about a person")
        .unwrap();
    assert!(!held.hidden && !held.held);
    assert_eq!(held.public().text, "傻逼 rules");
    let tally = Tally::count(&[first.clone(), held.clone()]);
    assert_eq!(tally.unanswered, 1);
    assert!(matches!(
        c.conclude(&dept, "done", tally, &cfg, closed),
        Err(AppealsError::Conflict(m)) if m.contains("1 comments")
    ));
    held.answer(&dept, &c, "Noted.", Adoption::Noted, &cfg, closed).unwrap();
    let tally = Tally::count(&[first.clone(), held.clone()]);
    assert_eq!((tally.adopted, tally.noted, tally.unanswered), (1, 1, 0));
    assert!(matches!(
        c.conclude(&alice, "done", tally, &cfg, closed),
        Err(AppealsError::Forbidden(_))
    ));
    c.conclude(
        &dept,
        "Counters open until 21:00 on Thursdays from 1 March.",
        tally,
        &cfg,
        closed,
    )
    .unwrap();
    assert_eq!(c.stage(closed), Stage::Concluded);
    assert_eq!(c.conclusion.as_ref().unwrap().tally.adopted, 1);
    // Answers are final once concluded.
    assert!(matches!(
        first.answer(&dept, &c, "changed", Adoption::NotAdopted, &cfg, closed),
        Err(AppealsError::Conflict(_))
    ));
}

#[test]
fn a_bad_draft_file_is_refused_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["categories.yaml", "routing.yaml", "calendar.yaml", "moderation.yaml"] {
        std::fs::copy(dir().join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::create_dir(tmp.path().join("consultations")).unwrap();
    std::fs::write(
        tmp.path().join("consultations/short.yaml"),
        "id: short\ntitle: T\nsummary: S\ndepartment: civil-affairs\nperiod: 7days\nsections:\n  - {id: a, title: A, text: x}\n",
    )
    .unwrap();
    match AppealsConfig::load(tmp.path()) {
        Err(AppealsError::Config { file, message }) => {
            assert!(file.ends_with("consultations/short.yaml"), "{file}");
            assert!(message.contains("at least 30"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(
        tmp.path().join("consultations/short.yaml"),
        "id: short\ntitle: T\nsumary: S\n",
    )
    .unwrap();
    match AppealsConfig::load(tmp.path()) {
        Err(AppealsError::Config { message, .. }) => assert!(message.contains("line"), "{message}"),
        other => panic!("{other:?}"),
    }
}
