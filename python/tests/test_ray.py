"""quiver on a local Ray cluster (2 CPUs, started once for the module): the
same tables and files as a run in one process, every node once, a killed
worker recovered, failures reported as a local run reports them, and a
resource's concurrency held across tasks."""

import os
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quiver

ray = pytest.importorskip("ray")
import quiver.ray  # noqa: E402

# The operators below travel to the workers by value: this test module is
# not importable there.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@quiver.operator("test.die_once", inputs=1)
def die_once(inputs, *, marker: str):
    """Kills its own process the first time it runs (when `marker` does
    not exist yet, writing its pid there); passes its input on after."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    (table,) = inputs.values()
    return table


@quiver.operator("test.stamp", inputs=1)
def stamp(inputs, *, log: str):
    """Appends when it ran to `log` (one line per call: start end), taking
    a while; passes its input on."""
    start = time.time()
    time.sleep(0.3)
    with open(log, "a") as f:
        f.write(f"{start} {time.time()}\n")
    (table,) = inputs.values()
    return table


@quiver.operator("test.refuse", inputs=1)
def refuse(inputs, *, symbol: str):
    """Fails for VNM."""
    if symbol == "VNM":
        raise ValueError(f"no model for {symbol}")
    (table,) = inputs.values()
    return table


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def chain(path, middle, extra=""):
    """Per symbol: prices → `middle` (YAML of one node's op and with,
    reading `p`) → returns; then every symbol aligned and saved."""
    return write(path, f"""\
        pipeline: chain
        {extra}
        params:
          symbols: {{type: list, default: [FPT, VNM, HPG, MWG]}}
          out: {{type: string, default: out.parquet}}
        resources:
          api: {{concurrency: 1}}
        nodes:
          prices:
            foreach: symbol in ${{symbols}}
            op: fetch.synthetic
            with: {{dataset: prices, symbol: "${{symbol}}", start: 2026-01-05, end: 2026-01-30}}
          middle:
            foreach: symbol in ${{symbols}}
            inputs: {{p: "prices[${{symbol}}]"}}
            {middle}
          returns:
            foreach: symbol in ${{symbols}}
            op: transform.sql
            inputs: {{m: "middle[${{symbol}}]"}}
            with: {{query: "SELECT date, close / lag(close) OVER (ORDER BY date) - 1 AS r FROM m ORDER BY date"}}
          aligned:
            op: align.timestamps
            inputs: {{returns: "returns[*]"}}
            with: {{key: symbol, time: date, layout: long, join: outer}}
          save: {{op: sink.parquet, inputs: [aligned], with: {{path: "${{out}}"}}}}
        """)


def test_symbols_on_ray_equal_the_local_run_table_for_table(repo, in_tmp):
    os.chdir(repo)
    path = repo / "pipelines" / "symbols.yaml"
    every = [node.id for node in quiver.compile(path).nodes]
    # Without the cache: every node runs, in both.
    local = quiver.compile(path, {"out": str(in_tmp / "local.parquet")}).run(
        outputs=every, cache=False)
    plan = quiver.compile(path, {"out": str(in_tmp / "ray.parquet")})
    on_ray = quiver.ray.run(plan, outputs=every, cache=False)

    # One task for the shared CSV read, one per symbol, one for the fan-in
    # and its sink.
    parts = plan.parts()
    assert [p["key"] for p in parts] == [None, "AAPL", "GOOG", "IBM", "MSFT", "FB", None]
    assert parts[-1]["nodes"] == ["aligned", "save"]
    assert sorted(on_ray.tables) == sorted(local.tables) == sorted(every)
    for node in every:
        if node != "save":  # its summary names the file it wrote
            assert on_ray.tables[node].equals(local.tables[node]), node
    assert pq.read_table(in_tmp / "ray.parquet").equals(pq.read_table(in_tmp / "local.parquet"))
    # Every node ran exactly once, as in the local run.
    nodes = on_ray.report["nodes"]
    assert [(n["id"], n["status"], n["attempts"]) for n in nodes] == [
        (n, "succeeded", 1) for n in every
    ]
    totals, expected = on_ray.report["totals"], local.report["totals"]
    assert totals["executions_by_op"] == expected["executions_by_op"]
    assert totals["merged_avoided"] == expected["merged_avoided"] == 4


def test_a_killed_worker_is_retried_and_the_output_is_the_same(in_tmp):
    marker = in_tmp / "died"
    middle = f"op: test.die_once\n            with: {{marker: '{marker}'}}"
    path = chain(in_tmp / "die.yaml", middle)
    on_ray = quiver.ray.run(path, {"out": "ray.parquet"}, max_retries=2)
    # The first attempt killed its worker...
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # ...and the retry gave what one process gives (the marker now exists,
    # so nothing dies there).
    local = quiver.compile(path, {"out": "local.parquet"}).run(cache=False)
    assert pq.read_table("ray.parquet").equals(pq.read_table("local.parquet"))
    assert on_ray.succeeded and on_ray.report["totals"]["executed"] == local.report["totals"]["executed"]
    # Each symbol's die_once node counts once, the retried one included:
    # the report is the attempt that finished.
    assert on_ray.report["totals"]["executions_by_op"]["test.die_once"] == 4


def test_a_task_lost_for_good_fails_its_nodes_and_the_run(in_tmp):
    marker = in_tmp / "died"
    middle = f"op: test.die_once\n            with: {{marker: '{marker}'}}"
    path = chain(in_tmp / "die.yaml", middle)
    with pytest.raises(quiver.RunError) as caught:
        quiver.ray.run(path, max_retries=0)
    report = caught.value.run.report
    status = {n["id"]: n for n in report["nodes"]}
    # The task that reaches die_once first is lost (FPT's or VNM's, or
    # both: two start at once on the two CPUs).
    lost = [n for id, n in status.items() if id.startswith("middle[") and n["status"] == "failed"]
    assert lost, status
    assert all("its Ray task failed" in n["error"]["message"] for n in lost)
    assert status["save"]["status"] == "not_run"
    assert not os.path.exists("out.parquet")


def test_a_failing_node_on_ray_fails_the_run_as_locally(in_tmp):
    middle = "op: test.refuse\n            with: {symbol: '${symbol}'}"
    path = chain(in_tmp / "refuse.yaml", middle)
    with pytest.raises(quiver.RunError) as caught:
        quiver.ray.run(path)
    status = {n["id"]: n for n in caught.value.run.report["nodes"]}
    failed = status["middle[VNM]"]
    assert failed["status"] == "failed"
    assert "no model for VNM" in failed["error"]["message"]
    assert status["aligned"]["status"] == "not_run"

    # With keep_going the others go on, and the fan-in aligns what came.
    path = chain(in_tmp / "going.yaml", middle, extra="keep_going: true")
    run = quiver.ray.run(path, check=False)
    status = {n["id"]: n for n in run.report["nodes"]}
    assert not run.succeeded
    assert status["returns[VNM]"]["status"] == "skipped"
    assert status["aligned"]["status"] == "succeeded"
    assert status["aligned"]["missing"] == ["VNM"]
    assert set(pq.read_table("out.parquet")["symbol"].to_pylist()) == {"FPT", "HPG", "MWG"}


def test_a_resource_concurrency_holds_across_tasks(in_tmp):
    log = in_tmp / "calls"
    middle = f"op: test.stamp\n            resource: api\n            with: {{log: '{log}'}}"
    path = chain(in_tmp / "stamp.yaml", middle.replace("{log:", "{log:"))
    run = quiver.ray.run(path)
    assert run.succeeded
    calls = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(calls) == 4
    # `api` allows one call at a time: no two calls overlap, though two
    # tasks could run at once on the two CPUs.
    for (_, end), (start, _) in zip(calls, calls[1:]):
        assert start >= end, calls


def test_python_m_quiver_runs_on_ray_with_engine_ray(repo, in_tmp):
    import subprocess

    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "quiver", "run", str(repo / "pipelines" / "symbols.yaml"),
               "--engine", "ray", "--address", address, "--set", f"out={in_tmp / 'ray.parquet'}",
               "--report", "report.json", "--cache-dir", str(in_tmp / "cache")]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "us_daily_features: executed 13 nodes" in done.stderr
    assert "report: report.json" in done.stderr
    local = quiver.compile(repo / "pipelines" / "symbols.yaml",
                           {"out": str(in_tmp / "local.parquet")})
    os.chdir(repo)
    local.run(cache=False)
    assert pq.read_table(in_tmp / "ray.parquet").equals(pq.read_table(in_tmp / "local.parquet"))
    # The report is a run report as `quiver report` reads it.
    shown = subprocess.run([sys.executable, "-m", "quiver", "report", str(repo / "report.json")],
                           cwd=in_tmp, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "save" in shown.stdout
    os.remove(repo / "report.json")

    # What the Ray engine does not do is refused, as the command refuses.
    refused = subprocess.run(command[:7] + ["--sequential"], cwd=repo, capture_output=True,
                             text=True)
    assert refused.returncode == 2
    assert "unrecognized arguments: --sequential" in refused.stderr


def test_vn30_on_ray_equals_the_local_run_day_by_day(repo, in_tmp):
    """Date partitions, per-day fan-ins and the index carried from day to
    day: parts of many kinds, and the same tables and files."""
    import datetime as dt
    import glob

    params = {"symbols": ["FPT", "VNM", "HPG"], "weight_cap": 0.5,
              "start_date": dt.date(2026, 1, 5), "end_date": dt.date(2026, 1, 7)}
    path = repo / "pipelines" / "vn30.yaml"
    wanted = ["vn30", "features"]
    local = quiver.compile(path, {**params, "out_dir": "local"}).run(outputs=wanted)
    plan = quiver.compile(path, {**params, "out_dir": "ray"})
    parts = plan.parts(outputs=wanted)
    assert {p["key"] for p in parts} >= {"FPT", "VNM", "HPG", None}
    on_ray = quiver.ray.run(plan, outputs=wanted)
    assert sorted(on_ray.tables) == sorted(local.tables)
    for name, table in local.tables.items():
        assert on_ray.tables[name].equals(table), name
    files = sorted(glob.glob("local/**/*.parquet", recursive=True))
    assert len(files) == 6  # features and index, three days each
    for file in files:
        assert pq.read_table(file.replace("local/", "ray/", 1)).equals(pq.read_table(file)), file


def test_a_pipeline_edited_between_runs_is_compiled_again_in_the_workers(in_tmp):
    """Workers keep the plans they compiled; an edit makes another plan,
    which they compile afresh rather than run the old one."""
    path = chain(in_tmp / "edit.yaml", "op: transform.sql\n            with: {query: 'SELECT * FROM p'}")
    first = quiver.ray.run(path, outputs=["returns[FPT]"]).tables["returns[FPT]"]
    path.write_text(path.read_text().replace("close / lag(close)", "close * 2 / lag(close)"))
    second = quiver.ray.run(path, outputs=["returns[FPT]"]).tables["returns[FPT]"]
    assert first["date"].equals(second["date"])
    r1, r2 = first["r"].to_pylist(), second["r"].to_pylist()
    assert r1[0] is None and r2[0] is None
    assert all(abs(b - (2 * (a + 1) - 1)) < 1e-12 for a, b in zip(r1[1:], r2[1:]))


def test_a_ray_run_goes_through_the_cache_as_a_local_run_does(repo, in_tmp):
    """Workers store what they compute in packs of their own, merged per
    day when the run ends; a second run, on Ray or in one process, finds
    it all."""
    import datetime as dt

    params = {"symbols": ["FPT", "VNM", "HPG"], "weight_cap": 0.5, "out_dir": "out",
              "start_date": dt.date(2026, 1, 5), "end_date": dt.date(2026, 1, 7)}
    path = repo / "pipelines" / "vn30.yaml"

    def statuses(run):
        return {n["status"] for n in run.report["nodes"]}

    def computed(run):
        # A stage's days put together (transform.concat) are remade, not
        # stored: everything else comes from the cache.
        return {n["op"] for n in run.report["nodes"] if n["attempts"] > 0} - {"transform.concat"}

    cold = quiver.ray.run(quiver.compile(path, params), outputs=["vn30"])
    assert "cached" not in statuses(cold)
    packs = in_tmp / ".quiver" / "cache" / "packs"
    days = sorted(p.name for p in packs.iterdir())
    assert "2026-01-06" in days
    for day in days:
        assert len(list((packs / day).iterdir())) <= 2, day

    again = quiver.ray.run(quiver.compile(path, params), outputs=["vn30"])
    assert computed(again) == set(), again.report["nodes"]
    assert "cached" in statuses(again)
    assert again.tables["vn30"].equals(cold.tables["vn30"])
    local = quiver.compile(path, params).run(outputs=["vn30"])
    assert computed(local) == set()
    assert local.tables["vn30"].equals(cold.tables["vn30"])
    # Without the cache, the same table computed afresh.
    fresh = quiver.ray.run(quiver.compile(path, params), outputs=["vn30"], cache=False)
    assert "cached" not in statuses(fresh)
    assert fresh.tables["vn30"].equals(cold.tables["vn30"])
