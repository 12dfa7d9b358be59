#!/usr/bin/env python3
"""Times Polars on the data `benches/features.rs` times quiver and DataFusion on.

Usage: python polars_compare.py [SYMBOLS [BARS]]   (default 500 100000)
Run it through run_polars.sh, which installs Polars in a throwaway venv.

The data is generated with the same algorithm and seed as the Rust bench
(SplitMix64; symbol s starts at 10 + 190u and moves by a factor
1 + 0.01(2u - 1) each bar, in one sequential product), so the checksum
printed here must equal the Rust bench's. The frame is sorted by symbol and
time, as there.

Each feature is computed per symbol with `.over("symbol")`, as a pipeline
would: rolling_mean and rolling_std (ddof=0, the population std that quiver
and TA-Lib default to) over windows 5, 20, 60, 240; ewm_mean(span=20,
adjust=False); and RSI 14 from Wilder-smoothed gains and losses
(ewm_mean(alpha=1/14, adjust=False) of the clipped changes). Polars'
EMA/RSI seed their recursions at the first row instead of TA-Lib's
SMA-of-the-first-n seed; the work per row is the same. Best of a few runs;
rows/s counts input rows.
"""

import os
import sys
import time

import numpy as np
import polars as pl

SEED = 42
GAMMA = np.uint64(0x9E3779B97F4A7C15)
WINDOWS = [5, 20, 60, 240]


def mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed, i):
    """The i-th uniforms in [0, 1) of the stream `seed` (i: uint64 array)."""
    z = mix(np.uint64(seed) + (i + np.uint64(1)) * GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def generate(symbols, bars):
    with np.errstate(over="ignore"):
        start = 10.0 + 190.0 * uniform(SEED ^ 0x5555555555555555, np.arange(symbols, dtype=np.uint64))
        close = np.empty(symbols * bars)
        # A symbol at a time keeps the temporaries small.
        for s in range(symbols):
            u = uniform(SEED, np.arange(s * bars, (s + 1) * bars, dtype=np.uint64))
            factors = 1.0 + 0.01 * (2.0 * u - 1.0)
            factors[0] = start[s] * factors[0]
            close[s * bars : (s + 1) * bars] = np.multiply.accumulate(factors)
    checksum = float(close[bars - 1 :: bars].sum())
    names = np.array([f"S{s:04d}" for s in range(symbols)])
    ts = np.datetime64("2024-01-01T00:00:00", "ms") + np.tile(np.arange(bars) * 60_000, symbols).astype(
        "timedelta64[ms]"
    )
    frame = pl.DataFrame(
        {
            "symbol": np.repeat(names, bars),
            "ts": ts,
            "close": close,
        }
    ).set_sorted("symbol")
    return frame, checksum


def best(reps, f):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
        del out
    return min(times)


def main():
    symbols = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    bars = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rows = symbols * bars
    reps = 3 if rows >= 20_000_000 else 5

    start = time.perf_counter()
    frame, checksum = generate(symbols, bars)
    print(
        f"data: {symbols} symbols x {bars} bars = {rows} rows, generated in "
        f"{time.perf_counter() - start:.1f} s; checksum (sum of last closes) {checksum:.6f}; "
        f"polars {pl.__version__}, {pl.thread_pool_size()} threads, {os.cpu_count()} cores"
    )

    close = pl.col("close")
    change = close.diff().over("symbol")
    gain = change.clip(lower_bound=0).ewm_mean(alpha=1 / 14, adjust=False).over("symbol")
    loss = (-change).clip(lower_bound=0).ewm_mean(alpha=1 / 14, adjust=False).over("symbol")
    features = []
    for w in WINDOWS:
        features.append((f"rolling_mean {w}", close.rolling_mean(w).over("symbol")))
        features.append((f"rolling_std {w}", close.rolling_std(w, ddof=0).over("symbol")))
    features.append(("ema 20", close.ewm_mean(span=20, adjust=False).over("symbol")))
    features.append(("rsi 14", 100 * gain / (gain + loss)))

    print(f"\n{'feature':<17} {'polars rows/s':>14}")
    for label, expr in features:
        t = best(reps, lambda: frame.with_columns(expr.alias("f")))
        print(f"{label:<17} {rows / t / 1e6:>12.1f} M")
    exprs = [e.alias(f"f{i}") for i, (_, e) in enumerate(features)]
    t = best(reps, lambda: frame.with_columns(exprs))
    print(
        f"{'all together':<17} {rows / t / 1e6:>12.1f} M   ({len(exprs)} features in one "
        f"with_columns: {t:.2f} s, {rows * len(exprs) / t / 1e6:.1f} M feature-rows/s)"
    )


if __name__ == "__main__":
    main()
