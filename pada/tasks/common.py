"""Pieces several tasks share: id assignment, grouped carving, and the scoring mixins."""

from __future__ import annotations

import ast
import os
import random
from collections.abc import Callable, Hashable

from pada.records import Example, Score
from pada.tasks import scoring
from pada.tasks.forms import CHOICE_FORM, NUMBER_FORM, OPTION_LINE
from pada.tasks.sources import Row

SPAN_MAX_WORDS = 30  # SQuAD answers are short spans; longer replies are explanations, not answers


def carve_groups(rows: list, group_of: Callable[[object], Hashable], targets: list[int], key: str) -> list[list]:
    """Split `rows` into len(targets)+1 parts of whole groups, in a fixed order given by `key`.

    Groups (e.g. a HellaSwag video, a SQuAD article) are shuffled with the fixed
    `key`, then dealt to part 0 until it holds at least targets[0] rows, then
    to part 1, ...; the last part gets the rest. Each part keeps file order, so
    no group straddles two parts and the carve never changes between runs.
    """
    groups: dict[Hashable, list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault(group_of(row), []).append(position)
    order = list(groups)
    random.Random(key).shuffle(order)
    parts: list[list[int]] = [[] for _ in range(len(targets) + 1)]
    part = 0
    for group in order:
        while part < len(targets) and len(parts[part]) >= targets[part]:
            part += 1
        parts[part] += groups[group]
    return [[rows[i] for i in sorted(positions)] for positions in parts]


def carve_fixed(rows: list, size: int, key: str) -> tuple[list, list]:
    """(carved, rest): a fixed random `size` rows and the others, both in file order."""
    order = list(range(len(rows)))
    random.Random(key).shuffle(order)
    chosen = set(order[:size])
    return ([r for i, r in enumerate(rows) if i in chosen], [r for i, r in enumerate(rows) if i not in chosen])


def line_id(split: str, row: Row) -> str:
    """`<source split>-<0-based line number>`, for sources without (unique) ids of their own."""
    return f"{split}-{row.index}"


def allow_unsandboxed_default() -> bool:
    """PADA_ALLOW_UNSANDBOXED=1 lets code run without bubblewrap (trusted machines only)."""
    return os.environ.get("PADA_ALLOW_UNSANDBOXED", "").strip().lower() in ("1", "true", "yes")


class ChoiceScoring:
    """Scores multiple-choice examples whose gold holds `label` (A..) and `options` (texts)."""

    sample_form = CHOICE_FORM

    format_hint = ("The question must list its answer options on separate lines as 'A. ...', 'B. ...', 'C. ...', "
                   "'D. ...', then say 'Answer with the letter of the correct option.'; the answer must be "
                   "'The answer is X.' where X is the letter of the correct option.")

    def format_problem(self, prompt: str, answer: str) -> str | None:
        """Why a (generated) question/answer pair breaks the multiple-choice format, or None."""
        labels = OPTION_LINE.findall(prompt)
        if len(labels) < 2:
            return "the question lists fewer than two lettered options"
        chosen = scoring.extract_choice(answer, len(labels))
        if chosen is None or chosen not in labels:
            return "the answer names none of the question's option letters"
        return None

    def score(self, example: Example, prediction: str) -> Score:
        gold = example.gold
        return scoring.score_choice(prediction, gold["label"], gold.get("options"),
                                    numeric_labels=bool(gold.get("numeric_labels")))


class NumberScoring:
    """Scores examples whose gold holds the final `number` (as text)."""

    sample_form = NUMBER_FORM

    format_hint = "The answer must solve the problem step by step and end with a line '#### <final number>'."

    def format_problem(self, prompt: str, answer: str) -> str | None:
        if scoring.extract_number(answer) is None:
            return "the answer has no final number"
        return None

    def score(self, example: Example, prediction: str) -> Score:
        return scoring.score_number(prediction, example.gold["number"])


class SpanScoring:
    """SQuAD-style exact match / F1 against gold `answers`."""

    format_hint = ("The question must include its context paragraph; the answer must be a short span (a few words) "
                   "copied exactly from that context.")

    def format_problem(self, prompt: str, answer: str) -> str | None:
        words = len(answer.split())
        if not words or words > SPAN_MAX_WORDS:
            return f"the answer is not a short span (1 to {SPAN_MAX_WORDS} words)"
        if scoring.normalize_answer(answer) not in scoring.normalize_answer(prompt):
            return "the answer is not a span of the question's context"
        return None

    def score(self, example: Example, prediction: str) -> Score:
        return scoring.score_span(prediction, example.gold["answers"])


class CodeScoring:
    """pass@1 in the sandbox against the example's tests."""

    timeout_s: float = 10.0
    allow_unsandboxed: bool = False

    format_hint = ("The question must give a Python function signature with a docstring; the answer must be the "
                   "complete function in a ```python code block.")

    def format_problem(self, prompt: str, answer: str) -> str | None:
        try:
            ast.parse(scoring.extract_code(answer))
        except SyntaxError as err:
            return f"the answer's code does not parse ({err.msg}, line {err.lineno})"
        return None

    def score(self, example: Example, prediction: str) -> Score:
        return scoring.score_code(prediction, example.gold, self.timeout_s, self.allow_unsandboxed)
