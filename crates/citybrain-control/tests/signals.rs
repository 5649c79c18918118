//! The City Brain's controllers on the twin: they serve everyone safely,
//! beat fixed plans on a light grid, and only ever show the program's own
//! phases; the central view replaces only the queues.

use std::sync::{Arc, RwLock};

use citybrain_control::{controllers_for, Central, Fed, Observation};
use citybrain_net::sumo::read_net;
use citybrain_sim::signals::{LinkSignal, PriorityCall, SignalController, SignalInput};
use citybrain_sim::{Demand, RunSummary, Sim, SimConfig, TripInfo};

use citybrain_testkit::{grid_demand_file, sim_data as data};

/// Steps to the end, checking the engine's invariants after every step.
fn drive(sim: &mut Sim) -> Vec<TripInfo> {
    let mut trips = Vec::new();
    while !sim.finished() {
        sim.step();
        if let Err(e) = sim.check_invariants() {
            panic!("{e}");
        }
        trips.extend(sim.take_trips());
    }
    trips.extend(sim.take_trips());
    trips
}

fn run_grid_with(routes: &str, signals: &str) -> RunSummary {
    let net = Arc::new(read_net(data("grid3.net.xml")).unwrap());
    let demand = Demand::read(&net, &[routes]).unwrap();
    let ctl = controllers_for(&net, signals).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), ctl);
    let trips = drive(&mut sim);
    RunSummary::from_trips(&sim.totals, &trips, sim.time(), 42, 1, 0.0)
}

#[test]
fn adaptive_signals_run_safely_and_serve_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let routes = grid_demand_file(&dir, 900);
    let fixed = run_grid_with(&routes, "fixed");
    for kind in ["actuated", "max-pressure", "adaptive"] {
        let s = run_grid_with(&routes, kind);
        assert_eq!(s.arrived + s.teleports, s.loaded, "{kind}");
        assert_eq!(s.teleports, 0, "{kind}");
        // On a lightly loaded grid, reacting to queues beats a fixed 90 s cycle.
        assert!(
            s.mean_waiting_time_s < fixed.mean_waiting_time_s,
            "{kind}: {} vs fixed {}",
            s.mean_waiting_time_s,
            fixed.mean_waiting_time_s
        );
    }
    let unknown = controllers_for(&read_net(data("grid3.net.xml")).unwrap(), "magic")
        .err()
        .unwrap();
    assert_eq!(
        unknown.to_string(),
        "unknown signal control 'magic' (fixed, actuated, max-pressure, adaptive)"
    );
}

#[test]
fn signal_states_never_give_green_to_conflicting_links() {
    // Every state a controller shows must be one of the program's own phases
    // (or its amber): controllers choose among written phases, they never mix them.
    let net = Arc::new(read_net(data("grid3.net.xml")).unwrap());
    for kind in ["fixed", "actuated", "max-pressure", "adaptive"] {
        let mut ctl = controllers_for(&net, kind).unwrap();
        let queues: Vec<u32> = (0..net.lanes.len()).map(|i| (i * 7 % 5) as u32).collect();
        // One state vector per controller, kept between calls, as the engine does.
        let mut outs = vec![Vec::new(); ctl.len()];
        for t in 0..2000 {
            for ((tls, c), out) in ctl.iter_mut().zip(outs.iter_mut()) {
                c.states(
                    &SignalInput {
                        time: t as f64,
                        queue_by_lane: &queues,
                        near_stop_line: &queues,
                        priority: &[],
                    },
                    out,
                );
                let logic = &net.tls[tls.idx()];
                let shown: String = out.iter().map(|s| format!("{s:?}")).collect();
                let ok = logic.phases.iter().any(|p| {
                    let written: String = p
                        .state
                        .chars()
                        .map(|c| format!("{:?}", LinkSignal::from_char(c)))
                        .collect();
                    written == shown
                });
                assert!(ok, "{kind} at t={t} shows a state that is not a phase of {}", logic.id);
            }
        }
    }
}

#[test]
fn the_central_view_replaces_the_queues_and_keeps_the_cabinet_loops() {
    let calls = [PriorityCall {
        tls: citybrain_net::TlsId(0),
        link: 1,
        distance: 50.0,
        eta: 4.0,
    }];
    let cabinet = SignalInput {
        time: 12.0,
        queue_by_lane: &[1, 2, 3],
        near_stop_line: &[4, 5, 6],
        priority: &calls,
    };
    let central = Central {
        queue_by_lane: &[7, 8, 9],
        cabinet: &cabinet,
    };
    assert_eq!(central.queue_by_lane(), [7, 8, 9]);
    assert_eq!(central.near_stop_line(), [4, 5, 6]);
    assert_eq!(central.priority_calls(), calls);
    assert_eq!(central.time(), 12.0);

    // Fed hands its controller the feed's queues, nothing else changed.
    /// What the probe saw: time, queues, loops, emergency calls.
    type Seen = (f64, Vec<u32>, Vec<u32>, usize);
    struct Probe(Arc<RwLock<Vec<Seen>>>);
    impl SignalController for Probe {
        fn states(&mut self, i: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
            self.0.write().unwrap().push((
                i.time,
                i.queue_by_lane.to_vec(),
                i.near_stop_line.to_vec(),
                i.priority.len(),
            ));
            out.clear();
        }
        fn kind(&self) -> &'static str {
            "probe"
        }
    }
    let seen = Arc::new(RwLock::new(Vec::new()));
    let feed = Arc::new(RwLock::new(vec![7, 8, 9]));
    let mut fed = Fed::new(Box::new(Probe(seen.clone())), feed.clone());
    fed.states(&cabinet, &mut Vec::new());
    *feed.write().unwrap() = vec![0, 0, 1];
    fed.states(&cabinet, &mut Vec::new());
    assert_eq!(
        *seen.read().unwrap(),
        [
            (12.0, vec![7, 8, 9], vec![4, 5, 6], 1),
            (12.0, vec![0, 0, 1], vec![4, 5, 6], 1)
        ]
    );
    assert_eq!(fed.kind(), "probe");
}
