//! `citybrain scenario`: the CLI of the scenario studies. Each scenario is a
//! subcommand with its own arguments; the runs, summaries and reports live in
//! `citybrain_scenarios` (`report::corridor`, `report::hospital`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use citybrain_scenarios::hospital_district::{self, District, Measures};
use citybrain_scenarios::report;
use citybrain_scenarios::report::corridor::Study;
use citybrain_scenarios::signal_corridor::{Corridor, Outcome, Policy, RunOptions};
use citybrain_scenarios::sumo_files::SumoFiles;
use citybrain_scenarios::ScenarioError;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum ScenarioCommand {
    /// Run a scenario under one or more policies and print the figures.
    ///
    /// Examples:
    ///   citybrain scenario run signal-corridor --policy fixed,citybrain --seeds 10
    ///   citybrain scenario run hospital-district --policy baseline,citybrain --seeds 10 --report h.html
    ///   citybrain scenario run sumo -n net.xml -r routes.xml --ambulance --ambulance-route A,B
    Run {
        #[command(subcommand)]
        scenario: Scenario,
    },
    /// List the scenarios.
    List,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// A 7 km arterial with 21 signals at the evening peak: fixed-time,
    /// actuated and City Brain control; --ambulance for emergency priority.
    SignalCorridor(CorridorArgs),
    /// A weekday around two Hangzhou hospitals: the baseline and the City
    /// Brain's parking measures.
    HospitalDistrict(HospitalArgs),
    /// Any SUMO network and routes, run as they are, under the signal
    /// corridor's policies and measures.
    Sumo(SumoArgs),
}

/// What every scenario takes.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Number of seeds (runs per policy): seed, seed+1, ...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object per policy instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Runs in parallel (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
}

impl StudyArgs {
    fn seeds(&self) -> Vec<u64> {
        (self.seed..self.seed + self.seeds).collect()
    }

    fn threads(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, 64)
    }
}

#[derive(Args, Debug)]
pub struct CorridorArgs {
    #[command(flatten)]
    study: StudyArgs,
    /// Policies, comma-separated: fixed, actuated, citybrain (default: all three).
    #[arg(long, value_delimiter = ',', value_parser = parse_policy)]
    policy: Vec<Policy>,
    /// Dispatch an ambulance along the whole arterial at 30 min; each run is
    /// made twice, without and with signal priority, and both are reported.
    #[arg(long)]
    ambulance: bool,
    /// Multiply every demand rate (1.0: the peak as specified).
    #[arg(long, default_value_t = 1.0, value_parser = parse_demand_scale)]
    demand_scale: f64,
    /// Demand period in seconds (default: the scenario's).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<f64>,
    /// The controllers read the queue lengths published every SECONDS — as
    /// live mode publishes them to the hub and reads them back, every 30 s —
    /// instead of the twin's readings of every step.
    #[arg(long, value_name = "SECONDS")]
    detector_period: Option<f64>,
}

#[derive(Args, Debug)]
pub struct SumoArgs {
    #[command(flatten)]
    study: StudyArgs,
    /// The SUMO network file.
    #[arg(short = 'n', long = "net-file", required = true)]
    net: PathBuf,
    /// Route files (comma-separated or repeated), run as they are.
    #[arg(short = 'r', long = "route-files", value_delimiter = ',', required = true)]
    routes: Vec<PathBuf>,
    /// Policies, comma-separated: fixed, actuated, citybrain (default: all three).
    #[arg(long, value_delimiter = ',', value_parser = parse_policy)]
    policy: Vec<Policy>,
    /// Dispatch an ambulance (see --ambulance-route); each run is made twice,
    /// without and with signal priority, and both are reported.
    #[arg(long, requires = "ambulance_route")]
    ambulance: bool,
    /// The ambulance's first and last edge, FROM,TO (SUMO edge ids); it takes
    /// the shortest way between them.
    #[arg(long, value_name = "FROM,TO", requires = "ambulance")]
    ambulance_route: Option<String>,
    /// When the ambulance departs, s (default: the middle of the demand period).
    #[arg(long, value_name = "SECONDS", requires = "ambulance")]
    ambulance_depart: Option<f64>,
}

#[derive(Args, Debug)]
pub struct HospitalArgs {
    #[command(flatten)]
    study: StudyArgs,
    /// Policies, comma-separated: baseline, citybrain, or
    /// baseline+MEASURE[+MEASURE…] with guidance, turn-away, fast-gates,
    /// drop-off, reservation (citybrain is the first four; add the fifth as
    /// citybrain+reservation); `each` runs the baseline, each measure alone,
    /// citybrain and citybrain+reservation (default: baseline,citybrain).
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// Share of drivers who follow guidance, 0–1 (default: the scenario's).
    #[arg(long, value_parser = parse_share)]
    compliance: Option<f64>,
    /// Multiply every demand rate (1.0: the day as specified).
    #[arg(long, default_value_t = 1.0, value_parser = parse_demand_scale)]
    demand_scale: f64,
}

fn parse_policy(s: &str) -> Result<Policy, ScenarioError> {
    s.parse()
}

fn parse_demand_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 5.0 => Ok(v),
        _ => Err("must be a number in (0, 5]".into()),
    }
}

fn parse_duration(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err("must be a number of seconds in (0, 86400]".into()),
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("must be between 0 and 1".into()),
    }
}

pub fn run(cmd: ScenarioCommand) -> Result<()> {
    match cmd {
        ScenarioCommand::List => {
            println!("hospital-district  a weekday around two Hangzhou hospitals; policies baseline, citybrain, baseline+guidance|turn-away|fast-gates, each");
            println!("signal-corridor  a 7 km arterial with 21 signals at the evening peak; policies fixed, actuated, citybrain; --ambulance");
            println!(
                "sumo             any SUMO network and routes (-n NET -r ROUTES) under the same policies and measures; --ambulance --ambulance-route FROM,TO"
            );
            Ok(())
        }
        ScenarioCommand::Run { scenario } => match scenario {
            Scenario::SignalCorridor(a) => signal_corridor(a),
            Scenario::HospitalDistrict(a) => hospital(a),
            Scenario::Sumo(a) => sumo(a),
        },
    }
}

fn or_all(policies: Vec<Policy>) -> Vec<Policy> {
    if policies.is_empty() {
        Policy::ALL.to_vec()
    } else {
        policies
    }
}

fn signal_corridor(a: CorridorArgs) -> Result<()> {
    let corridor = Corridor::load().context("loading the signal corridor")?;
    let study = Study {
        scenario: "signal-corridor".into(),
        policies: or_all(a.policy),
        seeds: a.study.seeds(),
        ambulance: a.ambulance,
        demand_scale: a.demand_scale,
        duration: a.duration,
        detector_period_s: a.detector_period,
        ambulance_free_flow_s: corridor.ambulance_free_flow_s(),
    };
    run_study(
        &study,
        &a.study,
        "Signal corridor: 7 km, 21 signals, evening peak",
        |o| corridor.run(o, |_| {}),
    )
}

fn sumo(a: SumoArgs) -> Result<()> {
    let mut files = SumoFiles::load(&a.net, &a.routes)?;
    if let Some(route) = &a.ambulance_route {
        let Some((from, to)) = route.split_once(',') else {
            bail!("--ambulance-route takes FROM,TO (two edge ids), got '{route}'");
        };
        files = files.with_ambulance(from.trim(), to.trim(), a.ambulance_depart)?;
    }
    let study = Study {
        scenario: "sumo".into(),
        policies: or_all(a.policy),
        seeds: a.study.seeds(),
        ambulance: a.ambulance,
        demand_scale: 1.0,
        duration: None,
        detector_period_s: None,
        ambulance_free_flow_s: files.ambulance_free_flow_s().unwrap_or(f64::NAN),
    };
    let title = format!("sumo on {}", a.net.display());
    run_study(&study, &a.study, &title, |o| {
        files.run(o.policy, o.seed, o.ambulance, |_| {})
    })
}

/// Runs every job of `study`, prints the table or JSON lines, writes the report.
fn run_study(
    study: &Study,
    args: &StudyArgs,
    title: &str,
    run: impl Fn(&RunOptions) -> Result<Outcome, ScenarioError> + Sync,
) -> Result<()> {
    let jobs = study.plan();
    let outcomes = crate::runs::run_all(
        &jobs,
        args.threads(),
        args.json,
        |o| format!("{} seed {}", o.policy.name(), o.seed),
        run,
    )?;
    let summaries = study.summarize(&jobs, outcomes);
    if args.json {
        for s in &summaries {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        print!(
            "{}",
            report::corridor::table(&study.scenario, &summaries, study.seeds.len())
        );
    }
    if let Some(path) = &args.report {
        write_report(path, &report::corridor::html(title, &summaries, &study.seeds))?;
    }
    Ok(())
}

fn hospital(a: HospitalArgs) -> Result<()> {
    let district = District::load().context("loading the hospital district")?;
    let measures: Vec<Measures> = if a.policy.is_empty() {
        vec![Measures::BASELINE, Measures::CITYBRAIN]
    } else if a.policy.iter().any(|p| p == "each") {
        Measures::each_alone()
    } else {
        a.policy
            .iter()
            .map(|p| p.parse::<Measures>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--policy: {e}"))?
    };
    let seeds = a.study.seeds();
    let mut jobs = Vec::new();
    for &m in &measures {
        for &s in &seeds {
            let mut o = hospital_district::RunOptions::new(m, s);
            o.demand_scale = a.demand_scale;
            o.compliance = a.compliance;
            jobs.push(o);
        }
    }
    let outcomes = crate::runs::run_all(
        &jobs,
        a.study.threads(),
        a.study.json,
        |o| format!("{} seed {}", o.measures.name(), o.seed),
        |o| district.run(o, |_| {}),
    )?;
    let results: Vec<(&hospital_district::RunOptions, hospital_district::Outcome)> =
        jobs.iter().zip(outcomes).collect();
    let summaries: Vec<report::hospital::PolicySummary> = measures
        .iter()
        .map(|m| {
            let runs = results
                .iter()
                .filter(|(j, _)| j.measures == *m)
                .map(|(_, o)| o.clone())
                .collect();
            report::hospital::summarize(m.name(), &seeds, runs)
        })
        .collect();
    if a.study.json {
        for s in &summaries {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        print!("{}", report::hospital::table(&summaries, seeds.len()));
    }
    if let Some(path) = &a.study.report {
        write_report(path, &report::hospital::html(&district, &summaries, &seeds))?;
    }
    Ok(())
}

fn write_report(path: &Path, html: &str) -> Result<()> {
    std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}
