"""HellaSwag: pick the most plausible continuation of a video/WikiHow context (4 endings).

Only the labelled validation file (10,042 records) is available, so all three
pools are carved from it, grouped by `source_id` (one video or WikiHow article)
so that no source's contexts straddle two pools. Groups are dealt in a fixed
order (key "hellaswag/carve"): validation until it holds >= 500 records, then
the training pool until >= 3,000, and the test pool gets the rest (~6,500; a
fixed 500 by default). Ids are `val-<line>` (0-based), since `ind` repeats.

Text is cleaned as in lm-evaluation-harness (WikiHow's " [title]" / "[header]"
markers removed).
"""

from __future__ import annotations

import re

from pada.records import Example
from pada.tasks import hub
from pada.tasks.base import Pools, Task
from pada.tasks.common import ChoiceScoring, carve_groups, line_id
from pada.tasks.scoring import LETTERS, mc_answer, mc_prompt
from pada.tasks.sources import Row, load_rows

VALIDATION_TARGET = 500
TRAIN_TARGET = 3000


def clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ").strip()


def hellaswag_example(row: Row) -> Example:
    endings = row.get("endings", list)
    if len(endings) < 2 or not all(isinstance(e, str) for e in endings):
        raise row.fail("endings", "should be a list of at least 2 strings")
    label = row.get("label", (int, str))
    valid = str(label).strip().isdigit() and 0 <= int(label) < len(endings)
    if not valid:
        raise row.fail("label", f"is {label!r}, not an index into the {len(endings)} endings")
    source_id = row.get("source_id")
    context_a = row.get("ctx_a", required=False)
    if context_a is not None:  # as lm-evaluation-harness: ctx_b continues the sentence, capitalised
        context = f"{context_a} {(row.get('ctx_b', required=False) or '').capitalize()}"
    else:
        context = row.get("ctx")
    activity = row.get("activity_label", required=False) or ""
    question = f"Choose the most likely continuation.\n\n{clean(activity)}: {clean(context)}..."
    options = [clean(e) for e in endings]
    letter = LETTERS[int(label)]
    return Example(id=line_id("val", row), task="hellaswag", source_split="val",
                   prompt=mc_prompt(question, options), answer=mc_answer(letter),
                   gold={"label": letter, "options": options, "source_id": source_id})


class HellaSwag(ChoiceScoring, Task):
    name = "hellaswag"
    title = "HellaSwag"
    metric = "accuracy"
    max_new_tokens = 10

    def load_pools(self) -> Pools:
        rows = load_rows(self.data_root, "hellaswag/hellaswag_val.jsonl", hub.hellaswag_validation,
                         "Rowan/hellaswag validation")
        examples = [hellaswag_example(row) for row in rows]
        validation, train, test = carve_groups(examples, lambda ex: ex.gold["source_id"],
                                               [VALIDATION_TARGET, TRAIN_TARGET], "hellaswag/carve")
        return Pools(train=train, validation=validation, test=test)
