//! The hub's benchmark: starts a hub on a temporary SQLite database, loads it
//! over HTTP with concurrent clients, and prints throughput and latency
//! medians and percentiles — with, in the same run, the raw SQLite insert
//! rate of the same rows as the peer to compare against.

#![forbid(unsafe_code)]

pub mod appeals;
pub mod rules;
pub mod services;
pub mod soak;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use citybrain_api::{ApiLimits, AppState};
use citybrain_hub::{Hub, HubConfig};
use citybrain_store_sqlite::SqliteStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// What `hub` loads and for how long.
#[derive(Debug, Clone)]
pub struct HubBench {
    /// Entities to load (and query over).
    pub entities: usize,
    /// Entities per batch upsert.
    pub batch: usize,
    /// Concurrent HTTP clients.
    pub clients: usize,
    /// Seconds each timed phase runs.
    pub seconds: f64,
    /// Notification phase: changes per second to drive.
    pub notify_rate: u64,
    /// Run on this PostgreSQL (in a schema of its own) instead of SQLite.
    pub postgres: Option<String>,
}

/// SplitMix64: spreads values so that every query threshold sees a realistic mix.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn entity(i: usize) -> Value {
    let h = mix(i as u64);
    json!({
        "id": format!("urn:ngsi-ld:OffStreetParking:bench-{i:07}"),
        "type": "OffStreetParking",
        "availableSpotNumber": {"type": "Property", "value": h % 500, "observedAt": "2026-11-26T08:00:00Z"},
        "totalSpotNumber": 500,
        "district": format!("d{}", (h >> 32) % 50),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.0 + (i % 1000) as f64 / 10000.0, 30.0 + (i / 1000) as f64 / 10000.0]}}
    })
}

struct Lat(Mutex<Vec<f64>>);

impl Lat {
    fn new() -> Arc<Self> {
        Arc::new(Lat(Mutex::new(Vec::new())))
    }
    fn push(&self, ms: f64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(ms);
        }
    }
    fn pct(&self) -> (usize, f64, f64) {
        let mut v = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let at = |p: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * p).round() as usize]
            }
        };
        (v.len(), at(0.5), at(0.99))
    }
}

/// Runs `clients` loops of `op` for `secs`; returns (ops/s, latencies).
async fn timed<F, Fut>(clients: usize, secs: f64, op: F) -> (f64, Arc<Lat>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let lat = Lat::new();
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, lat, counter) = (op.clone(), lat.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(i).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                i += clients;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        counter.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        lat,
    )
}

/// A hub with the API on a loopback port over a temporary SQLite file, in
/// this process, without authentication (the benchmarks measure the hub).
pub(crate) async fn serve(
    max_batch: usize,
    policies: Arc<citybrain_rules::PolicySet>,
) -> Result<(std::net::SocketAddr, Hub, tempfile::TempDir)> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = format!("sqlite:{}", dir.path().join("bench.db").display());
    let store: Arc<dyn citybrain_store::Store> = Arc::new(SqliteStore::open_url(&db)?);
    let (addr, hub) = serve_store(max_batch, policies, store).await?;
    Ok((addr, hub, dir))
}

/// The same over a given store.
pub(crate) async fn serve_store(
    max_batch: usize,
    policies: Arc<citybrain_rules::PolicySet>,
    store: Arc<dyn citybrain_store::Store>,
) -> Result<(std::net::SocketAddr, Hub)> {
    let mut cfg = HubConfig::default();
    cfg.limits.max_batch = cfg.limits.max_batch.max(max_batch);
    let auth = citybrain_api::auth::Auth::disabled(store.clone());
    let hub = Hub::start(store, cfg).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = citybrain_api::app(AppState {
        hub: hub.clone(),
        limits: ApiLimits {
            max_body_bytes: 64 << 20,
        },
        metrics: None,
        auth,
        policies,
        services: None,
        appeals: None,
    });
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
        )
        .await;
    });
    Ok((addr, hub))
}

/// Runs every phase and prints the figures.
pub async fn hub(b: HubBench) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let schema = format!("citybrain_bench_{}", std::process::id());
    let store: Arc<dyn citybrain_store::Store> = match &b.postgres {
        None => Arc::new(SqliteStore::open_url(&format!(
            "sqlite:{}",
            dir.path().join("bench.db").display()
        ))?),
        Some(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            Arc::new(
                citybrain_store_postgres::PostgresStore::connect(&format!("{url}{sep}schema={schema}"))
                    .await
                    .map_err(|e| anyhow::anyhow!("--postgres: {e}"))?,
            )
        }
    };
    let backend = store.backend();
    let (addr, _hub) = serve_store(b.batch, Arc::new(citybrain_rules::PolicySet::default()), store).await?;
    let base = format!("http://{addr}/ngsi-ld/v1");
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    println!("citybrain bench hub — on {backend}, {} entities, batches of {}, {} clients, {} s per phase, server and clients in one process", b.entities, b.batch, b.clients, b.seconds);

    // 1. Batch upsert.
    let bodies: Vec<String> = (0..b.entities.div_ceil(b.batch))
        .map(|k| Value::Array((k * b.batch..((k + 1) * b.batch).min(b.entities)).map(entity).collect()).to_string())
        .collect();
    let bodies = Arc::new(bodies);
    let pb = ProgressBar::new(b.entities as u64).with_style(
        ProgressStyle::with_template("  loading {bar:40} {pos}/{len} entities {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Lat::new();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..b.clients.min(4) {
        let (bodies, next, http, url, lat, pb) = (
            bodies.clone(),
            next.clone(),
            http.clone(),
            format!("{base}/entityOperations/upsert"),
            lat.clone(),
            pb.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(k) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "upsert failed: {}", r.status());
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                pb.inc(body.matches("\"id\"").count() as u64);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    pb.finish_and_clear();
    let upsert_rate = b.entities as f64 / t0.elapsed().as_secs_f64();
    let (_, up50, up99) = lat.pct();

    // Peer: the raw database inserting the same rows (same JSON) in transactions of the same size.
    let raw_rate = match &b.postgres {
        None => raw_sqlite(dir.path(), &bodies)?,
        Some(url) => raw_postgres(url, &schema, &bodies).await?,
    };

    // 2. PATCH one attribute.
    let n = b.entities;
    let (patch_rate, patch_lat) = {
        let (http, base) = (http.clone(), base.clone());
        timed(b.clients, b.seconds, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let id = format!("urn:ngsi-ld:OffStreetParking:bench-{:07}", (i * 7) % n);
                let r = http
                    .patch(format!("{base}/entities/{id}/attrs/availableSpotNumber"))
                    .header("Content-Type", "application/json")
                    .body(json!({"value": i % 500}).to_string())
                    .send()
                    .await;
                matches!(r, Ok(r) if r.status().is_success())
            }
        })
        .await
    };
    // 3. Retrieve.
    let (get_rate, get_lat) = {
        let (http, base) = (http.clone(), base.clone());
        timed(b.clients, b.seconds, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let id = format!("urn:ngsi-ld:OffStreetParking:bench-{:07}", (i * 13) % n);
                read_ok(http.get(format!("{base}/entities/{id}")).send().await).await
            }
        })
        .await
    };
    // 4. Query: type + q, page 20.
    let (query_rate, query_lat) = {
        let (http, base) = (http.clone(), base.clone());
        timed(b.clients, b.seconds, move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let url = format!(
                    "{base}/entities?type=OffStreetParking&q=availableSpotNumber%3E{};district==%22d{}%22&limit=20",
                    i % 400,
                    i % 50
                );
                read_ok(http.get(url).send().await).await
            }
        })
        .await
    };
    // 5. Notifications at a fixed rate.
    let (expected, delivered, n50, n99) = notifications(&http, &base, b.notify_rate, b.seconds, n).await?;

    let row = |name: &str, rate: f64, unit: &str, p50: f64, p99: f64, target: &str| {
        println!("{name:<28} {rate:>12.0} {unit:<12} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms   target {target}");
    };
    println!();
    row(
        &format!("batch upsert ({}/batch)", b.batch),
        upsert_rate,
        "entities/s",
        up50,
        up99,
        ">= 50,000 entities/s",
    );
    println!(
        "{:<28} {:>12.0} {:<12} ratio citybrain/raw = {:.2}",
        if b.postgres.is_some() {
            "raw PostgreSQL, same rows"
        } else {
            "raw SQLite, same rows"
        },
        raw_rate,
        "rows/s",
        upsert_rate / raw_rate
    );
    let (_, p50, p99) = patch_lat.pct();
    row("PATCH one attribute", patch_rate, "req/s", p50, p99, ">= 5,000/s");
    let (_, p50, p99) = get_lat.pct();
    row("retrieve by id", get_rate, "req/s", p50, p99, ">= 10,000/s");
    let (_, p50, p99) = query_lat.pct();
    row(
        "query type+q, page 20",
        query_rate,
        "req/s",
        p50,
        p99,
        ">= 3,000/s, p99 < 20 ms",
    );
    println!(
        "{:<28} {:>12} {:<12} p50 {n50:>7.2} ms  p99 {n99:>7.2} ms   target 100%, p99 < 100 ms",
        format!("notifications @{}/s", b.notify_rate),
        format!("{delivered}/{expected}"),
        "delivered"
    );
    println!(
        "\nmachine: {} logical CPUs; all figures from this one run.",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if let Some(url) = &b.postgres {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_raw CASCADE"
        ))
        .await?;
    }
    Ok(())
}

/// Raw PostgreSQL (tokio-postgres, one connection) inserting the same rows
/// in transactions of the same size, in a schema of its own.
async fn raw_postgres(url: &str, schema: &str, bodies: &[String]) -> Result<f64> {
    let (mut c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}_raw; CREATE TABLE {schema}_raw.t(id TEXT PRIMARY KEY, doc TEXT NOT NULL)"
    ))
    .await?;
    let t0 = Instant::now();
    let mut rows = 0usize;
    for b in bodies {
        let items: Vec<Value> = serde_json::from_str(b)?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare(&format!(
                "INSERT INTO {schema}_raw.t(id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc=EXCLUDED.doc"
            ))
            .await?;
        for e in &items {
            tx.execute(&st, &[&e["id"].as_str().unwrap_or_default(), &e.to_string()])
                .await?;
            rows += 1;
        }
        tx.commit().await?;
    }
    Ok(rows as f64 / t0.elapsed().as_secs_f64())
}

async fn read_ok(r: reqwest::Result<reqwest::Response>) -> bool {
    match r {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

fn raw_sqlite(dir: &std::path::Path, bodies: &[String]) -> Result<f64> {
    let mut c = rusqlite::Connection::open(dir.join("raw.db"))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t(id TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    )?;
    let t0 = Instant::now();
    let mut rows = 0usize;
    for b in bodies {
        let items: Vec<Value> = serde_json::from_str(b)?;
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO t(id, doc) VALUES (?1, ?2)")?;
            for e in &items {
                st.execute(rusqlite::params![e["id"].as_str().unwrap_or_default(), e.to_string()])?;
                rows += 1;
            }
        }
        tx.commit()?;
    }
    Ok(rows as f64 / t0.elapsed().as_secs_f64())
}

/// Drives `rate` changes/s for `secs` on entities a subscription watches;
/// a local receiver measures delivery latency from the time stamped in each change.
async fn notifications(
    http: &reqwest::Client,
    base: &str,
    rate: u64,
    secs: f64,
    n: usize,
) -> Result<(u64, u64, f64, f64)> {
    let received = Arc::new(AtomicU64::new(0));
    let lat = Lat::new();
    let epoch = Instant::now();
    let (r2, l2) = (received.clone(), lat.clone());
    let recv = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (r2, l2) = (r2.clone(), l2.clone());
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    for d in v["data"].as_array().into_iter().flatten() {
                        if let Some(sent) = d["benchSentAt"]["value"].as_f64() {
                            l2.push(epoch.elapsed().as_secs_f64() * 1000.0 - sent);
                            r2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let raddr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, recv).await;
    });
    let sub = json!({"type": "Subscription", "entities": [{"type": "OffStreetParking"}], "watchedAttributes": ["benchSentAt"],
        "notification": {"endpoint": {"uri": format!("http://{raddr}/notify")}, "attributes": ["benchSentAt"]}});
    let r = http
        .post(format!("{base}/subscriptions"))
        .header("Content-Type", "application/json")
        .body(sub.to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "subscription refused: {}", r.status());
    let total = (rate as f64 * secs) as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let (http, base) = (http.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let id = format!("urn:ngsi-ld:OffStreetParking:bench-{:07}", (i as usize * 31) % n);
            let sent = epoch.elapsed().as_secs_f64() * 1000.0;
            let _ = http
                .post(format!("{base}/entities/{id}/attrs"))
                .header("Content-Type", "application/json")
                .body(json!({"benchSentAt": {"type": "Property", "value": sent}}).to_string())
                .send()
                .await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Give the last notifications up to 5 s to arrive.
    let wait = Instant::now();
    while received.load(Ordering::Relaxed) < total && wait.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, p50, p99) = lat.pct();
    Ok((total, received.load(Ordering::Relaxed), p50, p99))
}
