"""The quality-control loop: judge scores, regeneration with feedback, acceptance, failures."""

import json

import pytest

from conftest import scripted_client as client
from doubles.scripted_generation import generation_script
from pada.agents.budget import plan_budget
from pada.agents.generation import GenerationConfig, generate_and_qc
from pada.agents.quality import (
    QCBatch,
    QCConfig,
    batch_passes,
    judge_schema,
    run_qc_loop,
    run_qc_rounds,
)
from pada.records import Example, QCResult, Strategy, SyntheticSample

ORIGINAL = Example(id="gsm8k-train-0", task="gsm8k", source_split="train",
                   prompt="Ana has 3 apples and buys 4 more. How many apples does she have?",
                   answer="Ana has 3 + 4 = 7 apples.\n#### 7")
STRATEGY = Strategy(cluster_id=0, category_name="multi-step arithmetic", strategy_name="Two-step sums",
                    generation_approach="Write problems that need two additions", key_elements=["two steps"])


def judge_reply(scores: list[tuple[int, int, int]], note: str, with_strategy: bool = True) -> str:
    """A judge reply: one (adherence, utility, relevance) per sample, 1-based sample_idx."""
    items = []
    for idx, (adherence, utility, relevance) in enumerate(scores, start=1):
        item = {"sample_idx": idx, "feedback": f"{note} {idx}", "utility": utility, "relevance": relevance}
        if with_strategy:
            item["adherence"] = adherence
        items.append(item)
    return json.dumps({"scores": items})


LOW = judge_reply([(4, 5, 5), (5, 4, 6)], "too close to the original, sample")
HIGH = judge_reply([(8, 9, 9), (9, 8, 8)], "good, sample")


def judge_requests(stand_in):
    return [r for r in stand_in.received if r["schema_name"].startswith("JudgeScores")]


class Batches:
    """A generate_batch callable (the input of the loop, not the thing under test): two samples
    per attempt, numbered by attempt, and the feedback it was given."""

    def __init__(self):
        self.feedback: list[str | None] = []

    def __call__(self, feedback, attempt):
        self.feedback.append(feedback)
        return [SyntheticSample(sample_id=f"s{n}", branch="pattern", based_on_strategy=STRATEGY.strategy_name,
                                based_on_example=ORIGINAL.id, attempt=attempt,
                                messages=[{"role": "user", "content": f"Question {n}, attempt {attempt}?"},
                                          {"role": "assistant", "content": f"#### {n + attempt}"}])
                for n in range(2)]


def test_low_twice_then_high_takes_three_attempts(stand_in):
    stand_in.set_script({"JudgeScoresWithStrategy": [LOW, LOW, HIGH]})
    batches = Batches()
    outcome = run_qc_loop(batches, QCBatch(ORIGINAL, STRATEGY), client("judge"))
    assert outcome.attempts_per_batch == [3]
    assert [s.attempt for s in outcome.attempts] == [1, 1, 2, 2, 3, 3]
    assert [(r.sample_id, r.attempt) for r in outcome.qc_results] == [
        ("s0", 1), ("s1", 1), ("s0", 2), ("s1", 2), ("s0", 3), ("s1", 3)]
    assert [s.attempt for s in outcome.accepted] == [3, 3] and not outcome.rejected
    assert outcome.qc_results[0].average == pytest.approx(14 / 3)
    assert outcome.qc_results[-1].passed and outcome.qc_results[-1].adherence == 9
    assert batches.feedback[0] is None
    assert "too close to the original, sample 1" in batches.feedback[1]
    assert '"Question 0, attempt 1?" scored 4.7/10' in batches.feedback[1]


def test_always_low_stops_after_four_attempts_and_rejects(stand_in):
    stand_in.set_script({"JudgeScoresWithStrategy": [LOW]})
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, STRATEGY), client("judge"))
    assert outcome.attempts_per_batch == [4] and len(judge_requests(stand_in)) == 4
    assert not outcome.accepted
    assert [(s.sample_id, s.attempt) for s in outcome.rejected] == [("s0", 4), ("s1", 4)]
    assert len(outcome.qc_results) == 8 and not any(r.passed for r in outcome.qc_results)


def test_samples_are_accepted_on_their_own_score(stand_in):
    mixed = judge_reply([(9, 9, 9), (5, 5, 6)], "sample")  # batch mean 7.17 passes; sample 2 does not
    stand_in.set_script({"JudgeScoresWithStrategy": mixed})
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, STRATEGY), client("judge"))
    assert outcome.attempts_per_batch == [1]
    assert [s.sample_id for s in outcome.accepted] == ["s0"]
    assert [s.sample_id for s in outcome.rejected] == ["s1"]


def test_a_failed_judge_call_is_recorded_and_does_not_pass(stand_in):
    stand_in.set_script({"JudgeScoresWithStrategy": "I think they are fine."})
    config = QCConfig(max_regenerations=1)
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, STRATEGY), client("judge", schema_retries=0), config)
    assert outcome.attempts_per_batch == [2]
    assert len(outcome.qc_results) == 4
    assert all(not r.ok and not r.passed and r.raw == "I think they are fine." for r in outcome.qc_results)
    assert "judge call failed" in outcome.qc_results[0].feedback
    assert not outcome.accepted and len(outcome.rejected) == 2


def test_a_sample_the_judge_skipped_is_not_scored(stand_in):
    partial = json.dumps({"scores": [{"sample_idx": 1, "feedback": "ok", "adherence": 9, "utility": 9,
                                      "relevance": 9}]})
    stand_in.set_script({"JudgeScoresWithStrategy": partial})
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, STRATEGY), client("judge", schema_retries=0),
                          QCConfig(max_regenerations=0))
    first, second = outcome.qc_results
    assert first.ok and first.passed and first.average == 9
    assert not second.ok and "no score" in second.feedback
    assert [s.sample_id for s in outcome.accepted] == ["s0"]


def test_out_of_range_and_zero_based_scores_are_read(stand_in):
    reply = json.dumps({"scores": [{"sample_idx": 0, "feedback": "", "adherence": 11, "utility": 10, "relevance": 9.6},
                                   {"sample_idx": 1, "feedback": "", "adherence": 0, "utility": 2, "relevance": 3}]})
    stand_in.set_script({"JudgeScoresWithStrategy": reply})
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, STRATEGY), client("judge"), QCConfig(max_regenerations=0))
    first, second = outcome.qc_results
    assert (first.sample_id, first.adherence, first.relevance, first.average) == ("s0", 10, 10, 10.0)
    assert (second.sample_id, second.adherence, second.average) == ("s1", 1, 2.0)


def test_error_branch_is_judged_without_adherence(stand_in):
    stand_in.set_script({"JudgeScores": judge_reply([(0, 8, 6), (0, 7, 7)], "fine", with_strategy=False)})
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, None), client("judge"))
    assert [r.average for r in outcome.qc_results] == [7.0, 7.0]
    assert all(r.adherence is None for r in outcome.qc_results)
    request = judge_requests(stand_in)[0]
    assert request["schema_name"] == "JudgeScores" and request["params"].get("temperature") == 0
    assert "adherence" not in request["messages"][-1]["content"].split("Reply with only")[0]


def test_qc_disabled_records_without_judging(stand_in):
    outcome = run_qc_loop(Batches(), QCBatch(ORIGINAL, STRATEGY), client("judge"), QCConfig(qc_disabled=True))
    assert len(outcome.accepted) == 2 and outcome.attempts_per_batch == [1]
    assert all(r.passed and r.ok and "disabled" in r.feedback for r in outcome.qc_results)
    assert judge_requests(stand_in) == []


def test_rounds_judge_every_batch_once_per_attempt(stand_in):
    stand_in.set_script({"JudgeScoresWithStrategy": lambda messages, schema: (
        LOW if "Question 0, attempt 1?" in messages[-1]["content"] and "batch-b" in messages[-1]["content"]
        else HIGH)})
    calls = []

    def generate(requests, attempt):
        calls.append((attempt, [i for i, _ in requests]))
        return [[SyntheticSample(sample_id=f"{'ab'[i]}{n}", branch="pattern", based_on_example=ORIGINAL.id,
                                 messages=[{"role": "user", "content": f"batch-{'ab'[i]} Question {n}, attempt {attempt}?"},
                                           {"role": "assistant", "content": "#### 1"}])
                 for n in range(2)] for i, _ in requests]

    outcome = run_qc_rounds(generate, [QCBatch(ORIGINAL, STRATEGY)] * 2, client("judge"))
    assert calls == [(1, [0, 1]), (2, [1])]  # only the low batch is regenerated
    assert outcome.attempts_per_batch == [1, 2] and len(outcome.accepted) == 4


def test_batch_passes_needs_every_sample_scored():
    good = QCResult(sample_id="a", attempt=1, average=9.0, passed=True)
    assert batch_passes([good], 7) and not batch_passes([], 7)
    assert not batch_passes([good, QCResult(sample_id="b", attempt=1, ok=False)], 7)
    assert not batch_passes([good, QCResult(sample_id="b", attempt=1, average=4.0)], 7)
    assert judge_schema(2, True).__name__ == "JudgeScoresWithStrategy"


def test_feedback_reaches_the_next_generation_prompt(stand_in):
    stand_in.set_script({**generation_script(), "JudgeScoresWithStrategy": [LOW, HIGH]})
    budget = plan_budget(4, 1, 0)  # one pattern batch of 2
    train = [ORIGINAL]
    outcome = generate_and_qc([STRATEGY], budget, train, [], client("gen"), client("judge"),
                              GenerationConfig(batch_size=2))
    prompts = [r["messages"][-1]["content"] for r in stand_in.received if r["schema_name"] == "GeneratedVariants"]
    assert len(prompts) == 2
    assert "reviewer rejected" not in prompts[0]
    assert "A reviewer rejected your previous attempt" in prompts[1]
    assert "too close to the original, sample 2" in prompts[1]
    assert [s.attempt for s in outcome.accepted] == [2, 2]
    assert outcome.produced_counts["pattern"]["generated"] == 4  # both attempts are kept
    assert outcome.attempts[0].messages != outcome.attempts[2].messages  # the retry is a new draw
