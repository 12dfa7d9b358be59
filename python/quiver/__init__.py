"""quiver from Python: compile a pipeline YAML file, look at the plan, run it
and get its tables back as ``pyarrow.Table`` without copying them.

>>> import quiver
>>> plan = quiver.compile("pipelines/vn30.yaml", params={"symbols": ["FPT", "VNM"]})
>>> run = plan.run()
>>> run.tables["save_index"]          # doctest: +SKIP

The engine is the same Rust code as the ``quiver`` command (``python -m
quiver`` runs that command); runs release the GIL.
"""

from __future__ import annotations

import datetime as _dt
import inspect as _inspect
import json as _json
import os as _os
import sys as _sys
import time as _time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence, TypeVar

import pyarrow as _pa

from . import _native
from ._native import PipelineError, Table

__all__ = [
    "Node",
    "PipelineError",
    "Plan",
    "Run",
    "RunError",
    "Table",
    "TransientError",
    "compile",
    "operator",
    "ops",
    "__version__",
]

__version__: str = _native.__version__


class RunError(RuntimeError):
    """A run in which a node failed; ``run`` is the :class:`Run`, with its
    report and the tables that were produced."""

    def __init__(self, run: "Run") -> None:
        super().__init__(run.summary)
        self.run = run


class TransientError(Exception):
    """Raised by a Python operator for a failure that may pass when tried
    again (a timeout, a throttled service): the node's ``retries`` apply.
    Any other exception fails the node at once."""


_F = TypeVar("_F", bound=Callable[..., Any])

# Python operators registered in this process: name -> (function, options).
_python_operators: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def operator(
    name: str,
    *,
    pure: bool = True,
    version: int = 1,
    inputs: int | None = None,
) -> Callable[[_F], _F]:
    """Register a Python function as operator ``name`` for pipelines
    compiled from Python afterwards::

        @quiver.operator("my.score")
        def score(inputs: dict[str, pa.Table], *, window: int = 5) -> pa.Table: ...

    The function takes the node's inputs (input name -> ``pyarrow.Table``)
    and its ``with:`` parameters as keywords, and returns anything with
    ``__arrow_c_stream__`` (a ``pyarrow.Table``, a Polars frame). Its
    keyword parameters are the ones YAML may set; those without a default
    are required. ``pure``: the same parameters and inputs give the same
    table, so identical nodes are merged (``pure=False`` never merges, as a
    sink). Bump ``version`` when the output for the same parameters
    changes. ``inputs``: how many inputs a node must have (any by default).
    It runs on a thread of the run's budget holding the GIL only while
    Python runs; raise :class:`TransientError` for failures worth a retry.
    Registering a name again replaces it.
    """

    def register(function: _F) -> _F:
        parameters = list(_inspect.signature(function).parameters.values())
        positional = (
            _inspect.Parameter.POSITIONAL_ONLY,
            _inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        if not parameters or parameters[0].kind not in positional:
            raise TypeError(
                f"operator {name!r}: the function's first parameter takes the inputs "
                "(a dict of input name -> pyarrow.Table)"
            )
        names: list[str] = []
        defaults: dict[str, Any] = {}
        for p in parameters[1:]:
            if p.kind in (_inspect.Parameter.VAR_POSITIONAL, _inspect.Parameter.VAR_KEYWORD):
                raise TypeError(
                    f"operator {name!r}: name each parameter (*args and **kwargs cannot be "
                    "checked against the pipeline's with:)"
                )
            names.append(p.name)
            if p.default is not p.empty:
                defaults[p.name] = p.default
        try:
            defaults_json = _json.dumps(_yaml_value(defaults))
        except TypeError as e:
            raise TypeError(
                f"operator {name!r}: parameter defaults must be JSON values: {e}"
            ) from None
        _native.register_operator(
            name,
            function,
            pure,
            version,
            _inspect.getdoc(function) or "",
            names,
            defaults_json,
            inputs,
        )
        # Kept so that engines running parts elsewhere (quiver.ray) can
        # register the same operators in their workers.
        _python_operators[name] = (function, {"pure": pure, "version": version, "inputs": inputs})
        return function

    return register


@dataclass(frozen=True)
class Node:
    """One node of a compiled plan (after fan-outs and merging)."""

    id: str
    """The first name that declared it, e.g. ``features[FPT]@2026-01-05``."""
    op: str
    aliases: tuple[str, ...]
    """Every other declared name merged into this node."""
    params: dict[str, Any]
    """The operator's parameters as written."""
    inputs: dict[str, tuple[str, ...]]
    """Input name -> the ids of the nodes it reads."""


def _yaml_value(value: Any) -> Any:
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, _os.PathLike):
        return _os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_value(v) for v in value]
    return value


def compile(
    path: str | _os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    merge: bool = True,
) -> "Plan":
    """Compile the pipeline file at ``path``.

    ``params`` sets parameters by name, as ``--set`` does (dates may be
    ``datetime.date``). ``merge=False`` keeps identical nodes apart (the
    naive way). Raises :class:`PipelineError` carrying every problem found;
    its ``diagnostics`` are dicts with ``file``, ``line``, ``column``,
    ``path`` and ``message``.
    """
    sets = [
        f"{name}={_json.dumps(_yaml_value(value))}"
        for name, value in (params or {}).items()
    ]
    return _compile_sets(path, sets, merge)


def _compile_sets(
    path: str | _os.PathLike[str],
    sets: Sequence[str],
    merge: bool = True,
    params_file: str | _os.PathLike[str] | None = None,
) -> "Plan":
    """``compile`` with ``--set`` texts and a ``--params`` file as the
    command takes them."""
    path, file = _os.fspath(path), None if params_file is None else _os.fspath(params_file)
    plan = Plan(_native.compile(path, list(sets), merge, file))
    absolute = None if file is None else _os.path.abspath(file)
    plan._source = (_os.path.abspath(path), tuple(sets), merge, absolute)
    return plan


def ops() -> list[dict[str, Any]]:
    """The operators a pipeline can name: ``name``, ``doc``, ``effect``,
    ``workload``, ``version`` and ``params_schema`` (a JSON Schema)."""
    out = []
    for op in _native.ops():
        op = dict(op)
        op["params_schema"] = _json.loads(op["params_schema"] or "{}")
        out.append(op)
    return out


class Plan:
    """A compiled pipeline: its nodes, what compiling merged, pictures of
    it, and runs."""

    def __init__(self, native: "_native.Plan") -> None:
        self._native = native
        # How it was compiled (path, --set texts, merge, params file), so
        # that another process can compile the same plan.
        self._source: tuple[str, tuple[str, ...], bool, str | None] | None = None

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self._native.name

    @cached_property
    def params(self) -> dict[str, Any]:
        """The parameter values the plan was compiled with."""
        return _json.loads(self._native.params_json)

    @cached_property
    def nodes(self) -> list[Node]:
        """The nodes in dependency order (every node after its inputs)."""
        return [
            Node(
                id=n["id"],
                op=n["op"],
                aliases=tuple(n["aliases"]),
                params=_json.loads(n["params"]),
                inputs={k: tuple(v) for k, v in n["inputs"].items()},
            )
            for n in self._native.nodes
        ]

    @property
    def stats(self) -> dict[str, Any]:
        """``declared`` nodes, ``unique`` after merging, and ``merged``:
        declared nodes merged away, per operator."""
        return self._native.stats

    def parts(self, outputs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """How :func:`quiver.ray.run` cuts the plan into tasks: each a dict
        of ``key`` (the fan-out key its nodes share, or None), ``nodes``
        (ids), ``reads`` (ids of other tasks' nodes) and ``pools`` (per
        resource, the slots it may use), each after those it reads."""
        return self._native_parts(outputs)["parts"]

    def _native_parts(self, outputs: Sequence[str] | None) -> dict[str, Any]:
        return _native.plan_parts(self._native, None if outputs is None else list(outputs))

    def render(self, format: str = "text") -> str:
        """The plan as ``text``, ``dot``, ``mermaid``, ``json``, ``svg`` or
        ``html`` (a self-contained page)."""
        return self._native.render(format)

    def run(
        self,
        *,
        max_workers: int | None = None,
        outputs: Sequence[str] | None = None,
        sequential: bool = False,
        progress: str | None = None,
        check: bool = True,
        cache: bool = True,
        cache_dir: str | _os.PathLike[str] | None = None,
    ) -> "Run":
        """Run the plan; the GIL is released while it runs.

        ``outputs`` names the nodes whose tables to keep: a node's id or
        alias, or a stage's name for all its fan-out and date instances
        (``"features"``). By default, every node nothing else reads.
        With ``cache`` (the default) the run uses the cache as ``quiver
        run`` does: nodes cached and unchanged are loaded (those whose
        tables are kept) or left, what runs is stored. ``cache_dir``: the
        cache folder (default: the pipeline's ``cache: {dir}``, else
        ``.quiver/cache`` under the working directory); ``cache=False``
        runs every node, as ``quiver run --no-cache``.
        ``max_workers``: compute nodes at once (default: the cores).
        ``progress``: ``"bars"``, ``"lines"`` or ``"quiet"``, or
        ``"notebook"``: one line of nodes done, rewritten in place on
        ``sys.stderr`` (which a notebook cell shows). By default bars when
        stderr is a terminal, the notebook line inside Jupyter, and nothing
        otherwise. With ``check`` (the default) a failed
        run raises :class:`RunError`. Ctrl-C cancels the run and raises
        ``KeyboardInterrupt``.
        """
        mode, line = _progress(progress, self.name)
        try:
            native = self._native.run(
                max_workers=max_workers,
                outputs=None if outputs is None else list(outputs),
                sequential=sequential,
                progress=mode,
                on_progress=line,
                cache=cache,
                cache_dir=None if cache_dir is None else _os.fspath(cache_dir),
            )
        finally:
            if line is not None:
                line.end()
        run = Run(native)
        if check and not run.succeeded:
            raise RunError(run)
        return run

    def __repr__(self) -> str:
        return repr(self._native)


class _ProgressLine:
    """Progress drawn by Python: one line rewritten in place on
    ``sys.stderr``, which a notebook cell shows (the engine's own bars
    write to the process's stderr, which Jupyter does not)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = _time.monotonic()
        self.last: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        self.last = (done, total)
        _sys.stderr.write(
            f"\r{self.name}: {done}/{total} nodes, {_time.monotonic() - self.start:.1f}s"
        )
        _sys.stderr.flush()

    def end(self) -> None:
        if self.last is not None:
            _sys.stderr.write("\n")
            _sys.stderr.flush()


def _progress(progress: str | None, name: str) -> tuple[str, _ProgressLine | None]:
    """The engine's progress mode, and the line Python draws if any."""
    if progress is None:
        if _sys.stderr.isatty():
            progress = "bars"
        elif "ipykernel" in _sys.modules:
            progress = "notebook"
        else:
            progress = "quiet"
    if progress == "notebook":
        return "quiet", _ProgressLine(name)
    return progress, None


class Run:
    """A finished run: whether it succeeded, its report, its tables."""

    def __init__(self, native: "_native.Run") -> None:
        self._native = native

    @property
    def succeeded(self) -> bool:
        return self._native.succeeded

    @cached_property
    def tables(self) -> dict[str, _pa.Table]:
        """The kept outputs, node id -> ``pyarrow.Table``, sharing the run's
        buffers (no copy is made)."""
        return {
            name: _pa.table(table) for name, table in self._native.tables.items()
        }

    @cached_property
    def report(self) -> dict[str, Any]:
        """The run report, as ``quiver run`` saves it (``totals``, and per
        node its status, times, attempts, rows and error)."""
        return _json.loads(self._native.report_json)

    @property
    def summary(self) -> str:
        """The summary ``quiver run`` prints."""
        return self._native.summary

    def __repr__(self) -> str:
        return repr(self._native)
