//! Server configuration: every flag has an environment variable and a default.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use citybrain_hub::{HubConfig, Limits};
use clap::{Args, ValueEnum};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CITYBRAIN_LISTEN", default_value = "127.0.0.1:1026")]
    pub listen: String,
    /// Database URL; the scheme picks the backend. Default: sqlite:./citybrain.db
    /// (demo: sqlite:./citybrain-demo.db). Add ?synchronous=full to survive power loss, not just crashes.
    #[arg(long, env = "CITYBRAIN_DB")]
    pub db: Option<String>,
    /// The rules-as-code policies (policies/*.yaml) that /api/v1/decisions
    /// decides by; a folder that does not exist means none.
    #[arg(long, env = "CITYBRAIN_POLICIES", default_value = "policies")]
    pub policies: std::path::PathBuf,
    /// The government services: services/*.yaml and services/bundles/*.yaml,
    /// served under /api/v1 with the portal at /portal; a folder that does
    /// not exist turns them off.
    #[arg(long, env = "CITYBRAIN_SERVICES", default_value = "services")]
    pub services: std::path::PathBuf,
    /// The appeals (12345): categories.yaml, routing.yaml, calendar.yaml and
    /// moderation.yaml, served under /api/v1/appeals and as Open311 at
    /// /open311/v2; a folder that does not exist turns them off.
    #[arg(long, env = "CITYBRAIN_APPEALS", default_value = "appeals")]
    pub appeals: std::path::PathBuf,
    /// demo: people in the synthetic city loaded in the background (one
    /// enterprise per 5 people), once per database; 0 for none.
    #[arg(long, env = "CITYBRAIN_DEMO_CITY", default_value_t = 100_000)]
    pub demo_city: usize,
    /// Log format.
    #[arg(long, env = "CITYBRAIN_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing syntax, e.g. info or citybrain_hub=debug,info).
    #[arg(long, env = "CITYBRAIN_LOG", default_value = "info")]
    pub log: String,
    /// Largest request body, in bytes.
    #[arg(long, env = "CITYBRAIN_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most entities in one batch operation.
    #[arg(long, env = "CITYBRAIN_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Page size of queries when the client gives no limit.
    #[arg(long, env = "CITYBRAIN_DEFAULT_PAGE", default_value_t = 20)]
    pub default_page: usize,
    /// Largest page a query may ask for (above: 403 TooManyResults).
    #[arg(long, env = "CITYBRAIN_MAX_PAGE", default_value_t = 1000)]
    pub max_page: usize,
    /// Longest q / scopeQ expression, in characters.
    #[arg(long, env = "CITYBRAIN_MAX_QUERY_LEN", default_value_t = 4096)]
    pub max_query_len: usize,
    /// Most attributes (instances) in one entity.
    #[arg(long, env = "CITYBRAIN_MAX_ATTRS", default_value_t = 1000)]
    pub max_attrs: usize,
    /// Most coordinates in one geometry.
    #[arg(long, env = "CITYBRAIN_MAX_GEO_POINTS", default_value_t = 10_000)]
    pub max_geo_points: usize,
    /// Temporal instances per attribute returned when the client gives no lastN (then 206 + Content-Range).
    #[arg(long, env = "CITYBRAIN_TEMPORAL_PAGE", default_value_t = 30)]
    pub temporal_page: usize,
    /// JSON file mapping remote @context URLs to local files, for sites without internet:
    /// {"https://example.org/ctx.jsonld": "/etc/citybrain/ctx.jsonld"}
    #[arg(long, env = "CITYBRAIN_CONTEXT_MAP")]
    pub context_map: Option<PathBuf>,
    /// Seconds to keep retrying a notification whose receiver is down.
    #[arg(long, env = "CITYBRAIN_NOTIFY_RETRY_SECS", default_value_t = 3600)]
    pub notify_retry_secs: u64,
    /// Run scenarios live on the twin, publishing their sensors to the hub,
    /// comma-separated: `signal-corridor`, `hospital-district`, or `none`
    /// (default for serve; demo runs both).
    #[arg(long, env = "CITYBRAIN_LIVE")]
    pub live: Option<String>,
    /// Signal policy of the live corridor: fixed, actuated or citybrain (which
    /// reads its detector data back from the hub).
    #[arg(long, env = "CITYBRAIN_LIVE_POLICY", default_value = "citybrain")]
    pub live_policy: String,
    /// Policy of the live hospital district: baseline, citybrain, or
    /// baseline+guidance|turn-away|fast-gates (guidance reads lot availability
    /// back from the hub).
    #[arg(long, env = "CITYBRAIN_LIVE_HOSPITAL_POLICY", default_value = "citybrain")]
    pub live_hospital_policy: String,
    /// Folder of cockpit definitions (re-read when they change). Default:
    /// ./dashboards if it exists, else the cockpits built into the binary.
    #[arg(long, env = "CITYBRAIN_DASHBOARDS")]
    pub dashboards: Option<std::path::PathBuf>,
    /// Folder of alert rule files (*.json). Default: ./alerts if it exists,
    /// else the rules built into the binary.
    #[arg(long, env = "CITYBRAIN_ALERT_RULES")]
    pub alert_rules: Option<std::path::PathBuf>,
    /// Simulated time the live signal corridor opens at, s (its demand
    /// reaches the peak at 900 s; 0: empty roads at the start).
    #[arg(long, env = "CITYBRAIN_LIVE_CORRIDOR_START", default_value_t = 900.0, value_parser = parse_start_s)]
    pub live_corridor_start: f64,
    /// Time of day the live hospital district opens at, HH:MM (its day
    /// begins at 05:30; visitors peak 07:00-10:00).
    #[arg(long, env = "CITYBRAIN_LIVE_HOSPITAL_START", default_value = "07:00", value_parser = parse_hh_mm)]
    pub live_hospital_start: f64,
    /// How many times faster than real time the live scenarios run.
    #[arg(long, env = "CITYBRAIN_LIVE_SPEEDUP", default_value_t = 60.0)]
    pub live_speedup: f64,
    /// Start the server's clock at this instant (RFC 3339, e.g.
    /// 2026-01-05T08:00:00+08:00) instead of now; it runs on at real speed.
    /// Every timestamp the hub, the live scenarios and the cockpits write
    /// comes from it, so a demo or a browser test shows the same dates on
    /// every run.
    #[arg(long, env = "CITYBRAIN_CLOCK", value_parser = parse_instant)]
    pub clock: Option<chrono::DateTime<chrono::Utc>>,
    /// Drop attribute history observed longer ago than this, e.g. 90m, 6h,
    /// 30days; `off` keeps all of it. Entities and their current values
    /// always stay. Default: off for serve; 1h for demo (the cockpits'
    /// longest window), whose live scenarios write history fast (about
    /// 40 MB a minute at 60x).
    #[arg(long, env = "CITYBRAIN_HISTORY_RETENTION", value_parser = parse_retention)]
    pub history_retention: Option<Retention>,
    #[command(flatten)]
    pub trust: crate::trust::TrustArgs,
}

/// How long attribute history is kept (None: for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// The demo's history retention when none is given.
pub const DEMO_HISTORY_RETENTION: Duration = Duration::from_secs(3600);

fn parse_retention(s: &str) -> Result<Retention, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(Retention(None));
    }
    match humantime::parse_duration(s.trim()) {
        Ok(d) if !d.is_zero() => Ok(Retention(Some(d))),
        Ok(_) => Err(format!("'{s}': a retention must be longer than zero (or `off`)")),
        Err(e) => Err(format!(
            "'{s}' is not a duration like 90m, 6h or 30days (or `off`): {e}"
        )),
    }
}

fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("'{s}' is not an RFC 3339 instant like 2026-01-05T08:00:00+08:00: {e}"))
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    pub fn hub_config(&self) -> Result<HubConfig> {
        let context_map: HashMap<String, PathBuf> = match &self.context_map {
            None => HashMap::new(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("--context-map {}: cannot read", p.display()))?;
                let m: HashMap<String, PathBuf> = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "--context-map {}: expected a JSON object of URL → file path",
                        p.display()
                    )
                })?;
                // Relative paths are relative to the map file.
                let base = p.parent().map(PathBuf::from).unwrap_or_default();
                m.into_iter()
                    .map(|(k, v)| (k, if v.is_absolute() { v } else { base.join(v) }))
                    .collect()
            }
        };
        let mut limits = Limits {
            max_batch: self.max_batch,
            default_page: self.default_page,
            max_page: self.max_page,
            max_query_len: self.max_query_len,
            temporal_page: self.temporal_page,
            ..Limits::default()
        };
        limits.input.max_attrs = self.max_attrs;
        limits.input.max_geo_points = self.max_geo_points;
        if limits.default_page > limits.max_page {
            anyhow::bail!(
                "--default-page {} is above --max-page {}",
                limits.default_page,
                limits.max_page
            );
        }
        Ok(HubConfig {
            limits,
            context_map,
            notify_retry_window: Duration::from_secs(self.notify_retry_secs),
            history_retention: self.history_retention.and_then(|r| r.0),
            ..HubConfig::default()
        })
    }
}

pub fn init_tracing(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn parse_start_s(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err("must be a number of seconds in [0, 86400]".into()),
    }
}

/// "07:00" -> 25200 s.
fn parse_hh_mm(s: &str) -> Result<f64, String> {
    let bad = || format!("'{s}' is not a time of day HH:MM (00:00-23:59)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(f64::from(h * 3600 + m * 60))
}
