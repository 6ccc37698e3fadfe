"""Each task says when a generated (question, answer) pair breaks its format."""

import pytest

from pada.tasks import get_task


@pytest.mark.parametrize("task", ["arc_challenge", "gsm8k", "hellaswag", "squad", "humaneval"])
def test_the_tasks_own_training_examples_fit_their_format(task):
    examples = get_task(task).splits(train_size=20, val_size=5, test_size=5).train
    assert all(get_task(task).format_problem(ex.prompt, ex.answer) is None for ex in examples)


def test_multiple_choice_needs_options_and_a_letter_among_them():
    arc = get_task("arc_challenge")
    prompt = "Which gas do plants take in?\n\nA. oxygen\nB. carbon dioxide\nC. helium\n\nAnswer with the letter."
    assert arc.format_problem(prompt, "The answer is B.") is None
    assert arc.format_problem(prompt, "(b)") is None
    assert "options" in arc.format_problem("Which gas do plants take in?", "The answer is B.")
    assert "option letters" in arc.format_problem(prompt, "Plants take in carbon dioxide gas.")
    assert "option letters" in arc.format_problem(prompt, "The answer is E.")


def test_numbers_spans_and_code():
    assert get_task("gsm8k").format_problem("q", "3 + 4 = 7\n#### 7") is None
    assert "number" in get_task("gsm8k").format_problem("q", "She has some apples left.")
    context = "Context: The Denver Broncos won Super Bowl 50.\n\nQuestion: Who won?\nAnswer with a span."
    assert get_task("squad").format_problem(context, "Denver Broncos") is None
    assert "context" in get_task("squad").format_problem(context, "Carolina Panthers")
    assert "span" in get_task("squad").format_problem("q", " ".join(["word"] * 40))
    code = get_task("humaneval")
    assert code.format_problem("q", "```python\ndef add(a, b):\n    return a + b\n```") is None
    assert "does not parse" in code.format_problem("q", "```python\ndef add(a, b)\n    return a + b\n```")


@pytest.mark.parametrize("task", ["arc_challenge", "gsm8k", "hellaswag", "squad", "humaneval"])
def test_every_builtin_task_tells_generators_its_format(task):
    assert len(get_task(task).format_hint) > 20
