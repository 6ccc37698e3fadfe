"""HumanEval (test) with MBPP as the training and validation source.

HumanEval has only 164 problems, all kept intact as the test set. Training
and validation come from MBPP (`mbpp.jsonl`, task_ids 1-974), which shares no
problems with HumanEval, using the Hugging Face ranges from its SOURCE.md:
- training pool: 601-974 (HF "train", 374 problems) first, then 1-10 (HF
  "prompt") and 511-600 (HF "validation") as needed: 474 in all. Each part is
  shuffled with the seed on its own and 601-974 comes first, so the paper's
  300 setting draws only from 601-974 and 300 ⊂ 600 ⊂ 1000 still nests.
- validation: 11-510 (HF "test", exactly 500), never used for training.
Ids: HumanEval's own `HumanEval/0`; MBPP `mbpp/<task_id>` (e.g. `mbpp/601`).

Both sources are shown in one format: the function's signature and docstring
(for MBPP built from the reference code's signature, the task text and its
first test as a doctest), and the target is the full function in a ```python
fence. Scoring is pass@1 in `pada.sandbox` (HumanEval: code + test +
`check(entry_point)`; MBPP: test_setup_code + code + test_list asserts).
"""

from __future__ import annotations

import ast

from pada.records import Example
from pada.tasks import hub
from pada.tasks.base import Pools, Task
from pada.tasks.common import CodeScoring, allow_unsandboxed_default
from pada.tasks.sources import Row, load_rows

INSTRUCTION = "Complete this Python function. Reply with the whole function in a ```python code block."
MBPP_TRAIN = range(601, 975)
MBPP_EXTRA = [*range(1, 11), *range(511, 601)]
MBPP_VALIDATION = range(11, 511)


def code_prompt(stub: str) -> str:
    return f"{INSTRUCTION}\n\n```python\n{stub.rstrip()}\n```"


def fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def humaneval_example(row: Row) -> Example:
    stub, solution = row.get("prompt"), row.get("canonical_solution")
    entry_point, test = row.get("entry_point"), row.get("test")
    return Example(id=row.get("task_id"), task="humaneval", source_split="humaneval",
                   prompt=code_prompt(stub), answer=fenced(stub + solution),
                   gold={"stub": stub, "entry_point": entry_point, "test": test})


def _doctest(assertion: str) -> str:
    """`assert f(x) == y` -> `>>> f(x)` / `y`; any other test is shown as `>>> <test>`."""
    try:
        node = ast.parse(assertion.strip()).body[0]
    except (SyntaxError, IndexError):
        return f">>> {assertion.strip()}"
    if (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
            and isinstance(node.test.ops[0], ast.Eq)):
        return f">>> {ast.unparse(node.test.left)}\n{ast.unparse(node.test.comparators[0])}"
    return f">>> {assertion.strip()}"


def mbpp_stub(text: str, code: str, test_list: list[str]) -> tuple[str, str] | None:
    """(stub, entry_point) in HumanEval's shape, from the reference code's signature; None if not derivable."""
    try:
        defs = {node.name: node for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)}
        test = ast.parse(test_list[0].strip())
    except (SyntaxError, IndexError):
        return None
    called = [node.func.id for node in ast.walk(test) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    entry_point = next((name for name in called if name in defs), None)
    if entry_point is None:
        return None
    doc_lines = [text.strip().replace('"""', "'''"), *_doctest(test_list[0]).splitlines()]
    quote = 'r"""' if "\\" in "".join(doc_lines) else '"""'
    body = "\n".join("    " + line for line in doc_lines)
    stub = f"def {entry_point}({ast.unparse(defs[entry_point].args)}):\n    {quote}{body.lstrip()}\n    \"\"\"\n"
    return stub, entry_point


def tidy_code(code: str) -> str:
    """MBPP's reference code uses CRLF, tab indents and trailing blanks: a cleaner target for the SLM.

    Only leading whitespace is touched (tabs -> 4 spaces), never string contents.
    """
    lines = []
    for line in code.replace("\r\n", "\n").split("\n"):
        body = line.lstrip(" \t")
        lines.append((line[:len(line) - len(body)].expandtabs(4) + body).rstrip())
    return "\n".join(lines).strip("\n")


def mbpp_example(row: Row, split: str) -> Example:
    task_id = row.get("task_id", (int, str))
    text, code = row.get("text"), tidy_code(row.get("code"))
    test_list = row.get("test_list", list)
    if not test_list or not all(isinstance(t, str) for t in test_list):
        raise row.fail("test_list", "should be a non-empty list of assert strings")
    setup = row.get("test_setup_code", required=False) or ""
    built = mbpp_stub(text, code, test_list)
    gold = {"test_list": test_list, "test_setup_code": setup}
    if built:
        stub, entry_point = built
        gold.update(stub=stub, entry_point=entry_point)
        prompt = code_prompt(stub)
    else:  # MBPP's own prompt format
        prompt = f"{text.strip()}\nYour code should pass this test:\n{test_list[0]}"
    return Example(id=f"mbpp/{task_id}", task="humaneval", source_split=split,
                   prompt=prompt, answer=fenced(code), gold=gold)


class HumanEval(CodeScoring, Task):
    name = "humaneval"
    title = "HumanEval (train/validation: MBPP)"
    metric = "pass@1"
    max_new_tokens = 384

    def __init__(self, data_dir=None, timeout_s: float = 10.0, allow_unsandboxed: bool | None = None):
        super().__init__(data_dir)
        self.timeout_s = float(timeout_s)
        self.allow_unsandboxed = allow_unsandboxed_default() if allow_unsandboxed is None else bool(allow_unsandboxed)

    def load_pools(self) -> Pools:
        mbpp_rows = load_rows(self.data_root, "mbpp/mbpp.jsonl", hub.mbpp, "google-research-datasets/mbpp full")
        humaneval_rows = load_rows(self.data_root, "humaneval/HumanEval.jsonl", hub.humaneval,
                                   "openai/openai_humaneval test")
        by_task_id: dict[int, Row] = {}
        for row in mbpp_rows:
            task_id = row.get("task_id", (int, str))
            if not str(task_id).isdigit():
                raise row.fail("task_id", f"is {task_id!r}, not a number")
            by_task_id[int(task_id)] = row

        def pick(ids, split: str) -> list[Example]:
            return [mbpp_example(by_task_id[i], split) for i in ids if i in by_task_id]

        train = pick(MBPP_TRAIN, "mbpp-train")
        preferred = len(train)
        train += pick(MBPP_EXTRA, "mbpp-train")
        return Pools(train=train, validation=pick(MBPP_VALIDATION, "mbpp-validation"),
                     test=[humaneval_example(row) for row in humaneval_rows], preferred_train=preferred)
