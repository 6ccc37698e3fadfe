"""Clustering stage on real (bundled MiniLM) embeddings.

Only `test_three_topics_give_three_clusters` runs UMAP (its first call compiles numba code,
up to ~40 s on a cold 2-core machine); the others use PCA or inputs too small for UMAP.
"""

import math

import pytest

from pada.agents.clustering import (
    ClusteringConfig,
    cluster_analyses,
    cluster_sizes,
    elbow_k,
    load_embedder,
    resolve_embedder,
)
from pada.records import ErrorAnalysis

TOPICS = {
    "math": (
        "arithmetic word problem",
        [
            "The model added the numbers wrong in a multi-step arithmetic word problem",
            "It multiplied instead of dividing when computing the unit price",
            "The arithmetic carried a digit incorrectly when summing the totals",
            "The model forgot to subtract the discount before computing the final amount",
            "The percentage was calculated on the wrong base number",
            "It made a calculation mistake converting hours to minutes",
        ],
    ),
    "reading": (
        "reading comprehension span extraction",
        [
            "The model picked a span from the wrong paragraph of the passage",
            "It answered with the name of a different person mentioned in the text",
            "The extracted answer included extra words beyond the correct span",
            "The model misread which year the passage says the event happened",
            "It copied the question wording instead of finding the answer in the context",
            "The answer span was truncated and missed the last word of the entity",
        ],
    ),
    "code": (
        "python code generation",
        [
            "The generated Python function has an off-by-one error in the loop range",
            "The code fails on an empty list input and raises an IndexError",
            "The function returns a list where the tests expect a tuple",
            "The model left an unclosed parenthesis in the function body",
            "The recursive implementation has no base case and never terminates",
            "The solution uses a variable name that was never defined",
        ],
    ),
}


def topic_analyses() -> list[ErrorAnalysis]:
    analyses = []
    for topic, (category, causes) in TOPICS.items():
        for cause in causes:
            idx = len(analyses)
            analyses.append(ErrorAnalysis(failure_id=f"{topic}-{idx}", sample_idx=idx,
                                          error_cause=cause, scenario_category=category))
    return analyses


def groups_of(result) -> set[frozenset[str]]:
    clusters: dict[int, set[str]] = {}
    for point in result.points:
        clusters.setdefault(point.cluster_id, set()).add(point.failure_id.split("-")[0])
    return {frozenset(topics) for topics in clusters.values()}


def test_three_topics_give_three_clusters():
    analyses = topic_analyses()
    result = cluster_analyses(analyses, ClusteringConfig(projection="umap", seed=0))

    assert result.k == 3
    assert groups_of(result) == {frozenset({"math"}), frozenset({"reading"}), frozenset({"code"})}
    assert cluster_sizes(result) == {0: 6, 1: 6, 2: 6}
    assert [k for k, _ in result.inertia_curve] == list(range(2, 11))
    inertias = [inertia for _, inertia in result.inertia_curve]
    assert all(a >= b - 1e-6 for a, b in zip(inertias, inertias[1:]))  # decreasing
    assert [p.failure_id for p in result.points] == [a.failure_id for a in analyses]
    assert all(math.isfinite(p.x) and math.isfinite(p.y) for p in result.points)
    assert len({(round(p.x, 4), round(p.y, 4)) for p in result.points}) > 1  # a real layout, not all zeros
    assert result.embedder == "minilm"


def test_same_input_same_clusters():
    analyses = topic_analyses()
    config = ClusteringConfig(projection="pca", seed=3)
    first, second = cluster_analyses(analyses, config), cluster_analyses(analyses, config)
    assert first == second
    assert first.points[0].cluster_id == 0  # ids numbered by first member


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_analyses_make_one_cluster(n):
    analyses = topic_analyses()[:: 7][:n]
    result = cluster_analyses(analyses, ClusteringConfig())  # umap requested, but too few points for it

    assert result.k == 1
    assert result.inertia_curve == []
    assert [p.cluster_id for p in result.points] == [0] * n
    assert [p.failure_id for p in result.points] == [a.failure_id for a in analyses]
    assert all(math.isfinite(p.x) and math.isfinite(p.y) for p in result.points)


def test_failed_analyses_are_not_clustered():
    analyses = topic_analyses()[:4] + [ErrorAnalysis(failure_id="broken", sample_idx=99, ok=False, raw="{oops")]
    result = cluster_analyses(analyses, ClusteringConfig())  # 4 usable points: PCA layout, K from 2..3

    assert "broken" not in {p.failure_id for p in result.points}
    assert len(result.points) == 4
    assert [k for k, _ in result.inertia_curve] == [2, 3]
    assert 2 <= result.k <= 3


def test_no_usable_analyses():
    result = cluster_analyses([ErrorAnalysis(failure_id="x", sample_idx=0, ok=False)], ClusteringConfig())
    assert result.k == 0 and result.points == []


def test_identical_texts_do_not_ask_for_more_clusters_than_points():
    same = [ErrorAnalysis(failure_id=f"f{i}", sample_idx=i, error_cause="Wrong sum", scenario_category="math")
            for i in range(5)]
    result = cluster_analyses(same, ClusteringConfig(projection="pca"))
    assert result.k == 1
    assert {p.cluster_id for p in result.points} == {0}


def test_elbow_picks_the_bend_and_falls_back_without_one():
    assert elbow_k([2, 3, 4, 5, 6, 7], [100, 20, 15, 12, 10, 9]) == 3
    assert elbow_k([4], [3.0]) == 4
    assert elbow_k([2, 3], [10.0, 4.0]) == 2  # two points: no bend to find, fewer clusters
    assert elbow_k([2, 3, 4, 5], [8.0, 6.0, 4.0, 2.0]) == 2  # a straight line: no bend either
    assert elbow_k([2, 3, 4], [5.0, 5.0, 5.0]) == 2  # flat


def test_embedder_is_loaded_once_and_names_resolve():
    path = resolve_embedder("minilm")
    assert load_embedder(path) is load_embedder(path)
    assert resolve_embedder("/some/local/model") == "/some/local/model"


def test_embedder_mpnet_without_the_bundle_fails_before_a_run_starts(monkeypatch):
    from pada import bundled
    from pada.config import ConfigError, from_dict, preflight

    monkeypatch.setattr(bundled, "MPNET_DISTS", [f"pada-no-such-mpnet-part-00{i}" for i in range(1, 6)])
    with pytest.raises(ConfigError) as err:
        preflight(from_dict({"task": "arc_challenge", "clustering": {"embedder": "mpnet"}}, source="run.yaml"))
    message = str(err.value)
    assert "\n" not in message and message.startswith("run.yaml: clustering.embedder: ")
    assert "bash scripts/install.sh --mpnet" in message
    # The hub id is not the bundle: it is left to load from the hub, so preflight lets it through.
    preflight(from_dict({"task": "arc_challenge", "clustering": {"embedder": "sentence-transformers/all-mpnet-base-v2"}}))
    assert resolve_embedder("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError):
        ClusteringConfig(k_min=5, k_max=3)
    with pytest.raises(ValueError):
        ClusteringConfig(projection="tsne")
