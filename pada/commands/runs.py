"""`python -m pada runs`: every run with its status, stage, metrics and cost."""

from __future__ import annotations

HELP = "list runs with status, stage, metrics and cost"


def add_arguments(parser) -> None:
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args) -> int:
    import json

    from pada.runs import overview
    from pada.store import RunStore, list_runs, runs_root

    runs = list_runs(args.runs_root)
    if not runs:
        print(f"no runs under {runs_root(args.runs_root)}")
        return 0
    if not args.json:
        print(f"{'run':<44} {'status':<16} {'it':>3} {'stage':<18} {'val':>7} {'test':>7} {'cost $':>8}")
    for summary in runs:
        if summary.status == "unreadable":
            if args.json:
                print(json.dumps({"run_id": summary.run_id, "status": "unreadable", "error": summary.error}))
            else:
                print(f"{summary.run_id:<44} unreadable: {summary.error}")
            continue
        with RunStore.open(summary.path, readonly=True) as store:  # listing never changes a run's files
            info = overview(store)
        if args.json:
            print(json.dumps(info.to_dict()))
            continue
        def last(split: str) -> str:
            values = info.metrics.get(split, {})
            return f"{values[max(values, key=int)]:.3f}" if values else "-"
        print(f"{info.run_id:<44} {info.status:<16} {info.iteration or '-':>3} {info.stage or '-':<18} "
              f"{last('validation'):>7} {last('test'):>7} {info.cost_usd:>8.4f}")
    return 0
