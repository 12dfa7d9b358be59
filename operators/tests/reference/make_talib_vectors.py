#!/usr/bin/env python3
"""Writes the TA-Lib reference vectors that `features.compute` is tested against.

Usage (from the repository root):

    python3 -m venv /tmp/talib-venv
    /tmp/talib-venv/bin/pip install ta-lib numpy    # the wheel bundles the C library
    /tmp/talib-venv/bin/python operators/tests/reference/make_talib_vectors.py \
        [../shared/data/stocks-daily/stocks.csv.gz] [operators/tests/fixtures/talib]

For each ticker below it takes a slice of consecutive trading days, runs TA-Lib
on exactly that slice (so every fixture holds its own warm-up region, and the
Rust test recomputes from the same rows with no hidden history), and writes one
CSV per ticker:

    date, close, high, low, raw_close, volume,        <- inputs
    sma_5, sma_20, sma_60, std_5, std_20, ema_12, ema_26, rsi_14, atr_14, rocp_1

- `close` is the split-adjusted `Adj Close`, written exactly as in the source
  text. SMA, STDDEV, EMA, RSI and ROCP are computed on it.
- ATR 14 is computed on the raw (not split-adjusted) High, Low and `raw_close`
  (the source's `Close`): all three are on the same basis, and the slices hold
  no split.
- STDDEV uses nbdev=1, i.e. the population standard deviation.
- An empty field is TA-Lib's NaN: the warm-up rows before the first valid one.
- Outputs are written with 13 significant digits, well beyond the 1e-9
  relative tolerance of the Rust test, to keep the fixtures small.

The Rust tests read only the CSV files; Python is not needed to run them.
"""

import csv
import gzip
import os
import sys

import numpy as np
import talib

# ticker -> (first row, number of rows) of the slice, counted in the ticker's
# own rows; a negative first row counts from the end.
SLICES = {
    "AAPL": (-500, 500),  # the last 500 days (2011-03 .. 2013-03)
    "IBM": (0, 500),  # the first 500 days (2000-03 ..), from the listing's start
    "GOOG": (-500, 500),
    "FB": (0, None),  # all 196 days since the IPO
}

OUTPUTS = [
    ("sma_5", lambda d: talib.SMA(d["close"], 5)),
    ("sma_20", lambda d: talib.SMA(d["close"], 20)),
    ("sma_60", lambda d: talib.SMA(d["close"], 60)),
    ("std_5", lambda d: talib.STDDEV(d["close"], 5, 1)),
    ("std_20", lambda d: talib.STDDEV(d["close"], 20, 1)),
    ("ema_12", lambda d: talib.EMA(d["close"], 12)),
    ("ema_26", lambda d: talib.EMA(d["close"], 26)),
    ("rsi_14", lambda d: talib.RSI(d["close"], 14)),
    ("atr_14", lambda d: talib.ATR(d["high"], d["low"], d["raw_close"], 14)),
    ("rocp_1", lambda d: talib.ROCP(d["close"], 1)),
]


def fmt(x):
    return "" if np.isnan(x) else "%.13g" % x


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/stocks-daily/stocks.csv.gz"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "operators/tests/fixtures/talib"
    os.makedirs(out_dir, exist_ok=True)

    with gzip.open(source, "rt", newline="") as f:
        rows = list(csv.DictReader(f))

    for ticker, (first, count) in SLICES.items():
        mine = [r for r in rows if r["Ticker"] == ticker]
        mine.sort(key=lambda r: r["Date"])
        start = first if first >= 0 else len(mine) + first
        mine = mine[start : None if count is None else start + count]

        text = {
            "date": [r["Date"] for r in mine],
            "close": [r["Adj Close"] for r in mine],
            "high": [r["High"] for r in mine],
            "low": [r["Low"] for r in mine],
            "raw_close": [r["Close"] for r in mine],
            "volume": [r["Volume"] for r in mine],
        }
        data = {k: np.array(v, dtype=float) for k, v in text.items() if k != "date"}
        outputs = [(name, f(data)) for name, f in OUTPUTS]

        path = os.path.join(out_dir, f"{ticker}.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(list(text) + [name for name, _ in outputs])
            for i in range(len(mine)):
                w.writerow([text[k][i] for k in text] + [fmt(v[i]) for _, v in outputs])
        print(f"{path}: {len(mine)} rows, {text['date'][0]} .. {text['date'][-1]}")


if __name__ == "__main__":
    main()
