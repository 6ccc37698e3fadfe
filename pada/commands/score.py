"""`python -m pada score`: score a file of predictions against a task's source data.

Input: JSONL lines `{"id": ..., "prediction": "..."}` (ids from any of the
task's source splits). Output: one `{"id", "correct", "extracted"}` line per
prediction in `--out`, and a one-line JSON summary (`task`, `n`, `correct`,
`accuracy`, plus the means of per-example metrics such as SQuAD's
`exact_match` and `f1`) as the last line of stdout. Every problem with the
input file is reported as one line naming the file, line and field, before
anything is scored or written; each id may appear once. `--out` must not be a
directory, an input file or an existing file (unless `--force`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pada.errors import DataError

HELP = "Score a JSONL file of {id, prediction} lines against a task; prints a one-line JSON summary."


def add_arguments(parser) -> None:
    from pada.commands.common import positive_seconds

    parser.add_argument("--task", required=True, help="task name (e.g. gsm8k) or custom:<path.jsonl>")
    parser.add_argument("--predictions", required=True, help='JSONL file of {"id": ..., "prediction": ...} lines')
    parser.add_argument("--out", help="write one {id, correct, extracted} line per prediction to this file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument("--data-dir", help="benchmark data root (default: $PADA_DATA_DIR, else ../shared/data)")
    parser.add_argument("--scorer", help="scorer of a custom task: exact, mc, number or code (default exact)")
    parser.add_argument("--timeout", type=positive_seconds,
                        help="seconds per program for code tasks, > 0 (default 10)")


_SURROGATE = re.compile("[\ud800-\udfff]")


def read_predictions(path: Path, warnings: list[str] | None = None) -> list[tuple[int, str, str]]:
    """(line number, id, prediction) for each non-blank line; any malformed line raises DataError.

    An id given twice is an error (each example is scored once; counting it twice
    would skew the accuracy). A prediction holding a lone UTF-16 surrogate
    (`"\\ud800"`: valid JSON, but not text any file or program can hold) is kept
    and scored with U+FFFD in its place: no gold answer contains a surrogate, so
    the verdict is the one the raw text would get; `warnings` gets one line
    naming the file, line and field.
    """
    from pada.errors import read_user_text
    from pada.tasks.sources import parse_json_object

    lines = read_user_text(path, DataError, "--predictions").splitlines()
    predictions, first_line = [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        record = parse_json_object(line, where, error=DataError)
        for field in ("id", "prediction"):
            if field not in record:
                raise DataError(f"{where}: field '{field}' is missing")
        example_id, prediction = record["id"], record["prediction"]
        if isinstance(example_id, bool) or not isinstance(example_id, (str, int)):
            raise DataError(f"{where}: field 'id' should be a string, got {type(example_id).__name__}")
        if not isinstance(prediction, str):
            raise DataError(f"{where}: field 'prediction' should be a string, got {type(prediction).__name__}")
        example_id = str(example_id)
        if example_id in first_line:
            raise DataError(f"{where}: field 'id': duplicate id {example_id!r} (first on line "
                            f"{first_line[example_id]}); give each example one prediction")
        first_line[example_id] = number
        lone = _SURROGATE.search(prediction)
        if lone:
            prediction = _SURROGATE.sub("\ufffd", prediction)
            if warnings is not None:
                warnings.append(f"{where}: field 'prediction': lone surrogate \\u{ord(lone.group()):04x} is not valid text; "
                     "scored with U+FFFD in its place (line kept)")
        predictions.append((number, example_id, prediction))
    if not predictions:
        raise DataError(f"{path}: no predictions (the file is empty)")
    return predictions


def task_options(args) -> dict:
    options = {}
    if args.scorer:
        if not args.task.startswith("custom"):
            raise DataError("--scorer applies only to a custom task (custom:<path.jsonl>)")
        options["scorer"] = args.scorer
    if args.timeout is not None:
        options["timeout_s"] = args.timeout
    return options


def run(args) -> int:
    import sys

    from pada.commands.common import check_output_file
    from pada.errors import one_line
    from pada.tasks import check_data_root, get_task

    path = Path(args.predictions)
    check_data_root(args.data_dir, "--data-dir")
    out = None
    if args.out:
        inputs = {"--predictions": path}
        if args.task.startswith("custom:"):
            inputs["custom task"] = args.task[len("custom:"):]
        out = check_output_file(args.out, "--out", args.force, inputs)
    warnings: list[str] = []
    predictions = read_predictions(path, warnings)
    task = get_task(args.task, args.data_dir, **task_options(args))
    examples = task.lookup({example_id for _, example_id, _ in predictions})
    for number, example_id, _ in predictions:
        if example_id not in examples:
            raise DataError(f"{path} line {number}: field 'id': unknown id {example_id!r} for task {task.name}")
    for warning in warnings:  # only once the file is known to be usable
        print(f"warning: {one_line(warning)}", file=sys.stderr)
    results = []
    for _, example_id, prediction in predictions:
        results.append((example_id, task.score(examples[example_id], prediction)))
    if out is not None:
        write_results(out, results)
    print(json.dumps(summary(task.name, [score for _, score in results])))
    return 0


def write_results(path: Path, results) -> None:
    from pada.commands.common import write_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for example_id, score in results:
                out.write(json.dumps({"id": example_id, "correct": score.correct, "extracted": score.extracted})
                          + "\n")
    except OSError as err:
        raise write_error("--out", path, err) from None


def summary(task_name: str, scores) -> dict:
    """n, correct, accuracy, and the mean of every per-example metric all scores carry."""
    correct = sum(score.correct for score in scores)
    result = {"task": task_name, "n": len(scores), "correct": correct, "accuracy": correct / len(scores)}
    shared = set.intersection(*(set(score.metrics) for score in scores)) if scores else set()
    for metric in sorted(shared):
        result[metric] = sum(score.metrics[metric] for score in scores) / len(scores)
    return result
