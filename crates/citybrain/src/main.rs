//! `citybrain` — the command line. Wiring only: it reads configuration,
//! opens the store the `--db` URL names, starts the hub, the HTTP server and
//! live mode (`citybrain-live`), and hands the `scenario`, `sim` and `bench`
//! subcommands to the crates that do the work.

#![forbid(unsafe_code)]

mod bench;
mod config;
mod rules;
mod runs;
mod scenario;
mod sim;
mod trust;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use citybrain_api::{ApiLimits, AppState};
use citybrain_hub::{BatchOp, Hub, RequestContext};
use citybrain_store::Store;
use citybrain_store_sqlite::SqliteStore;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::ServeArgs;

// The hub allocates and frees many small JSON maps per request; mimalloc
// measured markedly faster than the system allocator for that (see README, benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// citybrain — an open-source City Brain.
///
/// A city data hub that speaks the FIWARE NGSI-LD API (entities, history,
/// subscriptions), on an embedded SQLite file by default.
///
/// Start here:  citybrain demo      (hub with a small hospital-district data set)
///              citybrain serve     (an empty hub)
///              citybrain bench hub (measure the hub on this machine)
#[derive(Parser)]
#[command(name = "citybrain", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: NGSI-LD API on --listen, data in --db.
    Serve(ServeArgs),
    /// Like serve, on its own database (sqlite:./citybrain-demo.db), with a
    /// small hospital-district data set loaded; prints where to look.
    Demo(ServeArgs),
    /// Run the traffic twin on SUMO files: citybrain sim -n net.xml -r routes.xml
    Sim(sim::SimArgs),
    /// Scenarios on the twin, policy against policy over seeds:
    /// citybrain scenario run signal-corridor --seeds 10
    Scenario {
        #[command(subcommand)]
        what: scenario::ScenarioCommand,
    },
    /// Bring a database to this version's schema (serve and demo do it on
    /// start too): citybrain migrate --db postgres://citybrain@127.0.0.1/citybrain
    Migrate {
        /// The database: sqlite:PATH or postgres://USER@HOST:PORT/DB
        #[arg(long, env = "CITYBRAIN_DB", default_value = "sqlite:./citybrain.db")]
        db: String,
    },
    /// Benchmarks that print ratios against a peer measured in the same run.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// API tokens (stored as Argon2id hashes):
    /// citybrain token create --role officer --department transport
    Token {
        #[command(subcommand)]
        what: trust::TokenCommand,
    },
    /// The hash-chained audit log: citybrain audit verify
    Audit {
        #[command(subcommand)]
        what: trust::AuditCommand,
    },
    /// Rules as code (policies/*.yaml): check them, run their test cases,
    /// decide one situation with its explanation: citybrain rules test
    Rules {
        #[command(subcommand)]
        what: rules::RulesCommand,
    },
    /// Cockpits (dashboards defined as files in dashboards/):
    /// citybrain cockpit check dashboards/*.json
    Cockpit {
        #[command(subcommand)]
        what: CockpitCommand,
    },
}

#[derive(Subcommand)]
enum CockpitCommand {
    /// Check cockpit definitions; prints each problem as FILE: FIELD: what is wrong,
    /// and exits with 1 if any file has one.
    Check {
        /// Definition files (JSON).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

fn cockpit(cmd: CockpitCommand) -> Result<()> {
    let CockpitCommand::Check { files } = cmd;
    let mut bad = 0;
    for f in &files {
        if f.file_name().is_some_and(|n| n == "schema.json") {
            println!("{}: the schema (skipped)", f.display());
            continue;
        }
        let result = std::fs::metadata(f)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.len() as usize > citybrain_cockpit::definition::MAX_FILE_BYTES {
                    Err(format!(
                        "larger than {} bytes",
                        citybrain_cockpit::definition::MAX_FILE_BYTES
                    ))
                } else {
                    std::fs::read_to_string(f).map_err(|e| e.to_string())
                }
            })
            .and_then(|text| citybrain_cockpit::parse(&text).map_err(|e| e.to_string()));
        match result {
            Ok(d) => println!("{}: ok ({}, {} panels)", f.display(), d.uid, d.panels.len()),
            Err(e) => {
                bad += 1;
                println!("{}: {e}", f.display());
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} of {} definition(s) have problems", files.len());
        std::process::exit(1);
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The twin is synchronous: no async runtime (and its threads and memory) for it.
    let cli = match cli.command {
        Command::Sim(args) => return sim::run(args),
        Command::Scenario { what } => return scenario::run(what),
        Command::Cockpit { what } => return cockpit(what),
        Command::Rules { what } => return rules::run(what),
        other => Cli { command: other },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args, false).await,
            Command::Demo(args) => serve(args, true).await,
            Command::Bench { what } => bench::run(what).await,
            Command::Token { what } => trust::token_command(what).await,
            Command::Audit { what } => trust::audit_command(what).await,
            Command::Migrate { db } => migrate(&db).await,
            Command::Sim(_) | Command::Scenario { .. } | Command::Cockpit { .. } | Command::Rules { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    })
}

/// The rules decisions are made by; a folder that does not exist is no rules.
fn load_policies(dir: &std::path::Path) -> Result<citybrain_rules::PolicySet> {
    if !dir.is_dir() {
        tracing::info!(dir = %dir.display(), "no policies folder: decisions are off until one is given (--policies)");
        return Ok(citybrain_rules::PolicySet::default());
    }
    let set = citybrain_rules::PolicySet::load(dir)?;
    tracing::info!(dir = %dir.display(), policies = set.policies.len(), "policies loaded");
    Ok(set)
}

/// The services of a folder, over the hub, with their background work
/// started; None when the folder does not exist.
async fn open_services(
    hub: &Hub,
    dir: &std::path::Path,
    policies: &Arc<citybrain_rules::PolicySet>,
) -> Result<Option<citybrain_services_hub::Services>> {
    if !dir.is_dir() {
        tracing::info!(dir = %dir.display(), "no services folder: the services are off (--services)");
        return Ok(None);
    }
    let catalog = citybrain_services::Catalog::load(dir, policies)?;
    tracing::info!(
        dir = %dir.display(),
        services = catalog.services.len(),
        bundles = catalog.bundles.len(),
        "services loaded"
    );
    let svc = citybrain_services_hub::Services::open(hub.clone(), catalog, policies.clone(), Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("services: {e}"))?;
    svc.spawn();
    Ok(Some(svc))
}

/// The appeals of a folder, over the hub, with their timers and metrics
/// started; None when the folder does not exist.
async fn open_appeals(hub: &Hub, dir: &std::path::Path) -> Result<Option<citybrain_appeals_hub::Appeals>> {
    if !dir.is_dir() {
        tracing::info!(dir = %dir.display(), "no appeals folder: the appeals are off (--appeals)");
        return Ok(None);
    }
    let config = citybrain_appeals::AppealsConfig::load(dir)?;
    tracing::info!(
        dir = %dir.display(),
        categories = config.categories.len(),
        departments = config.departments.len(),
        drafts = config.drafts.len(),
        "appeals loaded"
    );
    let appeals = citybrain_appeals_hub::Appeals::open(hub.clone(), config, Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("appeals: {e}"))?;
    let published = appeals
        .publish_shipped()
        .await
        .map_err(|e| anyhow::anyhow!("appeals: the drafts of {}/consultations: {e}", dir.display()))?;
    if published > 0 {
        tracing::info!(published, "drafts put up for public consultation");
    }
    appeals.spawn();
    Ok(Some(appeals))
}

/// The demo's synthetic city (`citybrain-synthcity`), once per database:
/// people in households and enterprises; the services' watcher grants the
/// proactive benefits as they arrive.
async fn load_city(hub: &Hub, svc: &citybrain_services_hub::Services, people: usize) -> Result<()> {
    use citybrain_synthcity::{City, CityConfig};
    let marker = City::person_id(0);
    if hub.retrieve_entity("", &marker).await.is_ok() {
        tracing::info!("the synthetic city is already in the database");
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let city = City::generate(CityConfig {
        people,
        enterprises: people / 5,
        ..CityConfig::default()
    });
    let core = RequestContext::core();
    let ctx = &core;
    let mut batch = Vec::with_capacity(1000);
    let flush = |batch: Vec<serde_json::Value>| async move {
        let r = hub
            .batch_write("", &batch, ctx, BatchOp::Upsert { replace: true })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(e) = r.errors.first() {
            bail!("synthetic entity {} was refused: {}", e.entity_id, e.error);
        }
        Ok(())
    };
    let (n_people, n_households) = (city.people.birth.len(), city.households.start.len().saturating_sub(1));
    let entities = (0..n_households)
        .map(|h| city.household_entity(h))
        .chain((0..city.enterprises.len()).map(|e| city.enterprise_entity(e)))
        // The first person last: it marks the city as loaded.
        .chain((1..n_people).map(|i| city.person_entity(i)))
        .chain(std::iter::once(city.person_entity(0)));
    for e in entities {
        batch.push(e);
        if batch.len() == 1000 {
            flush(std::mem::take(&mut batch)).await?;
        }
    }
    flush(batch).await?;
    tracing::info!(
        people = n_people,
        households = n_households,
        enterprises = city.enterprises.len(),
        seconds = t0.elapsed().as_secs_f64(),
        "synthetic city loaded"
    );
    svc.full_pass().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Opens the backend the URL scheme names (migrating it to this version's schema).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open_url(url)?));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = citybrain_store_postgres::PostgresStore::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("--db {}: {e}", redact_url(url)))?;
        return Ok(Arc::new(store));
    }
    bail!("--db {url}: unknown database URL scheme (expected sqlite:PATH, e.g. sqlite:./citybrain.db, or postgres://USER@HOST:PORT/DB)")
}

/// A database URL without its password, for messages and logs.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => {
                let user = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `citybrain migrate`: brings the database to this version's schema and says what it did.
async fn migrate(db: &str) -> Result<()> {
    if db.starts_with("postgres:") || db.starts_with("postgresql:") {
        let store = citybrain_store_postgres::PostgresStore::connect(db)
            .await
            .map_err(|e| anyhow::anyhow!("--db {}: {e}", redact_url(db)))?;
        // connect migrates; a second look reports the schema is current.
        let more = store.migrate().await?;
        println!(
            "{}: the schema is current{}",
            redact_url(db),
            if more.is_empty() { "" } else { " (migrated)" }
        );
        return Ok(());
    }
    open_store(db).await?;
    println!("{db}: the schema is current");
    Ok(())
}

async fn serve(mut args: ServeArgs, demo: bool) -> Result<()> {
    config::init_tracing(&args);
    if let Some(start) = args.clock {
        citybrain_hub::clock::fix(start);
    }
    if demo && args.db.is_none() {
        args.db = Some("sqlite:./citybrain-demo.db".into());
    }
    let db = args.db.clone().unwrap_or_else(|| "sqlite:./citybrain.db".into());
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let auth_config = args.trust.auth_config()?;
    if !auth_config.enabled {
        trust::warn_no_auth();
    }
    let store = open_store(&db).await?;
    let auth = citybrain_api::auth::Auth::new(auth_config, store.clone())
        .await
        .map_err(|e| anyhow::anyhow!("authentication: {e}"))?;
    let mut hub_config = args.hub_config()?;
    if demo && args.history_retention.is_none() {
        hub_config.history_retention = Some(config::DEMO_HISTORY_RETENTION);
    }
    let hub = Hub::start(store, hub_config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    if demo {
        let n = load_demo(&hub).await?;
        print_demo_help(addr, n);
        if auth.enabled() {
            demo_tokens(&hub, auth.policy()).await?;
        }
    }
    let live = args.live.clone().unwrap_or_else(|| {
        if demo {
            "signal-corridor,hospital-district".into()
        } else {
            "none".into()
        }
    });
    let scenarios: Vec<&str> = live
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "none")
        .collect();
    let speedup_ok = args.live_speedup > 0.0 && args.live_speedup <= 100_000.0;
    if !scenarios.is_empty() && !speedup_ok {
        bail!("--live-speedup must be in (0, 100000]");
    }
    for name in &scenarios {
        if !["signal-corridor", "hospital-district"].contains(name) {
            bail!("--live: unknown scenario '{name}' (signal-corridor, hospital-district, none)");
        }
    }
    for name in scenarios {
        match name {
            "signal-corridor" => {
                let policy = args
                    .live_policy
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--live-policy: {e}"))?;
                citybrain_live::signal_corridor::start(
                    hub.clone(),
                    citybrain_live::signal_corridor::LiveOptions {
                        policy,
                        speedup: args.live_speedup,
                        seed: 1,
                        start_at_s: Some(args.live_corridor_start),
                    },
                )?;
                println!(
                    "live: signal-corridor at {}x real time ({} signals); TrafficFlowObserved and TrafficSignal entities in the hub",
                    args.live_speedup, args.live_policy
                );
            }
            _ => {
                let measures = args
                    .live_hospital_policy
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--live-hospital-policy: {e}"))?;
                citybrain_live::hospital_district::start(
                    hub.clone(),
                    citybrain_live::hospital_district::LiveOptions {
                        measures,
                        speedup: args.live_speedup,
                        seed: 1,
                        start_at_s: Some(args.live_hospital_start),
                    },
                )?;
                println!(
                    "live: hospital-district at {}x real time ({}); OffStreetParking and TrafficFlowObserved entities in the hub",
                    args.live_speedup, args.live_hospital_policy
                );
            }
        }
    }
    tracing::info!(%addr, db = %db, "citybrain hub listening");
    // A line a script can wait for.
    println!("citybrain listening on http://{addr}");
    let dashboards = args.dashboards.clone().or_else(|| {
        let d = std::path::PathBuf::from("dashboards");
        d.is_dir().then_some(d)
    });
    if let Some(d) = &dashboards {
        if !d.is_dir() {
            bail!("--dashboards {}: not a folder", d.display());
        }
    }
    let cockpits = citybrain_cockpit_web::Cockpits::start(hub.clone(), dashboards.clone());
    let rules_dir = args.alert_rules.clone().or_else(|| {
        let d = std::path::PathBuf::from("alerts");
        d.is_dir().then_some(d)
    });
    let n_rules = cockpits.load_rules(rules_dir.as_deref()).context("alert rules")?;
    tracing::info!(rules = n_rules, "alert rules loaded");
    if demo {
        println!("cockpits (wall; add ?mode=phone or ?lang=en):");
        for d in cockpits.definitions() {
            println!("  http://{addr}/cockpit/{}   {} · {}", d.uid, d.title.zh, d.title.en);
        }
        println!(
            "  (definitions: {})\n",
            dashboards
                .as_ref()
                .map_or("built in".to_string(), |d| d.display().to_string())
        );
    }
    let policies = Arc::new(load_policies(&args.policies)?);
    let services = open_services(&hub, &args.services, &policies).await?;
    if let (true, Some(svc)) = (demo, &services) {
        println!(
            "services: the portal at http://{addr}/portal (log in with a token below); the API at http://{addr}/api/v1/ (http://{addr}/api/v1/openapi.json)\n"
        );
        if args.demo_city > 0 {
            let (hub, svc, people) = (hub.clone(), svc.clone(), args.demo_city);
            tokio::spawn(async move {
                if let Err(e) = load_city(&hub, &svc, people).await {
                    tracing::error!("loading the synthetic city: {e}");
                }
            });
        }
    }
    let appeals = open_appeals(&hub, &args.appeals).await?;
    if let (true, Some(_)) = (demo, &appeals) {
        println!(
            "appeals (12345): file one and read the public board at http://{addr}/appeals (the API at http://{addr}/api/v1/appeals); Open311 GeoReport v2 at http://{addr}/open311/v2/services.json\n"
        );
    }
    let state = AppState {
        hub,
        limits: ApiLimits {
            max_body_bytes: args.max_body_bytes,
        },
        metrics,
        auth,
        policies,
        services,
        appeals,
    };
    let cockpits_closing = cockpits.clone();
    let hub_closing = state.hub.clone();
    let app = citybrain_api::app_with(state, citybrain_cockpit_web::router(cockpits));
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Open streams never end by themselves: end them so the shutdown
        // completes once requests in flight are done.
        cockpits_closing.close_streams();
        hub_closing.close_streams();
    })
    .await
    .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

const DEMO_DATA: &str = include_str!("../../../data/demo/hospital-district-hub.json");
const DEMO_PEOPLE: &str = include_str!("../../../data/demo/people.json");
const DEMO_SERVICES: &str = include_str!("../../../data/demo/services.json");

/// The demo's roles: (label, role, departments, subject).
type DemoRole = (
    &'static str,
    citybrain_trust::Role,
    &'static [&'static str],
    Option<&'static str>,
);
const DEMO_ROLES: &[DemoRole] = &[
    ("demo admin", citybrain_trust::Role::Admin, &[], None),
    (
        "demo transport officer",
        citybrain_trust::Role::Officer,
        &["transport"],
        None,
    ),
    ("demo health officer", citybrain_trust::Role::Officer, &["health"], None),
    (
        "demo citizen",
        citybrain_trust::Role::Citizen,
        &[],
        Some("urn:ngsi-ld:Person:demo-citizen-1"),
    ),
    (
        "demo enterprise",
        citybrain_trust::Role::Enterprise,
        &[],
        Some("urn:ngsi-ld:Organization:demo-enterprise-1"),
    ),
    // The services' demo: an officer deciding reviews, a graduate applying,
    // a parent confirming the newborn bundle, a restaurant opening.
    (
        "demo services officer",
        citybrain_trust::Role::Officer,
        &["civil-affairs", "market-regulation", "fire-rescue"],
        None,
    ),
    (
        "demo graduate",
        citybrain_trust::Role::Citizen,
        &[],
        Some("urn:ngsi-ld:Person:demo-graduate"),
    ),
    (
        "demo parent",
        citybrain_trust::Role::Citizen,
        &[],
        Some("urn:ngsi-ld:Person:demo-parent"),
    ),
    (
        "demo restaurant",
        citybrain_trust::Role::Enterprise,
        &[],
        Some("urn:ngsi-ld:Organization:demo-restaurant"),
    ),
    // The appeals' demo: the district bureau that answers street appeals
    // near the hospital, and the city office late ones escalate to.
    (
        "demo district officer",
        citybrain_trust::Role::Officer,
        &["shangcheng-urban-management", "hotline-triage"],
        None,
    ),
    (
        "demo supervision officer",
        citybrain_trust::Role::Officer,
        &["city-supervision"],
        None,
    ),
];

/// Makes a fresh token for each demo role (revoking the previous run's) and prints them.
async fn demo_tokens(hub: &Hub, policy: &citybrain_trust::policy::Policy) -> Result<()> {
    let store = hub.store();
    for mut old in store.api_tokens().await? {
        if old.label.starts_with("demo ") && old.revoked_at.is_none() {
            old.revoked_at = Some(chrono::Utc::now());
            store.put_api_token(&old).await?;
        }
    }
    println!("tokens for the demo roles (send as Authorization: Bearer TOKEN; /login keeps one for the cockpits):");
    for (label, role, deps, subject) in DEMO_ROLES {
        let (rec, plain) = trust::new_token(
            policy,
            *role,
            deps.iter().map(|d| d.to_string()).collect(),
            subject.map(str::to_string),
            vec![],
            label.to_string(),
            None,
        )?;
        store.put_api_token(&rec).await?;
        let who = subject.map_or_else(|| deps.join(","), str::to_string);
        println!("  {:<11} {:<44} {plain}", role.to_string(), who);
    }
    println!("  public      (no token: open data and the public board only)\n");
    Ok(())
}

async fn load_demo(hub: &Hub) -> Result<usize> {
    let mut items: Vec<serde_json::Value> =
        serde_json::from_str(DEMO_DATA).context("embedded demo data is not JSON")?;
    let people: Vec<serde_json::Value> =
        serde_json::from_str(DEMO_PEOPLE).context("embedded demo people are not JSON")?;
    items.extend(people);
    let services: Vec<serde_json::Value> =
        serde_json::from_str(DEMO_SERVICES).context("embedded demo services data is not JSON")?;
    items.extend(services);
    let r = hub
        .batch_write("", &items, &RequestContext::core(), BatchOp::Upsert { replace: true })
        .await
        .map_err(|e| anyhow::anyhow!("loading demo data: {e}"))?;
    if let Some(e) = r.errors.first() {
        bail!("demo entity {} was refused: {}", e.entity_id, e.error);
    }
    Ok(r.success.len())
}

fn print_demo_help(addr: SocketAddr, n: usize) {
    let base = format!("http://{addr}/ngsi-ld/v1");
    println!(
        "\ncitybrain demo — {n} hospital-district entities loaded (OffStreetParking, OnStreetParking, Road, TrafficFlowObserved, and invented personal records: Person, ParkingPermit, Organization, BusinessLicense)\n\n\
         Try:\n  curl '{base}/entities?type=OffStreetParking&options=keyValues'   (open data: no token needed)\n  \
         curl -H 'Authorization: Bearer CITIZEN_TOKEN' '{base}/entities?type=Person,ParkingPermit&options=keyValues'   (a citizen's own records)\n  \
         curl -H 'Authorization: Bearer CITIZEN_TOKEN' 'http://{addr}/api/me/accesses'   (who looked at them, and why)\n  \
         curl '{base}/entities?type=OffStreetParking,OnStreetParking&q=availableSpotNumber%3E0&attrs=availableSpotNumber,totalSpotNumber'\n  \
         curl '{base}/entities?type=OffStreetParking&georel=near;maxDistance==500&geometry=Point&coordinates=%5B120.1786,30.2614%5D'\n  \
         curl '{base}/types?details=true'\n  \
         curl '{base}/entities?type=TrafficFlowObserved&q=queueLength%3E5&options=keyValues'   (the live corridor)\n  \
         curl 'http://{addr}/health'   curl 'http://{addr}/metrics'\n"
    );
}
