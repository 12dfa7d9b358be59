"""``python -m quiver …`` is the ``quiver`` command: the same code, the same
arguments and exit codes. One thing only the Python package can do:
``python -m quiver run PIPELINE --engine ray`` runs on a Ray cluster
(see :mod:`quiver.ray`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from . import _native

EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 1, 2, 130


def _wants_ray(argv: Sequence[str]) -> bool:
    if not argv or argv[0] != "run":
        return False
    for i, arg in enumerate(argv):
        if arg == "--engine" and i + 1 < len(argv):
            return argv[i + 1] == "ray"
        if arg.startswith("--engine="):
            return arg.split("=", 1)[1] == "ray"
    return False


def _run_on_ray(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quiver run",
        description="Run a pipeline on a Ray cluster: each fan-out key's chain of nodes "
        "is one Ray task. Uses the cache as `quiver run` does.",
    )
    parser.add_argument("pipeline", help="the pipeline YAML file")
    parser.add_argument("--engine", choices=["local", "ray"], required=True)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set a parameter, the value read as YAML")
    parser.add_argument("--params", metavar="FILE", help="a YAML file of parameter values")
    parser.add_argument("--no-merge", action="store_true", help="keep identical nodes apart")
    parser.add_argument("--address", help="the Ray cluster to join (default: start a local one)")
    parser.add_argument("--cpus-per-task", type=int, default=1, metavar="N",
                        help="CPUs each task reserves and computes on (default: 1)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every node; read and write no cache")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="the cache folder (default: the pipeline's, else .quiver/cache); "
                        "workers read and write it, so it must be on a file system they share")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.add_argument("--report", metavar="FILE",
                        help="where to save the run report "
                        "(default: .quiver/runs/RUN_ID/report.json)")
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as e:
        # argparse exits 2 on bad arguments and 0 for --help, as the command.
        return int(e.code or 0)

    import quiver
    import quiver.ray

    try:
        plan = quiver._compile_sets(args.pipeline, args.set, not args.no_merge, args.params)
    except quiver.PipelineError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.diagnostics)} error{'s' if len(e.diagnostics) != 1 else ''}",
              file=sys.stderr)
        return EXIT_INVALID
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    progress = "quiet" if args.quiet else ("bars" if sys.stderr.isatty() else "lines")
    try:
        run = quiver.ray.run(plan, address=args.address, cpus_per_task=args.cpus_per_task,
                             progress=progress, check=False, cache=not args.no_cache,
                             cache_dir=args.cache_dir)
    except KeyboardInterrupt as e:
        print(e, file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    print(run.summary, file=sys.stderr, end="")
    path = args.report or os.path.join(
        ".quiver", "runs", f"{int(time.time() * 1000)}-{os.getpid()}", "report.json"
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(run._native.report_json)
    print(f"report: {path}", file=sys.stderr)
    return 0 if run.succeeded else EXIT_FAILED


def main(argv: Sequence[str]) -> int:
    if _wants_ray(argv):
        return _run_on_ray(argv)
    return _native.cli_main(["quiver", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
