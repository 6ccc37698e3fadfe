"""Generation branches and the budget, driven through the real LLMClient with the scripted stand-in."""

import json

import pytest
from pydantic import ValidationError

from conftest import scripted_client as client
from doubles.scripted_generation import generation_script
from pada.agents.budget import BudgetConfig, error_quotas, plan_budget, split_evenly
from pada.agents.generation import (
    GenerationConfig,
    generate_and_qc,
    generate_error_samples,
    generate_pattern_samples,
    generate_rephrase_samples,
    plan_pattern_batches,
    rephrasings_schema,
    shared_template,
    variants_schema,
)
from pada.agents.leakage import LeakageGuard, LeakError
from pada.agents.quality import QCConfig
from pada.records import Example, Failure, Strategy

# ---------------------------------------------------------------------------
# Data


def gsm8k_example(i: int, split: str = "train") -> Example:
    a, b = 3 + i, 2 + 2 * i
    return Example(id=f"gsm8k-{split}-{i}", task="gsm8k", source_split=split,
                   prompt=f"Mia has {a} pencils and her friend gives her {b} more. How many pencils does Mia have now?",
                   answer=f"Mia starts with {a} pencils and gets {b} more, so {a} + {b} = {a + b}.\n#### {a + b}")


def arc_example(i: int, split: str = "train") -> Example:
    topics = ["plants", "magnets", "weather", "rocks", "sound", "light", "animals", "energy"]
    topic = topics[i % len(topics)]
    return Example(id=f"arc-{split}-{i}", task="arc_challenge", source_split=split,
                   prompt=(f"Question: Which statement about {topic} is correct for lesson {chr(65 + i % 26)}?\n"
                           f"A. {topic} never change\nB. {topic} can be observed\nC. {topic} are imaginary\n"
                           f"D. {topic} are all the same\nAnswer with the letter of the correct option."),
                   answer="The answer is B.")


def val_example(i: int) -> Example:
    return Example(id=f"gsm8k-val-{i}", task="gsm8k", source_split="validation",
                   prompt=f"A baker sells {40 + i} loaves on Monday and twice as many on Tuesday. "
                          "How many loaves did the baker sell on both days together?",
                   answer=f"#### {3 * (40 + i)}")


TRAIN = [gsm8k_example(i) for i in range(8)]
VAL = [val_example(i) for i in range(5)]
STRATEGIES = [
    Strategy(cluster_id=0, category_name="multi-step arithmetic", strategy_name="Two-step sums",
             generation_approach="Write problems that need two additions", key_elements=["two steps", "small numbers"]),
    Strategy(cluster_id=1, category_name="unit conversion", strategy_name="Mixed units",
             generation_approach="Mix minutes and hours", key_elements=["units"]),
]


def failure_for(example: Example, prediction: str = "Mia has 5 pencils.\n#### 5") -> Failure:
    return Failure(id=example.id, split="train", input=example.prompt, ground_truth=example.answer,
                   prediction=prediction)


def generation_requests(stand_in):
    return [r for r in stand_in.received if r["schema_name"] in ("GeneratedVariants", "Rephrasings")]


def user_prompt(request) -> str:
    return "\n".join(m["content"] for m in request["messages"])


# ---------------------------------------------------------------------------
# Budget


def test_budget_default_splits_half_the_training_set():
    budget = plan_budget(1000, 4, 500)
    assert budget.total == 500
    assert budget.error == 150  # min(500 failures x 2, 30 % of 500)
    assert budget.per_cluster == [88, 88, 87, 87]  # remainder to the first clusters
    assert budget.pattern + budget.error == budget.total and budget.unallocated == 0


def test_budget_error_share_capped_by_failures():
    budget = plan_budget(300, 3, 10)
    assert (budget.total, budget.error, budget.per_cluster) == (150, 20, [44, 43, 43])


def test_budget_rounds_half_up_and_is_configurable():
    assert plan_budget(301, 2, 0).total == 151  # 150.5 -> 151 (Python's round would say 150)
    budget = plan_budget(600, 2, 1000, BudgetConfig(synthetic_ratio=1.0, error_fraction=0.5, variants_per_failure=3))
    assert (budget.total, budget.error, budget.per_cluster) == (600, 300, [150, 150])


@pytest.mark.parametrize("config, n_clusters, n_failures, expected", [
    (BudgetConfig(use_patterns=False), 4, 50, (500, [0, 0, 0, 0], 0)),   # ablation: no patterns
    (BudgetConfig(), 0, 50, (500, [], 0)),                              # no clusters found
    (BudgetConfig(use_errors=False), 3, 50, (0, [167, 167, 166], 0)),   # ablation: no training errors
    (BudgetConfig(), 3, 0, (0, [167, 167, 166], 0)),                    # the SLM made no training errors
    (BudgetConfig(), 0, 0, (0, [], 500)),                               # nothing to generate from
])
def test_budget_ablations_send_everything_to_the_other_branch(config, n_clusters, n_failures, expected):
    budget = plan_budget(1000, n_clusters, n_failures, config)
    assert (budget.error, budget.per_cluster, budget.unallocated) == expected
    assert budget.total == 500


def test_every_method_gets_the_same_total():
    methods = [BudgetConfig(), BudgetConfig(use_patterns=False), BudgetConfig(use_errors=False),
               BudgetConfig(use_rephrase=True)]
    budgets = [plan_budget(600, 3, 200, config) for config in methods]
    assert {b.pattern + b.error + b.rephrase for b in budgets} == {300}
    assert budgets[-1].rephrase == 300 and budgets[-1].as_dict()["total"] == 300


def test_error_quotas_and_even_split():
    assert split_evenly(10, 3) == [4, 3, 3]
    assert error_quotas(5, 10, 2) == [2, 2, 1]  # within the cap: few failures, 2 each
    assert error_quotas(7, 3, 2) == [3, 2, 2]  # above the cap (no patterns): spread over all failures
    assert error_quotas(0, 3, 2) == [] and error_quotas(4, 0, 2) == []


def test_budget_config_rejects_nonsense():
    with pytest.raises(ValueError):
        BudgetConfig(error_fraction=1.5)
    with pytest.raises(ValueError):
        GenerationConfig(batch_size=0)


# ---------------------------------------------------------------------------
# Schemas


def test_schemas_have_exact_counts_and_stable_names():
    schema = variants_schema(3)
    assert schema.__name__ == "GeneratedVariants" and schema is variants_schema(3)
    ok = {"variants": [{"question": "q", "answer": "a"}] * 3}
    assert len(schema.model_validate(ok).variants) == 3
    with pytest.raises(ValidationError):
        schema.model_validate({"variants": [{"question": "q", "answer": "a"}] * 2})
    with pytest.raises(ValidationError):
        schema.model_validate({"variants": [{"question": "", "answer": "a"}] * 3})
    assert rephrasings_schema(2).model_json_schema()["properties"]["rephrasings"]["minItems"] == 2


# ---------------------------------------------------------------------------
# Pattern-guided branch


def test_pattern_batching_calls_and_variants_per_call(stand_in):
    config = GenerationConfig(batch_size=2)
    samples = generate_pattern_samples(STRATEGIES, [5, 2], TRAIN, client("gen"), config, seed=3, iteration=2)
    requests = generation_requests(stand_in)
    per_call = sorted(r["schema"]["properties"]["variants"]["minItems"] for r in requests)
    assert per_call == [1, 2, 2, 2]  # ceil(5/2) + ceil(2/2) calls
    assert [s.sample_id for s in samples] == [f"it2-pat-0-{n}" for n in range(5)] + ["it2-pat-1-0", "it2-pat-1-1"]
    assert all(r["params"].get("temperature") == 0.7 for r in requests)


def test_pattern_samples_record_provenance_and_keep_the_format(stand_in):
    samples = generate_pattern_samples(STRATEGIES, [3, 3], TRAIN, client("gen"), seed=0)
    train_ids = {ex.id for ex in TRAIN}
    for sample in samples:
        assert sample.is_synthetic and sample.branch == "pattern" and sample.attempt == 1
        assert sample.based_on_example in train_ids
        assert sample.based_on_strategy in {"Two-step sums", "Mixed units"}
        assert [m["role"] for m in sample.messages] == ["user", "assistant"]
        assert sample.messages[1]["content"].splitlines()[-1].startswith("#### ")
    prompts = [user_prompt(r) for r in generation_requests(stand_in)]
    assert any('Strategy "Two-step sums"' in p and "- two steps" in p for p in prompts)


def test_pattern_batches_use_different_examples_and_refuse_a_mismatched_budget():
    plans = plan_pattern_batches(STRATEGIES[:1], [12], TRAIN, GenerationConfig(batch_size=3), seed=0, iteration=1)
    assert len({plan.example.id for plan in plans}) == 4
    with pytest.raises(ValueError, match="n_clusters"):
        plan_pattern_batches(STRATEGIES, [5], TRAIN, GenerationConfig(), seed=0, iteration=1)


def test_multiple_choice_answer_style_is_kept(stand_in):
    train = [arc_example(i) for i in range(4)]
    samples = generate_pattern_samples(STRATEGIES[:1], [4], train, client("gen"), GenerationConfig(batch_size=2))
    assert len(samples) == 4
    assert all(s.messages[1]["content"] == "The answer is B." for s in samples)
    assert all("\nA. " in s.question and "Answer with the letter" in s.question for s in samples)


def test_a_reply_with_too_few_items_is_salvaged(stand_in):
    one_item = json.dumps({"variants": [{"question": "Mia has 9 pens. How many?", "answer": "#### 9"}]})
    stand_in.set_script({"GeneratedVariants": one_item})
    samples = generate_pattern_samples(STRATEGIES[:1], [3], TRAIN, client("gen"), GenerationConfig(batch_size=3))
    assert [s.sample_id for s in samples] == ["it1-pat-0-0"]


# ---------------------------------------------------------------------------
# Error-based and rephrase branches


def test_error_branch_writes_new_questions_from_training_failures(stand_in):
    failures = [failure_for(TRAIN[1]), failure_for(TRAIN[4])]
    samples = generate_error_samples(failures, 3, TRAIN, client("gen"), GenerationConfig(batch_size=4))
    assert len(samples) == 3 and {s.branch for s in samples} == {"error"}
    assert all(s.based_on_strategy is None for s in samples)
    assert {s.based_on_example for s in samples} <= {TRAIN[1].id, TRAIN[4].id}
    prompts = [user_prompt(r) for r in generation_requests(stand_in)]
    assert all("### The model's wrong reply\nMia has 5 pencils." in p for p in prompts)
    assert all(s.question != TRAIN[1].prompt and s.question != TRAIN[4].prompt for s in samples)


def test_error_branch_refuses_failures_outside_the_training_set(stand_in):
    with pytest.raises(LeakError, match="not training examples"):
        generate_error_samples([failure_for(VAL[0])], 2, TRAIN, client("gen"))
    assert generation_requests(stand_in) == []


def test_rephrase_keeps_the_answer_verbatim(stand_in):
    samples = generate_rephrase_samples(TRAIN, 5, client("gen"), GenerationConfig(batch_size=2), iteration=3)
    assert [s.sample_id for s in samples] == [f"it3-reph-{n}" for n in range(5)]
    by_id = {ex.id: ex for ex in TRAIN}
    for sample in samples:
        original = by_id[sample.based_on_example]
        assert sample.branch == "rephrase" and sample.messages[1]["content"] == original.answer
        assert original.prompt in sample.question and sample.question != original.prompt


# ---------------------------------------------------------------------------
# The whole iteration


def test_generate_and_qc_fills_the_budget_and_counts_what_it_made(stand_in):
    budget = plan_budget(len(TRAIN) * 2, 2, 2)  # total 8: error 2, patterns 3 + 3
    failures = [failure_for(TRAIN[0]), failure_for(TRAIN[5])]
    outcome = generate_and_qc(STRATEGIES, budget, TRAIN, failures, client("gen"), client("judge"), seed=1)
    assert len(outcome.accepted) == budget.total == 8
    counts = outcome.produced_counts
    assert counts["pattern"]["accepted"] == 6 and counts["error"]["accepted"] == 2
    assert counts["total"]["planned"] == 8 and counts["total"]["failed_calls"] == 0
    assert len(outcome.qc_results) == len(outcome.attempts) == 8


def test_no_validation_example_ever_reaches_a_generation_prompt(stand_in):
    guard = LeakageGuard({ex.id: ex.prompt for ex in VAL}, allowed_texts=[ex.prompt for ex in TRAIN])
    budget = plan_budget(len(TRAIN) * 2, 2, 2, BudgetConfig())
    failures = [failure_for(TRAIN[2]), failure_for(TRAIN[3])]
    generate_and_qc(STRATEGIES, budget, TRAIN, failures, client("gen"), client("judge"), leak_guard=guard)
    prompts = [user_prompt(r) for r in generation_requests(stand_in)]
    assert prompts
    for ex in VAL:
        assert all(ex.id not in p and ex.prompt not in p for p in prompts)


def test_a_validation_example_passed_as_training_data_is_caught(stand_in):
    guard = LeakageGuard({ex.id: ex.prompt for ex in VAL})
    budget = plan_budget(4, 1, 0)
    with pytest.raises(LeakError):
        generate_and_qc(STRATEGIES[:1], budget, [VAL[0]], [], client("gen"), client("judge"), leak_guard=guard)
    assert generation_requests(stand_in) == []


def test_a_generated_copy_of_a_validation_question_is_dropped_and_counted(stand_in):
    copy = json.dumps({"variants": [{"question": VAL[2].prompt, "answer": "#### 126"},
                                    {"question": "Leo has 4 cars and buys 3 more. How many cars?",
                                     "answer": "Leo has 4 + 3 = 7.\n#### 7"}]})
    stand_in.set_script({**generation_script(), "GeneratedVariants": copy})
    guard = LeakageGuard({ex.id: ex.prompt for ex in VAL}, allowed_texts=[ex.prompt for ex in TRAIN])
    budget = plan_budget(4, 1, 0)  # total 2, one pattern batch of 2
    outcome = generate_and_qc(STRATEGIES[:1], budget, TRAIN, [], client("gen"), client("judge"),
                              GenerationConfig(batch_size=2), leak_guard=guard)
    assert [d.protected_id for d in outcome.leaked] == [VAL[2].id]
    assert [s.question for s in outcome.accepted] == ["Leo has 4 cars and buys 3 more. How many cars?"]
    assert outcome.produced_counts["pattern"]["leaked"] == 1


def test_same_seed_same_samples_other_seed_other_draws(stand_in):
    budget = plan_budget(len(TRAIN) * 2, 2, 2)
    failures = [failure_for(TRAIN[0]), failure_for(TRAIN[6])]

    def run(seed):
        outcome = generate_and_qc(STRATEGIES, budget, TRAIN, failures, client("gen"), client("judge"), seed=seed)
        return [(s.sample_id, s.based_on_example, s.messages) for s in outcome.accepted]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert [x[1] for x in first] != [x[1] for x in other]


def test_qc_disabled_accepts_everything_without_a_judge(stand_in):
    budget = plan_budget(8, 1, 0)
    outcome = generate_and_qc(STRATEGIES[:1], budget, TRAIN, [], client("gen"), client("judge"),
                              qc_config=QCConfig(qc_disabled=True))
    assert len(outcome.accepted) == 4 and not outcome.rejected
    assert all(r.passed and r.average is None for r in outcome.qc_results)
    assert not [r for r in stand_in.received if r["schema_name"].startswith("JudgeScores")]


def test_unreadable_generation_is_retried_then_counted(stand_in):
    stand_in.set_script({**generation_script(), "GeneratedVariants": "Sure! Here are some examples."})
    outcome = generate_and_qc(STRATEGIES[:1], plan_budget(4, 1, 0), TRAIN, [], client("gen", schema_retries=0),
                              client("judge"))
    assert not outcome.accepted and not outcome.attempts and not outcome.qc_results
    assert outcome.produced_counts["pattern"] == {"planned": 2, "batches": 1, "calls": 4, "failed_calls": 4,
                                                  "generated": 0, "accepted": 0, "rejected": 0, "leaked": 0}
    prompts = [user_prompt(r) for r in generation_requests(stand_in)]
    assert "no usable examples" in prompts[1]


def test_shared_instruction_lines_are_found_and_restored(stand_in):
    train = [arc_example(i) for i in range(4)]
    template = shared_template([ex.prompt for ex in train])
    assert (template.prefix, template.suffix) == ("", "Answer with the letter of the correct option.")
    assert shared_template([ex.prompt for ex in train[:2]]).suffix == ""  # too few prompts to call it a template
    restored = template.apply("Question: Why is the sky blue?\nA. dust\nB. scattering")
    assert restored.endswith("\nAnswer with the letter of the correct option.")
    assert template.apply(restored) == restored  # already there: not added twice
    assert template.apply(restored.replace("Answer", "answer")) == restored.replace("Answer", "answer")

    bare = json.dumps({"variants": [{"question": "Question: Why do magnets stick?\nA. glue\nB. fields",
                                     "answer": "The answer is B."}]})
    stand_in.set_script({"GeneratedVariants": bare})
    samples = generate_pattern_samples(STRATEGIES[:1], [1], train, client("gen"))
    assert samples[0].question.endswith("B. fields\nAnswer with the letter of the correct option.")
    kept = generate_pattern_samples(STRATEGIES[:1], [1], train, client("gen"), GenerationConfig(restore_template=False))
    assert kept[0].question.endswith("B. fields")
