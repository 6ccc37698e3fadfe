"""The Evolution page, driven headless with Streamlit's AppTest: one pattern taxonomy in every bar, the failures
behind a segment, fixed / broken validation items; and an old (schema v3) run still rendering, unmigrated.

AppTest cannot click a plotly segment or a table row, so the click handler (`evolution.selected_segment`) is
tested in tests/test_taxonomy.py, and here the page's own box for picking a segment stands in for the click.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from pada.store import RunStore
from test_app import runs  # noqa: F401  (the fixture: a private copy of the pipeline's run)
from test_taxonomy import v3_store

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def evolution_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/evolution.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def bar_traces(at: AppTest) -> dict[str, dict]:
    """The error bars' traces by legend label: x (iterations) and y (parts) of the figure sent to the browser."""
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    return {trace["name"]: {"x": unpacked(trace["x"]), "y": unpacked(trace["y"])} for trace in figure["data"]}


def unpacked(values) -> list[int]:
    """A plotly array as numbers: a list, or plotly 6's packed form {"dtype": ..., "bdata": base64}."""
    if isinstance(values, dict):
        values = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return [int(v) for v in values]


def table_with(at: AppTest, column: str) -> list:
    """The page's tables that have `column` (AppTest knows a plain st.dataframe by its columns, not its key)."""
    return [d for d in at.dataframe if column in d.value.columns]


def test_matched_patterns_keep_one_name_and_colour_in_both_bars(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    at = evolution_page()
    assert len(at.get("plotly_chart")) == 2  # the error bars and the metric lines
    traces = bar_traces(at)
    taxa = store.taxa()
    assert any(t.similarity is not None for t in taxa if t.iteration == 2)  # something was matched
    for taxon_id in {t.taxon_id for t in taxa}:
        members = [t for t in taxa if t.taxon_id == taxon_id]
        trace = traces[members[0].display_name]  # the names are distinct here: the label is the name
        assert sorted(trace["x"]) == sorted(t.iteration for t in members)  # one trace (colour) per taxon
    for iteration in (1, 2):  # each bar is all of the iteration's validation failures
        height = sum(y for tr in traces.values() for x, y in zip(tr["x"], tr["y"]) if x == iteration)
        assert height == store.failure_count(iteration)
    assert any("estimate" in c.value and "analysed of" in c.value for c in at.caption)
    assert not any("stored before patterns were followed" in i.value for i in at.info)


def test_picking_a_segment_lists_its_failures(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    at = evolution_page()
    box = at.selectbox(key="evolution-segment")
    assert box.value is None and not table_with(at, "error_cause")
    cluster_id = store.patterns(2)[0].cluster_id
    box.select((2, cluster_id)).run()
    [listed] = table_with(at, "error_cause")
    assert listed.value["failure_id"].tolist() == [p.failure_id for p in store.cluster_points(2, cluster_id)]


def test_fixed_and_broken_counts_are_what_the_predictions_say(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    before = {p.id: p.correct for p in store.predictions(1, "validation")}
    after = {p.id: p.correct for p in store.predictions(2, "validation")}
    expected = {"fixed": [i for i in before if not before[i] and after[i]],
                "still failing": [i for i in before if not before[i] and not after[i]],
                "newly failing": [i for i in before if before[i] and not after[i]],
                "always right": [i for i in before if before[i] and after[i]]}
    at = evolution_page()
    shown = {m.label: m.value for m in at.metric}
    assert shown == {status: str(len(ids)) for status, ids in expected.items()}
    at.button_group(key="evolution-status").set_value("still failing").run()
    [items] = table_with(at, "earlier_prediction")
    assert sorted(items.value["example_id"]) == sorted(expected["still failing"])
    [table] = [d for d in at.dataframe if d.key == "pattern-transitions"]
    clustered = {p.failure_id for p in store.cluster_points(1)}
    assert table.value["fixed"].sum() == len(expected["fixed"])
    assert table.value["failures"].sum() == len(expected["fixed"]) + len(expected["still failing"])
    assert table.value[table.value["pattern"] != "Not analysed"]["failures"].sum() == len(
        clustered & set(expected["fixed"] + expected["still failing"]))


def test_an_old_run_renders_read_only_with_its_own_names(tmp_path, monkeypatch):
    run_dir = v3_store(tmp_path)
    monkeypatch.setenv("PADA_RUNS_DIR", str(run_dir.parent))
    at = evolution_page()
    assert any("stored before patterns were followed" in i.value for i in at.info)
    assert list(bar_traces(at)) == ["Units"]
    conn = sqlite3.connect(run_dir / "run.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3  # viewing never migrates
    conn.close()
    assert any("Needs two evaluated iterations" in i.value for i in at.info)
