//! Reader for SUMO `.net.xml` files (the subset in `shared/design/twin.md`):
//! location, edges and lanes (internal ones too), junctions with their
//! right-of-way requests, connections, and traffic-light programs.
//! References are resolved after the whole file is read, so element order
//! does not matter; a dangling reference is an error naming file and line.

use std::path::Path;

use crate::model::*;
use crate::xml::{Element, Item, XmlError, XmlFile};

/// Reads a `.net.xml` or `.net.xml.gz` file.
pub fn read_net(path: impl AsRef<Path>) -> Result<Network, XmlError> {
    let f = XmlFile::open(path)?;
    read_from(f)
}

/// Reads a network from XML text (tests, generated networks).
pub fn read_net_str(name: &str, text: &str) -> Result<Network, XmlError> {
    read_from(XmlFile::from_str(name, text))
}

struct PendingJunction {
    line: usize,
    id: String,
    kind: String,
    x: f64,
    y: f64,
    inc: Vec<String>,
    int: Vec<String>,
    requests: Vec<Request>,
}

struct PendingEdge {
    line: usize,
    from: Option<String>,
    to: Option<String>,
}

struct PendingConnection {
    line: usize,
    from: String,
    to: String,
    from_lane: u32,
    to_lane: u32,
    via: Option<String>,
    tl: Option<String>,
    link_index: Option<u32>,
    dir: String,
    state: String,
}

fn uint(f: &XmlFile, el: &Element, key: &str) -> Result<u32, XmlError> {
    let v = el.req(f, key)?;
    v.parse().map_err(|_| {
        f.error(
            el.line,
            format!("<{} {key}=\"{v}\">: not a non-negative integer", el.name),
        )
    })
}

fn shape(f: &XmlFile, el: &Element) -> Result<Vec<(f64, f64)>, XmlError> {
    let Some(s) = el.opt("shape") else {
        return Ok(Vec::new());
    };
    s.split_whitespace()
        .map(|p| {
            let mut it = p.split(',');
            let x = it.next().and_then(|v| v.parse::<f64>().ok());
            let y = it.next().and_then(|v| v.parse::<f64>().ok());
            match (x, y) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok((x, y)),
                _ => Err(f.error(el.line, format!("<{}> shape point '{p}' is not x,y", el.name))),
            }
        })
        .collect()
}

fn boundary(f: &XmlFile, el: &Element, key: &str) -> Result<[f64; 4], XmlError> {
    let Some(v) = el.opt(key) else { return Ok([0.0; 4]) };
    let parts: Vec<f64> = v.split(',').filter_map(|p| p.trim().parse().ok()).collect();
    if parts.len() != 4 {
        return Err(f.error(el.line, format!("<location {key}=\"{v}\">: expected four numbers")));
    }
    Ok([parts[0], parts[1], parts[2], parts[3]])
}

fn read_from(mut f: XmlFile) -> Result<Network, XmlError> {
    let mut net = Network::default();
    let mut edges: Vec<PendingEdge> = Vec::new();
    let mut junctions: Vec<PendingJunction> = Vec::new();
    let mut conns: Vec<PendingConnection> = Vec::new();
    let mut current_edge: Option<EdgeId> = None;
    let mut current_tls: Option<TlsId> = None;
    let mut current_junction: Option<usize> = None;
    let mut saw_root = false;
    while let Some(item) = f.next_item()? {
        let el = match item {
            Item::Start(el) => el,
            Item::End { name, .. } => {
                match name.as_str() {
                    "edge" => current_edge = None,
                    "tlLogic" => current_tls = None,
                    "junction" => current_junction = None,
                    _ => {}
                }
                continue;
            }
        };
        if el.depth == 1 {
            if el.name != "net" {
                return Err(f.error(
                    el.line,
                    format!(
                        "expected a <net> root element, found <{}> (is this a .net.xml file?)",
                        el.name
                    ),
                ));
            }
            saw_root = true;
            continue;
        }
        match el.name.as_str() {
            "location" => {
                let off = el.opt("netOffset").unwrap_or("0,0");
                let (x, y) = off
                    .split_once(',')
                    .and_then(|(x, y)| Some((x.trim().parse().ok()?, y.trim().parse().ok()?)))
                    .ok_or_else(|| f.error(el.line, format!("<location netOffset=\"{off}\">: expected x,y")))?;
                net.location = Some(Location {
                    net_offset: (x, y),
                    conv_boundary: boundary(&f, &el, "convBoundary")?,
                    orig_boundary: boundary(&f, &el, "origBoundary")?,
                    proj_parameter: el.opt("projParameter").unwrap_or("!").to_string(),
                });
            }
            "edge" => {
                let id = el.req(&f, "id")?.to_string();
                let function = match el.opt("function").unwrap_or("normal") {
                    "normal" | "connector" => EdgeFunction::Normal,
                    "internal" => EdgeFunction::Internal,
                    "crossing" => EdgeFunction::Crossing,
                    "walkingarea" => EdgeFunction::WalkingArea,
                    other => return Err(f.error(el.line, format!("<edge id=\"{id}\">: unknown function '{other}'"))),
                };
                let eid = EdgeId(net.edges.len() as u32);
                if net.edge_by_name.insert(id.clone(), eid).is_some() {
                    return Err(f.error(el.line, format!("edge '{id}' is defined twice")));
                }
                let priority = el.opt_num(&f, "priority")?.unwrap_or(0.0) as i32;
                net.edges.push(Edge {
                    id,
                    function,
                    from: None,
                    to: None,
                    priority,
                    lanes: Vec::new(),
                });
                edges.push(PendingEdge {
                    line: el.line,
                    from: el.opt("from").map(str::to_string),
                    to: el.opt("to").map(str::to_string),
                });
                current_edge = Some(eid);
            }
            "lane" => {
                let Some(eid) = current_edge else {
                    return Err(f.error(el.line, "<lane> outside an <edge>"));
                };
                let id = el.req(&f, "id")?.to_string();
                let index = uint(&f, &el, "index")?;
                let speed = el.num(&f, "speed")?;
                let length = el.num(&f, "length")?;
                if speed < 0.0 || length < 0.0 {
                    return Err(f.error(el.line, format!("lane '{id}': speed and length must not be negative")));
                }
                let lid = LaneId(net.lanes.len() as u32);
                if net.lane_by_name.insert(id.clone(), lid).is_some() {
                    return Err(f.error(el.line, format!("lane '{id}' is defined twice")));
                }
                let list = |k: &str| {
                    el.opt(k)
                        .map(|v| v.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default()
                };
                net.lanes.push(Lane {
                    id,
                    edge: eid,
                    index,
                    speed,
                    length: length.max(0.1),
                    shape: shape(&f, &el)?,
                    allow: list("allow"),
                    disallow: list("disallow"),
                });
                let lanes = &mut net.edges[eid.idx()].lanes;
                lanes.push(lid);
            }
            "junction" => {
                let id = el.req(&f, "id")?.to_string();
                let list = |k: &str| {
                    el.opt(k)
                        .map(|v| v.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default()
                };
                junctions.push(PendingJunction {
                    line: el.line,
                    kind: el.opt("type").unwrap_or("unknown").to_string(),
                    x: el.num(&f, "x")?,
                    y: el.num(&f, "y")?,
                    inc: list("incLanes"),
                    int: list("intLanes"),
                    requests: Vec::new(),
                    id,
                });
                current_junction = Some(junctions.len() - 1);
            }
            "request" => {
                let Some(j) = current_junction else {
                    return Err(f.error(el.line, "<request> outside a <junction>"));
                };
                let r = Request {
                    index: uint(&f, &el, "index")?,
                    response: el.req(&f, "response")?.to_string(),
                    foes: el.req(&f, "foes")?.to_string(),
                    cont: el.opt("cont") == Some("1"),
                };
                if !r.response.bytes().chain(r.foes.bytes()).all(|b| b == b'0' || b == b'1') {
                    return Err(f.error(el.line, "<request> response and foes must be strings of 0 and 1"));
                }
                junctions[j].requests.push(r);
            }
            "connection" => conns.push(PendingConnection {
                line: el.line,
                from: el.req(&f, "from")?.to_string(),
                to: el.req(&f, "to")?.to_string(),
                from_lane: uint(&f, &el, "fromLane")?,
                to_lane: uint(&f, &el, "toLane")?,
                via: el.opt("via").map(str::to_string),
                tl: el.opt("tl").map(str::to_string),
                link_index: match el.opt("linkIndex") {
                    None => None,
                    Some(_) => Some(uint(&f, &el, "linkIndex")?),
                },
                dir: el.opt("dir").unwrap_or("s").to_string(),
                state: el.opt("state").unwrap_or("M").to_string(),
            }),
            "tlLogic" => {
                let id = el.req(&f, "id")?.to_string();
                let program_id = el.opt("programID").unwrap_or("0").to_string();
                let tid = TlsId(net.tls.len() as u32);
                // Several programs per signal: the first one read is the one that runs.
                if net.tls_by_name.contains_key(&id) {
                    current_tls = None;
                    continue;
                }
                net.tls_by_name.insert(id.clone(), tid);
                net.tls.push(TlLogic {
                    id,
                    program_id,
                    kind: el.opt("type").unwrap_or("static").to_string(),
                    offset: el.opt_num(&f, "offset")?.unwrap_or(0.0),
                    phases: Vec::new(),
                });
                current_tls = Some(tid);
            }
            "phase" => {
                let Some(t) = current_tls else { continue };
                let duration = el.num(&f, "duration")?;
                if duration <= 0.0 {
                    return Err(f.error(el.line, "<phase> duration must be positive"));
                }
                let state = el.req(&f, "state")?.to_string();
                if let Some(bad) = state.chars().find(|c| !"GgyYrRusoO".contains(*c)) {
                    return Err(f.error(
                        el.line,
                        format!("<phase state=\"{state}\">: unknown signal state '{bad}'"),
                    ));
                }
                net.tls[t.idx()].phases.push(Phase {
                    duration,
                    state,
                    min_dur: el.opt_num(&f, "minDur")?,
                    max_dur: el.opt_num(&f, "maxDur")?,
                });
            }
            // Elements we do not use yet are skipped; unknown ones too, as SUMO does.
            _ => {}
        }
    }
    if !saw_root {
        return Err(f.error(0, "empty file: no <net> element"));
    }
    // Resolve junctions.
    for pj in junctions {
        let lanes = |names: &[String]| -> Result<Vec<LaneId>, XmlError> {
            names
                .iter()
                .map(|n| {
                    net.lane_by_name
                        .get(n)
                        .copied()
                        .ok_or_else(|| f.error(pj.line, format!("junction '{}' names unknown lane '{n}'", pj.id)))
                })
                .collect()
        };
        let j = Junction {
            inc_lanes: lanes(&pj.inc)?,
            int_lanes: lanes(&pj.int)?,
            id: pj.id.clone(),
            kind: pj.kind,
            x: pj.x,
            y: pj.y,
            requests: pj.requests,
        };
        let jid = JunctionId(net.junctions.len() as u32);
        if net.junction_by_name.insert(pj.id.clone(), jid).is_some() {
            return Err(f.error(pj.line, format!("junction '{}' is defined twice", pj.id)));
        }
        net.junctions.push(j);
    }
    // Resolve edge endpoints.
    for (i, pe) in edges.into_iter().enumerate() {
        let find = |name: &Option<String>| -> Result<Option<JunctionId>, XmlError> {
            match name {
                None => Ok(None),
                Some(n) => net.junction_by_name.get(n).copied().map(Some).ok_or_else(|| {
                    f.error(
                        pe.line,
                        format!("edge '{}' starts or ends at unknown junction '{n}'", net.edges[i].id),
                    )
                }),
            }
        };
        let (from, to) = (find(&pe.from)?, find(&pe.to)?);
        net.edges[i].from = from;
        net.edges[i].to = to;
        net.edges[i].lanes.sort_by_key(|l| net.lanes[l.idx()].index);
        if net.edges[i].lanes.is_empty() {
            return Err(f.error(pe.line, format!("edge '{}' has no lanes", net.edges[i].id)));
        }
    }
    // Resolve connections.
    net.outgoing = vec![Vec::new(); net.edges.len()];
    for pc in conns {
        let edge = |n: &str| {
            net.edge_by_name
                .get(n)
                .copied()
                .ok_or_else(|| f.error(pc.line, format!("connection names unknown edge '{n}'")))
        };
        let (from, to) = (edge(&pc.from)?, edge(&pc.to)?);
        for (e, l) in [(from, pc.from_lane), (to, pc.to_lane)] {
            if l as usize >= net.edges[e.idx()].lanes.len() {
                return Err(f.error(
                    pc.line,
                    format!(
                        "connection names lane {l} of edge '{}', which has {} lanes",
                        net.edges[e.idx()].id,
                        net.edges[e.idx()].lanes.len()
                    ),
                ));
            }
        }
        let via = match &pc.via {
            None => None,
            Some(v) => Some(
                net.lane_by_name
                    .get(v)
                    .copied()
                    .ok_or_else(|| f.error(pc.line, format!("connection via unknown lane '{v}'")))?,
            ),
        };
        let tls = match &pc.tl {
            None => None,
            Some(t) => Some(
                net.tls_by_name
                    .get(t)
                    .copied()
                    .ok_or_else(|| f.error(pc.line, format!("connection names unknown traffic light '{t}'")))?,
            ),
        };
        if let (Some(t), Some(li)) = (tls, pc.link_index) {
            let logic = &net.tls[t.idx()];
            if let Some(p) = logic.phases.first() {
                if li as usize >= p.state.len() {
                    return Err(f.error(
                        pc.line,
                        format!(
                            "linkIndex {li} is beyond traffic light '{}' ({} links)",
                            logic.id,
                            p.state.len()
                        ),
                    ));
                }
            }
        }
        let idx = net.connections.len();
        net.connections.push(Connection {
            from,
            from_lane: pc.from_lane,
            to,
            to_lane: pc.to_lane,
            via,
            tls,
            link_index: pc.link_index,
            dir: pc.dir,
            state: pc.state,
        });
        net.outgoing[from.idx()].push(idx);
    }
    for t in &net.tls {
        if t.phases.is_empty() {
            return Err(f.error(0, format!("traffic light '{}' has no phases", t.id)));
        }
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CROSSING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<net version="1.20" junctionCornerDetail="5">
    <location netOffset="0.00,0.00" convBoundary="0.00,0.00,200.00,200.00" origBoundary="0.00,0.00,200.00,200.00" projParameter="!"/>
    <edge id=":C_0" function="internal">
        <lane id=":C_0_0" index="0" speed="13.89" length="10.00" shape="95.00,100.00 105.00,100.00"/>
    </edge>
    <edge id="W2C" from="W" to="C" priority="1">
        <lane id="W2C_0" index="0" speed="13.89" length="95.00" shape="0.00,98.40 95.00,98.40"/>
    </edge>
    <edge id="C2E" from="C" to="E" priority="1">
        <lane id="C2E_0" index="0" speed="13.89" length="95.00" shape="105.00,98.40 200.00,98.40"/>
    </edge>
    <tlLogic id="C" type="static" programID="0" offset="0">
        <phase duration="42" state="G"/>
        <phase duration="3"  state="y"/>
        <phase duration="45" state="r"/>
    </tlLogic>
    <junction id="W" type="dead_end" x="0.00" y="100.00" incLanes="" intLanes=""/>
    <junction id="C" type="traffic_light" x="100.00" y="100.00" incLanes="W2C_0" intLanes=":C_0_0">
        <request index="0" response="0" foes="0" cont="0"/>
    </junction>
    <junction id="E" type="dead_end" x="200.00" y="100.00" incLanes="C2E_0" intLanes=""/>
    <connection from="W2C" to="C2E" fromLane="0" toLane="0" via=":C_0_0" tl="C" linkIndex="0" dir="s" state="O"/>
    <connection from=":C_0" to="C2E" fromLane="0" toLane="0" dir="s" state="M"/>
</net>"#;

    #[test]
    fn reads_a_signalled_crossing() {
        let net = read_net_str("crossing.net.xml", CROSSING).unwrap();
        let s = net.stats();
        assert_eq!(
            (
                s.normal_edges,
                s.internal_edges,
                s.lanes,
                s.junctions,
                s.connections,
                s.traffic_lights
            ),
            (2, 1, 3, 3, 2, 1)
        );
        let w = net.edge_id("W2C").unwrap();
        let e = net.edge_id("C2E").unwrap();
        assert_eq!(net.edge_length(w), 95.0);
        let c: Vec<_> = net.connections_between(w, e).collect();
        assert_eq!(c.len(), 1);
        assert_eq!(net.lane(c[0].via.unwrap()).id, ":C_0_0");
        assert_eq!(net.tls[c[0].tls.unwrap().idx()].cycle(), 90.0);
        assert_eq!(net.successors(w).collect::<Vec<_>>(), vec![e]);
        assert_eq!(net.location.as_ref().unwrap().conv_boundary[2], 200.0);
        let j = &net.junctions[net.junction_by_name["C"].idx()];
        assert!(!j.requests[0].yields_to(0));
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let cases = [
            (
                CROSSING.replace(
                    r#"length="95.00" shape="0.00,98.40"#,
                    r#"length="abc" shape="0.00,98.40"#,
                ),
                ":8:",
                "not a number",
            ),
            (
                CROSSING.replace(
                    r#"to="C2E" fromLane="0" toLane="0" via"#,
                    r#"to="NOPE" fromLane="0" toLane="0" via"#,
                ),
                ":23:",
                "unknown edge 'NOPE'",
            ),
            (
                CROSSING.replace(r#"state="y""#, r#"state="x""#),
                ":15:",
                "unknown signal state 'x'",
            ),
            (CROSSING.replace("</net>", ""), ":24:", "unexpected end of file"),
            (
                CROSSING.replace(r#"fromLane="0" toLane="0" via"#, r#"fromLane="3" toLane="0" via"#),
                ":23:",
                "lane 3 of edge 'W2C'",
            ),
            ("<routes/>".to_string(), ":1:", "expected a <net> root element"),
        ];
        for (text, line, want) in cases {
            let err = read_net_str("x.net.xml", &text).unwrap_err().to_string();
            assert!(
                err.starts_with("x.net.xml") && err.contains(line) && err.contains(want),
                "{err}"
            );
        }
    }

    #[test]
    fn request_bits_read_right_to_left() {
        let r = Request {
            index: 0,
            response: "0100".into(),
            foes: "1100".into(),
            cont: false,
        };
        assert!(r.yields_to(2) && !r.yields_to(0) && !r.yields_to(9));
        assert!(r.conflicts_with(3) && r.conflicts_with(2) && !r.conflicts_with(1));
    }
}
