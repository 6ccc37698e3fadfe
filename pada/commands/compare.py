"""`python -m pada compare --config FILE --methods pada,vanilla,... [--ablations] [--seeds N]`: the paper's Table 1.

Runs each method (with --ablations also PaDA without patterns, without training
errors and without quality control) with the same config (task, sizes, models,
synthetic budget), at seeds config.seed .. config.seed+N-1, one run after
another (reusing a run of the same config unless --fresh), then writes
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
    parser.add_argument("--fresh", action="store_true",
                        help="start new runs even where a run with the same config exists (default: reuse it, "
                             "resuming it if it was interrupted)")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")


def run(args) -> int:
    import time

    from pada.commands.common import check_output_dir
    from pada.comparison import compare_runs, selected_item_scores, summarise, write_comparison
    from pada.config import METHODS, load_config, preflight
    from pada.errors import PadaError
    from pada.store import runs_root

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PadaError(f"--methods: unknown method {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(METHODS)}")
    if args.seeds < 1:
        raise PadaError(f"--seeds: must be >= 1, got {args.seeds}")
    config = load_config(args.config)
    preflight(config)  # before any run directory is created
    if args.out:
        out = check_output_dir(args.out, "--out", force=True)  # comparison.md/.csv are rewritten in place
    else:
        out = runs_root(args.runs_root) / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    rows = compare_runs(config, methods, runs_root=args.runs_root, reuse=not args.fresh,
                        ablations=args.ablations, seeds=args.seeds)
    summaries = summarise(rows, selected_item_scores(rows, args.runs_root))
    markdown, csv_path = write_comparison(rows, out, summaries)
    print(markdown.read_text(encoding="utf-8"))
    print(f"wrote {markdown}, {csv_path} and {csv_path.with_name('comparison_summary.csv')}")
    return 0
