"""The Python API over the real engine: compile, plans, runs, tables."""

import datetime as dt
import re
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest

import quiver

SMALL = {
    "symbols": ["FPT", "VNM", "HPG"],
    "weight_cap": 0.5,
    "start_date": dt.date(2026, 1, 5),
    "end_date": dt.date(2026, 1, 6),
}


def test_compile_merges_and_describes_the_plan(repo):
    plan = quiver.compile(repo / "pipelines/vn30.yaml", params=SMALL)
    assert plan.name == "vn30"
    assert plan.params["symbols"] == ["FPT", "VNM", "HPG"]
    assert plan.params["end_date"] == "2026-01-06"
    stats = plan.stats
    # Each (dataset, symbol, day) fetch is declared by several stages and
    # runs once.
    assert stats["declared"] > stats["unique"] == len(plan.nodes)
    assert stats["merged"]["fetch.synthetic"] > 0
    ids = {n.id for n in plan.nodes}
    assert "features[FPT]@2026-01-05" in ids
    position = {n.id: i for i, n in enumerate(plan.nodes)}
    for node in plan.nodes:
        for producers in node.inputs.values():
            assert all(position[p] < position[node.id] for p in producers)
    weights = next(n for n in plan.nodes if n.id == "weights@2026-01-05")
    assert weights.op == "index.rebalance"
    assert weights.params == {"weight_cap": 0.5}


@pytest.mark.parametrize("fmt, marker", [
    ("text", "features[FPT]@2026-01-05"),
    ("dot", "digraph"),
    ("mermaid", "flowchart"),
    ("json", '"nodes"'),
    ("svg", "<svg"),
    ("html", "<html"),
])
def test_render_formats(repo, fmt, marker):
    plan = quiver.compile(repo / "pipelines/vn30.yaml", params=SMALL)
    assert marker in plan.render(fmt)


def test_render_rejects_an_unknown_format(repo):
    plan = quiver.compile(repo / "pipelines/vn30.yaml", params=SMALL)
    with pytest.raises(ValueError, match="expected text, dot"):
        plan.render("png")


def test_diagnostics_come_together_with_positions(in_tmp):
    bad = in_tmp / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        pipeline: bad
        nodes:
          a:
            op: fetch.synthetc
            with: {symbol: FPT}
          b:
            op: transform.sql
            inputs: {x: nowhere}
            with: {query: "SELECT 1"}
        """))
    with pytest.raises(quiver.PipelineError) as caught:
        quiver.compile(bad)
    diags = caught.value.diagnostics
    assert len(diags) >= 2, diags
    by_line = {d["line"]: d for d in diags}
    assert "fetch.synthetic" in by_line[4]["message"]  # did you mean
    assert by_line[4]["column"] >= 1
    assert "nowhere" in by_line[8]["message"]
    assert all(d["file"].endswith("bad.yaml") for d in diags)
    assert "bad.yaml:4:" in str(caught.value)


def test_a_bad_parameter_value_is_a_pipeline_error(repo):
    with pytest.raises(quiver.PipelineError) as caught:
        quiver.compile(repo / "pipelines/vn30.yaml", params={"interval": "1m"})
    assert "5-minute" in str(caught.value)


def test_run_returns_pyarrow_tables_equal_to_what_the_sink_wrote(repo, in_tmp):
    plan = quiver.compile(
        repo / "pipelines/vn30.yaml", params={**SMALL, "out_dir": str(in_tmp / "out")}
    )
    run = plan.run(outputs=["vn30", "weights", "session@2026-01-06"])
    assert run.succeeded
    # A stage's name is its whole table, every day; a day's node its day.
    assert set(run.tables) == {"vn30", "weights", "session@2026-01-06"}
    index = run.tables["vn30"]
    assert isinstance(index, pa.Table)
    assert sorted(set(index.column("date").to_pylist())) == [dt.date(2026, 1, 5), dt.date(2026, 1, 6)]
    assert {"open", "high", "low", "close", "net_whale_flow"} <= set(index.column_names)
    for day in ["2026-01-05", "2026-01-06"]:
        written = pq.read_table(in_tmp / f"out/index/date={day}/part-0.parquet")
        mine = index.filter(pa.compute.equal(index.column("date"), pa.scalar(dt.date.fromisoformat(day))))
        columns = [c for c in written.column_names if c != "date"]
        assert written.num_rows == mine.num_rows > 40
        assert mine.select(columns).equals(written.select(columns)), day
    weights = run.tables["weights"].to_pydict()
    assert sorted(set(weights["symbol"])) == ["FPT", "HPG", "VNM"]
    assert all(w <= 0.5 + 1e-12 for w in weights["weight"])
    assert run.tables["session@2026-01-06"].num_rows > 0


def test_a_run_goes_through_the_cache_as_the_command_does(repo, in_tmp):
    def run(**options):
        plan = quiver.compile(repo / "pipelines/vn30.yaml", params={**SMALL, "out_dir": "out"})
        run = plan.run(outputs=["vn30", "weights"], progress="quiet", **options)
        nodes = run.report["nodes"]
        # A stage's days put together (transform.concat) are remade from
        # them, not stored; anything else computed is counted.
        computed = {n["op"] for n in nodes if n["attempts"] > 0} - {"transform.concat"}
        return run, {n["status"] for n in nodes}, computed

    first, statuses, _ = run()
    assert "cached" not in statuses
    assert (in_tmp / ".quiver/cache/index.sqlite").is_file()
    # Nothing changed: the tables asked for come from the cache, the rest
    # is left there, and nothing is computed again.
    second, statuses, computed = run()
    assert computed == set() and "cached" in statuses, statuses
    for name in ["vn30", "weights"]:
        assert second.tables[name].equals(first.tables[name]), name
    # Without the cache, every node runs; elsewhere, a cache of its own.
    _, statuses, _ = run(cache=False)
    assert "cached" not in statuses
    _, statuses, _ = run(cache_dir=in_tmp / "elsewhere")
    assert "cached" not in statuses
    assert (in_tmp / "elsewhere/index.sqlite").is_file()


def test_tables_cross_without_a_copy(repo, in_tmp):
    plan = quiver.compile(repo / "pipelines/vn30.yaml", params={**SMALL, "out_dir": "out"})
    run = plan.run(outputs=["features[FPT]@2026-01-05"])
    native = run._native.tables["features[FPT]@2026-01-05"]
    table = pa.table(native)
    chunk = table.column("close").chunk(0)
    arrow_addresses = [b.address for b in chunk.buffers() if b is not None]
    assert arrow_addresses == native.buffer_addresses("close")


def test_tables_come_in_without_a_copy():
    source = pa.table({"x": pa.array(range(1000), pa.int64()), "s": ["a", "b"] * 500})
    table = quiver.Table.from_arrow(source)
    assert len(table) == 1000 and table.column_names == ["x", "s"]
    back = pa.table(table)
    assert back.equals(source)
    x = source.column("x").chunk(0).buffers()[1].address
    assert x in table.buffer_addresses("x")
    with pytest.raises(TypeError, match="__arrow_c_stream__"):
        quiver.Table.from_arrow([1, 2, 3])


def test_unknown_output_names_say_what_exists(repo):
    plan = quiver.compile(repo / "pipelines/vn30.yaml", params=SMALL)
    with pytest.raises(KeyError, match="did you mean"):
        plan.run(outputs=["wieghts"])


def test_default_outputs_are_the_nodes_nothing_reads(repo, in_tmp):
    plan = quiver.compile(repo / "pipelines/vn30.yaml", params={**SMALL, "out_dir": "out"})
    run = plan.run()
    # The unions of a stage's days (`vn30`, `features[FPT]`) run only when
    # asked for; what is left unread is the sinks' days.
    assert set(run.tables) == {
        f"{sink}@{day}" for sink in ["save_features", "save_index"]
        for day in ["2026-01-05", "2026-01-06"]
    }
    report = run.report
    assert report["complete"] is True
    assert report["totals"]["executions_by_op"]["fetch.synthetic"] > 0
    assert "executed" in run.summary


def test_a_failed_run_raises_with_the_run(in_tmp):
    path = in_tmp / "flaky.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: flaky
        nodes:
          prices:
            op: fetch.synthetic
            with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09, fail_rate: 1.0}
        """))
    plan = quiver.compile(path)
    with pytest.raises(quiver.RunError) as caught:
        plan.run()
    run = caught.value.run
    assert not run.succeeded
    node = run.report["nodes"][0]
    assert node["status"] == "failed" and "synthetic failure" in node["error"]["message"]
    assert run.tables == {}
    assert not plan.run(check=False).succeeded


def test_ops_lists_operators_with_their_parameters():
    ops = {op["name"]: op for op in quiver.ops()}
    assert {"fetch.synthetic", "index.level", "sink.parquet"} <= set(ops)
    synthetic = ops["fetch.synthetic"]
    assert synthetic["effect"] == "pure" and ops["sink.parquet"]["effect"] == "sink"
    assert "symbol" in synthetic["params_schema"]["properties"]


def test_python_dash_m_is_the_command(repo, in_tmp):
    ok = subprocess.run(
        [sys.executable, "-m", "quiver", "validate", str(repo / "pipelines/vn30.yaml")],
        capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr
    bad = in_tmp / "bad.yaml"
    bad.write_text("pipeline: bad\nnodes:\n  a: {op: nope}\n")
    failed = subprocess.run(
        [sys.executable, "-m", "quiver", "validate", str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert "bad.yaml:3:" in failed.stderr and "1 error found" in failed.stderr
    usage = subprocess.run([sys.executable, "-m", "quiver", "frobnicate"], capture_output=True, text=True)
    assert usage.returncode == 2
    listed = subprocess.run([sys.executable, "-m", "quiver", "ops"], capture_output=True, text=True)
    assert listed.returncode == 0 and "fetch.synthetic" in listed.stdout


def test_notebook_progress_is_one_line_on_sys_stderr(repo, in_tmp, capsys):
    """In a notebook the engine's bars would go to the kernel's terminal;
    progress="notebook" (the default inside Jupyter) draws on sys.stderr,
    which the cell shows."""
    plan = quiver.compile(repo / "pipelines" / "vn30.yaml", {**SMALL, "out_dir": "out"})
    run = plan.run(progress="notebook")
    err = capsys.readouterr().err
    draws = err.split("\r")[1:]
    assert draws, err
    total = len(plan.nodes)
    assert re.fullmatch(rf"vn30: {total}/{total} nodes, \d+\.\ds\n", draws[-1]), draws[-1]
    assert all(re.fullmatch(rf"vn30: \d+/{total} nodes, \d+\.\ds\n?", d) for d in draws)
    assert run.succeeded


def test_progress_shows_in_a_real_notebook_cell(repo, in_tmp):
    """The same, in a Jupyter kernel: a cell that runs a plan shows the
    progress line in its own output, with no progress argument."""
    import nbclient
    import nbformat

    notebook = nbformat.v4.new_notebook()
    params = {**SMALL, "out_dir": str(in_tmp / "out")}
    notebook.cells.append(nbformat.v4.new_code_cell(textwrap.dedent(f"""\
        import datetime, quiver
        plan = quiver.compile({str(repo / "pipelines" / "vn30.yaml")!r}, {params!r})
        print(plan.run().succeeded, len(plan.nodes))
        """)))
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3",
        resources={"metadata": {"path": str(in_tmp)}},
    )
    client.execute()
    outputs = notebook.cells[0].outputs
    stdout = "".join(o["text"] for o in outputs if o.get("name") == "stdout")
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    succeeded, total = stdout.split()
    assert succeeded == "True"
    assert re.search(rf"\rvn30: {total}/{total} nodes, \d+\.\ds\n", stderr), stderr
