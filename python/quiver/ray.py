"""Run a quiver plan on a Ray cluster.

>>> import quiver.ray
>>> run = quiver.ray.run("pipelines/symbols.yaml")      # doctest: +SKIP

The plan is cut into parts (``quiver.Plan.parts`` shows them): each fan-out
key's chain of nodes (``clean[AAPL]`` → ``features[AAPL]``, every day of
it) is one Ray task, a node that many keys share is a task of its own, and
so is each fan-in with the nodes after it that read only it. A task runs
its nodes with the Rust engine inside the Ray worker; the tables it hands
to other tasks go through Ray's object store as ``pyarrow.Table``. Every
node runs in exactly one task, once.

A task starts when the tasks it reads have finished and its resources have
room: a resource's ``concurrency`` holds across the cluster (each task gets
the slots it can use, and the slots in use never exceed the limit), and a
``rate`` is shared among the tasks that may draw on it at once (a rate kept
in Redis, ``shared: redis://…``, holds as it is). A worker that dies is
retried by Ray (``max_retries``); a node that fails stops the run as it
would in one process (``keep_going: true`` goes on).

Workers compile the pipeline file again, from the same absolute path, in
the driver's working directory: on a cluster of several machines the
pipeline and the files it reads must be at the same paths on every one.
Python operators (``@quiver.operator``) travel to the workers as Ray
pickles functions: defined in ``__main__`` (a script, a notebook) they go
by value; from a module, that module must be importable on the workers.
"""

from __future__ import annotations

import hashlib as _hashlib
import json as _json
import os as _os
import sys as _sys
import time as _time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pyarrow as _pa

from . import (
    Plan,
    Run,
    RunError,
    Table,
    _compile_sets,
    _native,
    _python_operators,
)
from . import compile as _compile
from . import operator as _register

__all__ = ["run"]

_PRODUCED = ("succeeded", "defaulted", "cached")


@dataclass(frozen=True)
class _Spec:
    """What a worker needs to compile the driver's plan."""

    path: str
    sets: tuple[str, ...]
    merge: bool
    params_file: str | None
    cwd: str
    operators: Mapping[str, tuple[Callable[..., Any], dict[str, Any]]]
    # What the driver's plan is made of: a worker whose plan differs (the
    # file edited since, or another file at that path) must not run it.
    fingerprint: str

    def key(self) -> tuple[Any, ...]:
        return (self.path, self.sets, self.merge, self.params_file, self.cwd,
                tuple(self.operators), self.fingerprint)


def _fingerprint(plan: Plan) -> str:
    """A hash of every node's id, operator, parameters and inputs."""
    digest = _hashlib.sha256()
    for node in plan._native.nodes:
        text = _json.dumps([node["id"], node["op"], node["params"], node["inputs"]],
                           sort_keys=True)
        digest.update(text.encode())
    return digest.hexdigest()


# In a worker process: the plans compiled last, so that a worker running
# many tasks of one run compiles once.
_plans: dict[tuple[Any, ...], Plan] = {}
_PLANS_KEPT = 4


def _worker_plan(spec: _Spec) -> Plan:
    if _os.getcwd() != spec.cwd and _os.path.isdir(spec.cwd):
        _os.chdir(spec.cwd)
    plan = _plans.get(spec.key())
    if plan is None:
        for name, (function, options) in spec.operators.items():
            _register(name, **options)(function)
        plan = _compile_sets(spec.path, spec.sets, spec.merge, spec.params_file)
        if _fingerprint(plan) != spec.fingerprint:
            raise RuntimeError(
                f"{spec.path} compiles to another plan in this worker than in the driver: "
                "the pipeline and the files it includes must be the same, at the same "
                "paths, on every machine of the cluster"
            )
        while len(_plans) >= _PLANS_KEPT:
            del _plans[next(iter(_plans))]
        _plans[spec.key()] = plan
    return plan


def _run_part(
    spec: _Spec,
    nodes: list[str],
    keep: list[str],
    nothing: dict[str, str],
    pools: dict[str, tuple[int, int]],
    max_workers: int,
    steps: str | None,
    cache_dir: str | None,
    given_ids: list[str],
    *given_tables: _pa.Table,
) -> Any:
    """One Ray task: runs a part's nodes and returns its report, then one
    table (or None) per node in ``keep``. With ``steps``, its nodes load
    from and store into the cache in ``cache_dir`` as the driver planned;
    the worker's packs are sealed before it returns."""
    started = _time.time()
    plan = _worker_plan(spec)
    given = {id: Table.from_arrow(table) for id, table in zip(given_ids, given_tables)}
    run = _native.run_part(plan._native, nodes, given, nothing, keep, pools, max_workers,
                           steps, cache_dir)
    tables = run.tables
    head = {"report": run.report_json, "started": started}
    if not keep:
        return head
    return (head, *[_pa.table(tables[id]) if id in tables else None for id in keep])


def _progress_mode(progress: str | None) -> str:
    """"bars" (one line rewritten in place: a terminal, a notebook),
    "lines" (a line every few seconds: a log) or "quiet"."""
    if progress is None:
        return "bars" if _sys.stderr.isatty() or "ipykernel" in _sys.modules else "quiet"
    if progress not in ("bars", "lines", "quiet"):
        raise ValueError(f"unknown progress {progress!r}: expected bars, lines or quiet")
    return progress


def run(
    plan: Plan | str | _os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    outputs: Sequence[str] | None = None,
    cpus_per_task: int = 1,
    max_retries: int = 3,
    progress: str | None = None,
    check: bool = True,
    cache: bool = True,
    cache_dir: str | _os.PathLike[str] | None = None,
) -> Run:
    """Run ``plan`` (a :class:`quiver.Plan`, or a pipeline file compiled
    with ``params``) on Ray and return the :class:`quiver.Run`, as
    :meth:`quiver.Plan.run` would.

    ``cache`` and ``cache_dir`` as for :meth:`quiver.Plan.run`: the driver
    decides what is loaded, stored or left; workers read and write the
    cache folder themselves (each process its own packs, recorded in the
    index when a task ends), so on a cluster of several machines it must
    be on a file system they share. The packs of a day are merged into
    one when the run ends.

    ``address``: the cluster to join when Ray is not initialized yet (None
    starts a local one, as ``ray.init()`` does). ``cpus_per_task``: the
    CPUs each task reserves, and the threads its engine computes on.
    ``max_retries``: how often Ray runs a task again whose worker died.
    ``outputs``, ``progress`` and ``check`` as for :meth:`quiver.Plan.run`;
    progress is a line of tasks and nodes done, on stderr (shown in a
    notebook too).
    """
    try:
        import ray
    except ImportError:
        raise ImportError("quiver.ray needs Ray: pip install ray") from None
    if isinstance(plan, Plan):
        if params:
            raise TypeError("params are for a pipeline file; this plan is compiled already")
    else:
        plan = _compile(plan, params)
    if plan._source is None:
        raise ValueError("the plan must come from quiver.compile, so that workers can compile it")
    if cpus_per_task < 1:
        raise ValueError("cpus_per_task must be at least 1")
    show = _progress_mode(progress)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    path, sets, merge, params_file = plan._source
    # The Python operators the plan names travel with it.
    used = {node.op for node in plan.nodes}
    operators = {name: op for name, op in _python_operators.items() if name in used}
    spec = _Spec(path, sets, merge, params_file, _os.getcwd(), operators, _fingerprint(plan))
    info = _native.plan_parts(
        plan._native,
        None if outputs is None else list(outputs),
        cache,
        None if cache_dir is None else _os.fspath(cache_dir),
    )
    driver = _Driver(ray, plan, info, ray.put(spec), cpus_per_task, max_retries, show)
    try:
        driver.go()
    except KeyboardInterrupt:
        driver.cancel()
        result = Run(driver.assemble(outputs, cancelled=True))
        raise KeyboardInterrupt(f"the run was cancelled\n{result.summary}") from None
    result = Run(driver.assemble(outputs, cancelled=False))
    if check and not result.succeeded:
        raise RunError(result)
    return result


class _Driver:
    """Starts each part as a Ray task once the parts it reads are done and
    its resources have room, and keeps what the tasks report."""

    def __init__(self, ray: Any, plan: Plan, info: dict[str, Any], spec: Any,
                 cpus: int, retries: int, show: str) -> None:
        self.ray, self.plan, self.info, self.spec = ray, plan, info, spec
        self.cpus, self.show = cpus, show
        self.parts: list[dict[str, Any]] = info["parts"]
        self.task = ray.remote(_run_part)
        self.retries = retries
        self.start = _time.time()
        self.owner = {id: p for p, part in enumerate(self.parts) for id in part["nodes"]}
        wanted = set(info["outputs"])
        # Per node read by another part or asked for: who still needs it.
        self.needed: dict[str, int] = {id: 1 for id in wanted}
        for part in self.parts:
            for id in part["reads"]:
                self.needed[id] = self.needed.get(id, 0) + 1
        self.keep = [[id for id in part["nodes"] if id in self.needed] for part in self.parts]
        self.waiting = [
            {self.owner[id] for id in part["reads"] if id in self.owner} for part in self.parts
        ]
        self.readers: list[list[int]] = [[] for _ in self.parts]
        for p, producers in enumerate(self.waiting):
            for q in producers:
                self.readers[q].append(p)
        # Parts whose inputs are all done, in plan order.
        self.ready = [p for p, producers in enumerate(self.waiting) if not producers]
        self.refs: dict[str, Any] = {}
        self.nothing: dict[str, str] = {}
        self.pieces: list[tuple[list[str], str, float]] = []
        self.lost: dict[str, str] = {}
        self.flight: dict[Any, tuple[int, list[Any]]] = {}
        self.started = 0
        self.stopping = False
        self.done_nodes = 0
        self.drawn = 0.0
        # Resources: slots in use against each pool's concurrency, and for
        # a rate kept in this run, the parts that may draw on it at once.
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        self.slots = slots
        # Tasks submitted at once: enough to keep every CPU busy while
        # finished ones are collected, few enough that waiting on them
        # stays cheap.
        self.window = max(16, 4 * slots)
        self.granted: dict[int, dict[str, int]] = {}
        self.limit: dict[str, int | None] = {}
        self.share: dict[str, int] = {}
        for name, pool in info["pools"].items():
            self.limit[name] = pool["concurrency"]
            rated = pool["rate"] and not pool["shared"]
            self.share[name] = min(slots, pool["concurrency"] or slots) if rated else 1
        self.used = {name: 0 for name in self.limit}
        self.drawing = {name: 0 for name in self.limit}

    def grants(self, part: dict[str, Any]) -> dict[str, int]:
        """The slots of each pool the part gets: what it can use, but no
        more than an even share among the tasks the cluster runs at once,
        so that one part does not hold a pool the others wait for."""
        out = {}
        for name, slots in part["pools"].items():
            limit = self.limit.get(name)
            out[name] = slots if limit is None else max(1, min(slots, limit // self.slots))
        return out

    def fits(self, part: dict[str, Any]) -> bool:
        for name, slots in self.grants(part).items():
            limit = self.limit.get(name)
            if limit is not None and self.used[name] + slots > limit:
                return False
            if self.share[name] > 1 and self.drawing[name] + 1 > self.share[name]:
                return False
        return True

    def submit(self, p: int) -> None:
        self.started += 1
        part = self.parts[p]
        grants = self.grants(part)
        self.granted[p] = grants
        for name, slots in grants.items():
            self.used[name] += slots
            self.drawing[name] += 1
        given = [id for id in part["reads"] if id in self.refs]
        nothing = {id: self.nothing[id] for id in part["reads"] if id in self.nothing}
        pools = {name: (slots, self.share[name]) for name, slots in grants.items()}
        keep = self.keep[p]
        options = {"num_cpus": self.cpus, "max_retries": self.retries, "num_returns": 1 + len(keep)}
        refs = self.task.options(**options).remote(
            self.spec, part["nodes"], keep, nothing, pools, self.cpus,
            part.get("steps"), self.info.get("cache_dir"), given,
            *[self.refs[id] for id in given],
        )
        head, outs = (refs[0], list(refs[1:])) if keep else (refs, [])
        self.flight[head] = (p, outs)

    def go(self) -> None:
        while True:
            if not self.stopping:
                waiting = []
                for p in self.ready:
                    if len(self.flight) < self.window and self.fits(self.parts[p]):
                        self.submit(p)
                    else:
                        waiting.append(p)
                self.ready = waiting
            if not self.flight:
                break
            # Wait for one task, then take every other that is done too.
            flight = list(self.flight)
            ready, rest = self.ray.wait(flight, num_returns=1, timeout=0.2)
            if ready and rest:
                more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for head in ready:
                self.finish(head)
            self.draw()
        self.draw(last=True)

    def finish(self, head: Any) -> None:
        p, outs = self.flight.pop(head)
        part = self.parts[p]
        for name, slots in self.granted.pop(p).items():
            self.used[name] -= slots
            self.drawing[name] -= 1
        try:
            result = self.ray.get(head)
        except Exception as e:  # the task failed after Ray's retries
            why = f"its Ray task failed: {type(e).__name__}: {e}".strip()
            for id in part["nodes"]:
                self.lost[id] = why
            for id in self.keep[p]:
                self.nothing[id] = why
            self.stopping = self.stopping or not self.info["keep_going"]
        else:
            report = _json.loads(result["report"])
            self.pieces.append((part["nodes"], result["report"], result["started"] - self.start))
            status = {n["id"]: n for n in report["nodes"]}
            for id, ref in zip(self.keep[p], outs):
                node = status[id]
                if node["status"] in _PRODUCED:
                    self.refs[id] = ref
                else:
                    error = node.get("error") or {}
                    self.nothing[id] = error.get("message") or node.get("reason") or node["status"]
            failed = any(status[id]["status"] == "failed" for id in part["nodes"])
            if failed and not self.info["keep_going"]:
                self.stopping = True
        self.done_nodes += len(part["nodes"])
        for reader in self.readers[p]:
            self.waiting[reader].discard(p)
            if not self.waiting[reader]:
                self.ready.append(reader)
        self.ready.sort()
        for id in part["reads"]:
            self.release(id)

    def release(self, id: str) -> None:
        self.needed[id] -= 1
        if self.needed[id] == 0:
            self.refs.pop(id, None)

    def draw(self, last: bool = False) -> None:
        now = _time.time()
        if self.show == "quiet" or (self.show == "lines" and now - self.drawn < 5 and not last):
            return
        self.drawn = now
        done = self.started - len(self.flight)
        total = sum(len(part["nodes"]) for part in self.parts)
        line = (
            f"{self.plan.name}: {done}/{len(self.parts)} Ray tasks, "
            f"{self.done_nodes}/{total} nodes, {len(self.flight)} running, "
            f"{now - self.start:.1f}s"
        )
        if self.show == "bars":
            _sys.stderr.write(f"\r{line}" + ("\n" if last else ""))
        else:
            _sys.stderr.write(line + "\n")
        _sys.stderr.flush()

    def cancel(self) -> None:
        for head in list(self.flight):
            self.ray.cancel(head, force=True)
        self.flight.clear()

    def assemble(self, outputs: Sequence[str] | None, cancelled: bool) -> "_native.Run":
        tables = []
        if not cancelled:
            for id in self.info["outputs"]:
                if id in self.refs:
                    tables.append((id, Table.from_arrow(self.ray.get(self.refs[id]))))
        return _native.assemble(
            self.plan._native,
            None if outputs is None else list(outputs),
            self.pieces,
            self.lost,
            tables,
            _time.time() - self.start,
            cancelled,
            self.info.get("cache"),
        )
