//! Outputs: SUMO-compatible tripinfo (XML and CSV), per-interval summaries,
//! and the run summary JSON.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

/// One finished trip, as SUMO's tripinfo reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripInfo {
    pub id: String,
    pub depart: f64,
    pub depart_delay: f64,
    pub arrival: f64,
    pub duration: f64,
    pub route_length: f64,
    pub waiting_time: f64,
    pub time_loss: f64,
    pub teleports: u32,
    pub vtype: String,
    /// s spent parked
    pub stop_time: f64,
    /// Times sent to another parking area.
    pub reroutes: u32,
}

/// What happened in one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IntervalSummary {
    pub begin: f64,
    pub end: f64,
    pub inserted: usize,
    pub arrived: usize,
    pub running: usize,
    pub waiting_to_insert: usize,
    pub teleports: usize,
    pub vehicle_steps: u64,
    pub sum_duration: f64,
    pub sum_waiting: f64,
    pub sum_time_loss: f64,
}

impl IntervalSummary {
    pub fn mean_travel_time(&self) -> Option<f64> {
        (self.arrived > 0).then(|| self.sum_duration / self.arrived as f64)
    }
}

/// Writes `<tripinfos>` in SUMO's format (the attributes we compute).
pub fn write_tripinfo_xml(w: &mut impl Write, trips: &[TripInfo]) -> io::Result<()> {
    writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(w, "<tripinfos>")?;
    let mut line = String::with_capacity(256);
    for t in trips {
        line.clear();
        let _ = write!(
            line,
            "    <tripinfo id=\"{}\" depart=\"{:.2}\" departDelay=\"{:.2}\" arrival=\"{:.2}\" duration=\"{:.2}\" routeLength=\"{:.2}\" waitingTime=\"{:.2}\" timeLoss=\"{:.2}\" vType=\"{}\" teleports=\"{}\" stopTime=\"{:.2}\" rerouteNo=\"{}\"/>",
            xml_escape(&t.id),
            t.depart,
            t.depart_delay,
            t.arrival,
            t.duration,
            t.route_length,
            t.waiting_time,
            t.time_loss,
            xml_escape(&t.vtype),
            t.teleports,
            t.stop_time,
            t.reroutes
        );
        writeln!(w, "{line}")?;
    }
    writeln!(w, "</tripinfos>")
}

/// The same as CSV with a header row.
pub fn write_tripinfo_csv(w: &mut impl Write, trips: &[TripInfo]) -> io::Result<()> {
    writeln!(
        w,
        "id,depart,departDelay,arrival,duration,routeLength,waitingTime,timeLoss,vType,teleports,stopTime,reroutes"
    )?;
    for t in trips {
        writeln!(
            w,
            "{},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{},{},{:.2},{}",
            csv_escape(&t.id),
            t.depart,
            t.depart_delay,
            t.arrival,
            t.duration,
            t.route_length,
            t.waiting_time,
            t.time_loss,
            csv_escape(&t.vtype),
            t.teleports,
            t.stop_time,
            t.reroutes
        )?;
    }
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The run's headline figures (`--summary-json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub loaded: usize,
    pub inserted: usize,
    pub arrived: usize,
    pub running: usize,
    pub waiting_to_insert: usize,
    pub teleports: usize,
    pub mean_travel_time_s: f64,
    pub mean_waiting_time_s: f64,
    pub mean_time_loss_s: f64,
    pub mean_depart_delay_s: f64,
    pub vehicle_steps: u64,
    pub sim_end_s: f64,
    pub seed: u64,
    pub threads: usize,
    pub wall_s: f64,
    pub vehicle_steps_per_s: f64,
}

impl RunSummary {
    pub fn from_trips(
        totals: &crate::engine::Totals,
        trips: &[TripInfo],
        sim_end: f64,
        seed: u64,
        threads: usize,
        wall_s: f64,
    ) -> RunSummary {
        let n = trips.len().max(1) as f64;
        let mean = |f: fn(&TripInfo) -> f64| {
            if trips.is_empty() {
                0.0
            } else {
                round3(trips.iter().map(f).sum::<f64>() / n)
            }
        };
        RunSummary {
            loaded: totals.loaded,
            inserted: totals.inserted,
            arrived: totals.arrived,
            running: totals.running,
            waiting_to_insert: totals.waiting_to_insert,
            teleports: totals.teleports,
            mean_travel_time_s: mean(|t| t.duration),
            mean_waiting_time_s: mean(|t| t.waiting_time),
            mean_time_loss_s: mean(|t| t.time_loss),
            mean_depart_delay_s: mean(|t| t.depart_delay),
            vehicle_steps: totals.vehicle_steps,
            sim_end_s: sim_end,
            seed,
            threads,
            wall_s: round3(wall_s),
            vehicle_steps_per_s: if wall_s > 0.0 {
                (totals.vehicle_steps as f64 / wall_s).round()
            } else {
                0.0
            },
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes `demand` as a SUMO route file: its vehicle types (speedDev 0:
/// the twin keeps each type's speed factor exactly) and every vehicle with
/// its route, sorted by departure as loaded. Parking stops name parking
/// areas the demand does not hold, so a demand with stops is refused.
pub fn write_routes_xml(w: &mut impl Write, net: &citybrain_net::Network, demand: &crate::Demand) -> io::Result<()> {
    use crate::demand::{DepartLane, DepartSpeed};
    writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(w, "<routes>")?;
    for t in &demand.vtypes {
        writeln!(
            w,
            "  <vType id=\"{}\" vClass=\"{}\" length=\"{}\" minGap=\"{}\" accel=\"{}\" decel=\"{}\" sigma=\"{}\" tau=\"{}\" maxSpeed=\"{}\" speedFactor=\"{}\" speedDev=\"0\"/>",
            xml_escape(&t.id),
            xml_escape(&t.vclass),
            t.length,
            t.min_gap,
            t.accel,
            t.decel,
            t.sigma,
            t.tau,
            t.max_speed,
            t.speed_factor
        )?;
    }
    for v in &demand.vehicles {
        if !v.stops.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "vehicle '{}' has parking stops, which a route file alone cannot name",
                    v.id
                ),
            ));
        }
        let lane = match v.depart_lane {
            DepartLane::Best => "best".to_string(),
            DepartLane::Free => "free".into(),
            DepartLane::Random => "random".into(),
            DepartLane::First => "first".into(),
            DepartLane::Index(i) => i.to_string(),
        };
        let speed = match v.depart_speed {
            DepartSpeed::Zero => "0".to_string(),
            DepartSpeed::Max => "max".into(),
            DepartSpeed::Desired => "desired".into(),
            DepartSpeed::Value(s) => s.to_string(),
        };
        let edges: Vec<String> = v.route.iter().map(|e| xml_escape(&net.edge(*e).id)).collect();
        writeln!(
            w,
            "  <vehicle id=\"{}\" type=\"{}\" depart=\"{:.2}\" departLane=\"{lane}\" departSpeed=\"{speed}\" departPos=\"{}\"><route edges=\"{}\"/></vehicle>",
            xml_escape(&v.id),
            xml_escape(&demand.vtypes[v.vtype].id),
            v.depart,
            v.depart_pos,
            edges.join(" ")
        )?;
    }
    writeln!(w, "</routes>")
}
