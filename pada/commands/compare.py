"""`python -m pada compare --config FILE --methods pada,vanilla,... [--ablations] [--seeds N]`: the paper's Table 1.

Runs each method (with --ablations also PaDA without patterns, without training
errors and without quality control) with the same config (task, sizes, models,
synthetic budget), at seeds config.seed .. config.seed+N-1, one run after
another, or each as a Ray task with --executor ray (reusing a run of the same
config unless --fresh), then writes
`comparison.md`, `comparison.csv` and `comparison_summary.csv`: per method the
test metric at the iteration validation selects, mean and std over seeds, and
the difference to vanilla with a paired bootstrap 95% interval over the test
items (`pada.stats`); plus the test metric per iteration, LLM tokens and cost.
"""

from __future__ import annotations

HELP = "run several methods at a matched budget and write a comparison table (Markdown and CSV)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML run config shared by every method")
    parser.add_argument("--methods", default="pada,vanilla,auggpt,llms_as_instructors",
                        help="comma-separated methods (default: all four); differences are against vanilla")
    parser.add_argument("--ablations", action="store_true",
                        help="also run PaDA with each ablation: no_patterns, no_train_errors, no_qc (paper Table 2)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="repeat every method with N seeds: the config's seed, seed+1, ... (default 1); the "
                             "seed sets the training subset, training order and LLM sampling")
    parser.add_argument("--out", default=None, help="output directory (default: <runs root>/comparisons/<time>)")
    add_run_arguments(parser)


def add_run_arguments(parser) -> None:
    """Where runs live and how they run: shared by `compare` and `sweep`."""
    from pada.commands.common import positive_int

    parser.add_argument("--fresh", action="store_true",
                        help="start new runs even where a run with the same config exists (default: reuse it, "
                             "resuming it if it was interrupted)")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: one run after another in this process (default); ray: each run as a Ray "
                             "task (one GPU per run where the cluster has GPUs)")
    parser.add_argument("--address", default=None,
                        help="with --executor ray: the Ray cluster to join (e.g. auto, ray://head:10001); "
                             "default: start a local Ray")
    parser.add_argument("--cpus-per-run", type=positive_int, default=None, metavar="N",
                        help="with --executor ray: CPUs each run asks for (default: with GPUs 1, else this "
                             "machine's CPU count, so runs queue instead of sharing cores)")
    parser.add_argument("--retries", type=int, default=None, metavar="N",
                        help="with --executor ray: times Ray retries a failed run, resuming it (default 1)")
    parser.add_argument("--node-runs-dir", default=None, metavar="DIR",
                        help="with --executor ray: run each run in DIR/<run id> on its node's own disk and copy it "
                             "into the runs root as it goes and when it ends (for a runs root on a network "
                             "filesystem)")


def executor_from(args, node_runs_dir: str | None = None):
    """The executor `args` ask for (`pada.executors`); `node_runs_dir` is the default for --node-runs-dir."""
    from pada.errors import PadaError
    from pada.executors import executor_for

    if args.retries is not None and args.retries < 0:
        raise PadaError(f"--retries: must be >= 0, got {args.retries}")
    return executor_for(args.executor, address=args.address, cpus_per_run=args.cpus_per_run, retries=args.retries,
                        node_runs_dir=args.node_runs_dir or (node_runs_dir if args.executor == "ray" else None))


def report(results, out, runs_root=None) -> int:
    """Write the comparison of `results` (`pada.comparison.execute_plan`) into `out`, say which runs failed;
    returns the exit status (1 when any run failed)."""
    from pada.comparison import write_results

    markdown, csv_path, _ = write_results(results, out, runs_root)
    if markdown is not None:
        print(markdown.read_text(encoding="utf-8"))
        print(f"wrote {markdown}, {csv_path} and {csv_path.with_name('comparison_summary.csv')}")
    return report_failures(results)


def report_failures(results) -> int:
    """One line per failed run (its table rows are left out); the exit status: 1 when any run failed."""
    failed = [result for result in results if result.error]
    for result in failed:
        print(f"{result.planned.name} run {result.run_id} failed: {result.error}")
    return 1 if failed else 0


def run(args) -> int:
    import time

    from pada.commands.common import check_output_dir
    from pada.comparison import execute_plan, plan_runs
    from pada.config import METHODS, load_config, preflight
    from pada.errors import PadaError
    from pada.store import runs_root

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PadaError(f"--methods: unknown method {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(METHODS)}")
    if args.seeds < 1:
        raise PadaError(f"--seeds: must be >= 1, got {args.seeds}")
    executor = executor_from(args)
    config = load_config(args.config)
    preflight(config)  # before any run directory is created
    if args.out:
        out = check_output_dir(args.out, "--out", force=True)  # comparison.md/.csv are rewritten in place
    else:
        out = runs_root(args.runs_root) / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    results = execute_plan(plan_runs(config, methods, args.ablations, args.seeds), runs_root=args.runs_root,
                           reuse=not args.fresh, executor=executor)
    return report(results, out, args.runs_root)
