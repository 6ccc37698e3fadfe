"""A strategy of a person's own (issue 13 §4): stored, versioned, refused when it could not take effect,
kept through a redraft, and given its share of the budget by the pipeline's generation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pada import stages
from pada.dashboard import frames
from pada.records import ClusteringResult, ClusterPoint, Pattern, Strategy
from pada.store import RunStore, StoreError

NEGATIONS = frames.written_strategy("Negation drill", "Rewrite the question so its answer hinges on a 'not'.",
                                    "- a negated stem\n- the answer flips with the negation", "negations")


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    """Iteration 1 clustered into K=4 clusters (ids 0-2 have failures) with drafted strategies for 0-2."""
    with RunStore.create({"task": "arc_challenge", "method": "pada", "iterations": 2}, runs_root=tmp_path) as made:
        points = [ClusterPoint(failure_id=f"f{c}", cluster_id=c, x=0.0, y=0.0) for c in range(3)]
        made.save_clustering(1, ClusteringResult(k=4, points=points))
        made.save_patterns(1, [Pattern(cluster_id=c, category_name=f"cat{c}", error_pattern="p") for c in range(3)])
        made.complete_stage(1, stages.STRATEGIES, "sig", lambda s: s.save_strategies(1, drafted(range(3))))
        yield made


def drafted(cluster_ids) -> list[Strategy]:
    return [Strategy(cluster_id=c, category_name=f"cat{c}", strategy_name=f"Drafted {c}",
                     generation_approach="vary it") for c in cluster_ids]


def test_a_written_strategy_gets_an_id_no_cluster_or_strategy_has(store):
    first = store.add_written_strategy(1, NEGATIONS, author="ana")
    assert first == 4  # above cluster 3 of K=4, which has no failures, as well as every strategy
    second = store.add_written_strategy(1, NEGATIONS.model_copy(update={"strategy_name": "Units drill"}), "ben")
    assert second == 5

    current = {s.cluster_id: s for s in store.current_strategies(1)}
    assert sorted(current) == [0, 1, 2, 4, 5]
    assert current[4] == NEGATIONS.model_copy(update={"cluster_id": 4})
    assert current[4].hand_written and not current[0].hand_written
    assert (current[4].category_name, current[4].key_elements) == (
        "negations", ["a negated stem", "the answer flips with the negation"])
    (version,) = store.strategy_history(1, 4)
    assert (version.version, version.source, version.author) == (1, "written", "ana") and version.created_at
    assert frames.written_strategy_names(store, 1) == ["Negation drill", "Units drill"]


def test_it_is_edited_and_reverted_like_a_drafted_one_and_stays_hand_written(store):
    cluster_id = store.add_written_strategy(1, NEGATIONS, author="ana")
    edited = frames.edited_strategy(NEGATIONS.model_copy(update={"cluster_id": cluster_id}), "Negation drill",
                                    "Put a 'not' in every question.", ["a negated stem"])
    assert store.save_strategy_edit(1, cluster_id, edited, author="ben") == 2
    assert store.revert_strategy(1, cluster_id, version=1, author="cleo") == 3
    history = store.strategy_history(1, cluster_id)
    assert [(v.version, v.source, v.author) for v in history] == [
        (1, "written", "ana"), (2, "edited", "ben"), (3, "reverted", "cleo")]
    assert all(v.strategy.hand_written for v in history)
    assert history[1].strategy.generation_approach == "Put a 'not' in every question."
    assert store.current_strategies(1)[-1] == history[0].strategy


def test_adding_is_refused_with_the_reason_when_it_could_not_take_effect(store):
    with pytest.raises(StoreError, match="iteration 2 has no drafted strategies"):
        store.add_written_strategy(2, NEGATIONS, author="ana")  # the last iteration never generates
    store.add_written_strategy(1, NEGATIONS, author="ana")
    with pytest.raises(StoreError, match="already has a strategy named 'Negation drill'"):
        store.add_written_strategy(1, NEGATIONS.model_copy(update={"strategy_name": "negation DRILL"}), "ben")
    with pytest.raises(StoreError, match="already has a strategy named 'Drafted 0'"):
        store.add_written_strategy(1, NEGATIONS.model_copy(update={"strategy_name": "Drafted 0"}), "ben")

    store.mark_stage_done(1, stages.GENERATE)
    assert "already generated" in store.adding_strategies_refused(1)
    with pytest.raises(StoreError, match="refused: iteration 1's samples were already generated"):
        store.add_written_strategy(1, NEGATIONS.model_copy(update={"strategy_name": "Late idea"}), "ben")
    assert [s.strategy_name for s in store.current_strategies(1)][-1] == "Negation drill"
    assert len(store.current_strategies(1)) == 4


def test_a_redraft_replaces_the_drafted_strategies_and_keeps_the_written_one(store):
    cluster_id = store.add_written_strategy(1, NEGATIONS, author="ana")
    store.save_strategy_edit(1, cluster_id, NEGATIONS.model_copy(update={"cluster_id": cluster_id,
                                                                        "generation_approach": "v2"}), "ben")
    store.save_strategies(1, drafted(range(2)))  # the strategies stage re-run, with fewer clusters
    assert [(s.cluster_id, s.strategy_name) for s in store.current_strategies(1)] == [
        (0, "Drafted 0"), (1, "Drafted 1"), (4, "Negation drill")]
    assert [v.source for v in store.strategy_history(1, 4)] == ["written", "edited"]

    store.save_strategies(1, drafted(range(5)))  # more clusters now: a drafted strategy takes id 4
    moved = store.current_strategies(1)[-1]
    assert (moved.cluster_id, moved.strategy_name, moved.generation_approach) == (5, "Negation drill", "v2")
    assert [(v.source, v.strategy.cluster_id) for v in store.strategy_history(1, 5)] == [
        ("written", 5), ("edited", 5)]
    assert [v.source for v in store.strategy_history(1, 4)] == ["drafted"]
    assert frames.written_strategy_names(store, 1) == ["Negation drill"]


def test_the_page_helpers_validate_and_mark_it():
    with pytest.raises(ValueError, match="needs a name"):
        frames.written_strategy("  ", "approach", "")
    with pytest.raises(ValueError, match="generation approach"):
        frames.written_strategy("Name", " ", "")
    assert frames.written_strategy("Negation drill", "a", "").category_name == "Negation drill"
    assert frames.strategy_label("Negation drill", True) == f"Negation drill ({frames.HAND_WRITTEN})"
    assert frames.strategy_label("Drafted 0", False) == "Drafted 0"
    assert frames.strategy_label(None, True) is None


# ------------------------------------------------------------- generation


def before_generation(pipeline_run, tmp_path: Path) -> RunStore:
    """A copy of the finished pipeline run, back to before iteration 1's generation."""
    source_root, run_id = pipeline_run
    shutil.copytree(source_root / run_id, tmp_path / run_id)
    return rewind_to_generation(RunStore.open(tmp_path / run_id))


def rewind_to_generation(store: RunStore) -> RunStore:
    """As if the run had stopped after drafting iteration 1's strategies: they and its samples' decisions
    (consumed by iteration 2's training set) may change again."""
    store.forget_stage(1, stages.GENERATE)
    store.forget_stage(2, stages.TRAIN_SET)
    return store


def generate(store: RunStore) -> dict:
    """Run the pipeline's generation stage of iteration 1 again; its logged counts (budget included)."""
    from pada.pipeline import Pipeline

    pipeline = Pipeline(store)
    pipeline.stage(1, stages.GENERATE, pipeline.generate)
    logged = next(e.message for e in store.events(50, iteration=1) if e.message.startswith("generation counts"))
    return json.loads(logged.split(": ", 1)[1])


def test_generation_gives_a_written_strategy_an_equal_share_and_its_samples_its_name(pipeline_run, tmp_path):
    from doubles.pada_script import install

    store = before_generation(pipeline_run, tmp_path)
    n_drafted = len(store.current_strategies(1))
    store.add_written_strategy(1, NEGATIONS, author="ana")
    stand_in = install()
    counts = generate(store)

    shares = counts["budget"]["per_cluster"]
    assert len(shares) == n_drafted + 1  # one share per strategy, the written one last (highest id)
    assert max(shares) - min(shares) <= 1 and shares[-1] > 0  # even split; a remainder goes to the first
    written = store.samples(1, strategy="Negation drill", limit=None)
    assert len(written) == shares[-1]
    assert {s.sample.sample_id.rsplit("-", 1)[0] for s in written} == {f"it1-pat-{n_drafted}"}
    prompts = [json.dumps(r) for r in stand_in.received if "GeneratedVariants" in json.dumps(r)]
    assert any("hinges on a 'not'" in p and "the answer flips with the negation" in p for p in prompts)
    assert store.strategies_locked(1)  # generation used it: no more edits
