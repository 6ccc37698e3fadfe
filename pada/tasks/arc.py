"""ARC-Challenge: grade-school science questions with 3-5 options.

Splits come straight from the AI2 files: train pool = Train (1,119),
validation = Dev (299, all of it), test = Test (1,172; a fixed 500 by default).
Ids are ARC's own (`Mercury_SC_415702`). A few questions are labelled 1-4
instead of A-D: the prompt always shows letters A-E (by position), the gold is
that letter, and the scorer also accepts the original digit ("2", "(2)").
"""

from __future__ import annotations

from pada.records import Example
from pada.tasks import hub
from pada.tasks.base import Pools, Task
from pada.tasks.common import ChoiceScoring, line_id
from pada.tasks.scoring import LETTERS, mc_answer, mc_prompt
from pada.tasks.sources import Row, load_rows

FILES = {"train": "Train", "validation": "Dev", "test": "Test"}


def arc_example(row: Row, split: str, example_id: str) -> Example:
    question = row.get("question", dict)
    stem = question.get("stem")
    if not isinstance(stem, str) or not stem.strip():
        raise row.fail("question.stem", "is missing or empty")
    choices = question.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or len(choices) > len(LETTERS):
        raise row.fail("question.choices", "should be a list of 2-10 {text, label} objects")
    if not all(isinstance(c, dict) and isinstance(c.get("text"), str) and isinstance(c.get("label"), str)
               for c in choices):
        raise row.fail("question.choices", "should be a list of {text, label} objects with string values")
    labels = [c["label"].strip() for c in choices]
    answer_key = str(row.get("answerKey", (str, int))).strip()
    if answer_key not in labels:
        raise row.fail("answerKey", f"is {answer_key!r}, not one of the labels {labels}")
    options = [c["text"] for c in choices]
    letter = LETTERS[labels.index(answer_key)]
    return Example(
        id=example_id, task="arc_challenge", source_split=split,
        prompt=mc_prompt(stem, options), answer=mc_answer(letter),
        gold={"label": letter, "options": options, "source_labels": labels,
              "numeric_labels": all(label.isdigit() for label in labels)},
    )


class ArcChallenge(ChoiceScoring, Task):
    name = "arc_challenge"
    title = "ARC-Challenge"
    metric = "accuracy"
    max_new_tokens = 10  # "The answer is B." is 6 tokens

    def load_pools(self) -> Pools:
        rows = {split: load_rows(self.data_root, f"arc_challenge/ARC-Challenge-{name}.jsonl",
                                 lambda split=split: hub.arc_challenge(split), f"allenai/ai2_arc ARC-Challenge {split}")
                for split, name in FILES.items()}
        own_ids = [row.record.get("id") for split_rows in rows.values() for row in split_rows]
        use_own = all(isinstance(i, str) and i for i in own_ids) and len(set(own_ids)) == len(own_ids)
        examples = {split: [arc_example(row, split, row.record["id"] if use_own else line_id(split, row))
                            for row in split_rows]
                    for split, split_rows in rows.items()}
        return Pools(train=examples["train"], validation=examples["validation"], test=examples["test"])
