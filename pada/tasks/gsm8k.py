"""GSM8K: grade-school maths word problems with worked solutions.

Splits: GSM8K has only train (7,473) and test (1,319). A fixed 500 problems
of train.jsonl (a permutation fixed by the key "gsm8k/validation") are the
validation set; the other 6,973 are the training pool; test = test.jsonl
(a fixed 500 by default). Ids: `train-<line>` / `test-<line>` (0-based).

The answer target is the reference solution without the `<<48/2=24>>`
calculator annotations (noise for a small model), ending in `#### <n>`.
"""

from __future__ import annotations

import re

from pada.records import Example
from pada.tasks import hub
from pada.tasks.base import Pools, Task
from pada.tasks.common import NumberScoring, carve_fixed, line_id
from pada.tasks.scoring import format_number, parse_number
from pada.tasks.sources import Row, load_rows

VALIDATION_SIZE = 500
INSTRUCTION = "Solve step by step. End with the final answer as '#### <number>'."


def strip_calculator(solution: str) -> str:
    return re.sub(r"<<[^>]*>>", "", solution)


def gsm8k_example(row: Row, split: str) -> Example:
    question = row.get("question").strip()
    solution = row.get("answer")
    if "####" not in solution:
        raise row.fail("answer", "has no '#### <number>' final answer")
    number = parse_number(solution.rsplit("####", 1)[1])
    if number is None:
        raise row.fail("answer", "has no number after '####'")
    return Example(id=line_id(split, row), task="gsm8k", source_split=split,
                   prompt=f"{question}\n\n{INSTRUCTION}", answer=strip_calculator(solution).strip(),
                   gold={"number": format_number(number)})


class GSM8K(NumberScoring, Task):
    name = "gsm8k"
    title = "GSM8K"
    metric = "accuracy"
    max_new_tokens = 256  # reference solutions run to ~200 tokens

    def load_pools(self) -> Pools:
        train_rows = load_rows(self.data_root, "gsm8k/train.jsonl", lambda: hub.gsm8k("train"), "openai/gsm8k train")
        test_rows = load_rows(self.data_root, "gsm8k/test.jsonl", lambda: hub.gsm8k("test"), "openai/gsm8k test")
        train = [gsm8k_example(row, "train") for row in train_rows]
        validation, train = carve_fixed(train, VALIDATION_SIZE, "gsm8k/validation")
        return Pools(train=train, validation=validation, test=[gsm8k_example(row, "test") for row in test_rows])
