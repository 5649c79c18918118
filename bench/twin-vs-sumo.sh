#!/usr/bin/env bash
# The twin against SUMO, side by side on identical files.
#
#   bash bench/twin-vs-sumo.sh                    # every case
#   CASES="g10_low g10_high" bash bench/twin-vs-sumo.sh
#
# Installs SUMO (eclipse-sumo from PyPI) in a venv, generates each case with
# SUMO's own tools (netgenerate; randomTrips.py routed by duarouter, so both
# engines read the same pre-routed .rou.xml), runs `sumo` and `citybrain sim`
# on the same files (1 s steps, seed 42, until every vehicle has arrived,
# time-to-teleport 300 s on both) and prints, per case and engine: wall time,
# vehicle-steps/s, peak memory, arrived, mean travel time and waiting time,
# then the ratios citybrain/SUMO. Generation is not timed.
#
# Knobs: SUMO_VERSION (1.28.0), SUMO_VENV (/tmp/citybrain-sumo-venv),
# WORK (/tmp/citybrain-twin-bench), SEED (42), THREADS (1), MODE (micro|meso),
# CHECK=1: exit non-zero unless, per case, both engines finish the same
# number of vehicles and citybrain's mean travel time is within 10 % of SUMO's
# (what CI runs, on g10_low and random).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/citybrain-twin-bench}
SEED=${SEED:-42}
THREADS=${THREADS:-1}
MODE=${MODE:-micro}
CASES=${CASES:-"g10_low g10_high g30_low g30_high spider random"}
CHECK=${CHECK:-0}
failed=0

# shellcheck source=bench/sumo-env.sh
source bench/sumo-env.sh

case "$MODE" in
  micro) SUMO_MODE=() ;;
  meso) SUMO_MODE=(--mesosim true --meso-junction-control true) ;;
  *) echo "MODE is micro or meso" >&2; exit 1 ;;
esac

# case -> "netgenerate arguments | trip period (s)"
params() {
  case "$1" in
    g10_low)  echo "--grid --grid.number=10 --grid.length=200|1.0" ;;
    g10_high) echo "--grid --grid.number=10 --grid.length=200|0.4" ;;
    g30_low)  echo "--grid --grid.number=30 --grid.length=200|0.5" ;;
    g30_high) echo "--grid --grid.number=30 --grid.length=200|0.25" ;;
    spider)   echo "--spider --spider.arm-number=8 --spider.circle-number=8 --spider.space-radius=150|0.5" ;;
    random)   echo "--rand --rand.iterations=400 --rand.max-distance=300 --rand.min-distance=120|0.5" ;;
    *) echo "unknown case $1" >&2; exit 1 ;;
  esac
}

generate() {
  local c=$1 net="$WORK/$1.net.xml" rou="$WORK/$1.rou.xml" p
  IFS='|' read -r netargs period <<<"$(params "$c")"
  if [ ! -f "$net" ]; then
    # shellcheck disable=SC2086
    netgenerate $netargs --default.lanenumber=2 --default.speed=13.89 \
      --default-junction-type=traffic_light --tls.default-type=static --no-turnarounds=true \
      --seed="$SEED" --output-file="$net" >"$WORK/$c.netgen.log" 2>&1
  fi
  if [ ! -f "$rou" ]; then
    "$PY" "$SUMO_HOME/tools/randomTrips.py" -n "$net" -b 0 -e 3600 -p "$period" --seed "$SEED" \
      --min-distance 400 --remove-loops --trip-attributes 'departLane="best" departSpeed="max"' \
      -o "$WORK/$c.trips.xml" -r "$rou" >"$WORK/$c.gen.log" 2>&1
  fi
}

# Parses GNU time output: wall seconds and peak RSS in MiB.
timing() {
  awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; wall=s}
              /Maximum resident set size/ {rss=$2/1024}
              END {printf "%.2f %.0f", wall, rss}' "$1"
}

# Mean travel and waiting time and count from a SUMO tripinfo file.
sumo_trips() {
  "$PY" - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
n = d = w = 0.0
for _, el in ET.iterparse(sys.argv[1], events=("end",)):
    if el.tag == "tripinfo":
        n += 1; d += float(el.get("duration")); w += float(el.get("waitingTime")); el.clear()
print(int(n), f"{d/max(n,1):.1f}", f"{w/max(n,1):.1f}")
EOF
}

printf "%-9s %-9s %9s %14s %9s %8s %9s %9s\n" case engine wall_s veh_steps/s rss_MiB arrived mean_tt mean_wait
for c in $CASES; do
  generate "$c"
  net="$WORK/$c.net.xml"; rou="$WORK/$c.rou.xml"
  /usr/bin/time -v -o "$WORK/$c.sumo.time" timeout 1800 "$SUMO_HOME/bin/sumo" -n "$net" -r "$rou" \
    --begin 0 --step-length 1 --seed "$SEED" "${SUMO_MODE[@]}" --no-step-log true --duration-log.statistics true \
    --tripinfo-output "$WORK/$c.sumo.tripinfo.xml" >"$WORK/$c.sumo.log" 2>&1
  read -r s_wall s_rss <<<"$(timing "$WORK/$c.sumo.time")"
  read -r s_arr s_tt s_wait <<<"$(sumo_trips "$WORK/$c.sumo.tripinfo.xml")"
  # SUMO's statistics: UPS (vehicle updates per loop second) times the loop duration.
  # (The first "Duration:" is the loop's, in seconds; a later one is the mean trip duration.)
  s_steps=$(awk '/^ *Duration:/ && !d {d=$2+0} /^ *UPS:/ && !u {u=$2+0} END {if (d>0 && u>0) printf "%.0f", u*d}' "$WORK/$c.sumo.log")
  /usr/bin/time -v -o "$WORK/$c.cb.time" "$CB" sim -n "$net" -r "$rou" --seed "$SEED" --threads "$THREADS" \
    --quiet --summary-json "$WORK/$c.cb.json" >/dev/null 2>"$WORK/$c.cb.log"
  read -r c_wall c_rss <<<"$(timing "$WORK/$c.cb.time")"
  read -r c_arr c_tt c_wait c_steps <<<"$("$PY" -c "import json;d=json.load(open('$WORK/$c.cb.json'));print(d['arrived'],round(d['mean_travel_time_s'],1),round(d['mean_waiting_time_s'],1),d['vehicle_steps'])")"
  [ -n "$s_steps" ] || { echo "could not read SUMO's statistics from $WORK/$c.sumo.log" >&2; exit 1; }
  s_rate=$(awk -v s="$s_steps" -v w="$s_wall" 'BEGIN{printf "%.0f", s/(w>0?w:1e-9)}')
  c_rate=$(awk -v s="$c_steps" -v w="$c_wall" 'BEGIN{printf "%.0f", s/(w>0?w:1e-9)}')
  printf "%-9s %-9s %9s %14s %9s %8s %9s %9s\n" "$c" "sumo-$MODE" "$s_wall" "$s_rate" "$s_rss" "$s_arr" "$s_tt" "$s_wait"
  printf "%-9s %-9s %9s %14s %9s %8s %9s %9s\n" "$c" citybrain "$c_wall" "$c_rate" "$c_rss" "$c_arr" "$c_tt" "$c_wait"
  awk -v sr="$s_rate" -v cr="$c_rate" -v sm="$s_rss" -v cm="$c_rss" -v st="$s_tt" -v ct="$c_tt" -v sa="$s_arr" -v ca="$c_arr" -v c="$c" \
    'BEGIN{printf "%-9s %-9s speed x%.1f  memory x%.2f  mean_tt %+.1f%%  arrived %d vs %d\n", c, "ratio", cr/sr, cm/sm, (ct-st)/st*100, ca, sa}'
  if [ "$CHECK" = 1 ]; then
    if ! awk -v st="$s_tt" -v ct="$c_tt" -v sa="$s_arr" -v ca="$c_arr" 'BEGIN{d=(ct-st)/st; if (d<0) d=-d; exit !(sa==ca && d<=0.10)}'; then
      echo "CHECK FAILED for $c: arrived $c_arr vs $s_arr, mean travel time $c_tt vs $s_tt" >&2
      failed=1
    fi
  fi
done
echo "# $(uname -srm), $(nproc) CPUs; SUMO $SUMO_VERSION ($MODE); citybrain threads=$THREADS; one run each — rerun for medians"
exit "$failed"
