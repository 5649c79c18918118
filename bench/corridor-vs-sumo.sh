#!/usr/bin/env bash
# The signal corridor under SUMO's own signal controllers, beside the twin's
# policies, on the same network and the same per-seed demand.
#
#   bash bench/corridor-vs-sumo.sh                  # seeds 1..10
#   SEEDS="1 2 3" bash bench/corridor-vs-sumo.sh   # consecutive seeds
#
# For each seed, `citybrain scenario export signal-corridor` writes the
# corridor's network and that seed's demand as SUMO files. SUMO then runs
# them with every signal as a `static` program (the Webster plans, offsets
# 0 — the same plans as the twin's "fixed"), as `actuated` (SUMO's gap-based
# actuation, within each phase's minDur/maxDur) and as `delay_based`
# (SUMO's time-loss-based actuation, Oertel & Wagner 2011); detectors are the
# ones SUMO builds itself for those types. 1 s steps, time-to-teleport 300 s,
# speedDev 0 (the twin's cars keep the limit exactly, so SUMO's do too).
# `citybrain scenario run signal-corridor` runs the twin's policies on the same
# seeds. Prints one table: per controller and engine, mean travel time,
# mean time loss (delay) and arrived vehicles, mean ± sd over seeds.
#
# Knobs: SEEDS, SUMO_VERSION, SUMO_VENV, WORK (/tmp/citybrain-corridor-bench),
# TYPES ("static actuated delay_based"), JOBS (parallel SUMO runs, nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/citybrain-corridor-bench}
SEEDS=${SEEDS:-"1 2 3 4 5 6 7 8 9 10"}
TYPES=${TYPES:-"static actuated delay_based"}
JOBS=${JOBS:-$(nproc)}

# shellcheck source=bench/sumo-env.sh
source bench/sumo-env.sh

runs=()
for s in $SEEDS; do
  dir="$WORK/seed$s"
  mkdir -p "$dir"
  "$CB" scenario export signal-corridor --seed "$s" --out "$dir" >/dev/null
  for ty in $TYPES; do
    "$PY" - "$dir/corridor.net.xml" "$dir/$ty.net.xml" "$ty" <<'EOF'
import sys, xml.etree.ElementTree as ET
src, dst, kind = sys.argv[1:]
tree = ET.parse(src)
for tl in tree.getroot().findall("tlLogic"):
    tl.set("type", kind)
tree.write(dst, encoding="UTF-8", xml_declaration=True)
EOF
    runs+=("$s $ty")
  done
done

run_one() {
  local s=$1 ty=$2 dir="$WORK/seed$1"
  sumo -n "$dir/$ty.net.xml" -r "$dir/corridor.rou.xml" --step-length 1 --seed "$s" \
    --time-to-teleport 300 --no-step-log true --no-warnings true --duration-log.disable true \
    --tripinfo-output "$dir/$ty.tripinfo.xml" >"$dir/$ty.log" 2>&1
}
export -f run_one
export WORK
printf '%s\n' "${runs[@]}" | xargs -P "$JOBS" -L 1 bash -c 'run_one $0 $1'

first=$(echo "$SEEDS" | awk '{print $1}')
"$CB" scenario run signal-corridor --seed "$first" --seeds "$(echo "$SEEDS" | wc -w)" --json >"$WORK/twin.jsonl"

"$PY" - "$WORK" "$SEEDS" "$TYPES" <<'EOF'
import json, statistics, sys, xml.etree.ElementTree as ET
work, seeds, types = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows = {}
for s in seeds:
    for ty in types:
        trips = [t for t in ET.parse(f"{work}/seed{s}/{ty}.tripinfo.xml").getroot().findall("tripinfo")
                 if t.get("id") != "ambulance"]
        n = max(len(trips), 1)
        rows.setdefault(("sumo", ty), []).append((
            sum(float(t.get("duration")) for t in trips) / n,
            sum(float(t.get("timeLoss")) for t in trips) / n,
            len(trips)))
for line in open(f"{work}/twin.jsonl"):
    summary = json.loads(line)
    for o in summary["runs"]:
        rows.setdefault(("citybrain", o["policy"]), []).append(
            (o["mean_travel_time_s"], o["mean_delay_s"], o["arrived"]))
def ms(xs):
    return f"{statistics.mean(xs):8.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:<5.1f}"
print(f"Signal corridor, seeds {' '.join(seeds)}: mean ± sd over seeds")
# Engines differ in absolute level: each controller against its own engine's
# designed plans (SUMO static = the twin's fixed: the same tlLogics).
base = {"sumo": "static", "citybrain": "fixed"}
print(f"{'engine':<10} {'controller':<12} {'travel time s':>16} {'vs own fixed':>13} {'delay s':>16} {'arrived':>16}")
for (engine, ctl), r in sorted(rows.items()):
    tt = statistics.mean(x[0] for x in r)
    ref = rows.get((engine, base[engine]))
    rel = f"{100 * (tt / statistics.mean(x[0] for x in ref) - 1):+.1f}%" if ref else "-"
    print(f"{engine:<10} {ctl:<12} {ms([x[0] for x in r])} {rel:>13} {ms([x[1] for x in r])} {ms([x[2] for x in r])}")
EOF
