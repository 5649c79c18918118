//! Any SUMO network under the policies, with an ambulance sent across it.

use std::path::PathBuf;

use citybrain_scenarios::ambulance::Ambulance;
use citybrain_scenarios::measure::Policy;
use citybrain_scenarios::sumo_files::SumoFiles;

fn grid() -> (tempfile::TempDir, SumoFiles) {
    let net = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../citybrain-sim/tests/data/grid3.net.xml"
    ));
    // Busy flows across the 3x3 grid in both directions of both axes.
    let dir = tempfile::tempdir().unwrap();
    let mut routes = String::from("<routes>\n");
    for (i, (from, to)) in [
        ("A0B0", "B0C0"),
        ("C0B0", "B0A0"),
        ("A1B1", "B1C1"),
        ("C1B1", "B1A1"),
        ("A0A1", "A1A2"),
        ("B0B1", "B1B2"),
        ("B2B1", "B1B0"),
        ("C2C1", "C1C0"),
    ]
    .iter()
    .enumerate()
    {
        routes.push_str(&format!(
            "  <flow id=\"f{i}\" begin=\"0\" end=\"900\" vehsPerHour=\"600\" from=\"{from}\" to=\"{to}\" departLane=\"best\" departSpeed=\"max\"/>\n"
        ));
    }
    routes.push_str("</routes>\n");
    let path = dir.path().join("grid.rou.xml");
    std::fs::write(&path, routes).unwrap();
    let files = SumoFiles::load(&net, &[path]).unwrap();
    (dir, files)
}

#[test]
fn an_ambulance_across_a_sumo_grid_gets_through_faster_with_priority() {
    // Sent at four moments (the signals' phases differ each time), over
    // the grid's five signals from one corner to the other.
    let (mut without, mut with, mut free) = (0.0, 0.0, 0.0);
    for depart in [200.0, 300.0, 400.0, 500.0] {
        let (_dir, files) = grid();
        let files = files.with_ambulance("A0A1", "C2C1", Some(depart)).unwrap();
        let trip = files.ambulance().unwrap();
        assert_eq!(trip.depart, depart);
        assert!(trip.route.len() >= 4, "a way across the grid: {:?}", trip.route);
        let time = |a: Ambulance| {
            let o = files.run(Policy::Fixed, 1, a, |_| {}).unwrap();
            assert_eq!(o.teleports, 0);
            o.ambulance_travel_time_s.expect("the ambulance arrives")
        };
        let (a, b) = (time(Ambulance::WithoutPriority), time(Ambulance::WithPriority));
        let f = files.ambulance_free_flow_s().unwrap();
        eprintln!("depart {depart}: free {f:.0} s, without {a:.0} s, with {b:.0} s");
        assert!(b >= f * 0.95, "never faster than free flow: {b} s against {f} s");
        without += a;
        with += b;
        free += f;
        // Without an ambulance the run has none.
        let o = files.run(Policy::Fixed, 1, Ambulance::None, |_| {}).unwrap();
        assert_eq!(o.ambulance_travel_time_s, None);
    }
    assert!(
        with - free < 0.5 * (without - free),
        "priority takes at least half the delay away: with {with} s, without {without} s, free {free} s"
    );
}

#[test]
fn a_bad_ambulance_trip_is_refused_with_its_reason() {
    let err = |r: Result<SumoFiles, citybrain_scenarios::ScenarioError>| r.err().unwrap().to_string();
    let (_dir, files) = grid();
    assert!(err(files.with_ambulance("nowhere", "C2C1", None)).contains("no edge 'nowhere'"));
    let (_dir, files) = grid();
    assert!(err(files.with_ambulance("A0A1", "C2C1", Some(5000.0))).contains("within the demand period"));
    let (_dir, files) = grid();
    assert!(files.run(Policy::Fixed, 1, Ambulance::WithPriority, |_| {}).is_err());
}
