//! A weekday's demand drawn per seed: visitors (arrivals shaped by a profile, lognormal stays, drop-offs, bookings), staff and through traffic.

use super::*;

/// A car entering at the start of its route at full speed, in the lane that leads on.
/// The spread (sigma) of the visitors' lognormal stay: the median and the
/// share under 3 h fix it.
pub(super) fn dwell_sigma(d: &DemandSpec) -> f64 {
    (10_800.0 / d.visitor_dwell_median_s).ln() / normal_quantile(d.visitor_dwell_share_under_3h)
}

pub(super) fn car(id: String, depart: f64, route: Arc<[EdgeId]>, stops: Arc<[StopSpec]>) -> VehicleSpec {
    VehicleSpec {
        id,
        vtype: 0,
        depart,
        route,
        depart_lane: DepartLane::Best,
        depart_speed: DepartSpeed::Max,
        depart_pos: 0.0,
        stops,
    }
}

pub(super) fn opposite(end: char) -> char {
    match end {
        'w' => 'e',
        'e' => 'w',
        'n' => 's',
        _ => 'n',
    }
}

pub(super) fn pick_weighted(weights: &[f64], total: f64, u: f64) -> usize {
    let mut x = u * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// A point at distance `s` along a polyline.
pub(super) fn point_along(shape: &[(f64, f64)], s: f64) -> (f64, f64) {
    let mut left = s;
    for w in shape.windows(2) {
        let len = (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1);
        if left <= len && len > 0.0 {
            let f = left / len;
            return (w[0].0 + f * (w[1].0 - w[0].0), w[0].1 + f * (w[1].1 - w[0].1));
        }
        left -= len;
    }
    shape.last().copied().unwrap_or((0.0, 0.0))
}

/// A standard normal draw (Box–Muller).
pub(super) fn normal(s: &mut Stream) -> f64 {
    let u1 = 1.0 - s.uniform();
    let u2 = s.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The standard normal quantile, by bisection on the CDF (erf after
/// Abramowitz & Stegun 7.1.26, error < 1.5e-7).
pub(super) fn normal_quantile(p: f64) -> f64 {
    let cdf = |x: f64| {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let poly =
            t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        if x >= 0.0 {
            0.5 * (1.0 + erf)
        } else {
            0.5 * (1.0 - erf)
        }
    };
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The area under a piecewise-linear profile, s.
pub(super) fn integral(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

impl District {
    /// Draws one weekday's demand for a seed; returns it with each vehicle's kind.
    pub(super) fn demand(&self, o: &RunOptions) -> Result<(Demand, Vec<Kind>), ScenarioError> {
        let d = &self.spec.demand;
        let door = &self.spec.door;
        let until = o.demand_until.unwrap_or(f64::INFINITY);
        let mut out: Vec<(VehicleSpec, Kind)> = Vec::new();
        let mut routes: HashMap<(EdgeId, EdgeId, Option<EdgeId>), Arc<[EdgeId]>> = HashMap::new();
        let mut route_via = |from: EdgeId, via: Option<EdgeId>, to: EdgeId| -> Result<Arc<[EdgeId]>, ScenarioError> {
            if let Some(r) = routes.get(&(from, to, via)) {
                return Ok(r.clone());
            }
            let r: Vec<EdgeId> = match via {
                None => self.route(from, to)?,
                Some(v) => {
                    let mut a = self.route(from, v)?;
                    a.extend(self.route(v, to)?.into_iter().skip(1));
                    a
                }
            };
            let r: Arc<[EdgeId]> = r.into();
            routes.insert((from, to, via), r.clone());
            Ok(r)
        };
        let weights: Vec<f64> = self
            .entries
            .iter()
            .map(|e| {
                if e.3 {
                    d.through_veh_h_per_direction.east_west
                } else {
                    d.through_veh_h_per_direction.north_south
                }
            })
            .collect();
        let total_w: f64 = weights.iter().sum();
        // A destination other than where the car came in.
        let pick_exit = |s: &mut Stream, entry: usize| -> EdgeId {
            let (_, road, end, _) = &self.entries[entry];
            let choices: Vec<EdgeId> = self
                .exits
                .iter()
                .filter(|x| !(&x.1 == road && x.2 == *end))
                .map(|x| x.0)
                .collect();
            choices[((s.uniform() * choices.len() as f64) as usize).min(choices.len() - 1)]
        };
        // Visitors: Poisson arrivals shaped by the profile, lognormal dwell.
        let sigma = dwell_sigma(d);
        let profile_area = integral(&d.visitor_profile);
        let peak = d.visitor_profile.iter().map(|p| p.1).fold(0.0, f64::max);
        for (hi, h) in self.spec.hospitals.iter().enumerate() {
            let hosp = &self.hospitals[hi];
            let area = self.lots[hosp.lot].area;
            let aisle = hosp.lot_edges[0];
            let per_s = h.visitor_cars_per_day * o.demand_scale / profile_area.max(1e-9);
            if per_s <= 0.0 || peak <= 0.0 {
                continue;
            }
            let mut s = Stream::new(o.seed, &format!("visitors.{}", h.id));
            let mut t = d.visitor_profile[0].0;
            let end = d.visitor_profile.last().map_or(t, |p| p.0).min(until);
            let mut k = 0;
            loop {
                t += -(1.0 - s.uniform()).ln() / (per_s * peak);
                if t >= end {
                    break;
                }
                if s.uniform() * peak > profile_at(&d.visitor_profile, t) {
                    continue;
                }
                let entry = pick_weighted(&weights, total_w, s.uniform());
                let exit = pick_exit(&mut s, entry);
                let dwell = d.visitor_dwell_median_s * (sigma * normal(&mut s)).exp();
                let park = StopSpec {
                    parking_area: area.idx(),
                    duration: Some(
                        dwell
                            .clamp(
                                self.spec.behaviour.dwell_bounds_s.0,
                                self.spec.behaviour.dwell_bounds_s.1,
                            )
                            .round(),
                    ),
                    until: None,
                };
                // Its own draws, so that the rest of the day is the same
                // whether the door is drop-off only or not.
                let key = ((hi as u64) << 32) | k as u64;
                let drop_off =
                    (o.measures.drop_off && rng::draw(o.seed, key, DOOR_DRAW) < door.drop_off_share).then(|| {
                        let u = rng::draw(o.seed, key, DOOR_DRAW + 1);
                        (door.drop_off_s.0 + u * (door.drop_off_s.1 - door.drop_off_s.0)).round()
                    });
                let stops: Arc<[StopSpec]> = match drop_off {
                    Some(secs) => Arc::new([
                        StopSpec {
                            parking_area: hosp.door_area.idx(),
                            duration: Some(secs),
                            until: None,
                        },
                        park,
                    ]),
                    None => Arc::new([park]),
                };
                out.push((
                    car(
                        format!("{}.visitor.{k}", h.id),
                        t.floor(),
                        route_via(self.entries[entry].0, Some(aisle), exit)?,
                        stops,
                    ),
                    Kind::Visitor(hi as u8),
                ));
                k += 1;
            }
            // Staff: one car per staff space, early, all day.
            let mut s = Stream::new(o.seed, &format!("staff.{}", h.id));
            let out_edge = hosp.lot_edges[1];
            for k in 0..h.staff_spaces {
                let arrive = d.staff_arrive_s.0 + s.uniform() * (d.staff_arrive_s.1 - d.staff_arrive_s.0);
                let leave = d.staff_leave_s.0 + s.uniform() * (d.staff_leave_s.1 - d.staff_leave_s.0);
                let entry = pick_weighted(&weights, total_w, s.uniform());
                let exit = pick_exit(&mut s, entry);
                out.push((
                    car(
                        format!("{}.staff.{k}", h.id),
                        arrive.floor(),
                        route_via(self.entries[entry].0, Some(out_edge), exit)?,
                        Arc::new([StopSpec {
                            parking_area: hosp.staff_area.idx(),
                            duration: None,
                            until: Some(leave.floor()),
                        }]),
                    ),
                    Kind::Staff,
                ));
            }
        }
        // Through traffic at every road end, mostly straight on.
        let through_peak = d.through_profile.iter().map(|p| p.1).fold(0.0, f64::max);
        for (i, (edge, road, end, is_ew)) in self.entries.iter().enumerate() {
            let rate = weights[i] * o.demand_scale / 3600.0;
            if rate <= 0.0 || through_peak <= 0.0 {
                continue;
            }
            let straight = self
                .exits
                .iter()
                .find(|x| &x.1 == road && x.2 == opposite(*end) && (*is_ew == matches!(x.2, 'w' | 'e')));
            let mut s = Stream::new(o.seed, &format!("through.{}", self.net.edge(*edge).id));
            let mut t = d.begin_s;
            let end_t = d.end_s.min(until);
            let mut k = 0;
            loop {
                t += -(1.0 - s.uniform()).ln() / (rate * through_peak);
                if t >= end_t {
                    break;
                }
                if s.uniform() * through_peak > profile_at(&d.through_profile, t) {
                    continue;
                }
                let exit = match straight {
                    Some(x) if s.uniform() < 0.7 => x.0,
                    _ => pick_exit(&mut s, i),
                };
                out.push((
                    car(
                        format!("through.{}.{k}", self.net.edge(*edge).id),
                        t.floor(),
                        route_via(*edge, None, exit)?,
                        Arc::new([]),
                    ),
                    Kind::Through,
                ));
                k += 1;
            }
        }
        out.sort_by(|a, b| a.0.depart.total_cmp(&b.0.depart).then_with(|| a.0.id.cmp(&b.0.id)));
        let kinds = out.iter().map(|(_, k)| *k).collect();
        let vehicles = out.into_iter().map(|(v, _)| v).collect();
        Ok((
            Demand {
                vtypes: vec![VType::default()],
                vehicles,
            },
            kinds,
        ))
    }
}
