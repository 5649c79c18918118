//! The trip outputs read back: what a user's spreadsheet or script sees.

use citybrain_sim::output::write_tripinfo_csv;
use citybrain_sim::TripInfo;

fn trip(id: &str, vtype: &str) -> TripInfo {
    TripInfo {
        id: id.into(),
        depart: 12.0,
        depart_delay: 1.5,
        arrival: 140.25,
        duration: 128.25,
        route_length: 1234.5,
        waiting_time: 20.0,
        time_loss: 31.75,
        teleports: 1,
        vtype: vtype.into(),
        stop_time: 600.0,
        reroutes: 2,
    }
}

#[test]
fn tripinfo_csv_reads_back_with_a_value_under_every_header() {
    let trips = [trip("car.1", "DEFAULT_VEHTYPE"), trip("odd, \"quoted\" id", "bus")];
    let mut out = Vec::new();
    write_tripinfo_csv(&mut out, &trips).unwrap();
    let mut r = csv::Reader::from_reader(out.as_slice());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.len(), 12, "{header:?}");
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    for (row, t) in rows.iter().zip(&trips) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        let col = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
        assert_eq!(col("id"), t.id);
        assert_eq!(col("vType"), t.vtype);
        assert_eq!(col("duration").parse::<f64>().unwrap(), t.duration);
        assert_eq!(col("timeLoss").parse::<f64>().unwrap(), t.time_loss);
        assert_eq!(col("teleports").parse::<u32>().unwrap(), t.teleports);
        assert_eq!(col("stopTime").parse::<f64>().unwrap(), t.stop_time);
        assert_eq!(col("reroutes").parse::<u32>().unwrap(), t.reroutes);
    }
}

/// A demand written as a route file reads back as the same demand.
#[test]
fn a_written_route_file_reads_back_as_the_same_demand() {
    use citybrain_testkit::sim_data;
    let net = citybrain_net::sumo::read_net(sim_data("grid3.net.xml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let demand = citybrain_sim::Demand::read(&net, &[citybrain_testkit::grid_demand_file(&dir, 120).as_str()]).unwrap();
    assert!(demand.vehicles.len() > 20);
    let mut out = Vec::new();
    citybrain_sim::output::write_routes_xml(&mut out, &net, &demand).unwrap();
    let path = dir.path().join("back.rou.xml");
    std::fs::write(&path, &out).unwrap();
    let back = citybrain_sim::Demand::read(&net, &[path.display().to_string().as_str()]).unwrap();
    assert_eq!(back.vehicles.len(), demand.vehicles.len());
    for (a, b) in demand.vehicles.iter().zip(&back.vehicles) {
        assert_eq!((&a.id, a.depart, &a.route[..]), (&b.id, b.depart, &b.route[..]));
        assert_eq!(back.vtypes[b.vtype], demand.vtypes[a.vtype]);
    }
}
