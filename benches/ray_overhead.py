"""Ray against one process: 1,000 synthetic symbols through fetch → features,
on a local Ray cluster of 2 CPUs (one task per symbol, one CPU each) and in
one process with 2 workers. Both hand back every symbol's features table.

    python benches/ray_overhead.py [--symbols 1000] [--repeat 3]

Needs the package and Ray in the Python it runs with (.ci/python's venv has
both). Each side runs once to warm up (Ray starts its workers, which
compile the plan), then `--repeat` times; the median wall is printed after
the two sides' tables were checked equal. Ray's per-task overhead is the
CPU time its tasks cost beyond the one-process run: (Ray wall − local
wall) × 2 CPUs / tasks; the same is measured for empty Ray tasks, to tell
Ray's own share from quiver's. Both sides run without the cache: the two
sides use the same seeds, and the second would find the first's outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import textwrap
import time

import ray

import quiver
import quiver.ray

PIPELINE = textwrap.dedent("""\
    pipeline: ray_overhead
    params:
      symbols: {type: list}
      seed: {type: int, default: 42}
    nodes:
      features:
        foreach: symbol in ${symbols}
        op: features.compute
        inputs:
          bars:
            op: fetch.synthetic
            with: {dataset: prices, symbol: "${symbol}", start: 2025-01-01, end: 2025-12-31, seed: "${seed}"}
        with:
          ts: date
          close: close
          features:
            - {kind: return, name: return_1d}
            - {kind: rolling_mean, window: 20, name: sma_20}
            - {kind: rolling_std, window: 20, name: std_20}
            - {kind: ema, window: 12, name: ema_12}
            - {kind: rsi, window: 14, name: rsi_14}
    """)


def timed(f, repeat: int) -> tuple[float, object]:
    """The median wall of `repeat` calls `f(seed)` after one to warm up,
    and the last result. Each call has a seed of its own, so that neither
    side finds the synthetic prices a call before generated (the generator
    keeps a process's walks)."""
    f(0)
    walls, result = [], None
    for seed in range(1, repeat + 1):
        start = time.perf_counter()
        result = f(seed)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cpus = 2
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ray_overhead.yaml")
        with open(path, "w") as f:
            f.write(PIPELINE)
        symbols = [f"S{i:04d}" for i in range(args.symbols)]
        def plan(seed):
            return quiver.compile(path, {"symbols": symbols, "seed": seed})

        tasks = len(plan(0).parts())
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)

        local_wall, local = timed(
            lambda seed: plan(seed).run(max_workers=cpus, progress="quiet", cache=False),
            args.repeat,
        )
        ray_wall, on_ray = timed(
            lambda seed: quiver.ray.run(plan(seed), progress="quiet", cache=False), args.repeat
        )
        assert sorted(local.tables) == sorted(on_ray.tables)
        for name, table in local.tables.items():
            assert table.equals(on_ray.tables[name]), name

        @ray.remote(num_cpus=1)
        def nothing() -> None:
            return None

        empty_wall, _ = timed(
            lambda _: ray.get([nothing.remote() for _ in range(tasks)]), args.repeat
        )
        rows = sum(t.num_rows for t in local.tables.values())
        print(f"{args.symbols} symbols, {len(plan(0).nodes)} nodes, {rows} feature rows, "
              f"{tasks} Ray tasks, {cpus} CPUs; tables equal")
        print(f"one process (max_workers={cpus}): {local_wall:.3f} s")
        print(f"Ray (num_cpus={cpus}, 1 CPU per task): {ray_wall:.3f} s")
        per_task = (ray_wall - local_wall) * cpus / tasks
        print(f"Ray per-task overhead: {per_task * 1000:.2f} ms of CPU time "
              f"((Ray − one process) × {cpus} / {tasks})")
        print(f"{tasks} empty Ray tasks: {empty_wall:.3f} s, "
              f"{empty_wall * cpus / tasks * 1000:.2f} ms per task")
        ray.shutdown()


if __name__ == "__main__":
    main()
