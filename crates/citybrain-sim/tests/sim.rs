//! Golden summaries on tiny hand-written networks, physical invariants on a
//! netgenerate grid, determinism across thread counts, and input errors.

use std::sync::Arc;

use citybrain_net::sumo::read_net;
use citybrain_sim::signals::fixed_time_for;
use citybrain_sim::{Behaviour, Demand, DetectorId, RunSummary, Sim, SimConfig, TeleportCause, TripInfo, VehicleId};

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Steps to the end, checking the invariants after every step; `each` sees every step.
fn drive(sim: &mut Sim, mut each: impl FnMut(&Sim)) -> Vec<TripInfo> {
    let mut trips = Vec::new();
    while !sim.finished() {
        sim.step();
        if let Err(e) = sim.check_invariants() {
            panic!("{e}");
        }
        each(sim);
        trips.extend(sim.take_trips());
    }
    trips.extend(sim.take_trips());
    trips
}

/// Runs to the end, checking the invariants after every step.
fn run(net: &str, routes: &str, cfg: SimConfig) -> (RunSummary, Vec<TripInfo>) {
    let net = Arc::new(read_net(data(net)).unwrap());
    let demand = Demand::read(&net, &[data(routes)]).unwrap();
    let threads = cfg.threads;
    let seed = cfg.seed;
    let mut sim = Sim::new(net.clone(), demand, cfg, fixed_time_for(&net));
    let trips = drive(&mut sim, |_| {});
    (
        RunSummary::from_trips(&sim.totals, &trips, sim.time(), seed, threads, 0.0),
        trips,
    )
}

/// The summary without wall-clock figures, compared with a checked-in file.
fn golden(name: &str, s: &RunSummary) {
    let mut v = serde_json::to_value(s).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("wall_s");
    m.remove("vehicle_steps_per_s");
    m.remove("threads");
    citybrain_testkit::assert_golden(data(&format!("golden/{name}.json")), &v);
}

#[test]
fn single_lane() {
    let (s, trips) = run("single-lane.net.xml", "single-lane.rou.xml", SimConfig::default());
    golden("single-lane", &s);
    assert_eq!(s.loaded, 150);
    assert_eq!(s.arrived, 150);
    assert_eq!(s.teleports, 0);
    // Free flow: 500 m at up to 13.89 m/s, with dawdling.
    assert!(
        trips
            .iter()
            .all(|t| t.duration >= 500.0 / 13.89 - 1.0 && t.duration < 60.0),
        "{:?}",
        trips.first()
    );
}

#[test]
fn signalled_crossing() {
    let (s, trips) = run("crossing.net.xml", "crossing.rou.xml", SimConfig::default());
    golden("crossing", &s);
    assert_eq!(s.arrived, s.loaded);
    // About half the arrivals meet the red phase (45 of 90 s): they wait.
    let waited = trips.iter().filter(|t| t.waiting_time > 0.0).count();
    assert!(
        waited > trips.len() / 4 && waited < trips.len() * 3 / 4,
        "{waited} of {}",
        trips.len()
    );
    assert!(
        trips.iter().all(|t| t.waiting_time <= 60.0),
        "no one waits more than a red phase plus the queue"
    );
}

#[test]
fn merge_gives_way_to_the_major_road() {
    let (s, trips) = run("merge.net.xml", "merge.rou.xml", SimConfig::default());
    golden("merge", &s);
    assert_eq!(s.arrived, s.loaded);
    let mean = |prefix: &str| {
        let v: Vec<f64> = trips
            .iter()
            .filter(|t| t.id.starts_with(prefix))
            .map(|t| t.waiting_time)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(
        mean("side") > mean("main"),
        "the minor road waits longer: side {} main {}",
        mean("side"),
        mean("main")
    );
}

use citybrain_testkit::grid_demand_file;

fn run_grid(routes: &str, threads: usize) -> (RunSummary, Vec<TripInfo>) {
    let net = Arc::new(read_net(data("grid3.net.xml")).unwrap());
    let demand = Demand::read(&net, &[routes]).unwrap();
    let cfg = SimConfig {
        threads,
        parallel_min_lanes: 0, // the small grid must take the parallel path too
        ..SimConfig::default()
    };
    let mut sim = Sim::new(net.clone(), demand, cfg, fixed_time_for(&net));
    let trips = drive(&mut sim, |_| {});
    (
        RunSummary::from_trips(&sim.totals, &trips, sim.time(), 42, threads, 0.0),
        trips,
    )
}

#[test]
fn grid_invariants_hold_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let routes = grid_demand_file(&dir, 900);
    let (s, trips) = run_grid(&routes, 1);
    assert!(s.loaded > 500, "{}", s.loaded);
    assert_eq!(
        s.arrived + s.teleports,
        s.loaded,
        "every vehicle finishes (teleports would be counted)"
    );
    assert!(trips
        .iter()
        .all(|t| t.route_length > 0.0 && t.duration > 0.0 && t.time_loss >= 0.0));
}

#[test]
fn same_seed_same_output_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let routes = grid_demand_file(&dir, 600);
    let (a, ta) = run_grid(&routes, 1);
    let (b, tb) = run_grid(&routes, 4);
    assert_eq!(ta, tb, "trip by trip identical");
    assert_eq!((a.arrived, a.mean_travel_time_s), (b.arrived, b.mean_travel_time_s));
    let mut x = Vec::new();
    let mut y = Vec::new();
    citybrain_sim::output::write_tripinfo_xml(&mut x, &ta).unwrap();
    citybrain_sim::output::write_tripinfo_xml(&mut y, &tb).unwrap();
    assert_eq!(x, y, "byte-identical tripinfo");
}

#[test]
fn bad_demand_names_file_and_line() {
    let net = read_net(data("single-lane.net.xml")).unwrap();
    let cases = [
        (
            "<routes>\n<vehicle id=\"v\" depart=\"0\">\n<route edges=\"nowhere\"/>\n</vehicle>\n</routes>",
            ":3:",
            "edge 'nowhere'",
        ),
        (
            "<routes>\n<route id=\"r\" edges=\"road\"/>\n<vehicle id=\"v\" depart=\"soon\" route=\"r\"/>\n</routes>",
            ":3:",
            "expected seconds",
        ),
        (
            "<routes>\n<vehicle id=\"v\" depart=\"0\" route=\"r\"/>\n</routes>",
            ":2:",
            "unknown route 'r'",
        ),
        ("<routes>\n<vType id=\"t\" accel=\"-1\"/>\n</routes>", ":2:", "accel"),
        (
            "<routes>\n<flow id=\"f\" from=\"road\" to=\"road\"/>\n</routes>",
            ":2:",
            "needs period",
        ),
        ("<net/>", ":1:", "expected a <routes> root"),
    ];
    for (text, line, want) in cases {
        let err = Demand::read_str(&net, "d.rou.xml", text).unwrap_err().to_string();
        assert!(
            err.starts_with("d.rou.xml") && err.contains(line) && err.contains(want),
            "{err}"
        );
    }
}

#[test]
fn trips_are_routed_by_travel_time() {
    let net = read_net(data("grid3.net.xml")).unwrap();
    let d = Demand::read_str(
        &net,
        "t.xml",
        r#"<routes><trip id="t" depart="0" from="A0A1" to="C2C1"/></routes>"#,
    )
    .unwrap();
    let r = &d.vehicles[0].route;
    assert_eq!(net.edge(r[0]).id, "A0A1");
    assert_eq!(net.edge(*r.last().unwrap()).id, "C2C1");
    // Manhattan distance on the grid: 2 blocks across and 1 down, plus the first and last edges.
    assert_eq!(
        r.len(),
        5,
        "{:?}",
        r.iter().map(|e| net.edge(*e).id.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn actuated_signals_run_safely_and_serve_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let routes = grid_demand_file(&dir, 900);
    let net = Arc::new(read_net(data("grid3.net.xml")).unwrap());
    let run = |kind: &str| {
        let demand = Demand::read(&net, &[routes.as_str()]).unwrap();
        let ctl = citybrain_sim::signals::cabinet_controllers_for(&net, kind).unwrap();
        let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), ctl);
        let trips = drive(&mut sim, |_| {});
        RunSummary::from_trips(&sim.totals, &trips, sim.time(), 42, 1, 0.0)
    };
    let (fixed, actuated) = (run("fixed"), run("actuated"));
    assert_eq!(actuated.arrived + actuated.teleports, actuated.loaded);
    assert_eq!(actuated.teleports, 0);
    // On a lightly loaded grid, gap-out beats a fixed 90 s cycle.
    assert!(actuated.mean_waiting_time_s < fixed.mean_waiting_time_s);
    // The City Brain's controllers are citybrain-control's, not the cabinet's.
    assert!(citybrain_sim::signals::cabinet_controllers_for(&net, "adaptive").is_err());
}

fn run_parking(adds: &[&str]) -> (RunSummary, Vec<TripInfo>, citybrain_sim::engine::ParkingTotals, u32) {
    let net = Arc::new(read_net(data("single-lane.net.xml")).unwrap());
    let files: Vec<String> = adds.iter().map(|a| data(a)).collect();
    let add = citybrain_sim::Additional::read(&net, &files).unwrap();
    let demand = Demand::read_with(&net, &add, &[data("parking.rou.xml")]).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net)).with_parking(add);
    let mut max_small = 0;
    let trips = drive(&mut sim, |sim| max_small = max_small.max(sim.parking_occupancy()[0].1));
    (
        RunSummary::from_trips(&sim.totals, &trips, sim.time(), 42, 1, 0.0),
        trips,
        sim.parking.clone(),
        max_small,
    )
}

#[test]
fn a_full_parking_area_spills_back_onto_the_road() {
    let (s, trips, parking, max_small) = run_parking(&["parking.add.xml"]);
    golden("parking-spillback", &s);
    assert_eq!(max_small, 2, "never more cars than spaces");
    assert_eq!(parking.parked, 4, "every visitor parks in the end");
    assert_eq!(s.teleports, 0);
    assert_eq!(parking.rerouted, 0);
    // Visitors 3 and 4 wait on the road for a space; through traffic waits behind them.
    let wait = |p: &str| {
        trips
            .iter()
            .filter(|t| t.id.starts_with(p))
            .map(|t| t.waiting_time)
            .fold(0.0, f64::max)
    };
    assert!(wait("visit") > 150.0, "a visitor waited {}", wait("visit"));
    assert!(
        wait("through") > 100.0,
        "through traffic is held by the queue: {}",
        wait("through")
    );
    assert!(trips
        .iter()
        .filter(|t| t.id.starts_with("visit"))
        .all(|t| t.stop_time >= 200.0));
}

#[test]
fn a_rerouter_sends_cars_to_the_next_parking_area() {
    let (s, trips, parking, _) = run_parking(&["parking.add.xml", "parking-rerouter.add.xml"]);
    golden("parking-rerouted", &s);
    assert_eq!(parking.parked, 4);
    assert_eq!(parking.rerouted, 2, "two visitors find the small car park full");
    assert_eq!(trips.iter().map(|t| t.reroutes).sum::<u32>(), 2);
    let wait = |p: &str| {
        trips
            .iter()
            .filter(|t| t.id.starts_with(p))
            .map(|t| t.waiting_time)
            .fold(0.0, f64::max)
    };
    assert!(wait("through") < 30.0, "nobody queues on the road: {}", wait("through"));
}

#[test]
fn bad_parking_input_names_file_and_line() {
    let net = read_net(data("single-lane.net.xml")).unwrap();
    let err = citybrain_sim::Additional::read_str(
        &net,
        "p.add.xml",
        "<additional>\n<parkingArea id=\"x\" lane=\"nope_0\" roadsideCapacity=\"2\"/>\n</additional>",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("p.add.xml:2:") && err.contains("unknown lane 'nope_0'"),
        "{err}"
    );
    let add = citybrain_sim::Additional::read(&net, &[data("parking.add.xml")]).unwrap();
    let err = Demand::read_str_with(&net, &add, "r.xml", "<routes>\n<vehicle id=\"v\" depart=\"0\">\n<route edges=\"road\"/>\n<stop parkingArea=\"ghost\" duration=\"5\"/>\n</vehicle>\n</routes>").unwrap_err().to_string();
    assert!(err.starts_with("r.xml:4:") && err.contains("'ghost'"), "{err}");
}

#[test]
fn entering_a_rerouter_edge_with_the_target_full_reroutes_at_once() {
    let net = Arc::new(read_net(data("crossing.net.xml")).unwrap());
    let add = citybrain_sim::Additional::read(&net, &[data("crossing-parking.add.xml")]).unwrap();
    let demand = Demand::read_with(&net, &add, &[data("crossing-parking.rou.xml")]).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net)).with_parking(add);
    let trips = drive(&mut sim, |_| {});
    assert_eq!(sim.parking.parked, 4);
    assert_eq!(
        sim.parking.rerouted, 3,
        "the three cars arriving after the first go straight to the big car park"
    );
    assert_eq!(sim.totals.teleports, 0);
    // Nobody queued at the full small car park: waits are the signal's only.
    assert!(
        trips.iter().all(|t| t.waiting_time < 50.0),
        "{:?}",
        trips.iter().map(|t| t.waiting_time).collect::<Vec<_>>()
    );
}

#[test]
fn edge_statistics_show_the_queue_at_the_signal() {
    let net = Arc::new(read_net(data("crossing.net.xml")).unwrap());
    let demand = Demand::read(&net, &[data("crossing.rou.xml")]).unwrap();
    let cfg = SimConfig {
        summary_interval: 90.0,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(net.clone(), demand, cfg, fixed_time_for(&net)).with_edge_stats();
    let mut stats = Vec::new();
    while !sim.finished() {
        sim.step();
        stats.extend(sim.take_edge_stats());
    }
    sim.finish();
    stats.extend(sim.take_edge_stats());
    assert!(stats.len() >= 10, "one record per 90 s interval: {}", stats.len());
    let inbound: Vec<_> = stats
        .iter()
        .flat_map(|i| i.edges.iter().filter(|e| e.edge == "in"))
        .collect();
    let outbound: Vec<_> = stats
        .iter()
        .flat_map(|i| i.edges.iter().filter(|e| e.edge == "out"))
        .collect();
    let max_in = inbound.iter().map(|e| e.max_queue).max().unwrap();
    let max_out = outbound.iter().map(|e| e.max_queue).max().unwrap_or(0);
    assert!(max_in >= 3, "cars queue at the red light: {max_in}");
    assert_eq!(max_out, 0, "nobody stands after the signal");
    assert!(inbound.iter().all(|e| e.mean_occupancy > 0.0 && e.mean_occupancy < 1.0));
}

#[test]
fn detectors_count_flow_and_see_the_queue() {
    let net = Arc::new(read_net(data("crossing.net.xml")).unwrap());
    let add = citybrain_sim::Additional::read(&net, &[data("crossing-detectors.add.xml")]).unwrap();
    assert!(
        add.detectors[0]
            .file
            .as_ref()
            .unwrap()
            .ends_with("tests/data/loop.out.xml"),
        "files resolve beside the additional file"
    );
    let demand = Demand::read(&net, &[data("crossing.rou.xml")]).unwrap();
    let loaded = demand.vehicles.len() as u32;
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net)).with_parking(add);
    drive(&mut sim, |_| {});
    sim.finish();
    let recs = sim.take_detector_records();
    let loop_recs: Vec<_> = recs
        .iter()
        .filter(|(d, _)| *d == DetectorId(0))
        .map(|(_, r)| r)
        .collect();
    let area_recs: Vec<_> = recs
        .iter()
        .filter(|(d, _)| *d == DetectorId(1))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        loop_recs.iter().map(|r| r.vehicles).sum::<u32>(),
        loaded,
        "every car passes the loop once"
    );
    assert_eq!(
        area_recs.iter().map(|r| r.vehicles).sum::<u32>(),
        loaded,
        "and enters the area once"
    );
    assert!(loop_recs
        .iter()
        .all(|r| r.begin < r.end && r.end - r.begin <= 90.0 + 1e-9));
    // 600 veh/h in, measured per 90 s period while the flow lasts.
    let busy: Vec<f64> = loop_recs.iter().filter(|r| r.end <= 900.0).map(|r| r.flow).collect();
    let mean_flow = busy.iter().sum::<f64>() / busy.len() as f64;
    assert!((mean_flow - 600.0).abs() < 100.0, "{mean_flow}");
    assert!(
        area_recs.iter().map(|r| r.max_jam_vehicles).max().unwrap() >= 3,
        "the red light queues cars in the area"
    );
    assert!(loop_recs.iter().all(|r| (0.0..=100.0).contains(&r.occupancy)));
    // 15 cars of 5 m at ~13 m/s per 90 s cover the loop about 6 % of the time.
    let occ: Vec<f64> = loop_recs
        .iter()
        .filter(|r| r.end <= 900.0 && r.begin > 0.0)
        .map(|r| r.occupancy)
        .collect();
    let mean_occ = occ.iter().sum::<f64>() / occ.len() as f64;
    assert!((4.0..9.0).contains(&mean_occ), "{mean_occ}");
}

#[test]
fn cars_overtake_a_slow_vehicle() {
    let (s, trips) = run("two-lane.net.xml", "two-lane.rou.xml", SimConfig::default());
    assert_eq!(s.arrived, s.loaded);
    let slow = trips.iter().find(|t| t.id == "slow").unwrap();
    assert!(slow.duration > 190.0, "the tractor drives at 5 m/s: {}", slow.duration);
    // Stuck behind it, a car would need as long; passing, it needs about 1000/13.89 = 72 s.
    let fast: Vec<f64> = trips
        .iter()
        .filter(|t| t.id.starts_with("fast"))
        .map(|t| t.duration)
        .collect();
    let mean = fast.iter().sum::<f64>() / fast.len() as f64;
    assert!(mean < 110.0, "cars pass the tractor: mean {mean}");
}

#[test]
fn cars_merge_into_a_standing_turn_queue_at_the_stop_line() {
    // The queue on the turn lane lets merging cars in behind its front; a car
    // already beside a merging one goes first instead of waiting for it
    // (waiting there once deadlocked both until the jam teleport).
    let (s, trips) = run("turn-lanes.net.xml", "turn-lanes.rou.xml", SimConfig::default());
    assert_eq!(s.arrived, s.loaded);
    assert_eq!(s.teleports, 0, "no jam: {s:?}");
    let worst = trips
        .iter()
        .filter(|t| t.id.starts_with("merging"))
        .map(|t| t.waiting_time)
        .fold(0.0, f64::max);
    assert!(worst < 150.0, "a merging car waits at most a couple of cycles: {worst}");
}

#[test]
fn a_vehicle_held_too_long_teleports_along_its_route_and_says_why() {
    // A 45 s red and a 20 s jam limit: the first car at each red jumps on
    // to the next edge of its route; the log names the red light.
    let net = Arc::new(read_net(data("crossing.net.xml")).unwrap());
    let demand = Demand::read(&net, &[data("crossing.rou.xml")]).unwrap();
    let cfg = SimConfig {
        time_to_teleport: 20.0,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(net.clone(), demand, cfg, fixed_time_for(&net));
    let trips = drive(&mut sim, |_| {});
    let events = sim.take_teleports();
    assert!(!events.is_empty());
    assert_eq!(sim.totals.teleports, events.len());
    assert!(events.iter().all(|e| e.cause == TeleportCause::Red && e.lane == "in_0"));
    assert!(events.iter().all(|e| e.continued), "the next edge had room: {events:?}");
    assert_eq!(sim.totals.arrived, sim.totals.loaded, "teleported cars still arrive");
    let jumped: Vec<&TripInfo> = trips.iter().filter(|t| t.teleports > 0).collect();
    assert_eq!(jumped.len(), events.len());
}

#[test]
fn an_emergency_vehicle_is_not_held_up_by_slow_traffic() {
    let (s, trips) = run("two-lane.net.xml", "two-lane-ambulance.rou.xml", SimConfig::default());
    assert_eq!(s.arrived, s.loaded);
    let amb = trips.iter().find(|t| t.id == "ambulance").unwrap();
    // 1000 m at 1.3 × 13.89 m/s is 55 s; behind the tractor it would need 200 s.
    assert!(amb.duration < 80.0, "ambulance took {} s", amb.duration);
}

#[test]
fn an_emergency_vehicle_does_not_pass_through_a_lane_its_route_does_not_go_on_from() {
    // Behind a tractor in the only straight lane, beside a right-turn lane:
    // the ambulance stays in its lane (one that passed through a turn bay
    // got stuck at its end beside the traffic it had passed).
    let net = Arc::new(read_net(data("turn-lanes.net.xml")).unwrap());
    let demand = Demand::read(&net, &[data("turn-lanes-ambulance.rou.xml")]).unwrap();
    let amb = VehicleId(demand.vehicles.iter().position(|v| v.id == "ambulance").unwrap() as u32);
    let turn_lane = net.edge(net.edge_id("in").unwrap()).lanes[0];
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net));
    let mut on_road = 0;
    let trips = drive(&mut sim, |s| {
        for v in s.vehicles_on_road().filter(|v| v.vehicle == amb) {
            on_road += 1;
            assert_ne!(
                v.lane,
                turn_lane,
                "the ambulance went into the turn lane at {} s",
                s.time()
            );
        }
    });
    assert!(on_road > 30, "the ambulance was followed: {on_road} steps");
    let amb = trips.iter().find(|t| t.id == "ambulance").unwrap();
    // 400 m behind a 5 m/s tractor: it follows it (about 80 s).
    assert!(amb.duration > 60.0, "{amb:?}");
}

/// Both lanes held by slow traffic: without a rescue lane the ambulance
/// follows it; with one it passes between the lanes, and nobody overlaps
/// (the invariants are checked every step).
#[test]
fn a_rescue_lane_lets_an_ambulance_pass_traffic_filling_every_lane() {
    let ambulance = |rescue_lane: bool| {
        let cfg = SimConfig {
            behaviour: Behaviour {
                rescue_lane,
                ..Behaviour::default()
            },
            ..SimConfig::default()
        };
        let (s, trips) = run("two-lane.net.xml", "two-lane-ambulance-blocked.rou.xml", cfg);
        assert_eq!(s.arrived, s.loaded);
        let t = trips.iter().find(|t| t.id == "ambulance").unwrap().clone();
        let tractor = trips.iter().find(|t| t.id == "slow0").unwrap().clone();
        (t, tractor)
    };
    let (held, _) = ambulance(false);
    let (passed, tractor) = ambulance(true);
    // 1000 m behind 5 m/s tractors is about 200 s; at 1.3 x 13.89 m/s, 55 s.
    assert!(held.duration > 150.0, "no rescue lane: {} s", held.duration);
    assert!(passed.duration < 100.0, "rescue lane: {} s", passed.duration);
    // Distances stay the road's length for everyone (give or take the last
    // step's drive past its end).
    for t in [&passed, &tractor] {
        assert!(
            (t.route_length - held.route_length).abs() < 20.0,
            "{t:?} against {held:?}"
        );
    }
}

/// The single-lane road with a hand-written additional file and routes:
/// the parking areas as read, and the simulation driven to its end.
fn single_lane_parking(add_xml: &str, routes_xml: &str) -> (citybrain_sim::Additional, Sim, Vec<TripInfo>) {
    let dir = tempfile::tempdir().unwrap();
    let (add, routes) = (dir.path().join("p.add.xml"), dir.path().join("p.rou.xml"));
    std::fs::write(&add, add_xml).unwrap();
    std::fs::write(&routes, routes_xml).unwrap();
    let net = Arc::new(read_net(data("single-lane.net.xml")).unwrap());
    let add = citybrain_sim::Additional::read(&net, &[add]).unwrap();
    let demand = Demand::read_with(&net, &add, &[routes]).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net)).with_parking(add.clone());
    let trips = drive(&mut sim, |_| {});
    (add, sim, trips)
}

#[test]
fn a_car_alongside_a_parking_area_that_fills_waits_and_parks() {
    // A long 1-space area; two visitors arrive close together. The first
    // takes the space at the far end while the second is already alongside
    // the area: the second must wait there and park when the space frees,
    // not drive on to the end of its route.
    let (_, sim, trips) = single_lane_parking(
        r#"<additional><parkingArea id="p" lane="road_0" startPos="100" endPos="300" roadsideCapacity="1"/></additional>"#,
        r#"<routes><vType id="car" sigma="0"/>
        <vehicle id="first" type="car" depart="0" departSpeed="max"><route edges="road"/><stop parkingArea="p" duration="60" parking="true"/></vehicle>
        <vehicle id="second" type="car" depart="3" departSpeed="max"><route edges="road"/><stop parkingArea="p" duration="60" parking="true"/></vehicle>
        </routes>"#,
    );
    assert_eq!(sim.parking.parked, 2, "both parked");
    let second = trips.iter().find(|t| t.id == "second").unwrap();
    assert!(second.stop_time >= 59.0, "{second:?}");
    assert!(second.waiting_time > 30.0, "it waited for the space: {second:?}");
}

#[test]
fn parking_gates_serve_one_car_at_a_time() {
    // Four visitors, 10 s apart, 100 s stays, a 4-space car park whose exit
    // gate takes 30 s per car (pay at the exit) and entry gate 15 s: they
    // leave at least 30 s apart, and the entry gate spaces their parking.
    let (add, sim, mut trips) = single_lane_parking(
        r#"<additional><parkingArea id="p" lane="road_0" startPos="100" endPos="300" roadsideCapacity="4">
             <param key="exitServiceTime" value="30"/><param key="entryServiceTime" value="15"/><param key="other" value="x"/>
           </parkingArea></additional>"#,
        r#"<routes><vType id="car" sigma="0"/>
        <flow id="v" type="car" begin="0" end="40" period="10" departSpeed="max"><route edges="road"/><stop parkingArea="p" duration="100" parking="true"/></flow>
        </routes>"#,
    );
    assert_eq!(
        (add.parking_areas[0].entry_service, add.parking_areas[0].exit_service),
        (15.0, 30.0)
    );
    assert_eq!(sim.parking.parked, 4);
    trips.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
    for w in trips.windows(2) {
        assert!(w[1].arrival - w[0].arrival >= 29.0, "exits 30 s apart: {trips:?}");
    }
    // Entry spaced by 15 s while they arrive 10 s apart: each waits 5 s
    // longer at the gate than the one before.
    let wait = |id: &str| trips.iter().find(|t| t.id == id).unwrap().waiting_time;
    assert!(wait("v.0") < 3.0, "{trips:?}");
    assert!(wait("v.3") >= 10.0, "{trips:?}");
    assert!(trips.iter().all(|t| t.stop_time >= 99.0));
}

#[test]
fn a_bad_gate_time_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let add = dir.path().join("bad.add.xml");
    std::fs::write(
        &add,
        "<additional>\n<parkingArea id=\"p\" lane=\"road_0\" startPos=\"100\" endPos=\"300\" roadsideCapacity=\"4\">\n<param key=\"exitServiceTime\" value=\"soon\"/>\n</parkingArea></additional>",
    )
    .unwrap();
    let net = Arc::new(read_net(data("single-lane.net.xml")).unwrap());
    let err = citybrain_sim::Additional::read(&net, &[add]).unwrap_err().to_string();
    assert!(err.contains(":3:") && err.contains("exitServiceTime"), "{err}");
}

#[test]
fn the_hospital_district_network_and_lots_load_and_fill() {
    // The generated scenario files: a WGS84-referenced network, the two
    // hospital lots with their pay-at-exit gates; cars bound for a full lot
    // queue back along its access road.
    let dir = format!("{}/../../scenarios/hospital-district", env!("CARGO_MANIFEST_DIR"));
    let net = Arc::new(read_net(format!("{dir}/district.net.xml.gz")).unwrap());
    assert!(net.location.as_ref().unwrap().proj_parameter.contains("+proj=utm"));
    assert_eq!(net.tls.len(), 8);
    let add = citybrain_sim::Additional::read(&net, &[format!("{dir}/district.add.xml")]).unwrap();
    let zju1 = add.parking_areas.iter().find(|p| p.id == "zju1").unwrap();
    assert_eq!((zju1.capacity, zju1.exit_service), (170, 30.0));
    let routes = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        routes.path(),
        r#"<routes><flow id="h" begin="0" end="1800" vehsPerHour="600" from="qingchun_w__qingchun_zhongshan" to="jiefang_jianguo__jiefang_e" departSpeed="max">
             <stop parkingArea="zju1" duration="3600" parking="true"/></flow></routes>"#,
    )
    .unwrap();
    let demand = Demand::read_with(&net, &add, &[routes.path()]).unwrap();
    // Real queues for a hospital lot last hours: no jam teleports here.
    let cfg = SimConfig {
        time_to_teleport: 0.0,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(net.clone(), demand, cfg, fixed_time_for(&net)).with_parking(add);
    let mut full_at = None;
    let mut trips = Vec::new();
    while !sim.finished() && sim.time() < 20_000.0 {
        sim.step();
        if full_at.is_none() && sim.parking_occupancy()[0].1 == 170 {
            full_at = Some(sim.time());
        }
        trips.extend(sim.take_trips());
    }
    assert!(full_at.is_some(), "300 cars for 170 spaces fill the lot");
    assert_eq!(sim.parking.parked, 300, "everyone parks in the end");
    assert_eq!(trips.len(), 300);
}

/// Mean trip duration of the vehicles whose id starts with `flow`.
fn mean_duration(trips: &[TripInfo], flow: &str) -> f64 {
    let d: Vec<f64> = trips
        .iter()
        .filter(|t| t.id.starts_with(flow))
        .map(|t| t.duration)
        .collect();
    d.iter().sum::<f64>() / d.len().max(1) as f64
}

#[test]
fn with_queue_discipline_merging_cars_join_the_turn_queue_at_its_tail() {
    // The same turn queue as above. Left alone (SUMO's way), a right-turner
    // arriving in the straight lane drives past the queue and is let in near
    // its front, ahead of those queueing; joining at the tail, both flows of
    // right-turners take as long.
    let free = SimConfig::default();
    let disciplined = SimConfig {
        behaviour: Behaviour {
            join_queues_at_tail: true,
            ..Behaviour::default()
        },
        ..SimConfig::default()
    };
    let (s0, t0) = run("turn-lanes.net.xml", "turn-lanes.rou.xml", free);
    let (s1, t1) = run("turn-lanes.net.xml", "turn-lanes.rou.xml", disciplined);
    for s in [&s0, &s1] {
        assert_eq!(s.arrived, s.loaded);
        assert_eq!(s.teleports, 0, "no deadlock: {s:?}");
    }
    let jump = |t: &[TripInfo]| mean_duration(t, "right") - mean_duration(t, "merging");
    assert!(
        jump(&t0) > 25.0,
        "cutting in saves the merging cars time: {:.1} s",
        jump(&t0)
    );
    assert!(jump(&t1).abs() < 10.0, "joined at the tail: {:.1} s", jump(&t1));
}

#[test]
fn with_eager_insertion_a_queue_at_the_network_edge_holds_up_only_its_lane() {
    let wait = |eager: bool| {
        let cfg = SimConfig {
            behaviour: Behaviour {
                eager_insert: eager,
                ..Behaviour::default()
            },
            ..SimConfig::default()
        };
        let (s, t) = run("turn-lanes.net.xml", "turn-lanes-overload.rou.xml", cfg);
        assert_eq!(s.arrived, s.loaded);
        let straight: Vec<f64> = t
            .iter()
            .filter(|x| x.id.starts_with("straight"))
            .map(|x| x.depart_delay)
            .collect();
        straight.iter().sum::<f64>() / straight.len() as f64
    };
    let (held, free) = (wait(false), wait(true));
    assert!(held > 60.0, "behind a right-turner that cannot enter: {held:.0} s");
    assert!(free < 5.0, "their own lane is free: {free:.0} s");
}

#[test]
fn a_vehicle_not_yet_on_the_road_can_take_another_way() {
    let net = Arc::new(read_net(data("turn-lanes.net.xml")).unwrap());
    let demand = Demand::read(&net, &[data("turn-lanes.rou.xml")]).unwrap();
    let id = |e: &str| net.edge_id(e).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net));
    let n = sim.demand().vehicles.len();
    // The last right-turner (in, right: 393 m), sent straight on (in, straight: 408 m).
    let last = (0..n)
        .rev()
        .find(|v| sim.demand().vehicles[*v].route[1] == id("right"))
        .map(|v| VehicleId(v as u32))
        .unwrap();
    let straight: Arc<[_]> = vec![id("in"), id("straight")].into();
    assert_eq!(
        sim.replan_before_departure(last, vec![id("right"), id("straight")].into()),
        Err(citybrain_sim::ReplanError::BadRoute),
        "not connected"
    );
    sim.replan_before_departure(last, straight.clone()).unwrap();
    assert_eq!(
        sim.replan_before_departure(VehicleId(n as u32), straight.clone()),
        Err(citybrain_sim::ReplanError::NoVehicle)
    );
    sim.step();
    sim.step();
    assert_eq!(
        sim.replan_before_departure(VehicleId(0), straight.clone()),
        Err(citybrain_sim::ReplanError::Departed),
        "the first is on the road"
    );
    let trips = drive(&mut sim, |_| {});
    let last_id = &sim.demand().vehicle(last).id;
    let trip = trips.iter().find(|t| &t.id == last_id).unwrap();
    assert!(
        trip.route_length > 400.0,
        "it drove in and straight on: {} m",
        trip.route_length
    );
}

#[test]
fn a_trip_called_off_before_it_enters_never_drives() {
    let net = Arc::new(read_net(data("turn-lanes.net.xml")).unwrap());
    let demand = Demand::read(&net, &[data("turn-lanes-overload.rou.xml")]).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net));
    let n = sim.demand().vehicles.len();
    // One far in the future, and later one held at the edge behind the queue.
    sim.cancel_before_departure(VehicleId(n as u32 - 1)).unwrap();
    let mut held_called_off = None;
    let trips = drive(&mut sim, |_| {});
    assert!(trips.iter().all(|t| t.id != sim.demand().vehicles[n - 1].id));
    assert_eq!(sim.totals.cancelled, 1);
    assert_eq!(sim.totals.arrived + 1, sim.totals.loaded);
    // Held at the edge: the right-turners' queue reaches it.
    let demand = Demand::read(&net, &[data("turn-lanes-overload.rou.xml")]).unwrap();
    let mut sim = Sim::new(net.clone(), demand, SimConfig::default(), fixed_time_for(&net));
    while !sim.finished() {
        sim.step();
        sim.check_invariants().unwrap();
        if held_called_off.is_none() {
            let held = sim.waiting_to_enter().next();
            if let Some(v) = held {
                sim.cancel_before_departure(v).unwrap();
                held_called_off = Some(v);
            }
        }
    }
    let v = held_called_off.expect("the queue reached the edge");
    assert_eq!(
        sim.cancel_before_departure(v),
        Err(citybrain_sim::ReplanError::Departed)
    );
    assert_eq!(sim.totals.cancelled, 1);
    assert_eq!(sim.totals.arrived + 1, sim.totals.loaded);
}

/// An emergency vehicle on duty may pass a red light when the junction is
/// clear, slowly (`emergency_red_speed`); without that rule it waits for
/// green. Crossing's signal: green 0–42 s, amber to 45 s, red to 90 s.
#[test]
fn an_emergency_vehicle_passes_a_clear_red_light_slowly() {
    let net = Arc::new(read_net(data("crossing.net.xml")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("e.rou.xml");
    std::fs::write(
        &routes,
        r#"<routes><vType id="amb" vClass="emergency" sigma="0"/>
<vehicle id="a" type="amb" depart="45" departSpeed="max"><route edges="in out"/></vehicle></routes>"#,
    )
    .unwrap();
    let run = |red: Option<f64>| -> (f64, f64, f64) {
        let demand = Demand::read(&net, &[routes.display().to_string().as_str()]).unwrap();
        let cfg = SimConfig {
            behaviour: Behaviour {
                emergency_red_speed: red,
                ..Behaviour::default()
            },
            ..SimConfig::default()
        };
        let mut sim = Sim::new(net.clone(), demand, cfg, fixed_time_for(&net));
        // When and how fast it first shows inside the junction.
        let mut crossed = None;
        let trips = drive(&mut sim, |sim| {
            if crossed.is_none() {
                if let Some(v) = sim
                    .vehicles_on_road()
                    .find(|v| net.lanes[v.lane.idx()].id.starts_with(':'))
                {
                    crossed = Some((sim.time(), v.speed));
                }
            }
        });
        let (t, speed) = crossed.unwrap();
        (t, speed, trips[0].duration)
    };
    let (t_wait, _, d_wait) = run(None);
    assert!(t_wait >= 90.0, "without the rule it waits for green: in at {t_wait}");
    let (t_red, speed, d_red) = run(Some(5.0));
    assert!(t_red < 90.0, "it crosses on red: in at {t_red}");
    assert!(speed <= 5.0 + 2.6 + 1e-9, "slowly: {speed} m/s just past the line");
    assert!(d_red < d_wait - 20.0, "{d_red} against {d_wait}");
}
