//! SUMO additional files: parking areas and the rerouters that send
//! vehicles from a full parking area to another (`parkingAreaReroute`).
//! Read before the route files, since stops name parking areas.

use std::collections::HashMap;
use std::path::Path;

use citybrain_net::xml::{Element, Item, XmlError, XmlFile};
use citybrain_net::{EdgeId, LaneId, Network};

/// A parking area on a lane.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkingArea {
    pub id: String,
    pub lane: LaneId,
    pub edge: EdgeId,
    /// m from the lane start
    pub start_pos: f64,
    pub end_pos: f64,
    pub capacity: u32,
    /// Seconds the entry gate takes per car (ticket, barrier), one car at a
    /// time; 0: no gate. Set with `<param key="entryServiceTime" value="…"/>`.
    pub entry_service: f64,
    /// Seconds the exit gate takes per car (30 s for pay-at-exit, a few for
    /// pay-after-leaving); `<param key="exitServiceTime" value="…"/>`.
    pub exit_service: f64,
}

/// One alternative of a rerouter.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    pub parking_area: usize,
    pub probability: f64,
    /// Whether drivers can see its occupancy before arriving.
    pub visible: bool,
}

/// A rerouter: on its edges, vehicles heading for one of its parking areas
/// that is full choose another from the list.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerouter {
    pub id: String,
    pub edges: Vec<EdgeId>,
    /// (begin, end, alternatives)
    pub intervals: Vec<(f64, f64, Vec<Alternative>)>,
}

/// What a detector measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DetectorKind {
    /// An induction loop (E1) at one position.
    Loop { pos: f64 },
    /// A lane-area detector (E2) over a stretch of lane.
    Area { start: f64, end: f64 },
}

/// A detector with periodic output, as SUMO's `inductionLoop` and `laneAreaDetector`.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    pub id: String,
    pub lane: LaneId,
    pub kind: DetectorKind,
    /// s
    pub period: f64,
    /// Output file, resolved against the additional file's folder.
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Additional {
    pub parking_areas: Vec<ParkingArea>,
    pub rerouters: Vec<Rerouter>,
    pub parking_by_name: HashMap<String, usize>,
    pub detectors: Vec<Detector>,
}

impl Additional {
    pub fn read(net: &Network, files: &[impl AsRef<Path>]) -> Result<Additional, XmlError> {
        let mut a = Additional::default();
        for f in files {
            let mut x = XmlFile::open(f)?;
            read_file(net, &mut a, &mut x)?;
        }
        Ok(a)
    }

    pub fn read_str(net: &Network, name: &str, text: &str) -> Result<Additional, XmlError> {
        let mut a = Additional::default();
        read_file(net, &mut a, &mut XmlFile::from_str(name, text))?;
        Ok(a)
    }

    /// The alternatives a rerouter on `edge` offers at `time` for a vehicle
    /// heading to parking area `target` (empty when none applies).
    pub fn alternatives(&self, edge: EdgeId, time: f64, target: usize) -> Vec<&Alternative> {
        let mut out = Vec::new();
        for r in self.rerouters.iter().filter(|r| r.edges.contains(&edge)) {
            for (b, e, alts) in &r.intervals {
                if time >= *b && time < *e && alts.iter().any(|a| a.parking_area == target) {
                    out.extend(alts.iter());
                }
            }
        }
        out
    }
}

fn read_file(net: &Network, a: &mut Additional, f: &mut XmlFile) -> Result<(), XmlError> {
    let mut open_parking: Option<usize> = None;
    let mut open_rerouter: Option<usize> = None;
    let mut spaces = 0u32;
    while let Some(item) = f.next_item()? {
        match item {
            Item::Start(el) => {
                if el.depth == 1 {
                    if el.name != "additional" && el.name != "add" {
                        return Err(f.error(
                            el.line,
                            format!("expected an <additional> root element, found <{}>", el.name),
                        ));
                    }
                    continue;
                }
                match el.name.as_str() {
                    "parkingArea" => {
                        open_parking = Some(parking_area(net, a, f, &el)?);
                        spaces = 0;
                    }
                    "space" if open_parking.is_some() => spaces += 1,
                    "param" if open_parking.is_some() => {
                        let key = el.req(f, "key")?;
                        let Some(field) = (match key {
                            "entryServiceTime" => Some(true),
                            "exitServiceTime" => Some(false),
                            _ => None, // other params are SUMO's business
                        }) else {
                            continue;
                        };
                        let value = el.req(f, "value")?;
                        let secs: f64 = value
                            .parse()
                            .ok()
                            .filter(|v: &f64| (0.0..=3600.0).contains(v))
                            .ok_or_else(|| {
                                f.error(
                                    el.line,
                                    format!("<param key=\"{key}\">: '{value}' is not a number of seconds in 0..3600"),
                                )
                            })?;
                        if let Some(p) = open_parking {
                            let pa = &mut a.parking_areas[p];
                            if field {
                                pa.entry_service = secs;
                            } else {
                                pa.exit_service = secs;
                            }
                        }
                    }
                    "rerouter" => {
                        let id = el.req(f, "id")?.to_string();
                        let edges = el
                            .req(f, "edges")?
                            .split_whitespace()
                            .map(|e| {
                                net.edge_id(e).ok_or_else(|| {
                                    f.error(el.line, format!("rerouter '{id}' names unknown edge '{e}'"))
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        a.rerouters.push(Rerouter {
                            id,
                            edges,
                            intervals: Vec::new(),
                        });
                        open_rerouter = Some(a.rerouters.len() - 1);
                    }
                    "interval" => {
                        let Some(r) = open_rerouter else { continue };
                        let begin = el.opt_num(f, "begin")?.unwrap_or(0.0);
                        let end = el.opt_num(f, "end")?.unwrap_or(f64::INFINITY);
                        a.rerouters[r].intervals.push((begin, end, Vec::new()));
                    }
                    "parkingAreaReroute" => {
                        let Some(r) = open_rerouter else {
                            return Err(f.error(el.line, "<parkingAreaReroute> outside a <rerouter>"));
                        };
                        let id = el.req(f, "id")?;
                        let pa = *a.parking_by_name.get(id).ok_or_else(|| {
                            f.error(
                                el.line,
                                format!(
                                    "<parkingAreaReroute> names parking area '{id}', which is not defined before it"
                                ),
                            )
                        })?;
                        let alt = Alternative {
                            parking_area: pa,
                            probability: el.opt_num(f, "probability")?.unwrap_or(1.0),
                            visible: el.opt("visible") == Some("true") || el.opt("visible") == Some("1"),
                        };
                        let rr = &mut a.rerouters[r];
                        if rr.intervals.is_empty() {
                            rr.intervals.push((0.0, f64::INFINITY, Vec::new()));
                        }
                        if let Some(last) = rr.intervals.last_mut() {
                            last.2.push(alt);
                        }
                    }
                    "inductionLoop" | "e1Detector" | "laneAreaDetector" | "e2Detector" => detector(net, a, f, &el)?,
                    // Vaporizers, calibrators, ...: not read yet; skipped as SUMO skips unknown ones.
                    _ => {}
                }
            }
            Item::End { name, .. } => match name.as_str() {
                "parkingArea" => {
                    if let Some(p) = open_parking.take() {
                        a.parking_areas[p].capacity += spaces;
                        if a.parking_areas[p].capacity == 0 {
                            return Err(f.error(0, format!("parking area '{}' has no capacity", a.parking_areas[p].id)));
                        }
                    }
                }
                "rerouter" => open_rerouter = None,
                _ => {}
            },
        }
    }
    Ok(())
}

fn detector(net: &Network, a: &mut Additional, f: &XmlFile, el: &Element) -> Result<(), XmlError> {
    let id = el.req(f, "id")?.to_string();
    let lane_name = el.req(f, "lane")?;
    let lane = *net
        .lane_by_name
        .get(lane_name)
        .ok_or_else(|| f.error(el.line, format!("detector '{id}' is on unknown lane '{lane_name}'")))?;
    let len = net.lane(lane).length;
    let period = el.opt_num(f, "period")?.or(el.opt_num(f, "freq")?).unwrap_or(60.0);
    if period <= 0.0 {
        return Err(f.error(el.line, format!("detector '{id}': period must be positive")));
    }
    let pos = norm(el.opt_num(f, "pos")?.unwrap_or(0.0), len);
    let kind = if el.name == "inductionLoop" || el.name == "e1Detector" {
        DetectorKind::Loop { pos }
    } else {
        let end = match (el.opt_num(f, "endPos")?, el.opt_num(f, "length")?) {
            (Some(e), _) => norm(e, len),
            (None, Some(l)) => (pos + l).min(len),
            (None, None) => len,
        };
        if end <= pos {
            return Err(f.error(el.line, format!("detector '{id}': its end must lie after its start")));
        }
        DetectorKind::Area { start: pos, end }
    };
    let file = el.opt("file").map(|p| {
        let p = std::path::PathBuf::from(p);
        match (p.is_absolute(), f.path().parent()) {
            (false, Some(dir)) => dir.join(p),
            _ => p,
        }
    });
    a.detectors.push(Detector {
        id,
        lane,
        kind,
        period,
        file,
    });
    Ok(())
}

fn parking_area(net: &Network, a: &mut Additional, f: &XmlFile, el: &Element) -> Result<usize, XmlError> {
    let id = el.req(f, "id")?.to_string();
    let lane_name = el.req(f, "lane")?;
    let lane = *net
        .lane_by_name
        .get(lane_name)
        .ok_or_else(|| f.error(el.line, format!("parking area '{id}' is on unknown lane '{lane_name}'")))?;
    let len = net.lane(lane).length;
    let start_pos = el.opt_num(f, "startPos")?.unwrap_or(0.0);
    let end_pos = el.opt_num(f, "endPos")?.unwrap_or(len);
    let (start_pos, end_pos) = (norm(start_pos, len), norm(end_pos, len));
    if end_pos <= start_pos {
        return Err(f.error(el.line, format!("parking area '{id}': endPos must lie after startPos")));
    }
    let capacity = el.opt_num(f, "roadsideCapacity")?.unwrap_or(0.0);
    if capacity < 0.0 {
        return Err(f.error(
            el.line,
            format!("parking area '{id}': roadsideCapacity must not be negative"),
        ));
    }
    if a.parking_by_name.contains_key(&id) {
        return Err(f.error(el.line, format!("parking area '{id}' is defined twice")));
    }
    let edge = net.lane(lane).edge;
    a.parking_areas.push(ParkingArea {
        id: id.clone(),
        lane,
        edge,
        start_pos,
        end_pos,
        capacity: capacity as u32,
        entry_service: 0.0,
        exit_service: 0.0,
    });
    a.parking_by_name.insert(id, a.parking_areas.len() - 1);
    Ok(a.parking_areas.len() - 1)
}

/// SUMO positions may be negative (counted from the lane end).
fn norm(p: f64, len: f64) -> f64 {
    if p < 0.0 {
        (len + p).max(0.0)
    } else {
        p.min(len)
    }
}
