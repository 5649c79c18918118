//! `citybrain bench services`: bundle instances per second through the
//! whole engine on the embedded default: each newborn bundle (five
//! department steps, one rule decided over the household's members, five
//! documents and a notification) and each restaurant bundle (four steps,
//! two officer reviews, so three commits) is started and finished against
//! a real hub on a SQLite file, every state change committed before the
//! next call. The reference is Zeebe's weekly benchmark: 150 process
//! instances/s on 3 brokers of 1.35 CPU each (../shared/design/services.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use citybrain_hub::{BatchOp, Hub, HubConfig, RequestContext};
use citybrain_rules::PolicySet;
use citybrain_services::{Actor, ActorKind, Catalog, InstanceStatus};
use citybrain_services_hub::{Services, Settings};
use citybrain_store_sqlite::SqliteStore;
use serde_json::{json, Value};

pub struct ServicesBench {
    pub policies: PathBuf,
    pub services: PathBuf,
    /// Instances per bundle kind.
    pub bundles: usize,
    /// Concurrent callers.
    pub concurrency: usize,
    pub json: bool,
}

/// The zeebe figure the target is named after.
pub const ZEEBE_INSTANCES_PER_S: f64 = 150.0;

fn p(v: Value) -> Value {
    json!({"type": "Property", "value": v})
}

fn families(n: usize) -> Vec<Value> {
    (0..n)
        .flat_map(|i| {
            let h = format!("urn:ngsi-ld:Household:b{i}");
            [
                json!({"id": h, "type": "Household", "district": p(json!("Futian"))}),
                json!({"id": format!("urn:ngsi-ld:Person:b{i}a"), "type": "Person", "householdRole": p(json!("head")),
                       "registeredResident": p(json!(true)), "household": {"type": "Relationship", "object": h}}),
                json!({"id": format!("urn:ngsi-ld:Person:b{i}b"), "type": "Person", "householdRole": p(json!("partner")),
                       "registeredResident": p(json!(false)), "household": {"type": "Relationship", "object": h}}),
            ]
        })
        .collect()
}

fn restaurants(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("urn:ngsi-ld:Organization:b{i}"), "type": "Organization", "name": p(json!(format!("Restaurant {i}"))),
                   "district": p(json!("Futian")), "taxArrears": p(json!(false)),
                   "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [114.05, 22.54]}}})
        })
        .collect()
}

struct Run {
    instances: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn per_s(&self) -> f64 {
        self.instances as f64 / self.seconds
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// Runs `one(i)` for i in 0..n on `concurrency` tasks; each returns its latency.
async fn drive<F, Fut>(n: usize, concurrency: usize, one: F) -> Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Duration>> + Send,
{
    let one = Arc::new(one);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (one, next) = (one.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return Ok::<_, anyhow::Error>(lat);
                }
                lat.push(one(i).await?.as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Run {
        instances: n,
        seconds,
        p50_ms: percentile(&mut lat, 0.5),
        p99_ms: percentile(&mut lat, 0.99),
    })
}

pub async fn run(cfg: ServicesBench) -> Result<()> {
    let policies =
        Arc::new(PolicySet::load(&cfg.policies).with_context(|| format!("loading {}", cfg.policies.display()))?);
    let catalog =
        Catalog::load(&cfg.services, &policies).with_context(|| format!("loading {}", cfg.services.display()))?;
    for b in ["newborn", "opening-a-restaurant"] {
        anyhow::ensure!(
            catalog.bundles.contains_key(b),
            "{} has no bundle {b}",
            cfg.services.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite:{}", dir.path().join("services.db").display());
    let store = Arc::new(SqliteStore::open_url(&db)?);
    let hub = Hub::start(store, HubConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = cfg.bundles.max(1);
    for chunk in families(n).chunks(999).chain(restaurants(n).chunks(999)) {
        let r = hub
            .batch_write("", chunk, &RequestContext::core(), BatchOp::Upsert { replace: true })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(r.errors.is_empty(), "loading the subjects: {:?}", r.errors.first());
    }
    let svc = Services::open(hub.clone(), catalog, policies, Settings::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !cfg.json {
        println!(
            "services benchmark: {n} instances per bundle, {} concurrent callers, SQLite (WAL, synchronous=normal) in {}",
            cfg.concurrency,
            dir.path().display()
        );
    }
    let system = Actor::system();
    let s = svc.clone();
    let newborn = drive(n, cfg.concurrency, move |i| {
        let (s, system) = (s.clone(), system.clone());
        async move {
            let t = Instant::now();
            let inst = s
                .start_bundle(&system, "newborn", &format!("urn:ngsi-ld:Household:b{i}"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                inst.status == InstanceStatus::Completed,
                "newborn {i} ended {:?}",
                inst.status
            );
            Ok(t.elapsed())
        }
    })
    .await?;
    let officer = Actor {
        id: "bench-officer".into(),
        kind: ActorKind::Officer,
        departments: vec!["market-regulation".into(), "fire-rescue".into()],
        subject: None,
    };
    let s = svc.clone();
    let restaurant = drive(n, cfg.concurrency, move |i| {
        let (s, officer) = (s.clone(), officer.clone());
        async move {
            let t = Instant::now();
            let firm = format!("urn:ngsi-ld:Organization:b{i}");
            let inst = s
                .start_bundle(&Actor::system(), "opening-a-restaurant", &firm)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for step in ["food-permit", "fire-safety"] {
                s.review_step(&officer, &inst.id, step, true, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let done = s.instance(&inst.id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                done.status == InstanceStatus::Completed,
                "restaurant {i} ended {:?}",
                done.status
            );
            Ok(t.elapsed())
        }
    })
    .await?;
    let report = |name: &str, r: &Run, commits: usize| {
        json!({"bundle": name, "instances": r.instances, "seconds": r.seconds, "instances_per_s": r.per_s(),
               "commits_per_instance": commits, "latency_ms_p50": r.p50_ms, "latency_ms_p99": r.p99_ms,
               "ratio_vs_zeebe_150_per_s": r.per_s() / ZEEBE_INSTANCES_PER_S})
    };
    let out = json!({"machine_threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                     "concurrency": cfg.concurrency,
                     "runs": [report("newborn", &newborn, 1), report("opening-a-restaurant", &restaurant, 3)]});
    if cfg.json {
        println!("{out}");
    } else {
        println!(
            "{:<22} {:>9} {:>9} {:>12} {:>9} {:>9} {:>10}",
            "bundle", "instances", "seconds", "instances/s", "p50 ms", "p99 ms", "vs Zeebe"
        );
        for r in out["runs"].as_array().into_iter().flatten() {
            println!(
                "{:<22} {:>9} {:>9.2} {:>12.0} {:>9.2} {:>9.2} {:>9.1}x",
                r["bundle"].as_str().unwrap_or_default(),
                r["instances"],
                r["seconds"].as_f64().unwrap_or(0.0),
                r["instances_per_s"].as_f64().unwrap_or(0.0),
                r["latency_ms_p50"].as_f64().unwrap_or(0.0),
                r["latency_ms_p99"].as_f64().unwrap_or(0.0),
                r["ratio_vs_zeebe_150_per_s"].as_f64().unwrap_or(0.0)
            );
        }
        println!("(Zeebe: 150 process instances/s on 3 brokers of 1.35 CPU; ours: one process, every state change committed)");
    }
    for (name, r) in [("newborn", &newborn), ("opening-a-restaurant", &restaurant)] {
        anyhow::ensure!(
            r.per_s() >= ZEEBE_INSTANCES_PER_S,
            "{name}: {:.0} bundle instances/s is below the target of {ZEEBE_INSTANCES_PER_S}",
            r.per_s()
        );
    }
    hub.close_streams();
    Ok(())
}
