"""`python -m pada tasks`: the benchmark tasks and the sizes of their splits."""

from __future__ import annotations

import json
import sys

from pada.errors import PadaError

HELP = "List the benchmark tasks with their split sizes (train pool, nested train subsets, validation, test)."
TRAIN_SUBSETS = (300, 600, 1000)  # the paper's nested training-set sizes
DEFAULT_VALIDATION, DEFAULT_TEST = 500, 500


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", help="benchmark data root (default: $PADA_DATA_DIR, else ../shared/data)")
    parser.add_argument("--custom", metavar="PATH", help="also describe a custom task read from this JSONL file")
    parser.add_argument("--scorer", default="exact", help="scorer of the --custom task: exact, mc, number or code")
    parser.add_argument("--json", action="store_true", help="print one JSON object per task instead of a table")


def describe(task) -> dict:
    """Split sizes of one task, as `splits()` with the default sizes would give them."""
    pools = task.pools()
    subsets = [min(size, len(pools.train)) for size in TRAIN_SUBSETS]
    return {"task": task.name, "title": task.title, "metric": task.metric, "train_pool": len(pools.train),
            "train_subsets": subsets, "validation": min(DEFAULT_VALIDATION, len(pools.validation)),
            "validation_pool": len(pools.validation), "test": min(DEFAULT_TEST, len(pools.test)),
            "test_all": len(pools.test)}


def run(args) -> int:
    from pada.paths import data_dir
    from pada.tasks import TASK_NAMES, check_data_root, get_task

    check_data_root(args.data_dir, "--data-dir")
    root_missing = not data_dir(args.data_dir).exists()
    rows, errors = [], []
    for name in TASK_NAMES:
        try:
            rows.append(describe(get_task(name, args.data_dir)))
        except PadaError as err:
            if root_missing and not rows:  # no data dir and no hub: one error says it all
                if not args.custom:
                    raise PadaError(f"{name}: {err}") from None
                errors.append(f"{name}: {err}")
                break
            errors.append(f"{name}: {err}")
    if args.custom:  # a bad custom file is the user's explicit request: fail loudly
        custom = describe(get_task("custom", args.data_dir, path=args.custom, scorer=args.scorer))
        custom["task"] = f"custom:{args.custom}"
        rows.append(custom)
    if not rows and errors:
        raise PadaError(errors[0])
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print_table(rows)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 2 if errors else 0


def print_table(rows: list[dict]) -> None:
    header = ["task", "metric", "train pool", "train subsets", "validation", "test (default/all)"]
    table = [[row["task"], row["metric"], str(row["train_pool"]), "/".join(map(str, row["train_subsets"])),
              str(row["validation"]), f"{row['test']}/{row['test_all']}"] for row in rows]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
