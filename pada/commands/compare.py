"""`python -m pada compare --config FILE --methods pada,vanilla,...`: the paper's Table 1 for one setting.

Runs each method with the same config (task, sizes, models, seed, synthetic
budget), one after another (reusing a run of the same config unless --fresh),
then writes `comparison.md` and `comparison.csv`:
the test metric per method and iteration, with LLM tokens and cost per method.
"""

from __future__ import annotations

HELP = "run several methods at a matched budget and write a comparison table (Markdown and CSV)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML run config shared by every method")
    parser.add_argument("--methods", default="pada,vanilla,auggpt,llms_as_instructors",
                        help="comma-separated methods (default: all four)")
    parser.add_argument("--out", default=None, help="output directory (default: <runs root>/comparisons/<time>)")
    parser.add_argument("--fresh", action="store_true",
                        help="start new runs even where a run with the same config exists (default: reuse it, "
                             "resuming it if it was interrupted)")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")


def run(args) -> int:
    import time
    from pathlib import Path

    from pada.comparison import compare_runs, write_comparison
    from pada.commands.common import check_output_dir
    from pada.config import METHODS, load_config, preflight
    from pada.errors import PadaError
    from pada.store import runs_root

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PadaError(f"--methods: unknown method {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(METHODS)}")
    config = load_config(args.config)
    preflight(config)  # before any run directory is created
    if args.out:
        out = check_output_dir(args.out, "--out", force=True)  # comparison.md/.csv are rewritten in place
    else:
        out = runs_root(args.runs_root) / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    rows = compare_runs(config, methods, runs_root=args.runs_root, reuse=not args.fresh)
    markdown, csv_path = write_comparison(rows, out)
    print(markdown.read_text(encoding="utf-8"))
    print(f"wrote {markdown} and {csv_path}")
    return 0
