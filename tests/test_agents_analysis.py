"""Error analysis, pattern categorisation and strategy drafting through the real LLMClient.

The LLM is the scripted test stand-in (`doubles.scripted_llm`, provider "scripted/...") answering
with `doubles.scripted_analysis` handlers, or with per-test handlers that misbehave on purpose.
`schema_retries=0` so every request the stage makes is exactly one scripted request.
"""

import json
import re

import pytest

from doubles import scripted_llm as scripted
from doubles.scripted_analysis import analysis_script, error_analysis_reply
from pada.agents.error_analysis import (
    ErrorAnalysisConfig,
    analyse_failures,
    batch_schema,
    select_failures,
)
from pada.agents.patterns import FAILED_MARK as PATTERN_FAILED, PatternConfig, categorise_patterns
from pada.agents.strategies import FAILED_MARK as STRATEGY_FAILED, StrategyConfig, draft_strategies
from pada.llm import LLMClient, LLMConfig
from pada.llm.prompts import preview
from pada.records import ClusteringResult, ClusterPoint, ErrorAnalysis, Failure, Pattern

QUESTIONS = [
    ("How many apples does Tom have in total if he buys 3 bags of 4?", "12", "7"),
    ("Read the passage: Paris is the capital of France. What is the capital?", "Paris", "Lyon"),
    ("Write a Python function add(a, b) that returns the sum.", "def add(a, b): return a + b", "def add(a, b): a+b"),
    ("Which gas do plants absorb? A. oxygen B. carbon dioxide", "B", "A"),
]


def make_failures(n: int) -> list[Failure]:
    failures = []
    for i in range(n):
        question, truth, wrong = QUESTIONS[i % len(QUESTIONS)]
        failures.append(Failure(id=f"val-{i:03d}", split="validation", input=f"Q{i}: {question}",
                                ground_truth=truth, prediction=f"{wrong} (try {i})"))
    return failures


@pytest.fixture
def stand_in():
    stand_in = scripted.register()
    stand_in.set_script(analysis_script())
    return stand_in


@pytest.fixture
def llm(stand_in):
    return LLMClient(LLMConfig(model="scripted/analysis-test", schema_retries=0, max_retries=0))


def user_text(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def sample_numbers(request: dict) -> list[int]:
    return [int(n) for n in re.findall(r"^### Sample (\d+)$", user_text(request), re.MULTILINE)]


def batches_seen(stand_in) -> list[list[int]]:
    """Sample numbers per request, sorted: concurrent requests arrive in any order."""
    return sorted(sample_numbers(r) for r in stand_in.received)


def request_with(stand_in, text: str) -> dict:
    return next(r for r in stand_in.received if text in user_text(r))


# ---------------------------------------------------------------- error analysis


def test_select_failures_is_seeded_bounded_and_ordered():
    failures = make_failures(120)
    first = select_failures(failures, max_failures=50, seed=7)

    assert len(first) == 50
    assert first == select_failures(failures, max_failures=50, seed=7)
    assert first != select_failures(failures, max_failures=50, seed=8)
    positions = [failures.index(f) for f in first]
    assert positions == sorted(positions)  # original order kept
    assert select_failures(failures[:10], max_failures=50, seed=7) == failures[:10]


def test_batches_carry_query_response_and_ground_truth(llm, stand_in):
    failures = make_failures(12)
    analyses = analyse_failures(failures, llm, ErrorAnalysisConfig(batch_size=5), task_description="grade school")

    assert len(stand_in.received) == 3
    assert batches_seen(stand_in) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    for request in stand_in.received:
        assert request["schema_name"] == "ErrorAnalysisBatch"
        count = len(sample_numbers(request))
        assert request["schema"]["properties"]["analyses"]["minItems"] == count
        assert request["schema"]["properties"]["analyses"]["maxItems"] == count
        assert request["params"]["temperature"] == 0.0
        assert "grade school" in user_text(request)
    last = user_text(request_with(stand_in, "### Sample 10"))
    for failure in failures[10:]:
        assert failure.input in last and failure.prediction in last and failure.ground_truth in last
    assert failures[0].input not in last

    assert [a.sample_idx for a in analyses] == list(range(12))
    assert [a.failure_id for a in analyses] == [f.id for f in failures]
    assert all(a.ok and a.error_cause and a.scenario_category for a in analyses)
    assert analyses[0].scenario_category == "multi-step arithmetic"
    assert analyses[2].scenario_category == "code generation"
    assert "7 (try 0)" in analyses[0].error_cause and "12" in analyses[0].error_cause


def test_stage_subsamples_to_fifty_deterministically(llm, stand_in):
    failures = make_failures(120)
    config = ErrorAnalysisConfig(max_failures=50, batch_size=5, seed=3)
    analyses = analyse_failures(failures, llm, config)

    assert len(analyses) == 50
    assert len(stand_in.received) == 10
    assert [a.failure_id for a in analyses] == [f.id for f in select_failures(failures, 50, seed=3)]
    assert [a.failure_id for a in analyse_failures(failures, llm, config)] == [a.failure_id for a in analyses]


def test_missing_sample_is_asked_again_on_its_own(llm, stand_in):
    def drop_sample_2(messages, schema):
        reply = json.loads(error_analysis_reply(messages))
        if len(reply["analyses"]) > 1:
            reply["analyses"] = [a for a in reply["analyses"] if a["sample_idx"] != 2]
        return json.dumps(reply)

    stand_in.set_script({"ErrorAnalysisBatch": drop_sample_2})
    analyses = analyse_failures(make_failures(7), llm, ErrorAnalysisConfig(batch_size=5))

    assert batches_seen(stand_in) == [[0, 1, 2, 3, 4], [2], [5, 6]]
    assert [a.sample_idx for a in analyses] == list(range(7))  # exactly one per failure
    assert all(a.ok for a in analyses)
    assert analyses[2].failure_id == "val-002"


def test_duplicates_and_invented_numbers_are_ignored(llm, stand_in):
    def messy(messages, schema):
        reply = json.loads(error_analysis_reply(messages))
        if len(reply["analyses"]) == 1:
            return json.dumps(reply)
        first = reply["analyses"][0]
        reply["analyses"] = [first, {**first, "error_cause": "second copy"},
                             {**first, "sample_idx": 99}, *reply["analyses"][2:]]  # 1 missing, 0 twice, 99 invented
        return json.dumps(reply)

    stand_in.set_script({"ErrorAnalysisBatch": messy})
    analyses = analyse_failures(make_failures(4), llm, ErrorAnalysisConfig(batch_size=4))

    assert [a.sample_idx for a in analyses] == [0, 1, 2, 3]
    assert analyses[0].error_cause != "second copy"
    assert [sample_numbers(r) for r in stand_in.received] == [[0, 1, 2, 3], [1]]
    assert all(a.ok for a in analyses)


def test_failed_reask_is_recorded_with_raw_text(llm, stand_in):
    def batch_ok_single_useless(messages, schema):
        reply = json.loads(error_analysis_reply(messages))
        if len(reply["analyses"]) == 1:
            return "Sorry, I cannot analyse this sample."
        reply["analyses"] = reply["analyses"][1:]  # sample 0 missing
        return json.dumps(reply)

    stand_in.set_script({"ErrorAnalysisBatch": batch_ok_single_useless})
    analyses = analyse_failures(make_failures(3), llm, ErrorAnalysisConfig(batch_size=3))

    assert len(analyses) == 3
    failed = analyses[0]
    assert not failed.ok and failed.failure_id == "val-000"
    assert failed.error_cause is None and failed.raw == "Sorry, I cannot analyse this sample."
    assert all(a.ok for a in analyses[1:])


def test_single_reply_with_another_number_is_accepted(llm, stand_in):
    def renumbering(messages, schema):
        reply = json.loads(error_analysis_reply(messages))
        if len(reply["analyses"]) == 1:
            reply["analyses"][0]["sample_idx"] = 1  # small models renumber from 1
            return json.dumps(reply)
        return json.dumps({"analyses": reply["analyses"][:1]})

    stand_in.set_script({"ErrorAnalysisBatch": renumbering})
    analyses = analyse_failures(make_failures(3), llm, ErrorAnalysisConfig(batch_size=3))

    assert [(a.sample_idx, a.ok) for a in analyses] == [(0, True), (1, True), (2, True)]
    assert analyses[2].failure_id == "val-002"


def test_batches_of_one_are_not_asked_twice(llm, stand_in):
    def useless_for_sample_1(messages, schema):
        return "no" if sample_numbers({"messages": messages}) == [1] else error_analysis_reply(messages)

    stand_in.set_script({"ErrorAnalysisBatch": useless_for_sample_1})
    analyses = analyse_failures(make_failures(3), llm, ErrorAnalysisConfig(batch_size=1))

    assert batches_seen(stand_in) == [[0], [1], [2]]
    assert [a.ok for a in analyses] == [True, False, True]
    assert analyses[1].raw == "no"


def test_invalid_batch_reply_keeps_its_valid_entries(llm, stand_in):
    def one_bad_entry(messages, schema):
        reply = json.loads(error_analysis_reply(messages))
        if len(reply["analyses"]) > 1:
            del reply["analyses"][1]["error_cause"]
        return "```json\n" + json.dumps(reply) + "\n```"

    stand_in.set_script({"ErrorAnalysisBatch": one_bad_entry})
    analyses = analyse_failures(make_failures(3), llm, ErrorAnalysisConfig(batch_size=3))

    assert [sample_numbers(r) for r in stand_in.received] == [[0, 1, 2], [1]]  # only the bad one again
    assert all(a.ok for a in analyses)


def test_unreachable_llm_leaves_every_failure_recorded(llm, stand_in):
    stand_in.fail_next(10, "bad_request")
    analyses = analyse_failures(make_failures(4), llm, ErrorAnalysisConfig(batch_size=2))

    assert [a.sample_idx for a in analyses] == [0, 1, 2, 3]
    assert not any(a.ok for a in analyses)
    assert all(a.raw.startswith("(no reply:") for a in analyses)
    assert len(stand_in.received) == 2 + 4  # two batches, then each failure alone


def test_long_fields_are_cut(llm, stand_in):
    failure = Failure(id="long", split="validation", input="context " * 2000 + "QUESTION-AT-END?",
                      ground_truth="x", prediction="y")
    analyse_failures([failure], llm, ErrorAnalysisConfig(max_field_chars=300))
    text = user_text(stand_in.received[0])
    assert "QUESTION-AT-END?" in text and "characters cut" in text
    assert len(text) < 3000


def test_batch_schema_has_the_paper_fields():
    schema = batch_schema(3).model_json_schema()
    item = schema["$defs"]["AnalysisItem"]
    assert set(item["properties"]) == {"sample_idx", "error_cause", "scenario_category"}
    assert batch_schema(3) is batch_schema(3)


# ---------------------------------------------------------------- patterns


def clustered(n_per_cluster: int = 4) -> tuple[list[Failure], list[ErrorAnalysis], ClusteringResult]:
    failures = make_failures(2 * n_per_cluster)
    analyses = [
        ErrorAnalysis(failure_id=f.id, sample_idx=i, error_cause=f"cause {i}",
                      scenario_category="arithmetic" if i % 2 == 0 else "reading")
        for i, f in enumerate(failures)
    ]
    points = [ClusterPoint(failure_id=a.failure_id, cluster_id=a.sample_idx % 2, x=0.0, y=0.0) for a in analyses]
    return failures, analyses, ClusteringResult(k=2, points=points)


def test_one_pattern_call_per_cluster(llm, stand_in):
    failures, analyses, clustering = clustered(4)
    patterns = categorise_patterns(clustering, analyses, failures, llm, PatternConfig(max_failures_shown=2))

    assert len(stand_in.received) == 2
    first = user_text(request_with(stand_in, "[sample 0]"))
    assert "[sample 0]" in first and "[sample 2]" in first and "[sample 1]" not in first
    assert len(re.findall(r"^### Sample \d+$", first, re.MULTILINE)) == 2
    assert failures[0].input in first and failures[1].input not in first

    assert [p.cluster_id for p in patterns] == [0, 1]
    assert patterns[0].category_name == "Arithmetic errors"
    assert patterns[1].category_name == "Reading errors"
    assert patterns[0].representative_samples == ["val-000", "val-002", "val-004"]
    assert set(patterns[1].representative_samples) <= set(clustering.members(1))
    assert all(p.ok and p.error_pattern for p in patterns)


def test_representatives_outside_the_cluster_are_dropped(llm, stand_in):
    failures, analyses, clustering = clustered(3)
    stand_in.set_script({"PatternReply": json.dumps(
        {"category_name": "Same", "error_pattern": "p", "representative_samples": [1, 99]})})
    patterns = categorise_patterns(clustering, analyses, failures, llm, PatternConfig(max_representatives=2))

    assert patterns[0].representative_samples == ["val-000", "val-002"]  # 1 is in the other cluster: first members
    assert patterns[1].representative_samples == ["val-001"]
    assert [p.category_name for p in patterns] == ["Same", "Same (2)"]  # names kept distinct


def test_failed_pattern_call_gives_a_marked_pattern(llm, stand_in):
    failures, analyses, clustering = clustered(3)
    stand_in.set_script({"PatternReply": "no idea"})
    patterns = categorise_patterns(clustering, analyses, failures, llm)

    assert [p.category_name for p in patterns] == ["arithmetic", "reading"]
    assert all(p.error_pattern.startswith(PATTERN_FAILED) and not p.ok and p.raw == "no idea" for p in patterns)
    assert patterns[0].representative_samples == ["val-000", "val-002", "val-004"]


# ---------------------------------------------------------------- strategies


def patterns_for_strategies() -> list[Pattern]:
    return [
        Pattern(cluster_id=0, category_name="Unit conversion", error_pattern="Forgets to convert hours to minutes."),
        Pattern(cluster_id=1, category_name="Span boundaries", error_pattern="Answers include extra words."),
        Pattern(cluster_id=2, category_name="Empty inputs", error_pattern="Code crashes on empty lists."),
    ]


def test_one_strategy_per_pattern_each_seeing_the_others(llm, stand_in):
    patterns = patterns_for_strategies()
    strategies = draft_strategies(patterns, llm, StrategyConfig(), task_description="GSM8K maths")

    assert len(stand_in.received) == 3
    assert [s.category_name for s in strategies] == [p.category_name for p in patterns]
    assert [s.cluster_id for s in strategies] == [0, 1, 2]
    assert strategies[0].strategy_name == "Practice: Unit conversion"
    assert all(s.ok and s.generation_approach and 1 <= len(s.key_elements) <= 5 for s in strategies)
    last = user_text(stand_in.received[2])
    assert "Category: Empty inputs" in last and "- Unit conversion:" in last and "- Span boundaries:" in last
    assert "Practice: Unit conversion (for Unit conversion)" in last  # earlier strategies shown
    assert "Practice:" not in user_text(stand_in.received[0]) and "GSM8K maths" in last


def test_concurrent_drafting_and_repeated_names(llm, stand_in):
    stand_in.set_script({"StrategyReply": json.dumps({
        "strategy_name": "More examples", "generation_approach": "Write more.", "key_elements": ["a", "b", "a"]})})
    strategies = draft_strategies(patterns_for_strategies(), llm, StrategyConfig(sequential=False))

    assert [s.strategy_name for s in strategies] == [
        "More examples", "More examples (Span boundaries)", "More examples (Empty inputs)"]
    assert strategies[0].key_elements == ["a", "b"]
    assert not any("Strategies already written" in user_text(r) for r in stand_in.received)


def test_a_copied_earlier_strategy_line_counts_as_a_repeat(llm, stand_in):
    stand_in.set_script({"StrategyReply": [
        json.dumps({"strategy_name": "Drop one quantity", "generation_approach": "x", "key_elements": ["a"]}),
        json.dumps({"strategy_name": "Drop one quantity (for Unit conversion)", "generation_approach": "x",
                    "key_elements": ["a"]}),
    ]})
    strategies = draft_strategies(patterns_for_strategies()[:2], llm)
    assert [s.strategy_name for s in strategies] == ["Drop one quantity", "Drop one quantity (Span boundaries)"]


def test_failed_strategy_call_gives_a_usable_marked_strategy(llm, stand_in):
    stand_in.set_script({"StrategyReply": "{}"})
    failed_pattern = Pattern(cluster_id=4, category_name="Negation",
                             error_pattern=f"{PATTERN_FAILED} 3 failures, most often: ignores 'not'")
    strategies = draft_strategies([failed_pattern], llm)

    strategy = strategies[0]
    assert not strategy.ok and strategy.raw == "{}"
    assert strategy.generation_approach.startswith(STRATEGY_FAILED)
    assert PATTERN_FAILED not in strategy.generation_approach and "ignores 'not'" in strategy.generation_approach
    assert strategy.key_elements and strategy.cluster_id == 4


# ---------------------------------------------------------------- the stages together


def test_analysis_stages_chain_on_the_scripted_stand_in(llm):
    failures = make_failures(8)
    analyses = analyse_failures(failures, llm, ErrorAnalysisConfig())
    categories = sorted({a.scenario_category for a in analyses})
    points = [ClusterPoint(failure_id=a.failure_id, cluster_id=categories.index(a.scenario_category), x=0, y=0)
              for a in analyses]
    clustering = ClusteringResult(k=len(categories), points=points)
    patterns = categorise_patterns(clustering, analyses, failures, llm)
    strategies = draft_strategies(patterns, llm)

    assert len(patterns) == len(strategies) == len(categories) == 4
    assert len({s.strategy_name for s in strategies}) == 4
    assert all(p.ok for p in patterns) and all(s.ok for s in strategies)


@pytest.mark.parametrize("name", ["error_analysis", "patterns", "strategies"])
def test_prompts_preview_without_data(name):
    text = preview(name)
    assert "[user]" in text
