#!/usr/bin/env bash
# Times Polars on the data of `cargo bench -p quiver-operators --bench features`.
#
# Usage: operators/benches/run_polars.sh [SYMBOLS [BARS]]   (default 500 100000)
#
# Polars is installed by this script into a venv of its own, never by the
# build. The venv lives in target/ (or $POLARS_VENV) and is reused.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${POLARS_VENV:-$root/target/polars-venv}"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import polars, numpy" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet polars numpy
fi

exec "$venv/bin/python" "$here/polars_compare.py" "$@"
