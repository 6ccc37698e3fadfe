"""`python -m pada score`: score a file of predictions against a task's source data.

Input: JSONL lines `{"id": ..., "prediction": "..."}` (ids from any of the
task's source splits). Output: one `{"id", "correct", "extracted"}` line per
prediction in `--out`, and a one-line JSON summary (`task`, `n`, `correct`,
`accuracy`, plus the means of per-example metrics such as SQuAD's
`exact_match` and `f1`) as the last line of stdout. Every problem with the
input file is reported as one line naming the file, line and field.
"""

from __future__ import annotations

import json
from pathlib import Path

from pada.errors import DataError

HELP = "Score a JSONL file of {id, prediction} lines against a task; prints a one-line JSON summary."


def add_arguments(parser) -> None:
    parser.add_argument("--task", required=True, help="task name (e.g. gsm8k) or custom:<path.jsonl>")
    parser.add_argument("--predictions", required=True, help='JSONL file of {"id": ..., "prediction": ...} lines')
    parser.add_argument("--out", help="write one {id, correct, extracted} line per prediction here")
    parser.add_argument("--data-dir", help="benchmark data root (default: $PADA_DATA_DIR, else ../shared/data)")
    parser.add_argument("--scorer", help="scorer of a custom task: exact, mc, number or code (default exact)")
    parser.add_argument("--timeout", type=float, help="seconds per program for code tasks (default 10)")


def read_predictions(path: Path) -> list[tuple[int, str, str]]:
    """(line number, id, prediction) for each non-blank line; any malformed line raises DataError."""
    if not path.is_file():
        raise DataError(f"predictions file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # tolerate a BOM
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
    predictions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected a JSON object with 'id' and 'prediction'")
        for field in ("id", "prediction"):
            if field not in record:
                raise DataError(f"{path} line {number}: field '{field}' is missing")
        example_id, prediction = record["id"], record["prediction"]
        if isinstance(example_id, bool) or not isinstance(example_id, (str, int)):
            raise DataError(f"{path} line {number}: field 'id' should be a string, got {type(example_id).__name__}")
        if not isinstance(prediction, str):
            raise DataError(f"{path} line {number}: field 'prediction' should be a string, "
                            f"got {type(prediction).__name__}")
        predictions.append((number, str(example_id), prediction))
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
    from pada.tasks import get_task

    path = Path(args.predictions)
    predictions = read_predictions(path)
    task = get_task(args.task, args.data_dir, **task_options(args))
    examples = task.lookup({example_id for _, example_id, _ in predictions})
    for number, example_id, _ in predictions:
        if example_id not in examples:
            raise DataError(f"{path} line {number}: field 'id': unknown id {example_id!r} for task {task.name}")
    results = []
    for _, example_id, prediction in predictions:
        results.append((example_id, task.score(examples[example_id], prediction)))
    if args.out:
        write_results(Path(args.out), results)
    print(json.dumps(summary(task.name, [score for _, score in results])))
    return 0


def write_results(path: Path, results) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for example_id, score in results:
            out.write(json.dumps({"id": example_id, "correct": score.correct, "extracted": score.extracted}) + "\n")


def summary(task_name: str, scores) -> dict:
    """n, correct, accuracy, and the mean of every per-example metric all scores carry."""
    correct = sum(score.correct for score in scores)
    result = {"task": task_name, "n": len(scores), "correct": correct, "accuracy": correct / len(scores)}
    shared = set.intersection(*(set(score.metrics) for score in scores)) if scores else set()
    for metric in sorted(shared):
        result[metric] = sum(score.metrics[metric] for score in scores) / len(scores)
    return result
