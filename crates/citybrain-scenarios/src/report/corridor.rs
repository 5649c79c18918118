//! Signal-control scenarios (`signal-corridor`, `sumo`): each policy's runs
//! over seeds summarised — means, spreads, the change against fixed-time
//! plans, the ambulance with and without priority — as a text table, JSON
//! lines (the `PolicySummary` itself) and an HTML report.

use std::fmt::Write;

use serde::Serialize;

use super::html::{esc, page, spread_bars};
use crate::signal_corridor::{Ambulance, Outcome, Policy, RunOptions};
use crate::stats::Spread;

/// The figures of one policy over all seeds (one JSON line).
#[derive(Debug, Serialize)]
pub struct PolicySummary {
    pub scenario: String,
    pub policy: Policy,
    pub seeds: Vec<u64>,
    pub mean_travel_time_s: f64,
    pub mean_delay_s: f64,
    pub delay_index: f64,
    pub throughput_veh_per_h: f64,
    pub max_queue_veh: f64,
    pub teleports: f64,
    pub spread: Spreads,
    /// The controllers read queues published this often (`--detector-period`),
    /// not the twin's readings of every step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector_period_s: Option<f64>,
    /// Relative to fixed-time (negative: faster), when fixed ran too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub travel_time_vs_fixed_pct: Option<f64>,
    /// Relative to coordinated fixed-time plans (the baseline a city would
    /// run on an arterial), when they ran too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub travel_time_vs_coordinated_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambulance: Option<AmbulanceSummary>,
    pub runs: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
pub struct Spreads {
    pub mean_travel_time_s: Spread,
    pub mean_delay_s: Spread,
    pub delay_index: Spread,
    pub throughput_veh_per_h: Spread,
    pub max_queue_veh: Spread,
}

#[derive(Debug, Serialize)]
pub struct AmbulanceSummary {
    /// Free-flow time along its route at the ambulance's speed.
    pub free_flow_s: f64,
    pub ambulance_travel_time_s: f64,
    pub ambulance_travel_time_without_priority_s: f64,
    pub saving_pct: f64,
    /// Mean travel time of the other vehicles, with priority minus without.
    pub extra_delay_others_s: f64,
    /// This policy with priority against fixed-time control without it (the
    /// ambulance in today's traffic), when fixed ran too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saving_vs_fixed_without_priority_pct: Option<f64>,
    /// The same against coordinated plans without priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saving_vs_coordinated_without_priority_pct: Option<f64>,
    pub spread_with: Spread,
    pub spread_without: Spread,
    pub runs_without_priority: Vec<Outcome>,
}

/// What a study is: the policies, seeds and run options; `plan` gives every run.
#[derive(Debug, Clone)]
pub struct Study {
    /// `signal-corridor` or `sumo`: named in every summary.
    pub scenario: String,
    pub policies: Vec<Policy>,
    pub seeds: Vec<u64>,
    /// Each run twice, the ambulance without and with priority.
    pub ambulance: bool,
    pub demand_scale: f64,
    pub duration: Option<f64>,
    pub detector_period_s: Option<f64>,
    /// The ambulance's free-flow time along its route (NaN when unknown).
    pub ambulance_free_flow_s: f64,
}

impl Study {
    fn modes(&self) -> Vec<Ambulance> {
        if self.ambulance {
            vec![Ambulance::WithoutPriority, Ambulance::WithPriority]
        } else {
            vec![Ambulance::None]
        }
    }

    /// Every (policy, ambulance mode, seed) run; independent of each other.
    pub fn plan(&self) -> Vec<RunOptions> {
        let mut jobs = Vec::new();
        for &p in &self.policies {
            for m in self.modes() {
                for &s in &self.seeds {
                    let mut o = RunOptions::new(p, s);
                    o.ambulance = m;
                    o.demand_scale = self.demand_scale;
                    o.duration = self.duration;
                    o.detector_period_s = self.detector_period_s;
                    jobs.push(o);
                }
            }
        }
        jobs
    }

    /// One summary per policy from the outcomes of `plan()`, in its order.
    pub fn summarize(&self, jobs: &[RunOptions], outcomes: Vec<Outcome>) -> Vec<PolicySummary> {
        let results: Vec<(&RunOptions, Outcome)> = jobs.iter().zip(outcomes).collect();
        let outcome_of = |p: Policy, m: Ambulance| -> Vec<Outcome> {
            results
                .iter()
                .filter(|(j, _)| j.policy == p && j.ambulance == m)
                .map(|(_, o)| o.clone())
                .collect()
        };
        // With an ambulance, the traffic figures are those of the priority runs.
        let main_mode = *self.modes().last().unwrap_or(&Ambulance::None);
        let mut summaries: Vec<PolicySummary> = self
            .policies
            .iter()
            .map(|&p| {
                let without = self.ambulance.then(|| outcome_of(p, Ambulance::WithoutPriority));
                self.summarize_policy(p, outcome_of(p, main_mode), without)
            })
            .collect();
        compare_to_baselines(&mut summaries);
        summaries
    }

    fn summarize_policy(&self, policy: Policy, runs: Vec<Outcome>, without: Option<Vec<Outcome>>) -> PolicySummary {
        let sp = |f: &dyn Fn(&Outcome) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let spread = Spreads {
            mean_travel_time_s: sp(&|o| o.mean_travel_time_s),
            mean_delay_s: sp(&|o| o.mean_delay_s),
            delay_index: sp(&|o| o.delay_index),
            throughput_veh_per_h: sp(&|o| o.throughput_veh_per_h),
            max_queue_veh: sp(&|o| o.max_queue_veh as f64),
        };
        let ambulance = without.map(|without| {
            let amb =
                |rs: &[Outcome]| Spread::of(&rs.iter().filter_map(|o| o.ambulance_travel_time_s).collect::<Vec<_>>());
            let (with_s, without_s) = (amb(&runs), amb(&without));
            let others = |rs: &[Outcome]| rs.iter().map(|o| o.mean_travel_time_s).sum::<f64>() / rs.len().max(1) as f64;
            AmbulanceSummary {
                free_flow_s: self.ambulance_free_flow_s,
                ambulance_travel_time_s: with_s.mean,
                ambulance_travel_time_without_priority_s: without_s.mean,
                saving_pct: 100.0 * (1.0 - with_s.mean / without_s.mean),
                extra_delay_others_s: others(&runs) - others(&without),
                saving_vs_fixed_without_priority_pct: None,
                saving_vs_coordinated_without_priority_pct: None,
                spread_with: with_s,
                spread_without: without_s,
                runs_without_priority: without,
            }
        });
        PolicySummary {
            scenario: self.scenario.clone(),
            policy,
            seeds: self.seeds.clone(),
            mean_travel_time_s: spread.mean_travel_time_s.mean,
            mean_delay_s: spread.mean_delay_s.mean,
            delay_index: spread.delay_index.mean,
            throughput_veh_per_h: spread.throughput_veh_per_h.mean,
            max_queue_veh: spread.max_queue_veh.mean,
            teleports: runs.iter().map(|o| o.teleports as f64).sum::<f64>() / runs.len().max(1) as f64,
            spread,
            detector_period_s: self.detector_period_s,
            travel_time_vs_fixed_pct: None,
            travel_time_vs_coordinated_pct: None,
            ambulance,
            runs,
        }
    }
}

/// Fills in each policy's change against fixed-time control and against
/// coordinated plans, for those that ran.
fn compare_to_baselines(summaries: &mut [PolicySummary]) {
    let base = |p: Policy, summaries: &[PolicySummary]| {
        let s = summaries.iter().find(|s| s.policy == p)?;
        Some((
            s.mean_travel_time_s,
            s.ambulance.as_ref().map(|a| a.ambulance_travel_time_without_priority_s),
        ))
    };
    let fixed = base(Policy::Fixed, summaries);
    let coordinated = base(Policy::Coordinated, summaries);
    let pct = |x: f64, of: f64| 100.0 * (x / of - 1.0);
    for s in summaries {
        s.travel_time_vs_fixed_pct = fixed.map(|(tt, _)| pct(s.mean_travel_time_s, tt));
        s.travel_time_vs_coordinated_pct = coordinated.map(|(tt, _)| pct(s.mean_travel_time_s, tt));
        if let Some(a) = s.ambulance.as_mut() {
            a.saving_vs_fixed_without_priority_pct =
                fixed.and_then(|f| f.1).map(|w| -pct(a.ambulance_travel_time_s, w));
            a.saving_vs_coordinated_without_priority_pct = coordinated
                .and_then(|f| f.1)
                .map(|w| -pct(a.ambulance_travel_time_s, w));
        }
    }
}

/// The text table: traffic figures per policy, then the ambulance's.
pub fn table(name: &str, summaries: &[PolicySummary], seeds: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{name}, {seeds} seed(s): mean ± sd over seeds");
    if let Some(p) = summaries.first().and_then(|s| s.detector_period_s) {
        let _ = writeln!(
            t,
            "(the controllers read the queues published every {p} s, as from the hub)"
        );
    }
    let _ = writeln!(
        t,
        "{:<12} {:>16} {:>9} {:>9} {:>14} {:>8} {:>15} {:>11} {:>9}",
        "policy", "travel time s", "vs fixed", "vs coord", "delay s", "index", "throughput/h", "max queue", "teleports"
    );
    for s in summaries {
        let sp = &s.spread;
        let _ = writeln!(
            t,
            "{:<12} {:>9.1} ± {:<4.1} {:>9} {:>9} {:>7.1} ± {:<4.1} {:>8.3} {:>15.0} {:>11.1} {:>9.1}",
            s.policy.name(),
            sp.mean_travel_time_s.mean,
            sp.mean_travel_time_s.sd,
            s.travel_time_vs_fixed_pct.map_or("-".into(), |p| format!("{p:+.1}%")),
            s.travel_time_vs_coordinated_pct
                .map_or("-".into(), |p| format!("{p:+.1}%")),
            sp.mean_delay_s.mean,
            sp.mean_delay_s.sd,
            sp.delay_index.mean,
            sp.throughput_veh_per_h.mean,
            sp.max_queue_veh.mean,
            s.teleports
        );
    }
    if summaries.iter().any(|s| s.ambulance.is_some()) {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<12} {:>22} {:>22} {:>9} {:>16} {:>14} {:>14}",
            "ambulance",
            "without priority s",
            "with priority s",
            "saving",
            "others' extra s",
            "vs fixed w/o",
            "vs coord w/o"
        );
        for s in summaries {
            if let Some(a) = &s.ambulance {
                let _ = writeln!(
                    t,
                    "{:<12} {:>15.1} ± {:<4.1} {:>15.1} ± {:<4.1} {:>8.1}% {:>16.1} {:>14} {:>14}",
                    s.policy.name(),
                    a.spread_without.mean,
                    a.spread_without.sd,
                    a.spread_with.mean,
                    a.spread_with.sd,
                    a.saving_pct,
                    a.extra_delay_others_s,
                    a.saving_vs_fixed_without_priority_pct
                        .map_or("-".into(), |p| format!("{p:.1}% less")),
                    a.saving_vs_coordinated_without_priority_pct
                        .map_or("-".into(), |p| format!("{p:.1}% less"))
                );
            }
        }
        if let Some(a) = summaries.iter().find_map(|s| s.ambulance.as_ref()) {
            let _ = writeln!(
                t,
                "(the ambulance's free-flow time along its route: {:.0} s)",
                a.free_flow_s
            );
        }
    }
    t
}

/// A report that opens offline: the tables, and bars with the spread over seeds.
pub fn html(title: &str, summaries: &[PolicySummary], seeds: &[u64]) -> String {
    let mut rows = String::new();
    for s in summaries {
        rows += &format!(
            "<tr><td>{}</td><td>{:.1} ± {:.1}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.3}</td><td>{:.0}</td><td>{:.1}</td></tr>",
            s.policy.name(),
            s.spread.mean_travel_time_s.mean,
            s.spread.mean_travel_time_s.sd,
            s.travel_time_vs_fixed_pct.map_or("-".into(), |p| format!("{p:+.1}%")),
            s.travel_time_vs_coordinated_pct.map_or("-".into(), |p| format!("{p:+.1}%")),
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
    let json = serde_json::to_string_pretty(summaries).unwrap_or_default();
    let body = format!(
        "<h1>{}</h1><p>Seeds: {}. Mean ± sample standard deviation over seeds; bars show the mean, whiskers the range.{}</p>\
<table id=\"traffic\"><tr><th>policy</th><th>mean travel time s</th><th>vs fixed</th><th>vs coordinated</th><th>mean delay s</th><th>delay index</th><th>throughput veh/h</th><th>max queue veh</th></tr>{rows}</table>\
<h2>Mean travel time</h2>{}{}\
<h2>Every run</h2><pre>{}</pre>",
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
        esc(&json),
    );
    page(title, "", &body)
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
            "<tr><td>{name}</td><td>{:.0} ± {:.0}</td><td>{:.0} ± {:.0}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:+.1}</td><td>{}</td><td>{}</td></tr>",
            a.spread_without.mean,
            a.spread_without.sd,
            a.spread_with.mean,
            a.spread_with.sd,
            a.saving_pct,
            bound.max(0.0),
            a.extra_delay_others_s,
            a.saving_vs_fixed_without_priority_pct
                .map_or("-".into(), |p| format!("{p:.1}%")),
            a.saving_vs_coordinated_without_priority_pct
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
<th>others' extra travel time s</th><th>with priority vs fixed without</th><th>with priority vs coordinated without</th></tr>{rows}</table>{}",
        first.free_flow_s,
        spread_bars(&bars, Some(("free flow", first.free_flow_s))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(policy: Policy, seed: u64, tt: f64, ambulance: Option<f64>) -> Outcome {
        Outcome {
            policy,
            seed,
            vehicles: 100,
            arrived: 100,
            teleports: seed as usize,
            mean_travel_time_s: tt,
            mean_delay_s: tt - 100.0,
            delay_index: tt / 100.0,
            throughput_veh_per_h: 1000.0,
            max_queue_veh: 7,
            max_queue_edge: "e".into(),
            max_queue_time_s: 60.0,
            ambulance_travel_time_s: ambulance,
        }
    }

    fn study(ambulance: bool) -> Study {
        Study {
            scenario: "signal-corridor".into(),
            policies: vec![Policy::Fixed, Policy::CityBrain],
            seeds: vec![1, 2],
            ambulance,
            demand_scale: 1.0,
            duration: Some(900.0),
            detector_period_s: None,
            ambulance_free_flow_s: 300.0,
        }
    }

    /// The outcome a job would have: fixed 200/220 s, citybrain 150/170 s;
    /// the ambulance 600 s without priority, 400 s (fixed) or 330 s with.
    fn run(o: &RunOptions) -> Outcome {
        let base = if o.policy == Policy::Fixed { 200.0 } else { 150.0 };
        let tt = base + 20.0 * (o.seed - 1) as f64;
        let amb = match o.ambulance {
            Ambulance::None => None,
            Ambulance::WithoutPriority => Some(600.0),
            Ambulance::WithPriority => Some(if o.policy == Policy::Fixed { 400.0 } else { 330.0 }),
        };
        // Priority costs the others 5 s.
        let extra = if o.ambulance == Ambulance::WithPriority {
            5.0
        } else {
            0.0
        };
        outcome(o.policy, o.seed, tt + extra, amb)
    }

    #[test]
    fn the_plan_has_every_policy_mode_and_seed_once() {
        let jobs = study(true).plan();
        assert_eq!(jobs.len(), 2 * 2 * 2);
        let keys: Vec<_> = jobs.iter().map(|j| (j.policy, j.ambulance, j.seed)).collect();
        assert_eq!(keys[0], (Policy::Fixed, Ambulance::WithoutPriority, 1));
        assert_eq!(keys[3], (Policy::Fixed, Ambulance::WithPriority, 2));
        assert_eq!(keys[7], (Policy::CityBrain, Ambulance::WithPriority, 2));
        assert!(jobs.iter().all(|j| j.duration == Some(900.0)));
        assert_eq!(study(false).plan().len(), 4);
    }

    #[test]
    fn summaries_compare_each_policy_with_fixed_and_the_ambulance_without_priority() {
        let s = study(true);
        let jobs = s.plan();
        let sums = s.summarize(&jobs, jobs.iter().map(run).collect());
        assert_eq!(sums.len(), 2);
        let (fixed, cb) = (&sums[0], &sums[1]);
        // Traffic figures are those of the priority runs.
        assert_eq!(fixed.mean_travel_time_s, 215.0);
        assert_eq!(cb.mean_travel_time_s, 165.0);
        assert_eq!(fixed.travel_time_vs_fixed_pct, Some(0.0));
        assert!((cb.travel_time_vs_fixed_pct.unwrap() - 100.0 * (165.0 / 215.0 - 1.0)).abs() < 1e-9);
        assert_eq!(fixed.teleports, 1.5);
        let a = cb.ambulance.as_ref().unwrap();
        assert_eq!(a.free_flow_s, 300.0);
        assert_eq!(a.ambulance_travel_time_without_priority_s, 600.0);
        assert!((a.saving_pct - 45.0).abs() < 1e-9);
        assert!((a.extra_delay_others_s - 5.0).abs() < 1e-9);
        // Against fixed control without priority (600 s): 1 − 330/600.
        assert!((a.saving_vs_fixed_without_priority_pct.unwrap() - 45.0).abs() < 1e-9);
        assert_eq!(a.runs_without_priority.len(), 2);
        // Without fixed in the study, nothing is compared with it.
        let mut only = study(false);
        only.policies = vec![Policy::CityBrain];
        let jobs = only.plan();
        let sums = only.summarize(&jobs, jobs.iter().map(run).collect());
        assert_eq!(sums[0].travel_time_vs_fixed_pct, None);
        assert!(sums[0].ambulance.is_none());
    }

    #[test]
    fn the_table_and_the_page_show_the_same_figures() {
        let s = study(true);
        let jobs = s.plan();
        let sums = s.summarize(&jobs, jobs.iter().map(run).collect());
        let t = table("signal-corridor", &sums, 2);
        assert!(
            t.starts_with("signal-corridor, 2 seed(s): mean ± sd over seeds\n"),
            "{t}"
        );
        assert!(
            t.contains("citybrain        165.0 ± 14.1    -23.3%         -    65.0 ± 14.1    1.650"),
            "{t}"
        );
        assert!(t.contains("45.0%"), "{t}");
        assert!(
            t.contains("(the ambulance's free-flow time along its route: 300 s)"),
            "{t}"
        );
        let h = html("a <corridor>", &sums, &s.seeds);
        assert!(h.contains("<h1>a &lt;corridor&gt;</h1>"));
        assert!(
            h.contains("<td>citybrain</td><td>165.0 ± 14.1</td><td>-23.3%</td>"),
            "{h}"
        );
        assert!(h.contains("<table id=\"ambulance\">") && h.contains("free flow 300 s"));
        // The runs themselves, as JSON, for whoever wants to check a figure.
        assert!(h.contains("\"max_queue_edge\": \"e\""), "{h}");
    }
}
