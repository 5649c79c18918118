//! End-to-end tests of the real `citybrain` binary: durability across
//! `kill -9`, graceful shutdown, configuration by flags and environment, the
//! demo, and clear errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_citybrain");

/// A running binary and the base URL it printed.
struct Proc {
    child: Child,
    base: String,
}

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    // These tests are about the hub, the twin and the cockpits, not access
    // control (tests/auth.rs): they run without it unless they say otherwise.
    if !envs.iter().any(|(k, _)| *k == "CITYBRAIN_NO_AUTH") {
        cmd.env("CITYBRAIN_NO_AUTH", "true");
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("citybrain listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server prints its address");
    Proc { child, base }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn db_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite:{}", dir.path().join("e2e.db").display())
}

/// `serve` on a free port with a live scenario at a speed-up.
fn serve_live(dir: &tempfile::TempDir, live: &str, speedup: &str, envs: &[(&str, &str)]) -> Proc {
    let db = db_url(dir);
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db,
        "--live",
        live,
        "--live-speedup",
        speedup,
    ];
    spawn(&args, envs)
}

/// GET a URL and parse its JSON body.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(&dir);
    let http = reqwest::Client::new();
    // A receiver that is down during the first run.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let p = spawn(&["serve", "--listen", "127.0.0.1:0", "--db", &db], &[]);
        let sub = json!({"type": "Subscription", "entities": [{"type": "Counter"}], "watchedAttributes": ["n"],
            "notification": {"endpoint": {"uri": format!("http://127.0.0.1:{port}/notify")}}});
        let r = http
            .post(format!("{}/ngsi-ld/v1/subscriptions", p.base))
            .header("Content-Type", "application/json")
            .body(sub.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        for i in 0..50 {
            let e = json!({"id": format!("urn:ngsi-ld:Counter:{i}"), "type": "Counter", "n": 0});
            let r = http
                .post(format!("{}/ngsi-ld/v1/entities", p.base))
                .header("Content-Type", "application/json")
                .body(e.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        for i in 0..50 {
            let r = http
                .patch(format!(
                    "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{i}/attrs/n",
                    p.base
                ))
                .header("Content-Type", "application/json")
                .body(json!({"value": i * 10}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
        // Proc's drop sends SIGKILL: no shutdown path runs.
    }
    // Restart on the same file, with the receiver now listening.
    let got = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let g = got.clone();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(move || {
                let g = g.clone();
                async move {
                    *g.lock().unwrap() += 1;
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let p = spawn(&["serve", "--listen", "127.0.0.1:0", "--db", &db], &[]);
    let r: Value = http
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=Counter&limit=100&options=keyValues",
            p.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = r.as_array().unwrap();
    assert_eq!(list.len(), 50, "every created entity is back");
    for e in list {
        let i: i64 = e["id"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(e["n"], i * 10, "every acknowledged PATCH is back");
    }
    // The 100 notifications queued while the receiver was down are delivered after the restart.
    for _ in 0..300 {
        if *got.lock().unwrap() >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        *got.lock().unwrap() >= 100,
        "queued notifications survived the crash: {}",
        got.lock().unwrap()
    );
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_env_configures() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(&dir);
    let mut p = spawn(
        &["serve"],
        &[("CITYBRAIN_LISTEN", "127.0.0.1:0"), ("CITYBRAIN_DB", &db)],
    );
    let h: Value = reqwest::get(format!("{}/health", p.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["backend"], "sqlite");
    assert!(dir.path().join("e2e.db").exists(), "CITYBRAIN_DB chose the file");
    let metrics = reqwest::get(format!("{}/metrics", p.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("citybrain_http_requests_total"), "{metrics}");
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = p.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status.expect("exits after SIGTERM").success());
}

#[tokio::test]
async fn demo_serves_the_hospital_district() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(&dir);
    let p = spawn(
        &["demo", "--listen", "127.0.0.1:0", "--db", &db, "--demo-city", "0"],
        &[],
    );
    let url = format!(
        "{}/ngsi-ld/v1/entities?type=OffStreetParking&q=totalSpotNumber%3E=250&options=keyValues&attrs=totalSpotNumber",
        p.base
    );
    let r: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let mut totals: Vec<i64> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["totalSpotNumber"].as_i64().unwrap())
        .collect();
    totals.sort();
    assert_eq!(totals, vec![250, 420]);
}

#[test]
fn help_explains_every_setting() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "CITYBRAIN_LISTEN",
        "127.0.0.1:1026",
        "--db",
        "CITYBRAIN_DB",
        "--max-body-bytes",
        "--context-map",
    ] {
        assert!(text.contains(needle), "serve --help lacks {needle}");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("citybrain demo"));
}

#[test]
fn bad_database_urls_are_clear_errors() {
    for (url, want) in [
        // Nothing listens on port 1: refused at once, said so.
        ("postgres://citybrain@127.0.0.1:1/y", "no connection to PostgreSQL"),
        ("postgres://127.0.0.1/y?schema=Not-A-Name", "schema=Not-A-Name"),
        ("mysql://x", "unknown database URL scheme"),
        ("sqlite::memory:", "in-memory SQLite is not supported"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db", url])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{url}: {err}");
    }
}

#[test]
fn scenario_run_prints_one_json_object_per_policy_and_the_report_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("corridor.html");
    let out = Command::new(BIN)
        .args([
            "scenario",
            "run",
            "signal-corridor",
            "--policy",
            "fixed,citybrain",
            "--duration",
            "600",
            "--seeds",
            "2",
            "--ambulance",
            "--json",
        ])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (l, policy) in lines.iter().zip(["fixed", "citybrain"]) {
        assert_eq!(l["policy"], policy);
        assert_eq!(l["seeds"], serde_json::json!([1, 2]));
        for key in [
            "mean_travel_time_s",
            "mean_delay_s",
            "delay_index",
            "throughput_veh_per_h",
            "max_queue_veh",
        ] {
            assert!(l[key].as_f64().is_some_and(|x| x > 0.0), "{policy}: {key} in {l}");
        }
        let amb = &l["ambulance"];
        assert!(amb["ambulance_travel_time_s"].as_f64().unwrap() > 0.0);
        assert!(amb["ambulance_travel_time_without_priority_s"].as_f64().unwrap() > 0.0);
        assert!(amb["extra_delay_others_s"].is_number());
    }
    assert!(lines[1]["travel_time_vs_fixed_pct"].is_number());
    // The report: a row per policy in each table, figures as in the JSON,
    // the free-flow time that bounds the ambulance's saving.
    let html = std::fs::read_to_string(&report).unwrap();
    let table = |id: &str| {
        let start = html
            .find(&format!("<table id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no table {id}"));
        html[start..start + html[start..].find("</table>").unwrap()].to_string()
    };
    let (traffic, ambulance) = (table("traffic"), table("ambulance"));
    for l in &lines {
        let policy = l["policy"].as_str().unwrap();
        let tt = format!(
            "<td>{policy}</td><td>{:.1} ± ",
            l["mean_travel_time_s"].as_f64().unwrap()
        );
        assert!(traffic.contains(&tt), "{tt} in {traffic}");
        let a = &l["ambulance"];
        let row = format!(
            "<td>{policy}</td><td>{:.0} ± {:.0}</td><td>{:.0} ± {:.0}</td><td>{:.1}%</td>",
            a["spread_without"]["mean"].as_f64().unwrap(),
            a["spread_without"]["sd"].as_f64().unwrap(),
            a["spread_with"]["mean"].as_f64().unwrap(),
            a["spread_with"]["sd"].as_f64().unwrap(),
            a["saving_pct"].as_f64().unwrap()
        );
        assert!(ambulance.contains(&row), "{row} in {ambulance}");
    }
    let free = format!(
        "free flow {:.0} s",
        lines[0]["ambulance"]["free_flow_s"].as_f64().unwrap()
    );
    assert!(html.contains(&free), "{free}");
}

#[test]
fn scenario_errors_name_what_was_wrong() {
    let out = Command::new(BIN)
        .args(["scenario", "run", "signal-corridor", "--policy", "magic"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy 'magic'"));
    let out = Command::new(BIN).args(["scenario", "run", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'nowhere'"));
    let refused = |args: &[&str], says: &str| {
        let out = Command::new(BIN).args(["scenario", "run"]).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["signal-corridor", "--detector-period", "0", "--duration", "60"],
            "publication period must be between 1 and 900 s, got 0",
        ),
        (
            &["signal-corridor", "--demand-scale", "9"],
            "invalid value '9' for '--demand-scale <DEMAND_SCALE>': must be a number in (0, 5]",
        ),
        (
            &["signal-corridor", "--seeds", "0"],
            "invalid value '0' for '--seeds <SEEDS>'",
        ),
        // Each scenario takes its own arguments, and refuses the others'.
        (
            &["sumo", "-n", "x.net.xml", "-r", "x.rou.xml", "--detector-period", "30"],
            "unexpected argument '--detector-period'",
        ),
        (
            &["hospital-district", "--detector-period", "30"],
            "unexpected argument '--detector-period'",
        ),
        (
            &["signal-corridor", "--compliance", "0.5"],
            "unexpected argument '--compliance'",
        ),
        (
            &["signal-corridor", "--ambulance-route", "a,b"],
            "unexpected argument '--ambulance-route'",
        ),
    ];
    for (args, says) in cases {
        refused(args, says);
    }
    for flag in ["--duration", "--demand-scale"] {
        refused(
            &["sumo", "-n", "x.net.xml", "-r", "x.rou.xml", flag, "2"],
            &format!("unexpected argument '{flag}'"),
        );
    }
    refused(
        &["sumo", "-n", "x.net.xml", "-r", "x.rou.xml", "--ambulance"],
        "--ambulance-route <FROM,TO>",
    );
}

#[tokio::test]
async fn live_mode_publishes_the_corridor_to_the_hub_and_keeps_it_moving() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve_live(&dir, "signal-corridor", "600", &[]);
    let http = reqwest::Client::new();
    let get = |q: &'static str| {
        let url = format!("{}/ngsi-ld/v1/entities?{q}", p.base);
        let http = http.clone();
        async move { get_json(&http, &url).await }
    };
    // Signals and approach lanes appear, and the twin's clock moves on.
    let mut first_time = None;
    let mut moved = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let signals = get("type=TrafficSignal&options=keyValues&limit=100").await;
        let flows = get("type=TrafficFlowObserved&options=keyValues&limit=1000").await;
        let (Some(signals), Some(flows)) = (signals.as_array(), flows.as_array()) else {
            continue;
        };
        if signals.len() < 21 || flows.len() < 100 {
            continue;
        }
        for s in signals {
            let state = s["state"].as_str().unwrap();
            assert!(state.chars().all(|c| "GgyrR".contains(c)), "{s}");
        }
        let t = signals
            .iter()
            .filter_map(|s| s["simulatedTime"].as_f64())
            .fold(0.0, f64::max);
        match first_time {
            None => first_time = Some(t),
            Some(t0) if t > t0 + 60.0 => {
                moved = true;
                break;
            }
            _ => {}
        }
    }
    assert!(moved, "the live twin publishes and its clock advances");
    // The controller's input is what the hub holds: the queues are there.
    let queued = get("type=TrafficFlowObserved&q=queueLength%3E0&limit=1").await;
    assert!(
        queued.as_array().is_some_and(|a| !a.is_empty()),
        "some approach has a queue: {queued}"
    );
    let speeds = get("type=TrafficFlowObserved&q=averageVehicleSpeed%3C20&limit=1").await;
    assert!(
        speeds.as_array().is_some_and(|a| !a.is_empty()),
        "slow approaches show in their speeds: {speeds}"
    );
    // The ambulance run: both ambulances are seen on the road, then arrive
    // (about 15 s at 600x; up to a minute on a loaded machine, where the
    // twin falls behind its speed-up).
    let (mut seen_on_road, mut arrived) = (0, None);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = get("type=Vehicle&options=keyValues&limit=10").await;
        let Some(v) = v.as_array() else { continue };
        let amb: Vec<&Value> = v
            .iter()
            .filter(|e| e["id"].as_str().unwrap().contains(":signal-corridor:ambulance:"))
            .collect();
        seen_on_road += amb.iter().filter(|e| e["networkPosition"].is_array()).count();
        for e in &amb {
            if e["tripStatus"] == "en-route" {
                let xy = &e["networkPosition"];
                assert!((0.0..=7000.0).contains(&xy[0].as_f64().unwrap()), "{e}");
            } else {
                assert!(e.get("networkPosition").is_none(), "off the road, no marker: {e}");
            }
        }
        if amb.len() == 2 && amb.iter().all(|e| e["tripStatus"] == "arrived") {
            arrived = Some(amb.iter().map(|e| e["tripTime"].as_f64().unwrap()).collect::<Vec<_>>());
            break;
        }
    }
    assert!(seen_on_road > 0, "an ambulance was seen on the road");
    let trips = arrived.expect("both ambulances arrive");
    assert!(trips.iter().all(|t| (300.0..3000.0).contains(t)), "{trips:?}");
}

#[tokio::test]
async fn live_mode_publishes_the_hospital_district_lots_and_roads_to_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve_live(&dir, "hospital-district", "3000", &[]);
    let http = reqwest::Client::new();
    let get = |q: &'static str| {
        let url = format!("{}/ngsi-ld/v1/entities?{q}", p.base);
        let http = http.clone();
        async move { get_json(&http, &url).await }
    };
    // Every lot appears with its availability and place, the day moves on,
    // and cars park.
    let mut ok = false;
    // Up to 2 min: 7 simulated hours take ~20 s alone, longer on a loaded machine.
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lots = get("type=OffStreetParking&options=keyValues&limit=100").await;
        let Some(lots) = lots.as_array() else { continue };
        let ours: Vec<&Value> = lots
            .iter()
            .filter(|l| l["id"].as_str().unwrap().contains(":hospital-district:"))
            .collect();
        if ours.len() < 9 {
            continue;
        }
        for l in &ours {
            let (free, total) = (
                l["availableSpotNumber"].as_u64().unwrap(),
                l["totalSpotNumber"].as_u64().unwrap(),
            );
            assert!(free <= total, "{l}");
            let c = &l["location"]["coordinates"];
            assert!((120.1..120.3).contains(&c[0].as_f64().unwrap()), "{l}");
            assert!((30.2..30.3).contains(&c[1].as_f64().unwrap()), "{l}");
        }
        let t = ours
            .iter()
            .filter_map(|l| l["simulatedTime"].as_f64())
            .fold(0.0, f64::max);
        let used = ours.iter().any(|l| l["occupiedSpotNumber"].as_u64().unwrap_or(0) > 0);
        if t > 7.0 * 3600.0 && used {
            ok = true;
            break;
        }
    }
    assert!(ok, "the live district publishes its lots and cars park");
    let roads = get("type=TrafficFlowObserved&q=intensity%3E0&limit=1").await;
    assert!(roads.as_array().is_some_and(|a| !a.is_empty()), "{roads}");
    // Before and after: the live policy's figures and the baseline twin's.
    let kpis = get("type=KeyPerformanceIndicator&options=keyValues&limit=100").await;
    let kpi = |id: &str| {
        kpis.as_array()
            .and_then(|a| a.iter().find(|k| k["id"].as_str().is_some_and(|x| x.ends_with(id))))
            .cloned()
    };
    for id in [
        "waiting-now:live",
        "waiting-now:baseline",
        "queue-on-road:live",
        "cars-diverted:live",
    ] {
        let k = kpi(id).unwrap_or_else(|| panic!("{id} in {kpis}"));
        assert!(k["kpiValue"].as_f64().is_some(), "{k}");
    }
    assert_eq!(kpi("waiting-now:live").unwrap()["policy"], "citybrain");
    assert_eq!(kpi("waiting-now:baseline").unwrap()["policy"], "baseline");
}

#[test]
fn scenario_hospital_district_prints_one_json_object_per_policy_and_the_report_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("hospital.html");
    let out = Command::new(BIN)
        .args([
            "scenario",
            "run",
            "hospital-district",
            "--policy",
            "baseline,baseline+guidance",
            "--demand-scale",
            "0.2",
            "--json",
        ])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["policy"], "baseline+guidance");
    for l in &lines {
        for k in [
            "mean_wait_min",
            "max_wait_min",
            "peak_queue_on_road",
            "cars_diverted",
            "mean_extra_walk_m",
            "through_traffic_mean_travel_time_s",
            "gate_throughput_per_h",
            "mean_time_to_door_min",
            "dropped_at_door",
            "booked",
        ] {
            assert!(l[k].is_number(), "{k} in {l}");
        }
        assert_eq!(l["seeds"], serde_json::json!([1]));
    }
    // The report: a row per policy with the JSON's figures, the queue over
    // the day and each policy's lot occupancy drawn.
    let html = std::fs::read_to_string(&report).unwrap();
    let start = html.find("<table id=\"figures\">").expect("the figures table");
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    for l in &lines {
        let sp = &l["spread"];
        let row = format!(
            "<td>{}</td><td>{:.1} ± {:.1}</td><td>{:.0} ± {:.0}</td>",
            l["policy"].as_str().unwrap(),
            sp["mean_wait_min"]["mean"].as_f64().unwrap(),
            sp["mean_wait_min"]["sd"].as_f64().unwrap(),
            sp["max_wait_min"]["mean"].as_f64().unwrap(),
            sp["max_wait_min"]["sd"].as_f64().unwrap()
        );
        assert!(table.contains(&row), "{row} in {table}");
        assert!(html.contains(&format!("\">{}</h3><svg", l["policy"].as_str().unwrap())));
    }
    assert!(html.matches("<polyline").count() >= 2, "no queue or occupancy lines");
    let out = Command::new(BIN)
        .args(["scenario", "run", "hospital-district", "--policy", "baseline+magic"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy 'baseline+magic'"));
}

#[test]
fn cockpit_check_names_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"schemaVersion":1,"uid":"x","title":{"en":"a","zh":"b"},"tier":"city",
            "panels":[{"id":"p","type":"kpi","title":{"en":"a","zh":"b"},"gridPos":{"x":20,"y":0,"w":6,"h":2},"query":{"type":"T","attr":"v"}}]}"#,
    )
    .unwrap();
    let shipped = format!("{}/../../dashboards/hospital-district.json", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args(["cockpit", "check", &shipped, bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hospital-district.json: ok (hospital-district, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("bad.json: panels[0].gridPos.w: x + w = 26 is beyond the grid's 24 columns"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 definition(s) have problems"));
}

#[test]
fn live_mode_rejects_an_unknown_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(&dir);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", &db, "--live", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario 'nowhere'"));
}

#[test]
fn scenario_sumo_runs_any_network_under_every_policy() {
    let data = format!("{}/../citybrain-sim/tests/data", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args([
            "scenario",
            "run",
            "sumo",
            "-n",
            &format!("{data}/crossing.net.xml"),
            "-r",
            &format!("{data}/crossing.rou.xml"),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let policies: Vec<&str> = lines.iter().map(|l| l["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["fixed", "actuated", "citybrain"]);
    for l in &lines {
        assert_eq!(l["scenario"], "sumo");
        assert!(l["mean_travel_time_s"].as_f64().unwrap() > 0.0);
        assert!(l["delay_index"].as_f64().unwrap() >= 1.0);
    }
    let out = Command::new(BIN).args(["scenario", "run", "sumo"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--net-file <NET>") && err.contains("--route-files <ROUTES>"),
        "{err}"
    );
}

#[test]
fn scenario_sumo_sends_an_ambulance_between_two_edges() {
    let data = format!("{}/../citybrain-sim/tests/data", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("r.rou.xml");
    std::fs::write(
        &routes,
        r#"<routes><flow id="f" begin="0" end="600" vehsPerHour="900" from="A1B1" to="B1C1" departSpeed="max"/></routes>"#,
    )
    .unwrap();
    let net = format!("{data}/grid3.net.xml");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "scenario",
            "run",
            "sumo",
            "-n",
            &net,
            "-r",
            routes.to_str().unwrap(),
            "--policy",
            "fixed",
        ];
        args.extend_from_slice(extra);
        Command::new(BIN).args(&args).output().unwrap()
    };
    let out = run(&["--ambulance", "--ambulance-route", "A0A1,C2C1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let a = &line["ambulance"];
    assert!(a["free_flow_s"].as_f64().unwrap() > 30.0, "{a}");
    assert!(a["ambulance_travel_time_s"].as_f64().unwrap() >= a["free_flow_s"].as_f64().unwrap() * 0.95);
    assert!(a["ambulance_travel_time_without_priority_s"].as_f64().unwrap() > 0.0);
    // Clear refusals.
    let err = |extra: &[&str]| String::from_utf8_lossy(&run(extra).stderr).to_string();
    assert!(err(&["--ambulance"]).contains("required arguments were not provided:\n  --ambulance-route <FROM,TO>"));
    assert!(err(&["--ambulance", "--ambulance-route", "A0A1"]).contains("takes FROM,TO"));
    assert!(err(&["--ambulance", "--ambulance-route", "A0A1,nowhere"]).contains("no edge 'nowhere'"));
    assert!(err(&["--ambulance-route", "A0A1,C2C1"]).contains("required arguments were not provided:\n  --ambulance"));
}

#[tokio::test]
async fn a_fixed_clock_stamps_the_hub_the_live_scenarios_and_the_cockpits() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve_live(
        &dir,
        "signal-corridor",
        "600",
        &[("CITYBRAIN_CLOCK", "2026-01-05T08:00:00+08:00")],
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ngsi-ld/v1/entities", p.base))
        .header("content-type", "application/json")
        .body(r#"{"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "n": {"type": "Property", "value": 1}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e = get_json(
        &http,
        &format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:Thing:1?options=sysAttrs", p.base),
    )
    .await;
    let created = e["createdAt"].as_str().unwrap();
    assert!(created.starts_with("2026-01-05T00:0"), "{created}");
    // The live corridor's observations and a cockpit's clock too.
    let mut observed = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let url = format!(
            "{}/ngsi-ld/v1/entities?type=TrafficSignal&limit=1&options=keyValues",
            p.base
        );
        let s = get_json(&http, &url).await;
        if let Some(d) = s[0]["dateObserved"].as_str() {
            observed = d.to_string();
            break;
        }
    }
    assert!(observed.starts_with("2026-01-05T00:0"), "{observed:?}");
    let snap = get_json(&http, &format!("{}/api/cockpits/traffic-signals/snapshot", p.base)).await;
    let fixed_ms = 1_767_571_200_000u64; // 2026-01-05T00:00:00Z
    let now = snap["now"].as_u64().unwrap();
    assert!((fixed_ms..fixed_ms + 600_000).contains(&now), "{now}");
}

#[test]
fn a_clock_that_is_not_an_instant_is_refused_with_an_example() {
    let out = Command::new(BIN)
        .args(["serve", "--clock", "tomorrow morning"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'tomorrow morning' is not an RFC 3339 instant"), "{err}");
}

/// An open notification stream (SSE) must not keep a SIGTERM'd server alive.
#[tokio::test]
async fn sigterm_ends_open_notification_streams_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(&dir);
    let mut p = spawn(&["serve", "--listen", "127.0.0.1:0", "--db", &db], &[]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ngsi-ld/v1/subscriptions", p.base))
        .header("content-type", "application/json")
        .body(
            r#"{"id": "urn:ngsi-ld:Subscription:s1", "type": "Subscription", "entities": [{"type": "Thing"}],
                "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}}}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let mut stream = http
        .get(format!(
            "{}/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:s1/stream",
            p.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The stream ends (the body finishes) and the process exits.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended");
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = p.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.expect("exits after SIGTERM").success());
}

/// `--history-retention` drops the history observed before the limit (at
/// start, then every minute); the entity and the newer history stay.
#[tokio::test]
async fn history_past_its_retention_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(&dir);
    let http = reqwest::Client::new();
    let temporal = |base: &str| format!("{base}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Thing:r?attrs=n");
    let count = |v: &Value| {
        let n = &v["n"];
        n.as_array().map_or(usize::from(n.is_object()), Vec::len)
    };
    {
        let p = spawn(&["serve", "--listen", "127.0.0.1:0", "--db", &db], &[]);
        let r = http
            .post(format!("{}/ngsi-ld/v1/entities", p.base))
            .header("content-type", "application/json")
            .body(r#"{"id": "urn:ngsi-ld:Thing:r", "type": "Thing", "n": {"type": "Property", "value": 1, "observedAt": "2020-01-01T00:00:00Z"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .patch(format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:Thing:r/attrs", p.base))
            .header("content-type", "application/json")
            .body(r#"{"n": {"type": "Property", "value": 2}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(
            count(&get_json(&http, &temporal(&p.base)).await),
            2,
            "both kept without a retention"
        );
    }
    let p = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--db", &db],
        &[("CITYBRAIN_HISTORY_RETENTION", "1h")],
    );
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = count(&get_json(&http, &temporal(&p.base)).await);
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "the 2020 observation went, today's stayed");
    let e = get_json(&http, &format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:Thing:r", p.base)).await;
    assert_eq!(e["n"]["value"], 2, "the entity stays: {e}");
}

#[test]
fn a_retention_that_is_not_a_duration_is_refused_with_an_example() {
    let out = Command::new(BIN)
        .args(["serve", "--history-retention", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'soon' is not a duration like 90m, 6h or 30days"), "{err}");
}

#[test]
fn rules_test_runs_the_shipped_cases_and_a_failing_case_fails_the_command() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let out = Command::new(BIN).args(["rules", "test", root]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" passed, 0 failed"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{root}/basic-income.yaml"),
        dir.path().join("basic-income.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("basic-income.test.yaml"),
        "- name: a wrong expectation\n  on: 2016-01-01\n  input: {birth: 1980-01-01}\n  expect: {outcome: not_eligible}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("basic-income.test.yaml:1 basic-income a wrong expectation"),
        "{text}"
    );
    assert!(text.contains("outcome: expected NotEligible, got Eligible"), "{text}");
}

#[test]
fn rules_check_names_file_line_and_clause_and_decide_explains() {
    let dir = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let text = std::fs::read_to_string(format!("{root}/basic-income.yaml")).unwrap();
    std::fs::write(
        dir.path().join("basic-income.yaml"),
        text.replace("cel: age >= age_of_majority", "cel: age >= 'eighteen'"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("basic-income.yaml:") && err.contains("clause 'adult': cannot compare int with string by '>='"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args([
            "rules",
            "decide",
            "basic-income",
            "--on",
            "2016-01-01",
            "--dir",
            root,
            "--input",
            r#"{"birth": "1980-01-01", "salary": 0}"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["outcome"], "eligible");
    assert_eq!(d["amount"], 600.0);
    assert_eq!(d["clauses"][0]["id"], "age");
    assert_eq!(d["clauses"][0]["value"], 36);
    assert_eq!(d["parameters"][0]["name"], "age_of_majority");
    assert_eq!(d["parameters"][0]["in_force_since"], "1971-01-01");
}
