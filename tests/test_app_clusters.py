"""The Clusters page's map across iterations and its JSONL downloads, driven with AppTest on the pipeline's run.

`runs` (tests/test_app.py) is a private copy of `pipeline_run`, a finished 2-iteration run of the real
pipeline whose clustering stored each failure's analysis embedding. A download button's bytes are read back
from the media storage the AppTest run kept them in.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.media_file_storage import MediaFileStorageError
from test_app import app, no_errors, open_page, runs  # noqa: F401  (runs: a fixture)

from pada.dashboard import slices
from pada.store import RunStore


@pytest.fixture
def media(monkeypatch) -> list[MemoryMediaFileStorage]:
    """Every media storage an AppTest run makes (one per run), so a test can read what a download serves."""
    made: list[MemoryMediaFileStorage] = []
    init = MemoryMediaFileStorage.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(MemoryMediaFileStorage, "__init__", keep)
    return made


def across(at, colour: str | None = None):
    at.toggle(key="clusters-across").set_value(True).run()
    if colour:
        at.button_group(key="across-colour").set_value(colour).run()
    no_errors(at, "clusters (across iterations)")
    return at


def map_spec(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def values(array) -> list:
    """A trace's array as plotly's figure JSON holds it: a list, or base64 bytes of a typed array."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def button(at, key: str):
    [found] = [b for b in at.get("download_button") if b.proto.id.endswith(key)]
    return found


def served(media, download) -> str:
    """The text a download button serves."""
    name = download.proto.url.rsplit("/", 1)[-1]
    for storage in reversed(media):
        try:
            return storage.get_file(name).content.decode("utf-8")
        except MediaFileStorageError:
            continue
    raise AssertionError(f"no stored file behind {download.proto.url!r}")


def test_the_map_across_iterations_shows_both_iterations_in_one_fit(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    expected = slices.cross_iteration_map(store, [1, 2])
    assert set(expected["iteration"]) == {1, 2}
    at = across(open_page(app(), "clusters"))
    traces = map_spec(at)["data"]
    assert sorted(t["name"] for t in traces) == ["Iteration 1", "Iteration 2"]
    shown = {(d[0], d[1]) for t in traces for d in t["customdata"]}
    assert shown == set(slices.keys_of(expected))
    at_x = {(d[0], d[1]): x for t in traces for d, x in zip(t["customdata"], values(t["x"]), strict=True)}
    assert all(at_x[key] == pytest.approx(x) for key, x in zip(slices.keys_of(expected), expected["x"], strict=True))
    assert f"{len(expected)} analysed validation failures of iterations 1, 2 in one 2-D fit" in [
        c.value for c in at.caption]


def test_colouring_by_pattern_gives_one_colour_per_pattern_and_a_symbol_per_iteration(runs):
    root, run_id = runs
    frame = slices.cross_iteration_map(RunStore.open(run_id, runs_root=root, readonly=True), [1, 2])
    at = across(open_page(app(), "clusters"), colour="pattern")
    traces = map_spec(at)["data"]
    groups = slices.pattern_groups(frame)
    assert {t["name"] for t in traces} == {f"{g}, Iteration {it}" for g, it in zip(groups, frame["iteration"])}
    assert len({t["marker"]["symbol"] for t in traces}) == 2  # one per iteration
    assert sum(len(t["customdata"]) for t in traces) == len(frame)


def test_a_clusters_download_is_valid_jsonl_of_its_members(runs, media):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    cluster = max(store.cluster_sizes(2).items(), key=lambda item: item[1])[0]
    members = [p.failure_id for p in store.cluster_points(2, cluster)]
    at = across(open_page(app(), "clusters"))
    at.selectbox(key="across-cluster").set_value((2, cluster)).run()
    no_errors(at, "clusters (across iterations)")
    download = button(at, "across-cluster-download")
    assert f"Download {len(members)} as JSONL" in download.proto.label
    records = [json.loads(line) for line in served(media, download).splitlines()]
    assert [(r["iteration"], r["failure_id"]) for r in records] == [(2, f) for f in members]
    failures = {f.id: f for f in store.failures(2)}
    for record in records:
        assert record["cluster_id"] == cluster
        assert (record["input"], record["ground_truth"], record["prediction"]) == (
            failures[record["failure_id"]].input, failures[record["failure_id"]].ground_truth,
            failures[record["failure_id"]].prediction)
        assert record["analysis"]["error_cause"] and record["pattern"]["name"]


def test_a_patterns_download_spans_its_iterations(runs, media):
    root, run_id = runs
    frame = slices.cross_iteration_map(RunStore.open(run_id, runs_root=root, readonly=True), [1, 2])
    groups = slices.pattern_groups(frame)
    group = groups.value_counts().index[0]
    at = across(open_page(app(), "clusters"))
    at.selectbox(key="across-pattern").set_value(group).run()
    records = [json.loads(line) for line in served(media, button(at, "across-pattern-download")).splitlines()]
    assert sorted((r["iteration"], r["failure_id"]) for r in records) == sorted(slices.keys_of(frame[groups == group]))


def test_the_first_load_draws_no_cross_iteration_map(runs, monkeypatch):
    calls = []
    monkeypatch.setattr(slices, "cross_iteration_map", lambda *args, **kwargs: calls.append(args))
    at = open_page(app(), "clusters")
    no_errors(at, "clusters")
    assert len(at.get("plotly_chart")) == 3 and calls == []  # scatter, elbow, sizes: the per-iteration view


def test_a_run_without_embeddings_keeps_the_per_iteration_map_with_a_note(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    for iteration in (1, 2):
        store.save_clustering(iteration, store.clustering(iteration))  # points read back carry no vector
    assert store.cluster_vectors() == []
    at = across(open_page(app(), "clusters"))
    assert any("No map across iterations" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 3  # the per-iteration scatter, elbow and sizes
    assert f"in {store.clustering(2).k} clusters" in " ".join(c.value for c in at.caption)


def test_the_failures_picked_on_one_iterations_map_download_as_jsonl(runs, media):
    """The per-iteration view's picked failures (here a cluster's, by pill) download like a map selection."""
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    points = store.cluster_points(2)
    cluster = points[0].cluster_id
    label = next(o for o in open_page(app(), "clusters").pills(key="clusters-pick-2").options
                 if o.split(" ·")[0] in (str(cluster), f"Cluster {cluster}"))
    at = open_page(app(), "clusters")
    at.pills(key="clusters-pick-2").set_value([label]).run()
    no_errors(at, "clusters")
    download = button(at, "clusters-2-download")
    records = [json.loads(line) for line in served(media, download).splitlines()]
    assert [(r["iteration"], r["failure_id"]) for r in records] == [
        (2, p.failure_id) for p in points if p.cluster_id == cluster]
