//! # citybrain-cockpit-web — cockpits in the browser
//!
//! Serves the cockpits defined in `dashboards/` from the same origin as the
//! hub: `/` lists them, `/cockpit/{uid}` is the page (wall or phone layout,
//! Chinese or English, variables in the URL), `/api/cockpits/{uid}` the
//! definition, `/api/cockpits/{uid}/snapshot` every panel's data now, and
//! `/api/cockpits/{uid}/events` **one SSE stream per tab** multiplexing all
//! panels. Assets (the page's script and style, vendored ECharts) are
//! embedded in the binary.
//!
//! A *feed* per (cockpit, variable values) evaluates every panel against the
//! hub twice a second ([`TICK`]), so each panel gets at most 2 updates per
//! second however many viewers watch; only panels whose data changed are
//! sent. Events carry a sequence number (`id:`); a reconnecting tab sends
//! `Last-Event-ID` (a page that has just read the snapshot, `?lastEventId=`
//! with its number) and gets what it missed from a ring of recent events, or a
//! `resync` (refetch the snapshot) when the gap is older than the ring.
//! Definition files are re-read when they change on disk; open pages get a
//! `definition-changed` event.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use citybrain_cockpit::alerts::{Rule, Watch};
use citybrain_cockpit::definition::{Definition, PanelKind};
use citybrain_cockpit::panel::{evaluate, types_read, PanelData};
use citybrain_hub::{BatchOp, Hub, RequestContext};
use citybrain_ngsild::model::main_value;
use citybrain_trust::{Caller, Role};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

pub mod assets;
mod error;
pub use error::CockpitError;
mod history;
pub mod hub_stats;
pub mod networks;

/// How often a feed evaluates its panels (so at most 2 updates per second per panel).
pub const TICK: Duration = Duration::from_millis(500);
/// Events a feed keeps for tabs that reconnect.
pub const RING: usize = 2048;
/// A comment line on an idle stream this often (proxies and the browser see it alive).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most feeds at once (cockpit × variable values); the oldest idle one goes.
pub const MAX_FEEDS: usize = 64;
/// Where terms without a definition in the core context expand to.
const DEFAULT_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// Most entities of one type a feed reads per tick.
const MAX_ENTITIES_PER_TYPE: usize = 5000;

/// The shipped cockpits, embedded (used when no folder is given).
const SHIPPED: &[(&str, &str)] = &[
    (
        "city-overview.json",
        include_str!("../../../dashboards/city-overview.json"),
    ),
    ("command.json", include_str!("../../../dashboards/command.json")),
    (
        "hospital-district.json",
        include_str!("../../../dashboards/hospital-district.json"),
    ),
    ("street.json", include_str!("../../../dashboards/street.json")),
    (
        "traffic-signals.json",
        include_str!("../../../dashboards/traffic-signals.json"),
    ),
];

/// One event as sent on the stream.
#[derive(Debug, Clone, Serialize)]
pub struct FeedEvent {
    pub seq: u64,
    /// `panel`, `definition-changed`.
    pub kind: &'static str,
    pub data: Value,
}

/// The live state of one cockpit under one set of variable values.
struct Feed {
    ring_size: usize,
    uid: String,
    vars: Vec<(String, String)>,
    /// Latest data and the time it changed (ms since the epoch), per panel.
    panels: BTreeMap<String, (PanelData, u64)>,
    /// Time series: (ms, value), bounded by the panel's window.
    series: BTreeMap<String, VecDeque<(u64, Option<f64>)>>,
    ring: VecDeque<FeedEvent>,
    next_seq: u64,
    tx: broadcast::Sender<FeedEvent>,
    last_used: u64,
    /// Its time series still want their past from the hub's history.
    history_pending: bool,
}

impl Feed {
    fn push(&mut self, kind: &'static str, data: Value) {
        let e = FeedEvent {
            seq: self.next_seq,
            kind,
            data,
        };
        self.next_seq += 1;
        if self.ring.len() >= self.ring_size {
            self.ring.pop_front();
        }
        self.ring.push_back(e.clone());
        let _ = self.tx.send(e);
    }
}

/// Timings and sizes (the defaults are the constants above; tests shorten them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub tick: Duration,
    pub ring: usize,
    pub keep_alive: Duration,
    /// Definition files are re-read every this many ticks.
    pub rescan_ticks: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tick: TICK,
            ring: RING,
            keep_alive: KEEP_ALIVE,
            rescan_ticks: 4,
        }
    }
}

/// Definitions, loaded from a folder (re-read when changed) or the shipped ones.
pub struct Cockpits {
    hub: Hub,
    settings: Settings,
    dir: Option<PathBuf>,
    defs: RwLock<BTreeMap<String, Definition>>,
    /// Each file's modification time and content, to notice changes.
    seen: Mutex<HashMap<PathBuf, (SystemTime, String)>>,
    feeds: Mutex<HashMap<String, Arc<Mutex<Feed>>>>,
    /// Problems found in definition files (shown on the index page).
    problems: RwLock<Vec<String>>,
    /// Set when the server shuts down: open streams end (a graceful shutdown
    /// waits for every response, and a stream never ends by itself).
    closing: tokio::sync::watch::Sender<bool>,
    /// Alert rules (from files) and what they have seen.
    rules: RwLock<Vec<Rule>>,
    watch: tokio::sync::Mutex<Watch>,
    hub_stats: hub_stats::HubStats,
}

/// A rule that stopped holding fires again for an entity after this long clear.
pub const ALERT_REARM: Duration = Duration::from_secs(300);
/// The shipped alert rules (used when no folder is given).
const SHIPPED_RULES: &str = include_str!("../../../alerts/rules.json");

fn now_ms() -> u64 {
    citybrain_hub::clock::now_ms()
}

fn feed_key(uid: &str, vars: &[(String, String)]) -> String {
    let mut k = uid.to_string();
    for (n, v) in vars {
        k.push('|');
        k.push_str(n);
        k.push('=');
        k.push_str(v);
    }
    k
}

impl Cockpits {
    /// Loads the definitions (from `dir` if given, else the shipped ones)
    /// and starts the background work: re-reading changed files, feeding panels.
    pub fn start(hub: Hub, dir: Option<PathBuf>) -> Arc<Cockpits> {
        Cockpits::start_with(hub, dir, Settings::default())
    }

    /// Loads alert rules: every `*.json` in `dir`, or the shipped ones.
    /// A file with a problem is refused whole (with its field) and logged.
    pub fn load_rules(&self, dir: Option<&std::path::Path>) -> Result<usize, CockpitError> {
        let mut texts: Vec<(String, String)> = Vec::new();
        match dir {
            None => texts.push(("rules.json (built in)".into(), SHIPPED_RULES.to_string())),
            Some(d) => {
                let entries = std::fs::read_dir(d).map_err(|source| CockpitError::Io {
                    path: d.to_path_buf(),
                    source,
                })?;
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "json") {
                        let t = std::fs::read_to_string(&p).map_err(|source| CockpitError::Io {
                            path: p.clone(),
                            source,
                        })?;
                        texts.push((p.display().to_string(), t));
                    }
                }
            }
        }
        let mut rules = Vec::new();
        for (name, t) in texts {
            let f = citybrain_cockpit::alerts::parse_rules(&t)
                .map_err(|source| CockpitError::Rules { file: name, source })?;
            rules.extend(f.rules);
        }
        let n = rules.len();
        if let Ok(mut r) = self.rules.write() {
            *r = rules;
        }
        Ok(n)
    }

    /// One look of the alert rules at the hub; opened alerts are written as
    /// `Alert` entities (so subscriptions deliver them, and cockpits show them).
    pub async fn check_alerts(&self) {
        let rules = self.rules.read().map(|r| r.clone()).unwrap_or_default();
        if rules.is_empty() {
            return;
        }
        let mut types: Vec<String> = rules.iter().map(|r| r.entity_type.clone()).collect();
        types.sort();
        types.dedup();
        let mut entities = Vec::new();
        for t in &types {
            match read_type(&self.hub, t).await {
                Ok(mut es) => entities.append(&mut es),
                Err(e) => {
                    tracing::warn!(error = %e, "alert rules: reading the hub failed");
                    return;
                }
            }
        }
        let now = now_ms();
        let opened = self.watch.lock().await.observe(&rules, &entities, now);
        if opened.is_empty() {
            return;
        }
        let at = history::rfc3339(now);
        let items: Vec<Value> = opened.iter().map(|a| a.to_entity(&at)).collect();
        match self
            .hub
            .batch_write("", &items, &RequestContext::core(), BatchOp::Upsert { replace: false })
            .await
        {
            Ok(r) if !r.errors.is_empty() => tracing::warn!(error = %r.errors[0].error, "an alert was refused"),
            Err(e) => tracing::warn!(error = %e, "writing alerts failed"),
            Ok(_) => {}
        }
    }

    pub fn start_with(hub: Hub, dir: Option<PathBuf>, settings: Settings) -> Arc<Cockpits> {
        let c = Arc::new(Cockpits {
            hub,
            settings: settings.clone(),
            dir,
            defs: RwLock::new(BTreeMap::new()),
            seen: Mutex::new(HashMap::new()),
            feeds: Mutex::new(HashMap::new()),
            problems: RwLock::new(Vec::new()),
            closing: tokio::sync::watch::channel(false).0,
            rules: RwLock::new(Vec::new()),
            watch: tokio::sync::Mutex::new(Watch::new().with_rearm_ms(ALERT_REARM.as_millis() as u64)),
            hub_stats: hub_stats::HubStats::default(),
        });
        c.reload();
        // Every cockpit's default view is fed from the start, so its time
        // series hold history before the first viewer comes.
        for d in c.definitions() {
            let vars = d
                .variables
                .iter()
                .map(|v| (v.name.clone(), v.default.clone()))
                .collect();
            c.feed(&d, vars);
        }
        let bg = c.clone();
        tokio::spawn(async move {
            let mut ticks: u64 = 0;
            let mut interval = tokio::time::interval(settings.tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                ticks += 1;
                if ticks.is_multiple_of(settings.rescan_ticks.max(1)) {
                    bg.reload();
                }
                bg.tick().await;
                if ticks.is_multiple_of(2) {
                    bg.check_alerts().await;
                }
            }
        });
        c
    }

    /// Ends every open stream (call when the server begins to shut down).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// The cockpits now, by uid.
    pub fn definitions(&self) -> Vec<Definition> {
        self.defs
            .read()
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default()
    }

    fn definition(&self, uid: &str) -> Option<Definition> {
        self.defs.read().ok()?.get(uid).cloned()
    }

    /// Re-reads the definition files; a changed cockpit tells its open pages.
    pub fn reload(&self) {
        let mut found: Vec<(String, String)> = Vec::new();
        match &self.dir {
            None => {
                if !self.defs.read().map(|d| d.is_empty()).unwrap_or(true) {
                    return;
                }
                found = SHIPPED.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
            }
            Some(dir) => {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    tracing::warn!(dir = %dir.display(), "cockpit folder cannot be read");
                    return;
                };
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                for e in entries.flatten() {
                    let p = e.path();
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                    if !name.ends_with(".json") || name == "schema.json" {
                        continue;
                    }
                    let Ok(meta) = e.metadata() else { continue };
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    if meta.len() as usize > citybrain_cockpit::definition::MAX_FILE_BYTES {
                        continue;
                    }
                    let text = match seen.get(&p) {
                        Some((t, text)) if *t == mtime => text.clone(),
                        _ => match std::fs::read_to_string(&p) {
                            Ok(text) => {
                                seen.insert(p.clone(), (mtime, text.clone()));
                                text
                            }
                            Err(_) => continue,
                        },
                    };
                    found.push((name, text));
                }
            }
        }
        let mut next = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, text) in found {
            match citybrain_cockpit::parse(&text) {
                Ok(d) => {
                    next.insert(d.uid.clone(), d);
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        let changed: Vec<String> = {
            let old = self.defs.read().map(|d| d.clone()).unwrap_or_default();
            next.iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect()
        };
        for p in &problems {
            tracing::warn!(problem = %p, "cockpit definition refused (the last good one stays)");
        }
        // A definition with a problem keeps its last good version.
        if let Ok(mut defs) = self.defs.write() {
            for (k, v) in next {
                defs.insert(k, v);
            }
        }
        if let Ok(mut pr) = self.problems.write() {
            *pr = problems;
        }
        if !changed.is_empty() {
            let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
            for f in feeds.values() {
                let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                if changed.contains(&f.uid) {
                    f.panels.clear();
                    let uid = f.uid.clone();
                    f.push("definition-changed", json!({"uid": uid}));
                }
            }
        }
    }

    /// The feed of a cockpit under some variable values (made on first use).
    fn feed(&self, def: &Definition, vars: Vec<(String, String)>) -> Arc<Mutex<Feed>> {
        let key = feed_key(&def.uid, &vars);
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = feeds.get(&key) {
            f.lock().unwrap_or_else(|e| e.into_inner()).last_used = now_ms();
            return f.clone();
        }
        if feeds.len() >= MAX_FEEDS {
            let oldest = feeds
                .iter()
                .min_by_key(|(_, f)| f.lock().map(|f| f.last_used).unwrap_or(0))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                feeds.remove(&k);
            }
        }
        let (tx, _) = broadcast::channel(self.settings.ring.max(16));
        let f = Arc::new(Mutex::new(Feed {
            ring_size: self.settings.ring.max(1),
            uid: def.uid.clone(),
            vars,
            panels: BTreeMap::new(),
            series: BTreeMap::new(),
            ring: VecDeque::new(),
            next_seq: 1,
            tx,
            last_used: now_ms(),
            history_pending: true,
        }));
        feeds.insert(key, f.clone());
        f
    }

    /// Every feed: read the types its panels need, evaluate, send what changed.
    async fn tick(&self) {
        self.hub_stats.sample(&self.hub, now_ms());
        let feeds: Vec<Arc<Mutex<Feed>>> = self
            .feeds
            .lock()
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default();
        // Each entity type is read once per tick, however many feeds show it.
        let mut read: HashMap<String, Option<Vec<Value>>> = HashMap::new();
        for f in feeds {
            let (uid, vars) = {
                let g = f.lock().unwrap_or_else(|e| e.into_inner());
                (g.uid.clone(), g.vars.clone())
            };
            let Some(def) = self.definition(&uid) else { continue };
            let mut types: Vec<String> = def.panels.iter().flat_map(types_read).collect();
            types.sort();
            types.dedup();
            let mut entities = Vec::new();
            let mut failed = false;
            for t in &types {
                if !read.contains_key(t) {
                    let got = match self.read_type(t).await {
                        Ok(es) => Some(es),
                        Err(e) => {
                            // Reads cut off by the shutdown are no news.
                            if !self.hub.is_closing() {
                                tracing::warn!(error = %e, entity_type = %t, "cockpit feed: reading the hub failed");
                            }
                            None
                        }
                    };
                    read.insert(t.clone(), got);
                }
                match &read[t] {
                    Some(es) => entities.extend(es.iter().cloned()),
                    // Panels keep their last data: a failed read blanks nothing.
                    None => failed = true,
                }
            }
            if failed {
                continue;
            }
            let mut past: HashMap<String, Vec<(u64, Option<f64>)>> = HashMap::new();
            if f.lock().map(|g| g.history_pending).unwrap_or(false) {
                let now = now_ms();
                let step = self.settings.tick.as_millis() as u64;
                for p in def.panels.iter().filter(|p| p.kind == PanelKind::Timeseries) {
                    past.insert(
                        p.id.clone(),
                        history::series(&self.hub, p, &vars, &entities, now, step).await,
                    );
                }
            }
            let now = now_ms();
            let mut g = f.lock().unwrap_or_else(|e| e.into_inner());
            g.history_pending = false;
            for p in &def.panels {
                let data = evaluate(p, &vars, &entities);
                if p.kind == PanelKind::Timeseries {
                    let v = match &data {
                        PanelData::Value { value, .. } => *value,
                        _ => None,
                    };
                    let window = p.window_s.unwrap_or(600) as u64 * 1000;
                    let s = g.series.entry(p.id.clone()).or_default();
                    // The past from the hub goes before what the feed has seen.
                    let earlier: Vec<(u64, Option<f64>)> = past
                        .remove(&p.id)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(t, _)| s.front().is_none_or(|(first, _)| t < first))
                        .collect();
                    let had_past = !earlier.is_empty();
                    for pt in earlier.into_iter().rev() {
                        s.push_front(pt);
                    }
                    s.push_back((now, v));
                    while s.front().is_some_and(|(t, _)| *t + window < now) {
                        s.pop_front();
                    }
                    let mut point = json!({"panel": p.id, "t": now, "point": [now, v], "data": data});
                    if had_past {
                        // Open pages take the whole window in place of theirs.
                        point["history"] = json!(s.iter().map(|(t, x)| json!([t, x])).collect::<Vec<_>>());
                    }
                    g.panels.insert(p.id.clone(), (data, now));
                    g.push("panel", point);
                    continue;
                }
                let same = g.panels.get(&p.id).is_some_and(|(old, _)| *old == data);
                if same {
                    continue;
                }
                g.panels.insert(p.id.clone(), (data.clone(), now));
                g.push("panel", json!({"panel": p.id, "t": now, "data": data}));
            }
        }
    }

    /// Every entity of one type: a built-in type about the hub, or the hub's.
    async fn read_type(&self, t: &str) -> Result<Vec<Value>, CockpitError> {
        match self.hub_stats.read(&self.hub, t, now_ms()).await {
            Some(r) => r,
            None => read_type(&self.hub, t).await,
        }
    }

    /// Every panel's data now (and each time series' window), for a page
    /// that (re)loads: with the sequence number it is consistent with.
    fn snapshot(&self, def: &Definition, vars: Vec<(String, String)>) -> Value {
        let f = self.feed(def, vars);
        let g = f.lock().unwrap_or_else(|e| e.into_inner());
        let panels: serde_json::Map<String, Value> = g
            .panels
            .iter()
            .map(|(id, (data, t))| {
                let mut v = json!({"t": t, "data": data});
                if let Some(s) = g.series.get(id) {
                    v["series"] = json!(s.iter().map(|(t, x)| json!([t, x])).collect::<Vec<_>>());
                }
                (id.clone(), v)
            })
            .collect();
        json!({"uid": def.uid, "seq": g.next_seq - 1, "now": now_ms(), "panels": panels})
    }
}

/// Every entity of one type (by its default-context expansion), as
/// key-value objects with short attribute names.
async fn read_type(hub: &Hub, t: &str) -> Result<Vec<Value>, CockpitError> {
    let entities = hub
        .entities_of_type("", &format!("{DEFAULT_CONTEXT}{t}"), MAX_ENTITIES_PER_TYPE)
        .await?;
    let mut out = Vec::with_capacity(entities.len());
    for e in entities {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), Value::String(e.id.clone()));
        o.insert("type".into(), Value::String(t.to_string()));
        o.insert("modifiedAtMs".into(), json!(e.modified_at.timestamp_millis().max(0)));
        for (iri, instances) in &e.attrs {
            let short = iri.rsplit(['/', '#']).next().unwrap_or(iri);
            if let Some(v) = instances.first().and_then(main_value) {
                // A language map: the English text stands for the value.
                let v = match v {
                    // A typed literal (a DateTime): its value.
                    Value::Object(m) if m.contains_key("@value") => m["@value"].clone(),
                    Value::Object(m) if !m.contains_key("type") => m
                        .get("en")
                        .or_else(|| m.values().next())
                        .cloned()
                        .unwrap_or(Value::Null),
                    other => other.clone(),
                };
                o.insert(short.to_string(), v);
            }
        }
        out.push(Value::Object(o));
    }
    Ok(out)
}

/// The routes (merge them into the hub's router).
pub fn router(c: Arc<Cockpits>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/portal", get(|| async { Html(assets::PORTAL) }))
        .route("/appeals", get(|| async { Html(assets::APPEALS) }))
        .route("/enterprise", get(|| async { Html(assets::ENTERPRISE) }))
        .route("/logout", axum::routing::post(logout))
        .route("/cockpit/{uid}", get(page))
        .route("/api/cockpits", get(list))
        .route("/api/cockpits/{uid}", get(definition))
        .route("/api/cockpits/{uid}/snapshot", get(snapshot))
        .route("/api/cockpits/{uid}/events", get(events))
        .route("/api/networks/{name}", get(network))
        .route("/assets/{*path}", get(assets::serve))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/alerts/{id}/{action}", axum::routing::post(alert_action))
        .with_state(c)
}

/// An error as every citybrain HTTP route gives it (the API crate's
/// ProblemDetails, one renderer for the whole origin).
fn problem(status: StatusCode, detail: String) -> Response {
    citybrain_api::error::ApiError::http(status, detail).into_response()
}

fn not_found(uid: &str) -> Response {
    problem(StatusCode::NOT_FOUND, format!("no cockpit '{uid}' (see /api/cockpits)"))
}

/// The variable values of a request: the definition's variables, from the
/// query string or their defaults (unknown values refused).
fn variables(def: &Definition, q: &HashMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let given: HashMap<String, String> = def
        .variables
        .iter()
        .filter_map(|v| q.get(&v.name).map(|x| (v.name.clone(), x.clone())))
        .collect();
    citybrain_cockpit::definition::resolve_variables(def, &given)
}

async fn index(State(c): State<Arc<Cockpits>>, v: Viewer) -> Html<String> {
    let esc = html_escape::encode_text;
    let caller = v.as_ref().map(|e| e.0.as_ref());
    let mut items = String::new();
    for d in c.definitions().iter().filter(|d| may_view(d, caller)) {
        items += &format!(
            "<li data-testid=\"cockpit-{uid}\"><a href=\"/cockpit/{uid}\">{en} · {zh}</a> <span class=\"tier\">{tier:?}</span> \
             <a class=\"alt\" href=\"/cockpit/{uid}?mode=phone\">phone</a> <a class=\"alt\" href=\"/cockpit/{uid}?lang=en\">English</a></li>",
            uid = d.uid,
            en = esc(&d.title.en),
            zh = esc(&d.title.zh),
            tier = d.tier
        );
    }
    let problems: String = c
        .problems
        .read()
        .map(|p| {
            p.iter()
                .map(|x| format!("<li class=\"problem\">{}</li>", esc(x)))
                .collect()
        })
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"zh\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>citybrain cockpits · 数字驾驶舱</title><link rel=\"stylesheet\" href=\"/assets/cockpit.css\">\
         <body class=\"index\"><h1>citybrain · 数字驾驶舱 cockpits</h1><ul class=\"cockpits\">{items}</ul>\
         {}<p class=\"hint\"><a href=\"/login\">log in 登录</a> · Definitions: dashboards/*.json · <code>citybrain cockpit check FILE</code> · NGSI-LD API at <a href=\"/ngsi-ld/v1/types\">/ngsi-ld/v1</a></p></body></html>",
        if problems.is_empty() {
            String::new()
        } else {
            format!("<h2>Definitions refused</h2><ul>{problems}</ul>")
        }
    ))
}

/// The caller the API's authentication left in the request (none: the public).
type Viewer = Option<axum::Extension<Arc<Caller>>>;

/// May this caller view this cockpit? Administrators see all; `public`
/// cockpits are anyone's; `staff` ones every officer's; department keys
/// the officers of those departments.
pub fn may_view(def: &Definition, caller: Option<&Caller>) -> bool {
    let public = def.audience.iter().any(|a| a == "public");
    let Some(c) = caller else { return public };
    let p = &c.principal;
    match p.role {
        Role::Admin => true,
        Role::Officer => {
            public
                || def
                    .audience
                    .iter()
                    .any(|a| a == "staff" || p.departments.iter().any(|d| d == a))
        }
        _ => public,
    }
}

/// 401 for the public (log in), 403 for a caller who is known.
fn refuse_view(uid: &str, caller: Option<&Caller>) -> Response {
    use citybrain_api::error::ApiError;
    if caller.is_some_and(|c| c.principal.is_authenticated()) {
        ApiError::forbidden(format!("cockpit {uid} is not open to this caller")).into_response()
    } else {
        ApiError::unauthenticated(format!(
            "cockpit {uid} needs a login (/login, or Authorization: Bearer …)"
        ))
        .into_response()
    }
}

/// The cockpit, when this caller may view it.
fn viewable(c: &Cockpits, uid: &str, v: &Viewer) -> Result<Definition, Box<Response>> {
    let caller = v.as_ref().map(|e| e.0.as_ref());
    match c.definition(uid) {
        None => Err(Box::new(not_found(uid))),
        Some(d) if may_view(&d, caller) => Ok(d),
        Some(_) => Err(Box::new(refuse_view(uid, caller))),
    }
}

/// GET /login: a form that keeps a token in a cookie, for the cockpit pages
/// (their EventSource cannot send an Authorization header).
async fn login_page() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>citybrain · log in 登录</title>\
         <link rel=\"stylesheet\" href=\"/assets/cockpit.css\"><body class=\"index\"><h1>citybrain · 登录 log in</h1>\
         <form method=\"post\" action=\"/login\"><label>API token <input name=\"token\" type=\"password\" autocomplete=\"off\" size=\"90\"></label> \
         <button type=\"submit\">Log in</button></form><form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form>\
         <p class=\"hint\">The token stays in an HttpOnly cookie of this site; <code>citybrain token create</code> makes one.</p></body></html>",
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    /// Where to go after logging in: a path of this site (the portal's form sends /portal).
    #[serde(default)]
    next: Option<String>,
}

/// POST /login: keeps the token in an HttpOnly, SameSite=Strict cookie. The
/// token is checked on every request that uses it, like a header token.
async fn login(axum::Form(f): axum::Form<LoginForm>) -> Response {
    let t = f.token.trim();
    if t.is_empty() || t.len() > 16 * 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return problem(
            StatusCode::BAD_REQUEST,
            "the token is empty or not printable ASCII".into(),
        );
    }
    let next = f
        .next
        .as_deref()
        .filter(|n| {
            n.starts_with('/') && !n.starts_with("//") && n.len() < 200 && n.bytes().all(|b| b.is_ascii_graphic())
        })
        .unwrap_or("/")
        .to_string();
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    if let Ok(v) = format!("citybrain_token={t}; Path=/; HttpOnly; SameSite=Strict").parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout() -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static("citybrain_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn page(State(c): State<Arc<Cockpits>>, Path(uid): Path<String>) -> Response {
    if c.definition(&uid).is_none() {
        return not_found(&uid);
    }
    Html(assets::PAGE.replace("{{uid}}", &uid)).into_response()
}

async fn list(State(c): State<Arc<Cockpits>>, v: Viewer) -> Json<Value> {
    let caller = v.as_ref().map(|e| e.0.as_ref());
    Json(json!(c
        .definitions()
        .iter()
        .filter(|d| may_view(d, caller))
        .map(|d| json!({"uid": d.uid, "title": d.title, "tier": d.tier, "panels": d.panels.len()}))
        .collect::<Vec<_>>()))
}

async fn definition(State(c): State<Arc<Cockpits>>, Path(uid): Path<String>, v: Viewer) -> Response {
    match viewable(&c, &uid, &v) {
        Ok(d) => Json(d).into_response(),
        Err(r) => *r,
    }
}

async fn snapshot(
    State(c): State<Arc<Cockpits>>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    v: Viewer,
) -> Response {
    let def = match viewable(&c, &uid, &v) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    match variables(&def, &q) {
        Ok(vars) => Json(c.snapshot(&def, vars)).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

fn sse_event(e: &FeedEvent) -> Event {
    Event::default()
        .event(e.kind)
        .id(e.seq.to_string())
        .data(e.data.to_string())
}

async fn events(
    State(c): State<Arc<Cockpits>>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    v: Viewer,
) -> Response {
    let def = match viewable(&c, &uid, &v) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let vars = match variables(&def, &q) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    // A reconnecting EventSource sends the header; a page that has just read
    // the snapshot names its sequence number in the query (EventSource cannot
    // set headers), so it resumes from the ring instead of reading a second
    // snapshot. The header is the newer of the two.
    let last: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| q.get("lastEventId").map(String::as_str))
        .and_then(|v| v.trim().parse().ok());
    let f = c.feed(&def, vars);
    let (first, rx) = {
        let g = f.lock().unwrap_or_else(|e| e.into_inner());
        let rx = g.tx.subscribe();
        let oldest = g.ring.front().map_or(g.next_seq, |e| e.seq);
        let mut first: Vec<Event> = Vec::new();
        let mut upto = g.next_seq - 1;
        match last {
            // Resume: what was missed, if the ring still has it.
            Some(l) if l + 1 >= oldest && l < g.next_seq => {
                first.extend(g.ring.iter().filter(|e| e.seq > l).map(sse_event));
            }
            // Too old (or from another server life): refetch the snapshot.
            Some(_) => first.push(
                Event::default()
                    .event("resync")
                    .id(upto.to_string())
                    .data(json!({"seq": upto}).to_string()),
            ),
            None => {
                upto = g.next_seq - 1;
                first.push(
                    Event::default()
                        .event("hello")
                        .id(upto.to_string())
                        .data(json!({"seq": upto}).to_string()),
                );
            }
        }
        (first, rx)
    };
    let live = BroadcastStream::new(rx).map(|r| match r {
        Ok(e) => sse_event(&e),
        // This tab fell behind the broadcast buffer: it refetches.
        Err(_) => Event::default().event("resync").data("{}"),
    });
    let mut closing = c.closing.subscribe();
    let closed = async move {
        let _ = closing.wait_for(|v| *v).await;
    };
    let stream = stream::iter(first)
        .chain(live)
        .take_until(Box::pin(closed))
        .map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(c.settings.keep_alive).text("keep-alive"))
        .into_response()
}

/// An officer acknowledges or closes an alert (its `status` in the hub).
async fn alert_action(State(c): State<Arc<Cockpits>>, Path((id, action)): Path<(String, String)>) -> Response {
    let status = match action.as_str() {
        "acknowledge" => "acknowledged",
        "close" => "closed",
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("unknown action '{other}' (acknowledge, close)"),
            )
        }
    };
    if !id.starts_with("urn:ngsi-ld:Alert:") {
        return problem(StatusCode::BAD_REQUEST, format!("'{id}' is not an Alert id"));
    }
    let body = json!({"status": {"type": "Property", "value": status}});
    match c.hub.update_attrs("", &id, &body, &RequestContext::core()).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn network(Path(name): Path<String>) -> Response {
    match networks::geometry(&name) {
        Some(g) => ([(header::CACHE_CONTROL, "max-age=3600")], Json(g.as_ref().clone())).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no network '{name}' (hospital-district, signal-corridor)"),
        ),
    }
}
