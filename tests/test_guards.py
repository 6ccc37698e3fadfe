"""Guards a click cannot undo: leak drops are final, the training set is checked by content, edits that
can no longer take effect are refused, and a run whose LLM never answers fails with the cause."""

from __future__ import annotations

import pytest
from conftest import tiny_run_config
from test_llm_http import StubServer, chat_reply, error_reply

from pada.config import from_dict
from pada.pipeline import GENERATE, TRAIN_SET, Pipeline, start_run
from pada.records import Strategy, SyntheticSample
from pada.store import LEAKED_STATUS, RunStore, StoreError

KEY = "sk-guards-test-SECRET-456"


def sample(sample_id: str, question: str, answer: str = "The answer is A.") -> SyntheticSample:
    return SyntheticSample(sample_id=sample_id, branch="pattern", based_on_strategy="s", based_on_example="ex",
                           messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


@pytest.fixture
def store(tmp_path):
    with RunStore.create({"task": "arc_challenge"}, runs_root=tmp_path, run_id="guards") as store:
        store.save_samples(1, [sample("a", "What is one?"), sample("b", "What is two?")])
        yield store


def test_a_leak_drop_is_final_whatever_a_person_clicks(store):
    store.mark_leaked(["a"], iteration=1)
    assert store.set_sample_status(["a", "b"], "accepted_human", "alice", iteration=1) == 1  # "accept all"
    by_id = {s.sample.sample_id: s.status for s in store.samples(1)}
    assert by_id == {"a": LEAKED_STATUS, "b": "accepted_human"}
    assert [s.sample_id for s in store.accepted_samples(1)] == ["b"]
    with pytest.raises(ValueError, match="leakage guard"):
        store.set_sample_status(["b"], LEAKED_STATUS, "alice", iteration=1)
    store.save_samples(1, [sample("a", "What is one?")], replace=False)  # a regeneration keeps the verdict
    assert {s.sample.sample_id: s.status for s in store.samples(1)}["a"] == LEAKED_STATUS


def test_review_decisions_are_refused_once_the_next_training_set_is_built(store):
    assert store.decisions_locked(1) is None
    store.set_sample_status(["a"], "rejected_human", "alice", iteration=1)
    store.mark_stage_done(2, TRAIN_SET)
    assert "training set was already built" in store.decisions_locked(1)
    with pytest.raises(StoreError, match="refused"):
        store.set_sample_status(["b"], "accepted_human", "alice", iteration=1)
    with pytest.raises(StoreError, match="refused"):
        store.set_sample_status(["b"], "accepted_human", "alice")  # every iteration that has the id
    assert {s.sample.sample_id: s.status for s in store.samples(1)}["b"] == "pending_qc"


def test_strategy_edits_are_refused_once_generation_used_them(store):
    strategy = Strategy(cluster_id=0, category_name="c", strategy_name="s", generation_approach="g",
                        key_elements=["k"])
    store.save_strategies(1, [strategy])
    assert store.save_strategy_edit(1, 0, strategy.model_copy(update={"strategy_name": "t"}), "alice") == 2
    store.mark_stage_done(1, GENERATE)
    assert "already generated" in store.strategies_locked(1)
    with pytest.raises(StoreError, match="refused"):
        store.save_strategy_edit(1, 0, strategy, "alice")
    with pytest.raises(StoreError, match="refused"):
        store.revert_strategy(1, 0, 1, "alice")
    assert len(store.strategy_history(1, 0)) == 2


def test_the_training_set_is_checked_by_content_when_it_is_built(tmp_path, tiny_slm_dir):
    """A synthetic sample that copies a validation question never trains, even with an 'accepted' status."""
    config = from_dict(tiny_run_config(tiny_slm_dir))
    store = start_run(config, runs_root=tmp_path, run_id="content")
    pipeline = Pipeline(store, config)
    store.complete_stage(1, TRAIN_SET, "", pipeline.build_training_set(1))
    held_out = pipeline.splits.validation[0].prompt
    store.save_samples(1, [sample("copy", held_out), sample("fresh", "Which gas do plants take in? A. CO2 B. O2")])
    store.set_sample_status(["copy", "fresh"], "accepted_human", "careless reviewer", iteration=1)

    store.complete_stage(2, TRAIN_SET, "", pipeline.build_training_set(2))
    ids = [row.id for row in store.training_set(2)]
    assert "fresh" in ids and "copy" not in ids
    assert {s.sample.sample_id: s.status for s in store.samples(1)}["copy"] == LEAKED_STATUS
    assert any("overlapping validation/test" in e.message for e in store.events(min_level="warning"))
    store.close()


def _run_against(tmp_path, tiny_slm_dir, monkeypatch, answer, run_id: str):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with StubServer(answer) as server:
        overrides = {role: {"model": f"openai/stub-{role}", "api_base": server.api_base, "max_retries": 1,
                            "backoff_base_s": 0.01, "schema_retries": 0} for role in ("llm", "judge")}
        config = from_dict(tiny_run_config(tiny_slm_dir, **overrides))
        store = start_run(config, runs_root=tmp_path, run_id=run_id)
        with pytest.raises(Exception) as raised:
            Pipeline(store, config).run()
    state = store.state()
    store.close()
    for path in tmp_path.rglob("*"):  # the key is in no file, error messages included
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    return state, str(raised.value)


def test_a_wrong_key_fails_the_run_before_the_first_fine_tune(tmp_path, tiny_slm_dir, monkeypatch):
    state, message = _run_against(tmp_path, tiny_slm_dir, monkeypatch,
                                  lambda body: error_reply(401, "Incorrect API key provided"), "wrong-key")
    assert state.status == "failed" and state.stage is None  # no stage started: nothing was trained
    assert not list((tmp_path / "wrong-key").rglob("*.safetensors"))
    assert "openai/stub-llm" in message and "HTTP 401" in message and "AuthenticationError" in message
    assert message in state.error


def test_a_stage_whose_calls_all_fail_fails_the_run_with_the_cause(tmp_path, tiny_slm_dir, monkeypatch):
    """The server answers the check before training but nothing after it: a 'completed' run with no
    samples would be a lie, so the first LLM stage fails the run."""
    def answer(body):
        if "response_format" not in body:  # the plain-text check before the first fine-tune
            return chat_reply(body, "OK")
        return error_reply(500, "the model crashed")

    state, message = _run_against(tmp_path, tiny_slm_dir, monkeypatch, answer, "all-fail")
    assert state.status == "failed" and state.stage == "analyse"
    assert "stage analyse of iteration 1" in message and "openai/stub-llm" in message and "500" in message
