#!/usr/bin/env bash
# Cars queuing for hospital parking: the twin against SUMO on identical files.
#
#   bash bench/twin-parking-vs-sumo.sh
#   HOSP_VEH=600 MAIN_CAP=40 bash bench/twin-parking-vs-sumo.sh
#
# The scenario of SUMO's reference (shared/bench/sumo_hospital_parking.sh),
# rebuilt here: the 10×10 grid and background demand of twin-vs-sumo.sh's
# g10_low case, plus HOSP_VEH visitors (uniform over 1 h, random origins,
# seeded) driving to edge E5F5 to park DWELL s in P_main (MAIN_CAP spaces);
# when it is full, rerouters with parkingAreaReroute (on the edges into E5
# and on every area's edge) send them to P_alt1 / P_alt2. Both engines read
# the same duarouter-routed files. Prints visitors parked, rerouted, mean
# visitor travel and waiting time, background travel time, teleports.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/citybrain-twin-parking}
SEED=${SEED:-42}
HOSP_VEH=${HOSP_VEH:-400}
MAIN_CAP=${MAIN_CAP:-60}
ALT1_CAP=${ALT1_CAP:-80}
ALT2_CAP=${ALT2_CAP:-150}
DWELL=${DWELL:-1800}

# shellcheck source=bench/sumo-env.sh
source bench/sumo-env.sh

# The grid and background demand: twin-vs-sumo.sh's g10_low case.
WORK="$WORK/grid" CASES=g10_low bash bench/twin-vs-sumo.sh >/dev/null
cp "$WORK/grid/g10_low.net.xml" "$WORK/grid10.net.xml"
cp "$WORK/grid/g10_low.rou.xml" "$WORK/background.rou.xml"
cd "$WORK"

alts='<parkingAreaReroute id="P_main" visible="true"/><parkingAreaReroute id="P_alt1"/><parkingAreaReroute id="P_alt2"/>'
cat > hospital.add.xml <<EOF
<additional>
    <parkingArea id="P_main" lane="E5F5_0" startPos="20" endPos="160" roadsideCapacity="$MAIN_CAP"/>
    <parkingArea id="P_alt1" lane="F6G6_0" startPos="20" endPos="160" roadsideCapacity="$ALT1_CAP"/>
    <parkingArea id="P_alt2" lane="C3D3_0" startPos="20" endPos="160" roadsideCapacity="$ALT2_CAP"/>
    <rerouter id="rr_hospital" edges="D5E5 E4E5 E6E5 F5E5 E5F5"><interval begin="0" end="100000">$alts</interval></rerouter>
    <rerouter id="rr_F6G6" edges="F6G6"><interval begin="0" end="100000">$alts</interval></rerouter>
    <rerouter id="rr_C3D3" edges="C3D3"><interval begin="0" end="100000">$alts</interval></rerouter>
</additional>
EOF

"$PY" - "$HOSP_VEH" "$SEED" "$DWELL" <<'PYEOF'
import sys, random, xml.etree.ElementTree as ET
n, seed, dwell = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
edges = sorted(e.get("id") for e in ET.parse("grid10.net.xml").getroot().iter("edge")
               if e.get("function") is None and e.get("id") != "E5F5")
with open("hospital.trips.xml", "w") as f:
    f.write("<routes>\n")
    for i in range(n):
        f.write(f'  <trip id="h{i}" depart="{i * 3600.0 / n:.2f}" from="{rng.choice(edges)}" to="E5F5" '
                f'departLane="best" departSpeed="max" arrivalPos="170">\n'
                f'    <stop parkingArea="P_main" duration="{dwell}" parking="true"/>\n  </trip>\n')
    f.write("</routes>\n")
PYEOF
duarouter -n grid10.net.xml --additional-files hospital.add.xml -r hospital.trips.xml -o hospital.rou.xml \
  --seed "$SEED" --no-step-log --no-warnings >/dev/null

sumo -n grid10.net.xml -a hospital.add.xml -r background.rou.xml,hospital.rou.xml --begin 0 --step-length 1 \
  --seed "$SEED" --no-step-log true --time-to-teleport 300 --tripinfo-output sumo.tripinfo.xml \
  --statistic-output sumo.stats.xml >sumo.log 2>&1
"$CB" sim -n grid10.net.xml -a hospital.add.xml -r background.rou.xml,hospital.rou.xml --seed "$SEED" \
  --tripinfo-output cb.tripinfo.xml --summary-json cb.json --quiet >/dev/null 2>cb.log

"$PY" - <<'PYEOF'
import json, xml.etree.ElementTree as ET
def figures(path):
    ti = ET.parse(path).getroot()
    h = [t for t in ti.iter("tripinfo") if t.get("id").startswith("h")]
    b = [t for t in ti.iter("tripinfo") if not t.get("id").startswith("h")]
    m = lambda L, k: sum(float(t.get(k)) for t in L) / max(len(L), 1)
    return {
        "visitors": len(h),
        "parked": sum(1 for t in h if float(t.get("stopTime", "0")) > 0),
        "rerouted": sum(1 for t in h if int(t.get("rerouteNo", "0")) > 0),
        "visitor_tt": m(h, "duration"),
        "visitor_wait": m(h, "waitingTime"),
        "background": len(b),
        "background_tt": m(b, "duration"),
    }
s, c = figures("sumo.tripinfo.xml"), figures("cb.tripinfo.xml")
s["teleports"] = int(ET.parse("sumo.stats.xml").getroot().find("teleports").get("total"))
c["teleports"] = json.load(open("cb.json"))["teleports"]
print(f"{'':16}{'SUMO':>10}{'citybrain':>12}")
for k, fmt in [("visitors", "{:.0f}"), ("parked", "{:.0f}"), ("rerouted", "{:.0f}"), ("visitor_tt", "{:.1f}"),
               ("visitor_wait", "{:.1f}"), ("background", "{:.0f}"), ("background_tt", "{:.1f}"), ("teleports", "{:.0f}")]:
    print(f"{k:16}{fmt.format(s[k]):>10}{fmt.format(c[k]):>12}")
PYEOF
