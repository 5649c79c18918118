//! `citybrain bench appeals`: a 12345 hotline's load. Beijing's 12345
//! handled 11 M contacts in 2020, about 30,000 a day.
//!
//! Two runs:
//! - **filing and routing at scale** (default 1,000,000 appeals): each
//!   synthetic appeal is checked, classified when it has no category (one
//!   in three), placed in its area, routed by the table, searched for
//!   duplicates nearby (the text index: BM25 over jieba tokens inside a box,
//!   then distance and token overlap), and added to the index (searchable at once from a buffer,
//!   written to a segment every 10,000, as the hub does). Reports appeals/s
//!   and the duplicate search's p50/p99.
//! - **through the hub** (default 5,000): the same appeals filed through
//!   `citybrain-appeals-hub` on a SQLite file, each stored with its first
//!   update and searchable before the call returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use citybrain_appeals::appeal::Channel;
use citybrain_appeals::intake;
use citybrain_appeals::text::Indexed;
use citybrain_appeals::{Actor, ActorKind, Appeal, AppealsConfig, Filing, Location, TextIndex};
use citybrain_appeals_hub::{Appeals, Settings};
use citybrain_hub::{Hub, HubConfig};
use citybrain_store_sqlite::SqliteStore;
use rand::{Rng, SeedableRng};
use serde_json::json;

pub struct AppealsBench {
    pub appeals_dir: PathBuf,
    /// Appeals filed and routed in memory.
    pub appeals: usize,
    /// Appeals filed through the hub on SQLite (0: skip).
    pub through_hub: usize,
    pub json: bool,
}

/// What people write, per category (with the place words below).
const TEXTS: &[(&str, &[&str])] = &[
    (
        "streetlight",
        &[
            "路灯不亮",
            "路灯坏了晚上很黑",
            "灯杆歪了",
            "street light out",
            "路灯白天一直亮着",
        ],
    ),
    (
        "road-damage",
        &["路面有个大坑", "井盖松动", "人行道地砖破损", "pothole on the road"],
    ),
    (
        "sanitation",
        &["垃圾没人清运", "垃圾桶满了", "有人乱扔垃圾", "rubbish not collected"],
    ),
    (
        "illegal-parking",
        &["车辆违停占道", "消防通道被堵", "car parked on the pavement"],
    ),
    (
        "noise",
        &["夜间施工噪音扰民", "广场舞太吵", "noise at night from construction"],
    ),
    ("water-supply", &["小区停水了", "水管爆管漏水", "自来水发黄"]),
    (
        "policy-question",
        &[
            "小微企业租金补贴怎么申请",
            "人才补贴的申请条件是什么",
            "稳岗补贴什么时候发放",
        ],
    ),
    ("market-complaint", &["餐馆食品不卫生", "商家不给退款", "超市价格欺诈"]),
    (
        "traffic-signal",
        &["路口红绿灯坏了", "信号灯配时太短", "traffic light stuck on red"],
    ),
];
const PLACES: &[&str] = &[
    "公交站旁边",
    "小区门口",
    "学校附近",
    "医院东门",
    "菜市场对面",
    "庆春路",
    "解放路",
    "中山路",
];

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The n-th synthetic appeal (seeded: the same every run).
fn filing(rng: &mut rand_chacha::ChaCha8Rng) -> Filing {
    let (category, texts) = TEXTS[rng.random_range(0..TEXTS.len())];
    let text = format!(
        "{}{}",
        PLACES[rng.random_range(0..PLACES.len())],
        texts[rng.random_range(0..texts.len())]
    );
    // Inside Shangcheng's outline, some in the hospital district.
    let (lat, lon) = (rng.random_range(30.20..30.30), rng.random_range(120.14..120.26));
    Filing {
        category: (!rng.random_ratio(1, 3)).then(|| category.to_string()),
        description: text,
        location: Some(Location {
            lat,
            lon,
            address: None,
        }),
        ..Filing::default()
    }
}

/// The answers a category's required questions need (the road's danger).
fn answer_questions(f: &mut Filing, category: &str) {
    f.attributes.clear();
    if category == "road-damage" {
        f.attributes.insert("danger".into(), vec!["no".into()]);
    }
}

fn public() -> Actor {
    Actor {
        id: "bench".into(),
        kind: ActorKind::Citizen,
        departments: vec![],
        subject: Some("urn:ngsi-ld:Person:bench".into()),
    }
}

pub fn in_memory(cfg: &AppealsConfig, n: usize) -> Result<serde_json::Value> {
    let index = TextIndex::new(cfg)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let by = public();
    let now = Utc::now();
    let (mut dup_ms, mut classify_ms) = (Vec::with_capacity(n), Vec::new());
    let (mut suggested, mut classified) = (0u64, 0u64);
    let bar = indicatif::ProgressBar::new(n as u64);
    let t0 = Instant::now();
    for i in 0..n {
        let mut f = filing(&mut rng);
        // Triage as the hub does it; its time is the classifier's when it had to choose.
        let t = Instant::now();
        let (category, cls, route) = intake::triage(&f, cfg, &index)?;
        if f.category.is_none() {
            classify_ms.push(t.elapsed().as_secs_f64() * 1e3);
            classified += 1;
        }
        answer_questions(&mut f, &category);
        let l = f.location.clone().expect("a location");
        let t = Instant::now();
        let similar = intake::duplicates(&index, cfg, &f.description, &category, &l, now, None)?;
        dup_ms.push(t.elapsed().as_secs_f64() * 1e3);
        suggested += u64::from(!similar.is_empty());
        let f = Filing {
            category: Some(category.clone()),
            ..f
        };
        let (a, _) = Appeal::file(
            format!("b{i}"),
            f,
            category,
            cls,
            route,
            &by,
            Channel::Api,
            None,
            cfg,
            now,
        )
        .with_context(|| format!("appeal {i}"))?;
        index.put(&Indexed {
            id: &a.id,
            category: &a.category,
            text: &a.description,
            lat: Some(l.lat),
            lon: Some(l.lon),
            open: true,
            filed: now.timestamp(),
            teach: a.classified.is_none() && citybrain_appeals::text::teaches(&a.id),
        })?;
        // As the hub does: a segment per 10,000 appeals, the rest searched from the buffer.
        if (i + 1) % 10_000 == 0 {
            index.commit()?;
        }
        if i % 1000 == 0 {
            bar.set_position(i as u64);
        }
        // Without a terminal (CI, --json into a file) the bar is hidden: a line per 100,000.
        if bar.is_hidden() && (i + 1) % 100_000 == 0 {
            let s = t0.elapsed().as_secs_f64();
            eprintln!("{} appeals in {s:.0} s ({:.0}/s so far)", i + 1, (i + 1) as f64 / s);
        }
    }
    index.commit()?;
    bar.finish_and_clear();
    let took = t0.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "appeals",
        "appeals": n,
        "seconds": took,
        "appeals_per_s": n as f64 / took,
        "per_day_at_this_rate": (n as f64 / took * 86_400.0).round(),
        "duplicate_search_p50_ms": percentile(&mut dup_ms, 0.5),
        "duplicate_search_p99_ms": percentile(&mut dup_ms, 0.99),
        "duplicates_suggested": suggested,
        "classified": classified,
        "classify_p99_ms": percentile(&mut classify_ms, 0.99),
        "indexed": index.appeals(),
    }))
}

async fn through_hub(dir: &std::path::Path, n: usize) -> Result<serde_json::Value> {
    let tmp = tempfile::tempdir()?;
    let store = SqliteStore::open(
        tmp.path().join("appeals.db"),
        citybrain_store_sqlite::Durability::Normal,
    )?;
    let hub = Hub::start(Arc::new(store), HubConfig::default()).await?;
    let appeals = Appeals::open(hub.clone(), AppealsConfig::load(dir)?, Settings::default()).await?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let by = public();
    let mut lat_ms = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let mut f = filing(&mut rng);
        // A third come without a category: the classifier chooses inside `file`.
        if let Some(c) = f.category.clone() {
            answer_questions(&mut f, &c);
        }
        let t = Instant::now();
        appeals.file(f, &by, Channel::Api).await?;
        lat_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let took = t0.elapsed().as_secs_f64();
    hub.close_streams();
    Ok(json!({
        "bench": "appeals-hub",
        "appeals": n,
        "seconds": took,
        "appeals_per_s": n as f64 / took,
        "file_p50_ms": percentile(&mut lat_ms, 0.5),
        "file_p99_ms": percentile(&mut lat_ms, 0.99),
    }))
}

pub async fn run(cfg: AppealsBench) -> Result<()> {
    let config = AppealsConfig::load(&cfg.appeals_dir)?;
    let dir = cfg.appeals_dir.clone();
    let n = cfg.appeals;
    let mem = tokio::task::spawn_blocking(move || in_memory(&config, n)).await??;
    print(&mem, cfg.json);
    if cfg.through_hub > 0 {
        let h = through_hub(&dir, cfg.through_hub).await?;
        print(&h, cfg.json);
    }
    Ok(())
}

fn print(v: &serde_json::Value, json: bool) {
    if json {
        println!("{v}");
        return;
    }
    match v["bench"].as_str() {
        Some("appeals") => println!(
            "filed and routed {} appeals in {:.1} s: {:.0} appeals/s ({:.0} a day); duplicate search p50 {:.3} ms, p99 {:.3} ms; {} with a duplicate suggested; {} classified (p99 {:.3} ms)",
            v["appeals"], v["seconds"].as_f64().unwrap_or(0.0), v["appeals_per_s"].as_f64().unwrap_or(0.0),
            v["per_day_at_this_rate"].as_f64().unwrap_or(0.0), v["duplicate_search_p50_ms"].as_f64().unwrap_or(0.0),
            v["duplicate_search_p99_ms"].as_f64().unwrap_or(0.0), v["duplicates_suggested"], v["classified"],
            v["classify_p99_ms"].as_f64().unwrap_or(0.0)
        ),
        _ => println!(
            "through the hub on SQLite: {} appeals in {:.1} s: {:.0} appeals/s; filing p50 {:.2} ms, p99 {:.2} ms",
            v["appeals"], v["seconds"].as_f64().unwrap_or(0.0), v["appeals_per_s"].as_f64().unwrap_or(0.0),
            v["file_p50_ms"].as_f64().unwrap_or(0.0), v["file_p99_ms"].as_f64().unwrap_or(0.0)
        ),
    }
}
