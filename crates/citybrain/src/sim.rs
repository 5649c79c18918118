//! `citybrain sim`: run the twin on SUMO files, with SUMO's option names.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use citybrain_control::controllers_for;
use citybrain_sim::output::{write_tripinfo_csv, write_tripinfo_xml};
use citybrain_sim::{Demand, RunSummary, Sim, SimConfig};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// SUMO network file (.net.xml or .net.xml.gz).
    #[arg(short = 'n', long = "net-file")]
    net: PathBuf,
    /// Route files (.rou.xml / .trips.xml, comma-separated or repeated).
    #[arg(short = 'r', long = "route-files", value_delimiter = ',', required = true)]
    routes: Vec<PathBuf>,
    /// Additional files: parking areas, rerouters (parkingAreaReroute), induction loops and lane-area detectors.
    #[arg(short = 'a', long = "additional-files", value_delimiter = ',')]
    additional: Vec<PathBuf>,
    /// Simulation start, s.
    #[arg(short = 'b', long, default_value_t = 0.0)]
    begin: f64,
    /// Simulation end, s (default: until every vehicle has arrived).
    #[arg(short = 'e', long)]
    end: Option<f64>,
    /// Step length, s.
    #[arg(long, default_value_t = 1.0)]
    step_length: f64,
    /// Traffic-light control: fixed (the programs as written), actuated, or max-pressure.
    #[arg(long, default_value = "fixed")]
    signals: String,
    /// Random seed (driver imperfection, random lanes).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads for the plan phase (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds a vehicle may stand at the front of a lane before it jumps ahead (0: never).
    #[arg(long, default_value_t = 300.0)]
    time_to_teleport: f64,
    /// Write SUMO-style tripinfo XML here (".csv" writes CSV).
    #[arg(long)]
    tripinfo_output: Option<PathBuf>,
    /// Write the run summary as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Write per-interval summaries as JSON lines here.
    #[arg(long)]
    summary_output: Option<PathBuf>,
    /// Write queue length and occupancy per edge and interval as JSON lines here.
    #[arg(long)]
    edge_output: Option<PathBuf>,
    /// Write every teleport (time, vehicle, lane, cause: red, yield, jam, wrong_lane) as JSON lines here.
    #[arg(long)]
    teleport_output: Option<PathBuf>,
    /// Summary interval, s.
    #[arg(long, default_value_t = 300.0)]
    summary_interval: f64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Writes each detector's records to the file its definition names, in
/// SUMO's `<detector><interval .../></detector>` format (E1 or E2 fields).
fn write_detectors(
    dets: &[citybrain_sim::additional::Detector],
    records: &[(citybrain_sim::DetectorId, citybrain_sim::DetectorRecord)],
) -> Result<()> {
    use citybrain_sim::additional::DetectorKind;
    let mut by_file: std::collections::BTreeMap<&std::path::Path, Vec<(usize, &citybrain_sim::DetectorRecord)>> =
        Default::default();
    for (d, r) in records {
        if let Some(f) = &dets[d.idx()].file {
            by_file.entry(f.as_path()).or_default().push((d.idx(), r));
        }
    }
    for (path, recs) in by_file {
        let mut w = BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot write detector output {}", path.display()))?,
        );
        writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<detector>")?;
        for (d, r) in recs {
            match dets[d].kind {
                DetectorKind::Loop { .. } => writeln!(
                    w,
                    "    <interval begin=\"{:.2}\" end=\"{:.2}\" id=\"{}\" nVehContrib=\"{}\" flow=\"{:.2}\" occupancy=\"{:.2}\" speed=\"{:.2}\" nVehEntered=\"{}\"/>",
                    r.begin, r.end, r.id, r.vehicles, r.flow, r.occupancy, r.mean_speed, r.vehicles
                )?,
                DetectorKind::Area { .. } => writeln!(
                    w,
                    "    <interval begin=\"{:.2}\" end=\"{:.2}\" id=\"{}\" sampledSeconds=\"{:.2}\" nVehEntered=\"{}\" meanSpeed=\"{:.2}\" meanOccupancy=\"{:.2}\" maxJamLengthInVehicles=\"{}\" meanVehicleNumber=\"{:.2}\"/>",
                    r.begin, r.end, r.id, r.sampled_seconds, r.vehicles, r.mean_speed, r.occupancy, r.max_jam_vehicles, r.mean_vehicles
                )?,
            }
        }
        writeln!(w, "</detector>")?;
        w.flush()?;
    }
    Ok(())
}

/// One JSON object per line.
fn write_json_lines<T: serde::Serialize>(path: &std::path::Path, items: &[T]) -> Result<()> {
    let mut w =
        BufWriter::new(std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?);
    for item in items {
        serde_json::to_writer(&mut w, item)?;
        writeln!(w)?;
    }
    w.flush()?;
    Ok(())
}

pub fn run(a: SimArgs) -> Result<()> {
    // The engine keeps time in whole milliseconds, as SUMO does.
    if !(a.step_length >= 0.001 && a.step_length <= 10.0) {
        anyhow::bail!("--step-length must be between 0.001 and 10 seconds");
    }
    let t0 = Instant::now();
    let net = Arc::new(citybrain_net::sumo::read_net(&a.net)?);
    let additional = citybrain_sim::Additional::read(&net, &a.additional)?;
    let demand = Demand::read_with(&net, &additional, &a.routes)?;
    let load_s = t0.elapsed().as_secs_f64();
    let cfg = SimConfig {
        begin: a.begin,
        end: a.end,
        step_length: a.step_length,
        seed: a.seed,
        threads: a.threads.max(1),
        time_to_teleport: a.time_to_teleport,
        summary_interval: a.summary_interval,
        ..SimConfig::default()
    };
    let controllers = controllers_for(&net, &a.signals).map_err(|e| anyhow::anyhow!("--signals: {e}"))?;
    let mut sim = Sim::new(net.clone(), demand, cfg, controllers).with_parking(additional);
    if a.edge_output.is_some() {
        sim = sim.with_edge_stats();
    }
    let mut edge_stats = Vec::new();
    let mut detector_records = Vec::new();
    let mut teleports = Vec::new();
    let pb = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    pb.set_style(ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    let started = Instant::now();
    let mut trips = Vec::new();
    let mut summaries = Vec::new();
    let mut last_draw = Instant::now();
    while !sim.finished() {
        sim.step();
        if last_draw.elapsed().as_millis() > 200 {
            let rtf = (sim.time() - a.begin) / started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "t={:.0}s  running {}  arrived {}/{}  waiting to insert {}  {:.0}× real time",
                sim.time(),
                sim.totals.running,
                sim.totals.arrived,
                sim.totals.loaded,
                sim.totals.waiting_to_insert,
                rtf
            ));
            pb.tick();
            last_draw = Instant::now();
        }
        trips.extend(sim.take_trips());
        summaries.extend(sim.take_summaries());
        edge_stats.extend(sim.take_edge_stats());
        detector_records.extend(sim.take_detector_records());
        for t in sim.take_teleports() {
            if !a.quiet {
                pb.suspend(|| {
                    eprintln!(
                        "warning: vehicle '{}' teleported from lane '{}' at {:.0} s ({:?}){}",
                        t.vehicle,
                        t.lane,
                        t.time,
                        t.cause,
                        if t.continued { "" } else { ", past the end of its route" }
                    )
                });
            }
            teleports.push(t);
        }
    }
    sim.finish();
    trips.extend(sim.take_trips());
    summaries.extend(sim.take_summaries());
    edge_stats.extend(sim.take_edge_stats());
    detector_records.extend(sim.take_detector_records());
    write_detectors(sim.detectors(), &detector_records)?;
    pb.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let summary = RunSummary::from_trips(&sim.totals, &trips, sim.time(), a.seed, a.threads.max(1), wall);
    if let Some(p) = &a.tripinfo_output {
        let mut w = BufWriter::new(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?);
        if p.extension().is_some_and(|e| e == "csv") {
            write_tripinfo_csv(&mut w, &trips)?;
        } else {
            write_tripinfo_xml(&mut w, &trips)?;
        }
        w.flush()?;
    }
    if let Some(p) = &a.summary_output {
        write_json_lines(p, &summaries)?;
    }
    if let Some(p) = &a.edge_output {
        write_json_lines(p, &edge_stats)?;
    }
    if let Some(p) = &a.teleport_output {
        write_json_lines(p, &teleports)?;
    }
    let json = serde_json::to_string_pretty(&summary)?;
    if let Some(p) = &a.summary_json {
        std::fs::write(p, &json).with_context(|| format!("cannot write {}", p.display()))?;
    }
    eprintln!(
        "loaded {} vehicles in {:.2} s; simulated {:.0} s in {:.2} s: {} arrived, {} teleports, mean travel time {:.1} s, {:.0} vehicle-steps/s",
        summary.loaded, load_s, sim.time() - a.begin, wall, summary.arrived, summary.teleports, summary.mean_travel_time_s, summary.vehicle_steps_per_s
    );
    println!("{json}");
    Ok(())
}
