#!/usr/bin/env bash
# City scale: a 100×100 signalled grid (netgenerate) with 500,000 random
# trips over a simulated day (randomTrips.py), routed and simulated by
# citybrain alone (SUMO takes hours on this; no side-by-side run).
#
#   bash bench/twin-city.sh                  # 500k trips
#   TRIPS=100000 bash bench/twin-city.sh     # a lighter day
#
# Prints wall time (loading + routing, simulation), peak memory, arrivals,
# teleports, mean travel time. Generation is not timed. Knobs: TRIPS
# (500000), GRID (100), SEED (42), THREADS (2), SUMO_VENV, WORK.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/citybrain-twin-city}
TRIPS=${TRIPS:-500000}
GRID=${GRID:-100}
SEED=${SEED:-42}
THREADS=${THREADS:-2}

# shellcheck source=bench/sumo-env.sh
source bench/sumo-env.sh

net="$WORK/grid$GRID.net.xml.gz"
trips="$WORK/grid$GRID-$TRIPS.trips.xml"
if [ ! -f "$net" ]; then
  echo "generating the ${GRID}×${GRID} grid…" >&2
  netgenerate --grid --grid.number="$GRID" --grid.length=200 --default.lanenumber=2 --default.speed=13.89 \
    --default-junction-type=traffic_light --tls.default-type=static --no-turnarounds=true \
    --seed="$SEED" --output-file="$net" >"$WORK/netgen.log" 2>&1
fi
if [ ! -f "$trips" ]; then
  echo "generating $TRIPS trips…" >&2
  period=$("$PY" -c "print(86400 / $TRIPS)")
  # --no-validate: randomTrips would otherwise route every trip with duarouter
  # (a grid is connected everywhere; citybrain routes the trips itself).
  (cd "$WORK" && "$PY" "$SUMO_HOME/tools/randomTrips.py" -n "$net" -b 0 -e 86400 -p "$period" --seed "$SEED" \
    --min-distance 400 --no-validate --trip-attributes 'departLane="best" departSpeed="max"' \
    -o "$trips" >"$WORK/trips.log" 2>&1)
fi
/usr/bin/time -f "%e %M" -o "$WORK/cb.time" \
  "$CB" sim -n "$net" -r "$trips" --threads "$THREADS" --summary-json "$WORK/cb.json" --quiet \
  >/dev/null 2>"$WORK/cb.log"
read -r wall rss_kb <"$WORK/cb.time"
tail -n 1 "$WORK/cb.log"
"$PY" - "$WORK/cb.json" "$wall" "$rss_kb" "$GRID" "$TRIPS" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
wall, rss = float(sys.argv[2]), int(sys.argv[3]) / 1024
print(f"city {sys.argv[4]}x{sys.argv[4]}, {sys.argv[5]} trips: wall {wall:.0f} s (simulation {s['wall_s']:.0f} s), "
      f"peak memory {rss:.0f} MiB, arrived {s['arrived']}/{s['loaded']}, teleports {s['teleports']}, "
      f"mean travel time {s['mean_travel_time_s']:.0f} s, {s['vehicle_steps']/1e6:.0f} M vehicle-steps")
PYEOF
