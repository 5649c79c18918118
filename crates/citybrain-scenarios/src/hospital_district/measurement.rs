//! What a run measures: waits, queues on the road, diversions, walks, through traffic, admissions, and the series for the report.

use super::*;

/// One lot's occupancy over the day: (time s, occupied, spaces offered).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LotSeries {
    pub id: String,
    pub name: String,
    pub spaces: u32,
    pub xy: (f64, f64),
    pub series: Vec<(f64, u32, u32)>,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub seed: u64,
    /// Mean over hospital visitors of the time from arriving in the district
    /// to parking, less the free-flow drive to the lot they parked in, min.
    pub mean_wait_min: f64,
    pub max_wait_min: f64,
    /// Most hospital-bound cars held in a queue for parking on public roads
    /// (the access roads included, and those held at the block's edge),
    /// counted every minute.
    pub peak_queue_on_road: u32,
    pub peak_queue_time_s: f64,
    /// Of the peak queue, the cars held at the block's edge (waiting to
    /// enter the modelled network: their queue stands on roads beyond it).
    pub peak_queue_held_outside: u32,
    /// Visitors who parked elsewhere than their hospital's lot.
    pub cars_diverted: usize,
    /// Extra walk to the hospital gate over all visitors who parked, m.
    pub mean_extra_walk_m: f64,
    /// The same over the diverted visitors only, m.
    pub mean_extra_walk_diverted_m: f64,
    /// Mean travel time of through traffic (insertion delay included), s;
    /// a trip that went round the jammed block counts its free-flow time
    /// across plus the detour.
    pub through_traffic_mean_travel_time_s: f64,
    /// Hospital visitors admitted into a lot per hour, 07:00-11:00.
    pub gate_throughput_per_h: f64,
    /// Mean time from arriving in the district to the hospital's door, min:
    /// at the drop-off bay for a patient let out there, else parked plus
    /// the walk from the lot.
    pub mean_time_to_door_min: f64,
    /// Visitor cars that let a patient out at the door (drop-off).
    pub dropped_at_door: usize,
    /// Visitors who booked a space with their appointment.
    pub booked: usize,
    pub visitor_cars: usize,
    pub parked: usize,
    /// Visitors still queued when the run ended (their wait counts to the end).
    pub never_parked: usize,
    pub guided: usize,
    pub turned_away: usize,
    /// Visitors who came in by another way than the one they would take on
    /// empty roads (their live navigation, see `Run::choose_ways_in`).
    pub other_way_in: usize,
    pub through_trips: usize,
    /// Through trips that went round the block instead (in `through_trips`).
    pub through_round_block: usize,
    pub end_s: f64,
    /// Visitors per 15-minute wait bucket.
    pub wait_histogram_15min: Vec<u32>,
    /// (time s, cars queued on the roads), every 5 minutes.
    pub queue_series: Vec<(f64, u32)>,
    pub lots: Vec<LotSeries>,
    pub wall_s: f64,
}

/// A run's figures so far (see [`Run::so_far`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoFar {
    pub time_s: f64,
    /// Mean wait to park of the cars that parked in the last hour (None: none did).
    pub mean_wait_last_hour_min: Option<f64>,
    pub parked_last_hour: usize,
    /// Visitors on their way or queuing who have not parked yet.
    pub waiting_now: usize,
    /// The longest of their waits so far.
    pub longest_wait_now_min: f64,
    pub queue_on_road: u32,
    pub peak_queue_on_road: u32,
    /// Visitors parked in another lot than their hospital's.
    pub cars_diverted: usize,
    /// Guidance decisions that sent a car elsewhere, and guards' turn-aways.
    pub guided: usize,
    pub turned_away: usize,
}

/// A lot's state now, as published to the hub.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LotState {
    pub id: String,
    pub name: String,
    /// Spaces offered to hospital visitors now.
    pub offered: u32,
    pub occupied: u32,
    pub free: u32,
    /// Position in network coordinates, m.
    pub xy: (f64, f64),
    pub hospital: Option<String>,
    /// The road it is entered from.
    pub street: String,
}

impl Run<'_> {
    /// Every lot's state now.
    pub fn lots(&self) -> Vec<LotState> {
        let occ = self.sim.parking_occupancy();
        self.d
            .lots
            .iter()
            .map(|l| {
                let (_, occupied, offered) = occ[l.area.idx()];
                LotState {
                    id: l.id.clone(),
                    name: l.name.clone(),
                    offered,
                    occupied,
                    free: offered.saturating_sub(occupied),
                    xy: l.xy,
                    hospital: l.hospital.map(|h| self.d.hospitals[h].id.clone()),
                    street: l.street.clone(),
                }
            })
            .collect()
    }

    /// The figures a live view shows now: waits of the cars that parked in
    /// the last hour, the cars still waiting, what guidance has done.
    pub fn so_far(&mut self) -> SoFar {
        let now = self.sim.time();
        let (mut waits, mut waiting_now, mut longest_now, mut diverted) = (Vec::new(), 0usize, 0.0f64, 0usize);
        for v in 0..self.cars.len() {
            let Kind::Visitor(h) = self.kinds[v] else { continue };
            let depart = self.departs[v];
            if depart > now {
                continue;
            }
            match self.cars[v].progress {
                Progress::Parked { at, lot: Some(lot) } => {
                    if self.d.lots[lot].hospital != Some(h as usize) {
                        diverted += 1;
                    }
                    if at + 3600.0 >= now {
                        waits.push((self.wait_to_park_s(v, at, lot) / 60.0).max(0.0));
                    }
                }
                _ => {
                    waiting_now += 1;
                    longest_now = longest_now.max((now - depart) / 60.0);
                }
            }
        }
        SoFar {
            time_s: now,
            mean_wait_last_hour_min: (!waits.is_empty()).then(|| waits.iter().sum::<f64>() / waits.len() as f64),
            parked_last_hour: waits.len(),
            waiting_now,
            longest_wait_now_min: longest_now,
            queue_on_road: self.queue_now,
            peak_queue_on_road: self.peak_queue.0,
            cars_diverted: diverted,
            guided: self.guided,
            turned_away: self.turned_away,
        }
    }

    /// A visitor's wait to park, s: from arriving to parked, less the
    /// free-flow drive to the lot and the stop at the door, if it made one.
    pub(super) fn wait_to_park_s(&mut self, v: usize, parked_at: f64, lot: usize) -> f64 {
        // The door stop, when made, is the first of the vehicle's stops.
        let door = match self.cars[v].dropped_off_at {
            Some(_) => self.sim.demand().vehicles[v].stops[0].duration.unwrap_or(0.0),
            None => 0.0,
        };
        parked_at - self.departs[v] - self.drive_s(self.origins[v], lot) - door
    }

    /// Each visitor's wait to park so far, min, with the vehicle's id (those
    /// not parked yet count their wait until now).
    pub fn visitor_waits(&mut self) -> Vec<(String, f64)> {
        let now = self.sim.time();
        let visitors: Vec<usize> = (0..self.cars.len())
            .filter(|v| matches!(self.kinds[*v], Kind::Visitor(_)))
            .collect();
        visitors
            .into_iter()
            .map(|v| {
                let car = self.cars[v].clone();
                let wait = match car.progress {
                    Progress::Parked { at, lot: Some(lot) } => self.wait_to_park_s(v, at, lot),
                    _ => now - self.departs[v],
                };
                (self.sim.demand().vehicles[v].id.clone(), (wait / 60.0).max(0.0))
            })
            .collect()
    }

    /// The figures of the run so far (call when finished).
    pub fn outcome(&mut self) -> Outcome {
        let end = self.sim.time();
        let mut waits = Vec::new();
        let mut never_parked = 0;
        let (mut diverted, mut walk_sum, mut walk_div_sum, mut parked) = (0usize, 0.0, 0.0, 0usize);
        let mut admitted_peak = 0usize;
        let mut visitors = 0usize;
        let mut to_door = Vec::new();
        for v in 0..self.cars.len() {
            let Kind::Visitor(h) = self.kinds[v] else { continue };
            visitors += 1;
            let h = h as usize;
            let car = self.cars[v].clone();
            let depart = self.departs[v];
            match car.progress {
                Progress::Parked { at, lot: Some(lot) } => {
                    waits.push((self.wait_to_park_s(v, at, lot) / 60.0).max(0.0));
                    parked += 1;
                    let extra = self.d.lots[lot].walk_m[h];
                    to_door.push(
                        match car.dropped_off_at {
                            Some(door) => door - depart,
                            None => at - depart + extra / self.d.spec.guidance.walk_speed_mps,
                        } / 60.0,
                    );
                    walk_sum += extra;
                    if self.d.lots[lot].hospital != Some(h) {
                        diverted += 1;
                        walk_div_sum += extra;
                    }
                    if (7.0 * 3600.0..11.0 * 3600.0).contains(&at) {
                        admitted_peak += 1;
                    }
                }
                _ => {
                    never_parked += 1;
                    waits.push(((end - depart) / 60.0).max(0.0));
                    to_door.push(car.dropped_off_at.unwrap_or(end).min(end) / 60.0 - depart / 60.0);
                }
            }
        }
        let mean = |xs: &[f64]| {
            if xs.is_empty() {
                0.0
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let buckets = waits
            .iter()
            .map(|w| (w / WAIT_BUCKET_MIN) as usize)
            .max()
            .map_or(0, |m| m + 1);
        let mut histogram = vec![0u32; buckets];
        for w in &waits {
            histogram[(w / WAIT_BUCKET_MIN) as usize] += 1;
        }
        let lots = self
            .d
            .lots
            .iter()
            .zip(&self.occupancy_series)
            .map(|(l, s)| LotSeries {
                id: l.id.clone(),
                name: l.name.clone(),
                spaces: l.spaces,
                xy: l.xy,
                series: s.clone(),
            })
            .collect();
        Outcome {
            policy: self.o.measures.name(),
            seed: self.o.seed,
            mean_wait_min: mean(&waits),
            max_wait_min: waits.iter().copied().fold(0.0, f64::max),
            peak_queue_on_road: self.peak_queue.0,
            peak_queue_time_s: self.peak_queue.1,
            peak_queue_held_outside: self.peak_queue_held_outside,
            cars_diverted: diverted,
            mean_extra_walk_m: if parked > 0 { walk_sum / parked as f64 } else { 0.0 },
            mean_extra_walk_diverted_m: if diverted > 0 {
                walk_div_sum / diverted as f64
            } else {
                0.0
            },
            through_traffic_mean_travel_time_s: mean(&self.through_tt),
            gate_throughput_per_h: admitted_peak as f64 / 4.0,
            mean_time_to_door_min: mean(&to_door),
            dropped_at_door: self.cars.iter().filter(|c| c.dropped_off_at.is_some()).count(),
            booked: self
                .cars
                .iter()
                .filter(|c| matches!(c.booking, Booking::Booked { .. }))
                .count(),
            visitor_cars: visitors,
            parked,
            never_parked,
            guided: self.guided,
            turned_away: self.turned_away,
            other_way_in: self.other_way_in,
            through_trips: self.through_tt.len(),
            through_round_block: self.through_round,
            end_s: end,
            wait_histogram_15min: histogram,
            queue_series: self.queue_series.clone(),
            lots,
            wall_s: 0.0,
        }
    }
}
