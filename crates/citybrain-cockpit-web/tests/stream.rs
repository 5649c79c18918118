//! The cockpit stream's contract over loopback: SSE format, resume by
//! `Last-Event-ID`, `resync` when the gap is too old, keep-alive, a changed
//! definition reaching open streams; the pages and assets.

use std::sync::Arc;
use std::time::Duration;

use citybrain_cockpit_web::{router, Cockpits, Settings};
use citybrain_hub::{BatchOp, Hub, HubConfig, RequestContext};
use citybrain_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use tokio::net::TcpListener;

struct Server {
    base: String,
    hub: Hub,
    dir: tempfile::TempDir,
}

fn definition(title: &str) -> String {
    json!({
        "schemaVersion": 1, "uid": "things", "title": {"en": title, "zh": "测试"}, "tier": "street",
        "panels": [
            {"id": "total", "type": "kpi", "title": {"en": "Total", "zh": "合计"},
             "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}, "query": {"type": "Thing", "attr": "v"}},
            {"id": "trend", "type": "timeseries", "title": {"en": "Trend", "zh": "趋势"},
             "gridPos": {"x": 6, "y": 0, "w": 12, "h": 6}, "windowS": 60, "query": {"type": "Thing", "attr": "v"}}
        ]
    })
    .to_string()
}

async fn start(ring: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dashboards")).unwrap();
    std::fs::write(dir.path().join("dashboards/things.json"), definition("Things")).unwrap();
    let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal).unwrap();
    let hub = Hub::start(Arc::new(store), HubConfig::default()).await.unwrap();
    let settings = Settings {
        tick: Duration::from_millis(50),
        ring,
        keep_alive: Duration::from_millis(300),
        rescan_ticks: 2,
    };
    let c = Cockpits::start_with(hub.clone(), Some(dir.path().join("dashboards")), settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, as_admin(router(c))).await.unwrap() });
    Server {
        base: format!("http://{addr}"),
        hub,
        dir,
    }
}

async fn put(hub: &Hub, id: &str, v: i64) {
    put_typed(hub, "Thing", id, v).await
}

async fn put_typed(hub: &Hub, t: &str, id: &str, v: i64) {
    let r = hub
        .batch_write(
            "",
            &[json!({"id": id, "type": t, "v": v})],
            &RequestContext::core(),
            BatchOp::Upsert { replace: false },
        )
        .await
        .unwrap();
    assert!(r.errors.is_empty());
}

/// One parsed SSE event (or a comment line, as `comment`).
#[derive(Debug, Clone)]
struct Ev {
    event: String,
    id: Option<u64>,
    data: String,
}

/// Reads events from a stream until `until` says stop (or the time is up).
async fn read_events(
    url: &str,
    last_id: Option<u64>,
    mut until: impl FnMut(&[Ev]) -> bool,
) -> (reqwest::header::HeaderMap, Vec<Ev>) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(l) = last_id {
        req = req.header("Last-Event-ID", l.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let mut buf = String::new();
    let mut out: Vec<Ev> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !until(&out) {
        let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = Ev {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(c) = line.strip_prefix(':') {
                    ev.event = "comment".into();
                    ev.data = c.trim().to_string();
                } else if let Some(x) = line.strip_prefix("event:") {
                    ev.event = x.trim().to_string();
                } else if let Some(x) = line.strip_prefix("id:") {
                    ev.id = x.trim().parse().ok();
                } else if let Some(x) = line.strip_prefix("data:") {
                    ev.data.push_str(x.trim());
                }
            }
            out.push(ev);
        }
    }
    (headers, out)
}

fn panel_value(e: &Ev) -> Option<(String, f64)> {
    let v: Value = serde_json::from_str(&e.data).ok()?;
    Some((v["panel"].as_str()?.to_string(), v["data"]["value"].as_f64()?))
}

#[tokio::test]
async fn the_stream_sends_numbered_panel_events_and_resumes_without_gap_or_duplicate() {
    let s = start(1024).await;
    put(&s.hub, "urn:t:1", 3).await;
    let url = format!("{}/api/cockpits/things/events", s.base);
    let (headers, first) = read_events(&url, None, |evs| {
        evs.iter().any(|e| panel_value(e) == Some(("total".into(), 3.0)))
    })
    .await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(first[0].event, "hello", "{first:?}");
    let ids: Vec<u64> = first
        .iter()
        .filter(|e| e.event == "panel")
        .filter_map(|e| e.id)
        .collect();
    assert!(!ids.is_empty());
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "consecutive ids: {ids:?}");
    let last = *ids.last().unwrap();
    // While this tab is away, the value changes.
    put(&s.hub, "urn:t:2", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, resumed) = read_events(&url, Some(last), |evs| {
        evs.iter().any(|e| panel_value(e) == Some(("total".into(), 7.0)))
    })
    .await;
    let ids: Vec<u64> = resumed.iter().filter_map(|e| e.id).collect();
    assert_eq!(
        ids.first(),
        Some(&(last + 1)),
        "resumes right after {last}: {resumed:?}"
    );
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert!(resumed.iter().all(|e| e.event != "resync"));
}

#[tokio::test]
async fn a_page_resumes_right_after_its_snapshot_and_a_reconnects_header_wins() {
    let s = start(1024).await;
    put(&s.hub, "urn:t:1", 3).await;
    let events = format!("{}/api/cockpits/things/events", s.base);
    read_events(&events, None, |evs| {
        evs.iter().any(|e| panel_value(e) == Some(("total".into(), 3.0)))
    })
    .await;
    let snap: Value = reqwest::get(format!("{}/api/cockpits/things/snapshot", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seq = snap["seq"].as_u64().unwrap();
    assert_eq!(snap["panels"]["total"]["data"]["value"], 3.0, "{snap}");
    put(&s.hub, "urn:t:2", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The page names the snapshot's number: what came after it, no hello.
    let (_, resumed) = read_events(&format!("{events}?lastEventId={seq}"), None, |evs| {
        evs.iter().any(|e| panel_value(e) == Some(("total".into(), 7.0)))
    })
    .await;
    assert!(
        resumed.iter().all(|e| e.event != "hello" && e.event != "resync"),
        "{resumed:?}"
    );
    let ids: Vec<u64> = resumed.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids.first(), Some(&(seq + 1)), "{resumed:?}");
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    // A reconnecting EventSource keeps its URL and adds the header: the header counts.
    let (_, again) = read_events(&format!("{events}?lastEventId=1000000"), Some(seq), |evs| {
        evs.iter().any(|e| e.id.is_some())
    })
    .await;
    assert_eq!(again[0].event, "panel", "{again:?}");
    assert_eq!(again[0].id, Some(seq + 1));
    // Not a number: the stream starts afresh.
    let (_, fresh) = read_events(&format!("{events}?lastEventId=soon"), None, |evs| !evs.is_empty()).await;
    assert_eq!(fresh[0].event, "hello", "{fresh:?}");
}

#[tokio::test]
async fn a_gap_older_than_the_ring_gets_a_resync_and_keep_alives_flow() {
    let s = start(8).await;
    put(&s.hub, "urn:t:1", 1).await;
    let url = format!("{}/api/cockpits/things/events", s.base);
    // The time series panel sends a point every tick: the ring of 8 is soon past id 1.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, evs) = read_events(&url, Some(1), |evs| evs.iter().any(|e| e.event == "comment")).await;
    assert_eq!(evs[0].event, "resync", "{evs:?}");
    // An id from another server life (ahead of this one's) resyncs too.
    let (_, evs) = read_events(&url, Some(1_000_000), |evs| !evs.is_empty()).await;
    assert_eq!(evs[0].event, "resync");
    assert!(evs.iter().all(|e| e.event != "comment" || e.data == "keep-alive"));
}

#[tokio::test]
async fn keep_alive_comments_arrive_on_an_idle_stream() {
    let s = start(64).await;
    // No timeseries without data changes: use a cockpit with only a kpi.
    std::fs::write(
        s.dir.path().join("dashboards/quiet.json"),
        json!({"schemaVersion": 1, "uid": "quiet", "title": {"en": "Q", "zh": "静"}, "tier": "street",
               "panels": [{"id": "k", "type": "kpi", "title": {"en": "K", "zh": "K"},
                           "gridPos": {"x": 0, "y": 0, "w": 4, "h": 4}, "query": {"type": "Thing", "aggregate": "count"}}]})
        .to_string(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let url = format!("{}/api/cockpits/quiet/events", s.base);
    let (_, evs) = read_events(&url, None, |evs| {
        evs.iter().filter(|e| e.event == "comment").count() >= 2
    })
    .await;
    assert!(evs.iter().filter(|e| e.event == "comment").count() >= 2, "{evs:?}");
}

#[tokio::test]
async fn a_definition_changed_on_disk_reaches_open_streams() {
    let s = start(256).await;
    let url = format!("{}/api/cockpits/things/events", s.base);
    let path = s.dir.path().join("dashboards/things.json");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        std::fs::write(&path, definition("Things, renamed")).unwrap();
    });
    let (_, evs) = read_events(&url, None, |evs| evs.iter().any(|e| e.event == "definition-changed")).await;
    writer.await.unwrap();
    assert!(evs.iter().any(|e| e.event == "definition-changed"), "{evs:?}");
    let d: Value = reqwest::get(format!("{}/api/cockpits/things", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["title"]["en"], "Things, renamed");
    // A broken edit keeps the last good definition and is listed on the index page.
    std::fs::write(s.dir.path().join("dashboards/things.json"), "{\"schemaVersion\": 1").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let d: Value = reqwest::get(format!("{}/api/cockpits/things", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["title"]["en"], "Things, renamed");
    let index = reqwest::get(format!("{}/", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(index.contains("things.json: "), "{index}");
}

#[tokio::test]
async fn pages_snapshot_and_errors() {
    let s = start(64).await;
    put(&s.hub, "urn:t:1", 5).await;
    let get = |p: &str| reqwest::get(format!("{}{p}", s.base));
    let index = get("/").await.unwrap().text().await.unwrap();
    assert!(index.contains("href=\"/cockpit/things\""));
    let page = get("/cockpit/things").await.unwrap().text().await.unwrap();
    assert!(page.contains("data-uid=\"things\""));
    // The snapshot fills once the feed has ticked.
    let mut total = None;
    for _ in 0..50 {
        let snap: Value = get("/api/cockpits/things/snapshot")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        total = snap["panels"]["total"]["data"]["value"].as_f64();
        if total.is_some() {
            assert!(snap["panels"]["trend"]["series"]
                .as_array()
                .is_some_and(|a| !a.is_empty()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total, Some(5.0));
    let r = get("/api/cockpits/nowhere").await.unwrap();
    assert_eq!(r.status(), 404);
    // The same ProblemDetails as the NGSI-LD routes on this origin.
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound");
    assert!(
        body["detail"].as_str().unwrap().contains("no cockpit 'nowhere'"),
        "{body}"
    );
    assert_eq!(get("/cockpit/nowhere").await.unwrap().status(), 404);
    assert_eq!(get("/assets/nothing.js").await.unwrap().status(), 404);
}

#[test]
fn every_asset_the_page_loads_is_embedded_and_ours_fetch_nothing_remote() {
    let page = citybrain_cockpit_web::assets::PAGE;
    for part in page.split("\"/assets/").skip(1) {
        let path = &part[..part.find('"').unwrap()];
        assert!(
            citybrain_cockpit_web::assets::FILES.iter().any(|(p, _, _)| *p == path),
            "{path} is not embedded"
        );
    }
    for (path, _, bytes) in citybrain_cockpit_web::assets::FILES {
        if path.starts_with("vendor/") {
            continue; // third-party code: XML namespaces and licence links, never fetched (the browser test checks requests)
        }
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} names a remote URL"
        );
    }
    assert!(!page.contains("http://") && !page.contains("https://"));
}

#[tokio::test]
async fn a_rule_raises_an_alert_in_the_hub_and_an_officer_acknowledges_and_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/r.json"),
        json!({"schemaVersion": 1, "rules": [{"id": "too-many", "title": {"en": "Too many", "zh": "过多"},
               "entityType": "Thing", "attr": "v", "condition": {"above": 10.0}, "severity": "high", "category": "test"}]})
        .to_string(),
    )
    .unwrap();
    let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal).unwrap();
    let hub = Hub::start(Arc::new(store), HubConfig::default()).await.unwrap();
    let settings = Settings {
        tick: Duration::from_millis(50),
        ..Settings::default()
    };
    let c = Cockpits::start_with(hub.clone(), None, settings);
    assert_eq!(c.load_rules(Some(&dir.path().join("rules"))).unwrap(), 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, as_admin(router(c))).await.unwrap() });
    // A subscriber to alerts (the hub's own SSE delivery).
    let sub = hub
        .create_subscription(
            "",
            &json!({"type": "Subscription", "entities": [{"type": "Alert"}],
                    "notification": {"endpoint": {"uri": "urn:citybrain:sse"}}}),
            &RequestContext::core(),
        )
        .await
        .unwrap();
    let mut delivered = hub.stream("", &sub, None).await.unwrap().rx;
    put(&hub, "urn:t:1", 3).await;
    put(&hub, "urn:t:2", 20).await;
    let note = tokio::time::timeout(Duration::from_secs(10), delivered.recv())
        .await
        .expect("the subscriber is notified")
        .unwrap();
    let text: &str = note.data.as_ref();
    assert!(text.contains("too-many"), "{text}");
    let alerts = || async {
        let q = citybrain_ngsild::selector::EntityQuery {
            selectors: vec![citybrain_ngsild::selector::EntitySelector {
                types: Some(citybrain_ngsild::selector::TypeExpr::Type(
                    "https://uri.etsi.org/ngsi-ld/default-context/Alert".into(),
                )),
                ..Default::default()
            }],
            ..Default::default()
        };
        let page = citybrain_store::Page {
            offset: 0,
            limit: 100,
            count: false,
        };
        hub.query_entities("", &q, page).await.unwrap().entities
    };
    let mut found = Vec::new();
    for _ in 0..100 {
        found = alerts().await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found.len(), 1, "one alert, for the entity above the threshold");
    let a = &found[0];
    assert!(a.id.starts_with("urn:ngsi-ld:Alert:citybrain:too-many:2:"), "{}", a.id);
    let status = |e: &citybrain_ngsild::model::Entity| {
        let k = e
            .attrs
            .keys()
            .find(|k| k.ends_with("/status"))
            .unwrap_or_else(|| panic!("{:?}", e.attrs.keys().collect::<Vec<_>>()));
        e.attrs[k][0]["value"].clone()
    };
    assert_eq!(status(a), json!("open"));
    let http = reqwest::Client::new();
    let post = |action: &str| http.post(format!("{base}/api/alerts/{}/{action}", a.id)).send();
    assert_eq!(post("acknowledge").await.unwrap().status(), 204);
    assert_eq!(status(&alerts().await[0]), json!("acknowledged"));
    assert_eq!(post("close").await.unwrap().status(), 204);
    assert_eq!(status(&alerts().await[0]), json!("closed"));
    assert_eq!(post("delete").await.unwrap().status(), 400);
    // Still above: no second alert while it holds.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(alerts().await.len(), 1);
}

/// The built-in types about the hub: how many entities of which type and
/// district it holds, and how fast they change.
#[tokio::test]
async fn the_hub_describes_itself_by_type_district_and_update_rate() {
    let s = start(64).await;
    let def = json!({
        "schemaVersion": 1, "uid": "hub", "title": {"en": "Hub", "zh": "中枢"}, "tier": "city",
        "panels": [
            {"id": "entities", "type": "kpi", "title": {"en": "E", "zh": "E"},
             "gridPos": {"x": 0, "y": 0, "w": 4, "h": 4}, "query": {"type": "HubStatistics", "attr": "entities"}},
            {"id": "rate", "type": "kpi", "title": {"en": "R", "zh": "R"},
             "gridPos": {"x": 4, "y": 0, "w": 4, "h": 4}, "query": {"type": "HubStatistics", "attr": "updatesPerSecond"}},
            {"id": "types", "type": "bar", "title": {"en": "T", "zh": "T"},
             "gridPos": {"x": 8, "y": 0, "w": 8, "h": 6},
             "query": {"type": "HubEntityType", "attr": "entityCount", "labelAttr": "name"}},
            {"id": "areas", "type": "bar", "title": {"en": "A", "zh": "A"},
             "gridPos": {"x": 16, "y": 0, "w": 8, "h": 6},
             "query": {"type": "HubArea", "attr": "entityCount", "labelAttr": "name"}}
        ]
    });
    std::fs::write(s.dir.path().join("dashboards/hub.json"), def.to_string()).unwrap();
    for i in 0..3 {
        put(&s.hub, &format!("urn:ngsi-ld:Thing:north:{i}"), i).await;
    }
    put(&s.hub, "urn:ngsi-ld:Thing:lonely", 9).await;
    // Keep writing for a while: the rate is writes per second.
    let writer = {
        let hub = s.hub.clone();
        tokio::spawn(async move {
            for k in 0..40 {
                put(&hub, "urn:ngsi-ld:Thing:north:0", 100 + k).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let mut snap = Value::Null;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        snap = reqwest::get(format!("{}/api/cockpits/hub/snapshot", s.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if snap["panels"]["rate"]["data"]["value"].as_f64().unwrap_or(0.0) > 5.0 {
            break;
        }
    }
    writer.await.unwrap();
    let p = &snap["panels"];
    assert_eq!(p["entities"]["data"]["value"], 4.0, "{snap}");
    let rate = p["rate"]["data"]["value"].as_f64().unwrap_or(0.0);
    assert!(rate > 5.0 && rate < 100.0, "about 40 writes a second: {rate}");
    assert_eq!(p["types"]["data"]["labels"], json!(["Thing"]));
    assert_eq!(p["types"]["data"]["values"], json!([4.0]));
    assert_eq!(p["areas"]["data"]["labels"], json!(["north", "city"]));
    assert_eq!(p["areas"]["data"]["values"], json!([3.0, 1.0]));
}

/// A cockpit that first opens late shows its window's past from the hub's
/// history (not only what its feed saw since).
#[tokio::test]
async fn a_time_series_opened_late_shows_its_past_from_the_hub_history() {
    let s = start(64).await;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Two entities: one steady at 10, the other 1, then 2, then 3.
    put_typed(&s.hub, "Late", "urn:ngsi-ld:Late:steady", 10).await;
    for v in 1..=3 {
        put_typed(&s.hub, "Late", "urn:ngsi-ld:Late:rising", v).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // A new cockpit, reading `Late`, appears only now.
    let def = definition("Late")
        .replace("\"Thing\"", "\"Late\"")
        .replace("\"things\"", "\"late\"");
    std::fs::write(s.dir.path().join("dashboards/late.json"), def).unwrap();
    let opened = t0 + 1200;
    let mut series = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = reqwest::get(format!("{}/api/cockpits/late/snapshot", s.base))
            .await
            .unwrap();
        if r.status() != 200 {
            continue;
        }
        let snap: Value = r.json().await.unwrap();
        series = snap["panels"]["trend"]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if series.len() > 3 {
            break;
        }
    }
    let points: Vec<(u64, f64)> = series
        .iter()
        .filter_map(|p| Some((p[0].as_u64()?, p[1].as_f64()?)))
        .collect();
    let past: Vec<f64> = points.iter().filter(|(t, _)| *t < opened).map(|(_, v)| *v).collect();
    assert!(past.len() >= 3, "points from before the cockpit opened: {points:?}");
    // Sums of both entities as they were: 11, then 12, then 13.
    assert!(past.iter().all(|v| [11.0, 12.0, 13.0].contains(v)), "{past:?}");
    assert!(past.contains(&11.0) && past.contains(&12.0), "{past:?}");
    assert!(past.windows(2).all(|w| w[0] <= w[1]), "in time order: {past:?}");
    assert_eq!(points.last().unwrap().1, 13.0);
}

/// The cockpits as an administrator sees them (the API's authentication,
/// which leaves the caller in the request, is not in front of these tests).
fn as_admin(r: axum::Router) -> axum::Router {
    use citybrain_trust::{policy::Policy, Caller, Principal};
    r.layer(axum::Extension(std::sync::Arc::new(Caller::new(
        Principal::unrestricted("test"),
        std::sync::Arc::new(Policy::empty()),
        None,
    ))))
}
