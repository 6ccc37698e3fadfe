"""SQuAD v1.1: answer a question with a span copied from a Wikipedia paragraph.

Splits:
- training pool and validation both come from the rebuilt train file
  (`train-v1.1.reconstructed.jsonl.gz`, 87,599 questions, no ids of its own):
  validation is a carve of whole *articles* (titles dealt in a fixed order,
  key "squad/validation", until >= 2,000 questions, ~10 articles), so no
  paragraph or article is shared with training; the fixed 500 of it are the
  validation set. The training pool is every other train question.
- test = dev-v1.1.jsonl (10,570; a fixed 500 by default), SQuAD's own ids.
Ids for the train file are `train-<line>` (0-based), the same when the rows
come from the hub (same order).

answer_start is not used (the prompt needs only the text), so the inferred
starts of the rebuilt file do not matter. Contexts average ~750 characters
(~170 tokens); `max_context_chars` drops longer ones from the training pool
and validation (never from test) to keep SLM prompts short.
"""

from __future__ import annotations

from pada.records import Example
from pada.tasks import hub
from pada.tasks.base import Pools, Task
from pada.tasks.common import SpanScoring, carve_groups, line_id
from pada.tasks.forms import SPAN_FORM, SPAN_INSTRUCTION, span_prompt
from pada.tasks.sources import Row, load_rows

VALIDATION_TARGET = 2000
INSTRUCTION = SPAN_INSTRUCTION  # the layout lives in pada/tasks/forms.py, shared with the span form


def squad_example(row: Row, split: str, example_id: str) -> Example:
    context = row.get("context")
    question = row.get("question").strip()
    answers = row.get("answers", dict)
    texts = answers.get("text")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise row.fail("answers.text", "should be a non-empty list of strings")
    return Example(id=example_id, task="squad", source_split=split,
                   prompt=span_prompt(context, question),
                   answer=texts[0].strip(),
                   gold={"answers": texts, "title": row.get("title")})


class SQuAD(SpanScoring, Task):
    name = "squad"
    title = "SQuAD v1.1"
    metric = "exact_match"
    max_new_tokens = 32
    # Generators write a new question and its span for a training example's context; the code keeps
    # the context verbatim and refuses answers that are not spans of it (pada/tasks/forms.py).
    sample_form = SPAN_FORM

    def __init__(self, data_dir=None, max_context_chars: int | None = None):
        super().__init__(data_dir)
        self.max_context_chars = max_context_chars
        self._test: list[Example] | None = None

    def load_pools(self) -> Pools:
        train_rows = load_rows(self.data_root, "squad/train-v1.1.reconstructed.jsonl.gz",
                               lambda: hub.squad("train"), "rajpurkar/squad train")
        train = [squad_example(row, "train", line_id("train", row)) for row in train_rows]
        validation, train = carve_groups(train, lambda ex: ex.gold["title"], [VALIDATION_TARGET], "squad/validation")
        if self.max_context_chars:
            validation, train = self._short(validation), self._short(train)
        return Pools(train=train, validation=validation, test=self.test_examples())

    def test_examples(self) -> list[Example]:
        """dev-v1.1 (10,570 questions), read on its own: cheap next to the 87 MB train file."""
        if self._test is None:
            dev_rows = load_rows(self.data_root, "squad/dev-v1.1.jsonl", lambda: hub.squad("validation"),
                                 "rajpurkar/squad validation")
            self._test = [squad_example(row, "dev", row.get("id")) for row in dev_rows]
        return self._test

    def lookup(self, ids) -> dict[str, Example]:
        """Predictions for the test set (dev ids) are scored without reading the train file."""
        ids = list(ids)
        dev = {ex.id: ex for ex in self.test_examples()}
        if all(i in dev for i in ids):
            return {i: dev[i] for i in ids}
        return super().lookup(ids)

    def _short(self, examples: list[Example]) -> list[Example]:
        prefix = len("Context: ")
        return [ex for ex in examples
                if ex.prompt.index("\n\nQuestion: ") - prefix <= self.max_context_chars]
