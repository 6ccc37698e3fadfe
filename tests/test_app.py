"""The dashboard, driven headless with Streamlit's AppTest against a run made by the real pipeline.

`pipeline_run` (tests/conftest.py) is a finished 2-iteration PaDA run (tiny
SLM, scripted LLM stand-in). Each test works on its own copy, so edits and
decisions made through the pages can be checked in the store afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pada.dashboard import frames, processes
from pada.store import RunStore

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["runs", "errors", "clusters", "strategies", "samples", "evolution", "compare", "cost"]


@pytest.fixture
def runs(pipeline_run, tmp_path, monkeypatch):
    """(runs root, run id): a private copy of the pipeline's run, served to the app via PADA_RUNS_DIR."""
    source_root, run_id = pipeline_run
    root = tmp_path / "runs"
    shutil.copytree(source_root / run_id, root / run_id)
    monkeypatch.setenv("PADA_RUNS_DIR", str(root))
    return root, run_id


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def open_page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, f"{name}: {[e.value for e in at.exception]}"
    return at


def no_errors(at: AppTest, page: str) -> None:
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert not at.error, f"{page}: {[e.value for e in at.error]}"


def charts(at: AppTest) -> list:
    return at.get("plotly_chart")


# ------------------------------------------------------------------ pages


def test_every_page_renders_the_pipeline_run(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    at = app()
    no_errors(at, "runs")
    assert at.title[0].value == "Runs"
    assert run_id in at.dataframe[0].value["run"].tolist()
    assert at.metric[0].value == "completed"

    open_page(at, "errors")
    no_errors(at, "errors")
    n_failures = store.failure_count(2)
    assert f"{n_failures} of {n_failures} validation failures" in at.caption[1].value
    assert len(at.dataframe[0].value) == min(n_failures, 25)

    open_page(at, "clusters")
    no_errors(at, "clusters")
    assert len(charts(at)) == 3  # scatter, elbow, sizes
    assert f"in {store.clustering(2).k} clusters" in at.caption[1].value

    open_page(at, "strategies")
    no_errors(at, "strategies")
    names = [w.value for w in at.text_input if w.key.startswith("name-1-")]
    assert names == [s.strategy_name for s in store.current_strategies(1)]  # the iteration with strategies

    open_page(at, "samples")
    no_errors(at, "samples")
    assert len(at.dataframe[0].value) == min(store.sample_count(1), 25)

    open_page(at, "evolution")
    no_errors(at, "evolution")
    assert len(charts(at)) == 2  # error bars, metric lines (no comparison yet)

    open_page(at, "cost")
    no_errors(at, "cost")
    calls = sum(row["calls"] for row in store.llm_usage(group_by=()))
    assert at.metric[0].value == f"{calls:,}"


def test_errors_page_filters_and_searches(runs):
    root, run_id = runs
    frame = frames.failures_frame(RunStore.open(run_id, runs_root=root), 2)
    word = frame["input"].iloc[0].split()[3]
    expected = frames.filter_failures(frame, search=word)
    at = open_page(app(), "errors")
    at.text_input(key="errors-search").input(word).run()
    no_errors(at, "errors")
    assert at.caption[1].value.startswith(f"{len(expected)} of {len(frame)} ")
    assert set(at.dataframe[0].value["failure_id"]) == set(expected["failure_id"])

    at.text_input(key="errors-search").input("no failure mentions this zebra-quokka").run()
    assert any("No failure matches" in i.value for i in at.info)

    cluster = int(frame["cluster"].dropna().iloc[0])
    at.text_input(key="errors-search").input("").run()
    at.selectbox(key="errors-cluster").set_value(cluster).run()
    assert set(at.dataframe[0].value["cluster"]) == {cluster}


def test_clusters_page_lists_a_clusters_failures(runs):
    root, run_id = runs
    points = frames.cluster_frame(RunStore.open(run_id, runs_root=root), 2)
    cluster, category = points.sort_values("cluster")[["cluster", "category"]].iloc[0]
    members = points[points["cluster"] == cluster]
    at = open_page(app(), "clusters")
    at.pills(key="clusters-pick-2").set_value([frames.cluster_label(cluster, category)]).run()
    no_errors(at, "clusters")
    assert sorted(at.dataframe[0].value["failure_id"]) == sorted(members["failure_id"][:25])


def test_editing_a_strategy_saves_a_version_and_revert_restores_it(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.forget_stage(1, "generate")  # as if paused for review after drafting: edits still take effect
    drafted = store.current_strategies(1)[0]
    cluster = drafted.cluster_id
    at = open_page(app(), "strategies")
    at.text_input(key="author").input("ana").run()  # the sidebar's reviewer name
    at.text_input(key=f"name-1-{cluster}-v1").input("Spell out each option")
    at.text_area(key=f"elements-1-{cluster}-v1").input("- compare every option\n- justify the pick\n")
    form_buttons = [b for b in at.button if b.label == "Save as new version"]
    form_buttons[0].click().run()
    no_errors(at, "strategies")

    history = store.strategy_history(1, cluster)
    assert [(v.version, v.source, v.author) for v in history] == [(1, "drafted", "agent"), (2, "edited", "ana")]
    edited = history[-1].strategy
    assert edited.strategy_name == "Spell out each option"
    assert edited.key_elements == ["compare every option", "justify the pick"]
    assert edited.generation_approach == drafted.generation_approach
    assert store.current_strategies(1)[0].strategy_name == "Spell out each option"
    assert at.text_input(key=f"name-1-{cluster}-v2").value == "Spell out each option"  # the form shows v2

    at.button(key=f"revert-1-{cluster}").click().run()  # the only older version: v1
    no_errors(at, "strategies")
    latest = store.strategy_history(1, cluster)[-1]
    assert (latest.version, latest.source, latest.reverted_from) == (3, "reverted", 1)
    assert store.current_strategies(1)[0].strategy_name == drafted.strategy_name


def test_an_empty_strategy_name_is_refused_with_a_message(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.forget_stage(1, "generate")
    cluster = store.current_strategies(1)[0].cluster_id
    at = open_page(app(), "strategies")
    at.text_input(key=f"name-1-{cluster}-v1").input("   ")
    [b for b in at.button if b.label == "Save as new version"][0].click().run()
    assert not at.exception
    assert any("needs a name" in e.value for e in at.error)
    assert len(store.strategy_history(1, cluster)) == 1


def test_rejecting_one_sample_and_accepting_several_persist(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.forget_stage(2, "train_set")  # as if paused for review after QC: decisions still take effect
    ids = [s.sample.sample_id for s in store.samples(1, limit=None)]
    at = open_page(app(), "samples")
    at.selectbox(key="samples-one").set_value(ids[0]).run()
    at.button(key="one-reject").click().run()
    no_errors(at, "samples")
    rejected = store.samples(1, status="rejected_human", limit=None)
    assert [(s.sample.sample_id, s.status_author) for s in rejected] == [(ids[0], "reviewer")]
    assert ids[0] not in {s.sample_id for s in store.accepted_samples(1)}  # out of the next training set

    at.multiselect(key="samples-bulk-1").set_value(ids[1:3]).run()
    at.button(key="bulk-accept").click().run()
    no_errors(at, "samples")
    assert {s.sample.sample_id for s in store.samples(1, status="accepted_human", limit=None)} == set(ids[1:3])

    at.multiselect(key="samples-status").set_value(["rejected_human"]).run()
    assert at.dataframe[0].value["sample_id"].tolist() == [ids[0]]


def test_edits_that_can_no_longer_take_effect_are_read_only_and_say_why(runs):
    """The finished run generated from iteration 1's strategies and trained on its decisions."""
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    cluster = store.current_strategies(1)[0].cluster_id
    at = open_page(app(), "strategies")
    assert any("Read-only" in i.value and "already generated" in i.value for i in at.info)
    assert at.text_input(key=f"name-1-{cluster}-v1").disabled
    assert all(b.disabled for b in at.button if b.label == "Save as new version")

    at = open_page(app(), "samples")
    assert any("Read-only" in i.value and "training set was already built" in i.value for i in at.info)
    assert at.button(key="one-accept").disabled and at.button(key="one-reject").disabled
    assert at.multiselect(key="samples-bulk-1").disabled
    assert len(store.strategy_history(1, cluster)) == 1


def test_a_leak_drop_cannot_be_accepted_in_review(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.forget_stage(2, "train_set")
    leaked = store.samples(1, limit=1)[0].sample.sample_id
    store.mark_leaked([leaked], iteration=1)
    at = open_page(app(), "samples")
    at.selectbox(key="samples-one").set_value(leaked).run()
    assert at.button(key="one-accept").disabled
    assert any("leakage guard" in c.value for c in at.caption)
    assert leaked not in at.multiselect(key="samples-bulk-1").options


def test_sample_review_shows_the_original_side_by_side(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    sample = store.samples(1, limit=1)[0].sample
    original = frames.originals(store, 1)[sample.based_on_example]
    at = open_page(app(), "samples")
    texts = [t.value for t in at.text]
    assert sample.question in texts
    assert original["question"] in texts
    assert any(f"Original · `{sample.based_on_example}`" in m.value for m in at.markdown)


# ------------------------------------------------------------ empty state


def test_a_first_time_user_sees_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("PADA_RUNS_DIR", str(tmp_path / "nothing-yet"))
    at = app()
    no_errors(at, "runs")
    assert any(h.value == "No runs yet" for h in at.subheader)
    assert "Launch the offline quickstart" in [b.label for b in at.button]
    for page in PAGES[1:]:
        open_page(at, page)
        assert not at.exception
        if page == "compare":  # not about one run: says how to make a comparison
            assert any("No comparison yet" in i.value for i in at.info)
        elif page != "evolution":
            assert any("No run selected" in i.value for i in at.info), page


# --------------------------------------------------- launch, continue, stop


def wait_for_exit(pid: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while processes.process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes.process_alive(pid), f"process {pid} still running after {timeout_s} s"


def test_a_config_that_cannot_run_is_refused_before_anything_is_launched(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PADA_RUNS_DIR", str(root))
    at = app()
    at.text_area[0].input("data_dir: /nonexistent/pada-data\n")
    [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception
    assert any("Cannot launch" in e.value and "/nonexistent/pada-data" in e.value for e in at.error)
    assert "launches" not in at.session_state or not at.session_state["launches"]
    assert not list(root.glob("*/run.db"))  # no run directory was made


def test_launching_from_the_form_runs_the_cli_and_reports_its_error(tmp_path, monkeypatch):
    """A real background `python -m pada run`; an LLM server that is not there fails it fast, before any
    training, with a readable error."""
    root = tmp_path / "runs"
    monkeypatch.setenv("PADA_RUNS_DIR", str(root))
    at = app()
    at.text_area[0].input("llm: {model: openai/absent, api_base: 'http://127.0.0.1:9/v1', max_retries: 0}\n")
    at.number_input[0].set_value(1)  # iterations
    [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception
    launch = next(iter(at.session_state["launches"].values()))
    wait_for_exit(launch.pid)
    time.sleep(2.5)  # past the runs list's cache lifetime
    at.run()
    shown_errors = [e.value for e in at.error]
    state = RunStore.open(launch.run_id, runs_root=root).state()
    assert state.status == "failed"
    assert "openai/absent does not answer" in state.error
    assert any("Failed:" in e and "openai/absent" in e for e in shown_errors)
    assert at.session_state["run"] == launch.run_id  # the new run got selected


def test_continue_run_resumes_a_paused_run(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.set_current(1, "review_strategies")  # as if the run had paused after drafting strategies
    store.set_status("awaiting_review")
    at = open_page(app(), "strategies")
    assert any("paused in iteration 1" in w.value for w in at.warning)
    at.button(key="continue-strategies").click().run()
    assert not at.exception
    launch = at.session_state["launches"][run_id]
    wait_for_exit(launch.pid)
    assert store.state().status == "completed"
    assert store.stage_done(1, "review_strategies")
    assert any("review_strategies approved" in e.message for e in store.events(20))


def test_stop_run_ends_the_process_group_and_marks_the_run_stopped(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    # A stand-in for the loop: a process in its own session holding the run's lock (so it is the run's
    # runner), with a child of its own (a worker).
    code = ("import subprocess, sys, time; from pada.store import RunStore; "
            "lock = RunStore.open(sys.argv[1]).runner_lock(); lock.__enter__(); "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)")
    loop = subprocess.Popen([sys.executable, "-c", code, str(store.path)], start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(APP).parent)))
    deadline = time.monotonic() + 30
    while store.runner() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    worker_pids = [int(p) for p in subprocess.run(["pgrep", "-g", str(loop.pid)], capture_output=True,
                                                   text=True).stdout.split() if int(p) != loop.pid]
    store.set_pid(loop.pid)
    store.set_status("running")
    try:
        message = processes.stop_run(store, wait_s=0)  # the loop is our child: reap it before checking
        loop.wait(timeout=10)
        assert "SIGTERM" in message or "stopped" in message
        time.sleep(0.3)
        assert all(not processes.process_alive(p) for p in worker_pids)
        processes.stop_run(store)  # the process is gone: records the stop
        assert store.state().status == "stopped"
        assert store.state().pid is None
    finally:
        if loop.poll() is None:
            os.killpg(loop.pid, 9)


# ------------------------------------------------------------ view helpers


def test_filter_failures_combines_cluster_scenario_and_search(runs):
    root, run_id = runs
    frame = frames.failures_frame(RunStore.open(run_id, runs_root=root), 2)
    analysed = frame.dropna(subset=["scenario"])
    scenario = analysed["scenario"].iloc[0]
    by_scenario = frames.filter_failures(frame, scenario=scenario)
    assert set(by_scenario["scenario"]) == {scenario}
    assert frames.filter_failures(frame, search=frame["failure_id"].iloc[1].upper())["failure_id"].tolist() == [
        frame["failure_id"].iloc[1]]
    assert frames.filter_failures(frame).equals(frame)


def test_strategy_edit_helpers():
    from pada.records import Strategy

    current = Strategy(cluster_id=0, category_name="Units", strategy_name="Old", generation_approach="Rewrite",
                       key_elements=["a"], ok=False, raw="{broken")
    edited = frames.edited_strategy(current, " New ", "Rewrite with units", "* one\n\n- two\n  three  ")
    assert (edited.strategy_name, edited.key_elements, edited.ok, edited.raw) == (
        "New", ["one", "two", "three"], True, None)
    assert frames.strategy_changed(current, edited)
    assert not frames.strategy_changed(current, frames.edited_strategy(current, "Old", "Rewrite", ["a"]))
    with pytest.raises(ValueError, match="generation approach"):
        frames.edited_strategy(current, "x", "  ", "")


def test_score_bounds_and_paging():
    assert frames.score_bounds(0.0, 10.0) == (None, None)
    assert frames.score_bounds(6.5, 10.0) == (6.5, None)
    assert frames.n_pages(0, 25) == 1 and frames.n_pages(51, 25) == 3
    assert frames.shorten("a  b\nc", 10) == "a b c" and frames.shorten("x" * 20, 5) == "xxxx…"


def test_read_comparison_rejects_other_csv_files(tmp_path):
    path = tmp_path / "comparisons" / "x" / "comparison.csv"
    path.parent.mkdir(parents=True)
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    assert frames.find_comparisons(tmp_path) == [path]
    with pytest.raises(ValueError, match="missing columns: method"):
        frames.read_comparison(path)


def test_runs_frame_summarises_the_run(runs):
    root, run_id = runs
    frame = frames.runs_frame(root)
    row = frame.set_index("run").loc[run_id]
    assert (row["task"], row["method"], row["status"], row["iteration"], row["metric"]) == (
        "arc_challenge", "pada", "completed", "2 / 2", "accuracy")
    assert row["tokens"] > 0


def test_compare_page_shows_the_summary_and_the_metric_per_iteration_with_the_selection(tmp_path, monkeypatch):
    import base64
    import json

    import numpy as np

    from pada.comparison import ComparisonRow, summarise, write_comparison

    root = tmp_path / "runs"
    monkeypatch.setenv("PADA_RUNS_DIR", str(root))
    rows = [ComparisonRow("vanilla", "v0", 1, "accuracy", 0.30, 0.30, 0, 0.0, 0, 0),
            ComparisonRow("vanilla", "v1", 1, "accuracy", 0.34, 0.32, 0, 0.0, 0, 1),
            *[ComparisonRow("pada", f"p{seed}", i, "accuracy", test, val, 900, 0.01, 10 * (i - 1), seed)
              for seed, per_it in ((0, [(0.30, 0.2), (0.40, 0.5)]), (1, [(0.32, 0.6), (0.44, 0.4)]))
              for i, (test, val) in enumerate(per_it, start=1)]]
    items = {(m, s): {f"q{k}": float(k < n) for k in range(10)}
             for (m, s), n in {("vanilla", 0): 3, ("vanilla", 1): 3, ("pada", 0): 4, ("pada", 1): 3}.items()}
    write_comparison(rows, root / "comparisons" / "20261201-100000", summarise(rows, items))
    at = open_page(app(), "compare")
    no_errors(at, "compare")
    assert at.title[0].value == "Compare"
    summary = at.dataframe[0].value
    assert summary.loc["pada", "selected_iterations"] == "2 1"  # per seed, by validation
    assert summary.loc["pada", "test_mean"] == pytest.approx(100 * (0.40 + 0.32) / 2)
    assert summary.loc["pada", "difference_vs_vanilla"] == pytest.approx(5.0)  # items: +1 of 10 at seed 0
    assert summary.loc["pada", "ci_low"] <= 5.0 <= summary.loc["pada", "ci_high"]
    assert any("paired percentile bootstrap" in c.value for c in at.caption)
    (chart,) = charts(at)
    def values(array):  # plotly writes numpy arrays as {"dtype", "bdata": base64}
        if isinstance(array, dict):
            return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
        return list(array)

    stars = [trace for trace in json.loads(chart.proto.spec)["data"] if trace.get("marker", {}).get("symbol") == "star"]
    assert sorted((x, y) for trace in stars for x, y in zip(values(trace["x"]), values(trace["y"]))) == [(1, 0.30), (1, 0.32),
                                                                                          (1, 0.34), (2, 0.40)]
    per_iteration = at.dataframe[1].value
    assert per_iteration.loc["pada", "iteration 2"] == pytest.approx(0.42)
