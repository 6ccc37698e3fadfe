"""pada/dashboard/slices.py on small hand-built stores: one map across iterations and JSONL slices.

The stores' vectors have a known geometry (two tight groups around two orthogonal directions), so what the
one 2-D fit must do is known: keep the groups apart, whatever iteration a point comes from.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from pada.agents.clustering import ClusteringConfig
from pada.dashboard import slices
from pada.records import ClusteringResult, ClusterPoint, ErrorAnalysis, Failure, Pattern
from pada.store import RunStore, Taxon
from pada.store.schema import migrate

CONFIG = {"task": "arc_challenge", "method": "pada", "iterations": 2, "clustering": {"projection": "pca"}}
DIM = 8
# iteration -> members of cluster 0 (around direction 0) and cluster 1 (around direction 1):
# cluster 0 empties out from 6 to 2 members between the iterations.
SIZES = {1: (6, 5), 2: (2, 5)}


def failure(iteration: int, n: int) -> Failure:
    return Failure(id=f"val-{n}", split="validation", input=f"Question {n} (iteration {iteration})?",
                   ground_truth=f"answer {n}", prediction=f"wrong {n}", extracted=f"w{n}")


def group_vector(rng, direction: int) -> list[float]:
    vector = np.zeros(DIM)
    vector[direction] = 1.0
    vector += rng.normal(0, 0.03, DIM)
    return (vector / np.linalg.norm(vector)).tolist()


def fill_iteration(store: RunStore, iteration: int, rng, vectors: bool = True) -> None:
    """Failures val-0.. of one iteration: the first SIZES[0] in cluster 0, the next SIZES[1] in cluster 1,
    one more failure analysed but left unclustered (a failed analysis)."""
    sizes = SIZES[iteration]
    clusters = [0] * sizes[0] + [1] * sizes[1]
    failures = [failure(iteration, n) for n in range(len(clusters) + 1)]
    store.save_failures(iteration, "validation", failures)
    store.save_analyses(iteration, [
        ErrorAnalysis(failure_id=f.id, sample_idx=n, error_cause=f"cause {n} in it {iteration}",
                      scenario_category=["units", "negation"][c] if n < len(clusters) else None,
                      ok=n < len(clusters), raw=None if n < len(clusters) else "{not json")
        for n, (f, c) in enumerate(zip(failures, [*clusters, 0], strict=True))])
    store.save_clustering(iteration, ClusteringResult(k=2, embedder="minilm", points=[
        ClusterPoint(failure_id=f"val-{n}", cluster_id=c, x=float(n), y=float(c),
                     vector=group_vector(rng, c) if vectors else None)
        for n, c in enumerate(clusters)]))
    store.save_patterns(iteration, [
        Pattern(cluster_id=0, category_name=f"Unit slips {iteration}", error_pattern="Mixes up units."),
        Pattern(cluster_id=1, category_name=f"Negation {iteration}", error_pattern="Misses a 'not'."),
    ])


@pytest.fixture
def store(tmp_path) -> RunStore:
    """Two iterations with embeddings and taxa: each cluster of iteration 2 continues the same one of 1."""
    rng = np.random.default_rng(0)
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="slices")
    for iteration in SIZES:
        fill_iteration(store, iteration, rng)
        store.save_taxa(iteration, [
            Taxon(iteration=iteration, cluster_id=0, taxon_id=10, similarity=None if iteration == 1 else 0.9,
                  display_name="Unit slips 1"),
            Taxon(iteration=iteration, cluster_id=1, taxon_id=11, similarity=None if iteration == 1 else 0.8,
                  display_name="Negation 1"),
        ])
    return store


# ------------------------------------------------------------------- map


def test_one_fit_keeps_the_two_groups_apart_across_iterations(store):
    frame = slices.cross_iteration_map(store, [1, 2])
    assert list(frame.columns) == slices.MAP_COLUMNS
    assert len(frame) == sum(a + b for a, b in SIZES.values())
    assert frame.groupby(["iteration", "cluster"]).size().to_dict() == {
        (1, 0): 6, (1, 1): 5, (2, 0): 2, (2, 1): 5}
    xy = frame[["x", "y"]].to_numpy()
    groups = frame["cluster"].to_numpy()
    within = max(np.ptp(xy[groups == g], axis=0).max() for g in (0, 1))
    between = np.linalg.norm(xy[groups == 0][:, None] - xy[groups == 1][None], axis=2).min()
    assert between > 3 * within  # the same direction lands in one place, whichever iteration it came from
    assert set(frame["taxon"]) == {"Unit slips 1", "Negation 1"}
    assert frame["taxon_id"].tolist() == [10 if c == 0 else 11 for c in frame["cluster"]]
    first = frame[(frame["iteration"] == 2) & (frame["cluster"] == 1)].iloc[0]
    assert (first["pattern"], first["error_cause"], first["scenario"]) == ("Negation 2", "cause 2 in it 2",
                                                                            "negation")


def test_the_map_is_deterministic_and_uses_the_runs_projection(store):
    first = slices.cross_iteration_map(store, [2, 1])
    again = slices.cross_iteration_map(store, [1, 2])
    pd.testing.assert_frame_equal(first, again)
    assert slices.run_clustering_config(store).projection == "pca"
    explicit = slices.cross_iteration_map(store, [1, 2], ClusteringConfig(projection="pca"))
    pd.testing.assert_frame_equal(first, explicit)


def test_the_map_of_one_iteration_holds_only_its_points(store):
    frame = slices.cross_iteration_map(store, [2])
    assert set(frame["iteration"]) == {2}
    assert sorted(frame["failure_id"]) == sorted(f"val-{n}" for n in range(7))


def test_pattern_groups_follow_the_taxon_else_the_iterations_name(store):
    frame = slices.cross_iteration_map(store, [1, 2])
    assert set(slices.pattern_groups(frame)) == {"Unit slips 1", "Negation 1"}
    untaxed = frame.assign(taxon=pd.NA)
    assert set(slices.pattern_groups(untaxed)) == {"Unit slips 1", "Negation 1", "Unit slips 2", "Negation 2"}


def test_a_run_without_embeddings_has_no_map(tmp_path):
    rng = np.random.default_rng(0)
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="old-points")
    fill_iteration(store, 1, rng, vectors=False)
    frame = slices.cross_iteration_map(store, [1])
    assert frame.empty and list(frame.columns) == slices.MAP_COLUMNS


def test_mixed_embedders_are_refused(store):
    clustering = store.clustering(2)
    vectors = {f: v.tolist() for _, f, _, v in store.cluster_vectors([2])}
    points = [p.model_copy(update={"vector": vectors[p.failure_id]}) for p in clustering.points]
    store.save_clustering(2, clustering.model_copy(update={"embedder": "mpnet", "points": points}))
    assert {it for it, *_ in store.cluster_vectors()} == {1, 2}
    with pytest.raises(ValueError, match="different models"):
        slices.cross_iteration_map(store, [1, 2])


def test_a_schema_v3_run_read_only_has_no_map_but_its_slices_download(tmp_path):
    """A run made before embeddings and taxa were stored, opened read-only (never migrated)."""
    run_dir = tmp_path / "v3"
    run_dir.mkdir()
    conn = sqlite3.connect(run_dir / "run.db", isolation_level=None)
    migrate(conn, target=3)
    conn.execute("INSERT INTO run VALUES (1, 'v3', 't0', 't0', ?, 'completed', 1, NULL, NULL, NULL)",
                 (json.dumps(CONFIG),))
    old = failure(1, 0)
    conn.execute("INSERT INTO failures VALUES (1, 'validation', ?, ?)", (old.id, old.model_dump_json()))
    conn.execute("INSERT INTO clusterings VALUES (1, 1, 'minilm', '[]')")
    conn.execute("INSERT INTO cluster_points VALUES (1, ?, 0, 0.5, 0.5)", (old.id,))
    pattern = Pattern(cluster_id=0, category_name="Old pattern", error_pattern="From before.")
    conn.execute("INSERT INTO patterns VALUES (1, 0, ?, ?)", (pattern.category_name, pattern.model_dump_json()))
    conn.close()
    store = RunStore(run_dir, readonly=True)
    assert slices.cross_iteration_map(store, [1]).empty
    [record] = slices.slice_records(store, [(1, old.id)])
    assert record["pattern"] == {"name": "Old pattern", "description": "From before.", "taxon_id": None,
                                 "taxon": None}
    assert record["analysis"] is None and record["cluster_id"] == 0


# ---------------------------------------------------------------- slices


def test_a_selection_returns_exactly_its_rows_once_each_as_jsonl(store):
    keys = [(2, "val-3"), (1, "val-0"), (2, "val-3"), (1, "val-11")]
    lines = slices.to_jsonl(slices.slice_records(store, keys)).splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["iteration"], r["failure_id"]) for r in records] == [(2, "val-3"), (1, "val-0"), (1, "val-11")]
    first = records[0]
    assert set(first) == {"iteration", "failure_id", "input", "ground_truth", "prediction", "extracted", "analysis",
                          "cluster_id", "pattern"}
    assert (first["input"], first["ground_truth"], first["prediction"]) == (
        "Question 3 (iteration 2)?", "answer 3", "wrong 3")
    assert first["analysis"] == {"error_cause": "cause 3 in it 2", "scenario_category": "negation", "ok": True,
                                 "raw": None}
    assert first["cluster_id"] == 1
    assert first["pattern"] == {"name": "Negation 2", "description": "Misses a 'not'.", "taxon_id": 11,
                                "taxon": "Negation 1"}
    unclustered = records[2]  # its analysis failed: kept with the raw reply, no cluster or pattern
    assert unclustered["analysis"]["ok"] is False and unclustered["analysis"]["raw"] == "{not json"
    assert unclustered["cluster_id"] is None and unclustered["pattern"] is None


def test_a_cluster_and_a_pattern_slice_of_the_map(store):
    frame = slices.cross_iteration_map(store, [1, 2])
    cluster = frame[(frame["iteration"] == 1) & (frame["cluster"] == 0)]
    records = slices.slice_records(store, slices.keys_of(cluster))
    assert [r["failure_id"] for r in records] == [f"val-{n}" for n in range(6)]
    assert {r["iteration"] for r in records} == {1} and {r["cluster_id"] for r in records} == {0}
    pattern = frame[slices.pattern_groups(frame) == "Unit slips 1"]
    records = slices.slice_records(store, slices.keys_of(pattern))
    assert sorted((r["iteration"], r["failure_id"]) for r in records) == sorted(
        [(1, f"val-{n}") for n in range(6)] + [(2, "val-0"), (2, "val-1")])
    assert {r["pattern"]["taxon_id"] for r in records} == {10}


def test_a_key_without_a_stored_failure_is_an_error(store):
    with pytest.raises(ValueError, match="val-99 \\(iteration 1\\)"):
        slices.slice_records(store, [(1, "val-0"), (1, "val-99")])


def test_jsonl_round_trips_any_text():
    records = [{"input": 'line one\nline "two" ✓', "n": 1}, {"input": "", "n": None}]
    text = slices.to_jsonl(records)
    assert text.endswith("\n") and text.count("\n") == 2 and "✓" in text
    assert [json.loads(line) for line in text.splitlines()] == records
    assert slices.to_jsonl([]) == ""


def test_selection_keys_from_a_plotly_event():
    points = [{"customdata": [2, "val-1", "x"]}, {"point_index": 4}, {"customdata": [1, "val-1"]},
              {"customdata": [2, "val-1", "x"]}]
    assert slices.selection_keys(points) == [(2, "val-1"), (1, "val-1")]


def test_slice_file_names_name_the_run_and_iterations():
    assert slices.slice_file_name("tiny-pada", [2, 1, 2], "pattern-Unit slips/1") == \
        "tiny-pada-it1-2-pattern-Unit-slips-1.jsonl"
