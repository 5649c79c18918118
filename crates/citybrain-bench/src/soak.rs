//! The soak: the real `citybrain serve` binary under steady mixed load on
//! loopback, killed with SIGKILL part-way and started again on the same
//! database, then checked: every write the server acknowledged is in the
//! entity's history, every one of them was notified at least once, the
//! server's memory stayed bounded.
//!
//! The load, per second: `write_rate` single-attribute PATCHes spread over
//! writer tasks (each owns its entities, so its values per entity only
//! grow), `read_rate` reads (queries, retrievals, temporal reads) and one
//! batch upsert of 50 entities. A subscription on every written attribute
//! sends each change to a receiver in this process.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// How the soak runs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The citybrain binary to run as the server.
    pub exe: PathBuf,
    pub seconds: u64,
    pub write_rate: u64,
    pub read_rate: u64,
    /// When, as a fraction of the run, the server is killed (None: never).
    pub kill_at: Option<f64>,
    /// The run fails when the server's resident memory passes this.
    pub max_rss_mib: u64,
}

/// What the soak measured.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub writes_lost: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub batches_acked: u64,
    pub batch_entities_lost: u64,
    pub notifications_expected: u64,
    pub notifications_received: u64,
    pub notifications_missing: u64,
    pub notification_duplicates: u64,
    pub downtime_s: f64,
    pub rss_mib_before_kill: f64,
    pub rss_mib_after_restart: f64,
    pub rss_mib_last: f64,
    pub write_p50_ms: f64,
    pub write_p99_ms: f64,
}

const WRITERS: usize = 8;
const READERS: usize = 4;
const BATCH: usize = 50;
/// Most history instances one entity may gather (the temporal page read back).
const MAX_PER_ENTITY: u64 = 800;

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(exe: &PathBuf, listen: &str, db: &str) -> Result<Server> {
    let mut child = Command::new(exe)
        .args([
            "serve",
            "--listen",
            listen,
            "--db",
            db,
            "--log",
            "warn",
            "--rate-limit",
            "0",
        ])
        .env_remove("CITYBRAIN_NO_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let out = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("citybrain listening on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("the server did not start within 60 s")?;
    Ok(Server { child })
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The receiver's record: (entity id, value) pairs and how many arrived.
#[derive(Default)]
struct Received {
    pairs: HashSet<(String, i64)>,
    total: u64,
}

async fn receiver(got: Arc<Mutex<Received>>) -> Result<String> {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/n",
        post(move |axum::Json(v): axum::Json<Value>| {
            let got = got.clone();
            async move {
                let mut g = got.lock().unwrap_or_else(|e| e.into_inner());
                for e in v["data"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(n)) = (e["id"].as_str(), e["seq"].as_i64()) {
                        g.pairs.insert((id.to_string(), n));
                        g.total += 1;
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok(format!("http://{addr}/n"))
}

/// Runs the soak and prints its figures; fails if a write or a notification was lost.
pub async fn soak(cfg: SoakConfig) -> Result<SoakReport> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite:{}", dir.path().join("soak.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}/ngsi-ld/v1");

    // An administrator's token, made the way an operator makes one.
    let out = Command::new(&cfg.exe)
        .args(["token", "create", "--db", &db, "--role", "admin", "--label", "soak"])
        .output()?;
    if !out.status.success() {
        bail!("token create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let total_writes = cfg.write_rate * cfg.seconds;
    let per_writer = (total_writes / MAX_PER_ENTITY / WRITERS as u64 + 1).max(25) as usize;
    let entity = |w: usize, k: usize| format!("urn:ngsi-ld:SoakThing:w{w}-{k:04}");

    let mut server = start_server(&cfg.exe, &listen, &db)?;
    let pid = Arc::new(AtomicU64::new(server.child.id() as u64));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()?;
    let got = Arc::new(Mutex::new(Received::default()));
    let endpoint = receiver(got.clone()).await?;

    // The entities, then the subscription to every change of `seq`.
    for w in 0..WRITERS {
        let items: Vec<Value> = (0..per_writer)
            .map(|k| json!({"id": entity(w, k), "type": "SoakThing", "seq": 0}))
            .collect();
        let r = http
            .post(format!("{base}/entityOperations/upsert"))
            .bearer_auth(&token)
            .json(&items)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating the soak entities: {}", r.status());
        }
    }
    let r = http
        .post(format!("{base}/subscriptions"))
        .bearer_auth(&token)
        .json(
            &json!({"type": "Subscription", "entities": [{"type": "SoakThing"}], "watchedAttributes": ["seq"],
            "notification": {"attributes": ["seq"], "format": "keyValues",
                "endpoint": {"uri": endpoint, "accept": "application/json"}}}),
        )
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "creating the soak subscription: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }

    let started = Instant::now();
    let end = started + Duration::from_secs(cfg.seconds);
    let acked: Arc<Mutex<Vec<(usize, usize, i64)>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let counters: Arc<[AtomicU64; 6]> = Arc::new(Default::default()); // write fail, read ok, read fail, batch ok
    let batch_last: Arc<Mutex<HashMap<usize, i64>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (http, token, base, acked, lat, counters) = (
            http.clone(),
            token.clone(),
            base.clone(),
            acked.clone(),
            lat.clone(),
            counters.clone(),
        );
        let every = Duration::from_secs_f64(WRITERS as f64 / cfg.write_rate.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: i64 = 0;
            while Instant::now() < end {
                tick.tick().await;
                n += 1;
                let k = n as usize % per_writer;
                let t0 = Instant::now();
                let r = http
                    .patch(format!("{base}/entities/urn:ngsi-ld:SoakThing:w{w}-{k:04}/attrs"))
                    .bearer_auth(&token)
                    .json(&json!({"seq": {"type": "Property", "value": n}}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 204 => {
                        lat.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(t0.elapsed().as_secs_f64() * 1e3);
                        acked.lock().unwrap_or_else(|e| e.into_inner()).push((w, k, n));
                    }
                    _ => {
                        counters[0].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for r in 0..READERS {
        let (http, token, base, counters) = (http.clone(), token.clone(), base.clone(), counters.clone());
        let every = Duration::from_secs_f64(READERS as f64 / cfg.read_rate.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i: usize = 0;
            while Instant::now() < end {
                tick.tick().await;
                i += 1;
                let w = (i + r) % WRITERS;
                let url = match i % 3 {
                    0 => format!(
                        "{base}/entities?type=SoakThing&q=seq%3E{}&limit=50&options=keyValues",
                        i % 100
                    ),
                    1 => format!("{base}/entities/urn:ngsi-ld:SoakThing:w{w}-0000"),
                    _ => format!("{base}/temporal/entities/urn:ngsi-ld:SoakThing:w{w}-0001?lastN=10"),
                };
                let ok = matches!(http.get(&url).bearer_auth(&token).send().await, Ok(r) if r.status().is_success());
                counters[if ok { 1 } else { 2 }].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        let (http, token, base, counters, batch_last) = (
            http.clone(),
            token.clone(),
            base.clone(),
            counters.clone(),
            batch_last.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n: i64 = 0;
            while Instant::now() < end {
                tick.tick().await;
                n += 1;
                let items: Vec<Value> = (0..BATCH)
                    .map(|k| json!({"id": format!("urn:ngsi-ld:SoakBatch:{k:03}"), "type": "SoakBatch", "n": n}))
                    .collect();
                let r = http
                    .post(format!("{base}/entityOperations/upsert"))
                    .bearer_auth(&token)
                    .json(&items)
                    .send()
                    .await;
                if matches!(r, Ok(r) if r.status().is_success()) {
                    counters[3].fetch_add(1, Ordering::Relaxed);
                    let mut b = batch_last.lock().unwrap_or_else(|e| e.into_inner());
                    for k in 0..BATCH {
                        b.insert(k, n);
                    }
                }
            }
        }));
    }

    // Memory, and the kill.
    let mut report = SoakReport::default();
    let kill_after = cfg.kill_at.map(|f| Duration::from_secs_f64(cfg.seconds as f64 * f));
    let mut killed = false;
    let bar = indicatif::ProgressBar::new(cfg.seconds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("soak {bar:40} {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let el = started.elapsed();
        bar.set_position(el.as_secs().min(cfg.seconds));
        let rss = rss_mib(pid.load(Ordering::Relaxed) as u32);
        if killed {
            report.rss_mib_after_restart = report.rss_mib_after_restart.max(rss);
        } else {
            report.rss_mib_before_kill = report.rss_mib_before_kill.max(rss);
        }
        report.rss_mib_last = rss;
        bar.set_message(format!("RSS {rss:.0} MiB"));
        if rss > cfg.max_rss_mib as f64 {
            bail!(
                "the server's resident memory reached {rss:.0} MiB (limit {} MiB)",
                cfg.max_rss_mib
            );
        }
        if let Some(k) = kill_after {
            if !killed && el >= k {
                // SIGKILL: no shutdown of any kind, as a crash or the OOM killer.
                server.child.kill()?;
                server.child.wait()?;
                let t0 = Instant::now();
                drop(server);
                server = start_server(&cfg.exe, &listen, &db)?;
                report.downtime_s = t0.elapsed().as_secs_f64();
                pid.store(server.child.id() as u64, Ordering::Relaxed);
                killed = true;
                bar.suspend(|| {
                    println!(
                        "killed the server (SIGKILL) at {:.0} s; up again after {:.2} s",
                        el.as_secs_f64(),
                        report.downtime_s
                    )
                });
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    bar.finish_and_clear();

    // Every acknowledged write must have been notified (wait for delivery).
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    let expected: HashSet<(String, i64)> = acked.iter().map(|(w, k, n)| (entity(*w, *k), *n)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing = {
            let g = got.lock().unwrap_or_else(|e| e.into_inner());
            expected.iter().filter(|p| !g.pairs.contains(*p)).count()
        };
        if missing == 0 || Instant::now() > deadline {
            report.notifications_missing = missing as u64;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    {
        let g = got.lock().unwrap_or_else(|e| e.into_inner());
        report.notifications_received = g.total;
        report.notification_duplicates = g.total.saturating_sub(g.pairs.len() as u64);
    }
    report.notifications_expected = expected.len() as u64;

    // Every acknowledged write must be in its entity's history.
    let mut by_entity: HashMap<String, Vec<i64>> = HashMap::new();
    for (w, k, n) in &acked {
        by_entity.entry(entity(*w, *k)).or_default().push(*n);
    }
    for (id, ns) in &by_entity {
        let url = format!("{base}/temporal/entities/{id}?attrs=seq&lastN=1000&options=temporalValues");
        let v: Value = http.get(&url).bearer_auth(&token).send().await?.json().await?;
        let seen: HashSet<i64> = v["seq"]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p[0].as_i64())
            .collect();
        report.writes_lost += ns.iter().filter(|n| !seen.contains(n)).count() as u64;
    }
    // ...and each batch entity at least at its last acknowledged value.
    let last = batch_last.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (k, n) in last {
        let url = format!("{base}/entities/urn:ngsi-ld:SoakBatch:{k:03}?options=keyValues");
        let v: Value = http.get(&url).bearer_auth(&token).send().await?.json().await?;
        if v["n"].as_i64().unwrap_or(-1) < n {
            report.batch_entities_lost += 1;
        }
    }
    let mut l = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_by(f64::total_cmp);
    report.write_p50_ms = percentile(&l, 0.5);
    report.write_p99_ms = percentile(&l, 0.99);
    report.writes_acked = acked.len() as u64;
    report.writes_failed = counters[0].load(Ordering::Relaxed);
    report.reads_ok = counters[1].load(Ordering::Relaxed);
    report.reads_failed = counters[2].load(Ordering::Relaxed);
    report.batches_acked = counters[3].load(Ordering::Relaxed);
    drop(server);
    print(&cfg, &report);
    if report.writes_lost > 0 || report.batch_entities_lost > 0 || report.notifications_missing > 0 {
        bail!(
            "the soak lost data: {} acknowledged writes, {} batch entities, {} notifications",
            report.writes_lost,
            report.batch_entities_lost,
            report.notifications_missing
        );
    }
    Ok(report)
}

fn print(cfg: &SoakConfig, r: &SoakReport) {
    println!(
        "soak: {} s, {} writes/s + {} reads/s + one {BATCH}-entity upsert/s, server killed (SIGKILL) at {}",
        cfg.seconds,
        cfg.write_rate,
        cfg.read_rate,
        cfg.kill_at
            .map_or("never".to_string(), |f| format!("{:.0} %", f * 100.0))
    );
    println!(
        "  writes acknowledged     {:>9}   lost {}   refused or failed (mostly while down) {}",
        r.writes_acked, r.writes_lost, r.writes_failed
    );
    println!(
        "  batch upserts acked     {:>9}   entities behind their last ack {}",
        r.batches_acked, r.batch_entities_lost
    );
    println!(
        "  reads                   {:>9}   failed {}",
        r.reads_ok, r.reads_failed
    );
    println!(
        "  notifications expected  {:>9}   missing {}   received {} ({} duplicates: at-least-once after the kill)",
        r.notifications_expected, r.notifications_missing, r.notifications_received, r.notification_duplicates
    );
    println!("  restart after SIGKILL   {:>9.2} s", r.downtime_s);
    println!(
        "  server RSS (MiB)        max before kill {:.0}, max after restart {:.0}, at the end {:.0}",
        r.rss_mib_before_kill, r.rss_mib_after_restart, r.rss_mib_last
    );
    println!(
        "  PATCH latency (ms)      p50 {:.2}, p99 {:.2}",
        r.write_p50_ms, r.write_p99_ms
    );
}
