//! `citybrain bench`: the CLI of the benchmarks in `citybrain-bench`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use citybrain_scenarios::bands::{Bands, Checked};
use citybrain_scenarios::hospital_district::{District, Measures};
use citybrain_scenarios::signal_corridor::{Corridor, Policy};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The NGSI-LD hub: batch upsert, PATCH, retrieve, query, notifications,
    /// vs raw SQLite (or, with --postgres URL, on PostgreSQL vs raw PostgreSQL).
    Hub(HubBench),
    /// The scenarios' headline figures against their documented bands
    /// (scenarios/bands.json): the signal corridor (every policy, and the
    /// ambulance without and with priority) and the hospital district
    /// (baseline, City Brain). Prints each figure and its band; exits
    /// non-zero when one is outside.
    ///
    /// Example: citybrain bench scenarios --seeds 3
    Scenarios(ScenariosBench),
    /// Faults under load: this binary as a server on loopback, steady mixed
    /// load, killed with SIGKILL part-way and restarted on the same database;
    /// then every acknowledged write must be in the history and every one
    /// notified at least once. Prints the figures; exits non-zero on a loss.
    ///
    /// Example: citybrain bench soak --seconds 600
    Soak(SoakBench),
    /// Rules as code: batch matching against OpenFisca on the same rules
    /// (openfisca-country-template's basic_income and parenting_allowance,
    /// translated in policies/) and the same synthetic people, side by side;
    /// every result must be equal. Then 100 generated policies over a million
    /// enterprises, and single decisions with their explanation.
    ///
    /// Example: citybrain bench rules --openfisca-python /tmp/of/bin/python --json
    Rules(RulesArgs),
    /// Government services: newborn bundles (five departments, decided at
    /// once) and restaurant bundles (two officer reviews) started and
    /// finished against a real hub on SQLite; instances per second against
    /// Zeebe's 150/s. Exits non-zero below 150/s.
    ///
    /// Example: citybrain bench services --bundles 2000
    Services(ServicesArgs),
    /// Appeals at a 12345 hotline's scale: a million synthetic appeals
    /// checked, classified (a third come without a category), routed and
    /// searched for duplicates nearby in the text index; appeals/s and the
    /// duplicate search's p99. Then some through the hub on SQLite.
    ///
    /// Example: citybrain bench appeals --appeals 1000000 --json
    Appeals(AppealsArgs),
}

#[derive(Args, Clone)]
pub struct AppealsArgs {
    /// The appeals configuration folder.
    #[arg(long = "config", default_value = "appeals")]
    dir: PathBuf,
    /// Appeals filed and routed in memory.
    #[arg(long, default_value_t = 1_000_000)]
    appeals: usize,
    /// Appeals filed through the hub on SQLite (0: skip).
    #[arg(long, default_value_t = 5_000)]
    through_hub: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct ServicesArgs {
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    #[arg(long, default_value = "services")]
    services: PathBuf,
    /// Instances per bundle.
    #[arg(long, default_value_t = 2000)]
    bundles: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct RulesArgs {
    /// The policies folder (needs basic-income, parenting-allowance).
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Persons per OpenFisca comparison, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<usize>,
    /// A Python with openfisca-core 46 and openfisca-country-template 8
    /// (python3 -m venv V && V/bin/pip install openfisca-core==46.0.1
    /// openfisca-country-template==8.2.0). Without it only citybrain runs.
    #[arg(long)]
    openfisca_python: Option<PathBuf>,
    /// Enterprises for the many-policies run (0: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    enterprises: usize,
    /// Generated enterprise policies (the shipped SME refund runs besides).
    #[arg(long, default_value_t = 99)]
    enterprise_policies: usize,
    /// Timed repeats per size, after as many untimed ones to warm up, on
    /// both sides (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    repeats: u64,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct SoakBench {
    /// How long the load runs.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    seconds: u64,
    /// PATCHes per second.
    #[arg(long, default_value_t = 200)]
    write_rate: u64,
    /// Reads per second (queries, retrievals, temporal reads).
    #[arg(long, default_value_t = 100)]
    read_rate: u64,
    /// When to kill the server, as a fraction of the run (0 < f < 1); `none`: never.
    #[arg(long, default_value = "0.5")]
    kill_at: String,
    /// Fail when the server's resident memory passes this many MiB.
    #[arg(long, default_value_t = 1024)]
    max_rss_mib: u64,
}

#[derive(Args, Clone)]
pub struct ScenariosBench {
    /// Seeds 1..=N (the bands hold for 3 to 10).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
    /// Another bands file instead of the one built in.
    #[arg(long)]
    bands: Option<PathBuf>,
    /// Runs in parallel (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Args, Clone)]
pub struct HubBench {
    /// Entities to load (and query over).
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
    /// Entities per batch upsert.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds each timed phase runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Notification phase: changes per second to drive.
    #[arg(long, default_value_t = 1000)]
    notify_rate: u64,
    /// Run the hub on PostgreSQL instead of a temporary SQLite file
    /// (postgres://USER@HOST:PORT/DB); it works in a schema of its own,
    /// dropped at the end, and the peer is raw PostgreSQL.
    #[arg(long)]
    postgres: Option<String>,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Scenarios(b) => tokio::task::spawn_blocking(move || scenarios(b)).await?,
        BenchCommand::Services(b) => {
            citybrain_bench::services::run(citybrain_bench::services::ServicesBench {
                policies: b.policies,
                services: b.services,
                bundles: b.bundles,
                concurrency: b.concurrency,
                json: b.json,
            })
            .await
        }
        BenchCommand::Appeals(b) => {
            citybrain_bench::appeals::run(citybrain_bench::appeals::AppealsBench {
                appeals_dir: b.dir,
                appeals: b.appeals,
                through_hub: b.through_hub,
                json: b.json,
            })
            .await
        }
        BenchCommand::Rules(b) => {
            tokio::task::spawn_blocking(move || {
                citybrain_bench::rules::run(citybrain_bench::rules::RulesBench {
                    policies: b.policies,
                    sizes: b.sizes,
                    python: b.openfisca_python,
                    enterprises: b.enterprises,
                    enterprise_policies: b.enterprise_policies,
                    repeats: b.repeats as usize,
                    json: b.json,
                })
            })
            .await?
        }
        BenchCommand::Soak(b) => {
            let kill_at = match b.kill_at.trim() {
                "none" => None,
                f => match f.parse::<f64>() {
                    Ok(x) if x > 0.0 && x < 1.0 => Some(x),
                    _ => bail!("--kill-at {f}: a fraction between 0 and 1 (e.g. 0.5), or none"),
                },
            };
            citybrain_bench::soak::soak(citybrain_bench::soak::SoakConfig {
                exe: std::env::current_exe().context("cannot find this binary to run as the server")?,
                seconds: b.seconds,
                write_rate: b.write_rate.max(1),
                read_rate: b.read_rate.max(1),
                kill_at,
                max_rss_mib: b.max_rss_mib,
            })
            .await
            .map(|_| ())
        }
        BenchCommand::Hub(b) => {
            citybrain_bench::hub(citybrain_bench::HubBench {
                entities: b.entities,
                batch: b.batch,
                clients: b.clients,
                seconds: b.seconds,
                notify_rate: b.notify_rate,
                postgres: b.postgres,
            })
            .await
        }
    }
}

fn scenarios(b: ScenariosBench) -> Result<()> {
    let bands = match &b.bands {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Bands::parse(&p.display().to_string(), &text)?
        }
        None => Bands::embedded()?,
    };
    let seeds: Vec<u64> = (1..=b.seeds).collect();
    let threads = b
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut checked: Vec<Checked> = Vec::new();

    let corridor = Corridor::load().context("loading the signal corridor")?;
    let policies = bands
        .policies("signal-corridor")
        .iter()
        .map(|p| p.parse::<Policy>())
        .collect::<Result<Vec<_>, _>>()?;
    let plain = crate::scenario::corridor_summaries(&corridor, &policies, &seeds, false, threads)?;
    let amb = crate::scenario::corridor_summaries(&corridor, &policies, &seeds, true, threads)?;
    checked.extend(bands.check("signal-corridor", |p, f| {
        let s = plain.iter().find(|s| s.policy.name() == p)?;
        let a = amb.iter().find(|s| s.policy.name() == p)?.ambulance.as_ref();
        match f {
            "mean_travel_time_s" => Some(s.mean_travel_time_s),
            "mean_delay_s" => Some(s.mean_delay_s),
            "travel_time_vs_fixed_pct" => s.travel_time_vs_fixed_pct,
            "travel_time_vs_coordinated_pct" => s.travel_time_vs_coordinated_pct,
            "ambulance_without_priority_s" => a.map(|a| a.ambulance_travel_time_without_priority_s),
            "ambulance_with_priority_s" => a.map(|a| a.ambulance_travel_time_s),
            _ => None,
        }
    }));

    let district = District::load().context("loading the hospital district")?;
    let measures = bands
        .policies("hospital-district")
        .iter()
        .map(|p| p.parse::<Measures>())
        .collect::<Result<Vec<_>, _>>()?;
    let hospital = crate::scenario::hospital_summaries(&district, &measures, &seeds, threads, false, |_| {})?;
    checked.extend(bands.check("hospital-district", |p, f| {
        let s = hospital.iter().find(|s| s.policy == p)?;
        match f {
            "mean_wait_min" => Some(s.mean_wait_min),
            "max_wait_min" => Some(s.max_wait_min),
            "peak_queue_on_road" => Some(s.peak_queue_on_road),
            _ => None,
        }
    }));

    let source = b
        .bands
        .as_ref()
        .map_or("scenarios/bands.json (built in)".to_string(), |p| {
            p.display().to_string()
        });
    println!("scenario figures, seeds 1-{}, against {source}", b.seeds);
    println!(
        "{:<18} {:<12} {:<32} {:>10} {:>20}  ",
        "scenario", "policy", "figure", "value", "band"
    );
    for c in &checked {
        println!(
            "{:<18} {:<12} {:<32} {:>10} {:>20}  {}",
            c.scenario,
            c.policy,
            c.figure,
            c.value.map_or("missing".into(), |v| format!("{v:.1}")),
            format!("[{}, {}]", c.band.0, c.band.1),
            if c.holds() { "ok" } else { "OUT OF BAND" }
        );
    }
    let out = checked.iter().filter(|c| !c.holds()).count();
    if out > 0 {
        bail!("{out} of {} figures outside their documented bands", checked.len());
    }
    println!("all {} figures within their bands", checked.len());
    Ok(())
}
