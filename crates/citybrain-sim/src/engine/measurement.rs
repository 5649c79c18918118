//! What the engine measures: per-edge statistics, detectors, interval summaries, trips and teleports handed out.

use super::*;

/// What the engine measures as it runs: detectors, per-edge statistics,
/// interval summaries, finished trips and teleports, until drained.
#[derive(Debug, Default)]
pub(super) struct Measurement {
    /// Detector accumulators and the records of finished periods.
    pub(super) det_acc: Vec<DetAcc>,
    pub(super) det_records: Vec<(DetectorId, DetectorRecord)>,
    /// Per-edge accumulators (when edge statistics are on) and the edges touched.
    pub(super) edge_acc: Vec<EdgeAcc>,
    pub(super) edge_touched: Vec<u32>,
    pub(super) edge_steps: u64,
    pub(super) edge_stats: Vec<EdgeInterval>,
    pub(super) trips: Vec<TripInfo>,
    /// The summary interval in progress, and those closed.
    pub(super) interval: IntervalSummary,
    pub(super) summaries: Vec<IntervalSummary>,
    pub(super) teleport_log: Vec<TeleportEvent>,
}

impl Measurement {
    pub(super) fn new(begin: f64) -> Measurement {
        Measurement {
            interval: IntervalSummary {
                begin,
                ..IntervalSummary::default()
            },
            ..Measurement::default()
        }
    }
}

impl Sim {
    /// Collects queue length and occupancy per edge for every interval.
    pub fn with_edge_stats(mut self) -> Sim {
        self.measure.edge_acc = vec![EdgeAcc::default(); self.net.edges.len()];
        self
    }

    /// Per-edge figures of the intervals closed so far (drained).
    pub fn take_edge_stats(&mut self) -> Vec<EdgeInterval> {
        std::mem::take(&mut self.measure.edge_stats)
    }

    pub(super) fn sample_edges(&mut self) {
        if self.measure.edge_acc.is_empty() {
            return;
        }
        self.measure.edge_steps += 1;
        for li in self.live_lanes() {
            let li = li as usize;
            let list = &self.lanes[li];
            if list.is_empty() {
                continue;
            }
            let lane = &self.net.lanes[li];
            let e = lane.edge.idx();
            if self.net.edges[e].function != EdgeFunction::Normal {
                continue;
            }
            let (mut standing, mut cover) = (0u32, 0.0);
            for &vi in list {
                let v = self.veh(vi);
                if v.speed < STANDING {
                    standing += 1;
                }
                cover += self.vtype(v).length;
            }
            let lanes_len: f64 = self.net.edges[e].lanes.len() as f64 * lane.length.max(0.1);
            let acc = &mut self.measure.edge_acc[e];
            if acc.veh_sum == 0 && acc.cover_sum == 0.0 {
                self.measure.edge_touched.push(e as u32);
            }
            acc.queue_sum += standing as u64;
            acc.queue_max = acc.queue_max.max(standing);
            acc.cover_sum += cover / lanes_len;
            acc.veh_sum += list.len() as u64;
        }
    }

    pub(super) fn close_edge_interval(&mut self, begin: f64, end: f64) {
        if self.measure.edge_acc.is_empty() {
            return;
        }
        let n = self.measure.edge_steps.max(1) as f64;
        let mut touched = std::mem::take(&mut self.measure.edge_touched);
        touched.sort_unstable();
        let edges = touched
            .into_iter()
            .map(|e| {
                let a = std::mem::take(&mut self.measure.edge_acc[e as usize]);
                EdgeStat {
                    edge: self.net.edges[e as usize].id.clone(),
                    mean_queue: a.queue_sum as f64 / n,
                    max_queue: a.queue_max,
                    mean_occupancy: a.cover_sum / n,
                    mean_vehicles: a.veh_sum as f64 / n,
                }
            })
            .collect();
        self.measure.edge_steps = 0;
        self.measure.edge_stats.push(EdgeInterval { begin, end, edges });
    }

    /// Trips completed so far (drained).
    pub fn take_trips(&mut self) -> Vec<TripInfo> {
        std::mem::take(&mut self.measure.trips)
    }

    pub fn take_summaries(&mut self) -> Vec<IntervalSummary> {
        std::mem::take(&mut self.measure.summaries)
    }

    /// The teleports since the last call, in the order they happened.
    pub fn take_teleports(&mut self) -> Vec<TeleportEvent> {
        std::mem::take(&mut self.measure.teleport_log)
    }

    /// What the signals' detectors saw at the start of the last step, by lane
    /// index: (vehicles standing, vehicles within the detection zone).
    pub fn detector_readings(&self) -> (&[u32], &[u32]) {
        (&self.queue, &self.near_stop_line)
    }

    /// Vehicles on each lane (for queue and occupancy outputs and the scenario hook).
    pub fn lane_counts(&self) -> Vec<(LaneId, usize, usize)> {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| {
                let standing = l.iter().filter(|v| self.veh(**v).speed < STANDING).count();
                (LaneId(i as u32), l.len(), standing)
            })
            .collect()
    }

    /// Detector records of the periods finished so far (drained), with the
    /// detector they are of.
    pub fn take_detector_records(&mut self) -> Vec<(DetectorId, DetectorRecord)> {
        std::mem::take(&mut self.measure.det_records)
    }

    /// The detectors being measured.
    pub fn detectors(&self) -> &[crate::additional::Detector] {
        &self.add.detectors
    }

    pub(super) fn sample_detectors(&mut self, dt: f64) {
        use crate::additional::DetectorKind;
        for d in 0..self.measure.det_acc.len() {
            let det = &self.add.detectors[d];
            let mut acc = self.measure.det_acc[d];
            acc.steps += 1;
            let mut covered_now = 0.0f64;
            let mut halting = 0u32;
            for &vi in &self.lanes[det.lane.idx()] {
                let v = self.veh(vi);
                let len = self.vtype(v).length;
                let (front, back, before) = (v.pos, v.pos - len, v.pos - v.speed * dt);
                match det.kind {
                    DetectorKind::Loop { pos } => {
                        if before < pos && pos <= front {
                            acc.passed += 1;
                            acc.speed_sum += v.speed;
                            acc.speed_weight += 1.0;
                        }
                        // Time the vehicle covered the loop during the step: its front
                        // moved linearly from `before` to `front`, covering while in [pos, pos+len].
                        let cover = if v.speed > 0.0 {
                            let moved = (front.min(pos + len) - before.max(pos)).max(0.0);
                            moved / v.speed
                        } else if back <= pos && pos <= front {
                            dt
                        } else {
                            0.0
                        };
                        covered_now = (covered_now + cover).min(dt);
                    }
                    DetectorKind::Area { start, end } => {
                        if before < start && start <= front {
                            acc.passed += 1;
                        }
                        let inside = front.min(end) - back.max(start);
                        if inside > 0.0 {
                            acc.sampled += dt;
                            acc.speed_sum += v.speed * dt;
                            acc.speed_weight += dt;
                            covered_now += inside / (end - start) * dt;
                            if v.speed < 1.39 {
                                halting += 1;
                            }
                        }
                    }
                }
            }
            acc.covered += covered_now;
            acc.max_jam = acc.max_jam.max(halting);
            self.measure.det_acc[d] = acc;
            if self.clock.now() + dt - acc.begin >= det.period - 1e-9 {
                self.close_detector(d);
            }
        }
    }

    pub(super) fn close_detector(&mut self, d: usize) {
        let acc = std::mem::take(&mut self.measure.det_acc[d]);
        let end = self.clock.end_of_step();
        let span = (end - acc.begin).max(1e-9);
        let det = &self.add.detectors[d];
        let record = DetectorRecord {
            id: det.id.clone(),
            begin: acc.begin,
            end,
            vehicles: acc.passed,
            flow: acc.passed as f64 * 3600.0 / span,
            occupancy: 100.0 * acc.covered / span,
            mean_speed: if acc.speed_weight > 0.0 {
                acc.speed_sum / acc.speed_weight
            } else {
                -1.0
            },
            sampled_seconds: acc.sampled,
            max_jam_vehicles: acc.max_jam,
            mean_vehicles: acc.sampled / span,
        };
        self.measure.det_acc[d] = DetAcc {
            begin: end,
            ..DetAcc::default()
        };
        self.measure.det_records.push((DetectorId(d as u32), record));
    }

    pub(super) fn close_interval(&mut self) {
        if self.clock.now() <= self.measure.interval.begin
            && self.measure.interval.inserted == 0
            && self.measure.interval.arrived == 0
        {
            return;
        }
        let mut s = std::mem::take(&mut self.measure.interval);
        s.end = self.clock.now();
        self.close_edge_interval(s.begin, s.end);
        s.running = self.totals.running;
        s.waiting_to_insert = self.totals.waiting_to_insert;
        self.measure.interval = IntervalSummary {
            begin: self.clock.now(),
            ..IntervalSummary::default()
        };
        self.measure.summaries.push(s);
    }
}
