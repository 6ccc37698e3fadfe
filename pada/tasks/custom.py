"""A task read from the user's own JSONL file.

Each line is one example, either
    {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}
(an optional leading system turn is prepended to the prompt), or
    {"input": ..., "answer": ...}.
Optional fields: `id` (used when every line has one and they are unique; else
`custom-<0-based line>`), `split` (train / validation / test; lines without
one go to train), and per scorer:
- exact:  `answers` (extra accepted answers); SQuAD-normalised exact match, F1 in metrics.
- mc:     `choices` (option texts; with `input` they are added to the prompt as A., B., ...);
          the answer is a letter, a 0-based index, an option's text or a sentence like "The answer is B.".
- number: the answer holds the number (a `#### n` marker wins); compared numerically.
- code:   `test_list` (assert lines) and/or `test` (code; with `entry_point`, a HumanEval `check`
          is called), optional `test_setup_code`, `entry_point`, `stub` (a signature+docstring a
          body-only completion continues).
When no line has a `split`, a fixed carve (key "custom/carve") takes
min(500, 20%) for validation and min(500, 20%) for test; the rest is the training pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pada.records import Example, Score
from pada.tasks import scoring
from pada.tasks.base import Pools, Task, TaskError
from pada.tasks.common import allow_unsandboxed_default, carve_fixed
from pada.tasks.sources import Row, read_jsonl

SCORERS = {"exact": "exact_match", "mc": "accuracy", "number": "accuracy", "code": "pass@1"}
SCORER_ALIASES = {"exact_match": "exact", "em": "exact", "multiple_choice": "mc", "choice": "mc",
                  "numeric": "number", "math": "number", "pass@1": "code"}
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "dev": "validation",
                 "valid": "validation", "test": "test"}
MAX_CARVE = 500
CARVE_FRACTION = 0.2


def resolve_scorer(scorer: str) -> str:
    name = SCORER_ALIASES.get(scorer.strip().lower(), scorer.strip().lower())
    if name not in SCORERS:
        raise TaskError(f"unknown scorer {scorer!r} for a custom task; choose one of: {', '.join(SCORERS)}")
    return name


def prompt_and_answer(row: Row) -> tuple[str, str]:
    """(user turn, assistant turn) from `messages` or from `input` / `answer`."""
    if "messages" in row.record:
        messages = row.get("messages", list)
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                   for m in messages):
            raise row.fail("messages", "should be a list of {role, content} objects with string values")
        roles = [m["role"] for m in messages]
        if roles not in (["user", "assistant"], ["system", "user", "assistant"]):
            raise row.fail("messages", f"should be [system,] user, assistant turns, got {roles}")
        system = messages[0]["content"].strip() + "\n\n" if roles[0] == "system" else ""
        return system + messages[-2]["content"], messages[-1]["content"]
    text = row.get("input", (str,))
    answer = row.get("answer", (str, int, float))
    return text, str(answer)


def choice_gold(row: Row, answer: str, choices: list[str] | None) -> str:
    """The gold letter from a letter, a 0-based index, an option's text or an answer sentence."""
    raw = row.record.get("answer")
    n_options = len(choices) if choices else 5
    if isinstance(raw, int) and not isinstance(raw, bool) and choices and 0 <= raw < len(choices):
        return scoring.LETTERS[raw]
    letter = scoring.extract_choice(answer, n_options, choices)
    if letter is None:
        field = "answer" if "answer" in row.record else "messages"
        raise row.fail(field, f"does not name an option ({answer.strip()[:60]!r}); use a letter such as 'B'")
    return letter


class CustomTask(Task):
    name = "custom"
    title = "Custom JSONL"

    def __init__(self, data_dir=None, path: str | Path | None = None, scorer: str = "exact",
                 timeout_s: float = 10.0, allow_unsandboxed: bool | None = None):
        super().__init__(data_dir)
        if not path:
            raise TaskError("the custom task needs a JSONL file: use custom:<path> or path=<file>")
        self.path = Path(path).expanduser()
        self.scorer = resolve_scorer(scorer)
        self.metric = SCORERS[self.scorer]
        self.max_new_tokens = {"exact": 32, "mc": 10, "number": 256, "code": 384}[self.scorer]
        self.timeout_s = float(timeout_s)
        self.allow_unsandboxed = allow_unsandboxed_default() if allow_unsandboxed is None else bool(allow_unsandboxed)

    def load_pools(self) -> Pools:
        if not self.path.is_file():
            raise TaskError(f"custom task file not found: {self.path}")
        rows = list(read_jsonl(self.path))
        if not rows:
            raise TaskError(f"{self.path}: no examples (the file is empty)")
        ids = [row.record.get("id") for row in rows]
        own_ids = all(isinstance(i, (str, int)) and not isinstance(i, bool) and str(i) for i in ids) \
            and len({str(i) for i in ids}) == len(ids)
        examples = [self.example(row, str(row.record["id"]) if own_ids else f"custom-{row.index}") for row in rows]
        if any("split" in row.record for row in rows):
            by_split = {"train": [], "validation": [], "test": []}
            for ex in examples:
                by_split[ex.source_split].append(ex)
            return Pools(**by_split)
        size = min(MAX_CARVE, int(len(examples) * CARVE_FRACTION))
        validation, rest = carve_fixed(examples, size, "custom/carve-validation")
        test, train = carve_fixed(rest, size, "custom/carve-test")
        return Pools(train=train, validation=validation, test=test)

    def example(self, row: Row, example_id: str) -> Example:
        prompt, answer = prompt_and_answer(row)
        split = row.record.get("split", "train")
        if not isinstance(split, str) or split.strip().lower() not in SPLIT_ALIASES:
            raise row.fail("split", f"is {split!r}; use train, validation or test")
        gold, prompt, answer = self.gold(row, prompt, answer)
        return Example(id=example_id, task=self.name, source_split=SPLIT_ALIASES[split.strip().lower()],
                       prompt=prompt, answer=answer, gold=gold)

    def gold(self, row: Row, prompt: str, answer: str) -> tuple[dict[str, Any], str, str]:
        """What the scorer needs; for mc with `input` + `choices`, also the prompt with its options."""
        if self.scorer == "exact":
            extra = row.get("answers", list, required=False) or []
            if not all(isinstance(a, str) for a in extra):
                raise row.fail("answers", "should be a list of strings")
            return {"answers": [answer.strip(), *extra]}, prompt, answer
        if self.scorer == "number":
            number = scoring.extract_number(answer)
            if number is None:
                raise row.fail("answer" if "answer" in row.record else "messages", "holds no number")
            return {"number": scoring.format_number(number)}, prompt, answer
        if self.scorer == "mc":
            choices = row.get("choices", list, required=False)
            if choices is not None and (len(choices) < 2 or not all(isinstance(c, str) for c in choices)):
                raise row.fail("choices", "should be a list of at least 2 strings")
            letter = choice_gold(row, answer, choices)
            if choices and "messages" not in row.record:
                prompt, answer = scoring.mc_prompt(prompt, choices), scoring.mc_answer(letter)
            return {"label": letter, "options": choices}, prompt, answer
        return self.code_gold(row), prompt, answer

    def code_gold(self, row: Row) -> dict[str, Any]:
        test_list = row.get("test_list", list, required=False) or []
        test = row.get("test", required=False) or ""
        if not test_list and not test:
            raise row.fail("test_list", "is missing: a code task needs `test_list` (asserts) or `test`")
        if not all(isinstance(t, str) for t in test_list):
            raise row.fail("test_list", "should be a list of strings")
        entry_point = row.get("entry_point", required=False)
        if "def check(" in test and not entry_point:
            raise row.fail("entry_point", "is missing: a `test` that defines check() needs the function's name")
        return {"test_list": test_list, "test": test, "entry_point": entry_point,
                "stub": row.get("stub", required=False) or "",
                "test_setup_code": row.get("test_setup_code", required=False) or ""}

    def score(self, example: Example, prediction: str) -> Score:
        gold = example.gold
        if self.scorer == "exact":
            return scoring.score_span(prediction, gold["answers"])
        if self.scorer == "number":
            return scoring.score_number(prediction, gold["number"])
        if self.scorer == "mc":
            return scoring.score_choice(prediction, gold["label"], gold.get("options"))
        return scoring.score_code(prediction, gold, self.timeout_s, self.allow_unsandboxed)
