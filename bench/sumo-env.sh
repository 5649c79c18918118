# Sourced by the bench scripts: SUMO from PyPI in a venv (SUMO_VERSION,
# SUMO_VENV), SUMO_HOME and PATH set, GNU time present, the release binary
# built as $CB, $WORK created.
SUMO_VERSION=${SUMO_VERSION:-1.28.0}
SUMO_VENV=${SUMO_VENV:-/tmp/citybrain-sumo-venv}
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install -y time)" >&2; exit 1; }
if [ ! -x "$SUMO_VENV/bin/sumo" ]; then
  python3 -m venv "$SUMO_VENV"
  "$SUMO_VENV/bin/pip" install --quiet --disable-pip-version-check "eclipse-sumo==$SUMO_VERSION"
fi
PY="$SUMO_VENV/bin/python"
SUMO_HOME=$("$PY" -c 'import sumo; print(sumo.SUMO_HOME)')
export SUMO_HOME PATH="$SUMO_VENV/bin:$PATH"
mkdir -p "$WORK"
cargo build --release --quiet --bin citybrain
CB="$PWD/target/release/citybrain"
