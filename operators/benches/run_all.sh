#!/usr/bin/env bash
# quiver's features.compute against DataFusion and Polars, outputs checked
# equal before anything is timed; prints one table.
#
# Usage: bash operators/benches/run_all.sh [SYMBOLS [BARS [REPS]]]   (default 500 100000)
#
# 1. `cargo bench -p quiver-operators --bench features` checks quiver and
#    DataFusion, times both and leaves quiver's outputs and its times in
#    $CARGO_TARGET_DIR/bench-features (or target/bench-features);
# 2. polars_compare.py, in a venv with the pinned requirements.txt (made
#    under that target dir once and reused), regenerates the data, checks
#    Polars against quiver's outputs, times it and prints the table.
# Either side stops at the first mismatch, printing MISMATCH and no times.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/bench-features"
venv="${POLARS_VENV:-$target/polars-venv}"
symbols="${1:-500}"
bars="${2:-100000}"
reps=()
if [[ -n "${3:-}" ]]; then
    reps=(--reps "$3")
fi

# The venv first: a failed install should not cost a bench run.
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi

rm -f "$out/rust.json" "$out/quiver.arrow"
echo "load before the Rust side: $(uptime)"
(cd "$root" && cargo bench -p quiver-operators --bench features -- "$symbols" "$bars" \
    --out "$out" "${reps[@]}")
echo
echo "load before the Polars side: $(uptime)"
"$venv/bin/python" "$here/polars_compare.py" "$out"
