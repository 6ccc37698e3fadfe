"""One pattern taxonomy across iterations: matching, the stored taxa and vectors, old (v3) runs, the Evolution
page's frames (estimated counts per taxon, the failures behind a segment, fixed / broken items)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pada.agents.taxonomy import assign_taxa, centroids, latest_taxa, one_to_one, pattern_text, similarity_matrix
from pada.dashboard.evolution import (
    NOT_ANALYSED,
    error_estimates,
    has_taxa,
    largest_remainder,
    pattern_transitions,
    segment_failures,
    selected_segment,
    taxonomy_table,
    transition_counts,
    transitions,
)
from pada.records import ClusteringResult, ClusterPoint, ErrorAnalysis, Failure, Pattern, Prediction
from pada.store import SCHEMA_VERSION, RunStore, Taxon
from pada.store.schema import migrate

CONFIG = {"task": "arc_challenge", "method": "pada", "iterations": 3}


def pattern(cluster_id: int, name: str, description: str = "") -> Pattern:
    return Pattern(cluster_id=cluster_id, category_name=name, error_pattern=description or f"{name} happen")


def axis_embed(axes: dict[str, int], dim: int = 8):
    """Embeds each pattern text as the unit vector of the axis its name is given (a known geometry)."""
    def embed(texts: list[str]) -> np.ndarray:
        rows = np.zeros((len(texts), dim))
        for row, text in enumerate(texts):
            rows[row, axes[text.split(":")[0]]] = 1.0
        return rows
    return embed


# ---------------------------------------------------------------- matching


def test_the_first_iteration_makes_every_pattern_a_new_taxon():
    taxa = assign_taxa(1, [pattern(1, "Units"), pattern(0, "Arithmetic")], [], {}, axis_embed({}))
    assert taxa == [Taxon(1, 0, 0, None, "Arithmetic"), Taxon(1, 1, 1, None, "Units")]


def test_a_matched_pattern_keeps_its_taxon_and_first_name_and_an_unmatched_one_is_new():
    earlier = [Taxon(1, 0, 0, None, "Arithmetic"), Taxon(1, 1, 1, None, "Units")]
    earlier_patterns = {(1, 0): pattern(0, "Arithmetic"), (1, 1): pattern(1, "Units")}
    embed = axis_embed({"Arithmetic": 0, "Units": 1, "Unit slips": 1, "Negation": 2})
    taxa = assign_taxa(2, [pattern(0, "Negation"), pattern(1, "Unit slips")], earlier, earlier_patterns, embed)
    assert taxa == [Taxon(2, 0, 2, None, "Negation"), Taxon(2, 1, 1, 1.0, "Units")]


def test_matching_is_one_to_one_with_more_patterns_than_taxa():
    similarity = np.array([[0.90, 0.10], [0.85, 0.20], [0.30, 0.95]])
    assert one_to_one(similarity, threshold=0.5) == {0: 0, 2: 1}  # row 1 wanted column 0 too: it stays new
    assert one_to_one(np.zeros((0, 3)), threshold=0.5) == {}


def test_the_assignment_maximises_the_total_not_each_row_greedily():
    similarity = np.array([[0.90, 0.80], [0.85, 0.10]])  # greedy would give row 0 column 0 and row 1 nothing
    assert one_to_one(similarity, threshold=0.5) == {0: 1, 1: 0}


def test_pairs_below_the_threshold_stay_unmatched():
    similarity = np.array([[0.59, 0.0], [0.0, 0.61]])
    assert one_to_one(similarity, threshold=0.6) == {1: 1}
    earlier = [Taxon(1, 0, 0, None, "Arithmetic")]
    embed = axis_embed({"Arithmetic": 0, "Rounding": 1})
    [taxon] = assign_taxa(2, [pattern(0, "Rounding")], earlier, {(1, 0): pattern(0, "Arithmetic")}, embed,
                          threshold=-1.0)  # orthogonal texts (cosine 0) match only under a threshold below 0
    assert taxon.taxon_id == 0 and taxon.similarity == 0.0


def test_a_pattern_back_under_its_name_keeps_its_taxon_whatever_the_cosine():
    # Each full text on its own axis: the two "Contextual understanding" descriptions are orthogonal (cosine 0).
    texts = ["Contextual Understanding: misses the paragraph's subject", "Dates: picks the wrong year",
             "contextual  understanding: answers from outside the passage", "Dates: confuses two years"]
    embed = lambda batch: np.eye(8)[[texts.index(text) for text in batch]]
    earlier = [Taxon(1, 0, 0, None, "Contextual Understanding"), Taxon(1, 1, 1, None, "Dates")]
    earlier_patterns = {(1, 0): pattern(0, "Contextual Understanding", "misses the paragraph's subject"),
                        (1, 1): pattern(1, "Dates", "picks the wrong year")}
    taxa = assign_taxa(2, [pattern(0, "contextual  understanding", "answers from outside the passage"),
                           pattern(1, "Dates", "confuses two years")], earlier, earlier_patterns, embed)
    assert [(t.taxon_id, t.similarity, t.display_name) for t in taxa] == [
        (0, 0.0, "Contextual Understanding"), (1, 0.0, "Dates")]  # the real cosine is what is stored


def test_a_same_name_pair_goes_before_a_more_similar_pair():
    similarity = np.array([[0.2, 0.9], [0.1, 0.8]])
    alike = np.array([[False, True], [False, False]])
    assert one_to_one(similarity, threshold=0.6, named_alike=alike) == {0: 1}  # row 1's 0.8 needs column 1 too
    assert one_to_one(similarity, threshold=0.6, named_alike=np.array([[True, False], [False, False]])) == \
        {0: 0, 1: 1}


def test_centroids_are_averaged_with_the_text_similarity():
    vectors = [(1, "a", 0, np.array([1.0, 0.0])), (1, "b", 0, np.array([0.0, 1.0])),
               (2, "c", 0, np.array([1.0, 0.0]))]
    found = centroids(vectors)
    assert np.allclose(found[(1, 0)], [2 ** -0.5, 2 ** -0.5]) and np.allclose(found[(2, 0)], [1.0, 0.0])
    combined = similarity_matrix(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), [found[(2, 0)]], [found[(1, 0)]])
    assert combined[0, 0] == pytest.approx((1.0 + 2 ** -0.5) / 2)
    no_centroid = similarity_matrix(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), [None], [found[(1, 0)]])
    assert no_centroid[0, 0] == pytest.approx(1.0)


def test_a_taxon_missing_from_one_iteration_can_return_later():
    earlier = [Taxon(1, 0, 0, None, "Arithmetic"), Taxon(1, 1, 1, None, "Units"), Taxon(2, 0, 1, 0.9, "Units")]
    assert [(t.iteration, t.taxon_id) for t in latest_taxa(earlier)] == [(1, 0), (2, 1)]
    earlier_patterns = {(1, 0): pattern(0, "Arithmetic"), (1, 1): pattern(1, "Units"), (2, 0): pattern(0, "Units")}
    embed = axis_embed({"Arithmetic": 0, "Units": 1})
    taxa = assign_taxa(3, [pattern(0, "Arithmetic")], earlier, earlier_patterns, embed)
    assert taxa == [Taxon(3, 0, 0, 1.0, "Arithmetic")]  # absent in iteration 2, the same taxon in 3


def test_the_default_threshold_separates_rewordings_from_other_patterns_with_the_real_embedder():
    from pada.agents.clustering import ClusteringConfig, embed_texts

    earlier_patterns = {
        (1, 0): pattern(0, "Unit conversion errors", "The model forgets to convert minutes to hours or grams "
                                                     "to kilograms before computing the answer."),
        (1, 1): pattern(1, "Distractor options chosen", "The model picks an answer option that repeats words of "
                                                        "the question but does not answer it."),
    }
    earlier = [Taxon(1, 0, 0, None, "Unit conversion errors"), Taxon(1, 1, 1, None, "Distractor options chosen")]
    new = [pattern(0, "Negation ignored", "The question asks which statement is NOT true and the model answers "
                                          "with a true statement."),
           pattern(1, "Unit conversion mistakes", "Quantities in different units (minutes and hours, grams and "
                                                  "kilograms) are not converted before the calculation.")]
    threshold = ClusteringConfig().match_threshold
    taxa = assign_taxa(2, new, earlier, earlier_patterns, lambda texts: embed_texts(texts, "minilm"),
                       threshold=threshold)
    assert [(t.cluster_id, t.taxon_id, t.display_name) for t in taxa] == [
        (0, 2, "Negation ignored"), (1, 0, "Unit conversion errors")]
    same = embed_texts([pattern_text(earlier_patterns[(1, 0)])] * 2, "minilm")
    assert float(same[0] @ same[1]) == pytest.approx(1.0, abs=1e-5)  # identical texts: cosine 1, always matched


# ------------------------------------------------------------------ store


def test_vectors_and_taxa_round_trip(tmp_path):
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="r")
    store.save_clustering(1, ClusteringResult(k=2, embedder="minilm", points=[
        ClusterPoint(failure_id="a", cluster_id=0, x=0, y=0, vector=[0.6, 0.8]),
        ClusterPoint(failure_id="b", cluster_id=1, x=1, y=1, vector=[1.0, 0.0]),
        ClusterPoint(failure_id="c", cluster_id=1, x=2, y=2)]))  # a point without a vector is not returned
    store.save_clustering(2, ClusteringResult(k=1, points=[ClusterPoint(failure_id="a", cluster_id=0, x=0, y=0,
                                                                        vector=[0.0, 1.0])]))
    rows = store.cluster_vectors()
    assert [(it, f, c) for it, f, c, _ in rows] == [(1, "a", 0), (1, "b", 1), (2, "a", 0)]
    assert rows[0][3].dtype == np.float32 and np.allclose(rows[0][3], [0.6, 0.8])
    assert [f for _, f, _, _ in store.cluster_vectors([2])] == ["a"]
    assert store.cluster_points(1)[0].vector is None  # the scatter's points stay small
    assert "vector" not in store.cluster_points(1)[0].model_dump()

    taxa = [Taxon(1, 0, 0, None, "Units"), Taxon(1, 1, 1, None, "Reading")]
    store.save_taxa(1, taxa)
    store.save_taxa(2, [Taxon(2, 0, 1, 0.8125, "Reading")])
    store.save_taxa(1, taxa)  # replacing an iteration's taxa never duplicates them
    assert store.taxa() == [*taxa, Taxon(2, 0, 1, 0.8125, "Reading")]
    assert store.taxa([2]) == [Taxon(2, 0, 1, 0.8125, "Reading")]
    with pytest.raises(ValueError, match="iteration 1, not 2"):
        store.save_taxa(2, taxa)


def v3_store(tmp_path: Path) -> Path:
    """A run as schema v3 wrote it: one clustered iteration with a pattern, no taxa and no vectors."""
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    conn = sqlite3.connect(run_dir / "run.db", isolation_level=None)
    assert migrate(conn, target=3) == 3
    conn.execute("INSERT INTO run VALUES (1, 'old', 't0', 't0', ?, 'completed', 1, NULL, NULL, NULL)",
                 (json.dumps(CONFIG),))
    failure = Failure(id="v1", split="validation", input="Q?", ground_truth="A", prediction="B")
    conn.execute("INSERT INTO predictions VALUES (1, 'validation', 'v1', 0, ?)",
                 (Prediction(id="v1", split="validation", prediction="B", correct=False).model_dump_json(),))
    conn.execute("INSERT INTO failures VALUES (1, 'validation', 'v1', ?)", (failure.model_dump_json(),))
    conn.execute("INSERT INTO analyses VALUES (1, 'v1', 'Units', 1, ?)",
                 (ErrorAnalysis(failure_id="v1", sample_idx=0, error_cause="drops units",
                                scenario_category="Units").model_dump_json(),))
    conn.execute("INSERT INTO clusterings VALUES (1, 1, 'minilm', '[]')")
    conn.execute("INSERT INTO cluster_points VALUES (1, 'v1', 0, 0.5, 0.5)")
    conn.execute("INSERT INTO patterns VALUES (1, 0, 'Units', ?)", (pattern(0, "Units").model_dump_json(),))
    conn.execute("INSERT INTO metrics VALUES (1, 'validation', 'accuracy', 0.0)")
    conn.execute("INSERT INTO stages VALUES (1, 'patterns', 'sig', 't0')")
    conn.close()
    return run_dir


def test_a_v3_store_migrates_to_v4_keeping_its_points(tmp_path):
    store = RunStore.open(v3_store(tmp_path))
    assert store._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    assert store.cluster_points(1)[0].failure_id == "v1" and store.patterns(1)[0].category_name == "Units"
    assert store.cluster_vectors() == [] and store.taxa() == []  # made before v4: none stored
    store.save_taxa(1, [Taxon(1, 0, 0, None, "Units")])
    assert store.taxa() == [Taxon(1, 0, 0, None, "Units")]


def test_a_read_only_v3_store_is_read_without_taxa_or_vectors(tmp_path):
    run_dir = v3_store(tmp_path)
    store = RunStore.open(run_dir, readonly=True)
    assert store.taxa() == [] and store.cluster_vectors([1]) == []
    conn = sqlite3.connect(run_dir / "run.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3  # reading never migrates
    conn.close()


# --------------------------------------------------------------- pipeline


def test_the_pipeline_stores_vectors_and_taxa(pipeline_run):
    root, run_id = pipeline_run
    store = RunStore.open(run_id, runs_root=root, readonly=True)
    for iteration in (1, 2):
        points = store.cluster_points(iteration)
        rows = store.cluster_vectors([iteration])
        assert [(f, c) for _, f, c, _ in rows] == [(p.failure_id, p.cluster_id) for p in points]
        assert all(np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4) for *_, v in rows)
        taxa = store.taxa([iteration])
        assert [t.cluster_id for t in taxa] == [p.cluster_id for p in store.patterns(iteration)]
    first = store.taxa([1])
    assert all(t.similarity is None and t.taxon_id == t.cluster_id for t in first)
    assert [t.display_name for t in first] == [p.category_name for p in store.patterns(1)]
    second = store.taxa([2])
    names_1 = {p.category_name: p.cluster_id for p in store.patterns(1)}
    for taxon, own in zip(second, store.patterns(2)):
        if own.category_name in names_1:  # the stand-in names a pattern after its scenario: same name, same taxon
            assert taxon.taxon_id == names_1[own.category_name] and taxon.similarity >= 0.6
        if taxon.similarity is None:
            assert taxon.taxon_id > max(t.taxon_id for t in first) and taxon.display_name == own.category_name
    assert len({t.taxon_id for t in second}) == len(second)  # one-to-one


# --------------------------------------------------------- evolution frames


def test_largest_remainder_parts_add_up_to_the_total():
    assert largest_remainder([1, 1, 1], 10) == [4, 3, 3]
    assert largest_remainder([2, 1], 4) == [3, 1]  # 2.67 and 1.33: the larger remainder gets the spare one
    assert largest_remainder([7, 0, 3], 500) == [350, 0, 150]
    assert largest_remainder([0, 0], 5) == [0, 0] and largest_remainder([], 3) == []
    for weights, total in (([3, 5, 11, 1], 97), ([1] * 7, 3), ([50, 1], 1)):
        assert sum(largest_remainder(weights, total)) == total


def prediction(example_id: str, correct: bool, text: str = "B") -> Prediction:
    return Prediction(id=example_id, split="validation", prediction=text, correct=correct)


def save_iteration(store: RunStore, iteration: int, correct: dict[str, bool], clusters: dict[str, int],
                   patterns: list[Pattern], taxa: list[Taxon] | None) -> None:
    """One evaluated iteration: predictions, failures, analyses of the clustered ones, clusters, patterns, taxa."""
    store.save_predictions(iteration, "validation", [prediction(i, ok, f"answer {iteration}") for i, ok in
                                                     correct.items()])
    store.save_failures(iteration, "validation", [
        Failure(id=i, split="validation", input=f"question {i}", ground_truth="A", prediction=f"answer {iteration}")
        for i, ok in correct.items() if not ok])
    store.save_analyses(iteration, [ErrorAnalysis(failure_id=i, sample_idx=n, error_cause=f"cause {i}",
                                                  scenario_category="s") for n, i in enumerate(clusters)])
    store.save_clustering(iteration, ClusteringResult(k=len(patterns), points=[
        ClusterPoint(failure_id=i, cluster_id=c, x=0, y=0) for i, c in clusters.items()]))
    store.save_patterns(iteration, patterns)
    if taxa is not None:
        store.save_taxa(iteration, taxa)


@pytest.fixture
def two_iterations(tmp_path) -> RunStore:
    """Iteration 1: v1, v2 (Units), v3 (Reading) analysed, v6 failed unanalysed; iteration 2 fixes v1 and v3,
    still fails v2 and v6, newly fails v4 (in the Units taxon, renamed "Unit slips"), v5 is always right."""
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="hand")
    save_iteration(store, 1, {"v1": False, "v2": False, "v3": False, "v4": True, "v5": True, "v6": False},
                   {"v1": 0, "v2": 0, "v3": 1}, [pattern(0, "Units"), pattern(1, "Reading")],
                   [Taxon(1, 0, 0, None, "Units"), Taxon(1, 1, 1, None, "Reading")])
    save_iteration(store, 2, {"v1": True, "v2": False, "v3": True, "v4": False, "v5": True, "v6": False},
                   {"v2": 0, "v4": 0}, [pattern(0, "Unit slips")], [Taxon(2, 0, 0, 0.8, "Units")])
    return store


def test_estimates_scale_the_analysed_shares_to_all_failures(two_iterations):
    estimates = error_estimates(two_iterations)
    by = {(r.iteration, r.label): r for r in estimates.itertuples()}
    assert by[(1, "Units")].estimate == 3 and by[(1, "Reading")].estimate == 1  # 2 and 1 of 3 analysed, F = 4
    assert by[(1, "Units")].members == 2 and by[(1, "Units")].analysed == 3 and by[(1, "Units")].failures == 4
    assert by[(2, "Units")].estimate == 3 and by[(2, "Units")].name == "Unit slips"  # own name kept
    assert by[(2, "Reading")].estimate == 0 and pd.isna(by[(2, "Reading")].cluster_id)  # absent: shown as 0
    assert by[(2, "Reading")].taxon_id == 1
    for iteration, failures in ((1, 4), (2, 3)):
        assert estimates.loc[estimates["iteration"] == iteration, "estimate"].sum() == failures


def test_an_iteration_without_analysis_is_one_not_analysed_part(two_iterations):
    two_iterations.save_predictions(3, "validation", [prediction("v1", False), prediction("v2", True)])
    two_iterations.save_failures(3, "validation", [Failure(id="v1", split="validation", input="q", ground_truth="A",
                                                           prediction="B")])
    third = error_estimates(two_iterations).query("iteration == 3")
    assert third[["label", "estimate", "analysed", "failures"]].values.tolist() == [[NOT_ANALYSED, 1, 0, 1]]


def test_a_clicked_segment_lists_its_failures(two_iterations):
    estimates = error_estimates(two_iterations)
    assert selected_segment([{"x": 1, "customdata": [1, 0, "Units", 2, 3, 4]}], estimates) == (1, 0)
    assert selected_segment([{"x": 3, "customdata": [3, -1]}], estimates) == (3, None)
    assert selected_segment([{"x": 1, "legendgroup": "Reading"}], estimates) == (1, 1)
    assert selected_segment([{"x": 2, "legendgroup": "Reading"}], estimates) is None  # a zero part
    assert selected_segment([], estimates) is None
    assert segment_failures(two_iterations, 1, 0)["failure_id"].tolist() == ["v1", "v2"]
    assert segment_failures(two_iterations, 1, None)["failure_id"].tolist() == ["v6"]  # not analysed


def test_transitions_count_fixed_and_broken_items_per_pattern(two_iterations):
    items = transitions(two_iterations, 1, 2)
    status = dict(zip(items["example_id"], items["status"]))
    assert status == {"v1": "fixed", "v2": "still failing", "v3": "fixed", "v4": "newly failing",
                      "v5": "always right", "v6": "still failing"}
    counts = transition_counts(items)
    assert counts[["status", "count"]].values.tolist() == [["fixed", 2], ["still failing", 2],
                                                           ["newly failing", 1], ["always right", 1]]
    assert counts.set_index("status").at["fixed", "ids"] == ["v1", "v3"]
    table = pattern_transitions(items, taxonomy_table(two_iterations), 1, 2).set_index("pattern")
    units = table.loc["Units"]
    assert (units.failures, units.fixed, units.still_failing, units.new_failures) == (2, 1, 1, 1)
    assert (units.fixed_ids, units.still_failing_ids, units.new_failure_ids) == (["v1"], ["v2"], ["v4"])
    assert (units.earlier_name, units.later_name) == ("Units", "Unit slips")
    assert table.loc["Reading", ["failures", "fixed", "new_failures"]].tolist() == [1, 1, 0]
    assert table.loc[NOT_ANALYSED, ["failures", "still_failing"]].tolist() == [1, 1]  # v6: never analysed
    assert table["fixed"].sum() == 2 and table["new_failures"].sum() == 1  # every item counted once
    v4 = items.set_index("example_id").loc["v4"]
    assert v4.input == "question v4" and v4.later_prediction == "answer 2" and v4.earlier_prediction == "answer 1"


def test_without_taxa_patterns_go_by_their_own_names(tmp_path):
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="no-taxa")
    save_iteration(store, 1, {"v1": False, "v2": True}, {"v1": 0}, [pattern(0, "Units")], None)
    save_iteration(store, 2, {"v1": False, "v2": False}, {"v1": 0, "v2": 0}, [pattern(0, "Units")], None)
    taxonomy = taxonomy_table(store)
    assert has_taxa(taxonomy) == "none" and taxonomy["label"].tolist() == ["Units", "Units"]
    table = pattern_transitions(transitions(store, 1, 2), taxonomy, 1, 2).set_index("pattern")
    assert table.loc["Units", ["failures", "still_failing", "new_failures"]].tolist() == [1, 1, 1]
    assert has_taxa(taxonomy_table(RunStore.open(v3_store(tmp_path), readonly=True))) == "none"


def test_two_taxa_with_one_name_get_distinct_labels(tmp_path):
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="same-name")
    save_iteration(store, 1, {"v1": False}, {"v1": 0}, [pattern(0, "Units")], [Taxon(1, 0, 0, None, "Units")])
    save_iteration(store, 2, {"v1": False}, {"v1": 0}, [pattern(0, "Units", "another kind")],
                   [Taxon(2, 0, 1, None, "Units")])
    assert taxonomy_table(store)["label"].tolist() == ["Units (#0)", "Units (#1)"]
