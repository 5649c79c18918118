//! The hospital district: each policy's runs over seeds summarised (waits,
//! queues on the road, diversions, walks, through traffic), as a text table,
//! JSON lines (the `PolicySummary` itself) and an HTML report with the queue
//! over the day, the wait distribution, lot occupancy and a map of the block.

use std::fmt::Write;

use serde::Serialize;

use super::html::{esc, page, time_axes};
use crate::hospital_district::{District, Outcome};
use crate::stats::Spread;

/// One policy over all seeds (the JSON line): means, with spreads and every run.
#[derive(Debug, Serialize)]
pub struct PolicySummary {
    pub scenario: &'static str,
    pub policy: String,
    pub seeds: Vec<u64>,
    pub mean_wait_min: f64,
    pub max_wait_min: f64,
    pub peak_queue_on_road: f64,
    pub cars_diverted: f64,
    pub mean_extra_walk_m: f64,
    pub mean_extra_walk_diverted_m: f64,
    pub through_traffic_mean_travel_time_s: f64,
    pub gate_throughput_per_h: f64,
    pub mean_time_to_door_min: f64,
    pub dropped_at_door: f64,
    pub booked: f64,
    pub never_parked: f64,
    pub spread: Spreads,
    pub runs: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
pub struct Spreads {
    pub mean_wait_min: Spread,
    pub max_wait_min: Spread,
    pub peak_queue_on_road: Spread,
    pub cars_diverted: Spread,
    pub mean_extra_walk_m: Spread,
    pub through_traffic_mean_travel_time_s: Spread,
    pub gate_throughput_per_h: Spread,
    pub mean_time_to_door_min: Spread,
}

/// One policy's runs (`runs`, one per seed) summarised: means and spreads.
pub fn summarize(policy: String, seeds: &[u64], runs: Vec<Outcome>) -> PolicySummary {
    let sp = |f: &dyn Fn(&Outcome) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    let spread = Spreads {
        mean_wait_min: sp(&|o| o.mean_wait_min),
        max_wait_min: sp(&|o| o.max_wait_min),
        peak_queue_on_road: sp(&|o| o.peak_queue_on_road as f64),
        cars_diverted: sp(&|o| o.cars_diverted as f64),
        mean_extra_walk_m: sp(&|o| o.mean_extra_walk_m),
        through_traffic_mean_travel_time_s: sp(&|o| o.through_traffic_mean_travel_time_s),
        gate_throughput_per_h: sp(&|o| o.gate_throughput_per_h),
        mean_time_to_door_min: sp(&|o| o.mean_time_to_door_min),
    };
    PolicySummary {
        scenario: "hospital-district",
        policy,
        seeds: seeds.to_vec(),
        mean_wait_min: spread.mean_wait_min.mean,
        max_wait_min: spread.max_wait_min.mean,
        peak_queue_on_road: spread.peak_queue_on_road.mean,
        cars_diverted: spread.cars_diverted.mean,
        mean_extra_walk_m: spread.mean_extra_walk_m.mean,
        mean_extra_walk_diverted_m: sp(&|o| o.mean_extra_walk_diverted_m).mean,
        through_traffic_mean_travel_time_s: spread.through_traffic_mean_travel_time_s.mean,
        gate_throughput_per_h: spread.gate_throughput_per_h.mean,
        mean_time_to_door_min: spread.mean_time_to_door_min.mean,
        dropped_at_door: sp(&|o| o.dropped_at_door as f64).mean,
        booked: sp(&|o| o.booked as f64).mean,
        never_parked: sp(&|o| o.never_parked as f64).mean,
        spread,
        runs,
    }
}

/// The text table: one row per policy, mean ± sd over seeds.
pub fn table(summaries: &[PolicySummary], seeds: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "hospital-district, {seeds} seed(s): mean ± sd over seeds");
    let _ = writeln!(
        t,
        "{:<40} {:>14} {:>14} {:>14} {:>9} {:>9} {:>14} {:>9} {:>8}",
        "policy",
        "mean wait min",
        "max wait min",
        "peak queue",
        "diverted",
        "walk m",
        "through TT s",
        "parked/h",
        "door min"
    );
    for s in summaries {
        let sp = &s.spread;
        let _ = writeln!(
            t,
            "{:<40} {:>7.1} ± {:<4.1} {:>7.0} ± {:<4.0} {:>7.0} ± {:<4.0} {:>9.0} {:>9.0} {:>7.0} ± {:<4.0} {:>9.0} {:>8.1}",
            s.policy,
            sp.mean_wait_min.mean,
            sp.mean_wait_min.sd,
            sp.max_wait_min.mean,
            sp.max_wait_min.sd,
            sp.peak_queue_on_road.mean,
            sp.peak_queue_on_road.sd,
            s.cars_diverted,
            s.mean_extra_walk_m,
            sp.through_traffic_mean_travel_time_s.mean,
            sp.through_traffic_mean_travel_time_s.sd,
            s.gate_throughput_per_h,
            s.mean_time_to_door_min,
        );
    }
    let _ = writeln!(t, "(door min: mean time from arriving to the hospital's door — let out at the drop-off bay, or parked and walked)");
    if summaries.iter().any(|s| s.never_parked > 0.0) {
        let _ = writeln!(
            t,
            "(cars still queued when a run stopped count their wait to the end; mean per run:"
        );
        for s in summaries.iter().filter(|s| s.never_parked > 0.0) {
            let _ = writeln!(t, "  {}: {:.1})", s.policy, s.never_parked);
        }
    }
    t
}

/// A report that opens offline: the table, the queue over the day, the wait
/// distribution, each lot's occupancy, and a map of the block with the lots.
pub fn html(d: &District, summaries: &[PolicySummary], seeds: &[u64]) -> String {
    let colors = [
        "#dc2626", "#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#4b5563", "#92400e",
    ];
    let mut rows = String::new();
    for s in summaries {
        let sp = &s.spread;
        rows += &format!(
            "<tr><td>{}</td><td>{:.1} ± {:.1}</td><td>{:.0} ± {:.0}</td><td>{:.0} ± {:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0} ± {:.0}</td><td>{:.0}</td><td>{:.1}</td></tr>",
            esc(&s.policy),
            sp.mean_wait_min.mean,
            sp.mean_wait_min.sd,
            sp.max_wait_min.mean,
            sp.max_wait_min.sd,
            sp.peak_queue_on_road.mean,
            sp.peak_queue_on_road.sd,
            s.cars_diverted,
            s.mean_extra_walk_m,
            sp.through_traffic_mean_travel_time_s.mean,
            sp.through_traffic_mean_travel_time_s.sd,
            s.gate_throughput_per_h,
            s.mean_time_to_door_min
        );
    }
    // Queue over the day: the first seed's run of each policy.
    let (w, h) = (900.0, 260.0);
    let (t0, t1) = (6.0 * 3600.0, 22.0 * 3600.0);
    let qmax = summaries
        .iter()
        .filter_map(|s| s.runs.first())
        .flat_map(|r| r.queue_series.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: f64| 50.0 + (w - 60.0) * ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
    let mut queue_svg = time_axes(w, h, t0, t1, qmax, "cars queued on roads");
    for (i, s) in summaries.iter().enumerate() {
        let Some(r) = s.runs.first() else { continue };
        let pts: Vec<String> = r
            .queue_series
            .iter()
            .map(|(t, q)| format!("{:.1},{:.1}", x(*t), h - 30.0 - (h - 50.0) * *q as f64 / qmax))
            .collect();
        queue_svg += &format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
            colors[i % colors.len()],
            pts.join(" "),
            w - 300.0,
            20 + i * 16,
            colors[i % colors.len()],
            esc(&s.policy)
        );
    }
    // Wait distribution: share of visitors per 15-minute bucket, all seeds.
    let mut hist_svg = String::new();
    let buckets = summaries
        .iter()
        .flat_map(|s| s.runs.iter().map(|r| r.wait_histogram_15min.len()))
        .max()
        .unwrap_or(1)
        .clamp(1, 40);
    let bw = (w - 60.0) / buckets as f64 / summaries.len().max(1) as f64;
    for (i, s) in summaries.iter().enumerate() {
        let mut counts = vec![0u64; buckets];
        for r in &s.runs {
            for (b, c) in r.wait_histogram_15min.iter().enumerate() {
                counts[b.min(buckets - 1)] += *c as u64;
            }
        }
        let total = counts.iter().sum::<u64>().max(1) as f64;
        for (b, c) in counts.iter().enumerate() {
            let frac = *c as f64 / total;
            let bh = (h - 50.0) * frac;
            hist_svg += &format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}-{} min: {:.1}%</title></rect>",
                50.0 + (b * summaries.len() + i) as f64 * bw,
                h - 30.0 - bh,
                bw.max(1.0),
                bh,
                colors[i % colors.len()],
                esc(&s.policy),
                b * 15,
                b * 15 + 15,
                100.0 * frac
            );
        }
    }
    for b in (0..buckets).step_by(4) {
        hist_svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{} min</text>",
            50.0 + (b * summaries.len()) as f64 * bw,
            h - 12.0,
            b * 15
        );
    }
    // Occupancy per lot, per policy (first seed).
    let mut occ_html = String::new();
    for (i, s) in summaries.iter().enumerate() {
        let Some(r) = s.runs.first() else { continue };
        let mut svg = time_axes(w, 200.0, t0, t1, 1.0, "share of spaces taken");
        for (k, lot) in r.lots.iter().enumerate() {
            let pts: Vec<String> = lot
                .series
                .iter()
                .map(|(t, o, _)| {
                    let frac = *o as f64 / lot.spaces.max(1) as f64;
                    format!("{:.1},{:.1}", x(*t), 200.0 - 30.0 - 150.0 * frac.min(1.0))
                })
                .collect();
            svg += &format!(
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline><text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>",
                colors[k % colors.len()],
                pts.join(" "),
                esc(&lot.name),
                w - 170.0,
                14 + k * 13,
                colors[k % colors.len()],
                esc(&lot.id)
            );
        }
        occ_html += &format!(
            "<h3 style=\"color:{}\">{}</h3><svg width=\"{w}\" height=\"200\" font-size=\"12\">{svg}</svg>",
            colors[i % colors.len()],
            esc(&s.policy)
        );
    }
    // The figures of every run, without the series already drawn above.
    let mut slim = serde_json::to_value(summaries).unwrap_or_default();
    if let Some(list) = slim.as_array_mut() {
        for s in list {
            if let Some(runs) = s.get_mut("runs").and_then(|r| r.as_array_mut()) {
                for r in runs {
                    if let Some(o) = r.as_object_mut() {
                        for k in ["queue_series", "lots", "wait_histogram_15min"] {
                            o.remove(k);
                        }
                    }
                }
            }
        }
    }
    let json = serde_json::to_string_pretty(&slim).unwrap_or_default();
    let json = esc(&json);
    let body = format!(
        "<h1>Hospital district: a weekday around ZJU First and Second Affiliated Hospitals</h1>\
<p>Seeds: {}. Mean ± sample standard deviation over seeds. Wait: arrival in the district to parked, less the free-flow drive. \
Queue: hospital-bound cars held on public roads (access roads included) waiting for a full lot. Walk: extra walk to the hospital gate, over all visitors who parked. Parked/h: visitors admitted 07:00–11:00.</p>\
<table id=\"figures\"><tr><th>policy</th><th>mean wait min</th><th>max wait min</th><th>peak queue on road</th><th>diverted</th><th>extra walk m</th><th>through traffic TT s</th><th>parked/h</th><th>to the door min</th></tr>{rows}</table>\
<h2>Cars queued on the roads over the day (seed {})</h2><svg width=\"{w}\" height=\"{h}\" font-size=\"12\">{queue_svg}</svg>\
<h2>Wait to park: share of visitors per 15 minutes (all seeds)</h2><svg width=\"{w}\" height=\"{h}\" font-size=\"12\">{hist_svg}</svg>\
<h2>Lot occupancy over the day (seed {})</h2>{occ_html}\
<h2>The block</h2>{}\
<h2>Every run</h2><pre>{json}</pre>",
        seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        seeds.first().copied().unwrap_or(1),
        seeds.first().copied().unwrap_or(1),
        map_svg(d, summaries),
    );
    page("hospital district", "svg{background:#fafafa}", &body)
}

/// The block's roads from the network geometry, with each lot as a circle
/// sized by its spaces and coloured by its peak occupancy under the last policy.
fn map_svg(d: &District, summaries: &[PolicySummary]) -> String {
    let net = &d.net;
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for l in &net.lanes {
        for p in &l.shape {
            x0 = x0.min(p.0);
            y0 = y0.min(p.1);
            x1 = x1.max(p.0);
            y1 = y1.max(p.1);
        }
    }
    let (w, h) = (900.0, 900.0 * (y1 - y0).max(1.0) / (x1 - x0).max(1.0));
    let sx = |x: f64| 20.0 + (w - 40.0) * (x - x0) / (x1 - x0).max(1.0);
    let sy = |y: f64| 20.0 + (h - 40.0) * (1.0 - (y - y0) / (y1 - y0).max(1.0));
    let mut s = String::new();
    for e in &net.edges {
        if e.function != citybrain_net::EdgeFunction::Normal {
            continue;
        }
        let Some(l) = e.lanes.first() else { continue };
        let pts: Vec<String> = net
            .lane(*l)
            .shape
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"#9ca3af\" stroke-width=\"3\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    let last = summaries.last().and_then(|s| s.runs.first());
    let mut placed: Vec<(f64, f64)> = Vec::new();
    for lot in &d.lots {
        // Lots across the street from each other: the second label goes left.
        let (cx, cy) = (sx(lot.xy.0), sy(lot.xy.1));
        let crowded = placed.iter().any(|(x, y)| (x - cx).hypot(y - cy) < 25.0);
        placed.push((cx, cy));
        let (lx, anchor) = if crowded {
            (cx - 10.0, "end")
        } else {
            (cx + 8.0, "start")
        };
        let peak = last
            .and_then(|r| r.lots.iter().find(|l| l.id == lot.id))
            .map_or(0.0, |l| {
                l.series.iter().map(|(_, o, _)| *o).max().unwrap_or(0) as f64 / l.spaces.max(1) as f64
            });
        let color = if peak >= 0.99 {
            "#dc2626"
        } else if peak >= 0.8 {
            "#d97706"
        } else {
            "#16a34a"
        };
        s += &format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.7\"><title>{}: {} spaces, peak {:.0}%</title></circle><text x=\"{lx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"{anchor}\">{}</text>",
            4.0 + (lot.spaces as f64).sqrt(),
            esc(&lot.name),
            lot.spaces,
            100.0 * peak,
            cy - 8.0,
            esc(&lot.id)
        );
    }
    for hsp in &d.hospitals {
        s += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"#111\"><title>{} gate</title></rect>",
            sx(hsp.gate_xy.0) - 5.0,
            sy(hsp.gate_xy.1) - 5.0,
            esc(&hsp.name)
        );
    }
    format!(
        "<p>Roads from the network; lots as circles (size: spaces; colour: peak occupancy under {}: red full, amber ≥ 80 %, green below); black squares: hospital gates.</p><svg width=\"{w:.0}\" height=\"{h:.0}\">{s}</svg>",
        summaries.last().map_or("-".into(), |s| esc(&s.policy).into_owned())
    )
}
