//! The signal corridor: reduced runs of every policy, held against checked-in
//! figures; ambulance priority that helps and is safe.

use std::collections::BTreeSet;

use citybrain_control::Priority;
use citybrain_net::TlsId;
use citybrain_scenarios::signal_corridor::{Ambulance, Corridor, Outcome, Policy, RunOptions};
use citybrain_sim::signals::{FixedTime, LinkSignal, PriorityCall, SignalController, SignalInput};

fn reduced(policy: Policy, seed: u64) -> RunOptions {
    let mut o = RunOptions::new(policy, seed);
    o.duration = Some(1200.0);
    o
}

fn rounded(o: &Outcome) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap();
    for (_, x) in v.as_object_mut().unwrap().iter_mut() {
        if let Some(f) = x.as_f64() {
            if x.is_f64() {
                *x = serde_json::json!((f * 100.0).round() / 100.0);
            }
        }
    }
    v
}

#[test]
fn reduced_runs_hold_their_figures_for_a_fixed_seed() {
    let c = Corridor::load().unwrap();
    let got: Vec<serde_json::Value> = Policy::ALL
        .iter()
        .map(|&p| {
            let o = c.run(&reduced(p, 7), |_| {}).unwrap();
            assert_eq!(o.arrived, o.vehicles, "{p:?}: every vehicle arrives");
            assert_eq!(o.teleports, 0, "{p:?}: no jams");
            rounded(&o)
        })
        .collect();
    let path = format!("{}/tests/data/signal-corridor-seed7.json", env!("CARGO_MANIFEST_DIR"));
    citybrain_testkit::assert_golden(path, &serde_json::Value::Array(got));
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let c = Corridor::load().unwrap();
    let a = c.run(&reduced(Policy::Fixed, 3), |_| {}).unwrap();
    let b = c.run(&reduced(Policy::Fixed, 3), |_| {}).unwrap();
    let d = c.run(&reduced(Policy::Fixed, 4), |_| {}).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.mean_travel_time_s, d.mean_travel_time_s);
}

#[test]
fn adaptive_control_beats_the_fixed_plans_at_the_peak() {
    let c = Corridor::load().unwrap();
    let mut o = RunOptions::new(Policy::Fixed, 11);
    o.duration = Some(2400.0);
    let fixed = c.run(&o, |_| {}).unwrap();
    o.policy = Policy::CityBrain;
    let adaptive = c.run(&o, |_| {}).unwrap();
    assert!(
        adaptive.mean_travel_time_s < 0.9 * fixed.mean_travel_time_s,
        "{} vs {}",
        adaptive.mean_travel_time_s,
        fixed.mean_travel_time_s
    );
}

#[test]
fn signal_priority_gets_the_ambulance_through_faster() {
    let c = Corridor::load().unwrap();
    let mut o = RunOptions::new(Policy::Fixed, 5);
    o.duration = Some(2400.0);
    o.ambulance = Ambulance::WithoutPriority;
    let without = c.run(&o, |_| {}).unwrap();
    o.ambulance = Ambulance::WithPriority;
    let with = c.run(&o, |_| {}).unwrap();
    let (a, b) = (
        without.ambulance_travel_time_s.unwrap(),
        with.ambulance_travel_time_s.unwrap(),
    );
    assert!(b < 0.85 * a, "with priority {b} s, without {a} s");
    assert_eq!(with.teleports, 0);
}

/// Drives one signal's priority controller through emergency calls for two
/// conflicting links and checks, every second, that what it shows is safe.
#[test]
fn priority_never_shows_conflicting_greens_nor_cuts_a_green_without_amber() {
    let c = Corridor::load().unwrap();
    let net = &c.net;
    let tls = TlsId(net.tls.iter().position(|t| t.id == "J5").unwrap() as u32);
    let link = |from: &str, to: &str| {
        net.connections
            .iter()
            .find(|k| k.tls == Some(tls) && net.edge(k.from).id == from && net.edge(k.to).id == to)
            .and_then(|k| k.link_index)
            .unwrap()
    };
    let (arterial, cross) = (link("e4", "e5"), link("n5in", "s5out"));
    let greens: Vec<BTreeSet<usize>> = net.tls[tls.idx()]
        .phases
        .iter()
        .map(|p| {
            p.state
                .char_indices()
                .filter(|(_, ch)| "Gg".contains(*ch))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let base = Box::new(FixedTime::new(&net.tls[tls.idx()]));
    let mut p = Priority::new(net, tls, base, 3.0);
    let queues = vec![0u32; net.lanes.len()];
    let mut prev: Vec<LinkSignal> = Vec::new();
    let mut served = 0;
    for t in 0..4000 {
        // A call every 97 s, for 40 s, alternating between the two links;
        // sometimes both at once.
        let mut calls = Vec::new();
        let phase = t % 97;
        if phase < 40 {
            let l = if (t / 97) % 2 == 0 { arterial } else { cross };
            calls.push(PriorityCall {
                tls,
                link: l,
                distance: 500.0,
                eta: 40.0 - phase as f64,
            });
            if (t / 97) % 5 == 4 {
                calls.push(PriorityCall {
                    tls,
                    link: if l == arterial { cross } else { arterial },
                    distance: 600.0,
                    eta: 45.0 - phase as f64,
                });
            }
        }
        let mut out = Vec::new();
        p.states(
            &SignalInput {
                time: t as f64,
                queue_by_lane: &queues,
                near_stop_line: &queues,
                priority: &calls,
            },
            &mut out,
        );
        let shown: BTreeSet<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, LinkSignal::Go | LinkSignal::Yield))
            .map(|(i, _)| i)
            .collect();
        assert!(
            greens.iter().any(|g| shown.is_subset(g)),
            "t={t}: greens {shown:?} are not one phase's"
        );
        for (i, (a, b)) in prev.iter().zip(&out).enumerate() {
            assert!(
                !(matches!(a, LinkSignal::Go | LinkSignal::Yield) && *b == LinkSignal::Stop),
                "t={t}: link {i} went from green to red without amber"
            );
        }
        if let Some(c) = calls.iter().min_by(|a, b| a.eta.total_cmp(&b.eta)) {
            if c.eta < 5.0 && matches!(out[c.link as usize], LinkSignal::Go) {
                served += 1;
            }
        }
        prev = out;
    }
    assert!(served > 100, "calls are served: {served} steps green at arrival");
}

/// The City Brain controller acts on the detector data it is fed (live
/// mode: read back from the hub), not on what the engine sees.
#[test]
fn a_fed_controller_acts_on_the_fed_detectors() {
    use citybrain_control::{Adaptive, Fed};
    use std::sync::{Arc, RwLock};
    let c = Corridor::load().unwrap();
    let net = &c.net;
    let tls = TlsId(net.tls.iter().position(|t| t.id == "J5").unwrap() as u32);
    let cross_link = net
        .connections
        .iter()
        .find(|k| k.tls == Some(tls) && net.edge(k.from).id == "n5in")
        .and_then(|k| k.link_index)
        .unwrap() as usize;
    let cross_lanes: Vec<usize> = ["n5in", "s5in"]
        .iter()
        .flat_map(|e| net.edge(net.edge_id(e).unwrap()).lanes.clone())
        .map(|l| l.idx())
        .collect();
    let engine_sees = vec![0u32; net.lanes.len()];
    let mut hub_says = vec![0u32; net.lanes.len()];
    for l in &cross_lanes {
        hub_says[*l] = 12;
    }
    let run = |mut ctl: Box<dyn SignalController>| {
        let mut out = Vec::new();
        let mut cross_green = false;
        for t in 0..120 {
            ctl.states(
                &SignalInput {
                    time: t as f64,
                    queue_by_lane: &engine_sees,
                    near_stop_line: &engine_sees,
                    priority: &[],
                },
                &mut out,
            );
            cross_green |= matches!(out[cross_link], LinkSignal::Go | LinkSignal::Yield);
        }
        cross_green
    };
    let feed = Arc::new(RwLock::new(hub_says));
    assert!(
        run(Box::new(Fed::new(Box::new(Adaptive::new(net, tls, 6.0)), feed))),
        "the hub's queue gets its green"
    );
    assert!(
        !run(Box::new(Adaptive::new(net, tls, 6.0))),
        "the engine saw no one waiting"
    );
}

/// The queues a controller was shown, and when.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(f64, Vec<u32>)>>>;

/// Passes control on, noting the queues its signal was shown and when.
struct Recorder {
    inner: Box<dyn SignalController>,
    seen: Seen,
}

impl SignalController for Recorder {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        if let Ok(mut s) = self.seen.lock() {
            s.push((input.time, input.queue_by_lane.to_vec()));
        }
        self.inner.states(input, out)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[test]
fn published_detectors_show_the_controllers_the_queues_of_the_last_publication_only() {
    use citybrain_scenarios::published::PublishedDetectors;
    let c = Corridor::load().unwrap();
    let o = reduced(Policy::CityBrain, 2);
    let mut published = PublishedDetectors::new(&c.net, 30.0).unwrap();
    let seen: Seen = Default::default();
    let mut sim = c
        .sim_with(&o, |t, inner| {
            if t == TlsId(0) {
                published.feed(Box::new(Recorder {
                    inner,
                    seen: seen.clone(),
                }))
            } else {
                published.feed(inner)
            }
        })
        .unwrap();
    // What is published, and when: after the first step, then every 30 s.
    let mut publications: Vec<(f64, Vec<u32>)> = Vec::new();
    let mut moved_between = 0;
    while sim.time() < 600.0 {
        sim.step();
        published.observe(&sim);
        let now = sim.detector_readings().0.to_vec();
        let t = sim.time();
        match publications.last() {
            Some(p) if t - p.0 < 30.0 => moved_between += usize::from(p.1 != now),
            _ => publications.push((t, now)),
        }
    }
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 590, "{} calls", seen.len());
    for (t, queues) in seen.iter().skip(1) {
        // The view a controller gets at t: the last publication before it.
        let p = publications.iter().rev().find(|p| p.0 <= *t).unwrap();
        assert_eq!(
            queues, &p.1,
            "at {t} s the controller saw another view than the one published at {} s",
            p.0
        );
    }
    // Between publications the twin's own readings moved on; the controllers' view did not.
    assert!(moved_between > 100, "{moved_between}");
    let standing: BTreeSet<u32> = publications.iter().map(|p| p.1.iter().sum()).collect();
    assert!(standing.len() > 3, "queues never changed: {standing:?}");
    for bad in [0.0, 0.5, 901.0, f64::NAN] {
        let e = PublishedDetectors::new(&c.net, bad).err().expect("refused").to_string();
        assert!(e.contains("publication period must be between 1 and 900 s"), "{e}");
    }
}

#[test]
fn citybrain_control_on_published_detectors_still_beats_the_fixed_plans() {
    let c = Corridor::load().unwrap();
    let fixed = c.run(&reduced(Policy::Fixed, 5), |_| {}).unwrap();
    let mut o = reduced(Policy::CityBrain, 5);
    o.detector_period_s = Some(30.0);
    let fed = c.run(&o, |_| {}).unwrap();
    assert!(
        fed.mean_travel_time_s < 0.9 * fixed.mean_travel_time_s,
        "fed {} vs fixed {}",
        fed.mean_travel_time_s,
        fixed.mean_travel_time_s
    );
    // It is the published view that the controllers act on: not the same run.
    let every_step = c.run(&reduced(Policy::CityBrain, 5), |_| {}).unwrap();
    assert_ne!(rounded(&fed), rounded(&every_step));
}

/// Every step of a reduced run of every policy, with the ambulance and its
/// priority (the rescue lane on): the invariants broken, one line per run.
fn broken_invariants() -> Vec<String> {
    let c = Corridor::load().unwrap();
    let mut broken_runs = Vec::new();
    for p in Policy::ALL {
        for amb in [Ambulance::None, Ambulance::WithPriority] {
            let mut o = reduced(p, 7);
            o.ambulance = amb;
            let (mut first, mut steps, mut broken) = (None, 0, 0);
            c.run(&o, |sim| {
                steps += 1;
                if let Some(v) = sim.invariant_violations().into_iter().next() {
                    broken += 1;
                    first.get_or_insert(v);
                }
            })
            .unwrap();
            if let Some(e) = first {
                broken_runs.push(format!("{p:?} {amb:?}: {broken} of {steps} steps, first: {e}"));
            }
        }
    }
    broken_runs
}

/// Lanes ordered, no overlaps, speeds within limits, vehicles conserved,
/// at every step of every policy, with and without the ambulance.
#[test]
fn every_step_of_every_policy_keeps_every_physical_invariant() {
    let broken = broken_invariants();
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The coordinated plans give the arterial a green wave: in light traffic,
/// cars driving its whole length stop far less than under the designed
/// plans (each signal its own cycle, offsets 0), both ways.
#[test]
fn coordinated_plans_carry_through_traffic_in_a_green_wave_both_ways() {
    let c = Corridor::load().unwrap();
    let through_stops = |policy: Policy| -> (f64, f64) {
        let mut o = reduced(policy, 3);
        o.demand_scale = 0.2;
        let mut sim = c.sim(&o).unwrap();
        let mut trips = Vec::new();
        while !sim.finished() {
            sim.step();
            trips.extend(sim.take_trips());
        }
        let wait = |origin: &str| {
            let t: Vec<f64> = trips
                .iter()
                .filter(|t| t.id.starts_with(origin) && t.route_length > 6500.0)
                .map(|t| t.waiting_time)
                .collect();
            assert!(t.len() >= 10, "{origin}: {} through trips", t.len());
            t.iter().sum::<f64>() / t.len() as f64
        };
        (wait("e0."), wait("w21."))
    };
    let (fixed_east, fixed_west) = through_stops(Policy::Fixed);
    let (east, west) = through_stops(Policy::Coordinated);
    eprintln!("through waiting s: fixed {fixed_east:.1}/{fixed_west:.1}, coordinated {east:.1}/{west:.1}");
    assert!(east < 0.5 * fixed_east, "eastbound: {east} against {fixed_east}");
    assert!(west < 0.5 * fixed_west, "westbound: {west} against {fixed_west}");
}
