#!/usr/bin/env bash
# Regenerates the SUMO networks the reader tests use, with SUMO's own netgenerate
# (eclipse-sumo from PyPI). Usage: bash make.sh [path/to/netgenerate]
set -euo pipefail
NETGENERATE=${1:-netgenerate}
cd "$(dirname "$0")"
# A 3x3 signalled grid built like shared/bench/sumo_bench.sh builds its grids.
"$NETGENERATE" --grid --grid.number 3 --grid.length 200 --default.lanenumber 2 \
  --default.speed 13.89 --tls.guess true --default-junction-type traffic_light \
  --seed 42 -o grid3.net.xml
gzip -kf grid3.net.xml
