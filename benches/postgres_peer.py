"""The peers of `cargo bench --bench postgres`: the same bars written into
the same table the two ways a hand-written Python service does it, with
psycopg 3 as its documentation recommends.

    python postgres_peer.py URL CSV executemany   # upserts, batches of 500
    python postgres_peer.py URL CSV copy          # plain COPY, empty table

The CSV (symbol, ts, open, high, low, close, volume, with a header) is
read and parsed before the clock starts; only the writing is timed. The
table must exist and be empty. Prints the seconds the writing took.
"""

import csv
import datetime
import sys
import time

import psycopg

BATCH = 500

UPSERT = (
    "INSERT INTO bars (symbol, ts, open, high, low, close, volume) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (symbol, ts) DO UPDATE SET open = EXCLUDED.open, "
    "high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, "
    "volume = EXCLUDED.volume"
)


def rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return [
            (
                s,
                datetime.datetime.fromisoformat(ts),
                float(o),
                float(h),
                float(lo),
                float(c),
                int(v),
            )
            for s, ts, o, h, lo, c, v in reader
        ]


def executemany(conn, path):
    data = rows(path)
    start = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(0, len(data), BATCH):
            # One transaction per batch, as the services did.
            cur.executemany(UPSERT, data[i : i + BATCH])
            conn.commit()
    return time.perf_counter() - start


def copy(conn, path):
    with open(path, "rb") as f:
        body = f.read()
    start = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy("COPY bars FROM STDIN (FORMAT csv, HEADER true)") as cp:
            view = memoryview(body)
            for i in range(0, len(view), 1 << 20):
                cp.write(view[i : i + (1 << 20)])
    conn.commit()
    return time.perf_counter() - start


def main():
    url, path, how = sys.argv[1:4]
    with psycopg.connect(url) as conn:
        took = {"executemany": executemany, "copy": copy}[how](conn, path)
    print(f"{took:.6f}")


if __name__ == "__main__":
    main()
