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
    /// Choose the signal corridor's common cycle for its coordinated plans:
    /// for each candidate cycle, offsets by maximal bandwidth, then the twin
    /// runs the calibration seeds (not the reported seeds 1-10); prints the
    /// bands and the mean travel time per cycle, best first. The chosen
    /// cycle goes into corridor.json (coordination.common_cycle_s).
    ///
    /// Example:
    ///   citybrain scenario coordinate --seed 1001 --seeds 3 --step 4
    Coordinate(CoordinateArgs),
    /// Write a scenario's network and one seed's demand as SUMO files (for
    /// SUMO's own controllers on the same traffic: bench/corridor-vs-sumo.sh).
    ///
    /// Example:
    ///   citybrain scenario export signal-corridor --seed 3 --out /tmp/c3
    Export {
        #[command(subcommand)]
        scenario: ExportScenario,
    },
    /// List the scenarios.
    List,
}

#[derive(Args, Debug)]
pub struct CoordinateArgs {
    /// First calibration seed.
    #[arg(long, default_value_t = 1001)]
    seed: u64,
    /// Number of calibration seeds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
    /// Shortest cycle tried, s (default: the longest signal's own cycle).
    #[arg(long)]
    from: Option<f64>,
    /// Longest cycle tried, s (default: the corridor's max_cycle_s).
    #[arg(long)]
    to: Option<f64>,
    /// Step between cycles, s.
    #[arg(long, default_value_t = 4.0)]
    step: f64,
    /// Progression speeds tried, m/s, comma-separated (default: the
    /// corridor's progression_speed_mps).
    #[arg(long, value_delimiter = ',')]
    speeds: Vec<f64>,
    /// Runs in parallel (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum ExportScenario {
    /// The signal corridor: corridor.net.xml and corridor.rou.xml.
    SignalCorridor {
        /// The seed whose demand is written.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
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
    /// Policies, comma-separated: fixed (each signal's Webster plan, offsets
    /// 0), coordinated (common cycle, green-wave offsets), actuated,
    /// citybrain (default: all four).
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
    /// Multiply inputs of district.json for a sensitivity run: POINTER=FACTOR
    /// (JSON pointer, `*` for every element), repeatable, e.g.
    /// --scale /hospitals/*/visitor_spaces=0.8 --scale /gates/pay_at_exit_s=1.2
    #[arg(long, value_parser = parse_scale)]
    scale: Vec<(String, f64)>,
}

fn parse_scale(s: &str) -> Result<(String, f64), String> {
    let (p, f) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}' is not POINTER=FACTOR"))?;
    match f.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 10.0 && p.starts_with('/') => Ok((p.to_string(), x)),
        _ => Err(format!("'{s}': POINTER starts with '/', FACTOR in (0, 10]")),
    }
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
            println!("signal-corridor  a 7 km arterial with 21 signals at the evening peak; policies fixed, coordinated, actuated, citybrain; --ambulance");
            println!(
                "sumo             any SUMO network and routes (-n NET -r ROUTES) under the same policies and measures; --ambulance --ambulance-route FROM,TO"
            );
            Ok(())
        }
        ScenarioCommand::Coordinate(a) => coordinate(a),
        ScenarioCommand::Export {
            scenario: ExportScenario::SignalCorridor { seed, out },
        } => export_corridor(seed, &out),
        ScenarioCommand::Run { scenario } => match scenario {
            Scenario::SignalCorridor(a) => signal_corridor(a),
            Scenario::HospitalDistrict(a) => hospital(a),
            Scenario::Sumo(a) => sumo(a),
        },
    }
}

fn coordinate(a: CoordinateArgs) -> Result<()> {
    if a.step <= 0.0 {
        bail!("--step must be above 0 s");
    }
    let base = Corridor::load().context("loading the signal corridor")?;
    let from = a.from.unwrap_or_else(|| base.longest_own_cycle_s());
    let to = a.to.unwrap_or(base.spec.signals.max_cycle_s);
    if to < from {
        bail!("--to ({to} s) is below --from ({from} s)");
    }
    let speeds = if a.speeds.is_empty() {
        vec![base.spec.coordination.progression_speed_mps]
    } else {
        a.speeds.clone()
    };
    if speeds.iter().any(|v| !(*v > 0.0 && *v < 40.0)) {
        bail!("--speeds must be in (0, 40) m/s");
    }
    let mut corridors = Vec::new();
    for &v in &speeds {
        let mut c = from;
        while c <= to + 1e-9 {
            corridors.push(base.clone().with_coordination(c, v)?);
            c += a.step;
        }
    }
    let seeds: Vec<u64> = (a.seed..a.seed + a.seeds).collect();
    let jobs: Vec<(usize, u64)> = (0..corridors.len())
        .flat_map(|i| seeds.iter().map(move |&s| (i, s)))
        .collect();
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let outcomes = crate::runs::run_all(
        &jobs,
        threads,
        false,
        |(i, s)| format!("cycle {} s seed {s}", corridors[*i].spec.coordination.common_cycle_s),
        |&(i, s)| corridors[i].run(&RunOptions::new(Policy::Coordinated, s), |_| {}),
    )?;
    let mut rows: Vec<(f64, &Corridor)> = corridors
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let tt: Vec<f64> = jobs
                .iter()
                .zip(&outcomes)
                .filter(|((j, _), _)| *j == i)
                .map(|(_, o)| o.mean_travel_time_s)
                .collect();
            (tt.iter().sum::<f64>() / tt.len() as f64, c)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "coordinated plans, calibration seeds {}..{}: best first",
        a.seed,
        a.seed + a.seeds - 1
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>16}",
        "cycle s", "speed m/s", "band E s", "band W s", "travel time s"
    );
    for (tt, c) in rows {
        let p = &c.progression;
        println!(
            "{:>8.0} {:>9.2} {:>10.1} {:>10.1} {:>16.1}",
            p.cycle_s, c.spec.coordination.progression_speed_mps, p.outbound_band_s, p.inbound_band_s, tt
        );
    }
    Ok(())
}

fn export_corridor(seed: u64, out: &Path) -> Result<()> {
    let corridor = Corridor::load().context("loading the signal corridor")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let net = out.join("corridor.net.xml");
    std::fs::write(&net, corridor.net_xml()?).with_context(|| format!("writing {}", net.display()))?;
    let routes = out.join("corridor.rou.xml");
    let demand = corridor.demand(&RunOptions::new(Policy::Fixed, seed))?;
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&routes).with_context(|| format!("writing {}", routes.display()))?,
    );
    citybrain_sim::output::write_routes_xml(&mut w, &corridor.net, &demand)
        .with_context(|| format!("writing {}", routes.display()))?;
    println!("wrote {} and {} (seed {seed})", net.display(), routes.display());
    Ok(())
}

fn or_all(policies: Vec<Policy>, all: &[Policy]) -> Vec<Policy> {
    if policies.is_empty() {
        all.to_vec()
    } else {
        policies
    }
}

fn signal_corridor(a: CorridorArgs) -> Result<()> {
    let corridor = Corridor::load().context("loading the signal corridor")?;
    let study = Study {
        scenario: "signal-corridor".into(),
        policies: or_all(a.policy, &Policy::ALL),
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
        study.policies.contains(&Policy::Coordinated).then(|| {
            let p = &corridor.progression;
            format!(
                "(coordinated: common cycle {:.0} s; green-wave bands {:.1} s eastbound, {:.1} s westbound at {:.1} m/s, by maximal bandwidth)",
                p.cycle_s, p.outbound_band_s, p.inbound_band_s, corridor.spec.coordination.progression_speed_mps
            )
        }),
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
        policies: or_all(a.policy, &Policy::ANY_NETWORK),
        seeds: a.study.seeds(),
        ambulance: a.ambulance,
        demand_scale: 1.0,
        duration: None,
        detector_period_s: None,
        ambulance_free_flow_s: files.ambulance_free_flow_s().unwrap_or(f64::NAN),
    };
    let title = format!("sumo on {}", a.net.display());
    run_study(&study, &a.study, &title, None, |o| {
        files.run(o.policy, o.seed, o.ambulance, |_| {})
    })
}

/// Runs every job of `study`, prints the table or JSON lines, writes the report.
fn run_study(
    study: &Study,
    args: &StudyArgs,
    title: &str,
    footnote: Option<String>,
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
        if let Some(f) = footnote {
            println!("{f}");
        }
    }
    if let Some(path) = &args.report {
        write_report(path, &report::corridor::html(title, &summaries, &study.seeds))?;
    }
    Ok(())
}

fn hospital(a: HospitalArgs) -> Result<()> {
    let district = District::load_scaled(&a.scale).context("loading the hospital district")?;
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
    let summaries = hospital_summaries(&district, &measures, &seeds, a.study.threads(), a.study.json, |o| {
        o.demand_scale = a.demand_scale;
        o.compliance = a.compliance;
    })?;
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

/// Runs every (measures, seed) of the hospital district and summarizes each
/// set of measures over the seeds.
pub fn hospital_summaries(
    district: &District,
    measures: &[Measures],
    seeds: &[u64],
    threads: usize,
    quiet: bool,
    adjust: impl Fn(&mut hospital_district::RunOptions),
) -> Result<Vec<report::hospital::PolicySummary>> {
    let mut jobs = Vec::new();
    for &m in measures {
        for &s in seeds {
            let mut o = hospital_district::RunOptions::new(m, s);
            adjust(&mut o);
            jobs.push(o);
        }
    }
    let outcomes = crate::runs::run_all(
        &jobs,
        threads,
        quiet,
        |o| format!("{} seed {}", o.measures.name(), o.seed),
        |o| district.run(o, |_| {}),
    )?;
    let results: Vec<(&hospital_district::RunOptions, hospital_district::Outcome)> =
        jobs.iter().zip(outcomes).collect();
    Ok(measures
        .iter()
        .map(|m| {
            let runs = results
                .iter()
                .filter(|(j, _)| j.measures == *m)
                .map(|(_, o)| o.clone())
                .collect();
            report::hospital::summarize(m.name(), seeds, runs)
        })
        .collect())
}

/// Runs the signal corridor's policies over `seeds` (with the ambulance
/// twice: without and with priority) and summarizes each policy.
pub fn corridor_summaries(
    corridor: &Corridor,
    policies: &[Policy],
    seeds: &[u64],
    ambulance: bool,
    threads: usize,
) -> Result<Vec<report::corridor::PolicySummary>> {
    let study = Study {
        scenario: "signal-corridor".into(),
        policies: policies.to_vec(),
        seeds: seeds.to_vec(),
        ambulance,
        demand_scale: 1.0,
        duration: None,
        detector_period_s: None,
        ambulance_free_flow_s: corridor.ambulance_free_flow_s(),
    };
    let jobs = study.plan();
    let outcomes = crate::runs::run_all(
        &jobs,
        threads,
        false,
        |o| format!("{} seed {}", o.policy.name(), o.seed),
        |o| corridor.run(o, |_| {}),
    )?;
    Ok(study.summarize(&jobs, outcomes))
}

fn write_report(path: &Path, html: &str) -> Result<()> {
    std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}
