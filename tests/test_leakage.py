"""Leakage guard: protected questions never in prompts, overlapping synthetic samples dropped."""

import random

import pytest

from pada.agents.leakage import (
    LeakageConfig,
    LeakageGuard,
    LeakError,
    PromptLeakCheck,
    assert_no_leak,
    lcs_length,
    normalise_tokens,
    rouge_l_f,
)
from pada.records import SyntheticSample

PROTECTED = {
    "gsm8k-test-1": "A baker sells 42 loaves on Monday and twice as many on Tuesday. "
                    "How many loaves did the baker sell on both days together?",
    "gsm8k-test-2": "Jon reads 12 pages every evening. His book has 180 pages. "
                    "After how many evenings will he finish the book?",
    "gsm8k-val-3": "A garden has 6 rows of tomato plants with 8 plants in each row. "
                   "Each plant gives 3 tomatoes. How many tomatoes does the garden give?",
}
INSTRUCTION = ("Solve the problem step by step and write the final answer on its own line "
               "after four hash marks as in the examples.")


def sample(question: str, sample_id: str = "it1-pat-0-0") -> SyntheticSample:
    return SyntheticSample(sample_id=sample_id, branch="pattern", based_on_example="gsm8k-train-0",
                           messages=[{"role": "user", "content": question}, {"role": "assistant", "content": "#### 1"}])


def lcs_reference(a, b):
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.randrange(6) for _ in range(rng.randrange(0, 40))]
        b = [rng.randrange(6) for _ in range(rng.randrange(0, 40))]
        assert lcs_length(a, b) == lcs_reference(a, b)
    assert rouge_l_f([1, 2, 3], [1, 2, 3]) == 1.0 and rouge_l_f([], [1]) == 0.0


def test_verbatim_copy_is_dropped_by_ngram():
    guard = LeakageGuard(PROTECTED)
    copy = "  " + PROTECTED["gsm8k-test-2"].upper() + "  "  # case and spacing do not hide it
    kept, dropped = guard.filter([sample(copy)])
    assert not kept
    assert (dropped[0].protected_id, dropped[0].reason) == ("gsm8k-test-2", "ngram")


def test_light_paraphrase_is_dropped_by_rouge_l():
    paraphrase = ("A baker sold 42 loaves on Monday and twice as many on Tuesday. "
                  "In total, how many loaves did the baker sell on both days together?")  # longest shared run: 10
    guard = LeakageGuard(PROTECTED)
    verdict = guard.check(paraphrase)
    assert verdict is not None and verdict[:2] == ("gsm8k-test-1", "rouge_l") and verdict[2] >= 0.7


def test_unrelated_questions_are_kept():
    guard = LeakageGuard(PROTECTED)
    questions = ["Mia has 5 pencils and her friend gives her 7 more. How many pencils does Mia have now?",
                 "A train travels 60 miles per hour for 3 hours. How far does it travel?",
                 "How many loaves?"]
    kept, dropped = guard.filter([sample(q, f"s{i}") for i, q in enumerate(questions)])
    assert [s.sample_id for s in kept] == ["s0", "s1", "s2"] and not dropped


def test_thresholds_are_configurable():
    paraphrase = "A baker sold 42 loaves on Monday and twice as many on Tuesday. How many in all?"
    assert LeakageGuard(PROTECTED).check(paraphrase) is None
    strict = LeakageGuard(PROTECTED, config=LeakageConfig(rouge_l_threshold=0.5, ngram_size=8))
    assert strict.check(paraphrase) is not None
    with pytest.raises(ValueError):
        LeakageConfig(rouge_l_threshold=0)


def test_task_template_seen_in_training_prompts_is_not_leakage():
    protected = {pid: f"{text}\n{INSTRUCTION}" for pid, text in PROTECTED.items()}
    train = [f"Mia has {i} pencils and gets {i + 2} more. How many pencils?\n{INSTRUCTION}" for i in range(3)]
    candidate = f"Leo has 4 cars and buys 3 more. How many cars does Leo have?\n{INSTRUCTION}"
    assert LeakageGuard(protected).check(candidate) is not None  # without training prompts the template matches
    guard = LeakageGuard(protected, allowed_texts=train)
    assert guard.check(candidate) is None
    copied = f"{PROTECTED['gsm8k-val-3']}\n{INSTRUCTION}"
    assert guard.check(copied)[0] == "gsm8k-val-3"


def test_assert_no_leak_catches_ids_and_whole_questions():
    prompt = "Training example:\nMia has 5 pencils. How many?\n"
    assert_no_leak(prompt, PROTECTED, PROTECTED.values())
    with pytest.raises(LeakError, match="gsm8k-test-1"):
        assert_no_leak(prompt + "(see gsm8k-test-1)", PROTECTED)
    assert_no_leak(prompt + "gsm8k-test-12", ["gsm8k-test-1"])  # a longer id is a different id
    reflowed = PROTECTED["gsm8k-val-3"].replace(" ", "\n  ").lower()
    with pytest.raises(LeakError, match="protected"):
        assert_no_leak(prompt + reflowed, (), PROTECTED.values())


def test_guard_and_prompt_check_agree():
    guard = LeakageGuard(PROTECTED)
    check = PromptLeakCheck(PROTECTED, PROTECTED.values())
    leaking = "Here is an example: " + PROTECTED["gsm8k-test-2"]
    for run in (guard.assert_no_leak, check):
        run("Mia has 5 pencils.")
        with pytest.raises(LeakError):
            run(leaking)


def test_empty_protected_set_keeps_everything():
    guard = LeakageGuard({})
    kept, dropped = guard.filter([sample(PROTECTED["gsm8k-test-1"])])
    assert len(kept) == 1 and not dropped
    assert normalise_tokens("It's 12-apples!") == ["it", "s", "12", "apples"]


def test_redact_masks_protected_ids_and_quoted_questions():
    from pada.agents.leakage import LeakageGuard

    question = "Which gas do plants absorb from the air during photosynthesis in bright sunlight?"
    guard = LeakageGuard({"Mercury_123": question})
    assert guard.redact("Vary the numbers in each question.") == "Vary the numbers in each question."
    assert guard.redact("Errors like Mercury_123 show confusion.") == "Errors like [held-out example] show confusion."
    assert "redacted" in guard.redact(f"For example: {question.upper()} Use this.")
    guard.assert_no_leak(guard.redact(f"See Mercury_123: {question}"))  # nothing left to leak
