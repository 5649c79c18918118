//! Demand from SUMO route files (`.rou.xml`, `.trips.xml`, gzip too):
//! `vType`, `route`, `vehicle` (with an embedded or referenced route),
//! `trip` (routed here by shortest travel time), and `flow`.
//! The result is one list of vehicles sorted by departure time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use citybrain_net::xml::{Element, Item, XmlError, XmlFile};
use citybrain_net::{EdgeId, Network};

use crate::additional::Additional;
use crate::router::Router;

/// Most vehicles one set of demand files may define (flows expanded).
pub const MAX_VEHICLES: usize = 20_000_000;

/// Vehicle type parameters, with SUMO's defaults for passenger cars.
#[derive(Debug, Clone, PartialEq)]
pub struct VType {
    pub id: String,
    pub vclass: String,
    /// m
    pub length: f64,
    /// m, gap kept to the leader when standing
    pub min_gap: f64,
    /// m/s²
    pub accel: f64,
    /// m/s²
    pub decel: f64,
    /// driver imperfection, 0..1
    pub sigma: f64,
    /// reaction time, s
    pub tau: f64,
    /// m/s
    pub max_speed: f64,
    /// multiplier on the lane speed limit
    pub speed_factor: f64,
}

impl Default for VType {
    fn default() -> Self {
        VType {
            id: "DEFAULT_VEHTYPE".into(),
            vclass: "passenger".into(),
            length: 5.0,
            min_gap: 2.5,
            accel: 2.6,
            decel: 4.5,
            sigma: 0.5,
            tau: 1.0,
            max_speed: 55.56,
            speed_factor: 1.0,
        }
    }
}

/// Where on the first edge a vehicle starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DepartLane {
    /// The lane with the most room that leads on along the route.
    Best,
    /// The lane with the most room.
    Free,
    /// Pseudo-random (seeded) among allowed lanes.
    Random,
    First,
    Index(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DepartSpeed {
    Zero,
    Max,
    Desired,
    Value(f64),
}

/// A stop at a parking area.
#[derive(Debug, Clone, PartialEq)]
pub struct StopSpec {
    /// Index into `Additional::parking_areas`.
    pub parking_area: usize,
    /// Parked for this long (s)...
    pub duration: Option<f64>,
    /// ...or until this time (s).
    pub until: Option<f64>,
}

/// One vehicle to insert.
#[derive(Debug, Clone)]
pub struct VehicleSpec {
    pub id: String,
    pub vtype: usize,
    /// s
    pub depart: f64,
    pub route: Arc<[EdgeId]>,
    pub depart_lane: DepartLane,
    pub depart_speed: DepartSpeed,
    /// m from the start of the first edge
    pub depart_pos: f64,
    /// Stops in route order.
    pub stops: Arc<[StopSpec]>,
}

/// All demand: vehicle types and vehicles sorted by departure.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    pub vtypes: Vec<VType>,
    pub vehicles: Vec<VehicleSpec>,
}

/// A trip route to compute once every file is read (all in parallel).
struct PendingRoute {
    waypoints: Vec<EdgeId>,
    vclass: String,
    file: std::path::PathBuf,
    line: usize,
    label: String,
    /// The vehicles (indices in `Demand::vehicles`) that drive it.
    vehicles: std::ops::Range<usize>,
}

struct Ctx<'a> {
    net: &'a Network,
    add: &'a Additional,
    router: Router,
    pending: Vec<PendingRoute>,
    routes: HashMap<String, Arc<[EdgeId]>>,
    vtypes: HashMap<String, usize>,
    demand: Demand,
}

impl Demand {
    /// One vehicle of the demand.
    ///
    /// # Panics
    /// When `id` is not of this demand.
    pub fn vehicle(&self, id: crate::ids::VehicleId) -> &VehicleSpec {
        &self.vehicles[id.idx()]
    }

    /// Reads one or more route files in order (later files may use earlier types and routes).
    pub fn read(net: &Network, files: &[impl AsRef<Path>]) -> Result<Demand, XmlError> {
        Self::read_with(net, &Additional::default(), files)
    }

    /// Reads route files whose stops may name the parking areas of `add`.
    pub fn read_with(net: &Network, add: &Additional, files: &[impl AsRef<Path>]) -> Result<Demand, XmlError> {
        let mut ctx = Ctx::new(net, add);
        for f in files {
            let mut x = XmlFile::open(f)?;
            read_file(&mut ctx, &mut x)?;
        }
        ctx.finish()
    }

    /// Reads demand from XML text (tests).
    pub fn read_str(net: &Network, name: &str, text: &str) -> Result<Demand, XmlError> {
        Self::read_str_with(net, &Additional::default(), name, text)
    }

    pub fn read_str_with(net: &Network, add: &Additional, name: &str, text: &str) -> Result<Demand, XmlError> {
        let mut ctx = Ctx::new(net, add);
        read_file(&mut ctx, &mut XmlFile::from_str(name, text))?;
        ctx.finish()
    }
}

impl<'a> Ctx<'a> {
    fn new(net: &'a Network, add: &'a Additional) -> Self {
        let mut ctx = Ctx {
            net,
            add,
            router: Router::new(net),
            pending: Vec::new(),
            routes: HashMap::new(),
            vtypes: HashMap::new(),
            demand: Demand::default(),
        };
        ctx.demand.vtypes.push(VType::default());
        ctx.vtypes.insert("DEFAULT_VEHTYPE".into(), 0);
        ctx
    }

    fn finish(self) -> Result<Demand, XmlError> {
        use rayon::prelude::*;
        let Ctx {
            net,
            router,
            pending,
            mut demand,
            ..
        } = self;
        // Trips are routed here, in parallel: each route is a pure function of its inputs.
        let routes: Vec<Result<Vec<EdgeId>, XmlError>> = pending
            .par_iter()
            .map(|p| {
                let mut path = vec![p.waypoints[0]];
                for w in p.waypoints.windows(2) {
                    let leg = router.shortest(net, w[0], w[1], &p.vclass).ok_or_else(|| XmlError {
                        file: p.file.clone(),
                        line: p.line,
                        message: format!(
                            "{}: no route from '{}' to '{}'",
                            p.label,
                            net.edge(w[0]).id,
                            net.edge(w[1]).id
                        ),
                    })?;
                    path.extend(leg.into_iter().skip(1));
                }
                Ok(path)
            })
            .collect();
        for (p, r) in pending.iter().zip(routes) {
            let route: Arc<[EdgeId]> = r?.into();
            for v in &mut demand.vehicles[p.vehicles.clone()] {
                v.route = route.clone();
            }
        }
        // Stable: equal departures keep file order, as SUMO does.
        demand.vehicles.sort_by(|a, b| a.depart.total_cmp(&b.depart));
        Ok(demand)
    }
}

/// A vehicle, trip or flow being read, waiting for its children.
struct Open {
    el: Element,
    route: Option<Arc<[EdgeId]>>,
    stops: Vec<(usize, StopSpec)>,
}

fn read_file(ctx: &mut Ctx<'_>, f: &mut XmlFile) -> Result<(), XmlError> {
    let mut open: Option<Open> = None;
    while let Some(item) = f.next_item()? {
        match item {
            Item::Start(el) => {
                if el.depth == 1 {
                    if el.name != "routes" && el.name != "additional" {
                        return Err(f.error(
                            el.line,
                            format!("expected a <routes> root element, found <{}>", el.name),
                        ));
                    }
                    continue;
                }
                match el.name.as_str() {
                    "vType" => vtype(ctx, f, &el)?,
                    "route" => {
                        let edges = route_edges(ctx, f, &el)?;
                        match (&mut open, el.opt("id")) {
                            (Some(o), _) => o.route = Some(edges),
                            (None, Some(id)) => {
                                ctx.routes.insert(id.to_string(), edges);
                            }
                            (None, None) => return Err(f.error(el.line, "a top-level <route> needs an 'id'")),
                        }
                    }
                    "vehicle" | "trip" | "flow" => {
                        open = Some(Open {
                            el,
                            route: None,
                            stops: Vec::new(),
                        })
                    }
                    "stop" => {
                        let Some(o) = open.as_mut() else {
                            return Err(f.error(el.line, "<stop> outside a vehicle, trip or flow"));
                        };
                        let line = el.line;
                        o.stops.push((line, stop(ctx, f, &el)?));
                    }
                    // stop, param, ...: later issues.
                    _ => {}
                }
            }
            Item::End { name, .. } => {
                if matches!(name.as_str(), "vehicle" | "trip" | "flow") {
                    if let Some(o) = open.take() {
                        finish(ctx, f, o)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn vtype(ctx: &mut Ctx<'_>, f: &XmlFile, el: &Element) -> Result<(), XmlError> {
    let id = el.req(f, "id")?.to_string();
    let mut t = VType {
        id: id.clone(),
        ..VType::default()
    };
    if let Some(c) = el.opt("vClass") {
        t.vclass = c.to_string();
    }
    let pos = |k: &str, v: Option<f64>, min: f64| -> Result<Option<f64>, XmlError> {
        match v {
            Some(x) if x < min => Err(f.error(el.line, format!("<vType id=\"{id}\" {k}>: must be at least {min}"))),
            v => Ok(v),
        }
    };
    if let Some(v) = pos("length", el.opt_num(f, "length")?, 0.1)? {
        t.length = v;
    }
    if let Some(v) = pos("minGap", el.opt_num(f, "minGap")?, 0.0)? {
        t.min_gap = v;
    }
    if let Some(v) = pos("accel", el.opt_num(f, "accel")?, 0.01)? {
        t.accel = v;
    }
    if let Some(v) = pos("decel", el.opt_num(f, "decel")?, 0.01)? {
        t.decel = v;
    }
    if let Some(v) = pos("sigma", el.opt_num(f, "sigma")?, 0.0)? {
        t.sigma = v.min(1.0);
    }
    if let Some(v) = pos("tau", el.opt_num(f, "tau")?, 0.01)? {
        t.tau = v;
    }
    if let Some(v) = pos("maxSpeed", el.opt_num(f, "maxSpeed")?, 0.1)? {
        t.max_speed = v;
    }
    if let Some(v) = el.opt("speedFactor") {
        // "normc(mean,dev,...)" or a number: the mean is what a deterministic engine uses.
        let mean = v.strip_prefix("normc(").and_then(|r| r.split(',').next()).unwrap_or(v);
        t.speed_factor = mean.trim().parse::<f64>().ok().filter(|x| *x > 0.0).ok_or_else(|| {
            f.error(
                el.line,
                format!("<vType id=\"{id}\" speedFactor=\"{v}\">: not a positive number"),
            )
        })?;
    }
    let idx = ctx.demand.vtypes.len();
    if id == "DEFAULT_VEHTYPE" {
        ctx.demand.vtypes[0] = t;
    } else {
        ctx.demand.vtypes.push(t);
        ctx.vtypes.insert(id, idx);
    }
    Ok(())
}

fn edge(ctx: &Ctx<'_>, f: &XmlFile, el: &Element, name: &str) -> Result<EdgeId, XmlError> {
    ctx.net.edge_id(name).ok_or_else(|| {
        f.error(
            el.line,
            format!("<{}> names edge '{name}', which is not in the network", el.name),
        )
    })
}

fn route_edges(ctx: &Ctx<'_>, f: &XmlFile, el: &Element) -> Result<Arc<[EdgeId]>, XmlError> {
    let names = el.req(f, "edges")?;
    let edges: Vec<EdgeId> = names
        .split_whitespace()
        .map(|n| edge(ctx, f, el, n))
        .collect::<Result<_, _>>()?;
    if edges.is_empty() {
        return Err(f.error(el.line, "<route> has no edges"));
    }
    for w in edges.windows(2) {
        if ctx.net.connections_between(w[0], w[1]).next().is_none() {
            return Err(f.error(
                el.line,
                format!(
                    "<route>: no connection from edge '{}' to '{}'",
                    ctx.net.edge(w[0]).id,
                    ctx.net.edge(w[1]).id
                ),
            ));
        }
    }
    Ok(edges.into())
}

fn time_attr(f: &XmlFile, el: &Element, key: &str) -> Result<Option<f64>, XmlError> {
    match el.opt(key) {
        None => Ok(None),
        // "triggered" and friends are not supported: say so.
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(Some)
            .ok_or_else(|| {
                f.error(
                    el.line,
                    format!("<{} {key}=\"{v}\">: expected seconds (a non-negative number)", el.name),
                )
            }),
    }
}

fn finish(ctx: &mut Ctx<'_>, f: &XmlFile, o: Open) -> Result<(), XmlError> {
    let el = &o.el.clone();
    let id = el.req(f, "id")?.to_string();
    let vtype = match el.opt("type") {
        None => 0,
        Some(t) => *ctx
            .vtypes
            .get(t)
            .ok_or_else(|| f.error(el.line, format!("<{} id=\"{id}\">: unknown type '{t}'", el.name)))?,
    };
    let mut deferred: Option<PendingRoute> = None;
    let route: Arc<[EdgeId]> = match (o.route, el.opt("route"), el.opt("from"), el.opt("to")) {
        (Some(r), _, _, _) => r,
        (None, Some(r), _, _) => ctx
            .routes
            .get(r)
            .cloned()
            .ok_or_else(|| f.error(el.line, format!("<{} id=\"{id}\">: unknown route '{r}'", el.name)))?,
        (None, None, Some(from), Some(to)) => {
            let (a, b) = (edge(ctx, f, el, from)?, edge(ctx, f, el, to)?);
            let mut waypoints = vec![a];
            if let Some(v) = el.opt("via") {
                for n in v.split_whitespace() {
                    waypoints.push(edge(ctx, f, el, n)?);
                }
            }
            // A trip drives past its stops.
            waypoints.extend(o.stops.iter().map(|(_, s)| ctx.add.parking_areas[s.parking_area].edge));
            waypoints.push(b);
            deferred = Some(PendingRoute {
                waypoints,
                vclass: ctx.demand.vtypes[vtype].vclass.clone(),
                file: f.path().to_path_buf(),
                line: el.line,
                label: format!("<{} id=\"{id}\">", el.name),
                vehicles: 0..0,
            });
            // Routed once every file is read; the first edge stands in until then.
            vec![a].into()
        }
        _ => {
            return Err(f.error(
                el.line,
                format!(
                    "<{} id=\"{id}\"> needs a route (child <route>, route=, or from= and to=)",
                    el.name
                ),
            ))
        }
    };
    let depart_lane = match el.opt("departLane").unwrap_or("first") {
        "best" => DepartLane::Best,
        "free" | "allowed" => DepartLane::Free,
        "random" => DepartLane::Random,
        "first" => DepartLane::First,
        n => DepartLane::Index(n.parse().map_err(|_| {
            f.error(
                el.line,
                format!(
                    "<{} departLane=\"{n}\">: expected best, free, random, first or a lane index",
                    el.name
                ),
            )
        })?),
    };
    let depart_speed = match el.opt("departSpeed").unwrap_or("0") {
        "max" => DepartSpeed::Max,
        "desired" => DepartSpeed::Desired,
        "random" | "avg" | "speedLimit" | "last" => DepartSpeed::Max,
        n => DepartSpeed::Value(n.parse::<f64>().ok().filter(|v| *v >= 0.0).ok_or_else(|| {
            f.error(
                el.line,
                format!("<{} departSpeed=\"{n}\">: expected max, desired or m/s", el.name),
            )
        })?),
    };
    let depart_speed = if depart_speed == DepartSpeed::Value(0.0) {
        DepartSpeed::Zero
    } else {
        depart_speed
    };
    let depart_pos = match el.opt("departPos") {
        None | Some("base") | Some("free") | Some("random") | Some("last") => 0.0,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|p| *p >= 0.0)
            .ok_or_else(|| f.error(el.line, format!("<{} departPos=\"{v}\">: expected metres", el.name)))?,
    };
    // Every stop must lie on the route, in order (a trip's route is built through its stops).
    let mut at = 0usize;
    for (line, s) in o.stops.iter().filter(|_| deferred.is_none()) {
        let e = ctx.add.parking_areas[s.parking_area].edge;
        match route[at..].iter().position(|r| *r == e) {
            Some(p) => at += p,
            None => {
                return Err(f.error(
                    *line,
                    format!(
                    "<stop parkingArea=\"{}\">: its edge '{}' is not on the route of '{id}' (after the previous stop)",
                    ctx.add.parking_areas[s.parking_area].id,
                    ctx.net.edge(e).id
                ),
                ))
            }
        }
    }
    let stops: Arc<[StopSpec]> = o.stops.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>().into();
    let spec = |vid: String, depart: f64| VehicleSpec {
        id: vid,
        vtype,
        depart,
        route: route.clone(),
        depart_lane,
        depart_speed,
        depart_pos,
        stops: stops.clone(),
    };
    let first_vehicle = ctx.demand.vehicles.len();
    if el.name == "flow" {
        let begin = time_attr(f, el, "begin")?.unwrap_or(0.0);
        let end = time_attr(f, el, "end")?;
        let number = el.opt_num(f, "number")?.map(|n| n as usize);
        let period = match (
            el.opt_num(f, "period")?,
            el.opt_num(f, "vehsPerHour")?,
            el.opt_num(f, "probability")?,
        ) {
            (Some(p), _, _) if p > 0.0 => FlowRate::Period(p),
            (_, Some(v), _) if v > 0.0 => FlowRate::Period(3600.0 / v),
            (_, _, Some(p)) if p > 0.0 && p <= 1.0 => FlowRate::Probability(p),
            (None, None, None) if number.is_some() && end.is_some() => {
                let n = number.unwrap_or(1).max(1) as f64;
                FlowRate::Period((end.unwrap_or(begin) - begin) / n)
            }
            _ => {
                return Err(f.error(
                    el.line,
                    format!("<flow id=\"{id}\"> needs period, vehsPerHour, probability (0..1] or number with end"),
                ))
            }
        };
        let end = end.unwrap_or(if number.is_some() { f64::INFINITY } else { 86_400.0 });
        let limit = number.unwrap_or(usize::MAX);
        let mut k = 0usize;
        match period {
            FlowRate::Period(p) => {
                let mut t = begin;
                while t < end && k < limit {
                    push(ctx, f, el, spec(format!("{id}.{k}"), t))?;
                    k += 1;
                    t = begin + k as f64 * p;
                }
            }
            FlowRate::Probability(p) => {
                // One Bernoulli draw per second, from a stream seeded by the flow id.
                let mut t = begin;
                let mut s = crate::rng::hash_str(&id);
                while t < end && k < limit {
                    s = crate::rng::mix(s);
                    if crate::rng::unit(s) < p {
                        push(ctx, f, el, spec(format!("{id}.{k}"), t))?;
                        k += 1;
                    }
                    t += 1.0;
                }
            }
        }
    } else {
        let depart = time_attr(f, el, "depart")?
            .ok_or_else(|| f.error(el.line, format!("<{} id=\"{id}\"> needs a 'depart' time", el.name)))?;
        push(ctx, f, el, spec(id, depart))?;
    }
    if let Some(mut p) = deferred {
        p.vehicles = first_vehicle..ctx.demand.vehicles.len();
        ctx.pending.push(p);
    }
    Ok(())
}

fn stop(ctx: &Ctx<'_>, f: &XmlFile, el: &Element) -> Result<StopSpec, XmlError> {
    let Some(pa) = el.opt("parkingArea") else {
        return Err(f.error(el.line, "only <stop parkingArea=...> stops are supported yet"));
    };
    let parking_area = *ctx.add.parking_by_name.get(pa).ok_or_else(|| {
        f.error(
            el.line,
            format!("<stop> names parking area '{pa}', which no additional file defines"),
        )
    })?;
    let duration = el.opt_num(f, "duration")?;
    let until = el.opt_num(f, "until")?;
    if duration.is_none() && until.is_none() {
        return Err(f.error(el.line, "<stop> needs a duration or an until time"));
    }
    if duration.is_some_and(|d| d < 0.0) {
        return Err(f.error(el.line, "<stop duration> must not be negative"));
    }
    Ok(StopSpec {
        parking_area,
        duration,
        until,
    })
}

enum FlowRate {
    Period(f64),
    Probability(f64),
}

fn push(ctx: &mut Ctx<'_>, f: &XmlFile, el: &Element, v: VehicleSpec) -> Result<(), XmlError> {
    if ctx.demand.vehicles.len() >= MAX_VEHICLES {
        return Err(f.error(el.line, format!("more than {MAX_VEHICLES} vehicles")));
    }
    ctx.demand.vehicles.push(v);
    Ok(())
}
