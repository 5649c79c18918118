//! The appeals domain on the shipped configuration (`appeals/`), with a
//! controllable clock: routing, lifecycle, SLA warning and escalation,
//! reopening, duplicates, classification, redaction and permissions.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use citybrain_appeals::appeal::Channel;
use citybrain_appeals::text::{Around, Indexed};
use citybrain_appeals::{
    Actor, ActorKind, Appeal, AppealsConfig, AppealsError, Filing, Location, Status, TextIndex, UpdateKind,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../appeals")
}

fn config() -> AppealsConfig {
    AppealsConfig::load(&dir()).expect("the shipped appeals configuration loads")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn citizen(subject: &str) -> Actor {
    Actor {
        id: format!("token:{subject}"),
        kind: ActorKind::Citizen,
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

/// Near Qingchun Road, inside the demo's hospital district.
const QINGCHUN: (f64, f64) = (30.2610, 120.1790);

fn streetlight(text: &str, lat: f64, lon: f64) -> Filing {
    Filing {
        category: Some("streetlight".into()),
        description: text.into(),
        location: Some(Location {
            lat,
            lon,
            address: None,
        }),
        ..Filing::default()
    }
}

fn file(cfg: &AppealsConfig, id: &str, f: Filing, by: &Actor, now: DateTime<Utc>) -> Appeal {
    let category = f.category.clone().unwrap();
    let area = f.area.clone().or_else(|| {
        f.location
            .as_ref()
            .and_then(|l| cfg.area_at(l.lat, l.lon))
            .map(|a| a.id.clone())
    });
    let route = cfg.route(&category, area.as_deref());
    Appeal::file(id.into(), f, category, None, route, by, Channel::Portal, None, cfg, now)
        .unwrap()
        .0
}

#[test]
fn routing_follows_category_and_area_then_the_category_then_triage() {
    let cfg = config();
    let area = cfg.area_at(QINGCHUN.0, QINGCHUN.1).map(|a| a.id.as_str());
    assert_eq!(area, Some("hospital-district"));
    assert_eq!(cfg.route("streetlight", area).department, "shangcheng-urban-management");
    // Far outside every area: the category's rule for anywhere.
    assert_eq!(cfg.area_at(30.5, 120.5).map(|a| a.id.as_str()), None);
    assert_eq!(cfg.route("streetlight", None).department, "urban-management");
    assert_eq!(
        cfg.route("road-damage", Some("shangcheng")).department,
        "shangcheng-urban-management"
    );
    // No rule at all: the dispatch centre.
    let r = cfg.route("other", area);
    assert_eq!(r.department, "hotline-triage");
    assert!(r.reason.contains("triage"), "{}", r.reason);
}

#[test]
fn a_whole_lifecycle_with_a_pause_a_poor_rating_and_a_confirmation() {
    let cfg = config();
    let me = citizen("urn:ngsi-ld:Person:demo-graduate");
    let dept = officer("shangcheng-urban-management");
    // Tuesday 1 Dec 2026, 10:00 in Hangzhou.
    let t0 = at("2026-12-01T10:00:00+08:00");
    let mut a = file(
        &cfg,
        "a1",
        streetlight("路灯不亮，晚上很黑", QINGCHUN.0, QINGCHUN.1),
        &me,
        t0,
    );
    assert_eq!(a.status, Status::Routed);
    assert_eq!(a.due, at("2026-12-04T10:00:00+08:00"), "3 working days");
    a.accept(&dept, &cfg, t0 + Duration::hours(1)).unwrap();
    // Waiting for the requester for a day: the due time moves by a day.
    a.ask_citizen(&dept, "Which side of the road?", &cfg, t0 + Duration::hours(2))
        .unwrap();
    assert_eq!(a.next_timer(&cfg), None, "no clock while waiting for the requester");
    a.citizen_reply(&me, None, "The north side, by the bus stop.", t0 + Duration::hours(26))
        .unwrap();
    assert_eq!(a.due, at("2026-12-05T10:00:00+08:00"));
    a.answer(&dept, "The lamp was replaced.", &cfg, t0 + Duration::hours(30))
        .unwrap();
    assert!(!a.late);
    // A poor rating reopens it with a new clock from the rating.
    let rated_at = t0 + Duration::hours(40);
    let ups = a
        .rate(&me, None, 2, Some("Still dark at night"), &cfg, rated_at)
        .unwrap();
    assert_eq!(
        ups.iter().map(|u| u.kind).collect::<Vec<_>>(),
        [UpdateKind::Rated, UpdateKind::Reopened]
    );
    assert_eq!(a.status, Status::Reopened);
    assert_eq!(a.reopened, 1);
    assert_eq!(
        a.due,
        cfg.calendar.due(rated_at, citybrain_appeals::Sla::WorkingDays(3))
    );
    a.accept(&dept, &cfg, rated_at).unwrap();
    a.answer(
        &dept,
        "The cable was repaired too.",
        &cfg,
        rated_at + Duration::hours(2),
    )
    .unwrap();
    let ups = a.rate(&me, None, 5, None, &cfg, rated_at + Duration::hours(3)).unwrap();
    assert_eq!(ups.last().unwrap().kind, UpdateKind::Confirmed);
    assert_eq!(a.status, Status::Closed);
    // Every change numbered, in order.
    assert_eq!(a.seq, 11);
}

#[test]
fn late_appeals_are_warned_then_escalate_up_the_supervisors() {
    let cfg = config();
    let t0 = at("2026-12-01T10:00:00+08:00");
    let mut a = file(
        &cfg,
        "a2",
        streetlight("灯杆倒了", QINGCHUN.0, QINGCHUN.1),
        &citizen("p"),
        t0,
    );
    let warn = a.warn_at;
    assert!(warn > t0 && warn < a.due);
    assert!(a.on_timer(&cfg, warn - Duration::seconds(1)).is_empty());
    let u = a.on_timer(&cfg, warn);
    assert_eq!(u.iter().map(|u| u.kind).collect::<Vec<_>>(), [UpdateKind::Warned]);
    // At the due time: the district bureau's supervisor, the city bureau.
    let u = a.on_timer(&cfg, a.due);
    assert_eq!(u.iter().map(|u| u.kind).collect::<Vec<_>>(), [UpdateKind::Escalated]);
    assert_eq!(a.escalated_to, ["urban-management"]);
    // Its officers may now answer it too.
    assert!(a.may_handle(&officer("urban-management"), &cfg));
    // One SLA span later: the city's supervision office; then nothing above.
    let span = a.due - a.sla_start;
    a.on_timer(&cfg, a.due + span);
    assert_eq!(a.escalated_to, ["urban-management", "city-supervision"]);
    assert_eq!(a.next_timer(&cfg), None);
    a.answer(&officer("city-supervision"), "Fixed.", &cfg, a.due + span * 2)
        .unwrap();
    assert!(a.late);
    // A silent answer closes itself after a week.
    let closes = a.next_timer(&cfg).unwrap();
    assert_eq!(closes, a.answered_at.unwrap() + Duration::days(7));
    let u = a.on_timer(&cfg, closes);
    assert_eq!(u[0].kind, UpdateKind::AutoClosed);
    assert_eq!(a.status, Status::Closed);
}

#[test]
fn a_server_down_for_days_catches_up_in_one_call() {
    let cfg = config();
    let t0 = at("2026-12-01T10:00:00+08:00");
    let mut a = file(
        &cfg,
        "a3",
        streetlight("路灯闪烁", QINGCHUN.0, QINGCHUN.1),
        &citizen("p"),
        t0,
    );
    let ups = a.on_timer(&cfg, t0 + Duration::days(30));
    assert_eq!(
        ups.iter().map(|u| u.kind).collect::<Vec<_>>(),
        [UpdateKind::Warned, UpdateKind::Escalated, UpdateKind::Escalated]
    );
}

#[test]
fn policy_questions_are_due_in_24_hours_holidays_or_not() {
    let cfg = config();
    // Thursday 1 Oct 2026, National Day.
    let t0 = at("2026-10-01T09:00:00+08:00");
    let f = Filing {
        category: Some("policy-question".into()),
        description: "小微企业租金补贴怎么申请？".into(),
        ..Filing::default()
    };
    let a = file(&cfg, "q1", f, &citizen("e"), t0);
    assert_eq!(a.department, "enterprise-service");
    assert_eq!(a.due, t0 + Duration::hours(24));
    // Three working days from the same moment skip the whole holiday week.
    assert_eq!(
        cfg.calendar.due(t0, citybrain_appeals::Sla::WorkingDays(3)),
        at("2026-10-11T00:00:00+08:00"),
        "8 Oct, 9 Oct and the make-up Saturday 10 Oct, whole"
    );
}

#[test]
fn only_the_right_people_may_act() {
    let cfg = config();
    let me = citizen("urn:ngsi-ld:Person:a");
    let t0 = at("2026-12-01T10:00:00+08:00");
    let mut a = file(&cfg, "a4", streetlight("路灯坏了", QINGCHUN.0, QINGCHUN.1), &me, t0);
    let e = a.answer(&officer("traffic-police"), "Not ours", &cfg, t0).unwrap_err();
    assert!(matches!(e, AppealsError::Forbidden(_)), "{e}");
    // A department above may act; a re-route needs a reason.
    let e = a
        .reroute(&officer("urban-management"), "transport", " ", &cfg, t0)
        .unwrap_err();
    assert!(matches!(e, AppealsError::Invalid(_)), "{e}");
    a.reroute(
        &officer("urban-management"),
        "transport",
        "The lamp belongs to the viaduct",
        &cfg,
        t0,
    )
    .unwrap();
    assert_eq!(a.department, "transport");
    a.answer(&officer("transport"), "Repaired.", &cfg, t0 + Duration::hours(5))
        .unwrap();
    let e = a
        .confirm(&citizen("urn:ngsi-ld:Person:someone-else"), None, t0)
        .unwrap_err();
    assert!(matches!(e, AppealsError::Forbidden(_)), "{e}");
    let e = a.answer(&officer("transport"), "Again", &cfg, t0).unwrap_err();
    assert!(matches!(e, AppealsError::Conflict(_)), "{e}");
    a.confirm(&me, None, t0 + Duration::hours(6)).unwrap();
}

#[test]
fn an_anonymous_requester_follows_with_the_secret_alone() {
    let cfg = config();
    let t0 = at("2026-12-01T10:00:00+08:00");
    let public = Actor {
        id: "public".into(),
        kind: ActorKind::System,
        departments: vec![],
        subject: None,
    };
    let f = Filing {
        anonymous: true,
        ..streetlight("路灯不亮", QINGCHUN.0, QINGCHUN.1)
    };
    let route = cfg.route("streetlight", Some("hospital-district"));
    let (mut a, _) = Appeal::file(
        "a5".into(),
        f,
        "streetlight".into(),
        None,
        route,
        &public,
        Channel::Open311,
        Some("s3cret"),
        &cfg,
        t0,
    )
    .unwrap();
    assert_eq!(a.requester, None);
    a.answer(&officer("shangcheng-urban-management"), "Fixed.", &cfg, t0)
        .unwrap();
    let nobody = citizen("urn:ngsi-ld:Person:x");
    assert!(a.confirm(&nobody, Some("wrong"), t0).is_err());
    a.confirm(&nobody, Some("s3cret"), t0).unwrap();
}

#[test]
fn the_public_sees_no_personal_data_and_blocked_words_are_held() {
    let cfg = config();
    let t0 = at("2026-12-01T10:00:00+08:00");
    let f = Filing {
        name: Some("李娜".into()),
        contact: Some("13912345678".into()),
        ..streetlight(
            "我是李娜，电话13912345678，身份证330102199001011234，路灯坏了",
            QINGCHUN.0,
            QINGCHUN.1,
        )
    };
    let a = file(&cfg, "a6", f, &citizen("p"), t0);
    let p = serde_json::to_string(&a.public()).unwrap();
    for secret in ["李娜", "13912345678", "330102199001011234"] {
        assert!(!p.contains(secret), "{secret} in {p}");
    }
    assert!(
        p.contains("[phone]") && p.contains("[ID number]") && p.contains("[name]"),
        "{p}"
    );
    let rude = file(
        &cfg,
        "a7",
        streetlight("the shit lamp is out", QINGCHUN.0, QINGCHUN.1),
        &citizen("p"),
        t0,
    );
    assert!(rude.hidden);
    assert!(!serde_json::to_string(&rude.public()).unwrap().contains("shit"));
    // Reports from the public hide an appeal at the third.
    let mut b = file(
        &cfg,
        "a8",
        streetlight("lamp out", QINGCHUN.0, QINGCHUN.1),
        &citizen("p"),
        t0,
    );
    // Each reporter counts once; the public without an account cannot report.
    let anonymous = Actor {
        subject: None,
        ..citizen("x")
    };
    assert!(b.report(&anonymous, &cfg, t0).is_err());
    assert!(b.report(&citizen("r1"), &cfg, t0).unwrap().is_none());
    assert!(b.report(&citizen("r1"), &cfg, t0).unwrap().is_none());
    assert!(b.report(&citizen("r2"), &cfg, t0).unwrap().is_none());
    assert!(!b.hidden, "two distinct reporters");
    assert_eq!(
        b.report(&citizen("r3"), &cfg, t0).unwrap().unwrap().kind,
        UpdateKind::Hidden
    );
    assert!(b.hidden);
}

#[test]
fn a_merged_duplicate_hands_its_followers_to_the_master() {
    let cfg = config();
    let t0 = at("2026-12-01T10:00:00+08:00");
    let dept = officer("shangcheng-urban-management");
    let mut master = file(
        &cfg,
        "m",
        streetlight("路灯坏了", QINGCHUN.0, QINGCHUN.1),
        &citizen("p1"),
        t0,
    );
    let mut dup = file(
        &cfg,
        "d",
        streetlight("这里路灯坏了", QINGCHUN.0, QINGCHUN.1),
        &citizen("p2"),
        t0,
    );
    let (u, followers) = dup.merge_into(&dept, &master, &cfg, t0).unwrap();
    assert_eq!(u.kind, UpdateKind::Merged);
    assert_eq!(dup.status, Status::Duplicate);
    assert_eq!(dup.public().duplicate_of.as_deref(), Some("m"));
    master.absorb("d", followers, t0);
    assert!(master.followers.contains("p1") && master.followers.contains("p2"));
    assert!(dup.merge_into(&dept, &master, &cfg, t0).is_err(), "already merged");
}

#[test]
fn the_classifier_routes_appeals_filed_without_a_category() {
    let cfg = config();
    let index = TextIndex::new(&cfg).unwrap();
    for (text, want) in [
        ("小区门口的路灯坏了，晚上很黑", "streetlight"),
        ("请问小微企业租金补贴的申请条件是什么", "policy-question"),
        ("楼下垃圾桶满了三天没人清运", "sanitation"),
        ("工地夜间施工噪音太大", "noise"),
        ("The traffic light at the junction is stuck on red", "traffic-signal"),
    ] {
        let c = index.classify(text).unwrap().expect("a category");
        assert_eq!(c.category, want, "{text}: {c:?}");
        assert!(c.confidence > 0.0 && c.confidence <= 1.0);
    }
    assert_eq!(index.classify("，。！").unwrap(), None);
}

#[test]
fn similar_open_appeals_nearby_are_found_and_others_are_not() {
    let cfg = config();
    let index = TextIndex::new(&cfg).unwrap();
    let t0 = at("2026-12-01T10:00:00+08:00").timestamp();
    let put = |id: &str, category: &str, text: &str, lat: f64, lon: f64, open: bool| {
        index
            .put(&Indexed {
                id,
                category,
                text,
                lat: Some(lat),
                lon: Some(lon),
                open,
                filed: t0,
                teach: false,
            })
            .unwrap()
    };
    let (lat, lon) = QINGCHUN;
    put("near", "streetlight", "公交站旁边的路灯不亮了", lat + 0.0002, lon, true); // ~22 m
    put("far", "streetlight", "公交站旁边的路灯不亮了", lat + 0.01, lon, true); // ~1.1 km
    put("other-category", "sanitation", "公交站旁边的垃圾", lat, lon, true);
    put("closed", "streetlight", "公交站旁边的路灯不亮了", lat, lon, false);
    put("unrelated", "streetlight", "lamp pole painted", lat, lon, true);
    index.commit().unwrap();
    assert_eq!(index.appeals(), 5);
    let found = index
        .similar(&Around {
            text: "公交站旁的路灯不亮",
            category: "streetlight",
            lat,
            lon,
            radius_m: cfg.moderation.duplicate_radius_m,
            since: t0 - 86_400,
            min_similarity: cfg.moderation.duplicate_min_similarity,
            except: None,
        })
        .unwrap();
    assert_eq!(
        found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["near"],
        "{found:?}"
    );
    assert!(found[0].distance_m > 15.0 && found[0].distance_m < 30.0);
    let search = || {
        index
            .similar(&Around {
                text: "公交站旁的路灯不亮",
                category: "streetlight",
                lat,
                lon,
                radius_m: 100.0,
                since: t0 - 86_400,
                min_similarity: 0.25,
                except: None,
            })
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    // Replacing an appeal (closed now) takes it out of the search at once,
    // before any commit; a new one is found at once too.
    put(
        "near",
        "streetlight",
        "公交站旁边的路灯不亮了",
        lat + 0.0002,
        lon,
        false,
    );
    put("new", "streetlight", "公交站旁边路灯不亮", lat - 0.0001, lon, true);
    assert_eq!(search(), ["new"]);
    index.commit().unwrap();
    assert_eq!(search(), ["new"]);
    assert_eq!(index.appeals(), 6);
}

#[test]
fn bad_filings_are_refused_with_what_was_wrong() {
    let cfg = config();
    let bad = |f: Filing| f.check(&cfg).unwrap_err().to_string();
    assert!(bad(Filing::default()).contains("description is required"));
    assert!(bad(Filing {
        description: "x".repeat(4001),
        ..Filing::default()
    })
    .contains("4000"));
    assert!(bad(streetlight("x", 91.0, 0.0)).contains("WGS84"));
    let road = Filing {
        category: Some("road-damage".into()),
        description: "pothole".into(),
        ..Filing::default()
    };
    assert!(bad(road.clone()).contains("'danger' is required"));
    let mut wrong = road.clone();
    wrong.attributes.insert("danger".into(), vec!["maybe".into()]);
    assert!(bad(wrong).contains("'maybe' is not one of its values"));
    let mut unknown = road;
    unknown.attributes.insert("danger".into(), vec!["no".into()]);
    unknown.attributes.insert("colour".into(), vec!["red".into()]);
    assert!(bad(unknown).contains("no attribute 'colour'"));
    assert!(bad(Filing {
        category: Some("ufo".into()),
        description: "x".into(),
        ..Filing::default()
    })
    .contains("'ufo'"));
    assert!(bad(Filing {
        attachments: vec!["file:///etc/passwd".into()],
        description: "x".into(),
        ..Filing::default()
    })
    .contains("http"));
}

#[test]
fn a_broken_configuration_names_the_file_and_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["categories.yaml", "routing.yaml", "calendar.yaml", "moderation.yaml"] {
        std::fs::copy(dir().join(f), tmp.path().join(f)).unwrap();
    }
    let routing = std::fs::read_to_string(tmp.path().join("routing.yaml")).unwrap();
    std::fs::write(
        tmp.path().join("routing.yaml"),
        routing.replace("department: traffic-police}", "department: nobody}"),
    )
    .unwrap();
    let e = AppealsConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("department 'nobody'"), "{e}");
    std::fs::write(
        tmp.path().join("routing.yaml"),
        routing.replace("triage: hotline-triage", "triage: ["),
    )
    .unwrap();
    let e = AppealsConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("routing.yaml") && e.contains("line"), "{e}");
    std::fs::write(
        tmp.path().join("routing.yaml"),
        routing.replace("supervisor: city-supervision}", "supervisor: hotline-triage}"),
    )
    .unwrap();
    let e = AppealsConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("circle"), "{e}");
}
