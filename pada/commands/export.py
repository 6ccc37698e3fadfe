"""`python -m pada export RUN --iteration I --out DIR`: an iteration's training set and adapter."""

from __future__ import annotations

HELP = "export an iteration's training set (chat-messages JSONL) and its LoRA adapter"


def add_arguments(parser) -> None:
    from pada.commands.common import positive_int

    parser.add_argument("run", help="run id or directory")
    parser.add_argument("--iteration", type=positive_int, required=True, help="iteration to export (1-based)")
    parser.add_argument("--out", required=True, help="output directory (new or empty, unless --force)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out directory")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")


def run(args) -> int:
    import shutil
    from pathlib import Path

    from pada.commands.common import check_output_dir, write_error
    from pada.errors import PadaError
    from pada.store import RunStore

    with RunStore.open(args.run, runs_root=args.runs_root) as store:
        if args.iteration not in store.iterations() or not store.training_set(args.iteration):
            raise PadaError(f"run {store.run_id} has no training set for iteration {args.iteration} "
                            f"(iterations: {store.iterations()})")
        out = check_output_dir(args.out, "--out", args.force, protected={"run directory": Path(store.path)})
        try:
            train_file = store.export_training_set(args.iteration, out)
            adapter = store.adapter_dir(args.iteration)
            if (adapter / "adapter_config.json").is_file():
                shutil.copytree(adapter, out / "adapter", dirs_exist_ok=True)
                print(f"adapter      {out / 'adapter'}")
            else:
                print(f"adapter      (none yet for iteration {args.iteration})")
        except OSError as err:
            raise write_error("--out", args.out, err) from None
    print(f"training set {train_file}")
    return 0
