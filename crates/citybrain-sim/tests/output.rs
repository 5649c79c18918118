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
