#!/usr/bin/env python3
"""Checks Polars against quiver's `features.compute` outputs, then times it.

Usage: python polars_compare.py OUT_DIR
Run it through run_all.sh, which first runs the Rust bench
(`cargo bench -p quiver-operators --bench features -- SYMBOLS BARS --out OUT_DIR`)
and installs the pinned Polars (requirements.txt) in a venv of its own.

The Rust bench leaves in OUT_DIR:
  quiver.arrow  every feature quiver computed (Arrow IPC, input row order);
  rust.json     the sizes, the checksum of the generated data, the features
                with their warm-up rows, the thread count, the number of timed
                runs, and the times of quiver and DataFusion.

This script regenerates the same data (SplitMix64, reproduced exactly: the
checksum must agree bit for bit), computes every feature with Polars, checks
the output of that untimed warm-up run against quiver's column (same null
rows; values within the Rust bench's relative tolerance, 1e-9, elsewhere)
and only then times it: the best of the same number of timed runs as the
Rust side, the timer around the query over the in-memory frame alone. It
ends with one table of all three engines.

Polars is written as its documentation recommends: the lazy API, expressions
per symbol with `.over("symbol")`, `rolling_mean`/`rolling_std` (ddof=0, the
population std quiver and TA-Lib default to; min_samples defaults to the
window, so the warm-up rows are null as quiver's are) and `ewm_mean` with
adjust=False (the recursive form). Polars' ewm_mean seeds its recursion with
the first value, where quiver (as TA-Lib) seeds EMA with the mean of the first
n values at row n-1 and RSI with the mean gain and loss of the first n changes
at row n; so the peer is aligned to quiver's documented convention by feeding
ewm_mean those seeds at those rows and nulls before them. RSI diffs once,
clips the change into gain and loss, and Wilder-smooths each with
ewm_mean(alpha=1/n, adjust=False); 0/0 (no movement) is 0, as TA-Lib.
"""

import functools
import json
import operator
import os
import sys
import time

OUT_DIR = sys.argv[1] if len(sys.argv) > 1 else None
if OUT_DIR is None or not os.path.exists(os.path.join(OUT_DIR, "rust.json")):
    sys.exit(
        "usage: polars_compare.py OUT_DIR, where the Rust bench left rust.json and quiver.arrow; "
        "run operators/benches/run_all.sh SYMBOLS BARS"
    )
with open(os.path.join(OUT_DIR, "rust.json")) as f:
    RUST = json.load(f)
# Polars sizes its thread pool when imported.
os.environ["POLARS_MAX_THREADS"] = str(RUST["threads"])

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

# The tolerance the Rust bench holds DataFusion to.
RELATIVE_TOLERANCE = RUST["relative_tolerance"]
SEED = 42
GAMMA = np.uint64(0x9E3779B97F4A7C15)


def mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed, i):
    """The i-th uniforms in [0, 1) of the stream `seed` (i: uint64 array)."""
    z = mix(np.uint64(seed) + (i + np.uint64(1)) * GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def generate(symbols, bars):
    """The Rust bench's data: symbol s starts at 10 + 190u and moves by a
    factor 1 + 0.01(2u - 1) each bar, in one sequential product."""
    with np.errstate(over="ignore"):
        start = 10.0 + 190.0 * uniform(SEED ^ 0x5555555555555555, np.arange(symbols, dtype=np.uint64))
        close = np.empty(symbols * bars)
        # A symbol at a time keeps the temporaries small.
        for s in range(symbols):
            u = uniform(SEED, np.arange(s * bars, (s + 1) * bars, dtype=np.uint64))
            factors = 1.0 + 0.01 * (2.0 * u - 1.0)
            factors[0] = start[s] * factors[0]
            close[s * bars : (s + 1) * bars] = np.multiply.accumulate(factors)
    # Summed in order, as the Rust bench does, so the sums agree exactly.
    checksum = functools.reduce(operator.add, close[bars - 1 :: bars].tolist(), 0.0)
    names = pl.Series("symbol", [f"S{s:04d}" for s in range(symbols)])
    frame = pl.DataFrame(
        {
            "symbol": names.gather(np.repeat(np.arange(symbols, dtype=np.uint32), bars)),
            "ts": np.datetime64("2024-01-01T00:00:00", "ms")
            + np.tile(np.arange(bars, dtype=np.int64) * 60_000, symbols).astype("timedelta64[ms]"),
            "close": close,
        }
    ).set_sorted("symbol")
    return frame, checksum


def seeded(values, row, seed):
    """`values` from row `row` on, with `seed` at that row and nulls before:
    how ewm_mean(adjust=False) starts its recursion where TA-Lib does."""
    i = pl.int_range(pl.len())
    return pl.when(i == row).then(seed).when(i > row).then(values)


def expression(kind, n):
    """One feature per symbol, in quiver's conventions (see the docstring)."""
    close = pl.col("close")
    if kind == "rolling_mean":
        return close.rolling_mean(n).over("symbol")
    if kind == "rolling_std":
        return close.rolling_std(n, ddof=0).over("symbol")
    if kind == "ema":
        ema = seeded(close, n - 1, close.head(n).mean()).ewm_mean(alpha=2 / (n + 1), adjust=False)
        return ema.over("symbol")
    if kind == "rsi":
        change = close.diff()

        def wilder(values):
            # The first average is over changes 1..=n (row 0 has none).
            smoothed = seeded(values, n, values.slice(1, n).mean()).ewm_mean(alpha=1 / n, adjust=False)
            return smoothed.over("symbol")

        gain = wilder(change.clip(lower_bound=0))
        loss = wilder(change.clip(upper_bound=0).neg())
        # Combined outside the window expressions: inside one `.over`,
        # Polars evaluates a subexpression once per use (gain twice, and
        # fill_nan repeats its whole input), 2.7x slower at 5M rows here;
        # out here, equal window expressions are evaluated once.
        return (100 * gain / (gain + loss)).fill_nan(0.0)
    raise SystemExit(f"polars_compare.py: no Polars expression for feature kind '{kind}'")


def query(frame, features):
    """The timed work: every feature per symbol, appended to the frame."""
    exprs = [expression(f["kind"], f["window"]).alias(f["column"]) for f in features]
    return frame.lazy().with_columns(exprs).collect()


# Rows from each symbol's first valid row on where Polars must agree with
# quiver within the tolerance or the run aborts; past them a row beyond it
# is arbitrated by a direct computation, as the Rust bench does for
# DataFusion (see STRICT_ROWS and check_close in features.rs).
STRICT_ROWS = 20


def direct(kind, close, rows, n):
    """rolling_mean / rolling_std (ddof 0) of the windows ending at `rows`,
    computed directly (two passes, the mean's rounding corrected)."""
    out = np.empty(len(rows))
    for first in range(0, len(rows), 1 << 16):
        chunk = rows[first : first + (1 << 16)]
        windows = close[chunk[:, None] + np.arange(1 - n, 1)]
        mean = windows.mean(axis=1)
        if kind == "rolling_mean":
            out[first : first + len(chunk)] = mean
            continue
        deviation = windows - mean[:, None]
        low = deviation.mean(axis=1)
        out[first : first + len(chunk)] = np.sqrt(((deviation - low[:, None]) ** 2).mean(axis=1))
    return out


def relative(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)


def check(out, quiver_path, feature, close):
    """Aborts unless Polars' column equals quiver's: nulls in the same rows
    (the warm-up rows of each symbol, which quiver's output is checked to
    have in the Rust bench) and values within RELATIVE_TOLERANCE, past
    STRICT_ROWS arbitrated by a direct computation. Returns the worst
    difference and a note on rows where Polars is the one off, or None."""
    name, label, bars = feature["column"], feature["label"], RUST["bars"]
    ours = pl.scan_ipc(quiver_path).select(name).collect()[name]
    theirs = out[name]
    if len(ours) != len(theirs):
        sys.exit(f"MISMATCH {label}: quiver has {len(ours)} rows, Polars {len(theirs)}")
    q_null = ours.is_null().to_numpy()
    p_null = theirs.is_null().to_numpy()
    if theirs.is_nan().any():
        sys.exit(f"MISMATCH {label}: Polars produced NaN where quiver produces null or a value")
    if (q_null != p_null).any():
        row = int(np.argmax(q_null != p_null))
        sys.exit(
            f"MISMATCH {label}: row {row} (symbol {row // bars}, bar {row % bars}) "
            f"is {'null' if q_null[row] else 'a value'} in quiver but "
            f"{'null' if p_null[row] else 'a value'} in Polars"
        )
    rows = np.flatnonzero(~q_null)
    q = ours.to_numpy()[rows]
    p = theirs.to_numpy()[rows]
    rel = relative(q, p)
    over = ~(rel <= RELATIVE_TOLERANCE)
    worst = float(rel[~over].max(initial=0.0))
    if not over.any():
        return worst, None
    bad = np.flatnonzero(over)
    strict = rows[bad] % bars < feature["warm_up"] + STRICT_ROWS
    exact = None
    if feature["kind"] in ("rolling_mean", "rolling_std") and not strict.any():
        exact = direct(feature["kind"], close, rows[bad], feature["window"])
        quiver_right = relative(q[bad], exact) <= RELATIVE_TOLERANCE
    if exact is None or not quiver_right.all():
        i = bad[0] if exact is None else bad[np.argmin(quiver_right)]
        row = int(rows[i])
        sys.exit(
            f"MISMATCH {label}: at symbol {row // bars}, bar {row % bars}, quiver {float(q[i])!r} and "
            f"Polars {float(p[i])!r} differ by {rel[i]:.3g} relative (tolerance {RELATIVE_TOLERANCE:g})"
        )
    error = relative(p[bad], exact)
    row = int(rows[bad[np.argmax(error)]])
    return worst, (
        f"* {label}: Polars differs from quiver by more than {RELATIVE_TOLERANCE:g} on {len(bad)} of "
        f"{len(rows)} rows, by up to {error.max():.1e} relative from the direct computation (at "
        f"symbol {row // bars}, bar {row % bars}), which quiver matches within {RELATIVE_TOLERANCE:g}"
    )


def best_of(reps, f):
    """The best of `reps` timed runs, each result dropped after its timer."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        result = f()
        best = min(best, time.perf_counter() - start)
        del result
    return best


def rate(rows, seconds):
    return "-" if seconds is None else f"{rows / seconds / 1e6:.1f} M"


def main():
    symbols, bars, reps = RUST["symbols"], RUST["bars"], RUST["reps"]
    rows = symbols * bars
    quiver_path = os.path.join(OUT_DIR, "quiver.arrow")
    if pl.thread_pool_size() != RUST["threads"]:
        sys.exit(f"Polars runs {pl.thread_pool_size()} threads, not {RUST['threads']}")

    start = time.perf_counter()
    frame, checksum = generate(symbols, bars)
    if checksum != RUST["checksum"]:
        sys.exit(
            f"MISMATCH data: the checksum here is {checksum!r}, the Rust bench's {RUST['checksum']!r}; "
            "the generators disagree"
        )
    print(
        f"polars: {rows} rows generated in {time.perf_counter() - start:.1f} s, checksum {checksum!r} "
        f"agrees; polars {pl.__version__}, {pl.thread_pool_size()} threads"
    )

    close = frame["close"].to_numpy()
    polars_times, notes, inexact = {}, [], set()
    for feature in RUST["features"]:
        # The warm-up run, checked; then the timed runs.
        out = query(frame, [feature])
        worst, note = check(out, quiver_path, feature, close)
        del out
        print(
            f"  {feature['label']:<17} Polars agrees with quiver (worst relative difference {worst:.1e}"
            f"{'; Polars INEXACT elsewhere, see the notes' if note else ''})"
        )
        if note:
            notes.append(note)
            inexact.add(feature["label"])
        polars_times[feature["label"]] = best_of(reps, lambda: query(frame, [feature]))
    for group in RUST["groups"]:
        chosen = [f for f in RUST["features"] if f["label"] in group["labels"]]
        out = query(frame, chosen)
        for feature in chosen:
            _, note = check(out, quiver_path, feature, close)
            if note:
                inexact.add(group["label"])
                if note not in notes:
                    notes.append(note)
        del out
        print(f"  {group['label']:<17} Polars agrees with quiver")
        polars_times[group["label"]] = best_of(reps, lambda: query(frame, chosen))

    print(
        f"\n{symbols} symbols x {bars} bars = {rows:,} rows; {RUST['threads']} threads each; "
        f"best of {reps} runs after one warm-up; rows/s counts input rows"
    )
    print(f"{'feature':<20} {'quiver':>10} {'DataFusion':>11} {'Polars':>10}")
    for entry in RUST["features"] + RUST["groups"]:
        label = entry["label"]
        print(
            f"{label:<20} {rate(rows, entry['quiver_s']):>10} "
            f"{rate(rows, entry['datafusion_s']) + ('*' if entry['datafusion_inexact'] else ''):>11} "
            f"{rate(rows, polars_times[label]) + ('*' if label in inexact else ''):>10}"
        )
    print(f"(polars {pl.__version__}; '-': the engine has no such window function)")
    for note in RUST["notes"] + notes:
        print(note)


if __name__ == "__main__":
    main()
