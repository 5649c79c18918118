#!/usr/bin/env python3
"""Generates the signal-corridor network: a 7 km arterial with 21 signalled
intersections and their cross streets, in SUMO format.

    python3 scenarios/signal-corridor/generate.py      # needs SUMO's netconvert

Writes plain node/edge files, runs netconvert on them, then sets every
signal's fixed-time plan by Webster's method from the design-hour volumes in
corridor.json (the same file the twin reads for the demand). Output:
corridor.net.xml.gz beside this script. Deterministic: the same inputs give
the same file. Figures and their sources: sources.md.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    spec = json.load(open(os.path.join(HERE, "corridor.json")))
    a = spec["arterial"]
    x = 0.0
    xs = [0.0]
    for gap in a["spacing_m"]:
        x += gap
        xs.append(x)
    n = len(xs) - 2  # first and last points are the terminals
    assert n == len(spec["intersections"]), "one intersection record per signal"
    tmp = tempfile.mkdtemp()
    nodes, edges = [], []
    nodes.append('<node id="W" x="0" y="0" type="priority"/>')
    nodes.append(f'<node id="E" x="{xs[-1]:.1f}" y="0" type="priority"/>')
    for i in range(1, n + 1):
        side = spec["intersections"][i - 1]
        nodes.append(f'<node id="J{i}" x="{xs[i]:.1f}" y="0" type="traffic_light"/>')
        nodes.append(f'<node id="N{i}" x="{xs[i]:.1f}" y="{side["arm_m"]:.1f}" type="priority"/>')
        nodes.append(f'<node id="S{i}" x="{xs[i]:.1f}" y="{-side["arm_m"]:.1f}" type="priority"/>')
    names = ["W"] + [f"J{i}" for i in range(1, n + 1)] + ["E"]
    art = f'numLanes="{a["lanes"]}" speed="{a["speed_mps"]}" priority="3"'
    for k in range(len(names) - 1):
        edges.append(f'<edge id="e{k}" from="{names[k]}" to="{names[k+1]}" {art}/>')
        edges.append(f'<edge id="w{k}" from="{names[k+1]}" to="{names[k]}" {art}/>')
    c = spec["cross_street"]
    cross = f'numLanes="{c["lanes"]}" speed="{c["speed_mps"]}" priority="1"'
    for i in range(1, n + 1):
        edges.append(f'<edge id="n{i}in" from="N{i}" to="J{i}" {cross}/>')
        edges.append(f'<edge id="n{i}out" from="J{i}" to="N{i}" {cross}/>')
        edges.append(f'<edge id="s{i}in" from="S{i}" to="J{i}" {cross}/>')
        edges.append(f'<edge id="s{i}out" from="J{i}" to="S{i}" {cross}/>')
    # Lane use on the arterial: right + through from lane 0, through from
    # lane 1, left only from the innermost lane (a turn bay the length of the
    # block). Eastbound, north is on the left; westbound, south.
    cons = []
    through_lanes = a["lanes"] - 1
    for i in range(1, n + 1):
        for into, onward, right, left in (
            (f"e{i-1}", f"e{i}", f"s{i}out", f"n{i}out"),
            (f"w{i}", f"w{i-1}", f"n{i}out", f"s{i}out"),
        ):
            cons.append(f'<connection from="{into}" to="{right}" fromLane="0" toLane="0"/>')
            for lane in range(through_lanes):
                cons.append(f'<connection from="{into}" to="{onward}" fromLane="{lane}" toLane="{lane}"/>')
            cons.append(f'<connection from="{into}" to="{left}" fromLane="{through_lanes}" toLane="0"/>')
    with open(os.path.join(tmp, "c.con.xml"), "w") as f:
        f.write("<connections>\n  " + "\n  ".join(cons) + "\n</connections>\n")
    with open(os.path.join(tmp, "c.nod.xml"), "w") as f:
        f.write("<nodes>\n  " + "\n  ".join(nodes) + "\n</nodes>\n")
    with open(os.path.join(tmp, "c.edg.xml"), "w") as f:
        f.write("<edges>\n  " + "\n  ".join(edges) + "\n</edges>\n")
    raw = os.path.join(tmp, "raw.net.xml")
    netconvert = shutil.which("netconvert")
    if not netconvert:
        sys.exit("netconvert not found: pip install eclipse-sumo (and put its bin on PATH)")
    subprocess.run(
        [netconvert, "-n", os.path.join(tmp, "c.nod.xml"), "-e", os.path.join(tmp, "c.edg.xml"),
         "-x", os.path.join(tmp, "c.con.xml"),
         "--no-turnarounds", "true", "--tls.default-type", "static",
         f"--tls.yellow.time", str(spec["signals"]["amber_s"]),
         "--offset.disable-normalization", "true", "-o", raw],
        check=True,
    )
    tree = ET.parse(raw)
    webster(tree.getroot(), spec)
    out = os.path.join(HERE, "corridor.net.xml.gz")
    # mtime 0: the same inputs give the same bytes.
    with open(out, "wb") as raw_out:
        with gzip.GzipFile(filename="corridor.net.xml", mode="wb", fileobj=raw_out, mtime=0) as g:
            tree.write(g, encoding="UTF-8", xml_declaration=True)
    shutil.rmtree(tmp)
    print(f"wrote {out}: {n} signals over {xs[-1]/1000:.2f} km")


def approach_volumes(spec):
    """Peak-hour volumes at each junction, from the demand model in
    corridor.json (the twin draws the same OD flows): arterial eastbound and
    westbound into J_i, the left turns off the arterial there (eastbound to
    the north arm, westbound to the south arm), and each cross-street approach."""
    d = spec["demand"]
    n = len(spec["intersections"])
    lo, hi = d["cross_turning_travel_junctions"]
    span = hi - lo + 1
    per_side = d["from_terminal_to_each_cross_street_veh_h"]
    turn = (1 - d["cross_share_straight_across"]) / 2  # each way
    east, west, left_e, left_w = [], [], [], []
    for i in range(1, n + 1):
        e = d["through_eastbound_veh_h"] + 2 * per_side * (n - i + 1)
        w = d["through_westbound_veh_h"] + 2 * per_side * i
        le = lw = per_side
        for k in range(1, n + 1):
            p = 2 * spec["intersections"][k - 1]["cross_veh_h_per_approach"] * turn
            # Trips from junction k travel lo..hi junctions (uniform) before
            # leaving, to either arm (half each).
            if k < i:
                e += p * sum(1 for t in range(lo, hi + 1) if k + t >= i) / span
                if lo <= i - k <= hi:
                    le += p / span / 2
            if k > i:
                w += p * sum(1 for t in range(lo, hi + 1) if k - t <= i) / span
                if lo <= k - i <= hi:
                    lw += p / span / 2
        east.append(e)
        west.append(w)
        left_e.append(le)
        left_w.append(lw)
    cross = [r["cross_veh_h_per_approach"] for r in spec["intersections"]]
    return east, west, left_e, left_w, cross


def webster(root, spec):
    """Webster's optimum cycle C0 = (1.5 L + 5) / (1 - Y) per intersection,
    greens split in proportion to the critical flow ratios y = q / s of the
    design-hour volumes (peak volumes times design_volume_factor: plans are
    drawn up for a typical hour, not the peak). Three phases: arterial
    through (lefts permissive), protected lefts, cross street."""
    sig = spec["signals"]
    s = sig["saturation_flow_veh_h_lane"]
    f = sig["design_volume_factor"]
    through_lanes = spec["arterial"]["lanes"] - 1
    side_lanes = spec["cross_street"]["lanes"]
    east, west, left_e, left_w, cross = approach_volumes(spec)
    for tl in root.findall("tlLogic"):
        i = int(tl.get("id")[1:])
        greens = [p for p in tl.findall("phase") if "y" not in p.get("state") and any(ch in "Gg" for ch in p.get("state"))]
        if len(greens) != 3:
            sys.exit(f"J{i}: expected 3 green phases from netconvert (through, left, cross), got {len(greens)}")
        k = i - 1
        y = [
            f * max(east[k] - left_e[k], west[k] - left_w[k]) / (through_lanes * s),
            f * max(left_e[k], left_w[k]) / s,
            f * cross[k] / (side_lanes * s),
        ]
        big_y = sum(y)
        lost = len(y) * sig["lost_time_per_phase_s"]
        c0 = (1.5 * lost + 5) / (1 - big_y)
        cycle = min(max(round(c0 / 5) * 5, sig["min_cycle_s"]), sig["max_cycle_s"])
        effective = cycle - lost
        # Displayed green = effective green + lost time - amber.
        extra = sig["lost_time_per_phase_s"] - sig["amber_s"]
        g = [round(effective * yi / big_y + extra) for yi in y]
        g[0] = cycle - len(y) * sig["amber_s"] - g[1] - g[2]
        # Minimum greens: pedestrians crossing the road the phase stops (walk
        # interval + crossing at walking speed, less the amber); the cross
        # street's green lets them cross the whole arterial. A longer minimum
        # lengthens the cycle.
        def ped(lanes):
            return round(sig["pedestrian_walk_s"] + lanes * sig["lane_width_m"] / sig["pedestrian_speed_mps"] - sig["amber_s"])
        art_lanes = spec["arterial"]["lanes"]
        minimum = [ped(2 * side_lanes), sig["min_green_s"], ped(2 * art_lanes)]
        g = [max(gi, m) for gi, m in zip(g, minimum)]
        cycle = sum(g) + len(y) * sig["amber_s"]
        for phase, dur, m in zip(greens, g, minimum):
            phase.set("duration", str(dur))
            phase.set("minDur", str(m))
            phase.set("maxDur", str(max(2 * dur, m + 30)))
        tl.set("offset", "0")
        print(f"J{i}: east {east[k]:.0f} west {west[k]:.0f} (left {left_e[k]:.0f}/{left_w[k]:.0f}) "
              f"cross {cross[k]} veh/h -> cycle {cycle} s, greens {g[0]}/{g[1]}/{g[2]} s")


if __name__ == "__main__":
    main()
