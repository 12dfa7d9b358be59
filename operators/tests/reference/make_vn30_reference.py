#!/usr/bin/env python3
"""Independent pandas reference for the VN30 computations: intraday features,
capped free-float weights, the index level path and the whale aggregate.

Regenerate (from the repository root; Python needs pandas >= 2 and pyarrow):

    python3 -m venv /tmp/xc && /tmp/xc/bin/pip install pandas pyarrow
    quiver run operators/tests/reference/vn30_dump.yaml --no-cache   # -> /tmp/vn30-ref-data
    /tmp/xc/bin/python operators/tests/reference/make_vn30_reference.py \
        [/tmp/vn30-ref-data] [operators/tests/fixtures/vn30]

Input (written by vn30_dump.yaml, fetch.synthetic seed 0): ticks.csv (BID FPT
GAS HPG VCB VNM, 2026-01-05..08), prices.csv (same symbols, 2025-12-01..
2026-01-08), stock_info.csv. Output: features.csv, weights.csv, index.csv,
aggregate.csv. Parameters: cap c = 0.25, base B = 1000, 5-minute candles,
whale threshold T = 1e9 VND, relative volume over N = 20 sessions.

Timestamps: sink.csv writes `ts` as ISO 8601 with the offset,
`2026-01-05T09:15:02.410+07:00`, and omits the fraction when it is zero
(`2026-01-05T14:45:00+07:00`). They are parsed with a strict regex into
integer fields: epoch_ms = (local wall clock as datetime64[ms]) + fraction
(right-padded to 3 digits; more than 3 digits is rejected) - offset. This is
checked against pd.to_datetime(format="ISO8601", utc=True). The local `date`
is the first 10 characters of the text (every offset is +07:00, asserted).

Definitions follow the VN30 brief literally (summarised in
operators/tests/fixtures/vn30/README.md; the functions below implement them one
by one). Tested with pandas 3.1 / pyarrow 26. Choices where the brief left room:
- Trade order: a stable sort on (ts, symbol) of the rows in file order.
  Within a candle `open` / `close` are the first / last trade in that order.
- vwap = cumsum(value) / cumsum(volume) of the per-candle sums within one
  symbol-day (identical to cumulating per trade and reading at the candle's
  last trade).
- relative_volume: the N sessions are the symbol's rows in prices.csv with
  date < d (the last N of them); expected = mean(volume) * 5 / 225.
- market_cap = (reference * shares_outstanding) * free_float, evaluated left to
  right in float64; w_i = (remaining * m_i) / sum_U m_j.
- q_i = (shares_outstanding * free_float) * cap_factor_i(d). The level is
  recomputed from scratch after every trade as (sum over symbols in
  alphabetical order of price_i * q_i) / divisor, not updated incrementally.
- A candle's `trades` in index.csv counts all symbols' trades in it.
- cap_factor: (w_i / m_i) / max_j (w_j / m_j) for capped symbols; exactly 1.0
  for uncapped ones (their value in exact arithmetic; the float64 formula can
  give 1 - 1 ulp, so compare cap_factor with a tolerance).
- value = price * volume is an integer below 2**53 (prices in VND, volumes in
  shares), so every `value`/whale sum is exact whatever the summation order.
- Empty CSV field = missing (relative_volume with no prior session; never
  happens here). Floats are written with repr(), the shortest text that
  round-trips to the same float64.
"""

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

CAP = 0.25
BASE = 1000.0
INTERVAL_MIN = 5
BAR_MS = INTERVAL_MIN * 60_000
WHALE = 1e9
N_SESSIONS = 20
SESSION_MIN = 225  # minutes of continuous trading in a HOSE session

TS_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,3}))?([+-])(\d{2}):(\d{2})$")


def parse_ts(text: pd.Series) -> pd.Series:
    """ISO 8601 with offset -> int64 UTC epoch milliseconds (exact)."""
    parts = text.str.extract(TS_RE.pattern)
    if parts[0].isna().any():
        raise ValueError(f"unparsed timestamps: {text[parts[0].isna()].head().tolist()}")
    wall = parts[0].to_numpy().astype("datetime64[ms]").astype(np.int64)
    frac = parts[1].fillna("").str.ljust(3, "0").astype(np.int64).to_numpy()
    sign = np.where(parts[2] == "+", 1, -1)
    offset_ms = sign * (parts[3].astype(np.int64) * 60 + parts[4].astype(np.int64)).to_numpy() * 60_000
    ms = pd.Series(wall + frac - offset_ms, index=text.index, dtype=np.int64)
    check = pd.to_datetime(text, format="ISO8601", utc=True).dt.as_unit("ms").astype(np.int64)
    assert (check.to_numpy() == ms.to_numpy()).all(), "regex parse disagrees with pandas"
    return ms


def load(data: Path):
    ticks = pd.read_csv(data / "ticks.csv", dtype={"symbol": str, "ts": str, "price": np.float64,
                                                   "volume": np.int64, "side": str})
    assert (ticks["ts"].str[-6:] == "+07:00").all()
    ticks["ts_ms"] = parse_ts(ticks["ts"])
    ticks["date"] = ticks["ts"].str[:10]
    ticks["row"] = np.arange(len(ticks))
    # The one global trade order: ts, then symbol, then file order (stable).
    ticks = ticks.sort_values(["ts_ms", "symbol"], kind="stable").reset_index(drop=True)
    ticks["bar_ms"] = ticks["ts_ms"] // BAR_MS * BAR_MS
    ticks["value"] = ticks["price"] * ticks["volume"]
    whale = ticks["value"] >= WHALE
    ticks["whale_buy"] = ticks["value"].where(whale & (ticks["side"] == "B"), 0.0)
    ticks["whale_sell"] = ticks["value"].where(whale & (ticks["side"] == "S"), 0.0)
    prices = pd.read_csv(data / "prices.csv", dtype={"symbol": str, "date": str, "volume": np.int64})
    info = pd.read_csv(data / "stock_info.csv", dtype={"symbol": str, "shares_outstanding": np.int64,
                                                       "free_float": np.float64})
    return ticks, prices, info.set_index("symbol").sort_index()


def features(ticks, prices):
    g = ticks.groupby(["symbol", "date", "bar_ms"], sort=True)
    f = g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
              close=("price", "last"), volume=("volume", "sum"), value=("value", "sum"),
              trades=("price", "size"), whale_buy_value=("whale_buy", "sum"),
              whale_sell_value=("whale_sell", "sum")).reset_index()
    day = f.groupby(["symbol", "date"], sort=False)
    f["vwap"] = day["value"].cumsum() / day["volume"].cumsum()
    ref = f.merge(prices[["symbol", "date", "reference"]], on=["symbol", "date"], how="left",
                  validate="many_to_one")["reference"]
    assert ref.notna().all()
    f["ret"] = f["close"] / day["close"].shift(1).fillna(ref) - 1
    # Mean daily volume of the N sessions strictly before the day.
    p = prices.sort_values(["symbol", "date"])
    p["mean_prior"] = (p.groupby("symbol")["volume"]
                       .transform(lambda v: v.shift(1).rolling(N_SESSIONS, min_periods=1).mean()))
    expected = f.merge(p[["symbol", "date", "mean_prior"]], on=["symbol", "date"], how="left")["mean_prior"]
    f["relative_volume"] = f["volume"] / (expected * INTERVAL_MIN / SESSION_MIN)
    f["net_whale_flow"] = f["whale_buy_value"] - f["whale_sell_value"]
    f["whale_share"] = (f["whale_buy_value"] + f["whale_sell_value"]) / f["value"]
    return f[["symbol", "date", "bar_ms", "open", "high", "low", "close", "volume", "value",
              "trades", "vwap", "ret", "relative_volume", "whale_buy_value", "whale_sell_value",
              "net_whale_flow", "whale_share"]]


def cap_weights(m: pd.Series, c: float):
    """Iterative capping; returns (weights, number of capping rounds that capped)."""
    if c * len(m) < 1:
        raise ValueError(f"cap {c} infeasible for {len(m)} symbols")
    capped, rounds = set(), 0
    while True:
        u = [s for s in m.index if s not in capped]
        remaining = 1 - c * len(capped)
        total = m[u].sum()
        w = pd.Series({s: remaining * m[s] / total for s in u})
        over = w[w > c].index
        if len(over) == 0:
            break
        capped |= set(over)
        rounds += 1
    w = pd.concat([w, pd.Series(c, index=sorted(capped))]).sort_index()
    return w, rounds, capped


def weights(days, prices, info):
    rows, rounds = [], {}
    for d in days:
        ref = prices[prices["date"] == d].set_index("symbol")["reference"].reindex(info.index)
        assert ref.notna().all()
        m = ref * info["shares_outstanding"] * info["free_float"]
        w, n_rounds, capped = cap_weights(m, CAP)
        rounds[d] = (n_rounds, sorted(capped))
        ratio = w / m
        # Uncapped symbols share one ratio in exact arithmetic: their factor is 1.0
        # exactly (the float formula can give 1 - 1ulp for some of them).
        factor = (ratio / ratio.max()).where(m.index.isin(sorted(capped)), 1.0)
        rows.append(pd.DataFrame({"date": d, "symbol": m.index, "reference": ref.to_numpy(),
                                  "market_cap": m.to_numpy(), "cap_factor": factor.to_numpy(),
                                  "weight": w.to_numpy()}))
    return pd.concat(rows, ignore_index=True), rounds


def index_path(ticks, days, prices, wts, info):
    symbols = list(info.index)
    pos = {s: k for k, s in enumerate(symbols)}
    rows, opens, level_prev = [], [], BASE
    for d in days:
        wd = wts[wts["date"] == d].set_index("symbol").reindex(symbols)
        q = (info["shares_outstanding"] * info["free_float"] * wd["cap_factor"]).to_list()
        price = wd["reference"].to_list()
        divisor = sum(p * qi for p, qi in zip(price, q)) / level_prev
        opens.append(sum(p * qi for p, qi in zip(price, q)) / divisor)  # level before the first trade
        day = ticks[ticks["date"] == d]
        levels = []
        for s, px in zip(day["symbol"], day["price"]):
            price[pos[s]] = px
            levels.append(sum(p * qi for p, qi in zip(price, q)) / divisor)
        lv = pd.DataFrame({"bar_ms": day["bar_ms"].to_numpy(), "level": levels})
        bars = lv.groupby("bar_ms", sort=True)["level"].agg(
            open="first", high="max", low="min", close="last", trades="size").reset_index()
        bars.insert(0, "date", d)
        bars["divisor"] = divisor
        rows.append(bars)
        level_prev = levels[-1]
    return pd.concat(rows, ignore_index=True), opens


def aggregate(idx, feats, wts, n_symbols):
    f = feats.merge(wts[["date", "symbol", "weight"]], on=["date", "symbol"], how="left")
    f["weighted_share"] = f["weight"] * f["whale_share"]
    f["buyer"] = (f["net_whale_flow"] > 0).astype(np.int64)
    per_bar = f.groupby(["date", "bar_ms"]).agg(net_whale_flow=("net_whale_flow", "sum"),
                                                whale_share=("weighted_share", "sum"),
                                                net_buyers=("buyer", "sum"),
                                                present=("symbol", "size")).reset_index()
    a = idx[["date", "bar_ms"]].merge(per_bar, on=["date", "bar_ms"], how="left", validate="one_to_one")
    assert a["net_buyers"].notna().all()  # every index candle has >= 1 symbol row
    a["net_buyers"] = a["net_buyers"].astype(np.int64)
    a["symbols"] = n_symbols
    a["breadth"] = a["net_buyers"] / a["symbols"]
    return a


def write(df: pd.DataFrame, path: Path):
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == np.float64:
            out[col] = [("" if np.isnan(x) else repr(float(x))) for x in out[col]]
    out.to_csv(path, index=False, lineterminator="\n")
    print(f"wrote {path} ({len(df)} rows)")


def main():
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vn30-ref-data")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "fixtures" / "vn30")
    out.mkdir(parents=True, exist_ok=True)
    ticks, prices, info = load(data)
    days = sorted(ticks["date"].unique())
    feats = features(ticks, prices)
    wts, rounds = weights(days, prices, info)
    idx, opens = index_path(ticks, days, prices, wts, info)
    agg = aggregate(idx, feats, wts, len(info))

    write(feats, out / "features.csv")
    write(wts, out / "weights.csv")
    write(idx, out / "index.csv")
    write(agg.drop(columns="present"), out / "aggregate.csv")

    print("\nsanity checks")
    print(f"days: {days}; symbols: {list(info.index)}")
    for d in days:
        wd = wts[wts["date"] == d]
        n_rounds, capped = rounds[d]
        print(f"  {d}: capping rounds {n_rounds}, capped {capped}, "
              f"min cap_factor {wd['cap_factor'].min():.6f}, weights sum {float(wd['weight'].sum())!r}")
    gaps = agg[agg["present"] < len(info)]
    print(f"  index candles: {len(agg)} ({agg.groupby('date').size().to_dict()}); "
          f"with at least one symbol not trading: {len(gaps)}"
          + (f", e.g. {gaps[['date', 'bar_ms', 'present']].head(3).to_dict('records')}" if len(gaps) else ""))
    closes = {d: float(v) for d, v in idx.groupby("date")["close"].last().items()}
    for k, d in enumerate(days):
        prev = BASE if k == 0 else closes[days[k - 1]]
        print(f"  {d}: open level (before trades) {opens[k]!r} vs previous close {prev!r}, "
              f"diff {opens[k] - prev:.3g}")


if __name__ == "__main__":
    main()
