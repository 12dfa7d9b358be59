"""The Rust side of the package (``quiver._native``); use ``quiver``."""

import os
from typing import Any, Callable

__version__: str

class PipelineError(ValueError):
    """A pipeline that does not compile."""

    diagnostics: list[dict[str, Any]]
    """Every problem found: ``file``, ``line``, ``column`` (``None`` when the
    problem has no position), ``path`` (the YAML path) and ``message``."""

class Table:
    """A table a run produced; exports the Arrow PyCapsule stream interface."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...
    @staticmethod
    def from_arrow(data: object) -> "Table":
        """Any object with ``__arrow_c_stream__``, its buffers shared."""
    @property
    def num_rows(self) -> int: ...
    @property
    def column_names(self) -> list[str]: ...
    def buffer_addresses(self, name: str) -> list[int]:
        """Addresses of the buffers behind column ``name``."""
    def __len__(self) -> int: ...

class Plan:
    @property
    def name(self) -> str: ...
    @property
    def params_json(self) -> str: ...
    @property
    def nodes(self) -> list[dict[str, Any]]: ...
    @property
    def stats(self) -> dict[str, Any]: ...
    def render(self, format: str = "text") -> str: ...
    def run(
        self,
        max_workers: int | None = None,
        outputs: list[str] | None = None,
        sequential: bool = False,
        progress: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> "Run": ...

class Run:
    @property
    def succeeded(self) -> bool: ...
    @property
    def tables(self) -> dict[str, Table]: ...
    @property
    def report_json(self) -> str: ...
    @property
    def summary(self) -> str: ...

def compile(
    path: str, sets: list[str] = ..., merge: bool = True, params_file: str | None = None
) -> Plan: ...
def ops() -> list[dict[str, Any]]: ...
def op_doc(name: str) -> str: ...
def cli_main(argv: list[str]) -> int: ...
def register_operator(
    name: str,
    function: object,
    pure: bool,
    version: int,
    doc: str,
    params: list[str],
    defaults_json: str,
    inputs: int | None = None,
) -> None: ...
def plan_parts(
    plan: Plan,
    outputs: list[str] | None = None,
    cache: bool = False,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The plan cut into the parts Ray tasks run: ``parts`` (``key``,
    ``nodes``, ``reads``, ``pools``, and with ``cache`` ``steps``),
    ``outputs``, ``aliases``, ``pools`` and ``keep_going``; with ``cache``
    also ``cache_dir`` and ``cache`` (a :class:`CachedRun`)."""

class CachedRun:
    """A Ray run through the cache, kept by its driver for ``assemble``."""
def run_part(
    plan: Plan,
    nodes: list[str],
    given: dict[str, Table],
    nothing: dict[str, str],
    keep: list[str],
    pools: dict[str, tuple[int, int]],
    max_workers: int = 1,
    steps: str | None = None,
    cache_dir: str | None = None,
) -> Run:
    """Runs one part, its inputs from other parts handed in; with
    ``steps``, through the cache in ``cache_dir``."""
def assemble(
    plan: Plan,
    outputs: list[str] | None,
    pieces: list[tuple[list[str], str, float]],
    lost: dict[str, str],
    tables: list[tuple[str, Table]],
    wall: float,
    cancelled: bool,
    cache: CachedRun | None = None,
) -> Run:
    """One run from the reports of its parts; with ``cache``, recorded
    in the cache."""
