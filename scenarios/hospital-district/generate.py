#!/usr/bin/env python3
"""Generates the hospital-district network and its parking areas in SUMO
format: the main roads around ZJU First and Second Affiliated Hospitals
(Qingchun Road, Jiefang Road and the north-south roads between them) with
signals at their crossings, each hospital's gate on a side street whose
access road holds the queue (the "queuing lane"), and the shared lots.

    PATH=$SUMO_VENV/bin:$PATH python3 scenarios/hospital-district/generate.py

Nodes are given in WGS84 (lon, lat) and projected by netconvert to UTM, so
the network carries its geo-reference (`<location projParameter=…>`).
Writes district.net.xml.gz and district.add.xml beside this script;
deterministic. Every figure comes from district.json (sources: sources.md).
"""
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
# Metres per degree at this latitude (for the gates' access roads).
M_PER_DEG_LAT = 111_200.0


def main():
    spec = json.load(open(os.path.join(HERE, "district.json")))
    r = spec["roads"]
    ew, ns = r["east_west"], r["north_south"]
    lon0, lon1 = r["lon_span"]
    lat0, lat1 = r["lat_span"]
    nodes, edges = [], []

    def node(nid, lon, lat, kind):
        nodes.append(f'<node id="{nid}" x="{lon:.6f}" y="{lat:.6f}" type="{kind}"/>')

    def road(eid, a, b, lanes, speed, prio):
        attrs = f'numLanes="{lanes}" speed="{speed}" priority="{prio}"'
        edges.append(f'<edge id="{eid}" from="{a}" to="{b}" {attrs}/>')
        edges.append(f'<edge id="-{eid}" from="{b}" to="{a}" {attrs}/>')

    # Crossings of the main roads (signalled) and the roads' ends.
    for e in ew:
        for n in ns:
            node(f"{e['name']}_{n['name']}", n["lon"], e["lat"], "traffic_light")
    for e in ew:
        node(f"{e['name']}_w", lon0, e["lat"], "priority")
        node(f"{e['name']}_e", lon1, e["lat"], "priority")
    for n in ns:
        node(f"{n['name']}_s", n["lon"], lat0, "priority")
        node(f"{n['name']}_n", n["lon"], lat1, "priority")
    # Gates: a priority junction on the main road, the access road to the lot.
    gates = {}
    conns = []
    for h in spec["hospitals"]:
        e = next(x for x in ew if x["name"] == h["gate_on"])
        g = f"{h['id']}_gate"
        node(g, h["gate_lon"], e["lat"], "priority")
        sign = 1 if h["side"] == "north" else -1
        lot_lat = e["lat"] + sign * h["access_m"] / M_PER_DEG_LAT
        # The lot: in by the access road, round its aisle, out by its own road
        # back to the gate (a loop, so no dead end).
        node(f"{h['id']}_lot", h["gate_lon"], lot_lat, "priority")
        node(f"{h['id']}_lot2", h["gate_lon"] + 120 / (M_PER_DEG_LAT * math.cos(math.radians(lot_lat))), lot_lat, "priority")
        gates.setdefault(e["name"], []).append((h["gate_lon"], g))
        one_way = 'numLanes="1" speed="5.56" priority="1"'
        edges.append(f'<edge id="{h["id"]}_in" from="{g}" to="{h["id"]}_lot" {one_way}/>')
        edges.append(f'<edge id="{h["id"]}_aisle" from="{h["id"]}_lot" to="{h["id"]}_lot2" {one_way}/>')
        edges.append(f'<edge id="{h["id"]}_out" from="{h["id"]}_lot2" to="{g}" {one_way}/>')
    # East-west roads, split at every crossing and gate, west to east.
    for e in ew:
        stops = [(lon0, f"{e['name']}_w")] + [(n["lon"], f"{e['name']}_{n['name']}") for n in ns]
        stops += gates.get(e["name"], []) + [(lon1, f"{e['name']}_e")]
        stops.sort()
        for (_, a), (_, b) in zip(stops, stops[1:]):
            road(f"{a}__{b}", a, b, e["lanes"], e["speed_mps"], 3)
        for h in spec["hospitals"]:
            if h["gate_on"] == e["name"]:
                # No way from the lot's exit straight back into its entrance.
                conns.append(f'<delete from="{h["id"]}_out" to="{h["id"]}_in"/>')
    # North-south roads, south to north.
    for n in ns:
        stops = [(lat0, f"{n['name']}_s")] + [(e["lat"], f"{e['name']}_{n['name']}") for e in ew] + [(lat1, f"{n['name']}_n")]
        stops.sort()
        for (_, a), (_, b) in zip(stops, stops[1:]):
            road(f"{a}__{b}", a, b, n["lanes"], n["speed_mps"], 2)

    netconvert = shutil.which("netconvert")
    if not netconvert:
        sys.exit("netconvert not found: pip install eclipse-sumo (and put its bin on PATH)")
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "d.nod.xml"), "w") as f:
        f.write("<nodes>\n  " + "\n  ".join(nodes) + "\n</nodes>\n")
    with open(os.path.join(tmp, "d.edg.xml"), "w") as f:
        f.write("<edges>\n  " + "\n  ".join(edges) + "\n</edges>\n")
    def netconvert_to(out, connections):
        with open(os.path.join(tmp, "d.con.xml"), "w") as f:
            f.write("<connections>\n  " + "\n  ".join(connections) + "\n</connections>\n")
        subprocess.run(
            [netconvert, "-n", os.path.join(tmp, "d.nod.xml"), "-e", os.path.join(tmp, "d.edg.xml"),
             "-x", os.path.join(tmp, "d.con.xml"),
             "--proj.utm", "true", "--no-turnarounds", "true", "--tls.default-type", "static",
             "--offset.disable-normalization", "false", "-o", out],
            check=True, stdout=subprocess.DEVNULL,
        )

    raw = os.path.join(tmp, "raw.net.xml")
    netconvert_to(raw, conns)
    tree = ET.parse(raw)
    lengths = {l.get("id"): float(l.get("length")) for l in tree.getroot().iter("lane")}
    with open(os.path.join(HERE, "district.net.xml.gz"), "wb") as raw_out:
        with gzip.GzipFile(filename="district.net.xml", mode="wb", fileobj=raw_out, mtime=0) as g:
            tree.write(g, encoding="UTF-8", xml_declaration=True)
    shutil.rmtree(tmp)
    write_additional(spec, lengths)
    print(f"wrote district.net.xml.gz ({len(nodes)} nodes) and district.add.xml")


def write_additional(spec, lengths):
    """Hospital lots round the aisle at the end of their access roads (the
    access road is the queuing lane), a drop-off bay at the door (the start
    of the access road), staff spaces beside the lot's way out;
    shared lots beside the north-south road they are on.
    Capacities from district.json (the hours each shared lot offers how many
    spaces are the twin's business: `offered`)."""
    out = ["<additional>"]
    for h in spec["hospitals"]:
        lane = f"{h['id']}_aisle_0"
        # Room after the spaces for leaving cars to pull out past those waiting.
        end = lengths[lane] - 20
        out.append(f'    <parkingArea id="{h["id"]}" name="{h["name"]}" lane="{lane}" startPos="0.00" '
                   f'endPos="{end:.2f}" roadsideCapacity="{h["visitor_spaces"]}">\n'
                   f'        <param key="exitServiceTime" value="{spec["gates"]["pay_at_exit_s"]}"/>\n'
                   f'    </parkingArea>')
        lane = f"{h['id']}_out_0"
        out.append(f'    <parkingArea id="{h["id"]}_staff" name="{h["name"]} (staff)" lane="{lane}" '
                   f'startPos="{lengths[lane] * 0.2:.2f}" endPos="{lengths[lane] * 0.6:.2f}" '
                   f'roadsideCapacity="{h["staff_spaces"]}"/>')
    for s in spec["shared_lots"]:
        lane = f"{shared_lot_edge(spec, s)}_0"
        end = lengths[lane]
        out.append(f'    <parkingArea id="{s["id"]}" name="{s["name"]}" lane="{lane}" startPos="{end * 0.3:.2f}" '
                   f'endPos="{end * 0.7:.2f}" roadsideCapacity="{s["spaces"]}"/>')
    door = spec["door"]
    for h in spec["hospitals"]:
        # The door: a drop-off bay at the start of the access road (used
        # only when the door is drop-off only; a car length and gap a space).
        lane = f"{h['id']}_in_0"
        start = 5.0
        out.append(f'    <parkingArea id="{h["id"]}_door" name="{h["name"]} (door, drop-off)" lane="{lane}" '
                   f'startPos="{start:.2f}" endPos="{start + 7.5 * door["bay_spaces"]:.2f}" '
                   f'roadsideCapacity="{door["bay_spaces"]}"/>')
    out.append("</additional>\n")
    with open(os.path.join(HERE, "district.add.xml"), "w") as f:
        f.write("\n".join(out))


def shared_lot_edge(spec, s):
    """The edge of road `on` between the two named roads, in the direction
    they are named: south to north is the northbound edge, north to south
    the southbound one."""
    lat = {e["name"]: e["lat"] for e in spec["roads"]["east_west"]}
    a, b = s["between"]
    on = s["on"]
    if lat[a] < lat[b]:
        return f"{a}_{on}__{b}_{on}"
    return f"-{b}_{on}__{a}_{on}"


if __name__ == "__main__":
    main()
