//! `citybrain scenario run NAME`: a scenario under each policy, over seeds,
//! as a table, JSON lines, or a self-contained HTML report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use citybrain_scenarios::signal_corridor::{Ambulance, Corridor, Outcome, Policy, RunOptions};
use citybrain_scenarios::stats::Spread;
use citybrain_scenarios::sumo_files::SumoFiles;
use citybrain_scenarios::ScenarioError;
use clap::{Args, Subcommand};
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum ScenarioCommand {
    /// Run a scenario under one or more policies and print the figures.
    ///
    /// Examples:
    ///   citybrain scenario run signal-corridor --policy fixed,citybrain --seeds 10
    ///   citybrain scenario run hospital-district --policy baseline,citybrain --seeds 10 --report h.html
    Run(Box<RunArgs>),
    /// List the scenarios.
    List,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scenario (see `citybrain scenario list`).
    name: String,
    /// With `sumo`: the SUMO network file.
    #[arg(short = 'n', long = "net-file")]
    net: Option<PathBuf>,
    /// With `sumo`: route files (comma-separated or repeated).
    #[arg(short = 'r', long = "route-files", value_delimiter = ',')]
    routes: Vec<PathBuf>,
    /// Policies, comma-separated. signal-corridor and sumo: fixed, actuated,
    /// citybrain (default: all three). hospital-district: baseline, citybrain,
    /// or baseline+MEASURE[+MEASURE…] with guidance, turn-away, fast-gates,
    /// drop-off, reservation (citybrain is the first four; add the fifth as
    /// citybrain+reservation); `each` runs the baseline, each measure alone,
    /// citybrain and citybrain+reservation (default: baseline,citybrain).
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// hospital-district: share of drivers who follow guidance (default: the scenario's).
    #[arg(long)]
    compliance: Option<f64>,
    /// Dispatch an ambulance (signal-corridor: along the whole arterial;
    /// sumo: see --ambulance-route); each run is made twice, without and with
    /// signal priority, and both are reported.
    #[arg(long)]
    ambulance: bool,
    /// With `sumo --ambulance`: the ambulance's first and last edge, FROM,TO
    /// (SUMO edge ids); it takes the shortest way between them.
    #[arg(long, value_name = "FROM,TO")]
    ambulance_route: Option<String>,
    /// With `sumo --ambulance`: when it departs, s (default: the middle of the
    /// demand period).
    #[arg(long, value_name = "SECONDS")]
    ambulance_depart: Option<f64>,
    /// Number of seeds (runs per policy): seed, seed+1, ...
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// signal-corridor and hospital-district: multiply every demand rate
    /// (1.0: the peak as specified).
    #[arg(long, default_value_t = 1.0)]
    demand_scale: f64,
    /// signal-corridor: demand period in seconds (default: the scenario's).
    #[arg(long)]
    duration: Option<f64>,
    /// signal-corridor: the controllers read the queue lengths published every
    /// SECONDS — as live mode publishes them to the hub and reads them back,
    /// every 30 s — instead of the twin's readings of every step.
    #[arg(long, value_name = "SECONDS")]
    detector_period: Option<f64>,
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

/// The figures of one policy over all seeds (the JSON line).
#[derive(Debug, Serialize)]
struct PolicySummary {
    scenario: String,
    policy: Policy,
    seeds: Vec<u64>,
    mean_travel_time_s: f64,
    mean_delay_s: f64,
    delay_index: f64,
    throughput_veh_per_h: f64,
    max_queue_veh: f64,
    teleports: f64,
    spread: Spreads,
    /// The controllers read queues published this often (`--detector-period`),
    /// not the twin's readings of every step.
    #[serde(skip_serializing_if = "Option::is_none")]
    detector_period_s: Option<f64>,
    /// Relative to fixed-time (negative: faster), when fixed ran too.
    #[serde(skip_serializing_if = "Option::is_none")]
    travel_time_vs_fixed_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ambulance: Option<AmbulanceSummary>,
    runs: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
struct Spreads {
    mean_travel_time_s: Spread,
    mean_delay_s: Spread,
    delay_index: Spread,
    throughput_veh_per_h: Spread,
    max_queue_veh: Spread,
}

#[derive(Debug, Serialize)]
struct AmbulanceSummary {
    /// Free-flow time along its route at the ambulance's speed.
    free_flow_s: f64,
    ambulance_travel_time_s: f64,
    ambulance_travel_time_without_priority_s: f64,
    saving_pct: f64,
    /// Mean travel time of the other vehicles, with priority minus without.
    extra_delay_others_s: f64,
    /// This policy with priority against fixed-time control without it (the
    /// ambulance in today's traffic), when fixed ran too.
    #[serde(skip_serializing_if = "Option::is_none")]
    saving_vs_fixed_without_priority_pct: Option<f64>,
    spread_with: Spread,
    spread_without: Spread,
    runs_without_priority: Vec<Outcome>,
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
        ScenarioCommand::Run(a) => run_scenario(*a),
    }
}

/// What a run is made on.
enum Target {
    Corridor(Box<Corridor>),
    Sumo(SumoFiles),
}

impl Target {
    fn run(&self, o: &RunOptions) -> Result<Outcome, ScenarioError> {
        match self {
            Target::Corridor(c) => c.run(o, |_| {}),
            Target::Sumo(s) => s.run(o.policy, o.seed, o.ambulance, |_| {}),
        }
    }
}

fn run_scenario(a: RunArgs) -> Result<()> {
    if a.seeds == 0 || a.seeds > 1000 {
        bail!("--seeds must be between 1 and 1000");
    }
    if !(a.demand_scale > 0.0 && a.demand_scale <= 5.0) {
        bail!("--demand-scale must be in (0, 5]");
    }
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    if a.name == "hospital-district" {
        if a.ambulance
            || a.ambulance_route.is_some()
            || a.ambulance_depart.is_some()
            || a.duration.is_some()
            || a.detector_period.is_some()
            || a.net.is_some()
        {
            bail!("hospital-district takes --policy, --seeds, --seed, --demand-scale, --compliance, --json, --report, --jobs");
        }
        return crate::hospital::run(crate::hospital::HospitalArgs {
            policies: a.policy,
            seeds: (a.seed..a.seed + a.seeds).collect(),
            demand_scale: a.demand_scale,
            compliance: a.compliance,
            json: a.json,
            report: a.report,
            jobs: threads,
        });
    }
    if a.compliance.is_some() {
        bail!("--compliance is for hospital-district");
    }
    if a.name == "sumo" && (a.duration.is_some() || a.demand_scale != 1.0) {
        bail!("scenario sumo runs the route files as they are: --duration and --demand-scale are for signal-corridor");
    }
    if a.name != "signal-corridor" && a.detector_period.is_some() {
        bail!("--detector-period is for signal-corridor");
    }
    if a.name != "sumo" && (a.ambulance_route.is_some() || a.ambulance_depart.is_some()) {
        bail!("--ambulance-route and --ambulance-depart are for scenario sumo (the corridor's ambulance drives its arterial at 30 min)");
    }
    let target = match a.name.as_str() {
        "signal-corridor" => Target::Corridor(Box::new(Corridor::load().context("loading the signal corridor")?)),
        "sumo" => {
            let Some(net) = &a.net else {
                bail!("scenario sumo needs -n NET and -r ROUTES");
            };
            if a.routes.is_empty() {
                bail!("scenario sumo needs -r ROUTES");
            }
            let files = SumoFiles::load(net, &a.routes)?;
            match (a.ambulance, &a.ambulance_route) {
                (true, Some(route)) => {
                    let Some((from, to)) = route.split_once(',') else {
                        bail!("--ambulance-route takes FROM,TO (two edge ids), got '{route}'");
                    };
                    Target::Sumo(files.with_ambulance(from.trim(), to.trim(), a.ambulance_depart)?)
                }
                (true, None) => bail!("scenario sumo --ambulance needs --ambulance-route FROM,TO (edge ids)"),
                (false, _) if a.ambulance_route.is_some() || a.ambulance_depart.is_some() => {
                    bail!("--ambulance-route and --ambulance-depart need --ambulance")
                }
                (false, _) => Target::Sumo(files),
            }
        }
        other => bail!("unknown scenario '{other}' (see `citybrain scenario list`)"),
    };
    if a.duration.is_some_and(|d| !(d > 0.0 && d <= 86_400.0)) {
        bail!("--duration must be in (0, 86400] seconds");
    }
    let policies: Vec<Policy> = if a.policy.is_empty() {
        Policy::ALL.to_vec()
    } else {
        a.policy
            .iter()
            .map(|p| p.parse::<Policy>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--policy: {e}"))?
    };
    let seeds: Vec<u64> = (a.seed..a.seed + a.seeds).collect();
    let modes: Vec<Ambulance> = if a.ambulance {
        vec![Ambulance::WithoutPriority, Ambulance::WithPriority]
    } else {
        vec![Ambulance::None]
    };
    // Every (policy, mode, seed) run is independent: spread them over threads.
    let mut jobs = Vec::new();
    for &p in &policies {
        for &m in &modes {
            for &s in &seeds {
                let mut o = RunOptions::new(p, s);
                o.ambulance = m;
                o.demand_scale = a.demand_scale;
                o.duration = a.duration;
                o.detector_period_s = a.detector_period;
                jobs.push(o);
            }
        }
    }
    let outcomes = crate::runs::run_all(
        &jobs,
        threads,
        a.json,
        |o| format!("{} seed {}", o.policy.name(), o.seed),
        |o| target.run(o),
    )?;
    let results: Vec<(usize, Outcome)> = outcomes.into_iter().enumerate().collect();
    let outcome_of = |p: Policy, m: Ambulance| -> Vec<Outcome> {
        results
            .iter()
            .filter(|(i, _)| jobs[*i].policy == p && jobs[*i].ambulance == m)
            .map(|(_, o)| o.clone())
            .collect()
    };
    // With an ambulance, the traffic figures are those of the priority runs.
    let main_mode = *modes.last().unwrap_or(&Ambulance::None);
    let mut summaries: Vec<PolicySummary> = policies
        .iter()
        .map(|&p| {
            let free_flow = match &target {
                Target::Corridor(c) => c.ambulance_free_flow_s(),
                Target::Sumo(s) => s.ambulance_free_flow_s().unwrap_or(f64::NAN),
            };
            let without = a.ambulance.then(|| outcome_of(p, Ambulance::WithoutPriority));
            summarize(
                &a.name,
                free_flow,
                p,
                &seeds,
                a.detector_period,
                outcome_of(p, main_mode),
                without,
            )
        })
        .collect();
    if let Some(fixed_tt) = summaries
        .iter()
        .find(|s| s.policy == Policy::Fixed)
        .map(|s| s.mean_travel_time_s)
    {
        for s in &mut summaries {
            s.travel_time_vs_fixed_pct = Some(100.0 * (s.mean_travel_time_s / fixed_tt - 1.0));
        }
    }
    if let Some(fixed_without) = summaries
        .iter()
        .find(|s| s.policy == Policy::Fixed)
        .and_then(|s| s.ambulance.as_ref())
        .map(|a| a.ambulance_travel_time_without_priority_s)
    {
        for s in &mut summaries {
            if let Some(a) = s.ambulance.as_mut() {
                a.saving_vs_fixed_without_priority_pct =
                    Some(100.0 * (1.0 - a.ambulance_travel_time_s / fixed_without));
            }
        }
    }
    if a.json {
        for s in &summaries {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        print_table(&a.name, &summaries, seeds.len());
    }
    if let Some(path) = &a.report {
        let title = match a.name.as_str() {
            "signal-corridor" => "Signal corridor: 7 km, 21 signals, evening peak".to_string(),
            _ => format!(
                "{} on {}",
                a.name,
                a.net.as_ref().map_or(String::new(), |n| n.display().to_string())
            ),
        };
        std::fs::write(path, report_html(&title, &summaries, &seeds))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    Ok(())
}

fn summarize(
    scenario: &str,
    ambulance_free_flow_s: f64,
    policy: Policy,
    seeds: &[u64],
    detector_period_s: Option<f64>,
    runs: Vec<Outcome>,
    without: Option<Vec<Outcome>>,
) -> PolicySummary {
    let sp = |f: &dyn Fn(&Outcome) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    let spread = Spreads {
        mean_travel_time_s: sp(&|o| o.mean_travel_time_s),
        mean_delay_s: sp(&|o| o.mean_delay_s),
        delay_index: sp(&|o| o.delay_index),
        throughput_veh_per_h: sp(&|o| o.throughput_veh_per_h),
        max_queue_veh: sp(&|o| o.max_queue_veh as f64),
    };
    let ambulance = without.map(|without| {
        let amb = |rs: &[Outcome]| Spread::of(&rs.iter().filter_map(|o| o.ambulance_travel_time_s).collect::<Vec<_>>());
        let (with_s, without_s) = (amb(&runs), amb(&without));
        let others = |rs: &[Outcome]| rs.iter().map(|o| o.mean_travel_time_s).sum::<f64>() / rs.len().max(1) as f64;
        AmbulanceSummary {
            free_flow_s: ambulance_free_flow_s,
            ambulance_travel_time_s: with_s.mean,
            ambulance_travel_time_without_priority_s: without_s.mean,
            saving_pct: 100.0 * (1.0 - with_s.mean / without_s.mean),
            extra_delay_others_s: others(&runs) - others(&without),
            saving_vs_fixed_without_priority_pct: None,
            spread_with: with_s,
            spread_without: without_s,
            runs_without_priority: without,
        }
    });
    PolicySummary {
        scenario: scenario.to_string(),
        policy,
        seeds: seeds.to_vec(),
        mean_travel_time_s: spread.mean_travel_time_s.mean,
        mean_delay_s: spread.mean_delay_s.mean,
        delay_index: spread.delay_index.mean,
        throughput_veh_per_h: spread.throughput_veh_per_h.mean,
        max_queue_veh: spread.max_queue_veh.mean,
        teleports: runs.iter().map(|o| o.teleports as f64).sum::<f64>() / runs.len().max(1) as f64,
        spread,
        detector_period_s,
        travel_time_vs_fixed_pct: None,
        ambulance,
        runs,
    }
}

fn print_table(name: &str, summaries: &[PolicySummary], seeds: usize) {
    println!("{name}, {seeds} seed(s): mean ± sd over seeds");
    if let Some(p) = summaries.first().and_then(|s| s.detector_period_s) {
        println!("(the controllers read the queues published every {p} s, as from the hub)");
    }
    println!(
        "{:<10} {:>16} {:>9} {:>14} {:>8} {:>15} {:>11} {:>9}",
        "policy", "travel time s", "vs fixed", "delay s", "index", "throughput/h", "max queue", "teleports"
    );
    for s in summaries {
        let sp = &s.spread;
        println!(
            "{:<10} {:>9.1} ± {:<4.1} {:>9} {:>7.1} ± {:<4.1} {:>8.3} {:>15.0} {:>11.1} {:>9.1}",
            s.policy.name(),
            sp.mean_travel_time_s.mean,
            sp.mean_travel_time_s.sd,
            s.travel_time_vs_fixed_pct.map_or("-".into(), |p| format!("{p:+.1}%")),
            sp.mean_delay_s.mean,
            sp.mean_delay_s.sd,
            sp.delay_index.mean,
            sp.throughput_veh_per_h.mean,
            sp.max_queue_veh.mean,
            s.teleports
        );
    }
    if summaries.iter().any(|s| s.ambulance.is_some()) {
        println!();
        println!(
            "{:<10} {:>22} {:>22} {:>9} {:>20} {:>24}",
            "ambulance", "without priority s", "with priority s", "saving", "others' extra s", "vs fixed w/o priority"
        );
        for s in summaries {
            if let Some(a) = &s.ambulance {
                println!(
                    "{:<10} {:>15.1} ± {:<4.1} {:>15.1} ± {:<4.1} {:>8.1}% {:>20.1} {:>24}",
                    s.policy.name(),
                    a.spread_without.mean,
                    a.spread_without.sd,
                    a.spread_with.mean,
                    a.spread_with.sd,
                    a.saving_pct,
                    a.extra_delay_others_s,
                    a.saving_vs_fixed_without_priority_pct
                        .map_or("-".into(), |p| format!("{p:.1}% saved"))
                );
            }
        }
        if let Some(a) = summaries.iter().find_map(|s| s.ambulance.as_ref()) {
            println!(
                "(the ambulance's free-flow time along its route: {:.0} s)",
                a.free_flow_s
            );
        }
    }
}

/// A report that opens offline: the tables, and bars with the spread over seeds.
fn report_html(title: &str, summaries: &[PolicySummary], seeds: &[u64]) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut rows = String::new();
    for s in summaries {
        rows += &format!(
            "<tr><td>{}</td><td>{:.1} ± {:.1}</td><td>{}</td><td>{:.1}</td><td>{:.3}</td><td>{:.0}</td><td>{:.1}</td></tr>",
            s.policy.name(),
            s.spread.mean_travel_time_s.mean,
            s.spread.mean_travel_time_s.sd,
            s.travel_time_vs_fixed_pct.map_or("-".into(), |p| format!("{p:+.1}%")),
            s.mean_delay_s,
            s.delay_index,
            s.throughput_veh_per_h,
            s.max_queue_veh,
        );
    }
    let travel: Vec<(String, &Spread, &str)> = summaries
        .iter()
        .map(|s| (s.policy.name().to_string(), &s.spread.mean_travel_time_s, "#3b82f6"))
        .collect();
    let json = esc(&serde_json::to_string_pretty(summaries).unwrap_or_default());
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>citybrain — {}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:1em;overflow:auto;max-height:30em}}</style>\
<h1>{}</h1><p>Seeds: {}. Mean ± sample standard deviation over seeds; bars show the mean, whiskers the range.{}</p>\
<table id=\"traffic\"><tr><th>policy</th><th>mean travel time s</th><th>vs fixed</th><th>mean delay s</th><th>delay index</th><th>throughput veh/h</th><th>max queue veh</th></tr>{rows}</table>\
<h2>Mean travel time</h2>{}{}\
<h2>Every run</h2><pre>{json}</pre></html>\n",
        esc(title),
        esc(title),
        seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        summaries
            .first()
            .and_then(|s| s.detector_period_s)
            .map_or(String::new(), |p| format!(
                " The controllers read the queues published every {p} s (as from the hub), not the twin's readings of every step."
            )),
        spread_bars(&travel, None),
        ambulance_section(summaries),
    )
}

/// The ambulance's runs without and with priority, beside its free-flow time
/// (which bounds what any signal control can save).
fn ambulance_section(summaries: &[PolicySummary]) -> String {
    let runs: Vec<(&PolicySummary, &AmbulanceSummary)> = summaries
        .iter()
        .filter_map(|s| s.ambulance.as_ref().map(|a| (s, a)))
        .collect();
    let Some((_, first)) = runs.first() else {
        return String::new();
    };
    let mut rows = String::new();
    let mut bars = Vec::new();
    for (s, a) in &runs {
        let name = s.policy.name();
        let bound = 100.0 * (1.0 - a.free_flow_s / a.spread_without.mean.max(f64::MIN_POSITIVE));
        rows += &format!(
            "<tr><td>{name}</td><td>{:.0} ± {:.0}</td><td>{:.0} ± {:.0}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:+.1}</td><td>{}</td></tr>",
            a.spread_without.mean,
            a.spread_without.sd,
            a.spread_with.mean,
            a.spread_with.sd,
            a.saving_pct,
            bound.max(0.0),
            a.extra_delay_others_s,
            a.saving_vs_fixed_without_priority_pct
                .map_or("-".into(), |p| format!("{p:.1}%")),
        );
        bars.push((format!("{name}, without"), &a.spread_without, "#9ca3af"));
        bars.push((format!("{name}, with"), &a.spread_with, "#dc2626"));
    }
    format!(
        "<h2>Ambulance: without and with signal priority</h2>\
<p>Its free-flow time along the route is {:.0} s: no control can get it there sooner, so priority saves at most \
1 − free-flow / time without priority (the \"at most\" column).</p>\
<table id=\"ambulance\"><tr><th>policy</th><th>without priority s</th><th>with priority s</th><th>saving</th><th>at most</th>\
<th>others' extra travel time s</th><th>with priority vs fixed without</th></tr>{rows}</table>{}",
        first.free_flow_s,
        spread_bars(&bars, Some(("free flow", first.free_flow_s))),
    )
}

/// Horizontal bars (mean) with whiskers (range), and an optional marked value.
fn spread_bars(bars: &[(String, &Spread, &str)], mark: Option<(&str, f64)>) -> String {
    let max = bars.iter().map(|(_, s, _)| s.max).fold(1.0, f64::max);
    let x = |v: f64| 150.0 + 500.0 * v / max;
    let mut svg = String::new();
    for (i, (label, sp, colour)) in bars.iter().enumerate() {
        let y = 20 + i as i32 * 34;
        svg += &format!(
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"150\" y=\"{y}\" width=\"{:.1}\" height=\"22\" fill=\"{colour}\"/>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#111\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{}\">{:.0} s</text>",
            y + 16,
            label,
            x(sp.mean) - 150.0,
            x(sp.min),
            x(sp.max),
            y + 11,
            y + 11,
            x(sp.max) + 8.0,
            y + 16,
            sp.mean
        );
    }
    let height = 30 + bars.len() * 34;
    if let Some((label, v)) = mark {
        svg += &format!(
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"10\" y2=\"{1}\" stroke=\"#111\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{label} {v:.0} s</text>",
            x(v),
            height - 14,
            height,
        );
    }
    format!(
        "<svg width=\"760\" height=\"{}\" font-size=\"13\">{svg}</svg>",
        height + 6
    )
}
