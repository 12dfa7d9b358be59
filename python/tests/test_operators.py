"""Python operators in YAML pipelines run from Python: merged when declared
twice, retried on TransientError, failing with their traceback."""

import textwrap

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import quiver

CALLS: dict[str, int] = {}


@quiver.operator("test.scale")
def scale(inputs, *, column: str, factor: float = 2.0):
    """Multiplies one column of the only input by ``factor``."""
    CALLS["test.scale"] = CALLS.get("test.scale", 0) + 1
    (table,) = inputs.values()
    return pa.table({"date": table["date"], column: pc.multiply(table[column], factor)})


@quiver.operator("test.flaky")
def flaky(inputs, *, fail_times: int):
    """Fails `fail_times` times with a transient error, then succeeds."""
    CALLS["test.flaky"] = CALLS.get("test.flaky", 0) + 1
    if CALLS["test.flaky"] <= fail_times:
        raise quiver.TransientError(f"busy (call {CALLS['test.flaky']})")
    return pa.table({"ok": [True]})


@quiver.operator("test.broken", inputs=0)
def broken(inputs):
    """Always fails."""
    raise ValueError("the model file is missing")


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def pipeline(path, nodes, keep_going=False):
    """A pipeline of five days of FPT's prices and `nodes` (YAML, indented
    as under `nodes:`)."""
    path.write_text(
        "pipeline: p\n"
        + ("keep_going: true\n" if keep_going else "")
        + "nodes:\n"
        + "  prices:\n"
        + "    op: fetch.synthetic\n"
        + "    with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09}\n"
        + textwrap.indent(textwrap.dedent(nodes), "  ")
    )
    return path


def test_a_python_operator_runs_from_yaml_and_merges_when_declared_twice(in_tmp):
    path = pipeline(in_tmp / "p.yaml", """\
          doubled:
            op: test.scale
            inputs: [prices]
            with: {column: close}
          again:
            op: test.scale
            inputs: [prices]
            with: {column: close, factor: 2.0}
          tripled:
            op: test.scale
            inputs: [prices]
            with: {column: close, factor: 3}
        """)
    plan = quiver.compile(path)
    # `again` is `doubled` with the default written out: one node.
    assert plan.stats["merged"] == {"test.scale": 1}
    doubled = next(n for n in plan.nodes if n.id == "doubled")
    assert doubled.aliases == ("again",)
    CALLS.clear()
    run = plan.run(outputs=["prices", "doubled", "again", "tripled"])
    assert CALLS["test.scale"] == 2
    assert run.report["totals"]["executions_by_op"]["test.scale"] == 2
    close = run.tables["prices"]["close"].to_pylist()
    assert len(close) == 5
    assert run.tables["doubled"]["close"].to_pylist() == [2.0 * c for c in close]
    assert run.tables["again"].equals(run.tables["doubled"])
    assert run.tables["tripled"]["close"].to_pylist() == [3.0 * c for c in close]
    assert "test.scale" in {op["name"] for op in quiver.ops()}


def test_parameters_are_checked_at_compile_time(in_tmp):
    path = pipeline(in_tmp / "p.yaml", """\
          bad:
            op: test.scale
            inputs: [prices]
            with: {colum: close}
        """)
    with pytest.raises(quiver.PipelineError) as caught:
        quiver.compile(path)
    messages = " | ".join(d["message"] for d in caught.value.diagnostics)
    assert "has no parameter 'colum'" in messages and "column" in messages


def test_transient_errors_are_retried(in_tmp):
    path = write(in_tmp / "p.yaml", """\
        pipeline: p
        nodes:
          flaky:
            op: test.flaky
            retries: {max_attempts: 3, backoff: 10ms}
            with: {fail_times: 2}
        """)
    CALLS.clear()
    run = quiver.compile(path).run()
    assert run.succeeded
    assert run.report["nodes"][0]["attempts"] == 3
    CALLS.clear()
    path.write_text(path.read_text().replace("fail_times: 2", "fail_times: 5"))
    with pytest.raises(quiver.RunError) as caught:
        quiver.compile(path).run()
    assert CALLS["test.flaky"] == 3
    assert "busy (call 3)" in caught.value.run.report["nodes"][0]["error"]["message"]


def test_a_failing_operator_fails_its_node_with_the_traceback(in_tmp):
    path = pipeline(in_tmp / "p.yaml", """\
          broken:
            op: test.broken
            retries: 3
        """, keep_going=True)
    with pytest.raises(quiver.RunError) as caught:
        quiver.compile(path).run(outputs=["prices"])
    run = caught.value.run
    nodes = {n["id"]: n for n in run.report["nodes"]}
    assert nodes["prices"]["status"] == "succeeded"
    assert run.tables["prices"].num_rows == 5
    broken = nodes["broken"]
    assert broken["status"] == "failed" and broken["attempts"] == 1
    message = broken["error"]["message"]
    assert "test.broken" in message and "ValueError: the model file is missing" in message
    assert "test_operators.py" in message  # the traceback


def test_registration_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="built-in"):
        quiver.operator("transform.sql")(lambda inputs: None)
    with pytest.raises(TypeError, match="name each parameter"):
        quiver.operator("test.kwargs")(lambda inputs, **params: None)
    with pytest.raises(TypeError, match="first parameter takes the inputs"):
        quiver.operator("test.none")(lambda: None)
