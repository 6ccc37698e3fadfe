"""`python -m pada status [RUN] [--json]`: where a run is, its metrics, its cost, and how its judge did on
the planted samples (catch rate per iteration; a warning when it passed more than a third of them), and the
provider batches it is waiting for (llm.batch)."""

from __future__ import annotations

HELP = "show a run's status, stage, progress, metrics and cost (default: the newest run)"


def add_arguments(parser) -> None:
    parser.add_argument("run", nargs="?", help="run id or directory (default: the newest run)")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import json

    from pada.errors import PadaError
    from pada.runs import batch_line, judge_check_line, overview
    from pada.store import RunStore, list_runs, runs_root

    target = args.run
    if target is None:
        runs = list_runs(args.runs_root)
        if not runs:
            raise PadaError(f"no runs under {runs_root(args.runs_root)}; start one with `python -m pada run --config ...`")
        target = str(runs[0].path)
    # Read-only: looking at a run never migrates, locks or otherwise changes its files.
    with RunStore.open(target, runs_root=args.runs_root, readonly=True) as store:
        info = overview(store)
        if args.json:
            print(json.dumps(info.to_dict()))
            return 0
        print(f"run       {info.run_id}  ({info.task}, {info.method})")
        print(f"status    {info.status}" + (f"  error: {info.error}" if info.error else ""))
        where = f"iteration {info.iteration}, stage {info.stage}"
        if info.progress:
            done, total = info.progress["done"], info.progress["total"]
            where += f" ({done}/{total})" if total else f" ({done} LLM calls)"
        print(f"at        {where}")
        for split, values in info.metrics.items():
            print(f"{split:<9} " + "  ".join(f"it{it}={value:.3f}" for it, value in values.items()))
        print(f"LLM       {info.tokens} tokens, ${info.cost_usd:.4f}")
        for iteration, summary in info.judge_check.items():
            print(f"judge     {judge_check_line(iteration, summary)}")
        for batch in info.batches_pending:  # a restarted run polls these instead of sending them again
            print(f"batch     {batch_line(batch)}")
        for warning in info.warnings:
            print(f"warning   {warning}")
    return 0
